//! The BitTensor incentive mechanism, as pure functions.
//!
//! Every formula of the paper's sections 2.3-2.5 and 3, in the one reading that
//! `spec/mechanism.md` pins down. The simulator, the ledger and the neurons all call
//! this crate; nothing else in the workspace re-derives these formulas.
//!
//! Modules:
//! - [`matrix`]: the row-major square [`Matrix`] (weights) and the symmetric
//!   [`Hessians`] of the empirical model (upper triangles of `8 x 8` tiles).
//! - [`rank`]: rank `R = (1/n) W^T S` and the block inflation step, generic over a
//!   [`Scalar`] so the ledger runs the same code in fixed point.
//! - [`mechanisms`]: the [`Mechanism`] a ledger runs (`paper`, `paper_no_self`, `yuma`)
//!   and the mask's column shift under each.
//! - [`yuma`]: one epoch of Yuma consensus (`spec/yuma.md`), generic over [`Scalar`].
//! - [`sparse`]: the compressed-row [`Sparse`] matrix Yuma works on.
//! - [`mask`]: column shift `mu`, the competitive logit and the sigmoid mask (eq. 7-8).
//! - [`payoff`]: per-row loss, loss gradient and payoff gradient of the empirical model.
//! - [`simplex`]: Euclidean projection of a row onto the probability simplex.
//! - [`game`]: one simultaneous step of the weight game for all learners, the stopping rule.
//! - [`adaptive`]: sparsity and the adaptive-tau update (Figure 5).
//! - [`stats`]: Pearson and Spearman correlation, the ideal rank.
//!
//! No I/O, no global state; all numbers are `f64` except where a function is generic.
//!
//! # Example
//! ```
//! use bt_mechanism::{Matrix, rank::{rank, inflation_step}};
//!
//! // Two neurons: 0 keeps its whole row, 1 gives half of its row to 0.
//! let w = Matrix::from_rows(&[vec![1.0, 0.0], vec![0.5, 0.5]]).unwrap();
//! let mut stake = vec![1.0, 1.0];
//! let r = rank(&stake, &w);
//! assert_eq!(r, vec![0.75, 0.25]);
//! let minted = inflation_step(&mut stake, &r, 1.0);
//! // Total stake grows by exactly tau * ||R||_1 / ||R||_2.
//! assert!((minted - 1.0 / (0.75f64.powi(2) + 0.25f64.powi(2)).sqrt()).abs() < 1e-12);
//! ```

pub mod adaptive;
pub mod error;
pub mod game;
mod lanes;
pub mod mask;
pub mod matrix;
pub mod mechanisms;
pub mod payoff;
pub mod rank;
pub mod simplex;
pub mod sparse;
pub mod stats;
pub mod yuma;

pub use error::{Error, Result};
pub use game::{Game, GameParams, StepOutcome};
pub use matrix::{Hessians, Matrix};
pub use mechanisms::Mechanism;
pub use rank::Scalar;
pub use sparse::Sparse;
pub use yuma::{YumaOutput, YumaParams};
