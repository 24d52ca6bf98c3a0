//! What a neuron reads from the ledger: a metagraph [`Snapshot`] (uids, endpoints, stake, the
//! weight matrix, tau, epsilon) and the competitive mask computed from it, which the neuron's
//! axon applies to every caller through [`LedgerView`].

use std::collections::BTreeMap;
use std::sync::RwLock;

use bt_chain::Metagraph;
use bt_keys::PublicKey;
use bt_ledger::{Mechanism, State, WEIGHT_ONE};
use bt_mechanism::mask::mask;
use bt_mechanism::mechanisms::column_shift;
use bt_wire::StakeView;

/// One neuron in a snapshot.
#[derive(Clone, Debug)]
pub struct NeuronInfo {
    /// Its uid (index in the metagraph).
    pub uid: usize,
    /// Its hotkey.
    pub hotkey: PublicKey,
    /// `ip:port` of its axon.
    pub endpoint: String,
    /// Stake in rao.
    pub stake: u64,
    /// Rank as a fraction of a TAO (the ledger's `R_j`).
    pub rank: f64,
}

impl NeuronInfo {
    /// Its stake in TAO.
    pub fn stake_tao(&self) -> f64 {
        self.stake as f64 / bt_ledger::RAO_PER_TAO as f64
    }
}

/// The ledger's state as one neuron sees it at one height.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Block height.
    pub height: u64,
    /// Neurons by uid.
    pub neurons: Vec<NeuronInfo>,
    /// Stake as fractions of the total (`S`, summing to 1; uniform when no one has stake).
    pub stake_frac: Vec<f64>,
    /// The weight matrix, dense `n x n`, rows on the simplex.
    pub w: Vec<Vec<f64>>,
    /// `mu_j = (1/n) sum_k S_k W_kj` with the stake fractions (`k != j` where the mechanism
    /// drops the diagonal).
    pub mu: Vec<f64>,
    /// The mechanism the ledger runs.
    pub mechanism: Mechanism,
    /// Inflation rate `tau`.
    pub tau: f64,
    /// The ledger's bound on the change of a row.
    pub epsilon: f64,
    uid_of: BTreeMap<PublicKey, usize>,
}

impl Snapshot {
    /// The snapshot of a metagraph the chain client decoded and checked (with weights).
    pub fn from_metagraph(mg: &Metagraph) -> Snapshot {
        let neurons: Vec<NeuronInfo> = mg
            .neurons
            .iter()
            .map(|nm| NeuronInfo {
                uid: nm.uid as usize,
                hotkey: nm.hotkey,
                endpoint: nm.endpoint.clone(),
                stake: nm.stake,
                rank: nm.rank.to_f64(),
            })
            .collect();
        let rows: Vec<Vec<(u32, u32)>> = mg.neurons.iter().map(|nm| nm.row.clone()).collect();
        Snapshot::build(
            mg.height,
            neurons,
            &rows,
            mg.tau.to_f64(),
            mg.epsilon,
            mg.mechanism,
        )
    }

    /// The snapshot of a ledger state (the lockstep network reads the state directly).
    pub fn from_state(state: &State) -> Snapshot {
        let neurons: Vec<NeuronInfo> = state
            .neurons
            .iter()
            .map(|nm| NeuronInfo {
                uid: nm.uid as usize,
                hotkey: nm.hotkey,
                endpoint: nm.endpoint.to_string(),
                stake: nm.stake,
                rank: nm.rank.to_f64(),
            })
            .collect();
        let rows: Vec<Vec<(u32, u32)>> = state.neurons.iter().map(|nm| nm.row.clone()).collect();
        Snapshot::build(
            state.height,
            neurons,
            &rows,
            state.tau.to_f64(),
            state.params.epsilon,
            state.params.mechanism,
        )
    }

    /// A snapshot from checked parts: weight rows in the ledger's units (`WEIGHT_ONE` is 1),
    /// `epsilon` in weight units.
    fn build(
        height: u64,
        neurons: Vec<NeuronInfo>,
        rows: &[Vec<(u32, u32)>],
        tau: f64,
        epsilon: u64,
        mechanism: Mechanism,
    ) -> Snapshot {
        let n = neurons.len();
        let one = f64::from(WEIGHT_ONE);
        let mut w = vec![vec![0.0; n]; n];
        for (k, row) in rows.iter().enumerate() {
            for &(j, v) in row {
                w[k][j as usize] = f64::from(v) / one;
            }
        }
        let uid_of = neurons.iter().map(|x| (x.hotkey, x.uid)).collect();
        let total: f64 = neurons.iter().map(|x| x.stake as f64).sum();
        let stake_frac: Vec<f64> = if total > 0.0 {
            neurons.iter().map(|x| x.stake as f64 / total).collect()
        } else {
            vec![1.0 / n.max(1) as f64; n]
        };
        // `mu_j` is the rank of the stake fractions (eq. 7), under the ledger's mechanism.
        let mu = column_shift(mechanism, &stake_frac, &w);
        Snapshot {
            height,
            neurons,
            stake_frac,
            w,
            mu,
            mechanism,
            tau,
            epsilon: epsilon as f64 / one,
            uid_of,
        }
    }

    /// The uid of `hotkey`, if registered.
    pub fn uid_of(&self, hotkey: &PublicKey) -> Option<usize> {
        self.uid_of.get(hotkey).copied()
    }

    /// `m_ij = sigmoid((S_i W_ij - mu_j) / T)`: how much of `j`'s output `i` receives.
    pub fn mask(&self, i: usize, j: usize, temperature: f64) -> f64 {
        mask(self.stake_frac[i], self.w[i][j], self.mu[j], temperature)
    }

    /// The mask a caller that is not registered receives from `j` (no stake, no weight).
    pub fn mask_unregistered(&self, j: usize, temperature: f64) -> f64 {
        mask(0.0, 0.0, self.mu[j], temperature)
    }
}

/// The axon's view of the ledger: orders the queue by stake and scales each caller's answer
/// by its competitive mask. Refreshed by the neuron after each new metagraph.
pub struct LedgerView {
    me: PublicKey,
    temperature: f64,
    enabled: bool,
    snapshot: RwLock<Option<Snapshot>>,
}

impl LedgerView {
    /// A view for the neuron `me`; with `enabled` false the mask is not applied (every caller
    /// gets the full answer).
    pub fn new(me: PublicKey, temperature: f64, enabled: bool) -> LedgerView {
        LedgerView {
            me,
            temperature,
            enabled,
            snapshot: RwLock::new(None),
        }
    }

    /// Replaces the snapshot.
    pub fn update(&self, snapshot: Snapshot) {
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Some(snapshot);
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Option<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl StakeView for LedgerView {
    fn stake(&self, hotkey: &PublicKey) -> u64 {
        let s = self.snapshot.read().unwrap_or_else(|e| e.into_inner());
        s.as_ref()
            .and_then(|s| s.uid_of(hotkey).map(|u| s.neurons[u].stake))
            .unwrap_or(0)
    }

    fn response_scale(&self, caller: &PublicKey) -> f32 {
        if !self.enabled {
            return 1.0;
        }
        let s = self.snapshot.read().unwrap_or_else(|e| e.into_inner());
        let Some(s) = s.as_ref() else { return 1.0 };
        let Some(j) = s.uid_of(&self.me) else {
            return 1.0;
        };
        let m = match s.uid_of(caller) {
            Some(i) => s.mask(i, j, self.temperature),
            None => s.mask_unregistered(j, self.temperature),
        };
        m as f32
    }
}
