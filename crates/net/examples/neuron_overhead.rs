//! What querying peers adds to a training step: one neuron trains alone, then with 1, 2 and 4
//! peers (k = all of them) that serve Forward and Backward over loopback gRPC but do not train.
//! The peers run in the same process, so their model work shares the same cores: the figures
//! bound the overhead from above (peers on other machines cost the learner only the wire).
//!
//! `cargo run --release -p bt-net --example neuron_overhead -- [--steps N] [--batch B]`

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use bt_net::local::hotkey;
use bt_neuron::{Neuron, NeuronConfig};

fn flag(name: &str, default: usize) -> Result<usize, String> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .ok_or(format!("{name} needs a value"))?
            .parse()
            .map_err(|e| format!("{name}: {e}")),
    }
}

fn config(name: &str, seed: u64, batch: usize, k: usize) -> NeuronConfig {
    let mut cfg = NeuronConfig {
        name: name.into(),
        ..NeuronConfig::default()
    };
    cfg.train.seed = seed;
    cfg.train.batch = batch;
    cfg.router.k = k.max(1);
    cfg
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    #[allow(unsafe_code)]
    // SAFETY: the first statement of `main`: no other thread exists yet.
    unsafe {
        bt_neuron::ops::configure_candle_threads();
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let steps = flag("--steps", 60)?;
    let batch = flag("--batch", 16)?;
    let warmup = 5;
    let seq = NeuronConfig::default().model.seq;
    println!("batch {batch} x {seq} tokens, {steps} timed steps after {warmup} warm-up steps\n");
    println!("| peers queried | tokens/s | ms/step | of which peer queries | slowdown vs alone |");
    println!("|---:|---:|---:|---:|---:|");
    let mut alone_ms = 0.0;
    for k in [0usize, 1, 2, 4] {
        let mut peers = Vec::new();
        for p in 0..k {
            peers.push(
                Neuron::start(
                    config(&format!("peer{p}"), 100 + p as u64, batch, 1),
                    hotkey(&format!("peer{p}"))?,
                    None,
                )
                .await?,
            );
        }
        let mut me = Neuron::start(config("me", 1, batch, k), hotkey("me")?, None).await?;
        let table = peers
            .iter()
            .enumerate()
            .filter_map(|(uid, p)| p.as_peer().map(|peer| (uid + 1, peer)))
            .collect();
        me.set_peers(table)?;
        for _ in 0..warmup {
            me.train_step().await?;
        }
        let start = Instant::now();
        let mut net = Duration::ZERO;
        let mut answered = 0;
        for _ in 0..steps {
            let r = me.train_step().await?;
            net += r.network_time;
            answered += r.answered;
        }
        let secs = start.elapsed().as_secs_f64();
        let ms = secs * 1e3 / steps as f64;
        if k == 0 {
            alone_ms = ms;
        }
        if k > 0 && answered < k * steps {
            eprintln!("warning: {answered} of {} peer answers arrived", k * steps);
        }
        println!(
            "| {k} | {:.0} | {ms:.1} | {:.1} ms | {:.2}x |",
            (steps * batch * seq) as f64 / secs,
            net.as_secs_f64() * 1e3 / steps as f64,
            ms / alone_ms
        );
        me.shutdown().await?;
        for p in peers {
            p.shutdown().await?;
        }
    }
    Ok(())
}
