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
