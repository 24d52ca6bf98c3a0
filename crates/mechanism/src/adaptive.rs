//! Adaptive inflation (paper Figure 5).
//!
//! - `sparsity(W) = trace(W) / (sum(W) - trace(W))`: the main diagonal against the rest.
//! - After every game step: `tau <- max(0, tau + eta * (target - sparsity))`.

use crate::matrix::Matrix;

/// `trace(W) / (sum(W) - trace(W))`; `+inf` when every weight is on the diagonal.
pub fn sparsity(w: &Matrix) -> f64 {
    let total: f64 = w.as_slice().iter().sum();
    let trace: f64 = (0..w.n()).map(|i| w.get(i, i)).sum();
    let off = total - trace;
    if off <= 0.0 {
        f64::INFINITY
    } else {
        trace / off
    }
}

/// One adaptive-tau update: `max(0, tau + eta * (target - sparsity))`. An infinite
/// sparsity (all weight on the diagonal) counts as far above any target.
pub fn update_tau(tau: f64, eta: f64, target: f64, sparsity: f64) -> f64 {
    if sparsity.is_finite() {
        update_tau_scalar(tau, eta, target, sparsity, 1.0)
    } else {
        update_tau_scalar(tau, eta, target, 1.0, 0.0)
    }
}

/// [`update_tau`] for any [`Scalar`](crate::rank::Scalar) (the ledger's fixed point), with
/// the sparsity given as its two parts: `trace` = `trace(W)` and `off` = `sum(W) - trace(W)`.
/// An off-diagonal total of zero counts as infinite sparsity, as in [`update_tau`].
pub fn update_tau_scalar<T: crate::rank::Scalar>(tau: T, eta: T, target: T, trace: T, off: T) -> T {
    let zero = T::zero();
    let one = T::from_count(1);
    let gap = if off > zero {
        target - trace / off
    } else {
        let abs_target = if target < zero { zero - target } else { target };
        zero - one - abs_target
    };
    let next = tau + eta * gap;
    if next > zero { next } else { zero }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparsity_of_known_matrices() {
        let uniform = Matrix::from_vec(2, vec![0.5; 4]).unwrap();
        assert_eq!(sparsity(&uniform), 1.0);
        assert_eq!(sparsity(&Matrix::identity(3)), f64::INFINITY);
        let w = Matrix::from_rows(&[vec![0.8, 0.2], vec![0.6, 0.4]]).unwrap();
        assert!((sparsity(&w) - 1.2 / 0.8).abs() < 1e-12);
    }

    #[test]
    fn tau_moves_toward_target_and_stays_non_negative() {
        assert_eq!(update_tau(0.0, 0.1, 1.0, 0.5), 0.05);
        assert_eq!(update_tau(0.01, 0.1, 1.0, 2.0), 0.0);
        assert!(update_tau(1.0, 0.1, 1.0, f64::INFINITY) < 1.0);
    }
}
