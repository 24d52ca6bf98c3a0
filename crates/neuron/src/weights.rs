//! How a neuron chooses its weight row, from the mechanism crate's payoff gradient (paper
//! eq. 13-14), from the measured value of each peer ([`value_step`], for the mechanisms that
//! pay nothing for a self-weight), or, for comparison, from an exponential moving average of
//! gate importance.
//!
//! The payoff rule moves row `i` along `G_ij = tau dR_i/dW_ij - alpha dL_i/dW_ij`, where
//! `dL_i/dW_ij = mask_chain(dL_i/dm_ij, m_ij, S_i, n, T)` chains the measured sensitivity of
//! the learner's loss to peer `j`'s mask multiplier through the mask (`bt_mechanism::payoff`),
//! projects onto the simplex, and shortens the step so that `||W_new - W_old||_2` stays below
//! the ledger's epsilon (a longer one would be refused).

use bt_keys::PublicKey;
use bt_mechanism::payoff::{mask_chain, rank_gradient};
use bt_mechanism::simplex::projected;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Which rule sets the weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightRule {
    /// Projected payoff-gradient ascent (the paper's game).
    Payoff,
    /// Peers weighed by their measured value to this learner, no self-weight
    /// ([`value_step`]): for the mechanisms whose rank pays nothing for a self-weight.
    Value,
    /// Exponential moving average of gate importance (plus a fixed self weight).
    Ema,
    /// All weight on itself (a selfish neuron, for experiments).
    SelfOnly,
    /// The stake-weighted mean of the other neurons' rows as the metagraph last showed them,
    /// measuring nothing ([`copy_step`]: the weight copier).
    Copy,
    /// A row uniform over every neuron, never revised by anything measured
    /// ([`uniform_step`]: an idle validator).
    Lazy,
    /// A row uniform over the hotkeys in `weights.group` but itself ([`group_step`]: a cabal,
    /// or one operator's identities and favourites).
    Group,
}

/// Settings of the weight rules.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WeightConfig {
    /// The rule.
    pub rule: WeightRule,
    /// `alpha`: weight of the loss term in the payoff. It converts nats of loss into units of
    /// rank; the simulator finds honest ranking at `alpha / tau` near 100 (see
    /// `docs/reproduction.md`), hence the default with the ledger's usual `tau = 1`.
    pub alpha: f64,
    /// `lambda`: step size of the payoff rule.
    pub lambda: f64,
    /// EMA rate of the importance rule.
    pub ema_rate: f64,
    /// Self weight kept by the importance rule.
    pub ema_self: f64,
    /// Mask temperature `T` (the same value the network's axons use).
    pub temperature: f64,
    /// The hotkeys the `group` rule weighs (SS58 addresses in a config file).
    pub group: Vec<PublicKey>,
}

impl Default for WeightConfig {
    fn default() -> WeightConfig {
        WeightConfig {
            rule: WeightRule::Payoff,
            alpha: 100.0,
            lambda: 1.0,
            ema_rate: 0.3,
            ema_self: 0.2,
            temperature: 0.05,
            group: Vec::new(),
        }
    }
}

impl WeightConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        for (name, v, lo, hi) in [
            ("alpha", self.alpha, 0.0, f64::MAX),
            ("lambda", self.lambda, 0.0, f64::MAX),
            ("ema_rate", self.ema_rate, 0.0, 1.0),
            ("ema_self", self.ema_self, 0.0, 1.0),
        ] {
            if !(v.is_finite() && v >= lo && v <= hi) {
                return Err(Error::Config(format!(
                    "weights.{name} must be in [{lo}, {hi}], got {v}"
                )));
            }
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(Error::Config(format!(
                "weights.temperature must be > 0, got {}",
                self.temperature
            )));
        }
        if self.rule == WeightRule::Group && self.group.is_empty() {
            return Err(Error::Config(
                "weights.rule = \"group\" needs the hotkeys it weighs in weights.group".into(),
            ));
        }
        Ok(())
    }
}

/// What the payoff rule needs about row `i`.
#[derive(Clone, Debug)]
pub struct PayoffInput<'a> {
    /// The current row (on the simplex), length `n`.
    pub row: &'a [f64],
    /// This neuron's uid.
    pub i: usize,
    /// This neuron's stake as a fraction of the total.
    pub stake_i: f64,
    /// `dL_i/dm_ij` measured over the epoch (`None` for peers not queried).
    pub dl_dm: &'a [Option<f64>],
    /// `m_ij`, the mask each peer applies to this neuron.
    pub m: &'a [f64],
    /// The ledger's inflation rate `tau`.
    pub tau: f64,
    /// The ledger's bound on the change of a row.
    pub epsilon: f64,
}

/// Shortens the step from `old` to `new` so that its L2 length is at most `0.95 * epsilon`
/// (a convex combination, so the result stays on the simplex).
pub fn clip_step(old: &[f64], new: &[f64], epsilon: f64) -> Vec<f64> {
    let dist = old
        .iter()
        .zip(new)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f64>()
        .sqrt();
    let limit = 0.95 * epsilon;
    if dist <= limit {
        return new.to_vec();
    }
    let f = limit / dist;
    old.iter().zip(new).map(|(a, b)| a + f * (b - a)).collect()
}

/// One step of the payoff rule (see the module docs).
pub fn payoff_step(inp: &PayoffInput<'_>, cfg: &WeightConfig) -> Vec<f64> {
    let n = inp.row.len();
    let mut next: Vec<f64> = (0..n)
        .map(|j| {
            let rank = inp.tau * rank_gradient(inp.i, j, inp.stake_i, n);
            let loss = match inp.dl_dm[j] {
                Some(g) if j != inp.i => mask_chain(g, inp.m[j], inp.stake_i, n, cfg.temperature),
                _ => 0.0,
            };
            inp.row[j] + cfg.lambda * (rank - cfg.alpha * loss)
        })
        .collect();
    next = projected(&next);
    clip_step(inp.row, &next, inp.epsilon)
}

/// One step of the importance rule: `(1 - rate) row + rate target`, where the target keeps
/// `ema_self` on `i` and spreads the rest in proportion to `importance`.
pub fn ema_step(
    row: &[f64],
    i: usize,
    importance: &[f64],
    cfg: &WeightConfig,
    epsilon: f64,
) -> Vec<f64> {
    let total: f64 = importance
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .map(|(_, v)| v.max(0.0))
        .sum();
    let target: Vec<f64> = (0..row.len())
        .map(|j| {
            if j == i {
                if total > 0.0 { cfg.ema_self } else { 1.0 }
            } else if total > 0.0 {
                (1.0 - cfg.ema_self) * importance[j].max(0.0) / total
            } else {
                0.0
            }
        })
        .collect();
    let next: Vec<f64> = row
        .iter()
        .zip(&target)
        .map(|(w, t)| (1.0 - cfg.ema_rate) * w + cfg.ema_rate * t)
        .collect();
    clip_step(row, &projected(&next), epsilon)
}

/// All weight on `i`, approached within the epsilon bound.
pub fn self_step(row: &[f64], i: usize, epsilon: f64) -> Vec<f64> {
    let target: Vec<f64> = (0..row.len())
        .map(|j| if j == i { 1.0 } else { 0.0 })
        .collect();
    clip_step(row, &target, epsilon)
}

/// `new` without the peers in `drop` (their weight goes to the others in proportion, or to
/// `i` itself when nothing else is left), within the ledger's bound `epsilon` of `old`: a row
/// that stops paying for peers the learner has stopped using (`router.rest_unhelpful`).
///
/// ```
/// use bt_neuron::weights::drop_peers;
/// let row = drop_peers(&[0.2, 0.4, 0.4], &[0.2, 0.4, 0.4], &[2], 0, 1.0);
/// assert!((row[0] - 1.0 / 3.0).abs() < 1e-12 && row[2] == 0.0);
/// ```
pub fn drop_peers(old: &[f64], new: &[f64], drop: &[usize], i: usize, epsilon: f64) -> Vec<f64> {
    let mut target: Vec<f64> = new
        .iter()
        .enumerate()
        .map(|(j, w)| if drop.contains(&j) { 0.0 } else { w.max(0.0) })
        .collect();
    let left: f64 = target.iter().sum();
    if left > 0.0 {
        target.iter_mut().for_each(|w| *w /= left);
    } else if let Some(w) = target.get_mut(i) {
        *w = 1.0;
    }
    clip_step(old, &target, epsilon)
}

/// One step of the copier toward the stake-weighted mean of the other rows,
/// `t_j = sum_{k != i} S_k W_kj / sum_{k != i} S_k`, within the ledger's bound: what a weight
/// copier submits without measuring anything. `w` is the metagraph's dense matrix and `stake`
/// the stake fractions; with no stake outside `i` the row stays.
pub fn copy_step(w: &[Vec<f64>], stake: &[f64], i: usize, epsilon: f64) -> Vec<f64> {
    let row = &w[i];
    let total: f64 = (0..w.len()).filter(|&k| k != i).map(|k| stake[k]).sum();
    if total <= 0.0 {
        return row.clone();
    }
    let target: Vec<f64> = (0..row.len())
        .map(|j| {
            (0..w.len())
                .filter(|&k| k != i)
                .map(|k| stake[k] * w[k].get(j).copied().unwrap_or(0.0))
                .sum::<f64>()
                / total
        })
        .collect();
    clip_step(row, &target, epsilon)
}

/// One step toward the uniform row over all `row.len()` neurons (itself included).
pub fn uniform_step(row: &[f64], epsilon: f64) -> Vec<f64> {
    let n = row.len().max(1) as f64;
    clip_step(row, &vec![1.0 / n; row.len()], epsilon)
}

/// One step toward the row uniform over `members` (uids; `i` and uids outside the row are left
/// out); with none left the row stays.
pub fn group_step(row: &[f64], i: usize, members: &[usize], epsilon: f64) -> Vec<f64> {
    let mut target = vec![0.0; row.len()];
    let chosen: Vec<usize> = members
        .iter()
        .copied()
        .filter(|&j| j != i && j < row.len())
        .collect();
    if chosen.is_empty() {
        return row.to_vec();
    }
    for &j in &chosen {
        target[j] = 1.0;
    }
    let k = target.iter().sum::<f64>();
    for t in &mut target {
        *t /= k;
    }
    clip_step(row, &target, epsilon)
}

/// What the value rule carries from one epoch to the next, and its new row.
#[derive(Clone, Debug, PartialEq)]
pub struct ValueStep {
    /// The next row (on the simplex, within `0.95 epsilon` of the old one).
    pub row: Vec<f64>,
    /// The moving average of each peer's measured value, to pass in next epoch.
    pub value: Vec<f64>,
}

/// One step of the value rule, for the mechanisms whose rank pays nothing for a
/// self-weight (`paper_no_self`, `yuma`): weigh each peer by what it is measured to be worth
/// to this learner.
///
/// A peer's value this epoch is `max(0, -dL_i/dm_ij)`: how much the loss falls per unit of
/// peer `j`'s mask multiplier (a peer whose answer raises the loss is worth 0, not less,
/// since a row cannot be negative). `value` keeps its moving average,
/// `v_j <- (1 - ema_rate) v_j + ema_rate max(0, -dL/dm_ij)` for the peers queried this
/// epoch (the others keep theirs), and `v_i = 0`: there is no self-weight, because under
/// these mechanisms it earns nothing and only takes weight from peers. The target row is
/// `v / sum(v)`; the row moves toward it as far as the ledger's `epsilon` allows
/// ([`clip_step`]). With no measured value yet (`sum(v) = 0`) the row stays as it is.
pub fn value_step(
    row: &[f64],
    i: usize,
    dl_dm: &[Option<f64>],
    value: &[f64],
    cfg: &WeightConfig,
    epsilon: f64,
) -> ValueStep {
    let n = row.len();
    let value: Vec<f64> = (0..n)
        .map(|j| {
            let old = value
                .get(j)
                .copied()
                .filter(|v| v.is_finite())
                .unwrap_or(0.0)
                .max(0.0);
            if j == i {
                return 0.0;
            }
            match dl_dm.get(j).copied().flatten() {
                Some(g) if g.is_finite() => {
                    (1.0 - cfg.ema_rate) * old + cfg.ema_rate * (-g).max(0.0)
                }
                _ => old,
            }
        })
        .collect();
    let total: f64 = value.iter().sum();
    if total <= 0.0 {
        return ValueStep {
            row: row.to_vec(),
            value,
        };
    }
    let target: Vec<f64> = value.iter().map(|v| v / total).collect();
    ValueStep {
        row: clip_step(row, &target, epsilon),
        value,
    }
}

/// A row on the simplex as the ledger's raw `(uid, weight)` pairs ([`bt_ledger::raw_row`]).
pub fn to_raw(row: &[f64]) -> Result<Vec<(u32, u32)>> {
    bt_ledger::raw_row(row).map_err(|e| Error::Chain(bt_chain::Error::Ledger(e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bt_mechanism::simplex::on_simplex;

    #[test]
    fn dropped_peers_lose_their_weight_within_the_ledgers_bound() {
        let old = [0.1, 0.3, 0.6];
        // Unbounded: peer 2 goes to 0, the others share its weight in proportion.
        let row = drop_peers(&old, &old, &[2], 0, 10.0);
        assert!((row[0] - 0.25).abs() < 1e-12 && (row[1] - 0.75).abs() < 1e-12);
        assert_eq!(row[2], 0.0);
        // Bounded: a step of at most 0.95 epsilon toward that, still on the simplex.
        let row = drop_peers(&old, &old, &[2], 0, 0.2);
        let step: f64 = row.iter().zip(&old).map(|(a, b)| (a - b) * (a - b)).sum();
        assert!(step.sqrt() <= 0.95 * 0.2 + 1e-12 && row[2] < 0.6 && row[2] > 0.0);
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // Nothing left but the dropped: the row goes to the learner itself.
        let row = drop_peers(&[0.0, 0.5, 0.5], &[0.0, 0.5, 0.5], &[1, 2], 0, 10.0);
        assert_eq!(row, vec![1.0, 0.0, 0.0]);
    }

    fn cfg() -> WeightConfig {
        WeightConfig {
            alpha: 1.0,
            lambda: 2.0,
            ..WeightConfig::default()
        }
    }

    /// One payoff step of learner 0 from the uniform row of 4, where peer 1 lowers the loss
    /// by `g`, peer 2 raises it by `g`, and peer 3 was not queried.
    fn step_from_uniform(g: f64, epsilon: f64) -> (Vec<f64>, Vec<f64>) {
        let row = vec![0.25; 4];
        let dl_dm = [None, Some(-g), Some(g), None];
        let m = [0.5; 4];
        let inp = PayoffInput {
            row: &row,
            i: 0,
            stake_i: 0.25,
            dl_dm: &dl_dm,
            m: &m,
            tau: 0.1,
            epsilon,
        };
        let next = payoff_step(&inp, &cfg());
        (row, next)
    }

    #[test]
    fn payoff_moves_toward_helpful_peers_and_away_from_harmful_ones() {
        // Peer 1 helps (more of it lowers the loss), peer 2 hurts, peer 3 was not queried.
        let (row, next) = step_from_uniform(0.5, 10.0);
        assert!(on_simplex(&next, 1e-9), "{next:?}");
        assert!(next[1] > row[1] && next[2] < row[2], "{next:?}");
        assert!(next[1] > next[3] && next[3] > next[2], "{next:?}");
    }

    #[test]
    fn steps_respect_the_epsilon_bound() {
        let (row, next) = step_from_uniform(50.0, 0.1);
        let dist: f64 = row
            .iter()
            .zip(&next)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!(dist <= 0.095 + 1e-12 && dist > 0.09, "{dist}");
        assert!(on_simplex(&next, 1e-9));
        let s = self_step(&row, 2, 0.1);
        assert!(s[2] > 0.25 && on_simplex(&s, 1e-9));
    }

    #[test]
    fn ema_follows_importance() {
        let row = vec![0.25; 4];
        let next = ema_step(&row, 0, &[0.0, 0.9, 0.1, 0.0], &cfg(), 10.0);
        assert!(on_simplex(&next, 1e-9));
        assert!(next[1] > next[2] && next[2] > next[3], "{next:?}");
    }

    #[test]
    fn value_rule_weighs_peers_by_measured_value_and_never_itself() {
        let c = cfg();
        let row = vec![0.25; 4];
        // Peer 1 lowers the loss a lot, peer 2 a little, peer 3 raises it; 0 is itself.
        let dl_dm = [Some(-9.0), Some(-0.8), Some(-0.2), Some(0.5)];
        let step = value_step(&row, 0, &dl_dm, &[0.0; 4], &c, 10.0);
        assert_eq!(step.value[0], 0.0, "no self value");
        assert_eq!(step.value[3], 0.0, "harm is clipped at 0");
        assert!((step.value[1] - 0.3 * 0.8).abs() < 1e-12);
        assert!(on_simplex(&step.row, 1e-9));
        assert_eq!(step.row[0], 0.0, "no self weight");
        assert!((step.row[1] - 0.8).abs() < 1e-12 && (step.row[2] - 0.2).abs() < 1e-12);
        // The moving average: an unqueried peer keeps its value, a queried one moves.
        let next = value_step(
            &step.row,
            0,
            &[None, None, Some(-1.0), None],
            &step.value,
            &c,
            10.0,
        );
        assert_eq!(next.value[1], step.value[1]);
        assert!((next.value[2] - (0.7 * 0.06 + 0.3)).abs() < 1e-12);
        // Bounded by epsilon like the payoff rule.
        let small = value_step(&row, 0, &dl_dm, &[0.0; 4], &c, 0.1);
        let dist: f64 = row
            .iter()
            .zip(&small.row)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!(dist <= 0.095 + 1e-12, "{dist}");
        // Nothing measured: the row stays.
        let none = value_step(&row, 0, &[None; 4], &[0.0; 4], &c, 10.0);
        assert_eq!(none.row, row);
        // Bad measurements count as unmeasured.
        let bad = value_step(
            &row,
            0,
            &[None, Some(f64::NAN), None, None],
            &[0.0; 4],
            &c,
            10.0,
        );
        assert_eq!(bad.row, row);
    }

    #[test]
    fn raw_rows_refuse_bad_values() {
        let raw = to_raw(&[0.5, 0.0, 0.5]).unwrap();
        assert_eq!(raw.len(), 2);
        assert!(
            to_raw(&[f64::NAN, 1.0])
                .unwrap_err()
                .to_string()
                .contains("not finite")
        );
        assert!(
            to_raw(&[0.0, 0.0])
                .unwrap_err()
                .to_string()
                .contains("all zeros")
        );
        let mut c = cfg();
        c.temperature = 0.0;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("temperature")
        );
        c = cfg();
        c.ema_rate = 2.0;
        assert!(c.validate().unwrap_err().to_string().contains("ema_rate"));
    }

    #[test]
    fn the_copier_moves_to_the_stake_weighted_mean_of_the_other_rows() {
        // Neuron 2 copies: 0 (stake 0.6) weighs 1, 1 (stake 0.2) weighs 0; its own row and
        // stake count for nothing.
        let w = vec![
            vec![0.0, 1.0, 0.0],
            vec![1.0, 0.0, 0.0],
            vec![0.0, 0.0, 1.0],
        ];
        let stake = [0.6, 0.2, 0.2];
        let next = copy_step(&w, &stake, 2, 10.0);
        let want = [0.25, 0.75, 0.0];
        for (a, b) in next.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{next:?}");
        }
        // Within the bound it only moves part of the way, and stays on the simplex.
        let short = copy_step(&w, &stake, 2, 0.2);
        assert!(on_simplex(&short, 1e-9));
        assert!(short[2] > 0.5 && short[1] > 0.0);
        // No stake outside itself: nothing to copy.
        assert_eq!(copy_step(&w, &[0.0, 0.0, 1.0], 2, 10.0), w[2]);
    }

    #[test]
    fn the_lazy_row_goes_uniform_and_stays() {
        let mut row = vec![0.0, 0.0, 1.0, 0.0];
        for _ in 0..20 {
            row = uniform_step(&row, 0.3);
        }
        assert!(row.iter().all(|v| (v - 0.25).abs() < 1e-12), "{row:?}");
        assert_eq!(uniform_step(&row, 0.3), row);
    }

    #[test]
    fn a_group_row_weighs_only_the_other_members() {
        let row = vec![0.0, 1.0, 0.0, 0.0];
        // Member 1 of the group {1, 3} (and a uid beyond the row) weighs 3 only.
        let next = group_step(&row, 1, &[1, 3, 9], 10.0);
        assert_eq!(next, vec![0.0, 0.0, 0.0, 1.0]);
        let next = group_step(&row, 1, &[0, 1, 3], 10.0);
        assert_eq!(next, vec![0.5, 0.0, 0.0, 0.5]);
        // No other member registered: the row stays.
        assert_eq!(group_step(&row, 1, &[1], 10.0), row);
    }

    #[test]
    fn the_group_rule_needs_its_hotkeys() {
        let c = WeightConfig {
            rule: WeightRule::Group,
            ..WeightConfig::default()
        };
        assert!(matches!(c.validate(), Err(Error::Config(m)) if m.contains("weights.group")));
    }
}
