//! A feed-forward expert in plain Rust, the same block as hivemind's `ffn` expert:
//! `LayerNorm(x + Linear(4d -> d)(GELU(Linear(d -> 4d)(x))))`, trained by SGD in Backward.
//!
//! It serves the tests and the benchmark against hivemind; matrix products run on faer.

use std::sync::RwLock;

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use crate::synapse::{Dim, Synapse, SynapseResult, TensorSpec};
use crate::tensor::Tensor;

const LN_EPS: f32 = 1e-12;
const GELU_C: f32 = 0.797_884_6;
const GELU_K: f32 = 0.044_715;
/// Rows per parallel chunk of the element-wise passes.
const ROWS_PER_TASK: usize = 16;

/// `(pre-activation a, GELU(a), y, normalized residual, 1/std per row)` of a forward pass.
type ForwardState = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>);

struct Params {
    /// d x h, row-major.
    w1: Vec<f32>,
    b1: Vec<f32>,
    /// h x d, row-major.
    w2: Vec<f32>,
    b2: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

/// `LayerNorm(x + W2 GELU(W1 x + b1) + b2)` with model width `d` and inner width `hidden`.
pub struct FeedForwardExpert {
    d: usize,
    h: usize,
    lr: f32,
    params: RwLock<Params>,
    /// Parallelism of the matrix products inside one call.
    par: Par,
}

/// splitmix64: a tiny deterministic generator for the initial weights.
fn next_uniform(state: &mut u64) -> f32 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    ((z >> 40) as f32) / ((1u64 << 24) as f32) * 2.0 - 1.0
}

/// GELU, tanh form: the `gelu_fast` of hivemind's `ffn` expert.
fn gelu(x: f32) -> f32 {
    let u = GELU_C * x * (1.0 + GELU_K * x * x);
    0.5 * x * (1.0 + u.tanh())
}

fn gelu_grad(x: f32) -> f32 {
    let u = GELU_C * x * (1.0 + GELU_K * x * x);
    let t = u.tanh();
    0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * GELU_K * x * x)
}

/// `dst (m x n) = alpha * a (m x k) * b (k x n)` (+ dst when `add`), all views row-major.
fn gemm(
    par: Par,
    dst: MatMut<'_, f32>,
    add: bool,
    a: MatRef<'_, f32>,
    b: MatRef<'_, f32>,
    alpha: f32,
) {
    let accum = if add { Accum::Add } else { Accum::Replace };
    matmul(dst, accum, a, b, alpha, par);
}

fn rm(s: &[f32], rows: usize, cols: usize) -> MatRef<'_, f32> {
    MatRef::from_row_major_slice(s, rows, cols)
}

fn rm_mut(s: &mut [f32], rows: usize, cols: usize) -> MatMut<'_, f32> {
    MatMut::from_row_major_slice_mut(s, rows, cols)
}

impl FeedForwardExpert {
    /// A new expert with model width `d`, inner width `hidden`, SGD learning rate `lr`, and
    /// weights drawn uniformly in ±1/sqrt(fan_in) from `seed` (as torch's `Linear` does).
    pub fn new(d: usize, hidden: usize, lr: f32, seed: u64) -> FeedForwardExpert {
        let mut st = seed;
        let s1 = 1.0 / (d as f32).sqrt();
        let s2 = 1.0 / (hidden as f32).sqrt();
        let w1 = (0..d * hidden)
            .map(|_| next_uniform(&mut st) * s1)
            .collect();
        let b1 = (0..hidden).map(|_| next_uniform(&mut st) * s1).collect();
        let w2 = (0..hidden * d)
            .map(|_| next_uniform(&mut st) * s2)
            .collect();
        let b2 = (0..d).map(|_| next_uniform(&mut st) * s2).collect();
        FeedForwardExpert {
            d,
            h: hidden,
            lr,
            params: RwLock::new(Params {
                w1,
                b1,
                w2,
                b2,
                gamma: vec![1.0; d],
                beta: vec![0.0; d],
            }),
            par: Par::rayon(0),
        }
    }

    /// Splits each call's matrix products over `threads` threads of rayon's global pool
    /// (1: none, which suits an axon whose workers already keep the cores busy with
    /// concurrent calls; 0: all of the pool's threads, the default).
    ///
    /// The call itself runs on the caller's thread. (Running each call inside a private
    /// pool, as an earlier version did, serialised concurrent calls on a one-thread pool
    /// and deadlocked concurrent calls on a pool of two.)
    pub fn with_threads(mut self, threads: usize) -> FeedForwardExpert {
        self.par = match threads {
            0 => Par::rayon(0),
            1 => Par::Seq,
            t => Par::rayon(t),
        };
        self
    }

    /// hivemind's `ffn` expert at width `d`: inner width `4 d`.
    pub fn hivemind_ffn(d: usize, lr: f32, seed: u64) -> FeedForwardExpert {
        FeedForwardExpert::new(d, 4 * d, lr, seed)
    }

    /// Model width.
    pub fn width(&self) -> usize {
        self.d
    }

    /// A checksum of the parameters (to observe that Backward changed them).
    pub fn param_checksum(&self) -> f64 {
        let p = self.params.read().unwrap_or_else(|e| e.into_inner());
        [&p.w1, &p.b1, &p.w2, &p.b2, &p.gamma, &p.beta]
            .iter()
            .flat_map(|v| v.iter())
            .map(|&v| f64::from(v))
            .sum()
    }

    /// Forward on `n` rows of `x`; returns `(pre-activation a, y)`; when `keep` is false `a`
    /// is left empty and GELU is applied in place.
    fn forward_rows(&self, p: &Params, x: &[f32], n: usize, keep: bool) -> ForwardState {
        let (d, h) = (self.d, self.h);
        let mut a = vec![0.0f32; n * h];
        gemm(
            self.par,
            rm_mut(&mut a, n, h),
            false,
            rm(x, n, d),
            rm(&p.w1, d, h),
            1.0,
        );
        let mut g = if keep { a.clone() } else { Vec::new() };
        let gbuf: &mut Vec<f32> = if keep { &mut g } else { &mut a };
        gbuf.par_chunks_mut(h * ROWS_PER_TASK).for_each(|rows| {
            for row in rows.chunks_exact_mut(h) {
                for (v, b) in row.iter_mut().zip(&p.b1) {
                    *v = gelu(*v + b);
                }
            }
        });
        if keep {
            // `a` keeps the pre-activation for GELU's derivative.
            a.par_chunks_mut(h * ROWS_PER_TASK).for_each(|rows| {
                for row in rows.chunks_exact_mut(h) {
                    for (v, b) in row.iter_mut().zip(&p.b1) {
                        *v += b;
                    }
                }
            });
        }
        let gref: &[f32] = if keep { &g } else { &a };
        let mut r = x.to_vec();
        gemm(
            self.par,
            rm_mut(&mut r, n, d),
            true,
            rm(gref, n, h),
            rm(&p.w2, h, d),
            1.0,
        );
        let mut y = vec![0.0f32; n * d];
        let mut xhat = if keep {
            vec![0.0f32; n * d]
        } else {
            Vec::new()
        };
        let mut inv = vec![0.0f32; n];
        let layer_norm = |r: &mut [f32], y: &mut [f32], xh: Option<&mut [f32]>, inv: &mut f32| {
            for (v, b) in r.iter_mut().zip(&p.b2) {
                *v += b;
            }
            let mean = r.iter().sum::<f32>() / d as f32;
            let var = r.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
            let s = 1.0 / (var + LN_EPS).sqrt();
            *inv = s;
            match xh {
                Some(xh) => {
                    for j in 0..d {
                        xh[j] = (r[j] - mean) * s;
                        y[j] = xh[j] * p.gamma[j] + p.beta[j];
                    }
                }
                None => {
                    for j in 0..d {
                        y[j] = (r[j] - mean) * s * p.gamma[j] + p.beta[j];
                    }
                }
            }
        };
        if keep {
            r.par_chunks_mut(d)
                .zip(y.par_chunks_mut(d))
                .zip(xhat.par_chunks_mut(d))
                .zip(inv.par_iter_mut())
                .for_each(|(((r, y), xh), inv)| layer_norm(r, y, Some(xh), inv));
        } else {
            r.par_chunks_mut(d)
                .zip(y.par_chunks_mut(d))
                .zip(inv.par_iter_mut())
                .for_each(|((r, y), inv)| layer_norm(r, y, None, inv));
        }
        (a, g, y, xhat, inv)
    }

    fn check_input(&self, inputs: &[Tensor]) -> SynapseResult<(Vec<f32>, usize)> {
        let x = inputs.first().ok_or("expected one input")?;
        if x.shape().len() != 2 || x.shape()[1] != self.d {
            return Err(format!("expected input [batch, {}], got {:?}", self.d, x.shape()).into());
        }
        Ok((x.to_f32()?, x.shape()[0]))
    }
}

impl Synapse for FeedForwardExpert {
    fn input_spec(&self) -> Vec<TensorSpec> {
        vec![TensorSpec::float(vec![Dim::Batch, Dim::Fixed(self.d)])]
    }

    fn output_spec(&self) -> Vec<TensorSpec> {
        vec![TensorSpec::float(vec![Dim::Batch, Dim::Fixed(self.d)])]
    }

    fn forward(&self, inputs: &[Tensor]) -> SynapseResult<Vec<Tensor>> {
        self.forward_impl(inputs)
    }

    fn backward(
        &self,
        inputs: &[Tensor],
        grad_outputs: &[Tensor],
    ) -> SynapseResult<Option<Vec<Tensor>>> {
        self.backward_impl(inputs, grad_outputs)
    }

    fn batchable(&self) -> bool {
        true
    }
}

impl FeedForwardExpert {
    fn forward_impl(&self, inputs: &[Tensor]) -> SynapseResult<Vec<Tensor>> {
        let (x, n) = self.check_input(inputs)?;
        let p = self.params.read().unwrap_or_else(|e| e.into_inner());
        let (_, _, y, _, _) = self.forward_rows(&p, &x, n, false);
        Ok(vec![Tensor::from_f32(vec![n, self.d], &y)?])
    }

    fn backward_impl(
        &self,
        inputs: &[Tensor],
        grad_outputs: &[Tensor],
    ) -> SynapseResult<Option<Vec<Tensor>>> {
        let (x, n) = self.check_input(inputs)?;
        let gy = grad_outputs.first().ok_or("expected one output gradient")?;
        if gy.shape() != [n, self.d] {
            return Err(
                format!("expected gradient [{n}, {}], got {:?}", self.d, gy.shape()).into(),
            );
        }
        let gy = gy.to_f32()?;
        let (d, h, lr) = (self.d, self.h, self.lr);
        // Every gradient is computed under the read lock, so concurrent calls overlap;
        // only the parameter update at the end takes the write lock.
        let guard = self.params.read().unwrap_or_else(|e| e.into_inner());
        let p = &*guard;
        let (a, g, _y, xhat, inv) = self.forward_rows(p, &x, n, true);

        // LayerNorm: parameter gradients, then dr (the gradient at the residual sum).
        let mut dgamma = vec![0.0f32; d];
        let mut dbeta = vec![0.0f32; d];
        for i in 0..n {
            for j in 0..d {
                dgamma[j] += gy[i * d + j] * xhat[i * d + j];
                dbeta[j] += gy[i * d + j];
            }
        }
        let mut dr = vec![0.0f32; n * d];
        dr.par_chunks_mut(d).enumerate().for_each(|(i, dr)| {
            let gyr = &gy[i * d..(i + 1) * d];
            let xh = &xhat[i * d..(i + 1) * d];
            let mut m1 = 0.0f32;
            let mut m2 = 0.0f32;
            for j in 0..d {
                let dxh = gyr[j] * p.gamma[j];
                m1 += dxh;
                m2 += dxh * xh[j];
            }
            m1 /= d as f32;
            m2 /= d as f32;
            for j in 0..d {
                dr[j] = inv[i] * (gyr[j] * p.gamma[j] - m1 - xh[j] * m2);
            }
        });
        let mut db2 = vec![0.0f32; d];
        for row in dr.chunks_exact(d) {
            for (acc, v) in db2.iter_mut().zip(row) {
                *acc += v;
            }
        }

        // dg = dr W2^T.
        let mut da = vec![0.0f32; n * h];
        gemm(
            self.par,
            rm_mut(&mut da, n, h),
            false,
            rm(&dr, n, d),
            rm(&p.w2, h, d).transpose(),
            1.0,
        );
        da.par_chunks_mut(h)
            .zip(a.par_chunks(h))
            .for_each(|(da, a)| {
                for (v, &z) in da.iter_mut().zip(a) {
                    *v *= gelu_grad(z);
                }
            });
        let mut db1 = vec![0.0f32; h];
        for row in da.chunks_exact(h) {
            for (acc, v) in db1.iter_mut().zip(row) {
                *acc += v;
            }
        }

        // dx = da W1^T + dr.
        let mut dx = dr.clone();
        gemm(
            self.par,
            rm_mut(&mut dx, n, d),
            true,
            rm(&da, n, h),
            rm(&p.w1, d, h).transpose(),
            1.0,
        );
        drop(guard);

        // The SGD step: W2 -= lr g^T dr, W1 -= lr x^T da, and the vectors. A concurrent
        // call may have stepped since this one read the weights (asynchronous SGD, as
        // hivemind's servers also apply gradients computed on slightly older weights).
        let mut guard = self.params.write().unwrap_or_else(|e| e.into_inner());
        let p = &mut *guard;
        gemm(
            self.par,
            rm_mut(&mut p.w2, h, d),
            true,
            rm(&g, n, h).transpose(),
            rm(&dr, n, d),
            -lr,
        );
        gemm(
            self.par,
            rm_mut(&mut p.w1, d, h),
            true,
            rm(&x, n, d).transpose(),
            rm(&da, n, h),
            -lr,
        );

        for (w, g) in p.b1.iter_mut().zip(&db1) {
            *w -= lr * g;
        }
        for (w, g) in p.b2.iter_mut().zip(&db2) {
            *w -= lr * g;
        }
        for (w, g) in p.gamma.iter_mut().zip(&dgamma) {
            *w -= lr * g;
        }
        for (w, g) in p.beta.iter_mut().zip(&dbeta) {
            *w -= lr * g;
        }
        Ok(Some(vec![Tensor::from_f32(vec![n, d], &dx)?]))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn loss(e: &FeedForwardExpert, x: &[f32], n: usize, w: &[f32]) -> f64 {
        let y = e
            .forward(&[Tensor::from_f32(vec![n, e.d], x).unwrap()])
            .unwrap();
        let y = y[0].to_f32().unwrap();
        y.iter().zip(w).map(|(a, b)| f64::from(a * b)).sum()
    }

    #[test]
    fn gelu_matches_known_values_and_its_derivative() {
        for (x, want) in [(0.0f32, 0.0f32), (1.0, 0.841_192), (-2.0, -0.045_402_3)] {
            assert!((gelu(x) - want).abs() < 1e-5, "gelu({x}) = {}", gelu(x));
            let num = (gelu(x + 1e-3) - gelu(x - 1e-3)) / 2e-3;
            assert!((gelu_grad(x) - num).abs() < 1e-3, "gelu'({x})");
        }
    }

    /// The input gradient matches finite differences of the loss `sum(w * y)`, with lr = 0.
    #[test]
    fn input_gradient_matches_finite_differences() {
        let (d, h, n) = (8, 16, 3);
        let e = FeedForwardExpert::new(d, h, 0.0, 7);
        let mut st = 11u64;
        let x: Vec<f32> = (0..n * d).map(|_| next_uniform(&mut st)).collect();
        let w: Vec<f32> = (0..n * d).map(|_| next_uniform(&mut st)).collect();
        let dx = e
            .backward(
                &[Tensor::from_f32(vec![n, d], &x).unwrap()],
                &[Tensor::from_f32(vec![n, d], &w).unwrap()],
            )
            .unwrap()
            .unwrap();
        let dx = dx[0].to_f32().unwrap();
        for k in [0, 5, 13, 23] {
            let eps = 1e-2f32;
            let mut xp = x.clone();
            xp[k] += eps;
            let mut xm = x.clone();
            xm[k] -= eps;
            let num = (loss(&e, &xp, n, &w) - loss(&e, &xm, n, &w)) / (2.0 * f64::from(eps));
            assert!(
                (num - f64::from(dx[k])).abs() < 2e-2,
                "k={k}: numeric {num}, analytic {}",
                dx[k]
            );
        }
    }

    #[test]
    fn single_threaded_products_give_the_same_outputs() {
        let x = Tensor::from_f32(vec![3, 8], &[0.3; 24]).unwrap();
        let a = FeedForwardExpert::new(8, 32, 0.0, 9)
            .forward(std::slice::from_ref(&x))
            .unwrap();
        let one = FeedForwardExpert::new(8, 32, 0.0, 9).with_threads(1);
        let b = one.forward(&[x]).unwrap();
        for (p, q) in a[0].to_f32().unwrap().iter().zip(b[0].to_f32().unwrap()) {
            assert!((p - q).abs() < 1e-5);
        }
    }

    /// One SGD step along the gradient lowers the loss.
    #[test]
    fn sgd_step_lowers_the_loss() {
        let (d, h, n) = (8, 32, 4);
        let e = FeedForwardExpert::new(d, h, 0.05, 3);
        let mut st = 5u64;
        let x: Vec<f32> = (0..n * d).map(|_| next_uniform(&mut st)).collect();
        let w: Vec<f32> = (0..n * d).map(|_| next_uniform(&mut st)).collect();
        let before = loss(&e, &x, n, &w);
        let sum_before = e.param_checksum();
        e.backward(
            &[Tensor::from_f32(vec![n, d], &x).unwrap()],
            &[Tensor::from_f32(vec![n, d], &w).unwrap()],
        )
        .unwrap();
        assert_ne!(sum_before, e.param_checksum());
        assert!(loss(&e, &x, n, &w) < before);
    }
}
