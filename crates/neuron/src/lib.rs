//! The neuron: a learner that trains with its peers (paper sections 2.1, 2.5-2.8).
//!
//! Not built yet. It will hold the candle model, the sparsely-gated mixture-of-experts
//! router over peers (through `bt-wire`), remote backprop, the distilled student, and
//! weight setting on the ledger (through `bt-ledger`), with the payoff gradient taken from
//! `bt-mechanism` (`payoff::mask_chain`). See `ARCHITECTURE.md`.
