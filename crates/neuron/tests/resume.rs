//! A neuron restarted from its checkpoint: it says so, continues at the saved step with the
//! saved parameters, and a checkpoint it cannot use is refused with its own error instead of a
//! fresh start. Also what a starting neuron fixes from the text it loads (`w_remote = "auto"`).
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::Path;

use bt_keys::Keypair;
use bt_neuron::core::CoreState;
use bt_neuron::neuron::checkpoint_path;
use bt_neuron::{Error, Neuron, NeuronConfig};

fn config(dir: &Path) -> NeuronConfig {
    let mut cfg = NeuronConfig {
        name: "resume".into(),
        ..NeuronConfig::default()
    };
    cfg.model.seq = 16;
    cfg.model.d = 16;
    cfg.model.hidden = 32;
    cfg.model.layers = 1;
    cfg.model.student_layers = 1;
    cfg.train.batch = 2;
    cfg.train.epoch_steps = 2;
    cfg.train.eval_batches = 1;
    cfg.train.checkpoint_dir = Some(dir.join("ckpt"));
    cfg
}

fn key() -> Keypair {
    Keypair::from_uri("//Alice//resume").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_neuron_continues_at_its_saved_step() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let ids: Vec<u32> = (0..16).collect();

    let mut n = Neuron::start(cfg.clone(), key(), None).await.unwrap();
    assert!(n.resumed().is_none(), "no checkpoint yet");
    for want in 1..=2 {
        assert_eq!(n.train_step().await.unwrap().step, want);
    }
    let epoch = n.end_epoch().await.unwrap();
    assert_eq!(epoch.step, 2);
    let saved = n.learner().serve(&ids, 1, 16).unwrap();
    // A step after the checkpoint is lost with the process.
    assert_eq!(n.train_step().await.unwrap().step, 3);
    assert_ne!(n.learner().serve(&ids, 1, 16).unwrap(), saved);
    n.shutdown().await.unwrap();

    let mut n = Neuron::start(cfg.clone(), key(), None).await.unwrap();
    let r = n.resumed().expect("resumed").clone();
    assert_eq!(r.path, checkpoint_path(&cfg).unwrap());
    assert_eq!(r.step, 2);
    assert!(r.step_recorded);
    assert_eq!(n.steps_done(), 2);
    assert_eq!(n.learner().serve(&ids, 1, 16).unwrap(), saved);
    // The count and the epochs go on from there: steps 3 and 4, then the epoch at 4.
    assert_eq!(n.train_step().await.unwrap().step, 3);
    assert_eq!(n.train_step().await.unwrap().step, 4);
    assert_eq!(n.end_epoch().await.unwrap().step, 4);
    n.shutdown().await.unwrap();

    let n = Neuron::start(cfg, key(), None).await.unwrap();
    assert_eq!(n.resumed().map(|r| r.step), Some(4));
    n.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_checkpoint_is_refused_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let path = checkpoint_path(&cfg).unwrap();

    let mut n = Neuron::start(cfg.clone(), key(), None).await.unwrap();
    n.train_step().await.unwrap();
    n.train_step().await.unwrap();
    n.end_epoch().await.unwrap();
    let learner = n.learner().clone();
    n.shutdown().await.unwrap();
    let good = std::fs::read(&path).unwrap();

    // Cut short (a disk that filled up, a partial copy), or overwritten.
    for bytes in [
        &good[..good.len() - 100],
        &b"{\"not\": \"a checkpoint\"}"[..],
    ] {
        std::fs::write(&path, bytes).unwrap();
        let e = Neuron::start(cfg.clone(), key(), None)
            .await
            .err()
            .expect("refused");
        assert!(
            matches!(&e, Error::CheckpointDamaged { path: p, .. } if *p == path.display().to_string()),
            "{e}"
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "the file is left as it was"
        );
    }

    // Sound parameters with a training state that does not read.
    let bad = HashMap::from([(
        CoreState::KEY.to_string(),
        "{\"step\": \"two\"}".to_string(),
    )]);
    learner.save(&path, bad).unwrap();
    let e = Neuron::start(cfg.clone(), key(), None)
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(&e, Error::CheckpointDamaged { reason, .. } if reason.contains("training state")),
        "{e}"
    );

    // Parameters without a recorded step (an older checkpoint): resumed, counting from 0.
    learner.save(&path, HashMap::new()).unwrap();
    let n = Neuron::start(cfg.clone(), key(), None).await.unwrap();
    let r = n.resumed().expect("resumed");
    assert!(!r.step_recorded);
    assert_eq!(n.steps_done(), 0);
    n.shutdown().await.unwrap();

    // A checkpoint of another model is its own error.
    let mut wider = cfg;
    wider.model.d = 32;
    let e = Neuron::start(wider, key(), None)
        .await
        .err()
        .expect("refused");
    assert!(matches!(&e, Error::CheckpointMismatch { .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_objective_weights_are_fixed_by_the_text_the_neuron_loads() {
    use bt_neuron::router::DataWeight;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.train.checkpoint_dir = None;
    cfg.router.w_remote = DataWeight::Auto;
    cfg.router.w_local = DataWeight::Auto;
    for (limit, remote) in [(2000, 1.0), (20_000, 4096.0 / 20_000.0)] {
        cfg.data.limit = Some(limit);
        let n = Neuron::start(cfg.clone(), key(), None).await.unwrap();
        let r = n.learner().router_config();
        assert_eq!(r.w_remote, DataWeight::Fixed(remote), "limit {limit}");
        assert_eq!(r.w_local, DataWeight::Fixed(1.0 - remote), "limit {limit}");
        n.shutdown().await.unwrap();
    }
}
