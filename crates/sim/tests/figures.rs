//! The sweeps and their outputs on small instances.

#![allow(clippy::unwrap_used)]

use bt_sim::fig4::{self, Fig4Config};
use bt_sim::fig5::{self, Fig5Config};
use bt_sim::instance::Instance;
use bt_sim::plot;
use bt_sim::run::{RunConfig, run};

fn small(max_steps: u64) -> RunConfig {
    RunConfig {
        temperature: 0.1,
        max_steps: Some(max_steps),
        ..RunConfig::default()
    }
}

#[test]
fn run_reports_the_schema_and_keeps_rows_on_the_simplex() {
    let inst = Instance::random(10, 1).unwrap();
    let res = run(
        &inst,
        &RunConfig {
            alpha: 10.0,
            ..small(500)
        },
        |_| {},
    )
    .unwrap();
    assert_eq!(res.n, 10);
    assert_eq!(res.weights.len(), 10);
    for row in &res.weights {
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(row.iter().all(|&x| x >= 0.0));
    }
    let json = serde_json::to_value(&res).unwrap();
    for key in [
        "steps",
        "converged",
        "weights",
        "rank",
        "ideal_rank",
        "pearson",
        "spearman",
    ] {
        assert!(json.get(key).is_some(), "JSON lacks {key}");
    }
}

#[test]
fn low_price_of_loss_gives_the_identity_and_flat_ranks() {
    let inst = Instance::random(8, 2).unwrap();
    let res = run(
        &inst,
        &RunConfig {
            alpha: 1e-3,
            ..small(20_000)
        },
        |_| {},
    )
    .unwrap();
    assert!(
        res.converged,
        "stopped after {} steps without converging",
        res.steps
    );
    assert!((res.mean_diagonal - 1.0).abs() < 1e-9);
    assert!(res.rank.iter().all(|r| (r - 1.0 / 8.0).abs() < 1e-9));
    // A flat rank has no correlation: reported as null, not as a number.
    assert!(res.pearson.is_none() && res.spearman.is_none());
}

#[test]
fn fig4_sweep_summarises_every_ratio_and_draws_its_figures() {
    let config = Fig4Config {
        n: 8,
        seeds: 2,
        first_seed: 0,
        ratios: vec![0.001, 10.0],
        base: RunConfig {
            tau: 1.0,
            ..small(3_000)
        },
    };
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let out = fig4::sweep(&config, |_| {
        calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    })
    .unwrap();
    assert_eq!(calls.into_inner(), 4);
    assert_eq!(out.runs.len(), 4);
    assert_eq!(out.summaries.len(), 2);
    assert_eq!(out.scatters.len(), 2);
    assert!(out.summaries[0].diagonal_mean > out.summaries[1].diagonal_mean);
    let dir = tempfile::tempdir().unwrap();
    fig4::write_csv(&out, dir.path()).unwrap();
    let csv = std::fs::read_to_string(dir.path().join("fig4_summary.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3);
    let mut files = plot::fig4_correlation(&out, dir.path()).unwrap();
    files.extend(plot::fig4_scatter(&out, dir.path()).unwrap());
    for f in files {
        let len = std::fs::metadata(&f).unwrap().len();
        assert!(len > 1000, "{} is only {len} bytes", f.display());
    }
    assert!(
        fig4::sweep(
            &Fig4Config {
                ratios: vec![],
                ..config.clone()
            },
            |_| {}
        )
        .is_err()
    );
    assert!(
        fig4::sweep(
            &Fig4Config {
                ratios: vec![f64::NAN],
                ..config
            },
            |_| {}
        )
        .is_err()
    );
}

#[test]
fn fig5_raises_tau_from_zero_toward_the_target() {
    let inst = Instance::random(8, 3).unwrap();
    let config = Fig5Config {
        base: small(0),
        target: 1.0,
        eta: 0.05,
        steps: 400,
        record_every: 10,
    };
    let out = fig5::adaptive(&inst, &config, |_| {}).unwrap();
    assert_eq!(out.points.len(), 40);
    // Random W0 has sparsity about 1/(n-1), far under the target, so tau must rise.
    assert!(out.points[0].sparsity < 1.0);
    assert!(out.points.iter().any(|p| p.tau > 0.0));
    assert!(
        out.points
            .iter()
            .any(|p| p.sparsity > out.points[0].sparsity)
    );
    let dir = tempfile::tempdir().unwrap();
    fig5::write_csv(&out, dir.path()).unwrap();
    assert_eq!(plot::fig5(&out, 1.0, dir.path()).unwrap().len(), 2);
    let bad = Fig5Config {
        eta: -1.0,
        ..config
    };
    assert!(
        fig5::adaptive(&inst, &bad, |_| {})
            .unwrap_err()
            .to_string()
            .contains("eta")
    );
}
