//! `bt sim epoch` through the command-line layer: every mechanism, `--fixed` against `f64`,
//! and the rejections.

#![allow(clippy::unwrap_used)]

use bt_cli::{Cli, run};
use clap::Parser;

fn bt(args: &[&str]) -> anyhow::Result<()> {
    let mut all = vec!["bt"];
    all.extend_from_slice(args);
    run(Cli::try_parse_from(all)?)
}

/// subtensor's test_bonds state (spec/yuma.md).
const TEST_BONDS: &str = r#"{
  "stake": [0.1, 0.2, 0.3, 0.4, 0, 0, 0, 0],
  "weights": [
    [1, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0.1, 0.2, 0.3, 0.4],
    [0, 0, 0, 0, 0.1, 0.2, 0.3, 0.4],
    [0, 0, 0, 0, 0.1, 0.2, 0.3, 0.4],
    [0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0]
  ],
  "bonds": [
    [0, 0, 0, 0, 1, 1, 1, 1],
    [0, 0, 0, 0, 2, 2, 2, 2],
    [0, 0, 0, 0, 3, 3, 3, 3],
    [0, 0, 0, 0, 4, 4, 4, 4],
    [0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0]
  ],
  "kappa": 0.5,
  "bonds_moving_average": 0.9,
  "bonds_penalty": 1.0
}"#;

fn epoch(dir: &std::path::Path, mechanism: &str, fixed: bool) -> serde_json::Value {
    let input = dir.join("in.json");
    std::fs::write(&input, TEST_BONDS).unwrap();
    let out = dir.join(format!("{mechanism}-{fixed}.json"));
    let mut args = vec![
        "sim",
        "epoch",
        "--mechanism",
        mechanism,
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    if fixed {
        args.push("--fixed");
    }
    bt(&args).unwrap();
    serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn yuma_writes_the_test_bonds_figures_in_f64_and_fixed_point() {
    let dir = tempfile::tempdir().unwrap();
    let want_d = [0.09, 0.20222, 0.30333, 0.40444, 0.0, 0.0, 0.0, 0.0];
    let want_e = [0.045, 0.10111, 0.15167, 0.20222, 0.05, 0.1, 0.15, 0.2];
    let f = epoch(dir.path(), "yuma", false);
    let x = epoch(dir.path(), "yuma", true);
    for json in [&f, &x] {
        assert_eq!(json["mechanism"], "yuma");
        for key in ["consensus", "trust", "incentive", "dividends", "emission"] {
            assert_eq!(floats(&json[key]).len(), 8, "{key}");
        }
        assert_eq!(json["bonds"].as_array().unwrap().len(), 8);
        let d = floats(&json["dividends"]);
        let e = floats(&json["emission"]);
        for i in 0..8 {
            assert!((d[i] - want_d[i]).abs() < 5e-6, "dividends {d:?}");
            assert!((e[i] - want_e[i]).abs() < 5e-6, "emission {e:?}");
        }
    }
    // Fixed point agrees with f64 to within its resolution.
    for key in ["consensus", "trust", "incentive", "dividends", "emission"] {
        for (a, b) in floats(&f[key]).iter().zip(floats(&x[key])) {
            assert!((a - b).abs() < 1e-8, "{key}: {a} vs {b}");
        }
    }
}

#[test]
fn the_paper_mechanisms_write_rank_and_inflation() {
    let dir = tempfile::tempdir().unwrap();
    let paper = epoch(dir.path(), "paper", false);
    let no_self = epoch(dir.path(), "paper_no_self", false);
    let no_self_fixed = epoch(dir.path(), "paper_no_self", true);
    assert!(paper.get("emission").is_none());
    let r = floats(&paper["rank"]);
    let r0 = floats(&no_self["rank"]);
    // Neuron 0 weighs only itself: ranked under paper, not without the diagonal.
    assert!((r[0] - 0.1 / 8.0).abs() < 1e-12);
    assert_eq!(r0[0], 0.0);
    assert_eq!(floats(&no_self["inflation"])[0], 0.0);
    for (a, b) in r0.iter().zip(floats(&no_self_fixed["rank"])) {
        assert!((a - b).abs() < 1e-8);
    }
    let total: f64 = floats(&paper["inflation"]).iter().sum();
    let l2 = r.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((total - r.iter().sum::<f64>() / l2).abs() < 1e-9);
}

#[test]
fn bad_input_and_flags_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.json");
    let path = input.to_str().unwrap();
    std::fs::write(&input, r#"{"stake":[1,1],"weights":[[0,1]]}"#).unwrap();
    let err = bt(&["sim", "epoch", "--mechanism", "yuma", "--input", path]).unwrap_err();
    assert!(matches!(
        err.downcast_ref::<bt_sim::Error>(),
        Some(bt_sim::Error::EpochShape {
            what: "weights",
            row: None,
            ..
        })
    ));
    std::fs::write(
        &input,
        r#"{"stake":[1,1],"weights":[[0,1],[1,0]],"kappa":2}"#,
    )
    .unwrap();
    let err = bt(&[
        "sim",
        "epoch",
        "--mechanism",
        "yuma",
        "--input",
        path,
        "--fixed",
    ])
    .unwrap_err();
    assert!(matches!(
        err.downcast_ref::<bt_sim::Error>(),
        Some(bt_sim::Error::Mechanism(bt_mechanism::Error::Parameter {
            name: "kappa",
            ..
        }))
    ));
    let err = bt(&["sim", "epoch", "--mechanism", "yuma3", "--input", path]).unwrap_err();
    assert!(err.downcast_ref::<clap::Error>().is_some(), "{err:#}");
    let missing = dir.path().join("absent.json");
    let err = bt(&[
        "sim",
        "epoch",
        "--mechanism",
        "paper",
        "--input",
        missing.to_str().unwrap(),
    ])
    .unwrap_err();
    assert!(err.downcast_ref::<std::io::Error>().is_some(), "{err:#}");
}
