//! The node: one engine thread that owns the write side of the store (the pending pool and
//! block production), a shared snapshot of the head state for readers, and the gRPC server.
//!
//! The engine receives submissions over a bounded channel, and commits every submission
//! waiting at that moment in one write transaction (group commit) before answering any of
//! them, so an acknowledgement always means "on disk". Every `block_time_ms` it builds a
//! block from the pool in arrival order, commits it atomically, then publishes the new head.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bt_ledger::{Hash, Header, State, Transaction, build_block};
use tokio::sync::{broadcast, oneshot};

use crate::client::TxStatus;
use crate::error::{Error, Result};
use crate::store::{BlockCommit, Store};

/// How a node runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Where the database lives.
    pub data_dir: PathBuf,
    /// The genesis state; required for a new data directory, checked against an existing one.
    pub genesis: Option<State>,
    /// The gRPC listen address (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Requests per second each client IP may make (token bucket refill rate).
    pub rate_per_sec: u32,
    /// Requests a client IP may make in a burst (token bucket capacity).
    pub burst: u32,
    /// The most transactions the pending pool holds.
    pub max_pending: usize,
    /// The most transactions in one block.
    pub max_block_txs: usize,
}

impl NodeConfig {
    /// Defaults for everything but the data directory and genesis.
    pub fn new(data_dir: PathBuf, genesis: Option<State>) -> NodeConfig {
        NodeConfig {
            data_dir,
            genesis,
            listen: SocketAddr::from(([127, 0, 0, 1], 50_051)),
            rate_per_sec: 20_000,
            burst: 40_000,
            max_pending: 200_000,
            max_block_txs: 20_000,
        }
    }
}

/// A submission to the engine.
pub(crate) struct Submit {
    pub tx: Transaction,
    pub hash: Hash,
    pub bytes: Vec<u8>,
    pub reply: oneshot::Sender<Result<Hash>>,
}

pub(crate) enum Cmd {
    Submit(Box<Submit>),
    Stop,
}

/// What the engine shares with readers.
#[derive(Debug)]
pub struct Shared {
    /// The database (readers use their own read transactions); `None` once stopped, so the
    /// file closes even while clients still hold connections.
    store: RwLock<Option<Arc<Store>>>,
    head: RwLock<Arc<State>>,
    blocks: broadcast::Sender<Header>,
    pending: std::sync::atomic::AtomicU64,
}

impl Shared {
    /// The state after the last committed block.
    pub fn head(&self) -> Arc<State> {
        // A poisoned lock only means a reader panicked; the Arc inside is still whole.
        self.head.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The database, unless the node has stopped.
    pub fn store(&self) -> Result<Arc<Store>> {
        self.store
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(Error::Stopped)
    }

    /// Closes the database for readers (the engine must have stopped).
    pub(crate) fn close(&self) {
        *self.store.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// New block headers, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Header> {
        self.blocks.subscribe()
    }

    /// Transactions in the pending pool.
    pub fn pending(&self) -> u64 {
        self.pending.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The engine's handle: sends submissions, stops it.
#[derive(Debug, Clone)]
pub struct Engine {
    tx: SyncSender<Cmd>,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cmd::Submit(s) => write!(f, "Submit({})", s.hash),
            Cmd::Stop => write!(f, "Stop"),
        }
    }
}

impl Engine {
    /// Queues a verified transaction; resolves once it is durable (or refused).
    pub(crate) fn submit(
        &self,
        tx: Transaction,
        bytes: Vec<u8>,
    ) -> Result<oneshot::Receiver<Result<Hash>>> {
        let (reply, rx) = oneshot::channel();
        let hash = bt_ledger::Hash::of(&bytes);
        match self.tx.try_send(Cmd::Submit(Box::new(Submit {
            tx,
            hash,
            bytes,
            reply,
        }))) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => Err(Error::PoolFull { max: ENGINE_QUEUE }),
            Err(TrySendError::Disconnected(_)) => Err(Error::Stopped),
        }
    }

    /// Asks the engine to stop after its current step.
    pub fn stop(&self) {
        let _ = self.tx.send(Cmd::Stop);
    }
}

/// Submissions that may wait for the engine at once.
const ENGINE_QUEUE: usize = 65_536;

/// Opens the store and starts the engine thread. Returns the shared view, the engine
/// handle and the thread.
pub fn start_engine(
    cfg: &NodeConfig,
) -> Result<(Arc<Shared>, Engine, std::thread::JoinHandle<Result<()>>)> {
    let (store, head) = Store::open(&cfg.data_dir, cfg.genesis.as_ref())?;
    let pending = store.pending_len()?;
    tracing::info!(
        height = head.height,
        pending,
        "opened chain {}",
        head.genesis
    );
    let (blocks, _) = broadcast::channel(1024);
    let shared = Arc::new(Shared {
        store: RwLock::new(Some(Arc::new(store))),
        head: RwLock::new(Arc::new(head)),
        blocks,
        pending: std::sync::atomic::AtomicU64::new(pending),
    });
    let (tx, rx) = std::sync::mpsc::sync_channel(ENGINE_QUEUE);
    let engine = Engine { tx };
    let worker = EngineLoop {
        shared: shared.clone(),
        max_pending: cfg.max_pending,
        max_block_txs: cfg.max_block_txs,
    };
    let thread = std::thread::Builder::new()
        .name("bt-chain-engine".into())
        .spawn(move || worker.run(rx))
        .map_err(|source| Error::Io {
            path: cfg.data_dir.clone(),
            source,
        })?;
    Ok((shared, engine, thread))
}

/// The next block built from the pending pool.
#[derive(Debug)]
pub struct NextBlock {
    /// The block, the state after it, and what was refused or deferred.
    pub built: bt_ledger::Built,
    /// The pool entries it consumed: included, or refused.
    pub consumed: Vec<u64>,
    /// The transactions refused while building it, with why.
    pub refused: Vec<(Hash, String)>,
}

/// Builds the next block on `head` from the first `max_txs` pool entries in arrival order:
/// those that apply go in, those that cannot are refused (and leave the pool), a neuron's
/// second weight update waits for a later block. The single node's engine and a replicated
/// ledger's leader both build blocks with it.
pub fn next_block(
    store: &Store,
    head: &State,
    max_txs: usize,
    timestamp_ms: u64,
) -> Result<NextBlock> {
    let pending = store.pending(max_txs)?;
    let mut seqs = Vec::with_capacity(pending.len());
    let mut txs = Vec::with_capacity(pending.len());
    let mut refused = Vec::new();
    let mut consumed = Vec::with_capacity(pending.len());
    let max = head.params.max_tx_bytes as usize;
    for (seq, bytes) in pending {
        match Transaction::decode(&bytes, max) {
            Ok(tx) => {
                seqs.push(seq);
                txs.push(tx);
            }
            Err(e) => {
                refused.push((Hash::of(&bytes), e.to_string()));
                consumed.push(seq);
            }
        }
    }
    let hashes: Vec<Hash> = txs.iter().map(Transaction::hash).collect();
    let built = build_block(head, txs, timestamp_ms);
    let deferred: std::collections::BTreeSet<usize> = built.deferred.iter().copied().collect();
    for (i, seq) in seqs.iter().enumerate() {
        if !deferred.contains(&i) {
            consumed.push(*seq);
        }
    }
    for (i, e) in &built.rejected {
        refused.push((hashes[*i], e.to_string()));
    }
    Ok(NextBlock {
        built,
        consumed,
        refused,
    })
}

struct EngineLoop {
    shared: Arc<Shared>,
    max_pending: usize,
    max_block_txs: usize,
}

/// Milliseconds since the Unix epoch (a block's informational timestamp).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl EngineLoop {
    fn run(self, rx: Receiver<Cmd>) -> Result<()> {
        let store = self.shared.store()?;
        let block_time = Duration::from_millis(self.shared.head().params.block_time_ms);
        let mut next_block = Instant::now() + block_time;
        loop {
            let wait = next_block.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(Cmd::Stop) => return Ok(()),
                Ok(Cmd::Submit(first)) => {
                    let mut batch = vec![*first];
                    let mut stop = false;
                    while batch.len() < 8192 {
                        match rx.try_recv() {
                            Ok(Cmd::Submit(s)) => batch.push(*s),
                            Ok(Cmd::Stop) => {
                                stop = true;
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.accept(&store, batch);
                    if stop {
                        return Ok(());
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
            if Instant::now() >= next_block {
                self.produce(&store)?;
                next_block += block_time;
                let now = Instant::now();
                if next_block < now {
                    next_block = now + block_time;
                }
            }
        }
    }

    /// Checks a batch of submissions against the head and commits the new ones to the pool
    /// in one transaction, then answers each.
    fn accept(&self, store: &Store, batch: Vec<Submit>) {
        let head = self.shared.head();
        let mut fresh = Vec::with_capacity(batch.len());
        let mut waiting = Vec::with_capacity(batch.len());
        let mut pool = self.shared.pending() as usize;
        for s in batch {
            let verdict = match store.tx_status(&s.hash) {
                Ok(TxStatus::Pending | TxStatus::Included(_)) => Some(Ok(s.hash)),
                Ok(TxStatus::Refused(reason)) => Some(Err(Error::Refused { reason })),
                Ok(TxStatus::Unknown) => {
                    let expected = head.nonce(&s.tx.signer);
                    if s.tx.nonce < expected {
                        Some(Err(bt_ledger::Error::StaleNonce {
                            account: s.tx.signer,
                            expected,
                            got: s.tx.nonce,
                        }
                        .into()))
                    } else if pool >= self.max_pending {
                        Some(Err(Error::PoolFull {
                            max: self.max_pending,
                        }))
                    } else {
                        pool += 1;
                        None
                    }
                }
                Err(e) => Some(Err(e)),
            };
            match verdict {
                Some(r) => {
                    let _ = s.reply.send(r);
                }
                None => {
                    fresh.push((s.hash, s.bytes));
                    waiting.push((s.hash, s.reply));
                }
            }
        }
        if waiting.is_empty() {
            return;
        }
        match store.add_pending(&fresh) {
            Ok(added) => {
                self.shared
                    .pending
                    .fetch_add(added as u64, std::sync::atomic::Ordering::Relaxed);
                for (hash, reply) in waiting {
                    let _ = reply.send(Ok(hash));
                }
            }
            Err(e) => {
                tracing::error!("pool commit failed: {e}");
                let msg = e.to_string();
                for (_, reply) in waiting {
                    let _ = reply.send(Err(Error::NotStored {
                        reason: msg.clone(),
                    }));
                }
            }
        }
    }

    /// Builds, commits and publishes the next block.
    fn produce(&self, store: &Store) -> Result<()> {
        let head = self.shared.head();
        let NextBlock {
            built,
            consumed,
            refused,
        } = next_block(store, &head, self.max_block_txs, now_ms())?;
        let state_bytes = built.state.encode();
        store.commit_block(&BlockCommit {
            block: &built.block,
            state: &state_bytes,
            consumed: &consumed,
            refused: &refused,
        })?;
        self.shared.pending.fetch_sub(
            (consumed.len() as u64).min(self.shared.pending()),
            std::sync::atomic::Ordering::Relaxed,
        );
        let header = built.block.header;
        tracing::debug!(
            height = header.height,
            txs = built.block.txs.len(),
            refused = refused.len(),
            "block"
        );
        *self.shared.head.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(built.state);
        let _ = self.shared.blocks.send(header);
        Ok(())
    }
}
