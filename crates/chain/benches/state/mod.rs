//! The benchmark's state: `n` neurons with stake and weights (`bench/epoch_numpy.py` builds
//! the same one).

use std::collections::BTreeMap;

use bt_keys::Keypair;
use bt_ledger::fixed::normalize_row;
use bt_ledger::{Neuron, State, genesis_state};

/// The splitmix64 finaliser: the benchmark's deterministic noise (`bench/epoch_numpy.py`
/// computes the same in `uint64`).
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Noise for entry `k` of row `i`.
fn noise(i: usize, k: usize) -> u64 {
    mix(((i as u64) << 32) | k as u64)
}

/// Row `i` of the benchmark's weights at `n` neurons, as raw `(uid, weight)` pairs.
///
/// - One weight per row: on itself (the start of the `set_weights` measure).
/// - Dense (`per_row >= n`): every neuron weighs every neuron, `1 + (31 i + 17 j) mod 97`.
/// - Sparse (`per_row` weights per row): a stake majority agrees. The
///   "good" neurons are the uids divisible by 16 (256 of 4096), each of quality `q_g = 1 + (g / 16) mod 64`. Four rows in five are honest: they weigh
///   the good neurons at `100 q_g` plus noise in `[0, 400)`, skipping each with probability
///   1/8, and fill the rest of the row with small weights (`1..=20`) on random other
///   neurons. The fifth row (uid divisible by 5) weighs `per_row` random neurons at random
///   (`1..=1000`). Repeated uids add up. So every good column has a stake majority (about
///   70% of stake) behind a positive consensus, the random weights are clipped to 0, and
///   consensus, clipping, bonds and dividends all do real work.
fn raw_row(n: usize, per_row: usize, i: usize) -> Vec<(u32, u32)> {
    if per_row == 1 {
        return vec![(i as u32, 1)];
    }
    if per_row >= n {
        return (0..n)
            .map(|j| (j as u32, 1 + ((i * 31 + j * 17) % 97) as u32))
            .collect();
    }
    let mut row: BTreeMap<u32, u32> = BTreeMap::new();
    let mut add = |j: usize, w: u64| *row.entry(j as u32).or_insert(0) += w as u32;
    if i.is_multiple_of(5) {
        for k in 0..per_row {
            let r = noise(i, k);
            add((r % n as u64) as usize, 1 + (r >> 32) % 1000);
        }
    } else {
        let mut used = 0;
        for g in (0..n).step_by(16).take(per_row) {
            let r = noise(i, g);
            if !r.is_multiple_of(8) {
                let q = 1 + ((g / 16) % 64) as u64;
                add(g, 100 * q + (r >> 32) % 400);
                used += 1;
            }
        }
        for k in used..per_row {
            let r = noise(i, n + k);
            let mut j = (r % n as u64) as usize;
            if j.is_multiple_of(16) {
                j += 1;
            }
            add(j, 1 + (r >> 32) % 20);
        }
    }
    row.into_iter().collect()
}

/// A state with `n` neurons, each with the weights of [`raw_row`] and `1 + (i mod 50)` TAO
/// of stake, under `mechanism` (Yuma with `tempo = 1`: an epoch every block).
/// `bench/epoch_numpy.py` builds the same state.
pub fn network(n: usize, per_row: usize, keys: &[Keypair], mechanism: &str) -> State {
    let mut s = genesis_state(&format!(
        "[params]\ntau = 1.0\nepsilon = 0.5\nmax_neurons = {n}\nblock_time_ms = 1000\nmax_tx_bytes = 65536\n\
         mechanism = \"{mechanism}\"\ntempo = 1\n"
    ))
    .expect("genesis");
    let owner = keys[0].public();
    for (i, k) in keys.iter().enumerate().take(n) {
        let raw = raw_row(n, per_row, i);
        let stake = 1_000_000_000 * (1 + (i as u64 % 50));
        let mut neuron = Neuron::new(
            i as u32,
            k.public(),
            owner,
            "127.0.0.1:1".parse().expect("addr"),
            0,
        );
        neuron.stake = stake;
        neuron.row = normalize_row(&raw).expect("positive");
        s.neurons.push(neuron);
        s.hotkeys.insert(k.public(), i as u32);
        s.stakes.insert((owner, k.public()), stake);
    }
    s.genesis_issuance = s.stakes.values().sum();
    s
}

/// The benchmark's signing key of neuron `i`.
pub fn key(i: usize) -> Keypair {
    let mut seed = [7u8; 32];
    seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
    Keypair::from_mini_secret(seed)
}

/// The raw row neuron `i` of `n` sets in update `b` of the `set_weights` benchmarks: 10% of
/// its row moved to 16 peers (raw 1 each against 144 on itself).
pub fn moved_row(n: usize, i: usize, b: usize) -> Vec<(u32, u32)> {
    let mut row: Vec<(u32, u32)> = (1..=16)
        .map(|d| (((i + d * 7 + b) % n) as u32, 1))
        .collect();
    row.push((i as u32, 144));
    row.sort_unstable();
    row.dedup_by_key(|p| p.0);
    row
}
