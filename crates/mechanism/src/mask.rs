//! Competitive connectivity (paper eq. 7-8).
//!
//! - Column shift: `mu_j = (1/n) sum_k S_k W_kj` (equal to the rank `R_j`; use
//!   [`crate::rank::rank_into`]).
//! - Logit: `z_ij = (S_i W_ij - mu_j) / T`.
//! - Mask: `m_ij = sigmoid(z_ij)`; learner `i` sees peer `j`'s output times `m_ij`.

/// The logistic function, written so that it neither overflows nor loses precision for
/// large `|z|`: `1 / (1 + e^-z)` for `z >= 0`, `e^z / (1 + e^z)` below.
///
/// It has no branches and no library call (see [`exp_nonpositive`]), so a loop of them
/// (a mask row) vectorises, and it gives the same bits on every platform.
#[inline(always)]
pub fn sigmoid(z: f64) -> f64 {
    let e = exp_nonpositive(-z.abs());
    let num = if z >= 0.0 { 1.0 } else { e };
    num / (1.0 + e)
}

/// The constants of [`exp_nonpositive`], shared with its vector form.
pub(crate) struct ExpConstants {
    /// Below this `e^x` is reported as 0.
    pub floor: f64,
    /// `1.5 * 2^52`: adding it rounds to an integer and leaves it in the low mantissa bits.
    pub round: f64,
    /// `ln 2` split so that `k * ln2_hi` is exact for `|k| < 2^21` (fdlibm's constants).
    pub ln2_hi: f64,
    pub ln2_lo: f64,
    /// `1/k!` for `k` = 13 down to 2.
    pub taylor: [f64; 12],
}

pub(crate) const EXP_CONSTANTS: ExpConstants = ExpConstants {
    floor: -708.0,
    round: 6_755_399_441_055_744.0,
    ln2_hi: f64::from_bits(0x3fe6_2e42_fee0_0000),
    ln2_lo: f64::from_bits(0x3dea_39ef_3579_3c76),
    taylor: [
        1.0 / 6_227_020_800.0,
        1.0 / 479_001_600.0,
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
    ],
};

/// `e^x` for `x <= 0` (0 below -708, where `e^x` leaves the normal range), within a few
/// ulps of the correctly rounded value; NaN stays NaN.
///
/// Cody-Waite reduction `x = k ln 2 + r` with `|r| <= ln(2) / 2`, then the Taylor series
/// of `e^r` to degree 13 (truncation error below 1e-17), then `2^k` built in the exponent
/// bits. Plain multiplies and adds in a fixed order: the compiler neither fuses nor
/// reorders them, and the AVX-512 form of the mask row performs the same operations, so
/// every instruction set gives the same result.
#[inline(always)]
pub fn exp_nonpositive(x: f64) -> f64 {
    let c = EXP_CONSTANTS;
    let xc = if x < c.floor { c.floor } else { x };
    let t = xc * std::f64::consts::LOG2_E + c.round;
    let k = t - c.round;
    let r = (xc - k * c.ln2_hi) - k * c.ln2_lo;
    let mut p = c.taylor[0];
    for ck in &c.taylor[1..] {
        p = p * r + ck;
    }
    let er = (p * r + 1.0) * r + 1.0;
    // The low bits of `t` hold k (two's complement), and k + 1023 is in [2, 1023].
    let scale = f64::from_bits(t.to_bits().wrapping_add(1023) << 52);
    if x < c.floor { 0.0 } else { er * scale }
}

/// The competitive logit `z_ij = (s_i * w_ij - mu_j) / T`.
#[inline(always)]
pub fn logit(s_i: f64, w_ij: f64, mu_j: f64, temperature: f64) -> f64 {
    (s_i * w_ij - mu_j) / temperature
}

/// The mask a server applies to its answer to caller `i`: `sigmoid((s_i w_ij - mu_j)/T)`.
#[inline(always)]
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
    fn exp_matches_the_library_to_a_few_ulps() {
        let mut worst = 0.0f64;
        for i in 0..=200_000 {
            let x = -708.0 * (i as f64 / 200_000.0).powi(3);
            let (got, want) = (exp_nonpositive(x), x.exp());
            let ulps = (got - want).abs() / (want * f64::EPSILON);
            worst = worst.max(ulps);
        }
        assert!(worst <= 4.0, "worst error {worst} ulps");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-709.0), 0.0);
        assert_eq!(exp_nonpositive(f64::NEG_INFINITY), 0.0);
        assert!(exp_nonpositive(f64::NAN).is_nan());
        assert!(sigmoid(f64::NAN).is_nan());
    }

    #[test]
    fn sigmoid_matches_the_textbook_formula() {
        for i in -4000..=4000 {
            let z = i as f64 / 100.0;
            let want = if z >= 0.0 {
                1.0 / (1.0 + (-z).exp())
            } else {
                z.exp() / (1.0 + z.exp())
            };
            assert!(
                (sigmoid(z) - want).abs() <= 4.0 * f64::EPSILON * want,
                "z={z}"
            );
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
