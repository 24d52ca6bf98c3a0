//! The neuron's error type.

/// Everything that can go wrong in a neuron.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed (shapes, dtypes, device).
    #[error("model: {0}")]
    Model(#[from] candle_core::Error),
    /// A configuration value is out of range or inconsistent.
    #[error("config: {0}")]
    Config(String),
    /// A configuration file that is not valid TOML or does not fit the schema (an unknown
    /// field, a wrong type), with where.
    #[error("{}line {line}, column {column}: {message}", .file.as_ref().map(|f| format!("{f}: ")).unwrap_or_default())]
    ConfigSyntax {
        /// The file, when read from one.
        file: Option<String>,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// The TOML parser's message.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Training text that cannot be used.
    #[error("data: {0}")]
    Data(String),
    /// A checkpoint file that is not one: truncated, overwritten, not safetensors, a value
    /// that is not finite, or a training state that cannot be read. Nothing is loaded from it.
    #[error(
        "checkpoint {path} is damaged: {reason}; restore a good copy, or delete it to start \
         from step 0"
    )]
    CheckpointDamaged {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A sound checkpoint of another model (a tensor missing or of another shape): the
    /// `[model]` or `[router]` settings changed since it was written. Nothing is loaded from it.
    #[error("checkpoint {path} does not fit this model: {reason}")]
    CheckpointMismatch {
        /// The file.
        path: String,
        /// The first difference.
        reason: String,
    },
    /// A checkpoint could not be written.
    #[error("cannot write checkpoint {path}: {reason}")]
    CheckpointWrite {
        /// The file.
        path: String,
        /// The cause.
        reason: String,
    },
    /// The ledger refused or failed a request.
    #[error("ledger: {0}")]
    Ledger(String),
    /// The ledger node could not be reached or refused a request (its message says which
    /// node and why; `transparent`, so a report's causes do not repeat it).
    #[error(transparent)]
    Chain(#[from] bt_chain::Error),
    /// No metagraph has been read yet, so no weight row can be chosen.
    #[error("no metagraph yet")]
    NoMetagraph,
    /// This neuron's hotkey is not in the metagraph.
    #[error("not registered")]
    NotRegistered,
    /// The wire layer failed.
    #[error("wire: {0}")]
    Wire(#[from] bt_wire::WireError),
    /// Input a peer sent that the model cannot take.
    #[error("bad input: {0}")]
    BadInput(String),
}

/// The neuron's result type.
pub type Result<T> = std::result::Result<T, Error>;
