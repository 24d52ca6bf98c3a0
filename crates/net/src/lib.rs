//! A whole BitTensor network on one machine, on loopback: an embedded ledger node and
//! neurons in one process (`bt net up`), the ideal rank of paper eq. 2 measured on the real
//! learners, a Markdown report with plots, and a live dashboard.
//!
//! - [`live`]: what the network looks like now (ledger height, stake, rank, `W`, losses),
//!   shared between the trainers, the ledger follower and the dashboard.
//! - [`up`]: the network's settings and the grpc run (sockets, a ledger node, the wall
//!   clock); [`lockstep`]: the default run, in process on a logical clock, repeatable.
//! - [`report`]: `report.md`, `report.json` and the many-seed summary; [`plots`]: its figures.
//! - [`local`]: a ledger node on loopback and the local keys (`//Alice//name`).
//! - [`dashboard`]: an HTTP page on 127.0.0.1 that draws [`live::LiveState`] and updates itself.

pub mod dashboard;
pub mod error;
pub mod live;
pub mod local;
pub mod lockstep;
pub mod plots;
pub mod progress;
pub mod report;
pub mod tournament;
pub mod up;

pub use error::{Error, Result};
