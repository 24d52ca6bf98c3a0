//! The single-node BitTensor ledger: storage, block production, a gRPC API, and replay
//! verification, around the pure state machine of `bt-ledger`.
//!
//! - [`store`]: the redb database (blocks, states, pending pool, transaction index); one
//!   write transaction per block, so a crash leaves whole blocks only.
//! - [`node`]: the engine thread that orders submissions into a durable pending pool
//!   (group commit) and produces a block every `block_time_ms`.
//! - [`service`]: the tonic gRPC service with per-client rate limits and bounded request
//!   sizes, and [`serve`] to run it all.
//! - [`client`]: a typed client of that API.
//! - [`verify`](mod@verify): replays every block from genesis and checks every state hash.
//! - [`load`]: the client side of the crash test: stream transactions through restarts,
//!   then check every acknowledged one is in a block.
//! - [`proto`]: the generated gRPC types (`proto/chain.proto`).
//!
//! The node (`store`, `node`, `service`, `verify`, and with them redb) is the `server`
//! feature, on by default. Without it (`default-features = false`, as `bt-neuron` takes it)
//! the crate is the client, [`load`], the error type and the generated client stubs.
//!
//! A submission is acknowledged only after it is committed to the pending pool on disk;
//! from there it is included in a block or refused with a recorded reason.
//!
//! # Example
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use bt_chain::{Client, NodeConfig, serve};
//! use bt_keys::Keypair;
//! use bt_ledger::{Call, Transaction, genesis_state};
//!
//! let alice = Keypair::from_uri("//Alice")?;
//! let genesis = genesis_state(&format!(
//!     "[params]\ntau = 1.0\nepsilon = 0.5\nmax_neurons = 16\nblock_time_ms = 50\n\
//!      [[accounts]]\naddress = \"{}\"\nbalance = 1_000_000_000_000\n",
//!     alice.public()
//! ))?;
//! let dir = tempfile::tempdir()?;
//! let mut cfg = NodeConfig::new(dir.path().to_path_buf(), Some(genesis.clone()));
//! cfg.listen = "127.0.0.1:0".parse()?;
//! let node = serve(cfg).await?;
//!
//! let mut client = Client::connect(&format!("http://{}", node.addr)).await?;
//! let bob = Keypair::from_uri("//Bob")?.public();
//! let tx = Transaction::sign(&alice, &genesis.genesis, 0, Call::Transfer { to: bob, amount: 5 });
//! let id = client.submit(&tx).await?; // durable from here on
//! # let _ = id;
//! node.stop().await?;
//! # Ok(())
//! # }
//! # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
//! ```

pub mod client;
pub mod error;
pub mod load;
#[cfg(feature = "server")]
pub mod node;
#[cfg(feature = "server")]
pub mod service;
#[cfg(feature = "server")]
pub mod store;
#[cfg(feature = "server")]
pub mod verify;

/// The gRPC messages and service stubs generated from `proto/chain.proto`.
#[allow(missing_docs, clippy::all, clippy::unwrap_used)]
pub mod proto {
    tonic::include_proto!("bt.chain.v1");
}

pub use client::{
    AccountInfo, Client, Failover, Metagraph, MetagraphNeuron, Replication, TxStatus, check_urls,
    split_urls,
};
pub use error::{Error, Result};
#[cfg(feature = "server")]
pub use node::{NextBlock, NodeConfig, next_block, now_ms};
#[cfg(feature = "server")]
pub use service::{Backend, NodeHandle, SingleNode, serve, serve_api};
#[cfg(feature = "server")]
pub use store::Store;
#[cfg(feature = "server")]
pub use verify::{VerifyReport, verify};
