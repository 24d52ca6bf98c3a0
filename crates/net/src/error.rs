//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in a local network.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A neuron or the ledger failed.
    #[error(transparent)]
    Neuron(#[from] bt_neuron::Error),
    /// Talking to the ledger node failed.
    #[error("ledger: {0}")]
    Ledger(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A plot could not be drawn.
    #[error(transparent)]
    Plot(#[from] bt_sim::Error),
    /// A setting is out of range.
    #[error("{0}")]
    Config(String),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
