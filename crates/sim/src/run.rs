//! One game to its stopping rule, and what it measured.

use std::time::Instant;

use bt_mechanism::stats::{ideal_rank, pearson, spearman};
use bt_mechanism::{Game, GameParams, StepOutcome, rank::rank};
use serde::Serialize;

use crate::error::Result;
use crate::instance::Instance;

/// The simulator's default sigmoid temperature (see `docs/reproduction.md` for why).
pub const DEFAULT_TEMPERATURE: f64 = 0.03;

/// The game's parameters as the CLI takes them; `max_steps = None` means `1000 n`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunConfig {
    /// Price of one unit of loss.
    pub alpha: f64,
    /// Inflation per block.
    pub tau: f64,
    /// Sigmoid temperature.
    pub temperature: f64,
    /// Step size.
    pub lambda: f64,
    /// Stopping bound on the projected gradient.
    pub eps: f64,
    /// Step cap; `None` for the paper's `1000 n`.
    pub max_steps: Option<u64>,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            alpha: 1.0,
            tau: 1.0,
            temperature: DEFAULT_TEMPERATURE,
            lambda: 0.005,
            eps: 1e-6,
            max_steps: None,
        }
    }
}

impl RunConfig {
    /// The mechanism's parameters for `n` learners.
    pub fn params(&self, n: usize) -> GameParams {
        GameParams {
            alpha: self.alpha,
            tau: self.tau,
            temperature: self.temperature,
            lambda: self.lambda,
            eps: self.eps,
            max_steps: self.max_steps.unwrap_or(1000 * n as u64),
        }
    }
}

/// The result of `bt sim run`, written as JSON (schema in `docs/reproduction.md`).
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// Number of learners.
    pub n: usize,
    /// `alpha / tau` (infinite when `tau = 0`).
    pub ratio: f64,
    /// Steps taken.
    pub steps: u64,
    /// Whether the stopping rule ended the run (not the step cap).
    pub converged: bool,
    /// The last step's `max |dW| / lambda`.
    pub gradient_bound: f64,
    /// The final `W`, row by row.
    pub weights: Vec<Vec<f64>>,
    /// The competitive rank `R = (1/n) W^T S` of the final `W`.
    pub rank: Vec<f64>,
    /// The ideal rank `(1/n) sum_i H_i[j][j]`.
    pub ideal_rank: Vec<f64>,
    /// Pearson correlation of `rank` and `ideal_rank` (`null` when `rank` is flat).
    pub pearson: Option<f64>,
    /// Spearman correlation of `rank` and `ideal_rank` (`null` when `rank` is flat).
    pub spearman: Option<f64>,
    /// Mean of the final `W`'s diagonal.
    pub mean_diagonal: f64,
    /// Wall time of the game, seconds.
    pub seconds: f64,
}

/// Runs the game on `instance` until the stopping rule or the step cap, calling
/// `on_step` after every step.
pub fn run(
    instance: &Instance,
    config: &RunConfig,
    on_step: impl FnMut(&StepOutcome) + Send,
) -> Result<RunResult> {
    let n = instance.n();
    let mut game = Game::new(
        config.params(n),
        instance.stake.clone(),
        instance.w0.clone(),
        instance.hessians.clone(),
    )?;
    let start = Instant::now();
    let summary = game.run(on_step);
    let seconds = start.elapsed().as_secs_f64();
    Ok(summarise(
        instance,
        &game,
        config,
        summary.steps,
        summary.converged,
        summary.gradient_bound,
        seconds,
    ))
}

/// Builds the [`RunResult`] of a finished (or stopped) game.
pub fn summarise(
    instance: &Instance,
    game: &Game,
    config: &RunConfig,
    steps: u64,
    converged: bool,
    gradient_bound: f64,
    seconds: f64,
) -> RunResult {
    let w = game.weights();
    let r = rank(&instance.stake, w);
    let ideal = ideal_rank(&instance.hessians);
    let finite = |x: f64| x.is_finite().then_some(x);
    RunResult {
        n: instance.n(),
        ratio: config.alpha / config.tau,
        steps,
        converged,
        gradient_bound,
        weights: w.rows().map(<[f64]>::to_vec).collect(),
        pearson: finite(pearson(&r, &ideal)),
        spearman: finite(spearman(&r, &ideal)),
        rank: r,
        ideal_rank: ideal,
        mean_diagonal: w.mean_diagonal(),
        seconds,
    }
}
