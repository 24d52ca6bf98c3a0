//! A Rust dendrite that queries one axon for a while and prints what it measured as one JSON
//! line: the driver of `scripts/python-bench.sh`, which compares the Python package's
//! dendrite and axon with Rust's.
//!
//! `cargo run --release -p bt-wire --example wire_client -- --endpoint http://127.0.0.1:50051
//! --hotkey 5F... --dim 256 --batch 64 --clients 1 --secs 5`
//!
//! Options: `--clients C` concurrent callers (each waits for its answer before the next
//! call), `--secs S` measured after `--warmup W` seconds, `--backward` to time
//! Forward+Backward pairs.

// The allocator `bt` runs with, so that the figures are those of the product.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bt_keys::{Keypair, PublicKey};
use bt_wire::{Dendrite, DendriteConfig, Peer, ReturnCode, Tensor};

fn main() -> anyhow::Result<()> {
    let mut endpoint = None;
    let mut hotkey = None;
    let (mut dim, mut batch, mut clients) = (256usize, 64usize, 1usize);
    let (mut secs, mut warmup, mut backward) = (5.0f64, 1.0f64, false);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--endpoint" => endpoint = Some(val()?),
            "--hotkey" => hotkey = Some(PublicKey::from_ss58(&val()?)?),
            "--dim" => dim = val()?.parse()?,
            "--batch" => batch = val()?.parse()?,
            "--clients" => clients = val()?.parse()?,
            "--secs" => secs = val()?.parse()?,
            "--warmup" => warmup = val()?.parse()?,
            "--backward" => backward = true,
            other => bail!("unknown option {other}"),
        }
    }
    if clients == 0 || batch == 0 || dim == 0 || secs <= 0.0 {
        bail!("--clients, --batch, --dim and --secs must be above 0");
    }
    let peer = Peer {
        endpoint: endpoint.context("--endpoint is required")?,
        hotkey: hotkey.context("--hotkey is required")?,
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let calls = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(AtomicU64::new(0));
        let busy_ns = Arc::new(AtomicU64::new(0));
        let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let start = Instant::now();
        let end = start + Duration::from_secs_f64(warmup + secs);
        let mut tasks = Vec::new();
        for c in 0..clients {
            let key = Keypair::from_uri(&format!("//Alice//bench{c}"))?;
            let d = Dendrite::new(key, DendriteConfig::default())?;
            let peer = peer.clone();
            let x = Tensor::from_f32(vec![batch, dim], &vec![0.25f32; batch * dim])?;
            let g = Tensor::from_f32(vec![batch, dim], &vec![1e-3f32; batch * dim])?;
            let (calls, failures, busy_ns, measuring) = (
                calls.clone(),
                failures.clone(),
                busy_ns.clone(),
                measuring.clone(),
            );
            tasks.push(tokio::spawn(async move {
                while Instant::now() < end {
                    let t = Instant::now();
                    let mut ok = d.forward(&peer, std::slice::from_ref(&x)).await.code
                        == ReturnCode::Success;
                    if backward && ok {
                        ok = d
                            .backward(&peer, std::slice::from_ref(&x), std::slice::from_ref(&g))
                            .await
                            .code
                            == ReturnCode::Success;
                    }
                    if measuring.load(Ordering::Relaxed) {
                        calls.fetch_add(1, Ordering::Relaxed);
                        busy_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                        if !ok {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs_f64(warmup)).await;
        measuring.store(true, Ordering::Relaxed);
        let t0 = Instant::now();
        for t in tasks {
            t.await?;
        }
        let elapsed = t0.elapsed().as_secs_f64();
        let n = calls.load(Ordering::Relaxed);
        let per_call_us = busy_ns.load(Ordering::Relaxed) as f64 / n.max(1) as f64 / 1e3;
        println!(
            "{{\"calls\": {n}, \"failures\": {}, \"secs\": {elapsed:.3}, \"per_call_us\": {per_call_us:.1}, \"samples_per_s\": {:.1}}}",
            failures.load(Ordering::Relaxed),
            n as f64 * batch as f64 / elapsed
        );
        anyhow::Ok(())
    })
}
