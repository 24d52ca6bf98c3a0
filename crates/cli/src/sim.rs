//! `bt sim`: the empirical-model simulator (paper section 3).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use bt_ledger::Fixed;
use bt_mechanism::Mechanism;
use bt_sim::epoch::{EpochInput, run_epoch, run_epoch_f64};
use bt_sim::fig4::{self, Fig4Config};
use bt_sim::fig5::{self, Fig5Config};
use bt_sim::instance::Instance;
use bt_sim::plot;
use bt_sim::run::{DEFAULT_TEMPERATURE, RunConfig, run as run_game};
use clap::{Args, Subcommand};

use crate::progress;

/// Simulator commands.
#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Write a random instance (stake, w0, hessians) to a safetensors file.
    Instance(InstanceArgs),
    /// Run the weight game on an instance to its stopping rule; write the result as JSON.
    Run(RunArgs),
    /// Sweep alpha/tau over several seeds (the paper's Figure 4).
    Fig4(Fig4Args),
    /// Adaptive inflation: tau from 0 toward a sparsity target (the paper's Figure 5).
    Fig5(Fig5Args),
    /// Time a fixed number of steps on an instance and measure the machine's read
    /// bandwidth; prints JSON (used by bench/sim_bench.py).
    Bench(BenchArgs),
    /// One epoch of a mechanism (paper, paper_no_self, yuma) on a JSON state
    /// `{"stake", "weights", "bonds"?, "kappa"?, "bonds_moving_average"?, "bonds_penalty"?,
    /// "tau"?}`; writes the results as JSON.
    Epoch(EpochArgs),
}

/// `bt sim epoch`.
#[derive(Debug, Args)]
pub struct EpochArgs {
    /// The mechanism: paper, paper_no_self or yuma.
    #[arg(long)]
    pub mechanism: Mechanism,
    /// The JSON state.
    #[arg(long)]
    pub input: PathBuf,
    /// Run the ledger's fixed-point arithmetic instead of f64.
    #[arg(long)]
    pub fixed: bool,
    /// Where to write the JSON result (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `bt sim bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Instance file.
    #[arg(long)]
    pub instance: PathBuf,
    /// Steps to time (the stopping rule is off).
    #[arg(long, default_value_t = 2000)]
    pub steps: u64,
    /// Price of one unit of loss.
    #[arg(long, default_value_t = 10.0)]
    pub alpha: f64,
    /// Inflation per block.
    #[arg(long, default_value_t = 1.0)]
    pub tau: f64,
    /// Sigmoid temperature.
    #[arg(long, default_value_t = DEFAULT_TEMPERATURE)]
    pub temperature: f64,
    /// Size of the buffer for the bandwidth measurement, MiB (0 to skip it).
    #[arg(long, default_value_t = 1024)]
    pub bandwidth_mib: usize,
    /// Where to write the JSON (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `bt sim instance`.
#[derive(Debug, Args)]
pub struct InstanceArgs {
    /// Number of learners.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(2..=2000))]
    pub n: u64,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output file.
    #[arg(long)]
    pub out: PathBuf,
}

/// The game's parameters, shared by `run`, `fig4` and `fig5`.
#[derive(Debug, Clone, Args)]
pub struct GameArgs {
    /// Sigmoid temperature T.
    #[arg(long, default_value_t = DEFAULT_TEMPERATURE)]
    pub temperature: f64,
    /// Step size lambda.
    #[arg(long, default_value_t = 0.005)]
    pub lambda: f64,
    /// Stop when max |W_t - W_{t-1}| / lambda < eps.
    #[arg(long, default_value_t = 1e-6)]
    pub eps: f64,
    /// Step cap (default: 1000 n, the paper's; 30000 for fig4).
    #[arg(long)]
    pub max_steps: Option<u64>,
}

impl GameArgs {
    fn config(&self, alpha: f64, tau: f64) -> anyhow::Result<RunConfig> {
        let cfg = RunConfig {
            alpha,
            tau,
            temperature: self.temperature,
            lambda: self.lambda,
            eps: self.eps,
            max_steps: self.max_steps,
        };
        // Validate up front so a bad flag fails before any work.
        cfg.params(2).validate().context("invalid game parameter")?;
        Ok(cfg)
    }
}

/// `bt sim run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Instance file (safetensors: stake [n], w0 [n,n], hessians [n,n,n]).
    #[arg(long)]
    pub instance: PathBuf,
    /// Price of one unit of loss.
    #[arg(long, default_value_t = 100.0)]
    pub alpha: f64,
    /// Inflation per block.
    #[arg(long, default_value_t = 1.0)]
    pub tau: f64,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub game: GameArgs,
    /// Where to write the JSON result (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `bt sim fig4`.
#[derive(Debug, Args)]
pub struct Fig4Args {
    /// Learners per instance.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(2..=2000))]
    pub n: u64,
    /// Number of seeds (instances) per ratio.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    pub first_seed: u64,
    /// Comma-separated alpha/tau values (default: 0.1,1,10,25,50,100,1000).
    #[arg(long, value_delimiter = ',')]
    pub ratios: Option<Vec<f64>>,
    /// Inflation per block (alpha = ratio * tau).
    #[arg(long, default_value_t = 1.0)]
    pub tau: f64,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub game: GameArgs,
    /// Output directory for CSV and figures.
    #[arg(long, default_value = "out/fig4")]
    pub out: PathBuf,
}

/// `bt sim fig5`.
#[derive(Debug, Args)]
pub struct Fig5Args {
    /// Learners.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(2..=2000))]
    pub n: u64,
    /// Seed of the instance.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Price of one unit of loss.
    #[arg(long, default_value_t = 1.0)]
    pub alpha: f64,
    /// Sparsity target.
    #[arg(long, default_value_t = 1.0)]
    pub target: f64,
    /// Adaptive-tau gain eta.
    #[arg(long, default_value_t = fig5::DEFAULT_ETA)]
    pub eta: f64,
    /// Steps to run.
    #[arg(long, default_value_t = 60_000)]
    pub steps: u64,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub game: GameArgs,
    /// Output directory for CSV and figures.
    #[arg(long, default_value = "out/fig5")]
    pub out: PathBuf,
}

/// Runs a simulator command.
pub fn run(cmd: SimCommand) -> anyhow::Result<()> {
    match cmd {
        SimCommand::Instance(a) => instance(&a),
        SimCommand::Run(a) => run_one(&a),
        SimCommand::Fig4(a) => run_fig4(&a),
        SimCommand::Fig5(a) => run_fig5(&a),
        SimCommand::Bench(a) => bench(&a),
        SimCommand::Epoch(a) => epoch(&a),
    }
}

fn epoch(a: &EpochArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&a.input)
        .with_context(|| format!("reading {}", a.input.display()))?;
    let input =
        EpochInput::from_json(&text).with_context(|| format!("in {}", a.input.display()))?;
    let out = if a.fixed {
        run_epoch(a.mechanism, &input, Fixed::from_f64, Fixed::to_f64)?
    } else {
        run_epoch_f64(a.mechanism, &input)?
    };
    let json = serde_json::to_string_pretty(&out)?;
    match &a.out {
        Some(path) => write_file(path, json.as_bytes())?,
        None => println!("{json}"),
    }
    Ok(())
}

fn instance(a: &InstanceArgs) -> anyhow::Result<()> {
    let inst = Instance::random(a.n as usize, a.seed)?;
    inst.save(&a.out)
        .with_context(|| format!("writing {}", a.out.display()))?;
    eprintln!("wrote {} (n = {}, seed = {})", a.out.display(), a.n, a.seed);
    Ok(())
}

fn run_one(a: &RunArgs) -> anyhow::Result<()> {
    let cfg = a.game.config(a.alpha, a.tau)?;
    let inst = Instance::load(&a.instance)
        .with_context(|| format!("loading instance {}", a.instance.display()))?;
    let max = cfg.params(inst.n()).max_steps;
    let pb = progress::bar(max, "steps");
    let result = run_game(&inst, &cfg, |s| {
        if s.step % 256 == 0 {
            pb.set_position(s.step);
        }
    })?;
    pb.finish_and_clear();
    eprintln!(
        "n = {}, alpha/tau = {}: {} steps ({}), pearson {}, spearman {}, mean diagonal {:.4}, {:.2} s",
        result.n,
        result.ratio,
        result.steps,
        if result.converged {
            "converged"
        } else {
            "step cap reached"
        },
        fmt_opt(result.pearson),
        fmt_opt(result.spearman),
        result.mean_diagonal,
        result.seconds
    );
    let json = serde_json::to_string_pretty(&result)?;
    match &a.out {
        Some(path) => write_file(path, json.as_bytes())?,
        None => println!("{json}"),
    }
    Ok(())
}

fn run_fig4(a: &Fig4Args) -> anyhow::Result<()> {
    let mut base = a.game.config(a.tau, a.tau)?;
    base.max_steps = Some(base.max_steps.unwrap_or(fig4::DEFAULT_MAX_STEPS));
    let ratios = a.ratios.clone().unwrap_or_else(fig4::default_ratios);
    if ratios.iter().any(|r| !(r.is_finite() && *r > 0.0)) {
        bail!("--ratios: every ratio must be a finite number > 0, got {ratios:?}");
    }
    let config = Fig4Config {
        n: a.n as usize,
        seeds: a.seeds,
        first_seed: a.first_seed,
        ratios,
        base,
    };
    create_dir(&a.out)?;
    let total = config.ratios.len() as u64 * config.seeds;
    eprintln!(
        "fig4: n = {}, {} ratios x {} seeds = {total} games, T = {}, lambda = {}, eps = {}, step cap {}",
        config.n,
        config.ratios.len(),
        config.seeds,
        base.temperature,
        base.lambda,
        base.eps,
        base.max_steps.unwrap_or(0)
    );
    let pb = progress::bar(total, "games");
    let start = std::time::Instant::now();
    let out = fig4::sweep(&config, |_| pb.inc(1))?;
    pb.finish_and_clear();
    let wall = start.elapsed().as_secs_f64();
    fig4::write_csv(&out, &a.out)?;
    let mut files = vec![a.out.join("fig4_runs.csv"), a.out.join("fig4_summary.csv")];
    files.extend(plot::fig4_correlation(&out, &a.out)?);
    files.extend(plot::fig4_scatter(&out, &a.out)?);
    println!(
        "{:>8} {:>5} {:>16} {:>16} {:>9} {:>10} {:>9}",
        "a/tau", "runs", "pearson", "spearman", "diag(W)", "steps", "converged"
    );
    for s in &out.summaries {
        println!(
            "{:>8} {:>5} {:>16} {:>16} {:>9.4} {:>10.0} {:>6}/{:<2}",
            s.ratio,
            s.runs,
            mean_pm(s.pearson_mean, s.pearson_std, s.defined, s.runs),
            mean_pm(s.spearman_mean, s.spearman_std, s.defined, s.runs),
            s.diagonal_mean,
            s.steps_mean,
            s.converged,
            s.runs
        );
    }
    println!("{total} games in {wall:.1} s");
    for f in files {
        println!("wrote {}", f.display());
    }
    Ok(())
}

fn run_fig5(a: &Fig5Args) -> anyhow::Result<()> {
    let base = a.game.config(a.alpha, 0.0)?;
    let inst = Instance::random(a.n as usize, a.seed)?;
    let config = Fig5Config {
        base,
        target: a.target,
        eta: a.eta,
        steps: a.steps,
        record_every: (a.steps / 2000).max(1),
    };
    create_dir(&a.out)?;
    let pb = progress::bar(a.steps, "steps");
    let out = fig5::adaptive(&inst, &config, |s| {
        if s.step % 256 == 0 {
            pb.set_position(s.step);
        }
    })?;
    pb.finish_and_clear();
    fig5::write_csv(&out, &a.out)?;
    let mut files = vec![a.out.join("fig5.csv")];
    files.extend(plot::fig5(&out, a.target, &a.out)?);
    let json = a.out.join("fig5.json");
    write_file(&json, serde_json::to_string_pretty(&out)?.as_bytes())?;
    files.push(json);
    println!(
        "adaptive tau (n = {}, alpha = {}, target = {}, eta = {}): {} steps in {:.1} s",
        a.n, a.alpha, a.target, a.eta, a.steps, out.seconds
    );
    println!(
        "final sparsity {:.4} (last-quarter mean {:.4}), final tau {:.4} (last-quarter mean {:.4})",
        out.sparsity, out.sparsity_tail_mean, out.tau, out.tau_tail_mean
    );
    println!(
        "final correlation with the ideal rank: pearson {}, spearman {}",
        fmt_opt(out.pearson),
        fmt_opt(out.spearman)
    );
    for f in files {
        println!("wrote {}", f.display());
    }
    Ok(())
}

fn bench(a: &BenchArgs) -> anyhow::Result<()> {
    let game = GameArgs {
        temperature: a.temperature,
        lambda: 0.005,
        eps: 0.0,
        max_steps: None,
    };
    let cfg = game.config(a.alpha, a.tau)?;
    let inst = Instance::load(&a.instance)
        .with_context(|| format!("loading instance {}", a.instance.display()))?;
    let solver = bt_sim::bench::time_solver(&inst, &cfg, a.steps)?;
    let bandwidth =
        (a.bandwidth_mib > 0).then(|| bt_sim::bench::read_bandwidth(a.bandwidth_mib << 20, 5));
    let json = serde_json::json!({
        "solver": solver,
        "read_bandwidth_bytes_per_second": bandwidth,
        "alpha": cfg.alpha,
        "tau": cfg.tau,
        "temperature": cfg.temperature,
        "lambda": cfg.lambda,
        "threads": rayon_threads(),
    });
    let text = serde_json::to_string(&json)?;
    match &a.out {
        Some(path) => write_file(path, text.as_bytes())?,
        None => println!("{text}"),
    }
    Ok(())
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn mean_pm(mean: f64, std: f64, defined: usize, runs: usize) -> String {
    if defined == 0 {
        return "flat".into();
    }
    let s = format!("{mean:.3} +- {std:.3}");
    if defined < runs { format!("{s}*") } else { s }
}

fn fmt_opt(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a (flat rank)".into(), |v| format!("{v:.4}"))
}

fn create_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut f =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}
