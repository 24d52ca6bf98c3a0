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
    PayoffInput, WeightConfig, WeightRule, copy_step, ema_step, group_step, payoff_step, self_step,
    uniform_step, value_step,
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
}

#[derive(Clone, Copy, Debug, Default)]
struct Health {
    failures: u32,
    until: Option<Millis>,
}

#[derive(Clone, Debug, Default)]
struct EpochStats {
    dot: Vec<f64>,
    count: Vec<u64>,
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
        c
    }

    /// What a checkpoint saves of the core.
    pub fn state(&self) -> CoreState {
        CoreState {
            step: self.step,
            value: self.value.clone(),
        }
    }

    fn reset_stats(&mut self) {
        let p = self.cfg.max_peers;
        self.stats = EpochStats {
            dot: vec![0.0; p],
            count: vec![0; p],
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

    /// Peers the router may choose at `now`: `known` (has an endpoint) and not resting after
    /// failures.
    pub fn available(&self, known: &[bool], now: Millis) -> Vec<bool> {
        (0..self.cfg.max_peers)
            .map(|p| {
                known.get(p).copied().unwrap_or(false)
                    && self.health[p].until.is_none_or(|u| now >= u)
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

    /// Ends an epoch: the importance and `dL/dm` of the epoch, the next weight row (when
    /// there is a ledger), and what to evaluate and whether to checkpoint. `snapshot` is the
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
        let mut plan = EpochPlan {
            importance: importance.clone(),
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
                ema_step(row, i, &imp, cfg, snap.epsilon)
            }
            WeightRule::Value => {
                let step = value_step(row, i, dl_dm, &self.value, cfg, snap.epsilon);
                self.value = step.value;
                step.row
            }
            WeightRule::Payoff => payoff_step(
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
            ),
        })
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
