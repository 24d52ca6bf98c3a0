//! The ledger benchmark: one run prints one table.
//!
//! - signed `set_weights` transactions verified (batched, on every core) and applied, per
//!   second, at n = 4096 neurons;
//! - one block's inflation step (ranks + `S <- S + tau R/||R||` + crediting) at n = 256,
//!   1024, 4096, dense rows and 256 weights per row;
//! - one Yuma epoch in fixed point at n = 4096 with 256 weights per row (`BT_BENCH_JSON=path`
//!   also writes it, the dense paper step and their results for `bench/epoch_bench.sh`);
//! - a metagraph query over gRPC at n = 4096 (without and with the weight rows).
//!
//! Run: `cargo bench -p bt-chain --bench ledger` (release mode).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bt_chain::{Client, NodeConfig, serve};
use bt_keys::Keypair;
use bt_ledger::apply::yuma_epoch;
use bt_ledger::fixed::normalize_row;
use bt_ledger::tx::verify_all;
use bt_ledger::{Call, Neuron, State, Transaction, apply_tx, end_block, genesis_state, ranks};

fn key(i: usize) -> Keypair {
    let mut seed = [7u8; 32];
    seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
    Keypair::from_mini_secret(seed)
}

/// A state with `n` neurons, each with `per_row` weights (all of them when `per_row >= n`),
/// and stake, under `mechanism` (Yuma with `tempo = 1`: an epoch every block).
/// `bench/epoch_numpy.py` builds the same state.
fn network(n: usize, per_row: usize, keys: &[Keypair], mechanism: &str) -> State {
    let mut s = genesis_state(&format!(
        "[params]\ntau = 1.0\nepsilon = 0.5\nmax_neurons = {n}\nblock_time_ms = 1000\nmax_tx_bytes = 65536\n\
         mechanism = \"{mechanism}\"\ntempo = 1\n"
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
    let base = network(n, 1, &keys, "paper");
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
            let mut s = network(n, per_row, &keys, "paper");
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

    // Yuma: one epoch in fixed point (the mechanism alone, then the whole block end with
    // crediting), at n = 4096 with 256 weights per row, from zero bonds and then with the
    // bonds of earlier epochs.
    let mut json = serde_json::Map::new();
    {
        let mut s = network(n, 256, &keys, "yuma");
        let t = Instant::now();
        end_block(&mut s, 1);
        let first = t.elapsed();
        let reps = 7;
        let times: Vec<Duration> = (0..reps)
            .map(|_| {
                let t = Instant::now();
                let out = yuma_epoch(&s);
                let e = t.elapsed();
                std::hint::black_box(out);
                e
            })
            .collect();
        let epoch_ms = median(times).as_secs_f64() * 1e3;
        let times: Vec<Duration> = (0..reps)
            .map(|h| {
                let t = Instant::now();
                end_block(&mut s, h as u64 + 2);
                t.elapsed()
            })
            .collect();
        let block_ms = median(times).as_secs_f64() * 1e3;
        let bonds: usize = s.neurons.iter().map(|x| x.bonds.len()).sum();
        println!(
            "{:<58} {:>11.2} ms",
            "yuma epoch from zero bonds, n = 4096, 256 per row",
            first.as_secs_f64() * 1e3
        );
        println!(
            "{:<58} {:>11.2} ms",
            format!("yuma epoch, n = 4096, 256 per row (median of {reps})"),
            epoch_ms
        );
        println!(
            "{:<58} {:>11.2} ms",
            format!("yuma block end (epoch + credit), {bonds} bonds"),
            block_ms
        );
        // The state the NumPy side rebuilds: one epoch from zero bonds.
        let fresh = network(n, 256, &keys, "yuma");
        let out = yuma_epoch(&fresh);
        json.insert("yuma_epoch_ms".into(), epoch_ms.into());
        json.insert(
            "yuma_emission".into(),
            out.emission
                .iter()
                .map(|x| x.to_f64())
                .collect::<Vec<f64>>()
                .into(),
        );
    }
    {
        let mut s = network(n, usize::MAX, &keys, "paper");
        let reps = 5;
        let rank: Vec<f64> = ranks(&s).iter().map(|x| x.to_f64()).collect();
        let times: Vec<Duration> = (0..reps)
            .map(|h| {
                let t = Instant::now();
                end_block(&mut s, h as u64 + 1);
                t.elapsed()
            })
            .collect();
        json.insert(
            "paper_dense_ms".into(),
            (median(times).as_secs_f64() * 1e3).into(),
        );
        json.insert("paper_rank".into(), rank.into());
    }
    json.insert("threads".into(), rayon::current_num_threads().into());
    if let Ok(path) = std::env::var("BT_BENCH_JSON") {
        std::fs::write(&path, serde_json::Value::Object(json).to_string()).expect("writes");
    }

    // State hash, for scale (the node hashes the state once per block).
    let s = network(4096, 256, &keys, "paper");
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
