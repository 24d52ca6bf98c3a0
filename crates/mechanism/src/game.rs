//! The weight game of the empirical model (paper eq. 13-14): every learner at once moves
//! its row along its payoff gradient, `W <- Proj(W + lambda G)`, with the stake held fixed.
//!
//! The hot path is the Hessian-vector product of every learner at every step. [`Game`]
//! owns all its working memory, so [`Game::step`] allocates nothing; rows are processed in
//! parallel with rayon, each row's arithmetic in a fixed order, so a seeded run is
//! bit-for-bit repeatable whatever the number of threads.

use rayon::prelude::*;

use crate::error::{Error, Result, check_finite};
use crate::lanes;
use crate::mask::mask_row;
use crate::matrix::{Hessians, Matrix};
use crate::payoff::{RowInput, RowScratch, payoff_gradient};
use crate::rank::rank_into;
use crate::simplex::threshold;

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

/// Runs `f` on a thread of rayon's global pool and returns its result.
///
/// A parallel loop started from outside the pool parks the caller and wakes it again
/// when the loop ends: two context switches, several microseconds, every time. A game
/// step at n = 100 takes tens of microseconds, so a driver that steps the game in a loop
/// ([`Game::run`], the adaptive-tau sweep) runs the whole loop through this instead. From
/// a thread already in the pool `f` simply runs.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

/// What every row's step reads: the current state and the parameters.
struct RowsInput<'a> {
    h: &'a Hessians,
    w: &'a Matrix,
    mu: &'a [f64],
    m0: &'a Matrix,
    stake: &'a [f64],
    alpha: f64,
    tau: f64,
    temperature: f64,
    lambda: f64,
}

impl RowsInput<'_> {
    /// Learner `i`'s step: payoff gradient, ascent, projection onto the simplex, and the
    /// largest change, into `next` and `work`.
    fn advance(&self, i: usize, next: &mut [f64], work: &mut RowWork) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            #[allow(unsafe_code)]
            // SAFETY: the function only needs AVX-512F, which the CPU was just checked to have.
            unsafe {
                self.advance_avx512(i, next, work);
            }
            return;
        }
        self.advance_portable(i, next, work);
    }

    /// The same body with AVX-512 enabled, so that the mask row (the `exp` of every
    /// entry) and the other row loops use the wide registers. Plain multiplies and adds
    /// are neither fused nor reordered, so the result has the same bits.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn advance_avx512(&self, i: usize, next: &mut [f64], work: &mut RowWork) {
        self.advance_portable(i, next, work);
    }

    #[inline(always)]
    fn advance_portable(&self, i: usize, next: &mut [f64], work: &mut RowWork) {
        let w_i = self.w.row(i);
        let inp = RowInput {
            i,
            stake_i: self.stake[i],
            w_i,
            mu: self.mu,
            m0_i: self.m0.row(i),
            temperature: self.temperature,
        };
        work.loss = payoff_gradient(
            self.h,
            &inp,
            self.alpha,
            self.tau,
            &mut work.scratch,
            &mut work.grad,
        );
        for ((x, &w), &g) in next.iter_mut().zip(w_i).zip(&work.grad) {
            *x = w + self.lambda * g;
        }
        // The projection, and the largest change, in one pass.
        let theta = threshold(next);
        work.delta = lanes::shift_clamp_max_diff(next, theta, w_i);
    }
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
        let rows = RowsInput {
            h,
            w,
            mu,
            m0,
            stake,
            alpha,
            tau,
            temperature,
            lambda,
        };
        // A few chunks per thread: enough to even out the load, few enough that the
        // fork-join costs little next to the rows' work.
        let chunk = n.div_ceil(4 * rayon::current_num_threads()).max(1);
        self.w_next
            .as_mut_slice()
            .par_chunks_mut(n)
            .zip(self.work.par_iter_mut())
            .enumerate()
            .with_min_len(chunk)
            .for_each(|(i, (next, work))| rows.advance(i, next, work));
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
    ///
    /// The loop runs on a thread of rayon's pool (see [`on_pool`]), so each step's
    /// fork-join stays inside the pool.
    pub fn run(&mut self, on_step: impl FnMut(&StepOutcome) + Send) -> RunSummary {
        on_pool(|| self.run_here(on_step))
    }

    fn run_here(&mut self, mut on_step: impl FnMut(&StepOutcome)) -> RunSummary {
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
