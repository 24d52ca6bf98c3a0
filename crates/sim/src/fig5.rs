//! Figure 5: adaptive inflation. `tau` starts at 0 and, after every game step, moves by
//! `eta * (target - sparsity)`; the figure shows sparsity and `tau` settling on the target.

use std::path::Path;
use std::time::Instant;

use bt_mechanism::adaptive::{sparsity, update_tau};
use bt_mechanism::game::on_pool;
use bt_mechanism::rank::rank;
use bt_mechanism::stats::{ideal_rank, pearson, spearman};
use bt_mechanism::{Game, StepOutcome};
use serde::Serialize;

use crate::error::{Error, Result, write_text};
use crate::instance::Instance;
use crate::run::RunConfig;

/// The default adaptive-tau gain.
pub const DEFAULT_ETA: f64 = 0.001;

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Fig5Config {
    /// The game's parameters; `tau` is ignored (it starts at 0 and adapts).
    pub base: RunConfig,
    /// The sparsity target.
    pub target: f64,
    /// The gain `eta`.
    pub eta: f64,
    /// Steps to run (the stopping rule does not apply while `tau` moves).
    pub steps: u64,
    /// Record every this many steps.
    pub record_every: u64,
}

/// One recorded point of the curves.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Fig5Point {
    /// The step.
    pub step: u64,
    /// `trace(W) / (sum(W) - trace(W))`.
    pub sparsity: f64,
    /// `tau` after this step's update.
    pub tau: f64,
    /// Pearson correlation of competitive and ideal rank at this step.
    pub pearson: f64,
}

/// The curves and where they ended.
#[derive(Debug, Clone, Serialize)]
pub struct Fig5Output {
    /// The recorded points.
    pub points: Vec<Fig5Point>,
    /// Final sparsity.
    pub sparsity: f64,
    /// Final `tau`.
    pub tau: f64,
    /// Mean `tau` over the last quarter of the run.
    pub tau_tail_mean: f64,
    /// Mean sparsity over the last quarter of the run.
    pub sparsity_tail_mean: f64,
    /// Final Pearson correlation with the ideal rank.
    pub pearson: Option<f64>,
    /// Final Spearman correlation with the ideal rank.
    pub spearman: Option<f64>,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// Runs the adaptive-tau game on `instance`, calling `on_step` after every step.
pub fn adaptive(
    instance: &Instance,
    config: &Fig5Config,
    mut on_step: impl FnMut(&StepOutcome) + Send,
) -> Result<Fig5Output> {
    if !(config.eta.is_finite() && config.eta > 0.0) {
        return Err(Error::Parameter(format!(
            "eta = {} must be finite and > 0",
            config.eta
        )));
    }
    if !(config.target.is_finite() && config.target > 0.0) {
        return Err(Error::Parameter(format!(
            "target = {} must be finite and > 0",
            config.target
        )));
    }
    let n = instance.n();
    let mut params = config.base.params(n);
    params.tau = 0.0;
    params.max_steps = config.steps;
    let mut game = Game::new(
        params,
        instance.stake.clone(),
        instance.w0.clone(),
        instance.hessians.clone(),
    )?;
    let ideal = ideal_rank(&instance.hessians);
    let every = config.record_every.max(1);
    let mut points = Vec::new();
    let mut tau = 0.0;
    let start = Instant::now();
    // The whole loop on rayon's pool, so each step's fork-join stays inside it.
    on_pool(|| {
        for _ in 0..config.steps {
            let out = game.step();
            let s = sparsity(game.weights());
            tau = update_tau(tau, config.eta, config.target, s);
            game.set_tau(tau);
            if out.step % every == 0 || out.step == config.steps {
                let r = rank(&instance.stake, game.weights());
                points.push(Fig5Point {
                    step: out.step,
                    sparsity: s,
                    tau,
                    pearson: pearson(&r, &ideal),
                });
            }
            on_step(&out);
        }
    });
    let r = rank(&instance.stake, game.weights());
    let tail: Vec<&Fig5Point> = points
        .iter()
        .filter(|p| p.step * 4 >= config.steps * 3)
        .collect();
    let tail_mean = |f: fn(&Fig5Point) -> f64| {
        if tail.is_empty() {
            f64::NAN
        } else {
            tail.iter().map(|p| f(p)).sum::<f64>() / tail.len() as f64
        }
    };
    let finite = |x: f64| x.is_finite().then_some(x);
    Ok(Fig5Output {
        sparsity: sparsity(game.weights()),
        tau,
        tau_tail_mean: tail_mean(|p| p.tau),
        sparsity_tail_mean: tail_mean(|p| p.sparsity),
        pearson: finite(pearson(&r, &ideal)),
        spearman: finite(spearman(&r, &ideal)),
        points,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Writes `fig5.csv` (step, sparsity, tau, pearson) to `dir`.
pub fn write_csv(out: &Fig5Output, dir: &Path) -> Result<()> {
    let path = dir.join("fig5.csv");
    let mut text = String::from("step,sparsity,tau,pearson\n");
    for p in &out.points {
        text += &format!("{},{},{},{}\n", p.step, p.sparsity, p.tau, p.pearson);
    }
    write_text(&path, &text)
}
