//! The crate's one error type.

use std::path::PathBuf;

/// What went wrong in the replicated ledger.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bytes that do not decode as what they should be (a log entry, a command, a vote).
    #[error("cannot decode {what}: {reason}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// A length field larger than the bytes that follow, or than the limit.
    #[error("cannot decode {what}: {len} bytes declared, at most {max} allowed")]
    TooLarge {
        /// What was being decoded.
        what: &'static str,
        /// The declared length.
        len: u64,
        /// The most allowed here.
        max: u64,
    },
    /// The raft log's database.
    #[error("raft log database: {0}")]
    Db(#[from] redb::Error),
    /// A file or directory that cannot be used.
    #[error("cannot use {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The raft log is held open by another process (a running validator).
    #[error("{dir} is in use by another validator process")]
    Locked {
        /// The data directory.
        dir: PathBuf,
    },
    /// The chain's store.
    #[error(transparent)]
    Chain(#[from] bt_chain::Error),
    /// The ledger refused a block the leader built: this replica's state would differ from
    /// the leader's, so it stops rather than serve it.
    #[error("block {height} from the log does not apply here: {source}")]
    Diverged {
        /// The block's height.
        height: u64,
        /// Why it does not apply.
        #[source]
        source: bt_ledger::Error,
    },
    /// This validator does not lead; the leader it knows, with its API address.
    #[error("not the leader; {}", match (leader, api) { (Some(l), Some(a)) => format!("validator {l} at {a} leads"), (Some(l), None) => format!("validator {l} leads"), _ => "no leader is known yet".to_string() })]
    NotLeader {
        /// The leader's id.
        leader: Option<crate::NodeId>,
        /// Its API address.
        api: Option<String>,
    },
    /// This validator's id is not in the cluster's membership.
    #[error("validator {id} is not a member of the cluster (members: {members:?})")]
    NotAMember {
        /// Its id.
        id: crate::NodeId,
        /// The members.
        members: Vec<crate::NodeId>,
    },
    /// A cluster file that cannot be used.
    #[error("cluster file: {reason}")]
    Cluster {
        /// What is wrong.
        reason: String,
    },
    /// Raft itself (start, initialize, a write that failed for another reason).
    #[error("raft: {0}")]
    Raft(String),
}

/// The crate's result.
pub type Result<T> = std::result::Result<T, Error>;

/// Any redb error as ours.
pub(crate) fn db(e: impl Into<redb::Error>) -> Error {
    Error::Db(e.into())
}
