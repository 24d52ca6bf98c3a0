//! The sparse Yuma epoch against a straightforward dense reference, bit for bit, in an exact
//! (integer) fixed-point scalar like the ledger's, coarse enough that rounding to zero, ties
//! and empty columns are common: the sparse path's shortcuts (zeros counted instead of
//! listed in the quickselect, sums in parallel partials, entries that round to zero dropped)
//! must not change a single bit.

use std::ops::{Add, Div, Mul, Sub};

use bt_mechanism::yuma::{YumaParams, consensus, epoch, normalize, weighted_median};
use bt_mechanism::{Scalar, Sparse};
use proptest::prelude::*;

/// Fractional bits of [`Fx`]: coarse on purpose.
const BITS: u32 = 12;

/// A fixed-point number in units of `2^-BITS`: floor multiplication, truncating division,
/// saturation, as the ledger's `Fixed` does at a finer scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Fx(i64);

impl Add for Fx {
    type Output = Fx;
    fn add(self, o: Fx) -> Fx {
        Fx(self.0.saturating_add(o.0))
    }
}

impl Sub for Fx {
    type Output = Fx;
    fn sub(self, o: Fx) -> Fx {
        Fx(self.0.saturating_sub(o.0))
    }
}

impl Mul for Fx {
    type Output = Fx;
    fn mul(self, o: Fx) -> Fx {
        let p = (i128::from(self.0) * i128::from(o.0)) >> BITS;
        Fx(p.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
    }
}

impl Div for Fx {
    type Output = Fx;
    fn div(self, o: Fx) -> Fx {
        if o.0 == 0 {
            return Fx(if self.0 > 0 { i64::MAX } else { 0 });
        }
        let q = (i128::from(self.0) << BITS) / i128::from(o.0);
        Fx(q.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
    }
}

impl Scalar for Fx {
    const EXACT: bool = true;
    fn zero() -> Self {
        Fx(0)
    }
    fn from_count(n: usize) -> Self {
        Fx((n as i64) << BITS)
    }
    fn sqrt(self) -> Self {
        Fx(((self.0.max(0) as u64) << BITS).isqrt() as i64)
    }
}

type Dense = Vec<Vec<Fx>>;

/// Column `j` folded in row order.
fn col_fold(m: &Dense, j: usize) -> Fx {
    m.iter().fold(Fx(0), |a, r| a + r[j])
}

fn recip(x: Fx) -> Fx {
    if x > Fx(0) { Fx::one() / x } else { Fx(0) }
}

/// `spec/yuma.md` steps 1-9 on dense matrices, in the arithmetic the ledger pins (a row or
/// column is normalised by multiplying with the reciprocal of its sum).
fn reference(stake: &[Fx], w: &Dense, prev: &Dense, p: &YumaParams<Fx>) -> Vec<Vec<Fx>> {
    let n = stake.len();
    let zero = Fx(0);
    let mut s = stake.to_vec();
    normalize(&mut s);
    let wn: Dense = (0..n)
        .map(|i| {
            let sum = (0..n).filter(|&j| j != i).fold(zero, |a, j| a + w[i][j]);
            (0..n)
                .map(|j| {
                    if j == i || sum <= zero {
                        zero
                    } else {
                        w[i][j] * (Fx::one() / sum)
                    }
                })
                .collect()
        })
        .collect();
    let voters: Vec<usize> = (0..n).filter(|&i| s[i] > zero).collect();
    let mut vs: Vec<Fx> = voters.iter().map(|&i| s[i]).collect();
    normalize(&mut vs);
    let c: Vec<Fx> = (0..n)
        .map(|j| {
            let cand: Vec<(Fx, Fx)> = voters
                .iter()
                .zip(&vs)
                .map(|(&i, &v)| (wn[i][j], v))
                .collect();
            weighted_median(Fx::one() - p.kappa, &cand)
        })
        .collect();
    let wc: Dense = wn
        .iter()
        .map(|r| r.iter().zip(&c).map(|(&x, &cj)| x.min_of(cj)).collect())
        .collect();
    let trust: Vec<Fx> = wc
        .iter()
        .map(|r| r.iter().fold(zero, |a, &x| a + x))
        .collect();
    let sw: Dense = (0..n)
        .map(|i| (0..n).map(|j| s[i] * wc[i][j]).collect())
        .collect();
    let rank: Vec<Fx> = (0..n).map(|j| col_fold(&sw, j)).collect();
    let mut incentive = rank.clone();
    normalize(&mut incentive);
    let wb: Dense = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| s[i] * (wn[i][j] - p.bonds_penalty * (wn[i][j] - wc[i][j])))
                .collect()
        })
        .collect();
    let colnorm = |m: &Dense| -> Dense {
        let inv: Vec<Fx> = (0..n).map(|j| recip(col_fold(m, j))).collect();
        m.iter()
            .map(|r| r.iter().zip(&inv).map(|(&x, &v)| x * v).collect())
            .collect()
    };
    let db = colnorm(&wb);
    let pb = colnorm(prev);
    let a = Fx::one() - p.bonds_moving_average;
    let mixed: Dense = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| a * db[i][j] + p.bonds_moving_average * pb[i][j])
                .collect()
        })
        .collect();
    let b = colnorm(&mixed);
    let mut dividends: Vec<Fx> = b
        .iter()
        .map(|r| {
            r.iter()
                .zip(&incentive)
                .fold(zero, |acc, (&x, &y)| acc + x * y)
        })
        .collect();
    normalize(&mut dividends);
    let sum: Vec<Fx> = incentive
        .iter()
        .zip(&dividends)
        .map(|(&x, &d)| x + d)
        .collect();
    let total = sum.iter().fold(zero, |acc, &x| acc + x);
    let emission = if total > zero {
        sum.iter().map(|&x| x / total).collect()
    } else {
        s.clone()
    };
    let mut out = vec![c, trust, rank, incentive, dividends, emission];
    out.extend(b);
    out
}

fn sparse(m: &Dense) -> Sparse<Fx> {
    Sparse::from_dense(m).expect("square")
}

/// Stake, weights, previous bonds and the three parameters, in raw units: zeros are common,
/// weights take few distinct values (ties), and some rows are empty or self-only.
type State = (Vec<i64>, Vec<Vec<i64>>, Vec<Vec<i64>>, [i64; 3]);

fn arb_state() -> impl Strategy<Value = State> {
    (1usize..24).prop_flat_map(|n| {
        let one = 1i64 << BITS;
        (
            proptest::collection::vec(prop_oneof![1 => Just(0i64), 3 => 1i64..5000], n),
            proptest::collection::vec(
                proptest::collection::vec(
                    prop_oneof![4 => Just(0i64), 1 => Just(7i64), 3 => 1i64..400],
                    n,
                ),
                n,
            ),
            proptest::collection::vec(
                proptest::collection::vec(prop_oneof![2 => Just(0i64), 1 => 1i64..one], n),
                n,
            ),
            [0i64..=one, 0i64..=one, 0i64..=one],
        )
    })
}

fn fx(m: &[Vec<i64>]) -> Dense {
    m.iter()
        .map(|r| r.iter().map(|&x| Fx(x)).collect())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn sparse_epoch_equals_the_dense_reference_bit_for_bit((stake, w, prev, [kappa, bma, beta]) in arb_state()) {
        let stake: Vec<Fx> = stake.into_iter().map(Fx).collect();
        let (w, prev) = (fx(&w), fx(&prev));
        let p = YumaParams { kappa: Fx(kappa), bonds_moving_average: Fx(bma), bonds_penalty: Fx(beta) };
        let out = epoch(&stake, &sparse(&w), &sparse(&prev), &p);
        let mut got = vec![out.consensus, out.trust, out.rank, out.incentive, out.dividends, out.emission];
        got.extend(out.bonds.to_dense());
        let want = reference(&stake, &w, &prev, &p);
        prop_assert_eq!(got, want);
    }

    #[test]
    fn sparse_consensus_equals_the_dense_quickselect_on_long_columns(
        stake in proptest::collection::vec(prop_oneof![1 => Just(0i64), 4 => 1i64..3000], 40..120),
        density in 1u32..10,
        seed in any::<u64>(),
        kappa in 0i64..=(1 << BITS),
    ) {
        // Long columns, from nearly empty to nearly full, with few distinct values.
        let n = stake.len();
        let mut x = seed | 1;
        let mut next = || { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x };
        let w: Dense = (0..n)
            .map(|_| (0..n).map(|_| {
                let r = next();
                if (r % 10) as u32 >= density { Fx(0) } else { Fx(1 + (r >> 32) as i64 % 5) }
            }).collect())
            .collect();
        let mut s: Vec<Fx> = stake.into_iter().map(Fx).collect();
        normalize(&mut s);
        let got = consensus(&s, &sparse(&w), Fx(kappa));
        let voters: Vec<usize> = (0..n).filter(|&i| s[i] > Fx(0)).collect();
        let mut vs: Vec<Fx> = voters.iter().map(|&i| s[i]).collect();
        normalize(&mut vs);
        let want: Vec<Fx> = (0..n)
            .map(|j| {
                let cand: Vec<(Fx, Fx)> = voters.iter().zip(&vs).map(|(&i, &v)| (w[i][j], v)).collect();
                weighted_median(Fx::one() - Fx(kappa), &cand)
            })
            .collect();
        prop_assert_eq!(got, want);
    }
}
