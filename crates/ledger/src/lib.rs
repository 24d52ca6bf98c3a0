//! The BitTensor ledger as a pure state machine (paper sections 2.3-2.4, Algorithm 1).
//!
//! `apply(state, block) -> (state, events)`: no I/O, no clocks, no floating point in any
//! state transition, so every machine that applies the same blocks to the same genesis
//! computes the same state, bit for bit, and the same state hash.
//!
//! Modules:
//! - [`fixed`]: the deterministic number formats ([`Fixed`], weight units) and the
//!   largest-remainder normalisation of a weight row.
//! - [`genesis`]: the genesis TOML file and the state at height 0.
//! - [`state`]: [`State`] (accounts, stake positions, neurons, weight rows) and its hash.
//! - [`tx`]: [`Transaction`] and [`Call`], their canonical encoding and (batch) signatures.
//! - [`block`]: [`Block`] and [`Header`].
//! - [`apply`](mod@apply): [`apply_tx`], [`end_block`], [`apply()`] and [`build_block`].
//! - [`codec`]: the canonical binary encoding and the BLAKE2b-256 [`Hash`].
//! - [`error`]: [`Error`], one variant per way a transaction or block is refused.
//!
//! # The rules
//! - Coldkeys hold free balance (rao, `1 TAO = 10^9 rao`) and stake it on hotkeys; a
//!   neuron's stake `S_i` is the sum of every position on its hotkey.
//! - A hotkey registers itself (naming its owning coldkey) and gets the next uid; its row
//!   starts as all self weight. It then replaces its row with `set_weights`: the row is
//!   normalised to sum to exactly one unit, and refused when `||W_i_new - W_i_old||_2 >=
//!   epsilon` or when the neuron already set weights in this block.
//! - After a block's transactions, the ranks `R = (1/n) W^T S` and the inflation step
//!   `S <- S + tau R / ||R||_2` run through the mechanism crate's generic
//!   [`rank_sparse_par`](bt_mechanism::rank::rank_sparse_par) (the parallel form of
//!   `rank_sparse`, bit-identical in fixed point) and
//!   [`inflation_step`](bt_mechanism::rank::inflation_step) in [`Fixed`].
//! - **Where inflation goes:** each neuron's increase, floored to whole rao, is credited to
//!   its owner coldkey's stake position on its hotkey: it adds to `S_i` (so it compounds, as
//!   in Algorithm 1) and belongs to the neuron's owner, not to other stakers. Sub-rao
//!   remainders are not minted; `minted` counts exactly what was credited, so total issuance
//!   is always genesis plus minted.
//! - With adaptive tau on, `tau <- max(0, tau + eta (target - sparsity))` after every block
//!   (the mechanism crate's `update_tau_scalar`).
//!
//! # Example
//! ```
//! use bt_keys::Keypair;
//! use bt_ledger::{Call, Transaction, apply, build_block, genesis_state, WEIGHT_ONE};
//!
//! let alice = Keypair::from_uri("//Alice")?;
//! let hot = Keypair::from_uri("//Alice//hot")?;
//! let genesis = genesis_state(&format!(
//!     "[params]\ntau = 1.0\nepsilon = 0.5\nmax_neurons = 16\nblock_time_ms = 1000\n\
//!      [[accounts]]\naddress = \"{}\"\nbalance = 100_000_000_000\n",
//!     alice.public()
//! ))?;
//! let g = genesis.genesis;
//! let txs = vec![
//!     Transaction::sign(&hot, &g, 0, Call::Register { coldkey: alice.public(), endpoint: "127.0.0.1:8091".parse()? }),
//!     Transaction::sign(&alice, &g, 0, Call::AddStake { hotkey: hot.public(), amount: 10_000_000_000 }),
//! ];
//! let built = build_block(&genesis, txs, 0);
//! assert!(built.rejected.is_empty());
//! // Any other machine applying the block gets the same state.
//! let (state, _events) = apply(&genesis, &built.block)?;
//! assert_eq!(state, built.state);
//! // The one neuron keeps all its weight, so it gets all of tau = 1 TAO.
//! assert_eq!(state.neurons[0].row, vec![(0, WEIGHT_ONE)]);
//! assert_eq!(state.neurons[0].stake, 11_000_000_000);
//! assert_eq!(state.total_issuance(), u128::from(state.genesis_issuance + state.minted));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod apply;
pub mod block;
pub mod codec;
pub mod error;
pub mod fixed;
pub mod genesis;
pub mod state;
pub mod tx;

pub use apply::{Built, Event, apply, apply_tx, build_block, end_block, ranks, replay};
pub use block::{Block, Header};
/// The mechanisms a genesis can choose (from `bt-mechanism`).
pub use bt_mechanism::Mechanism;
pub use codec::Hash;
pub use error::{Error, Result};
pub use fixed::{FRAC_BITS, Fixed, RAO_PER_TAO, WEIGHT_ONE};
pub use genesis::{Genesis, genesis_state};
pub use state::{Account, Neuron, Params, State};
pub use tx::{Call, Transaction, raw_row};
