//! The `bt` command line, as a library: every subcommand is a function that tests can call.
//!
//! - [`sim`]: the empirical-model simulator (`bt sim instance | run | fig4 | fig5`).
//! - [`chain`]: the ledger node (`bt chain run | verify`) and its clients (`bt transfer`,
//!   `bt stake add|remove`, `bt register`, `bt weights set`, `bt metagraph`).
//! - [`net`]: a ledger node and neurons on loopback in one process (`bt net up`).
//! - [`neuron`]: one learner against a ledger node (`bt neuron run --config FILE`).
//! - [`wallet`]: coldkeys and hotkeys on disk (`bt wallet new | new-hotkey | list | show | regen
//!   | import`), including wallets written by the Python bittensor.
//! - [`Error`]: the refusals the command line makes itself (an amount beyond the balance).
//!
//! The binary in `bin/bt` only calls [`configure_candle_threads`] and [`main`], which parses
//! the arguments, runs the command, prints any error with its causes ([`error_report`]) and
//! maps it to a non-zero exit code.
//!
//! # Example
//! ```
//! use clap::Parser;
//! let cli = bt_cli::Cli::try_parse_from(["bt", "sim", "instance", "--n", "4", "--out", "x.safetensors"]);
//! assert!(cli.is_ok());
//! ```

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod chain;
pub mod error;
pub mod net;
pub mod neuron;
pub mod progress;
pub mod sim;
pub mod wallet;

pub use bt_neuron::ops::configure_candle_threads;
pub use error::Error;

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
    /// Wallets: an encrypted coldkey (holds stake) and hotkeys (neuron identities).
    Wallet(wallet::WalletArgs),
    /// The ledger node: run it, verify its data.
    #[command(subcommand)]
    Chain(chain::ChainCommand),
    /// Send free balance to another account (signed by the coldkey).
    Transfer(chain::TransferArgs),
    /// Stake on a neuron or take stake back (signed by the coldkey).
    #[command(subcommand)]
    Stake(chain::StakeCommand),
    /// Register the hotkey as a neuron (signed by the hotkey).
    Register(chain::RegisterArgs),
    /// Set the neuron's weights (signed by the hotkey).
    #[command(subcommand)]
    Weights(chain::WeightsCommand),
    /// Show the neurons: stake, rank, endpoints, weights.
    Metagraph(chain::MetagraphArgs),
    /// A learner that trains with its peers and sets weights on the ledger.
    #[command(subcommand)]
    Neuron(neuron::NeuronCommand),
    /// A whole network on this machine: a ledger node and neurons on loopback.
    #[command(subcommand)]
    Net(net::NetCommand),
}

/// Runs a parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Sim(cmd) => sim::run(cmd),
        Command::Wallet(args) => wallet::run(args),
        Command::Chain(cmd) => chain::run(cmd),
        Command::Transfer(args) => chain::transfer(args),
        Command::Stake(cmd) => chain::stake(cmd),
        Command::Register(args) => chain::register(args),
        Command::Weights(cmd) => chain::weights(cmd),
        Command::Metagraph(args) => chain::metagraph(args),
        Command::Neuron(cmd) => neuron::run(cmd),
        Command::Net(cmd) => net::run(cmd),
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
            eprintln!("error: {}", error_report(&e));
            ExitCode::from(1)
        }
    }
}

/// An error and its causes on one line, `message: cause: cause`, as `bt` prints them. A
/// cause whose text the line already ends with is left out: some libraries put their
/// source's text into their own message, and the same text twice helps nobody.
pub fn error_report(e: &anyhow::Error) -> String {
    join_causes(e.chain())
}

/// [`error_report`] for any error.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    join_causes(std::iter::successors(Some(e), |e| e.source()))
}

fn join_causes<'a>(chain: impl Iterator<Item = &'a (dyn std::error::Error + 'static)>) -> String {
    let mut out = String::new();
    for e in chain {
        let msg = e.to_string();
        let msg = msg.trim();
        if msg.is_empty() || out.ends_with(msg) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(msg);
    }
    out
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{msg}")]
    struct E {
        msg: &'static str,
        #[source]
        source: Option<Box<E>>,
    }

    fn chain(msgs: &[&'static str]) -> E {
        msgs.iter()
            .rev()
            .fold(None, |source, &msg| {
                Some(E {
                    msg,
                    source: source.map(Box::new),
                })
            })
            .expect("at least one message")
    }

    #[test]
    fn repeated_causes_are_printed_once() {
        let e = chain(&[
            "transport error",
            "transport error",
            "tcp connect error",
            "tcp connect error",
            "Connection refused (os error 111)",
        ]);
        assert_eq!(
            error_chain(&e),
            "transport error: tcp connect error: Connection refused (os error 111)"
        );
        // A message that already quotes its source.
        let e = chain(&[
            "open x: No such file or directory (os error 2)",
            "No such file or directory (os error 2)",
        ]);
        assert_eq!(
            error_chain(&e),
            "open x: No such file or directory (os error 2)"
        );
        let e = anyhow::Error::new(chain(&["database", "lock held"])).context("verifying d");
        assert_eq!(error_report(&e), "verifying d: database: lock held");
    }
}
