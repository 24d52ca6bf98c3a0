//! The one error type of the mechanism crate.

/// What can go wrong when building the mechanism's inputs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A vector or matrix has the wrong size.
    #[error("{what}: expected {expected} entries, got {got}")]
    Shape {
        /// Which input.
        what: &'static str,
        /// The size required.
        expected: usize,
        /// The size given.
        got: usize,
    },
    /// An input holds NaN or an infinity.
    #[error("{what}: entry {index} is not finite ({value})")]
    NonFinite {
        /// Which input.
        what: &'static str,
        /// Flat index of the first bad entry.
        index: usize,
        /// The bad value.
        value: f64,
    },
    /// A parameter is outside its domain.
    #[error("parameter {name} = {value} is invalid: {reason}")]
    Parameter {
        /// The parameter's name.
        name: &'static str,
        /// The value given.
        value: f64,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A sparse row names the same column twice.
    #[error("row {row} names column {col} twice")]
    DuplicateColumn {
        /// The row.
        row: usize,
        /// The repeated column.
        col: usize,
    },
    /// A mechanism name that is none of `paper`, `paper_no_self`, `yuma`.
    #[error("unknown mechanism {name:?}: expected paper, paper_no_self or yuma")]
    UnknownMechanism {
        /// The name given.
        name: String,
    },
    /// A matrix is empty.
    #[error("{what}: must have at least one row")]
    Empty {
        /// Which input.
        what: &'static str,
    },
}

/// Result with the mechanism crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Checks that every entry of `xs` is finite.
pub fn check_finite(what: &'static str, xs: &[f64]) -> Result<()> {
    match xs.iter().position(|x| !x.is_finite()) {
        Some(index) => Err(Error::NonFinite {
            what,
            index,
            value: xs[index],
        }),
        None => Ok(()),
    }
}
