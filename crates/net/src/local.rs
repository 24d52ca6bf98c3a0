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

/// The account that funds every neuron's stake in a local network (`//Alice`).
pub fn funder() -> Result<Keypair> {
    Keypair::from_uri("//Alice").map_err(|e| Error::Config(e.to_string()))
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
