//! What the network looks like now: filled in by the ledger follower and the trainers, read
//! by the dashboard and the progress bars.

use std::sync::{Arc, RwLock};

use serde::Serialize;

/// One neuron, as the dashboard shows it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LiveNeuron {
    /// Its uid on the ledger.
    pub uid: usize,
    /// Its name (`honest0`, `noise`, `selfish`, ...).
    pub name: String,
    /// What it is: `honest`, `noise` or `selfish`.
    pub role: String,
    /// Stake in TAO.
    pub stake_tao: f64,
    /// Ledger rank (TAO per block).
    pub rank: f64,
    /// Training steps done.
    pub step: usize,
    /// Training loss over steps, `(step, loss)`, thinned to at most a few hundred points.
    pub loss: Vec<(usize, f32)>,
    /// Held-out loss at each epoch's end, `(step, loss)`.
    pub held_out: Vec<(usize, f32)>,
}

/// The whole network now.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LiveState {
    /// Ledger height.
    pub height: u64,
    /// Seconds since the network started.
    pub elapsed_s: f64,
    /// Steps each neuron trains for (0 when it trains for a time instead).
    pub steps: usize,
    /// The neurons, by uid.
    pub neurons: Vec<LiveNeuron>,
    /// The ledger's weight matrix, by uid (row: what that neuron says of every peer).
    pub w: Vec<Vec<f64>>,
    /// True once training has ended (the report is being written or is written).
    pub done: bool,
}

/// The shared handle to [`LiveState`].
pub type Live = Arc<RwLock<LiveState>>;

/// A new, empty live state.
pub fn new_live() -> Live {
    Arc::new(RwLock::new(LiveState::default()))
}
