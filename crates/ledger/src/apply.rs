//! The state transition: transactions, the end-of-block inflation step, whole blocks.
//!
//! Every function here is pure: it reads a state and a block and returns a new state and
//! events, or an error that leaves the input untouched. [`apply_tx`] checks everything a
//! transaction needs before changing anything, so a refused transaction changes nothing.

use bt_keys::PublicKey;
use bt_mechanism::adaptive::update_tau_scalar;
use bt_mechanism::rank::{Diagonal, inflation_step, rank_sparse_par_diag};
use bt_mechanism::yuma::{self, YumaOutput, YumaParams};
use bt_mechanism::{Mechanism, Scalar};
use rayon::prelude::*;

use crate::block::{Block, Header, tx_root};
use crate::error::{Error, Result};
use crate::fixed::{Fixed, WEIGHT_ONE, normalize_row, row_distance_sq};
use crate::state::{Account, Neuron, State};
use crate::tx::{Call, Transaction, verify_all, verify_each};

/// What happened, in order, while applying a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Free balance moved.
    Transferred {
        /// The sender.
        from: PublicKey,
        /// The recipient.
        to: PublicKey,
        /// Rao.
        amount: u64,
    },
    /// Free balance moved into a stake position.
    StakeAdded {
        /// The staker.
        coldkey: PublicKey,
        /// The neuron.
        hotkey: PublicKey,
        /// Rao.
        amount: u64,
    },
    /// Stake moved back to free balance.
    StakeRemoved {
        /// The staker.
        coldkey: PublicKey,
        /// The neuron.
        hotkey: PublicKey,
        /// Rao.
        amount: u64,
    },
    /// A neuron registered.
    Registered {
        /// Its uid.
        uid: u32,
        /// Its hotkey.
        hotkey: PublicKey,
    },
    /// A neuron moved.
    EndpointUpdated {
        /// The neuron.
        uid: u32,
    },
    /// A neuron replaced its weight row.
    WeightsSet {
        /// The neuron.
        uid: u32,
    },
    /// The inflation step of a block.
    Minted {
        /// The block.
        height: u64,
        /// Rao credited in total.
        total: u64,
        /// The `tau` used.
        tau: Fixed,
    },
    /// Adaptive tau moved `tau`.
    TauUpdated {
        /// The new value.
        tau: Fixed,
    },
}

/// Applies one transaction as part of block `height`. When `verified` is true the caller
/// has already checked the signature (see [`crate::tx::verify_all`]). On error `state` is
/// unchanged.
pub fn apply_tx(state: &mut State, height: u64, tx: &Transaction, verified: bool) -> Result<Event> {
    let max = state.params.max_tx_bytes as usize;
    let size = tx.encoded_len();
    if size > max {
        return Err(Error::OversizedTransaction { size, max });
    }
    if !verified {
        tx.verify(&state.genesis)?;
    }
    let signer = tx.signer;
    let expected = state.nonce(&signer);
    if tx.nonce < expected {
        return Err(Error::StaleNonce {
            account: signer,
            expected,
            got: tx.nonce,
        });
    }
    if tx.nonce > expected {
        return Err(Error::FutureNonce {
            account: signer,
            expected,
            got: tx.nonce,
        });
    }
    let event = match &tx.call {
        Call::Transfer { to, amount } => transfer(state, signer, *to, *amount)?,
        Call::AddStake { hotkey, amount } => add_stake(state, signer, *hotkey, *amount)?,
        Call::RemoveStake { hotkey, amount } => remove_stake(state, signer, *hotkey, *amount)?,
        Call::Register { coldkey, endpoint } => {
            if let Some(&uid) = state.hotkeys.get(&signer) {
                return Err(Error::HotkeyAlreadyRegistered {
                    hotkey: signer,
                    uid,
                });
            }
            let max = state.params.max_neurons;
            if state.neurons.len() >= max as usize {
                return Err(Error::TooManyNeurons { max });
            }
            // Fits: bounded by max_neurons, a u32.
            let uid = state.neurons.len() as u32;
            state
                .neurons
                .push(Neuron::new(uid, signer, *coldkey, *endpoint, height));
            state.hotkeys.insert(signer, uid);
            Event::Registered {
                uid,
                hotkey: signer,
            }
        }
        Call::UpdateEndpoint { endpoint } => {
            let uid = registered(state, &signer)?;
            state.neurons[uid as usize].endpoint = *endpoint;
            Event::EndpointUpdated { uid }
        }
        Call::SetWeights { row } => set_weights(state, height, signer, row)?,
    };
    state.accounts.entry(signer).or_default().nonce += 1;
    Ok(event)
}

fn registered(state: &State, hotkey: &PublicKey) -> Result<u32> {
    state
        .hotkeys
        .get(hotkey)
        .copied()
        .ok_or(Error::UnknownHotkey { hotkey: *hotkey })
}

fn funded(state: &State, account: &PublicKey) -> Result<Account> {
    state
        .accounts
        .get(account)
        .copied()
        .ok_or(Error::UnknownAccount { account: *account })
}

fn transfer(state: &mut State, from: PublicKey, to: PublicKey, amount: u64) -> Result<Event> {
    if amount == 0 {
        return Err(Error::ZeroAmount);
    }
    let have = funded(state, &from)?.balance;
    if have < amount {
        return Err(Error::InsufficientBalance {
            account: from,
            need: amount,
            have,
        });
    }
    if from != to && state.balance(&to).checked_add(amount).is_none() {
        return Err(Error::Overflow {
            what: "recipient balance",
        });
    }
    state.accounts.entry(from).or_default().balance -= amount;
    state.accounts.entry(to).or_default().balance += amount;
    Ok(Event::Transferred { from, to, amount })
}

fn add_stake(
    state: &mut State,
    coldkey: PublicKey,
    hotkey: PublicKey,
    amount: u64,
) -> Result<Event> {
    if amount == 0 {
        return Err(Error::ZeroAmount);
    }
    let have = funded(state, &coldkey)?.balance;
    let uid = registered(state, &hotkey)? as usize;
    if have < amount {
        return Err(Error::InsufficientBalance {
            account: coldkey,
            need: amount,
            have,
        });
    }
    // A position never exceeds its neuron's total, so one check covers both.
    let total = state.neurons[uid]
        .stake
        .checked_add(amount)
        .ok_or(Error::Overflow { what: "stake" })?;
    state.accounts.entry(coldkey).or_default().balance -= amount;
    *state.stakes.entry((coldkey, hotkey)).or_default() += amount;
    state.neurons[uid].stake = total;
    Ok(Event::StakeAdded {
        coldkey,
        hotkey,
        amount,
    })
}

fn remove_stake(
    state: &mut State,
    coldkey: PublicKey,
    hotkey: PublicKey,
    amount: u64,
) -> Result<Event> {
    if amount == 0 {
        return Err(Error::ZeroAmount);
    }
    let balance = funded(state, &coldkey)?.balance;
    let uid = registered(state, &hotkey)? as usize;
    let have = state.stake_of(&coldkey, &hotkey);
    if have < amount {
        return Err(Error::InsufficientStake {
            coldkey,
            hotkey,
            need: amount,
            have,
        });
    }
    if balance.checked_add(amount).is_none() {
        return Err(Error::Overflow { what: "balance" });
    }
    let left = have - amount;
    if left == 0 {
        state.stakes.remove(&(coldkey, hotkey));
    } else {
        state.stakes.insert((coldkey, hotkey), left);
    }
    state.neurons[uid].stake -= amount;
    state.accounts.entry(coldkey).or_default().balance += amount;
    Ok(Event::StakeRemoved {
        coldkey,
        hotkey,
        amount,
    })
}

fn set_weights(
    state: &mut State,
    height: u64,
    hotkey: PublicKey,
    raw: &[(u32, u32)],
) -> Result<Event> {
    let uid = registered(state, &hotkey)?;
    let neuron = &state.neurons[uid as usize];
    if neuron.last_update == height {
        return Err(Error::DuplicateWeightUpdate { uid, height });
    }
    if raw.is_empty() {
        return Err(Error::EmptyRow);
    }
    let n = state.neurons.len() as u32;
    if let Some(&(bad, _)) = raw.iter().find(|&&(j, _)| j >= n) {
        return Err(Error::UnknownUid { uid: bad, n });
    }
    let mut uids: Vec<u32> = raw.iter().map(|&(j, _)| j).collect();
    uids.sort_unstable();
    if let Some(p) = uids.windows(2).find(|p| p[0] == p[1]) {
        return Err(Error::DuplicateUid { uid: p[0] });
    }
    let row = normalize_row(raw).ok_or(Error::ZeroRow)?;
    let dist_sq = row_distance_sq(&row, &neuron.row);
    let eps = u128::from(state.params.epsilon);
    if dist_sq >= eps * eps {
        let unit = f64::from(WEIGHT_ONE);
        return Err(Error::WeightChangeTooLarge {
            uid,
            distance: (dist_sq as f64).sqrt() / unit,
            epsilon: state.params.epsilon as f64 / unit,
        });
    }
    let neuron = &mut state.neurons[uid as usize];
    neuron.row = row;
    neuron.last_update = height;
    Ok(Event::WeightsSet { uid })
}

/// The ranks `R = (1/n) W^T S` of the current rows and stakes, in fixed point, by the
/// mechanism crate's `rank_sparse_par_diag` (bit-identical to its sequential form), with
/// the diagonal left out under `paper_no_self` and `yuma`.
pub fn ranks(state: &State) -> Vec<Fixed> {
    let stake: Vec<Fixed> = state
        .neurons
        .iter()
        .map(|n| Fixed::from_rao(n.stake))
        .collect();
    rank_of(state, &stake, state.params.mechanism.diagonal())
}

/// The ranks of the current rows and stakes, on every core (fixed chunking, so the result
/// does not depend on the core count).
fn rank_of(state: &State, stake: &[Fixed], diagonal: Diagonal) -> Vec<Fixed> {
    let rows: Vec<&Neuron> = state.neurons.iter().collect();
    rank_sparse_par_diag(
        stake,
        &rows,
        |n| {
            let n: &Neuron = n;
            n.row
                .iter()
                .map(|&(j, w)| (j as usize, Fixed::from_weight(w)))
        },
        diagonal,
    )
}

/// One Yuma epoch (`bt_mechanism::yuma::epoch_rows`) over the current stakes, rows and bonds,
/// in fixed point, reading the neurons' rows and bonds where they are.
pub fn yuma_epoch(state: &State) -> YumaOutput<Fixed> {
    let stake: Vec<Fixed> = state
        .neurons
        .iter()
        .map(|x| Fixed::from_rao(x.stake))
        .collect();
    let neurons = &state.neurons;
    let p = &state.params;
    let params = YumaParams {
        kappa: p.kappa,
        bonds_moving_average: p.bonds_moving_average,
        bonds_penalty: p.bonds_penalty,
    };
    yuma::epoch_rows(
        &stake,
        |i| {
            neurons[i]
                .row
                .iter()
                .map(|&(j, w)| (j, Fixed::from_weight(w)))
        },
        |i| neurons[i].bonds.iter().copied(),
        &params,
    )
}

/// Credits `adds[i]` rao to neuron `i`'s owner's stake position on it (so it compounds, as
/// in Algorithm 1), while total issuance fits a `u64`; returns what was credited.
fn credit(state: &mut State, adds: &[u64]) -> u64 {
    let mut total: u64 = 0;
    for (neuron, &add) in state.neurons.iter_mut().zip(adds) {
        if add == 0 {
            continue;
        }
        let key = (neuron.coldkey, neuron.hotkey);
        let position = state.stakes.get(&key).copied().unwrap_or(0);
        // Credit only while total issuance (genesis + minted) fits a u64: then no balance,
        // position or stake can ever overflow, which the transaction checks rely on.
        let issuance_after = total
            .checked_add(add)
            .and_then(|t| t.checked_add(state.minted))
            .and_then(|m| m.checked_add(state.genesis_issuance));
        if let (Some(s), Some(p), Some(t), Some(_)) = (
            neuron.stake.checked_add(add),
            position.checked_add(add),
            total.checked_add(add),
            issuance_after,
        ) {
            neuron.stake = s;
            state.stakes.insert(key, p);
            total = t;
        }
    }
    total
}

/// Ends block `height` under the genesis mechanism, then updates `tau` when adaptive tau is
/// on. Sub-rao remainders are never minted.
///
/// - `paper`, `paper_no_self`: ranks the neurons (without the diagonal under
///   `paper_no_self`), runs the inflation step of Algorithm 1 (`S <- S + tau R / ||R||_2`,
///   the mechanism crate's [`inflation_step`]) and credits each neuron's increase, floored to
///   whole rao, to its owner's stake position on it.
/// - `yuma`: at every block whose height is a multiple of `tempo`, runs a Yuma epoch, stores
///   its consensus, trust, incentive, dividends, emission and bonds, and credits
///   `E_i * tau * tempo`, floored to whole rao, the same way. Other blocks mint nothing.
pub fn end_block(state: &mut State, height: u64) -> Vec<Event> {
    let tau = state.tau;
    let mut events = Vec::with_capacity(2);
    match state.params.mechanism {
        Mechanism::Paper | Mechanism::PaperNoSelf => {
            let stake: Vec<Fixed> = state
                .neurons
                .iter()
                .map(|n| Fixed::from_rao(n.stake))
                .collect();
            let rank = rank_of(state, &stake, state.params.mechanism.diagonal());
            let mut grown = stake.clone();
            inflation_step(&mut grown, &rank, tau);
            let adds: Vec<u64> = grown
                .iter()
                .zip(&stake)
                .map(|(&g, &s)| (g - s).to_rao_floor())
                .collect();
            for (neuron, &r) in state.neurons.iter_mut().zip(&rank) {
                neuron.rank = r;
            }
            let total = credit(state, &adds);
            state.minted += total;
            events.push(Event::Minted { height, total, tau });
        }
        Mechanism::Yuma => {
            if height.is_multiple_of(state.params.tempo) {
                let out = yuma_epoch(state);
                let amount = tau * Fixed::from_count(state.params.tempo as usize);
                let adds: Vec<u64> = out
                    .emission
                    .iter()
                    .map(|&e| (e * amount).to_rao_floor())
                    .collect();
                state
                    .neurons
                    .par_iter_mut()
                    .enumerate()
                    .with_min_len(64)
                    .for_each(|(i, neuron)| {
                        neuron.rank = out.rank[i];
                        neuron.consensus = out.consensus[i];
                        neuron.trust = out.trust[i];
                        neuron.incentive = out.incentive[i];
                        neuron.dividends = out.dividends[i];
                        neuron.emission = out.emission[i];
                        neuron.bonds.clear();
                        neuron
                            .bonds
                            .extend(out.bonds.row_iter(i).map(|(j, b)| (j as u32, b)));
                    });
                let total = credit(state, &adds);
                state.minted += total;
                events.push(Event::Minted { height, total, tau });
            }
        }
    }
    if state.params.adaptive_tau {
        let trace = state
            .neurons
            .iter()
            .map(|n| {
                n.row
                    .binary_search_by_key(&n.uid, |&(j, _)| j)
                    .map_or(Fixed::ZERO, |k| Fixed::from_weight(n.row[k].1))
            })
            .fold(Fixed::ZERO, |a, b| a + b);
        // Every row sums to exactly one, so sum(W) is n.
        let off = Fixed::from_count(state.neurons.len()) - trace;
        let p = &state.params;
        state.tau = update_tau_scalar(state.tau, p.tau_eta, p.tau_target, trace, off);
        events.push(Event::TauUpdated { tau: state.tau });
    }
    state.height = height;
    events
}

/// Applies a block to a state: checks the height, the parent, the transaction root and
/// every signature, applies the transactions in order (any refusal refuses the block), ends
/// the block, and checks the state hash in the header.
pub fn apply(state: &State, block: &Block) -> Result<(State, Vec<Event>)> {
    let h = &block.header;
    if h.height != state.height + 1 {
        return Err(Error::WrongHeight {
            expected_prev: state.height,
            got: h.height,
        });
    }
    if h.parent != state.head {
        return Err(Error::WrongParent {
            height: h.height,
            expected: state.head,
            got: h.parent,
        });
    }
    let root = tx_root(&block.txs);
    if root != h.tx_root {
        return Err(Error::TxRootMismatch {
            height: h.height,
            expected: root,
            got: h.tx_root,
        });
    }
    let in_block = |index: usize, e: Error| Error::InBlock {
        height: h.height,
        index,
        source: Box::new(e),
    };
    verify_all(&block.txs, &state.genesis).map_err(|(i, e)| in_block(i, e))?;
    let mut next = state.clone();
    let mut events = Vec::with_capacity(block.txs.len() + 2);
    for (i, tx) in block.txs.iter().enumerate() {
        events.push(apply_tx(&mut next, h.height, tx, true).map_err(|e| in_block(i, e))?);
    }
    events.extend(end_block(&mut next, h.height));
    let got = next.hash();
    if got != h.state_hash {
        return Err(Error::StateHashMismatch {
            height: h.height,
            expected: got,
            got: h.state_hash,
        });
    }
    next.head = h.hash();
    Ok((next, events))
}

/// A block built from candidate transactions.
#[derive(Debug, Clone)]
pub struct Built {
    /// The block: the candidates that applied, in order.
    pub block: Block,
    /// The state after it.
    pub state: State,
    /// Its events.
    pub events: Vec<Event>,
    /// Indices (into the candidates) of those refused, with why.
    pub rejected: Vec<(usize, Error)>,
    /// Indices of candidates deferred to a later block: a second weight update of a neuron
    /// in this block, and every later candidate of the same signer (whose nonces follow it).
    pub deferred: Vec<usize>,
}

/// Builds the next block from candidate transactions, keeping those that apply (in order),
/// refusing the rest with their errors, and deferring a neuron's second weight update in
/// one block (with the signer's later candidates) to a later block.
/// `apply(state, &built.block)` reproduces `built.state`.
pub fn build_block(state: &State, candidates: Vec<Transaction>, timestamp_ms: u64) -> Built {
    let height = state.height + 1;
    let sig_ok = verify_each(&candidates, &state.genesis);
    let mut next = state.clone();
    let mut txs = Vec::with_capacity(candidates.len());
    let mut events = Vec::with_capacity(candidates.len() + 2);
    let mut rejected = Vec::new();
    let mut deferred = Vec::new();
    let mut deferred_signers = std::collections::BTreeSet::new();
    for (i, (tx, ok)) in candidates.into_iter().zip(sig_ok).enumerate() {
        if deferred_signers.contains(&tx.signer) {
            deferred.push(i);
            continue;
        }
        let res = if ok {
            apply_tx(&mut next, height, &tx, true)
        } else {
            Err(Error::BadSignature { signer: tx.signer })
        };
        match res {
            Ok(ev) => {
                events.push(ev);
                txs.push(tx);
            }
            Err(Error::DuplicateWeightUpdate { .. }) => {
                deferred_signers.insert(tx.signer);
                deferred.push(i);
            }
            Err(e) => rejected.push((i, e)),
        }
    }
    events.extend(end_block(&mut next, height));
    let header = Header {
        height,
        parent: state.head,
        timestamp_ms,
        tx_root: tx_root(&txs),
        state_hash: next.hash(),
    };
    next.head = header.hash();
    Built {
        block: Block { header, txs },
        state: next,
        events,
        rejected,
        deferred,
    }
}

/// Replays blocks from a genesis state, checking each; returns the final state.
pub fn replay<'a>(genesis: &State, blocks: impl IntoIterator<Item = &'a Block>) -> Result<State> {
    let mut state = genesis.clone();
    for b in blocks {
        state = apply(&state, b)?.0;
    }
    Ok(state)
}
