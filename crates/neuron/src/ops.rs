//! Fused CPU kernels, each with its own backward pass: GELU, layer norm, causal multi-head
//! attention (its softmax included), cross-entropy and the linear layer (product and bias).
//!
//! Built from elementary candle ops, these take most of a training step (GELU's backward
//! alone runs ten element-wise passes; a bias gradient goes through a generic strided
//! reduction), which left a step 5 to 10 times slower than PyTorch's. Each kernel here makes one
//! pass forward and one backward. They run on the CPU only; on other devices the model uses
//! the elementary versions, which remain the reference: `tests` checks that both give the same
//! values and gradients.
//!
//! Each kernel splits its rows over rayon's threads. Sums across rows (the gain, bias and loss
//! reductions) are taken per fixed chunk of rows and then added in chunk order, so a result
//! does not depend on the number of threads.

use bt_vecmath::{dot, exp, gelu_bwd, gelu_fwd, max, multiversion, simd_level, sum};
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, D, Layout, Result, Shape, Storage, Tensor, bail,
};
use rayon::prelude::*;

/// The variable that sizes candle's own thread pool for element-wise CPU ops.
pub const CANDLE_THREADS_VAR: &str = "CANDLE_NUM_THREADS";

/// The variable that sizes rayon's pool, which candle also reads for its matrix products.
pub const RAYON_THREADS_VAR: &str = "RAYON_NUM_THREADS";

/// Sets candle's thread counts once for the process, leaving any variable the user set alone:
///
/// - `CANDLE_NUM_THREADS=1` turns candle's own element-wise CPU thread pool off. After every
///   element-wise op that pool's worker spins for a while before it sleeps, and all callers in
///   a process share it behind one lock. On a small machine that spinning takes a core from the
///   matrix products and from these kernels, which run on rayon; with several learners in one
///   process (`bt net up`) the lock also serialises them. Measured on 2 cores, a training step
///   at batch 32 is about 15% faster without it (docs/neuron.md, Speed).
/// - `RAYON_NUM_THREADS` = the available parallelism (rayon's own default). Without it candle
///   counts the physical cores again for every matrix product by reading `/proc/cpuinfo`:
///   thousands of reads a second in `bt net up`, about 4% of its time on 2 cores.
///
/// # Safety
/// It sets process environment variables: call it first thing in `main`, before any other
/// thread exists.
#[allow(unsafe_code)]
pub unsafe fn configure_candle_threads() {
    if std::env::var_os(CANDLE_THREADS_VAR).is_none() {
        // SAFETY: the caller guarantees that no other thread runs yet.
        unsafe { std::env::set_var(CANDLE_THREADS_VAR, "1") };
    }
    if std::env::var_os(RAYON_THREADS_VAR).is_none() {
        let n = std::thread::available_parallelism().map_or(1, usize::from);
        // SAFETY: as above.
        unsafe { std::env::set_var(RAYON_THREADS_VAR, n.to_string()) };
    }
}

/// Elements per parallel task: enough work to outweigh the hand-off between threads.
const TASK_ELEMS: usize = 1 << 14;

/// Elements per parallel task for rows of `row` elements: whole rows, about `TASK_ELEMS`.
fn task_len(row: usize) -> usize {
    let row = row.max(1);
    (TASK_ELEMS / row).max(1) * row
}

/// Adds per-chunk partial sums in chunk order (a result independent of the thread count).
fn sum_partials(parts: Vec<Vec<f32>>, n: usize) -> Vec<f32> {
    let mut total = vec![0f32; n];
    for p in parts {
        for (t, v) in total.iter_mut().zip(&p) {
            *t += v;
        }
    }
    total
}

fn contiguous<'a, T: candle_core::WithDType>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [T]> {
    let v = s.as_slice::<T>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => bail!("fused op needs a contiguous input"),
    }
}

/// `y[j] = e^(x[j] - max)` for every `j`; returns their sum.
#[inline(always)]
fn exp_shifted(x: &[f32], max: f32, y: &mut [f32]) -> f32 {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = exp(x - max);
    }
    sum(y)
}

/// GELU, tanh approximation (the same function as candle's `gelu`).
struct Gelu;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "bt-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous::<f32>(s, l)?;
        let mut y = vec![0f32; x.len()];
        let level = simd_level();
        y.par_chunks_mut(TASK_ELEMS)
            .zip(x.par_chunks(TASK_ELEMS))
            .for_each(|(y, x)| gelu_fwd(level, x, y));
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(arg.apply_op2_no_bwd(&grad.contiguous()?, &GeluGrad)?))
    }
}

struct GeluGrad;

impl CustomOp2 for GeluGrad {
    fn name(&self) -> &'static str {
        "bt-gelu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous::<f32>(s1, l1)?;
        let g = contiguous::<f32>(s2, l2)?;
        let mut out = vec![0f32; x.len()];
        let level = simd_level();
        out.par_chunks_mut(TASK_ELEMS)
            .zip(x.par_chunks(TASK_ELEMS).zip(g.par_chunks(TASK_ELEMS)))
            .for_each(|(out, (x, g))| gelu_bwd(level, x, g, out));
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Layer norm over the last dimension with gain and bias, `eps = 1e-5`.
struct LayerNorm;

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "bt-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous::<f32>(s1, l1)?;
        let gamma = contiguous::<f32>(s2, l2)?;
        let beta = contiguous::<f32>(s3, l3)?;
        let d = gamma.len();
        let mut y = vec![0f32; x.len()];
        let task = task_len(d);
        let level = simd_level();
        y.par_chunks_mut(task)
            .zip(x.par_chunks(task))
            .for_each(|(y, x)| layer_norm_fwd_dispatch(level, x, gamma, beta, y));
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = gamma.elem_count();
        let mut dx = vec![0f32; x.elem_count()];
        // Per chunk of rows: its share of dgamma (first d) and dbeta (last d).
        let parts = with_values(x, |xv| {
            with_values(grad, |gv| {
                with_values(gamma, |gm| Ok(layer_norm_bwd(xv, gv, gm, &mut dx)))
            })
        })?;
        let mut dgamma = sum_partials(parts, 2 * d);
        let dbeta = dgamma.split_off(d);
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), dev)?),
            Some(Tensor::from_vec(dgamma, d, dev)?),
            Some(Tensor::from_vec(dbeta, d, dev)?),
        ))
    }
}

/// Writes the row `x` less its mean to `out` and returns `1 / sqrt(var + 1e-5)`, the scale
/// that normalises it.
#[inline(always)]
fn centre(x: &[f32], out: &mut [f32]) -> f32 {
    let d = x.len() as f32;
    let mean = sum(x) / d;
    for (c, &v) in out.iter_mut().zip(x) {
        *c = v - mean;
    }
    1.0 / (dot(out, out) / d + 1e-5).sqrt()
}

/// Layer norm forward on whole rows of `gamma.len()` values. The mean and variance are sums
/// in vector lanes ([`sum`], [`dot`]), not one add after another.
#[inline(always)]
fn layer_norm_fwd_rows(x: &[f32], gamma: &[f32], beta: &[f32], y: &mut [f32]) {
    let d = gamma.len();
    for (xr, yr) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
        let r = centre(xr, yr);
        for ((v, &g), &b) in yr.iter_mut().zip(gamma).zip(beta) {
            *v = *v * r * g + b;
        }
    }
}

/// Layer norm backward on whole rows: writes `dx` and adds the rows' share of the gain's
/// gradient to `part[..d]` and the bias's to `part[d..]`; `scratch` holds `2 d` values.
#[inline(always)]
fn layer_norm_bwd_rows(
    xv: &[f32],
    gv: &[f32],
    gm: &[f32],
    dx: &mut [f32],
    part: &mut [f32],
    scratch: &mut [f32],
) {
    let d = gm.len();
    let (dgamma, dbeta) = part.split_at_mut(d);
    let (xhat, gg) = scratch.split_at_mut(d);
    for ((xr, gr), dxr) in xv
        .chunks_exact(d)
        .zip(gv.chunks_exact(d))
        .zip(dx.chunks_exact_mut(d))
    {
        let r = centre(xr, xhat);
        for i in 0..d {
            xhat[i] *= r;
            gg[i] = gr[i] * gm[i];
            dgamma[i] += gr[i] * xhat[i];
            dbeta[i] += gr[i];
        }
        let m1 = sum(gg) / d as f32;
        let m2 = dot(gg, xhat) / d as f32;
        for i in 0..d {
            dxr[i] = r * (gg[i] - m1 - xhat[i] * m2);
        }
    }
}

multiversion!(layer_norm_fwd_dispatch => layer_norm_fwd_rows(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    y: &mut [f32],
));
multiversion!(layer_norm_bwd_dispatch => layer_norm_bwd_rows(
    xv: &[f32],
    gv: &[f32],
    gm: &[f32],
    dx: &mut [f32],
    part: &mut [f32],
    scratch: &mut [f32],
));

/// Layer norm's backward over rows of `gm.len()` values: writes `dx` and returns, per chunk of
/// rows, that chunk's share of the gain's gradient (first half) and the bias's (second half).
fn layer_norm_bwd(xv: &[f32], gv: &[f32], gm: &[f32], dx: &mut [f32]) -> Vec<Vec<f32>> {
    let d = gm.len();
    let task = task_len(d);
    let level = simd_level();
    dx.par_chunks_mut(task)
        .zip(xv.par_chunks(task).zip(gv.par_chunks(task)))
        .map(|(dx, (xv, gv))| {
            let mut part = vec![0f32; 2 * d];
            let mut scratch = vec![0f32; 2 * d];
            layer_norm_bwd_dispatch(level, xv, gv, gm, dx, &mut part, &mut scratch);
            part
        })
        .collect()
}

/// Causal multi-head self-attention over packed projections `qkv` `[b, t, 3d]` (queries,
/// keys and values side by side, head `h` at columns `h dh..(h + 1) dh` of each): returns
/// `[b, t, d]`, `y_i = sum_{j <= i} softmax_j(scale q_i . k_j) v_j` per head, heads side by side.
///
/// One node in the graph instead of about fifteen (splits, transposes, copies, two batched
/// products, the softmax), so the backward pass allocates and adds far fewer gradients. The
/// backward recomputes the attention weights rather than keeping them.
#[derive(Clone, Copy)]
struct CausalAttention {
    heads: usize,
    scale: f32,
}

/// Shapes of one attention call: batch, positions, model width, heads, head width.
#[derive(Clone, Copy)]
struct AttnShape {
    t: usize,
    d: usize,
    heads: usize,
    dh: usize,
    scale: f32,
}

/// `(b, t, d, dh)` of packed projections `[b, t, 3d]` split into `heads` heads of width `dh`,
/// or an error naming the shape.
fn attention_dims(shape: &Shape, heads: usize) -> Result<(usize, usize, usize, usize)> {
    let (b, t, w) = shape.dims3()?;
    let d = w / 3;
    if w % 3 != 0 || heads == 0 || d % heads != 0 {
        bail!(
            "attention needs [b, t, 3d] with d divisible by {heads} heads, got {:?}",
            shape.dims()
        );
    }
    Ok((b, t, d, d / heads))
}

impl CausalAttention {
    fn shape(&self, l: &Layout) -> Result<(usize, AttnShape)> {
        let (b, t, d, dh) = attention_dims(l.shape(), self.heads)?;
        Ok((
            b,
            AttnShape {
                t,
                d,
                heads: self.heads,
                dh,
                scale: self.scale,
            },
        ))
    }
}

/// Keys scored, and columns summed, at a time: two AVX2 registers or one AVX-512 register of
/// accumulators that stay in registers through a whole sum.
const BLOCK: usize = 16;

/// `n` rounded up to whole blocks of [`BLOCK`].
fn padded(n: usize) -> usize {
    n.div_ceil(BLOCK) * BLOCK
}

/// Columns `col..col + dh` of the `t` rows of `src` (row stride `w`), transposed into `dst`
/// `[dh, tp]`: `dst[c * tp + j] = src[j * w + col + c]`. Positions `t..tp` stay zero.
#[inline(always)]
fn gather_t(src: &[f32], w: usize, col: usize, dh: usize, t: usize, tp: usize, dst: &mut [f32]) {
    // Row by row of `dst`: its stores are contiguous and the strided accesses are loads.
    for (c, row) in dst.chunks_exact_mut(tp).take(dh).enumerate() {
        for (j, v) in row[..t].iter_mut().enumerate() {
            *v = src[j * w + col + c];
        }
    }
}

/// Columns `col..col + dh` of the `t` rows of `src` (row stride `w`) into `dst` `[t, dhp]`,
/// rows padded with zeros to `dhp`.
#[inline(always)]
fn gather_rows(
    src: &[f32],
    w: usize,
    col: usize,
    dh: usize,
    t: usize,
    dhp: usize,
    dst: &mut [f32],
) {
    for j in 0..t {
        dst[j * dhp..][..dh].copy_from_slice(&src[j * w + col..][..dh]);
    }
}

/// `out[j] = scale * sum_c q[c] * kt[c * tp + j]` for every `j < n`, rounded up to whole
/// blocks (`out` and the rows of `kt` hold `tp` values).
#[inline(always)]
fn scores(q: &[f32], kt: &[f32], tp: usize, n: usize, scale: f32, out: &mut [f32]) {
    for j0 in (0..n).step_by(BLOCK) {
        let mut acc = [0f32; BLOCK];
        for (c, &qc) in q.iter().enumerate() {
            for (a, &k) in acc.iter_mut().zip(&kt[c * tp + j0..][..BLOCK]) {
                *a += qc * k;
            }
        }
        for (o, a) in out[j0..j0 + BLOCK].iter_mut().zip(&acc) {
            *o = a * scale;
        }
    }
}

/// `out[c] = sum_{r in rows} weights[r * stride] m[r * dhp + c]` for `c < out.len()`: a
/// weighted sum of rows of `m` `[.., dhp]`, each block of columns summed in registers.
#[inline(always)]
fn weighted_rows(
    weights: &[f32],
    stride: usize,
    rows: std::ops::Range<usize>,
    m: &[f32],
    dhp: usize,
    out: &mut [f32],
) {
    for c0 in (0..dhp).step_by(BLOCK) {
        let mut acc = [0f32; BLOCK];
        for r in rows.clone() {
            let wr = weights[r * stride];
            for (a, &v) in acc.iter_mut().zip(&m[r * dhp + c0..][..BLOCK]) {
                *a += wr * v;
            }
        }
        let n = out.len().saturating_sub(c0).min(BLOCK);
        out[c0..c0 + n].copy_from_slice(&acc[..n]);
    }
}

/// Softmax of `p` in place.
#[inline(always)]
fn softmax_in_place(p: &mut [f32]) {
    let top = max(p);
    for v in p.iter_mut() {
        *v = exp(*v - top);
    }
    let inv = 1.0 / sum(p);
    for v in p.iter_mut() {
        *v *= inv;
    }
}

/// Forward for one batch item: `qkv` `[t, 3d]` → `y` `[t, d]`.
///
/// Per head the keys are transposed once, so that a query's scores against keys `0..=i` are
/// `dh` multiply-adds over contiguous blocks of keys (no horizontal sum per key), and
/// `y_i = sum_j p_j v_j` is summed in registers a block of columns at a time.
#[inline(always)]
fn attn_fwd_item(qkv: &[f32], y: &mut [f32], s: AttnShape) {
    let (w, tp, dhp) = (3 * s.d, padded(s.t), padded(s.dh));
    let (mut kt, mut vp) = (vec![0f32; s.dh * tp], vec![0f32; s.t * dhp]);
    let mut p = vec![0f32; tp];
    for h in 0..s.heads {
        let qo = h * s.dh;
        gather_t(qkv, w, s.d + qo, s.dh, s.t, tp, &mut kt);
        gather_rows(qkv, w, 2 * s.d + qo, s.dh, s.t, dhp, &mut vp);
        for i in 0..s.t {
            scores(&qkv[i * w + qo..][..s.dh], &kt, tp, i + 1, s.scale, &mut p);
            softmax_in_place(&mut p[..=i]);
            weighted_rows(&p, 1, 0..i + 1, &vp, dhp, &mut y[i * s.d + qo..][..s.dh]);
        }
    }
}

/// Backward for one batch item: `qkv` `[t, 3d]`, `dy` `[t, d]` → `dqkv` `[t, 3d]`.
///
/// Per head: the weights `P` and `dS = P (dP - rowsum(P dP))` of every query first (`P`
/// recomputed, `dP_ij = dY_i . V_j` from the transposed values as the scores come from the
/// transposed keys), then `dQ_i = sum_j dS_ij K_j`, `dK_j = sum_i dS_ij Q_i` and
/// `dV_j = sum_i P_ij dY_i`, each summed in registers.
#[inline(always)]
fn attn_bwd_item(qkv: &[f32], dy: &[f32], dqkv: &mut [f32], s: AttnShape) {
    let (w, tp, dhp) = (3 * s.d, padded(s.t), padded(s.dh));
    let (mut kt, mut vt) = (vec![0f32; s.dh * tp], vec![0f32; s.dh * tp]);
    let (mut qp, mut kp, mut dyp) = (
        vec![0f32; s.t * dhp],
        vec![0f32; s.t * dhp],
        vec![0f32; s.t * dhp],
    );
    let (mut pm, mut ds, mut dp) = (vec![0f32; s.t * tp], vec![0f32; s.t * tp], vec![0f32; tp]);
    for h in 0..s.heads {
        let (qo, ko, vo) = (h * s.dh, s.d + h * s.dh, 2 * s.d + h * s.dh);
        gather_t(qkv, w, ko, s.dh, s.t, tp, &mut kt);
        gather_t(qkv, w, vo, s.dh, s.t, tp, &mut vt);
        gather_rows(qkv, w, qo, s.dh, s.t, dhp, &mut qp);
        gather_rows(qkv, w, ko, s.dh, s.t, dhp, &mut kp);
        gather_rows(dy, s.d, qo, s.dh, s.t, dhp, &mut dyp);
        for i in 0..s.t {
            let p = &mut pm[i * tp..][..tp];
            scores(&qp[i * dhp..][..s.dh], &kt, tp, i + 1, s.scale, p);
            softmax_in_place(&mut p[..=i]);
            scores(&dyp[i * dhp..][..s.dh], &vt, tp, i + 1, 1.0, &mut dp);
            let c = dot(&p[..=i], &dp[..=i]);
            let dsi = &mut ds[i * tp..][..tp];
            for j in 0..=i {
                dsi[j] = s.scale * p[j] * (dp[j] - c);
            }
            weighted_rows(dsi, 1, 0..i + 1, &kp, dhp, &mut dqkv[i * w + qo..][..s.dh]);
        }
        for j in 0..s.t {
            weighted_rows(
                &ds[j..],
                tp,
                j..s.t,
                &qp,
                dhp,
                &mut dqkv[j * w + ko..][..s.dh],
            );
            weighted_rows(
                &pm[j..],
                tp,
                j..s.t,
                &dyp,
                dhp,
                &mut dqkv[j * w + vo..][..s.dh],
            );
        }
    }
}

multiversion!(attn_fwd_dispatch => attn_fwd_item(qkv: &[f32], y: &mut [f32], s: AttnShape));
multiversion!(attn_bwd_dispatch => attn_bwd_item(
    qkv: &[f32],
    dy: &[f32],
    dqkv: &mut [f32],
    s: AttnShape,
));

impl CustomOp1 for CausalAttention {
    fn name(&self) -> &'static str {
        "bt-causal-attention"
    }

    fn cpu_fwd(&self, st: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, s) = self.shape(l)?;
        let qkv = contiguous::<f32>(st, l)?;
        let mut y = vec![0f32; b * s.t * s.d];
        let level = simd_level();
        y.par_chunks_mut(s.t * s.d)
            .zip(qkv.par_chunks(s.t * 3 * s.d))
            .for_each(|(y, qkv)| attn_fwd_dispatch(level, qkv, y, s));
        Ok((CpuStorage::F32(y), Shape::from((b, s.t, s.d))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(arg.apply_op2_no_bwd(
            &grad.contiguous()?,
            &CausalAttentionGrad(*self),
        )?))
    }
}

/// The gradient of [`CausalAttention`] with respect to `qkv`, given the output's gradient.
struct CausalAttentionGrad(CausalAttention);

impl CustomOp2 for CausalAttentionGrad {
    fn name(&self) -> &'static str {
        "bt-causal-attention-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, s) = self.0.shape(l1)?;
        if l2.dims() != [b, s.t, s.d] {
            bail!(
                "attention gradient needs [{b}, {}, {}], got {:?}",
                s.t,
                s.d,
                l2.dims()
            );
        }
        let qkv = contiguous::<f32>(s1, l1)?;
        let dy = contiguous::<f32>(s2, l2)?;
        let mut dqkv = vec![0f32; qkv.len()];
        let level = simd_level();
        dqkv.par_chunks_mut(s.t * 3 * s.d)
            .zip(qkv.par_chunks(s.t * 3 * s.d).zip(dy.par_chunks(s.t * s.d)))
            .for_each(|(dqkv, (qkv, dy))| attn_bwd_dispatch(level, qkv, dy, dqkv, s));
        Ok((CpuStorage::F32(dqkv), l1.shape().clone()))
    }
}

/// Mean cross-entropy of logits `[n, v]` against u32 targets `[n]`.
struct CrossEntropy;

impl CustomOp2 for CrossEntropy {
    fn name(&self) -> &'static str {
        "bt-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous::<f32>(s1, l1)?;
        let y = contiguous::<u32>(s2, l2)?;
        let (n, v) = (l1.dims()[0], l1.dims()[1]);
        if let Some(&target) = y.iter().find(|&&t| t as usize >= v) {
            bail!("target {target} is outside the {v} classes");
        }
        let rows = task_len(v) / v;
        let level = simd_level();
        let parts: Vec<f64> = x
            .par_chunks(rows * v)
            .zip(y.par_chunks(rows))
            .map(|(x, y)| {
                let (mut loss, mut e) = (0f64, vec![0f32; v]);
                cross_entropy_fwd_dispatch(level, x, y, &mut e, &mut loss);
                loss
            })
            .collect();
        let loss: f64 = parts.iter().sum();
        Ok((
            CpuStorage::F32(vec![(loss / n as f64) as f32]),
            Shape::from(()),
        ))
    }

    fn bwd(
        &self,
        x: &Tensor,
        y: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (n, v) = x.dims2()?;
        let scale = grad.to_scalar::<f32>()? / n as f32;
        let yv: Vec<u32> = y.flatten_all()?.to_vec1()?;
        let mut dx = vec![0f32; n * v];
        let rows = task_len(v) / v;
        with_values(x, |xv| {
            cross_entropy_bwd(xv, &yv, scale, rows, v, &mut dx);
            Ok(())
        })?;
        Ok((Some(Tensor::from_vec(dx, (n, v), x.device())?), None))
    }
}

/// The summed cross-entropy of whole rows of `e.len()` logits against `y`, added to `loss`.
#[inline(always)]
fn cross_entropy_fwd_rows(x: &[f32], y: &[u32], e: &mut [f32], loss: &mut f64) {
    let v = e.len();
    for (xr, &target) in x.chunks_exact(v).zip(y) {
        let top = max(xr);
        let lse = exp_shifted(xr, top, e).ln() + top;
        *loss += f64::from(lse - xr[target as usize]);
    }
}

/// Cross-entropy's gradient `scale (softmax(x) - onehot(y))` on whole rows of `v` logits.
#[inline(always)]
fn cross_entropy_bwd_rows(xv: &[f32], yv: &[u32], scale: f32, v: usize, dx: &mut [f32]) {
    for ((xr, dr), &target) in xv.chunks_exact(v).zip(dx.chunks_exact_mut(v)).zip(yv) {
        let sum = exp_shifted(xr, max(xr), dr);
        for d in dr.iter_mut() {
            *d *= scale / sum;
        }
        dr[target as usize] -= scale;
    }
}

multiversion!(cross_entropy_fwd_dispatch => cross_entropy_fwd_rows(
    x: &[f32],
    y: &[u32],
    e: &mut [f32],
    loss: &mut f64,
));
multiversion!(cross_entropy_bwd_dispatch => cross_entropy_bwd_rows(
    xv: &[f32],
    yv: &[u32],
    scale: f32,
    v: usize,
    dx: &mut [f32],
));

/// Cross-entropy's gradient, `rows` rows of `v` logits per task.
fn cross_entropy_bwd(xv: &[f32], yv: &[u32], scale: f32, rows: usize, v: usize, dx: &mut [f32]) {
    let level = simd_level();
    dx.par_chunks_mut(rows * v)
        .zip(xv.par_chunks(rows * v).zip(yv.par_chunks(rows)))
        .for_each(|(dx, (xv, yv))| cross_entropy_bwd_dispatch(level, xv, yv, scale, v, dx));
}

/// A read-only matrix view over a slice: element `(i, j)` at `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> MatRef<'a> {
    /// `data` as a row-major `[rows, cols]` matrix.
    fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Result<MatRef<'a>> {
        if data.len() != rows * cols {
            bail!("{} values for a [{rows}, {cols}] matrix", data.len());
        }
        Ok(MatRef {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        })
    }

    /// The transpose (a view: no copy).
    fn t(self) -> MatRef<'a> {
        MatRef {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }
}

/// `dst = lhs rhs` (or `dst += lhs rhs` when `accumulate`), `dst` row-major, with the `gemm`
/// crate candle's own matrix product uses, on rayon's threads.
fn gemm(dst: &mut [f32], lhs: MatRef<'_>, rhs: MatRef<'_>, accumulate: bool) -> Result<()> {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    if rhs.rows != k || dst.len() != m * n {
        bail!(
            "matrix product of [{m}, {k}] and [{}, {n}] into {} values",
            rhs.rows,
            dst.len()
        );
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            dst.fill(0.0);
        }
        return Ok(());
    }
    // Every element each view reads lies inside its slice (views are built from whole,
    // checked matrices; the largest offset is the last element's).
    for v in [lhs, rhs] {
        assert!((v.rows - 1) * v.rs + (v.cols - 1) * v.cs < v.data.len());
    }
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    #[allow(unsafe_code)]
    // SAFETY: `dst` holds `m * n` values written at row stride `n`, column stride 1; the
    // assertion above bounds every read of `lhs` and `rhs`; the three do not alias (`dst` is
    // borrowed mutably, the others shared).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(())
}

/// Runs `f` on the values of `t`, row-major, borrowed from its CPU storage (copied first only
/// when `t` is not contiguous).
fn with_values<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(s) => f(contiguous::<f32>(s, layout)?),
        _ => bail!("fused op runs on the CPU only"),
    }
}

/// Column sums of the rows of `g` (`n` columns), by chunks of rows added in chunk order.
fn column_sums(g: &[f32], n: usize) -> Vec<f32> {
    let parts: Vec<Vec<f32>> = g
        .par_chunks(task_len(n))
        .map(|rows| {
            let mut part = vec![0f32; n];
            for r in rows.chunks_exact(n) {
                for (d, v) in part.iter_mut().zip(r) {
                    *d += v;
                }
            }
            part
        })
        .collect();
    sum_partials(parts, n)
}

/// A linear layer `x W^T + b` (`x` `[.., k]`, `W` `[n, k]`, `b` `[n]`) as one graph node: the
/// product starts from the bias rows, and the backward pass is two products and a column sum.
/// Built from candle ops it is five nodes (two reshapes, the weight's transpose, the product
/// and the bias), each of which allocates a zeroed gradient and adds into it, the transpose's
/// through a strided copy.
struct LinearOp;

/// `(rows, k, n)` of a linear layer's input `x` `[.., k]` and weight `[n, k]`.
fn linear_dims(x: &[usize], w: &[usize], bias: usize) -> Result<(usize, usize, usize)> {
    let (&[n, k], Some(&kx)) = (w, x.last()) else {
        bail!("linear layer needs x [.., k] and a weight [n, k], got {x:?} and {w:?}");
    };
    if kx != k || bias != n {
        bail!("linear layer: x {x:?}, weight {w:?} and a bias of {bias}");
    }
    Ok((x.iter().product::<usize>() / k.max(1), k, n))
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "bt-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, b) = (
            contiguous::<f32>(s1, l1)?,
            contiguous::<f32>(s2, l2)?,
            contiguous::<f32>(s3, l3)?,
        );
        let (rows, k, n) = linear_dims(l1.dims(), l2.dims(), b.len())?;
        let mut y = Vec::with_capacity(rows * n);
        for _ in 0..rows {
            y.extend_from_slice(b);
        }
        gemm(
            &mut y,
            MatRef::row_major(x, rows, k)?,
            MatRef::row_major(w, n, k)?.t(),
            true,
        )?;
        let mut dims = l1.dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last = n;
        }
        Ok((CpuStorage::F32(y), Shape::from(dims)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (rows, k, n) = linear_dims(x.dims(), w.dims(), b.elem_count())?;
        let (mut dx, mut dw) = (vec![0f32; rows * k], vec![0f32; n * k]);
        let db = with_values(grad, |g| {
            let g = MatRef::row_major(g, rows, n)?;
            with_values(w, |wv| {
                gemm(&mut dx, g, MatRef::row_major(wv, n, k)?, false)
            })?;
            with_values(x, |xv| {
                gemm(&mut dw, g.t(), MatRef::row_major(xv, rows, k)?, false)
            })?;
            Ok(column_sums(g.data, n))
        })?;
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), dev)?),
            Some(Tensor::from_vec(dw, (n, k), dev)?),
            Some(Tensor::from_vec(db, n, dev)?),
        ))
    }
}

/// GELU (tanh approximation).
pub fn gelu(x: &Tensor, fused: bool) -> Result<Tensor> {
    if fused {
        x.contiguous()?.apply_op1(Gelu)
    } else {
        x.gelu()
    }
}

/// Layer norm over the last dimension, `eps = 1e-5`.
pub fn layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, fused: bool) -> Result<Tensor> {
    if fused {
        return x.contiguous()?.apply_op3(gamma, beta, LayerNorm);
    }
    let mean = x.mean_keepdim(D::Minus1)?;
    let xc = x.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    let xn = xc.broadcast_div(&(var + 1e-5)?.sqrt()?)?;
    xn.broadcast_mul(gamma)?.broadcast_add(beta)
}

/// Causal multi-head self-attention over packed projections `qkv` `[b, t, 3d]` (queries, keys,
/// values side by side): `[b, t, d]`, heads side by side. `mask` is the additive `[t, t]` causal
/// mask the elementary path uses.
pub fn causal_attention(qkv: &Tensor, heads: usize, mask: &Tensor, fused: bool) -> Result<Tensor> {
    let (b, t, d, dh) = attention_dims(qkv.shape(), heads)?;
    let scale = 1.0 / (dh as f64).sqrt();
    if fused {
        return qkv.contiguous()?.apply_op1(CausalAttention {
            heads,
            scale: scale as f32,
        });
    }
    let split = |i: usize| -> Result<Tensor> {
        qkv.narrow(D::Minus1, i * d, d)?
            .reshape((b, t, heads, dh))?
            .transpose(1, 2)?
            .contiguous()
    };
    let (q, k, v) = (split(0)?, split(1)?, split(2)?);
    let scores = q.matmul(&k.t()?.contiguous()?)?;
    let att = candle_nn::ops::softmax(&scores.affine(scale, 0.0)?.broadcast_add(mask)?, D::Minus1)?;
    att.matmul(&v)?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((b, t, d))
}

/// Mean cross-entropy of `logits` `[n, v]` against u32 `targets` `[n]`.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor, fused: bool) -> Result<Tensor> {
    if fused {
        logits
            .contiguous()?
            .apply_op2(&targets.contiguous()?, CrossEntropy)
    } else {
        candle_nn::loss::cross_entropy(logits, targets)
    }
}

/// `x W^T + b` for `x` `[.., in]`, `weight` `[out, in]`, `bias` `[out]`.
pub fn linear(x: &Tensor, weight: &Tensor, bias: &Tensor, fused: bool) -> Result<Tensor> {
    if fused {
        return x.contiguous()?.apply_op3(weight, bias, LinearOp);
    }
    let dims = x.dims().to_vec();
    let k = dims[dims.len() - 1];
    let rows: usize = dims[..dims.len() - 1].iter().product();
    let y = x
        .contiguous()?
        .reshape((rows, k))?
        .matmul(&weight.t()?)?
        .broadcast_add(bias)?;
    let mut out = dims;
    if let Some(last) = out.last_mut() {
        *last = weight.dim(0)?;
    }
    y.reshape(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn rand(shape: &[usize], seed: u64) -> Var {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|i| (((i as u64 * 2654435761 + seed * 97) % 1000) as f32 / 250.0) - 2.0)
            .collect();
        Var::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn host(t: &Tensor) -> Result<Vec<f32>> {
        t.flatten_all()?.to_vec1()
    }

    fn close(a: &Tensor, b: &Tensor, what: &str) {
        let (a, b) = (host(a).unwrap(), host(b).unwrap());
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!(
                (x - y).abs() <= 2e-4 * (1.0 + y.abs()),
                "{what}[{i}]: fused {x} vs elementary {y}"
            );
        }
    }

    /// The fused and elementary versions of `f` agree in value and in every input's gradient.
    fn check(inputs: &[Var], what: &str, f: impl Fn(&[Tensor], bool) -> Result<Tensor>) {
        let ts: Vec<Tensor> = inputs.iter().map(|v| v.as_tensor().clone()).collect();
        let w = rand(f(&ts, false).unwrap().dims(), 99);
        let out = |fused: bool| {
            let y = f(&ts, fused).unwrap();
            let loss = (&y * w.as_tensor()).unwrap().sum_all().unwrap();
            (y, loss.backward().unwrap())
        };
        let (yf, gf) = out(true);
        let (ye, ge) = out(false);
        close(&yf, &ye, what);
        for (k, v) in inputs.iter().enumerate() {
            let (a, b) = (gf.get(v.as_tensor()), ge.get(v.as_tensor()));
            match (a, b) {
                (Some(a), Some(b)) => close(a, b, &format!("{what} grad {k}")),
                (None, None) => {}
                _ => panic!("{what}: input {k} has a gradient on one path only"),
            }
        }
    }

    #[test]
    fn fused_kernels_match_the_elementary_ones() {
        let x = rand(&[2, 3, 8], 1);
        check(std::slice::from_ref(&x), "gelu", |t, f| gelu(&t[0], f));
        let (g, b) = (rand(&[8], 2), rand(&[8], 3));
        check(&[x.clone(), g, b], "layer_norm", |t, f| {
            layer_norm(&t[0], &t[1], &t[2], f)
        });
        let mask = crate::model::causal_mask(5, &Device::Cpu).unwrap();
        let qkv = rand(&[2, 5, 24], 8);
        check(&[qkv], "causal_attention", |t, f| {
            causal_attention(&t[0], 2, &mask, f)
        });
        let qkv = rand(&[2, 19, 3 * 8], 10);
        let mask19 = crate::model::causal_mask(19, &Device::Cpu).unwrap();
        check(
            &[qkv],
            "causal_attention (more positions than a block of keys)",
            |t, f| causal_attention(&t[0], 2, &mask19, f),
        );
        let qkv = rand(&[1, 7, 3 * 40], 9);
        let mask7 = crate::model::causal_mask(7, &Device::Cpu).unwrap();
        check(
            &[qkv],
            "causal_attention (a head wider than the vector lanes)",
            |t, f| causal_attention(&t[0], 2, &mask7, f),
        );
        let (w, bias) = (rand(&[4, 8], 5), rand(&[4], 6));
        check(&[x, w, bias], "linear", |t, f| {
            linear(&t[0], &t[1], &t[2], f)
        });
        let logits = rand(&[6, 5], 7);
        let y = Tensor::from_vec(vec![0u32, 4, 2, 2, 1, 3], 6, &Device::Cpu).unwrap();
        check(&[logits], "cross_entropy", |t, f| {
            cross_entropy(&t[0], &y, f)
        });
    }

    #[test]
    fn fused_kernels_refuse_bad_shapes() {
        let qkv = rand(&[2, 3, 10], 1);
        let e = causal_attention(qkv.as_tensor(), 2, &qkv.as_tensor().clone(), true).unwrap_err();
        assert!(e.to_string().contains("divisible by 2 heads"), "{e}");
        let logits = rand(&[2, 3], 1);
        let y = Tensor::from_vec(vec![0u32, 7], 2, &Device::Cpu).unwrap();
        let e = cross_entropy(logits.as_tensor(), &y, true).unwrap_err();
        assert!(e.to_string().contains("outside the 3 classes"), "{e}");
    }
}
