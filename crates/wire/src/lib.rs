//! Tensor RPC between learners: the [`Axon`] server and the [`Dendrite`] client.
//!
//! A learner sends batches to its peers' axons with `Forward` and sends back the gradient of its
//! loss with `Backward` (stateless, as hivemind does: the inputs travel again with the gradient).
//! Every request is signed with the caller's sr25519 hotkey over a BLAKE2b-256 digest of its
//! body, nonce and receiver ([`signing`]); the axon validates everything, orders its bounded
//! queue by the caller's stake ([`StakeView`]), fuses concurrent forward requests, and answers
//! every fault with its own [`ReturnCode`] and a message naming it.
//!
//! - [`proto`]: the generated gRPC types of `proto/wire.proto`, the public contract.
//! - [`tensor`]: shape + dtype + little-endian bytes, with f32/f16/bf16 and token-id conversions.
//! - [`signing`]: the canonical digest and its signature.
//! - [`synapse`]: the [`Synapse`] trait a served model implements, its specs, and the stake view.
//! - [`axon`], [`dendrite`]: server and client. [`metrics`]: Prometheus text metrics.
//! - [`expert`]: a feed-forward expert in plain Rust (tests and benchmark).
//!
//! ```
//! use std::sync::Arc;
//! use bt_keys::Keypair;
//! use bt_wire::{Axon, AxonConfig, Dendrite, DendriteConfig, FeedForwardExpert, MemoryStakes,
//!               Peer, ReturnCode, Tensor};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let rt = tokio::runtime::Runtime::new()?;
//! rt.block_on(async {
//!     let server_key = Keypair::from_uri("//Bob")?;
//!     let expert = Arc::new(FeedForwardExpert::new(8, 32, 0.01, 1));
//!     let axon = Axon::new(server_key.public(), expert, Arc::new(MemoryStakes::new()),
//!                          AxonConfig::default())?;
//!     let handle = axon.spawn("127.0.0.1:0".parse()?).await?;
//!     let dendrite = Dendrite::new(Keypair::from_uri("//Alice")?, DendriteConfig::default())?;
//!     let peer = Peer { hotkey: server_key.public(), endpoint: handle.endpoint() };
//!     let x = Tensor::from_f32(vec![2, 8], &[0.5; 16])?;
//!     let reply = dendrite.forward(&peer, &[x]).await;
//!     assert_eq!(reply.code, ReturnCode::Success, "{}", reply.message);
//!     assert_eq!(reply.outputs[0].shape(), &[2, 8]);
//!     handle.shutdown().await?;
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })
//! # }
//! ```

mod activations;
pub mod axon;
pub mod dendrite;
mod error;
pub mod expert;
pub mod metrics;
mod queue;
pub mod signing;
pub mod synapse;
pub mod tensor;

/// The generated gRPC types and services of `proto/wire.proto`.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("bittensor.wire.v1");
}

pub use axon::{Axon, AxonConfig, AxonHandle, Validated};
pub use dendrite::{Dendrite, DendriteConfig, Peer, Quorum, Reply};
pub use error::{Result, WireError};
pub use expert::FeedForwardExpert;
pub use metrics::{Metrics, serve_metrics};
pub use proto::ReturnCode;
pub use signing::Method;
pub use synapse::{
    Dim, Kind, MemoryStakes, StakeView, Synapse, SynapseError, SynapseResult, TensorSpec,
};
pub use tensor::{DType, Tensor};
