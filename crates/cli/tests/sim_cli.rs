//! `bt sim` end to end through the command-line layer, and its rejection paths.

#![allow(clippy::unwrap_used)]

use bt_cli::{Cli, run};
use clap::Parser;

fn bt(args: &[&str]) -> anyhow::Result<()> {
    let mut all = vec!["bt"];
    all.extend_from_slice(args);
    run(Cli::try_parse_from(all)?)
}

#[test]
fn instance_then_run_writes_the_documented_json() {
    let dir = tempfile::tempdir().unwrap();
    let inst = dir.path().join("i.safetensors");
    let out = dir.path().join("r.json");
    bt(&[
        "sim",
        "instance",
        "--n",
        "6",
        "--seed",
        "3",
        "--out",
        inst.to_str().unwrap(),
    ])
    .unwrap();
    bt(&[
        "sim",
        "run",
        "--instance",
        inst.to_str().unwrap(),
        "--alpha",
        "0.001",
        "--temperature",
        "0.1",
        "--max-steps",
        "20000",
        "--out",
        out.to_str().unwrap(),
    ])
    .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(json["n"], 6);
    assert_eq!(json["converged"], true);
    assert_eq!(json["weights"].as_array().unwrap().len(), 6);
    assert!(json["pearson"].is_null(), "flat ranks have no correlation");
}

#[test]
fn bad_flags_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let inst = dir.path().join("i.safetensors");
    bt(&[
        "sim",
        "instance",
        "--n",
        "4",
        "--out",
        inst.to_str().unwrap(),
    ])
    .unwrap();
    let p = inst.to_str().unwrap();
    let err = bt(&["sim", "run", "--instance", p, "--temperature", "0"]).unwrap_err();
    assert!(format!("{err:#}").contains("temperature"), "{err:#}");
    let err = bt(&["sim", "run", "--instance", p, "--lambda=-1"]).unwrap_err();
    assert!(format!("{err:#}").contains("lambda"), "{err:#}");
    let err = bt(&[
        "sim",
        "fig4",
        "--ratios",
        "1,-2",
        "--out",
        dir.path().to_str().unwrap(),
    ])
    .unwrap_err();
    assert!(format!("{err:#}").contains("--ratios"), "{err:#}");
    // clap refuses out-of-range and malformed values itself.
    assert!(bt(&["sim", "instance", "--n", "1", "--out", p]).is_err());
    assert!(bt(&["sim", "fig4", "--seeds", "0"]).is_err());
    assert!(bt(&["sim", "run", "--instance", p, "--alpha", "abc"]).is_err());
}

#[test]
fn missing_or_malformed_instance_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.safetensors");
    let err = bt(&["sim", "run", "--instance", missing.to_str().unwrap()]).unwrap_err();
    assert!(format!("{err:#}").contains("nope.safetensors"), "{err:#}");
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":1}").unwrap();
    let err = bt(&["sim", "run", "--instance", junk.to_str().unwrap()]).unwrap_err();
    assert!(format!("{err:#}").contains("junk.safetensors"), "{err:#}");
}
