//! Shared fixtures of the loopback tests: test models, and an axon on 127.0.0.1.
#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bt_keys::Keypair;
use bt_wire::{
    Axon, AxonConfig, AxonHandle, Dendrite, DendriteConfig, Dim, FeedForwardExpert, MemoryStakes,
    Peer, Reply, Synapse, SynapseResult, Tensor, TensorSpec,
};

pub const D: usize = 8;

pub fn key(uri: &str) -> Keypair {
    Keypair::from_uri(uri).expect("test key")
}

/// A model that waits at a gate before each forward call and records the first value of each
/// input it serves (the tests use it as a marker of who was served when).
pub struct Gated {
    pub inner: FeedForwardExpert,
    open: Mutex<bool>,
    cv: Condvar,
    pub served: Mutex<Vec<f32>>,
    pub fuse: bool,
    /// Backward calls made (each may serve several fused requests).
    pub backward_calls: AtomicUsize,
}

impl Gated {
    pub fn new(fuse: bool) -> Arc<Gated> {
        Gated::with_lr(fuse, 0.01)
    }

    /// A gated expert with SGD learning rate `lr`.
    pub fn with_lr(fuse: bool, lr: f32) -> Arc<Gated> {
        Arc::new(Gated {
            inner: FeedForwardExpert::new(D, 16, lr, 3),
            open: Mutex::new(false),
            cv: Condvar::new(),
            served: Mutex::new(Vec::new()),
            fuse,
            backward_calls: AtomicUsize::new(0),
        })
    }

    pub fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }

    fn wait(&self) {
        let mut open = self.open.lock().unwrap();
        while !*open {
            let (g, _) = self.cv.wait_timeout(open, Duration::from_secs(30)).unwrap();
            open = g;
            // Never hang a test forever: after 30 s the gate opens by itself.
            if !*open {
                *open = true;
            }
        }
    }
}

impl Synapse for Gated {
    fn input_spec(&self) -> Vec<TensorSpec> {
        self.inner.input_spec()
    }
    fn output_spec(&self) -> Vec<TensorSpec> {
        self.inner.output_spec()
    }
    fn forward(&self, inputs: &[Tensor]) -> SynapseResult<Vec<Tensor>> {
        self.wait();
        let x = inputs[0].to_f32()?;
        let mut served = self.served.lock().unwrap();
        for row in x.chunks(D) {
            served.push(row[0]);
        }
        drop(served);
        self.inner.forward(inputs)
    }
    fn backward(&self, inputs: &[Tensor], g: &[Tensor]) -> SynapseResult<Option<Vec<Tensor>>> {
        self.backward_calls.fetch_add(1, Ordering::SeqCst);
        self.inner.backward(inputs, g)
    }
    fn batchable(&self) -> bool {
        self.fuse
    }
    fn batchable_backward(&self) -> bool {
        self.fuse
    }
}

/// A model that fails in a chosen way.
pub enum Broken {
    Errors,
    Panics,
    NanOutput,
    WrongShape,
}

impl Synapse for Broken {
    fn input_spec(&self) -> Vec<TensorSpec> {
        vec![TensorSpec::float(vec![Dim::Batch, Dim::Fixed(D)])]
    }
    fn output_spec(&self) -> Vec<TensorSpec> {
        vec![TensorSpec::float(vec![Dim::Batch, Dim::Fixed(D)])]
    }
    fn forward(&self, inputs: &[Tensor]) -> SynapseResult<Vec<Tensor>> {
        let n = inputs[0].shape()[0];
        match self {
            Broken::Errors => Err("out of memory".into()),
            Broken::Panics => panic!("index out of bounds"),
            Broken::NanOutput => Ok(vec![Tensor::from_f32(vec![n, D], &vec![f32::NAN; n * D])?]),
            Broken::WrongShape => Ok(vec![Tensor::from_f32(
                vec![n, D + 1],
                &vec![0.0; n * (D + 1)],
            )?]),
        }
    }
    fn backward(&self, _: &[Tensor], _: &[Tensor]) -> SynapseResult<Option<Vec<Tensor>>> {
        Ok(None)
    }
}

pub struct Setup {
    pub server: Keypair,
    pub handle: AxonHandle,
    pub stakes: Arc<MemoryStakes>,
    pub peer: Peer,
}

pub async fn start(synapse: Arc<dyn Synapse>, config: AxonConfig) -> Setup {
    let server = key("//Bob");
    let stakes = Arc::new(MemoryStakes::new());
    let axon = Axon::new(server.public(), synapse, stakes.clone(), config).expect("axon");
    let handle = axon
        .spawn("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("spawn");
    let peer = Peer {
        hotkey: server.public(),
        endpoint: handle.endpoint(),
    };
    Setup {
        server,
        handle,
        stakes,
        peer,
    }
}

pub fn dendrite(uri: &str) -> Dendrite {
    Dendrite::new(key(uri), DendriteConfig::default()).expect("dendrite")
}

pub fn input(rows: usize, marker: f32) -> Tensor {
    let mut v = vec![0.1f32; rows * D];
    for r in 0..rows {
        v[r * D] = marker;
    }
    Tensor::from_f32(vec![rows, D], &v).expect("tensor")
}

/// Waits (bounded) until the axon's queue holds `depth` requests.
pub async fn wait_depth(axon: &Axon, depth: usize) {
    for _ in 0..2000 {
        if axon.queue_depth() == depth {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!(
        "queue never reached depth {depth} (at {})",
        axon.queue_depth()
    );
}

/// Sends one forward request from `//Blocker` to a [`Gated`] model and waits until the worker
/// holds it at the gate, so that the requests sent next wait in the queue. Returns its task.
pub async fn hold_worker(s: &Setup) -> tokio::task::JoinHandle<Reply> {
    let blocker = dendrite("//Blocker");
    let peer = s.peer.clone();
    let first = tokio::spawn(async move { blocker.forward(&peer, &[input(1, -1.0)]).await });
    wait_model_calls(&s.handle.axon, 1).await;
    first
}

/// Waits (bounded) until the axon's workers have started `calls` model calls.
pub async fn wait_model_calls(axon: &Axon, calls: u64) {
    for _ in 0..2000 {
        if axon.metrics().batches(bt_wire::Method::Forward).0 >= calls {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the model was never called {calls} times");
}
