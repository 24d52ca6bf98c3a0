//! The competitive mask at the axon: each caller's answer is scaled by what the stake view says
//! for it, the gradient it sends back is scaled alike, and a bad scale is refused.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bt_keys::PublicKey;
use bt_wire::{Axon, AxonConfig, FeedForwardExpert, Peer, ReturnCode, StakeView, Synapse, Tensor};
use common::*;

#[derive(Default)]
struct Masks(Mutex<HashMap<PublicKey, f32>>);

impl StakeView for Masks {
    fn stake(&self, _: &PublicKey) -> u64 {
        0
    }
    fn response_scale(&self, caller: &PublicKey) -> f32 {
        self.0.lock().unwrap().get(caller).copied().unwrap_or(1.0)
    }
}

async fn serve(model: Arc<dyn Synapse>, masks: Arc<Masks>) -> (bt_wire::AxonHandle, Peer) {
    let server = key("//Bob");
    let axon = Axon::new(server.public(), model, masks, AxonConfig::default()).unwrap();
    let handle = axon.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let peer = Peer {
        hotkey: server.public(),
        endpoint: handle.endpoint(),
    };
    (handle, peer)
}

#[tokio::test]
async fn answers_and_gradients_are_scaled_per_caller() {
    let masks = Arc::new(Masks::default());
    masks
        .0
        .lock()
        .unwrap()
        .insert(key("//Charlie").public(), 0.25);
    let model = Arc::new(FeedForwardExpert::new(D, 16, 0.05, 1));
    let (handle, peer) = serve(model.clone(), masks.clone()).await;
    let (full, masked) = (dendrite("//Alice"), dendrite("//Charlie"));
    let x = input(3, 0.7);
    let a = full.forward(&peer, std::slice::from_ref(&x)).await;
    let b = masked.forward(&peer, std::slice::from_ref(&x)).await;
    assert_eq!(a.code, ReturnCode::Success, "{}", a.message);
    assert_eq!(b.code, ReturnCode::Success, "{}", b.message);
    let (a, b) = (
        a.outputs[0].to_f32().unwrap(),
        b.outputs[0].to_f32().unwrap(),
    );
    assert!(a.iter().any(|v| *v != 0.0));
    for (u, v) in a.iter().zip(&b) {
        assert!(
            (v - 0.25 * u).abs() <= 1e-6 * u.abs().max(1.0),
            "{v} vs 0.25 * {u}"
        );
    }
    handle.shutdown().await.unwrap();

    // Backward through a caller masked at 0.5 with gradient g moves the model exactly as an
    // unmasked caller sending 0.5 g.
    let g: Vec<f32> = (0..3 * D).map(|i| (i as f32 * 0.37).sin()).collect();
    let half: Vec<f32> = g.iter().map(|v| 0.5 * v).collect();
    let mut sums = Vec::new();
    for (caller, grad, scale) in [("//Charlie", &g, 0.5f32), ("//Alice", &half, 1.0)] {
        let masks = Arc::new(Masks::default());
        masks.0.lock().unwrap().insert(key(caller).public(), scale);
        let model = Arc::new(FeedForwardExpert::new(D, 16, 0.05, 1));
        let (handle, peer) = serve(model.clone(), masks).await;
        let gt = Tensor::from_f32(vec![3, D], grad).unwrap();
        let r = dendrite(caller)
            .backward(&peer, std::slice::from_ref(&x), &[gt])
            .await;
        assert_eq!(r.code, ReturnCode::Success, "{}", r.message);
        sums.push(model.param_checksum());
        handle.shutdown().await.unwrap();
    }
    assert!((sums[0] - sums[1]).abs() < 1e-9, "{sums:?}");
}

#[tokio::test]
async fn a_scale_outside_zero_one_is_refused() {
    for bad in [f32::NAN, 1.5, -0.1] {
        let masks = Arc::new(Masks::default());
        masks.0.lock().unwrap().insert(key("//Alice").public(), bad);
        let model = Arc::new(FeedForwardExpert::new(D, 16, 0.05, 1));
        let (handle, peer) = serve(model, masks).await;
        let r = dendrite("//Alice").forward(&peer, &[input(2, 0.1)]).await;
        assert_ne!(r.code, ReturnCode::Success);
        assert!(r.message.contains("response scale"), "{}", r.message);
        handle.shutdown().await.unwrap();
    }
}
