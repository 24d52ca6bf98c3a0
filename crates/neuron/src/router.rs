//! The sparsely-gated mixture-of-experts router over peers (Shazeer et al. 2017): noisy top-k
//! gating with a learned softplus noise scale, and the importance and load-balancing losses.
//!
//! Peers are indexed by ledger uid (`0..max_peers`); a peer that is not available (absent from
//! the metagraph, the neuron itself, or backing off) is never chosen, and gates renormalise
//! over the chosen peers that answered.

use candle_core::{D, Tensor};
use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::Params;

/// How the router picks and weighs peers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterConfig {
    /// Peers queried per example. Use at least 2: with `k = 1` the one gate is always 1 and
    /// the router learns nothing from the task loss (as Shazeer et al. note).
    pub k: usize,
    /// Fewest distinct peers that must answer for a step to use the network; below it the
    /// step uses the distilled student.
    pub k_min: usize,
    /// Most peers (uids) the router can address.
    pub max_peers: usize,
    /// Weight of the importance loss `CV(importance)^2`.
    pub w_importance: f64,
    /// Weight of the load loss `CV(load)^2`.
    pub w_load: f64,
    /// Pass each peer's answer through its own learned `[d, d]` map that starts at zero
    /// (`g_j A_j y_j`), so that a new learner starts as its twin alone and opens each peer
    /// only as far as that lowers its loss; `false` adds the answers raw (`g_j y_j`).
    pub adapter: bool,
    /// Where each adapter starts: `zero` (closed, the default: a new learner computes what its
    /// twin alone does) or `identity` (open: `A_j = I`, the raw answer from the first step,
    /// which the learner can then reshape).
    pub adapter_init: AdapterInit,
    /// Weight of the remote-only objective: the head's cross-entropy on the peers' gated
    /// answers alone (`head(sum_j g_j A_j y_j)`), added to the learner's loss so that the
    /// adapters, the gates and (through Backward) the peers learn to predict the text by
    /// themselves (bittensor's remote target). A number (`0` leaves it out) or `"auto"`
    /// (the default, [`DataWeight::Auto`]: by the size of the learner's own text, 1 for
    /// a learner with little text, 0.038 for a default network neuron).
    pub w_remote: DataWeight,
    /// Weight of the local-only objective: the head's cross-entropy on the learner's own trunk
    /// alone (`head(trunk(x))`), added to its loss in the network so that its trunk and head
    /// keep predicting the text without the peers rather than leaning on them (bittensor's
    /// local target). A number (`0` leaves it out) or `"auto"` (the default,
    /// [`DataWeight::Auto`]: by the size of the learner's own text, 0 for a learner with
    /// little text, 0.962 for a default network neuron). `docs/neuron.md` has the
    /// measurements: with both objectives on `auto` and [`RouterConfig::rest_unhelpful`], more
    /// gain over learning alone and a ledger that ranks as well.
    pub w_local: DataWeight,
    /// Rest a peer from routing when its answers do not lower this learner's loss: judged at
    /// each epoch's end by its worth (the batch loss with its answer zeroed minus the loss
    /// with it), a peer that does not pay (mean worth within one standard error of 0, or
    /// below) in two epochs in a row rests 1 epoch, then 2, 4 and up to 8 on each further
    /// unpaid epoch, and is tried again after each rest ([`crate::core::PeerRest`]).
    pub rest_unhelpful: bool,
}

/// A weight that can follow how much text the learner has: one of its two extra objectives
/// ([`RouterConfig::w_remote`], [`RouterConfig::w_local`]) or its weight decay
/// ([`crate::learner::OptimConfig::weight_decay`]). Written as a number or as `"auto"` (in a
/// config file and on the command line).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DataWeight {
    /// Set by the size of the learner's own text, [`RouterConfig::for_data`] (and
    /// [`crate::learner::OptimConfig::for_data`]) fixing the value once the text is known. The
    /// peers' share is `s = min(1, AUTO_TOKENS / training tokens)`: 1 for a learner with 4 096
    /// training tokens or fewer, falling as its own text grows (0.038 for a default network
    /// neuron's 108 000). The remote objective gets `s` (the less text a learner has, the more
    /// its head must be able to read its peers alone), the local one `1 - s` (the more it has,
    /// the more its own trunk must carry) and the weight decay `s²` (1 for a learner with
    /// little text, which would memorise it, and 0.0014 for a default network neuron, where a
    /// decay of `s` cost the ledger's ranking: `docs/neuron.md`).
    Auto,
    /// This weight.
    Fixed(f64),
}

impl DataWeight {
    /// The training text, in tokens, at and below which the peers' share is 1.
    pub const AUTO_TOKENS: usize = 4096;

    /// The peers' share `min(1, AUTO_TOKENS / train_tokens)` that [`DataWeight::Auto`]
    /// resolves from.
    pub fn peers_share(train_tokens: usize) -> f64 {
        (DataWeight::AUTO_TOKENS as f64 / train_tokens.max(1) as f64).min(1.0)
    }

    /// The weight: a fixed one as it is, [`DataWeight::Auto`] as `auto`.
    pub fn resolve(self, auto: f64) -> f64 {
        match self {
            DataWeight::Fixed(w) => w,
            DataWeight::Auto => auto,
        }
    }
}

impl std::str::FromStr for DataWeight {
    type Err = Error;

    /// Parses `auto` or a number (checked by [`RouterConfig::validate`]).
    fn from_str(s: &str) -> Result<DataWeight> {
        if s == "auto" {
            return Ok(DataWeight::Auto);
        }
        s.parse::<f64>()
            .map(DataWeight::Fixed)
            .map_err(|_| Error::Config(format!("a weight must be a number or \"auto\", got {s:?}")))
    }
}

impl std::fmt::Display for DataWeight {
    /// The spelling [`DataWeight::from_str`] reads: `auto` or the number.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataWeight::Auto => f.write_str("auto"),
            DataWeight::Fixed(w) => write!(f, "{w}"),
        }
    }
}

impl Serialize for DataWeight {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            DataWeight::Auto => s.serialize_str("auto"),
            DataWeight::Fixed(w) => s.serialize_f64(*w),
        }
    }
}

impl<'de> Deserialize<'de> for DataWeight {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Number(f64),
            Word(String),
        }
        match Written::deserialize(d)
            .map_err(|_| serde::de::Error::custom("a weight must be a number or \"auto\""))?
        {
            Written::Number(w) => Ok(DataWeight::Fixed(w)),
            Written::Word(w) => w.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// The starting value of a learner's per-peer adapter `A_j`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdapterInit {
    /// `A_j = 0`: peer `j` contributes nothing until the learner's loss opens it.
    #[default]
    Zero,
    /// `A_j = I`: peer `j`'s answer is added as it comes, then reshaped by training.
    Identity,
}

/// The per-peer adapter as the command line names it: `on` (learned, starting closed), `open`
/// (learned, starting as the identity) or `off` (answers added raw). One spelling for `bt net
/// up` and the examples; [`RouterConfig::with_peer_adapter`] applies it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PeerAdapter {
    /// `adapter = true`, `adapter_init = "zero"` (the default).
    #[default]
    On,
    /// `adapter = true`, `adapter_init = "identity"`.
    Open,
    /// `adapter = false`.
    Off,
}

impl std::str::FromStr for PeerAdapter {
    type Err = Error;

    fn from_str(s: &str) -> Result<PeerAdapter> {
        match s {
            "on" => Ok(PeerAdapter::On),
            "open" => Ok(PeerAdapter::Open),
            "off" => Ok(PeerAdapter::Off),
            _ => Err(Error::Config(format!(
                "peer adapter must be on, open or off, got {s:?}"
            ))),
        }
    }
}

impl std::fmt::Display for PeerAdapter {
    /// The spelling [`PeerAdapter::from_str`] reads.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PeerAdapter::On => "on",
            PeerAdapter::Open => "open",
            PeerAdapter::Off => "off",
        })
    }
}

impl Default for RouterConfig {
    fn default() -> RouterConfig {
        RouterConfig {
            k: 2,
            k_min: 1,
            max_peers: 16,
            w_importance: 0.01,
            w_load: 0.01,
            adapter: true,
            adapter_init: AdapterInit::Zero,
            w_remote: DataWeight::Auto,
            w_local: DataWeight::Auto,
            rest_unhelpful: true,
        }
    }
}

impl RouterConfig {
    /// This configuration with the per-peer adapter set as `mode` says.
    pub fn with_peer_adapter(self, mode: PeerAdapter) -> RouterConfig {
        RouterConfig {
            adapter: mode != PeerAdapter::Off,
            adapter_init: match mode {
                PeerAdapter::Open => AdapterInit::Identity,
                PeerAdapter::On | PeerAdapter::Off => AdapterInit::Zero,
            },
            ..self
        }
    }

    /// The per-peer adapter this configuration sets, as the command line names it (the inverse
    /// of [`RouterConfig::with_peer_adapter`]).
    pub fn peer_adapter(&self) -> PeerAdapter {
        match (self.adapter, self.adapter_init) {
            (false, _) => PeerAdapter::Off,
            (true, AdapterInit::Zero) => PeerAdapter::On,
            (true, AdapterInit::Identity) => PeerAdapter::Open,
        }
    }

    /// This configuration for a learner with `train_tokens` tokens of its own text: each
    /// [`DataWeight::Auto`] becomes its [`DataWeight::Fixed`] value. A learner is
    /// built from a configuration that went through this ([`crate::learner::Learner::new`]
    /// refuses `Auto`).
    pub fn for_data(self, train_tokens: usize) -> RouterConfig {
        let share = DataWeight::peers_share(train_tokens);
        RouterConfig {
            w_remote: DataWeight::Fixed(self.w_remote.resolve(share)),
            w_local: DataWeight::Fixed(self.w_local.resolve(1.0 - share)),
            ..self
        }
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        if self.k == 0 || self.k_min == 0 || self.k_min > self.k {
            return Err(Error::Config(format!(
                "router needs 1 <= k_min <= k, got k = {}, k_min = {}",
                self.k, self.k_min
            )));
        }
        if self.max_peers == 0 || self.max_peers > 4096 {
            return Err(Error::Config(format!(
                "router.max_peers must be in 1..=4096, got {}",
                self.max_peers
            )));
        }
        for (name, v) in [
            ("w_importance", self.w_importance),
            ("w_load", self.w_load),
            // `auto` resolves within [0, 1].
            ("w_remote", self.w_remote.resolve(0.0)),
            ("w_local", self.w_local.resolve(0.0)),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::Config(format!(
                    "router.{name} must be finite and >= 0, got {v}"
                )));
            }
        }
        Ok(())
    }
}

/// The router's parameters: `W_g` and `W_noise`, `[d, max_peers]`, and a bias `b_g`, all
/// starting at zero (as in the paper, so that early routing is uniform up to noise).
#[derive(Clone, Debug)]
pub struct Router {
    w_gate: Tensor,
    b_gate: Tensor,
    w_noise: Tensor,
    peers: usize,
}

/// One batch's routing decision, with the graph needed to train the router.
#[derive(Debug)]
pub struct Routing {
    /// `x W_g`, `[b, p]`.
    clean: Tensor,
    /// `H = x W_g + noise * softplus(x W_noise)`, `[b, p]` (equal to `clean` without noise).
    noisy: Tensor,
    /// `softplus(x W_noise) + 0.01`, `[b, p]`, when noise was drawn.
    noise_std: Option<Tensor>,
    /// `H` on the host, row-major.
    host: Vec<f32>,
    /// The chosen peers of each example, best first.
    pub chosen: Vec<Vec<usize>>,
    /// Which peers could be chosen.
    pub available: Vec<bool>,
    k: usize,
}

impl Routing {
    /// The examples (rows) routed to each peer, indexed by peer.
    pub fn rows_per_peer(&self) -> Vec<Vec<usize>> {
        let mut rows = vec![Vec::new(); self.available.len()];
        for (b, chosen) in self.chosen.iter().enumerate() {
            for &p in chosen {
                rows[p].push(b);
            }
        }
        rows
    }
}

fn softplus(x: &Tensor) -> Result<Tensor> {
    // log(1 + e^x) = max(x, 0) + log(1 + e^-|x|), stable for large |x|.
    Ok((x.relu()? + ((x.abs()?.neg()?.exp()? + 1.0)?.log()?))?)
}

/// `CV(x)^2 = var / mean^2` over the entries where `mask` is 1.
fn cv_squared(x: &Tensor, mask: &Tensor, count: f64) -> Result<Tensor> {
    let mean = ((x * mask)?.sum_all()? / count)?;
    let dev = (x.broadcast_sub(&mean)? * mask)?;
    let var = (dev.sqr()?.sum_all()? / count)?;
    Ok(var.broadcast_div(&(mean.sqr()? + 1e-10)?)?)
}

impl Router {
    /// A router over `peers` uids for representations of width `d`.
    pub fn new(p: &mut Params<'_>, name: &str, d: usize, peers: usize) -> Result<Router> {
        Ok(Router {
            w_gate: p.constant(&format!("{name}.w_gate"), &[d, peers], 0.0)?,
            b_gate: p.constant(&format!("{name}.b_gate"), &[peers], 0.0)?,
            w_noise: p.constant(&format!("{name}.w_noise"), &[d, peers], 0.0)?,
            peers,
        })
    }

    /// Routes each example of `pooled` (`[b, d]`) to its top `k` available peers; with `rng`,
    /// adds the learned noise first (training). `pooled` is standardised per example first, so
    /// that the gate logits move at a useful rate whatever the scale of the embeddings.
    pub fn route(
        &self,
        pooled: &Tensor,
        available: &[bool],
        k: usize,
        rng: Option<&mut dyn rand::RngCore>,
    ) -> Result<Routing> {
        if available.len() != self.peers {
            return Err(Error::Config(format!(
                "availability of {} peers given to a router over {}",
                available.len(),
                self.peers
            )));
        }
        let (b, _) = pooled.dims2()?;
        let centred = pooled.broadcast_sub(&pooled.mean_keepdim(D::Minus1)?)?;
        let scale = (centred.sqr()?.mean_keepdim(D::Minus1)? + 1e-5)?.sqrt()?;
        let pooled = &centred.broadcast_div(&scale)?;
        let clean = pooled.matmul(&self.w_gate)?.broadcast_add(&self.b_gate)?;
        let (noisy, noise_std) = match rng {
            Some(rng) => {
                let std = (softplus(&pooled.matmul(&self.w_noise)?)? + 0.01)?;
                let eps: Vec<f32> = (0..b * self.peers)
                    .map(|_| rng.sample::<f32, _>(StandardNormal))
                    .collect();
                let eps = Tensor::from_vec(eps, (b, self.peers), pooled.device())?;
                ((&clean + (eps * &std)?)?, Some(std))
            }
            None => (clean.clone(), None),
        };
        let host: Vec<f32> = noisy.flatten_all()?.to_vec1()?;
        let chosen = (0..b)
            .map(|r| {
                let row = &host[r * self.peers..(r + 1) * self.peers];
                let mut cand: Vec<usize> = (0..self.peers).filter(|&p| available[p]).collect();
                cand.sort_by(|&x, &y| row[y].total_cmp(&row[x]).then(x.cmp(&y)));
                cand.truncate(k);
                cand
            })
            .collect();
        Ok(Routing {
            clean,
            noisy,
            noise_std,
            host,
            chosen,
            available: available.to_vec(),
            k,
        })
    }

    /// The gates `[b, p]`: softmax of `H` over each example's chosen peers that `answered`,
    /// zero elsewhere; and, per example, 1 when at least one of its chosen peers answered.
    pub fn gates(&self, routing: &Routing, answered: &[bool]) -> Result<(Tensor, Vec<f32>)> {
        let b = routing.chosen.len();
        let mut mask = vec![-1e9f32; b * self.peers];
        let mut valid = vec![0f32; b];
        for (r, chosen) in routing.chosen.iter().enumerate() {
            for &p in chosen {
                if answered[p] {
                    mask[r * self.peers + p] = 0.0;
                    valid[r] = 1.0;
                }
            }
        }
        let dev = routing.noisy.device();
        let mask = Tensor::from_vec(mask, (b, self.peers), dev)?;
        let valid_t = Tensor::from_vec(valid.clone(), (b, 1), dev)?;
        let gates = candle_nn::ops::softmax(&(&routing.noisy + mask)?, D::Minus1)?;
        Ok((gates.broadcast_mul(&valid_t)?, valid))
    }

    /// `w_importance * CV(importance)^2 + w_load * CV(load)^2` over the available peers, where
    /// importance is each peer's gate mass in the batch and load the smooth estimate of how
    /// many examples pick it (the normal CDF of `H`'s margin over the k-th best alternative;
    /// the threshold is held constant). Zero when no more than `k` peers are available.
    pub fn balance_loss(
        &self,
        routing: &Routing,
        gates: &Tensor,
        cfg: &RouterConfig,
    ) -> Result<Option<Tensor>> {
        let count = routing.available.iter().filter(|a| **a).count();
        if count <= routing.k || count < 2 {
            return Ok(None);
        }
        let dev = gates.device();
        let avail: Vec<f32> = routing
            .available
            .iter()
            .map(|&a| if a { 1.0 } else { 0.0 })
            .collect();
        let avail = Tensor::from_vec(avail, self.peers, dev)?;
        let importance = gates.sum(0)?;
        let mut loss = (cv_squared(&importance, &avail, count as f64)? * cfg.w_importance)?;
        if let Some(std) = &routing.noise_std {
            let b = routing.chosen.len();
            let mut thresh = vec![0f32; b * self.peers];
            for r in 0..b {
                let row = &routing.host[r * self.peers..(r + 1) * self.peers];
                let mut vals: Vec<f32> = (0..self.peers)
                    .filter(|&p| routing.available[p])
                    .map(|p| row[p])
                    .collect();
                vals.sort_by(|a, b| b.total_cmp(a));
                for p in 0..self.peers {
                    // The k-th best of the others: the (k+1)-th overall when p is in the top k.
                    let inside = routing.chosen[r].contains(&p);
                    let idx = if inside { routing.k } else { routing.k - 1 };
                    thresh[r * self.peers + p] = vals[idx.min(vals.len() - 1)];
                }
            }
            let thresh = Tensor::from_vec(thresh, (b, self.peers), dev)?;
            let z = ((&routing.clean - thresh)? / std)?;
            let prob = ((z * std::f64::consts::FRAC_1_SQRT_2)?.erf()? + 1.0)?.affine(0.5, 0.0)?;
            let load = prob.sum(0)?;
            loss = (loss + (cv_squared(&load, &avail, count as f64)? * cfg.w_load)?)?;
        }
        Ok(Some(loss))
    }
}
