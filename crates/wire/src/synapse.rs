//! The model an axon serves ([`Synapse`]), the tensor specs it declares, and the stake view.

use std::collections::HashMap;
use std::sync::RwLock;

use bt_keys::PublicKey;

use crate::error::{Result, WireError};
use crate::tensor::{DType, Tensor};

/// The error a model returns; anything that implements `std::error::Error` converts into it.
pub type SynapseError = Box<dyn std::error::Error + Send + Sync>;

/// The result of a model call.
pub type SynapseResult<T> = std::result::Result<T, SynapseError>;

/// One dimension of a declared tensor shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dim {
    /// The batch dimension: any size, the same in every tensor of a request.
    Batch,
    /// Exactly this size.
    Fixed(usize),
    /// Any size.
    Any,
}

/// The element kind a model declares for a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Floats: callers may send f32, f16 or bf16; the model always receives f32.
    Float,
    /// Integer token ids: callers may send i64 or i32; the model receives them as sent.
    Int,
}

/// The declared shape and kind of one input or output tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    /// Element kind.
    pub kind: Kind,
    /// Dimensions.
    pub dims: Vec<Dim>,
}

impl TensorSpec {
    /// A float tensor spec.
    pub fn float(dims: Vec<Dim>) -> TensorSpec {
        TensorSpec {
            kind: Kind::Float,
            dims,
        }
    }

    /// An integer (token id) tensor spec.
    pub fn int(dims: Vec<Dim>) -> TensorSpec {
        TensorSpec {
            kind: Kind::Int,
            dims,
        }
    }

    /// The spec rendered as in error messages, e.g. `[batch, 1024]`.
    pub fn render(&self) -> String {
        let dims: Vec<String> = self
            .dims
            .iter()
            .map(|d| match d {
                Dim::Batch => "batch".to_string(),
                Dim::Fixed(n) => n.to_string(),
                Dim::Any => "*".to_string(),
            })
            .collect();
        format!("[{}]", dims.join(", "))
    }

    /// Checks `t` against the spec; `batch` is the batch size seen so far in the request (set
    /// by the first tensor that has a batch dimension).
    pub fn check(&self, t: &Tensor, what: &str, batch: &mut Option<usize>) -> Result<()> {
        let dtype_ok = match self.kind {
            Kind::Float => t.dtype().is_float(),
            Kind::Int => matches!(t.dtype(), DType::I64 | DType::I32),
        };
        if !dtype_ok {
            return Err(WireError::DTypeMismatch {
                what: what.to_string(),
                expected: match self.kind {
                    Kind::Float => "float (f32, f16 or bf16)".into(),
                    Kind::Int => "int (i64 or i32)".into(),
                },
                got: t.dtype(),
            });
        }
        let mismatch = || WireError::ShapeMismatch {
            what: what.to_string(),
            expected: self.render(),
            got: t.shape().to_vec(),
        };
        if t.shape().len() != self.dims.len() {
            return Err(mismatch());
        }
        for (d, &n) in self.dims.iter().zip(t.shape()) {
            match *d {
                Dim::Fixed(m) if m != n => return Err(mismatch()),
                Dim::Batch => match *batch {
                    Some(b) if b != n => return Err(mismatch()),
                    Some(_) => {}
                    None => *batch = Some(n),
                },
                _ => {}
            }
        }
        Ok(())
    }
}

/// A model an axon can serve.
///
/// Float inputs arrive as `f32` tensors whatever dtype the caller sent; integer inputs arrive
/// as sent. Backward is stateless, as in hivemind: it receives the same inputs as Forward plus
/// the gradient of the caller's loss with respect to each output, recomputes what it needs,
/// applies the update to its parameters, and may return the gradient with respect to each input.
pub trait Synapse: Send + Sync + 'static {
    /// The declared inputs.
    fn input_spec(&self) -> Vec<TensorSpec>;
    /// The declared outputs (and so the shapes of Backward's `grad_outputs`).
    fn output_spec(&self) -> Vec<TensorSpec>;
    /// Runs the model.
    fn forward(&self, inputs: &[Tensor]) -> SynapseResult<Vec<Tensor>>;
    /// Applies the gradient of the caller's loss; returns the input gradients, if computed.
    fn backward(
        &self,
        inputs: &[Tensor],
        grad_outputs: &[Tensor],
    ) -> SynapseResult<Option<Vec<Tensor>>>;
    /// Forward for one caller's request, when it runs alone (not fused with others'). The
    /// default ignores the caller; a model that answers callers differently overrides it.
    fn forward_from(&self, caller: &PublicKey, inputs: &[Tensor]) -> SynapseResult<Vec<Tensor>> {
        let _ = caller;
        self.forward(inputs)
    }
    /// Backward for one caller's request, when it runs alone (see [`Synapse::forward_from`]).
    fn backward_from(
        &self,
        caller: &PublicKey,
        inputs: &[Tensor],
        grad_outputs: &[Tensor],
    ) -> SynapseResult<Option<Vec<Tensor>>> {
        let _ = caller;
        self.backward(inputs, grad_outputs)
    }
    /// Whether rows along the batch dimension are independent in Forward, so that the axon may
    /// concatenate concurrent requests into one call (every input and output then has the batch
    /// dimension first).
    fn batchable(&self) -> bool {
        false
    }
    /// Whether Backward may likewise take concurrent requests as one call: rows are
    /// independent, and one step on the concatenated rows is the step the separate calls would
    /// take together (a parameter gradient summed over rows, as SGD on a summed loss gives).
    /// hivemind's servers batch backward requests in the same way.
    fn batchable_backward(&self) -> bool {
        false
    }
}

/// What an axon knows of its callers from the ledger: their stake, to order its queue, and
/// the competitive mask (paper eq. 7), to scale what each caller receives.
pub trait StakeView: Send + Sync + 'static {
    /// The stake of `hotkey` (0 when unknown).
    fn stake(&self, hotkey: &PublicKey) -> u64;

    /// The multiplier `m` in `[0, 1]` applied to every float output sent to `caller` (and so,
    /// by the chain rule, to the output gradients `caller` sends back). The default, 1, serves
    /// everyone alike; a neuron returns `sigmoid((s_i w_ij - mu_j) / T)` from the ledger.
    fn response_scale(&self, caller: &PublicKey) -> f32 {
        let _ = caller;
        1.0
    }
}

/// A [`StakeView`] held in memory.
#[derive(Debug, Default)]
pub struct MemoryStakes {
    stakes: RwLock<HashMap<PublicKey, u64>>,
}

impl MemoryStakes {
    /// An empty view: everyone has stake 0.
    pub fn new() -> MemoryStakes {
        MemoryStakes::default()
    }

    /// Sets the stake of `hotkey`.
    pub fn set(&self, hotkey: PublicKey, stake: u64) {
        let mut map = self.stakes.write().unwrap_or_else(|e| e.into_inner());
        map.insert(hotkey, stake);
    }
}

impl StakeView for MemoryStakes {
    fn stake(&self, hotkey: &PublicKey) -> u64 {
        let map = self.stakes.read().unwrap_or_else(|e| e.into_inner());
        map.get(hotkey).copied().unwrap_or(0)
    }
}

impl<T: StakeView> StakeView for std::sync::Arc<T> {
    fn stake(&self, hotkey: &PublicKey) -> u64 {
        (**self).stake(hotkey)
    }

    fn response_scale(&self, caller: &PublicKey) -> f32 {
        (**self).response_scale(caller)
    }
}
