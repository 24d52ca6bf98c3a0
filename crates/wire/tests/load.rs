//! Load: 64 concurrent clients, each with its own hotkey and stake, against one axon with a
//! small queue, for a bounded time. No crash, bounded memory, overload answered with backoff
//! (or eviction), and the callers with the most stake served more than those with the least.
//!
//! The normal run takes about two seconds; `scripts/wire-load.sh` runs the long version
//! (`WIRE_LOAD_SECS`, ignored test `load_full`).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bt_wire::proto::ReturnCode;
use bt_wire::{
    AxonConfig, Dendrite, DendriteConfig, Dim, Synapse, SynapseResult, Tensor, TensorSpec,
};
use common::*;

const CLIENTS: usize = 64;

/// A model that costs a fixed time per call, so that 64 clients surely overload it.
struct Slow;

impl Synapse for Slow {
    fn input_spec(&self) -> Vec<TensorSpec> {
        vec![TensorSpec::float(vec![Dim::Batch, Dim::Fixed(D)])]
    }
    fn output_spec(&self) -> Vec<TensorSpec> {
        self.input_spec()
    }
    fn forward(&self, inputs: &[Tensor]) -> SynapseResult<Vec<Tensor>> {
        std::thread::sleep(Duration::from_millis(2));
        Ok(inputs.to_vec())
    }
    fn backward(&self, _: &[Tensor], _: &[Tensor]) -> SynapseResult<Option<Vec<Tensor>>> {
        Ok(None)
    }
}

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn run(secs: f64) {
    let cfg = AxonConfig {
        queue_capacity: 16,
        ..AxonConfig::default()
    };
    let s = start(Arc::new(Slow), cfg).await;
    let rss_before = rss_kib();
    let stop = Instant::now() + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let uri = format!("//Load{i}");
        s.stakes.set(key(&uri).public(), i as u64 + 1);
        let cfg = DendriteConfig {
            timeout: Duration::from_secs(5),
            // Retry at once: this test measures the axon, not the client's backoff.
            backoff_base: Duration::ZERO,
            ..DendriteConfig::default()
        };
        let d = Dendrite::new(key(&uri), cfg).unwrap();
        let peer = s.peer.clone();
        tasks.push(tokio::spawn(async move {
            let mut codes: HashMap<i32, u64> = HashMap::new();
            // Bounded in count as well as in time.
            for _ in 0..100_000 {
                if Instant::now() >= stop {
                    break;
                }
                let r = d.forward(&peer, &[input(1, i as f32)]).await;
                *codes.entry(r.code as i32).or_default() += 1;
            }
            (i, codes)
        }));
    }
    let mut per_client = vec![HashMap::new(); CLIENTS];
    for t in tasks {
        let (i, codes) = t.await.expect("client task");
        per_client[i] = codes;
    }
    let count =
        |codes: &HashMap<i32, u64>, c: ReturnCode| codes.get(&(c as i32)).copied().unwrap_or(0);
    let mut totals: HashMap<i32, u64> = HashMap::new();
    for codes in &per_client {
        for (c, n) in codes {
            *totals.entry(*c).or_default() += n;
        }
    }
    let quarter = CLIENTS / 4;
    let served = |range: std::ops::Range<usize>| -> u64 {
        range
            .map(|i| count(&per_client[i], ReturnCode::Success))
            .sum()
    };
    let (low, high) = (served(0..quarter), served(CLIENTS - quarter..CLIENTS));
    let rss_after = rss_kib();
    println!(
        "load: {CLIENTS} clients, {secs} s: success {}, backoff {}, overloaded {}, timeout {}, other {}; \
         served lowest-stake quarter {low}, highest-stake quarter {high}; RSS {rss_before:?} -> {rss_after:?} KiB",
        count(&totals, ReturnCode::Success),
        count(&totals, ReturnCode::Backoff),
        count(&totals, ReturnCode::Overloaded),
        count(&totals, ReturnCode::Timeout),
        totals
            .iter()
            .filter(|(c, _)| ![1, 2, 3, 9].contains(*c))
            .map(|(_, n)| n)
            .sum::<u64>(),
    );
    for (c, n) in &totals {
        // A low-stake request may also wait in the queue, behind ever newer higher-stake
        // ones, until its timeout.
        assert!(
            [
                ReturnCode::Success,
                ReturnCode::Backoff,
                ReturnCode::Overloaded,
                ReturnCode::Timeout,
            ]
            .iter()
            .any(|k| *k as i32 == *c),
            "unexpected code {c} ({n} times)"
        );
    }
    assert!(count(&totals, ReturnCode::Success) > 0);
    assert!(
        count(&totals, ReturnCode::Backoff) > 0,
        "overload was answered with backoff"
    );
    assert!(
        high > low,
        "highest-stake callers served more ({high}) than lowest ({low})"
    );
    if let (Some(a), Some(b)) = (rss_before, rss_after) {
        assert!(b < a + 256 * 1024, "memory grew from {a} to {b} KiB");
    }
    // Still alive and answering.
    let r = dendrite("//After").forward(&s.peer, &[input(1, 0.0)]).await;
    assert_eq!(r.code, ReturnCode::Success, "{}", r.message);
    s.handle.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_64_clients_short() {
    run(1.5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long; run by scripts/wire-load.sh"]
async fn load_full() {
    let secs = std::env::var("WIRE_LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60.0);
    run(secs).await;
}
