//! The learner's networks in candle: a byte-level transformer encoder (the trunk a neuron
//! serves, and the distilled student), the next-token head, and the parameters they live in.
//!
//! Every op here has a backward pass: candle's fused `LayerNorm`, `softmax_last_dim` and `sdpa`
//! silently stop gradients, so layer norm, softmax, GELU, cross-entropy and the linear layer are
//! either written out from elementary tensor ops or, on the CPU, run as this crate's own fused
//! kernels with hand-written backward passes ([`crate::ops`]). `tests/learner.rs` checks that
//! every parameter receives a gradient.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Uniform};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ops;

/// The shape of a learner's networks. All neurons of one network share `vocab`, `seq` and `d`
/// (the representation they exchange is `[batch, seq, d]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Token vocabulary (256 for bytes).
    pub vocab: usize,
    /// Longest sequence (positional embeddings).
    pub seq: usize,
    /// Representation width.
    pub d: usize,
    /// Attention heads (must divide `d`).
    pub heads: usize,
    /// Transformer blocks in the trunk.
    pub layers: usize,
    /// Transformer blocks in the distilled student.
    pub student_layers: usize,
    /// Width of each block's feed-forward layer.
    pub hidden: usize,
}

impl Default for ModelConfig {
    fn default() -> ModelConfig {
        ModelConfig {
            vocab: 256,
            seq: 64,
            d: 64,
            heads: 2,
            layers: 2,
            student_layers: 1,
            hidden: 256,
        }
    }
}

impl ModelConfig {
    /// Checks the sizes.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.vocab == 0 || self.vocab > 1 << 20 {
            return bad(format!(
                "model.vocab must be in 1..=1048576, got {}",
                self.vocab
            ));
        }
        if self.seq < 2 || self.seq > 4096 {
            return bad(format!("model.seq must be in 2..=4096, got {}", self.seq));
        }
        if self.d == 0 || self.d > 4096 || self.hidden == 0 || self.hidden > 16384 {
            return bad(format!(
                "model.d (got {}) and model.hidden (got {}) must be in 1..=4096 and 1..=16384",
                self.d, self.hidden
            ));
        }
        if self.heads == 0 || !self.d.is_multiple_of(self.heads) {
            return bad(format!(
                "model.heads ({}) must divide model.d ({})",
                self.heads, self.d
            ));
        }
        if self.layers == 0 || self.layers > 64 || self.student_layers == 0 {
            return bad(format!(
                "model.layers (got {}) must be in 1..=64 and model.student_layers (got {}) at least 1",
                self.layers, self.student_layers
            ));
        }
        Ok(())
    }
}

/// Creates named parameters in a [`VarMap`] from a seeded generator, so that two learners made
/// with the same seed start equal.
pub struct Params<'a> {
    vars: &'a VarMap,
    device: &'a Device,
    rng: ChaCha8Rng,
}

impl<'a> Params<'a> {
    /// Parameters stored in `vars`, drawn from `seed`.
    pub fn new(vars: &'a VarMap, device: &'a Device, seed: u64) -> Params<'a> {
        Params {
            vars,
            device,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    fn insert(&mut self, name: &str, shape: &[usize], values: Vec<f32>) -> Result<Tensor> {
        let var = Var::from_vec(values, shape, self.device)?;
        let t = var.as_tensor().clone();
        let mut data = self.vars.data().lock().unwrap_or_else(|e| e.into_inner());
        if data.insert(name.to_string(), var).is_some() {
            return Err(Error::Config(format!("parameter {name} created twice")));
        }
        Ok(t)
    }

    /// A parameter drawn from `N(0, std^2)`.
    pub fn normal(&mut self, name: &str, shape: &[usize], std: f32) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let dist = Normal::new(0.0f32, std).map_err(|e| Error::Config(e.to_string()))?;
        let values = (0..n).map(|_| dist.sample(&mut self.rng)).collect();
        self.insert(name, shape, values)
    }

    /// A parameter filled with `value`.
    pub fn constant(&mut self, name: &str, shape: &[usize], value: f32) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        self.insert(name, shape, vec![value; n])
    }

    /// A `[d, d]` identity matrix.
    pub fn identity(&mut self, name: &str, d: usize) -> Result<Tensor> {
        let values = (0..d * d)
            .map(|i| if i / d == i % d { 1.0 } else { 0.0 })
            .collect();
        self.insert(name, &[d, d], values)
    }

    /// A linear layer `[in] -> [out]`, uniform in `±1/sqrt(in)` (PyTorch's default), with bias.
    pub fn linear(&mut self, name: &str, inp: usize, out: usize) -> Result<Linear> {
        let bound = 1.0 / (inp as f32).sqrt();
        let dist = Uniform::new(-bound, bound).map_err(|e| Error::Config(e.to_string()))?;
        let w = (0..inp * out).map(|_| dist.sample(&mut self.rng)).collect();
        let weight = self.insert(&format!("{name}.weight"), &[out, inp], w)?;
        let bias = self.constant(&format!("{name}.bias"), &[out], 0.0)?;
        Ok(Linear {
            weight,
            bias,
            fused: self.fused(),
        })
    }

    /// Whether layers built here use the fused CPU kernels.
    pub fn fused(&self) -> bool {
        self.device.is_cpu()
    }
}

/// A linear layer `x W^T + b`.
#[derive(Clone, Debug)]
pub struct Linear {
    weight: Tensor,
    bias: Tensor,
    fused: bool,
}

impl Linear {
    /// Applies the layer to `x` `[.., in]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(ops::linear(x, &self.weight, &self.bias, self.fused)?)
    }
}

/// Layer normalisation over the last dimension, from elementary ops (it has a backward pass).
#[derive(Clone, Debug)]
pub struct LayerNorm {
    gamma: Tensor,
    beta: Tensor,
    fused: bool,
}

impl LayerNorm {
    /// A layer norm of width `d` (gain 1, bias 0).
    pub fn new(p: &mut Params<'_>, name: &str, d: usize) -> Result<LayerNorm> {
        Ok(LayerNorm {
            gamma: p.constant(&format!("{name}.gamma"), &[d], 1.0)?,
            beta: p.constant(&format!("{name}.beta"), &[d], 0.0)?,
            fused: p.fused(),
        })
    }

    /// Normalises `x` over its last dimension.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(ops::layer_norm(x, &self.gamma, &self.beta, self.fused)?)
    }
}

/// A pre-norm transformer block with causal multi-head self-attention.
#[derive(Clone, Debug)]
struct Block {
    ln1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    ln2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    heads: usize,
    fused: bool,
}

impl Block {
    fn new(p: &mut Params<'_>, name: &str, cfg: &ModelConfig) -> Result<Block> {
        Ok(Block {
            ln1: LayerNorm::new(p, &format!("{name}.ln1"), cfg.d)?,
            qkv: p.linear(&format!("{name}.qkv"), cfg.d, 3 * cfg.d)?,
            proj: p.linear(&format!("{name}.proj"), cfg.d, cfg.d)?,
            ln2: LayerNorm::new(p, &format!("{name}.ln2"), cfg.d)?,
            fc1: p.linear(&format!("{name}.fc1"), cfg.d, cfg.hidden)?,
            fc2: p.linear(&format!("{name}.fc2"), cfg.hidden, cfg.d)?,
            heads: cfg.heads,
            fused: p.fused(),
        })
    }

    /// `x`: `[b, t, d]`; `mask`: `[t, t]`, 0 on and below the diagonal, -inf above.
    fn forward(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let h = self.ln1.forward(x)?;
        let y = ops::causal_attention(&self.qkv.forward(&h)?, self.heads, mask, self.fused)?;
        let x = (x + self.proj.forward(&y)?)?;
        let m = self.fc2.forward(&ops::gelu(
            &self.fc1.forward(&self.ln2.forward(&x)?)?,
            self.fused,
        )?)?;
        Ok((x + m)?)
    }
}

/// The causal attention mask `[t, t]`: 0 where a position may look, `-inf` where it may not.
pub fn causal_mask(t: usize, device: &Device) -> Result<Tensor> {
    let values: Vec<f32> = (0..t)
        .flat_map(|i| (0..t).map(move |j| if j <= i { 0.0 } else { f32::NEG_INFINITY }))
        .collect();
    Ok(Tensor::from_vec(values, (t, t), device)?)
}

/// A byte-level transformer encoder: token and position embeddings, blocks, a final norm.
/// Maps token ids `[b, t]` (u32) to representations `[b, t, d]`.
#[derive(Clone, Debug)]
pub struct Encoder {
    tok: Tensor,
    pos: Tensor,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    seq: usize,
}

impl Encoder {
    /// An encoder with `layers` blocks whose parameters are named `{name}.*`.
    pub fn new(
        p: &mut Params<'_>,
        name: &str,
        cfg: &ModelConfig,
        layers: usize,
    ) -> Result<Encoder> {
        let tok = p.normal(&format!("{name}.tok"), &[cfg.vocab, cfg.d], 0.02)?;
        let pos = p.normal(&format!("{name}.pos"), &[cfg.seq, cfg.d], 0.02)?;
        let blocks = (0..layers)
            .map(|i| Block::new(p, &format!("{name}.block{i}"), cfg))
            .collect::<Result<Vec<_>>>()?;
        let ln_f = LayerNorm::new(p, &format!("{name}.ln_f"), cfg.d)?;
        Ok(Encoder {
            tok,
            pos,
            blocks,
            ln_f,
            seq: cfg.seq,
        })
    }

    /// The token embeddings of `ids` (`[b, t]` → `[b, t, d]`).
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let d = self.tok.dim(1)?;
        Ok(self
            .tok
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, t, d))?)
    }

    /// Runs the encoder; `mask` is [`causal_mask`] of the sequence length.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (_, t) = ids.dims2()?;
        if t > self.seq {
            return Err(Error::BadInput(format!(
                "sequence of {t} tokens is longer than the model's {}",
                self.seq
            )));
        }
        let mut x = self.embed(ids)?.broadcast_add(&self.pos.narrow(0, 0, t)?)?;
        for b in &self.blocks {
            x = b.forward(&x, mask)?;
        }
        self.ln_f.forward(&x)
    }
}

/// The next-token head: `[b, t, d]` → logits `[b, t, vocab]`.
#[derive(Clone, Debug)]
pub struct Head {
    ln: LayerNorm,
    out: Linear,
}

impl Head {
    /// A head named `{name}.*`.
    pub fn new(p: &mut Params<'_>, name: &str, cfg: &ModelConfig) -> Result<Head> {
        Ok(Head {
            ln: LayerNorm::new(p, &format!("{name}.ln"), cfg.d)?,
            out: p.linear(&format!("{name}.out"), cfg.d, cfg.vocab)?,
        })
    }

    /// The logits.
    pub fn forward(&self, h: &Tensor) -> Result<Tensor> {
        self.out.forward(&self.ln.forward(h)?)
    }
}

/// Mean next-token cross-entropy of `logits` `[b, t, v]` against `targets` `[b, t]` (u32).
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (b, t, v) = logits.dims3()?;
    Ok(ops::cross_entropy(
        &logits.reshape((b * t, v))?,
        &targets.reshape(b * t)?,
        logits.device().is_cpu(),
    )?)
}

/// Token ids as a `[b, t]` u32 tensor.
pub fn ids_tensor(ids: &[u32], b: usize, t: usize, device: &Device) -> Result<Tensor> {
    Ok(Tensor::from_vec(ids.to_vec(), (b, t), device)?.to_dtype(DType::U32)?)
}
