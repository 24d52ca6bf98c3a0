//! Fused CPU kernels, each with its own backward pass: GELU, layer norm, causal softmax,
//! cross-entropy and bias addition.
//!
//! Built from elementary candle ops, these five take most of a training step (GELU's backward
//! alone runs ten element-wise passes; a bias gradient goes through a generic strided
//! reduction), which left a step 5 to 10 times slower than PyTorch's. Each kernel here makes one
//! pass forward and one backward. They run on the CPU only; on other devices the model uses
//! the elementary versions, which remain the reference: `tests` checks that both give the same
//! values and gradients.

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, D, Layout, Result, Shape, Tensor, bail,
};

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

const GELU_C: f32 = 0.797_884_6; // sqrt(2 / pi)
const GELU_A: f32 = 0.044_715;

/// `tanh` through one `exp`, accurate to a few ulps in f32 and vectorisable.
#[inline(always)]
fn tanh(z: f32) -> f32 {
    let z = z.clamp(-9.0, 9.0);
    let e = (2.0 * z).exp();
    (e - 1.0) / (e + 1.0)
}

/// GELU, tanh approximation (the same function as candle's `gelu`).
struct Gelu;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "bt-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous::<f32>(s, l)?;
        let y = x
            .iter()
            .map(|&x| 0.5 * x * (1.0 + tanh(GELU_C * (x + GELU_A * x * x * x))))
            .collect();
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
        let out = x
            .iter()
            .zip(g)
            .map(|(&x, &g)| {
                let t = tanh(GELU_C * (x + GELU_A * x * x * x));
                let dt = (1.0 - t * t) * GELU_C * (1.0 + 3.0 * GELU_A * x * x);
                g * (0.5 * (1.0 + t) + 0.5 * x * dt)
            })
            .collect();
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
        for (xr, yr) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
            let mean = xr.iter().sum::<f32>() / d as f32;
            let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
            let r = 1.0 / (var + 1e-5).sqrt();
            for i in 0..d {
                yr[i] = (xr[i] - mean) * r * gamma[i] + beta[i];
            }
        }
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
        let mut dgamma = vec![0f32; d];
        let mut dbeta = vec![0f32; d];
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
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), dev)?),
            Some(Tensor::from_vec(dgamma, d, dev)?),
            Some(Tensor::from_vec(dbeta, d, dev)?),
        ))
    }
}

/// `softmax(scale * x + causal mask)` over the last dimension of square `[.., t, t]` scores:
/// row `i` of each `t x t` block attends to positions `0..=i`.
struct CausalSoftmax {
    scale: f32,
}

impl CustomOp1 for CausalSoftmax {
    fn name(&self) -> &'static str {
        "bt-causal-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous::<f32>(s, l)?;
        let dims = l.dims();
        let t = dims[dims.len() - 1];
        if dims.len() < 2 || dims[dims.len() - 2] != t {
            bail!("causal softmax needs square [.., t, t] scores, got {dims:?}");
        }
        let mut y = vec![0f32; x.len()];
        for (row, (xr, yr)) in x.chunks_exact(t).zip(y.chunks_exact_mut(t)).enumerate() {
            let n = row % t + 1;
            let max = xr[..n]
                .iter()
                .fold(f32::NEG_INFINITY, |m, &v| m.max(v * self.scale));
            let mut sum = 0.0;
            for j in 0..n {
                let e = (xr[j] * self.scale - max).exp();
                yr[j] = e;
                sum += e;
            }
            for v in &mut yr[..n] {
                *v /= sum;
            }
        }
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        // dx = scale * y * (g - sum(g * y)); zero where y is (masked positions).
        let (y, g) = (host(res)?, host(grad)?);
        let t = res.dim(D::Minus1)?;
        let mut dx = vec![0f32; y.len()];
        for ((yr, gr), dr) in y
            .chunks_exact(t)
            .zip(g.chunks_exact(t))
            .zip(dx.chunks_exact_mut(t))
        {
            let dot: f32 = yr.iter().zip(gr).map(|(a, b)| a * b).sum();
            for j in 0..t {
                dr[j] = self.scale * yr[j] * (gr[j] - dot);
            }
        }
        Ok(Some(Tensor::from_vec(dx, res.shape(), res.device())?))
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
        let mut loss = 0f64;
        for (xr, &target) in x.chunks_exact(v).zip(y) {
            if target as usize >= v {
                bail!("target {target} is outside the {v} classes");
            }
            let max = xr.iter().fold(f32::NEG_INFINITY, |m, &a| m.max(a));
            let lse = xr.iter().map(|a| (a - max).exp()).sum::<f32>().ln() + max;
            loss += f64::from(lse - xr[target as usize]);
        }
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
        for ((xr, dr), &target) in xv.chunks_exact(v).zip(dx.chunks_exact_mut(v)).zip(&yv) {
            let max = xr.iter().fold(f32::NEG_INFINITY, |m, &a| m.max(a));
            let mut sum = 0.0;
            for j in 0..v {
                let e = (xr[j] - max).exp();
                dr[j] = e;
                sum += e;
            }
            for d in dr.iter_mut() {
                *d *= scale / sum;
            }
            dr[target as usize] -= scale;
        }
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
        let mut y = x.to_vec();
        for r in y.chunks_exact_mut(b.len()) {
            for (v, bb) in r.iter_mut().zip(b) {
                *v += bb;
            }
        }
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
        let mut db = vec![0f32; n];
        for r in host(grad)?.chunks_exact(n) {
            for (d, v) in db.iter_mut().zip(r) {
                *d += v;
            }
        }
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

/// `softmax(scale * scores + causal mask)` over the last dimension of `[.., t, t]` scores;
/// `mask` is the additive `[t, t]` mask the elementary path adds.
pub fn causal_softmax(scores: &Tensor, scale: f64, mask: &Tensor, fused: bool) -> Result<Tensor> {
    if fused {
        return scores.contiguous()?.apply_op1(CausalSoftmax {
            scale: scale as f32,
        });
    }
    let a = scores.affine(scale, 0.0)?.broadcast_add(mask)?;
    candle_nn::ops::softmax(&a, D::Minus1)
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
        let s = rand(&[2, 2, 5, 5], 4);
        let mask = crate::model::causal_mask(5, &Device::Cpu).unwrap();
        check(&[s], "causal_softmax", |t, f| {
            causal_softmax(&t[0], 0.35, &mask, f)
        });
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
        let s = rand(&[2, 3, 4], 1);
        assert!(causal_softmax(s.as_tensor(), 1.0, &s.as_tensor().clone(), true).is_err());
        let logits = rand(&[2, 3], 1);
        let y = Tensor::from_vec(vec![0u32, 7], 2, &Device::Cpu).unwrap();
        let e = cross_entropy(logits.as_tensor(), &y, true).unwrap_err();
        assert!(e.to_string().contains("outside the 3 classes"), "{e}");
    }
}
