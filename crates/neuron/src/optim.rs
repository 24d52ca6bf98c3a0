//! AdamW with candle_nn's update rule, applied on the CPU in one pass over each parameter in
//! place.
//!
//! candle_nn's `AdamW` builds each update from about fourteen tensor operations (each allocating
//! its result) and three copies per parameter; for a learner of some seventy small parameters
//! that is a thousand allocations a step. Here the moments live beside each parameter as plain
//! vectors and one loop updates the moments and the parameter together. The arithmetic is
//! candle_nn's, in the same order and in `f32` with the same constants, so both give the same
//! parameters, to the bit (`tests` checks it). Parameters on another device use candle_nn's
//! optimiser.
//!
//! ```
//! use bt_neuron::optim::AdamW;
//! use candle_core::{Device, Var};
//! use candle_nn::ParamsAdamW;
//!
//! let w = Var::from_vec(vec![1f32, -2.0], 2, &Device::Cpu).unwrap();
//! let mut opt = AdamW::new(vec![w.clone()], ParamsAdamW { lr: 0.1, ..ParamsAdamW::default() }).unwrap();
//! let grads = (w.as_tensor() * w.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
//! opt.step(&grads).unwrap();
//! let v: Vec<f32> = w.as_tensor().to_vec1().unwrap();
//! assert!(v[0] < 1.0 && v[1] > -2.0);
//! ```

use std::cell::RefCell;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, InplaceOp2, Layout, Var, bail};
use candle_nn::{Optimizer, ParamsAdamW};

use crate::error::Result;

/// One parameter and its first and second moments.
struct Slot {
    var: Var,
    m: Vec<f32>,
    v: Vec<f32>,
}

enum Inner {
    /// Every parameter on the CPU: the fused update.
    Fused(Vec<Slot>),
    /// Some parameter elsewhere: candle_nn's optimiser.
    Candle(candle_nn::AdamW),
}

/// AdamW over a fixed set of parameters.
pub struct AdamW {
    params: ParamsAdamW,
    step: i32,
    inner: Inner,
}

impl AdamW {
    /// An optimiser of `vars` with zeroed moments.
    pub fn new(vars: Vec<Var>, params: ParamsAdamW) -> Result<AdamW> {
        let inner = if vars.iter().all(|v| v.device().is_cpu()) {
            Inner::Fused(
                vars.into_iter()
                    .map(|var| {
                        let n = var.elem_count();
                        Slot {
                            var,
                            m: vec![0.0; n],
                            v: vec![0.0; n],
                        }
                    })
                    .collect(),
            )
        } else {
            Inner::Candle(candle_nn::AdamW::new(vars, params.clone())?)
        };
        Ok(AdamW {
            params,
            step: 0,
            inner,
        })
    }

    /// One update of every parameter that has a gradient in `grads`.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        let slots = match &mut self.inner {
            Inner::Candle(opt) => return Ok(opt.step(grads)?),
            Inner::Fused(slots) => slots,
        };
        self.step += 1;
        let p = &self.params;
        let rule = Rule {
            beta1: p.beta1 as f32,
            one_minus_beta1: (1.0 - p.beta1) as f32,
            beta2: p.beta2 as f32,
            one_minus_beta2: (1.0 - p.beta2) as f32,
            scale_m: (1.0 / (1.0 - p.beta1.powi(self.step))) as f32,
            scale_v: (1.0 / (1.0 - p.beta2.powi(self.step))) as f32,
            decay: (1.0 - p.lr * p.weight_decay) as f32,
            lr: p.lr as f32,
            eps: p.eps as f32,
        };
        for slot in slots.iter_mut() {
            let Some(g) = grads.get(slot.var.as_tensor()) else {
                continue;
            };
            let g = g.contiguous()?;
            let update = Update {
                rule,
                moments: RefCell::new((&mut slot.m, &mut slot.v)),
            };
            slot.var.as_tensor().inplace_op2(&g, &update)?;
        }
        Ok(())
    }
}

/// The constants of one step.
#[derive(Clone, Copy)]
struct Rule {
    beta1: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    scale_m: f32,
    scale_v: f32,
    decay: f32,
    lr: f32,
    eps: f32,
}

/// The in-place update of one parameter, holding its moments.
struct Update<'a> {
    rule: Rule,
    moments: RefCell<(&'a mut Vec<f32>, &'a mut Vec<f32>)>,
}

impl InplaceOp2 for Update<'_> {
    fn name(&self) -> &'static str {
        "bt-adamw"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let (Some((a1, b1)), Some((a2, b2))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            bail!("AdamW needs a contiguous parameter and gradient");
        };
        let (CpuStorage::F32(theta), CpuStorage::F32(grad)) = (s1, s2) else {
            bail!("AdamW updates f32 parameters");
        };
        let (theta, grad) = (&mut theta[a1..b1], &grad[a2..b2]);
        let mut moments = self.moments.borrow_mut();
        let (m, v) = &mut *moments;
        if grad.len() != theta.len() || m.len() != theta.len() {
            bail!(
                "AdamW: {} values, a gradient of {} and moments of {}",
                theta.len(),
                grad.len(),
                m.len()
            );
        }
        let r = self.rule;
        for (((t, &g), m), v) in theta
            .iter_mut()
            .zip(grad)
            .zip(m.iter_mut())
            .zip(v.iter_mut())
        {
            // candle_nn's AdamW, operation for operation.
            *m = *m * r.beta1 + g * r.one_minus_beta1;
            *v = *v * r.beta2 + (g * g) * r.one_minus_beta2;
            let m_hat = *m * r.scale_m;
            let v_hat = *v * r.scale_v;
            let adjusted = m_hat / (v_hat.sqrt() + r.eps);
            *t = *t * r.decay - adjusted * r.lr;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    /// Over several steps with weight decay, the fused optimiser and candle_nn's end with the
    /// same parameters, and a parameter without a gradient stays as it was.
    #[test]
    fn matches_candle_nn_adamw() {
        let params = ParamsAdamW {
            lr: 0.01,
            weight_decay: 0.1,
            ..ParamsAdamW::default()
        };
        let init: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let run = |fused: bool| -> Vec<f32> {
            let w = Var::from_vec(init.clone(), (37,), &Device::Cpu).unwrap();
            let unused = Var::from_vec(vec![5f32; 3], 3, &Device::Cpu).unwrap();
            let vars = vec![w.clone(), unused.clone()];
            let mut fused_opt = AdamW::new(vars.clone(), params.clone()).unwrap();
            let mut candle_opt = candle_nn::AdamW::new(vars, params.clone()).unwrap();
            for k in 0..5 {
                let target = Tensor::full(k as f32 * 0.1, 37, &Device::Cpu).unwrap();
                let loss = (w.as_tensor() - target)
                    .unwrap()
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap();
                let grads = loss.backward().unwrap();
                if fused {
                    fused_opt.step(&grads).unwrap();
                } else {
                    candle_opt.step(&grads).unwrap();
                }
            }
            assert_eq!(unused.as_tensor().to_vec1::<f32>().unwrap(), vec![5f32; 3]);
            w.as_tensor().to_vec1().unwrap()
        };
        // The same operations in the same order: equal to the bit.
        let fused = run(true);
        assert_eq!(fused, run(false));
        assert_ne!(fused, init);
    }
}
