//! What a neuron's axon serves: its trunk plus distilled student ([`Learner::serve`]) for
//! Forward, and the peer update ([`Learner::apply_peer_gradient`]) for Backward.

use std::sync::{Arc, Mutex};

use bt_wire::{Dim, Synapse, SynapseResult, Tensor, TensorSpec};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::learner::Learner;

/// How a neuron answers its peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    /// Its real representation.
    Honest,
    /// Standard normal noise of the right shape (a useless peer, for experiments).
    Noise,
    /// The representation of a model that never trains, and Backward ignored: a free rider,
    /// which queries and weighs like an honest neuron but serves its initial model. The shell
    /// gives the synapse that untrained learner, not the one it trains.
    Frozen,
}

/// A [`Synapse`] over a shared [`Learner`]: input token ids `[batch, t]` (`t` up to the
/// model's sequence length), output `[batch, t, d]`. Backward updates the learner only when
/// it is [`Behaviour::Honest`].
pub struct LearnerSynapse {
    learner: Arc<Learner>,
    behaviour: Behaviour,
    rng: Mutex<ChaCha8Rng>,
}

impl LearnerSynapse {
    /// Serves `learner` as `behaviour` says.
    pub fn new(learner: Arc<Learner>, behaviour: Behaviour, seed: u64) -> LearnerSynapse {
        LearnerSynapse {
            learner,
            behaviour,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
        }
    }
}

fn ids_of(t: &Tensor) -> SynapseResult<(Vec<u32>, usize, usize)> {
    let shape = t.shape();
    let (b, len) = (shape[0], shape[1]);
    let ids = t
        .to_i64()?
        .into_iter()
        .map(|v| {
            u32::try_from(v)
                .map_err(|_| Error::BadInput(format!("token id {v} is negative or too large")))
        })
        .collect::<Result<Vec<u32>, Error>>()?;
    Ok((ids, b, len))
}

impl Synapse for LearnerSynapse {
    fn input_spec(&self) -> Vec<TensorSpec> {
        vec![TensorSpec::int(vec![Dim::Batch, Dim::Any])]
    }

    fn output_spec(&self) -> Vec<TensorSpec> {
        vec![TensorSpec::float(vec![
            Dim::Batch,
            Dim::Any,
            Dim::Fixed(self.learner.model_config().d),
        ])]
    }

    fn forward(&self, inputs: &[Tensor]) -> SynapseResult<Vec<Tensor>> {
        let (ids, b, t) = ids_of(&inputs[0])?;
        let d = self.learner.model_config().d;
        let values = match self.behaviour {
            Behaviour::Honest | Behaviour::Frozen => self.learner.serve(&ids, b, t)?,
            Behaviour::Noise => {
                // Validate like the honest path, then answer noise.
                self.learner.check_ids(&ids, b, t)?;
                let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
                (0..b * t * d)
                    .map(|_| rng.sample::<f32, _>(StandardNormal))
                    .collect()
            }
        };
        Ok(vec![Tensor::from_f32(vec![b, t, d], &values)?])
    }

    fn backward(
        &self,
        inputs: &[Tensor],
        grad_outputs: &[Tensor],
    ) -> SynapseResult<Option<Vec<Tensor>>> {
        let (ids, b, t) = ids_of(&inputs[0])?;
        let grad = grad_outputs[0].to_f32()?;
        if grad_outputs[0].shape() != [b, t, self.learner.model_config().d] {
            return Err(Box::new(Error::BadInput(format!(
                "grad_outputs[0] has shape {:?}, expected [{b}, {t}, {}]",
                grad_outputs[0].shape(),
                self.learner.model_config().d
            ))));
        }
        if self.behaviour == Behaviour::Honest {
            self.learner.apply_peer_gradient(&ids, b, t, &grad)?;
        }
        Ok(None)
    }

    fn batchable(&self) -> bool {
        true
    }
}
