//! Figure 4: how well the competitive rank tracks the ideal rank as `alpha / tau` varies.
//!
//! For every seed one random instance; for every ratio one game on it (`tau` fixed,
//! `alpha = ratio * tau`). Runs go in parallel across the machine's cores.

use std::path::Path;
use std::sync::Mutex;

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result, write_text};
use crate::instance::Instance;
use crate::run::{RunConfig, run};

/// The paper's four panels.
pub const PAPER_RATIOS: [f64; 4] = [1.0, 10.0, 25.0, 50.0];

/// The default sweep: the paper's ratios plus decades on both sides, wide enough to show both
/// regimes (the identity below 1, correlation near 100).
pub fn default_ratios() -> Vec<f64> {
    vec![0.1, 1.0, 10.0, 25.0, 50.0, 100.0, 1000.0]
}

/// The sweep's default step cap. Games at `alpha / tau >= 10` do not meet the stopping rule
/// within the paper's `1000 n` steps (they settle into a small cycle, see
/// `docs/reproduction.md`), so the sweep caps them sooner; `--max-steps` restores any cap.
pub const DEFAULT_MAX_STEPS: u64 = 30_000;

/// What to sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct Fig4Config {
    /// Learners per instance.
    pub n: usize,
    /// Seeds `first_seed .. first_seed + seeds`.
    pub seeds: u64,
    /// The first seed.
    pub first_seed: u64,
    /// The values of `alpha / tau`.
    pub ratios: Vec<f64>,
    /// Everything else; its `alpha` is replaced by `ratio * tau`.
    pub base: RunConfig,
}

/// One game of the sweep.
#[derive(Debug, Clone, Serialize)]
pub struct Fig4Run {
    /// `alpha / tau`.
    pub ratio: f64,
    /// The instance's seed.
    pub seed: u64,
    /// Pearson correlation (NaN when the rank is flat).
    pub pearson: f64,
    /// Spearman correlation (NaN when the rank is flat).
    pub spearman: f64,
    /// Mean of the final diagonal.
    pub mean_diagonal: f64,
    /// Steps taken.
    pub steps: u64,
    /// Whether the stopping rule ended it.
    pub converged: bool,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// The runs of one ratio, summarised.
#[derive(Debug, Clone, Serialize)]
pub struct Fig4Summary {
    /// `alpha / tau`.
    pub ratio: f64,
    /// Runs.
    pub runs: usize,
    /// Runs whose rank was not flat (the correlations are over these).
    pub defined: usize,
    /// Mean Pearson.
    pub pearson_mean: f64,
    /// Standard deviation of Pearson.
    pub pearson_std: f64,
    /// Mean Spearman.
    pub spearman_mean: f64,
    /// Standard deviation of Spearman.
    pub spearman_std: f64,
    /// Mean of the mean diagonal.
    pub diagonal_mean: f64,
    /// Mean steps.
    pub steps_mean: f64,
    /// Runs that met the stopping rule.
    pub converged: usize,
}

/// Competitive against ideal rank for one run, for the scatter panels.
#[derive(Debug, Clone)]
pub struct Scatter {
    /// `alpha / tau`.
    pub ratio: f64,
    /// The competitive rank.
    pub rank: Vec<f64>,
    /// The ideal rank.
    pub ideal: Vec<f64>,
    /// Its Pearson correlation.
    pub pearson: f64,
}

/// Everything the sweep measured.
#[derive(Debug, Clone)]
pub struct Fig4Output {
    /// Every run, sorted by ratio then seed.
    pub runs: Vec<Fig4Run>,
    /// One line per ratio.
    pub summaries: Vec<Fig4Summary>,
    /// The first seed's ranks at every ratio.
    pub scatters: Vec<Scatter>,
}

/// Runs the sweep; `on_run` is called (from worker threads) as each game finishes.
pub fn sweep(config: &Fig4Config, on_run: impl Fn(&Fig4Run) + Sync) -> Result<Fig4Output> {
    if config.ratios.is_empty() || config.seeds == 0 {
        return Err(Error::Parameter(
            "fig4 needs at least one ratio and one seed".into(),
        ));
    }
    if let Some(r) = config
        .ratios
        .iter()
        .find(|r| !(r.is_finite() && **r >= 0.0))
    {
        return Err(Error::Parameter(format!(
            "ratio {r} must be finite and >= 0"
        )));
    }
    let seeds: Vec<u64> = (config.first_seed..config.first_seed + config.seeds).collect();
    let instances: Vec<Instance> = seeds
        .par_iter()
        .map(|&s| Instance::random(config.n, s))
        .collect::<Result<_>>()?;
    let jobs: Vec<(usize, usize)> = (0..config.ratios.len())
        .flat_map(|r| (0..seeds.len()).map(move |s| (r, s)))
        .collect();
    let scatters = Mutex::new(Vec::new());
    let mut runs: Vec<Fig4Run> = jobs
        .par_iter()
        .map(|&(ri, si)| {
            let ratio = config.ratios[ri];
            let cfg = RunConfig {
                alpha: ratio * config.base.tau,
                ..config.base
            };
            // One thread per game: the sweep is parallel across games already.
            let res = run(&instances[si], &cfg, |_| {})?;
            let out = Fig4Run {
                ratio,
                seed: seeds[si],
                pearson: res.pearson.unwrap_or(f64::NAN),
                spearman: res.spearman.unwrap_or(f64::NAN),
                mean_diagonal: res.mean_diagonal,
                steps: res.steps,
                converged: res.converged,
                seconds: res.seconds,
            };
            if si == 0
                && let Ok(mut s) = scatters.lock()
            {
                s.push(Scatter {
                    ratio,
                    rank: res.rank,
                    ideal: res.ideal_rank,
                    pearson: out.pearson,
                });
            }
            on_run(&out);
            Ok(out)
        })
        .collect::<Result<_>>()?;
    runs.sort_by(|a, b| a.ratio.total_cmp(&b.ratio).then(a.seed.cmp(&b.seed)));
    let mut scatters = scatters.into_inner().unwrap_or_default();
    scatters.sort_by(|a, b| a.ratio.total_cmp(&b.ratio));
    let summaries = config.ratios.iter().map(|&r| summarise(r, &runs)).collect();
    Ok(Fig4Output {
        runs,
        summaries,
        scatters,
    })
}

fn mean_std(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = xs.iter().sum::<f64>() / xs.len() as f64;
    let v = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / xs.len() as f64;
    (m, v.sqrt())
}

fn summarise(ratio: f64, runs: &[Fig4Run]) -> Fig4Summary {
    let mine: Vec<&Fig4Run> = runs.iter().filter(|r| r.ratio == ratio).collect();
    let p: Vec<f64> = mine
        .iter()
        .map(|r| r.pearson)
        .filter(|x| x.is_finite())
        .collect();
    let s: Vec<f64> = mine
        .iter()
        .map(|r| r.spearman)
        .filter(|x| x.is_finite())
        .collect();
    let d: Vec<f64> = mine.iter().map(|r| r.mean_diagonal).collect();
    let st: Vec<f64> = mine.iter().map(|r| r.steps as f64).collect();
    let (pearson_mean, pearson_std) = mean_std(&p);
    let (spearman_mean, spearman_std) = mean_std(&s);
    Fig4Summary {
        ratio,
        runs: mine.len(),
        defined: p.len(),
        pearson_mean,
        pearson_std,
        spearman_mean,
        spearman_std,
        diagonal_mean: mean_std(&d).0,
        steps_mean: mean_std(&st).0,
        converged: mine.iter().filter(|r| r.converged).count(),
    }
}

/// Writes `fig4_runs.csv` (every run) and `fig4_summary.csv` (one line per ratio) to `dir`.
pub fn write_csv(out: &Fig4Output, dir: &Path) -> Result<()> {
    let mut text =
        String::from("ratio,seed,pearson,spearman,mean_diagonal,steps,converged,seconds\n");
    for r in &out.runs {
        text += &format!(
            "{},{},{},{},{},{},{},{:.3}\n",
            r.ratio,
            r.seed,
            r.pearson,
            r.spearman,
            r.mean_diagonal,
            r.steps,
            r.converged,
            r.seconds
        );
    }
    write_text(&dir.join("fig4_runs.csv"), &text)?;
    let mut text = String::from(
        "ratio,runs,defined,pearson_mean,pearson_std,spearman_mean,spearman_std,diagonal_mean,steps_mean,converged\n",
    );
    for s in &out.summaries {
        text += &format!(
            "{},{},{},{},{},{},{},{},{},{}\n",
            s.ratio,
            s.runs,
            s.defined,
            s.pearson_mean,
            s.pearson_std,
            s.spearman_mean,
            s.spearman_std,
            s.diagonal_mean,
            s.steps_mean,
            s.converged
        );
    }
    write_text(&dir.join("fig4_summary.csv"), &text)
}
