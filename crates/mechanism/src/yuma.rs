//! Yuma consensus: one epoch of subtensor's classic mechanism, as `spec/yuma.md` pins it.
//!
//! In order, for stake `S`, weights `W` and the previous bonds `B_prev`:
//! 1. `S <- S / sum(S)` (all zero stays all zero).
//! 2. Zero the diagonal of `W`, then normalise each row (a row with nothing left stays zero).
//! 3. Consensus `C_j`: the stake-weighted `kappa`-quantile of column `j` over the rows with
//!    positive stake, by subtensor's quickselect ([`weighted_median`]).
//! 4. Clip `Wc = min(W, C)`; trust `T_i = sum_j Wc_ij`.
//! 5. Rank `R = Wc^T S`; incentive `I = normalize(R)`.
//! 6. Bond weights `Wb = W + beta (Wc - W)`.
//! 7. `dB = colnormalize(diag(S) Wb)`; `B = colnormalize(a dB + (1 - a) colnormalize(B_prev))`,
//!    `a = 1 - bonds_moving_average`.
//! 8. Dividends `D = normalize(B I)`.
//! 9. Emission `E = (I + D) / sum(I + D)`, or `E = S` when that sum is zero.
//!
//! Generic over [`Scalar`]: the simulator runs it in `f64`, the ledger in its fixed point.
//! Row-wise steps run on every core in chunks of a fixed size and the column sums add in
//! row order, so the result does not depend on the number of cores.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::rank::Scalar;
use crate::sparse::{Builder, Sparse};

/// Rows per parallel task. Fixed, so the grouping never depends on the core count.
const CHUNK_ROWS: usize = 128;

/// The parameters of an epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct YumaParams<T> {
    /// The consensus quantile `kappa`, in `[0, 1]` (0.5: the stake-weighted median).
    pub kappa: T,
    /// The bonds' moving average, in `[0, 1]`; the new bonds count `1 - it`.
    pub bonds_moving_average: T,
    /// `beta`, in `[0, 1]`: how much of the clipped-off weight is also cut from the bonds.
    pub bonds_penalty: T,
}

impl YumaParams<f64> {
    /// subtensor's defaults: `kappa = 0.5`, `bonds_moving_average = 0.9`, `beta = 1`.
    pub const DEFAULT: YumaParams<f64> = YumaParams {
        kappa: 0.5,
        bonds_moving_average: 0.9,
        bonds_penalty: 1.0,
    };

    /// Checks that every parameter is a number in `[0, 1]`.
    pub fn new(kappa: f64, bonds_moving_average: f64, bonds_penalty: f64) -> Result<Self> {
        for (name, value) in [
            ("kappa", kappa),
            ("bonds_moving_average", bonds_moving_average),
            ("bonds_penalty", bonds_penalty),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(Error::Parameter {
                    name,
                    value,
                    reason: "must be in [0, 1]",
                });
            }
        }
        Ok(YumaParams {
            kappa,
            bonds_moving_average,
            bonds_penalty,
        })
    }

    /// The same parameters in another number type.
    pub fn convert<T>(&self, f: impl Fn(f64) -> T) -> YumaParams<T> {
        YumaParams {
            kappa: f(self.kappa),
            bonds_moving_average: f(self.bonds_moving_average),
            bonds_penalty: f(self.bonds_penalty),
        }
    }
}

/// Everything an epoch computes, indexed by neuron.
#[derive(Debug, Clone, PartialEq)]
pub struct YumaOutput<T> {
    /// The normalised stake `S`.
    pub stake: Vec<T>,
    /// Consensus `C_j`.
    pub consensus: Vec<T>,
    /// Trust `T_i = sum_j Wc_ij`: how much of row `i` survived clipping.
    pub trust: Vec<T>,
    /// Rank `R = Wc^T S` before normalisation.
    pub rank: Vec<T>,
    /// Incentive `I = normalize(R)`.
    pub incentive: Vec<T>,
    /// Dividends `D = normalize(B I)`.
    pub dividends: Vec<T>,
    /// Emission shares `E` (summing to one, or to zero when every stake is zero).
    pub emission: Vec<T>,
    /// The new bonds `B` (column-normalised), to pass as `B_prev` next epoch.
    pub bonds: Sparse<T>,
}

/// `v / sum(v)` in place (all zero stays all zero).
pub fn normalize<T: Scalar>(v: &mut [T]) {
    let sum = v.iter().fold(T::zero(), |a, &x| a + x);
    if sum > T::zero() {
        for x in v.iter_mut() {
            *x = *x / sum;
        }
    }
}

/// subtensor's stake-weighted quantile by quickselect (`spec/yuma.md`, step 3), over
/// `(score, stake)` candidates in row order, with stakes summing to one. `minority` is
/// `1 - kappa`. The pivot is the middle candidate, values equal to it fall in neither side,
/// so ties resolve exactly as subtensor's do.
pub fn weighted_median<T: Scalar>(minority: T, candidates: &[(T, T)]) -> T {
    quickselect(minority, candidates.to_vec(), T::zero(), T::one())
}

fn quickselect<T: Scalar>(minority: T, mut cand: Vec<(T, T)>, mut lo: T, mut hi: T) -> T {
    loop {
        match cand.len() {
            0 => return T::zero(),
            1 => return cand[0].0,
            _ => {}
        }
        let pivot = cand[cand.len() / 2].0;
        let (mut lower, mut upper) = (Vec::new(), Vec::new());
        let (mut lo_stake, mut hi_stake) = (T::zero(), T::zero());
        for &(score, stake) in &cand {
            if score < pivot {
                lower.push((score, stake));
                lo_stake = lo_stake + stake;
            } else if score > pivot {
                upper.push((score, stake));
                hi_stake = hi_stake + stake;
            }
        }
        if minority < lo + lo_stake && !lower.is_empty() {
            hi = lo + lo_stake;
            cand = lower;
        } else if hi - hi_stake <= minority && !upper.is_empty() {
            lo = hi - hi_stake;
            cand = upper;
        } else {
            return pivot;
        }
    }
}

/// Consensus of every column: the [`weighted_median`] at `kappa` of each column's entries over
/// the rows with positive stake (stakes renormalised among them; an empty row votes 0).
///
/// Works from the sparse columns: when the middle candidate's score is 0 (the common case
/// for sparse weights) the first partition of the quickselect is known without visiting
/// the zeros (nothing is below 0, the non-zeros are above); otherwise the whole column is
/// materialised. Either way the result equals the quickselect over the dense column.
pub fn consensus<T: Scalar + Send + Sync>(stake: &[T], w: &Sparse<T>, kappa: T) -> Vec<T> {
    let n = w.n();
    assert_eq!(stake.len(), n, "stake and weights differ in size");
    // Candidates: rows with positive stake, in row order, with renormalised stakes.
    let rows: Vec<usize> = (0..n).filter(|&i| stake[i] > T::zero()).collect();
    let mut use_stake: Vec<T> = rows.iter().map(|&i| stake[i]).collect();
    normalize(&mut use_stake);
    let m = rows.len();
    // Column lists of (candidate index, score), in candidate order.
    let (ptr, cols, vals) = w.parts();
    let mut count = vec![0usize; n + 1];
    for &i in &rows {
        for &j in &cols[ptr[i]..ptr[i + 1]] {
            count[j as usize + 1] += 1;
        }
    }
    for j in 0..n {
        count[j + 1] += count[j];
    }
    let mut fill = count.clone();
    let mut entries: Vec<(u32, T)> = vec![(0, T::zero()); count[n]];
    for (k, &i) in rows.iter().enumerate() {
        for p in ptr[i]..ptr[i + 1] {
            let j = cols[p] as usize;
            entries[fill[j]] = (k as u32, vals[p]);
            fill[j] += 1;
        }
    }
    let minority = T::one() - kappa;
    (0..n)
        .into_par_iter()
        .with_min_len(16)
        .map(|j| {
            let col = &entries[count[j]..count[j + 1]];
            column_median(minority, col, &use_stake, m)
        })
        .collect()
}

fn column_median<T: Scalar>(minority: T, col: &[(u32, T)], stake: &[T], m: usize) -> T {
    if m == 0 {
        return T::zero();
    }
    let mid = (m / 2) as u32;
    let pivot_is_zero = col.binary_search_by_key(&mid, |&(k, _)| k).is_err();
    if m > 1 && pivot_is_zero {
        // First partition: nothing is below the pivot 0, every stored entry is above.
        if col.is_empty() {
            return T::zero();
        }
        let hi_stake = col
            .iter()
            .fold(T::zero(), |a, &(k, _)| a + stake[k as usize]);
        let hi = T::one();
        if hi - hi_stake <= minority {
            let upper: Vec<(T, T)> = col.iter().map(|&(k, s)| (s, stake[k as usize])).collect();
            return quickselect(minority, upper, hi - hi_stake, hi);
        }
        return T::zero();
    }
    let mut dense = vec![T::zero(); m];
    for &(k, s) in col {
        dense[k as usize] = s;
    }
    let cand: Vec<(T, T)> = dense.into_iter().zip(stake.iter().copied()).collect();
    quickselect(minority, cand, T::zero(), T::one())
}

/// Maps every row of `a` through `f(i, cols, vals, out)` on every core, in chunks of
/// [`CHUNK_ROWS`] rows, and assembles the rows `f` pushed (columns increasing, zeros dropped).
fn map_rows<T, F>(a: &Sparse<T>, f: F) -> Sparse<T>
where
    T: Scalar + Send + Sync,
    F: Fn(usize, &[u32], &[T], &mut Vec<(u32, T)>) + Sync,
{
    let n = a.n();
    let chunks: Vec<(Vec<usize>, Vec<u32>, Vec<T>)> = (0..n.div_ceil(CHUNK_ROWS))
        .into_par_iter()
        .map(|c| {
            let start = c * CHUNK_ROWS;
            let end = (start + CHUNK_ROWS).min(n);
            let mut lens = Vec::with_capacity(end - start);
            let (mut cols, mut vals) = (Vec::new(), Vec::new());
            let mut row = Vec::new();
            for i in start..end {
                row.clear();
                let (c, v) = a.row(i);
                f(i, c, v, &mut row);
                let before = cols.len();
                for &(j, x) in &row {
                    if x != T::zero() {
                        cols.push(j);
                        vals.push(x);
                    }
                }
                lens.push(cols.len() - before);
            }
            (lens, cols, vals)
        })
        .collect();
    let nnz = chunks.iter().map(|c| c.1.len()).sum();
    let mut ptr = Vec::with_capacity(n + 1);
    ptr.push(0);
    let (mut cols, mut vals) = (Vec::with_capacity(nnz), Vec::with_capacity(nnz));
    for (lens, c, v) in chunks {
        for l in lens {
            ptr.push(ptr.last().copied().unwrap_or(0) + l);
        }
        cols.extend(c);
        vals.extend(v);
    }
    Sparse::from_parts(n, ptr, cols, vals)
}

/// Multiplies every entry by the reciprocal of its column's sum (a zero column stays zero).
fn col_normalize<T: Scalar + Send + Sync>(a: &Sparse<T>) -> Sparse<T> {
    let inv: Vec<T> = a
        .col_sums()
        .into_iter()
        .map(|s| {
            if s > T::zero() {
                T::one() / s
            } else {
                T::zero()
            }
        })
        .collect();
    map_rows(a, |_, c, v, out| {
        out.extend(c.iter().zip(v).map(|(&j, &x)| (j, x * inv[j as usize])));
    })
}

/// Row `i` of `W` with the diagonal removed, normalised to sum one (empty stays empty).
fn normalize_rows_without_diagonal<T: Scalar + Send + Sync>(w: &Sparse<T>) -> Sparse<T> {
    map_rows(w, |i, c, v, out| {
        let sum = c
            .iter()
            .zip(v)
            .filter(|(j, _)| **j as usize != i)
            .fold(T::zero(), |a, (_, &x)| a + x);
        if sum > T::zero() {
            let inv = T::one() / sum;
            out.extend(
                c.iter()
                    .zip(v)
                    .filter(|(j, _)| **j as usize != i)
                    .map(|(&j, &x)| (j, x * inv)),
            );
        }
    })
}

/// One epoch of Yuma consensus (module docs, steps 1-9). `stake` must be non-negative and
/// `params` in `[0, 1]` (checked at the edges: [`YumaParams::new`], genesis, the CLI);
/// `bonds_prev` is all zero at genesis.
pub fn epoch<T: Scalar + Send + Sync>(
    stake: &[T],
    weights: &Sparse<T>,
    bonds_prev: &Sparse<T>,
    params: &YumaParams<T>,
) -> YumaOutput<T> {
    let n = weights.n();
    assert_eq!(stake.len(), n, "stake and weights differ in size");
    assert_eq!(bonds_prev.n(), n, "bonds and weights differ in size");
    // 1.
    let mut s = stake.to_vec();
    normalize(&mut s);
    // 2.
    let w = normalize_rows_without_diagonal(weights);
    // 3.
    let c = consensus(&s, &w, params.kappa);
    // 4.
    let wc = map_rows(&w, |_, cols, v, out| {
        out.extend(
            cols.iter()
                .zip(v)
                .map(|(&j, &x)| (j, x.min_of(c[j as usize]))),
        );
    });
    let trust: Vec<T> = (0..n)
        .into_par_iter()
        .with_min_len(CHUNK_ROWS)
        .map(|i| wc.row(i).1.iter().fold(T::zero(), |a, &x| a + x))
        .collect();
    // 5. Column sums of diag(S) Wc, adding in row order.
    let mut rank = vec![T::zero(); n];
    for (i, &si) in s.iter().enumerate() {
        if si == T::zero() {
            continue;
        }
        for (j, x) in wc.row_iter(i) {
            rank[j] = rank[j] + si * x;
        }
    }
    let mut incentive = rank.clone();
    normalize(&mut incentive);
    // 6-7. Wb and dB have W's sparsity (Wc may have fewer entries: the clipped-to-zero).
    let beta = params.bonds_penalty;
    let delta = map_rows(&w, |i, cols, v, out| {
        out.extend(cols.iter().zip(v).map(|(&j, &x)| {
            let xc = x.min_of(c[j as usize]);
            (j, s[i] * (x - beta * (x - xc)))
        }));
    });
    let delta = col_normalize(&delta);
    let prev = col_normalize(bonds_prev);
    let a = T::one() - params.bonds_moving_average;
    let keep = params.bonds_moving_average;
    let mixed = map_rows(&delta, |i, dc, dv, out| {
        let (pc, pv) = prev.row(i);
        let (mut x, mut y) = (0, 0);
        while x < dc.len() || y < pc.len() {
            let dj = dc.get(x).copied().unwrap_or(u32::MAX);
            let pj = pc.get(y).copied().unwrap_or(u32::MAX);
            if dj == pj {
                out.push((dj, a * dv[x] + keep * pv[y]));
                x += 1;
                y += 1;
            } else if dj < pj {
                out.push((dj, a * dv[x]));
                x += 1;
            } else {
                out.push((pj, keep * pv[y]));
                y += 1;
            }
        }
    });
    let bonds = col_normalize(&mixed);
    // 8.
    let mut dividends: Vec<T> = (0..n)
        .into_par_iter()
        .with_min_len(CHUNK_ROWS)
        .map(|i| {
            bonds
                .row_iter(i)
                .fold(T::zero(), |acc, (j, b)| acc + b * incentive[j])
        })
        .collect();
    normalize(&mut dividends);
    // 9.
    let mut emission: Vec<T> = incentive
        .iter()
        .zip(&dividends)
        .map(|(&x, &d)| x + d)
        .collect();
    let total = emission.iter().fold(T::zero(), |acc, &x| acc + x);
    if total > T::zero() {
        for e in emission.iter_mut() {
            *e = *e / total;
        }
    } else {
        emission.clone_from(&s);
    }
    YumaOutput {
        stake: s,
        consensus: c,
        trust,
        rank,
        incentive,
        dividends,
        emission,
        bonds,
    }
}

/// Builds a [`Sparse`] directly from rows already sorted by column with columns below `n`
/// (callers that hold validated rows, such as the ledger); zeros are dropped, rows past the
/// `n`-th are ignored and missing rows are empty. Unchecked: use [`Sparse::from_rows`] for
/// input from outside.
pub fn sparse_from_sorted_rows<T, R, I>(n: usize, rows: R) -> Sparse<T>
where
    T: Scalar,
    R: IntoIterator<Item = I>,
    I: IntoIterator<Item = (u32, T)>,
{
    let mut b = Builder::with_capacity(n, 0);
    let mut count = 0;
    for r in rows.into_iter().take(n) {
        b.push_row(r.into_iter().filter(|&(j, _)| (j as usize) < n));
        count += 1;
    }
    for _ in count..n {
        b.push_row(std::iter::empty());
    }
    b.finish()
}
