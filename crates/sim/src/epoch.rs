//! One epoch of a mechanism on a state read from JSON (`bt sim epoch`).
//!
//! The input:
//! ```json
//! {"stake": [n], "weights": [[n] x n], "bonds": [[n] x n] (optional),
//!  "kappa": 0.5, "bonds_moving_average": 0.9, "bonds_penalty": 1.0, "tau": 1.0}
//! ```
//! (every parameter optional, with these defaults). Under `yuma` the output holds
//! `consensus`, `trust`, `incentive`, `dividends`, `emission` and `bonds`; under `paper` and
//! `paper_no_self`, `rank` and `inflation` (what one block's inflation step adds to each
//! stake, `tau R / ||R||_2`). Weight rows are normalised to sum one first, as the ledger
//! normalises a submitted row (an all-zero row stays zero).
//!
//! [`run_epoch`] is generic over the number type, so the same input runs in `f64` and in the
//! ledger's fixed point (the CLI's `--fixed`).

use bt_mechanism::rank::{Scalar, inflation_step, rank_sparse_diag};
use bt_mechanism::yuma::{self, YumaParams};
use bt_mechanism::{Mechanism, Sparse};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The JSON input of an epoch.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochInput {
    /// Stake `S`, `n` non-negative numbers.
    pub stake: Vec<f64>,
    /// Weights `W`, `n` rows of `n` non-negative numbers.
    pub weights: Vec<Vec<f64>>,
    /// The previous bonds (Yuma only; all zero when absent).
    #[serde(default)]
    pub bonds: Option<Vec<Vec<f64>>>,
    /// Yuma's consensus quantile.
    #[serde(default = "default_kappa")]
    pub kappa: f64,
    /// Yuma's bonds moving average.
    #[serde(default = "default_bma")]
    pub bonds_moving_average: f64,
    /// Yuma's bonds penalty `beta`.
    #[serde(default = "default_beta")]
    pub bonds_penalty: f64,
    /// The paper's inflation per block.
    #[serde(default = "default_tau")]
    pub tau: f64,
}

fn default_kappa() -> f64 {
    YumaParams::DEFAULT.kappa
}
fn default_bma() -> f64 {
    YumaParams::DEFAULT.bonds_moving_average
}
fn default_beta() -> f64 {
    YumaParams::DEFAULT.bonds_penalty
}
fn default_tau() -> f64 {
    1.0
}

/// The result of an epoch, written as JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum EpochOutput {
    /// `paper`, `paper_no_self`.
    Paper {
        /// The mechanism's name.
        mechanism: String,
        /// Rank `R`.
        rank: Vec<f64>,
        /// What one inflation step adds to each stake.
        inflation: Vec<f64>,
    },
    /// `yuma`.
    Yuma {
        /// The mechanism's name.
        mechanism: String,
        /// Consensus `C`.
        consensus: Vec<f64>,
        /// Trust `T`.
        trust: Vec<f64>,
        /// Incentive `I`.
        incentive: Vec<f64>,
        /// Dividends `D`.
        dividends: Vec<f64>,
        /// Emission shares `E`.
        emission: Vec<f64>,
        /// The new bonds `B`, dense.
        bonds: Vec<Vec<f64>>,
    },
}

impl EpochInput {
    /// Parses and validates the JSON text.
    pub fn from_json(text: &str) -> Result<EpochInput> {
        let input: EpochInput = serde_json::from_str(text).map_err(Error::EpochJson)?;
        input.validate()?;
        Ok(input)
    }

    /// Checks shapes (`n` stakes, `n x n` weights and bonds), that every number is finite
    /// and non-negative, and that the parameters are in range.
    pub fn validate(&self) -> Result<()> {
        let n = self.stake.len();
        if n == 0 {
            return Err(Error::EmptyEpoch);
        }
        check_values("stake", 0, &self.stake)?;
        check_matrix("weights", n, &self.weights)?;
        if let Some(b) = &self.bonds {
            check_matrix("bonds", n, b)?;
        }
        YumaParams::new(self.kappa, self.bonds_moving_average, self.bonds_penalty)?;
        if !(self.tau.is_finite() && self.tau >= 0.0) {
            return Err(Error::Mechanism(bt_mechanism::Error::Parameter {
                name: "tau",
                value: self.tau,
                reason: "must be a finite number >= 0",
            }));
        }
        Ok(())
    }
}

fn check_values(what: &'static str, row: usize, xs: &[f64]) -> Result<()> {
    for (col, &value) in xs.iter().enumerate() {
        if !value.is_finite() {
            return Err(Error::EpochNonFinite {
                what,
                row,
                col,
                value,
            });
        }
        if value < 0.0 {
            return Err(Error::EpochNegative {
                what,
                row,
                col,
                value,
            });
        }
    }
    Ok(())
}

fn check_matrix(what: &'static str, n: usize, rows: &[Vec<f64>]) -> Result<()> {
    if rows.len() != n {
        return Err(Error::EpochShape {
            what,
            row: None,
            expected: n,
            got: rows.len(),
        });
    }
    for (i, r) in rows.iter().enumerate() {
        if r.len() != n {
            return Err(Error::EpochShape {
                what,
                row: Some(i),
                expected: n,
                got: r.len(),
            });
        }
        check_values(what, i, r)?;
    }
    Ok(())
}

/// Runs one epoch of `mechanism` on a validated input in the number type `T`: `to` converts
/// each input number (`None`: out of `T`'s range), `from` converts the results back.
pub fn run_epoch<T: Scalar + Send + Sync>(
    mechanism: Mechanism,
    input: &EpochInput,
    to: impl Fn(f64) -> Option<T>,
    from: impl Fn(T) -> f64,
) -> Result<EpochOutput> {
    input.validate()?;
    let conv = |what: &'static str, x: f64| to(x).ok_or(Error::EpochRange { what, value: x });
    let n = input.stake.len();
    let stake = input
        .stake
        .iter()
        .map(|&x| conv("stake", x))
        .collect::<Result<Vec<T>>>()?;
    let matrix = |what: &'static str, rows: &[Vec<f64>]| -> Result<Sparse<T>> {
        let rows = rows
            .iter()
            .map(|r| {
                r.iter()
                    .enumerate()
                    .filter(|(_, x)| **x != 0.0)
                    .map(|(j, &x)| conv(what, x).map(|v| (j, v)))
                    .collect::<Result<Vec<(usize, T)>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Sparse::from_rows(n, rows)?)
    };
    let vec = |v: &[T]| v.iter().map(|&x| from(x)).collect::<Vec<f64>>();
    match mechanism {
        Mechanism::Paper | Mechanism::PaperNoSelf => {
            let w = matrix("weights", &input.weights)?;
            let rows: Vec<Vec<(usize, T)>> = (0..n)
                .map(|i| {
                    let sum = w.row_iter(i).fold(T::zero(), |a, (_, x)| a + x);
                    w.row_iter(i).map(|(j, x)| (j, x / sum)).collect()
                })
                .collect();
            let rank = rank_sparse_diag(&stake, rows, mechanism.diagonal());
            let mut grown = stake.clone();
            inflation_step(&mut grown, &rank, conv("tau", input.tau)?);
            let inflation: Vec<f64> = grown
                .iter()
                .zip(&stake)
                .map(|(&g, &s)| from(g - s))
                .collect();
            Ok(EpochOutput::Paper {
                mechanism: mechanism.to_string(),
                rank: vec(&rank),
                inflation,
            })
        }
        Mechanism::Yuma => {
            let w = matrix("weights", &input.weights)?;
            let b = match &input.bonds {
                Some(b) => matrix("bonds", b)?,
                None => Sparse::zeros(n),
            };
            let params = YumaParams {
                kappa: conv("kappa", input.kappa)?,
                bonds_moving_average: conv("bonds_moving_average", input.bonds_moving_average)?,
                bonds_penalty: conv("bonds_penalty", input.bonds_penalty)?,
            };
            let out = yuma::epoch(&stake, &w, &b, &params);
            Ok(EpochOutput::Yuma {
                mechanism: mechanism.to_string(),
                consensus: vec(&out.consensus),
                trust: vec(&out.trust),
                incentive: vec(&out.incentive),
                dividends: vec(&out.dividends),
                emission: vec(&out.emission),
                bonds: out.bonds.to_dense().iter().map(|r| vec(r)).collect(),
            })
        }
    }
}

/// [`run_epoch`] in `f64`.
pub fn run_epoch_f64(mechanism: Mechanism, input: &EpochInput) -> Result<EpochOutput> {
    run_epoch(mechanism, input, Some, |x| x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JSON input and the check its error must pass.
    type Case = (&'static str, fn(&Error) -> bool);

    fn input(json: &str) -> Result<EpochInput> {
        EpochInput::from_json(json)
    }

    #[test]
    fn defaults_and_a_yuma_epoch() {
        let inp = input(r#"{"stake":[1,1,1],"weights":[[1,0,0],[0,0,2],[0,3,0]]}"#).expect("valid");
        assert_eq!(inp.kappa, 0.5);
        assert_eq!(inp.bonds_moving_average, 0.9);
        match run_epoch_f64(Mechanism::Yuma, &inp).expect("runs") {
            EpochOutput::Yuma {
                emission,
                incentive,
                ..
            } => {
                assert_eq!(incentive[0], 0.0);
                assert!((emission.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            }
            other => panic!("{other:?}"),
        }
        match run_epoch_f64(Mechanism::Paper, &inp).expect("runs") {
            EpochOutput::Paper { rank, .. } => assert!(rank[0] > 0.0, "self weight ranks"),
            other => panic!("{other:?}"),
        }
        match run_epoch_f64(Mechanism::PaperNoSelf, &inp).expect("runs") {
            EpochOutput::Paper {
                rank, inflation, ..
            } => {
                assert_eq!(rank[0], 0.0);
                assert_eq!(inflation[0], 0.0);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn each_bad_input_has_its_error() {
        let cases: &[Case] = &[
            (r#"{"stake":[],"weights":[]}"#, |e| {
                matches!(e, Error::EmptyEpoch)
            }),
            (r#"{"stake":[1,1],"weights":[[0,1]]}"#, |e| {
                matches!(
                    e,
                    Error::EpochShape {
                        what: "weights",
                        row: None,
                        expected: 2,
                        got: 1
                    }
                )
            }),
            (r#"{"stake":[1,1],"weights":[[0,1],[1]]}"#, |e| {
                matches!(
                    e,
                    Error::EpochShape {
                        what: "weights",
                        row: Some(1),
                        expected: 2,
                        got: 1
                    }
                )
            }),
            (
                r#"{"stake":[1,1],"weights":[[0,1],[1,0]],"bonds":[[0,1]]}"#,
                |e| {
                    matches!(
                        e,
                        Error::EpochShape {
                            what: "bonds",
                            row: None,
                            ..
                        }
                    )
                },
            ),
            (r#"{"stake":[1,-1],"weights":[[0,1],[1,0]]}"#, |e| {
                matches!(
                    e,
                    Error::EpochNegative {
                        what: "stake",
                        row: 0,
                        col: 1,
                        ..
                    }
                )
            }),
            (r#"{"stake":[1,1],"weights":[[0,1],[-0.5,0]]}"#, |e| {
                matches!(
                    e,
                    Error::EpochNegative {
                        what: "weights",
                        row: 1,
                        col: 0,
                        ..
                    }
                )
            }),
            (
                r#"{"stake":[1,1],"weights":[[0,1],[1,0]],"bonds":[[0,-1],[0,0]]}"#,
                |e| {
                    matches!(
                        e,
                        Error::EpochNegative {
                            what: "bonds",
                            row: 0,
                            col: 1,
                            ..
                        }
                    )
                },
            ),
            (
                r#"{"stake":[1,1],"weights":[[0,1],[1,0]],"kappa":1.5}"#,
                |e| {
                    matches!(
                        e,
                        Error::Mechanism(bt_mechanism::Error::Parameter { name: "kappa", .. })
                    )
                },
            ),
            (
                r#"{"stake":[1,1],"weights":[[0,1],[1,0]],"bonds_moving_average":-0.1}"#,
                |e| {
                    matches!(
                        e,
                        Error::Mechanism(bt_mechanism::Error::Parameter {
                            name: "bonds_moving_average",
                            ..
                        })
                    )
                },
            ),
            (
                r#"{"stake":[1,1],"weights":[[0,1],[1,0]],"bonds_penalty":2}"#,
                |e| {
                    matches!(
                        e,
                        Error::Mechanism(bt_mechanism::Error::Parameter {
                            name: "bonds_penalty",
                            ..
                        })
                    )
                },
            ),
            (r#"{"stake":[1,1],"weights":[[0,1],[1,0]],"tau":-1}"#, |e| {
                matches!(
                    e,
                    Error::Mechanism(bt_mechanism::Error::Parameter { name: "tau", .. })
                )
            }),
            (
                r#"{"stake":[1,1],"weights":[[0,1],[1,0]],"extra":1}"#,
                |e| matches!(e, Error::EpochJson(_)),
            ),
            (r#"{"stake":[1,1]}"#, |e| matches!(e, Error::EpochJson(_))),
            (r#"{"stake":[1,1e999],"weights":[[0,1],[1,0]]}"#, |e| {
                matches!(e, Error::EpochJson(_))
            }),
        ];
        for (json, want) in cases {
            let err = input(json).expect_err(json);
            assert!(want(&err), "{json}: {err:?}");
        }
        // NaN cannot be written in JSON, but a built input is checked the same way.
        let mut inp = input(r#"{"stake":[1,1],"weights":[[0,1],[1,0]]}"#).expect("valid");
        inp.weights[0][1] = f64::NAN;
        assert!(matches!(
            run_epoch_f64(Mechanism::Yuma, &inp),
            Err(Error::EpochNonFinite {
                what: "weights",
                row: 0,
                col: 1,
                ..
            })
        ));
        // A number outside the target type's range.
        inp.weights[0][1] = 1.0;
        let narrow = run_epoch(Mechanism::Yuma, &inp, |x| (x < 0.5).then_some(x), |x| x);
        assert!(matches!(
            narrow,
            Err(Error::EpochRange { what: "stake", .. })
        ));
    }
}
