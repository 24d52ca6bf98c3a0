//! One validator of the replicated ledger: its raft (log, state machine, network), the raft
//! RPC server, and, while it leads, the block producer.
//!
//! Only the leader builds blocks: every `block_time_ms` it confirms it still leads and has
//! applied everything committed ([`openraft::Raft::ensure_linearizable`]), builds the next
//! block from its pool with the single node's own [`bt_chain::next_block`], and proposes it.
//! Every replica applies it when committed and checks the state hash.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bt_ledger::State;
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{Raft, ServerState, SnapshotPolicy};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::codec::{Applied, Command, Refused};
use crate::error::{Error, Result};
use crate::{LogStore, Machine, Network, NodeId, Peer, RaftService, TypeConfig};

/// How a validator runs.
#[derive(Debug)]
pub struct ReplicaConfig {
    /// This validator's id; a key of `members`.
    pub id: NodeId,
    /// Where its raft log and chain store live.
    pub data_dir: PathBuf,
    /// The genesis state; required for a new data directory, checked against an existing one.
    pub genesis: Option<State>,
    /// Every validator of the cluster (a static membership).
    pub members: BTreeMap<NodeId, Peer>,
    /// A listener already bound for the raft RPCs; `None` binds `members[id].raft`.
    pub raft_listener: Option<std::net::TcpListener>,
    /// A listener already bound for the ledger API; `None` binds `members[id].api`.
    pub api_listener: Option<std::net::TcpListener>,
    /// API requests per second allowed per client IP, and the burst.
    pub rate: (u32, u32),
    /// The most transactions the pending pool holds.
    pub max_pending: u64,
    /// Leader heartbeat, milliseconds.
    pub heartbeat_ms: u64,
    /// Election timeout range, milliseconds.
    pub election_ms: (u64, u64),
    /// The most transactions in one block.
    pub max_block_txs: usize,
    /// Log entries between snapshots (and how many a snapshot keeps behind it).
    pub snapshot_every: u64,
    /// Where to dial each peer's raft instead of its membership address (a test harness's
    /// proxies); empty in production.
    pub raft_routes: BTreeMap<NodeId, String>,
}

impl ReplicaConfig {
    /// Defaults for everything but the identity, the directory, the genesis and the members.
    pub fn new(
        id: NodeId,
        data_dir: PathBuf,
        genesis: Option<State>,
        members: BTreeMap<NodeId, Peer>,
    ) -> ReplicaConfig {
        ReplicaConfig {
            id,
            data_dir,
            genesis,
            members,
            raft_listener: None,
            api_listener: None,
            rate: (20_000, 40_000),
            max_pending: 200_000,
            // A block's signatures are verified on every core of every validator: generous
            // timeouts, so that a busy validator is not taken for a dead one.
            heartbeat_ms: 250,
            election_ms: (1_500, 3_000),
            max_block_txs: 20_000,
            snapshot_every: 5_000,
            raft_routes: BTreeMap::new(),
        }
    }
}

/// Where a validator stands, as `bt chain status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// Its id.
    pub id: NodeId,
    /// `leader`, `follower`, `candidate` or `learner`.
    pub role: &'static str,
    /// The raft term.
    pub term: u64,
    /// The leader it knows, if any.
    pub leader: Option<NodeId>,
    /// The index of the last log entry applied to the ledger.
    pub applied_index: Option<u64>,
    /// The index of the last entry in its log.
    pub last_log_index: Option<u64>,
    /// The ledger's height here.
    pub height: u64,
}

/// A running validator.
pub struct Replica {
    id: NodeId,
    raft: Raft<TypeConfig>,
    machine: Machine,
    raft_addr: SocketAddr,
    api_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    api: Option<(
        tokio::sync::oneshot::Sender<()>,
        JoinHandle<bt_chain::Result<()>>,
    )>,
    /// The chain store and the raft log, without keeping them open: shutdown waits until
    /// every task that shared them (raft's own included) has let them go.
    files: (Weak<bt_chain::Store>, Weak<redb::Database>),
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("id", &self.id)
            .field("raft_addr", &self.raft_addr)
            .finish_non_exhaustive()
    }
}

fn raft_error(e: impl std::fmt::Display) -> Error {
    Error::Raft(e.to_string())
}

/// A raft server state as `bt chain status` names it.
pub(crate) fn role(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "stopped",
    }
}

/// Binds `addr` unless a listener is given; either way non-blocking, for tokio.
fn listen(
    given: Option<std::net::TcpListener>,
    addr: &str,
) -> Result<(tokio::net::TcpListener, SocketAddr)> {
    let io = |source| Error::Io {
        path: PathBuf::from(addr),
        source,
    };
    let l = match given {
        Some(l) => l,
        None => std::net::TcpListener::bind(addr).map_err(io)?,
    };
    l.set_nonblocking(true).map_err(io)?;
    let at = l.local_addr().map_err(io)?;
    Ok((tokio::net::TcpListener::from_std(l).map_err(io)?, at))
}

impl Replica {
    /// Opens the validator's storage, starts raft and its RPC server, initializes a new
    /// cluster with `members` (a validator that already has a log or a vote keeps them) and
    /// starts the block producer.
    pub async fn start(mut cfg: ReplicaConfig) -> Result<Replica> {
        let me = cfg.members.get(&cfg.id).cloned().ok_or(Error::NotAMember {
            id: cfg.id,
            members: cfg.members.keys().copied().collect(),
        })?;
        let log = LogStore::open(&cfg.data_dir)?;
        let machine = Machine::open(&cfg.data_dir, cfg.genesis.as_ref())?;
        let config = openraft::Config {
            cluster_name: "bt-ledger".into(),
            heartbeat_interval: cfg.heartbeat_ms,
            election_timeout_min: cfg.election_ms.0,
            election_timeout_max: cfg.election_ms.1,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_every),
            max_in_snapshot_log_to_keep: cfg.snapshot_every,
            ..openraft::Config::default()
        }
        .validate()
        .map_err(raft_error)?;
        let network = Network {
            routes: Arc::new(std::mem::take(&mut cfg.raft_routes)),
        };
        let files = (Arc::downgrade(machine.store()), log.open_handle());
        let raft = Raft::new(cfg.id, Arc::new(config), network, log, machine.clone())
            .await
            .map_err(raft_error)?;

        let (listener, raft_addr) = listen(cfg.raft_listener.take(), &me.raft)?;
        let (api_listener, api_addr) = listen(cfg.api_listener.take(), &me.api)?;
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        {
            let service = RaftService::server(raft.clone());
            let mut stopped = stopped.clone();
            tasks.push(tokio::spawn(async move {
                let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
                let served = tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming_shutdown(incoming, async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    })
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "raft server stopped");
                }
            }));
        }
        // A new cluster is initialized by its first member at once. The others each wait an
        // election timeout per member before them and initialize only if nobody has reached
        // them meanwhile (a first start with the first member down). All initializing at once
        // split the first vote and left the cluster without a leader for a timeout or two.
        let rank = cfg.members.keys().position(|k| *k == cfg.id).unwrap_or(0) as u32;
        if rank == 0 {
            initialize(&raft, cfg.members.clone()).await?;
        } else {
            let (raft, members) = (raft.clone(), cfg.members.clone());
            let wait = Duration::from_millis(cfg.election_ms.1) * rank;
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                let m = raft.metrics().borrow().clone();
                if m.current_leader.is_none()
                    && m.last_log_index.is_none()
                    && m.vote.leader_id.term == 0
                    && let Err(e) = initialize(&raft, members).await
                {
                    tracing::error!(error = %e, "cannot initialize the cluster");
                }
            }));
        }
        let block_time = Duration::from_millis(machine.head().params.block_time_ms.max(1));
        tasks.push(tokio::spawn(produce(
            cfg.id,
            raft.clone(),
            machine.clone(),
            block_time,
            cfg.max_block_txs,
            stopped,
        )));
        let (backend, group_commit) = crate::api::ReplicaBackend::new(
            cfg.id,
            raft.clone(),
            machine.clone(),
            cfg.members.clone(),
            cfg.max_pending,
        );
        tasks.push(tokio::spawn(group_commit));
        let api = bt_chain::serve_api(
            Arc::new(backend),
            api_listener,
            bt_chain::service::RateLimiter::new(cfg.rate.0, cfg.rate.1),
        );
        Ok(Replica {
            id: cfg.id,
            raft,
            machine,
            raft_addr,
            api_addr,
            stop,
            tasks,
            api: Some(api),
            files,
        })
    }

    /// The address its raft RPCs listen on.
    pub fn raft_addr(&self) -> SocketAddr {
        self.raft_addr
    }

    /// The address its ledger API listens on.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// Its state machine (the ledger readers query).
    pub fn machine(&self) -> &Machine {
        &self.machine
    }

    /// Its raft.
    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// Proposes encoded, signature-checked transactions as one log entry; answers once the
    /// entry is committed (on disk on a majority) and applied here. A follower answers
    /// [`Error::NotLeader`] with the leader it knows.
    pub async fn submit(&self, txs: Vec<Vec<u8>>) -> Result<Applied> {
        write(&self.raft, Command::Submit { txs }).await
    }

    /// Where it stands.
    pub fn status(&self) -> ReplicaStatus {
        let m = self.raft.metrics().borrow().clone();
        ReplicaStatus {
            id: self.id,
            role: role(m.state),
            term: m.current_term,
            leader: m.current_leader,
            applied_index: m.last_applied.map(|l| l.index),
            last_log_index: m.last_log_index,
            height: self.machine.head().height,
        }
    }

    /// Stops the API, the producer, the RPC server and raft.
    pub async fn shutdown(mut self) -> Result<()> {
        if let Some((stop, mut server)) = self.api.take() {
            let _ = stop.send(());
            // Open block subscriptions never end by themselves: give calls a moment, then end
            // the server (dropping its handle alone would leave it running, holding the
            // chain's database open after shutdown returns).
            if tokio::time::timeout(Duration::from_secs(2), &mut server)
                .await
                .is_err()
            {
                tracing::debug!("API calls still open at shutdown; dropped");
                server.abort();
                let _ = server.await;
            }
        }
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
        self.raft.shutdown().await.map_err(raft_error)?;
        // Raft's core has stopped, but tasks it spawned (its state machine's worker among
        // them) may still hold the chain store and the log for a moment; a caller that reopens
        // the directory right after shutdown (a restart, `bt_chain::verify`) must find them
        // closed.
        let (store, log) = std::mem::take(&mut self.files);
        drop(self);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while store.strong_count() + log.strong_count() > 0 {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!("the chain store or the raft log is still open after shutdown");
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }
}

/// Initializes a new cluster with `members`; one that already has a log or a vote keeps them.
async fn initialize(raft: &Raft<TypeConfig>, members: BTreeMap<NodeId, Peer>) -> Result<()> {
    match raft.initialize(members).await {
        Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
        Err(e) => Err(raft_error(e)),
    }
}

pub(crate) async fn write(raft: &Raft<TypeConfig>, command: Command) -> Result<Applied> {
    match raft.client_write(command).await {
        Ok(r) => Ok(r.data),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(Error::NotLeader {
            leader: f.leader_id,
            api: f.leader_node.map(|n| n.api),
        }),
        Err(e) => Err(raft_error(e)),
    }
}

/// While this validator leads: every `block_time`, the next block from the pool.
async fn produce(
    id: NodeId,
    raft: Raft<TypeConfig>,
    machine: Machine,
    block_time: Duration,
    max_txs: usize,
    mut stopped: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(block_time);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        if raft.metrics().borrow().current_leader != Some(id) {
            continue;
        }
        // Still the leader, and everything committed before is applied: the head is the one
        // the next block must follow.
        if raft.ensure_linearizable().await.is_err() {
            continue;
        }
        let head = machine.head();
        let store = machine.store().clone();
        let next = tokio::task::spawn_blocking(move || {
            bt_chain::next_block(&store, &head, max_txs, bt_chain::now_ms())
        })
        .await;
        let next = match next {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot build a block");
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "block builder panicked");
                continue;
            }
        };
        machine.remember_built(next.built.block.header.hash(), next.built.state);
        let command = Command::Block {
            block: next.built.block.encode(),
            consumed: next.consumed,
            refused: next
                .refused
                .into_iter()
                .map(|(h, why)| Refused { hash: h.0, why })
                .collect(),
        };
        match write(&raft, command).await {
            Ok(_) | Err(Error::NotLeader { .. }) => {}
            Err(e) => tracing::warn!(error = %e, "block not committed"),
        }
    }
}
