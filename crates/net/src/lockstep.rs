//! The lockstep network (`bt net up`, the default transport): every neuron runs the same
//! [`Core`] as a neuron on sockets, but its peers are called in process and the ledger is the
//! pure [`bt_ledger::build_block`] driven by a logical clock. The same flags and seed give the
//! same run, bit for bit.
//!
//! One global step:
//! 1. every neuron samples its batch and routes it (with its own seeded noise) over the peers
//!    its core makes available;
//! 2. every peer answers the queries addressed to it through the same serving code as its
//!    axon ([`LearnerSynapse`], scaled by the competitive mask of its [`LedgerView`]), in one
//!    forward over its callers' rows in caller-uid order (an answer to a row does not depend on
//!    the other rows), so all answers come from the parameters as they stood at the start of
//!    the step, and a noise peer draws its noise in a fixed order;
//! 3. every neuron (and its twin alone) trains on its answers;
//! 4. the Backward updates land: each peer applies its callers' gradients in uid order;
//! 5. the ledger advances `blocks_per_step` blocks (pending transactions go into the first).
//!
//! Steps 1, 3 and 4 run in parallel over neurons (each touches only its own learner, random
//! generator and core) and step 2 in parallel over peers; results are gathered in uid order,
//! so the thread count does not change them. Every `epoch_steps` steps each neuron reads the
//! metagraph from the ledger state, its core chooses a weight row (signed with its hotkey and
//! submitted to the next block), and the network evaluates; every `measure_every` epochs and
//! at the end every neuron measures what removing each peer costs it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::local::{LedgerParams, funder, hotkey};
use bt_keys::{Keypair, PublicKey};
use bt_ledger::{Call, State, Transaction, build_block};
use bt_neuron::core::{Core, Effect, Millis};
use bt_neuron::data::{Batch, TextData};
use bt_neuron::learner::{Learner, Mode, PeerOutput, RemovalProbe, StepOutcome};
use bt_neuron::ledger::{LedgerView, Snapshot};
use bt_neuron::neuron::core_config;
use bt_neuron::router::Routing;
use bt_neuron::serve::{Behaviour, LearnerSynapse};
use bt_neuron::weights::to_raw;
use bt_neuron::{DeviceSpec, RemovalCost};
use bt_wire::{StakeView, Synapse, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::live::{Live, LiveNeuron};
use crate::progress::Progress;
use crate::up::{
    EpochCosts, LedgerPoint, NetRun, NeuronRun, Role, UpConfig, all_measurements,
    lockstep_max_peers, neuron_config, sum_over_consumers,
};

/// One neuron of the lockstep network, with its twin trained alone.
struct Member {
    uid: usize,
    /// The identity whose model this one serves instead of training its own (a sybil's).
    mirror_of: Option<usize>,
    hotkey: Keypair,
    public: PublicKey,
    learner: Arc<Learner>,
    synapse: LearnerSynapse,
    view: LedgerView,
    core: Core,
    snapshot: Option<Snapshot>,
    /// Draws the training batches: the twin's own generator starts from the same seed, so
    /// both see the same batches.
    rng: ChaCha8Rng,
    /// Draws the router's training noise.
    route_rng: ChaCha8Rng,
    alone: Twin,
    /// What determines the twin's losses, when a [`Twins`] store keeps them.
    twin_key: Option<String>,
    data: TextData,
    held_out: Vec<Batch>,
    batch: usize,
    seq: usize,
    run: NeuronRun,
    costs: Vec<EpochCosts>,
}

/// A neuron's twin alone: trained in this run, or its held-out losses by step known from an
/// earlier run with the same twin ([`Twins`]).
enum Twin {
    Train {
        learner: Arc<Learner>,
        rng: Box<ChaCha8Rng>,
    },
    Known(Vec<(usize, f32)>),
}

/// The held-out losses of twins trained alone, by everything that determines them, kept across
/// runs: a twin never sees the network, so its training does not depend on the mechanism, the
/// mask or the adversary, and a tournament trains each seed's twins once. Only complete runs
/// add to it.
#[derive(Clone, Default)]
pub struct Twins(Arc<Mutex<HashMap<String, HeldOut>>>);

/// Held-out losses by step.
type HeldOut = Vec<(usize, f32)>;

impl Twins {
    fn get(&self, key: &str) -> Option<Vec<(usize, f32)>> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    fn insert(&self, key: String, losses: Vec<(usize, f32)>) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_insert(losses);
    }

    /// How many twins it knows.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether it knows none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A query: `caller` asks `peer` for these rows of its batch.
struct Request {
    caller: usize,
    peer: usize,
    rows: Vec<usize>,
    ids: Vec<u32>,
}

/// What one neuron routed for one batch.
struct Routed {
    routing: Routing,
    queries: Vec<Effect>,
}

/// The ledger: a state, the transactions waiting for the next block, and the block time that
/// turns heights into the cores' milliseconds.
struct Ledger {
    state: State,
    pending: Vec<Transaction>,
    block_time_ms: u64,
}

impl Ledger {
    fn now(&self) -> Millis {
        self.state.height.saturating_mul(self.block_time_ms)
    }

    /// Builds `blocks` blocks; the pending transactions go into the first. A refused one is an
    /// error (every transaction here is built from the state it applies to).
    fn advance(&mut self, blocks: u64) -> Result<()> {
        for _ in 0..blocks {
            let txs = std::mem::take(&mut self.pending);
            let height = self.state.height + 1;
            let built = build_block(&self.state, txs.clone(), height * self.block_time_ms);
            if let Some((i, e)) = built.rejected.first() {
                return Err(Error::Ledger(format!(
                    "block {height} refused transaction {i} of {}: {e}",
                    txs.len()
                )));
            }
            self.pending = built.deferred.iter().map(|&i| txs[i].clone()).collect();
            self.state = built.state;
        }
        Ok(())
    }

    fn nonce(&self, key: &PublicKey) -> u64 {
        self.state.nonce(key)
    }
}

fn io<T>(r: bt_neuron::Result<T>) -> Result<T> {
    r.map_err(Error::Neuron)
}

/// Runs the network in lockstep until `cfg.steps` global steps, the time limit, or `stop`;
/// then measures and gives back the run. Blocking: call it off the async runtime. With
/// `twins`, a twin whose losses it already knows is not trained again, and a complete run
/// adds the twins it trained.
pub fn run(
    cfg: &UpConfig,
    live: &Live,
    stop: &AtomicBool,
    progress: &Progress,
    start: Instant,
    twins: Option<&Twins>,
) -> Result<NetRun> {
    let roles = cfg.roles();
    let funder = funder()?;
    let genesis = LedgerParams {
        max_neurons: u32::try_from(roles.len().max(16))
            .map_err(|_| Error::Config(format!("{} neurons is too many", roles.len())))?,
        block_time_ms: cfg.block_time_ms,
        mechanism: cfg.mechanism,
        tempo: cfg.tempo,
        ..LedgerParams::default()
    }
    .genesis()?;
    let mut ledger = Ledger {
        state: genesis,
        pending: Vec::new(),
        block_time_ms: cfg.block_time_ms,
    };
    let mut members = Vec::with_capacity(roles.len());
    for (k, role) in roles.iter().enumerate() {
        let m = member(cfg, k, role, &members, twins)?;
        members.push(m);
        progress.println(&format!(
            "started {} ({}, {})",
            role.name,
            role.kind.as_str(),
            role.data
        ));
    }
    // Registration and stake, signed with the real keys, in the first block.
    for (k, m) in members.iter().enumerate() {
        let endpoint = std::net::SocketAddr::from(([127, 0, 0, 1], 1 + k as u16));
        let reg = Call::Register {
            coldkey: funder.public(),
            endpoint,
        };
        ledger.pending.push(Transaction::sign(
            &m.hotkey,
            &ledger.state.genesis,
            ledger.nonce(&m.public),
            reg,
        ));
        let stake = Call::AddStake {
            hotkey: m.public,
            amount: m.run.role.stake_rao,
        };
        ledger.pending.push(Transaction::sign(
            &funder,
            &ledger.state.genesis,
            ledger.nonce(&funder.public()) + k as u64,
            stake,
        ));
    }
    ledger.advance(1)?;
    let snap = Snapshot::from_state(&ledger.state);
    for m in &mut members {
        let uid = snap
            .uid_of(&m.public)
            .ok_or_else(|| Error::Ledger(format!("{} is not registered", m.run.role.name)))?;
        if uid != m.uid {
            return Err(Error::Ledger(format!(
                "{} registered as uid {uid}, expected {}",
                m.run.role.name, m.uid
            )));
        }
        m.view.update(snap.clone());
        m.snapshot = Some(snap.clone());
    }
    {
        let mut l = live.write().unwrap_or_else(|e| e.into_inner());
        l.steps = if cfg.minutes.is_some() { 0 } else { cfg.steps };
        l.neurons = members
            .iter()
            .map(|m| LiveNeuron {
                uid: m.uid,
                name: m.run.role.name.clone(),
                role: m.run.role.kind.as_str().to_string(),
                ..LiveNeuron::default()
            })
            .collect();
    }
    let mut points = Vec::new();
    observe(&ledger, live, progress, start, &mut points);

    let deadline = cfg
        .minutes
        .map(|m| start + Duration::from_secs_f64(m * 60.0));
    let mut busy = Duration::ZERO;
    let mut epoch = 0;
    let mut step = 0;
    while step < cfg.steps
        && !stop.load(Ordering::SeqCst)
        && deadline.is_none_or(|d| Instant::now() < d)
    {
        let t0 = Instant::now();
        global_step(&mut members, &ledger)?;
        ledger.advance(cfg.blocks_per_step)?;
        step += 1;
        busy += t0.elapsed();
        for m in &mut members {
            m.run.steps = step;
            let loss = m.run.loss.last().copied().unwrap_or(f32::NAN);
            progress.step(m.uid, step, loss);
        }
        if step.is_multiple_of(5) || step == 1 {
            let mut l = live.write().unwrap_or_else(|e| e.into_inner());
            for (n, m) in l.neurons.iter_mut().zip(&members) {
                n.step = step;
                n.loss
                    .push((step, m.run.loss.last().copied().unwrap_or(f32::NAN)));
                if n.loss.len() > 400 {
                    n.loss = n.loss.iter().step_by(2).copied().collect();
                }
            }
        }
        observe(&ledger, live, progress, start, &mut points);
        if members.iter().all(|m| m.core.epoch_due()) {
            epoch += 1;
            end_epoch(&mut members, &mut ledger, cfg.held_out_each_epoch)?;
            {
                let mut l = live.write().unwrap_or_else(|e| e.into_inner());
                for (n, m) in l.neurons.iter_mut().zip(&members) {
                    if let Some(h) = m.run.held_out.last() {
                        n.held_out.push(*h);
                    }
                }
            }
            for m in &members {
                if let (Some(n), Some(a)) = (m.run.held_out.last(), m.run.held_out_alone.last()) {
                    progress.epoch(m.uid, step, n.1, a.1);
                }
            }
            if cfg.measure_every > 0 && epoch % cfg.measure_every == 0 {
                let costs = removal_costs(&mut members, &ledger, Masks::AsServed)?;
                let snap = Snapshot::from_state(&ledger.state);
                let rank: Vec<f64> = snap.neurons.iter().map(|n| n.rank).collect();
                for (m, cost) in members.iter_mut().zip(costs) {
                    m.costs.push(EpochCosts {
                        epoch,
                        height: snap.height,
                        cost,
                        rank: rank.clone(),
                    });
                }
            }
        }
    }
    let stopped_early = step < cfg.steps;
    // A run cut short between epochs (or one that measures only at its end) gets a final
    // held-out loss for both.
    if step > 0
        && members
            .iter()
            .any(|m| m.run.held_out.last().map(|h| h.0) != Some(step))
    {
        record_held_out(&mut members, &ledger, step, true)?;
    }
    // Only now are the twins' losses whole, the final one included.
    if let Some(store) = twins.filter(|_| !stopped_early) {
        for m in &members {
            if let (Twin::Train { .. }, Some(key)) = (&m.alone, &m.twin_key) {
                store.insert(key.clone(), m.run.held_out_alone.clone());
            }
        }
    }
    let step_ms = busy.as_secs_f64() * 1e3 / step.max(1) as f64;
    for m in &mut members {
        m.run.step_ms = step_ms;
        progress.done(m.uid, m.run.steps);
    }

    progress.println("measuring removal costs ...");
    let final_snapshot = Snapshot::from_state(&ledger.state);
    for m in &mut members {
        m.view.update(final_snapshot.clone());
        m.snapshot = Some(final_snapshot.clone());
    }
    let final_costs = removal_costs(&mut members, &ledger, Masks::AsServed)?;
    progress.println("measuring removal costs with the masks open ...");
    let open_costs = removal_costs(&mut members, &ledger, Masks::Open)?;
    let uids: Vec<usize> = members.iter().map(|m| m.uid).collect();
    let per: Vec<&[EpochCosts]> = members.iter().map(|m| m.costs.as_slice()).collect();
    let measurements = all_measurements(&per, &uids, &final_costs, &final_snapshot);
    {
        let mut l = live.write().unwrap_or_else(|e| e.into_inner());
        l.done = true;
    }
    Ok(NetRun {
        config: cfg.clone(),
        wall: start.elapsed(),
        stopped_early,
        neurons: members.into_iter().map(|m| m.run).collect(),
        ledger: points,
        final_snapshot,
        measurements,
        open_cost: Some(sum_over_consumers(&open_costs, &uids)),
    })
}

/// Builds neuron `k` and its twin alone, as the grpc network configures them. A mirror (a
/// second or third sybil identity) shares the learner and the twin of the identity it
/// mirrors, one of `built`; a free rider serves a learner that never trains. A twin that
/// `twins` knows is not built.
fn member(
    cfg: &UpConfig,
    k: usize,
    role: &Role,
    built: &[Member],
    twins: Option<&Twins>,
) -> Result<Member> {
    let mut ncfg = neuron_config(cfg, k, role, Some("lockstep"));
    let (data, held_out) = io(ncfg.load_data())?;
    ncfg.router.max_peers = lockstep_max_peers(cfg);
    ncfg.router = ncfg.router.for_data(data.train_len());
    ncfg.optim = ncfg.optim.for_data(data.train_len());
    let device = io(DeviceSpec::parse(&ncfg.train.device).and_then(|d| d.open()))?;
    let optim = ncfg.optim.clone();
    let seed = ncfg.train.seed;
    let fresh = || -> Result<Arc<Learner>> {
        Ok(Arc::new(io(Learner::new(
            &ncfg.model,
            &ncfg.router,
            &optim,
            &device,
            seed,
        ))?))
    };
    // Everything a twin's held-out losses follow from (it never sees the network).
    let twin_key = twins.map(|_| {
        format!(
            "{:?}",
            (
                &ncfg.model,
                &ncfg.router,
                &ncfg.data,
                seed,
                ncfg.train.batch,
                ncfg.train.eval_batches,
                &ncfg.train.device,
                cfg.steps,
                cfg.epoch_steps,
                cfg.held_out_each_epoch,
            )
        )
    });
    let known = twins.zip(twin_key.as_deref()).and_then(|(t, k)| t.get(k));
    let (learner, alone) = match role.mirror_of.and_then(|p| built.get(p)) {
        // A mirror neither trains nor evaluates: its identity's figures are copied.
        Some(p) => (p.learner.clone(), Twin::Known(Vec::new())),
        None => (
            fresh()?,
            match known {
                Some(losses) => Twin::Known(losses),
                None => Twin::Train {
                    learner: fresh()?,
                    rng: Box::new(ChaCha8Rng::seed_from_u64(seed.wrapping_add(1))),
                },
            },
        ),
    };
    let keys = hotkey(&role.name)?;
    let behaviour = ncfg.behaviour.unwrap_or(Behaviour::Honest);
    let served = if behaviour == Behaviour::Frozen {
        fresh()?
    } else {
        learner.clone()
    };
    let mut core_cfg = core_config(&ncfg);
    core_cfg.checkpoint = false;
    Ok(Member {
        uid: k,
        mirror_of: role.mirror_of,
        public: keys.public(),
        view: LedgerView::new(keys.public(), ncfg.weights.temperature, ncfg.network.mask),
        hotkey: keys,
        synapse: LearnerSynapse::new(served, behaviour, seed ^ 0x5eed),
        learner,
        core: Core::new(core_cfg),
        snapshot: None,
        rng: ChaCha8Rng::seed_from_u64(seed.wrapping_add(1)),
        route_rng: ChaCha8Rng::seed_from_u64(bt_neuron::neuron::route_seed(seed, 0)),
        alone,
        twin_key,
        data,
        held_out,
        batch: ncfg.train.batch,
        seq: ncfg.model.seq,
        run: NeuronRun {
            role: role.clone(),
            uid: k,
            loss: Vec::new(),
            held_out: Vec::new(),
            held_out_alone: Vec::new(),
            steps: 0,
            step_ms: 0.0,
        },
        costs: Vec::new(),
    })
}

/// Every peer but `me` is known (has a place on the ledger).
fn known(n: usize, me: usize, max_peers: usize) -> Vec<bool> {
    (0..max_peers).map(|p| p < n && p != me).collect()
}

/// Routes `batch` for member `m` (with its training noise when `train`); `None` when no peer
/// is available.
fn route(
    m: &mut Member,
    n: usize,
    batch: &Batch,
    now: Millis,
    train: bool,
) -> Result<Option<Routed>> {
    let max = m.core.config().max_peers;
    let known = known(n, m.uid, max);
    let available = m.core.available(&known, now);
    if !available.iter().any(|a| *a) {
        return Ok(None);
    }
    let rng: Option<&mut dyn rand::RngCore> = if train { Some(&mut m.route_rng) } else { None };
    let routing = io(m
        .learner
        .route(&batch.ids, batch.b, batch.t, &available, rng))?;
    let queries = m.core.queries(&routing.rows_per_peer(), &known);
    Ok(Some(Routed { routing, queries }))
}

/// The requests of one routing.
fn requests(caller: usize, batch: &Batch, routed: &Routed) -> Vec<Request> {
    let t = batch.t;
    routed
        .queries
        .iter()
        .filter_map(|q| match q {
            Effect::Query { peer, rows } => Some(Request {
                caller,
                peer: *peer,
                rows: rows.clone(),
                ids: rows
                    .iter()
                    .flat_map(|&r| batch.ids[r * t..(r + 1) * t].iter().copied())
                    .collect(),
            }),
            _ => None,
        })
        .collect()
}

fn ids_tensor(ids: &[u32], rows: usize, t: usize) -> Option<Tensor> {
    let v: Vec<i64> = ids.iter().map(|&x| i64::from(x)).collect();
    Tensor::from_i64(vec![rows, t], &v).ok()
}

/// What peer `p` answers its callers (in caller-uid order): one forward over all their rows,
/// since a peer's answer to a row does not depend on the other rows of its batch, then each
/// caller's share scaled by the competitive mask that caller sees, as the axon would. A caller
/// the axon would refuse (a mask scale outside `[0, 1]`, a non-finite answer) gets nothing.
fn serve(
    p: &Member,
    members: &[Member],
    reqs: Vec<Request>,
    t: usize,
    masks: Masks,
) -> Vec<(usize, PeerOutput)> {
    let reqs: Vec<(Request, f32)> = reqs
        .into_iter()
        .filter_map(|r| {
            let scale = match masks {
                Masks::AsServed => p.view.response_scale(&members[r.caller].public),
                Masks::Open => 1.0,
            };
            (scale.is_finite() && (0.0..=1.0).contains(&scale)).then_some((r, scale))
        })
        .collect();
    let rows: usize = reqs.iter().map(|(r, _)| r.rows.len()).sum();
    if rows == 0 {
        return Vec::new();
    }
    let d = p.learner.model_config().d;
    let ids: Vec<u32> = reqs
        .iter()
        .flat_map(|(r, _)| r.ids.iter().copied())
        .collect();
    let Some(values) = ids_tensor(&ids, rows, t)
        .and_then(|x| p.synapse.forward(&[x]).ok())
        .and_then(|out| out.into_iter().next())
        .filter(|out| out.shape() == [rows, t, d])
        .and_then(|out| out.to_f32().ok())
    else {
        return Vec::new();
    };
    let mut chunks = values.chunks_exact(t * d);
    reqs.into_iter()
        .filter_map(|(r, scale)| {
            let mut values: Vec<f32> = chunks
                .by_ref()
                .take(r.rows.len())
                .flatten()
                .copied()
                .collect();
            if scale != 1.0 {
                for v in &mut values {
                    *v *= scale;
                }
            }
            values.iter().all(|v| v.is_finite()).then_some((
                r.caller,
                PeerOutput {
                    peer: p.uid,
                    rows: r.rows,
                    values,
                },
            ))
        })
        .collect()
}

/// Whether peers answer through the competitive mask, as their axons do, or unscaled (the
/// yardstick that the mask must not shape: see [`removal_costs`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Masks {
    AsServed,
    Open,
}

/// Answers every request: peers in parallel, each serving its callers in uid order. The
/// answers come back per caller, in peer order.
fn exchange(
    members: &[Member],
    mut reqs: Vec<Request>,
    t: usize,
    masks: Masks,
) -> Vec<Vec<PeerOutput>> {
    reqs.sort_by_key(|r| (r.peer, r.caller));
    let mut by_peer: Vec<Vec<Request>> = (0..members.len()).map(|_| Vec::new()).collect();
    for r in reqs {
        if r.peer < members.len() {
            by_peer[r.peer].push(r);
        }
    }
    let answers: Vec<Vec<(usize, PeerOutput)>> = by_peer
        .into_par_iter()
        .enumerate()
        .map(|(p, reqs)| serve(&members[p], members, reqs, t, masks))
        .collect();
    let mut out: Vec<Vec<PeerOutput>> = (0..members.len()).map(|_| Vec::new()).collect();
    for (caller, o) in answers.into_iter().flatten() {
        out[caller].push(o);
    }
    out
}

/// One global step of every neuron and its twin (the ledger advances after it).
fn global_step(members: &mut [Member], ledger: &Ledger) -> Result<()> {
    let n = members.len();
    let now = ledger.now();
    // 1. Sample and route.
    let routed: Vec<(Batch, Option<Routed>)> = members
        .par_iter_mut()
        .map(|m| {
            let batch = m.data.train_batch(m.batch, m.seq, &mut m.rng);
            // A mirror neither queries nor trains: its identity's first neuron does.
            let r = match m.mirror_of {
                Some(_) => None,
                None => route(m, n, &batch, now, true)?,
            };
            Ok((batch, r))
        })
        .collect::<Result<_>>()?;
    // 2. Peers answer, from their parameters at the start of the step.
    let reqs: Vec<Request> = routed
        .iter()
        .enumerate()
        .flat_map(|(k, (b, r))| r.as_ref().map(|r| requests(k, b, r)).unwrap_or_default())
        .collect();
    let t = members.first().map_or(0, |m| m.seq);
    let answers = exchange(members, reqs, t, Masks::AsServed);
    // 3. Train (and the twins alone).
    let backward: Vec<Vec<(usize, Request, Vec<f32>)>> = members
        .par_iter_mut()
        .zip(routed)
        .zip(answers)
        .map(|((m, (batch, routed)), outs)| {
            let (routing, queries) = match routed {
                Some(r) => (Some(r.routing), r.queries),
                None => (None, Vec::new()),
            };
            let known = known(n, m.uid, m.core.config().max_peers);
            if m.mirror_of.is_some() {
                m.run.loss.push(f32::NAN);
                m.core.record_step(StepOutcome::default(), &known);
                return Ok(Vec::new());
            }
            m.core.note_answers(now, &queries, &outs);
            let mode = m.core.mode(queries.len(), outs.len());
            let outs = if mode == Mode::Network {
                outs
            } else {
                Vec::new()
            };
            let routing = routing.filter(|_| mode == Mode::Network);
            let learner = m.learner.clone();
            let outcome = match &mut m.alone {
                Twin::Train {
                    learner: alone,
                    rng,
                } => {
                    let alone_batch = m.data.train_batch(m.batch, m.seq, rng);
                    let (outcome, alone_outcome) = rayon::join(
                        || learner.train_step(&batch, mode, routing.as_ref(), &outs),
                        || alone.train_step(&alone_batch, Mode::Alone, None, &[]),
                    );
                    io(alone_outcome)?;
                    outcome
                }
                Twin::Known(_) => learner.train_step(&batch, mode, routing.as_ref(), &outs),
            };
            let outcome = io(outcome)?;
            m.run.loss.push(outcome.loss);
            let t = batch.t;
            let effects = m.core.record_step(outcome, &known);
            Ok(effects
                .into_iter()
                .filter_map(|e| match e {
                    Effect::Backward { peer, rows, grad } => {
                        let ids = rows
                            .iter()
                            .flat_map(|&r| batch.ids[r * t..(r + 1) * t].iter().copied())
                            .collect();
                        Some((
                            peer,
                            Request {
                                caller: m.uid,
                                peer,
                                rows,
                                ids,
                            },
                            grad,
                        ))
                    }
                    _ => None,
                })
                .collect())
        })
        .collect::<Result<_>>()?;
    // A mirror shows its identity's training loss.
    for k in 0..n {
        if let Some(p) = members[k].mirror_of {
            let loss = members[p].run.loss.last().copied();
            if let (Some(l), Some(x)) = (loss, members[k].run.loss.last_mut()) {
                *x = l;
            }
        }
    }
    // 4. Backward updates, each learner taking its callers' gradients in uid order (a
    // mirror's go to the learner it shares, in caller then identity order).
    let owner = |peer: usize| members[peer].mirror_of.unwrap_or(peer);
    let mut by_owner: Vec<Vec<(Request, Vec<f32>)>> = (0..n).map(|_| Vec::new()).collect();
    for (peer, r, g) in backward.into_iter().flatten() {
        if peer < n {
            by_owner[owner(peer)].push((r, g));
        }
    }
    let publics: Vec<PublicKey> = members.iter().map(|m| m.public).collect();
    by_owner.into_par_iter().for_each(|mut reqs| {
        reqs.sort_by_key(|(r, _)| (r.caller, r.peer));
        for (r, grad) in reqs {
            apply_backward(&members[r.peer], &publics[r.caller], &r, grad);
        }
    });
    Ok(())
}

/// Peer `p` takes a caller's gradient as its axon would: scaled by the mask the caller saw,
/// then through its synapse's Backward (a noise peer ignores it). A gradient the synapse
/// refuses is dropped, as a failed Backward is.
fn apply_backward(p: &Member, caller: &PublicKey, r: &Request, grad: Vec<f32>) {
    let t = p.seq;
    let d = p.learner.model_config().d;
    let scale = p.view.response_scale(caller);
    let grad: Vec<f32> = if scale == 1.0 {
        grad
    } else {
        grad.into_iter().map(|g| g * scale).collect()
    };
    let (Some(x), Ok(g)) = (
        ids_tensor(&r.ids, r.rows.len(), t),
        Tensor::from_f32(vec![r.rows.len(), t, d], &grad),
    ) else {
        return;
    };
    if let Err(e) = p.synapse.backward(&[x], &[g]) {
        tracing::debug!(peer = p.uid, caller = r.caller, error = %e, "backward refused");
    }
}

/// Ends an epoch for every neuron: reads the metagraph, submits the weight rows its core
/// chose (to the next block, in uid order), and (with `held_out`) evaluates in the network
/// and alone.
fn end_epoch(members: &mut [Member], ledger: &mut Ledger, held_out: bool) -> Result<()> {
    let snap = Snapshot::from_state(&ledger.state);
    let mut evaluate_network_too = false;
    for m in members.iter_mut() {
        m.view.update(snap.clone());
        m.snapshot = Some(snap.clone());
        let plan = m.core.end_epoch(Some(&snap), Some(m.uid), true);
        if let Some(e) = &plan.weights_error {
            tracing::warn!(neuron = m.uid, error = %e, "no weight row");
        }
        tracing::debug!(neuron = m.uid, worth = ?plan.worth, se = ?plan.worth_se, resting = ?plan.resting, "epoch");
        for effect in plan.effects {
            match effect {
                Effect::SetWeights { row } => {
                    let raw = io(to_raw(&row))?;
                    let tx = Transaction::sign(
                        &m.hotkey,
                        &ledger.state.genesis,
                        ledger.nonce(&m.public),
                        Call::SetWeights { row: raw },
                    );
                    ledger.pending.push(tx);
                }
                // The report keeps the network's and the twin's held-out loss; the
                // student's is not measured here.
                Effect::Evaluate {
                    mode: Mode::Student,
                } => {}
                Effect::Evaluate { .. } => evaluate_network_too = true,
                Effect::Checkpoint | Effect::Query { .. } | Effect::Backward { .. } => {}
            }
        }
    }
    if !held_out {
        return Ok(());
    }
    let step = members.first().map_or(0, |m| m.core.step());
    record_held_out(members, ledger, step, evaluate_network_too)
}

/// Records every neuron's held-out loss at `step`: in the network (NaN when `network` is
/// false) and its twin's alone.
fn record_held_out(
    members: &mut [Member],
    ledger: &Ledger,
    step: usize,
    network: bool,
) -> Result<()> {
    let net = if network {
        evaluate_network(members, ledger)?
    } else {
        vec![f32::NAN; members.len()]
    };
    let mut alone: Vec<f32> = members
        .par_iter()
        .map(|m| match (&m.alone, m.mirror_of) {
            (_, Some(_)) => Ok(f32::NAN),
            (Twin::Train { learner, .. }, None) => {
                io(evaluate_local(learner, &m.held_out, Mode::Alone))
            }
            // A run cut short can ask for a step the earlier run did not reach.
            (Twin::Known(losses), None) => Ok(losses
                .iter()
                .find(|(s, _)| *s == step)
                .map_or(f32::NAN, |l| l.1)),
        })
        .collect::<Result<_>>()?;
    // A mirror's losses are its identity's.
    let mut net = net;
    for (k, m) in members.iter().enumerate() {
        if let Some(p) = m.mirror_of {
            net[k] = net[p];
            alone[k] = alone[p];
        }
    }
    for ((m, n), a) in members.iter_mut().zip(net).zip(alone) {
        m.run.held_out.push((step, n));
        m.run.held_out_alone.push((step, a));
    }
    Ok(())
}

/// Mean held-out loss of `learner` without peers.
fn evaluate_local(learner: &Learner, batches: &[Batch], mode: Mode) -> bt_neuron::Result<f32> {
    let mut total = 0.0;
    for b in batches {
        total += learner.evaluate(b, mode, None, &[])?;
    }
    Ok(total / batches.len().max(1) as f32)
}

/// Routes and queries every neuron's `h`-th held-out batch (no routing noise): per member,
/// the batch, the routing and the answers (`None` for a member with no batch `h` or no
/// available peer).
#[allow(clippy::type_complexity)]
fn held_out_round(
    members: &mut [Member],
    ledger: &Ledger,
    h: usize,
    masks: Masks,
) -> Result<Vec<Option<(Batch, Option<(Routing, Vec<PeerOutput>)>)>>> {
    let n = members.len();
    let now = ledger.now();
    let routed: Vec<Option<(Batch, Option<Routed>)>> = members
        .par_iter_mut()
        .map(|m| {
            let Some(batch) = m.held_out.get(h).cloned().filter(|_| m.mirror_of.is_none()) else {
                return Ok(None);
            };
            let r = route(m, n, &batch, now, false)?;
            Ok(Some((batch, r)))
        })
        .collect::<Result<_>>()?;
    let reqs: Vec<Request> = routed
        .iter()
        .enumerate()
        .flat_map(|(k, x)| match x {
            Some((b, Some(r))) => requests(k, b, r),
            _ => Vec::new(),
        })
        .collect();
    let t = members.first().map_or(0, |m| m.seq);
    let answers = exchange(members, reqs, t, masks);
    Ok(members
        .iter_mut()
        .zip(routed)
        .zip(answers)
        .map(|((m, x), outs)| {
            x.map(|(batch, r)| {
                let r = r.map(|r| {
                    m.core.note_answers(now, &r.queries, &outs);
                    (r.routing, outs)
                });
                (batch, r)
            })
        })
        .collect())
}

/// Mean held-out loss of every neuron in the network (the student where no peer is
/// available).
fn evaluate_network(members: &mut [Member], ledger: &Ledger) -> Result<Vec<f32>> {
    let rounds = members.iter().map(|m| m.held_out.len()).max().unwrap_or(0);
    let mut total = vec![0.0f32; members.len()];
    for h in 0..rounds {
        let round = held_out_round(members, ledger, h, Masks::AsServed)?;
        let losses: Vec<Option<f32>> = members
            .par_iter()
            .zip(round)
            .map(|(m, x)| {
                let Some((batch, r)) = x else { return Ok(None) };
                let loss = match r {
                    Some((routing, outs)) => {
                        m.learner
                            .evaluate(&batch, Mode::Network, Some(&routing), &outs)
                    }
                    None => m.learner.evaluate(&batch, Mode::Student, None, &[]),
                };
                io(loss).map(Some)
            })
            .collect::<Result<_>>()?;
        for (t, l) in total.iter_mut().zip(losses) {
            *t += l.unwrap_or(0.0);
        }
    }
    Ok(members
        .iter()
        .zip(total)
        .map(|(m, t)| t / m.held_out.len().max(1) as f32)
        .collect())
}

/// What removing each peer costs every neuron on its held-out data (by consumer, then by
/// uid), as [`bt_neuron::Neuron::removal_costs`] measures it: with the peers' answers scaled
/// by their masks as served, or with the masks open (every answer unscaled, the routers run
/// again on it). The mask serves a peer only to whoever weighs it and routers learn to use
/// whoever is served, so the masked figure rises for whoever got weight; the open one is the
/// yardstick that the mechanism does not shape.
fn removal_costs(
    members: &mut [Member],
    ledger: &Ledger,
    masks: Masks,
) -> Result<Vec<Vec<RemovalCost>>> {
    let max = members.first().map_or(0, |m| m.core.config().max_peers);
    let rounds = members.iter().map(|m| m.held_out.len()).max().unwrap_or(0);
    let mut per_batch: Vec<Vec<Vec<RemovalProbe>>> = vec![Vec::new(); members.len()];
    for h in 0..rounds {
        let round = held_out_round(members, ledger, h, masks)?;
        let probes: Vec<Vec<RemovalProbe>> = members
            .par_iter()
            .zip(round)
            .map(|(m, x)| match x {
                Some((batch, Some((routing, outs)))) => {
                    io(m.learner.removal(&batch, &routing, &outs))
                }
                _ => Ok(Vec::new()),
            })
            .collect::<Result<_>>()?;
        for ((all, ps), m) in per_batch.iter_mut().zip(probes).zip(members.iter()) {
            if h < m.held_out.len() {
                all.push(ps);
            }
        }
    }
    let costs = per_batch
        .iter()
        .map(|p| RemovalCost::average(max, p))
        .collect();
    Ok(costs)
}

/// Records the ledger now: the live state (dashboard), the progress line and the history of
/// stake and rank.
fn observe(
    ledger: &Ledger,
    live: &Live,
    progress: &Progress,
    start: Instant,
    points: &mut Vec<LedgerPoint>,
) {
    let snap = Snapshot::from_state(&ledger.state);
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
    if points
        .last()
        .is_none_or(|p: &LedgerPoint| p.height != snap.height)
    {
        points.push(LedgerPoint {
            height: snap.height,
            stake_tao: snap.neurons.iter().map(|n| n.stake_tao()).collect(),
            rank: snap.neurons.iter().map(|n| n.rank).collect(),
        });
    }
}
