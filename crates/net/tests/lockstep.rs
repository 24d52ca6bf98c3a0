//! The lockstep network is repeatable: a small network run twice with the same seed writes the
//! same `report.json` and the same tables in `report.md`, and another seed gives another run.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use bt_net::report::ReportJson;
use bt_net::up::RoleKind;
use bt_net::up::{Transport, UpConfig, up, up_seeds};
use bt_neuron::model::ModelConfig;
use bt_neuron::weights::WeightRule;

fn role_kind(name: &str) -> RoleKind {
    match name {
        "noise" => RoleKind::Noise,
        "selfish" => RoleKind::Selfish,
        _ => RoleKind::Honest,
    }
}

fn small(seed: u64, out: &std::path::Path) -> UpConfig {
    UpConfig {
        neurons: 4,
        steps: 8,
        seed,
        out: out.to_path_buf(),
        epoch_steps: 4,
        measure_every: 1,
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
    }
}

/// Runs `cfg` and gives back `report.json` and the tables of `report.md`.
async fn run(cfg: &UpConfig) -> anyhow::Result<(String, Vec<String>)> {
    let net = up(
        cfg,
        bt_net::live::new_live(),
        Arc::new(AtomicBool::new(false)),
    )
    .await?;
    let (md, _) = bt_net::report::write(&net, &cfg.out)?;
    let json = std::fs::read_to_string(cfg.out.join("report.json"))?;
    let tables = std::fs::read_to_string(md)?
        .lines()
        .filter(|l| l.starts_with('|'))
        .map(str::to_string)
        .collect();
    Ok((json, tables))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_gives_the_same_report_and_another_seed_another() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let a = small(7, &dir.path().join("a"));
    let (json_a, tables_a) = run(&a).await?;
    let (json_b, tables_b) = run(&small(7, &dir.path().join("b"))).await?;
    assert_eq!(json_a, json_b, "two runs with seed 7 differ");
    assert_eq!(tables_a, tables_b);
    assert!(
        tables_a.len() > 6,
        "the report has its tables: {tables_a:?}"
    );

    let report: ReportJson = serde_json::from_str(&json_a)?;
    assert_eq!(report.seed, 7);
    assert_eq!(report.mechanism, "paper");
    assert_eq!(report.transport, "lockstep");
    assert_eq!(report.steps, 8);
    // One block of registrations, then three a step.
    assert_eq!(report.height, 1 + 8 * 3);
    // The machine it ran on, since another CPU may round the same run differently.
    assert_eq!(report.machine.as_deref(), Some(bt_net::report::machine()));
    assert_eq!(report.neurons.len(), 4);
    let roles: Vec<&str> = report.neurons.iter().map(|n| n.role.as_str()).collect();
    assert_eq!(roles, ["honest", "honest", "noise", "selfish"]);
    for n in &report.neurons {
        assert!(n.loss_alone.is_some() && n.loss_network.is_some(), "{n:?}");
        assert!(n.stake_tao >= 100.0, "{n:?}");
    }

    let (json_c, _) = run(&small(8, &dir.path().join("c"))).await?;
    assert_ne!(json_a, json_c, "seeds 7 and 8 gave the same run");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_seeds_write_each_report_and_a_summary() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = small(3, dir.path());
    cfg.steps = 4;
    cfg.neurons = 3;
    let (reports, md) = up_seeds(
        &cfg,
        2,
        bt_net::live::new_live(),
        Arc::new(AtomicBool::new(false)),
    )
    .await?;
    assert_eq!(reports.iter().map(|r| r.seed).collect::<Vec<_>>(), [3, 4]);
    for s in [3, 4] {
        assert!(dir.path().join(format!("seed-{s}/report.json")).exists());
    }
    let summary: bt_net::report::Summary =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json"))?)?;
    assert_eq!(summary.seeds, [3, 4]);
    let roles: Vec<&str> = summary.roles.iter().map(|r| r.role.as_str()).collect();
    assert_eq!(roles, ["honest", "noise", "selfish"]);
    assert_eq!(summary.roles[0].rank_place.n, 2);
    assert!(md.contains("Spearman(ledger rank, removal cost)"), "{md}");
    // Each neuron over the seeds: its gain is the mean of the reports' own.
    let names: Vec<&str> = summary.neurons.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["honest0", "noise", "selfish"]);
    for n in &summary.neurons {
        let gains: Vec<f64> = reports
            .iter()
            .map(|r| {
                let x = r.neurons.iter().find(|m| m.name == n.name).unwrap();
                x.loss_alone.unwrap() - x.loss_network.unwrap()
            })
            .collect();
        assert_eq!(n.gain.n, 2);
        assert!((n.gain.mean.unwrap() - (gains[0] + gains[1]) / 2.0).abs() < 1e-12);
        assert_eq!(n.better, gains.iter().filter(|g| **g > 0.0).count());
        assert!(md.contains(&format!("| {} | {} |", n.name, n.role)), "{md}");
    }
    assert!(dir.path().join("summary.md").exists());
    Ok(())
}

#[test]
fn bad_settings_are_refused_with_their_flag() {
    let dir = std::path::Path::new("unused");
    let mut cfg = small(1, dir);
    cfg.neurons = 300;
    assert!(
        cfg.validate()
            .unwrap_err()
            .to_string()
            .contains("--neurons must be in 3..=256")
    );
    cfg.neurons = 40;
    assert!(cfg.validate().is_ok(), "lockstep lifts the 16-neuron cap");
    cfg.transport = Transport::Grpc;
    assert!(
        cfg.validate()
            .unwrap_err()
            .to_string()
            .contains("3..=16 with --transport grpc")
    );
    let mut cfg = small(1, dir);
    cfg.blocks_per_step = 0;
    assert!(
        cfg.validate()
            .unwrap_err()
            .to_string()
            .contains("--blocks-per-step")
    );
}

#[test]
fn the_thread_count_does_not_change_the_run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = small(11, dir.path());
    cfg.neurons = 3;
    cfg.steps = 4;
    let once = |threads: usize| -> anyhow::Result<String> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()?;
        let run = pool.install(|| {
            let progress = bt_net::progress::Progress::new(&cfg.roles(), cfg.steps, false);
            bt_net::lockstep::run(
                &cfg,
                &bt_net::live::new_live(),
                &AtomicBool::new(false),
                &progress,
                std::time::Instant::now(),
                None,
            )
        })?;
        Ok(serde_json::to_string(&bt_net::report::json(&run))?)
    };
    assert_eq!(once(1)?, once(3)?);
    Ok(())
}

/// Runs `cfg` in lockstep with an optional twins store and gives back `report.json`'s text.
fn lockstep_json(
    cfg: &UpConfig,
    twins: Option<&bt_net::lockstep::Twins>,
) -> anyhow::Result<String> {
    let progress = bt_net::progress::Progress::new(&cfg.roles(), cfg.steps, false);
    let run = bt_net::lockstep::run(
        cfg,
        &bt_net::live::new_live(),
        &AtomicBool::new(false),
        &progress,
        std::time::Instant::now(),
        twins,
    )?;
    Ok(serde_json::to_string(&bt_net::report::json(&run))?)
}

#[test]
fn twins_known_from_another_run_give_the_same_report_as_twins_trained() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let twins = bt_net::lockstep::Twins::default();
    // Paper with a self-weigher: four twins, all trained.
    let mut first = small(3, dir.path());
    first.steps = 4;
    first.epoch_steps = 2;
    // As a tournament runs them: held-out losses only at the end.
    first.held_out_each_epoch = false;
    lockstep_json(&first, Some(&twins))?;
    assert_eq!(twins.len(), 4);
    // Yuma, mask off, a cabal of two: the first four twins are the same ones; only the second
    // cabal identity's is new.
    let mut second = first.clone();
    second.mechanism = bt_ledger::Mechanism::Yuma;
    second.tempo = 2;
    second.mask = false;
    second.adversary = RoleKind::Cabal;
    let trained = lockstep_json(&second, None)?;
    let known = lockstep_json(&second, Some(&twins))?;
    assert_eq!(twins.len(), 5);
    assert_eq!(trained, known);
    // The known twins' losses are there, not left out.
    let report: ReportJson = serde_json::from_str(&known)?;
    assert!(
        report
            .neurons
            .iter()
            .all(|n| n.loss_alone.is_some_and(f64::is_finite)),
        "{known}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yuma_network_reports_its_mechanism_and_what_each_neuron_was_minted() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let mut cfg = small(5, dir.path());
    cfg.mechanism = bt_ledger::Mechanism::Yuma;
    cfg.tempo = 2;
    let (json, _) = run(&cfg).await?;
    let report: ReportJson = serde_json::from_str(&json)?;
    assert_eq!(report.mechanism, "yuma");
    let shares: Vec<f64> = report
        .neurons
        .iter()
        .map(|n| n.minted_share.expect("something was minted"))
        .collect();
    assert!(
        (shares.iter().sum::<f64>() - 1.0).abs() < 1e-9,
        "{shares:?}"
    );
    assert!(shares.iter().all(|s| *s >= 0.0), "{shares:?}");
    // Every row starts on itself. The selfish neuron keeps it there; the others follow the
    // value rule, which moves weight off the self once a peer measures as worth something
    // (as far as epsilon allows per epoch).
    for n in &report.neurons {
        assert_eq!(
            bt_net::up::rule(role_kind(&n.role), bt_ledger::Mechanism::Yuma),
            if n.role == "selfish" {
                WeightRule::SelfOnly
            } else {
                WeightRule::Value
            }
        );
    }
    let selfish = report.neurons.iter().find(|n| n.role == "selfish");
    assert!(
        selfish
            .and_then(|n| n.self_weight)
            .is_some_and(|w| w > 0.999)
    );
    assert!(
        report
            .neurons
            .iter()
            .any(|n| n.role != "selfish" && n.self_weight.is_some_and(|w| w < 0.9)),
        "no value-rule neuron moved weight off itself: {:?}",
        report.neurons
    );

    let mut bad = small(1, dir.path());
    bad.tempo = 0;
    assert!(bad.validate().unwrap_err().to_string().contains("--tempo"));
    Ok(())
}
