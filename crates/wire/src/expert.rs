//! A feed-forward expert in plain Rust, the same block as hivemind's `ffn` expert:
//! `LayerNorm(x + Linear(4d -> d)(GELU(Linear(d -> 4d)(x))))`, trained by SGD in Backward.
//!
//! It serves the tests and the benchmark against hivemind; matrix products run on faer and
//! GELU on `bt-vecmath`'s vectorised kernels.
//!
//! # Concurrency
//! The inner width is cut into up to eight stripes, each holding its slice of `W1`, `b1` and
//! `W2` behind its own lock. A call reads the stripes one after another, and Backward's
//! parameter update write-locks one stripe at a time, taking free stripes first and starting
//! at a different stripe on each call. So concurrent calls overlap except on the one stripe
//! being written. (One lock over all the weights made a concurrent call wait for the whole
//! update: with two workers a fifth of the time went to that wait.) Sums over the stripes
//! are added in stripe order, so a result does not depend on the order the stripes were
//! visited in.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError};

use bt_vecmath::{
    bias_gelu_inplace, bias_gelu_keep, dot, gelu_bwd_inplace, multiversion, simd_level, sum,
};
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};

use crate::activations::{ActivationCache, RowActivations};
use crate::synapse::{Dim, Synapse, SynapseResult, TensorSpec};
use crate::tensor::Tensor;

const LN_EPS: f32 = 1e-12;
/// The most stripes the inner width is cut into.
const MAX_STRIPES: usize = 8;

/// One slice `cols` of the inner width: `W1[:, cols]`, `b1[cols]` and `W2[cols, :]`.
struct Stripe {
    /// d x width, row-major.
    w1: Vec<f32>,
    b1: Vec<f32>,
    /// width x d, row-major.
    w2: Vec<f32>,
}

/// The output side's parameters: the second bias and LayerNorm's gain and bias.
#[derive(Clone)]
struct OutParams {
    b2: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

/// What a forward pass leaves for the backward pass.
struct Activations {
    /// Pre-activation `x W1 + b1` (n x h); empty unless kept.
    a: Vec<f32>,
    /// `GELU(a)` (n x h).
    g: Vec<f32>,
    /// The output (n x d).
    y: Vec<f32>,
    /// The normalised residual (n x d); empty unless kept.
    xhat: Vec<f32>,
    /// `1 / std` of each row's residual.
    inv: Vec<f32>,
}

/// `LayerNorm(x + W2 GELU(W1 x + b1) + b2)` with model width `d` and inner width `hidden`.
pub struct FeedForwardExpert {
    d: usize,
    h: usize,
    lr: f32,
    /// The inner-width columns of each stripe.
    cols: Vec<Range<usize>>,
    stripes: Vec<RwLock<Stripe>>,
    out: RwLock<OutParams>,
    /// The stripe the next update starts at, so that concurrent updates start apart.
    next_start: AtomicUsize,
    /// SGD steps taken so far (Backward calls).
    steps: AtomicU64,
    /// Recent forward activations, for Backward calls on the same rows (`None`: off).
    cache: Option<Mutex<ActivationCache>>,
    /// Parallelism of the matrix products inside one call.
    par: Par,
}

/// The memory the activation cache may hold by default.
pub const DEFAULT_CACHE_BYTES: usize = 128 << 20;
/// How many SGD steps cached activations stay usable.
pub const CACHE_MAX_STEPS: u64 = 16;

/// splitmix64: a tiny deterministic generator for the initial weights.
fn next_uniform(state: &mut u64) -> f32 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    ((z >> 40) as f32) / ((1u64 << 24) as f32) * 2.0 - 1.0
}

/// `dst (m x n) = alpha * a (m x k) * b (k x n)` (+ dst when `add`), views of any strides.
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

/// Columns `c` of the row-major `rows x width` matrix in `s`.
fn cols_of<'a>(s: &'a [f32], rows: usize, width: usize, c: &Range<usize>) -> MatRef<'a, f32> {
    rm(s, rows, width).submatrix(0, c.start, rows, c.len())
}

fn cols_of_mut<'a>(
    s: &'a mut [f32],
    rows: usize,
    width: usize,
    c: &Range<usize>,
) -> MatMut<'a, f32> {
    rm_mut(s, rows, width).submatrix_mut(0, c.start, rows, c.len())
}

// A panic inside a call leaves the weights usable (at worst half-stepped), so a poisoned lock
// is taken over rather than failing every later call.
fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

fn lock<T>(l: &Mutex<T>) -> MutexGuard<'_, T> {
    l.lock().unwrap_or_else(|e| e.into_inner())
}

fn try_write<T>(l: &RwLock<T>) -> Option<RwLockWriteGuard<'_, T>> {
    match l.try_write() {
        Ok(g) => Some(g),
        Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// Adds the parts in order into `acc`.
fn add_parts(acc: &mut [f32], parts: &[Vec<f32>]) {
    for part in parts {
        for (a, v) in acc.iter_mut().zip(part) {
            *a += v;
        }
    }
}

/// LayerNorm on each row of `r` (after `r += b2`): `y = xhat * gamma + beta` with
/// `xhat = (r - mean) / std`, kept in `xhat` unless that is empty; `1 / std` into `inv`.
#[inline(always)]
fn layer_norm_rows_kernel(
    r: &mut [f32],
    o: &OutParams,
    y: &mut [f32],
    xhat: &mut [f32],
    inv: &mut [f32],
) {
    let d = o.b2.len();
    let keep = !xhat.is_empty();
    for (i, (r, y)) in r.chunks_exact_mut(d).zip(y.chunks_exact_mut(d)).enumerate() {
        for (v, b) in r.iter_mut().zip(&o.b2) {
            *v += b;
        }
        let mean = sum(r) / d as f32;
        for v in r.iter_mut() {
            *v -= mean;
        }
        let s = 1.0 / (dot(r, r) / d as f32 + LN_EPS).sqrt();
        inv[i] = s;
        if keep {
            let xh = &mut xhat[i * d..(i + 1) * d];
            for ((((x, y), &v), &g), &b) in xh
                .iter_mut()
                .zip(y.iter_mut())
                .zip(&*r)
                .zip(&o.gamma)
                .zip(&o.beta)
            {
                *x = v * s;
                *y = *x * g + b;
            }
        } else {
            for (((y, &v), &g), &b) in y.iter_mut().zip(&*r).zip(&o.gamma).zip(&o.beta) {
                *y = v * s * g + b;
            }
        }
    }
}

/// Where LayerNorm's backward pass writes.
struct LnGrads<'a> {
    /// The gradient at the residual sum (n x d).
    dr: &'a mut [f32],
    dgamma: &'a mut [f32],
    dbeta: &'a mut [f32],
    db2: &'a mut [f32],
}

/// LayerNorm's backward pass for the output gradient `gy`: accumulates the gain, bias and
/// `b2` gradients and writes `dr`.
#[inline(always)]
fn layer_norm_back_kernel(gy: &[f32], act: &Activations, gamma: &[f32], out: LnGrads<'_>) {
    let d = gamma.len();
    let rows = gy.chunks_exact(d).zip(act.xhat.chunks_exact(d));
    for (((gyr, xh), dr), &inv) in rows.zip(out.dr.chunks_exact_mut(d)).zip(&act.inv) {
        for (((dg, db), &g), &x) in out
            .dgamma
            .iter_mut()
            .zip(out.dbeta.iter_mut())
            .zip(gyr)
            .zip(xh)
        {
            *dg += g * x;
            *db += g;
        }
        // dxhat = gy * gamma, then dr = (dxhat - mean(dxhat) - xhat mean(dxhat xhat)) / std.
        for ((v, &g), &w) in dr.iter_mut().zip(gyr).zip(gamma) {
            *v = g * w;
        }
        let m1 = sum(dr) / d as f32;
        let m2 = dot(dr, xh) / d as f32;
        for ((v, &x), acc) in dr.iter_mut().zip(xh).zip(out.db2.iter_mut()) {
            *v = inv * (*v - m1 - x * m2);
            *acc += *v;
        }
    }
}

multiversion!(layer_norm_rows => layer_norm_rows_kernel(
    r: &mut [f32],
    o: &OutParams,
    y: &mut [f32],
    xhat: &mut [f32],
    inv: &mut [f32],
));
multiversion!(layer_norm_back => layer_norm_back_kernel(
    gy: &[f32],
    act: &Activations,
    gamma: &[f32],
    out: LnGrads<'_>,
));

impl FeedForwardExpert {
    /// A new expert with model width `d`, inner width `hidden`, SGD learning rate `lr`, and
    /// weights drawn uniformly in ±1/sqrt(fan_in) from `seed` (as torch's `Linear` does).
    pub fn new(d: usize, hidden: usize, lr: f32, seed: u64) -> FeedForwardExpert {
        let mut st = seed;
        let s1 = 1.0 / (d as f32).sqrt();
        let s2 = 1.0 / (hidden as f32).sqrt();
        let w1: Vec<f32> = (0..d * hidden)
            .map(|_| next_uniform(&mut st) * s1)
            .collect();
        let b1: Vec<f32> = (0..hidden).map(|_| next_uniform(&mut st) * s1).collect();
        let w2: Vec<f32> = (0..hidden * d)
            .map(|_| next_uniform(&mut st) * s2)
            .collect();
        let b2 = (0..d).map(|_| next_uniform(&mut st) * s2).collect();
        let count = hidden.clamp(1, MAX_STRIPES);
        let cols: Vec<Range<usize>> = (0..count)
            .map(|s| s * hidden / count..(s + 1) * hidden / count)
            .collect();
        let stripes = cols
            .iter()
            .map(|c| {
                RwLock::new(Stripe {
                    w1: w1
                        .chunks_exact(hidden.max(1))
                        .flat_map(|row| &row[c.clone()])
                        .copied()
                        .collect(),
                    b1: b1[c.clone()].to_vec(),
                    w2: w2[c.start * d..c.end * d].to_vec(),
                })
            })
            .collect();
        FeedForwardExpert {
            d,
            h: hidden,
            lr,
            cols,
            stripes,
            out: RwLock::new(OutParams {
                b2,
                gamma: vec![1.0; d],
                beta: vec![0.0; d],
            }),
            next_start: AtomicUsize::new(0),
            steps: AtomicU64::new(0),
            cache: None,
            par: Par::rayon(0),
        }
        .with_activation_cache(DEFAULT_CACHE_BYTES)
    }

    /// Keeps the forward activations of recent rows in up to `bytes` of memory (0: none), so
    /// that a Backward on rows run forward at most [`CACHE_MAX_STEPS`] steps before skips the
    /// forward pass it would otherwise recompute. On by default with
    /// [`DEFAULT_CACHE_BYTES`]; see `docs/wire.md`.
    pub fn with_activation_cache(mut self, bytes: usize) -> FeedForwardExpert {
        // A row's floats, plus about 96 bytes of bookkeeping (map entry, order, allocation).
        let row_bytes = (2 * self.d + 2 * self.h + 1) * std::mem::size_of::<f32>() + 96;
        let rows = bytes / row_bytes;
        self.cache = (rows > 0)
            .then(|| Mutex::new(ActivationCache::new(self.d, self.h, rows, CACHE_MAX_STEPS)));
        self
    }

    /// `(hits, misses)` of the activation cache: Backward calls that found all their rows, and
    /// those that recomputed the forward pass.
    pub fn cache_stats(&self) -> (u64, u64) {
        self.cache.as_ref().map_or((0, 0), |c| lock(c).stats())
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
        let sum = |v: &[f32]| v.iter().map(|&v| f64::from(v)).sum::<f64>();
        let mut total = 0.0;
        for s in &self.stripes {
            let s = read(s);
            total += sum(&s.w1) + sum(&s.b1) + sum(&s.w2);
        }
        let o = read(&self.out);
        total + sum(&o.b2) + sum(&o.gamma) + sum(&o.beta)
    }

    /// Forward on `n` rows of `x` with the output parameters `o`; when `keep` is false the
    /// pre-activation and the normalised residual are not kept.
    fn forward_rows(&self, o: &OutParams, x: &[f32], n: usize, keep: bool) -> Activations {
        let (d, h) = (self.d, self.h);
        let level = simd_level();
        let mut a = if keep {
            vec![0.0f32; n * h]
        } else {
            Vec::new()
        };
        let mut g = vec![0.0f32; n * h];
        let mut r = x.to_vec();
        for (stripe, c) in self.stripes.iter().zip(&self.cols) {
            let s = read(stripe);
            // Pre-activation into `a` (or straight into `g` when it is not kept), then bias
            // and GELU in one vectorised pass per row, then this stripe's share of W2.
            let pre = if keep { &mut a } else { &mut g };
            gemm(
                self.par,
                cols_of_mut(pre, n, h, c),
                false,
                rm(x, n, d),
                rm(&s.w1, d, c.len()),
                1.0,
            );
            for i in 0..n {
                let row = i * h + c.start..i * h + c.end;
                if keep {
                    bias_gelu_keep(level, &mut a[row.clone()], &s.b1, &mut g[row]);
                } else {
                    bias_gelu_inplace(level, &mut g[row], &s.b1);
                }
            }
            gemm(
                self.par,
                rm_mut(&mut r, n, d),
                true,
                cols_of(&g, n, h, c),
                rm(&s.w2, c.len(), d),
                1.0,
            );
        }
        let mut y = vec![0.0f32; n * d];
        let mut xhat = if keep {
            vec![0.0f32; n * d]
        } else {
            Vec::new()
        };
        let mut inv = vec![0.0f32; n];
        layer_norm_rows(level, &mut r, o, &mut y, &mut xhat, &mut inv);
        Activations { a, g, y, xhat, inv }
    }

    /// Backward through stripe `k` under its write lock, then its SGD step: writes the
    /// stripe's columns of `da`, its share of the input gradient into `dx_part`, and steps
    /// `W1`, `b1` and `W2` of the stripe.
    #[allow(clippy::too_many_arguments)]
    fn backward_stripe(
        &self,
        s: &mut Stripe,
        c: &Range<usize>,
        n: usize,
        x: &[f32],
        act: &Activations,
        dr: &[f32],
        da: &mut [f32],
        dx_part: &mut [f32],
    ) {
        let (d, h, lr) = (self.d, self.h, self.lr);
        let level = simd_level();
        // da = (dr W2^T) * GELU'(a) on the stripe's columns.
        gemm(
            self.par,
            cols_of_mut(da, n, h, c),
            false,
            rm(dr, n, d),
            rm(&s.w2, c.len(), d).transpose(),
            1.0,
        );
        for i in 0..n {
            let row = i * h + c.start..i * h + c.end;
            gelu_bwd_inplace(level, &act.a[row.clone()], &mut da[row]);
        }
        // This stripe's share of dx = da W1^T.
        gemm(
            self.par,
            rm_mut(dx_part, n, d),
            false,
            cols_of(da, n, h, c),
            rm(&s.w1, d, c.len()).transpose(),
            1.0,
        );
        // The SGD step: W2 -= lr g^T dr, W1 -= lr x^T da, b1 -= lr sum(da).
        gemm(
            self.par,
            rm_mut(&mut s.w2, c.len(), d),
            true,
            cols_of(&act.g, n, h, c).transpose(),
            rm(dr, n, d),
            -lr,
        );
        gemm(
            self.par,
            rm_mut(&mut s.w1, d, c.len()),
            true,
            rm(x, n, d).transpose(),
            cols_of(da, n, h, c),
            -lr,
        );
        let mut db1 = vec![0.0f32; c.len()];
        for row in da.chunks_exact(h) {
            for (acc, v) in db1.iter_mut().zip(&row[c.clone()]) {
                *acc += v;
            }
        }
        for (w, g) in s.b1.iter_mut().zip(&db1) {
            *w -= lr * g;
        }
    }

    /// The activations of the rows of `x` from the cache, if every row is there and fresh.
    fn cached(&self, x: &[f32]) -> Option<Activations> {
        let step = self.steps.load(Ordering::Acquire);
        let found = lock(self.cache.as_ref()?).lookup(x, step)?;
        Some(Activations {
            a: found.a,
            g: found.g,
            y: Vec::new(),
            xhat: found.xhat,
            inv: found.inv,
        })
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

    /// Rows are independent and the SGD step uses the gradient summed over rows, so one call
    /// on concatenated rows takes the step of the separate calls.
    fn batchable_backward(&self) -> bool {
        true
    }
}

impl FeedForwardExpert {
    fn forward_impl(&self, inputs: &[Tensor]) -> SynapseResult<Vec<Tensor>> {
        let (x, n) = self.check_input(inputs)?;
        let o = read(&self.out).clone();
        let step = self.steps.load(Ordering::Acquire);
        let act = self.forward_rows(&o, &x, n, self.cache.is_some());
        if let Some(cache) = &self.cache {
            let rows = RowActivations {
                x: &x,
                a: &act.a,
                g: &act.g,
                xhat: &act.xhat,
                inv: &act.inv,
            };
            lock(cache).insert(&rows, step);
        }
        Ok(vec![Tensor::from_f32(vec![n, self.d], &act.y)?])
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
        let o = read(&self.out).clone();
        let act = self
            .cached(&x)
            .unwrap_or_else(|| self.forward_rows(&o, &x, n, true));

        // LayerNorm: parameter gradients, then dr (the gradient at the residual sum).
        let mut dgamma = vec![0.0f32; d];
        let mut dbeta = vec![0.0f32; d];
        let mut db2 = vec![0.0f32; d];
        let mut dr = vec![0.0f32; n * d];
        let grads = LnGrads {
            dr: &mut dr,
            dgamma: &mut dgamma,
            dbeta: &mut dbeta,
            db2: &mut db2,
        };
        layer_norm_back(simd_level(), &gy, &act, &o.gamma, grads);

        // Backward and the SGD step, one stripe at a time under its write lock: free stripes
        // first, starting at a different stripe on each call; when every remaining stripe is
        // busy, wait for the first. A concurrent call may have stepped a stripe since this
        // call read it (asynchronous SGD, as hivemind's servers also apply gradients computed
        // on slightly older weights).
        let count = self.stripes.len();
        let start = self.next_start.fetch_add(1, Ordering::Relaxed);
        let mut todo: Vec<usize> = (0..count).map(|k| (start + k) % count).collect();
        let mut da = vec![0.0f32; n * h];
        let mut dx_parts = vec![vec![0.0f32; n * d]; count];
        while !todo.is_empty() {
            let mut done_any = false;
            let mut i = 0;
            while i < todo.len() {
                let k = todo[i];
                match try_write(&self.stripes[k]) {
                    Some(mut s) => {
                        let c = &self.cols[k];
                        self.backward_stripe(
                            &mut s,
                            c,
                            n,
                            &x,
                            &act,
                            &dr,
                            &mut da,
                            &mut dx_parts[k],
                        );
                        todo.remove(i);
                        done_any = true;
                    }
                    None => i += 1,
                }
            }
            if !done_any {
                let k = todo.remove(0);
                let mut s = write(&self.stripes[k]);
                let c = &self.cols[k];
                self.backward_stripe(&mut s, c, n, &x, &act, &dr, &mut da, &mut dx_parts[k]);
            }
        }
        // dx = dr + sum of the stripes' shares, in stripe order.
        let mut dx = dr;
        add_parts(&mut dx, &dx_parts);

        let mut out = write(&self.out);
        self.steps.fetch_add(1, Ordering::AcqRel);
        for (w, g) in out.b2.iter_mut().zip(&db2) {
            *w -= lr * g;
        }
        for (w, g) in out.gamma.iter_mut().zip(&dgamma) {
            *w -= lr * g;
        }
        for (w, g) in out.beta.iter_mut().zip(&dbeta) {
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

    /// An input batch and an output gradient of `n x d` uniform values drawn from `seed`.
    fn random_batch(n: usize, d: usize, seed: u64) -> (Tensor, Tensor) {
        let mut st = seed;
        let mut draw = || {
            let v: Vec<f32> = (0..n * d).map(|_| next_uniform(&mut st)).collect();
            Tensor::from_f32(vec![n, d], &v).unwrap()
        };
        let x = draw();
        (x, draw())
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

    /// The update visits the stripes from a different start on each call; the input gradient
    /// is the same to the bit.
    #[test]
    fn the_stripe_order_does_not_change_the_input_gradient() {
        let (d, h, n) = (8, 16, 3);
        let e = FeedForwardExpert::new(d, h, 0.0, 7);
        assert_eq!(e.stripes.len(), MAX_STRIPES);
        let x = Tensor::from_f32(vec![n, d], &[0.3; 24]).unwrap();
        let g: Vec<f32> = (0..n * d).map(|i| (i as f32 * 0.7).sin()).collect();
        let g = Tensor::from_f32(vec![n, d], &g).unwrap();
        let dx: Vec<Vec<f32>> = (0..3)
            .map(|_| {
                let r = e
                    .backward(std::slice::from_ref(&x), std::slice::from_ref(&g))
                    .unwrap()
                    .unwrap();
                r[0].to_f32().unwrap()
            })
            .collect();
        assert_eq!(dx[0], dx[1]);
        assert_eq!(dx[0], dx[2]);
    }

    /// Concurrent Backward calls each apply their whole step: with a small learning rate the
    /// parameters move as far as under the same calls made one after another (a lost update
    /// would leave a stripe 1/32 short).
    #[test]
    fn concurrent_updates_are_all_applied() {
        let (d, h, n) = (8, 32, 4);
        let (x, g) = random_batch(n, d, 5);
        let call = |e: &FeedForwardExpert| {
            e.backward(std::slice::from_ref(&x), std::slice::from_ref(&g))
                .unwrap();
        };
        // Each stripe's weights.
        let weights = |e: &FeedForwardExpert| -> Vec<Vec<f32>> {
            e.stripes
                .iter()
                .map(|s| {
                    let s = s.read().unwrap();
                    s.w1.iter().chain(&s.b1).chain(&s.w2).copied().collect()
                })
                .collect()
        };
        let dist = |p: &[f32], q: &[f32]| -> f64 {
            p.iter()
                .zip(q)
                .map(|(a, b)| f64::from(a - b).powi(2))
                .sum::<f64>()
                .sqrt()
        };
        let serial = FeedForwardExpert::new(d, h, 1e-4, 3);
        let start = weights(&serial);
        (0..32).for_each(|_| call(&serial));
        let concurrent = FeedForwardExpert::new(d, h, 1e-4, 3);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| (0..8).for_each(|_| call(&concurrent)));
            }
        });
        let (end, other) = (weights(&serial), weights(&concurrent));
        for k in 0..start.len() {
            let moved = dist(&end[k], &start[k]);
            let diff = dist(&other[k], &end[k]);
            assert!(moved > 1e-4, "stripe {k} moved {moved}");
            assert!(
                diff < 0.01 * moved,
                "stripe {k} moved {moved}, differs by {diff}"
            );
        }
    }

    /// Backward right after Forward on the same rows takes the activations from the cache and
    /// gives the same input gradient and the same step, to the bit, as recomputing them.
    #[test]
    fn backward_after_forward_uses_the_cache_to_the_same_result() {
        let (d, h, n) = (8, 32, 5);
        let (x, g) = random_batch(n, d, 21);
        let run = |e: &FeedForwardExpert| {
            e.forward(std::slice::from_ref(&x)).unwrap();
            let dx = e
                .backward(std::slice::from_ref(&x), std::slice::from_ref(&g))
                .unwrap()
                .unwrap();
            (dx[0].to_f32().unwrap(), e.param_checksum())
        };
        let cached = FeedForwardExpert::new(d, h, 0.05, 3);
        let plain = FeedForwardExpert::new(d, h, 0.05, 3).with_activation_cache(0);
        assert_eq!(run(&cached), run(&plain));
        assert_eq!(cached.cache_stats(), (1, 0));
        assert_eq!(plain.cache_stats(), (0, 0));
        // A second Backward one step later still hits; rows never run forward miss.
        cached
            .backward(std::slice::from_ref(&x), std::slice::from_ref(&g))
            .unwrap();
        let other = Tensor::from_f32(vec![1, d], &[0.25; 8]).unwrap();
        let g1 = Tensor::from_f32(vec![1, d], &[1.0; 8]).unwrap();
        cached.backward(&[other], &[g1]).unwrap();
        assert_eq!(cached.cache_stats(), (2, 1));
    }

    /// Cached activations are used for at most `CACHE_MAX_STEPS` steps.
    #[test]
    fn cached_activations_expire_after_some_steps() {
        let (d, h) = (8, 16);
        let e = FeedForwardExpert::new(d, h, 0.01, 3);
        let x = Tensor::from_f32(vec![2, d], &[0.5; 16]).unwrap();
        let g = Tensor::from_f32(vec![2, d], &[0.1; 16]).unwrap();
        e.forward(std::slice::from_ref(&x)).unwrap();
        for _ in 0..=CACHE_MAX_STEPS + 1 {
            e.backward(std::slice::from_ref(&x), std::slice::from_ref(&g))
                .unwrap();
        }
        // The calls at steps 0..=CACHE_MAX_STEPS find the rows; the last one recomputes.
        assert_eq!(e.cache_stats(), (CACHE_MAX_STEPS + 1, 1));
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
