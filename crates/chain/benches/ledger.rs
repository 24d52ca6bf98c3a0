//! The ledger benchmark: one run prints one table.
//!
//! - signed `set_weights` transactions verified (batched, on every core) and applied, per
//!   second, at n = 4096 neurons;
//! - one block's inflation step (ranks + `S <- S + tau R/||R||` + crediting) at n = 256,
//!   1024, 4096, dense rows and 256 weights per row;
//! - one Yuma epoch in fixed point at n = 4096 with 256 weights per row, from zero bonds and
//!   with the bonds of earlier epochs (`BT_BENCH_JSON=path` also writes it, the dense paper
//!   step and their results for `bench/epoch_bench.sh`);
//! - a metagraph query over gRPC at n = 4096 (without and with the weight rows).
//!
//! The sparse states (256 weights per row) are not uniform: a stake majority agrees on a
//! common set of good neurons with noise while every fifth row weighs at random, so Yuma's
//! consensus, clipping, bonds and dividends all do real work (`state::raw_row`). The dense
//! rows are the paper's case, every neuron weighing every neuron.
//!
//! The binary allocates through mimalloc, as the workspace's other benchmarks do.
//!
//! Run: `cargo bench -p bt-chain --bench ledger` (release mode).

use std::time::{Duration, Instant};

use bt_chain::{Client, NodeConfig, serve};
use bt_keys::Keypair;
use bt_ledger::apply::yuma_epoch;
use bt_ledger::tx::verify_all;
use bt_ledger::{Call, State, Transaction, apply_tx, end_block, ranks};

mod state;
use state::{key, moved_row, network};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
                let row = moved_row(n, i, b);
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

    // Yuma: one epoch in fixed point at n = 4096 with 256 weights per row (the mechanism with
    // its inputs read from the state), from zero bonds and with the bonds of earlier epochs,
    // then the whole block end (epoch, crediting, storing the results and bonds).
    let mut json = serde_json::Map::new();
    {
        let reps = 7;
        let time_epochs = |s: &State| -> f64 {
            let times: Vec<Duration> = (0..reps)
                .map(|_| {
                    let t = Instant::now();
                    let out = yuma_epoch(s);
                    let e = t.elapsed();
                    std::hint::black_box(out);
                    e
                })
                .collect();
            median(times).as_secs_f64() * 1e3
        };
        // From zero bonds: the state the NumPy side rebuilds.
        let fresh = network(n, 256, &keys, "yuma");
        let out = yuma_epoch(&fresh);
        let agreed = out.consensus.iter().filter(|c| c.to_bits() > 0).count();
        let zero_ms = time_epochs(&fresh);
        // With the bonds of three earlier epochs.
        let mut s = fresh.clone();
        for h in 1..=3 {
            end_block(&mut s, h);
        }
        let bonds: usize = s.neurons.iter().map(|x| x.bonds.len()).sum();
        let bonds_ms = time_epochs(&s);
        let times: Vec<Duration> = (0..reps)
            .map(|h| {
                let t = Instant::now();
                end_block(&mut s, h as u64 + 4);
                t.elapsed()
            })
            .collect();
        let block_ms = median(times).as_secs_f64() * 1e3;
        println!(
            "{:<58} {:>11.2} ms",
            format!("yuma epoch, n = {n}, 256 per row, zero bonds (median of {reps})"),
            zero_ms
        );
        println!(
            "{:<58} {:>11.2} ms",
            format!("yuma epoch, same, {bonds} bonds (median of {reps})"),
            bonds_ms
        );
        println!(
            "{:<58} {:>11.2} ms",
            format!("yuma block end: epoch, credit, store (median of {reps})"),
            block_ms
        );
        println!(
            "{:<58} {:>14}",
            "yuma columns with a positive consensus",
            format!("{agreed} of {n}")
        );
        json.insert("yuma_epoch_ms".into(), zero_ms.into());
        json.insert("yuma_epoch_bonds_ms".into(), bonds_ms.into());
        json.insert(
            "yuma_consensus".into(),
            out.consensus
                .iter()
                .map(|x| x.to_f64())
                .collect::<Vec<f64>>()
                .into(),
        );
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
