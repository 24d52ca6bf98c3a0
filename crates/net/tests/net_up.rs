//! A tiny `bt net up --transport grpc` end to end: a ledger node, three honest neurons, one
//! that answers noise and one that weighs only itself, trained together on loopback; the
//! report (with `report.json`, the same fields as a lockstep run's) and its plots are written,
//! and the ledger never ranks the noise neuron above an honest one.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use bt_net::report::ReportJson;
use bt_net::report::places;
use bt_net::up::{RoleKind, Transport, UpConfig, up};
use bt_neuron::model::ModelConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_network_never_ranks_noise_above_an_honest_neuron() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = UpConfig {
        neurons: 5,
        transport: Transport::Grpc,
        steps: 300,
        seed: 1,
        out: dir.path().to_path_buf(),
        epoch_steps: 10,
        measure_every: 15,
        batch: 8,
        eval_batches: 2,
        model: ModelConfig {
            seq: 32,
            d: 32,
            heads: 2,
            hidden: 64,
            layers: 1,
            student_layers: 1,
            vocab: 256,
        },
        block_time_ms: 100,
        progress: false,
        ..UpConfig::default()
    };
    let live = bt_net::live::new_live();
    let run = up(&cfg, live.clone(), Arc::new(AtomicBool::new(false))).await?;
    let (report, _) = bt_net::report::write(&run, dir.path())?;

    let text = std::fs::read_to_string(&report)?;
    eprintln!("{text}");
    for needle in [
        "| uid | neuron |",
        "ledger rank vs removal cost",
        "noise",
        "selfish",
    ] {
        assert!(text.contains(needle), "report lacks {needle:?}:\n{text}");
    }
    for stem in ["ledger", "weights", "losses", "rank_vs_removal_cost"] {
        for ext in ["png", "svg"] {
            let p = dir.path().join(format!("{stem}.{ext}"));
            assert!(
                std::fs::metadata(&p)?.len() > 1000,
                "{} is missing or empty",
                p.display()
            );
        }
    }
    let json: ReportJson =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json"))?)?;
    assert_eq!(json.transport, "grpc");
    assert_eq!(json.blocks_per_step, None);
    assert_eq!(json.neurons.len(), 5);
    assert!(json.height > 0 && json.steps == 300);
    assert!(live.read().map(|l| l.done && l.height > 0).unwrap_or(false));
    assert!(!run.stopped_early);
    assert!(
        run.measurements.len() >= 2,
        "an interval measurement and the final one"
    );

    // Over sockets the wall clock decides how far the rows move between blocks, so the run
    // is not repeatable (the lockstep tests pin outcomes exactly); on a busy machine an honest
    // neuron that no one came to weigh can end at rank 0 beside the noise neuron, and with the
    // learners' adapters starting closed, one run in four of this test left every honest rank
    // at 0 (docs/neuron.md, Learning from peers). What must hold on every run: the noise
    // neuron is never ranked above an honest one, and its measured value (removal cost) is
    // below every honest neuron's.
    let last = run.measurements.last().expect("a final measurement");
    let noise = run
        .neurons
        .iter()
        .position(|n| n.role.kind == RoleKind::Noise)
        .expect("a noise neuron");
    let honest: Vec<usize> = run
        .neurons
        .iter()
        .enumerate()
        .filter(|(_, n)| n.role.kind == RoleKind::Honest)
        .map(|(k, _)| k)
        .collect();
    for &k in &honest {
        assert!(
            last.rank[noise] <= last.rank[k],
            "noise rank {} is above {}'s {}:\n{text}",
            last.rank[noise],
            run.neurons[k].role.name,
            last.rank[k]
        );
        assert!(
            last.cost[noise].exact < last.cost[k].exact,
            "noise removal cost {} is not below {}'s {}:\n{text}",
            last.cost[noise].exact,
            run.neurons[k].role.name,
            last.cost[k].exact
        );
    }
    // The report's place column says the same (ties share the better place).
    let place = places(&last.rank);
    assert!(honest.iter().all(|&k| place[k] <= place[noise]));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_on_three_replicated_validators_ranks_and_every_chain_verifies()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = UpConfig {
        neurons: 3,
        transport: Transport::Grpc,
        validators: 3,
        steps: 20,
        seed: 2,
        out: dir.path().to_path_buf(),
        epoch_steps: 5,
        measure_every: 0,
        batch: 4,
        eval_batches: 1,
        model: ModelConfig {
            seq: 16,
            d: 16,
            heads: 2,
            hidden: 32,
            layers: 1,
            student_layers: 1,
            vocab: 256,
        },
        block_time_ms: 100,
        progress: false,
        ..UpConfig::default()
    };
    let run = up(
        &cfg,
        bt_net::live::new_live(),
        Arc::new(AtomicBool::new(false)),
    )
    .await?;
    let report = bt_net::report::json(&run);
    assert_eq!(report.neurons.len(), 3);
    // Every neuron registered through its own validator and was minted something.
    assert!(report.height > 0);
    for n in &report.neurons {
        assert!(
            n.minted_share.is_some_and(|s| s > 0.0),
            "{} was minted nothing",
            n.name
        );
    }
    // Every validator holds a chain that replays from genesis, and they agree on it.
    let mut reports = Vec::new();
    for v in 1..=3 {
        reports.push(bt_chain::verify(
            &dir.path().join("chain").join(format!("v{v}")),
            |_, _| {},
        )?);
    }
    let blocks = reports.iter().map(|r| r.blocks).min().unwrap_or(0);
    assert!(blocks > 0);
    assert!(reports.iter().all(|r| r.genesis == reports[0].genesis));
    Ok(())
}
