//! Measurements for the solver benchmark: the game's step rate and the bytes it streams,
//! beside the machine's read bandwidth measured the same way the solver reads (all cores,
//! one pass over a buffer much larger than the last-level cache).

use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::error::Result;
use crate::instance::Instance;
use crate::run::{RunConfig, run};

/// What one timed game measured.
#[derive(Debug, Clone, Serialize)]
pub struct SolverBench {
    /// Learners.
    pub n: usize,
    /// Steps timed.
    pub steps: u64,
    /// Seconds in the game loop.
    pub seconds: f64,
    /// Steps per second.
    pub steps_per_second: f64,
    /// Hessian bytes one step reads (the upper triangles of 8 x 8 tiles).
    pub hessian_bytes_per_step: u64,
    /// Hessian bytes per second.
    pub hessian_bytes_per_second: f64,
    /// The final weights, row-major, to compare with another implementation.
    pub weights: Vec<Vec<f64>>,
}

/// Runs exactly `steps` steps of the game (no early stop) and times them.
pub fn time_solver(instance: &Instance, config: &RunConfig, steps: u64) -> Result<SolverBench> {
    let cfg = RunConfig {
        eps: 0.0,
        max_steps: Some(steps),
        ..*config
    };
    let res = run(instance, &cfg, |_| {})?;
    let bytes = instance.hessians.bytes() as u64;
    Ok(SolverBench {
        n: instance.n(),
        steps: res.steps,
        seconds: res.seconds,
        steps_per_second: res.steps as f64 / res.seconds,
        hessian_bytes_per_step: bytes,
        hessian_bytes_per_second: bytes as f64 * res.steps as f64 / res.seconds,
        weights: res.weights,
    })
}

/// Read bandwidth in bytes per second: the best of `repeats` parallel passes summing a
/// buffer of `bytes` bytes (make it several times the last-level cache).
pub fn read_bandwidth(bytes: usize, repeats: usize) -> f64 {
    let len = (bytes / 8).max(1024);
    let buf: Vec<f64> = (0..len).map(|i| (i % 7) as f64).collect();
    let mut best = f64::INFINITY;
    let mut sink = 0.0;
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        sink += buf
            .par_chunks(1 << 16)
            .map(|c| {
                let mut acc = [0.0f64; 8];
                for ch in c.chunks_exact(8) {
                    for l in 0..8 {
                        acc[l] += ch[l];
                    }
                }
                acc.iter().sum::<f64>()
            })
            .sum::<f64>();
        best = best.min(t.elapsed().as_secs_f64());
    }
    // Keep the sums alive so the passes are not optimised away.
    std::hint::black_box(sink);
    (len * 8) as f64 / best
}
