//! The tournament (`bt net tournament`): each mechanism, with the competitive mask on and off,
//! against each adversary, over several seeds, in lockstep. Every run is the honest network
//! (`neurons - 2` honest learners and one noise neuron) plus the adversary's identities
//! ([`crate::up::roles`]); it measures how much of what was minted the adversary took against
//! how much value it gave.
//!
//! The yardstick is the removal cost with the masks open (every answer unscaled, the routers
//! run again on it): the mask serves a peer only to callers that weigh it, so the removal cost
//! measured through the masks rises for whoever got weight, and a mechanism would be judged by
//! a measure it shaped. Both figures are written; the goals use the open one.
//!
//! # Example
//! ```no_run
//! use bt_net::tournament::{TournamentConfig, run};
//! use std::sync::atomic::AtomicBool;
//! let cfg = TournamentConfig::default();
//! let t = run(&cfg, &AtomicBool::new(false)).unwrap();
//! bt_net::tournament::write(&t, &cfg.out).unwrap();
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use bt_ledger::Mechanism;
use bt_mechanism::stats::{pearson, spearman};
use bt_sim::plot::{DrawResult, Figure, err, render};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::lockstep::Twins;
use crate::plots::{colour, panel};
use crate::report::{ReportJson, Stat, on_off, to_json, write_file};
use crate::up::{RoleKind, UpConfig};

/// How to run a tournament.
#[derive(Clone, Debug)]
pub struct TournamentConfig {
    /// Every run's settings but the mechanism, the mask, the adversary and the seed
    /// (lockstep; `neurons - 2` honest learners and a noise neuron before the adversary).
    pub network: UpConfig,
    /// The mechanisms.
    pub mechanisms: Vec<Mechanism>,
    /// The competitive mask on (`true`) and/or off.
    pub masks: Vec<bool>,
    /// The adversaries.
    pub adversaries: Vec<RoleKind>,
    /// Seeds per setting: `seed .. seed + seeds`.
    pub seeds: usize,
    /// Where `tournament.json`, `tournament.md`, the plot and each run's report go.
    pub out: PathBuf,
    /// Show a progress bar over the runs.
    pub progress: bool,
    /// Runs at a time (each is itself parallel over its neurons).
    pub jobs: usize,
    /// Keep the runs that an earlier tournament with the same settings finished in `out`
    /// (their `report.json` and `run.json`), and run only the others.
    pub resume: bool,
}

impl Default for TournamentConfig {
    /// The default tournament: 3 mechanisms x 2 masks x 7 adversaries x 3 seeds, each run a
    /// short one (100 steps, epochs of 10, removal costs measured at the end) so that the
    /// whole fits in about an hour and a half on 2 cores.
    fn default() -> TournamentConfig {
        TournamentConfig {
            network: UpConfig {
                steps: 100,
                epoch_steps: 10,
                measure_every: 0,
                progress: false,
                held_out_each_epoch: false,
                ..UpConfig::default()
            },
            mechanisms: vec![Mechanism::Paper, Mechanism::PaperNoSelf, Mechanism::Yuma],
            masks: vec![true, false],
            adversaries: RoleKind::ADVERSARIES.to_vec(),
            seeds: 3,
            out: PathBuf::from("out/tournament"),
            progress: true,
            jobs: 1,
            resume: false,
        }
    }
}

impl TournamentConfig {
    /// Checks the settings, naming the one that is wrong.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Config(m.to_string()));
        if self.mechanisms.is_empty() {
            return bad("--mechanisms names none");
        }
        if self.masks.is_empty() {
            return bad("--masks names none (on, off)");
        }
        if self.adversaries.is_empty() {
            return bad("--adversaries names none");
        }
        if self.seeds < 1 {
            return bad("--seeds must be at least 1");
        }
        if self.jobs < 1 {
            return bad("--jobs must be at least 1");
        }
        for &a in &self.adversaries {
            let mut c = self.network.clone();
            c.adversary = a;
            c.validate()?;
        }
        Ok(())
    }

    /// Every run: each seed's whole table (mechanism, mask, adversary) before the next seed's,
    /// so that a tournament cut short has every setting on the seeds it finished.
    fn runs(&self) -> Vec<UpConfig> {
        let mut out = Vec::new();
        for k in 0..self.seeds as u64 {
            for &mechanism in &self.mechanisms {
                for &mask in &self.masks {
                    for &adversary in &self.adversaries {
                        let mut c = self.network.clone();
                        c.mechanism = mechanism;
                        c.mask = mask;
                        c.adversary = adversary;
                        c.seed = self.network.seed.wrapping_add(k);
                        c.progress = false;
                        c.dashboard = None;
                        c.out = self.out.join("runs").join(format!(
                            "{mechanism}-mask-{}-{}-seed-{}",
                            on_off(mask),
                            adversary.as_str(),
                            c.seed
                        ));
                        out.push(c);
                    }
                }
            }
        }
        out
    }
}

/// One run of the tournament.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The ledger's mechanism.
    pub mechanism: String,
    /// Whether the competitive mask was on.
    pub mask: bool,
    /// The adversary.
    pub adversary: String,
    /// The run's seed.
    pub seed: u64,
    /// The adversary identities' share of everything minted over the run.
    pub adversary_emission_share: Option<f64>,
    /// Their share of the summed positive removal costs with the masks open (the yardstick).
    pub adversary_value_share: Option<f64>,
    /// The same share measured through the masks as served.
    pub adversary_value_share_masked: Option<f64>,
    /// Spearman(final ledger rank, open removal cost) over every neuron.
    pub spearman: Option<f64>,
    /// Pearson(final ledger rank, open removal cost) over every neuron.
    pub pearson: Option<f64>,
    /// Spearman(final ledger rank, removal cost through the masks), as `report.json` has it.
    pub spearman_masked: Option<f64>,
    /// Mean over the honest learners of held-out loss alone minus in the network (nats per
    /// token; positive: the network helped).
    pub honest_gain: Option<f64>,
    /// The noise neuron's place by ledger rank (1 = highest), of `neurons`.
    pub noise_place: Option<usize>,
    /// Neurons in the run.
    pub neurons: usize,
    /// Wall time of the run, seconds.
    pub wall_s: f64,
}

impl Row {
    /// The row of one run's report.
    pub fn of(r: &ReportJson, mask: bool, adversary: RoleKind, wall_s: f64) -> Row {
        let share = |f: &dyn Fn(&crate::report::NeuronJson) -> Option<f64>| -> Option<f64> {
            let v: Option<Vec<f64>> = r.neurons.iter().map(|n| f(n).map(|x| x.max(0.0))).collect();
            let v = v?;
            let total: f64 = v.iter().sum();
            (total > 0.0).then(|| {
                r.neurons
                    .iter()
                    .zip(&v)
                    .filter(|(n, _)| n.adversary)
                    .map(|(_, x)| x)
                    .sum::<f64>()
                    / total
            })
        };
        let rank: Vec<f64> = r.neurons.iter().map(|n| n.rank).collect();
        let open: Option<Vec<f64>> = r.neurons.iter().map(|n| n.removal_cost_open).collect();
        let defined = |x: f64| x.is_finite().then_some(x);
        let gains: Vec<f64> = r
            .neurons
            .iter()
            .filter(|n| n.role == RoleKind::Honest.as_str())
            .filter_map(|n| Some(n.loss_alone? - n.loss_network?))
            .collect();
        Row {
            mechanism: r.mechanism.clone(),
            mask,
            adversary: adversary.as_str().to_string(),
            seed: r.seed,
            adversary_emission_share: share(&|n| n.minted_share),
            adversary_value_share: share(&|n| n.removal_cost_open),
            adversary_value_share_masked: share(&|n| Some(n.removal_cost)),
            spearman: open.as_ref().and_then(|c| defined(spearman(&rank, c))),
            pearson: open.as_ref().and_then(|c| defined(pearson(&rank, c))),
            spearman_masked: r.spearman_rank_cost,
            honest_gain: (!gains.is_empty())
                .then(|| gains.iter().sum::<f64>() / gains.len() as f64),
            noise_place: r
                .neurons
                .iter()
                .find(|n| n.role == RoleKind::Noise.as_str())
                .map(|n| n.rank_place),
            neurons: r.neurons.len(),
            wall_s,
        }
    }

    /// How far the adversary's emission share exceeds its value share.
    pub fn excess(&self) -> Option<f64> {
        Some(self.adversary_emission_share? - self.adversary_value_share?)
    }
}

/// A finished (or interrupted) tournament.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tournament {
    /// Every finished run, in the table's order.
    pub rows: Vec<Row>,
    /// Runs planned.
    pub planned: usize,
    /// Whether Ctrl-C ended it before every run finished.
    pub interrupted: bool,
    /// Runs kept from an earlier tournament (`--resume`); the wall time does not count them.
    #[serde(default)]
    pub resumed: usize,
    /// Wall time, seconds.
    pub wall_s: f64,
    /// Steps per run.
    pub steps: usize,
    /// The `--neurons` of each run (before the adversary's extra identities).
    pub neurons: usize,
}

/// Runs every setting (two runs at a time where there are two cores or more; each run is
/// itself parallel over its neurons). Each run's report goes into `out/runs/...`. Ctrl-C (`stop`) ends the
/// runs in flight early; they are left out, and what finished is given back.
pub fn run(cfg: &TournamentConfig, stop: &AtomicBool) -> Result<Tournament> {
    cfg.validate()?;
    let start = Instant::now();
    let runs = cfg.runs();
    let bar = if cfg.progress {
        ProgressBar::new(runs.len() as u64)
    } else {
        ProgressBar::with_draw_target(Some(runs.len() as u64), ProgressDrawTarget::hidden())
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} runs, eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let rows: Mutex<Vec<Option<Row>>> = Mutex::new(vec![None; runs.len()]);
    if cfg.resume {
        for (k, c) in runs.iter().enumerate() {
            if let Some(row) = finished(c) {
                lock(&rows)[k] = Some(row);
                bar.inc(1);
            }
        }
    }
    let resumed = lock(&rows).iter().flatten().count();
    if resumed > 0 {
        bar.println(format!(
            "kept {resumed} of {} runs finished earlier in {}",
            runs.len(),
            cfg.out.display()
        ));
    }
    let next = AtomicUsize::new(0);
    // Each seed's twins alone train in its first run and are known to the rest.
    let twins = Twins::default();
    // `jobs` runs at a time, each on its own thread and parallel over its neurons in rayon's
    // pool. (Not a rayon loop over runs: a thread waiting inside one run would steal and
    // start others.)
    let workers = cfg.jobs.max(1);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::SeqCst);
                    if k >= runs.len()
                        || stop.load(Ordering::SeqCst)
                        || lock(&first_error).is_some()
                    {
                        return;
                    }
                    if lock(&rows)[k].is_some() {
                        continue;
                    }
                    match one(&runs[k], stop, &twins) {
                        Ok(Some(row)) => {
                            bar.inc(1);
                            bar.set_message(format!(
                                "last: {} mask {} {} seed {}",
                                row.mechanism,
                                on_off(row.mask),
                                row.adversary,
                                row.seed
                            ));
                            lock(&rows)[k] = Some(row);
                        }
                        Ok(None) => {}
                        Err(e) => {
                            lock(&first_error).get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    bar.finish_and_clear();
    if let Some(e) = lock(&first_error).take() {
        return Err(e);
    }
    let rows: Vec<Row> = rows
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .flatten()
        .collect();
    Ok(Tournament {
        interrupted: rows.len() < runs.len(),
        planned: runs.len(),
        resumed,
        rows,
        wall_s: start.elapsed().as_secs_f64(),
        steps: cfg.network.steps,
        neurons: cfg.network.neurons,
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One run: its report into `c.out`, its row; `None` when Ctrl-C cut it short.
fn one(c: &UpConfig, stop: &AtomicBool, twins: &Twins) -> Result<Option<Row>> {
    let t0 = Instant::now();
    std::fs::create_dir_all(&c.out).map_err(|e| Error::Io {
        path: c.out.clone(),
        source: e,
    })?;
    let live = crate::live::new_live();
    let progress = crate::progress::Progress::new(&c.roles(), c.steps, false);
    let net = crate::lockstep::run(c, &live, stop, &progress, t0, Some(twins))?;
    if net.stopped_early {
        return Ok(None);
    }
    let report = crate::report::json(&net);
    let wall_s = t0.elapsed().as_secs_f64();
    write_file(&c.out.join("report.json"), &to_json(&report)?)?;
    // Written last: its presence says the report beside it is whole.
    let done = RunFile {
        settings: format!("{c:?}"),
        wall_s,
    };
    write_file(&c.out.join("run.json"), &to_json(&done)?)?;
    Ok(Some(Row::of(&report, c.mask, c.adversary, wall_s)))
}

/// `run.json`, beside a finished run's `report.json`: the run's settings, so that `--resume`
/// keeps only a report of the same settings, and its wall time.
#[derive(Serialize, Deserialize)]
struct RunFile {
    settings: String,
    wall_s: f64,
}

/// The row of a run an earlier tournament finished with these settings on this machine;
/// `None` when there is none (or its files are not whole, are of other settings, or come from
/// another machine, which may round the same run differently): the run is then done again.
fn finished(c: &UpConfig) -> Option<Row> {
    let read = |name: &str| std::fs::read(c.out.join(name)).ok();
    let run: RunFile = serde_json::from_slice(&read("run.json")?).ok()?;
    if run.settings != format!("{c:?}") {
        return None;
    }
    let report: ReportJson = serde_json::from_slice(&read("report.json")?).ok()?;
    let here = report.machine.as_deref() == Some(crate::report::machine());
    (here && !report.stopped_early).then(|| Row::of(&report, c.mask, c.adversary, run.wall_s))
}

/// The rows of one setting (mechanism and mask) against one adversary.
fn cell<'a>(t: &'a Tournament, mechanism: &str, mask: bool, adversary: &str) -> Vec<&'a Row> {
    t.rows
        .iter()
        .filter(|r| r.mechanism == mechanism && r.mask == mask && r.adversary == adversary)
        .collect()
}

/// The settings and adversaries present, in the order they first appear.
fn axes(t: &Tournament) -> (Vec<(String, bool)>, Vec<String>) {
    let mut settings: Vec<(String, bool)> = Vec::new();
    let mut adversaries: Vec<String> = Vec::new();
    for r in &t.rows {
        if !settings.contains(&(r.mechanism.clone(), r.mask)) {
            settings.push((r.mechanism.clone(), r.mask));
        }
        if !adversaries.contains(&r.adversary) {
            adversaries.push(r.adversary.clone());
        }
    }
    (settings, adversaries)
}

fn show(s: &Stat, digits: usize) -> String {
    match (s.mean, s.std) {
        (Some(m), Some(d)) => format!("{m:.digits$} ± {d:.digits$}"),
        (Some(m), None) => format!("{m:.digits$}"),
        _ => "–".into(),
    }
}

/// Whether a setting meets the goals: no adversary's emission share above its value share
/// by more than 0.05 on any seed, mean Spearman at least 0.8, mean honest gain at least 0.05.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The mechanism.
    pub mechanism: String,
    /// The mask.
    pub mask: bool,
    /// The largest excess of emission share over value share, over adversaries and seeds.
    pub worst_excess: Option<f64>,
    /// The adversary with that excess.
    pub worst_adversary: Option<String>,
    /// Mean Spearman(rank, open removal cost) over every run of the setting.
    pub spearman: Option<f64>,
    /// Mean honest gain over every run of the setting.
    pub honest_gain: Option<f64>,
    /// All three goals met.
    pub met: bool,
}

/// The verdict of every setting, in the table's order.
pub fn verdicts(t: &Tournament) -> Vec<Verdict> {
    let (settings, _) = axes(t);
    settings
        .into_iter()
        .map(|(mechanism, mask)| {
            let rows: Vec<&Row> = t
                .rows
                .iter()
                .filter(|r| r.mechanism == mechanism && r.mask == mask)
                .collect();
            let worst = rows
                .iter()
                .filter_map(|r| Some((r.excess()?, r.adversary.clone())))
                .max_by(|a, b| a.0.total_cmp(&b.0));
            let spearman = Stat::of(rows.iter().map(|r| r.spearman)).mean;
            let honest_gain = Stat::of(rows.iter().map(|r| r.honest_gain)).mean;
            let met = worst.as_ref().is_some_and(|w| w.0 <= 0.05)
                && spearman.is_some_and(|s| s >= 0.8)
                && honest_gain.is_some_and(|g| g >= 0.05);
            Verdict {
                mechanism,
                mask,
                worst_excess: worst.as_ref().map(|w| w.0),
                worst_adversary: worst.map(|w| w.1),
                spearman,
                honest_gain,
                met,
            }
        })
        .collect()
}

/// `tournament.md`: the goals per setting, the table (mean ± sample std over seeds), and a
/// paragraph per adversary.
pub fn markdown(t: &Tournament, plot: Option<&Path>) -> String {
    let mut s = String::new();
    let seeds = t
        .rows
        .iter()
        .map(|r| r.seed)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let _ = writeln!(s, "# Tournament\n");
    let _ = writeln!(
        s,
        "{} of {} runs{} in {:.1} min{}: {} steps each, {} honest learners and one noise neuron \
         plus the adversary, {seeds} seed(s) per setting. Figures are mean ± sample standard \
         deviation over seeds. The value share is the adversary's share of the summed positive \
         removal costs **with the masks open** (every answer unscaled): the yardstick the goals \
         use; the masked one is beside it.\n",
        t.rows.len(),
        t.planned,
        if t.interrupted { " (interrupted)" } else { "" },
        t.wall_s / 60.0,
        if t.resumed > 0 {
            format!(
                " ({} kept from an earlier invocation and not counted in that time)",
                t.resumed
            )
        } else {
            String::new()
        },
        t.steps,
        t.neurons.saturating_sub(2),
    );
    let _ = writeln!(s, "## Goals per setting\n");
    let _ = writeln!(
        s,
        "| mechanism | mask | worst excess (emission - value share) | by | mean Spearman (open) | mean honest gain | all goals |\n|---|---|---|---|---|---|---|"
    );
    let f = |x: Option<f64>, d: usize| x.map_or("–".into(), |v| format!("{v:.d$}"));
    for v in verdicts(t) {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            v.mechanism,
            on_off(v.mask),
            f(v.worst_excess, 3),
            v.worst_adversary.as_deref().unwrap_or("–"),
            f(v.spearman, 2),
            f(v.honest_gain, 3),
            if v.met { "met" } else { "missed" }
        );
    }
    let _ = writeln!(
        s,
        "\nGoals: excess at most 0.05 on every seed, Spearman at least 0.8, honest gain at least 0.05 nats.\n"
    );
    let _ = writeln!(s, "## Every setting against every adversary\n");
    let _ = writeln!(
        s,
        "| mechanism | mask | adversary | emission share | value share (open) | value share (masked) | Spearman (open) | Pearson (open) | Spearman (masked) | honest gain | noise place |\n|---|---|---|---|---|---|---|---|---|---|---|"
    );
    let (settings, adversaries) = axes(t);
    for (m, mask) in &settings {
        for a in &adversaries {
            let rows = cell(t, m, *mask, a);
            if rows.is_empty() {
                continue;
            }
            let st = |g: &dyn Fn(&Row) -> Option<f64>| Stat::of(rows.iter().map(|r| g(r)));
            let _ = writeln!(
                s,
                "| {m} | {} | {a} | {} | {} | {} | {} | {} | {} | {} | {} |",
                on_off(*mask),
                show(&st(&|r| r.adversary_emission_share), 3),
                show(&st(&|r| r.adversary_value_share), 3),
                show(&st(&|r| r.adversary_value_share_masked), 3),
                show(&st(&|r| r.spearman), 2),
                show(&st(&|r| r.pearson), 2),
                show(&st(&|r| r.spearman_masked), 2),
                show(&st(&|r| r.honest_gain), 3),
                show(&st(&|r| r.noise_place.map(|p| p as f64)), 1),
            );
        }
    }
    if let Some(p) = plot {
        let _ = writeln!(
            s,
            "\n![emission share against value share]({})\n",
            p.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("tournament.png")
        );
    }
    let _ = writeln!(s, "## By adversary\n");
    for a in &adversaries {
        let mut cells: Vec<(String, f64, f64, f64)> = settings
            .iter()
            .filter_map(|(m, mask)| {
                let rows = cell(t, m, *mask, a);
                let e = Stat::of(rows.iter().map(|r| r.adversary_emission_share)).mean?;
                let v = Stat::of(rows.iter().map(|r| r.adversary_value_share)).mean?;
                let x = rows
                    .iter()
                    .filter_map(|r| r.excess())
                    .fold(f64::NEG_INFINITY, f64::max);
                Some((format!("{m} with the mask {}", on_off(*mask)), e, v, x))
            })
            .collect();
        if cells.is_empty() {
            continue;
        }
        cells.sort_by(|x, y| x.3.total_cmp(&y.3));
        let held: Vec<&str> = cells
            .iter()
            .filter(|c| c.3 <= 0.05)
            .map(|c| c.0.as_str())
            .collect();
        let (best, worst) = (&cells[0], &cells[cells.len() - 1]);
        let _ = writeln!(
            s,
            "**{a}.** Its emission share against its value share: {} under {} (the best: \
             largest excess over seeds {:+.3}), {} under {} (the worst: {:+.3}). {}\n",
            format_args!("{:.3} / {:.3}", best.1, best.2),
            best.0,
            best.3,
            format_args!("{:.3} / {:.3}", worst.1, worst.2),
            worst.0,
            worst.3,
            if held.is_empty() {
                "No setting held it within 0.05 on every seed.".to_string()
            } else {
                format!("Held within 0.05 on every seed by: {}.", held.join("; "))
            }
        );
    }
    s
}

/// The plot: each run's adversary emission share against its value share, one colour per
/// mechanism, filled with the mask on and hollow with it off, and the diagonal.
struct SharePlot<'a>(&'a Tournament);

impl Figure for SharePlot<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let t = self.0;
        root.fill(&WHITE).map_err(err)?;
        let top = t
            .rows
            .iter()
            .flat_map(|r| [r.adversary_emission_share, r.adversary_value_share])
            .flatten()
            .fold(0.1f64, f64::max)
            .min(1.0)
            * 1.05;
        let mut chart = panel(
            root,
            "adversary: share of emission against share of value (masks open)",
            ("value share", 0.0..top),
            ("emission share", 0.0..top),
        )?;
        chart
            .draw_series(LineSeries::new(
                vec![(0.0, 0.0), (top, top)],
                BLACK.mix(0.4),
            ))
            .map_err(err)?;
        let (settings, _) = axes(t);
        let mechanisms: Vec<String> = settings.iter().fold(Vec::new(), |mut v, (m, _)| {
            if !v.contains(m) {
                v.push(m.clone());
            }
            v
        });
        for (k, m) in mechanisms.iter().enumerate() {
            let c = colour(k);
            let points: Vec<(f64, f64, bool)> = t
                .rows
                .iter()
                .filter(|r| &r.mechanism == m)
                .filter_map(|r| {
                    Some((
                        r.adversary_value_share?,
                        r.adversary_emission_share?,
                        r.mask,
                    ))
                })
                .collect();
            chart
                .draw_series(points.iter().map(|&(x, y, mask)| {
                    let style = if mask { c.filled() } else { c.stroke_width(2) };
                    Circle::new((x, y), 5, style)
                }))
                .map_err(err)?
                .label(m.clone())
                .legend(move |(x, y)| Circle::new((x + 8, y), 5, c.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(err)?;
        root.present().map_err(err)
    }
}

/// Writes `tournament.json`, the plot and `tournament.md` into `dir`; gives back the Markdown.
pub fn write(t: &Tournament, dir: &Path) -> Result<String> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Io {
        path: dir.to_path_buf(),
        source: e,
    })?;
    #[derive(Serialize)]
    struct Json<'a> {
        #[serde(flatten)]
        t: &'a Tournament,
        verdicts: Vec<Verdict>,
    }
    write_file(
        &dir.join("tournament.json"),
        &to_json(&Json {
            t,
            verdicts: verdicts(t),
        })?,
    )?;
    let plot = if t.rows.is_empty() {
        None
    } else {
        render(dir, "tournament", (900, 700), &SharePlot(t))?
            .into_iter()
            .next()
    };
    let md = markdown(t, plot.as_deref());
    write_file(&dir.join("tournament.md"), &md)?;
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::NeuronJson;

    fn neuron(
        role: &str,
        adversary: bool,
        minted: f64,
        open: f64,
        masked: f64,
        rank: f64,
    ) -> NeuronJson {
        NeuronJson {
            uid: 0,
            name: role.into(),
            role: role.into(),
            data: String::new(),
            loss_alone: Some(2.0),
            loss_network: Some(if role == "honest" { 1.9 } else { 2.0 }),
            stake_tao: 100.0,
            minted_share: Some(minted),
            adversary,
            rank,
            rank_place: 1,
            removal_cost: masked,
            removal_cost_se: None,
            removal_cost_open: Some(open),
            removal_cost_min_consumer: None,
            removal_cost_max_consumer: None,
            removal_cost_max_consumer_se: None,
            cost_place: 1,
            second_order: 0.0,
            self_weight: None,
        }
    }

    #[test]
    fn a_row_takes_the_adversary_shares_and_clips_negative_costs() {
        let report = ReportJson {
            seed: 3,
            mechanism: "yuma".into(),
            transport: "lockstep".into(),
            blocks_per_step: Some(7),
            steps: 10,
            stopped_early: false,
            height: 71,
            spearman_rank_cost: Some(0.5),
            pearson_rank_cost: Some(0.4),
            pearson_second_cost: None,
            machine: None,
            settings: None,
            neurons: vec![
                neuron("honest", false, 0.5, 0.6, 0.5, 3.0),
                neuron("noise", false, 0.1, -0.2, 0.1, 1.0),
                neuron("cabal", true, 0.2, 0.2, 0.3, 2.0),
                neuron("cabal", true, 0.2, 0.2, 0.1, 2.0),
            ],
        };
        let row = Row::of(&report, true, RoleKind::Cabal, 1.0);
        assert_eq!(row.adversary, "cabal");
        assert!((row.adversary_emission_share.unwrap() - 0.4).abs() < 1e-12);
        // The noise neuron's negative open cost counts as 0: 0.4 of 1.0.
        assert!((row.adversary_value_share.unwrap() - 0.4).abs() < 1e-12);
        assert!((row.adversary_value_share_masked.unwrap() - 0.4).abs() < 1e-12);
        assert!((row.excess().unwrap()).abs() < 1e-12);
        assert!((row.honest_gain.unwrap() - 0.1).abs() < 1e-6);
        assert_eq!(row.noise_place, Some(1));
        assert_eq!(row.neurons, 4);
        // Rank order 3 > 2 = 2 > 1 against open costs 0.6 > 0.2 = 0.2 > -0.2.
        assert!((row.spearman.unwrap() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn empty_axes_and_zero_seeds_are_refused() {
        let mut c = TournamentConfig::default();
        c.adversaries.clear();
        assert!(matches!(c.validate(), Err(Error::Config(m)) if m.contains("--adversaries")));
        let c = TournamentConfig {
            seeds: 0,
            ..TournamentConfig::default()
        };
        assert!(matches!(c.validate(), Err(Error::Config(m)) if m.contains("--seeds")));
        let mut c = TournamentConfig::default();
        c.mechanisms.clear();
        assert!(matches!(c.validate(), Err(Error::Config(m)) if m.contains("--mechanisms")));
    }

    #[test]
    fn the_default_plan_is_126_runs_seed_by_seed_in_table_order() {
        let runs = TournamentConfig::default().runs();
        assert_eq!(runs.len(), 3 * 2 * 7 * 3);
        assert_eq!(runs[0].mechanism, Mechanism::Paper);
        assert!(runs[0].mask);
        assert_eq!(runs[0].adversary, RoleKind::Selfish);
        assert_eq!(runs[1].adversary, RoleKind::Cabal);
        // Every setting of seed 0, then of seed 1, then of seed 2.
        assert!(runs[..42].iter().all(|r| r.seed == 0));
        assert_eq!((runs[42].seed, runs[84].seed), (1, 2));
        assert_eq!(runs[7].mechanism, Mechanism::Paper);
        assert!(!runs[7].mask);
        assert_eq!(runs[125].mechanism, Mechanism::Yuma);
        assert!(!runs[125].mask);
        assert_eq!(runs[125].adversary, RoleKind::Lazy);
        assert_eq!(runs[125].seed, 2);
    }
}
