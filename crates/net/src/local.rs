//! A network on one machine over sockets: an embedded ledger node and neurons in one process,
//! on loopback. Used by the network tests, the proofs example and `bt net up --transport
//! grpc`; the lockstep network uses only its keys.

use std::path::Path;

use bt_chain::{NodeConfig, NodeHandle, serve};
use bt_keys::Keypair;
use bt_ledger::{Mechanism, State, genesis_state};

use bt_neuron::{EpochReport, Neuron, StepReport};

use crate::error::{Error, Result};

/// The ledger's parameters for a local network.
#[derive(Clone, Debug)]
pub struct LedgerParams {
    /// Inflation per block.
    pub tau: f64,
    /// Bound on a weight row's change.
    pub epsilon: f64,
    /// Block time.
    pub block_time_ms: u64,
    /// Most neurons.
    pub max_neurons: u32,
    /// The mechanism that ranks the neurons and splits what is minted.
    pub mechanism: Mechanism,
    /// Blocks per Yuma epoch (under `yuma` only).
    pub tempo: u64,
}

impl Default for LedgerParams {
    fn default() -> LedgerParams {
        LedgerParams {
            tau: 1.0,
            epsilon: 0.3,
            block_time_ms: 200,
            max_neurons: 16,
            mechanism: Mechanism::Paper,
            tempo: DEFAULT_TEMPO,
        }
    }
}

/// Blocks per Yuma epoch in a local network by default: the ledger's own default.
pub const DEFAULT_TEMPO: u64 = 10;

impl LedgerParams {
    /// The genesis state of a local network with these parameters; the funder holds
    /// 1 000 000 TAO.
    pub fn genesis(&self) -> Result<State> {
        genesis_state(&format!(
            "[params]\ntau = {}\nepsilon = {}\nmax_neurons = {}\nblock_time_ms = {}\n\
             mechanism = \"{}\"\ntempo = {}\n\
             [[accounts]]\naddress = \"{}\"\nbalance = 1_000_000_000_000_000\n",
            self.tau,
            self.epsilon,
            self.max_neurons,
            self.block_time_ms,
            self.mechanism,
            self.tempo,
            funder()?.public()
        ))
        .map_err(|e| Error::Ledger(e.to_string()))
    }
}

/// The secret URI of the account that funds every neuron's stake in a local network.
pub const LOCAL_FUNDER_URI: &str = "//Alice";

/// The account that funds every neuron's stake in a local network ([`LOCAL_FUNDER_URI`]).
pub fn funder() -> Result<Keypair> {
    Keypair::from_uri(LOCAL_FUNDER_URI).map_err(|e| Error::Config(e.to_string()))
}

/// The hotkey of the local neuron called `name` (`//Alice//name`).
pub fn hotkey(name: &str) -> Result<Keypair> {
    Keypair::from_uri(&format!("//Alice//{name}")).map_err(|e| Error::Config(e.to_string()))
}

/// Starts a ledger node on a free loopback port with its data in `dir`, from
/// [`LedgerParams::genesis`].
pub async fn start_ledger(dir: &Path, p: &LedgerParams) -> Result<NodeHandle> {
    let genesis = p.genesis()?;
    let mut cfg = NodeConfig::new(dir.to_path_buf(), Some(genesis));
    cfg.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    serve(cfg)
        .await
        .map_err(|e| Error::Ledger(format!("starting the ledger node: {e}")))
}

/// The ledger of a local network: one node, or a cluster of replicated validators.
#[derive(Debug)]
pub enum LocalLedger {
    /// One node.
    Single(NodeHandle),
    /// Validators of a replicated ledger (openraft), in id order.
    Replicated(Vec<bt_replica::Replica>),
}

impl LocalLedger {
    /// The API address of each node or validator.
    pub fn urls(&self) -> Vec<String> {
        match self {
            LocalLedger::Single(n) => vec![format!("http://{}", n.addr)],
            LocalLedger::Replicated(rs) => rs
                .iter()
                .map(|r| format!("http://{}", r.api_addr()))
                .collect(),
        }
    }

    /// Stops every node.
    pub async fn stop(self) -> Result<()> {
        match self {
            LocalLedger::Single(n) => n.stop().await.map_err(|e| Error::Ledger(e.to_string())),
            LocalLedger::Replicated(rs) => {
                for r in rs {
                    r.shutdown()
                        .await
                        .map_err(|e| Error::Ledger(e.to_string()))?;
                }
                Ok(())
            }
        }
    }
}

/// Starts `validators` replicated validators (openraft) on free loopback ports, with their
/// data in `dir/v1`, `dir/v2`, ..., and waits until one leads; with one validator, a single
/// node ([`start_ledger`]).
pub async fn start_ledger_cluster(
    dir: &Path,
    p: &LedgerParams,
    validators: usize,
) -> Result<LocalLedger> {
    if validators <= 1 {
        return Ok(LocalLedger::Single(start_ledger(dir, p).await?));
    }
    let genesis = p.genesis()?;
    let io = |e: std::io::Error| Error::Io {
        path: dir.to_path_buf(),
        source: e,
    };
    let mut listeners = Vec::new();
    let mut members = std::collections::BTreeMap::new();
    for id in 1..=validators as u64 {
        let raft = std::net::TcpListener::bind("127.0.0.1:0").map_err(io)?;
        let api = std::net::TcpListener::bind("127.0.0.1:0").map_err(io)?;
        members.insert(
            id,
            bt_replica::Peer {
                raft: raft.local_addr().map_err(io)?.to_string(),
                api: api.local_addr().map_err(io)?.to_string(),
            },
        );
        listeners.push((id, raft, api));
    }
    let mut rs = Vec::new();
    for (id, raft, api) in listeners {
        let mut cfg = bt_replica::ReplicaConfig::new(
            id,
            dir.join(format!("v{id}")),
            Some(genesis.clone()),
            members.clone(),
        );
        cfg.raft_listener = Some(raft);
        cfg.api_listener = Some(api);
        rs.push(
            bt_replica::Replica::start(cfg)
                .await
                .map_err(|e| Error::Ledger(format!("starting validator {id}: {e}")))?,
        );
    }
    // Ready once one validator leads and every validator knows it (a neuron's first
    // transactions go to whichever validator it talks to, which forwards them to the leader).
    let t0 = std::time::Instant::now();
    let agreed = |rs: &[bt_replica::Replica]| {
        let statuses: Vec<_> = rs.iter().map(bt_replica::Replica::status).collect();
        statuses
            .iter()
            .find(|s| s.role == "leader")
            .is_some_and(|l| statuses.iter().all(|s| s.leader == Some(l.id)))
    };
    while !agreed(&rs) {
        if t0.elapsed() > std::time::Duration::from_secs(30) {
            return Err(Error::Ledger(
                "the validators did not agree on a leader in 30 s".into(),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(LocalLedger::Replicated(rs))
}

/// What one neuron did in [`train_together`].
pub struct Trained {
    /// The neuron, still running.
    pub neuron: Neuron,
    /// Every step.
    pub steps: Vec<StepReport>,
    /// Every epoch.
    pub epochs: Vec<EpochReport>,
}

/// Trains every neuron for `steps` steps at once (each in its own task), ending an epoch
/// every `epoch_steps`, and gives them back with their reports.
pub async fn train_together(neurons: Vec<Neuron>, steps: usize) -> Result<Vec<Trained>> {
    let mut tasks = Vec::new();
    for n in neurons {
        tasks.push(tokio::spawn(async move {
            let epoch = n.config().train.epoch_steps;
            let mut out = Trained {
                steps: Vec::with_capacity(steps),
                epochs: Vec::new(),
                neuron: n,
            };
            for step in 1..=steps {
                out.steps.push(out.neuron.train_step().await?);
                if step % epoch == 0 {
                    out.epochs.push(out.neuron.end_epoch().await?);
                }
            }
            Ok::<_, Error>(out)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(
            t.await
                .map_err(|e| Error::Config(format!("neuron task failed: {e}")))??,
        );
    }
    Ok(out)
}
