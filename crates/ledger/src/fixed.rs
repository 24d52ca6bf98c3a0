//! Deterministic fixed-point numbers: [`Fixed`] for rank and inflation, integer weight units
//! for rows of `W`, and the largest-remainder normalisation of a submitted row.
//!
//! Format:
//! - [`Fixed`] is a signed 128-bit integer counting units of `2^-32`; one [`Fixed::ONE`] is one
//!   TAO. Stake is held in integer rao (`1 TAO = 10^9 rao`), converted into `Fixed` (exact to
//!   `2^-32` TAO, a quarter of a rao) only to rank and inflate, and minted amounts are
//!   converted back by flooring to whole rao.
//! - A weight is a `u32` counting units of `2^-31` ([`WEIGHT_ONE`] is one), so a stored row
//!   sums to exactly `2^31`, and widens to `Fixed` by a shift, exactly.
//!
//! Every operation is integer arithmetic with saturation instead of overflow, so every
//! machine computes bit-identical results. The range covers any realistic supply: a single
//! neuron's rank squared must stay below `2^63` TAO², i.e. stake below about 3·10⁹ TAO.

use std::cmp::Ordering;
use std::fmt;
use std::ops::{Add, Div, Mul, Sub};

use bt_mechanism::Scalar;

/// Fractional bits of [`Fixed`].
pub const FRAC_BITS: u32 = 32;

/// Rao per TAO.
pub const RAO_PER_TAO: u64 = 1_000_000_000;

/// Fractional bits of a stored weight.
pub const WEIGHT_FRAC_BITS: u32 = 31;

/// One whole unit of weight: every stored row sums to exactly this.
pub const WEIGHT_ONE: u32 = 1 << WEIGHT_FRAC_BITS;

/// A signed fixed-point number with [`FRAC_BITS`] fractional bits; see the module docs.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Fixed(i128);

impl Fixed {
    /// Zero.
    pub const ZERO: Fixed = Fixed(0);
    /// One.
    pub const ONE: Fixed = Fixed(1 << FRAC_BITS);
    /// The largest value.
    pub const MAX: Fixed = Fixed(i128::MAX);

    /// From the raw representation (units of `2^-32`).
    pub const fn from_bits(bits: i128) -> Fixed {
        Fixed(bits)
    }

    /// The raw representation (units of `2^-32`).
    pub const fn to_bits(self) -> i128 {
        self.0
    }

    /// An integer.
    pub const fn from_int(x: i64) -> Fixed {
        Fixed((x as i128) << FRAC_BITS)
    }

    /// An amount of rao as TAO, floored to the nearest `2^-32`.
    pub const fn from_rao(rao: u64) -> Fixed {
        Fixed(((rao as i128) << FRAC_BITS) / RAO_PER_TAO as i128)
    }

    /// This many TAO in whole rao, floored; negative values give 0, huge ones `u64::MAX`.
    pub fn to_rao_floor(self) -> u64 {
        if self.0 <= 0 {
            return 0;
        }
        let rao = self.0.saturating_mul(RAO_PER_TAO as i128) >> FRAC_BITS;
        u64::try_from(rao).unwrap_or(u64::MAX)
    }

    /// A stored weight (units of `2^-31`) as a `Fixed`, exactly.
    pub const fn from_weight(w: u32) -> Fixed {
        Fixed((w as i128) << (FRAC_BITS - WEIGHT_FRAC_BITS))
    }

    /// The nearest `Fixed` to a finite `f64` (IEEE rounding is deterministic), or `None` for
    /// NaN, infinities and values out of range. Used only to read parameters from genesis.
    pub fn from_f64(x: f64) -> Option<Fixed> {
        if !x.is_finite() {
            return None;
        }
        let scaled = (x * (1u64 << FRAC_BITS) as f64).round();
        // 2^126 keeps every later widening of the value in range.
        if scaled.abs() >= 2f64.powi(126) {
            return None;
        }
        Some(Fixed(scaled as i128))
    }

    /// The value as `f64`, for display and for comparing with the `f64` mechanism.
    pub fn to_f64(self) -> f64 {
        self.0 as f64 / (1u64 << FRAC_BITS) as f64
    }

    /// The larger of two values.
    pub fn max(self, other: Fixed) -> Fixed {
        if self >= other { self } else { other }
    }
}

impl fmt::Debug for Fixed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fixed({})", self.to_f64())
    }
}

impl fmt::Display for Fixed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_f64(), f)
    }
}

impl Add for Fixed {
    type Output = Fixed;
    fn add(self, rhs: Fixed) -> Fixed {
        Fixed(self.0.saturating_add(rhs.0))
    }
}

impl Sub for Fixed {
    type Output = Fixed;
    fn sub(self, rhs: Fixed) -> Fixed {
        Fixed(self.0.saturating_sub(rhs.0))
    }
}

impl Mul for Fixed {
    type Output = Fixed;
    /// `(a * b) >> 32`, flooring; saturates on overflow.
    #[inline]
    fn mul(self, rhs: Fixed) -> Fixed {
        // The common case, both operands within 64 bits, is one widening multiply.
        if let (Ok(a), Ok(b)) = (i64::try_from(self.0), i64::try_from(rhs.0)) {
            return Fixed((i128::from(a) * i128::from(b)) >> FRAC_BITS);
        }
        match self.0.checked_mul(rhs.0) {
            Some(p) => Fixed(p >> FRAC_BITS),
            None => {
                // Split `a` into high and low halves so the partial products fit.
                let hi = self.0 >> FRAC_BITS;
                let lo = self.0 & ((1i128 << FRAC_BITS) - 1);
                let p_hi = hi.saturating_mul(rhs.0);
                let p_lo = lo.checked_mul(rhs.0).map_or(i128::MAX, |p| p >> FRAC_BITS);
                Fixed(p_hi.saturating_add(p_lo))
            }
        }
    }
}

impl Div for Fixed {
    type Output = Fixed;
    /// `(a << 32) / b`, truncating toward zero. Division by zero saturates to the largest
    /// value of `a`'s sign (zero for `0 / 0`); rank and inflation never divide by zero.
    fn div(self, rhs: Fixed) -> Fixed {
        let (a, b) = (self.0, rhs.0);
        if b == 0 {
            return match a.cmp(&0) {
                Ordering::Greater => Fixed(i128::MAX),
                Ordering::Less => Fixed(i128::MIN),
                Ordering::Equal => Fixed(0),
            };
        }
        match a.checked_mul(1 << FRAC_BITS) {
            Some(x) => Fixed(x / b),
            None => {
                let q = a / b;
                let r = a % b;
                let frac = match r.checked_mul(1 << FRAC_BITS) {
                    Some(x) => x / b,
                    None => r / (b >> FRAC_BITS),
                };
                Fixed(q.saturating_mul(1 << FRAC_BITS).saturating_add(frac))
            }
        }
    }
}

impl Scalar for Fixed {
    /// Integer addition: exact below saturation, which sums of shares never reach.
    const EXACT: bool = true;

    fn zero() -> Self {
        Fixed::ZERO
    }

    fn from_count(n: usize) -> Self {
        Fixed(i128::try_from(n).unwrap_or(i128::MAX >> FRAC_BITS) << FRAC_BITS)
    }

    /// Floor of the square root; zero for negative input.
    fn sqrt(self) -> Self {
        if self.0 <= 0 {
            return Fixed::ZERO;
        }
        let x = self.0.unsigned_abs();
        // sqrt(v) in units of 2^-32 is isqrt(bits << 32); fall back to a coarser but still
        // deterministic root when the shift would overflow.
        let root = match x.checked_mul(1 << FRAC_BITS) {
            Some(shifted) => shifted.isqrt(),
            None => x.isqrt() << (FRAC_BITS / 2),
        };
        Fixed(i128::try_from(root).unwrap_or(i128::MAX))
    }
}

/// Normalises a validated row of raw `(uid, weight)` pairs (distinct uids, positive sum) to
/// weights summing to exactly [`WEIGHT_ONE`], by the largest-remainder method: each entry
/// gets `floor(raw * ONE / sum)`, and the units still missing go one each to the entries with
/// the largest remainders (ties to the lower uid). Entries that round to zero are dropped;
/// the result is sorted by uid.
///
/// Returns `None` when the row is empty or sums to zero.
pub fn normalize_row(raw: &[(u32, u32)]) -> Option<Vec<(u32, u32)>> {
    let sum: u64 = raw.iter().map(|&(_, w)| u64::from(w)).sum();
    if sum == 0 {
        return None;
    }
    let one = u128::from(WEIGHT_ONE);
    let mut parts: Vec<(u32, u32, u64)> = raw
        .iter()
        .map(|&(uid, w)| {
            let num = u128::from(w) * one;
            let q = (num / u128::from(sum)) as u32; // <= ONE, fits.
            let r = (num % u128::from(sum)) as u64; // < sum, fits.
            (uid, q, r)
        })
        .collect();
    let given: u64 = parts.iter().map(|&(_, q, _)| u64::from(q)).sum();
    let missing = u64::from(WEIGHT_ONE) - given; // < number of entries.
    if missing > 0 {
        parts.sort_unstable_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
        for p in parts.iter_mut().take(missing as usize) {
            p.1 += 1;
        }
    }
    let mut out: Vec<(u32, u32)> = parts
        .into_iter()
        .filter(|&(_, q, _)| q > 0)
        .map(|(uid, q, _)| (uid, q))
        .collect();
    out.sort_unstable_by_key(|&(uid, _)| uid);
    Some(out)
}

/// `||a - b||_2^2` of two normalised rows (sorted by uid), in squared weight units.
pub fn row_distance_sq(a: &[(u32, u32)], b: &[(u32, u32)]) -> u128 {
    let (mut i, mut j) = (0, 0);
    let mut acc: u128 = 0;
    let sq = |d: i64| (d.unsigned_abs() as u128).pow(2);
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(&(ua, wa)), Some(&(ub, wb))) if ua == ub => {
                acc += sq(i64::from(wa) - i64::from(wb));
                i += 1;
                j += 1;
            }
            (Some(&(ua, wa)), Some(&(ub, _))) if ua < ub => {
                acc += sq(i64::from(wa));
                i += 1;
            }
            (Some(_), Some(&(_, wb))) | (None, Some(&(_, wb))) => {
                acc += sq(i64::from(wb));
                j += 1;
            }
            (Some(&(_, wa)), None) => {
                acc += sq(i64::from(wa));
                i += 1;
            }
            (None, None) => break,
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn arithmetic_on_known_values() {
        let half = Fixed::ONE / Fixed::from_int(2);
        assert_eq!(half.to_f64(), 0.5);
        assert_eq!((half * half).to_f64(), 0.25);
        assert_eq!(Fixed::from_int(9).sqrt(), Fixed::from_int(3));
        assert_eq!(Fixed::from_int(-4).sqrt(), Fixed::ZERO);
        assert_eq!(Fixed::from_rao(RAO_PER_TAO), Fixed::ONE);
        assert_eq!(Fixed::ONE.to_rao_floor(), RAO_PER_TAO);
        assert_eq!(Fixed::from_weight(WEIGHT_ONE), Fixed::ONE);
        assert_eq!(Fixed::ONE / Fixed::ZERO, Fixed::MAX);
        assert_eq!(Fixed::from_f64(f64::NAN), None);
    }

    #[test]
    fn huge_products_saturate_instead_of_wrapping() {
        let big = Fixed::from_bits(i128::MAX / 4);
        assert_eq!(big * big, Fixed::MAX);
        assert_eq!(Fixed::MAX + Fixed::ONE, Fixed::MAX);
    }

    #[test]
    fn normalize_known_row() {
        // 1:1:1 cannot split 2^31 evenly (2 units are left over); with equal remainders
        // they go to the lowest uids.
        let row = normalize_row(&[(5, 1), (2, 1), (9, 1)]).expect("non-zero");
        let third = WEIGHT_ONE / 3;
        assert_eq!(WEIGHT_ONE - 3 * third, 2);
        assert_eq!(row, vec![(2, third + 1), (5, third + 1), (9, third)]);
        assert_eq!(normalize_row(&[(0, 0)]), None);
        assert_eq!(normalize_row(&[]), None);
    }

    #[test]
    fn distance_of_disjoint_rows() {
        let a = vec![(0, WEIGHT_ONE)];
        let b = vec![(1, WEIGHT_ONE)];
        assert_eq!(row_distance_sq(&a, &b), 2 * u128::from(WEIGHT_ONE).pow(2));
        assert_eq!(row_distance_sq(&a, &a), 0);
    }

    proptest! {
        #[test]
        fn normalized_rows_sum_to_exactly_one(raw in proptest::collection::vec(0u32..u32::MAX, 1..64)) {
            let row: Vec<(u32, u32)> = raw.iter().enumerate().map(|(i, &w)| (i as u32, w)).collect();
            if let Some(norm) = normalize_row(&row) {
                let s: u64 = norm.iter().map(|&(_, w)| u64::from(w)).sum();
                prop_assert_eq!(s, u64::from(WEIGHT_ONE));
                prop_assert!(norm.windows(2).all(|p| p[0].0 < p[1].0));
                // Each entry is within one unit of its exact share.
                let total: f64 = raw.iter().map(|&w| f64::from(w)).sum();
                for &(uid, w) in &norm {
                    let exact = f64::from(raw[uid as usize]) / total * f64::from(WEIGHT_ONE);
                    prop_assert!((f64::from(w) - exact).abs() <= 1.0 + 1e-6 * exact);
                }
            } else {
                prop_assert!(raw.iter().all(|&w| w == 0));
            }
        }

        #[test]
        fn mul_div_match_f64(a in -1.0e6f64..1.0e6, b in 1.0e-3f64..1.0e6) {
            let (fa, fb) = (Fixed::from_f64(a).expect("finite"), Fixed::from_f64(b).expect("finite"));
            let tol = |x: f64| 1e-9 * x.abs() + 4.0 / (1u64 << FRAC_BITS) as f64 * (1.0 + a.abs());
            prop_assert!(((fa * fb).to_f64() - a * b).abs() <= tol(a * b) + b.abs() * 1e-9);
            prop_assert!(((fa / fb).to_f64() - a / b).abs() <= tol(a / b) + (a / b).abs() * 1e-6);
            let s = Fixed::from_f64(a.abs()).expect("finite").sqrt().to_f64();
            prop_assert!((s - a.abs().sqrt()).abs() <= 1e-6 * (1.0 + a.abs().sqrt()));
        }
    }
}
