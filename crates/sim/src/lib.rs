//! The empirical-model simulator: the paper's section 3 experiments.
//!
//! - [`instance`]: random instances (section 3.3) and their safetensors files, validated on load.
//! - [`run`]: one weight game to its stopping rule, with the competitive and ideal ranks and
//!   their correlations.
//! - [`fig4`]: the sweep over `alpha / tau` (Figure 4); [`fig5`]: adaptive inflation (Figure 5).
//! - [`epoch`]: one epoch of a mechanism (`paper`, `paper_no_self`, `yuma`) on a JSON state.
//! - [`plot`]: the figures (PNG and SVG) with plotters.
//!
//! All formulas come from `bt-mechanism`; this crate only sets up, runs and reports.
//!
//! # Example
//! ```
//! use bt_sim::{instance::Instance, run::{run, RunConfig}};
//!
//! let inst = Instance::random(8, 42).unwrap();
//! let cfg = RunConfig { alpha: 0.0, max_steps: Some(20_000), ..RunConfig::default() };
//! let result = run(&inst, &cfg, |_| {}).unwrap();
//! // With no price on loss every learner keeps its whole row.
//! assert!(result.converged);
//! assert!((result.mean_diagonal - 1.0).abs() < 1e-9);
//! ```

pub mod bench;
pub mod epoch;
pub mod error;
pub mod fig4;
pub mod fig5;
pub mod instance;
pub mod plot;
pub mod run;

pub use error::{Error, Result};
