//! Random instances of the empirical model (paper section 3.3) and their safetensors files.
//!
//! A file holds three tensors, F64 (F32 is accepted and widened):
//! - `stake` `[n]`: non-negative, finite;
//! - `w0` `[n, n]`: the reference weights, each row on the probability simplex;
//! - `hessians` `[n, n, n]`: learner `i`'s Hessian at `hessians[i]`, symmetric and positive
//!   semi-definite.
//!
//! Files written elsewhere (NumPy and the Python `safetensors` package, say) load the same
//! way; every fault is reported with the tensor's name.

use std::collections::HashMap;
use std::path::Path;

use bt_mechanism::{Hessians, Matrix};
use faer::{Mat, Side};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::error::{Error, Result};

/// Tolerance for "row sums to one" in a loaded `w0`.
pub const SIMPLEX_TOLERANCE: f64 = 1e-6;
/// Relative tolerance for symmetry and positive semi-definiteness of a loaded Hessian.
pub const HESSIAN_TOLERANCE: f64 = 1e-9;

/// One instance of the game: stake, reference weights and every learner's Hessian.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// `S`, one entry per learner.
    pub stake: Vec<f64>,
    /// `W0`, where the learners converged; rows on the simplex.
    pub w0: Matrix,
    /// `H_i` for every learner.
    pub hessians: Hessians,
}

impl Instance {
    /// The number of learners.
    pub fn n(&self) -> usize {
        self.w0.n()
    }

    /// A random instance as `spec/mechanism.md` describes: a per-peer value
    /// `q_j ~ U(0.1, 1)` shared by all learners; for each learner `B_i` with entries
    /// `N(0, 1/n)` and `H_i = diag(q) B_i B_i^T diag(q)` scaled to trace 1; `W0` rows of
    /// `U(0, 1)` entries normalised to sum 1; unit stake. The same `(n, seed)` always gives
    /// the same instance (ChaCha8, draws in the order q, then each `B_i` row-major, then `W0`
    /// row-major).
    pub fn random(n: usize, seed: u64) -> Result<Self> {
        if n < 2 {
            return Err(Error::Parameter(format!(
                "n = {n}: an instance needs at least 2 learners"
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let q: Vec<f64> = (0..n).map(|_| rng.random_range(0.1..1.0)).collect();
        let normal = Normal::new(0.0, (1.0 / n as f64).sqrt())
            .map_err(|e| Error::Parameter(format!("normal distribution: {e}")))?;
        let bs: Vec<Vec<f64>> = (0..n)
            .map(|_| (0..n * n).map(|_| normal.sample(&mut rng)).collect())
            .collect();
        let mut w0 = Matrix::zeros(n);
        for i in 0..n {
            let row = w0.row_mut(i);
            for x in row.iter_mut() {
                *x = rng.random_range(0.0..1.0);
            }
            let s: f64 = row.iter().sum();
            for x in row.iter_mut() {
                *x /= s;
            }
        }
        let full: Vec<f64> = bs
            .par_iter()
            .flat_map_iter(|b| hessian_from_factor(n, &q, b))
            .collect();
        Ok(Self {
            stake: vec![1.0; n],
            w0,
            hessians: Hessians::from_full(n, &full)?,
        })
    }

    /// The instance as safetensors bytes (F64, little-endian).
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let n = self.n();
        let stake = f64_bytes(&self.stake);
        let w0 = f64_bytes(self.w0.as_slice());
        let full: Vec<f64> = (0..n)
            .flat_map(|i| self.hessians.full(i).as_slice().to_vec())
            .collect();
        let hessians = f64_bytes(&full);
        let tensors = vec![
            ("hessians", view(vec![n, n, n], &hessians)?),
            ("stake", view(vec![n], &stake)?),
            ("w0", view(vec![n, n], &w0)?),
        ];
        let meta = HashMap::from([(
            "format".to_string(),
            "bittensor-rs empirical instance v1".to_string(),
        )]);
        safetensors::serialize(tensors, Some(meta)).map_err(|e| Error::Format(e.to_string()))
    }

    /// Writes the instance to `path` (via a temporary file and a rename, so a crash never
    /// leaves half a file).
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = self.to_safetensors()?;
        let tmp = path.with_extension("safetensors.tmp");
        std::fs::write(&tmp, &bytes).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    }

    /// Reads and validates an instance from safetensors bytes.
    pub fn from_safetensors(bytes: &[u8]) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| Error::Format(e.to_string()))?;
        let stake = read_tensor(&st, "stake")?;
        let n = check_shape("stake", &stake.1, &[stake.1.first().copied().unwrap_or(0)])?;
        if n < 2 {
            return Err(Error::Invalid {
                name: "stake",
                fault: format!("n = {n}: need at least 2 learners"),
            });
        }
        let w0 = read_tensor(&st, "w0")?;
        check_shape("w0", &w0.1, &[n, n])?;
        let hs = read_tensor(&st, "hessians")?;
        check_shape("hessians", &hs.1, &[n, n, n])?;

        let stake = stake.0;
        check_all_finite("stake", &stake)?;
        if let Some(i) = stake.iter().position(|&s| s < 0.0) {
            return Err(Error::Invalid {
                name: "stake",
                fault: format!("entry {i} is negative ({})", stake[i]),
            });
        }
        check_all_finite("w0", &w0.0)?;
        for (i, row) in w0.0.chunks_exact(n).enumerate() {
            if let Some(j) = row.iter().position(|&x| x < 0.0) {
                return Err(Error::Invalid {
                    name: "w0",
                    fault: format!(
                        "row {i} is not on the simplex: entry {j} is negative ({})",
                        row[j]
                    ),
                });
            }
            let sum: f64 = row.iter().sum();
            if (sum - 1.0).abs() > SIMPLEX_TOLERANCE {
                return Err(Error::Invalid {
                    name: "w0",
                    fault: format!("row {i} is not on the simplex: it sums to {sum}, not 1"),
                });
            }
        }
        check_all_finite("hessians", &hs.0)?;
        hs.0.par_chunks_exact(n * n)
            .enumerate()
            .try_for_each(|(i, h)| check_hessian(i, n, h))?;
        Ok(Self {
            stake,
            w0: Matrix::from_vec(n, w0.0)?,
            hessians: Hessians::from_full(n, &hs.0)?,
        })
    }

    /// Reads and validates an instance file.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_safetensors(&bytes)
    }
}

/// `diag(q) B B^T diag(q)`, exactly symmetric, scaled to trace 1.
fn hessian_from_factor(n: usize, q: &[f64], b: &[f64]) -> Vec<f64> {
    let bm = Mat::<f64>::from_fn(n, n, |j, k| q[j] * b[j * n + k]);
    let h = &bm * bm.transpose();
    let trace: f64 = (0..n).map(|j| h[(j, j)]).sum();
    let mut out = vec![0.0; n * n];
    for j in 0..n {
        for k in j..n {
            let v = 0.5 * (h[(j, k)] + h[(k, j)]) / trace;
            out[j * n + k] = v;
            out[k * n + j] = v;
        }
    }
    out
}

fn check_hessian(i: usize, n: usize, h: &[f64]) -> Result<()> {
    let scale = h
        .iter()
        .fold(0.0f64, |m, x| m.max(x.abs()))
        .max(f64::MIN_POSITIVE);
    for j in 0..n {
        for k in j + 1..n {
            let (a, b) = (h[j * n + k], h[k * n + j]);
            if (a - b).abs() > HESSIAN_TOLERANCE * scale {
                return Err(Error::Invalid {
                    name: "hessians",
                    fault: format!(
                        "hessians[{i}] is not symmetric: [{j},{k}] = {a} but [{k},{j}] = {b}"
                    ),
                });
            }
        }
    }
    let m = Mat::<f64>::from_fn(n, n, |j, k| h[j * n + k]);
    let eig = m
        .self_adjoint_eigenvalues(Side::Lower)
        .map_err(|e| Error::Invalid {
            name: "hessians",
            fault: format!("hessians[{i}]: eigenvalues did not converge ({e:?})"),
        })?;
    let min = eig.iter().copied().fold(f64::INFINITY, f64::min);
    let max_abs = eig.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    if min < -HESSIAN_TOLERANCE * max_abs.max(f64::MIN_POSITIVE) * n as f64 {
        return Err(Error::Invalid {
            name: "hessians",
            fault: format!(
                "hessians[{i}] is not positive semi-definite: smallest eigenvalue {min:e}"
            ),
        });
    }
    Ok(())
}

fn read_tensor(st: &SafeTensors<'_>, name: &'static str) -> Result<(Vec<f64>, Vec<usize>)> {
    let view = st.tensor(name).map_err(|_| Error::MissingTensor { name })?;
    let shape = view.shape().to_vec();
    let data = view.data();
    let values = match view.dtype() {
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect(),
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap_or([0; 4])) as f64)
            .collect(),
        other => {
            return Err(Error::Dtype {
                name,
                got: format!("{other:?}"),
            });
        }
    };
    Ok((values, shape))
}

fn check_shape(name: &'static str, got: &[usize], expected: &[usize]) -> Result<usize> {
    if got != expected {
        return Err(Error::Shape {
            name,
            expected: expected.to_vec(),
            got: got.to_vec(),
        });
    }
    Ok(expected[0])
}

fn check_all_finite(name: &'static str, xs: &[f64]) -> Result<()> {
    match xs.iter().position(|x| !x.is_finite()) {
        Some(i) => Err(Error::Invalid {
            name,
            fault: format!("entry {i} (flat index) is {}", xs[i]),
        }),
        None => Ok(()),
    }
}

fn view(shape: Vec<usize>, data: &[u8]) -> Result<TensorView<'_>> {
    TensorView::new(Dtype::F64, shape, data).map_err(|e| Error::Format(e.to_string()))
}

fn f64_bytes(xs: &[f64]) -> Vec<u8> {
    xs.iter().flat_map(|x| x.to_le_bytes()).collect()
}
