//! The gRPC service over a [`Backend`] (the single node's engine, or a replicated ledger's
//! validator), its per-client rate limit, and [`serve`].

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bt_keys::PublicKey;
use bt_ledger::{State, Transaction};
use tokio_stream::wrappers::{BroadcastStream, TcpListenerStream};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::client::TxStatus;
use crate::error::{Error, Result};
use crate::node::{Engine, NodeConfig, Shared, start_engine};
use crate::proto;
use crate::proto::chain_server::{Chain, ChainServer};
use crate::store::Store;

pub use crate::client::MAX_REPLY_BYTES;

/// A token bucket per client IP.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    /// `rate` requests per second, bursts of up to `burst`.
    pub fn new(rate: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `ip`; false when its bucket is empty.
    pub fn allow(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            // Forget idle clients rather than grow without bound.
            let burst = self.burst;
            let rate = self.rate;
            map.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = map.entry(ip).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What the API serves: where the head and the store are, and how a transaction becomes
/// durable. The single node's engine is one ([`SingleNode`]); a replicated ledger's validator
/// is another (in `bt-replica`).
#[tonic::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The state after the last block.
    fn head(&self) -> Arc<State>;
    /// The store queries read.
    fn store(&self) -> Result<Arc<Store>>;
    /// New block headers, from now on.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<bt_ledger::Header>;
    /// Transactions in the pending pool.
    fn pending(&self) -> u64;
    /// Makes a decoded, signature-checked transaction durable (its encoded `bytes` are what
    /// is stored); answers with its id.
    async fn submit(&self, tx: Transaction, bytes: Vec<u8>) -> Result<bt_ledger::Hash>;
    /// Where this node stands in a replicated ledger; `None` for a single node.
    fn replication(&self) -> Option<proto::Replication> {
        None
    }
}

/// The single node as a [`Backend`]: its engine thread and shared view.
#[derive(Debug, Clone)]
pub struct SingleNode {
    shared: Arc<Shared>,
    engine: Engine,
}

#[tonic::async_trait]
impl Backend for SingleNode {
    fn head(&self) -> Arc<State> {
        self.shared.head()
    }

    fn store(&self) -> Result<Arc<Store>> {
        self.shared.store()
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<bt_ledger::Header> {
        self.shared.subscribe()
    }

    fn pending(&self) -> u64 {
        self.shared.pending()
    }

    async fn submit(&self, tx: Transaction, bytes: Vec<u8>) -> Result<bt_ledger::Hash> {
        self.engine
            .submit(tx, bytes)?
            .await
            .map_err(|_| Error::Stopped)?
    }
}

/// The gRPC service.
#[derive(Clone)]
pub struct ChainService {
    backend: Arc<dyn Backend>,
    limiter: Arc<RateLimiter>,
}

impl std::fmt::Debug for ChainService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainService")
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl ChainService {
    /// A service over `backend`.
    pub fn new(backend: Arc<dyn Backend>, limiter: RateLimiter) -> ChainService {
        ChainService {
            backend,
            limiter: Arc::new(limiter),
        }
    }

    fn admit<T>(&self, req: &Request<T>) -> std::result::Result<(), Status> {
        let ip = req
            .remote_addr()
            .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
        if self.limiter.allow(ip) {
            Ok(())
        } else {
            Err(Status::resource_exhausted(format!(
                "rate limit exceeded for {ip}"
            )))
        }
    }

    fn state_at(&self, height: Option<u64>) -> std::result::Result<Arc<State>, Status> {
        let head = self.backend.head();
        match height {
            None => Ok(head),
            Some(h) if h == head.height => Ok(head),
            Some(h) if h > head.height => Err(Status::not_found(format!(
                "height {h} is above the head {}",
                head.height
            ))),
            Some(h) => match self
                .backend
                .store()
                .map_err(to_status)?
                .state_at(h)
                .map_err(to_status)?
            {
                Some(s) => Ok(Arc::new(s)),
                None => Err(Status::not_found(format!("no state at height {h}"))),
            },
        }
    }
}

/// Maps an error to a gRPC status with its message.
pub fn to_status(e: Error) -> Status {
    let msg = e.to_string();
    match e {
        Error::Ledger(
            bt_ledger::Error::Malformed { .. } | bt_ledger::Error::OversizedTransaction { .. },
        ) => Status::invalid_argument(msg),
        Error::Ledger(bt_ledger::Error::BadSignature { .. }) => Status::unauthenticated(msg),
        Error::Ledger(_) | Error::Refused { .. } => Status::failed_precondition(msg),
        Error::PoolFull { .. } => Status::resource_exhausted(msg),
        Error::NoLeader => {
            let mut s = Status::unavailable(msg);
            s.metadata_mut().insert(
                crate::error::ERROR_KIND,
                tonic::metadata::MetadataValue::from_static(crate::error::NO_LEADER),
            );
            s
        }
        // A validator that cannot reach the leader it forwards to: ask again, or another.
        Error::Stopped | Error::Unreachable { .. } => Status::unavailable(msg),
        _ => Status::internal(msg),
    }
}

fn key(bytes: &[u8]) -> std::result::Result<PublicKey, Status> {
    let arr: [u8; 32] = bytes.try_into().map_err(|_| {
        Status::invalid_argument(format!("public key of {} bytes, expected 32", bytes.len()))
    })?;
    PublicKey::from_bytes(arr).map_err(|e| Status::invalid_argument(e.to_string()))
}

/// A non-negative fixed-point value as its 64-bit raw bits (negative: 0; huge: saturated).
fn bits(x: bt_ledger::Fixed) -> u64 {
    u64::try_from(x.to_bits().max(0)).unwrap_or(u64::MAX)
}

/// The metagraph of a state as a message.
pub fn metagraph(state: &State, weights: bool) -> proto::Metagraph {
    proto::Metagraph {
        height: state.height,
        state_hash: state.hash().0.to_vec(),
        tau_bits: u64::try_from(state.tau.to_bits()).unwrap_or(u64::MAX),
        total_issuance: u64::try_from(state.total_issuance()).unwrap_or(u64::MAX),
        epsilon_bits: state.params.epsilon,
        mechanism: state.params.mechanism.to_string(),
        tempo: state.params.tempo,
        neurons: state
            .neurons
            .iter()
            .map(|n| proto::Neuron {
                uid: n.uid,
                hotkey: n.hotkey.as_bytes().to_vec(),
                coldkey: n.coldkey.as_bytes().to_vec(),
                endpoint: n.endpoint.to_string(),
                stake: n.stake,
                rank_bits: u64::try_from(n.rank.to_bits()).unwrap_or(u64::MAX),
                registered_at: n.registered_at,
                last_update: n.last_update,
                weight_uids: if weights {
                    n.row.iter().map(|&(j, _)| j).collect()
                } else {
                    Vec::new()
                },
                weight_values: if weights {
                    n.row.iter().map(|&(_, w)| w).collect()
                } else {
                    Vec::new()
                },
                consensus_bits: bits(n.consensus),
                trust_bits: bits(n.trust),
                incentive_bits: bits(n.incentive),
                dividends_bits: bits(n.dividends),
                emission_bits: bits(n.emission),
                bond_uids: if weights {
                    n.bonds.iter().map(|&(j, _)| j).collect()
                } else {
                    Vec::new()
                },
                bond_values: if weights {
                    n.bonds.iter().map(|&(_, b)| bits(b)).collect()
                } else {
                    Vec::new()
                },
            })
            .collect(),
    }
}

fn header_msg(h: &bt_ledger::Header, txs: u32) -> proto::BlockHeader {
    proto::BlockHeader {
        height: h.height,
        hash: h.hash().0.to_vec(),
        parent: h.parent.0.to_vec(),
        timestamp_ms: h.timestamp_ms,
        state_hash: h.state_hash.0.to_vec(),
        transactions: txs,
    }
}

type HeaderStream =
    Pin<Box<dyn Stream<Item = std::result::Result<proto::BlockHeader, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Chain for ChainService {
    async fn get_status(
        &self,
        req: Request<proto::StatusRequest>,
    ) -> std::result::Result<Response<proto::StatusReply>, Status> {
        self.admit(&req)?;
        let s = self.backend.head();
        Ok(Response::new(proto::StatusReply {
            genesis_hash: s.genesis.0.to_vec(),
            height: s.height,
            head_hash: s.head.0.to_vec(),
            state_hash: s.hash().0.to_vec(),
            block_time_ms: s.params.block_time_ms,
            max_tx_bytes: s.params.max_tx_bytes,
            max_neurons: s.params.max_neurons,
            neurons: s.neurons.len() as u32,
            pending: self.backend.pending(),
            replication: self.backend.replication(),
        }))
    }

    async fn submit_transaction(
        &self,
        req: Request<proto::SubmitRequest>,
    ) -> std::result::Result<Response<proto::SubmitReply>, Status> {
        self.admit(&req)?;
        let bytes = req.into_inner().transaction;
        let head = self.backend.head();
        let tx = Transaction::decode(&bytes, head.params.max_tx_bytes as usize)
            .map_err(|e| to_status(e.into()))?;
        let genesis = head.genesis;
        drop(head);
        // Signatures are checked here, on the runtime's threads, so the engine only orders
        // and stores.
        let tx = tokio::task::spawn_blocking(move || tx.verify(&genesis).map(|()| tx))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| to_status(e.into()))?;
        let hash = self.backend.submit(tx, bytes).await.map_err(to_status)?;
        Ok(Response::new(proto::SubmitReply {
            tx_hash: hash.0.to_vec(),
        }))
    }

    async fn get_transaction(
        &self,
        req: Request<proto::TransactionQuery>,
    ) -> std::result::Result<Response<proto::TransactionReply>, Status> {
        self.admit(&req)?;
        let hash = bt_ledger::Hash::from_slice(&req.into_inner().tx_hash)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let status = self
            .backend
            .store()
            .map_err(to_status)?
            .tx_status(&hash)
            .map_err(to_status)?;
        let (state, height, reason) = match status {
            TxStatus::Unknown => (proto::TxState::Unknown, 0, String::new()),
            TxStatus::Pending => (proto::TxState::Pending, 0, String::new()),
            TxStatus::Included(h) => (proto::TxState::Included, h, String::new()),
            TxStatus::Refused(why) => (proto::TxState::Refused, 0, why),
        };
        Ok(Response::new(proto::TransactionReply {
            state: state as i32,
            height,
            reason,
        }))
    }

    async fn get_account(
        &self,
        req: Request<proto::AccountQuery>,
    ) -> std::result::Result<Response<proto::AccountReply>, Status> {
        self.admit(&req)?;
        let who = key(&req.into_inner().account)?;
        let s = self.backend.head();
        let stakes = s
            .stakes
            .range(
                (
                    who,
                    PublicKey::from_bytes([0; 32]).map_err(|e| Status::internal(e.to_string()))?,
                )..,
            )
            .take_while(|((c, _), _)| *c == who)
            .map(|((_, h), &rao)| proto::StakePosition {
                hotkey: h.as_bytes().to_vec(),
                rao,
            })
            .collect();
        Ok(Response::new(proto::AccountReply {
            balance: s.balance(&who),
            nonce: s.nonce(&who),
            stakes,
        }))
    }

    async fn get_block(
        &self,
        req: Request<proto::BlockQuery>,
    ) -> std::result::Result<Response<proto::BlockReply>, Status> {
        self.admit(&req)?;
        let height = req
            .into_inner()
            .height
            .unwrap_or_else(|| self.backend.head().height);
        let bytes = self
            .backend
            .store()
            .map_err(to_status)?
            .block_bytes(height)
            .map_err(to_status)?
            .ok_or_else(|| Status::not_found(format!("no block at height {height}")))?;
        let header = bt_ledger::Header::decode(&bytes[..bt_ledger::Header::LEN])
            .map_err(|e| to_status(e.into()))?;
        Ok(Response::new(proto::BlockReply {
            height,
            hash: header.hash().0.to_vec(),
            block: bytes,
        }))
    }

    async fn get_metagraph(
        &self,
        req: Request<proto::MetagraphQuery>,
    ) -> std::result::Result<Response<proto::Metagraph>, Status> {
        self.admit(&req)?;
        let q = req.into_inner();
        let state = self.state_at(q.height)?;
        Ok(Response::new(metagraph(&state, q.weights)))
    }

    type SubscribeBlocksStream = HeaderStream;

    async fn subscribe_blocks(
        &self,
        req: Request<proto::SubscribeRequest>,
    ) -> std::result::Result<Response<Self::SubscribeBlocksStream>, Status> {
        self.admit(&req)?;
        let stream = BroadcastStream::new(self.backend.subscribe())
            // A slow subscriber that lagged skips the headers it missed.
            .filter_map(|r| r.ok())
            .map(|h| Ok(header_msg(&h, 0)));
        Ok(Response::new(Box::pin(stream)))
    }
}

/// A running node: its address and how to stop it.
#[derive(Debug)]
pub struct NodeHandle {
    /// The address the gRPC server listens on.
    pub addr: SocketAddr,
    /// The shared view of the chain.
    pub shared: Arc<Shared>,
    engine: Engine,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<Result<()>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl NodeHandle {
    /// Stops serving, stops the engine, and waits for both.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        // Graceful shutdown waits for open calls; a block subscription never ends by
        // itself, so give open calls a moment and then drop them.
        let served =
            match tokio::time::timeout(std::time::Duration::from_secs(2), &mut self.server).await {
                Ok(joined) => joined.map_err(|e| Error::BadReply(format!("server task: {e}")))?,
                Err(_) => {
                    self.server.abort();
                    Ok(())
                }
            };
        self.engine.stop();
        let thread = self.thread.take();
        let engine = tokio::task::spawn_blocking(move || thread.map(|t| t.join()))
            .await
            .map_err(|e| Error::BadReply(format!("engine: {e}")))?;
        self.shared.close();
        served?;
        match engine {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(Error::BadReply("engine thread panicked".into())),
            None => Ok(()),
        }
    }

    /// Waits until the server ends (on its own, or by `ctrl_c`), then stops the engine.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> Result<()> {
        tokio::select! {
            r = &mut self.server => {
                self.engine.stop();
                self.shared.close();
                r.map_err(|e| Error::BadReply(format!("server task: {e}")))?
            }
            () = signal => self.stop().await,
        }
    }
}

/// Opens the chain, starts the engine and serves gRPC on `cfg.listen`.
pub async fn serve(cfg: NodeConfig) -> Result<NodeHandle> {
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| Error::Io {
            path: cfg.listen.to_string().into(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Io {
        path: cfg.listen.to_string().into(),
        source,
    })?;
    let (shared, engine, thread) = start_engine(&cfg)?;
    let backend = Arc::new(SingleNode {
        shared: shared.clone(),
        engine: engine.clone(),
    });
    let (tx, task) = serve_api(
        backend,
        listener,
        RateLimiter::new(cfg.rate_per_sec, cfg.burst),
    );
    Ok(NodeHandle {
        addr,
        shared,
        engine,
        shutdown: Some(tx),
        server: task,
        thread: Some(thread),
    })
}

/// Serves the API over `backend` on `listener` until the sender is used or dropped: the
/// single node's [`serve`] and a replicated ledger's validator both call it.
pub fn serve_api(
    backend: Arc<dyn Backend>,
    listener: tokio::net::TcpListener,
    limiter: RateLimiter,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<()>>,
) {
    let max_tx = backend.head().params.max_tx_bytes as usize;
    let service = ChainService::new(backend, limiter);
    let server = ChainServer::new(service)
        // A request is at most one transaction plus framing.
        .max_decoding_message_size(max_tx + 1024)
        .max_encoding_message_size(MAX_REPLY_BYTES);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    // Set TCP_NODELAY on every accepted connection: small request/reply pairs must not wait
    // for Nagle's algorithm.
    let incoming = TcpListenerStream::new(listener).map(|conn| {
        conn.inspect(|s| {
            let _ = s.set_nodelay(true);
        })
    });
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .concurrency_limit_per_connection(256)
            .add_service(server)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = rx.await;
            })
            .await
            .map_err(Error::from)
    });
    (tx, task)
}
