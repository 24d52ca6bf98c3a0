//! Loopback end to end: every return code, each from the fault that causes it.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bt_wire::proto::{self, ReturnCode};
use bt_wire::{
    AxonConfig, DType, Dendrite, DendriteConfig, FeedForwardExpert, Method, Peer, Quorum, Tensor,
    signing,
};
use common::*;

fn expert() -> Arc<FeedForwardExpert> {
    Arc::new(FeedForwardExpert::new(D, 16, 0.05, 1))
}

/// Builds a request, lets `tamper` change it, signs it again (so only the tampered field is
/// wrong), and sends it.
async fn send_tampered(
    d: &Dendrite,
    peer: &Peer,
    method: Method,
    inputs: &[Tensor],
    grads: &[Tensor],
    resign: Option<&bt_keys::Keypair>,
    tamper: impl FnOnce(&mut proto::Request),
) -> bt_wire::Reply {
    let mut req = d
        .build_request(method, &peer.hotkey, inputs, grads)
        .unwrap();
    tamper(&mut req);
    if let Some(kp) = resign {
        let digest = signing::digest(method, &req);
        req.signature = kp.sign(&digest).to_bytes().to_vec();
    }
    d.send(peer, method, req, Instant::now()).await
}

#[tokio::test]
async fn success_forward_and_backward() {
    let model = expert();
    let s = start(model.clone(), AxonConfig::default()).await;
    let d = dendrite("//Alice");
    let x = input(3, 0.7);
    let r = d.forward(&s.peer, std::slice::from_ref(&x)).await;
    assert_eq!(r.code, ReturnCode::Success, "{}", r.message);
    assert_eq!(r.outputs[0].shape(), &[3, D]);
    let before = model.param_checksum();
    let g = Tensor::from_f32(vec![3, D], &[0.3; 3 * D]).unwrap();
    let r = d.backward(&s.peer, &[x], &[g]).await;
    assert_eq!(r.code, ReturnCode::Success, "{}", r.message);
    assert_eq!(r.outputs[0].shape(), &[3, D], "input gradient");
    assert_ne!(
        before,
        model.param_checksum(),
        "backward applied the gradient"
    );
    s.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn bf16_on_the_wire_answers_close_to_f32() {
    let s = start(expert(), AxonConfig::default()).await;
    let d32 = dendrite("//Alice");
    let cfg = DendriteConfig {
        wire_dtype: DType::BF16,
        response_dtype: DType::BF16,
        ..DendriteConfig::default()
    };
    let d16 = Dendrite::new(key("//Charlie"), cfg).unwrap();
    let x = input(2, 0.25);
    let a = d32.forward(&s.peer, std::slice::from_ref(&x)).await;
    let b = d16.forward(&s.peer, &[x]).await;
    assert_eq!(b.code, ReturnCode::Success, "{}", b.message);
    assert_eq!(b.outputs[0].dtype(), DType::BF16);
    assert_eq!(b.outputs[0].data().len(), 2 * D * 2);
    for (p, q) in a.outputs[0]
        .to_f32()
        .unwrap()
        .iter()
        .zip(b.outputs[0].to_f32().unwrap())
    {
        assert!((p - q).abs() < 0.05, "{p} vs {q}");
    }
    s.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_request_for_each_malformed_field() {
    let s = start(
        expert(),
        AxonConfig {
            max_request_bytes: 4096,
            ..AxonConfig::default()
        },
    )
    .await;
    let kp = key("//Alice");
    let d = dendrite("//Alice");
    let x = input(2, 0.1);
    let p = &s.peer;
    let fw = Method::Forward;

    let r = send_tampered(&d, p, fw, std::slice::from_ref(&x), &[], Some(&kp), |q| {
        let n = q.inputs[0].data.len() - 1;
        q.inputs[0].data.truncate(n)
    })
    .await;
    assert_eq!(r.code, ReturnCode::BadRequest);
    assert!(
        r.message.contains("inputs[0]") && r.message.contains("bytes"),
        "{}",
        r.message
    );

    let r = send_tampered(&d, p, fw, std::slice::from_ref(&x), &[], Some(&kp), |q| {
        q.inputs[0].dtype = 42
    })
    .await;
    assert_eq!(r.code, ReturnCode::BadRequest);
    assert!(
        r.message.contains("unknown dtype value 42"),
        "{}",
        r.message
    );

    let mut bad = vec![0.5f32; 2 * D];
    bad[5] = f32::NAN;
    let nan = Tensor::from_f32(vec![2, D], &bad).unwrap();
    let r = d.forward(p, &[nan]).await;
    assert_eq!(r.code, ReturnCode::BadRequest);
    assert!(
        r.message.contains("non-finite") && r.message.contains("element 5"),
        "{}",
        r.message
    );

    let r = d.forward(p, &[x.clone(), x.clone()]).await;
    assert_eq!(r.code, ReturnCode::BadRequest);
    assert!(
        r.message.contains("expected 1 tensors, got 2"),
        "{}",
        r.message
    );

    let ids = Tensor::from_i64(vec![2, D], &[1; 2 * D]).unwrap();
    let r = d.forward(p, &[ids]).await;
    assert_eq!(r.code, ReturnCode::BadRequest);
    assert!(
        r.message.contains("dtype i64 does not fit"),
        "{}",
        r.message
    );

    let r = d
        .call(p, fw, std::slice::from_ref(&x), std::slice::from_ref(&x))
        .await;
    assert_eq!(r.code, ReturnCode::BadRequest);
    assert!(
        r.message.contains("grad_outputs: expected 0"),
        "{}",
        r.message
    );

    let big = input(200, 0.1);
    let r = d.forward(p, &[big]).await;
    assert_eq!(r.code, ReturnCode::BadRequest);
    assert!(
        r.message.contains("above the limit of 4096 bytes"),
        "{}",
        r.message
    );

    let r = send_tampered(&d, p, fw, std::slice::from_ref(&x), &[], Some(&kp), |q| {
        q.response_dtype = 4
    })
    .await;
    assert_eq!(r.code, ReturnCode::BadRequest);
    assert!(r.message.contains("response_dtype"), "{}", r.message);
    s.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn shape_mismatch_in_inputs_and_gradients() {
    let s = start(expert(), AxonConfig::default()).await;
    let d = dendrite("//Alice");
    let wrong = Tensor::from_f32(vec![2, D - 1], &[0.0; 2 * (D - 1)]).unwrap();
    let r = d.forward(&s.peer, &[wrong]).await;
    assert_eq!(r.code, ReturnCode::ShapeMismatch);
    assert!(r.message.contains("[batch, 8]"), "{}", r.message);
    let g = Tensor::from_f32(vec![3, D], &[0.0; 3 * D]).unwrap();
    let r = d.backward(&s.peer, &[input(2, 0.0)], &[g]).await;
    assert_eq!(r.code, ReturnCode::ShapeMismatch);
    assert!(r.message.contains("grad_outputs[0]"), "{}", r.message);
    s.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn unauthenticated_for_each_signature_fault() {
    let s = start(expert(), AxonConfig::default()).await;
    let d = dendrite("//Alice");
    let kp = key("//Alice");
    let x = [input(1, 0.0)];
    let p = &s.peer;
    let fw = Method::Forward;

    // Signed correctly, but for another axon.
    let other = Peer {
        hotkey: key("//Eve").public(),
        endpoint: p.endpoint.clone(),
    };
    let r = d.forward(&other, &x).await;
    assert_eq!(r.code, ReturnCode::Unauthenticated);
    assert!(r.message.contains("is not this axon"), "{}", r.message);

    // A body changed after signing.
    let r = send_tampered(&d, p, fw, &x, &[], None, |q| q.timeout_ms += 1).await;
    assert_eq!(r.code, ReturnCode::Unauthenticated);
    assert!(r.message.contains("does not verify"), "{}", r.message);

    // A Forward signature replayed as Backward.
    let req = d.build_request(fw, &p.hotkey, &x, &[]).unwrap();
    let r = d.send(p, Method::Backward, req, Instant::now()).await;
    assert_eq!(r.code, ReturnCode::Unauthenticated, "{}", r.message);

    let r = send_tampered(&d, p, fw, &x, &[], None, |q| q.signature.truncate(10)).await;
    assert_eq!(r.code, ReturnCode::Unauthenticated);
    assert!(
        r.message.contains("signature is malformed (10 bytes)"),
        "{}",
        r.message
    );

    let r = send_tampered(&d, p, fw, &x, &[], None, |q| {
        q.caller.pop().map(|_| ()).unwrap_or(())
    })
    .await;
    assert_eq!(r.code, ReturnCode::Unauthenticated);
    assert!(
        r.message.contains("caller key is invalid (31 bytes)"),
        "{}",
        r.message
    );

    // Signed by someone else than the caller it names.
    let mallory = key("//Mallory");
    let r = send_tampered(&d, p, fw, &x, &[], Some(&mallory), |_| {}).await;
    assert_eq!(r.code, ReturnCode::Unauthenticated);
    assert!(
        r.message.contains(&kp.public().to_string()),
        "{}",
        r.message
    );
    s.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn stale_nonce_replayed_or_out_of_window() {
    let s = start(expert(), AxonConfig::default()).await;
    let d = dendrite("//Alice");
    let kp = key("//Alice");
    let x = [input(1, 0.0)];
    let req = d
        .build_request(Method::Forward, &s.peer.hotkey, &x, &[])
        .unwrap();
    let r = d
        .send(&s.peer, Method::Forward, req.clone(), Instant::now())
        .await;
    assert_eq!(r.code, ReturnCode::Success, "{}", r.message);
    let r = d.send(&s.peer, Method::Forward, req, Instant::now()).await;
    assert_eq!(r.code, ReturnCode::StaleNonce);
    assert!(r.message.contains("was already used"), "{}", r.message);

    // Out of order within the reorder window is fine, once; beyond it, refused.
    let a = d
        .build_request(Method::Forward, &s.peer.hotkey, &x, &[])
        .unwrap();
    let b = d
        .build_request(Method::Forward, &s.peer.hotkey, &x, &[])
        .unwrap();
    assert!(a.nonce < b.nonce);
    let r = d.send(&s.peer, Method::Forward, b, Instant::now()).await;
    assert_eq!(r.code, ReturnCode::Success, "{}", r.message);
    let r = d
        .send(&s.peer, Method::Forward, a.clone(), Instant::now())
        .await;
    assert_eq!(
        r.code,
        ReturnCode::Success,
        "the earlier nonce, late: {}",
        r.message
    );
    let r = d.send(&s.peer, Method::Forward, a, Instant::now()).await;
    assert_eq!(r.code, ReturnCode::StaleNonce, "{}", r.message);
    let r = send_tampered(&d, &s.peer, Method::Forward, &x, &[], Some(&kp), |q| {
        q.nonce -= 10_000_000_000 // 10 s below the highest, beyond the 5 s reorder window
    })
    .await;
    assert_eq!(r.code, ReturnCode::StaleNonce, "{}", r.message);
    assert!(r.message.contains("too far below"), "{}", r.message);

    let r = send_tampered(&d, &s.peer, Method::Forward, &x, &[], Some(&kp), |q| {
        q.nonce = 1
    })
    .await;
    assert_eq!(r.code, ReturnCode::StaleNonce);
    assert!(
        r.message.contains("away from the axon's clock"),
        "{}",
        r.message
    );
    s.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn backoff_when_full_and_overloaded_when_pushed_out() {
    let model = Gated::new(false);
    let cfg = AxonConfig {
        queue_capacity: 1,
        ..AxonConfig::default()
    };
    let s = start(model.clone(), cfg).await;
    let (low, high, busy) = (
        dendrite("//Alice"),
        dendrite("//Charlie"),
        dendrite("//Dave"),
    );
    s.stakes.set(key("//Charlie").public(), 100);
    s.stakes.set(key("//Alice").public(), 5);
    let axon = s.handle.axon.clone();

    // One request holds the worker at the gate, one fills the queue.
    let peer = s.peer.clone();
    let first = tokio::spawn(async move { busy.forward(&peer, &[input(1, 1.0)]).await });
    wait_depth(&axon, 0).await;
    wait_model_calls(&axon, 1).await;
    let peer = s.peer.clone();
    let low2 = low.clone();
    let queued = tokio::spawn(async move { low2.forward(&peer, &[input(1, 2.0)]).await });
    wait_depth(&axon, 1).await;

    // Same stake as the queued one: backoff at once.
    let r = dendrite("//Ferdie")
        .forward(&s.peer, &[input(1, 3.0)])
        .await;
    assert_eq!(r.code, ReturnCode::Backoff);
    assert!(r.message.contains("queue is full"), "{}", r.message);

    // More stake: takes the place of the queued request, which is answered overloaded.
    let peer = s.peer.clone();
    let winner = tokio::spawn(async move { high.forward(&peer, &[input(1, 4.0)]).await });
    let r = queued.await.unwrap();
    assert_eq!(r.code, ReturnCode::Overloaded);
    assert!(
        r.message.contains("pushed out of the queue by stake 100"),
        "{}",
        r.message
    );
    model.open();
    assert_eq!(first.await.unwrap().code, ReturnCode::Success);
    assert_eq!(winner.await.unwrap().code, ReturnCode::Success);
    s.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn timeout_when_the_model_does_not_answer_in_time() {
    let model = Gated::new(false);
    let s = start(model.clone(), AxonConfig::default()).await;
    let d = dendrite("//Alice");
    let kp = key("//Alice");
    let r = send_tampered(
        &d,
        &s.peer,
        Method::Forward,
        &[input(1, 0.0)],
        &[],
        Some(&kp),
        |q| q.timeout_ms = 100,
    )
    .await;
    assert_eq!(r.code, ReturnCode::Timeout);
    assert!(
        r.message.contains("timed out after 100 ms"),
        "{}",
        r.message
    );
    model.open();
    s.handle.shutdown().await.unwrap();

    // A client-side deadline gives the same code.
    let model = Gated::new(false);
    let s = start(model.clone(), AxonConfig::default()).await;
    let cfg = DendriteConfig {
        timeout: Duration::from_millis(100),
        ..DendriteConfig::default()
    };
    let d = Dendrite::new(key("//Alice"), cfg).unwrap();
    let r = d.forward(&s.peer, &[input(1, 0.0)]).await;
    assert_eq!(r.code, ReturnCode::Timeout, "{}", r.message);
    model.open();
    s.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn unavailable_when_paused_or_unreachable() {
    let s = start(expert(), AxonConfig::default()).await;
    let d = dendrite("//Alice");
    s.handle.axon.set_serving(false);
    let r = d.forward(&s.peer, &[input(1, 0.0)]).await;
    assert_eq!(r.code, ReturnCode::Unavailable);
    assert!(r.message.contains("not serving: paused"), "{}", r.message);
    let endpoint = s.peer.endpoint.clone();
    s.handle.shutdown().await.unwrap();

    let gone = Peer {
        hotkey: s.server.public(),
        endpoint,
    };
    let r = dendrite("//Charlie").forward(&gone, &[input(1, 0.0)]).await;
    assert_eq!(r.code, ReturnCode::Unavailable, "{}", r.message);
}

#[tokio::test]
async fn internal_for_each_model_failure() {
    for (model, needle) in [
        (common::Broken::Errors, "out of memory"),
        (common::Broken::Panics, "panicked: index out of bounds"),
        (common::Broken::NanOutput, "non-finite"),
        (common::Broken::WrongShape, "output[0]"),
    ] {
        let s = start(Arc::new(model), AxonConfig::default()).await;
        let r = dendrite("//Alice").forward(&s.peer, &[input(2, 0.0)]).await;
        assert_eq!(r.code, ReturnCode::Internal);
        assert!(r.message.contains(needle), "{needle}: {}", r.message);
        // The worker survived: the axon still answers.
        let r = dendrite("//Charlie")
            .forward(&s.peer, &[input(2, 0.0)])
            .await;
        assert_eq!(r.code, ReturnCode::Internal);
        s.handle.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn higher_stake_is_served_first() {
    let model = Gated::new(false);
    let s = start(
        model.clone(),
        AxonConfig {
            queue_capacity: 16,
            ..AxonConfig::default()
        },
    )
    .await;
    let axon = s.handle.axon.clone();
    // The first request holds the gate; the others queue up in order of arrival, lowest
    // stake first.
    let first = hold_worker(&s).await;
    let mut tasks = Vec::new();
    for stake in 1..=6u64 {
        let uri = format!("//Caller{stake}");
        s.stakes.set(key(&uri).public(), stake * 10);
        let d = dendrite(&uri);
        let peer = s.peer.clone();
        tasks.push(tokio::spawn(async move {
            d.forward(&peer, &[input(1, stake as f32)]).await
        }));
        wait_depth(&axon, stake as usize).await;
    }
    model.open();
    assert_eq!(first.await.unwrap().code, ReturnCode::Success);
    for t in tasks {
        assert_eq!(t.await.unwrap().code, ReturnCode::Success);
    }
    let served = model.served.lock().unwrap().clone();
    assert_eq!(served, vec![-1.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]);
    s.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn concurrent_forwards_are_fused_and_answer_the_same() {
    let model = Gated::new(true);
    let s = start(model.clone(), AxonConfig::default()).await;
    let axon = s.handle.axon.clone();
    let first = hold_worker(&s).await;
    let mut tasks = Vec::new();
    for i in 0..4 {
        let d = dendrite(&format!("//Fused{i}"));
        let peer = s.peer.clone();
        tasks.push(tokio::spawn(async move {
            d.forward(&peer, &[input(i + 1, i as f32)]).await
        }));
    }
    wait_depth(&axon, 4).await;
    model.open();
    first.await.unwrap();
    for (i, t) in tasks.into_iter().enumerate() {
        let r = t.await.unwrap();
        assert_eq!(r.code, ReturnCode::Success, "{}", r.message);
        let alone = bt_wire::Synapse::forward(&model.inner, &[input(i + 1, i as f32)]).unwrap();
        let (a, b) = (r.outputs[0].to_f32().unwrap(), alone[0].to_f32().unwrap());
        assert_eq!(a.len(), b.len());
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() < 1e-4, "fused {p} vs alone {q}");
        }
    }
    // Two model calls served five requests.
    assert_eq!(axon.metrics().batches(Method::Forward), (2, 5));
    s.handle.shutdown().await.unwrap();
}

/// Backward requests waiting together are served by one model call; each caller gets the
/// input gradient of its own rows.
#[tokio::test]
async fn concurrent_backwards_are_fused_and_answer_the_same() {
    let model = Gated::with_lr(true, 0.0);
    let s = start(model.clone(), AxonConfig::default()).await;
    let axon = s.handle.axon.clone();
    let first = hold_worker(&s).await;
    let grad = |rows: usize, i: usize| {
        let g: Vec<f32> = (0..rows * D)
            .map(|k| ((k + i) as f32 * 0.37).sin())
            .collect();
        Tensor::from_f32(vec![rows, D], &g).unwrap()
    };
    let mut tasks = Vec::new();
    for i in 0..4 {
        let d = dendrite(&format!("//Fused{i}"));
        let peer = s.peer.clone();
        let g = grad(i + 1, i);
        tasks.push(tokio::spawn(async move {
            d.backward(&peer, &[input(i + 1, i as f32)], &[g]).await
        }));
    }
    wait_depth(&axon, 4).await;
    model.open();
    first.await.unwrap();
    for (i, t) in tasks.into_iter().enumerate() {
        let r = t.await.unwrap();
        assert_eq!(r.code, ReturnCode::Success, "{}", r.message);
        let alone =
            bt_wire::Synapse::backward(&model.inner, &[input(i + 1, i as f32)], &[grad(i + 1, i)])
                .unwrap()
                .unwrap();
        let (a, b) = (r.outputs[0].to_f32().unwrap(), alone[0].to_f32().unwrap());
        assert_eq!(a.len(), (i + 1) * D);
        assert_eq!(a.len(), b.len());
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() < 1e-5, "fused {p} vs alone {q}");
        }
    }
    // One model call served the four backward requests.
    assert_eq!(model.backward_calls.load(Ordering::SeqCst), 1);
    assert_eq!(axon.metrics().batches(Method::Backward), (1, 4));
    s.handle.shutdown().await.unwrap();
}

/// With backward fusion off, each backward request is its own call.
#[tokio::test]
async fn backward_fusion_can_be_turned_off() {
    let model = Gated::with_lr(true, 0.0);
    let config = AxonConfig {
        fuse_backward: false,
        ..AxonConfig::default()
    };
    let s = start(model.clone(), config).await;
    let axon = s.handle.axon.clone();
    let first = hold_worker(&s).await;
    let mut tasks = Vec::new();
    for i in 0..3 {
        let d = dendrite(&format!("//Alone{i}"));
        let peer = s.peer.clone();
        tasks.push(tokio::spawn(async move {
            let g = Tensor::from_f32(vec![2, D], &[0.5; 2 * D]).unwrap();
            d.backward(&peer, &[input(2, i as f32)], &[g]).await
        }));
    }
    wait_depth(&axon, 3).await;
    model.open();
    first.await.unwrap();
    for t in tasks {
        assert_eq!(t.await.unwrap().code, ReturnCode::Success);
    }
    assert_eq!(model.backward_calls.load(Ordering::SeqCst), 3);
    assert_eq!(axon.metrics().batches(Method::Backward), (3, 3));
    s.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn quorum_returns_after_k_min_and_cancels_stragglers() {
    let fast1 = start(expert(), AxonConfig::default()).await;
    let fast2 = start(expert(), AxonConfig::default()).await;
    let slow_model = Gated::new(false);
    let slow = start(slow_model.clone(), AxonConfig::default()).await;
    let d = dendrite("//Alice");
    let peers = [fast1.peer.clone(), slow.peer.clone(), fast2.peer.clone()];
    let quorum = Quorum {
        k_min: 2,
        grace: Duration::from_millis(50),
    };
    let replies = d.forward_many(&peers, &[input(2, 0.0)], quorum).await;
    assert_eq!(replies.len(), 3);
    assert_eq!(replies[0].code, ReturnCode::Success);
    assert_eq!(replies[2].code, ReturnCode::Success);
    assert_eq!(replies[1].code, ReturnCode::Timeout);
    assert!(
        replies[1].message.starts_with("cancelled"),
        "{}",
        replies[1].message
    );
    slow_model.open();
    for s in [fast1, fast2, slow] {
        s.handle.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn failing_peer_is_backed_off_exponentially() {
    let s = start(Arc::new(common::Broken::Errors), AxonConfig::default()).await;
    let cfg = DendriteConfig {
        backoff_base: Duration::from_secs(60),
        ..DendriteConfig::default()
    };
    let d = Dendrite::new(key("//Alice"), cfg).unwrap();
    let r = d.forward(&s.peer, &[input(1, 0.0)]).await;
    assert_eq!(r.code, ReturnCode::Internal);
    let requests = s.handle.axon.metrics().render();
    // The next call is not sent: the peer is backed off.
    let r = d.forward(&s.peer, &[input(1, 0.0)]).await;
    assert_eq!(r.code, ReturnCode::Backoff);
    assert!(
        r.message.contains("backing off") && r.message.contains("after 1 failures"),
        "{}",
        r.message
    );
    assert_eq!(
        requests,
        s.handle.axon.metrics().render(),
        "nothing reached the axon"
    );
    s.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn metrics_endpoint_serves_prometheus_text() {
    let s = start(expert(), AxonConfig::default()).await;
    let d = dendrite("//Alice");
    for _ in 0..3 {
        assert!(d.forward(&s.peer, &[input(1, 0.0)]).await.is_success());
    }
    let bad = Tensor::from_f32(vec![1, 3], &[0.0; 3]).unwrap();
    d.forward(&s.peer, &[bad]).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(bt_wire::serve_metrics(
        listener,
        s.handle.axon.metrics(),
        async move {
            let _ = rx.await;
        },
    ));
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    conn.read_to_string(&mut body).await.unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(
        body.contains("bt_wire_requests_total{method=\"forward\"} 4"),
        "{body}"
    );
    assert!(body.contains(
        "bt_wire_responses_total{method=\"forward\",code=\"RETURN_CODE_SHAPE_MISMATCH\"} 1"
    ));
    assert!(body.contains("bt_wire_request_duration_seconds_count{method=\"forward\"} 4"));
    assert!(body.contains("bt_wire_queue_depth 0"));
    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
    s.handle.shutdown().await.unwrap();
}
