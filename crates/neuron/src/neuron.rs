//! A running neuron: its learner, its axon, a dendrite to its peers, and (optionally) its
//! place on the ledger.
//!
//! Each step routes a batch, queries the chosen peers in parallel, trains on their answers
//! (the student stands in for the ones that fail, and for the whole batch when fewer than
//! `k_min` answer), and sends each peer the gradient of its loss through Backward without
//! waiting. Each epoch it refreshes the metagraph, sets weights, evaluates and checkpoints.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bt_chain::Client;
use bt_keys::Keypair;
use bt_ledger::{Call, RAO_PER_TAO};
use bt_wire::{Axon, AxonConfig, AxonHandle, Dendrite, DendriteConfig, Peer, StakeView, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::task::JoinSet;

use crate::config::{DeviceSpec, NeuronConfig};
use crate::data::{Batch, TextData};
use crate::error::{Error, Result};
use crate::learner::{Learner, Mode, PeerOutput, StepOutcome};
use crate::ledger::{LedgerView, Snapshot};
use crate::router::Routing;
use crate::serve::{Behaviour, LearnerSynapse};
use crate::weights::{PayoffInput, WeightRule, ema_step, payoff_step, self_step, to_raw};

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
    /// Held-out batches in which the peer answered.
    pub batches: usize,
}

#[derive(Default)]
struct EpochStats {
    dot: Vec<f64>,
    count: Vec<u64>,
    importance: Vec<f64>,
    steps: u64,
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
    /// Per uid: consecutive failed queries and until when the router leaves the peer out.
    health: Vec<(u32, Option<Instant>)>,
    chain: Option<Client>,
    snapshot: Option<Snapshot>,
    my_uid: Option<usize>,
    stats: EpochStats,
    backward: JoinSet<()>,
    rng: ChaCha8Rng,
    step: usize,
}

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

impl Neuron {
    /// Builds the learner (resuming from the checkpoint when there is one), starts the axon,
    /// and, with a ledger, registers (and stakes) if needed and reads the metagraph.
    pub async fn start(
        cfg: NeuronConfig,
        hotkey: Keypair,
        coldkey: Option<Keypair>,
    ) -> Result<Neuron> {
        cfg.validate()?;
        let device = DeviceSpec::parse(&cfg.train.device)?.open()?;
        let learner = Arc::new(Learner::new(
            &cfg.model,
            &cfg.router,
            &cfg.optim,
            &device,
            cfg.train.seed,
        )?);
        if let Some(path) = checkpoint_path(&cfg)
            && path.exists()
        {
            learner.load(&path)?;
            tracing::info!(path = %path.display(), "resumed from checkpoint");
        }
        let data = TextData::load_with(
            &cfg.data.source,
            cfg.data.limit,
            cfg.data.held_out,
            cfg.model.seq,
            cfg.data.tokenizer,
        )?;
        let held_out =
            data.held_out_batches(cfg.train.batch, cfg.model.seq, cfg.train.eval_batches);
        if held_out.is_empty() {
            return Err(Error::Data(format!(
                "{}: held-out part is too short for one batch of {} x {}",
                cfg.data.source, cfg.train.batch, cfg.model.seq
            )));
        }
        let view = Arc::new(LedgerView::new(
            hotkey.public(),
            cfg.weights.temperature,
            cfg.network.mask,
        ));
        let behaviour = cfg.behaviour.unwrap_or(Behaviour::Honest);
        let synapse = Arc::new(LearnerSynapse::new(
            learner.clone(),
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
        let mut n = Neuron {
            rng: ChaCha8Rng::seed_from_u64(cfg.train.seed.wrapping_add(1)),
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
            health: vec![(0, None); peers],
            chain: None,
            snapshot: None,
            my_uid: None,
            stats: EpochStats::default(),
            backward: JoinSet::new(),
            step: 0,
        };
        n.reset_stats();
        if let Some(url) = n.cfg.network.ledger.clone() {
            let client = Client::connect(&url).await?;
            n.chain = Some(client);
            n.register().await?;
        }
        Ok(n)
    }

    fn reset_stats(&mut self) {
        let p = self.cfg.router.max_peers;
        self.stats = EpochStats {
            dot: vec![0.0; p],
            count: vec![0; p],
            importance: vec![0.0; p],
            steps: 0,
        };
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

    /// Steps done.
    pub fn steps_done(&self) -> usize {
        self.step
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
        let chain = self
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
            submit(
                chain,
                &self.hotkey,
                Call::Register {
                    coldkey,
                    endpoint: addr,
                },
                wait,
            )
            .await?;
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
                submit(chain, coldkey, call, wait).await?;
            }
        } else if let Some(s) = &self.snapshot
            && let Some(uid) = self.my_uid
            && s.neurons[uid].endpoint != addr.to_string()
        {
            submit(
                chain,
                &self.hotkey,
                Call::UpdateEndpoint { endpoint: addr },
                wait,
            )
            .await?;
        }
        self.refresh().await
    }

    /// Reads the metagraph: peers and the axon's view (stake, masks).
    pub async fn refresh(&mut self) -> Result<()> {
        let Some(chain) = self.chain.as_mut() else {
            return Ok(());
        };
        let mg = chain.metagraph(None, true).await?;
        let snap = Snapshot::from_metagraph(&mg)?;
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

    async fn query(&self, batch: &Batch, rows: &[Vec<usize>]) -> Vec<PeerOutput> {
        let mut set = JoinSet::new();
        let t = batch.t;
        for (p, rows) in rows.iter().enumerate() {
            let Some(peer) = self.peers[p].clone() else {
                continue;
            };
            if rows.is_empty() {
                continue;
            }
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

    /// Peers the router may choose: known, and not resting after failures.
    fn available(&self) -> Vec<bool> {
        let now = Instant::now();
        self.peers
            .iter()
            .zip(&self.health)
            .map(|(p, (_, until))| p.is_some() && until.is_none_or(|u| now >= u))
            .collect()
    }

    /// Records which queried peers answered. A peer that fails is left out of routing for
    /// 250 ms, doubling with each further failure up to 10 s, so that the router sends its
    /// examples to the next best peers instead of the student; then it is tried again.
    fn note_answers(&mut self, rows: &[Vec<usize>], outs: &[PeerOutput]) {
        let now = Instant::now();
        for (p, r) in rows.iter().enumerate() {
            if r.is_empty() || self.peers[p].is_none() {
                continue;
            }
            let h = &mut self.health[p];
            if outs.iter().any(|o| o.peer == p) {
                *h = (0, None);
            } else {
                h.0 = h.0.saturating_add(1);
                let rest =
                    Duration::from_millis(250u64.saturating_mul(1 << h.0.min(6).saturating_sub(1)));
                h.1 = Some(now + rest.min(Duration::from_secs(10)));
            }
        }
    }

    /// Routes `batch` over the available peers (with noise when `train`) and queries them.
    /// When a chosen peer fails, it is left out and the batch is routed and queried once more,
    /// so that its examples go to the next best live peers rather than to the student. `None`
    /// when no peer is available.
    async fn route_and_query(
        &mut self,
        batch: &Batch,
        train: bool,
    ) -> Result<Option<(Routing, Vec<Vec<usize>>, Vec<PeerOutput>)>> {
        let (b, t) = (batch.b, batch.t);
        let mut last = None;
        for _attempt in 0..2 {
            let available = self.available();
            if !available.iter().any(|a| *a) {
                break;
            }
            let learner = self.learner.clone();
            let rng: Option<&mut dyn rand::RngCore> =
                if train { Some(&mut self.rng) } else { None };
            let routing = blocking(|| learner.route(&batch.ids, b, t, &available, rng))?;
            let rows = routing.rows_per_peer();
            let outs = self.query(batch, &rows).await;
            self.note_answers(&rows, &outs);
            let all = outs.len() == rows.iter().filter(|r| !r.is_empty()).count();
            last = Some((routing, rows, outs));
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
        let mut network_time = Duration::ZERO;
        let q = Instant::now();
        let routed = self.route_and_query(&batch, true).await?;
        let (outcome, mode, queried, answered) = if let Some((routing, rows, outs)) = routed {
            network_time = q.elapsed();
            let learner = self.learner.clone();
            let queried = rows.iter().filter(|r| !r.is_empty()).count();
            let answered = outs.len();
            let mode = if answered >= self.cfg.router.k_min.min(queried) && answered > 0 {
                Mode::Network
            } else {
                Mode::Student
            };
            let outs = if mode == Mode::Network {
                outs
            } else {
                Vec::new()
            };
            let outcome: StepOutcome =
                blocking(|| learner.train_step(&batch, mode, Some(&routing), &outs))?;
            (outcome, mode, queried, answered)
        } else {
            let learner = self.learner.clone();
            let mode = if self.cfg.network.ledger.is_some() {
                Mode::Student
            } else {
                Mode::Alone
            };
            let outcome = blocking(|| learner.train_step(&batch, mode, None, &[]))?;
            (outcome, mode, 0, 0)
        };
        self.step += 1;
        self.stats.steps += 1;
        for (p, v) in outcome.importance.iter().enumerate() {
            self.stats.importance[p] += f64::from(*v);
        }
        for g in outcome.peer_grads {
            self.stats.dot[g.peer] += g.grad_dot_output;
            self.stats.count[g.peer] += 1;
            let Some(peer) = self.peers[g.peer].clone() else {
                continue;
            };
            let d = self.cfg.model.d;
            let (Ok(x), Ok(grad)) = (
                rows_tensor(&batch, &g.rows),
                Tensor::from_f32(vec![g.rows.len(), t, d], &g.grad),
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
            step: self.step,
            loss: outcome.loss,
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
        let mut costs = vec![RemovalCost::default(); self.cfg.router.max_peers];
        let batches = self.held_out.clone();
        for batch in &batches {
            let Some((routing, _, outs)) = self.route_and_query(batch, false).await? else {
                continue;
            };
            let learner = self.learner.clone();
            let probes = blocking(|| learner.removal(batch, &routing, &outs))?;
            for p in probes {
                let c = &mut costs[p.peer];
                c.exact += p.exact;
                c.first += p.first;
                c.second += p.second;
                c.batches += 1;
            }
        }
        let n = batches.len().max(1) as f64;
        for c in &mut costs {
            c.exact /= n;
            c.first /= n;
            c.second /= n;
        }
        Ok(costs)
    }

    /// Ends an epoch: refreshes the metagraph, sets weights, evaluates, checkpoints.
    pub async fn end_epoch(&mut self) -> Result<EpochReport> {
        let steps = self.stats.steps.max(1) as f64;
        let importance: Vec<f64> = self.stats.importance.iter().map(|v| v / steps).collect();
        let mut report = EpochReport {
            step: self.step,
            importance: importance.clone(),
            ..EpochReport::default()
        };
        if self.chain.is_some() {
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "metagraph refresh failed");
            }
            let m: Vec<f64> = match (&self.snapshot, self.my_uid) {
                (Some(s), Some(i)) => (0..s.neurons.len())
                    .map(|j| self.mask_of(s, i, j))
                    .collect(),
                _ => Vec::new(),
            };
            report.dl_dm = self.dl_dm(&m);
            match self.set_weights(&importance, &m, &report.dl_dm).await {
                Ok(row) => report.weights = Some(row),
                Err(e) => {
                    tracing::warn!(error = %e, "setting weights failed");
                    report.weights_error = Some(e.to_string());
                }
            }
            report.height = self.snapshot.as_ref().map(|s| s.height);
        }
        let mode = if self.cfg.network.ledger.is_some() || self.available().iter().any(|a| *a) {
            Mode::Network
        } else {
            Mode::Alone
        };
        report.held_out = self.evaluate(mode).await?;
        report.held_out_student = if mode == Mode::Alone {
            report.held_out
        } else {
            self.evaluate(Mode::Student).await?
        };
        if let Some(path) = checkpoint_path(&self.cfg) {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| Error::Io {
                    path: dir.display().to_string(),
                    source: e,
                })?;
            }
            // Write to a temporary name, then rename: a crash never leaves half a checkpoint.
            let tmp = path.with_extension("safetensors.tmp");
            self.learner.save(&tmp)?;
            std::fs::rename(&tmp, &path).map_err(|e| Error::Io {
                path: path.display().to_string(),
                source: e,
            })?;
        }
        self.reset_stats();
        Ok(report)
    }

    /// The mask peer `j` applies to neuron `i` (1 when masking is off).
    fn mask_of(&self, s: &Snapshot, i: usize, j: usize) -> f64 {
        if self.cfg.network.mask {
            s.mask(i, j, self.cfg.weights.temperature)
        } else {
            1.0
        }
    }

    /// `dL/dm_ij` per uid over the epoch: the mean of `sum(grad * output)` divided by the
    /// mask `m` the peer applied.
    fn dl_dm(&self, m: &[f64]) -> Vec<Option<f64>> {
        (0..m.len())
            .map(|j| {
                let c = self.stats.count.get(j).copied().unwrap_or(0);
                (c > 0).then(|| self.stats.dot[j] / c as f64 / m[j].max(1e-6))
            })
            .collect()
    }

    /// The next weight row by the configured rule, submitted to the ledger; `m` and `dl_dm`
    /// are this epoch's masks and loss sensitivities by uid (used by the payoff rule).
    async fn set_weights(
        &mut self,
        importance: &[f64],
        m: &[f64],
        dl_dm: &[Option<f64>],
    ) -> Result<Vec<f64>> {
        let snap = self
            .snapshot
            .clone()
            .ok_or_else(|| Error::Ledger("no metagraph yet".into()))?;
        let i = self
            .my_uid
            .ok_or_else(|| Error::Ledger("not registered".into()))?;
        let n = snap.neurons.len();
        let row = snap.w[i].clone();
        let cfg = &self.cfg.weights;
        let next = match cfg.rule {
            WeightRule::SelfOnly => self_step(&row, i, snap.epsilon),
            WeightRule::Ema => {
                let imp: Vec<f64> = (0..n)
                    .map(|j| importance.get(j).copied().unwrap_or(0.0))
                    .collect();
                ema_step(&row, i, &imp, cfg, snap.epsilon)
            }
            WeightRule::Payoff => payoff_step(
                &PayoffInput {
                    row: &row,
                    i,
                    stake_i: snap.stake_frac[i],
                    dl_dm,
                    m,
                    tau: snap.tau,
                    epsilon: snap.epsilon,
                },
                cfg,
            ),
        };
        let raw = to_raw(&next)?;
        let chain = self
            .chain
            .as_mut()
            .ok_or_else(|| Error::Ledger("no ledger".into()))?;
        submit(
            chain,
            &self.hotkey,
            Call::SetWeights { row: raw },
            Duration::from_secs(10),
        )
        .await?;
        Ok(next)
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
/// (several neurons staking from one coldkey) can take the nonce first; such a refusal is
/// retried with a fresh nonce, a few times.
async fn submit(chain: &mut Client, key: &Keypair, call: Call, wait: Duration) -> Result<u64> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = match chain.sign_and_submit(key, call.clone()).await {
            Ok((id, _)) => chain.wait_included(&id, wait).await.map(|h| (id, h)),
            Err(e) => Err(e),
        };
        match result {
            Ok((_, Some(h))) => return Ok(h),
            Ok((id, None)) => {
                return Err(Error::Ledger(format!(
                    "transaction {id} still pending after {} s",
                    wait.as_secs()
                )));
            }
            Err(e) if e.to_string().contains("stale nonce") && attempt < 6 => {
                tracing::debug!(error = %e, attempt, "nonce taken; retrying");
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Where the checkpoint of `cfg` lives, if checkpoints are on.
pub fn checkpoint_path(cfg: &NeuronConfig) -> Option<std::path::PathBuf> {
    cfg.train
        .checkpoint_dir
        .as_ref()
        .map(|d| d.join("neuron.safetensors"))
}
