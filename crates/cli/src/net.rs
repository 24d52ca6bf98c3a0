//! `bt net up`: a whole network on one machine: by default in lockstep (peers called in
//! process, the ledger on a logical clock, the same seed gives the same report), or with
//! `--transport grpc` an embedded ledger node and N neurons on loopback, in one process (four honest learners on different bundled texts, one that answers
//! noise, one that puts all its weight on itself), the measured ideal rank, a report with
//! plots, and optionally a live dashboard. The work is [`bt_net`]'s; this module parses the
//! arguments, handles Ctrl-C and prints where the report went.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use bt_net::local::DEFAULT_TEMPO;
use bt_net::up::{DEFAULT_BLOCKS_PER_STEP, ModelPreset, Transport, UpConfig, up, up_seeds};
use clap::{Args, Subcommand};

/// `bt net ...`.
#[derive(Debug, Subcommand)]
pub enum NetCommand {
    /// Start a ledger node and neurons on loopback, train them together, measure, report.
    Up(UpArgs),
}

/// `bt net up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Neurons (3 to 256 in lockstep, 3 to 16 over grpc): the first ones honest, then one
    /// that answers noise, then one that weighs only itself.
    #[arg(long, default_value_t = 6)]
    pub neurons: usize,
    /// How the neurons talk: `lockstep` (in process, one global step at a time, the ledger on
    /// a logical clock; the same seed gives the same report) or `grpc` (axons, dendrites and a
    /// ledger node on loopback sockets, the wall clock).
    #[arg(long, default_value = "lockstep", value_parser = ["lockstep", "grpc"])]
    pub transport: String,
    /// Ledger blocks per global step in lockstep (a default grpc run makes about 7).
    #[arg(long, default_value_t = DEFAULT_BLOCKS_PER_STEP)]
    pub blocks_per_step: u64,
    /// Run seeds `seed .. seed + K`, each report in OUT/seed-N, and write a summary (mean and
    /// standard deviation of every correlation, each role's places and gain over alone).
    #[arg(long, default_value_t = 1)]
    pub seeds: usize,
    /// The learners' size: tiny, small or base.
    #[arg(long, default_value = "tiny", value_parser = ["tiny", "small", "base"])]
    pub model: String,
    /// Training steps per neuron.
    #[arg(long, default_value_t = 300)]
    pub steps: usize,
    /// Stop training after this many minutes (then measure and report), whatever `--steps`.
    #[arg(long)]
    pub minutes: Option<f64>,
    /// Seed of every neuron (each adds its index).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where the ledger's data, the report and the plots go.
    #[arg(long, default_value = "out/net")]
    pub out: PathBuf,
    /// Serve a live dashboard on this loopback address (e.g. 127.0.0.1:8080).
    #[arg(long, num_args = 0..=1, default_missing_value = "127.0.0.1:8080")]
    pub dashboard: Option<SocketAddr>,
    /// Steps per epoch (weights set, held-out loss measured).
    #[arg(long, default_value_t = 25)]
    pub epoch_steps: usize,
    /// Measure removal costs every this many epochs as well as at the end (0: only at the end).
    #[arg(long, default_value_t = 4)]
    pub measure_every: usize,
    /// The ledger's mechanism: paper, paper_no_self or yuma (docs/mechanisms.md).
    #[arg(long, default_value = "paper")]
    pub mechanism: String,
    /// Blocks per Yuma epoch (under `--mechanism yuma`).
    #[arg(long, default_value_t = DEFAULT_TEMPO)]
    pub tempo: u64,
}

impl UpArgs {
    /// The network's settings.
    pub fn config(&self) -> Result<UpConfig> {
        let transport = match self.transport.as_str() {
            "grpc" => Transport::Grpc,
            _ => Transport::Lockstep,
        };
        Ok(UpConfig {
            neurons: self.neurons,
            transport,
            blocks_per_step: self.blocks_per_step,
            model: ModelPreset::parse(&self.model)?.config(),
            steps: self.steps,
            minutes: self.minutes,
            seed: self.seed,
            out: self.out.clone(),
            dashboard: self.dashboard,
            epoch_steps: self.epoch_steps,
            measure_every: self.measure_every,
            mechanism: self.mechanism.parse().map_err(|_| {
                anyhow::anyhow!(
                    "--mechanism must be one of paper, paper_no_self, yuma; got {:?}",
                    self.mechanism
                )
            })?,
            tempo: self.tempo,
            ..UpConfig::default()
        })
    }
}

/// Runs `bt net`.
pub fn run(cmd: NetCommand) -> Result<()> {
    match cmd {
        NetCommand::Up(a) => {
            let cfg = a.config()?;
            cfg.validate()?;
            if a.seeds < 1 {
                anyhow::bail!("--seeds must be at least 1, got {}", a.seeds);
            }
            let seeds = a.seeds;
            let rt = crate::chain::runtime()?;
            let path = rt.block_on(async move {
                let stop = Arc::new(AtomicBool::new(false));
                let flag = stop.clone();
                tokio::spawn(async move {
                    if tokio::signal::ctrl_c().await.is_ok() {
                        eprintln!(
                            "\nstopping: finishing the current steps, measuring and writing the report (Ctrl-C again to quit at once)"
                        );
                        flag.store(true, Ordering::SeqCst);
                        if tokio::signal::ctrl_c().await.is_ok() {
                            std::process::exit(130);
                        }
                    }
                });
                let live = bt_net::live::new_live();
                if seeds > 1 {
                    let (_, md) = up_seeds(&cfg, seeds, live, stop).await?;
                    println!("{md}");
                    return anyhow::Ok(cfg.out.join("summary.md"));
                }
                let net = up(&cfg, live, stop).await?;
                let (path, text) = bt_net::report::write(&net, &cfg.out)
                    .with_context(|| format!("writing the report into {}", cfg.out.display()))?;
                println!("{text}");
                anyhow::Ok(path)
            })?;
            println!("report written to {}", path.display());
            Ok(())
        }
    }
}
