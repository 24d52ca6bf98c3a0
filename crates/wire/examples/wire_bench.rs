//! The Rust side of the benchmark against hivemind: one axon serving hivemind's `ffn` expert
//! (width `--dim`, inner 4x) on loopback, `--clients` concurrent dendrites sending batches of
//! `--batch` rows for `--secs` seconds each; forward-only and forward+backward, with f32 and
//! bf16 on the wire. Prints one JSON line per measurement and a table.
//!
//! `cargo run --release -p bt-wire --example wire_bench -- --batch 64 --clients 4 --secs 10`
//! (`--workers W`: axon worker threads, default 2; `--threads T`: threads inside one model
//! call, default 1; 0 = rayon's global pool; `--cache-mib M`: the expert's activation cache,
//! default 128, 0 = off).

// The allocator `bt` runs with, so that the figures are those of the product.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bt_keys::Keypair;
use bt_wire::{
    Axon, AxonConfig, DType, Dendrite, DendriteConfig, FeedForwardExpert, MemoryStakes, Peer,
    ReturnCode, Tensor,
};

fn lo_bytes() -> u64 {
    std::fs::read_to_string("/sys/class/net/lo/statistics/tx_bytes")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

struct Opts {
    dim: usize,
    batch: usize,
    clients: usize,
    secs: f64,
    warmup: f64,
    workers: usize,
    threads: usize,
    cache_mib: usize,
}

async fn measure(
    opts: &Opts,
    peer: &Peer,
    backward: bool,
    dtype: DType,
) -> anyhow::Result<(f64, f64, u64)> {
    let samples = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let t0 = Instant::now();
    let warm_end = t0 + Duration::from_secs_f64(opts.warmup);
    let end = warm_end + Duration::from_secs_f64(opts.secs);
    let lo_start = Arc::new(AtomicU64::new(0));
    let lo_start_set = Arc::new(std::sync::Once::new());
    for c in 0..opts.clients {
        let cfg = DendriteConfig {
            wire_dtype: dtype,
            response_dtype: dtype,
            timeout: Duration::from_secs(60),
            ..DendriteConfig::default()
        };
        let d = Dendrite::new(Keypair::from_mini_secret([c as u8 + 1; 32]), cfg)?;
        let peer = peer.clone();
        let (samples, failures) = (samples.clone(), failures.clone());
        let (lo_start, once) = (lo_start.clone(), lo_start_set.clone());
        let (dim, batch) = (opts.dim, opts.batch);
        tasks.push(tokio::spawn(async move {
            let mut xs: Vec<f32> = (0..batch * dim)
                .map(|i| ((i * 7919 + c) % 1000) as f32 / 1000.0 - 0.5)
                .collect();
            let g = Tensor::from_f32(vec![batch, dim], &vec![1e-3; batch * dim]).expect("grad");
            for step in 0u64.. {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                // A new batch each time (as a learner sends), so that the expert's activation
                // cache can only help Backward through the Forward just before it.
                for row in xs.chunks_exact_mut(dim) {
                    row[0] = (step % 100_000) as f32 * 1e-5 + c as f32;
                }
                let x = Tensor::from_f32(vec![batch, dim], &xs).expect("input");
                let r = d.forward(&peer, std::slice::from_ref(&x)).await;
                let mut ok = r.code == ReturnCode::Success;
                if ok && backward {
                    let r = d
                        .backward(&peer, std::slice::from_ref(&x), std::slice::from_ref(&g))
                        .await;
                    ok = r.code == ReturnCode::Success;
                }
                if now >= warm_end {
                    once.call_once(|| lo_start.store(lo_bytes(), Ordering::SeqCst));
                    if Instant::now() <= end {
                        if ok {
                            samples.fetch_add(batch as u64, Ordering::Relaxed);
                        } else {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let lo = lo_bytes().saturating_sub(lo_start.load(Ordering::SeqCst));
    let n = samples.load(Ordering::Relaxed);
    let elapsed = opts.secs;
    Ok((
        n as f64 / elapsed,
        lo as f64 / n.max(1) as f64,
        failures.load(Ordering::Relaxed),
    ))
}

fn main() -> anyhow::Result<()> {
    let mut opts = Opts {
        dim: 1024,
        batch: 64,
        clients: 4,
        secs: 10.0,
        warmup: 2.0,
        workers: 2,
        threads: 1,
        cache_mib: bt_wire::expert::DEFAULT_CACHE_BYTES >> 20,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--dim" => opts.dim = val()?.parse()?,
            "--batch" => opts.batch = val()?.parse()?,
            "--clients" => opts.clients = val()?.parse()?,
            "--secs" => opts.secs = val()?.parse()?,
            "--warmup" => opts.warmup = val()?.parse()?,
            "--workers" => opts.workers = val()?.parse()?,
            "--threads" => opts.threads = val()?.parse()?,
            "--cache-mib" => opts.cache_mib = val()?.parse()?,
            other => bail!("unknown option {other}"),
        }
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let key = Keypair::from_uri("//Bob")?;
        let expert = FeedForwardExpert::hivemind_ffn(opts.dim, 0.0, 1)
            .with_threads(opts.threads)
            .with_activation_cache(opts.cache_mib << 20);
        let expert = Arc::new(expert);
        let stats = expert.clone();
        let config = AxonConfig { workers: opts.workers, ..AxonConfig::default() };
        let axon = Axon::new(key.public(), expert, Arc::new(MemoryStakes::new()), config)?;
        let handle = axon.spawn("127.0.0.1:0".parse()?).await?;
        let peer = Peer { hotkey: key.public(), endpoint: handle.endpoint() };
        let mut rows = Vec::new();
        for backward in [false, true] {
            for dtype in [DType::F32, DType::BF16] {
                let (sps, bytes, fails) = measure(&opts, &peer, backward, dtype).await?;
                let mode = if backward { "forward+backward" } else { "forward" };
                println!(
                    "{{\"system\":\"bt-wire\",\"mode\":\"{mode}\",\"wire\":\"{dtype}\",\"batch\":{},\"clients\":{},\"samples_per_s\":{sps:.1},\"loopback_bytes_per_sample\":{bytes:.0},\"failures\":{fails}}}",
                    opts.batch, opts.clients
                );
                rows.push((mode, dtype, sps, bytes));
            }
        }
        let (calls, fused) = handle.axon.metrics().batches(bt_wire::Method::Forward);
        eprintln!("axon: {calls} forward model calls served {fused} forward requests");
        let (calls, fused) = handle.axon.metrics().batches(bt_wire::Method::Backward);
        eprintln!("axon: {calls} backward model calls served {fused} backward requests");
        let (hits, misses) = stats.cache_stats();
        eprintln!("expert: {hits} backward calls took cached activations, {misses} recomputed");
        println!("{:<18} {:<5} {:>12} {:>16}", "mode", "wire", "samples/s", "bytes/sample");
        for (mode, dtype, sps, bytes) in rows {
            println!("{mode:<18} {:<5} {sps:>12.1} {bytes:>16.0}", dtype.to_string());
        }
        handle.shutdown().await?;
        anyhow::Ok(())
    })
}
