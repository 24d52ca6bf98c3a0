//! The learner by plain calls: gradients reach every parameter, peers' answers are mixed and
//! get their gradients, the router's choices respect availability, checkpoints round-trip.
#![allow(clippy::unwrap_used)]

use bt_neuron::data::{Batch, TextData};
use bt_neuron::learner::{BackwardUpdate, Learner, Mode, OptimConfig, PeerOutput, StepOutcome};
use bt_neuron::model::ModelConfig;
use bt_neuron::router::{AdapterInit, DataWeight, RouterConfig, Routing};
use candle_core::Device;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn small() -> ModelConfig {
    ModelConfig {
        seq: 16,
        d: 16,
        heads: 2,
        hidden: 32,
        layers: 1,
        student_layers: 1,
        vocab: 256,
    }
}

/// The default router with `peers` slots and stronger balance losses, its objectives' weights
/// as a learner with a default network neuron's text would have them.
fn router(peers: usize) -> RouterConfig {
    RouterConfig {
        k: 2,
        k_min: 1,
        max_peers: peers,
        w_importance: 0.1,
        w_load: 0.1,
        ..RouterConfig::default()
    }
    .for_data(108_000)
}

/// The default optimiser, its weight decay as a learner with a default network neuron's text
/// would have it.
fn optim() -> OptimConfig {
    OptimConfig::default().for_data(108_000)
}

fn learner(seed: u64) -> Learner {
    Learner::new(&small(), &router(4), &optim(), &Device::Cpu, seed).unwrap()
}

fn fake_outputs(routing: &Routing, t: usize, d: usize, rng: &mut ChaCha8Rng) -> Vec<PeerOutput> {
    routing
        .rows_per_peer()
        .into_iter()
        .enumerate()
        .filter(|(_, rows)| !rows.is_empty())
        .map(|(peer, rows)| PeerOutput {
            peer,
            values: (0..rows.len() * t * d)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect(),
            rows,
        })
        .collect()
}

/// A batch of 4 x 16 bytes, `l`'s routing of it over peers 1 to 3 (without router noise) and
/// random answers from the peers it chose.
fn routed_batch(l: &Learner) -> (Batch, Routing, Vec<PeerOutput>) {
    let data = TextData::load("bundled:sotu_1930s", None, 0.1, 16).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    let batch = data.train_batch(4, 16, &mut rng);
    let routing = l
        .route(&batch.ids, 4, 16, &[false, true, true, true], None)
        .unwrap();
    let outs = fake_outputs(&routing, 16, 16, &mut rng);
    (batch, routing, outs)
}

#[test]
fn every_parameter_gets_a_gradient() {
    let l = learner(1);
    let before: Vec<(String, Vec<f32>)> = l
        .named_vars()
        .into_iter()
        .map(|(n, v)| (n, v.as_tensor().flatten_all().unwrap().to_vec1().unwrap()))
        .collect();
    let data = TextData::load("bundled:sotu_1930s", None, 0.1, 16).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    // Peer 0 is the learner itself (never chosen); 1..3 answer.
    let available = [false, true, true, true];
    let mut step = None;
    let mut outs = Vec::new();
    // The adapters start closed, so the first step opens them and the second sends the
    // peers a gradient.
    for _ in 0..2 {
        let batch = data.train_batch(8, 16, &mut rng);
        let routing = l
            .route(&batch.ids, 8, 16, &available, Some(&mut rng))
            .unwrap();
        assert!(
            routing
                .chosen
                .iter()
                .all(|c| c.len() == 2 && !c.contains(&0))
        );
        outs = fake_outputs(&routing, 16, 16, &mut rng);
        step = Some(
            l.train_step(&batch, Mode::Network, Some(&routing), &outs)
                .unwrap(),
        );
    }
    let step = step.unwrap();
    assert!(step.distill.is_some() && step.balance.is_some(), "{step:?}");
    // An Adam step moves every parameter that received a non-zero gradient by about lr; the
    // one adapter that stays shut is that of peer 0, which never answered.
    let mut unmoved = Vec::new();
    for ((name, v), (_, old)) in l.named_vars().into_iter().zip(&before) {
        let new: Vec<f32> = v.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        let moved = new.iter().zip(old).any(|(a, b)| a != b);
        if !moved {
            unmoved.push(name);
        }
    }
    assert_eq!(
        unmoved,
        vec!["adapter.0000".to_string()],
        "parameters with no gradient"
    );
    // Every peer that answered gets a gradient of its output's shape.
    assert_eq!(step.peer_grads.len(), outs.len());
    for (g, o) in step.peer_grads.iter().zip(&outs) {
        assert_eq!(g.grad.len(), o.values.len());
        assert!(g.grad.iter().any(|v| *v != 0.0));
        assert!(g.grad_dot_output.is_finite());
    }
    let total: f32 = step.importance.iter().sum();
    assert!(
        (total - 1.0).abs() < 1e-4,
        "gates sum to one per example: {total}"
    );
    assert_eq!(step.importance[0], 0.0);
}

#[test]
fn a_new_learner_starts_as_its_twin_alone() {
    // With the adapters closed, peers' answers do not change the loss, and the gradient they
    // get back is zero until the learner opens them.
    let l = learner(9);
    let twin = learner(9);
    let (batch, routing, outs) = routed_batch(&l);
    let with = l
        .evaluate(&batch, Mode::Network, Some(&routing), &outs)
        .unwrap();
    let alone = twin.evaluate(&batch, Mode::Alone, None, &[]).unwrap();
    assert!((with - alone).abs() < 1e-6, "{with} vs {alone}");
    let step = l
        .train_step(&batch, Mode::Network, Some(&routing), &outs)
        .unwrap();
    assert!(
        step.peer_grads
            .iter()
            .all(|g| g.grad.iter().all(|v| *v == 0.0))
    );
}

#[test]
fn an_open_adapter_starts_as_the_raw_answer() {
    // `adapter_init = "identity"` computes what a learner without adapters computes (same
    // seed: the adapters draw nothing from the generator), and unlike a closed one it sends
    // its peers a gradient from the first step.
    let make = |adapter: bool, adapter_init: AdapterInit| {
        let r = RouterConfig {
            adapter,
            adapter_init,
            ..router(4)
        };
        Learner::new(&small(), &r, &optim(), &Device::Cpu, 9).unwrap()
    };
    let (open, raw) = (
        make(true, AdapterInit::Identity),
        make(false, AdapterInit::Zero),
    );
    let (batch, routing, outs) = routed_batch(&open);
    let eval = |l: &Learner| {
        l.evaluate(&batch, Mode::Network, Some(&routing), &outs)
            .unwrap()
    };
    let (a, b) = (eval(&open), eval(&raw));
    assert!((a - b).abs() < 1e-6, "open adapter {a} vs raw {b}");
    let alone = make(true, AdapterInit::Zero);
    assert!(
        (a - eval(&alone)).abs() > 1e-4,
        "the peers' answers change the loss"
    );
    let step = open
        .train_step(&batch, Mode::Network, Some(&routing), &outs)
        .unwrap();
    assert!(
        step.peer_grads
            .iter()
            .any(|g| g.grad.iter().any(|v| *v != 0.0))
    );
}

/// A router with neither the local nor the remote objective.
fn without_objectives() -> RouterConfig {
    RouterConfig {
        w_local: DataWeight::Fixed(0.0),
        w_remote: DataWeight::Fixed(0.0),
        ..router(4)
    }
}

/// One network step of a learner built with `with` and of one built without either objective,
/// on the same batch: both outcomes, after checking that the objective changed the step.
fn step_with_and_without(with: RouterConfig) -> (StepOutcome, StepOutcome) {
    let make = |r: &RouterConfig| Learner::new(&small(), r, &optim(), &Device::Cpu, 9).unwrap();
    let (with, without) = (make(&with), make(&without_objectives()));
    let (batch, routing, outs) = routed_batch(&with);
    let step = |l: &Learner| {
        l.train_step(&batch, Mode::Network, Some(&routing), &outs)
            .unwrap()
    };
    let (a, b) = (step(&with), step(&without));
    assert_eq!(a.loss, b.loss, "the first forward pass is the same");
    let eval = |l: &Learner| {
        l.evaluate(&batch, Mode::Network, Some(&routing), &outs)
            .unwrap()
    };
    assert_ne!(
        eval(&with),
        eval(&without),
        "the objective changed the step"
    );
    (a, b)
}

#[test]
fn the_remote_objective_is_the_head_on_the_peers_answers_alone() {
    // With `w_remote > 0` the step also scores the head on the gated answers alone, and that
    // loss trains the learner; at 0 it is left out.
    let (step, plain) = step_with_and_without(RouterConfig {
        w_remote: DataWeight::Fixed(1.0),
        ..without_objectives()
    });
    assert_eq!(plain.remote, None);
    // The adapters start closed, so the head first reads zeros: the loss of a uniform guess
    // over its 256 bytes, up to the head's bias.
    let remote = step.remote.expect("the remote loss is reported");
    assert!((remote - 256f32.ln()).abs() < 0.5, "{remote}");
}

#[test]
fn the_local_objective_is_the_head_on_the_learners_own_trunk_alone() {
    // With `w_local > 0` a network step also scores the head on the trunk alone, and that
    // loss trains the learner; at 0, and when alone, it is left out.
    let r = RouterConfig {
        w_local: DataWeight::Fixed(0.5),
        ..without_objectives()
    };
    let (step, plain) = step_with_and_without(r.clone());
    assert_eq!(plain.local, None);
    // The adapters start closed, so the peers add nothing yet: the head on the trunk alone
    // scores what the whole step scores.
    let local = step.local.expect("the local loss is reported");
    assert!((local - step.loss).abs() < 1e-5, "{local} vs {}", step.loss);
    let l = Learner::new(&small(), &r, &optim(), &Device::Cpu, 9).unwrap();
    let (batch, _, _) = routed_batch(&l);
    let alone = l.train_step(&batch, Mode::Alone, None, &[]).unwrap();
    assert_eq!(
        alone.local, None,
        "alone, the loss is the local one already"
    );
}

/// Sets every peer adapter of `l` to random values (as if opened by training).
fn open_adapters(l: &Learner, rng: &mut ChaCha8Rng) {
    for (name, var) in l.named_vars() {
        if name.starts_with("adapter.") {
            let n = var.as_tensor().elem_count();
            let values: Vec<f32> = (0..n).map(|_| rng.random_range(-0.3..0.3)).collect();
            let t = candle_core::Tensor::from_vec(values, var.as_tensor().dims(), &Device::Cpu)
                .unwrap();
            var.set(&t).unwrap();
        }
    }
}

#[test]
fn peer_gradient_equals_finite_difference() {
    // d loss / d y_j from backprop matches a finite difference of the evaluated loss. The
    // extra objectives are off: with them the gradient sent back also carries their terms,
    // which the evaluated loss (the network's cross-entropy) does not have.
    let l = learner(3);
    let data = TextData::load("bundled:moby_dick_b", None, 0.1, 16).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let batch = data.train_batch(2, 8, &mut rng);
    let available = [true, true, false, false];
    let routing = l.route(&batch.ids, 2, 8, &available, None).unwrap();
    let outs = fake_outputs(&routing, 8, 16, &mut rng);
    // A learner with lr 0 takes the gradient without moving.
    let frozen = Learner::new(
        &small(),
        &RouterConfig {
            w_remote: DataWeight::Fixed(0.0),
            w_local: DataWeight::Fixed(0.0),
            ..router(4)
        },
        &OptimConfig {
            lr: 0.0,
            peer_lr: 0.0,
            ..optim()
        },
        &Device::Cpu,
        3,
    )
    .unwrap();
    open_adapters(&frozen, &mut rng);
    let routing = frozen.route(&batch.ids, 2, 8, &available, None).unwrap();
    let _ = l;
    let step = frozen
        .train_step(&batch, Mode::Network, Some(&routing), &outs)
        .unwrap();
    let g = &step.peer_grads[0];
    let (idx, _) = g
        .grad
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
        .unwrap();
    let h = 1e-2f32;
    let loss_at = |delta: f32| {
        let mut o = outs.clone();
        o[0].values[idx] += delta;
        frozen
            .evaluate(&batch, Mode::Network, Some(&routing), &o)
            .unwrap()
    };
    let fd = (loss_at(h) - loss_at(-h)) / (2.0 * h);
    let an = g.grad[idx];
    assert!(
        (fd - an).abs() < 0.05 * an.abs() + 1e-4,
        "finite difference {fd} vs backprop {an}"
    );
}

#[test]
fn training_alone_lowers_the_loss() {
    let l = learner(5);
    let data = TextData::load("bundled:sotu_1790s", None, 0.1, 16).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let held = data.held_out_batches(16, 16, 2);
    let eval = |l: &Learner| -> f32 {
        held.iter()
            .map(|b| l.evaluate(b, Mode::Alone, None, &[]).unwrap())
            .sum::<f32>()
            / held.len() as f32
    };
    let start = eval(&l);
    for _ in 0..60 {
        let b = data.train_batch(16, 16, &mut rng);
        l.train_step(&b, Mode::Alone, None, &[]).unwrap();
    }
    let end = eval(&l);
    assert!(end < start - 1.0, "held-out loss {start} -> {end}");
}

#[test]
fn peer_updates_join_the_next_step() {
    // Two equal learners take the same step on their own batch; one has first received a
    // peer's gradient pushing its served output up, which its step takes in.
    let l = learner(7);
    let twin = learner(7);
    let ids: Vec<u32> = (0..32).map(|i| (i * 7 % 256) as u32).collect();
    let before = l.serve(&ids, 2, 16).unwrap();
    assert_eq!(before.len(), 2 * 16 * 16);
    // Gradient of the peer's loss = -sum(out), five times over.
    let grad = vec![-1.0f32; before.len()];
    for _ in 0..5 {
        l.apply_peer_gradient(&ids, 2, 16, &grad).unwrap();
    }
    assert!(l.pending_peer_gradients() && !twin.pending_peer_gradients());
    assert_eq!(
        l.serve(&ids, 2, 16).unwrap(),
        before,
        "nothing moves before the step"
    );
    let data = TextData::load("bundled:sotu_1790s", None, 0.1, 16).unwrap();
    let batch = data.train_batch(4, 16, &mut ChaCha8Rng::seed_from_u64(8));
    l.train_step(&batch, Mode::Alone, None, &[]).unwrap();
    twin.train_step(&batch, Mode::Alone, None, &[]).unwrap();
    assert!(!l.pending_peer_gradients(), "the step took them");
    let sum = |l: &Learner| l.serve(&ids, 2, 16).unwrap().iter().sum::<f32>();
    let (with, without) = (sum(&l), sum(&twin));
    assert!(
        with > without,
        "sum of served output {without} alone -> {with} with the peer's gradient"
    );
}

#[test]
fn own_optimizer_applies_peer_gradients_at_once() {
    // Under `backward = "own_optimizer"` a peer's gradient moves the trunk when it arrives,
    // through the second AdamW, and nothing waits for the next step.
    let optim = OptimConfig {
        backward: BackwardUpdate::OwnOptimizer,
        ..optim()
    };
    let l = Learner::new(&small(), &router(4), &optim, &Device::Cpu, 7).unwrap();
    let ids: Vec<u32> = (0..32).map(|i| (i * 7 % 256) as u32).collect();
    let before = l.serve(&ids, 2, 16).unwrap();
    let grad = vec![-1.0f32; before.len()];
    l.apply_peer_gradient(&ids, 2, 16, &grad).unwrap();
    assert!(!l.pending_peer_gradients());
    let after = l.serve(&ids, 2, 16).unwrap();
    let sum = |v: &[f32]| v.iter().sum::<f32>();
    assert!(
        sum(&after) > sum(&before),
        "sum of served output {} -> {}",
        sum(&before),
        sum(&after)
    );
}

#[test]
fn bad_inputs_are_refused() {
    let l = learner(8);
    let e = l.serve(&[300; 16], 1, 16).unwrap_err();
    assert!(
        e.to_string()
            .contains("token id 300 is outside the vocabulary"),
        "{e}"
    );
    let e = l.serve(&[1; 34], 1, 34).unwrap_err();
    assert!(e.to_string().contains("the model takes 1 to 16"), "{e}");
    let e = l.serve(&[1; 10], 1, 16).unwrap_err();
    assert!(
        e.to_string().contains("10 token ids for a [1, 16] batch"),
        "{e}"
    );
    let e = l
        .apply_peer_gradient(&[1; 16], 1, 16, &[0.0; 5])
        .unwrap_err();
    assert!(e.to_string().contains("gradient of 5 values"), "{e}");
    let mut g = vec![0.0; 256];
    g[3] = f32::NAN;
    let e = l.apply_peer_gradient(&[1; 16], 1, 16, &g).unwrap_err();
    assert!(e.to_string().contains("non-finite"), "{e}");
    let bad_cfg = ModelConfig {
        heads: 3,
        ..small()
    };
    let e = Learner::new(&bad_cfg, &router(4), &optim(), &Device::Cpu, 1)
        .err()
        .unwrap();
    assert!(e.to_string().contains("must divide model.d"), "{e}");
    let bad_router = RouterConfig {
        k_min: 3,
        ..router(4)
    };
    let e = Learner::new(&small(), &bad_router, &optim(), &Device::Cpu, 1)
        .err()
        .unwrap();
    assert!(e.to_string().contains("1 <= k_min <= k"), "{e}");
}

#[test]
fn checkpoints_round_trip_and_bad_ones_are_named() {
    use bt_neuron::Error;
    use std::collections::HashMap;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.safetensors");
    let a = learner(9);
    let ids: Vec<u32> = (0..16).collect();
    let meta = HashMap::from([("k".to_string(), "v".to_string())]);
    a.save(&path, meta.clone()).unwrap();
    let b = learner(10);
    assert_ne!(a.serve(&ids, 1, 16).unwrap(), b.serve(&ids, 1, 16).unwrap());
    assert_eq!(b.load(&path).unwrap(), meta, "the metadata comes back");
    assert_eq!(a.serve(&ids, 1, 16).unwrap(), b.serve(&ids, 1, 16).unwrap());
    a.save(&path, HashMap::new()).unwrap();
    assert!(b.load(&path).unwrap().is_empty());
    // A checkpoint of another shape is a mismatch, and loads nothing.
    let other = Learner::new(
        &ModelConfig {
            d: 8,
            heads: 2,
            ..small()
        },
        &router(4),
        &optim(),
        &Device::Cpu,
        1,
    )
    .unwrap();
    let before = other.serve(&ids, 1, 16).unwrap();
    let e = other.load(&path).unwrap_err();
    assert!(
        matches!(&e, Error::CheckpointMismatch { reason, .. } if reason.contains("has shape")),
        "{e}"
    );
    assert_eq!(other.serve(&ids, 1, 16).unwrap(), before);
    // Damaged files: garbage bytes, a truncated checkpoint.
    let good = std::fs::read(&path).unwrap();
    for bytes in [&b"not a checkpoint"[..], &good[..good.len() / 2], &[][..]] {
        std::fs::write(&path, bytes).unwrap();
        let e = b.load(&path).unwrap_err();
        assert!(
            matches!(&e, Error::CheckpointDamaged { path: p, .. } if p.ends_with("ckpt.safetensors")),
            "{e}"
        );
        assert!(e.to_string().contains("is damaged"), "{e}");
    }
    // A missing file is an I/O error naming it.
    let e = b.load(&dir.path().join("none.safetensors")).unwrap_err();
    assert!(matches!(&e, Error::Io { .. }), "{e}");
    assert!(e.to_string().contains("none.safetensors"), "{e}");
}

#[test]
fn gpt2_tokens_train_a_model_with_their_vocabulary() {
    use bt_neuron::data::Tokenizer;
    let cfg = ModelConfig {
        vocab: Tokenizer::Gpt2.vocab(),
        ..small()
    };
    let l = Learner::new(&cfg, &router(4), &optim(), &Device::Cpu, 1).unwrap();
    let data = TextData::load_with("bundled:sotu_2000s", None, 0.1, 16, Tokenizer::Gpt2).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let b = data.train_batch(4, 16, &mut rng);
    assert!(
        b.ids.iter().any(|&t| t > 255),
        "BPE ids beyond the byte range"
    );
    let first = l.train_step(&b, Mode::Alone, None, &[]).unwrap().loss;
    assert!(
        (first - (50_257f32).ln()).abs() < 1.0,
        "starts near ln(vocab): {first}"
    );
    // A byte-sized model refuses BPE ids.
    let e = learner(2).serve(&b.ids[..16], 1, 16);
    assert!(b.ids[..16].iter().all(|&t| t < 256) || e.is_err());
}

/// A learner with its adapters opened at random, a batch of 4 x 16 bytes routed over peers 1
/// to 3, and random answers from the peers it chose, the first of which (the returned uid)
/// answered all zeros.
fn opened_with_a_silent_peer() -> (Learner, Batch, Routing, Vec<PeerOutput>, usize) {
    let l = learner(5);
    let data = TextData::load("bundled:sotu_2000s", None, 0.1, 16).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    open_adapters(&l, &mut rng);
    let batch = data.train_batch(4, 16, &mut rng);
    let routing = l
        .route(&batch.ids, 4, 16, &[false, true, true, true], None)
        .unwrap();
    let mut outs = fake_outputs(&routing, 16, 16, &mut rng);
    let silent = outs[0].peer;
    outs[0].values.iter_mut().for_each(|v| *v = 0.0);
    (l, batch, routing, outs, silent)
}

#[test]
fn removal_probes_match_the_evaluated_loss_and_its_slope() {
    // One peer answers zeros: removing it changes nothing.
    let (l, batch, routing, outs, silent) = opened_with_a_silent_peer();
    let eval = |o: &[PeerOutput]| {
        f64::from(
            l.evaluate(&batch, Mode::Network, Some(&routing), o)
                .unwrap(),
        )
    };
    let base = eval(&outs);
    let probes = l.removal(&batch, &routing, &outs).unwrap();
    assert_eq!(probes.len(), outs.len());
    for (p, o) in probes.iter().zip(&outs) {
        assert_eq!(p.peer, o.peer);
        // Exact: the evaluated loss with this peer's answer zeroed.
        let mut zeroed = outs.clone();
        let k = zeroed.iter().position(|z| z.peer == p.peer).unwrap();
        zeroed[k].values.iter_mut().for_each(|v| *v = 0.0);
        let exact = eval(&zeroed) - base;
        assert!((p.exact - exact).abs() < 1e-5, "{} vs {exact}", p.exact);
        // First order: the slope of the loss along the removal, by a central difference
        // (scaling the answer by 1 -/+ d moves the head's input by +/- d times the removal).
        let d = 1e-2f32;
        let scaled = |s: f32| {
            let mut o = outs.clone();
            o[k].values.iter_mut().for_each(|v| *v *= s);
            eval(&o)
        };
        let slope = (scaled(1.0 - d) - scaled(1.0 + d)) / (2.0 * f64::from(d));
        assert!(
            (p.first - slope).abs() < 0.05 * slope.abs() + 1e-4,
            "first-order term {} vs finite difference {slope}",
            p.first
        );
        // The Fisher term is a variance: never negative.
        assert!(p.second >= 0.0, "second-order term {}", p.second);
        if p.peer == silent {
            assert_eq!((p.exact, p.first, p.second), (0.0, 0.0, 0.0));
        } else {
            assert!(p.second > 0.0 && p.exact != 0.0);
        }
    }
}

#[test]
fn each_answers_worth_in_a_step_is_its_exact_removal_cost_before_the_step() {
    // One peer answers zeros: it was worth nothing.
    let (l, batch, routing, outs, silent) = opened_with_a_silent_peer();
    let probes = l.removal(&batch, &routing, &outs).unwrap();
    let step = l
        .train_step(&batch, Mode::Network, Some(&routing), &outs)
        .unwrap();
    assert_eq!(step.peer_grads.len(), probes.len());
    for (g, p) in step.peer_grads.iter().zip(&probes) {
        assert_eq!(g.peer, p.peer);
        assert!(
            (g.removal_cost - p.exact).abs() < 1e-5,
            "peer {}: worth {} in the step, removal cost {} measured before it",
            g.peer,
            g.removal_cost,
            p.exact
        );
        if g.peer == silent {
            assert_eq!(g.removal_cost, 0.0);
        } else {
            assert_ne!(g.removal_cost, 0.0);
        }
    }
}

#[test]
fn a_frozen_synapse_serves_its_model_and_ignores_backward() {
    use bt_neuron::serve::{Behaviour, LearnerSynapse};
    use bt_wire::{Synapse, Tensor};
    use std::sync::Arc;
    let ids: Vec<i64> = (0..2 * 8).map(|v| v % 256).collect();
    let x = Tensor::from_i64(vec![2, 8], &ids).unwrap();
    let g = Tensor::from_f32(vec![2, 8, 16], &[1.0; 2 * 8 * 16]).unwrap();
    let answer = |s: &LearnerSynapse| {
        s.forward(std::slice::from_ref(&x)).unwrap()[0]
            .to_f32()
            .unwrap()
    };
    for (behaviour, moves) in [(Behaviour::Honest, true), (Behaviour::Frozen, false)] {
        let l = Arc::new(learner(5));
        let s = LearnerSynapse::new(l.clone(), behaviour, 0);
        let before = answer(&s);
        assert_eq!(
            before,
            learner(5)
                .serve(&ids.iter().map(|&v| v as u32).collect::<Vec<_>>(), 2, 8)
                .unwrap()
        );
        s.backward(std::slice::from_ref(&x), std::slice::from_ref(&g))
            .unwrap();
        // The gradient waits for the learner's next step.
        assert_eq!(answer(&s), before);
        assert_eq!(l.pending_peer_gradients(), moves, "{behaviour:?}");
    }
}

#[test]
fn automatic_objective_weights_follow_the_size_of_the_text_and_are_fixed_before_building() {
    let auto = RouterConfig {
        w_remote: DataWeight::Auto,
        w_local: DataWeight::Auto,
        ..router(4)
    };
    for (name, unresolved) in [
        (
            "w_remote",
            RouterConfig {
                w_local: DataWeight::Fixed(1.0),
                ..auto.clone()
            },
        ),
        (
            "w_local",
            RouterConfig {
                w_remote: DataWeight::Fixed(0.0),
                ..auto.clone()
            },
        ),
    ] {
        let e = Learner::new(&small(), &unresolved, &optim(), &Device::Cpu, 1)
            .err()
            .expect("an unresolved weight is refused");
        assert!(
            matches!(&e, bt_neuron::Error::Config(m)
                if m.contains(&format!("router.{name} = \"auto\"")) && m.contains("RouterConfig::for_data")),
            "{e}"
        );
    }
    // The peers' share goes to the remote objective, the rest to the local one.
    for (tokens, remote) in [
        (0, 1.0),
        (3600, 1.0),
        (4096, 1.0),
        (8192, 0.5),
        (108_000, 4096.0 / 108_000.0),
    ] {
        let r = auto.clone().for_data(tokens);
        assert_eq!(r.w_remote, DataWeight::Fixed(remote), "{tokens} tokens");
        assert_eq!(
            r.w_local,
            DataWeight::Fixed(1.0 - remote),
            "{tokens} tokens"
        );
    }
    // A fixed weight stays what it was, whatever the text.
    let fixed = RouterConfig {
        w_remote: DataWeight::Fixed(0.25),
        w_local: DataWeight::Fixed(0.5),
        ..router(4)
    };
    let r = fixed.for_data(10);
    assert_eq!(
        (r.w_remote, r.w_local),
        (DataWeight::Fixed(0.25), DataWeight::Fixed(0.5))
    );
    // The weight decay follows the same share, and is refused unresolved in the same way.
    let e = Learner::new(
        &small(),
        &router(4),
        &OptimConfig::default(),
        &Device::Cpu,
        1,
    )
    .err()
    .expect("an unresolved weight decay is refused");
    assert!(
        matches!(&e, bt_neuron::Error::Config(m)
            if m.contains("optim.weight_decay = \"auto\"") && m.contains("OptimConfig::for_data")),
        "{e}"
    );
    // The square of the peers' share: 1 for little text, nearly 0 for plenty.
    for (tokens, decay) in [
        (4000, 1.0),
        (8192, 0.25),
        (108_000, (4096.0f64 / 108_000.0).powi(2)),
    ] {
        assert_eq!(
            OptimConfig::default().for_data(tokens).weight_decay,
            DataWeight::Fixed(decay),
            "{tokens} tokens"
        );
    }
    let fixed = OptimConfig {
        weight_decay: DataWeight::Fixed(0.0),
        ..OptimConfig::default()
    };
    assert_eq!(fixed.for_data(10).weight_decay, DataWeight::Fixed(0.0));
    let resolved = auto.for_data(8192);
    assert!(Learner::new(&small(), &resolved, &optim(), &Device::Cpu, 1).is_ok());
}
