//! `bt neuron run --config FILE`: one neuron against a ledger node.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bt_keys::Keypair;
use bt_keys::wallet::Wallet;
use bt_neuron::config::KeysConfig;
use bt_neuron::{Neuron, NeuronConfig};
use clap::{Args, Subcommand};

use crate::wallet::{Secrets, Terminal};

/// `bt neuron ...`.
#[derive(Debug, Subcommand)]
pub enum NeuronCommand {
    /// Run a neuron: register if needed, serve its axon, train with its peers, set weights.
    Run(RunArgs),
}

/// `bt neuron run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The neuron's TOML configuration (see `docs/neuron.md`).
    #[arg(long)]
    pub config: PathBuf,
    /// Override `train.steps`: the total, counting the steps before a checkpoint it resumes
    /// from.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Print a one-line summary every this many steps (besides each epoch's).
    #[arg(long, default_value_t = 50)]
    pub log_every: usize,
}

/// The hotkey and (when staking) the coldkey the configuration names.
pub fn keys(k: &KeysConfig, need_coldkey: bool) -> Result<(Keypair, Option<Keypair>)> {
    let open = || -> Result<Wallet> {
        let name = k
            .wallet
            .as_deref()
            .context("[keys] names neither hotkey_uri nor wallet")?;
        let dir = match &k.wallet_dir {
            Some(d) => d.clone(),
            None => bt_keys::wallet::default_wallet_dir()
                .context("no home directory; set keys.wallet_dir")?,
        };
        Wallet::open(&dir, name)
            .with_context(|| format!("opening wallet {name:?} in {}", dir.display()))
    };
    let hotkey = match &k.hotkey_uri {
        Some(uri) => Keypair::from_uri(uri).context("reading keys.hotkey_uri")?,
        None => {
            let name = k.hotkey.as_deref().unwrap_or("default");
            open()?
                .hotkey(name)
                .with_context(|| format!("reading hotkey {name:?}"))?
        }
    };
    let coldkey = match (&k.coldkey_uri, need_coldkey) {
        (Some(uri), _) => Some(Keypair::from_uri(uri).context("reading keys.coldkey_uri")?),
        (None, true) => {
            let w = open()?;
            let pass = Terminal.passphrase(false)?;
            Some(w.coldkey(&pass).context("decrypting the coldkey")?)
        }
        (None, false) => None,
    };
    Ok((hotkey, coldkey))
}

/// Prints a line above the bar, or to stderr when the bar is hidden (not a terminal).
fn say(pb: &indicatif::ProgressBar, line: impl AsRef<str>) {
    if pb.is_hidden() {
        eprintln!("{}", line.as_ref());
    } else {
        pb.println(line);
    }
}

/// Runs `bt neuron`.
pub fn run(cmd: NeuronCommand) -> Result<()> {
    match cmd {
        NeuronCommand::Run(a) => run_neuron(a),
    }
}

fn run_neuron(a: RunArgs) -> Result<()> {
    let mut cfg = NeuronConfig::from_file(&a.config)?;
    if let Some(s) = a.steps {
        cfg.train.steps = s;
    }
    if a.log_every == 0 {
        bail!("--log-every must be at least 1");
    }
    let (hotkey, coldkey) = keys(&cfg.keys, cfg.network.stake_tao > 0.0)?;
    let rt = crate::chain::runtime()?;
    rt.block_on(async move {
        let steps = cfg.train.steps;
        let epoch = cfg.train.epoch_steps;
        let name = if cfg.name.is_empty() { "neuron".to_string() } else { cfg.name.clone() };
        let mut n = Neuron::start(cfg, hotkey.clone(), coldkey)
            .await
            .context("starting the neuron")?;
        eprintln!(
            "{name}: hotkey {}  axon {}  uid {}  {} parameters",
            hotkey.public(),
            n.addr().map(|a| a.to_string()).unwrap_or_default(),
            n.uid().map(|u| u.to_string()).unwrap_or_else(|| "-".into()),
            n.learner().num_params()
        );
        let first = n.steps_done();
        if let Some(r) = n.resumed() {
            if r.step_recorded {
                let of = if r.step < steps { format!(" of {steps}") } else { String::new() };
                eprintln!("{name}: resumed from {} at step {}{of}", r.path.display(), r.step);
            } else {
                eprintln!(
                    "{name}: resumed from {} (parameters only, no step recorded: counting from 0)",
                    r.path.display()
                );
            }
        }
        if first >= steps {
            eprintln!("{name}: already at step {first}, train.steps is {steps}: nothing to train");
            n.shutdown().await?;
            return Ok(());
        }
        let pb = crate::progress::bar(steps as u64, &name);
        pb.set_position(first as u64);
        let start = Instant::now();
        let mut net = Duration::ZERO;
        let mut loss_sum = 0.0f64;
        let mut count = 0usize;
        let mut window = Instant::now();
        let stop = tokio::signal::ctrl_c();
        tokio::pin!(stop);
        while n.steps_done() < steps {
            let r = tokio::select! {
                r = n.train_step() => r?,
                _ = &mut stop => { say(&pb, "interrupted; shutting down"); break; }
            };
            let step = r.step;
            pb.inc(1);
            net += r.network_time;
            loss_sum += f64::from(r.loss);
            count += 1;
            pb.set_message(format!("{name} {:.3}", r.loss));
            if step % a.log_every == 0 {
                say(&pb, format!(
                    "step {step:>6}  loss {:.4}  mode {:?}  peers {}/{}  net {:.1} ms/step  {:.0} tok/s",
                    loss_sum / count as f64,
                    r.mode,
                    r.answered,
                    r.queried,
                    net.as_secs_f64() * 1e3 / count as f64,
                    (count * n.config().train.batch * n.config().model.seq) as f64
                        / window.elapsed().as_secs_f64().max(1e-9),
                ));
                window = Instant::now();
                loss_sum = 0.0;
                count = 0;
                net = Duration::ZERO;
            }
            if step % epoch == 0 || step == steps {
                let e = n.end_epoch().await?;
                let w = e
                    .weights
                    .as_ref()
                    .map(|w| w.iter().map(|v| format!("{v:.2}")).collect::<Vec<_>>().join(" "))
                    .or(e.weights_error.clone())
                    .unwrap_or_else(|| "-".into());
                let resting = if e.resting.is_empty() {
                    String::new()
                } else {
                    let uids: Vec<String> = e.resting.iter().map(|u| u.to_string()).collect();
                    format!("  resting unhelpful peers [{}]", uids.join(" "))
                };
                say(&pb, format!(
                    "epoch at step {step}: held-out {:.4} (student {:.4})  block {}  weights [{w}]{resting}",
                    e.held_out,
                    e.held_out_student,
                    e.height.map(|h| h.to_string()).unwrap_or_else(|| "-".into()),
                ));
            }
        }
        pb.finish_and_clear();
        eprintln!(
            "{name}: {} steps in {:.1} s (at step {} of {steps})",
            n.steps_done() - first,
            start.elapsed().as_secs_f64(),
            n.steps_done()
        );
        n.shutdown().await?;
        Ok(())
    })
}
