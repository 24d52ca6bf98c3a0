//! The learner: its trunk (served to peers), head, router and distilled student, and one
//! training step given the peers' answers. No networking here: the caller (see
//! [`crate::neuron`]) queries peers, and this module turns their outputs into a loss, a step
//! of its own parameters, and the gradients to send back.
//!
//! The representation the head reads is `h(x) = trunk(x) + c(x)`, where `c(x)` is
//! - the gated mixture `G(x) = sum_j g_j(x) A_j m_j y_j(x)` of the peers' answers (network
//!   mode; `m_j` is the mask the peer's axon applied, `A_j` this learner's adapter for peer
//!   `j`, which starts at zero so that a new learner computes what its twin alone does), with
//!   the student standing in for examples whose chosen peers all failed;
//! - the student `dist(x)` (paper eq. 11), when the network is unreachable;
//! - nothing, for a learner trained alone (the baseline).
//!
//! A neuron answers its peers' Forward with `trunk(x) + dist(x)`: its student replaces the
//! network, so a query never recurses (paper section 2.8). The gradients its peers send back
//! wait, summed, and join its next own step ([`BackwardUpdate::WithOwnStep`]).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use candle_core::{Device, Tensor, Var};
use candle_nn::{ParamsAdamW, VarMap};
use serde::{Deserialize, Serialize};

use crate::data::Batch;
use crate::error::{Error, Result};
use crate::model::{Encoder, Head, ModelConfig, Params, causal_mask, cross_entropy, ids_tensor};
use crate::optim::AdamW;
use crate::router::{AdapterInit, DataWeight, Router, RouterConfig, Routing};

/// `a + b`, or `b` alone when there is no `a`: one more term of a loss.
fn plus(a: Option<Tensor>, b: Tensor) -> Result<Tensor> {
    Ok(match a {
        Some(a) => (a + b)?,
        None => b,
    })
}

/// How the gradients peers send through Backward reach the trunk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackwardUpdate {
    /// Summed and added to the gradient of the learner's next own step, through its one
    /// optimiser: the trunk descends its own loss plus its consumers' losses, on one scale.
    #[default]
    WithOwnStep,
    /// Each applied at once by a second AdamW (`peer_lr`). Adam normalises every gradient, so
    /// even a consumer's faint or noisy gradient moves every trunk weight by about `peer_lr`.
    OwnOptimizer,
}

impl std::str::FromStr for BackwardUpdate {
    type Err = Error;

    /// Parses the command-line spelling `with-own-step` or `own-optimizer` (the config file's
    /// `with_own_step` and `own_optimizer` too).
    fn from_str(s: &str) -> Result<BackwardUpdate> {
        match s {
            "with-own-step" | "with_own_step" => Ok(BackwardUpdate::WithOwnStep),
            "own-optimizer" | "own_optimizer" => Ok(BackwardUpdate::OwnOptimizer),
            _ => Err(Error::Config(format!(
                "backward must be with-own-step or own-optimizer, got {s:?}"
            ))),
        }
    }
}

impl std::fmt::Display for BackwardUpdate {
    /// The command-line spelling [`BackwardUpdate::from_str`] reads.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackwardUpdate::WithOwnStep => "with-own-step",
            BackwardUpdate::OwnOptimizer => "own-optimizer",
        })
    }
}

/// Optimiser settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// AdamW learning rate of the learner's own step.
    pub lr: f64,
    /// How peers' Backward gradients are applied.
    pub backward: BackwardUpdate,
    /// AdamW learning rate of the peers' updates under `backward = "own_optimizer"`.
    pub peer_lr: f64,
    /// AdamW weight decay of every parameter: a number or `"auto"` (the default,
    /// [`DataWeight::Auto`]: `s²` with the peers' share `s` of [`DataWeight::peers_share`], 1
    /// for a learner with 4 096 training tokens or fewer, 0.0014 for a default network neuron).
    /// A learner in the network and its twin alone take the same value, so the comparison
    /// between them stays fair.
    pub weight_decay: DataWeight,
}

impl Default for OptimConfig {
    fn default() -> OptimConfig {
        OptimConfig {
            lr: 3e-3,
            backward: BackwardUpdate::WithOwnStep,
            peer_lr: 1e-3,
            weight_decay: DataWeight::Auto,
        }
    }
}

impl OptimConfig {
    /// Checks the values: every rate and the weight decay finite and at least 0.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("optim.lr", self.lr),
            ("optim.peer_lr", self.peer_lr),
            // `auto` resolves within [0, 1].
            ("optim.weight_decay", self.weight_decay.resolve(0.0)),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::Config(format!(
                    "{name} must be finite and >= 0, got {v}"
                )));
            }
        }
        Ok(())
    }

    /// This configuration for a learner with `train_tokens` tokens of its own text: an
    /// [`DataWeight::Auto`] weight decay becomes `s²` (as [`RouterConfig::for_data`] does
    /// for the objectives; [`Learner::new`] refuses `Auto`).
    pub fn for_data(self, train_tokens: usize) -> OptimConfig {
        OptimConfig {
            weight_decay: DataWeight::Fixed(
                self.weight_decay
                    .resolve(DataWeight::peers_share(train_tokens).powi(2)),
            ),
            ..self
        }
    }
}

/// What the head reads besides the trunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The gated mixture of peers' answers (student for examples with no answer).
    Network,
    /// The distilled student (peers unreachable).
    Student,
    /// Nothing: the learner alone.
    Alone,
}

/// One peer's answer to the examples routed to it.
#[derive(Clone, Debug)]
pub struct PeerOutput {
    /// The peer's index (uid).
    pub peer: usize,
    /// The batch rows it answered, in the order of `values`.
    pub rows: Vec<usize>,
    /// `[rows, t, d]` row-major.
    pub values: Vec<f32>,
}

/// The gradient to send back to one peer.
#[derive(Clone, Debug)]
pub struct PeerGradient {
    /// The peer's index (uid).
    pub peer: usize,
    /// The rows, as in its [`PeerOutput`].
    pub rows: Vec<usize>,
    /// `d loss / d output`, `[rows, t, d]` row-major.
    pub grad: Vec<f32>,
    /// `sum(grad * output)`: `m * dL/dm` for the mask multiplier `m` the peer applied.
    pub grad_dot_output: f64,
    /// What the peer's answer was worth on this batch: the loss with it zeroed (its gate kept)
    /// minus the loss with it, as [`Learner::removal`]'s `exact`, before the step.
    pub removal_cost: f64,
}

/// What one step did.
#[derive(Clone, Debug, Default)]
pub struct StepOutcome {
    /// Next-token cross-entropy of the batch (nats per token).
    pub loss: f32,
    /// Distillation loss (MSE of the student against the mixture), when trained.
    pub distill: Option<f32>,
    /// Router balance loss, when there was one.
    pub balance: Option<f32>,
    /// The remote-only cross-entropy (the head on the peers' answers alone), when
    /// `router.w_remote > 0` and a peer answered.
    pub remote: Option<f32>,
    /// The local-only cross-entropy (the head on the learner's own trunk alone), when
    /// `router.w_local > 0` and the step used the network.
    pub local: Option<f32>,
    /// Gradients for the peers that answered.
    pub peer_grads: Vec<PeerGradient>,
    /// Gate mass of each peer in this batch (mean over examples).
    pub importance: Vec<f32>,
    /// Examples whose chosen peers all failed (served by the student).
    pub fallback_rows: usize,
}

/// What removing one peer's answer does to a learner's loss on one batch; see
/// [`Learner::removal`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RemovalProbe {
    /// The peer's index (uid).
    pub peer: usize,
    /// The loss with the peer's answer zeroed, minus the loss with it.
    pub exact: f64,
    /// The first-order term of the Taylor expansion.
    pub first: f64,
    /// The second-order (Fisher) term of the Taylor expansion: the paper's approximation.
    pub second: f64,
}

/// The head's mixture input `c(x)` and what built it.
struct Mixture {
    /// `G(x)` plus the student on examples no chosen peer answered.
    mix: Tensor,
    /// `G(x)` alone (the distillation target); `None` when no peer answered.
    gated: Option<Tensor>,
    /// Each answering peer's uid and its answer as a variable (for its gradient).
    vars: Vec<(usize, Var)>,
    /// The gates `[b, p]`.
    gates: Tensor,
    /// Per example, 1 when a chosen peer answered.
    valid: Vec<f32>,
}

/// A learner's networks and optimisers. Safe to share between the training loop and the axon
/// (parameters are updated in place under candle's storage locks).
pub struct Learner {
    cfg: ModelConfig,
    router_cfg: RouterConfig,
    /// The remote-only objective's weight (`router_cfg.w_remote`, resolved).
    w_remote: f64,
    /// The local-only objective's weight (`router_cfg.w_local`, resolved).
    w_local: f64,
    device: Device,
    vars: VarMap,
    trunk: Encoder,
    student: Encoder,
    head: Head,
    router: Router,
    /// One `[d, d]` map per peer uid, starting at zero: peer `j`'s term is `g_j A_j y_j`.
    adapters: Option<Vec<Tensor>>,
    opt: Mutex<AdamW>,
    /// The separate optimiser of peers' updates under [`BackwardUpdate::OwnOptimizer`];
    /// `None` when they wait for the next own step ([`BackwardUpdate::WithOwnStep`]).
    peer_opt: Option<Mutex<AdamW>>,
    /// The trunk's parameters, in name order (what Backward updates).
    trunk_vars: Vec<Var>,
    /// Peers' Backward gradients not yet taken into a step, aligned with `trunk_vars`.
    pending: Mutex<Vec<Option<Tensor>>>,
    masks: Mutex<HashMap<usize, Tensor>>,
}

fn vars_with_prefix(vars: &VarMap, prefixes: &[&str]) -> Vec<Var> {
    let data = vars.data().lock().unwrap_or_else(|e| e.into_inner());
    let mut named: Vec<(&String, &Var)> = data
        .iter()
        .filter(|(n, _)| prefixes.iter().any(|p| n.starts_with(p)))
        .collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    named.into_iter().map(|(_, v)| v.clone()).collect()
}

impl Learner {
    /// A learner with parameters drawn from `seed`.
    pub fn new(
        cfg: &ModelConfig,
        router_cfg: &RouterConfig,
        optim: &OptimConfig,
        device: &Device,
        seed: u64,
    ) -> Result<Learner> {
        cfg.validate()?;
        router_cfg.validate()?;
        // `field` is the weight's path in the configuration, `owner` the type whose `for_data`
        // resolves it.
        let fixed = |field: &str, owner: &str, w: DataWeight| match w {
            DataWeight::Fixed(w) => Ok(w),
            DataWeight::Auto => Err(Error::Config(format!(
                "{field} = \"auto\" depends on the learner's training text: resolve it with \
                 {owner}::for_data before building the learner"
            ))),
        };
        let w_remote = fixed("router.w_remote", "RouterConfig", router_cfg.w_remote)?;
        let w_local = fixed("router.w_local", "RouterConfig", router_cfg.w_local)?;
        let weight_decay = fixed("optim.weight_decay", "OptimConfig", optim.weight_decay)?;
        let vars = VarMap::new();
        let mut p = Params::new(&vars, device, seed);
        let trunk = Encoder::new(&mut p, "trunk", cfg, cfg.layers)?;
        let head = Head::new(&mut p, "head", cfg)?;
        let router = Router::new(&mut p, "router", cfg.d, router_cfg.max_peers)?;
        let student = Encoder::new(&mut p, "student", cfg, cfg.student_layers)?;
        let adapters = match router_cfg.adapter {
            false => None,
            true => Some(
                (0..router_cfg.max_peers)
                    .map(|j| {
                        let name = format!("adapter.{j:04}");
                        match router_cfg.adapter_init {
                            AdapterInit::Zero => p.constant(&name, &[cfg.d, cfg.d], 0.0),
                            AdapterInit::Identity => p.identity(&name, cfg.d),
                        }
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
        };
        let adam = |lr: f64| ParamsAdamW {
            lr,
            weight_decay,
            ..ParamsAdamW::default()
        };
        let opt = AdamW::new(
            vars_with_prefix(
                &vars,
                &["trunk.", "head.", "router.", "student.", "adapter."],
            ),
            adam(optim.lr),
        )?;
        let trunk_vars = vars_with_prefix(&vars, &["trunk."]);
        let peer_opt = match optim.backward {
            BackwardUpdate::WithOwnStep => None,
            BackwardUpdate::OwnOptimizer => Some(Mutex::new(AdamW::new(
                trunk_vars.clone(),
                adam(optim.peer_lr),
            )?)),
        };
        let pending = Mutex::new(vec![None; trunk_vars.len()]);
        Ok(Learner {
            cfg: cfg.clone(),
            router_cfg: router_cfg.clone(),
            w_remote,
            w_local,
            device: device.clone(),
            vars,
            trunk,
            student,
            head,
            router,
            adapters,
            opt: Mutex::new(opt),
            peer_opt,
            trunk_vars,
            pending,
            masks: Mutex::new(HashMap::new()),
        })
    }

    /// The model configuration.
    pub fn model_config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// The router configuration.
    pub fn router_config(&self) -> &RouterConfig {
        &self.router_cfg
    }

    /// The device the tensors live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Every parameter, by name.
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        let data = self.vars.data().lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<(String, Var)> = data.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The number of scalar parameters.
    pub fn num_params(&self) -> usize {
        self.named_vars()
            .iter()
            .map(|(_, v)| v.as_tensor().elem_count())
            .sum()
    }

    fn mask(&self, t: usize) -> Result<Tensor> {
        let mut masks = self.masks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = masks.get(&t) {
            return Ok(m.clone());
        }
        let m = causal_mask(t, &self.device)?;
        masks.insert(t, m.clone());
        Ok(m)
    }

    /// Checks token ids a caller gives for a `[b, t]` batch: the count, the vocabulary, and
    /// the sequence length the model takes.
    pub fn check_ids(&self, ids: &[u32], b: usize, t: usize) -> Result<()> {
        if ids.len() != b * t {
            return Err(Error::BadInput(format!(
                "{} token ids for a [{b}, {t}] batch",
                ids.len()
            )));
        }
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= self.cfg.vocab) {
            return Err(Error::BadInput(format!(
                "token id {bad} is outside the vocabulary of {}",
                self.cfg.vocab
            )));
        }
        if t == 0 || t > self.cfg.seq {
            return Err(Error::BadInput(format!(
                "sequence of {t} tokens; the model takes 1 to {}",
                self.cfg.seq
            )));
        }
        Ok(())
    }

    fn ids(&self, ids: &[u32], b: usize, t: usize) -> Result<Tensor> {
        self.check_ids(ids, b, t)?;
        ids_tensor(ids, b, t, &self.device)
    }

    /// Routes a batch of `b` rows of `t` token ids to peers; `rng` adds training noise.
    pub fn route(
        &self,
        ids: &[u32],
        b: usize,
        t: usize,
        available: &[bool],
        rng: Option<&mut dyn rand::RngCore>,
    ) -> Result<Routing> {
        let x = self.ids(ids, b, t)?;
        let pooled = self.trunk.embed(&x)?.mean(1)?.detach();
        self.router
            .route(&pooled, available, self.router_cfg.k, rng)
    }

    /// The representation served to peers: `trunk(x) + dist(x)`, `[b, t, d]` row-major.
    pub fn serve(&self, ids: &[u32], b: usize, t: usize) -> Result<Vec<f32>> {
        let x = self.ids(ids, b, t)?;
        let mask = self.mask(t)?;
        let out = (self.trunk.forward(&x, &mask)? + self.student.forward(&x, &mask)?)?;
        Ok(out.flatten_all()?.to_vec1()?)
    }

    /// Applies a peer's gradient of its loss with respect to what this learner served:
    /// back-propagates it into the trunk, then keeps the result for the next own step
    /// ([`BackwardUpdate::WithOwnStep`]) or takes a step with the peer optimiser at once.
    pub fn apply_peer_gradient(&self, ids: &[u32], b: usize, t: usize, grad: &[f32]) -> Result<()> {
        let d = self.cfg.d;
        if grad.len() != b * t * d {
            return Err(Error::BadInput(format!(
                "gradient of {} values for a [{b}, {t}, {d}] output",
                grad.len()
            )));
        }
        if let Some(v) = grad.iter().find(|v| !v.is_finite()) {
            return Err(Error::BadInput(format!(
                "gradient holds non-finite value {v}"
            )));
        }
        let x = self.ids(ids, b, t)?;
        let mask = self.mask(t)?;
        let out = self.trunk.forward(&x, &mask)?;
        let g = Tensor::from_vec(grad.to_vec(), (b, t, d), &self.device)?;
        let grads = (out * g)?.sum_all()?.backward()?;
        if let Some(peer_opt) = &self.peer_opt {
            let mut opt = peer_opt.lock().unwrap_or_else(|e| e.into_inner());
            opt.step(&grads)?;
            return Ok(());
        }
        {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            for (var, acc) in self.trunk_vars.iter().zip(pending.iter_mut()) {
                if let Some(g) = grads.get(var.as_tensor()) {
                    *acc = Some(match acc.take() {
                        Some(a) => (a + g)?,
                        None => g.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Whether peers' Backward gradients wait for this learner's next step.
    pub fn pending_peer_gradients(&self) -> bool {
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.iter().any(Option::is_some)
    }

    /// Peer `j`'s term of the mixture before its gate: `A_j y` with the adapter, else `y`.
    fn peer_term(&self, peer: usize, y: &Tensor) -> Result<Tensor> {
        match self.adapters.as_ref().and_then(|a| a.get(peer)) {
            Some(a) => Ok(y.broadcast_matmul(&a.t()?)?),
            None => Ok(y.clone()),
        }
    }

    /// Peer `j`'s gated term of the mixture, `g_j A_j y_j` (`[b, t, d]`): what zeroing its
    /// answer takes away from the head's input.
    fn peer_contribution(&self, peer: usize, y: &Tensor, gates: &Tensor) -> Result<Tensor> {
        let b = gates.dim(0)?;
        let gate = gates.narrow(1, peer, 1)?.reshape((b, 1, 1))?;
        Ok(self.peer_term(peer, y)?.broadcast_mul(&gate)?)
    }

    /// Builds the mixture input of the head from the peers' answers.
    fn mixture(
        &self,
        b: usize,
        t: usize,
        routing: &Routing,
        outputs: &[PeerOutput],
        student: &Tensor,
    ) -> Result<Mixture> {
        let d = self.cfg.d;
        let peers = self.router_cfg.max_peers;
        let mut answered = vec![false; peers];
        let mut vars = Vec::with_capacity(outputs.len());
        for o in outputs {
            if o.peer >= peers || answered[o.peer] {
                return Err(Error::BadInput(format!(
                    "peer {} answered twice or is out of range",
                    o.peer
                )));
            }
            if o.values.len() != o.rows.len() * t * d {
                return Err(Error::BadInput(format!(
                    "peer {} sent {} values for {} rows of [{t}, {d}]",
                    o.peer,
                    o.values.len(),
                    o.rows.len()
                )));
            }
            answered[o.peer] = true;
            let mut full = vec![0f32; b * t * d];
            for (k, &r) in o.rows.iter().enumerate() {
                if r >= b {
                    return Err(Error::BadInput(format!(
                        "peer {} answered row {r} of {b}",
                        o.peer
                    )));
                }
                full[r * t * d..(r + 1) * t * d]
                    .copy_from_slice(&o.values[k * t * d..(k + 1) * t * d]);
            }
            vars.push((o.peer, Var::from_vec(full, (b, t, d), &self.device)?));
        }
        let (gates, valid) = self.router.gates(routing, &answered)?;
        let mut gated: Option<Tensor> = None;
        for (p, var) in &vars {
            let term = self.peer_contribution(*p, var.as_tensor(), &gates)?;
            gated = Some(match gated {
                None => term,
                Some(acc) => (acc + term)?,
            });
        }
        let fallback = student.detach().broadcast_mul(&Tensor::from_vec(
            valid.iter().map(|v| 1.0 - v).collect::<Vec<f32>>(),
            (b, 1, 1),
            &self.device,
        )?)?;
        let mix = match &gated {
            Some(g) => (fallback + g)?,
            None => fallback,
        };
        Ok(Mixture {
            mix,
            gated,
            vars,
            gates,
            valid,
        })
    }

    /// The head's cross-entropy on the peers' gated answers alone, over the rows a peer
    /// answered (`valid` is 1 for those).
    fn remote_loss(&self, gated: &Tensor, y: &Tensor, valid: &[f32]) -> Result<Tensor> {
        let rows: Vec<u32> = (0..valid.len() as u32)
            .filter(|&r| valid[r as usize] > 0.0)
            .collect();
        let (gated, y) = if rows.len() == valid.len() {
            (gated.clone(), y.clone())
        } else {
            let n = rows.len();
            let idx = Tensor::from_vec(rows, n, &self.device)?;
            (gated.index_select(&idx, 0)?, y.index_select(&idx, 0)?)
        };
        cross_entropy(&self.head.forward(&gated)?, &y)
    }

    /// A batch's inputs, targets and causal mask as tensors (ids checked).
    fn batch_tensors(&self, batch: &Batch) -> Result<(Tensor, Tensor, Tensor)> {
        let (b, t) = (batch.b, batch.t);
        Ok((
            self.ids(&batch.ids, b, t)?,
            self.ids(&batch.targets, b, t)?,
            self.mask(t)?,
        ))
    }

    /// One training step on a batch. In [`Mode::Network`], `routing` must be the batch's
    /// routing and `outputs` the answers of the peers that replied.
    pub fn train_step(
        &self,
        batch: &Batch,
        mode: Mode,
        routing: Option<&Routing>,
        outputs: &[PeerOutput],
    ) -> Result<StepOutcome> {
        let (b, t) = (batch.b, batch.t);
        let (x, y, mask) = self.batch_tensors(batch)?;
        let local = self.trunk.forward(&x, &mask)?;
        let mut outcome = StepOutcome::default();
        let (h, aux, peer_vars, gates) = match (mode, routing) {
            (Mode::Alone, _) => (local, None, Vec::new(), None),
            (Mode::Student, _) | (Mode::Network, None) => {
                let s = self.student.forward(&x, &mask)?.detach();
                ((local + s)?, None, Vec::new(), None)
            }
            (Mode::Network, Some(routing)) => {
                let student = self.student.forward(&x, &mask)?;
                let Mixture {
                    mix,
                    gated,
                    vars,
                    gates,
                    valid,
                } = self.mixture(b, t, routing, outputs, &student)?;
                outcome.fallback_rows = valid.iter().filter(|v| **v == 0.0).count();
                outcome.importance = (gates.sum(0)? / b as f64)?.to_vec1()?;
                let n_valid: f32 = valid.iter().sum();
                let mut aux = None;
                if self.w_local > 0.0 {
                    let own = cross_entropy(&self.head.forward(&local)?, &y)?;
                    outcome.local = Some(own.to_scalar::<f32>()?);
                    aux = Some(plus(aux, (own * self.w_local)?)?);
                }
                if n_valid > 0.0 {
                    let gated = gated.ok_or_else(|| Error::BadInput("no peer terms".into()))?;
                    if self.w_remote > 0.0 {
                        let remote = self.remote_loss(&gated, &y, &valid)?;
                        outcome.remote = Some(remote.to_scalar::<f32>()?);
                        aux = Some(plus(aux, (remote * self.w_remote)?)?);
                    }
                    // Distil the peers' mixture (not the student's own fallback) into the student.
                    let gmix = gated.detach();
                    let rows = Tensor::from_vec(valid.clone(), (b, 1, 1), &self.device)?;
                    let diff = (student - gmix)?.broadcast_mul(&rows)?;
                    let distill =
                        (diff.sqr()?.sum_all()? / f64::from(n_valid * (t * self.cfg.d) as f32))?;
                    outcome.distill = Some(distill.to_scalar::<f32>()?);
                    aux = Some(plus(aux, distill)?);
                }
                if let Some(bal) = self
                    .router
                    .balance_loss(routing, &gates, &self.router_cfg)?
                {
                    outcome.balance = Some(bal.to_scalar::<f32>()?);
                    aux = Some(plus(aux, bal)?);
                }
                ((local + mix)?, aux, vars, Some(gates.detach()))
            }
        };
        let logits = self.head.forward(&h)?;
        let ce = cross_entropy(&logits, &y)?;
        outcome.loss = ce.to_scalar::<f32>()?;
        if !outcome.loss.is_finite() {
            return Err(Error::BadInput(format!(
                "loss is {}; the step is skipped",
                outcome.loss
            )));
        }
        // What each answer was worth on this batch, before the step changes the learner: the
        // loss changes only on the rows the peer answered, so only those are run again.
        let mut worth = Vec::with_capacity(peer_vars.len());
        if let Some(gates) = &gates {
            let (h, logits) = (h.detach(), logits.detach());
            for ((p, var), o) in peer_vars.iter().zip(outputs) {
                let rows = o.rows.iter().map(|&r| r as u32).collect::<Vec<u32>>();
                let idx = Tensor::from_vec(rows, o.rows.len(), &self.device)?;
                let dh = self.peer_contribution(*p, &var.as_tensor().detach(), gates)?;
                let h = (h.index_select(&idx, 0)? - dh.index_select(&idx, 0)?)?;
                let y = y.index_select(&idx, 0)?;
                let without = cross_entropy(&self.head.forward(&h)?.detach(), &y)?;
                let with = cross_entropy(&logits.index_select(&idx, 0)?, &y)?;
                let change = f64::from((without - with)?.to_scalar::<f32>()?);
                worth.push(change * o.rows.len() as f64 / b as f64);
            }
        }
        let total = plus(aux, ce)?;
        let mut grads = total.backward()?;
        {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            for (var, acc) in self.trunk_vars.iter().zip(pending.iter_mut()) {
                if let Some(p) = acc.take() {
                    let g = match grads.get(var.as_tensor()) {
                        Some(g) => (g + p)?,
                        None => p,
                    };
                    grads.insert(var.as_tensor(), g);
                }
            }
        }
        {
            let mut opt = self.opt.lock().unwrap_or_else(|e| e.into_inner());
            opt.step(&grads)?;
        }
        for (((p, var), o), removal_cost) in peer_vars.iter().zip(outputs).zip(worth) {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let g: Vec<f32> = g.flatten_all()?.to_vec1()?;
            let per = t * self.cfg.d;
            let mut grad = Vec::with_capacity(o.rows.len() * per);
            let mut dot = 0f64;
            for (k, &r) in o.rows.iter().enumerate() {
                let gs = &g[r * per..(r + 1) * per];
                grad.extend_from_slice(gs);
                dot += gs
                    .iter()
                    .zip(&o.values[k * per..(k + 1) * per])
                    .map(|(a, b)| f64::from(*a) * f64::from(*b))
                    .sum::<f64>();
            }
            outcome.peer_grads.push(PeerGradient {
                peer: *p,
                rows: o.rows.clone(),
                grad,
                grad_dot_output: dot,
                removal_cost,
            });
        }
        Ok(outcome)
    }

    /// Held-out loss of a batch (no step): `c(x)` as in [`Learner::train_step`].
    pub fn evaluate(
        &self,
        batch: &Batch,
        mode: Mode,
        routing: Option<&Routing>,
        outputs: &[PeerOutput],
    ) -> Result<f32> {
        let (b, t) = (batch.b, batch.t);
        let (x, y, mask) = self.batch_tensors(batch)?;
        let local = self.trunk.forward(&x, &mask)?.detach();
        let h = match (mode, routing) {
            (Mode::Alone, _) => local,
            (Mode::Student, _) | (Mode::Network, None) => {
                (local + self.student.forward(&x, &mask)?.detach())?
            }
            (Mode::Network, Some(routing)) => {
                let student = self.student.forward(&x, &mask)?.detach();
                let mix = self.mixture(b, t, routing, outputs, &student)?.mix;
                (local + mix.detach())?
            }
        };
        let logits = self.head.forward(&h)?.detach();
        Ok(cross_entropy(&logits, &y)?.to_scalar::<f32>()?)
    }

    /// What removing each answering peer would do to this learner's loss on `batch`: the
    /// exact change when the peer's answer is zeroed (its gate kept), and the terms of the
    /// Taylor expansion the paper uses for the same quantity (eq. 2 and appendix 6.1).
    ///
    /// With `h` the head's input and `dh = -g_j m_j y_j` the removal of peer `j`'s term:
    /// - `exact = CE(h + dh) - CE(h)`;
    /// - `first = <dCE/dh, dh>` (the paper drops it, assuming a minimum in the inputs);
    /// - `second = 1/2 dh^T F dh`, with `F` the Fisher information of the cross-entropy with
    ///   respect to `h` (the Gauss-Newton form of its Hessian, the paper's `H(Q)`). Per token,
    ///   `dh^T F dh` is the variance under the predicted distribution `p` of the logits'
    ///   directional derivative `J dh`, which is taken by a central difference.
    ///
    /// All three are means over the batch's tokens, as the loss is.
    pub fn removal(
        &self,
        batch: &Batch,
        routing: &Routing,
        outputs: &[PeerOutput],
    ) -> Result<Vec<RemovalProbe>> {
        let (b, t) = (batch.b, batch.t);
        let (x, y, mask) = self.batch_tensors(batch)?;
        let local = self.trunk.forward(&x, &mask)?.detach();
        let student = self.student.forward(&x, &mask)?.detach();
        let mixture = self.mixture(b, t, routing, outputs, &student)?;
        let h = Var::from_tensor(&(local + mixture.mix)?.detach())?;
        let logits = self.head.forward(h.as_tensor())?;
        let ce = cross_entropy(&logits, &y)?;
        let base = f64::from(ce.to_scalar::<f32>()?);
        let grads = ce.backward()?;
        let dce_dh = grads
            .get(h.as_tensor())
            .ok_or_else(|| Error::BadInput("no gradient reached the head's input".into()))?
            .detach();
        let logits = logits.detach();
        let p = candle_nn::ops::softmax_last_dim(&logits)?;
        let tokens = (b * t) as f64;
        let h = h.as_tensor().detach();
        let mut probes = Vec::with_capacity(mixture.vars.len());
        for (peer, var) in &mixture.vars {
            let dh = self
                .peer_contribution(*peer, var.as_tensor(), &mixture.gates)?
                .neg()?;
            let removed = cross_entropy(&self.head.forward(&(&h + &dh)?)?, &y)?;
            let exact = f64::from(removed.to_scalar::<f32>()?) - base;
            let first = f64::from((&dce_dh * &dh)?.sum_all()?.to_scalar::<f32>()?);
            let eps = 1e-2;
            let up = self.head.forward(&(&h + (&dh * eps)?)?)?;
            let down = self.head.forward(&(&h - (&dh * eps)?)?)?;
            let jv = ((up - down)? / (2.0 * eps))?;
            let mean = (&p * &jv)?.sum_keepdim(2)?;
            let var_p = ((&p * jv.sqr()?)?.sum_keepdim(2)? - mean.sqr()?)?;
            let second = 0.5 * f64::from(var_p.sum_all()?.to_scalar::<f32>()?) / tokens;
            probes.push(RemovalProbe {
                peer: *peer,
                exact,
                first,
                second,
            });
        }
        Ok(probes)
    }

    /// Saves every parameter to a safetensors file, with `metadata` (the caller's state, such
    /// as the step count) in its header.
    pub fn save(&self, path: &Path, metadata: HashMap<String, String>) -> Result<()> {
        let tensors: Vec<(String, Tensor)> = self
            .named_vars()
            .into_iter()
            .map(|(name, var)| (name, var.as_tensor().clone()))
            .collect();
        let metadata = (!metadata.is_empty()).then_some(metadata);
        safetensors::serialize_to_file(tensors, metadata, path).map_err(|e| {
            Error::CheckpointWrite {
                path: path.display().to_string(),
                reason: e.to_string(),
            }
        })
    }

    /// Loads parameters saved by [`Learner::save`] from a learner of the same shape and gives
    /// back the header's metadata (empty when it has none). Every parameter must be present,
    /// with its shape and finite values; all are checked before any is set, so a refused file
    /// leaves the learner as it was. A file that is not a safetensors file, or holds a value
    /// that is not finite, is [`Error::CheckpointDamaged`]; one of another model is
    /// [`Error::CheckpointMismatch`].
    pub fn load(&self, path: &Path) -> Result<HashMap<String, String>> {
        let damaged = |reason: String| Error::CheckpointDamaged {
            path: path.display().to_string(),
            reason,
        };
        let mismatch = |reason: String| Error::CheckpointMismatch {
            path: path.display().to_string(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| Error::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| damaged(format!("not a safetensors file ({e})")))?;
        let tensors = candle_core::safetensors::load_buffer(&bytes, &self.device)
            .map_err(|e| damaged(format!("not a safetensors file ({e})")))?;
        let mut staged = Vec::new();
        for (name, var) in self.named_vars() {
            let t = tensors
                .get(&name)
                .ok_or_else(|| mismatch(format!("tensor {name} is missing")))?;
            if t.dims() != var.as_tensor().dims() {
                return Err(mismatch(format!(
                    "tensor {name} has shape {:?}, the model expects {:?}",
                    t.dims(),
                    var.as_tensor().dims()
                )));
            }
            let t = t.to_dtype(candle_core::DType::F32)?;
            let host: Vec<f32> = t.flatten_all()?.to_vec1()?;
            if let Some(v) = host.iter().find(|v| !v.is_finite()) {
                return Err(damaged(format!("tensor {name} holds non-finite value {v}")));
            }
            staged.push((var, t));
        }
        for (var, t) in staged {
            var.set(&t)?;
        }
        Ok(header.metadata().clone().unwrap_or_default())
    }
}
