//! Fuzzes the axon's request decoding: arbitrary bytes through protobuf decoding and every
//! check of `Axon::validate`, both as they come (mostly refused at the signature) and re-signed
//! with a valid caller, receiver and nonce (so the tensor checks behind the signature are
//! reached). Nothing may panic.
#![no_main]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bt_keys::Keypair;
use bt_wire::proto::Request;
use bt_wire::{Axon, AxonConfig, FeedForwardExpert, MemoryStakes, Method, Tensor, signing};
use libfuzzer_sys::fuzz_target;
use prost::Message;

struct Fixture {
    axon: Axon,
    caller: Keypair,
    nonce: AtomicU64,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let server = Keypair::from_mini_secret([7; 32]);
        let config = AxonConfig {
            max_request_bytes: 1 << 16,
            ..AxonConfig::default()
        };
        let axon = Axon::new(
            server.public(),
            Arc::new(FeedForwardExpert::new(4, 8, 0.0, 1)),
            Arc::new(MemoryStakes::new()),
            config,
        )
        .expect("axon");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Fixture {
            axon,
            caller: Keypair::from_mini_secret([9; 32]),
            nonce: AtomicU64::new(now),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(mut req) = Request::decode(rest) else {
        return;
    };
    for t in req.inputs.iter().chain(&req.grad_outputs) {
        let _ = Tensor::from_proto(t.clone(), "fuzz");
    }
    let f = fixture();
    let method = if mode & 1 == 0 {
        Method::Forward
    } else {
        Method::Backward
    };
    if mode & 2 != 0 {
        req.receiver = f.axon.hotkey().as_bytes().to_vec();
        req.nonce = f.nonce.fetch_add(1, Ordering::Relaxed);
        signing::sign(method, &mut req, &f.caller);
    }
    let _ = f.axon.validate(method, req);
});
