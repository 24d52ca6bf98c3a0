//! `bt net up`: a ledger node and neurons on loopback in one process, trained together,
//! with a twin of every neuron trained alone on the same data (the "loss alone" column), the
//! removal cost of every neuron measured at intervals and at the end, and everything the
//! report, the plots and the dashboard need.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::local::{
    DEFAULT_TEMPO, LOCAL_FUNDER_URI, LedgerParams, funder, hotkey, start_ledger_cluster,
};
use bt_chain::Client;
use bt_ledger::{Mechanism, RAO_PER_TAO};
use bt_neuron::learner::{BackwardUpdate, OptimConfig};
use bt_neuron::ledger::Snapshot;
use bt_neuron::model::ModelConfig;
use bt_neuron::router::{DataWeight, RouterConfig};
use bt_neuron::serve::Behaviour;
use bt_neuron::weights::WeightRule;
use bt_neuron::{Neuron, NeuronConfig, RemovalCost};

use crate::error::{Error, Result};
use crate::live::{Live, LiveNeuron};
use crate::progress::Progress;

/// The bundled texts the neurons train on, in the order they are handed out.
pub const TEXTS: [&str; 6] = [
    "moby_dick_a",
    "sotu_1860s",
    "sotu_2000s",
    "moby_dick_b",
    "sotu_1930s",
    "sotu_1790s",
];

/// What a neuron in the local network is: honest, or one of the adversaries that the
/// tournament (`bt net tournament`) sets against a mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleKind {
    /// Learns, answers with its model, sets weights by the honest rule ([`honest_rule`]).
    Honest,
    /// Learns, but answers every query with noise.
    Noise,
    /// Learns and answers honestly, but puts all its weight on itself.
    Selfish,
    /// One of a group (two by default) that serve honestly and weigh only each other.
    Cabal,
    /// Learns and serves honestly, measures nothing, and copies the stake-weighted mean of the
    /// other rows each epoch (the weight copier).
    Copier,
    /// One of three identities of one operator, its stake split between them, serving one
    /// model (trained by the first) and weighing each other and the operator's favourite.
    Sybil,
    /// Queries, learns and weighs like an honest neuron, but serves its initial, untrained
    /// model and ignores Backward.
    Freerider,
    /// Learns and serves honestly, but its row only goes to uniform over every neuron and
    /// never follows anything measured (an idle validator).
    Lazy,
}

impl RoleKind {
    /// Every adversary, in the tournament's order.
    pub const ADVERSARIES: [RoleKind; 7] = [
        RoleKind::Selfish,
        RoleKind::Cabal,
        RoleKind::Copier,
        RoleKind::Sybil,
        RoleKind::Noise,
        RoleKind::Freerider,
        RoleKind::Lazy,
    ];

    /// Its name in reports and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            RoleKind::Honest => "honest",
            RoleKind::Noise => "noise",
            RoleKind::Selfish => "selfish",
            RoleKind::Cabal => "cabal",
            RoleKind::Copier => "copier",
            RoleKind::Sybil => "sybil",
            RoleKind::Freerider => "freerider",
            RoleKind::Lazy => "lazy",
        }
    }

    /// The adversary named `name` (as [`RoleKind::as_str`] writes it).
    pub fn adversary(name: &str) -> Result<RoleKind> {
        RoleKind::ADVERSARIES
            .into_iter()
            .find(|k| k.as_str() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = RoleKind::ADVERSARIES.iter().map(|k| k.as_str()).collect();
                Error::Config(format!(
                    "unknown adversary {name:?}; one of {}",
                    names.join(", ")
                ))
            })
    }

    /// How many identities the adversary has.
    fn identities(self) -> usize {
        match self {
            RoleKind::Cabal => 2,
            RoleKind::Sybil => 3,
            _ => 1,
        }
    }
}

/// One neuron's part.
#[derive(Clone, Debug)]
pub struct Role {
    /// Its name (also its hotkey's derivation path, `//Alice//name`).
    pub name: String,
    /// What it is.
    pub kind: RoleKind,
    /// Its training text (`bundled:...`).
    pub data: String,
    /// Whether it is the adversary of the run (the noise neuron only when noise is).
    pub adversary: bool,
    /// The stake the funder puts on it at the start, in rao.
    pub stake_rao: u64,
    /// The names of the neurons it weighs (`cabal` and `sybil`; empty otherwise).
    pub group: Vec<String>,
    /// The index of the identity whose model it serves instead of training one (the second
    /// and third sybil identities).
    pub mirror_of: Option<usize>,
}

/// The parts of the network of `n` neurons against `adversary`: `n - 2` honest, one noise,
/// then the adversary's identities (one; two for `cabal`; three for `sybil`, sharing one
/// neuron's stake). With `selfish` that is the default network; with `noise` the noise neuron
/// is the adversary and there are `n - 1` neurons.
pub fn roles(n: usize, adversary: RoleKind) -> Vec<Role> {
    let honest = n.saturating_sub(2);
    let mut out: Vec<Role> = (0..honest)
        .map(|k| Role {
            name: format!("honest{k}"),
            kind: RoleKind::Honest,
            data: String::new(),
            adversary: false,
            stake_rao: STAKE_TAO * RAO_PER_TAO,
            group: Vec::new(),
            mirror_of: None,
        })
        .collect();
    let noise = |adversary| Role {
        name: "noise".into(),
        kind: RoleKind::Noise,
        data: String::new(),
        adversary,
        stake_rao: STAKE_TAO * RAO_PER_TAO,
        group: Vec::new(),
        mirror_of: None,
    };
    out.push(noise(adversary == RoleKind::Noise));
    if adversary != RoleKind::Noise {
        let k = adversary.identities();
        let first = out.len();
        let names: Vec<String> = if k == 1 {
            vec![adversary.as_str().to_string()]
        } else {
            (0..k)
                .map(|j| format!("{}{j}", adversary.as_str()))
                .collect()
        };
        let group: Vec<String> = match adversary {
            RoleKind::Cabal => names.clone(),
            // The operator's favourite: the first honest neuron.
            RoleKind::Sybil => names
                .iter()
                .cloned()
                .chain(["honest0".to_string()])
                .collect(),
            _ => Vec::new(),
        };
        for (j, name) in names.into_iter().enumerate() {
            let sybil = adversary == RoleKind::Sybil;
            out.push(Role {
                name,
                kind: adversary,
                data: String::new(),
                adversary: true,
                // One neuron's stake split over the identities (the remainder on the first).
                stake_rao: if sybil {
                    STAKE_TAO * RAO_PER_TAO / 3
                        + if j == 0 {
                            STAKE_TAO * RAO_PER_TAO % 3
                        } else {
                            0
                        }
                } else {
                    STAKE_TAO * RAO_PER_TAO
                },
                group: group.clone(),
                mirror_of: (sybil && j > 0).then_some(first),
            });
        }
    }
    for (k, r) in out.iter_mut().enumerate() {
        let text = r.mirror_of.unwrap_or(k);
        r.data = format!("bundled:{}", TEXTS[text % TEXTS.len()]);
    }
    out
}

/// How the neurons of a local network talk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Transport {
    /// In process, one global step at a time, the ledger on a logical clock: the same seed
    /// gives the same run ([`crate::lockstep`]).
    #[default]
    Lockstep,
    /// Axons and dendrites over loopback sockets, a ledger node, the wall clock.
    Grpc,
}

impl Transport {
    /// Its name in reports and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Lockstep => "lockstep",
            Transport::Grpc => "grpc",
        }
    }
}

/// The stake every neuron of a local network starts with, in TAO (from the funder).
pub const STAKE_TAO: u64 = 100;

/// The most neurons a grpc network runs (every neuron and its twin serve on loopback).
pub const MAX_GRPC_NEURONS: usize = 16;

/// The most neurons a lockstep network runs.
pub const MAX_LOCKSTEP_NEURONS: usize = 256;

/// Blocks per global step of a lockstep network by default: a default grpc network (100 ms
/// blocks, six neurons and their twins on two cores) makes about seven blocks per training
/// step, so the ledger moves as far per step in both.
pub const DEFAULT_BLOCKS_PER_STEP: u64 = 7;

/// The learners' size (`--model`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ModelPreset {
    /// 64-wide, two blocks, 64 bytes of context (the default; minutes on two cores).
    #[default]
    Tiny,
    /// 128-wide, four blocks, 128 bytes of context.
    Small,
    /// 256-wide, six blocks, 256 bytes of context.
    Base,
}

impl ModelPreset {
    /// Every preset, smallest first.
    pub const ALL: [ModelPreset; 3] = [ModelPreset::Tiny, ModelPreset::Small, ModelPreset::Base];

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelPreset::Tiny => "tiny",
            ModelPreset::Small => "small",
            ModelPreset::Base => "base",
        }
    }

    /// The preset of this name.
    pub fn parse(name: &str) -> Result<ModelPreset> {
        ModelPreset::ALL
            .into_iter()
            .find(|p| p.as_str() == name)
            .ok_or_else(|| {
                Error::Config(format!(
                    "--model must be one of tiny, small, base; got {name:?}"
                ))
            })
    }

    /// The learners' shape.
    pub fn config(self) -> ModelConfig {
        match self {
            ModelPreset::Tiny => ModelConfig::default(),
            ModelPreset::Small => ModelConfig {
                seq: 128,
                d: 128,
                heads: 4,
                layers: 4,
                student_layers: 2,
                hidden: 512,
                ..ModelConfig::default()
            },
            ModelPreset::Base => ModelConfig {
                seq: 256,
                d: 256,
                heads: 8,
                layers: 6,
                student_layers: 2,
                hidden: 1024,
                ..ModelConfig::default()
            },
        }
    }
}

/// How to run the network.
#[derive(Clone, Debug)]
pub struct UpConfig {
    /// Neurons: 3 to [`MAX_GRPC_NEURONS`] over grpc, to [`MAX_LOCKSTEP_NEURONS`] in lockstep.
    pub neurons: usize,
    /// How the neurons talk.
    pub transport: Transport,
    /// Ledger blocks per global step (lockstep only).
    pub blocks_per_step: u64,
    /// Training steps per neuron (an upper bound when `minutes` is set).
    pub steps: usize,
    /// Stop training after this many minutes, if set.
    pub minutes: Option<f64>,
    /// Seed of every neuron (each adds its index).
    pub seed: u64,
    /// Where the ledger's data, the report and the plots go.
    pub out: PathBuf,
    /// Serve the live dashboard on this loopback address.
    pub dashboard: Option<SocketAddr>,
    /// Steps per epoch (weights set, held-out loss measured).
    pub epoch_steps: usize,
    /// Measure removal costs every this many epochs (and always at the end); 0: only at the end.
    pub measure_every: usize,
    /// Examples per batch.
    pub batch: usize,
    /// Held-out batches per evaluation.
    pub eval_batches: usize,
    /// The learners' shape.
    pub model: ModelConfig,
    /// The learners' routers.
    pub router: RouterConfig,
    /// The ledger's block time.
    pub block_time_ms: u64,
    /// The mechanism the ledger runs.
    pub mechanism: Mechanism,
    /// Blocks per Yuma epoch (under `yuma` only).
    pub tempo: u64,
    /// Show progress bars (they hide themselves when stderr is not a terminal).
    pub progress: bool,
    /// The adversary in the network ([`roles`]); `selfish` is the default network.
    pub adversary: RoleKind,
    /// Whether the axons apply the competitive mask.
    pub mask: bool,
    /// How the learners apply their peers' Backward gradients.
    pub backward: BackwardUpdate,
    /// Every learner's weight decay (`optim.weight_decay`; `auto` by its text, as its twin's).
    pub weight_decay: DataWeight,
    /// Whether every epoch measures the held-out losses (for the loss curves); otherwise only
    /// the end of the run does (a tournament's runs). Lockstep only.
    pub held_out_each_epoch: bool,
    /// Keep only the first this many training bytes of each neuron's text (all of it when
    /// `None`): smaller private shares.
    pub text_bytes: Option<usize>,
    /// Ledger validators (grpc only): 1 is a single node; more replicate the ledger on
    /// openraft, and neuron `k` talks to validator `k mod validators` first, then to the
    /// next when that one is lost.
    pub validators: usize,
}

impl Default for UpConfig {
    fn default() -> UpConfig {
        UpConfig {
            neurons: 6,
            transport: Transport::default(),
            blocks_per_step: DEFAULT_BLOCKS_PER_STEP,
            steps: 300,
            minutes: None,
            seed: 0,
            out: PathBuf::from("out/net"),
            dashboard: None,
            epoch_steps: 25,
            measure_every: 4,
            batch: 16,
            eval_batches: 4,
            model: ModelConfig::default(),
            router: RouterConfig::default(),
            block_time_ms: 100,
            mechanism: Mechanism::Paper,
            tempo: DEFAULT_TEMPO,
            progress: true,
            adversary: RoleKind::Selfish,
            mask: true,
            backward: BackwardUpdate::default(),
            weight_decay: OptimConfig::default().weight_decay,
            held_out_each_epoch: true,
            validators: 1,
            text_bytes: None,
        }
    }
}

impl UpConfig {
    /// The neurons' parts, in uid order ([`roles`]).
    pub fn roles(&self) -> Vec<Role> {
        roles(self.neurons, self.adversary)
    }

    /// Checks every setting, naming the one that is wrong.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        let max = match self.transport {
            Transport::Lockstep => MAX_LOCKSTEP_NEURONS,
            Transport::Grpc => MAX_GRPC_NEURONS,
        };
        if !(3..=max).contains(&self.neurons) {
            return bad(format!(
                "--neurons must be in 3..={max} with --transport {}, got {}",
                self.transport.as_str(),
                self.neurons
            ));
        }
        if self.transport == Transport::Lockstep && !(1..=1000).contains(&self.blocks_per_step) {
            return bad(format!(
                "--blocks-per-step must be in 1..=1000, got {}",
                self.blocks_per_step
            ));
        }
        if self.steps < 1 {
            return bad("--steps must be at least 1".into());
        }
        if let Some(n) = self.text_bytes
            && n < self.model.seq + 2
        {
            return bad(format!(
                "--text-bytes must be at least {} (one window of the model's sequence), got {n}",
                self.model.seq + 2
            ));
        }
        if !(1..=7).contains(&self.validators) {
            return bad(format!(
                "--validators must be in 1..=7, got {}",
                self.validators
            ));
        }
        if self.validators > 1 && self.transport != Transport::Grpc {
            return bad(format!(
                "--validators {} needs --transport grpc (the lockstep network runs the ledger in process)",
                self.validators
            ));
        }
        if let Some(m) = self.minutes
            && !(m.is_finite() && m > 0.0)
        {
            return bad(format!("--minutes must be a positive number, got {m}"));
        }
        if self.epoch_steps < 1 || self.batch < 1 {
            return bad("epoch steps and batch must be at least 1".into());
        }
        if self.eval_batches < 1 {
            return bad(format!(
                "--eval-batches must be at least 1, got {}",
                self.eval_batches
            ));
        }
        if self.tempo < 1 {
            return bad(format!("--tempo must be at least 1, got {}", self.tempo));
        }
        if self.block_time_ms < 10 {
            return bad(format!(
                "the block time must be at least 10 ms, got {}",
                self.block_time_ms
            ));
        }
        // Checked here too (the dashboard refuses it as well) so that a bad flag fails
        // before the network starts.
        if let Some(a) = self.dashboard
            && !a.ip().is_loopback()
        {
            return bad(format!(
                "--dashboard must be a loopback address (the page has no authentication), got {a}"
            ));
        }
        if self.transport == Transport::Grpc && self.neurons > self.router.max_peers {
            return bad(format!(
                "{} neurons need router.max_peers >= {0}, got {}",
                self.neurons, self.router.max_peers
            ));
        }
        if self.transport == Transport::Grpc
            && !matches!(self.adversary, RoleKind::Selfish | RoleKind::Noise)
        {
            return bad(format!(
                "--adversary {} runs in lockstep only (over grpc: selfish or noise)",
                self.adversary.as_str()
            ));
        }
        if self.roles().len() > max {
            return bad(format!(
                "{} neurons with --adversary {} make {}, more than {max}",
                self.neurons,
                self.adversary.as_str(),
                self.roles().len()
            ));
        }
        OptimConfig {
            backward: self.backward,
            weight_decay: self.weight_decay,
            ..OptimConfig::default()
        }
        .validate()?;
        self.router.validate()?;
        self.model.validate().map_err(Error::Neuron)
    }
}

/// The ledger at one height, as the follower saw it.
#[derive(Clone, Debug)]
pub struct LedgerPoint {
    /// Block height.
    pub height: u64,
    /// Stake of every neuron by uid, in TAO.
    pub stake_tao: Vec<f64>,
    /// Rank of every neuron by uid.
    pub rank: Vec<f64>,
}

/// Removal costs of every neuron, summed over its consumers, at one moment.
#[derive(Clone, Debug)]
pub struct Measurement {
    /// Epoch index (1-based) at which it was taken; `None` for the final one.
    pub epoch: Option<usize>,
    /// The ledger height seen then.
    pub height: u64,
    /// By neuron (in role order): the exact cost and the Taylor terms, summed over consumers.
    pub cost: Vec<RemovalCost>,
    /// By neuron (in role order): the smallest and the largest exact cost one consumer
    /// measured (`None` when no consumer's router chose it).
    pub by_consumer: Vec<Option<ConsumerRange>>,
    /// By neuron (in role order): the ledger rank then.
    pub rank: Vec<f64>,
}

/// One neuron's run.
#[derive(Clone, Debug)]
pub struct NeuronRun {
    /// Its part.
    pub role: Role,
    /// Its uid.
    pub uid: usize,
    /// Training loss at every step.
    pub loss: Vec<f32>,
    /// Held-out loss in the network at each epoch's end, `(step, loss)`.
    pub held_out: Vec<(usize, f32)>,
    /// Held-out loss of its twin trained alone, at the same moments.
    pub held_out_alone: Vec<(usize, f32)>,
    /// Steps done.
    pub steps: usize,
    /// Mean wall time of a step, ms.
    pub step_ms: f64,
}

/// Everything a run produced.
#[derive(Clone, Debug)]
pub struct NetRun {
    /// The settings.
    pub config: UpConfig,
    /// Wall time from start to the end of the final measurement.
    pub wall: Duration,
    /// True when Ctrl-C (or the time limit) ended training early.
    pub stopped_early: bool,
    /// The neurons.
    pub neurons: Vec<NeuronRun>,
    /// The ledger over time.
    pub ledger: Vec<LedgerPoint>,
    /// The final metagraph.
    pub final_snapshot: Snapshot,
    /// Removal costs at intervals, then the final one last.
    pub measurements: Vec<Measurement>,
    /// The final removal costs with the masks open (every answer unscaled), by neuron in role
    /// order, summed over consumers; measured in lockstep only.
    pub open_cost: Option<Vec<RemovalCost>>,
}

struct Trainer {
    neuron: Neuron,
    alone: Neuron,
    run: NeuronRun,
    /// Per measured epoch: the costs this neuron measured as a consumer.
    costs: Vec<EpochCosts>,
}

/// What one consumer measured at one epoch's end.
pub(crate) struct EpochCosts {
    pub(crate) epoch: usize,
    pub(crate) height: u64,
    /// By uid.
    pub(crate) cost: Vec<RemovalCost>,
    /// The ledger rank by uid at that moment.
    pub(crate) rank: Vec<f64>,
}

/// Peer slots of a lockstep network's routers: the configured ones, or every neuron when
/// there are more.
pub(crate) fn lockstep_max_peers(cfg: &UpConfig) -> usize {
    cfg.router.max_peers.max(cfg.roles().len())
}

pub(crate) fn neuron_config(
    cfg: &UpConfig,
    k: usize,
    role: &Role,
    ledger: Option<&str>,
) -> NeuronConfig {
    let mut c = NeuronConfig {
        name: role.name.clone(),
        behaviour: Some(match role.kind {
            RoleKind::Noise => Behaviour::Noise,
            RoleKind::Freerider => Behaviour::Frozen,
            _ => Behaviour::Honest,
        }),
        ..NeuronConfig::default()
    };
    c.data.source = role.data.clone();
    c.data.limit = cfg.text_bytes;
    c.network.ledger = ledger.map(str::to_string);
    c.network.stake_tao = if ledger.is_some() {
        role.stake_rao as f64 / RAO_PER_TAO as f64
    } else {
        0.0
    };
    c.network.mask = cfg.mask;
    c.optim.backward = cfg.backward;
    c.optim.weight_decay = cfg.weight_decay;
    c.train.seed = cfg.seed.wrapping_add(k as u64);
    c.train.epoch_steps = cfg.epoch_steps;
    c.train.batch = cfg.batch;
    c.train.eval_batches = cfg.eval_batches;
    c.model = cfg.model.clone();
    c.router = cfg.router.clone();
    c.weights.rule = rule(role.kind, cfg.mechanism);
    c.weights.group = role
        .group
        .iter()
        .filter_map(|name| hotkey(name).ok().map(|k| k.public()))
        .collect();
    c
}

/// The weight rule of a neuron of this kind under this mechanism: the honest rule
/// ([`honest_rule`]) but for the adversaries that choose their rows otherwise.
pub fn rule(kind: RoleKind, mechanism: Mechanism) -> WeightRule {
    match kind {
        RoleKind::Selfish => WeightRule::SelfOnly,
        RoleKind::Cabal | RoleKind::Sybil => WeightRule::Group,
        RoleKind::Copier => WeightRule::Copy,
        RoleKind::Lazy => WeightRule::Lazy,
        RoleKind::Honest | RoleKind::Noise | RoleKind::Freerider => honest_rule(mechanism),
    }
}

/// The honest weight rule under this mechanism: the paper's payoff gradient under `paper`,
/// where the self-weight earns rank; under `paper_no_self` and `yuma` the self-rank term pays
/// nothing, so peers are weighed by their measured value ([`WeightRule::Value`]).
pub fn honest_rule(mechanism: Mechanism) -> WeightRule {
    match mechanism {
        Mechanism::Paper => WeightRule::Payoff,
        Mechanism::PaperNoSelf | Mechanism::Yuma => WeightRule::Value,
    }
}

/// Runs the network until every neuron has trained `cfg.steps` steps, the time limit passes,
/// or `stop` is set (Ctrl-C); then measures, shuts everything down and gives back the run.
/// The caller writes the report ([`crate::report::write`]).
pub async fn up(cfg: &UpConfig, live: Live, stop: Arc<AtomicBool>) -> Result<NetRun> {
    cfg.validate()?;
    match cfg.transport {
        Transport::Grpc => up_grpc(cfg, live, stop).await,
        Transport::Lockstep => up_lockstep(cfg, live, stop).await,
    }
}

/// The lockstep network, on a blocking thread, with the dashboard served beside it.
async fn up_lockstep(cfg: &UpConfig, live: Live, stop: Arc<AtomicBool>) -> Result<NetRun> {
    let start = Instant::now();
    std::fs::create_dir_all(&cfg.out).map_err(|e| Error::Io {
        path: cfg.out.clone(),
        source: e,
    })?;
    let progress = Progress::new(&cfg.roles(), cfg.steps, cfg.progress);
    let dashboard = match cfg.dashboard {
        Some(addr) => {
            let d = crate::dashboard::serve(addr, live.clone()).await?;
            progress.println(&format!("dashboard: http://{}/", d.addr));
            Some(d)
        }
        None => None,
    };
    let (c, l, p) = (cfg.clone(), live.clone(), progress.clone());
    let run =
        tokio::task::spawn_blocking(move || crate::lockstep::run(&c, &l, &stop, &p, start, None))
            .await
            .map_err(|e| Error::Config(format!("the lockstep network failed: {e}")))?;
    progress.finish();
    if let Some(d) = dashboard {
        d.stop().await;
    }
    run
}

/// The network over loopback sockets with a ledger node.
async fn up_grpc(cfg: &UpConfig, live: Live, stop: Arc<AtomicBool>) -> Result<NetRun> {
    let start = Instant::now();
    let chain_dir = cfg.out.join("chain");
    if chain_dir.exists() {
        std::fs::remove_dir_all(&chain_dir).map_err(|e| Error::Io {
            path: chain_dir.clone(),
            source: e,
        })?;
    }
    std::fs::create_dir_all(&cfg.out).map_err(|e| Error::Io {
        path: cfg.out.clone(),
        source: e,
    })?;
    let params = LedgerParams {
        block_time_ms: cfg.block_time_ms,
        mechanism: cfg.mechanism,
        tempo: cfg.tempo,
        ..LedgerParams::default()
    };
    let chain = start_ledger_cluster(&chain_dir, &params, cfg.validators).await?;
    let urls = chain.urls();
    let roles = cfg.roles();
    let progress = Progress::new(&roles, cfg.steps, cfg.progress);
    // Outside neurons (bt neuron run, python/examples/torch_neuron.py) may join while the
    // network trains: the funder's key stakes for them.
    progress.println(&format!(
        "ledger: {}  (outside neurons may join; {} funds their stake)",
        urls.join(","),
        LOCAL_FUNDER_URI
    ));

    let dashboard = match cfg.dashboard {
        Some(addr) => {
            let d = crate::dashboard::serve(addr, live.clone()).await?;
            progress.println(&format!("dashboard: http://{}/", d.addr));
            Some(d)
        }
        None => None,
    };

    let mut trainers = Vec::with_capacity(roles.len());
    for (k, role) in roles.iter().enumerate() {
        // Every validator, starting with validator `k mod n`: a neuron fails over to the
        // next when the one it uses is lost.
        let ledger = (0..urls.len())
            .map(|i| urls[(k + i) % urls.len()].as_str())
            .collect::<Vec<_>>()
            .join(",");
        let neuron = Neuron::start(
            neuron_config(cfg, k, role, Some(&ledger)),
            hotkey(&role.name)?,
            Some(funder()?),
        )
        .await?;
        let alone = Neuron::start(
            neuron_config(cfg, k, role, None),
            hotkey(&format!("{}-alone", role.name))?,
            None,
        )
        .await?;
        progress.println(&format!(
            "started {} ({}, {})",
            role.name,
            role.kind.as_str(),
            role.data
        ));
        trainers.push(Trainer {
            neuron,
            alone,
            costs: Vec::new(),
            run: NeuronRun {
                role: role.clone(),
                uid: 0,
                loss: Vec::new(),
                held_out: Vec::new(),
                held_out_alone: Vec::new(),
                steps: 0,
                step_ms: 0.0,
            },
        });
    }
    for t in &mut trainers {
        t.neuron.refresh().await?;
        t.run.uid = t
            .neuron
            .uid()
            .ok_or_else(|| Error::Ledger(format!("{} is not registered", t.run.role.name)))?;
    }
    {
        let mut l = live.write().unwrap_or_else(|e| e.into_inner());
        l.steps = if cfg.minutes.is_some() { 0 } else { cfg.steps };
        let mut ns: Vec<LiveNeuron> = trainers
            .iter()
            .map(|t| LiveNeuron {
                uid: t.run.uid,
                name: t.run.role.name.clone(),
                role: t.run.role.kind.as_str().to_string(),
                ..LiveNeuron::default()
            })
            .collect();
        ns.sort_by_key(|n| n.uid);
        l.neurons = ns;
    }

    // The ledger follower: the dashboard's and the plots' view of stake, rank and W.
    let follow_stop = Arc::new(AtomicBool::new(false));
    let follower = tokio::spawn(follow(
        urls.clone(),
        live.clone(),
        follow_stop.clone(),
        progress.clone(),
        start,
    ));

    let deadline = cfg
        .minutes
        .map(|m| start + Duration::from_secs_f64(m * 60.0));
    let mut tasks = Vec::new();
    for (k, t) in trainers.into_iter().enumerate() {
        let stop = stop.clone();
        let live = live.clone();
        let progress = progress.clone();
        let cfg = cfg.clone();
        tasks.push(tokio::spawn(async move {
            train(t, k, &cfg, deadline, &stop, &live, &progress).await
        }));
    }
    let mut trainers = Vec::new();
    for t in tasks {
        trainers.push(
            t.await
                .map_err(|e| Error::Config(format!("a neuron's task failed: {e}")))??,
        );
    }
    let stopped_early =
        stop.load(Ordering::SeqCst) || trainers.iter().any(|t: &Trainer| t.run.steps < cfg.steps);

    // The final measurement, with every neuron still serving.
    progress.println("measuring removal costs ...");
    for t in &mut trainers {
        t.neuron.refresh().await?;
    }
    let mut final_costs = Vec::with_capacity(trainers.len());
    for t in &mut trainers {
        final_costs.push(t.neuron.removal_costs().await?);
    }
    let final_snapshot = trainers[0]
        .neuron
        .snapshot()
        .cloned()
        .ok_or_else(|| Error::Ledger("no metagraph".into()))?;
    let uids: Vec<usize> = trainers.iter().map(|t| t.run.uid).collect();
    let per: Vec<&[EpochCosts]> = trainers.iter().map(|t| t.costs.as_slice()).collect();
    let measurements = all_measurements(&per, &uids, &final_costs, &final_snapshot);

    follow_stop.store(true, Ordering::SeqCst);
    let ledger = follower
        .await
        .map_err(|e| Error::Config(format!("the ledger follower failed: {e}")))?;
    let mut neurons = Vec::with_capacity(trainers.len());
    for t in trainers {
        t.neuron.shutdown().await?;
        t.alone.shutdown().await?;
        neurons.push(t.run);
    }
    chain.stop().await?;
    {
        let mut l = live.write().unwrap_or_else(|e| e.into_inner());
        l.done = true;
    }
    progress.finish();
    if let Some(d) = dashboard {
        d.stop().await;
    }
    Ok(NetRun {
        config: cfg.clone(),
        wall: start.elapsed(),
        stopped_early,
        neurons,
        ledger,
        final_snapshot,
        measurements,
        open_cost: None,
    })
}

/// Runs the network once per seed `cfg.seed .. cfg.seed + seeds`, writing each run's report
/// into `cfg.out/seed-N`, then `summary.md` and `summary.json` into `cfg.out`. Stops after the
/// run that Ctrl-C interrupts. Gives back the reports and the summary's Markdown.
pub async fn up_seeds(
    cfg: &UpConfig,
    seeds: usize,
    live: Live,
    stop: Arc<AtomicBool>,
) -> Result<(Vec<crate::report::ReportJson>, String)> {
    if seeds < 1 {
        return Err(Error::Config("--seeds must be at least 1".into()));
    }
    cfg.validate()?;
    let mut reports = Vec::with_capacity(seeds);
    for k in 0..seeds as u64 {
        let mut c = cfg.clone();
        c.seed = cfg.seed.wrapping_add(k);
        c.out = cfg.out.join(format!("seed-{}", c.seed));
        let run = up(&c, live.clone(), stop.clone()).await?;
        crate::report::write(&run, &c.out)?;
        reports.push(crate::report::json(&run));
        if stop.load(Ordering::SeqCst) {
            break;
        }
    }
    let md = crate::report::write_summary(&reports, &cfg.out)?;
    Ok((reports, md))
}

/// The measurements of a run: those taken at intervals, then the final one (`final_costs`
/// by consumer, ranks from `final_snapshot`).
pub(crate) fn all_measurements(
    per: &[&[EpochCosts]],
    uids: &[usize],
    final_costs: &[Vec<RemovalCost>],
    final_snapshot: &Snapshot,
) -> Vec<Measurement> {
    let mut measurements = interval_measurements(per, uids);
    measurements.push(Measurement {
        epoch: None,
        height: final_snapshot.height,
        cost: sum_over_consumers(final_costs, uids),
        by_consumer: consumer_range(final_costs, uids),
        rank: uids
            .iter()
            .map(|&u| final_snapshot.neurons[u].rank)
            .collect(),
    });
    measurements
}

/// Sums each neuron's removal cost over its consumers: `costs[i][uid_j]` is what consumer `i`
/// measured for peer `uid_j`; the result is by neuron, in role order.
pub(crate) fn sum_over_consumers(costs: &[Vec<RemovalCost>], uids: &[usize]) -> Vec<RemovalCost> {
    uids.iter()
        .map(|&j| {
            let mut total = RemovalCost::default();
            for c in costs {
                if let Some(x) = c.get(j) {
                    total.exact += x.exact;
                    total.first += x.first;
                    total.second += x.second;
                    total.exact_var += x.exact_var;
                    total.batches += x.batches;
                }
            }
            total
        })
        .collect()
}

/// The least and the most that one consumer measured for a neuron's removal.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConsumerRange {
    /// The smallest cost one consumer measured (below 0: its answers did that consumer harm).
    pub min: f64,
    /// The largest cost one consumer measured.
    pub max: f64,
    /// The standard error of that largest cost, from its spread over the consumer's held-out
    /// batches (infinite when it had fewer than two).
    pub max_se: f64,
}

/// The smallest and the largest removal cost one consumer measured for each neuron (in role
/// order), over the consumers whose routers chose it.
pub(crate) fn consumer_range(
    costs: &[Vec<RemovalCost>],
    uids: &[usize],
) -> Vec<Option<ConsumerRange>> {
    uids.iter()
        .map(|&j| {
            let chosen = || {
                costs
                    .iter()
                    .filter_map(|c| c.get(j).filter(|x| x.batches > 0))
            };
            let min = chosen().map(|x| x.exact).reduce(f64::min)?;
            let most = chosen().reduce(|a, b| if b.exact > a.exact { b } else { a })?;
            Some(ConsumerRange {
                min,
                max: most.exact,
                max_se: most.se(),
            })
        })
        .collect()
}

/// The measurements every neuron took at the same epochs, summed over consumers; `per` holds
/// each consumer's measurements.
pub(crate) fn interval_measurements(per: &[&[EpochCosts]], uids: &[usize]) -> Vec<Measurement> {
    let Some(first) = per.first() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for m in first.iter() {
        let all: Option<Vec<Vec<RemovalCost>>> = per
            .iter()
            .map(|costs| {
                costs
                    .iter()
                    .find(|c| c.epoch == m.epoch)
                    .map(|c| c.cost.clone())
            })
            .collect();
        let Some(all) = all else { continue };
        out.push(Measurement {
            epoch: Some(m.epoch),
            height: m.height,
            cost: sum_over_consumers(&all, uids),
            by_consumer: consumer_range(&all, uids),
            rank: uids
                .iter()
                .map(|&u| m.rank.get(u).copied().unwrap_or(0.0))
                .collect(),
        });
    }
    out
}

/// One neuron's training loop, with its twin alone, until the step count, the deadline or
/// `stop`.
async fn train(
    mut t: Trainer,
    k: usize,
    cfg: &UpConfig,
    deadline: Option<Instant>,
    stop: &AtomicBool,
    live: &Live,
    progress: &Progress,
) -> Result<Trainer> {
    let mut epoch = 0;
    let mut busy = Duration::ZERO;
    while t.run.steps < cfg.steps
        && !stop.load(Ordering::SeqCst)
        && deadline.is_none_or(|d| Instant::now() < d)
    {
        let s = t.neuron.train_step().await?;
        t.alone.train_step().await?;
        busy += s.step_time;
        t.run.steps += 1;
        t.run.loss.push(s.loss);
        let step = t.run.steps;
        progress.step(k, step, s.loss);
        if step.is_multiple_of(5) || step == 1 {
            let mut l = live.write().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = l.neurons.iter_mut().find(|n| n.uid == t.run.uid) {
                n.step = step;
                n.loss.push((step, s.loss));
                if n.loss.len() > 400 {
                    // Thin to every other point: the page needs a curve, not every step.
                    n.loss = n.loss.iter().step_by(2).copied().collect();
                }
            }
        }
        if step.is_multiple_of(cfg.epoch_steps) {
            epoch += 1;
            let e = t.neuron.end_epoch().await?;
            let a = t.alone.end_epoch().await?;
            t.run.held_out.push((step, e.held_out));
            t.run.held_out_alone.push((step, a.held_out));
            {
                let mut l = live.write().unwrap_or_else(|e| e.into_inner());
                if let Some(n) = l.neurons.iter_mut().find(|n| n.uid == t.run.uid) {
                    n.held_out.push((step, e.held_out));
                }
            }
            progress.epoch(k, step, e.held_out, a.held_out);
            if cfg.measure_every > 0 && epoch % cfg.measure_every == 0 {
                let cost = t.neuron.removal_costs().await?;
                let (height, rank) = t
                    .neuron
                    .snapshot()
                    .map(|s| (s.height, s.neurons.iter().map(|n| n.rank).collect()))
                    .unwrap_or_default();
                t.costs.push(EpochCosts {
                    epoch,
                    height,
                    cost,
                    rank,
                });
            }
        }
    }
    // A run cut short between epochs still gets a final held-out loss for both.
    if t.run.held_out.last().map(|h| h.0) != Some(t.run.steps) && t.run.steps > 0 {
        let net = t.neuron.evaluate(bt_neuron::learner::Mode::Network).await?;
        let alone = t.alone.evaluate(bt_neuron::learner::Mode::Alone).await?;
        t.run.held_out.push((t.run.steps, net));
        t.run.held_out_alone.push((t.run.steps, alone));
    }
    t.run.step_ms = busy.as_secs_f64() * 1e3 / t.run.steps.max(1) as f64;
    progress.done(k, t.run.steps);
    Ok(t)
}

/// Follows the ledger every 250 ms until `stop` (another validator when the one it reads is
/// lost): fills the live state and records stake and rank at every new height.
async fn follow(
    urls: Vec<String>,
    live: Live,
    stop: Arc<AtomicBool>,
    progress: Progress,
    start: Instant,
) -> Vec<LedgerPoint> {
    let mut points: Vec<LedgerPoint> = Vec::new();
    let mut client: Option<Client> = None;
    let mut next = 0;
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if client.is_none() {
            client = Client::connect_first(&urls, &mut next).await.ok();
        }
        let Some(c) = client.as_mut() else { continue };
        let snap = match c.metagraph(None, true).await {
            Ok(mg) => Snapshot::from_metagraph(&mg),
            Err(e) => {
                tracing::debug!(error = %e, "metagraph read failed");
                client = None;
                continue;
            }
        };
        progress.height(snap.height);
        {
            let mut l = live.write().unwrap_or_else(|e| e.into_inner());
            l.height = snap.height;
            l.elapsed_s = start.elapsed().as_secs_f64();
            l.w = snap.w.clone();
            for n in &mut l.neurons {
                if let Some(m) = snap.neurons.get(n.uid) {
                    n.stake_tao = m.stake_tao();
                    n.rank = m.rank;
                }
            }
        }
        if points.last().is_none_or(|p| p.height != snap.height) {
            points.push(LedgerPoint {
                height: snap.height,
                stake_tao: snap.neurons.iter().map(|n| n.stake_tao()).collect(),
                rank: snap.neurons.iter().map(|n| n.rank).collect(),
            });
        }
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(exact: f64, exact_var: f64, batches: usize) -> RemovalCost {
        RemovalCost {
            exact,
            exact_var,
            batches,
            ..RemovalCost::default()
        }
    }

    #[test]
    fn consumers_costs_sum_with_their_errors_and_the_largest_keeps_its_own() {
        // Two consumers (uids 0 and 1) measure peer 2; consumer 1's router never chose uid 0.
        let costs = vec![
            vec![cost(0.0, 0.0, 0), cost(0.5, 0.04, 4), cost(-0.2, 0.01, 4)],
            vec![cost(0.0, 0.0, 0), cost(0.0, 0.0, 0), cost(0.1, 0.09, 4)],
        ];
        let uids = [0, 1, 2];
        let sum = sum_over_consumers(&costs, &uids);
        assert!((sum[2].exact + 0.1).abs() < 1e-12);
        assert!((sum[2].se() - 0.1f64.sqrt()).abs() < 1e-12);
        let range = consumer_range(&costs, &uids);
        assert_eq!(range[0], None);
        let r = range[2].unwrap();
        assert_eq!((r.min, r.max), (-0.2, 0.1));
        assert!((r.max_se - 0.3).abs() < 1e-12);
        assert_eq!(range[1].unwrap().max, 0.5);
    }
}
