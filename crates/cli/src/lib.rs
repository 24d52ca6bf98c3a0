//! The `bt` command line, as a library: every subcommand is a function that tests can call.
//!
//! - [`sim`]: the empirical-model simulator (`bt sim instance | run | fig4 | fig5`).
//!
//! The binary in `bin/bt` only calls [`main`], which parses the arguments, runs the
//! command, prints any error with its causes and maps it to a non-zero exit code.
//!
//! # Example
//! ```
//! use clap::Parser;
//! let cli = bt_cli::Cli::try_parse_from(["bt", "sim", "instance", "--n", "4", "--out", "x.safetensors"]);
//! assert!(cli.is_ok());
//! ```

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod progress;
pub mod sim;

/// BitTensor: learners that rank each other on a ledger of stake and weights.
#[derive(Debug, Parser)]
#[command(name = "bt", version, about, propagate_version = true)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The empirical-model simulator (paper section 3).
    #[command(subcommand)]
    Sim(sim::SimCommand),
}

/// Runs a parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Sim(cmd) => sim::run(cmd),
    }
}

/// Parses `std::env::args`, runs, prints errors, returns the exit code: 0 on success, 1 on
/// a failed command, 2 on bad arguments (clap's convention).
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    init_tracing();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
