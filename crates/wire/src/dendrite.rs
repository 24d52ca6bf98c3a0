//! The dendrite: a client that signs requests, keeps one pooled HTTP/2 channel per peer,
//! queries many peers in parallel with a quorum and a grace period, and backs off from peers
//! that fail.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bt_keys::{Keypair, PublicKey};
use tokio::task::JoinSet;
use tonic::transport::{Channel, Endpoint};

use crate::error::{Result, WireError};
use crate::proto::{self, ReturnCode, axon_client::AxonClient};
use crate::signing::{self, Method};
use crate::tensor::{DType, Tensor};

/// How a dendrite behaves.
#[derive(Clone, Debug)]
pub struct DendriteConfig {
    /// Deadline of one request (also sent to the axon as `timeout_ms`).
    pub timeout: Duration,
    /// Deadline of establishing a connection.
    pub connect_timeout: Duration,
    /// Float inputs and gradients travel in this dtype (F16 or BF16 halve the bytes).
    pub wire_dtype: DType,
    /// The dtype asked for the float outputs.
    pub response_dtype: DType,
    /// Largest message sent or accepted.
    pub max_message_bytes: usize,
    /// First backoff after a failure; doubles with each further one.
    pub backoff_base: Duration,
    /// Upper bound on the backoff.
    pub backoff_max: Duration,
    /// HTTP/2 keepalive ping interval.
    pub keepalive_interval: Duration,
}

impl Default for DendriteConfig {
    fn default() -> DendriteConfig {
        DendriteConfig {
            timeout: Duration::from_secs(12),
            connect_timeout: Duration::from_secs(3),
            wire_dtype: DType::F32,
            response_dtype: DType::F32,
            max_message_bytes: 128 << 20,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(30),
        }
    }
}

/// A peer to query: its hotkey (the request's receiver) and its `http://host:port` endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The axon's hotkey.
    pub hotkey: PublicKey,
    /// `http://host:port`.
    pub endpoint: String,
}

/// The answer of one peer, or the client's own verdict when there was none.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The return code (the axon's, or `timeout`/`unavailable`/`backoff` decided here).
    pub code: ReturnCode,
    /// Names the fault when `code` is not success.
    pub message: String,
    /// Forward: the outputs; Backward: the input gradients (possibly none).
    pub outputs: Vec<Tensor>,
    /// Time from sending to answer.
    pub elapsed: Duration,
}

impl Reply {
    fn local(code: ReturnCode, message: String, start: Instant) -> Reply {
        Reply {
            code,
            message,
            outputs: Vec::new(),
            elapsed: start.elapsed(),
        }
    }

    /// Whether the peer answered with success.
    pub fn is_success(&self) -> bool {
        self.code == ReturnCode::Success
    }
}

/// How many answers [`Dendrite::forward_many`] waits for.
#[derive(Clone, Copy, Debug)]
pub struct Quorum {
    /// Answers (successes) that are enough.
    pub k_min: usize,
    /// How long to keep waiting for more once `k_min` have answered.
    pub grace: Duration,
}

#[derive(Clone, Copy, Debug, Default)]
struct PeerBackoff {
    failures: u32,
    until: Option<Instant>,
}

struct Inner {
    keypair: Keypair,
    config: DendriteConfig,
    channels: Mutex<HashMap<String, Channel>>,
    backoff: Mutex<HashMap<PublicKey, PeerBackoff>>,
    nonce: AtomicU64,
}

/// A client of axons; cheap to clone (clones share channels, backoff state and nonces).
#[derive(Clone)]
pub struct Dendrite {
    inner: Arc<Inner>,
}

impl Dendrite {
    /// A dendrite that signs with `keypair`.
    pub fn new(keypair: Keypair, config: DendriteConfig) -> Result<Dendrite> {
        if !config.wire_dtype.is_float() || !config.response_dtype.is_float() {
            return Err(WireError::Config(format!(
                "wire_dtype ({}) and response_dtype ({}) must be f32, f16 or bf16",
                config.wire_dtype, config.response_dtype
            )));
        }
        Ok(Dendrite {
            inner: Arc::new(Inner {
                keypair,
                config,
                channels: Mutex::new(HashMap::new()),
                backoff: Mutex::new(HashMap::new()),
                nonce: AtomicU64::new(0),
            }),
        })
    }

    /// This dendrite's hotkey.
    pub fn hotkey(&self) -> PublicKey {
        self.inner.keypair.public()
    }

    /// The next nonce: the Unix time in nanoseconds, strictly above the previous one.
    pub fn next_nonce(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos().min(u128::from(u64::MAX)) as u64)
            .unwrap_or(0);
        let mut prev = self.inner.nonce.load(Ordering::Relaxed);
        loop {
            let next = now.max(prev.saturating_add(1));
            match self.inner.nonce.compare_exchange_weak(
                prev,
                next,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => return next,
                Err(p) => prev = p,
            }
        }
    }

    /// Builds and signs a request for `receiver`; float tensors are cast to the wire dtype.
    pub fn build_request(
        &self,
        method: Method,
        receiver: &PublicKey,
        inputs: &[Tensor],
        grad_outputs: &[Tensor],
    ) -> Result<proto::Request> {
        let cfg = &self.inner.config;
        let wire = |t: &Tensor| -> Result<proto::Tensor> {
            Ok(if t.dtype().is_float() {
                t.cast(cfg.wire_dtype)?.to_proto()
            } else {
                t.to_proto()
            })
        };
        let mut req = proto::Request {
            caller: Vec::new(),
            receiver: receiver.as_bytes().to_vec(),
            nonce: self.next_nonce(),
            timeout_ms: cfg.timeout.as_millis().min(u128::from(u64::MAX)) as u64,
            response_dtype: cfg.response_dtype.to_proto() as i32,
            inputs: inputs.iter().map(wire).collect::<Result<_>>()?,
            grad_outputs: grad_outputs.iter().map(wire).collect::<Result<_>>()?,
            signature: Vec::new(),
        };
        signing::sign(method, &mut req, &self.inner.keypair);
        Ok(req)
    }

    fn channel(&self, endpoint: &str) -> Result<Channel> {
        let mut pool = self
            .inner
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(c) = pool.get(endpoint) {
            return Ok(c.clone());
        }
        let cfg = &self.inner.config;
        let bad = |e: tonic::transport::Error| WireError::Transport {
            endpoint: endpoint.to_string(),
            reason: format!("invalid endpoint: {e}"),
        };
        let channel = Endpoint::from_shared(endpoint.to_string())
            .map_err(bad)?
            .tcp_nodelay(true)
            .connect_timeout(cfg.connect_timeout)
            .http2_keep_alive_interval(cfg.keepalive_interval)
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true)
            .initial_connection_window_size(Some(16 << 20))
            .initial_stream_window_size(Some(8 << 20))
            .connect_lazy();
        pool.insert(endpoint.to_string(), channel.clone());
        Ok(channel)
    }

    /// If `peer` is backed off now, the time left.
    fn backed_off(&self, peer: &PublicKey) -> Option<(Duration, u32)> {
        let map = self.inner.backoff.lock().unwrap_or_else(|e| e.into_inner());
        let b = map.get(peer)?;
        let left = b.until?.checked_duration_since(Instant::now())?;
        Some((left, b.failures))
    }

    fn record(&self, peer: &PublicKey, code: ReturnCode) {
        let cfg = &self.inner.config;
        let mut map = self.inner.backoff.lock().unwrap_or_else(|e| e.into_inner());
        let failed = matches!(
            code,
            ReturnCode::Timeout
                | ReturnCode::Backoff
                | ReturnCode::Unavailable
                | ReturnCode::Overloaded
                | ReturnCode::Internal
                | ReturnCode::Unspecified
        );
        if !failed {
            map.remove(peer);
            return;
        }
        let b = map.entry(*peer).or_default();
        b.failures = b.failures.saturating_add(1);
        let factor = 1u32 << (b.failures - 1).min(20);
        let wait = cfg.backoff_base.saturating_mul(factor).min(cfg.backoff_max);
        b.until = Some(Instant::now() + wait);
    }

    /// Calls Forward on one peer.
    pub async fn forward(&self, peer: &Peer, inputs: &[Tensor]) -> Reply {
        self.call(peer, Method::Forward, inputs, &[]).await
    }

    /// Calls Backward on one peer: `inputs` as sent to Forward, and the gradient of the
    /// caller's loss with respect to each of Forward's outputs.
    pub async fn backward(&self, peer: &Peer, inputs: &[Tensor], grad_outputs: &[Tensor]) -> Reply {
        self.call(peer, Method::Backward, inputs, grad_outputs)
            .await
    }

    /// Calls `method` on one peer, unless it is backed off; never fails, the reply's code
    /// says what happened.
    pub async fn call(
        &self,
        peer: &Peer,
        method: Method,
        inputs: &[Tensor],
        grad_outputs: &[Tensor],
    ) -> Reply {
        let start = Instant::now();
        if let Some((left, failures)) = self.backed_off(&peer.hotkey) {
            return Reply::local(
                ReturnCode::Backoff,
                format!(
                    "backing off from {} for {} ms more after {failures} failures",
                    peer.hotkey,
                    left.as_millis()
                ),
                start,
            );
        }
        let req = match self.build_request(method, &peer.hotkey, inputs, grad_outputs) {
            Ok(r) => r,
            Err(e) => return Reply::local(e.code(), e.to_string(), start),
        };
        let reply = self.send(peer, method, req, start).await;
        self.record(&peer.hotkey, reply.code);
        reply
    }

    /// Sends an already-built request (e.g. one crafted by a test) and decodes the answer.
    pub async fn send(
        &self,
        peer: &Peer,
        method: Method,
        req: proto::Request,
        start: Instant,
    ) -> Reply {
        let cfg = &self.inner.config;
        let channel = match self.channel(&peer.endpoint) {
            Ok(c) => c,
            Err(e) => return Reply::local(e.code(), e.to_string(), start),
        };
        let mut client = AxonClient::new(channel)
            .max_decoding_message_size(cfg.max_message_bytes)
            .max_encoding_message_size(cfg.max_message_bytes);
        let mut request = tonic::Request::new(req);
        request.set_timeout(cfg.timeout);
        let call = async {
            match method {
                Method::Forward => client.forward(request).await,
                Method::Backward => client.backward(request).await,
            }
        };
        let response = match tokio::time::timeout(cfg.timeout, call).await {
            Err(_) => {
                return Reply::local(
                    ReturnCode::Timeout,
                    format!(
                        "no answer from {} within {} ms",
                        peer.endpoint,
                        cfg.timeout.as_millis()
                    ),
                    start,
                );
            }
            Ok(Err(status)) => {
                let code = match status.code() {
                    tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => ReturnCode::Timeout,
                    tonic::Code::ResourceExhausted | tonic::Code::OutOfRange => {
                        ReturnCode::BadRequest
                    }
                    _ => ReturnCode::Unavailable,
                };
                return Reply::local(
                    code,
                    format!("transport to {}: {}", peer.endpoint, status.message()),
                    start,
                );
            }
            Ok(Ok(r)) => r.into_inner(),
        };
        let code = ReturnCode::try_from(response.code).unwrap_or(ReturnCode::Unspecified);
        let code = if code == ReturnCode::Unspecified {
            ReturnCode::Internal
        } else {
            code
        };
        let outputs: Result<Vec<Tensor>> = response
            .outputs
            .into_iter()
            .enumerate()
            .map(|(i, t)| Tensor::from_proto(t, &format!("response output[{i}]")))
            .collect();
        match outputs {
            Ok(outputs) => Reply {
                code,
                message: response.message,
                outputs,
                elapsed: start.elapsed(),
            },
            Err(e) => Reply::local(
                ReturnCode::Internal,
                format!("malformed response from {}: {e}", peer.endpoint),
                start,
            ),
        }
    }

    /// Queries every peer in parallel with Forward; returns once `quorum.k_min` have answered
    /// with success and `quorum.grace` has passed (or all have answered, or the deadline
    /// passed). Stragglers are cancelled and reported as `timeout`. One reply per peer, in
    /// the order of `peers`.
    pub async fn forward_many(
        &self,
        peers: &[Peer],
        inputs: &[Tensor],
        quorum: Quorum,
    ) -> Vec<Reply> {
        let start = Instant::now();
        let inputs: Arc<[Tensor]> = inputs.into();
        let mut set = JoinSet::new();
        for (i, peer) in peers.iter().enumerate() {
            let d = self.clone();
            let peer = peer.clone();
            let inputs = inputs.clone();
            set.spawn(async move { (i, d.forward(&peer, &inputs).await) });
        }
        let mut replies: Vec<Option<Reply>> = vec![None; peers.len()];
        let mut successes = 0usize;
        let mut grace_end: Option<tokio::time::Instant> = None;
        loop {
            let next = match grace_end {
                Some(end) => match tokio::time::timeout_at(end, set.join_next()).await {
                    Ok(n) => n,
                    Err(_) => break,
                },
                None => set.join_next().await,
            };
            let Some(joined) = next else { break };
            if let Ok((i, reply)) = joined {
                if reply.is_success() {
                    successes += 1;
                }
                replies[i] = Some(reply);
            }
            if successes >= quorum.k_min && grace_end.is_none() {
                grace_end = Some(tokio::time::Instant::now() + quorum.grace);
            }
        }
        set.abort_all();
        replies
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Reply::local(
                        ReturnCode::Timeout,
                        format!(
                            "cancelled: {} answers arrived and the grace of {} ms passed",
                            quorum.k_min,
                            quorum.grace.as_millis()
                        ),
                        start,
                    )
                })
            })
            .collect()
    }
}
