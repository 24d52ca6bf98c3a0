//! The neuron's claims, measured on loopback with a real ledger node, printed as tables:
//!
//! 1. a neuron with little data reaches a lower held-out loss in the network than alone (and
//!    each epoch's held-out loss, its peers' worth on its batches and the peers it rests);
//! 2. a peer that answers noise ends with low gate weight and low weight in every row;
//! 3. killing a peer mid-training: its consumers keep training (student fallback), no error
//!    escapes, and their loss does not jump;
//! 4. step time alone and in the network, with the network's share.
//!
//! `cargo run --release -p bt-net --example neuron_proofs -- [--steps N] [--limit BYTES]
//! [--after-kill N] [--peer-adapter on|open|off] [--backward with-own-step|own-optimizer]
//! [--remote-loss W|auto] [--little-remote-loss W|auto] [--local-loss W|auto]
//! [--rest-unhelpful on|off] [--weight-decay W|auto] [--little-weight-decay W]`
//! (`--weight-decay` is every learner's, and the twin's; `--little-remote-loss` sets the
//! little-data learner's own remote weight, when it should differ from its peers';
//! `--little-weight-decay` its AdamW weight decay, and its twin's alone)

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use bt_net::local::{LedgerParams, funder, hotkey, start_ledger, train_together};
use bt_neuron::learner::{BackwardUpdate, Mode};
use bt_neuron::router::{DataWeight, PeerAdapter, RouterConfig};
use bt_neuron::serve::Behaviour;
use bt_neuron::{Neuron, NeuronConfig};

struct Args {
    steps: usize,
    limit: usize,
    after_kill: usize,
    adapter: PeerAdapter,
    backward: BackwardUpdate,
    w_remote: DataWeight,
    /// The little-data learner's own remote weight, when it differs from its peers'.
    little_w_remote: Option<DataWeight>,
    /// Every learner's local-only objective weight.
    w_local: DataWeight,
    /// Whether every learner rests unhelpful peers (`None`: the default).
    rest_unhelpful: Option<bool>,
    /// Every learner's weight decay (the twin's too).
    weight_decay: DataWeight,
    /// The little-data learner's (and its twin's) weight decay, when it differs.
    little_weight_decay: Option<f64>,
}

/// The next argument, parsed, or an error naming `flag`.
fn parsed<T: std::str::FromStr>(
    it: &mut impl Iterator<Item = String>,
    flag: &str,
) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    it.next()
        .ok_or(format!("{flag} needs a value"))?
        .parse()
        .map_err(|e| format!("{flag}: {e}"))
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        steps: 300,
        limit: 4000,
        after_kill: 50,
        adapter: PeerAdapter::On,
        backward: BackwardUpdate::WithOwnStep,
        w_remote: RouterConfig::default().w_remote,
        little_w_remote: None,
        w_local: RouterConfig::default().w_local,
        rest_unhelpful: None,
        weight_decay: NeuronConfig::default().optim.weight_decay,
        little_weight_decay: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--steps" => a.steps = parsed(&mut it, "--steps")?,
            "--limit" => a.limit = parsed(&mut it, "--limit")?,
            "--after-kill" => a.after_kill = parsed(&mut it, "--after-kill")?,
            "--peer-adapter" => a.adapter = parsed(&mut it, "--peer-adapter")?,
            "--remote-loss" => a.w_remote = parsed(&mut it, "--remote-loss")?,
            "--little-remote-loss" => {
                a.little_w_remote = Some(parsed(&mut it, "--little-remote-loss")?);
            }
            "--backward" => a.backward = parsed(&mut it, "--backward")?,
            "--local-loss" => a.w_local = parsed(&mut it, "--local-loss")?,
            "--weight-decay" => a.weight_decay = parsed(&mut it, "--weight-decay")?,
            "--little-weight-decay" => {
                let w: f64 = parsed(&mut it, "--little-weight-decay")?;
                if !(w.is_finite() && w >= 0.0) {
                    return Err(format!(
                        "--little-weight-decay must be finite and >= 0, got {w}"
                    ));
                }
                a.little_weight_decay = Some(w);
            }
            "--rest-unhelpful" => {
                a.rest_unhelpful = Some(match it.next().as_deref() {
                    Some("on") => true,
                    Some("off") => false,
                    _ => return Err("--rest-unhelpful needs on or off".into()),
                });
            }
            other => {
                return Err(format!(
                    "unknown flag {other}; use --steps, --limit, --after-kill, --peer-adapter, \
                     --backward, --remote-loss, --little-remote-loss, --local-loss, \
                     --rest-unhelpful, --weight-decay, --little-weight-decay"
                ));
            }
        }
    }
    if a.steps < 20 {
        return Err("--steps must be at least 20".into());
    }
    Ok(a)
}

fn config(a: &Args, name: &str, source: &str, seed: u64, ledger: Option<&str>) -> NeuronConfig {
    let mut cfg = NeuronConfig {
        name: name.into(),
        ..NeuronConfig::default()
    };
    cfg.router = cfg.router.with_peer_adapter(a.adapter);
    cfg.optim.backward = a.backward;
    cfg.router.w_remote = a.w_remote;
    cfg.router.w_local = a.w_local;
    cfg.optim.weight_decay = a.weight_decay;
    if let Some(on) = a.rest_unhelpful {
        cfg.router.rest_unhelpful = on;
    }
    cfg.data.source = source.into();
    cfg.network.ledger = ledger.map(str::to_string);
    cfg.network.stake_tao = 100.0;
    cfg.train.seed = seed;
    cfg.train.epoch_steps = 25;
    cfg.train.eval_batches = 4;
    cfg
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = args()?;
    let little = |cfg: &mut NeuronConfig| {
        cfg.data.limit = Some(a.limit);
        cfg.router.w_remote = a.little_w_remote.unwrap_or(a.w_remote);
        if let Some(w) = a.little_weight_decay {
            cfg.optim.weight_decay = DataWeight::Fixed(w);
        }
    };

    // Alone: the little-data neuron with no network at all.
    let mut alone_cfg = config(&a, "little", "bundled:sotu_1930s", 11, None);
    little(&mut alone_cfg);
    alone_cfg.network.stake_tao = 0.0;
    let mut alone = Neuron::start(alone_cfg, hotkey("little-alone")?, None).await?;
    let t0 = Instant::now();
    let mut alone_best = f32::INFINITY;
    for step in 1..=a.steps {
        alone.train_step().await?;
        if step % 25 == 0 {
            alone_best = alone_best.min(alone.evaluate(Mode::Alone).await?);
        }
    }
    let alone_secs = t0.elapsed().as_secs_f64();
    let alone_final = alone.evaluate(Mode::Alone).await?;
    let cfg = alone.config().clone();
    let tokens = (a.steps * cfg.train.batch * cfg.model.seq) as f64;
    alone.shutdown().await?;

    // The network: a ledger, the little-data neuron, three honest peers with full data, noise.
    let dir = std::env::temp_dir().join(format!("bt-neuron-proofs-{}", std::process::id()));
    let node = start_ledger(&dir, &LedgerParams::default()).await?;
    let url = format!("http://{}", node.addr);
    let specs = [
        ("little", "bundled:sotu_1930s", Behaviour::Honest),
        ("sotu-1860s", "bundled:sotu_1860s", Behaviour::Honest),
        ("sotu-2000s", "bundled:sotu_2000s", Behaviour::Honest),
        ("moby-a", "bundled:moby_dick_a", Behaviour::Honest),
        ("noise", "bundled:sotu_1790s", Behaviour::Noise),
    ];
    let mut neurons = Vec::new();
    for (k, (name, source, behaviour)) in specs.iter().enumerate() {
        let mut cfg = config(&a, name, source, 11 + k as u64, Some(&url));
        if *name == "little" {
            little(&mut cfg);
        }
        cfg.behaviour = Some(*behaviour);
        neurons.push(Neuron::start(cfg, hotkey(name)?, Some(funder()?)).await?);
    }
    for n in &mut neurons {
        n.refresh().await?;
    }
    let t1 = Instant::now();
    let trained = train_together(neurons, a.steps).await?;
    let net_secs = t1.elapsed().as_secs_f64();
    let little_steps = &trained[0].steps;
    let net_time: Duration = little_steps.iter().map(|s| s.network_time).sum();
    let step_time: Duration = little_steps.iter().map(|s| s.step_time).sum();
    let network_steps = little_steps
        .iter()
        .filter(|s| s.mode == Mode::Network)
        .count();
    let net_best = trained[0]
        .epochs
        .iter()
        .map(|e| e.held_out)
        .fold(f32::INFINITY, f32::min);
    let trained_epochs = trained[0].epochs.clone();
    let mut neurons: Vec<Neuron> = Vec::new();
    let mut last_epochs = Vec::new();
    for t in trained {
        last_epochs.push(t.epochs.last().cloned().unwrap_or_default());
        neurons.push(t.neuron);
    }
    let in_net = neurons[0].evaluate(Mode::Network).await?;
    let student = neurons[0].evaluate(Mode::Student).await?;

    println!(
        "## 1. Little data ({} training bytes of sotu_1930s), {} steps\n",
        a.limit, a.steps
    );
    println!("| setting | held-out loss (nats/byte) |");
    println!("|---|---|");
    println!("| alone, final | {alone_final:.4} |");
    println!("| alone, best of every 25 steps | {alone_best:.4} |");
    println!("| in the network (gated peers), final | {in_net:.4} |");
    println!("| in the network, best of every 25 steps | {net_best:.4} |");
    println!("| in the network, student only, final | {student:.4} |");
    println!(
        "\nThe little learner's epochs (held-out loss, each peer's worth on its training \
         batches, the peers it rests):\n"
    );
    println!("| step | held-out | worth of uids 1..4 | resting |");
    println!("|---|---|---|---|");
    for e in &trained_epochs {
        let worth: Vec<String> = (1..5)
            .map(|j| match e.worth.get(j).copied().flatten() {
                Some(w) => format!("{w:+.4}"),
                None => "-".into(),
            })
            .collect();
        println!(
            "| {} | {:.3} | {} | {:?} |",
            e.step,
            e.held_out,
            worth.join(" "),
            e.resting
        );
    }

    neurons[0].refresh().await?;
    let snap = neurons[0].snapshot().cloned().ok_or("no metagraph")?;
    println!("\n## 2. The noise peer (uid 4)\n");
    println!(
        "| row | gate importance of noise | mean importance of honest peers | W to noise | mean W to honest peers |"
    );
    println!("|---|---|---|---|---|");
    for (i, e) in last_epochs.iter().enumerate().take(4) {
        let honest: Vec<usize> = (0..4).filter(|&j| j != i).collect();
        let mean = |v: &dyn Fn(usize) -> f64| {
            honest.iter().map(|&j| v(j)).sum::<f64>() / honest.len() as f64
        };
        println!(
            "| {} ({}) | {:.3} | {:.3} | {:.3} | {:.3} |",
            i,
            specs[i].0,
            e.importance.get(4).copied().unwrap_or(0.0),
            mean(&|j| e.importance.get(j).copied().unwrap_or(0.0)),
            snap.w[i][4],
            mean(&|j| snap.w[i][j]),
        );
    }
    println!("\nstake after training (TAO) and ledger rank:");
    for nm in &snap.neurons {
        println!(
            "- uid {} ({}): stake {:.3}, rank {:.4}",
            nm.uid,
            specs[nm.uid].0,
            nm.stake as f64 / 1e9,
            nm.rank
        );
    }

    // 3. Kill sotu-1860s; the little neuron keeps training.
    let before = neurons[0].evaluate(Mode::Network).await?;
    let victim = neurons.remove(1);
    victim.shutdown().await?;
    let right_after = neurons[0].evaluate(Mode::Network).await?;
    let mut losses = Vec::new();
    let mut errors = 0;
    let mut fallback = 0;
    for _ in 0..a.after_kill {
        match neurons[0].train_step().await {
            Ok(r) => {
                losses.push(r.loss);
                if r.mode == Mode::Student || r.answered < r.queried {
                    fallback += 1;
                }
            }
            Err(_) => errors += 1,
        }
    }
    let after = neurons[0].evaluate(Mode::Network).await?;
    let max_loss = losses.iter().copied().fold(f32::MIN, f32::max);
    println!("\n## 3. Killing a peer (sotu-1860s) mid-training\n");
    println!(
        "| held-out with the peer | right after the kill | after {} more steps | largest training loss after | steps with a failed peer | errors |",
        a.after_kill
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| {before:.4} | {right_after:.4} ({:+.4}) | {after:.4} | {max_loss:.4} | {fallback} | {errors} |",
        right_after - before
    );

    println!(
        "\n## 4. Step time ({} x {} tokens per step, 2 cores shared by every neuron)\n",
        cfg.train.batch, cfg.model.seq
    );
    println!("| run | wall time | tokens/s per neuron | mean step | of which peer queries |");
    println!("|---|---|---|---|---|");
    println!(
        "| alone (1 neuron) | {alone_secs:.1} s | {:.0} | {:.1} ms | - |",
        tokens / alone_secs,
        alone_secs * 1e3 / a.steps as f64
    );
    println!(
        "| network (5 neurons, k = {}) | {net_secs:.1} s | {:.0} | {:.1} ms | {:.1} ms ({network_steps} of {} steps used peers) |",
        cfg.router.k,
        tokens / net_secs,
        step_time.as_secs_f64() * 1e3 / a.steps as f64,
        net_time.as_secs_f64() * 1e3 / a.steps as f64,
        a.steps
    );
    for n in neurons {
        n.shutdown().await?;
    }
    node.stop().await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
