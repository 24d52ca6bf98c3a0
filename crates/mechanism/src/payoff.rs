//! The empirical model's loss and the payoff gradient of one learner's row (paper
//! section 3.2, appendix 6.3-6.4, as pinned in `spec/mechanism.md`).
//!
//! With `d_i = m_i(W) - m_i(W0)`:
//! - loss `L_i = d_i^T H_i d_i`;
//! - payoff `P_i = -alpha L_i + tau R_i`;
//! - `dz_ij/dW_ij = S_i (1 - 1/n) / T` (through `S_i W_ij` and through `mu_j`);
//! - `dL_i/dW_ij = 2 (H_i d_i)_j m_ij (1 - m_ij) S_i (1 - 1/n) / T`;
//! - `dR_i/dW_ij = S_i / n` if `j == i`, else 0;
//! - step direction `G_ij = tau dR_i/dW_ij - alpha dL_i/dW_ij`.
//!
//! The chain rule from "gradient of the loss with respect to the mask" to "gradient with
//! respect to the weight" is [`mask_chain`]; real learners (the neurons) get `dL/dm` from
//! backprop instead of from a Hessian and call the same function.

use crate::lanes::{self, dot};
use crate::matrix::Hessians;

/// The inputs that define learner `i`'s view of the game.
#[derive(Debug, Clone, Copy)]
pub struct RowInput<'a> {
    /// The learner.
    pub i: usize,
    /// Its stake `S_i`.
    pub stake_i: f64,
    /// Its row `W_i`.
    pub w_i: &'a [f64],
    /// The column shift `mu` of the current `W` (all learners' rows).
    pub mu: &'a [f64],
    /// Its mask row at the reference weights, `m_i(W0)`.
    pub m0_i: &'a [f64],
    /// The sigmoid temperature `T`.
    pub temperature: f64,
}

/// Working memory for one row, reused across steps so a step allocates nothing.
///
/// Each vector holds [`Hessians::padded`]`(n)` entries, as the tiled Hessian product
/// reads and writes them; only the first `n` are the row's, the rest stay zero.
#[derive(Debug, Clone)]
pub struct RowScratch {
    /// The mask row `m_i`.
    pub m: Vec<f64>,
    /// `d_i = m_i - m0_i`.
    pub d: Vec<f64>,
    /// `H_i d_i`.
    pub y: Vec<f64>,
}

impl RowScratch {
    /// Scratch for `n` learners.
    pub fn new(n: usize) -> Self {
        let p = Hessians::padded(n);
        Self {
            m: vec![0.0; p],
            d: vec![0.0; p],
            y: vec![0.0; p],
        }
    }
}

/// `dz_ij / dW_ij = S_i (1 - 1/n) / T`.
#[inline]
pub fn logit_slope(stake_i: f64, n: usize, temperature: f64) -> f64 {
    stake_i * (1.0 - 1.0 / n as f64) / temperature
}

/// Chain rule through the mask: given `dL/dm_ij` and `m_ij`, returns `dL/dW_ij =
/// dL/dm_ij * m_ij (1 - m_ij) * S_i (1 - 1/n) / T`.
#[inline]
pub fn mask_chain(dl_dm: f64, m: f64, stake_i: f64, n: usize, temperature: f64) -> f64 {
    dl_dm * m * (1.0 - m) * logit_slope(stake_i, n, temperature)
}

/// `dR_i/dW_ij`: `S_i / n` on the diagonal, else 0.
#[inline]
pub fn rank_gradient(i: usize, j: usize, stake_i: f64, n: usize) -> f64 {
    if i == j { stake_i / n as f64 } else { 0.0 }
}

/// The payoff `P_i = -alpha L_i + tau R_i`.
#[inline]
pub fn payoff(loss: f64, rank_i: f64, alpha: f64, tau: f64) -> f64 {
    -alpha * loss + tau * rank_i
}

/// Learner `i`'s loss `L_i = d_i^T H_i d_i`. Leaves `m`, `d` and `H_i d_i` in `scratch`.
#[inline(always)]
pub fn loss(h: &Hessians, inp: &RowInput<'_>, scratch: &mut RowScratch) -> f64 {
    let n = h.n();
    lanes::mask_diff(
        inp.stake_i,
        inp.w_i,
        inp.mu,
        inp.m0_i,
        inp.temperature,
        &mut scratch.m[..n],
        &mut scratch.d[..n],
    );
    h.matvec(inp.i, &scratch.d, &mut scratch.y);
    dot(&scratch.d[..n], &scratch.y)
}

/// Learner `i`'s loss and its gradient `dL_i/dW_i` (written to `grad`).
#[inline(always)]
pub fn loss_gradient(
    h: &Hessians,
    inp: &RowInput<'_>,
    scratch: &mut RowScratch,
    grad: &mut [f64],
) -> f64 {
    let l = loss(h, inp, scratch);
    let n = h.n();
    for ((g, &y), &m) in grad.iter_mut().zip(&scratch.y).zip(&scratch.m) {
        *g = mask_chain(2.0 * y, m, inp.stake_i, n, inp.temperature);
    }
    l
}

/// The payoff ascent direction `G_i = tau dR_i/dW_i - alpha dL_i/dW_i` (written to
/// `grad`). Returns the loss `L_i` as a by-product.
#[inline(always)]
pub fn payoff_gradient(
    h: &Hessians,
    inp: &RowInput<'_>,
    alpha: f64,
    tau: f64,
    scratch: &mut RowScratch,
    grad: &mut [f64],
) -> f64 {
    let l = loss_gradient(h, inp, scratch, grad);
    let n = h.n();
    for (j, g) in grad.iter_mut().enumerate() {
        *g = tau * rank_gradient(inp.i, j, inp.stake_i, n) - alpha * *g;
    }
    l
}
