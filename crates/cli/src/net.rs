//! `bt net up` and `bt net tournament`. `bt net up`: a whole network on one machine: by default in lockstep (peers called in
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
use bt_net::tournament::TournamentConfig;
use bt_net::up::{
    DEFAULT_BLOCKS_PER_STEP, ModelPreset, RoleKind, Transport, UpConfig, up, up_seeds,
};
use bt_neuron::learner::BackwardUpdate;
use bt_neuron::router::{DataWeight, PeerAdapter, RouterConfig};
use clap::{Args, Subcommand};

/// `bt net ...`.
#[derive(Debug, Subcommand)]
pub enum NetCommand {
    /// Start a ledger node and neurons on loopback, train them together, measure, report.
    Up(UpArgs),
    /// Each mechanism, with the competitive mask on and off, against each adversary, over
    /// several seeds (lockstep): who takes more of what is minted than the value it gives.
    Tournament(TournamentArgs),
}

/// `bt net up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Neurons (3 to 256 in lockstep, 3 to 16 over grpc): the first ones honest, then one
    /// that answers noise, then the adversary (by default one that weighs only itself).
    #[arg(long, default_value_t = 6)]
    pub neurons: usize,
    /// The adversary: selfish, cabal (2 identities), copier, sybil (3), noise (the noise
    /// neuron itself), freerider or lazy; all but selfish and noise in lockstep only.
    #[arg(long, default_value = "selfish")]
    pub adversary: String,
    /// The competitive mask: on (axons serve callers by the weight they give) or off.
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    pub mask: String,
    /// Each learner's per-peer adapter (docs/neuron.md): on (peers' answers pass through a
    /// learned map that starts at zero), open (a learned map that starts as the identity) or
    /// off (added raw).
    #[arg(long, default_value = "on")]
    pub peer_adapter: PeerAdapter,
    /// Weight of each learner's remote-only objective (the head's loss on its peers' answers
    /// alone, `router.w_remote`): a number (0 leaves it out) or auto (by the size of each
    /// learner's text: 4096 / its training tokens, at most 1).
    #[arg(long, default_value = "auto")]
    pub remote_loss: DataWeight,
    /// Weight of each learner's local-only objective (the head's loss on its own trunk alone,
    /// `router.w_local`): a number (0 leaves it out) or auto (by the size of each learner's
    /// text: 1 - 4096 / its training tokens, at least 0).
    #[arg(long, default_value = "auto")]
    pub local_loss: DataWeight,
    /// Each learner's AdamW weight decay (`optim.weight_decay`; its twin alone takes the
    /// same): a number or auto (by the size of each learner's text: the square of 4096 / its
    /// training tokens, at most 1).
    #[arg(long, default_value = "auto")]
    pub weight_decay: DataWeight,
    /// Whether each learner rests a peer from routing while that peer's answers do not lower
    /// its loss (`router.rest_unhelpful`): on or off.
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    pub rest_unhelpful: String,
    /// How learners apply their peers' Backward gradients: with-own-step (added to their next
    /// step's gradient) or own-optimizer (a second AdamW at once).
    #[arg(long, default_value = "with-own-step")]
    pub backward: BackwardUpdate,
    /// How the neurons talk: `lockstep` (in process, one global step at a time, the ledger on
    /// a logical clock; the same seed gives the same report) or `grpc` (axons, dendrites and a
    /// ledger node on loopback sockets, the wall clock).
    #[arg(long, default_value = "lockstep", value_parser = ["lockstep", "grpc"])]
    pub transport: String,
    /// Ledger blocks per global step in lockstep (a default grpc run makes about 7).
    #[arg(long, default_value_t = DEFAULT_BLOCKS_PER_STEP)]
    pub blocks_per_step: u64,
    /// Ledger validators with `--transport grpc`: 1 is a single node; 3 (or more) replicate
    /// the ledger on openraft, each neuron talking to one of them (and to another when it is
    /// lost).
    #[arg(long, default_value_t = 1)]
    pub validators: usize,
    /// Keep only the first N training bytes of each neuron's text (smaller private shares;
    /// default: all of it, 108 000 bytes of each bundled text).
    #[arg(long)]
    pub text_bytes: Option<usize>,
    /// Held-out batches (16 x 64 bytes each) on which every loss and removal cost is measured;
    /// more give tighter figures and slower epochs (at most what each neuron's held-out tenth
    /// holds: 11 for the bundled texts).
    #[arg(long, default_value_t = UpConfig::default().eval_batches)]
    pub eval_batches: usize,
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
            adversary: RoleKind::adversary(&self.adversary)?,
            mask: self.mask == "on",
            backward: self.backward,
            weight_decay: self.weight_decay,
            router: RouterConfig {
                w_remote: self.remote_loss,
                w_local: self.local_loss,
                rest_unhelpful: self.rest_unhelpful == "on",
                ..RouterConfig::default()
            }
            .with_peer_adapter(self.peer_adapter),
            validators: self.validators,
            text_bytes: self.text_bytes,
            eval_batches: self.eval_batches,
            ..UpConfig::default()
        })
    }
}

/// `bt net tournament`.
#[derive(Debug, Args)]
pub struct TournamentArgs {
    /// The mechanisms, comma-separated: paper, paper_no_self, yuma.
    #[arg(
        long,
        default_value = "paper,paper_no_self,yuma",
        value_delimiter = ','
    )]
    pub mechanisms: Vec<String>,
    /// The competitive mask settings, comma-separated: on, off.
    #[arg(long, default_value = "on,off", value_delimiter = ',', value_parser = ["on", "off"])]
    pub masks: Vec<String>,
    /// The adversaries, comma-separated: selfish, cabal, copier, sybil, noise, freerider, lazy.
    #[arg(
        long,
        default_value = "selfish,cabal,copier,sybil,noise,freerider,lazy",
        value_delimiter = ','
    )]
    pub adversaries: Vec<String>,
    /// Seeds per setting: `seed .. seed + K`.
    #[arg(long, default_value_t = 3)]
    pub seeds: usize,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Neurons before the adversary's extra identities: `neurons - 2` honest, one noise, the
    /// adversary.
    #[arg(long, default_value_t = 6)]
    pub neurons: usize,
    /// Training steps per run.
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// Steps per epoch (weights set; the held-out loss is measured at the end of the run).
    #[arg(long, default_value_t = 10)]
    pub epoch_steps: usize,
    /// The learners' size: tiny, small or base.
    #[arg(long, default_value = "tiny", value_parser = ["tiny", "small", "base"])]
    pub model: String,
    /// Where tournament.json, tournament.md, the plot and every run's report.json go.
    #[arg(long, default_value = "out/tournament")]
    pub out: PathBuf,
    /// Runs at a time (each is already parallel over its neurons; on 2 cores one at a time
    /// was the fastest).
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Keep the runs an earlier tournament with the same settings finished in `--out`, and
    /// run only the rest (a tournament cut short by Ctrl-C goes on where it stopped).
    #[arg(long)]
    pub resume: bool,
}

impl TournamentArgs {
    /// The tournament's settings.
    pub fn config(&self) -> Result<TournamentConfig> {
        let d = TournamentConfig::default();
        let mechanisms = self
            .mechanisms
            .iter()
            .map(|m| {
                m.parse().map_err(|_| {
                    anyhow::anyhow!(
                        "--mechanisms: each must be one of paper, paper_no_self, yuma; got {m:?}"
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let adversaries = self
            .adversaries
            .iter()
            .map(|a| RoleKind::adversary(a).map_err(anyhow::Error::from))
            .collect::<Result<Vec<_>>>()?;
        Ok(TournamentConfig {
            network: UpConfig {
                neurons: self.neurons,
                steps: self.steps,
                epoch_steps: self.epoch_steps,
                seed: self.seed,
                model: ModelPreset::parse(&self.model)?.config(),
                ..d.network
            },
            mechanisms,
            masks: self.masks.iter().map(|m| m == "on").collect(),
            adversaries,
            seeds: self.seeds,
            out: self.out.clone(),
            progress: true,
            jobs: self.jobs,
            resume: self.resume,
        })
    }
}

/// Sets `stop` at the first Ctrl-C (saying `what`), and quits at the second.
fn on_ctrl_c(stop: Arc<AtomicBool>, what: &'static str) {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nstopping: {what} (Ctrl-C again to quit at once)");
            stop.store(true, Ordering::SeqCst);
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
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
                on_ctrl_c(
                    stop.clone(),
                    "finishing the current steps, measuring and writing the report",
                );
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
        NetCommand::Tournament(a) => {
            let cfg = a.config()?;
            cfg.validate()?;
            let rt = crate::chain::runtime()?;
            let t = rt.block_on(async move {
                let stop = Arc::new(AtomicBool::new(false));
                on_ctrl_c(
                    stop.clone(),
                    "ending the runs in flight and writing what finished",
                );
                let c = cfg.clone();
                let t = tokio::task::spawn_blocking(move || bt_net::tournament::run(&c, &stop))
                    .await
                    .context("the tournament's thread")??;
                anyhow::Ok((t, cfg))
            })?;
            let (t, cfg) = t;
            let md = bt_net::tournament::write(&t, &cfg.out)
                .with_context(|| format!("writing the tournament into {}", cfg.out.display()))?;
            println!("{md}");
            println!(
                "tournament written to {}",
                cfg.out.join("tournament.md").display()
            );
            Ok(())
        }
    }
}
