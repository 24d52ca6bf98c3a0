//! Three neurons and a real ledger node on loopback: two honest learners and one that answers
//! noise. The honest ones learn to route around the noise and weigh it least on the ledger;
//! when an honest peer is killed, the other keeps training on its student with no error. And a
//! neuron on a replicated ledger moves to another validator when its own is lost.

use std::time::Duration;

use bt_net::local::{
    LedgerParams, LocalLedger, funder, hotkey, start_ledger, start_ledger_cluster, train_together,
};
use bt_neuron::learner::Mode;
use bt_neuron::serve::Behaviour;
use bt_neuron::{Neuron, NeuronConfig};

fn config(name: &str, source: &str, seed: u64, ledger: &str) -> NeuronConfig {
    let mut cfg = NeuronConfig::from_toml(&format!(
        r#"
name = "{name}"
[data]
source = "{source}"
[network]
ledger = "{ledger}"
stake_tao = 100.0
timeout_ms = 2000
[train]
batch = 8
epoch_steps = 20
eval_batches = 2
seed = {seed}
[model]
seq = 32
d = 32
hidden = 64
layers = 1
[router]
k = 2
max_peers = 8
"#
    ))
    .expect("config");
    cfg.weights.alpha = 10.0; // alpha / tau = 100 with the genesis tau below
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_neurons_route_around_noise_and_survive_a_dead_peer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let params = LedgerParams {
        tau: 0.1,
        epsilon: 0.3,
        block_time_ms: 50,
        max_neurons: 8,
        ..LedgerParams::default()
    };
    let node = start_ledger(dir.path(), &params)
        .await
        .expect("ledger node");
    let url = format!("http://{}", node.addr);
    let alice = funder().expect("funder");

    let specs = [
        ("a", "bundled:moby_dick_a", Behaviour::Honest),
        ("b", "bundled:moby_dick_b", Behaviour::Honest),
        ("noise", "bundled:sotu_1860s", Behaviour::Noise),
    ];
    let mut neurons = Vec::new();
    for (k, (name, source, behaviour)) in specs.iter().enumerate() {
        let mut cfg = config(name, source, k as u64 + 1, &url);
        cfg.behaviour = Some(*behaviour);
        let hot = hotkey(name).expect("hotkey");
        neurons.push(
            Neuron::start(cfg, hot, Some(alice.clone()))
                .await
                .expect("starts"),
        );
    }
    for n in &mut neurons {
        n.refresh().await.expect("metagraph");
    }
    let uids: Vec<usize> = neurons
        .iter()
        .map(|n| n.uid().expect("registered"))
        .collect();
    assert_eq!(uids, vec![0, 1, 2]);

    // Phase 1: everyone trains together for 10 epochs. The learners' adapters start closed, so
    // the first epochs measure no value for any peer and the rows move on the rank term alone
    // (after 6 epochs one run of four still gave the noise peer 0.089 of a row).
    let trained = train_together(neurons, 200).await.expect("training");
    let epochs: Vec<_> = trained
        .iter()
        .map(|t| t.epochs.last().expect("an epoch").clone())
        .collect();
    let mut neurons: Vec<Neuron> = trained.into_iter().map(|t| t.neuron).collect();
    for (k, e) in epochs.iter().enumerate().take(2) {
        assert!(
            e.weights_error.is_none(),
            "neuron {k}: {:?}",
            e.weights_error
        );
        let other = 1 - k;
        assert!(
            e.importance[2] < e.importance[other],
            "neuron {k} gates the noise peer {:.3} vs the honest peer {:.3}",
            e.importance[2],
            e.importance[other]
        );
    }
    neurons[0].refresh().await.expect("metagraph");
    let snap = neurons[0].snapshot().expect("snapshot").clone();
    for i in 0..2 {
        let other = 1 - i;
        assert!(
            snap.w[i][2] <= snap.w[i][other] && snap.w[i][2] < 0.05,
            "row {i} weighs noise {:.3} vs honest {:.3}: {:?}",
            snap.w[i][2],
            snap.w[i][other],
            snap.w[i]
        );
    }

    // Phase 2: kill b; a keeps training (only the noise peer is left, then the student) with
    // no error, and its held-out loss does not jump by more than the stated 0.5 nats.
    let before = neurons[0].evaluate(Mode::Network).await.expect("eval");
    let b = neurons.remove(1);
    b.shutdown().await.expect("b stops");
    let a = &mut neurons[0];
    let right_after = a.evaluate(Mode::Network).await.expect("eval");
    let mut modes = Vec::new();
    for _ in 0..20 {
        let r = a.train_step().await.expect("step after the peer died");
        assert!(r.loss.is_finite());
        modes.push(r.mode);
    }
    let after = a.evaluate(Mode::Network).await.expect("eval");
    for (what, loss) in [("right after", right_after), ("20 steps after", after)] {
        assert!(
            loss < before + 0.5,
            "held-out loss jumped from {before} to {loss} {what} a peer died"
        );
    }
    assert!(modes.iter().all(|m| *m != Mode::Alone));
    for n in neurons {
        n.shutdown().await.expect("stops");
    }
    tokio::time::timeout(Duration::from_secs(10), node.stop())
        .await
        .expect("node stops in time")
        .expect("node stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_neuron_moves_to_another_validator_when_its_own_is_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let params = LedgerParams {
        block_time_ms: 50,
        max_neurons: 8,
        ..LedgerParams::default()
    };
    let LocalLedger::Replicated(mut validators) = start_ledger_cluster(dir.path(), &params, 3)
        .await
        .expect("validators")
    else {
        panic!("three validators replicate");
    };
    // The neuron's first address is the leader's: the hardest one to lose.
    let leader = validators
        .iter()
        .position(|v| v.status().role == "leader")
        .expect("a leader");
    let urls: Vec<String> = (0..3)
        .map(|i| format!("http://{}", validators[(leader + i) % 3].api_addr()))
        .collect();
    let cfg = config("a", "bundled:moby_dick_a", 1, &urls.join(","));
    let mut neuron = Neuron::start(
        cfg,
        hotkey("a").expect("hotkey"),
        Some(funder().expect("funder")),
    )
    .await
    .expect("starts and registers");
    let uid = neuron.uid().expect("registered");

    validators.remove(leader).shutdown().await.expect("stops");
    // The next read goes to another validator at once, without an error.
    neuron
        .refresh()
        .await
        .expect("metagraph from another validator");
    assert_eq!(neuron.uid(), Some(uid));
    assert!(neuron.snapshot().is_some_and(|s| s.neurons.len() == 1));

    neuron.shutdown().await.expect("stops");
    for v in validators {
        v.shutdown().await.expect("stops");
    }
}
