//! The report of a `bt net up` run: a Markdown table (neuron, data, loss alone and in the
//! network, stake, ledger rank, removal cost, self-weight), the ideal rank measured against
//! the ledger's (Spearman and Pearson), how well the paper's second-order approximation tracks
//! the measured removal cost, and the plots ([`crate::plots`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use bt_mechanism::stats::{pearson, spearman};

use crate::error::{Error, Result};
use crate::up::{Measurement, NetRun, RoleKind};

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
        "{} neurons, {} steps each{}, seed {}, wall time {:.0} s, ledger height {}.\n",
        run.neurons.len(),
        steps.iter().min().copied().unwrap_or(0),
        if run.stopped_early {
            " (stopped early)"
        } else {
            ""
        },
        cfg.seed,
        run.wall.as_secs_f64(),
        snap.height
    );
    let Some(last) = run.measurements.last() else {
        let _ = writeln!(s, "No measurement was taken.");
        return s;
    };
    let rank_place = places(&last.rank);
    let exact: Vec<f64> = last.cost.iter().map(|c| c.exact).collect();
    let cost_place = places(&exact);
    let _ = writeln!(
        s,
        "| uid | neuron | role | data | held-out loss alone | held-out loss in network | stake (TAO) | ledger rank | place | removal cost | place | second-order approx. | self-weight |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (k, n) in run.neurons.iter().enumerate() {
        let alone = n.held_out_alone.last().map(|h| h.1).unwrap_or(f32::NAN);
        let net = n.held_out.last().map(|h| h.1).unwrap_or(f32::NAN);
        let stake = snap
            .neurons
            .get(n.uid)
            .map(|m| m.stake_tao())
            .unwrap_or(0.0);
        let self_w = snap.w.get(n.uid).and_then(|r| r.get(n.uid)).copied();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.4} | {:.4} | {:.2} | {:.3} | {} | {:+.4} | {} | {:.4} | {:.3} |",
            n.uid,
            n.role.name,
            n.role.kind.as_str(),
            n.role.data.trim_start_matches("bundled:"),
            alone,
            net,
            stake,
            last.rank[k],
            rank_place[k],
            last.cost[k].exact,
            cost_place[k],
            last.cost[k].second,
            self_w.unwrap_or(f64::NAN),
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
    for kind in [RoleKind::Noise, RoleKind::Selfish] {
        for (k, n) in run.neurons.iter().enumerate() {
            if n.role.kind == kind {
                let _ = writeln!(
                    s,
                    "- **{}** ({}): place {} of {} by ledger rank, place {} of {} by removal cost.",
                    n.role.name,
                    kind.as_str(),
                    rank_place[k],
                    run.neurons.len(),
                    cost_place[k],
                    run.neurons.len()
                );
            }
        }
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
        "\nMean wall time of a network step: {mean_ms:.0} ms (every neuron and its twin alone \
         share the machine's cores)."
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

/// Writes the plots and `report.md` into `dir`; gives back the report's path and text.
pub fn write(run: &NetRun, dir: &Path) -> Result<(PathBuf, String)> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Io {
        path: dir.to_path_buf(),
        source: e,
    })?;
    let plots = crate::plots::all(run, dir)?;
    let path = dir.join("report.md");
    let text = markdown(run, &plots);
    std::fs::write(&path, &text).map_err(|e| Error::Io {
        path: path.clone(),
        source: e,
    })?;
    Ok((path, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_count_from_the_top_and_share_ties() {
        assert_eq!(places(&[0.1, 0.5, 0.3, 0.5]), vec![4, 1, 3, 1]);
        assert_eq!(places(&[]), Vec::<usize>::new());
    }
}
