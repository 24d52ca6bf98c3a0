//! The one error type of the simulator.

use std::path::PathBuf;

/// What can go wrong in the simulator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a readable safetensors file.
    #[error("not a valid safetensors file: {0}")]
    Format(String),
    /// A required tensor is absent.
    #[error(
        "tensor `{name}` is missing (the instance needs `stake` [n], `w0` [n,n], `hessians` [n,n,n])"
    )]
    MissingTensor {
        /// Its name.
        name: &'static str,
    },
    /// A tensor has the wrong dtype.
    #[error("tensor `{name}` has dtype {got}, expected F64 (or F32)")]
    Dtype {
        /// Its name.
        name: &'static str,
        /// The dtype found.
        got: String,
    },
    /// A tensor has the wrong shape.
    #[error("tensor `{name}` has shape {got:?}, expected {expected:?}")]
    Shape {
        /// Its name.
        name: &'static str,
        /// The shape required.
        expected: Vec<usize>,
        /// The shape found.
        got: Vec<usize>,
    },
    /// A tensor's content breaks the instance's rules.
    #[error("tensor `{name}`: {fault}")]
    Invalid {
        /// Its name.
        name: &'static str,
        /// What is wrong, with the offending index.
        fault: String,
    },
    /// A parameter is out of range.
    #[error("invalid parameter: {0}")]
    Parameter(String),
    /// The mechanism refused its inputs.
    #[error(transparent)]
    Mechanism(#[from] bt_mechanism::Error),
    /// Drawing a figure failed.
    #[error("plotting {path}: {message}")]
    Plot {
        /// The figure's file.
        path: PathBuf,
        /// The cause.
        message: String,
    },
    /// An epoch input that is not the expected JSON.
    #[error("epoch input is not valid JSON of the expected form: {0}")]
    EpochJson(serde_json::Error),
    /// An epoch input with no neurons.
    #[error("epoch input has no neurons (stake is empty)")]
    EmptyEpoch,
    /// An epoch input whose matrix has the wrong shape.
    #[error("{what}{}: expected {expected} entries, got {got}", row.map(|r| format!(" row {r}")).unwrap_or_default())]
    EpochShape {
        /// `weights` or `bonds`.
        what: &'static str,
        /// The row with the wrong length (`None`: the number of rows is wrong).
        row: Option<usize>,
        /// `n`, the number of stakes.
        expected: usize,
        /// What the input has.
        got: usize,
    },
    /// A negative stake, weight or bond.
    #[error("{what}[{row}][{col}] = {value} is negative")]
    EpochNegative {
        /// `stake`, `weights` or `bonds`.
        what: &'static str,
        /// The row (0 for stake).
        row: usize,
        /// The column (the index for stake).
        col: usize,
        /// The value.
        value: f64,
    },
    /// A stake, weight or bond that is NaN or infinite.
    #[error("{what}[{row}][{col}] = {value} is not finite")]
    EpochNonFinite {
        /// `stake`, `weights` or `bonds`.
        what: &'static str,
        /// The row (0 for stake).
        row: usize,
        /// The column (the index for stake).
        col: usize,
        /// The value.
        value: f64,
    },
    /// A number the chosen number type cannot hold (the fixed point's range).
    #[error("{what}: {value} is out of the number type's range")]
    EpochRange {
        /// Which input.
        what: &'static str,
        /// The value.
        value: f64,
    },
    /// Writing JSON failed.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Result with the simulator's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an I/O error with the file it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Writes `text` to `path`, naming the file in any error.
pub(crate) fn write_text(path: &std::path::Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}
