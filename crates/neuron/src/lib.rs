//! The neuron: a learner that trains with its peers (paper sections 2.1, 2.5-2.8).
//!
//! - [`model`]: the candle networks (byte-level transformer trunk and student, head).
//! - [`ops`]: fused CPU kernels with their own backward passes (GELU, layer norm, causal
//!   attention, cross-entropy, the linear layer), checked against the elementary
//!   versions.
//! - [`optim`]: AdamW updated in place, one pass per parameter.
//! - [`router`]: noisy top-k gating over peers with importance and load losses.
//! - [`learner`]: one training step given the peers' answers; the gradients to send back.
//! - [`data`]: bundled public-domain text, split into training and held-out parts.
//! - [`serve`]: what the axon serves (trunk + student) and how peer gradients apply.
//! - [`ledger`]: the metagraph snapshot and the competitive mask the axon applies.
//! - [`weights`]: payoff-gradient (and EMA) weight rules.
//! - [`core`](mod@core): the neuron's decisions without I/O (modes, peer back-off, epoch
//!   statistics, weight rule, when to evaluate and checkpoint), returning effects.
//! - [`neuron`]: the running neuron (axon, dendrite, ledger); [`config`]: its TOML file.
//!
//! ```
//! use bt_neuron::learner::{Learner, Mode, OptimConfig};
//! use bt_neuron::model::ModelConfig;
//! use bt_neuron::router::RouterConfig;
//! use bt_neuron::data::TextData;
//! use rand::SeedableRng;
//!
//! let cfg = ModelConfig { seq: 16, d: 16, hidden: 32, layers: 1, ..ModelConfig::default() };
//! let data = TextData::load("bundled:moby_dick_a", None, 0.1, 16).unwrap();
//! // The objectives' and the weight decay's `auto` follow the size of the learner's own text.
//! let router = RouterConfig::default().for_data(data.train_len());
//! let optim = OptimConfig::default().for_data(data.train_len());
//! let learner = Learner::new(&cfg, &router, &optim, &candle_core::Device::Cpu, 7).unwrap();
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
//! let batch = data.train_batch(4, 16, &mut rng);
//! let step = learner
//!     .train_step(&batch, Mode::Alone, None, &[])
//!     .unwrap();
//! assert!(step.loss > 4.0 && step.loss < 7.0); // about ln(256) = 5.5 at the start
//! ```

pub mod config;
pub mod core;
pub mod data;
mod error;
pub mod learner;
pub mod ledger;
pub mod model;
pub mod neuron;
pub mod ops;
pub mod optim;
pub mod router;
pub mod serve;
pub mod weights;

pub use config::{DeviceSpec, NeuronConfig};
pub use neuron::{EpochReport, Neuron, RemovalCost, Resumed, StepReport};

pub use error::{Error, Result};
