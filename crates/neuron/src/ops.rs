//! Fused CPU kernels, each with its own backward pass: GELU, layer norm, causal multi-head
//! attention (its softmax included), cross-entropy and bias addition.
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

use bt_vecmath::{dot, exp, gelu_bwd, gelu_fwd, multiversion, simd_level};
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, D, Layout, Result, Shape, Tensor, bail,
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

fn host(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1()
}

/// `y[j] = e^(x[j] - max)` for every `j`; returns their sum.
#[inline(always)]
fn exp_shifted(x: &[f32], max: f32, y: &mut [f32]) -> f32 {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = exp(x - max);
    }
    y.iter().sum()
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
        y.par_chunks_mut(task)
            .zip(x.par_chunks(task))
            .for_each(|(y, x)| {
                for (xr, yr) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
                    let mean = xr.iter().sum::<f32>() / d as f32;
                    let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
                    let r = 1.0 / (var + 1e-5).sqrt();
                    for i in 0..d {
                        yr[i] = (xr[i] - mean) * r * gamma[i] + beta[i];
                    }
                }
            });
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
        let (xv, gv, gm) = (host(x)?, host(grad)?, host(gamma)?);
        let mut dx = vec![0f32; xv.len()];
        let task = task_len(d);
        // Per chunk of rows: its share of dgamma (first d) and dbeta (last d).
        let parts: Vec<Vec<f32>> = dx
            .par_chunks_mut(task)
            .zip(xv.par_chunks(task).zip(gv.par_chunks(task)))
            .map(|(dx, (xv, gv))| {
                let mut part = vec![0f32; 2 * d];
                let (dgamma, dbeta) = part.split_at_mut(d);
                let mut xhat = vec![0f32; d];
                for ((xr, gr), dxr) in xv
                    .chunks_exact(d)
                    .zip(gv.chunks_exact(d))
                    .zip(dx.chunks_exact_mut(d))
                {
                    let mean = xr.iter().sum::<f32>() / d as f32;
                    let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
                    let r = 1.0 / (var + 1e-5).sqrt();
                    let (mut m1, mut m2) = (0f32, 0f32);
                    for i in 0..d {
                        xhat[i] = (xr[i] - mean) * r;
                        let gg = gr[i] * gm[i];
                        m1 += gg;
                        m2 += gg * xhat[i];
                        dgamma[i] += gr[i] * xhat[i];
                        dbeta[i] += gr[i];
                    }
                    m1 /= d as f32;
                    m2 /= d as f32;
                    for i in 0..d {
                        dxr[i] = r * (gr[i] * gm[i] - m1 - xhat[i] * m2);
                    }
                }
                part
            })
            .collect();
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

/// `y += a x`.
#[inline(always)]
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// Softmax weights of query `i` over keys `0..=i` of head `h` (into `p[..=i]`).
#[inline(always)]
fn attn_weights(qkv: &[f32], s: AttnShape, h: usize, i: usize, p: &mut [f32]) {
    let w = 3 * s.d;
    let q = &qkv[i * w + h * s.dh..][..s.dh];
    let mut max = f32::NEG_INFINITY;
    for (j, pj) in p[..=i].iter_mut().enumerate() {
        let k = &qkv[j * w + s.d + h * s.dh..][..s.dh];
        *pj = s.scale * dot(q, k);
        max = max.max(*pj);
    }
    for pj in &mut p[..=i] {
        *pj = exp(*pj - max);
    }
    let sum: f32 = p[..=i].iter().sum();
    for pj in &mut p[..=i] {
        *pj /= sum;
    }
}

/// Forward for one batch item: `qkv` `[t, 3d]` → `y` `[t, d]`.
#[inline(always)]
fn attn_fwd_item(qkv: &[f32], y: &mut [f32], s: AttnShape) {
    let w = 3 * s.d;
    let mut p = vec![0f32; s.t];
    for h in 0..s.heads {
        for i in 0..s.t {
            attn_weights(qkv, s, h, i, &mut p);
            let yi = &mut y[i * s.d + h * s.dh..][..s.dh];
            for (j, &pj) in p[..=i].iter().enumerate() {
                axpy(yi, pj, &qkv[j * w + 2 * s.d + h * s.dh..][..s.dh]);
            }
        }
    }
}

/// Backward for one batch item: `qkv` `[t, 3d]`, `dy` `[t, d]` → `dqkv` `[t, 3d]` (zeroed).
#[inline(always)]
fn attn_bwd_item(qkv: &[f32], dy: &[f32], dqkv: &mut [f32], s: AttnShape) {
    let w = 3 * s.d;
    let (mut p, mut ds) = (vec![0f32; s.t], vec![0f32; s.t]);
    for h in 0..s.heads {
        let (qo, ko, vo) = (h * s.dh, s.d + h * s.dh, 2 * s.d + h * s.dh);
        for i in 0..s.t {
            attn_weights(qkv, s, h, i, &mut p);
            let dyi = &dy[i * s.d + h * s.dh..][..s.dh];
            let mut c = 0f32;
            for j in 0..=i {
                // dP_ij, then dV_j += P_ij dY_i.
                ds[j] = dot(dyi, &qkv[j * w + vo..][..s.dh]);
                c += p[j] * ds[j];
                axpy(&mut dqkv[j * w + vo..][..s.dh], p[j], dyi);
            }
            let qi = &qkv[i * w + qo..][..s.dh];
            for j in 0..=i {
                let g = s.scale * p[j] * (ds[j] - c);
                axpy(
                    &mut dqkv[i * w + qo..][..s.dh],
                    g,
                    &qkv[j * w + ko..][..s.dh],
                );
                axpy(&mut dqkv[j * w + ko..][..s.dh], g, qi);
            }
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
        let parts: Vec<f64> = x
            .par_chunks(rows * v)
            .zip(y.par_chunks(rows))
            .map(|(x, y)| {
                let mut loss = 0f64;
                let mut e = vec![0f32; v];
                for (xr, &target) in x.chunks_exact(v).zip(y) {
                    let max = xr.iter().fold(f32::NEG_INFINITY, |m, &a| m.max(a));
                    let lse = exp_shifted(xr, max, &mut e).ln() + max;
                    loss += f64::from(lse - xr[target as usize]);
                }
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
        let xv = host(x)?;
        let yv: Vec<u32> = y.flatten_all()?.to_vec1()?;
        let mut dx = vec![0f32; xv.len()];
        let rows = task_len(v) / v;
        dx.par_chunks_mut(rows * v)
            .zip(xv.par_chunks(rows * v).zip(yv.par_chunks(rows)))
            .for_each(|(dx, (xv, yv))| {
                for ((xr, dr), &target) in xv.chunks_exact(v).zip(dx.chunks_exact_mut(v)).zip(yv) {
                    let max = xr.iter().fold(f32::NEG_INFINITY, |m, &a| m.max(a));
                    let sum = exp_shifted(xr, max, dr);
                    for d in dr.iter_mut() {
                        *d *= scale / sum;
                    }
                    dr[target as usize] -= scale;
                }
            });
        Ok((Some(Tensor::from_vec(dx, (n, v), x.device())?), None))
    }
}

/// `x [.., out] + bias [out]`; the bias gradient is one contiguous column sum.
struct BiasAdd;

impl CustomOp2 for BiasAdd {
    fn name(&self) -> &'static str {
        "bt-bias-add"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous::<f32>(s1, l1)?;
        let b = contiguous::<f32>(s2, l2)?;
        let mut y = vec![0f32; x.len()];
        let task = task_len(b.len());
        y.par_chunks_mut(task)
            .zip(x.par_chunks(task))
            .for_each(|(y, x)| {
                for (yr, xr) in y.chunks_exact_mut(b.len()).zip(x.chunks_exact(b.len())) {
                    for ((v, xx), bb) in yr.iter_mut().zip(xr).zip(b) {
                        *v = xx + bb;
                    }
                }
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let n = b.elem_count();
        let parts: Vec<Vec<f32>> = host(grad)?
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
        let db = sum_partials(parts, n);
        Ok((
            Some(grad.clone()),
            Some(Tensor::from_vec(db, n, b.device())?),
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
    let dims = x.dims().to_vec();
    let k = dims[dims.len() - 1];
    let rows: usize = dims[..dims.len() - 1].iter().product();
    let y = x.contiguous()?.reshape((rows, k))?.matmul(&weight.t()?)?;
    let y = if fused {
        y.apply_op2(bias, BiasAdd)?
    } else {
        y.broadcast_add(bias)?
    };
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
