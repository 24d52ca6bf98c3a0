//! The neuron's decisions without I/O: which peers the router may choose, how a failed peer is
//! rested, whether a step trains with the network or the student, the epoch's statistics and
//! `dL/dm`, the weight rule, and when to evaluate and checkpoint.
//!
//! [`Core`] takes inputs (the queries' answers and failures, a metagraph [`Snapshot`], the
//! time on the shell's clock) and returns [`Effect`]s (query these peers with these rows, send
//! these gradients back, submit this weight row, evaluate, checkpoint). Two shells run it:
//! [`crate::Neuron`] over real sockets and the wall clock (`bt neuron run`, `bt net up
//! --transport grpc`), and the lockstep network of `bt-net`, where peers are called in
//! process and the clock is logical. The compute (routing, training, evaluation) stays in
//! [`Learner`](crate::learner::Learner); the core only decides.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::learner::{Mode, PeerOutput, StepOutcome};
use crate::ledger::Snapshot;
use crate::weights::{
    PayoffInput, WeightConfig, WeightRule, copy_step, drop_peers, ema_step, group_step,
    payoff_step, self_step, uniform_step, value_step,
};

/// Milliseconds on the shell's clock: wall time for the grpc shell, `height * block_time`
/// for the lockstep shell.
pub type Millis = u64;

/// What the shell must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Send Forward to `peer` with these rows of the batch.
    Query {
        /// The peer's uid.
        peer: usize,
        /// Rows of the batch routed to it.
        rows: Vec<usize>,
    },
    /// Send Backward to `peer`: the gradient of this neuron's loss with respect to its answer.
    Backward {
        /// The peer's uid.
        peer: usize,
        /// The rows it answered.
        rows: Vec<usize>,
        /// `[rows, t, d]` row-major.
        grad: Vec<f32>,
    },
    /// Sign and submit this weight row (on the simplex, by uid).
    SetWeights {
        /// The row.
        row: Vec<f64>,
    },
    /// Measure the held-out loss in this mode.
    Evaluate {
        /// The mode.
        mode: Mode,
    },
    /// Save the learner.
    Checkpoint,
}

/// The settings the core decides with.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// Peer slots (uids `0..max_peers`).
    pub max_peers: usize,
    /// Fewest answering peers for a step to train with the network.
    pub k_min: usize,
    /// Steps per epoch.
    pub epoch_steps: usize,
    /// The weight rule and its settings.
    pub weights: WeightConfig,
    /// Whether axons apply the competitive mask.
    pub mask: bool,
    /// Whether the neuron has a ledger (without one and without peers it trains alone).
    pub ledger: bool,
    /// Whether checkpoints are on.
    pub checkpoint: bool,
    /// Whether a peer whose answers do not lower this neuron's loss rests from routing
    /// ([`PeerRest`]); `router.rest_unhelpful`.
    pub rest_unhelpful: bool,
}

#[derive(Clone, Copy, Debug, Default)]
struct Health {
    failures: u32,
    until: Option<Millis>,
}

/// A peer's standing with the unhelpful-peer rule ([`CoreConfig::rest_unhelpful`]).
///
/// At the end of each epoch, each peer that answered at least [`PeerRest::MIN_BATCHES`]
/// batches is judged by its worth: the batch loss with its answer zeroed minus the loss with
/// it ([`PeerGradient::removal_cost`]). It paid when its mean worth is above its standard
/// error; not when it is below or within one standard error of 0. The first epoch a peer is
/// judged on only starts its record (its adapter starts closed, so every peer is worth about 0
/// then, helpful or not). Two unpaid epochs in a row rest it for one epoch, and each unpaid
/// epoch after a rest doubles the rest (2, 4, up to [`PeerRest::MAX_EPOCHS`]); a paid epoch
/// clears the strikes. A rest covers its epochs, the held-out evaluation that ends the last
/// of them and the step right after it; then the peer is routed again and judged anew. While
/// it rests, a measuring weight rule (`payoff`, `value`, `ema`) gives it no weight
/// ([`crate::weights::drop_peers`]): the learner does not pay for what it does not use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerRest {
    /// Whether an epoch of the peer's has been judged (the first only starts the record).
    pub seen: bool,
    /// Judged epochs in a row that did not pay (rests between them do not break the row).
    pub strikes: u32,
    /// The core's step count through which the peer rests, if it was rested.
    pub until: Option<usize>,
}

impl PeerRest {
    /// Fewest batches a peer must have answered in an epoch to be judged on it.
    pub const MIN_BATCHES: u64 = 2;
    /// The longest rest, in epochs.
    pub const MAX_EPOCHS: u32 = 8;

    /// Whether the peer rests at the core's step count `step`.
    pub fn resting(&self, step: usize) -> bool {
        self.until.is_some_and(|u| step <= u)
    }

    /// The standing at the end of an epoch (the core at `step`, epochs of `epoch_steps`) in
    /// which the peer answered `n` batches, of mean worth `mean` with standard error `se`.
    fn after_epoch(self, n: u64, mean: f64, se: f64, step: usize, epoch_steps: usize) -> PeerRest {
        if self.resting(step) || n < PeerRest::MIN_BATCHES {
            return self;
        }
        if !self.seen || mean > se {
            return PeerRest {
                seen: true,
                strikes: 0,
                until: None,
            };
        }
        let strikes = self.strikes.saturating_add(1);
        let until = (strikes >= 2).then(|| {
            let epochs = (1u32 << (strikes - 2).min(16)).min(PeerRest::MAX_EPOCHS);
            step.saturating_add(epochs as usize * epoch_steps)
        });
        PeerRest {
            seen: true,
            strikes,
            until: until.or(self.until),
        }
    }
}

/// The mean of `n` values with sum `sum` and sum of squares `sum_sq`, and the squared standard
/// error of that mean (the sample variance over `n`; infinite with fewer than two values).
pub(crate) fn mean_and_variance(sum: f64, sum_sq: f64, n: usize) -> (f64, f64) {
    let k = n.max(1) as f64;
    let mean = sum / k;
    let var = if n < 2 {
        f64::INFINITY
    } else {
        ((sum_sq - k * mean * mean) / (k - 1.0)).max(0.0) / k
    };
    (mean, var)
}

#[derive(Clone, Debug, Default)]
struct EpochStats {
    dot: Vec<f64>,
    count: Vec<u64>,
    /// Sum of each peer's per-batch worth ([`PeerGradient::removal_cost`]), and of its square.
    worth: Vec<f64>,
    worth_sq: Vec<f64>,
    importance: Vec<f64>,
    steps: u64,
}

/// What ending an epoch decided.
#[derive(Debug, Default)]
pub struct EpochPlan {
    /// Mean gate importance of each uid over the epoch.
    pub importance: Vec<f64>,
    /// `dL/dm_ij` of each uid over the epoch (`None` where never queried); empty without a
    /// snapshot.
    pub dl_dm: Vec<Option<f64>>,
    /// In order: `SetWeights` (when there is a ledger and a row could be chosen),
    /// `Evaluate` (network or alone, then student when not alone), `Checkpoint` (when on).
    pub effects: Vec<Effect>,
    /// Why no weight row was chosen, when there is a ledger but none was.
    pub weights_error: Option<Error>,
    /// Mean worth of each uid's answers over the epoch (`None` where never answered).
    pub worth: Vec<Option<f64>>,
    /// The standard error of each mean worth (`None` where fewer than two batches).
    pub worth_se: Vec<Option<f64>>,
    /// The uids resting from routing now, through this epoch's evaluation (with
    /// `rest_unhelpful`), ascending.
    pub resting: Vec<usize>,
}

/// What the core carries across a restart, saved with each checkpoint: the steps taken (and
/// with them the place in the epoch, so weights, evaluation and checkpoints keep their
/// schedule) and the value rule's moving averages. The epoch's statistics are not kept: a
/// checkpoint is written at an epoch's end, when they have just been reset.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoreState {
    /// Steps taken.
    pub step: usize,
    /// The value rule's moving average of each peer's measured value, by uid.
    #[serde(default)]
    pub value: Vec<f64>,
    /// Each peer's standing with the unhelpful-peer rule, by uid (empty: none resting).
    #[serde(default)]
    pub rest: Vec<PeerRest>,
}

impl CoreState {
    /// The key of a checkpoint's metadata that holds the state.
    pub const KEY: &'static str = "bt.neuron.core";

    /// The state as text, for a checkpoint's metadata.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a state written by [`CoreState::encode`]; the reason when it is not one.
    pub fn decode(text: &str) -> std::result::Result<CoreState, String> {
        let state: CoreState = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if let Some(v) = state.value.iter().find(|v| !v.is_finite()) {
            return Err(format!("a value average is {v}"));
        }
        Ok(state)
    }
}

/// The neuron's decisions.
#[derive(Clone, Debug)]
pub struct Core {
    cfg: CoreConfig,
    health: Vec<Health>,
    stats: EpochStats,
    step: usize,
    /// The value rule's moving average of each peer's measured value, by uid.
    value: Vec<f64>,
    /// Each peer's standing with the unhelpful-peer rule, by uid.
    rest: Vec<PeerRest>,
}

impl Core {
    /// A core that has taken no step.
    pub fn new(cfg: CoreConfig) -> Core {
        let p = cfg.max_peers;
        let mut c = Core {
            health: vec![Health::default(); p],
            stats: EpochStats::default(),
            step: 0,
            value: Vec::new(),
            rest: vec![PeerRest::default(); p],
            cfg,
        };
        c.reset_stats();
        c
    }

    /// A core that continues from a checkpoint's state: `state.step` steps taken, so the
    /// next epoch ends at the next multiple of `epoch_steps`.
    pub fn resume(cfg: CoreConfig, state: CoreState) -> Core {
        let mut c = Core::new(cfg);
        c.step = state.step;
        c.value = state.value;
        for (r, s) in c.rest.iter_mut().zip(state.rest) {
            *r = s;
        }
        c
    }

    /// What a checkpoint saves of the core.
    pub fn state(&self) -> CoreState {
        let judged = self.rest.iter().any(|r| *r != PeerRest::default());
        CoreState {
            step: self.step,
            value: self.value.clone(),
            rest: if judged {
                self.rest.clone()
            } else {
                Vec::new()
            },
        }
    }

    fn reset_stats(&mut self) {
        let p = self.cfg.max_peers;
        self.stats = EpochStats {
            dot: vec![0.0; p],
            count: vec![0; p],
            worth: vec![0.0; p],
            worth_sq: vec![0.0; p],
            importance: vec![0.0; p],
            steps: 0,
        };
    }

    /// The settings.
    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    /// Steps taken.
    pub fn step(&self) -> usize {
        self.step
    }

    /// Peers the router may choose at `now`: `known` (has an endpoint), not resting after
    /// failures, and not resting as unhelpful.
    pub fn available(&self, known: &[bool], now: Millis) -> Vec<bool> {
        (0..self.cfg.max_peers)
            .map(|p| {
                known.get(p).copied().unwrap_or(false)
                    && self.health[p].until.is_none_or(|u| now >= u)
                    && !self.rest[p].resting(self.step)
            })
            .collect()
    }

    /// The queries of one routing: a `Query` for every known peer with rows, in uid order.
    pub fn queries(&self, rows: &[Vec<usize>], known: &[bool]) -> Vec<Effect> {
        rows.iter()
            .enumerate()
            .filter(|(p, r)| !r.is_empty() && known.get(*p).copied().unwrap_or(false))
            .map(|(peer, r)| Effect::Query {
                peer,
                rows: r.clone(),
            })
            .collect()
    }

    /// Records which queried peers answered at `now`. A peer that fails is left out of
    /// routing for 250 ms, doubling with each further failure up to 10 s, so that the router
    /// sends its examples to the next best peers instead of the student; then it is tried
    /// again. Gives back whether every query was answered (if not, the shell routes once more).
    pub fn note_answers(&mut self, now: Millis, queries: &[Effect], outs: &[PeerOutput]) -> bool {
        let mut all = true;
        for q in queries {
            let Effect::Query { peer, .. } = q else {
                continue;
            };
            let h = &mut self.health[*peer];
            if outs.iter().any(|o| o.peer == *peer) {
                *h = Health::default();
            } else {
                all = false;
                h.failures = h.failures.saturating_add(1);
                let rest = 250u64.saturating_mul(1 << h.failures.min(6).saturating_sub(1));
                h.until = Some(now.saturating_add(rest.min(10_000)));
            }
        }
        all
    }

    /// How a step with `queried` peers of which `answered` replied trains: with the network
    /// when at least `k_min` (or all queried, if fewer) answered, else with the student.
    /// Without any available peer: alone without a ledger, the student with one.
    pub fn mode(&self, queried: usize, answered: usize) -> Mode {
        if queried == 0 {
            if self.cfg.ledger {
                Mode::Student
            } else {
                Mode::Alone
            }
        } else if answered >= self.cfg.k_min.min(queried) && answered > 0 {
            Mode::Network
        } else {
            Mode::Student
        }
    }

    /// Records a step's outcome in the epoch's statistics and gives back the Backward effects
    /// (one per answering peer that is `known`, in uid order).
    pub fn record_step(&mut self, outcome: StepOutcome, known: &[bool]) -> Vec<Effect> {
        self.step += 1;
        self.stats.steps += 1;
        for (p, v) in outcome.importance.iter().enumerate() {
            if let Some(x) = self.stats.importance.get_mut(p) {
                *x += f64::from(*v);
            }
        }
        let mut grads = outcome.peer_grads;
        grads.sort_by_key(|g| g.peer);
        let mut out = Vec::with_capacity(grads.len());
        for g in grads {
            if g.peer >= self.cfg.max_peers {
                continue;
            }
            self.stats.dot[g.peer] += g.grad_dot_output;
            self.stats.worth[g.peer] += g.removal_cost;
            self.stats.worth_sq[g.peer] += g.removal_cost * g.removal_cost;
            self.stats.count[g.peer] += 1;
            if known.get(g.peer).copied().unwrap_or(false) {
                out.push(Effect::Backward {
                    peer: g.peer,
                    rows: g.rows,
                    grad: g.grad,
                });
            }
        }
        out
    }

    /// Whether the step just taken ends an epoch.
    pub fn epoch_due(&self) -> bool {
        self.step > 0 && self.step.is_multiple_of(self.cfg.epoch_steps)
    }

    /// The mask peer `j` applies to neuron `i` (1 when masking is off).
    pub fn mask_of(&self, s: &Snapshot, i: usize, j: usize) -> f64 {
        if self.cfg.mask {
            s.mask(i, j, self.cfg.weights.temperature)
        } else {
            1.0
        }
    }

    /// Ends an epoch: the importance, `dL/dm` and worth of the epoch, which peers rest from
    /// routing (with `rest_unhelpful`, by [`PeerRest`]'s rule; a rest starts at once, so the
    /// evaluation this plans leaves those peers out), the next weight row (when there is a
    /// ledger), and what to evaluate and whether to checkpoint. `snapshot` is the
    /// metagraph just read and `me` this neuron's uid in it; `has_peers` says whether any peer
    /// is known (without a ledger and without peers the evaluation is alone). Resets the
    /// epoch's statistics.
    pub fn end_epoch(
        &mut self,
        snapshot: Option<&Snapshot>,
        me: Option<usize>,
        has_peers: bool,
    ) -> EpochPlan {
        let steps = self.stats.steps.max(1) as f64;
        let importance: Vec<f64> = self.stats.importance.iter().map(|v| v / steps).collect();
        let (worth, worth_se): (Vec<Option<f64>>, Vec<Option<f64>>) = (0..self.cfg.max_peers)
            .map(|p| {
                let n = self.stats.count[p] as usize;
                let (mean, var) = mean_and_variance(self.stats.worth[p], self.stats.worth_sq[p], n);
                ((n > 0).then_some(mean), (n >= 2).then(|| var.sqrt()))
            })
            .unzip();
        if self.cfg.rest_unhelpful {
            let (step, epoch_steps) = (self.step, self.cfg.epoch_steps);
            for (p, r) in self.rest.iter_mut().enumerate() {
                *r = r.after_epoch(
                    self.stats.count[p],
                    worth[p].unwrap_or(0.0),
                    worth_se[p].unwrap_or(f64::INFINITY),
                    step,
                    epoch_steps,
                );
            }
        }
        let mut plan = EpochPlan {
            importance: importance.clone(),
            resting: self.resting().collect(),
            worth,
            worth_se,
            ..EpochPlan::default()
        };
        if self.cfg.ledger {
            let m: Vec<f64> = match (snapshot, me) {
                (Some(s), Some(i)) => (0..s.neurons.len())
                    .map(|j| self.mask_of(s, i, j))
                    .collect(),
                _ => Vec::new(),
            };
            plan.dl_dm = self.dl_dm(&m);
            match self.next_row(snapshot, me, &importance, &m, &plan.dl_dm) {
                Ok(row) => plan.effects.push(Effect::SetWeights { row }),
                Err(e) => plan.weights_error = Some(e),
            }
        }
        let mode = if self.cfg.ledger || has_peers {
            Mode::Network
        } else {
            Mode::Alone
        };
        plan.effects.push(Effect::Evaluate { mode });
        if mode != Mode::Alone {
            plan.effects.push(Effect::Evaluate {
                mode: Mode::Student,
            });
        }
        if self.cfg.checkpoint {
            plan.effects.push(Effect::Checkpoint);
        }
        self.reset_stats();
        plan
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

    /// The next weight row by the configured rule.
    fn next_row(
        &mut self,
        snapshot: Option<&Snapshot>,
        me: Option<usize>,
        importance: &[f64],
        m: &[f64],
        dl_dm: &[Option<f64>],
    ) -> Result<Vec<f64>> {
        let snap = snapshot.ok_or(Error::NoMetagraph)?;
        let i = me.ok_or(Error::NotRegistered)?;
        let n = snap.neurons.len();
        let row = &snap.w[i];
        let cfg = &self.cfg.weights;
        Ok(match cfg.rule {
            WeightRule::SelfOnly => self_step(row, i, snap.epsilon),
            WeightRule::Copy => copy_step(&snap.w, &snap.stake_frac, i, snap.epsilon),
            WeightRule::Lazy => uniform_step(row, snap.epsilon),
            WeightRule::Group => {
                let members: Vec<usize> = cfg.group.iter().filter_map(|k| snap.uid_of(k)).collect();
                group_step(row, i, &members, snap.epsilon)
            }
            WeightRule::Ema => {
                let imp: Vec<f64> = (0..n)
                    .map(|j| importance.get(j).copied().unwrap_or(0.0))
                    .collect();
                self.unweigh_resting(row, &ema_step(row, i, &imp, cfg, snap.epsilon), i, snap)
            }
            WeightRule::Value => {
                let step = value_step(row, i, dl_dm, &self.value, cfg, snap.epsilon);
                self.value = step.value;
                self.unweigh_resting(row, &step.row, i, snap)
            }
            WeightRule::Payoff => {
                let next = payoff_step(
                    &PayoffInput {
                        row,
                        i,
                        stake_i: snap.stake_frac[i],
                        dl_dm,
                        m,
                        tau: snap.tau,
                        epsilon: snap.epsilon,
                    },
                    cfg,
                );
                self.unweigh_resting(row, &next, i, snap)
            }
        })
    }

    /// The uids resting as unhelpful now, ascending (none unless `rest_unhelpful`).
    fn resting(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.rest.len()).filter(|&p| self.rest[p].resting(self.step))
    }

    /// A measuring rule's `next` row without the peers resting as unhelpful (none unless
    /// `rest_unhelpful`), within the ledger's bound of `row`.
    fn unweigh_resting(&self, row: &[f64], next: &[f64], i: usize, snap: &Snapshot) -> Vec<f64> {
        let resting: Vec<usize> = self
            .resting()
            .filter(|&j| j != i && j < next.len())
            .collect();
        if resting.is_empty() {
            return next.to_vec();
        }
        drop_peers(row, next, &resting, i, snap.epsilon)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learner::PeerGradient;

    fn core(ledger: bool) -> Core {
        Core::new(CoreConfig {
            max_peers: 4,
            k_min: 1,
            epoch_steps: 2,
            weights: WeightConfig::default(),
            mask: true,
            ledger,
            checkpoint: false,
            rest_unhelpful: true,
        })
    }

    #[test]
    fn a_resumed_core_continues_at_its_step_and_epoch() {
        let mut c = core(true);
        for _ in 0..3 {
            c.record_step(StepOutcome::default(), &[true; 4]);
        }
        let saved = CoreState::decode(&c.state().encode()).expect("decodes");
        assert_eq!(saved.step, 3);
        let mut r = Core::resume(c.config().clone(), saved);
        assert_eq!(r.step(), 3);
        assert!(!r.epoch_due(), "step 3 of 2-step epochs is mid-epoch");
        r.record_step(StepOutcome::default(), &[true; 4]);
        assert_eq!(r.step(), 4);
        assert!(
            r.epoch_due(),
            "the epoch ends at step 4, as without the restart"
        );
    }

    #[test]
    fn a_damaged_core_state_is_refused() {
        assert!(CoreState::decode("{\"step\": 7}").is_ok());
        for bad in [
            "",
            "{\"step\": -1}",
            "{\"step\": 7, \"extra\": 1}",
            "{\"step\": 7, \"value\": [null]}",
            "not json",
        ] {
            assert!(CoreState::decode(bad).is_err(), "{bad:?} decodes");
        }
    }

    #[test]
    fn a_failed_peer_rests_then_returns() {
        let mut c = core(true);
        let known = [true, true, false, true];
        assert_eq!(c.available(&known, 0), vec![true, true, false, true]);
        let q = c.queries(&[vec![0], vec![1, 2], vec![3], vec![]], &known);
        assert_eq!(
            q.len(),
            2,
            "unknown peer 2 and empty peer 3 are not queried"
        );
        let outs = [PeerOutput {
            peer: 0,
            rows: vec![0],
            values: vec![],
        }];
        assert!(!c.note_answers(1000, &q, &outs));
        assert_eq!(c.available(&known, 1100), vec![true, false, false, true]);
        assert_eq!(c.available(&known, 1250), vec![true, true, false, true]);
        // A second failure rests it twice as long.
        assert!(!c.note_answers(1250, &q, &outs));
        assert!(!c.available(&known, 1700)[1]);
        assert!(c.available(&known, 1750)[1]);
    }

    /// An epoch of 6 steps in which peer 1 answers the last `worth.len()` batches, each
    /// worth as given (and peer 2 every batch, worth +1), ended: the uids resting now.
    fn epoch_worth(c: &mut Core, worth: &[f64]) -> Vec<usize> {
        let known = [true; 4];
        let steps = c.config().epoch_steps;
        for k in 0..steps {
            let g = |peer, removal_cost| PeerGradient {
                peer,
                rows: vec![0],
                grad: vec![0.0],
                grad_dot_output: 0.0,
                removal_cost,
            };
            let mut peer_grads = vec![g(2, 1.0)];
            if let Some(w) = (k + worth.len())
                .checked_sub(steps)
                .and_then(|i| worth.get(i))
            {
                peer_grads.push(g(1, *w));
            }
            let outcome = StepOutcome {
                peer_grads,
                ..StepOutcome::default()
            };
            c.record_step(outcome, &known);
        }
        assert!(c.epoch_due());
        c.end_epoch(None, None, true).resting
    }

    fn resting_core(rest_unhelpful: bool) -> Core {
        Core::new(CoreConfig {
            epoch_steps: 6,
            rest_unhelpful,
            ..core(false).cfg
        })
    }

    #[test]
    fn a_peer_whose_answers_do_not_pay_rests_longer_each_time_and_returns() {
        let mut c = resting_core(true);
        let routable = |c: &Core| c.available(&[true; 4], 0)[1];
        let none = Vec::<usize>::new();
        let unpaid = [-1e-4; 6];
        // The first judged epoch only starts the record: every adapter starts closed.
        assert_eq!(epoch_worth(&mut c, &unpaid), none);
        // One unpaid epoch is a strike, not yet a rest.
        assert_eq!(epoch_worth(&mut c, &unpaid), none);
        assert!(routable(&c));
        // A second in a row (worth 0 does not pay) rests it at once, through the evaluation
        // that ends its epoch of rest and the step after it.
        assert_eq!(epoch_worth(&mut c, &[0.0; 6]), vec![1]);
        assert!(!routable(&c));
        assert_eq!(epoch_worth(&mut c, &[]), vec![1]);
        assert!(
            !routable(&c),
            "still out for the evaluation that ends the rest"
        );
        // Tried again (from the epoch's second step), unpaid again: two epochs, then four.
        assert_eq!(epoch_worth(&mut c, &unpaid[1..]), vec![1]);
        assert_eq!(epoch_worth(&mut c, &[]), vec![1]);
        assert_eq!(epoch_worth(&mut c, &[]), vec![1]);
        assert_eq!(epoch_worth(&mut c, &unpaid[1..]), vec![1]);
        for _ in 0..4 {
            assert_eq!(epoch_worth(&mut c, &[]), vec![1]);
        }
        // A positive mean within one standard error of 0 does not pay: eight epochs, the
        // longest rest.
        let saved = CoreState::decode(&c.state().encode()).expect("decodes");
        assert_eq!(
            epoch_worth(&mut c, &[0.01, -0.008, 0.01, -0.008, 0.01]),
            vec![1]
        );
        assert_eq!(c.rest[1].strikes, 5);
        for _ in 0..PeerRest::MAX_EPOCHS {
            assert_eq!(epoch_worth(&mut c, &[]), vec![1]);
        }
        assert_eq!(epoch_worth(&mut c, &[2e-3; 5]), none, "back, and it pays");
        assert!(routable(&c));
        // The standing survives a restart: the same unpaid epoch rests the resumed core alike.
        assert_eq!(saved.rest[1].strikes, 4);
        let mut r = Core::resume(c.config().clone(), saved);
        assert_eq!(epoch_worth(&mut r, &[-1e-4; 5]), vec![1]);
        assert_eq!(r.rest[1].strikes, 5);
    }

    #[test]
    fn a_paid_epoch_clears_the_strikes_and_a_helpful_peer_never_rests() {
        let mut c = resting_core(true);
        let none = Vec::<usize>::new();
        assert_eq!(epoch_worth(&mut c, &[-1e-4; 6]), none);
        assert_eq!(epoch_worth(&mut c, &[-1e-4; 6]), none);
        assert_eq!(c.rest[1].strikes, 1);
        // Too few answered batches decide nothing.
        assert_eq!(epoch_worth(&mut c, &[-1.0]), none);
        assert_eq!(c.rest[1].strikes, 1);
        assert_eq!(epoch_worth(&mut c, &[2e-3; 6]), none);
        assert_eq!(c.rest[1].strikes, 0);
        assert_eq!(
            epoch_worth(&mut c, &[-1e-4; 6]),
            none,
            "one strike again, no rest"
        );
        assert_eq!(
            c.rest[2],
            PeerRest {
                seen: true,
                strikes: 0,
                until: None,
            }
        );
        // The rule off rests no one and saves no standing.
        let mut off = resting_core(false);
        for _ in 0..6 {
            assert_eq!(epoch_worth(&mut off, &[-1.0; 6]), none);
        }
        assert!(off.state().rest.is_empty());
    }

    #[test]
    fn the_mode_follows_the_answers() {
        let c = core(true);
        assert_eq!(c.mode(0, 0), Mode::Student);
        assert_eq!(core(false).mode(0, 0), Mode::Alone);
        assert_eq!(c.mode(2, 0), Mode::Student);
        assert_eq!(c.mode(2, 1), Mode::Network);
    }

    #[test]
    fn backward_effects_come_in_uid_order_and_epochs_reset() {
        let mut c = core(true);
        let g = |peer| PeerGradient {
            peer,
            rows: vec![0],
            grad: vec![1.0],
            grad_dot_output: 0.5,
            removal_cost: 0.0,
        };
        let outcome = StepOutcome {
            peer_grads: vec![g(3), g(1)],
            importance: vec![0.0, 0.5, 0.0, 0.5],
            ..StepOutcome::default()
        };
        let fx = c.record_step(outcome, &[true; 4]);
        let peers: Vec<usize> = fx
            .iter()
            .map(|e| match e {
                Effect::Backward { peer, .. } => *peer,
                _ => usize::MAX,
            })
            .collect();
        assert_eq!(peers, vec![1, 3]);
        assert!(!c.epoch_due());
        c.record_step(StepOutcome::default(), &[true; 4]);
        assert!(c.epoch_due());
        let plan = c.end_epoch(None, None, true);
        assert!(matches!(plan.weights_error, Some(Error::NoMetagraph)));
        assert_eq!(
            plan.effects,
            vec![
                Effect::Evaluate {
                    mode: Mode::Network
                },
                Effect::Evaluate {
                    mode: Mode::Student
                }
            ]
        );
        assert_eq!(plan.importance, vec![0.0, 0.25, 0.0, 0.25]);
        let plan = c.end_epoch(None, None, true);
        assert_eq!(plan.importance, vec![0.0; 4], "statistics reset");
    }
}
