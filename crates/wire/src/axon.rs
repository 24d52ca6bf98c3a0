//! The axon: a gRPC server that validates, authenticates and queues requests by stake, and
//! runs them on a [`Synapse`] in worker threads.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bt_keys::PublicKey;
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::server::TcpIncoming;

use crate::error::{Result, WireError};
use crate::metrics::Metrics;
use crate::proto::{self, ReturnCode, axon_server::AxonServer};
use crate::queue::{Fuse, Job, JobQueue, JobResult};
use crate::signing::{self, Method, VerifyError};
use crate::synapse::{Kind, StakeView, Synapse, TensorSpec};
use crate::tensor::{DType, Tensor};

/// How an axon behaves; `Default` gives sensible production values.
#[derive(Clone, Debug)]
pub struct AxonConfig {
    /// Largest encoded request accepted (bytes); larger ones are answered `bad request`.
    pub max_request_bytes: usize,
    /// Requests that may wait for the model at once; beyond, `backoff` or eviction.
    pub queue_capacity: usize,
    /// Threads that run the model.
    pub workers: usize,
    /// Whether concurrent forward requests may be fused into one model call (when the model
    /// is [`Synapse::batchable`]).
    pub fuse_forward: bool,
    /// Whether concurrent backward requests may be fused into one model call (when the model
    /// is [`Synapse::batchable_backward`]).
    pub fuse_backward: bool,
    /// Most rows of one fused call.
    pub max_batch_rows: usize,
    /// Timeout of a request that names none.
    pub default_timeout: Duration,
    /// Upper bound on the timeout a request may name.
    pub max_timeout: Duration,
    /// How far a nonce may be from the axon's clock (Unix nanoseconds).
    pub nonce_window: Duration,
    /// How far below a caller's highest nonce a new nonce may be (requests sent concurrently
    /// arrive out of order); each nonce is still accepted once.
    pub nonce_reorder: Duration,
    /// HTTP/2 keepalive ping interval.
    pub keepalive_interval: Duration,
    /// HTTP/2 keepalive ping timeout.
    pub keepalive_timeout: Duration,
    /// Concurrent HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
}

impl Default for AxonConfig {
    fn default() -> AxonConfig {
        AxonConfig {
            max_request_bytes: 64 << 20,
            queue_capacity: 256,
            workers: 1,
            fuse_forward: true,
            fuse_backward: true,
            max_batch_rows: 4096,
            default_timeout: Duration::from_secs(12),
            max_timeout: Duration::from_secs(60),
            nonce_window: Duration::from_secs(60),
            nonce_reorder: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            max_concurrent_streams: 1024,
        }
    }
}

/// Per-caller nonces: the highest accepted, and every nonce accepted within `reorder` below
/// it. A nonce is accepted once: above the highest, or within `reorder` below it and not seen
/// before (a caller's concurrent requests may arrive out of order over one HTTP/2 connection).
/// Callers whose highest nonce left the clock window are forgotten (a replay of any older nonce
/// is then refused by the window check).
#[derive(Default)]
struct NonceBook {
    callers: HashMap<PublicKey, CallerNonces>,
    accepted: u64,
}

#[derive(Default)]
struct CallerNonces {
    highest: u64,
    recent: std::collections::BTreeSet<u64>,
}

impl NonceBook {
    fn check(
        &mut self,
        caller: &PublicKey,
        nonce: u64,
        now: u64,
        window: u64,
        reorder: u64,
    ) -> Result<()> {
        if nonce.abs_diff(now) > window {
            return Err(WireError::NonceOutOfWindow {
                nonce,
                now,
                window_s: window / 1_000_000_000,
            });
        }
        let c = self.callers.entry(*caller).or_default();
        if c.highest != 0
            && nonce <= c.highest
            && (nonce.saturating_add(reorder) < c.highest || c.recent.contains(&nonce))
        {
            return Err(WireError::StaleNonce {
                caller: caller.to_string(),
                nonce,
                last: c.highest,
            });
        }
        c.recent.insert(nonce);
        if nonce > c.highest {
            c.highest = nonce;
            let floor = nonce.saturating_sub(reorder);
            c.recent = c.recent.split_off(&floor);
        }
        self.accepted += 1;
        if self.accepted.is_multiple_of(4096) {
            let floor = now.saturating_sub(window);
            self.callers.retain(|_, c| c.highest >= floor);
        }
        Ok(())
    }
}

struct Inner {
    hotkey: PublicKey,
    synapse: Arc<dyn Synapse>,
    stakes: Arc<dyn StakeView>,
    input_spec: Vec<TensorSpec>,
    output_spec: Vec<TensorSpec>,
    queue: JobQueue,
    nonces: Mutex<NonceBook>,
    metrics: Arc<Metrics>,
    serving: AtomicBool,
    config: AxonConfig,
}

/// A server for one [`Synapse`]; clone it freely (all clones share one state).
#[derive(Clone)]
pub struct Axon {
    inner: Arc<Inner>,
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos().min(u128::from(u64::MAX)) as u64)
        .unwrap_or(0)
}

fn render_key(bytes: &[u8]) -> String {
    match <[u8; 32]>::try_from(bytes)
        .ok()
        .and_then(|b| PublicKey::from_bytes(b).ok())
    {
        Some(pk) => pk.to_string(),
        None => format!(
            "0x{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
    }
}

impl Axon {
    /// An axon that answers to `hotkey`, serving `synapse`, ordering its queue by `stakes`.
    pub fn new(
        hotkey: PublicKey,
        synapse: Arc<dyn Synapse>,
        stakes: Arc<dyn StakeView>,
        config: AxonConfig,
    ) -> Result<Axon> {
        if config.queue_capacity == 0 || config.workers == 0 || config.max_batch_rows == 0 {
            return Err(WireError::Config(
                "queue_capacity, workers and max_batch_rows must be at least 1".into(),
            ));
        }
        Ok(Axon {
            inner: Arc::new(Inner {
                hotkey,
                input_spec: synapse.input_spec(),
                output_spec: synapse.output_spec(),
                synapse,
                stakes,
                queue: JobQueue::new(config.queue_capacity),
                nonces: Mutex::new(NonceBook::default()),
                metrics: Arc::new(Metrics::default()),
                serving: AtomicBool::new(true),
                config,
            }),
        })
    }

    /// This axon's hotkey.
    pub fn hotkey(&self) -> PublicKey {
        self.inner.hotkey
    }

    /// The metrics (render them, or serve them with [`crate::serve_metrics`]).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.inner.metrics.clone()
    }

    /// Pauses (`false`: every request is answered `unavailable`) or resumes serving.
    pub fn set_serving(&self, serving: bool) {
        self.inner.serving.store(serving, Ordering::SeqCst);
    }

    /// Requests waiting for the model now.
    pub fn queue_depth(&self) -> usize {
        self.inner.queue.len()
    }

    /// Serves on `listener` until `shutdown` completes, then answers what is queued with
    /// `unavailable` and stops the workers.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let mut workers = Vec::new();
        for i in 0..self.inner.config.workers {
            let inner = self.inner.clone();
            workers.push(
                std::thread::Builder::new()
                    .name(format!("axon-worker-{i}"))
                    .spawn(move || worker(&inner))?,
            );
        }
        let cfg = &self.inner.config;
        // tonic's own limit sits above ours so that a request a little too large is answered
        // in the protocol (`bad request`) rather than with a bare gRPC status.
        let decode_limit = cfg.max_request_bytes.saturating_mul(2).max(1 << 20);
        let svc = AxonServer::new(Service {
            inner: self.inner.clone(),
        })
        .max_decoding_message_size(decode_limit)
        .max_encoding_message_size(usize::MAX);
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let result = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .http2_keepalive_interval(Some(cfg.keepalive_interval))
            .http2_keepalive_timeout(Some(cfg.keepalive_timeout))
            .max_concurrent_streams(cfg.max_concurrent_streams)
            .initial_connection_window_size(Some(16 << 20))
            .initial_stream_window_size(Some(8 << 20))
            .add_service(svc)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await;
        self.inner.queue.close();
        let joined = tokio::task::spawn_blocking(move || {
            for w in workers {
                let _ = w.join();
            }
        });
        let _ = joined.await;
        result.map_err(|e| WireError::Transport {
            endpoint: "axon".into(),
            reason: e.to_string(),
        })
    }

    /// Binds `addr` and serves in a background task; the handle stops it.
    pub async fn spawn(self, addr: SocketAddr) -> Result<AxonHandle> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(self.clone().serve(listener, async move {
            let _ = rx.await;
        }));
        Ok(AxonHandle {
            addr,
            axon: self,
            stop: Some(tx),
            task,
        })
    }

    async fn handle(&self, method: Method, req: proto::Request) -> proto::Response {
        let start = Instant::now();
        self.inner.metrics.request(method);
        let (code, message, outputs) = match self.process(method, req).await {
            Ok(outputs) => (ReturnCode::Success, String::new(), outputs),
            Err(e) => (e.code(), e.to_string(), Vec::new()),
        };
        self.inner.metrics.response(method, code, start.elapsed());
        self.inner.metrics.set_queue_depth(self.inner.queue.len());
        proto::Response {
            code: code as i32,
            message,
            outputs,
        }
    }

    /// Authenticates, validates and queues one request; answers its outputs.
    async fn process(&self, method: Method, req: proto::Request) -> Result<Vec<proto::Tensor>> {
        let inner = &self.inner;
        let v = self.validate(method, req)?;
        let timeout_ms = v.timeout.as_millis().min(u128::from(u64::MAX)) as u64;
        let (tx, rx) = oneshot::channel();
        let scale = inner.stakes.response_scale(&v.caller);
        if !(scale.is_finite() && (0.0..=1.0).contains(&scale)) {
            return Err(model_error(
                "mask",
                format!("response scale {scale} for the caller is not in [0, 1]"),
            ));
        }
        // The caller saw `scale * y`, so the gradient with respect to `y` is `scale` times
        // the one it sent.
        let grad_outputs = if scale == 1.0 {
            v.grad_outputs
        } else {
            v.grad_outputs
                .iter()
                .map(|g| g.scaled(scale))
                .collect::<Result<Vec<_>>>()?
        };
        let depth = inner.queue.push(Job {
            method,
            caller: v.caller,
            stake: inner.stakes.stake(&v.caller),
            inputs: v.inputs,
            grad_outputs,
            scale,
            batch: v.batch,
            response_dtype: v.response_dtype,
            deadline: Instant::now() + v.timeout,
            timeout_ms,
            reply: tx,
        })?;
        inner.metrics.set_queue_depth(depth);
        let outputs = match tokio::time::timeout(v.timeout, rx).await {
            Ok(Ok(result)) => result?,
            Ok(Err(_)) => {
                return Err(WireError::NotServing {
                    reason: "shutting down".into(),
                });
            }
            Err(_) => return Err(WireError::Timeout { ms: timeout_ms }),
        };
        Ok(outputs.iter().map(Tensor::to_proto).collect())
    }

    /// Every check an axon makes before queueing a request, in order: serving, size, caller
    /// key, receiver, signature, nonce (recorded when it passes), response dtype, then each
    /// tensor (dtype, rank, byte length, declared dtype and shape, finite values). Float
    /// tensors come out as f32.
    pub fn validate(&self, method: Method, req: proto::Request) -> Result<Validated> {
        let inner = &self.inner;
        let cfg = &inner.config;
        if !inner.serving.load(Ordering::SeqCst) {
            return Err(WireError::NotServing {
                reason: "paused".into(),
            });
        }
        let size = req.encoded_len();
        if size > cfg.max_request_bytes {
            return Err(WireError::TooLarge {
                got: size,
                max: cfg.max_request_bytes,
            });
        }
        let caller = <[u8; 32]>::try_from(req.caller.as_slice())
            .map_err(|_| WireError::InvalidCaller {
                len: req.caller.len(),
                reason: "not 32 bytes".into(),
            })
            .and_then(|b| {
                PublicKey::from_bytes(b).map_err(|e| WireError::InvalidCaller {
                    len: 32,
                    reason: e.to_string(),
                })
            })?;
        if req.receiver.as_slice() != inner.hotkey.as_bytes() {
            return Err(WireError::WrongReceiver {
                expected: inner.hotkey.to_string(),
                got: render_key(&req.receiver),
            });
        }
        signing::verify(method, &req, &caller).map_err(|e| match e {
            VerifyError::Malformed => WireError::MalformedSignature {
                len: req.signature.len(),
            },
            VerifyError::Mismatch => WireError::BadSignature {
                caller: caller.to_string(),
            },
        })?;
        {
            let mut book = inner.nonces.lock().unwrap_or_else(|e| e.into_inner());
            let window = cfg.nonce_window.as_nanos().min(u128::from(u64::MAX)) as u64;
            let reorder = cfg.nonce_reorder.as_nanos().min(u128::from(u64::MAX)) as u64;
            book.check(&caller, req.nonce, unix_nanos(), window, reorder)?;
        }
        let response_dtype = match req.response_dtype {
            0 => DType::F32,
            v => DType::from_proto(v).ok_or_else(|| WireError::UnknownDType {
                what: "response_dtype".into(),
                value: v,
            })?,
        };
        if !response_dtype.is_float() {
            return Err(WireError::DTypeMismatch {
                what: "response_dtype".into(),
                expected: "f32, f16 or bf16".into(),
                got: response_dtype,
            });
        }
        let (inputs, grad_outputs, batch) =
            self.decode_tensors(method, req.inputs, req.grad_outputs)?;
        let timeout = match req.timeout_ms {
            0 => cfg.default_timeout,
            ms => Duration::from_millis(ms).min(cfg.max_timeout),
        };
        Ok(Validated {
            caller,
            inputs,
            grad_outputs,
            batch,
            response_dtype,
            timeout,
        })
    }

    /// Decodes the tensors and checks them against the model's specs; float tensors come out
    /// as f32.
    #[allow(clippy::type_complexity)]
    fn decode_tensors(
        &self,
        method: Method,
        inputs: Vec<proto::Tensor>,
        grads: Vec<proto::Tensor>,
    ) -> Result<(Vec<Tensor>, Vec<Tensor>, Option<usize>)> {
        let inner = &self.inner;
        let expected_grads = match method {
            Method::Forward => 0,
            Method::Backward => inner.output_spec.len(),
        };
        if inputs.len() != inner.input_spec.len() {
            return Err(WireError::TensorCount {
                what: "inputs",
                expected: inner.input_spec.len(),
                got: inputs.len(),
            });
        }
        if grads.len() != expected_grads {
            return Err(WireError::TensorCount {
                what: "grad_outputs",
                expected: expected_grads,
                got: grads.len(),
            });
        }
        let mut batch = None;
        let mut decode = |list: Vec<proto::Tensor>, specs: &[TensorSpec], name: &str| {
            list.into_iter()
                .zip(specs)
                .enumerate()
                .map(|(i, (p, spec))| {
                    let what = format!("{name}[{i}]");
                    let t = Tensor::from_proto(p, &what)?;
                    spec.check(&t, &what, &mut batch)?;
                    if let Some((index, value)) = t.first_non_finite() {
                        return Err(WireError::NonFinite { what, index, value });
                    }
                    match spec.kind {
                        Kind::Float => t.cast(DType::F32),
                        Kind::Int => Ok(t),
                    }
                })
                .collect::<Result<Vec<_>>>()
        };
        let inputs = decode(inputs, &inner.input_spec, "inputs")?;
        let grads = decode(grads, &inner.output_spec, "grad_outputs")?;
        Ok((inputs, grads, batch))
    }
}

/// A request that passed every check of [`Axon::validate`].
#[derive(Debug)]
pub struct Validated {
    /// The authenticated caller.
    pub caller: PublicKey,
    /// The inputs (floats as f32).
    pub inputs: Vec<Tensor>,
    /// Backward's output gradients (floats as f32); empty for Forward.
    pub grad_outputs: Vec<Tensor>,
    /// The batch size the specs resolved, if any spec has a batch dimension.
    pub batch: Option<usize>,
    /// The dtype the caller wants float outputs in.
    pub response_dtype: DType,
    /// How long the request may take.
    pub timeout: Duration,
}

/// A running axon started by [`Axon::spawn`].
pub struct AxonHandle {
    /// The bound address.
    pub addr: SocketAddr,
    /// The axon (metrics, pause).
    pub axon: Axon,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl AxonHandle {
    /// The `http://ip:port` endpoint a dendrite connects to.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving and waits for the server and its workers to finish.
    pub async fn shutdown(mut self) -> Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => Err(WireError::Transport {
                endpoint: self.endpoint(),
                reason: format!("server task failed: {e}"),
            }),
        }
    }
}

#[derive(Clone)]
struct Service {
    inner: Arc<Inner>,
}

#[tonic::async_trait]
impl proto::axon_server::Axon for Service {
    async fn forward(
        &self,
        request: tonic::Request<proto::Request>,
    ) -> std::result::Result<tonic::Response<proto::Response>, tonic::Status> {
        let axon = Axon {
            inner: self.inner.clone(),
        };
        Ok(tonic::Response::new(
            axon.handle(Method::Forward, request.into_inner()).await,
        ))
    }

    async fn backward(
        &self,
        request: tonic::Request<proto::Request>,
    ) -> std::result::Result<tonic::Response<proto::Response>, tonic::Status> {
        let axon = Axon {
            inner: self.inner.clone(),
        };
        Ok(tonic::Response::new(
            axon.handle(Method::Backward, request.into_inner()).await,
        ))
    }
}

fn worker(inner: &Inner) {
    let fuse = Fuse {
        forward: inner.config.fuse_forward && inner.synapse.batchable(),
        backward: inner.config.fuse_backward && inner.synapse.batchable_backward(),
    };
    while let Some((jobs, depth)) = inner.queue.pop(fuse, inner.config.max_batch_rows) {
        inner.metrics.set_queue_depth(depth);
        let now = Instant::now();
        let mut live = Vec::with_capacity(jobs.len());
        for job in jobs {
            if job.reply.is_closed() {
                continue;
            }
            if now >= job.deadline {
                let ms = job.timeout_ms;
                let _ = job.reply.send(Err(WireError::Timeout { ms }));
                continue;
            }
            live.push(job);
        }
        if live.is_empty() {
            continue;
        }
        if live.len() == 1 {
            for job in live {
                let result = run_one(inner, &job);
                let _ = job.reply.send(result);
            }
        } else {
            run_fused(inner, live);
        }
    }
}

fn model_error(method: &'static str, reason: String) -> WireError {
    WireError::Model { method, reason }
}

/// Calls the model, turning a panic into an error.
fn guarded<T>(
    method: &'static str,
    f: impl FnOnce() -> crate::synapse::SynapseResult<T>,
) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(model_error(method, e.to_string())),
        Err(p) => {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into());
            Err(model_error(method, format!("panicked: {what}")))
        }
    }
}

fn run_one(inner: &Inner, job: &Job) -> JobResult {
    inner.metrics.batch(job.method, 1);
    match job.method {
        Method::Forward => {
            let outputs = guarded("forward", || {
                inner.synapse.forward_from(&job.caller, &job.inputs)
            })?;
            finish(
                "forward",
                outputs,
                &inner.output_spec,
                job.batch,
                job.response_dtype,
                job.scale,
            )
        }
        Method::Backward => {
            let grads = guarded("backward", || {
                inner
                    .synapse
                    .backward_from(&job.caller, &job.inputs, &job.grad_outputs)
            })?;
            match grads {
                // The output gradients were already scaled (see `process`).
                Some(g) => finish(
                    "backward",
                    g,
                    &inner.input_spec,
                    job.batch,
                    job.response_dtype,
                    1.0,
                ),
                None => Ok(Vec::new()),
            }
        }
    }
}

/// Checks the model's outputs against `specs` (count, shape, finite) and casts floats to the
/// dtype the caller asked for.
fn finish(
    method: &'static str,
    outputs: Vec<Tensor>,
    specs: &[TensorSpec],
    batch: Option<usize>,
    dtype: DType,
    scale: f32,
) -> JobResult {
    if outputs.len() != specs.len() {
        return Err(model_error(
            method,
            format!(
                "returned {} tensors, declares {}",
                outputs.len(),
                specs.len()
            ),
        ));
    }
    let mut batch = batch;
    outputs
        .into_iter()
        .zip(specs)
        .enumerate()
        .map(|(i, (t, spec))| {
            spec.check(&t, &format!("output[{i}]"), &mut batch)
                .map_err(|e| model_error(method, e.to_string()))?;
            if let Some((index, value)) = t.first_non_finite() {
                return Err(model_error(
                    method,
                    format!("output[{i}] has non-finite value {value} at element {index}"),
                ));
            }
            if t.dtype().is_float() {
                let t = if scale == 1.0 { t } else { t.scaled(scale)? };
                t.cast(dtype)
            } else {
                Ok(t)
            }
        })
        .collect()
}

/// Concatenates the jobs' tensors (`pick` chooses inputs or output gradients) along the batch
/// dimension.
fn concat_rows(jobs: &[Job], rows: &[usize], pick: fn(&Job) -> &[Tensor]) -> Result<Vec<Tensor>> {
    let total: usize = rows.iter().sum();
    (0..pick(&jobs[0]).len())
        .map(|k| {
            let first = &pick(&jobs[0])[k];
            let mut data = Vec::with_capacity(first.data().len() / rows[0].max(1) * total);
            for j in jobs {
                data.extend_from_slice(pick(j)[k].data());
            }
            let mut shape = first.shape().to_vec();
            shape[0] = total;
            Tensor::new(shape, first.dtype(), data)
        })
        .collect()
}

/// Runs fused jobs (all forward or all backward, see `JobQueue::pop`) as one model call and
/// splits the results by rows.
fn run_fused(inner: &Inner, jobs: Vec<Job>) {
    let rows: Vec<usize> = jobs.iter().map(|j| j.inputs[0].shape()[0]).collect();
    let total: usize = rows.iter().sum();
    if total == 0 {
        for job in jobs {
            let result = run_one(inner, &job);
            let _ = job.reply.send(result);
        }
        return;
    }
    let method = jobs[0].method;
    let name = method.name();
    inner.metrics.batch(method, jobs.len());
    let inputs = concat_rows(&jobs, &rows, |j| &j.inputs);
    let result = match method {
        Method::Forward => inputs
            .and_then(|inputs| guarded(name, || inner.synapse.forward(&inputs)))
            .map(Some),
        Method::Backward => concat_rows(&jobs, &rows, |j| &j.grad_outputs).and_then(|grads| {
            let inputs = inputs?;
            // The output gradients were already scaled (see `process`).
            guarded(name, || inner.synapse.backward(&inputs, &grads))
        }),
    };
    let result = result.and_then(|outs| match outs {
        Some(o) if !o.iter().all(|t| t.shape().first() == Some(&total)) => Err(model_error(
            name,
            "outputs lack the fused batch dimension".into(),
        )),
        o => Ok(o),
    });
    let outs = match result {
        Ok(Some(o)) => o,
        // A backward that computes no input gradients.
        Ok(None) => {
            for j in jobs {
                let _ = j.reply.send(Ok(Vec::new()));
            }
            return;
        }
        Err(e) => {
            let msg = e.to_string();
            for j in jobs {
                let _ = j.reply.send(Err(model_error(name, msg.clone())));
            }
            return;
        }
    };
    let (specs, scale_outputs) = match method {
        Method::Forward => (&inner.output_spec, true),
        Method::Backward => (&inner.input_spec, false),
    };
    let mut offset = 0;
    for (job, r) in jobs.into_iter().zip(rows) {
        let part: Result<Vec<Tensor>> = outs
            .iter()
            .map(|t| {
                let row_bytes = t.data().len() / total;
                let mut shape = t.shape().to_vec();
                shape[0] = r;
                Tensor::new(
                    shape,
                    t.dtype(),
                    t.data().slice(offset * row_bytes..(offset + r) * row_bytes),
                )
            })
            .collect();
        offset += r;
        let scale = if scale_outputs { job.scale } else { 1.0 };
        let result =
            part.and_then(|p| finish(name, p, specs, job.batch, job.response_dtype, scale));
        let _ = job.reply.send(result);
    }
}
