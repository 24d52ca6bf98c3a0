//! The ledger replicated across validators on [openraft]: crash faults of a minority are
//! tolerated (not Byzantine ones).
//!
//! - [`LogStore`]: the raft log, the vote and the committed index in a redb file of their own
//!   (`raft.redb`), each append committed (fsync) before openraft hears it is flushed.
//! - [`Machine`]: the state machine. It is the chain's own store (`chain.redb`) driven by
//!   [`bt_ledger::apply`]: a [`Command::Submit`] entry adds the leader's group commit of
//!   submissions to the pending pool, a [`Command::Block`] entry is a block the leader built,
//!   which every replica applies again and checks against the header's state hash (a replica
//!   whose state would differ refuses the entry, and openraft stops it, rather than serve a
//!   wrong state). The last applied log id and the membership are written in the same redb
//!   transaction as the change they follow.
//! - [`codec`]: the bytes of log entries, log ids, votes and commands, decoded once at the
//!   boundary with typed errors (the log file and, later, the raft RPCs carry them).
//!
//! This crate depends on `bt-ledger` and `bt-chain`, never the other way round, so that another
//! engine could replace it without touching the ledger.
//!
//! # Example
//! ```no_run
//! use bt_replica::{LogStore, Machine};
//! # fn main() -> Result<(), bt_replica::Error> {
//! # let genesis: bt_ledger::State = unimplemented!();
//! let dir = std::path::Path::new("data/validator-1");
//! let log = LogStore::open(dir)?;
//! let machine = Machine::open(dir, Some(&genesis))?;
//! println!("head at height {}", machine.head().height);
//! # Ok(()) }
//! ```

use std::io::Cursor;

mod api;
mod cluster;
pub mod codec;
mod error;
mod log;
mod machine;
pub mod network;
mod replica;
pub mod rpc;

/// The raft RPC messages, generated from `proto/raft.proto`.
#[allow(missing_docs, clippy::all, clippy::unwrap_used)]
pub mod proto {
    tonic::include_proto!("bt.raft.v1");
}

pub use cluster::parse_cluster;
pub use codec::{Applied, Command};
pub use error::{Error, Result};
pub use log::LogStore;
pub use machine::Machine;
pub use network::{Network, RaftService};
pub use replica::{Replica, ReplicaConfig, ReplicaStatus};

/// A validator's id in the cluster.
pub type NodeId = u64;

/// Where a validator listens: its raft address and its ledger API address.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Peer {
    /// The raft RPC address (`host:port`).
    pub raft: String,
    /// The ledger API address clients use (`host:port`).
    pub api: String,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "raft {} api {}", self.raft, self.api)
    }
}

openraft::declare_raft_types!(
    /// The replicated ledger's raft types: commands in, what applying them did out.
    pub TypeConfig:
        D = Command,
        R = Applied,
        NodeId = NodeId,
        Node = Peer,
        SnapshotData = Cursor<Vec<u8>>,
);

/// A raft log entry of the replicated ledger.
pub type Entry = openraft::Entry<TypeConfig>;
/// A raft log id.
pub type LogId = openraft::LogId<NodeId>;
/// A raft vote.
pub type Vote = openraft::Vote<NodeId>;
/// What storage errors look like to openraft.
pub type StorageError = openraft::StorageError<NodeId>;
