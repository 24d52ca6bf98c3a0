//! A small tournament (one mechanism, two adversaries, tiny models, a few steps) runs and
//! writes every field of `tournament.json`; the adversaries' identities appear as designed.
//! Its outcome is not checked: a few steps measure nothing.

use std::sync::atomic::AtomicBool;

use bt_ledger::Mechanism;
use bt_net::report::ReportJson;
use bt_net::tournament::{TournamentConfig, run, write};
use bt_net::up::{RoleKind, UpConfig};
use bt_neuron::model::ModelConfig;

fn tiny(out: &std::path::Path) -> TournamentConfig {
    TournamentConfig {
        network: UpConfig {
            neurons: 4,
            steps: 4,
            epoch_steps: 2,
            measure_every: 0,
            batch: 4,
            eval_batches: 1,
            blocks_per_step: 3,
            model: ModelConfig {
                seq: 16,
                d: 16,
                heads: 2,
                hidden: 32,
                layers: 1,
                student_layers: 1,
                vocab: 256,
            },
            progress: false,
            ..UpConfig::default()
        },
        mechanisms: vec![Mechanism::Yuma],
        masks: vec![true],
        adversaries: vec![RoleKind::Sybil, RoleKind::Freerider],
        seeds: 1,
        out: out.to_path_buf(),
        progress: false,
        jobs: 1,
        resume: false,
    }
}

/// Rows without their wall times, which differ from run to run, to 10 decimals (a kept row
/// is read back from `report.json`, whose parse may differ in the last bit).
fn timeless(rows: &[bt_net::tournament::Row]) -> Vec<String> {
    rows.iter()
        .cloned()
        .map(|mut r| {
            r.wall_s = 0.0;
            format!("{r:.10?}")
        })
        .collect()
}

#[test]
fn resume_keeps_the_whole_runs_of_the_same_settings_and_redoes_the_rest() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = tiny(dir.path());
    cfg.jobs = 2;
    let first = run(&cfg, &AtomicBool::new(false))?;
    assert_eq!(first.resumed, 0);
    // The free rider's run.json is damaged: that run is done again, the sybil's is kept.
    let damaged = dir
        .path()
        .join("runs/yuma-mask-on-freerider-seed-0/run.json");
    std::fs::write(&damaged, "{\"settings\": ")?;
    cfg.resume = true;
    let again = run(&cfg, &AtomicBool::new(false))?;
    assert_eq!((again.resumed, again.rows.len()), (1, 2));
    assert_eq!(timeless(&again.rows), timeless(&first.rows));
    assert!(std::fs::read_to_string(&damaged)?.contains("\"wall_s\""));
    // A run from another machine, which may round the same run differently, is done again.
    let report = dir
        .path()
        .join("runs/yuma-mask-on-sybil-seed-0/report.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report)?)?;
    json["machine"] = "another CPU (x86_64, AVX2+FMA)".into();
    std::fs::write(&report, json.to_string())?;
    assert_eq!(run(&cfg, &AtomicBool::new(false))?.resumed, 1);
    assert_eq!(
        serde_json::from_str::<ReportJson>(&std::fs::read_to_string(&report)?)?.machine,
        Some(bt_net::report::machine().to_string())
    );
    // Other settings keep nothing.
    cfg.network.steps = 3;
    assert_eq!(run(&cfg, &AtomicBool::new(false))?.resumed, 0);
    Ok(())
}

#[test]
fn a_small_tournament_writes_every_field() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = tiny(dir.path());
    let t = run(&cfg, &AtomicBool::new(false))?;
    assert_eq!((t.rows.len(), t.planned, t.interrupted), (2, 2, false));
    let md = write(&t, dir.path())?;
    assert!(md.contains("| yuma | on | sybil |"), "{md}");
    assert!(dir.path().join("tournament.png").exists());

    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        dir.path().join("tournament.json"),
    )?)?;
    let rows = json["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    for row in rows {
        for field in [
            "mechanism",
            "mask",
            "adversary",
            "seed",
            "adversary_emission_share",
            "adversary_value_share",
            "adversary_value_share_masked",
            "spearman",
            "pearson",
            "honest_gain",
            "noise_place",
        ] {
            assert!(row.get(field).is_some(), "{field} missing in {row}");
        }
        assert_eq!(row["mechanism"], "yuma");
        let share = row["adversary_emission_share"]
            .as_f64()
            .expect("something was minted");
        assert!((0.0..=1.0).contains(&share), "{share}");
    }
    assert!(json["verdicts"].as_array().is_some_and(|v| v.len() == 1));

    // The sybil run: 2 honest, noise, then three identities sharing one neuron's stake and one
    // model (the mirrors report the first one's losses), weighing each other and honest0.
    let sybil: ReportJson = serde_json::from_str(&std::fs::read_to_string(
        dir.path()
            .join("runs/yuma-mask-on-sybil-seed-0/report.json"),
    )?)?;
    let names: Vec<&str> = sybil.neurons.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        ["honest0", "honest1", "noise", "sybil0", "sybil1", "sybil2"]
    );
    assert!(
        sybil.neurons[3..]
            .iter()
            .all(|n| n.adversary && n.role == "sybil")
    );
    assert!(sybil.neurons[..3].iter().all(|n| !n.adversary));
    assert_eq!(sybil.neurons[4].loss_network, sybil.neurons[3].loss_network);
    assert_eq!(sybil.neurons[5].loss_alone, sybil.neurons[3].loss_alone);
    assert!(sybil.neurons.iter().all(|n| n.removal_cost_open.is_some()));
    let free: ReportJson = serde_json::from_str(&std::fs::read_to_string(
        dir.path()
            .join("runs/yuma-mask-on-freerider-seed-0/report.json"),
    )?)?;
    assert_eq!(free.neurons.len(), 4);
    assert_eq!(free.neurons[3].name, "freerider");
    assert!(free.neurons[3].adversary);
    Ok(())
}

#[test]
fn bad_tournaments_are_refused_before_running() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = tiny(dir.path());
    cfg.network.neurons = 2;
    assert!(matches!(
        run(&cfg, &AtomicBool::new(false)),
        Err(bt_net::Error::Config(m)) if m.contains("--neurons")
    ));
    assert!(RoleKind::adversary("mole").is_err());
    let mut cfg = tiny(dir.path());
    cfg.jobs = 0;
    assert!(matches!(
        run(&cfg, &AtomicBool::new(false)),
        Err(bt_net::Error::Config(m)) if m.contains("--jobs")
    ));
}
