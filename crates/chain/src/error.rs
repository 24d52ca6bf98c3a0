//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong running, querying or verifying a node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The ledger refused something (a transaction, a block, a genesis file).
    #[error(transparent)]
    Ledger(#[from] bt_ledger::Error),
    /// The database failed. (redb's message is complete and it has no source, so it is
    /// shown here and not repeated as a cause.)
    #[cfg(feature = "server")]
    #[error("database: {0}")]
    Db(redb::Error),
    /// A file could not be read or written.
    #[error("cannot use {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause (not repeated in this message).
        #[source]
        source: std::io::Error,
    },
    /// The data directory does not exist (and, without a genesis, is not created).
    #[error("data directory {dir} does not exist")]
    NoDataDir {
        /// The directory.
        dir: PathBuf,
    },
    /// Another process (a running node, or a `verify`) has the database open.
    #[error(
        "the chain database in {dir} is in use by a running node (its lock is held): \
         stop the node first"
    )]
    Locked {
        /// The data directory.
        dir: PathBuf,
    },
    /// The data directory belongs to another chain.
    #[error("data directory holds chain {stored}, but the genesis file gives {given}")]
    GenesisMismatch {
        /// The chain id in the database.
        stored: bt_ledger::Hash,
        /// The chain id of the genesis file.
        given: bt_ledger::Hash,
    },
    /// The data directory has no chain and no genesis was given.
    #[error("{dir} holds no chain; give a genesis file to start one")]
    NoChain {
        /// The data directory.
        dir: PathBuf,
    },
    /// The stored data is inconsistent (found by `verify` or on open).
    #[error("corrupt data at height {height}: {reason}")]
    Corrupt {
        /// Where.
        height: u64,
        /// What.
        reason: String,
    },
    /// The node's pending pool is full.
    #[error("pending pool is full ({max} transactions); retry later")]
    PoolFull {
        /// Its capacity.
        max: usize,
    },
    /// The transaction was already left out of a block.
    #[error("transaction was refused: {reason}")]
    Refused {
        /// The ledger's reason.
        reason: String,
    },
    /// The pool could not be written, so the transaction was not accepted.
    #[error("transaction not stored: {reason}")]
    NotStored {
        /// The database error.
        reason: String,
    },
    /// The node stopped.
    #[error("the node has stopped")]
    Stopped,

    /// A validator of a replicated ledger that does not lead and knows no leader to forward
    /// to (an election is under way): retry, or ask another validator.
    #[error("no leader is known yet (an election is under way); retry or ask another validator")]
    NoLeader,
    /// A gRPC call failed.
    #[error("rpc: {0}")]
    Rpc(#[from] tonic::Status),
    /// The transport (connecting, serving) failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The node cannot be reached (refused, down, unresolvable): its address and the root
    /// cause.
    #[error("cannot reach the ledger node at {url}: {reason}")]
    Unreachable {
        /// The node's address.
        url: String,
        /// The innermost cause (e.g. `Connection refused (os error 111)`).
        reason: String,
    },
    /// None of several nodes (a replicated ledger's validators) answered: each address with
    /// why.
    #[error("no ledger node answered: {}", .tried.join("; "))]
    NoneAnswered {
        /// `url: reason` for each node tried.
        tried: Vec<String>,
    },
    /// A ledger address that is not `http://...` or `https://...`.
    #[error("ledger address {url:?} must start with http:// or https://")]
    BadAddress {
        /// The address given.
        url: String,
    },
    /// A reply from a node does not make sense.
    #[error("bad reply from node: {0}")]
    BadReply(String),
}

impl Error {
    /// Whether the node asked cannot serve now (down, unreachable, between leaders, stopped),
    /// so that a client with other validators' addresses should ask another.
    pub fn is_lost(&self) -> bool {
        match self {
            Error::Transport(_)
            | Error::Unreachable { .. }
            | Error::NoLeader
            | Error::Stopped
            | Error::NoneAnswered { .. } => true,
            Error::Rpc(s) => s.code() == tonic::Code::Unavailable,
            _ => false,
        }
    }
}

/// The reply metadata key that names which of this crate's errors an answer carries where
/// the gRPC code alone does not tell; the client maps it back to the typed [`Error`].
pub const ERROR_KIND: &str = "bt-error";
/// [`ERROR_KIND`]'s value for [`Error::NoLeader`].
pub const NO_LEADER: &str = "no-leader";

/// The result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(feature = "server")]
impl From<redb::Error> for Error {
    fn from(e: redb::Error) -> Error {
        Error::Db(e)
    }
}

/// Converts any redb error into [`Error::Db`].
#[cfg(feature = "server")]
pub(crate) fn db<E: Into<redb::Error>>(e: E) -> Error {
    Error::Db(e.into())
}
