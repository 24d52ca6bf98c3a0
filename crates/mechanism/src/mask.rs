//! Competitive connectivity (paper eq. 7-8).
//!
//! - Column shift: `mu_j = (1/n) sum_k S_k W_kj` (equal to the rank `R_j`; use
//!   [`crate::rank::rank_into`]).
//! - Logit: `z_ij = (S_i W_ij - mu_j) / T`.
//! - Mask: `m_ij = sigmoid(z_ij)`; learner `i` sees peer `j`'s output times `m_ij`.

/// The logistic function, written so that it neither overflows nor loses precision for
/// large `|z|`.
#[inline]
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// The competitive logit `z_ij = (s_i * w_ij - mu_j) / T`.
#[inline]
pub fn logit(s_i: f64, w_ij: f64, mu_j: f64, temperature: f64) -> f64 {
    (s_i * w_ij - mu_j) / temperature
}

/// The mask a server applies to its answer to caller `i`: `sigmoid((s_i w_ij - mu_j)/T)`.
#[inline]
pub fn mask(s_i: f64, w_ij: f64, mu_j: f64, temperature: f64) -> f64 {
    sigmoid(logit(s_i, w_ij, mu_j, temperature))
}

/// Row `i` of the mask: `out_j = sigmoid((s_i * w_i[j] - mu[j]) / T)`.
pub fn mask_row(s_i: f64, w_i: &[f64], mu: &[f64], temperature: f64, out: &mut [f64]) {
    for ((o, &w), &m) in out.iter_mut().zip(w_i).zip(mu) {
        *o = mask(s_i, w, m, temperature);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigmoid_is_stable_and_symmetric() {
        assert_eq!(sigmoid(0.0), 0.5);
        assert_eq!(sigmoid(1000.0), 1.0);
        assert_eq!(sigmoid(-1000.0), 0.0);
        for z in [-30.0, -2.5, -0.1, 0.3, 4.0, 25.0] {
            assert!((sigmoid(z) + sigmoid(-z) - 1.0).abs() < 1e-15);
        }
    }

    #[test]
    fn above_column_mean_passes_more() {
        // A caller that weights a peer above the column's mean gets more than half of it.
        assert!(mask(1.0, 0.5, 0.2, 0.1) > 0.5);
        assert!(mask(1.0, 0.1, 0.2, 0.1) < 0.5);
        // Zero stake sees everything shifted below the mean.
        assert!(mask(0.0, 1.0, 0.2, 0.1) < 0.5);
    }
}
