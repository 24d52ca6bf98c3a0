//! The report of a `bt net up` run: a Markdown table (neuron, data, loss alone and in the
//! network, stake, ledger rank, removal cost, self-weight), the ideal rank measured against
//! the ledger's (Spearman and Pearson), how well the paper's second-order approximation tracks
//! the measured removal cost, and the plots ([`crate::plots`]); the same facts as
//! `report.json` ([`ReportJson`], without timings, so that two lockstep runs with the same
//! seed write the same file); and the summary of many seeds ([`Summary`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use bt_mechanism::stats::{pearson, spearman};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::up::{Measurement, NetRun, RoleKind, Transport, UpConfig};
use bt_ledger::RAO_PER_TAO;
use bt_neuron::learner::BackwardUpdate;
use bt_neuron::router::{AdapterInit, DataWeight, RouterConfig};

/// One neuron in `report.json`. Values that are undefined (no measurement) are `null`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NeuronJson {
    /// Its uid.
    pub uid: usize,
    /// Its name.
    pub name: String,
    /// `honest`, `noise` or `selfish`.
    pub role: String,
    /// Its training text.
    pub data: String,
    /// Final held-out loss of its twin trained alone.
    pub loss_alone: Option<f64>,
    /// Final held-out loss in the network.
    pub loss_network: Option<f64>,
    /// Final stake in TAO.
    pub stake_tao: f64,
    /// Its share of everything minted over the run (its stake's growth over the
    /// stake it started with, over the sum of every neuron's growth); `null` when
    /// nothing was minted.
    pub minted_share: Option<f64>,
    /// Whether it is (one identity of) the run's adversary.
    #[serde(default)]
    pub adversary: bool,
    /// Final ledger rank.
    pub rank: f64,
    /// Place by ledger rank (1 = highest).
    pub rank_place: usize,
    /// The measured removal cost, summed over consumers.
    pub removal_cost: f64,
    /// The standard error of `removal_cost`, from the spread of each consumer's cost over its
    /// held-out batches (`null`: a consumer had fewer than two, or in reports written before
    /// it was recorded).
    #[serde(default)]
    pub removal_cost_se: Option<f64>,
    /// Its final removal cost with the masks open (every answer unscaled, the routers run
    /// again): the yardstick the mechanism does not shape; `null` over grpc.
    #[serde(default)]
    pub removal_cost_open: Option<f64>,
    /// The smallest removal cost one consumer measured for it (`null`: no consumer's router
    /// chose it); below 0, removing it helped that consumer: its answers did harm.
    #[serde(default)]
    pub removal_cost_min_consumer: Option<f64>,
    /// The largest removal cost one consumer measured for it (`null` as above).
    #[serde(default)]
    pub removal_cost_max_consumer: Option<f64>,
    /// The standard error of that largest cost, over that consumer's held-out batches
    /// (`null` as above, with fewer than two batches, or in older reports).
    #[serde(default)]
    pub removal_cost_max_consumer_se: Option<f64>,
    /// Place by removal cost (1 = highest).
    pub cost_place: usize,
    /// The paper's second-order approximation of the removal cost.
    pub second_order: f64,
    /// Its weight on itself.
    pub self_weight: Option<f64>,
}

/// `report.json`: what a run measured, without its timings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReportJson {
    /// The seed.
    pub seed: u64,
    /// The ledger's mechanism.
    pub mechanism: String,
    /// `lockstep` or `grpc`.
    pub transport: String,
    /// Ledger blocks per global step (lockstep), `null` over grpc.
    pub blocks_per_step: Option<u64>,
    /// Steps every neuron trained (the fewest).
    pub steps: usize,
    /// True when Ctrl-C or the time limit ended training early.
    pub stopped_early: bool,
    /// The final ledger height.
    pub height: u64,
    /// Spearman correlation of the ledger rank with the removal cost (`null`: undefined).
    pub spearman_rank_cost: Option<f64>,
    /// Pearson correlation of the ledger rank with the removal cost (`null`: undefined).
    pub pearson_rank_cost: Option<f64>,
    /// Pearson correlation of the second-order approximation with the removal cost.
    pub pearson_second_cost: Option<f64>,
    /// The neurons, by uid.
    pub neurons: Vec<NeuronJson>,
    /// The machine that ran it ([`machine`]); `null` in reports written before it was
    /// recorded. A lockstep run repeats exactly on one machine, not across CPUs.
    #[serde(default)]
    pub machine: Option<String>,
    /// The learners' and the network's settings besides the seed ([`Settings`]); `null` in
    /// reports written before they were recorded.
    #[serde(default)]
    pub settings: Option<Settings>,
}

/// The options of `bt net up` that change what a run measures, besides the seed, the
/// mechanism and the transport: so that two reports can be told apart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Whether the axons applied the competitive mask.
    pub mask: bool,
    /// Whether each learner passed its peers' answers through its own adapter.
    pub adapter: bool,
    /// Where the adapters started.
    pub adapter_init: AdapterInit,
    /// How the learners took their peers' Backward gradients.
    pub backward: BackwardUpdate,
    /// The learners' weight decay, as configured (`0` in reports written before it was
    /// recorded, whose learners had none).
    #[serde(default = "zero_weight")]
    pub weight_decay: DataWeight,
    /// The remote-only objective's weight, as configured (`auto` is resolved per learner).
    pub w_remote: DataWeight,
    /// The local-only objective's weight, as configured (`0` in reports written before it
    /// existed, whose learners had none).
    #[serde(default = "zero_weight")]
    pub w_local: DataWeight,
    /// Held-out batches each loss and removal cost is measured on (4 in reports written
    /// before it was recorded).
    #[serde(default = "four_batches")]
    pub eval_batches: usize,
    /// Whether learners rested peers whose answers did not pay (`false` in reports written
    /// before it existed).
    #[serde(default)]
    pub rest_unhelpful: bool,
    /// Each neuron's training bytes when cut (`--text-bytes`); `null`: its whole text.
    pub text_bytes: Option<usize>,
}

/// A weight of 0: what reports written before a weight was recorded had.
fn zero_weight() -> DataWeight {
    DataWeight::Fixed(0.0)
}

fn four_batches() -> usize {
    4
}

impl Settings {
    /// The settings a run used.
    pub fn of(cfg: &UpConfig) -> Settings {
        Settings {
            mask: cfg.mask,
            adapter: cfg.router.adapter,
            adapter_init: cfg.router.adapter_init,
            backward: cfg.backward,
            weight_decay: cfg.weight_decay,
            w_remote: cfg.router.w_remote,
            w_local: cfg.router.w_local,
            eval_batches: cfg.eval_batches,
            rest_unhelpful: cfg.router.rest_unhelpful,
            text_bytes: cfg.text_bytes,
        }
    }

    /// One line for the markdown reports: the `bt net up` flags that give these settings.
    pub fn line(&self) -> String {
        let adapter = RouterConfig {
            adapter: self.adapter,
            adapter_init: self.adapter_init,
            ..RouterConfig::default()
        }
        .peer_adapter();
        let mut line = format!(
            "--mask {} --peer-adapter {adapter} --backward {} --remote-loss {}",
            on_off(self.mask),
            self.backward,
            self.w_remote
        );
        line.push_str(&format!(
            " --local-loss {} --weight-decay {} --eval-batches {} --rest-unhelpful {}",
            self.w_local,
            self.weight_decay,
            self.eval_batches,
            on_off(self.rest_unhelpful)
        ));
        if let Some(n) = self.text_bytes {
            line.push_str(&format!(" --text-bytes {n}"));
        }
        line
    }
}

/// How the command line spells a switch: `on` or `off`.
pub(crate) fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

/// The machine a run's numbers belong to: the CPU's model, the vector level the kernels
/// dispatch to, and its data caches, which size the matrix products' blocks. Two CPUs that
/// differ in any of these can round a lockstep run differently (`docs/net.md`). Read once per
/// process.
pub fn machine() -> &'static str {
    static MACHINE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    MACHINE.get_or_init(read_machine)
}

fn read_machine() -> String {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .map(|s| s.trim().to_string())
    };
    let model = read("/proc/cpuinfo").and_then(|info| {
        info.lines().find_map(|l| {
            let (key, value) = l.split_once(':')?;
            (key.trim() == "model name").then(|| value.trim().to_string())
        })
    });
    let level = match bt_vecmath::simd_level() {
        2 => "AVX-512",
        1 => "AVX2+FMA",
        _ => "no wide vectors",
    };
    let caches: Vec<String> = (0..8)
        .filter_map(|i| {
            let dir = format!("/sys/devices/system/cpu/cpu0/cache/index{i}");
            let kind = read(&format!("{dir}/type"))?;
            (kind != "Instruction").then_some(())?;
            let level = read(&format!("{dir}/level"))?;
            let size = read(&format!("{dir}/size"))?;
            Some(format!("L{level} {size}"))
        })
        .collect();
    let mut out = format!(
        "{} ({}, {level}",
        model.as_deref().unwrap_or("unknown CPU"),
        std::env::consts::ARCH
    );
    if !caches.is_empty() {
        out.push_str("; ");
        out.push_str(&caches.join(", "));
    }
    out.push(')');
    out
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// ` ± se` after a cost in the markdown report, or nothing when its error is unknown.
fn plus_minus(se: Option<f64>) -> String {
    se.map_or_else(String::new, |se| format!(" ± {se:.4}"))
}

/// The facts of a run as `report.json` holds them.
pub fn json(run: &NetRun) -> ReportJson {
    let cfg = &run.config;
    let snap = &run.final_snapshot;
    let (agree, neurons) = match run.measurements.last() {
        Some(last) => {
            let rank_place = places(&last.rank);
            let exact: Vec<f64> = last.cost.iter().map(|c| c.exact).collect();
            let cost_place = places(&exact);
            let grown: Vec<f64> = run
                .neurons
                .iter()
                .map(|n| {
                    let start = n.role.stake_rao as f64 / RAO_PER_TAO as f64;
                    snap.neurons
                        .get(n.uid)
                        .map_or(0.0, |m| (m.stake_tao() - start).max(0.0))
                })
                .collect();
            let minted: f64 = grown.iter().sum();
            let range = |k: usize| last.by_consumer.get(k).copied().flatten();
            let neurons = run
                .neurons
                .iter()
                .enumerate()
                .map(|(k, n)| NeuronJson {
                    uid: n.uid,
                    name: n.role.name.clone(),
                    role: n.role.kind.as_str().to_string(),
                    data: n.role.data.trim_start_matches("bundled:").to_string(),
                    loss_alone: n.held_out_alone.last().and_then(|h| finite(f64::from(h.1))),
                    loss_network: n.held_out.last().and_then(|h| finite(f64::from(h.1))),
                    stake_tao: snap.neurons.get(n.uid).map_or(0.0, |m| m.stake_tao()),
                    minted_share: (minted > 0.0).then(|| grown[k] / minted),
                    adversary: n.role.adversary,
                    rank: last.rank[k],
                    rank_place: rank_place[k],
                    removal_cost: last.cost[k].exact,
                    removal_cost_se: finite(last.cost[k].se()),
                    removal_cost_open: run
                        .open_cost
                        .as_ref()
                        .and_then(|c| c.get(k))
                        .map(|c| c.exact),
                    removal_cost_min_consumer: range(k).map(|r| r.min),
                    removal_cost_max_consumer: range(k).map(|r| r.max),
                    removal_cost_max_consumer_se: range(k).and_then(|r| finite(r.max_se)),
                    cost_place: cost_place[k],
                    second_order: last.cost[k].second,
                    self_weight: snap.w.get(n.uid).and_then(|r| r.get(n.uid)).copied(),
                })
                .collect();
            (Some(agreement(last)), neurons)
        }
        None => (None, Vec::new()),
    };
    ReportJson {
        seed: cfg.seed,
        mechanism: cfg.mechanism.to_string(),
        transport: cfg.transport.as_str().to_string(),
        blocks_per_step: (cfg.transport == Transport::Lockstep).then_some(cfg.blocks_per_step),
        steps: run.neurons.iter().map(|n| n.steps).min().unwrap_or(0),
        stopped_early: run.stopped_early,
        height: snap.height,
        spearman_rank_cost: agree.and_then(|a| finite(a.rank_spearman)),
        pearson_rank_cost: agree.and_then(|a| finite(a.rank_pearson)),
        pearson_second_cost: agree.and_then(|a| finite(a.second_pearson)),
        neurons,
        machine: Some(machine().to_string()),
        settings: Some(Settings::of(cfg)),
    }
}

/// A mean and a standard deviation over seeds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    /// The mean of the defined values (`null` when none is).
    pub mean: Option<f64>,
    /// Their sample standard deviation (`null` with fewer than two).
    pub std: Option<f64>,
    /// How many values were defined.
    pub n: usize,
}

impl Stat {
    /// The statistics of the defined values among `xs`.
    pub fn of(xs: impl IntoIterator<Item = Option<f64>>) -> Stat {
        let v: Vec<f64> = xs.into_iter().flatten().filter(|x| x.is_finite()).collect();
        let n = v.len();
        if n == 0 {
            return Stat {
                mean: None,
                std: None,
                n,
            };
        }
        let mean = v.iter().sum::<f64>() / n as f64;
        let std = (n > 1)
            .then(|| (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt());
        Stat {
            mean: Some(mean),
            std,
            n,
        }
    }

    fn show(&self, digits: usize) -> String {
        match (self.mean, self.std) {
            (Some(m), Some(s)) => format!("{m:+.digits$} ± {s:.digits$}"),
            (Some(m), None) => format!("{m:+.digits$}"),
            _ => "undefined".to_string(),
        }
    }

    /// As [`Stat::show`], without a sign on the mean (for losses).
    fn show_unsigned(&self, digits: usize) -> String {
        self.show(digits).trim_start_matches('+').to_string()
    }
}

/// One role over seeds: the mean over its neurons in each run, then over runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoleSummary {
    /// The role.
    pub role: String,
    /// Neurons with it per run.
    pub neurons: usize,
    /// Place by ledger rank.
    pub rank_place: Stat,
    /// Place by removal cost.
    pub cost_place: Stat,
    /// Held-out loss alone minus in the network (positive: the network helped).
    pub gain_over_alone: Stat,
    /// Fraction of its neurons better in the network than alone.
    pub better_than_alone: Stat,
}

/// One neuron (by name) over seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NeuronSummary {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// Held-out loss of its twin alone.
    pub loss_alone: Stat,
    /// Held-out loss in the network.
    pub loss_network: Stat,
    /// Loss alone minus loss in the network (positive: the network helped).
    pub gain: Stat,
    /// Seeds in which it ended better in the network than alone.
    pub better: usize,
    /// The smallest removal cost one of its consumers measured, in each seed (below 0: its
    /// answers did that consumer harm).
    pub removal_cost_min_consumer: Stat,
    /// The largest removal cost one of its consumers measured, in each seed.
    pub removal_cost_max_consumer: Stat,
    /// Seeds in which that largest cost was above 0 (some consumer measured that it helped).
    #[serde(default)]
    pub max_consumer_above_zero: usize,
    /// Seeds in which it was above 0 by more than twice its standard error: more than the
    /// measure's own spread over the held-out batches explains.
    #[serde(default)]
    pub max_consumer_clearly_above_zero: usize,
}

/// `summary.json`: many seeds of one network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The seeds, in order.
    pub seeds: Vec<u64>,
    /// The transport.
    pub transport: String,
    /// The mechanism.
    pub mechanism: String,
    /// Spearman(ledger rank, removal cost).
    pub spearman_rank_cost: Stat,
    /// Pearson(ledger rank, removal cost).
    pub pearson_rank_cost: Stat,
    /// Pearson(second-order approximation, removal cost).
    pub pearson_second_cost: Stat,
    /// Each role, in the order they first appear.
    pub roles: Vec<RoleSummary>,
    /// Each neuron, in the order they first appear.
    #[serde(default)]
    pub neurons: Vec<NeuronSummary>,
}

/// The summary of several runs' reports.
pub fn summary(reports: &[ReportJson]) -> Summary {
    let mut role_names: Vec<String> = Vec::new();
    for r in reports {
        for n in &r.neurons {
            if !role_names.contains(&n.role) {
                role_names.push(n.role.clone());
            }
        }
    }
    let per_run = |role: &str, f: &dyn Fn(&NeuronJson) -> Option<f64>| -> Vec<Option<f64>> {
        reports
            .iter()
            .map(|r| {
                let v: Vec<f64> = r
                    .neurons
                    .iter()
                    .filter(|n| n.role == role)
                    .filter_map(f)
                    .collect();
                (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
            })
            .collect()
    };
    let roles = role_names
        .iter()
        .map(|role| RoleSummary {
            role: role.clone(),
            neurons: reports
                .first()
                .map_or(0, |r| r.neurons.iter().filter(|n| &n.role == role).count()),
            rank_place: Stat::of(per_run(role, &|n| Some(n.rank_place as f64))),
            cost_place: Stat::of(per_run(role, &|n| Some(n.cost_place as f64))),
            gain_over_alone: Stat::of(per_run(role, &|n| Some(n.loss_alone? - n.loss_network?))),
            better_than_alone: Stat::of(per_run(role, &|n| {
                Some(f64::from(u8::from(n.loss_network? < n.loss_alone?)))
            })),
        })
        .collect();
    let mut names: Vec<(String, String)> = Vec::new();
    for r in reports {
        for n in &r.neurons {
            if !names.iter().any(|(m, _)| m == &n.name) {
                names.push((n.name.clone(), n.role.clone()));
            }
        }
    }
    let of = |name: &str, f: &dyn Fn(&NeuronJson) -> Option<f64>| -> Vec<Option<f64>> {
        reports
            .iter()
            .map(|r| r.neurons.iter().find(|n| n.name == name).and_then(f))
            .collect()
    };
    let seeds_where = |name: &str, f: &dyn Fn(&NeuronJson) -> Option<bool>| -> usize {
        reports
            .iter()
            .filter(|r| r.neurons.iter().find(|n| n.name == name).and_then(f) == Some(true))
            .count()
    };
    let neurons = names
        .into_iter()
        .map(|(name, role)| NeuronSummary {
            loss_alone: Stat::of(of(&name, &|n| n.loss_alone)),
            loss_network: Stat::of(of(&name, &|n| n.loss_network)),
            gain: Stat::of(of(&name, &|n| Some(n.loss_alone? - n.loss_network?))),
            better: seeds_where(&name, &|n| Some(n.loss_network? < n.loss_alone?)),
            removal_cost_min_consumer: Stat::of(of(&name, &|n| n.removal_cost_min_consumer)),
            removal_cost_max_consumer: Stat::of(of(&name, &|n| n.removal_cost_max_consumer)),
            max_consumer_above_zero: seeds_where(&name, &|n| {
                Some(n.removal_cost_max_consumer? > 0.0)
            }),
            max_consumer_clearly_above_zero: seeds_where(&name, &|n| {
                Some(n.removal_cost_max_consumer? > 2.0 * n.removal_cost_max_consumer_se?)
            }),
            name,
            role,
        })
        .collect();
    Summary {
        neurons,
        seeds: reports.iter().map(|r| r.seed).collect(),
        transport: reports
            .first()
            .map_or_else(String::new, |r| r.transport.clone()),
        mechanism: reports
            .first()
            .map_or_else(String::new, |r| r.mechanism.clone()),
        spearman_rank_cost: Stat::of(reports.iter().map(|r| r.spearman_rank_cost)),
        pearson_rank_cost: Stat::of(reports.iter().map(|r| r.pearson_rank_cost)),
        pearson_second_cost: Stat::of(reports.iter().map(|r| r.pearson_second_cost)),
        roles,
    }
}

/// The summary as Markdown (`summary.md`).
pub fn summary_markdown(s: &Summary, reports: &[ReportJson]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# bt net up: {} seeds ({}), transport {}, mechanism {}
",
        s.seeds.len(),
        s.seeds
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        s.transport,
        s.mechanism
    );
    let mut machines: Vec<&str> = reports
        .iter()
        .filter_map(|r| r.machine.as_deref())
        .collect();
    machines.sort_unstable();
    machines.dedup();
    if !machines.is_empty() {
        let _ = writeln!(out, "Machine: {}.\n", machines.join("; "));
    }
    let mut settings: Vec<String> = reports
        .iter()
        .filter_map(|r| r.settings.as_ref().map(Settings::line))
        .collect();
    settings.sort_unstable();
    settings.dedup();
    if !settings.is_empty() {
        let _ = writeln!(out, "Settings: {}.\n", settings.join("; "));
    }
    let _ = writeln!(
        out,
        "Mean ± sample standard deviation over the seeds.
"
    );
    let _ = writeln!(
        out,
        "| | mean ± std |
|---|---|"
    );
    let _ = writeln!(
        out,
        "| Spearman(ledger rank, removal cost) | {} |",
        s.spearman_rank_cost.show(3)
    );
    let _ = writeln!(
        out,
        "| Pearson(ledger rank, removal cost) | {} |",
        s.pearson_rank_cost.show(3)
    );
    let _ = writeln!(
        out,
        "| Pearson(second-order approx., removal cost) | {} |
",
        s.pearson_second_cost.show(3)
    );
    let _ = writeln!(
        out,
        "| role | neurons | place by ledger rank | place by removal cost | held-out gain over alone (nats) | share better than alone |
|---|---|---|---|---|---|"
    );
    for r in &s.roles {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            r.role,
            r.neurons,
            r.rank_place.show(2),
            r.cost_place.show(2),
            r.gain_over_alone.show(4),
            r.better_than_alone.show(2)
        );
    }
    let _ = writeln!(
        out,
        "
Places count from 1 = highest, averaged over a role's neurons in each run.
"
    );
    let _ = writeln!(
        out,
        "| neuron | role | held-out loss alone | in the network | gain | seeds better | removal cost, least to one consumer | most to one consumer | seeds it is above 0 (by more than 2 SE) |
|---|---|---|---|---|---|---|---|---|"
    );
    // A neuron no router chose in any seed has no consumer to measure it.
    let chosen = |st: &Stat| match st.n {
        0 => "none chose it".to_string(),
        _ => st.show(4),
    };
    for n in &s.neurons {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} of {} | {} | {} | {} ({}) |",
            n.name,
            n.role,
            n.loss_alone.show_unsigned(3),
            n.loss_network.show_unsigned(3),
            n.gain.show(3),
            n.better,
            n.gain.n,
            chosen(&n.removal_cost_min_consumer),
            chosen(&n.removal_cost_max_consumer),
            n.max_consumer_above_zero,
            n.max_consumer_clearly_above_zero
        );
    }
    let _ = writeln!(
        out,
        "
Gain: loss alone minus loss in the network (nats per byte; positive: the network helped). \
The removal cost columns are over the consumers whose routers chose the neuron in each seed \
(a seed where none did is left out). SE: the standard error of the largest one, from its \
spread over that consumer's held-out batches; a cost within 2 SE of 0 is within what the \
measure moves by.
"
    );
    let _ = writeln!(
        out,
        "| seed | height | Spearman | Pearson |
|---|---|---|---|"
    );
    for r in reports {
        let f = |x: Option<f64>| x.map_or("undefined".to_string(), |v| format!("{v:+.3}"));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            r.seed,
            r.height,
            f(r.spearman_rank_cost),
            f(r.pearson_rank_cost)
        );
    }
    out
}

/// Writes `summary.json` and `summary.md` into `dir`; gives back the Markdown.
pub fn write_summary(reports: &[ReportJson], dir: &Path) -> Result<String> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Io {
        path: dir.to_path_buf(),
        source: e,
    })?;
    let s = summary(reports);
    let md = summary_markdown(&s, reports);
    write_file(&dir.join("summary.json"), &to_json(&s)?)?;
    write_file(&dir.join("summary.md"), &md)?;
    Ok(md)
}

pub(crate) fn to_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string_pretty(v)
        .map(|mut s| {
            s.push('\n');
            s
        })
        .map_err(|e| Error::Config(format!("encoding JSON: {e}")))
}

pub(crate) fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })
}

/// The correlations of one measurement.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Agreement {
    /// Spearman correlation of the ledger rank with the measured removal cost.
    pub rank_spearman: f64,
    /// Pearson correlation of the ledger rank with the measured removal cost.
    pub rank_pearson: f64,
    /// Spearman correlation of the second-order (Fisher) approximation with the removal cost.
    pub second_spearman: f64,
    /// Pearson correlation of the second-order (Fisher) approximation with the removal cost.
    pub second_pearson: f64,
    /// Pearson correlation of the first- plus second-order terms with the removal cost.
    pub taylor_pearson: f64,
}

/// The correlations of a measurement.
pub fn agreement(m: &Measurement) -> Agreement {
    let exact: Vec<f64> = m.cost.iter().map(|c| c.exact).collect();
    let second: Vec<f64> = m.cost.iter().map(|c| c.second).collect();
    let taylor: Vec<f64> = m.cost.iter().map(|c| c.first + c.second).collect();
    Agreement {
        rank_spearman: spearman(&m.rank, &exact),
        rank_pearson: pearson(&m.rank, &exact),
        second_spearman: spearman(&second, &exact),
        second_pearson: pearson(&second, &exact),
        taylor_pearson: pearson(&taylor, &exact),
    }
}

/// 1-based places of `xs` from the largest down (ties share the better place).
pub fn places(xs: &[f64]) -> Vec<usize> {
    xs.iter()
        .map(|x| 1 + xs.iter().filter(|y| y.total_cmp(x).is_gt()).count())
        .collect()
}

fn fmt_corr(v: f64) -> String {
    if v.is_finite() {
        format!("{v:+.3}")
    } else {
        "undefined".to_string()
    }
}

/// The Markdown report of a run.
pub fn markdown(run: &NetRun, plots: &[PathBuf]) -> String {
    let mut s = String::new();
    let cfg = &run.config;
    let snap = &run.final_snapshot;
    let steps: Vec<usize> = run.neurons.iter().map(|n| n.steps).collect();
    let _ = writeln!(s, "# bt net up\n");
    let _ = writeln!(
        s,
        "{} neurons, {} steps each{}, seed {}, transport {}, mechanism {}, ledger height {}.\n",
        run.neurons.len(),
        steps.iter().min().copied().unwrap_or(0),
        if run.stopped_early {
            " (stopped early)"
        } else {
            ""
        },
        cfg.seed,
        match cfg.transport {
            Transport::Lockstep => format!("lockstep ({} blocks a step)", cfg.blocks_per_step),
            Transport::Grpc => "grpc".to_string(),
        },
        cfg.mechanism,
        snap.height
    );
    let _ = writeln!(s, "Machine: {}.\n", machine());
    let _ = writeln!(s, "Settings: {}.\n", Settings::of(cfg).line());
    let Some(last) = run.measurements.last() else {
        let _ = writeln!(s, "No measurement was taken.");
        return s;
    };
    let opt = |x: Option<f64>, digits: usize| {
        x.map_or_else(|| "-".to_string(), |v| format!("{v:.digits$}"))
    };
    let _ = writeln!(
        s,
        "| uid | neuron | role | data | held-out loss alone | held-out loss in network | stake (TAO) | share of minted | ledger rank | place | removal cost ± SE | place | second-order approx. | self-weight |"
    );
    let _ = writeln!(
        s,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    let rows = json(run).neurons;
    for n in &rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {:.2} | {} | {:.3} | {} | {:+.4}{} | {} | {:.4} | {} |",
            n.uid,
            n.name,
            n.role,
            n.data,
            opt(n.loss_alone, 4),
            opt(n.loss_network, 4),
            n.stake_tao,
            opt(n.minted_share, 3),
            n.rank,
            n.rank_place,
            n.removal_cost,
            plus_minus(n.removal_cost_se),
            n.cost_place,
            n.second_order,
            opt(n.self_weight, 3),
        );
    }
    let _ = writeln!(
        s,
        "\nLosses are nats per byte on each neuron's held-out tenth. The removal cost of a neuron \
         is the increase of the benchmark B (the sum of every neuron's held-out loss) when its \
         answers are zeroed in every consumer (paper eq. 2, measured exactly); the second-order \
         approximation is the paper's Fisher form of the same quantity. Places count from 1 = \
         highest.\n"
    );
    let a = agreement(last);
    let _ = writeln!(s, "## The ideal rank against the ledger's\n");
    let _ = writeln!(s, "| | Spearman | Pearson |\n|---|---|---|");
    let _ = writeln!(
        s,
        "| ledger rank vs removal cost | {} | {} |",
        fmt_corr(a.rank_spearman),
        fmt_corr(a.rank_pearson)
    );
    let _ = writeln!(
        s,
        "| second-order approximation vs removal cost | {} | {} |",
        fmt_corr(a.second_spearman),
        fmt_corr(a.second_pearson)
    );
    let _ = writeln!(
        s,
        "| first + second order vs removal cost | | {} |\n",
        fmt_corr(a.taylor_pearson)
    );
    for n in rows.iter().filter(|n| n.role != RoleKind::Honest.as_str()) {
        let _ = writeln!(
            s,
            "- **{}** ({}): place {} of {} by ledger rank, place {} of {} by removal cost{}.",
            n.name,
            n.role,
            n.rank_place,
            rows.len(),
            n.cost_place,
            rows.len(),
            n.removal_cost_max_consumer.map_or_else(
                || "; no consumer's router chose it".to_string(),
                |max| format!(
                    "; the most one consumer measured: {max:+.4}{}",
                    plus_minus(n.removal_cost_max_consumer_se)
                )
            )
        );
    }
    if run.measurements.len() > 1 {
        let _ = writeln!(s, "\n## Over the run\n");
        let _ = writeln!(
            s,
            "| epoch | height | Spearman(rank, cost) | Pearson(rank, cost) | Pearson(second order, cost) |\n|---|---|---|---|---|"
        );
        for m in &run.measurements {
            let a = agreement(m);
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                m.epoch.map_or("end".to_string(), |e| e.to_string()),
                m.height,
                fmt_corr(a.rank_spearman),
                fmt_corr(a.rank_pearson),
                fmt_corr(a.second_pearson)
            );
        }
    }
    let mean_ms: f64 =
        run.neurons.iter().map(|n| n.step_ms).sum::<f64>() / run.neurons.len().max(1) as f64;
    let _ = writeln!(
        s,
        "\nWall time {:.0} s; mean wall time of a network step: {mean_ms:.0} ms (every neuron \
         and its twin alone share the machine's cores).",
        run.wall.as_secs_f64()
    );
    if !plots.is_empty() {
        let _ = writeln!(s, "\n## Plots\n");
        for p in plots
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "png"))
        {
            if let Some(name) = p.file_name().and_then(|n| n.to_str()) {
                let _ = writeln!(s, "![{name}]({name})");
            }
        }
    }
    s
}

/// Writes the plots, `report.md` and `report.json` into `dir`; gives back the report's path
/// and text.
pub fn write(run: &NetRun, dir: &Path) -> Result<(PathBuf, String)> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Io {
        path: dir.to_path_buf(),
        source: e,
    })?;
    let plots = crate::plots::all(run, dir)?;
    let path = dir.join("report.md");
    let text = markdown(run, &plots);
    write_file(&path, &text)?;
    write_file(&dir.join("report.json"), &to_json(&json(run))?)?;
    Ok((path, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_names_its_machine_and_older_reports_still_read() {
        let m = machine();
        assert!(m.contains(std::env::consts::ARCH), "{m}");
        assert!(m.ends_with(')'), "{m}");
        // A report.json written before the machine was recorded (the tournament reads them
        // back to resume) reads with `machine: null`.
        let old = r#"{"seed": 1, "mechanism": "paper", "transport": "lockstep",
            "blocks_per_step": 7, "steps": 3, "stopped_early": false, "height": 22,
            "spearman_rank_cost": null, "pearson_rank_cost": null,
            "pearson_second_cost": null, "neurons": []}"#;
        let r: ReportJson = serde_json::from_str(old).unwrap();
        assert_eq!(r.machine, None);
        assert_eq!(r.settings, None);
        let s = summary(std::slice::from_ref(&r));
        let md = summary_markdown(&s, std::slice::from_ref(&r));
        assert!(
            !md.contains("Machine:") && !md.contains("Settings:"),
            "{md}"
        );
        // A report with settings names them, and they survive the round trip.
        let cfg = UpConfig {
            mask: false,
            text_bytes: Some(30_000),
            router: RouterConfig {
                w_remote: DataWeight::Auto,
                w_local: DataWeight::Auto,
                rest_unhelpful: true,
                ..Default::default()
            },
            ..UpConfig::default()
        };
        let with = ReportJson {
            settings: Some(Settings::of(&cfg)),
            ..r
        };
        let back: ReportJson =
            serde_json::from_str(&serde_json::to_string(&with).unwrap()).unwrap();
        assert_eq!(back, with);
        let md = summary_markdown(&summary(std::slice::from_ref(&with)), &[with]);
        assert!(
            md.contains(
                "Settings: --mask off --peer-adapter on --backward with-own-step \
                 --remote-loss auto --local-loss auto --weight-decay auto --eval-batches 4 \
                 --rest-unhelpful on \
                 --text-bytes 30000."
            ),
            "{md}"
        );
        // Settings written before the local objective existed: their learners had none.
        let old: Settings = serde_json::from_str(
            r#"{"mask": true, "adapter": true, "adapter_init": "zero",
                "backward": "with_own_step", "w_remote": 0.0, "text_bytes": null}"#,
        )
        .unwrap();
        assert_eq!(old.w_local, DataWeight::Fixed(0.0));
        assert_eq!(old.eval_batches, 4);
        assert!(!old.rest_unhelpful);
        assert_eq!(old.weight_decay, DataWeight::Fixed(0.0));
        assert!(
            old.line().ends_with(
                "--remote-loss 0 --local-loss 0 --weight-decay 0 --eval-batches 4 \
                     --rest-unhelpful off"
            ),
            "{}",
            old.line()
        );
    }

    #[test]
    fn a_summary_counts_the_seeds_where_a_consumer_measured_a_neuron_helpful_and_by_how_much() {
        let neuron = |max: Option<f64>, se: Option<f64>| NeuronJson {
            uid: 4,
            name: "noise".into(),
            role: "noise".into(),
            data: "sotu".into(),
            loss_alone: Some(2.3),
            loss_network: Some(2.2),
            stake_tao: 1.0,
            minted_share: None,
            adversary: false,
            rank: 0.0,
            rank_place: 1,
            removal_cost: max.unwrap_or(0.0),
            removal_cost_se: se,
            removal_cost_open: None,
            removal_cost_min_consumer: max,
            removal_cost_max_consumer: max,
            removal_cost_max_consumer_se: se,
            cost_place: 1,
            second_order: 0.0,
            self_weight: None,
        };
        let report = |seed, n| ReportJson {
            seed,
            mechanism: "paper".into(),
            transport: "lockstep".into(),
            blocks_per_step: Some(7),
            steps: 3,
            stopped_early: false,
            height: 22,
            spearman_rank_cost: None,
            pearson_rank_cost: None,
            pearson_second_cost: None,
            neurons: vec![n],
            machine: None,
            settings: None,
        };
        let reports = [
            // Below 0; above 0 within 2 SE; above by more; above with no SE (an older report);
            // no consumer chose it.
            report(0, neuron(Some(-0.001), Some(0.001))),
            report(1, neuron(Some(0.0004), Some(0.0003))),
            report(2, neuron(Some(0.003), Some(0.001))),
            report(3, neuron(Some(0.002), None)),
            report(4, neuron(None, None)),
        ];
        let s = summary(&reports);
        let n = &s.neurons[0];
        assert_eq!(n.max_consumer_above_zero, 3);
        assert_eq!(n.max_consumer_clearly_above_zero, 1);
        assert_eq!(n.better, 5);
        let md = summary_markdown(&s, &reports);
        assert!(
            md.contains("| 5 of 5 |") && md.contains("| 3 (1) |"),
            "{md}"
        );
        // A neuron that no router chose in any seed is said to be so.
        let unchosen = [report(5, neuron(None, None)), report(6, neuron(None, None))];
        let md = summary_markdown(&summary(&unchosen), &unchosen);
        assert!(
            md.contains("| none chose it | none chose it | 0 (0) |"),
            "{md}"
        );
        // A report.json from before the errors were recorded reads them as null.
        let mut old = serde_json::to_value(&reports[2]).unwrap();
        for n in old["neurons"].as_array_mut().unwrap() {
            let n = n.as_object_mut().unwrap();
            n.remove("removal_cost_se");
            n.remove("removal_cost_max_consumer_se");
        }
        let back: ReportJson = serde_json::from_value(old).unwrap();
        assert_eq!(back.neurons[0].removal_cost_max_consumer_se, None);
        assert_eq!(back.neurons[0].removal_cost_se, None);
    }

    #[test]
    fn stats_skip_undefined_values() {
        let s = Stat::of([Some(1.0), None, Some(3.0), Some(f64::NAN)]);
        assert_eq!(s.n, 2);
        assert_eq!(s.mean, Some(2.0));
        assert!((s.std.unwrap() - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(Stat::of([Some(1.0)]).std, None);
        assert_eq!(Stat::of([None]).mean, None);
    }

    #[test]
    fn places_count_from_the_top_and_share_ties() {
        assert_eq!(places(&[0.1, 0.5, 0.3, 0.5]), vec![4, 1, 3, 1]);
        assert_eq!(places(&[]), Vec::<usize>::new());
    }
}
