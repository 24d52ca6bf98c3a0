//! The ledger benchmark: one run prints one table.
//!
//! - signed `set_weights` transactions verified (batched, on every core) and applied, per
//!   second, at n = 4096 neurons;
//! - one block's inflation step (ranks + `S <- S + tau R/||R||` + crediting) at n = 256,
//!   1024, 4096, dense rows and 256 weights per row;
//! - a metagraph query over gRPC at n = 4096 (without and with the weight rows).
//!
//! Run: `cargo bench -p bt-chain --bench ledger` (release mode).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bt_chain::{Client, NodeConfig, serve};
use bt_keys::Keypair;
use bt_ledger::fixed::normalize_row;
use bt_ledger::tx::verify_all;
use bt_ledger::{Call, Fixed, Neuron, State, Transaction, apply_tx, end_block, genesis_state};

fn key(i: usize) -> Keypair {
    let mut seed = [7u8; 32];
    seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
    Keypair::from_mini_secret(seed)
}

/// A state with `n` neurons, each with `per_row` weights (all of them when `per_row >= n`),
/// and stake.
fn network(n: usize, per_row: usize, keys: &[Keypair]) -> State {
    let mut s = genesis_state(&format!(
        "[params]\ntau = 1.0\nepsilon = 0.5\nmax_neurons = {n}\nblock_time_ms = 1000\nmax_tx_bytes = 65536\n"
    ))
    .expect("genesis");
    let owner = keys[0].public();
    for (i, k) in keys.iter().enumerate().take(n) {
        let raw: Vec<(u32, u32)> = if per_row >= n {
            (0..n)
                .map(|j| (j as u32, 1 + ((i * 31 + j * 17) % 97) as u32))
                .collect()
        } else {
            let mut r: Vec<(u32, u32)> = (0..per_row)
                .map(|k| (((i + k * 13) % n) as u32, 1 + ((i + k) % 89) as u32))
                .collect();
            r.sort_unstable();
            r.dedup_by_key(|p| p.0);
            r
        };
        let stake = 1_000_000_000 * (1 + (i as u64 % 50));
        s.neurons.push(Neuron {
            uid: i as u32,
            hotkey: k.public(),
            coldkey: owner,
            endpoint: "127.0.0.1:1".parse().expect("addr"),
            stake,
            rank: Fixed::ZERO,
            row: normalize_row(&raw).expect("positive"),
            registered_at: 0,
            last_update: 0,
        });
        s.hotkeys.insert(k.public(), i as u32);
        s.stakes.insert((owner, k.public()), stake);
    }
    s.genesis_issuance = s.stakes.values().sum();
    let _: &BTreeMap<_, _> = &s.accounts;
    s
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let n = 4096;
    let keys: Vec<Keypair> = (0..n).map(key).collect();
    println!(
        "ledger benchmark ({} threads for signature batches)",
        rayon::current_num_threads()
    );
    println!();
    println!("{:<58} {:>14}", "measure", "result");
    println!("{}", "-".repeat(73));

    // set_weights: every neuron moves 10% of its row to 16 peers, one update per block.
    let base = network(n, 1, &keys);
    let blocks = 3;
    let mut state = base.clone();
    let mut total_txs = 0usize;
    let mut busy = Duration::ZERO;
    for b in 0..blocks {
        let height = state.height + 1;
        let txs: Vec<Transaction> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let mut row: Vec<(u32, u32)> = (1..=16)
                    .map(|d| (((i + d * 7 + b) % n) as u32, 1))
                    .collect();
                row.push((i as u32, 144));
                row.sort_unstable();
                row.dedup_by_key(|p| p.0);
                Transaction::sign(
                    k,
                    &state.genesis,
                    state.nonce(&k.public()),
                    Call::SetWeights { row },
                )
            })
            .collect();
        let t = Instant::now();
        verify_all(&txs, &state.genesis).expect("all verify");
        for tx in &txs {
            apply_tx(&mut state, height, tx, true).expect("applies");
        }
        busy += t.elapsed();
        total_txs += txs.len();
        end_block(&mut state, height);
    }
    let rate = total_txs as f64 / busy.as_secs_f64();
    println!(
        "{:<58} {:>12.0}/s",
        format!("set_weights verified + applied (n = {n}, {total_txs} txs)"),
        rate
    );

    for &n in &[256usize, 1024, 4096] {
        for &(label, per_row) in &[("dense", usize::MAX), ("256 per row", 256usize)] {
            let mut s = network(n, per_row, &keys);
            let reps = if n == 4096 && per_row > n { 5 } else { 11 };
            let times: Vec<Duration> = (0..reps)
                .map(|h| {
                    let t = Instant::now();
                    end_block(&mut s, h as u64 + 1);
                    t.elapsed()
                })
                .collect();
            println!(
                "{:<58} {:>11.2} ms",
                format!("inflation step, n = {n}, {label} (median of {reps})"),
                median(times).as_secs_f64() * 1e3
            );
        }
    }

    // State hash, for scale (the node hashes the state once per block).
    let s = network(4096, 256, &keys);
    let t = Instant::now();
    let h = s.hash();
    println!(
        "{:<58} {:>11.2} ms",
        "state hash, n = 4096, 256 per row",
        t.elapsed().as_secs_f64() * 1e3
    );
    let _ = h;

    // Metagraph over gRPC, from a genesis that already holds 4096 neurons.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = NodeConfig::new(dir.path().to_path_buf(), Some(s));
    cfg.listen = "127.0.0.1:0".parse().expect("addr");
    cfg.rate_per_sec = 1_000_000;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let node = serve(cfg).await.expect("node");
        let mut c = Client::connect(&format!("http://{}", node.addr))
            .await
            .expect("client");
        for (label, weights) in [
            ("without weights", false),
            ("with 256 weights per row", true),
        ] {
            let mut times = Vec::new();
            for _ in 0..11 {
                let t = Instant::now();
                let mg = c.metagraph(None, weights).await.expect("metagraph");
                times.push(t.elapsed());
                assert_eq!(mg.neurons.len(), 4096);
            }
            println!(
                "{:<58} {:>11.2} ms",
                format!("metagraph query over gRPC, n = 4096, {label}"),
                median(times).as_secs_f64() * 1e3
            );
        }
        node.stop().await.expect("stops");
    });
}
