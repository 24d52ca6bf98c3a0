//! The weight game of the empirical model (paper eq. 13-14): every learner at once moves
//! its row along its payoff gradient, `W <- Proj(W + lambda G)`, with the stake held fixed.
//!
//! The hot path is the Hessian-vector product of every learner at every step. [`Game`]
//! owns all its working memory, so [`Game::step`] allocates nothing; rows are processed in
//! parallel with rayon, each row's arithmetic in a fixed order, so a seeded run is
//! bit-for-bit repeatable whatever the number of threads.

use rayon::prelude::*;

use crate::error::{Error, Result, check_finite};
use crate::mask::mask_row;
use crate::matrix::{Hessians, Matrix};
use crate::payoff::{RowInput, RowScratch, payoff_gradient};
use crate::rank::rank_into;
use crate::simplex::project_fast;

/// The game's parameters (`spec/mechanism.md`; defaults there).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GameParams {
    /// Price of one unit of loss.
    pub alpha: f64,
    /// Inflation per block (weight of the rank term).
    pub tau: f64,
    /// Sigmoid temperature `T`.
    pub temperature: f64,
    /// Step size `lambda`.
    pub lambda: f64,
    /// Stop once `max |W_t - W_{t-1}| / lambda < eps`.
    pub eps: f64,
    /// Stop after this many steps at the latest.
    pub max_steps: u64,
}

impl GameParams {
    /// Checks every parameter's domain.
    pub fn validate(&self) -> Result<()> {
        let checks: [(&'static str, f64, bool, &'static str); 5] = [
            (
                "alpha",
                self.alpha,
                self.alpha >= 0.0,
                "must be finite and >= 0",
            ),
            ("tau", self.tau, self.tau >= 0.0, "must be finite and >= 0"),
            (
                "temperature",
                self.temperature,
                self.temperature > 0.0,
                "must be finite and > 0",
            ),
            (
                "lambda",
                self.lambda,
                self.lambda > 0.0,
                "must be finite and > 0",
            ),
            ("eps", self.eps, self.eps >= 0.0, "must be finite and >= 0"),
        ];
        for (name, value, ok, reason) in checks {
            if !ok || !value.is_finite() {
                return Err(Error::Parameter {
                    name,
                    value,
                    reason,
                });
            }
        }
        Ok(())
    }
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOutcome {
    /// Steps taken so far (this one included).
    pub step: u64,
    /// `max_ij |W_t - W_{t-1}| / lambda`: the bound on the projected gradient.
    pub gradient_bound: f64,
    /// Whether the bound fell below `eps`.
    pub converged: bool,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunSummary {
    /// Steps taken.
    pub steps: u64,
    /// Whether the stopping rule (rather than `max_steps`) ended the run.
    pub converged: bool,
    /// The last step's gradient bound.
    pub gradient_bound: f64,
}

#[derive(Debug, Clone)]
struct RowWork {
    scratch: RowScratch,
    grad: Vec<f64>,
    loss: f64,
    delta: f64,
}

/// The weight game: fixed stake and Hessians, a moving `W`.
#[derive(Debug, Clone)]
pub struct Game {
    params: GameParams,
    stake: Vec<f64>,
    hessians: Hessians,
    w: Matrix,
    w_next: Matrix,
    mu: Vec<f64>,
    m0: Matrix,
    work: Vec<RowWork>,
    steps: u64,
}

impl Game {
    /// Sets up the game at `w0`, computing the reference mask `m(W0)` once.
    pub fn new(
        params: GameParams,
        stake: Vec<f64>,
        w0: Matrix,
        hessians: Hessians,
    ) -> Result<Self> {
        params.validate()?;
        let n = w0.n();
        if n == 0 {
            return Err(Error::Empty { what: "w0" });
        }
        if stake.len() != n {
            return Err(Error::Shape {
                what: "stake",
                expected: n,
                got: stake.len(),
            });
        }
        if hessians.n() != n {
            return Err(Error::Shape {
                what: "hessians (learners)",
                expected: n,
                got: hessians.n(),
            });
        }
        check_finite("stake", &stake)?;
        if let Some(index) = stake.iter().position(|&s| s < 0.0) {
            return Err(Error::Parameter {
                name: "stake",
                value: stake[index],
                reason: "stake must be >= 0",
            });
        }
        let mut mu = vec![0.0; n];
        rank_into(&stake, &w0, &mut mu);
        let mut m0 = Matrix::zeros(n);
        for (i, &s_i) in stake.iter().enumerate() {
            mask_row(s_i, w0.row(i), &mu, params.temperature, m0.row_mut(i));
        }
        let work = (0..n)
            .map(|_| RowWork {
                scratch: RowScratch::new(n),
                grad: vec![0.0; n],
                loss: 0.0,
                delta: 0.0,
            })
            .collect();
        Ok(Self {
            params,
            stake,
            hessians,
            w_next: w0.clone(),
            w: w0,
            mu,
            m0,
            work,
            steps: 0,
        })
    }

    /// The parameters.
    pub fn params(&self) -> &GameParams {
        &self.params
    }

    /// Changes `tau` between steps (adaptive inflation).
    pub fn set_tau(&mut self, tau: f64) {
        self.params.tau = tau;
    }

    /// The current weights.
    pub fn weights(&self) -> &Matrix {
        &self.w
    }

    /// The stake.
    pub fn stake(&self) -> &[f64] {
        &self.stake
    }

    /// The Hessians.
    pub fn hessians(&self) -> &Hessians {
        &self.hessians
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Each learner's loss `L_i` as of the last step (zeros before the first).
    pub fn losses(&self) -> Vec<f64> {
        self.work.iter().map(|w| w.loss).collect()
    }

    /// One simultaneous step of every learner.
    pub fn step(&mut self) -> StepOutcome {
        let n = self.w.n();
        rank_into(&self.stake, &self.w, &mut self.mu);
        let GameParams {
            alpha,
            tau,
            temperature,
            lambda,
            ..
        } = self.params;
        let (w, mu, m0, stake, h) = (&self.w, &self.mu, &self.m0, &self.stake, &self.hessians);
        self.w_next
            .as_mut_slice()
            .par_chunks_mut(n)
            .zip(self.work.par_iter_mut())
            .enumerate()
            .with_min_len(4)
            .for_each(|(i, (next, work))| {
                let w_i = w.row(i);
                let inp = RowInput {
                    i,
                    stake_i: stake[i],
                    w_i,
                    mu,
                    m0_i: m0.row(i),
                    temperature,
                };
                work.loss = payoff_gradient(h, &inp, alpha, tau, &mut work.scratch, &mut work.grad);
                for ((x, &w), &g) in next.iter_mut().zip(w_i).zip(&work.grad) {
                    *x = w + lambda * g;
                }
                project_fast(next);
                work.delta = next
                    .iter()
                    .zip(w_i)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f64::max);
            });
        std::mem::swap(&mut self.w, &mut self.w_next);
        self.steps += 1;
        let delta = self.work.iter().map(|w| w.delta).fold(0.0, f64::max);
        let gradient_bound = delta / lambda;
        StepOutcome {
            step: self.steps,
            gradient_bound,
            converged: gradient_bound < self.params.eps,
        }
    }

    /// Steps until the stopping rule or `max_steps`, calling `on_step` after every step.
    pub fn run(&mut self, mut on_step: impl FnMut(&StepOutcome)) -> RunSummary {
        let mut last = StepOutcome {
            step: self.steps,
            gradient_bound: f64::INFINITY,
            converged: false,
        };
        while self.steps < self.params.max_steps {
            last = self.step();
            on_step(&last);
            if last.converged {
                break;
            }
        }
        RunSummary {
            steps: self.steps,
            converged: last.converged,
            gradient_bound: last.gradient_bound,
        }
    }
}
