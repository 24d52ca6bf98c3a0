//! A running neuron: its learner, its axon, a dendrite to its peers, and (optionally) its
//! place on the ledger.
//!
//! Each step routes a batch, queries the chosen peers in parallel, trains on their answers
//! (the student stands in for the ones that fail, and for the whole batch when fewer than
//! `k_min` answer), and sends each peer the gradient of its loss through Backward without
//! waiting. Each epoch it refreshes the metagraph, sets weights, evaluates and checkpoints.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bt_chain::{Client, Failover};
use bt_keys::Keypair;
use bt_ledger::{Call, RAO_PER_TAO};
use bt_wire::{Axon, AxonConfig, AxonHandle, Dendrite, DendriteConfig, Peer, StakeView, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::task::JoinSet;

use crate::config::{DeviceSpec, NeuronConfig};
use crate::core::{Core, CoreConfig, CoreState, Effect, Millis, mean_and_variance};
use crate::data::{Batch, TextData};
use crate::error::{Error, Result};
use crate::learner::{Learner, Mode, PeerOutput, RemovalProbe, StepOutcome};
use crate::ledger::{LedgerView, Snapshot};
use crate::router::Routing;
use crate::serve::{Behaviour, LearnerSynapse};
use crate::weights::to_raw;

/// One training step, as reported.
#[derive(Clone, Debug)]
pub struct StepReport {
    /// Step number (from 1).
    pub step: usize,
    /// Training loss of the batch.
    pub loss: f32,
    /// What the head read besides the trunk.
    pub mode: Mode,
    /// Distinct peers that answered.
    pub answered: usize,
    /// Peers queried.
    pub queried: usize,
    /// Wall time of the peer queries.
    pub network_time: Duration,
    /// Wall time of the whole step.
    pub step_time: Duration,
}

/// One epoch, as reported.
#[derive(Clone, Debug, Default)]
pub struct EpochReport {
    /// Steps done so far.
    pub step: usize,
    /// Mean held-out loss with the network (or the student when no peer answers).
    pub held_out: f32,
    /// Mean held-out loss with the student alone.
    pub held_out_student: f32,
    /// The weight row submitted (by uid), if any.
    pub weights: Option<Vec<f64>>,
    /// Why weights were not set, if they were not.
    pub weights_error: Option<String>,
    /// Mean gate importance of each uid over the epoch.
    pub importance: Vec<f64>,
    /// Measured `dL/dm_ij` of each uid over the epoch (`None` where never queried).
    pub dl_dm: Vec<Option<f64>>,
    /// Mean worth of each uid's answers over the epoch, the batch loss without them minus
    /// with them (`None` where never answered).
    pub worth: Vec<Option<f64>>,
    /// The uids resting from routing next epoch as unhelpful (`router.rest_unhelpful`).
    pub resting: Vec<usize>,
    /// Ledger height seen.
    pub height: Option<u64>,
}

/// What removing one peer costs a neuron on its held-out data; see
/// [`Neuron::removal_costs`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RemovalCost {
    /// Held-out loss with the peer's answers zeroed, minus the loss with them.
    pub exact: f64,
    /// The first-order Taylor term of the same change.
    pub first: f64,
    /// The second-order (Fisher) Taylor term: the paper's approximation.
    pub second: f64,
    /// The squared standard error of `exact`, from its spread over the held-out batches
    /// (infinite with fewer than two batches: the spread is unknown). Summed over consumers, it
    /// stays the squared standard error of the sum.
    pub exact_var: f64,
    /// Held-out batches in which the peer answered.
    pub batches: usize,
}

impl RemovalCost {
    /// Each peer's cost over a neuron's held-out batches: `per_batch[h]` holds the probes of
    /// batch `h`, and a batch in which a peer did not answer counts 0 for it, so that every
    /// peer's cost is a mean over the same batches. `peers` is the number of peer slots.
    ///
    /// ```
    /// use bt_neuron::RemovalCost;
    /// use bt_neuron::learner::RemovalProbe;
    ///
    /// let probe = |exact| RemovalProbe { peer: 0, exact, ..RemovalProbe::default() };
    /// let costs = RemovalCost::average(1, &[vec![probe(0.1)], vec![probe(0.3)]]);
    /// assert!((costs[0].exact - 0.2).abs() < 1e-12);
    /// assert!((costs[0].se() - 0.1).abs() < 1e-12);
    /// assert_eq!(costs[0].batches, 2);
    /// ```
    pub fn average(peers: usize, per_batch: &[Vec<RemovalProbe>]) -> Vec<RemovalCost> {
        let mut costs = vec![RemovalCost::default(); peers];
        let mut squares = vec![0.0; peers];
        for probes in per_batch {
            for p in probes {
                let Some(c) = costs.get_mut(p.peer) else {
                    continue;
                };
                c.exact += p.exact;
                c.first += p.first;
                c.second += p.second;
                c.batches += 1;
                squares[p.peer] += p.exact * p.exact;
            }
        }
        let n = per_batch.len();
        let k = n.max(1) as f64;
        for (c, sq) in costs.iter_mut().zip(squares) {
            (c.exact, c.exact_var) = mean_and_variance(c.exact, sq, n);
            c.first /= k;
            c.second /= k;
        }
        costs
    }

    /// The standard error of [`Self::exact`].
    pub fn se(&self) -> f64 {
        self.exact_var.sqrt()
    }
}

/// Where a neuron started from, when it found its checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resumed {
    /// The checkpoint file.
    pub path: PathBuf,
    /// The step it resumes from: the steps taken before the checkpoint was written.
    pub step: usize,
    /// Whether the checkpoint recorded its step (one written before steps were recorded
    /// holds only the parameters, and the count starts at 0).
    pub step_recorded: bool,
}

/// A neuron.
pub struct Neuron {
    cfg: NeuronConfig,
    learner: Arc<Learner>,
    data: TextData,
    held_out: Vec<Batch>,
    hotkey: Keypair,
    coldkey: Option<Keypair>,
    dendrite: Dendrite,
    view: Arc<LedgerView>,
    axon: Option<AxonHandle>,
    peers: Vec<Option<Peer>>,
    /// The decisions: routing availability, modes, epoch statistics, weights.
    core: Core,
    /// The origin of the core's clock.
    clock: Instant,
    chain: Option<LedgerLink>,
    snapshot: Option<Snapshot>,
    my_uid: Option<usize>,
    backward: JoinSet<()>,
    /// Draws the training batches (the same stream as a twin alone with this seed).
    rng: ChaCha8Rng,
    /// Draws the router's training noise, apart from the batches.
    route_rng: ChaCha8Rng,
    resumed: Option<Resumed>,
}

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

impl Neuron {
    /// Builds the learner (resuming from the checkpoint when there is one: its parameters, and
    /// the core's step count and value averages), starts the axon, and, with a ledger,
    /// registers (and stakes) if needed and reads the metagraph. A checkpoint that cannot be
    /// used is refused ([`Error::CheckpointDamaged`], [`Error::CheckpointMismatch`]), never
    /// replaced by a fresh start.
    pub async fn start(
        cfg: NeuronConfig,
        hotkey: Keypair,
        coldkey: Option<Keypair>,
    ) -> Result<Neuron> {
        cfg.validate()?;
        let device = DeviceSpec::parse(&cfg.train.device)?.open()?;
        let (data, held_out) = cfg.load_data()?;
        let router = cfg.router.clone().for_data(data.train_len());
        let optim = cfg.optim.clone().for_data(data.train_len());
        let learner = Arc::new(Learner::new(
            &cfg.model,
            &router,
            &optim,
            &device,
            cfg.train.seed,
        )?);
        let mut resumed = None;
        let mut state = CoreState::default();
        if let Some(path) = checkpoint_path(&cfg)
            && path.exists()
        {
            let meta = learner.load(&path)?;
            let step_recorded = meta.contains_key(CoreState::KEY);
            if let Some(text) = meta.get(CoreState::KEY) {
                state = CoreState::decode(text).map_err(|reason| Error::CheckpointDamaged {
                    path: path.display().to_string(),
                    reason: format!("its training state does not read: {reason}"),
                })?;
            }
            tracing::info!(
                path = %path.display(),
                step = state.step,
                step_recorded,
                "resumed from checkpoint"
            );
            resumed = Some(Resumed {
                path,
                step: state.step,
                step_recorded,
            });
        }
        let view = Arc::new(LedgerView::new(
            hotkey.public(),
            cfg.weights.temperature,
            cfg.network.mask,
        ));
        let behaviour = cfg.behaviour.unwrap_or(Behaviour::Honest);
        // A free rider serves its initial model, never the one it trains.
        let served = if behaviour == Behaviour::Frozen {
            Arc::new(Learner::new(
                &cfg.model,
                &router,
                &optim,
                &device,
                cfg.train.seed,
            )?)
        } else {
            learner.clone()
        };
        let synapse = Arc::new(LearnerSynapse::new(
            served,
            behaviour,
            cfg.train.seed ^ 0x5eed,
        ));
        let axon = Axon::new(
            hotkey.public(),
            synapse,
            view.clone() as Arc<dyn StakeView>,
            AxonConfig::default(),
        )?;
        let listen: SocketAddr = cfg
            .network
            .listen
            .parse()
            .map_err(|e| Error::Config(format!("network.listen: {e}")))?;
        let axon = axon.spawn(listen).await?;
        let dendrite = Dendrite::new(
            hotkey.clone(),
            DendriteConfig {
                timeout: Duration::from_millis(cfg.network.timeout_ms),
                connect_timeout: Duration::from_millis(cfg.network.timeout_ms.min(3000)),
                backoff_base: Duration::from_millis(200),
                backoff_max: Duration::from_secs(5),
                ..DendriteConfig::default()
            },
        )?;
        let peers = cfg.router.max_peers;
        let rng = ChaCha8Rng::seed_from_u64(batch_seed(cfg.train.seed, state.step));
        let route_rng = ChaCha8Rng::seed_from_u64(route_seed(cfg.train.seed, state.step));
        let core = Core::resume(core_config(&cfg), state);
        let mut n = Neuron {
            rng,
            route_rng,
            cfg,
            learner,
            data,
            held_out,
            hotkey,
            coldkey,
            dendrite,
            view,
            axon: Some(axon),
            peers: vec![None; peers],
            core,
            clock: Instant::now(),
            chain: None,
            snapshot: None,
            my_uid: None,
            backward: JoinSet::new(),
            resumed,
        };
        let urls = n.cfg.network.ledger_urls()?;
        if !urls.is_empty() {
            let mut link = LedgerLink(Failover::new(urls));
            link.client().await?;
            n.chain = Some(link);
            n.register().await?;
        }
        Ok(n)
    }

    /// The learner.
    pub fn learner(&self) -> &Arc<Learner> {
        &self.learner
    }

    /// The configuration.
    pub fn config(&self) -> &NeuronConfig {
        &self.cfg
    }

    /// The axon's address.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.axon.as_ref().map(|a| a.addr)
    }

    /// This neuron as a peer (hotkey and endpoint).
    pub fn as_peer(&self) -> Option<Peer> {
        self.axon.as_ref().map(|a| Peer {
            hotkey: self.hotkey.public(),
            endpoint: a.endpoint(),
        })
    }

    /// The uid on the ledger, once registered.
    pub fn uid(&self) -> Option<usize> {
        self.my_uid
    }

    /// The last metagraph snapshot.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    /// Steps done, counting those before the checkpoint it resumed from.
    pub fn steps_done(&self) -> usize {
        self.core.step()
    }

    /// The checkpoint it resumed from, if it found one at start.
    pub fn resumed(&self) -> Option<&Resumed> {
        self.resumed.as_ref()
    }

    /// Uses these peers (by uid) instead of the ledger's (no masks: every multiplier is 1).
    pub fn set_peers(&mut self, peers: Vec<(usize, Peer)>) -> Result<()> {
        let mut table = vec![None; self.cfg.router.max_peers];
        for (uid, p) in peers {
            if uid >= table.len() {
                return Err(Error::Config(format!(
                    "peer uid {uid} is beyond router.max_peers ({})",
                    table.len()
                )));
            }
            table[uid] = Some(p);
        }
        self.peers = table;
        Ok(())
    }

    async fn register(&mut self) -> Result<()> {
        self.refresh().await?;
        let addr = match &self.cfg.network.advertise {
            Some(a) => a
                .parse()
                .map_err(|e| Error::Config(format!("network.advertise {a:?}: {e}")))?,
            None => self
                .addr()
                .ok_or_else(|| Error::Config("axon not running".into()))?,
        };
        let link = self
            .chain
            .as_mut()
            .ok_or_else(|| Error::Ledger("no ledger".into()))?;
        let wait = Duration::from_secs(30);
        if self.my_uid.is_none() {
            let coldkey = self
                .coldkey
                .as_ref()
                .map(|k| k.public())
                .unwrap_or_else(|| self.hotkey.public());
            let registered = submit(
                link.client().await?,
                &self.hotkey,
                Call::Register {
                    coldkey,
                    endpoint: addr,
                },
                wait,
            )
            .await;
            link.check(registered)?;
            tracing::info!(hotkey = %self.hotkey.public(), %addr, "registered");
            let stake = (self.cfg.network.stake_tao * RAO_PER_TAO as f64).round() as u64;
            if stake > 0 {
                let coldkey = self.coldkey.as_ref().ok_or_else(|| {
                    Error::Config("network.stake_tao needs a coldkey to stake from".into())
                })?;
                let call = Call::AddStake {
                    hotkey: self.hotkey.public(),
                    amount: stake,
                };
                let staked = submit(link.client().await?, coldkey, call, wait).await;
                link.check(staked)?;
            }
        } else if let Some(s) = &self.snapshot
            && let Some(uid) = self.my_uid
            && s.neurons[uid].endpoint != addr.to_string()
        {
            let updated = submit(
                link.client().await?,
                &self.hotkey,
                Call::UpdateEndpoint { endpoint: addr },
                wait,
            )
            .await;
            link.check(updated)?;
        }
        self.refresh().await
    }

    /// Reads the metagraph: peers and the axon's view (stake, masks).
    pub async fn refresh(&mut self) -> Result<()> {
        let Some(link) = self.chain.as_mut() else {
            return Ok(());
        };
        let mg = link
            .read(async |c: &mut Client| Ok(c.metagraph(None, true).await?))
            .await?;
        let snap = Snapshot::from_metagraph(&mg);
        self.my_uid = snap.uid_of(&self.hotkey.public());
        let max = self.cfg.router.max_peers;
        let mut peers = vec![None; max];
        for nm in &snap.neurons {
            if nm.uid >= max || Some(nm.uid) == self.my_uid {
                continue;
            }
            peers[nm.uid] = Some(Peer {
                hotkey: nm.hotkey,
                endpoint: format!("http://{}", nm.endpoint),
            });
        }
        self.peers = peers;
        self.view.update(snap.clone());
        self.snapshot = Some(snap);
        Ok(())
    }

    /// Runs the core's `Query` effects over the dendrite, in parallel; the answers come back
    /// in uid order.
    async fn query(&self, batch: &Batch, queries: &[Effect]) -> Vec<PeerOutput> {
        let mut set = JoinSet::new();
        let t = batch.t;
        for q in queries {
            let Effect::Query { peer: p, rows } = q else {
                continue;
            };
            let p = *p;
            let Some(peer) = self.peers[p].clone() else {
                continue;
            };
            let Ok(x) = rows_tensor(batch, rows) else {
                continue;
            };
            let dendrite = self.dendrite.clone();
            let rows = rows.clone();
            let d = self.cfg.model.d;
            set.spawn(async move {
                let reply = dendrite.forward(&peer, &[x]).await;
                if !reply.is_success() {
                    tracing::debug!(peer = p, code = ?reply.code, msg = %reply.message, "peer failed");
                    return None;
                }
                let out = reply.outputs.first()?;
                if out.shape() != [rows.len(), t, d] {
                    tracing::debug!(peer = p, shape = ?out.shape(), "peer answered a wrong shape");
                    return None;
                }
                let values = out.to_f32().ok()?;
                if values.iter().any(|v| !v.is_finite()) {
                    return None;
                }
                Some(PeerOutput { peer: p, rows, values })
            });
        }
        let mut outs = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok(Some(o)) = r {
                outs.push(o);
            }
        }
        outs.sort_by_key(|o| o.peer);
        outs
    }

    /// Peers with an endpoint, by uid.
    fn known(&self) -> Vec<bool> {
        self.peers.iter().map(Option::is_some).collect()
    }

    /// Milliseconds on the core's clock (wall time since start).
    fn now(&self) -> Millis {
        self.clock.elapsed().as_millis().min(u128::from(u64::MAX)) as u64
    }

    /// Peers the router may choose: known, and not resting after failures.
    fn available(&self) -> Vec<bool> {
        self.core.available(&self.known(), self.now())
    }

    /// Routes `batch` over the available peers (with noise when `train`) and queries them.
    /// When a chosen peer fails, it is left out and the batch is routed and queried once more,
    /// so that its examples go to the next best live peers rather than to the student. `None`
    /// when no peer is available.
    async fn route_and_query(
        &mut self,
        batch: &Batch,
        train: bool,
    ) -> Result<Option<(Routing, usize, Vec<PeerOutput>)>> {
        let (b, t) = (batch.b, batch.t);
        let mut last = None;
        for _attempt in 0..2 {
            let available = self.available();
            if !available.iter().any(|a| *a) {
                break;
            }
            let learner = self.learner.clone();
            let rng: Option<&mut dyn rand::RngCore> = if train {
                Some(&mut self.route_rng)
            } else {
                None
            };
            let routing = blocking(|| learner.route(&batch.ids, b, t, &available, rng))?;
            let queries = self.core.queries(&routing.rows_per_peer(), &self.known());
            let outs = self.query(batch, &queries).await;
            let now = self.now();
            let all = self.core.note_answers(now, &queries, &outs);
            last = Some((routing, queries.len(), outs));
            if all {
                break;
            }
        }
        Ok(last)
    }

    /// One training step.
    pub async fn train_step(&mut self) -> Result<StepReport> {
        let start = Instant::now();
        while self.backward.try_join_next().is_some() {}
        let (b, t) = (self.cfg.train.batch, self.cfg.model.seq);
        let batch = self.data.train_batch(b, t, &mut self.rng);
        let q = Instant::now();
        let routed = self.route_and_query(&batch, true).await?;
        let network_time = if routed.is_some() {
            q.elapsed()
        } else {
            Duration::ZERO
        };
        let (routing, queried, outs) = match routed {
            Some((r, q, o)) => (Some(r), q, o),
            None => (None, 0, Vec::new()),
        };
        let answered = outs.len();
        let mode = self.core.mode(queried, answered);
        let outs = if mode == Mode::Network {
            outs
        } else {
            Vec::new()
        };
        let learner = self.learner.clone();
        let routing = routing.filter(|_| mode == Mode::Network);
        let outcome: StepOutcome =
            blocking(|| learner.train_step(&batch, mode, routing.as_ref(), &outs))?;
        let loss = outcome.loss;
        for effect in self.core.record_step(outcome, &self.known()) {
            let Effect::Backward { peer, rows, grad } = effect else {
                continue;
            };
            let Some(peer) = self.peers[peer].clone() else {
                continue;
            };
            let d = self.cfg.model.d;
            let (Ok(x), Ok(grad)) = (
                rows_tensor(&batch, &rows),
                Tensor::from_f32(vec![rows.len(), t, d], &grad),
            ) else {
                continue;
            };
            let dendrite = self.dendrite.clone();
            self.backward.spawn(async move {
                let r = dendrite.backward(&peer, &[x], &[grad]).await;
                if !r.is_success() {
                    tracing::debug!(code = ?r.code, msg = %r.message, "backward failed");
                }
            });
        }
        Ok(StepReport {
            step: self.core.step(),
            loss,
            mode,
            answered,
            queried,
            network_time,
            step_time: start.elapsed(),
        })
    }

    /// Mean held-out loss in `mode` (network mode queries the peers, without noise).
    pub async fn evaluate(&mut self, mode: Mode) -> Result<f32> {
        let mut total = 0.0;
        let batches = self.held_out.clone();
        for batch in &batches {
            let learner = self.learner.clone();
            let routed = if mode == Mode::Network {
                self.route_and_query(batch, false).await?
            } else {
                None
            };
            let loss = if let Some((routing, _, outs)) = routed {
                blocking(|| learner.evaluate(batch, Mode::Network, Some(&routing), &outs))?
            } else {
                let mode = if mode == Mode::Network {
                    Mode::Student
                } else {
                    mode
                };
                blocking(|| learner.evaluate(batch, mode, None, &[]))?
            };
            total += loss;
        }
        Ok(total / batches.len() as f32)
    }

    /// What removing each peer's answers costs this neuron on its held-out data (paper
    /// eq. 2, measured): every held-out batch is routed and queried as in
    /// [`Neuron::evaluate`], then [`Learner::removal`] zeroes one peer's answer at a time.
    /// Entries are by uid, means over the held-out batches (nats per token); a peer the
    /// router never chose costs nothing.
    pub async fn removal_costs(&mut self) -> Result<Vec<RemovalCost>> {
        let batches = self.held_out.clone();
        let mut per_batch = Vec::with_capacity(batches.len());
        for batch in &batches {
            let probes = match self.route_and_query(batch, false).await? {
                Some((routing, _, outs)) => {
                    let learner = self.learner.clone();
                    blocking(|| learner.removal(batch, &routing, &outs))?
                }
                None => Vec::new(),
            };
            per_batch.push(probes);
        }
        Ok(RemovalCost::average(self.cfg.router.max_peers, &per_batch))
    }

    /// Ends an epoch: refreshes the metagraph, then does what the core decides: sets
    /// weights, evaluates, checkpoints.
    pub async fn end_epoch(&mut self) -> Result<EpochReport> {
        if self.chain.is_some()
            && let Err(e) = self.refresh().await
        {
            tracing::warn!(error = %e, "metagraph refresh failed");
        }
        let has_peers = self.available().iter().any(|a| *a);
        let plan = self
            .core
            .end_epoch(self.snapshot.as_ref(), self.my_uid, has_peers);
        let mut report = EpochReport {
            step: self.core.step(),
            importance: plan.importance,
            dl_dm: plan.dl_dm,
            worth: plan.worth,
            resting: plan.resting,
            weights_error: plan.weights_error.map(|e| {
                tracing::warn!(error = %e, "no weight row");
                e.to_string()
            }),
            height: self.snapshot.as_ref().map(|s| s.height),
            ..EpochReport::default()
        };
        let mut evaluated = Vec::new();
        for effect in plan.effects {
            match effect {
                Effect::SetWeights { row } => match self.set_weights(&row).await {
                    Ok(()) => report.weights = Some(row),
                    Err(e) => {
                        tracing::warn!(error = %e, "setting weights failed");
                        report.weights_error = Some(e.to_string());
                    }
                },
                Effect::Evaluate { mode } => evaluated.push((mode, self.evaluate(mode).await?)),
                Effect::Checkpoint => self.checkpoint()?,
                Effect::Query { .. } | Effect::Backward { .. } => {}
            }
        }
        for (mode, loss) in &evaluated {
            match mode {
                Mode::Student => report.held_out_student = *loss,
                _ => report.held_out = *loss,
            }
        }
        if evaluated.iter().all(|(m, _)| *m != Mode::Student) {
            report.held_out_student = report.held_out;
        }
        Ok(report)
    }

    /// Saves the learner, with the core's state (its step count) in the header, to its
    /// checkpoint (through a temporary name, so a crash never leaves half a checkpoint).
    fn checkpoint(&self) -> Result<()> {
        let Some(path) = checkpoint_path(&self.cfg) else {
            return Ok(());
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::Io {
                path: dir.display().to_string(),
                source: e,
            })?;
        }
        let tmp = path.with_extension("safetensors.tmp");
        let meta = HashMap::from([(CoreState::KEY.to_string(), self.core.state().encode())]);
        self.learner.save(&tmp, meta)?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::Io {
            path: path.display().to_string(),
            source: e,
        })
    }

    /// Signs and submits a weight row chosen by the core.
    async fn set_weights(&mut self, row: &[f64]) -> Result<()> {
        let raw = to_raw(row)?;
        let link = self
            .chain
            .as_mut()
            .ok_or_else(|| Error::Ledger("no ledger".into()))?;
        let set = submit(
            link.client().await?,
            &self.hotkey,
            Call::SetWeights { row: raw },
            Duration::from_secs(10),
        )
        .await;
        link.check(set)?;
        Ok(())
    }

    /// Stops the axon and waits for outstanding Backward calls (up to a second).
    pub async fn shutdown(mut self) -> Result<()> {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while self.backward.join_next().await.is_some() {}
        })
        .await;
        self.backward.abort_all();
        if let Some(a) = self.axon.take() {
            a.shutdown().await?;
        }
        Ok(())
    }
}

/// The ledger a neuron talks to: one node, or a replicated ledger's validators
/// ([`Failover`]). Reads go to the next validator at once when the one in use is lost; a
/// submission that finds it lost fails, and the next call asks another.
struct LedgerLink(Failover);

impl LedgerLink {
    /// The connected client, connecting first if the last one was lost.
    async fn client(&mut self) -> Result<&mut Client> {
        Ok(self.0.client().await?)
    }

    /// A read (safe to ask again): asked of the next validator at once when the one in use
    /// is lost, until each has been asked.
    async fn read<T>(&mut self, mut op: impl AsyncFnMut(&mut Client) -> Result<T>) -> Result<T> {
        let mut asked = 0;
        loop {
            asked += 1;
            let r = op(self.client().await?).await;
            let r = self.check(r);
            if self.0.current().is_none() && asked < self.0.urls().len() {
                continue;
            }
            return r;
        }
    }

    /// Passes `r` on; a ledger error saying the node is lost drops the client, so that the
    /// next call connects to another. (A submission is not asked again by itself: it may
    /// have been taken before the node was lost.)
    fn check<T>(&mut self, r: Result<T>) -> Result<T> {
        if let Err(Error::Chain(e)) = &r
            && self.0.note(e)
        {
            tracing::warn!(error = %e, "ledger node lost; the next call asks another");
        }
        r
    }
}

/// The token ids of some rows of a batch, as the `[rows, t]` tensor a peer receives.
fn rows_tensor(batch: &Batch, rows: &[usize]) -> bt_wire::Result<Tensor> {
    let t = batch.t;
    let ids: Vec<i64> = rows
        .iter()
        .flat_map(|&r| batch.ids[r * t..(r + 1) * t].iter().map(|&v| i64::from(v)))
        .collect();
    Tensor::from_i64(vec![rows.len(), t], &ids)
}

/// Signs, submits and waits for a transaction. Another process signing with the same key
/// (several neurons staking from one coldkey) can take the nonce first: refused at submission
/// ([`bt_ledger::Error::StaleNonce`]) or left out of the block while the account's nonce moved
/// past the one used. Either is retried with a fresh nonce, a few times.
async fn submit(chain: &mut Client, key: &Keypair, call: Call, wait: Duration) -> Result<u64> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let retry = attempt < 6;
        let (id, nonce) = match chain.sign_and_submit(key, call.clone()).await {
            Ok(x) => x,
            Err(e @ bt_chain::Error::Ledger(bt_ledger::Error::StaleNonce { .. })) if retry => {
                tracing::debug!(error = %e, attempt, "nonce taken; retrying");
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        match chain.wait_included(&id, wait).await {
            Ok(Some(h)) => return Ok(h),
            Ok(None) => {
                return Err(Error::Ledger(format!(
                    "transaction {id} still pending after {} s",
                    wait.as_secs()
                )));
            }
            Err(e @ bt_chain::Error::Refused { .. }) => {
                if retry && chain.account(&key.public()).await?.nonce > nonce {
                    tracing::debug!(error = %e, attempt, "nonce taken in the block; retrying");
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                    continue;
                }
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The core's settings from a neuron's configuration.
pub fn core_config(cfg: &NeuronConfig) -> CoreConfig {
    CoreConfig {
        max_peers: cfg.router.max_peers,
        k_min: cfg.router.k_min,
        epoch_steps: cfg.train.epoch_steps,
        weights: cfg.weights.clone(),
        mask: cfg.network.mask,
        ledger: cfg.network.ledger.is_some(),
        checkpoint: cfg.train.checkpoint_dir.is_some(),
        rest_unhelpful: cfg.router.rest_unhelpful,
    }
}

/// The seed of a neuron's batches and routing noise: `seed + 1` from step 0, and another
/// stream for each step it resumes from, so a restarted neuron does not retrain on the batches
/// it began with.
/// The seed of the router's noise from `step` on: apart from the batches', so that a
/// neuron's batches do not depend on how often it routed.
pub fn route_seed(seed: u64, step: usize) -> u64 {
    batch_seed(seed, step) ^ 0x726f_7574_655f_6e7a
}

fn batch_seed(seed: u64, step: usize) -> u64 {
    let start = seed.wrapping_add(1);
    if step == 0 {
        start
    } else {
        start ^ (step as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

/// Where the checkpoint of `cfg` lives, if checkpoints are on.
pub fn checkpoint_path(cfg: &NeuronConfig) -> Option<std::path::PathBuf> {
    cfg.train
        .checkpoint_dir
        .as_ref()
        .map(|d| d.join("neuron.safetensors"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(peer: usize, exact: f64) -> RemovalProbe {
        RemovalProbe {
            peer,
            exact,
            first: 2.0 * exact,
            second: 3.0 * exact,
        }
    }

    #[test]
    fn removal_costs_are_means_over_every_held_out_batch_with_their_standard_error() {
        // Peer 0 answers all three batches, peer 1 only the last one (0 elsewhere), peer 2
        // never; a probe for a slot out of range is ignored.
        let per_batch = vec![
            vec![probe(0, 0.1)],
            vec![probe(0, 0.2), probe(7, 1.0)],
            vec![probe(0, 0.6), probe(1, 0.3)],
        ];
        let c = RemovalCost::average(3, &per_batch);
        assert_eq!(c.len(), 3);
        assert!((c[0].exact - 0.3).abs() < 1e-12);
        assert!((c[0].first - 0.6).abs() < 1e-12);
        assert!((c[0].second - 0.9).abs() < 1e-12);
        assert_eq!(c[0].batches, 3);
        // Sample variance of (0.1, 0.2, 0.6) is 0.07; of the mean, 0.07 / 3.
        assert!(
            (c[0].exact_var - 0.07 / 3.0).abs() < 1e-12,
            "{}",
            c[0].exact_var
        );
        assert!((c[1].exact - 0.1).abs() < 1e-12);
        assert_eq!(c[1].batches, 1);
        // (0, 0, 0.3): variance 0.03, of the mean 0.01.
        assert!((c[1].se() - 0.1).abs() < 1e-12);
        assert_eq!(c[2], RemovalCost::default());
        // One batch: the spread is unknown, not zero.
        let one = RemovalCost::average(1, &[vec![probe(0, 0.5)]]);
        assert_eq!(one[0].exact, 0.5);
        assert!(one[0].se().is_infinite());
        // No batch at all: nothing measured.
        assert_eq!(RemovalCost::average(2, &[])[1].exact, 0.0);
    }
}
