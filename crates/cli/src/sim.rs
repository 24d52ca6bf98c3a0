//! `bt sim`: the empirical-model simulator.

use clap::Subcommand;

/// Simulator commands.
#[derive(Debug, Subcommand)]
pub enum SimCommand {}

/// Runs a simulator command.
pub fn run(cmd: SimCommand) -> anyhow::Result<()> {
    match cmd {}
}
