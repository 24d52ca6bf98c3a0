//! Times the feed-forward expert alone (no network): forward and backward at several batch
//! sizes, in samples/s and GFLOP/s.
//! `cargo run --release -p bt-wire --example wire_expert_speed -- [THREADS]`

// The allocator `bt` runs with, so that the figures are those of the product.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Instant;

use bt_wire::{FeedForwardExpert, Synapse, Tensor};

fn main() -> anyhow::Result<()> {
    let d = 1024;
    let threads = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(0);
    let e = FeedForwardExpert::hivemind_ffn(d, 0.0, 1).with_threads(threads);
    println!("threads per call: {threads} (0 = rayon's global pool)");
    for n in [16usize, 64, 256] {
        let x = Tensor::from_f32(vec![n, d], &vec![0.1; n * d])?;
        let g = Tensor::from_f32(vec![n, d], &vec![1e-3; n * d])?;
        let flops = 2.0 * 2.0 * (d * 4 * d) as f64 * n as f64;
        e.forward(std::slice::from_ref(&x))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let reps = (4096 / n).max(4);
        let t = Instant::now();
        for _ in 0..reps {
            e.forward(std::slice::from_ref(&x))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let f = t.elapsed().as_secs_f64() / reps as f64;
        let t = Instant::now();
        for _ in 0..reps / 2 {
            e.backward(std::slice::from_ref(&x), std::slice::from_ref(&g))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let b = t.elapsed().as_secs_f64() / (reps / 2) as f64;
        println!(
            "n={n:4}: forward {:7.2} ms ({:6.0} samples/s, {:5.1} GFLOP/s); backward {:7.2} ms ({:6.0} samples/s)",
            f * 1e3,
            n as f64 / f,
            flops / f / 1e9,
            b * 1e3,
            n as f64 / b
        );
    }
    Ok(())
}
