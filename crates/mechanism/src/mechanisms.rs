//! The three mechanisms a ledger may run, by name, and what each means for the rank and the
//! competitive mask.
//!
//! - [`Mechanism::Paper`]: the paper's rank `R = (1/n) W^T S` and inflation
//!   `S <- S + tau R / ||R||_2` every block (`spec/mechanism.md`).
//! - [`Mechanism::PaperNoSelf`]: the same with the diagonal left out of the rank and of the
//!   mask's column shift `mu`, so a self-weight earns nothing.
//! - [`Mechanism::Yuma`]: subtensor's Yuma consensus ([`crate::yuma`]), one epoch every
//!   `tempo` blocks.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::rank::{Diagonal, rank_sparse_diag};

/// A mechanism, by name: `paper`, `paper_no_self` or `yuma`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mechanism {
    /// The paper's rank and inflation, diagonal included.
    #[default]
    Paper,
    /// The paper's rank and inflation without the diagonal.
    PaperNoSelf,
    /// Yuma consensus.
    Yuma,
}

impl Mechanism {
    /// Every mechanism, in the order of their codes.
    pub const ALL: [Mechanism; 3] = [Mechanism::Paper, Mechanism::PaperNoSelf, Mechanism::Yuma];

    /// The name used in files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::Paper => "paper",
            Mechanism::PaperNoSelf => "paper_no_self",
            Mechanism::Yuma => "yuma",
        }
    }

    /// A stable one-byte code (stored in the ledger's state).
    pub fn code(self) -> u8 {
        match self {
            Mechanism::Paper => 0,
            Mechanism::PaperNoSelf => 1,
            Mechanism::Yuma => 2,
        }
    }

    /// The mechanism of a code written by [`Mechanism::code`].
    pub fn from_code(code: u8) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.code() == code)
    }

    /// Whether the self-weight `W_ii` counts in the rank and in `mu`: only under `paper`.
    pub fn diagonal(self) -> Diagonal {
        match self {
            Mechanism::Paper => Diagonal::Keep,
            Mechanism::PaperNoSelf | Mechanism::Yuma => Diagonal::Drop,
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mechanism {
    type Err = Error;

    fn from_str(s: &str) -> Result<Mechanism> {
        Mechanism::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| Error::UnknownMechanism { name: s.to_owned() })
    }
}

/// The competitive mask's column shift under a mechanism:
/// `mu_j = (1/n) sum_k S_k W_kj`, the sum leaving out `k = j` where the mechanism drops the
/// diagonal (`paper_no_self`, `yuma`). `rows` are the dense rows of `W`, `stake` the stakes
/// (the mask uses stake fractions).
pub fn column_shift<R: AsRef<[f64]>>(mechanism: Mechanism, stake: &[f64], rows: &[R]) -> Vec<f64> {
    assert_eq!(stake.len(), rows.len(), "stake and weights differ in size");
    // The column shift is the rank of the stake fractions (eq. 7): one formula, in `rank`.
    rank_sparse_diag(
        stake,
        rows.iter().map(|r| r.as_ref().iter().copied().enumerate()),
        mechanism.diagonal(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_is_refused() {
        for m in Mechanism::ALL {
            assert_eq!(m.as_str().parse::<Mechanism>(), Ok(m));
            assert_eq!(m.to_string(), m.as_str());
            assert_eq!(Mechanism::from_code(m.code()), Some(m));
        }
        assert_eq!(
            "yuma3".parse::<Mechanism>(),
            Err(Error::UnknownMechanism {
                name: "yuma3".into()
            })
        );
        assert_eq!(Mechanism::from_code(9), None);
    }

    #[test]
    fn column_shift_leaves_out_the_diagonal_where_the_mechanism_does() {
        let rows = vec![vec![1.0, 0.0], vec![0.5, 0.5]];
        let s = [1.0, 1.0];
        assert_eq!(column_shift(Mechanism::Paper, &s, &rows), vec![0.75, 0.25]);
        assert_eq!(
            column_shift(Mechanism::PaperNoSelf, &s, &rows),
            vec![0.25, 0.0]
        );
        assert_eq!(column_shift(Mechanism::Yuma, &s, &rows), vec![0.25, 0.0]);
    }
}
