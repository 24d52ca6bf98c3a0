//! `bt net up`: a whole network on one machine, on loopback: an embedded ledger node and N
//! neurons in one process (four honest learners on different bundled texts, one that answers
//! noise, one that puts all its weight on itself), then a table of what the ledger made of them.
//!
//! First slice of the local-network command: the ideal-rank measurement, plots and the live
//! dashboard are not here yet (see `docs/neuron.md`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use bt_neuron::local::{LedgerParams, funder, hotkey, start_ledger, train_together};
use bt_neuron::serve::Behaviour;
use bt_neuron::weights::WeightRule;
use bt_neuron::{Neuron, NeuronConfig};
use clap::{Args, Subcommand};

/// `bt net ...`.
#[derive(Debug, Subcommand)]
pub enum NetCommand {
    /// Start a ledger node and neurons on loopback, train them together, report.
    Up(UpArgs),
}

/// `bt net up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Neurons (at least 3): the first ones honest, then one that answers noise, then one
    /// that weighs only itself.
    #[arg(long, default_value_t = 6)]
    pub neurons: usize,
    /// Training steps per neuron.
    #[arg(long, default_value_t = 300)]
    pub steps: usize,
    /// Seed of every neuron (each adds its index).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where the ledger's data and the report go.
    #[arg(long, default_value = "out/net")]
    pub out: PathBuf,
}

const TEXTS: [&str; 6] = [
    "moby_dick_a",
    "sotu_1860s",
    "sotu_2000s",
    "moby_dick_b",
    "sotu_1930s",
    "sotu_1790s",
];

/// Runs `bt net`.
pub fn run(cmd: NetCommand) -> Result<()> {
    match cmd {
        NetCommand::Up(a) => up(a),
    }
}

fn up(a: UpArgs) -> Result<()> {
    if a.neurons < 3 || a.neurons > 16 {
        bail!("--neurons must be in 3..=16, got {}", a.neurons);
    }
    if a.steps < 10 {
        bail!("--steps must be at least 10, got {}", a.steps);
    }
    let chain_dir = a.out.join("chain");
    if chain_dir.exists() {
        std::fs::remove_dir_all(&chain_dir)
            .with_context(|| format!("clearing {}", chain_dir.display()))?;
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let start = Instant::now();
        let node = start_ledger(&chain_dir, &LedgerParams::default()).await?;
        let url = format!("http://{}", node.addr);
        let honest = a.neurons - 2;
        let mut roles = Vec::new();
        let mut neurons = Vec::new();
        for k in 0..a.neurons {
            let (name, behaviour, rule) = if k < honest {
                (format!("honest{k}"), Behaviour::Honest, WeightRule::Payoff)
            } else if k == honest {
                ("noise".to_string(), Behaviour::Noise, WeightRule::Payoff)
            } else {
                (
                    "selfish".to_string(),
                    Behaviour::Honest,
                    WeightRule::SelfOnly,
                )
            };
            let mut cfg = NeuronConfig {
                name: name.clone(),
                behaviour: Some(behaviour),
                ..NeuronConfig::default()
            };
            cfg.data.source = format!("bundled:{}", TEXTS[k % TEXTS.len()]);
            cfg.network.ledger = Some(url.clone());
            cfg.network.stake_tao = 100.0;
            cfg.train.seed = a.seed.wrapping_add(k as u64);
            cfg.train.epoch_steps = 25.min(a.steps);
            cfg.weights.rule = rule;
            roles.push((name.clone(), cfg.data.source.clone()));
            neurons.push(
                Neuron::start(cfg, hotkey(&name)?, Some(funder()?))
                    .await
                    .with_context(|| format!("starting {name}"))?,
            );
            eprintln!("started {name} ({})", roles[k].1);
        }
        for n in &mut neurons {
            n.refresh().await?;
        }
        eprintln!("training {} neurons for {} steps ...", a.neurons, a.steps);
        let trained = train_together(neurons, a.steps).await?;
        let mut neurons: Vec<Neuron> = Vec::new();
        let mut losses = Vec::new();
        for t in trained {
            losses.push(t.epochs.last().map(|e| e.held_out).unwrap_or(f32::NAN));
            neurons.push(t.neuron);
        }
        neurons[0].refresh().await?;
        let snap = neurons[0].snapshot().cloned().context("no metagraph")?;
        let mut report = format!(
            "# bt net up\n\n{} neurons, {} steps each, {:.0} s, ledger height {}\n\n\
             | uid | neuron | data | held-out loss | stake (TAO) | ledger rank | self-weight |\n\
             |---|---|---|---|---|---|---|\n",
            a.neurons,
            a.steps,
            start.elapsed().as_secs_f64(),
            snap.height
        );
        for (k, (name, data)) in roles.iter().enumerate() {
            let uid = neurons[k].uid().context("not registered")?;
            let nm = &snap.neurons[uid];
            report.push_str(&format!(
                "| {uid} | {name} | {data} | {:.4} | {:.3} | {:.4} | {:.3} |\n",
                losses[k],
                nm.stake as f64 / 1e9,
                nm.rank,
                snap.w[uid][uid]
            ));
        }
        for n in neurons {
            n.shutdown().await?;
        }
        node.stop().await?;
        let path = a.out.join("report.md");
        std::fs::write(&path, &report).with_context(|| format!("writing {}", path.display()))?;
        println!("{report}\nreport written to {}", path.display());
        Ok(())
    })
}
