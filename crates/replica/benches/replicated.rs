//! The replicated ledger against a single node, side by side in one run: signed
//! `set_weights` per second through the ledger API (acknowledged: durable; included: in a
//! block), and a metagraph query, with n = 4096 registered neurons each setting its row once.
//! The three validators run in this process over loopback, so on one machine they share its
//! cores (every replica verifies every signature again when it applies a block).
//!
//! Run: `cargo bench -p bt-replica --bench replicated` (release mode). `BT_BENCH_N` changes
//! the number of neurons, `BT_BENCH_CLIENTS` the concurrent API clients (default 64).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bt_chain::{Client, NodeConfig, serve};
use bt_keys::Keypair;
use bt_ledger::{Call, State, Transaction};
use bt_replica::{Peer, Replica, ReplicaConfig};

#[path = "../../chain/benches/state/mod.rs"]
#[allow(dead_code)]
mod state;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What one ledger did with the load.
struct Run {
    retries: u64,
    /// Why submissions were asked again: each error's message, counted.
    why: BTreeMap<String, u64>,
    acked_per_s: f64,
    included_per_s: f64,
    metagraph_ms: f64,
}

/// Submits every transaction through `clients` concurrent API clients spread over `urls`,
/// each waiting for its acknowledgement before the next; then waits until the pool is empty
/// (everything in a block), and times a metagraph query.
async fn drive(urls: &[String], txs: &[Vec<u8>], clients: usize) -> Run {
    let t0 = Instant::now();
    let chunk = txs.len().div_ceil(clients);
    let mut tasks = Vec::new();
    for (k, part) in txs.chunks(chunk).enumerate() {
        let url = urls[k % urls.len()].clone();
        let part = part.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(&url).await.expect("client");
            let mut retries = 0u64;
            let mut why = BTreeMap::<String, u64>::new();
            for tx in part {
                // As a client does: an answer of "no leader" (an election under load) is
                // asked again.
                loop {
                    match c.submit_bytes(tx.clone()).await {
                        Ok(_) => break,
                        Err(e) => {
                            retries += 1;
                            *why.entry(e.to_string()).or_default() += 1;
                            assert!(retries < 10_000, "never acknowledged: {e}");
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            }
            (retries, why)
        }));
    }
    let mut retries = 0;
    let mut why = BTreeMap::<String, u64>::new();
    for t in tasks {
        let (r, w) = t.await.expect("client task");
        retries += r;
        for (k, v) in w {
            *why.entry(k).or_default() += v;
        }
    }
    let acked = t0.elapsed();
    let mut c = Client::connect(&urls[0]).await.expect("client");
    while c.status().await.expect("status").pending > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let included = t0.elapsed();
    let mut times = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        c.metagraph(None, false).await.expect("metagraph");
        times.push(t.elapsed());
    }
    times.sort();
    Run {
        retries,
        why,
        acked_per_s: txs.len() as f64 / acked.as_secs_f64(),
        included_per_s: txs.len() as f64 / included.as_secs_f64(),
        metagraph_ms: times[times.len() / 2].as_secs_f64() * 1e3,
    }
}

fn free() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").expect("port")
}

fn main() {
    let n = env("BT_BENCH_N", 4096);
    let clients = env("BT_BENCH_CLIENTS", 64);
    let keys: Vec<Keypair> = (0..n).map(state::key).collect();
    let mut genesis: State = state::network(n, 1, &keys, "paper");
    genesis.params.block_time_ms = 100;
    let txs: Vec<Vec<u8>> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let row = state::moved_row(n, i, 0);
            Transaction::sign(
                k,
                &genesis.genesis,
                genesis.nonce(&k.public()),
                Call::SetWeights { row },
            )
            .encode()
        })
        .collect();
    let rt = tokio::runtime::Runtime::new().expect("runtime");

    let single = rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = NodeConfig::new(dir.path().to_path_buf(), Some(genesis.clone()));
        cfg.listen = "127.0.0.1:0".parse().expect("addr");
        cfg.rate_per_sec = 1_000_000;
        cfg.burst = 1_000_000;
        let node = serve(cfg).await.expect("node");
        let run = drive(&[format!("http://{}", node.addr)], &txs, clients).await;
        node.stop().await.expect("stops");
        run
    });

    let replicated = rt.block_on(async {
        let dirs: Vec<tempfile::TempDir> =
            (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
        let listeners: Vec<_> = (0..3).map(|_| (free(), free())).collect();
        let members: BTreeMap<u64, Peer> = listeners
            .iter()
            .enumerate()
            .map(|(k, (r, a))| {
                (
                    k as u64 + 1,
                    Peer {
                        raft: r.local_addr().expect("addr").to_string(),
                        api: a.local_addr().expect("addr").to_string(),
                    },
                )
            })
            .collect();
        let mut rs = Vec::new();
        for (k, (raft, api)) in listeners.into_iter().enumerate() {
            let mut cfg = ReplicaConfig::new(
                k as u64 + 1,
                dirs[k].path().to_path_buf(),
                Some(genesis.clone()),
                members.clone(),
            );
            cfg.raft_listener = Some(raft);
            cfg.api_listener = Some(api);
            cfg.rate = (1_000_000, 1_000_000);
            rs.push(Replica::start(cfg).await.expect("validator"));
        }
        // Load starts once all three know the same leader.
        let leader = loop {
            let known: Vec<_> = rs.iter().map(|r| r.status().leader).collect();
            if let Some(l) = known[0].filter(|l| known.iter().all(|k| *k == Some(*l))) {
                break rs[(l - 1) as usize].api_addr();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let run = drive(&[format!("http://{leader}")], &txs, clients).await;
        for r in rs {
            r.shutdown().await.expect("stops");
        }
        run
    });

    println!(
        "ledger API under load: n = {n} neurons, {} signed set_weights, {clients} clients, {} cores",
        txs.len(),
        std::thread::available_parallelism().map_or(1, |c| c.get())
    );
    println!();
    println!(
        "{:<44} {:>14} {:>14} {:>9}",
        "measure", "single node", "3 validators", "ratio"
    );
    println!("{}", "-".repeat(84));
    for (label, a, b, unit) in [
        (
            "set_weights acknowledged (durable) per s",
            single.acked_per_s,
            replicated.acked_per_s,
            "/s",
        ),
        (
            "set_weights included in a block per s",
            single.included_per_s,
            replicated.included_per_s,
            "/s",
        ),
        (
            "metagraph query, n neurons (median of 7)",
            single.metagraph_ms,
            replicated.metagraph_ms,
            " ms",
        ),
    ] {
        println!(
            "{:<44} {:>12.1}{unit:<2} {:>12.1}{unit:<2} {:>8.2}x",
            label,
            a,
            b,
            b / a
        );
    }
    println!(
        "submissions asked again (no leader for a moment): single node {}, 3 validators {}",
        single.retries, replicated.retries
    );
    for (name, run) in [("single node", &single), ("3 validators", &replicated)] {
        for (e, k) in &run.why {
            println!("  {name}: {k} x {e}");
        }
    }
}
