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
use crate::sparse::{Builder, Sparse, build_par};

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
/// Works from the sparse columns, each column's quickselect visiting only its non-zeros: the
/// zeros are all equal, so they stay together and are counted, not listed (see
/// [`column_median`]). The result equals the quickselect over the dense column.
pub fn consensus<T: Scalar + Send + Sync>(stake: &[T], w: &Sparse<T>, kappa: T) -> Vec<T> {
    columns(stake, w, kappa, T::zero()).consensus
}

/// What the column pass computes, per column `j`.
struct ColumnSums<T> {
    /// `C_j`.
    consensus: Vec<T>,
    /// `sum_i S_i min(W_ij, C_j)`: the rank before normalisation.
    rank: Vec<T>,
    /// `sum_i S_i Wb_ij`, `Wb = W + beta (Wc - W)`: the column sums of `diag(S) Wb`.
    bond_sums: Vec<T>,
}

/// Columns per task of [`columns`].
const COLUMN_BLOCK: usize = 512;

/// Consensus, rank and the bond-weight sums of every column, on every core. Each block of
/// [`COLUMN_BLOCK`] columns gathers its slice of every positive-stake row (rows are sorted by
/// column, so a binary search finds it) into buffers the worker reuses, in row order, and
/// runs each column's quickselect and sums there. The sums add in row order, as a row-by-row
/// accumulation would (rows without stake add nothing to them).
fn columns<T: Scalar + Send + Sync>(
    stake: &[T],
    w: &Sparse<T>,
    kappa: T,
    beta: T,
) -> ColumnSums<T> {
    let n = w.n();
    assert_eq!(stake.len(), n, "stake and weights differ in size");
    let cand = Candidates::new(stake);
    let (ptr, cols, vals) = w.parts();
    let minority = T::one() - kappa;
    let zero = T::zero();
    let mut out = ColumnSums {
        consensus: vec![zero; n],
        rank: vec![zero; n],
        bond_sums: vec![zero; n],
    };
    if n == 0 {
        // No column to compute (an epoch before anyone registered).
        return out;
    }
    // Where each voter's row crosses into each block: `splits[k * (blocks + 1) + b]` is the
    // offset in `W`'s arrays of voter k's first entry at column `b * COLUMN_BLOCK` or above.
    let blocks = n.div_ceil(COLUMN_BLOCK);
    let mut splits = vec![0usize; cand.rows.len() * (blocks + 1)];
    splits
        .par_chunks_mut(blocks + 1)
        .zip(cand.rows.par_iter())
        .with_min_len(CHUNK_ROWS)
        .for_each(|(sp, &i)| {
            let (start, end) = (ptr[i], ptr[i + 1]);
            let mut p = start;
            for (b, x) in sp.iter_mut().enumerate() {
                while p < end && (cols[p] as usize) < b * COLUMN_BLOCK {
                    p += 1;
                }
                *x = p;
            }
        });
    // Two groups of consecutive blocks per thread, each with one set of buffers (every column
    // is computed alone, so the grouping does not change any result).
    let per_group = blocks.div_ceil(2 * rayon::current_num_threads().max(1)) * COLUMN_BLOCK;
    out.consensus
        .par_chunks_mut(per_group)
        .zip(out.rank.par_chunks_mut(per_group))
        .zip(out.bond_sums.par_chunks_mut(per_group))
        .enumerate()
        .for_each(|(group, ((cg, rg), dg))| {
            let mut scratch = Scratch::default();
            let scratch = &mut scratch;
            let parts = cg
                .chunks_mut(COLUMN_BLOCK)
                .zip(rg.chunks_mut(COLUMN_BLOCK))
                .zip(dg.chunks_mut(COLUMN_BLOCK));
            for (b, ((c_out, r_out), d_out)) in parts.enumerate() {
                let blk = group * (per_group / COLUMN_BLOCK) + b;
                let lo = blk * COLUMN_BLOCK;
                let hi = lo + c_out.len();
                // Each voter's slice of this block, then a counting sort into the buffers.
                scratch.slices.clear();
                scratch.count.clear();
                scratch.count.resize(hi - lo + 1, 0);
                for k in 0..cand.rows.len() {
                    let (a, b) = (
                        splits[k * (blocks + 1) + blk],
                        splits[k * (blocks + 1) + blk + 1],
                    );
                    if a < b {
                        scratch.slices.push((k as u32, a, b));
                        for &j in &cols[a..b] {
                            scratch.count[j as usize - lo + 1] += 1;
                        }
                    }
                }
                for x in 1..scratch.count.len() {
                    scratch.count[x] += scratch.count[x - 1];
                }
                let total = scratch.count[hi - lo];
                scratch.ks.clear();
                scratch.ks.resize(total, 0);
                scratch.scores.clear();
                scratch.scores.resize(total, zero);
                scratch.fill.clear();
                scratch.fill.extend_from_slice(&scratch.count[..hi - lo]);
                for &(k, a, b) in &scratch.slices {
                    for p in a..b {
                        let f = &mut scratch.fill[cols[p] as usize - lo];
                        scratch.ks[*f] = k;
                        scratch.scores[*f] = vals[p];
                        *f += 1;
                    }
                }
                for (x, ((c, r), d)) in c_out.iter_mut().zip(r_out).zip(d_out).enumerate() {
                    let (a, b) = (scratch.count[x], scratch.count[x + 1]);
                    let median = column_median(
                        minority,
                        &scratch.ks[a..b],
                        &scratch.scores[a..b],
                        &cand,
                        &mut scratch.select,
                    );
                    let (mut rank, mut sum) = (zero, zero);
                    for (&k, &v) in scratch.ks[a..b].iter().zip(&scratch.scores[a..b]) {
                        let si = cand.own[k as usize];
                        let vc = v.min_of(median);
                        rank = rank + si * vc;
                        sum = sum + si * (v - beta * (v - vc));
                    }
                    *c = median;
                    *r = rank;
                    *d = sum;
                }
            }
        });
    out
}

/// The rows that vote in consensus: those with positive stake, in row order, with their
/// stakes renormalised to sum one.
struct Candidates<T> {
    /// The row of each candidate.
    rows: Vec<usize>,
    /// Renormalised stake of each candidate.
    stake: Vec<T>,
    /// Each candidate's own stake, as given.
    own: Vec<T>,
    /// The sum of `stake` (one, up to rounding; zero without candidates).
    total: T,
}

impl<T: Scalar> Candidates<T> {
    fn new(stake: &[T]) -> Self {
        let rows: Vec<usize> = (0..stake.len()).filter(|&i| stake[i] > T::zero()).collect();
        let own: Vec<T> = rows.iter().map(|&i| stake[i]).collect();
        let mut use_stake = own.clone();
        normalize(&mut use_stake);
        let total = use_stake.iter().fold(T::zero(), |a, &x| a + x);
        Candidates {
            rows,
            stake: use_stake,
            own,
            total,
        }
    }
}

/// A non-zero entry of a column during the quickselect: its candidate number, its position
/// in the column's list and its score.
#[derive(Clone, Copy)]
struct Entry<T> {
    k: u32,
    pos: u32,
    score: T,
}

/// Buffers one worker reuses across columns.
struct Scratch<T> {
    /// The block's voters' slices: (candidate, start, end) in `W`'s arrays.
    slices: Vec<(u32, usize, usize)>,
    /// Column starts within the block (counting sort), and the fill cursors.
    count: Vec<usize>,
    fill: Vec<usize>,
    /// The block's columns: candidate numbers and scores, each column in candidate order.
    ks: Vec<u32>,
    scores: Vec<T>,
    select: Select<T>,
}

impl<T> Default for Scratch<T> {
    fn default() -> Self {
        Scratch {
            slices: Vec::new(),
            count: Vec::new(),
            fill: Vec::new(),
            ks: Vec::new(),
            scores: Vec::new(),
            select: Select::default(),
        }
    }
}

/// The two buffers of [`column_median`]'s partitions.
struct Select<T> {
    cur: Vec<Entry<T>>,
    other: Vec<Entry<T>>,
}

impl<T> Default for Select<T> {
    fn default() -> Self {
        Select {
            cur: Vec::new(),
            other: Vec::new(),
        }
    }
}

/// The quickselect of [`weighted_median`] over a column of `m = cand.stake.len()`
/// candidates, of which `ks` (increasing) hold the non-zero `scores`, all others 0.
///
/// The zeros are equal, so a partition keeps them together: while they are candidates they
/// are represented by their count and stake, and the middle candidate (in row order) is found
/// by binary search (non-zero entry `p` sits at merged position `p + zeros before it`). Only
/// the non-zeros are partitioned, stably, in two reused buffers; the first partition, over the
/// whole column, sums both sides before copying only the side that goes on (most columns of
/// a sparse `W` stop there, at 0). Stake sums add the non-zeros in row order, as the dense
/// quickselect does; when the zeros join a side whose stake is summed, exact scalars
/// ([`Scalar::EXACT`]) add their total at once, while the others fall back to the dense
/// quickselect so that their rounding stays the same.
fn column_median<T: Scalar>(
    minority: T,
    ks: &[u32],
    scores: &[T],
    cand: &Candidates<T>,
    scratch: &mut Select<T>,
) -> T {
    let m = cand.stake.len();
    let zero = T::zero();
    let stake_of = |k: u32| cand.stake[k as usize];
    match m {
        0 => return zero,
        1 => return scores.first().copied().unwrap_or(zero),
        _ => {}
    }
    let zcount = m - ks.len();
    // Only read by exact scalars, for which this subtraction is exact.
    let zstake = cand.total - ks.iter().fold(zero, |a, &k| a + stake_of(k));
    // First partition, over the whole column: candidate m / 2 is the pivot.
    let pivot = match ks.binary_search(&((m / 2) as u32)) {
        Ok(p) => scores[p],
        Err(_) => zero,
    };
    let zeros_lower = zcount > 0 && zero < pivot;
    let zeros_upper = zcount > 0 && zero > pivot;
    if (zeros_lower || zeros_upper) && !T::EXACT {
        let all: Vec<Entry<T>> = (0..ks.len())
            .map(|p| Entry {
                k: ks[p],
                pos: p as u32,
                score: scores[p],
            })
            .collect();
        return dense_fallback(minority, ks, &all, cand, zero, T::one());
    }
    let (mut lo_stake, mut hi_stake) = (zero, zero);
    let (mut n_lo, mut n_hi) = (0usize, 0usize);
    for (&k, &score) in ks.iter().zip(scores) {
        if score < pivot {
            lo_stake = lo_stake + stake_of(k);
            n_lo += 1;
        } else if score > pivot {
            hi_stake = hi_stake + stake_of(k);
            n_hi += 1;
        }
    }
    if zeros_lower {
        lo_stake = lo_stake + zstake;
    }
    if zeros_upper {
        hi_stake = hi_stake + zstake;
    }
    let (mut lo, mut hi) = (zero, T::one());
    let go_lower = if minority < lo + lo_stake && (n_lo > 0 || zeros_lower) {
        hi = lo + lo_stake;
        true
    } else if hi - hi_stake <= minority && (n_hi > 0 || zeros_upper) {
        lo = hi - hi_stake;
        false
    } else {
        return pivot;
    };
    let mut zeros_in = if go_lower { zeros_lower } else { zeros_upper };
    let Select { cur, other } = scratch;
    cur.clear();
    for (p, (&k, &score)) in ks.iter().zip(scores).enumerate() {
        if (go_lower && score < pivot) || (!go_lower && score > pivot) {
            cur.push(Entry {
                k,
                pos: p as u32,
                score,
            });
        }
    }
    loop {
        let len = cur.len() + if zeros_in { zcount } else { 0 };
        match len {
            0 => return zero,
            1 => return cur.first().map_or(zero, |e| e.score),
            _ => {}
        }
        let t = len / 2;
        let pivot = if zeros_in {
            // Merged position of entry p: p + (its candidate number - its column position).
            let (mut p, mut end) = (0, cur.len());
            while p < end {
                let mid = (p + end) / 2;
                let e = &cur[mid];
                if mid + ((e.k - e.pos) as usize) < t {
                    p = mid + 1;
                } else {
                    end = mid;
                }
            }
            match cur.get(p) {
                Some(e) if p + (e.k - e.pos) as usize == t => e.score,
                _ => zero,
            }
        } else {
            cur[t].score
        };
        let zeros_lower = zeros_in && zero < pivot;
        let zeros_upper = zeros_in && zero > pivot;
        if (zeros_lower || zeros_upper) && !T::EXACT {
            return dense_fallback(minority, ks, cur, cand, lo, hi);
        }
        other.clear();
        let (mut lo_stake, mut hi_stake) = (zero, zero);
        let mut up = 0;
        for x in 0..cur.len() {
            let e = cur[x];
            if e.score < pivot {
                other.push(e);
                lo_stake = lo_stake + stake_of(e.k);
            } else if e.score > pivot {
                cur[up] = e;
                up += 1;
                hi_stake = hi_stake + stake_of(e.k);
            }
        }
        cur.truncate(up);
        if zeros_lower {
            lo_stake = lo_stake + zstake;
        }
        if zeros_upper {
            hi_stake = hi_stake + zstake;
        }
        if minority < lo + lo_stake && (!other.is_empty() || zeros_lower) {
            hi = lo + lo_stake;
            std::mem::swap(cur, other);
            zeros_in = zeros_lower;
        } else if hi - hi_stake <= minority && (!cur.is_empty() || zeros_upper) {
            lo = hi - hi_stake;
            zeros_in = zeros_upper;
        } else {
            return pivot;
        }
    }
}

/// The rest of [`column_median`] on the dense candidates: the entries `cur` still in play
/// (ordered by column position) and every zero, listed in row order, for scalars whose sums
/// depend on their order. Reached only while the zeros are candidates.
fn dense_fallback<T: Scalar>(
    minority: T,
    ks: &[u32],
    cur: &[Entry<T>],
    cand: &Candidates<T>,
    lo: T,
    hi: T,
) -> T {
    let mut dense = Vec::with_capacity(cand.stake.len());
    let (mut q, mut c) = (0, 0);
    for (k, &stake) in cand.stake.iter().enumerate() {
        if ks.get(q) == Some(&(k as u32)) {
            if cur.get(c).is_some_and(|e| e.pos as usize == q) {
                dense.push((cur[c].score, stake));
                c += 1;
            }
            q += 1;
        } else {
            dense.push((T::zero(), stake));
        }
    }
    quickselect(minority, dense, lo, hi)
}

/// Rows per task of [`row_sums`]. Fixed, so the grouping never depends on the core count.
const SUM_CHUNK_ROWS: usize = 512;

/// Runs `f(i, acc)` for every row `i`, where `f` adds row `i`'s contributions into `acc`
/// (`width` accumulators, e.g. column sums) and returns a value of its own; returns the
/// accumulators and the values. Every accumulator adds its contributions in row order: for
/// exact scalars in chunks of [`SUM_CHUNK_ROWS`] rows on every core, the chunks' partial sums
/// added in order (the same result); otherwise on one core.
fn row_sums<T, R, F>(rows: usize, width: usize, f: F) -> (Vec<T>, Vec<R>)
where
    T: Scalar + Send + Sync,
    R: Send,
    F: Fn(usize, &mut [T]) -> R + Sync,
{
    let mut acc = vec![T::zero(); width];
    if !T::EXACT {
        let values = (0..rows).map(|i| f(i, &mut acc)).collect();
        return (acc, values);
    }
    let parts: Vec<(Vec<T>, Vec<R>)> = (0..rows.div_ceil(SUM_CHUNK_ROWS))
        .into_par_iter()
        .map(|c| {
            let mut part = vec![T::zero(); width];
            let end = ((c + 1) * SUM_CHUNK_ROWS).min(rows);
            let values = (c * SUM_CHUNK_ROWS..end).map(|i| f(i, &mut part)).collect();
            (part, values)
        })
        .collect();
    let mut values = Vec::with_capacity(rows);
    for (part, v) in parts {
        for (a, x) in acc.iter_mut().zip(part) {
            *a = *a + x;
        }
        values.extend(v);
    }
    (acc, values)
}

/// `1 / x`, or zero for a zero (or negative) sum: the factor of a column normalisation.
fn reciprocal<T: Scalar>(x: T) -> T {
    if x > T::zero() {
        T::one() / x
    } else {
        T::zero()
    }
}

/// Row `i` of `W` with the diagonal removed, normalised to sum one (empty stays empty), from
/// a row source (`rows(i)`: row `i`'s entries, columns increasing, any outside `[0, n)` or
/// zero ignored).
fn normalize_rows_without_diagonal<T, F, I>(n: usize, rows: &F) -> Sparse<T>
where
    T: Scalar + Send + Sync,
    F: Fn(usize) -> I + Sync,
    I: Iterator<Item = (u32, T)>,
{
    let zero = T::zero();
    let entries =
        |i: usize| rows(i).filter(move |&(j, v)| (j as usize) < n && j as usize != i && v != zero);
    let bounds: Vec<usize> = (0..n)
        .into_par_iter()
        .with_min_len(CHUNK_ROWS)
        .map(|i| entries(i).count())
        .collect();
    build_par(n, &bounds, |i, oc, ov| {
        let sum = entries(i).fold(zero, |a, (_, x)| a + x);
        if sum <= zero {
            return 0;
        }
        let inv = T::one() / sum;
        let mut k = 0;
        for (j, x) in entries(i) {
            let y = x * inv;
            if y != zero {
                oc[k] = j;
                ov[k] = y;
                k += 1;
            }
        }
        k
    })
}

/// What the mixed bonds `a dB + (1 - a) colnormalize(B_prev)` (before their column
/// normalisation) are computed from, row by row: `dB_ij = S_i Wb_ij / dsum_j` and
/// `P_ij = B_prev_ij / psum_j` (the sums given as reciprocals).
struct Mix<'a, T, F> {
    w: &'a Sparse<T>,
    prev: &'a F,
    s: &'a [T],
    c: &'a [T],
    beta: T,
    dinv: &'a [T],
    pinv: &'a [T],
    a: T,
    keep: T,
}

impl<T, F, I> Mix<'_, T, F>
where
    T: Scalar,
    F: Fn(usize) -> I,
    I: Iterator<Item = (u32, T)>,
{
    /// How many entries [`Mix::row`] may give for row `i`: the union of `B_prev`'s entries
    /// and `W`'s whose `S_i Wb_ij` is not zero (those clipped away entirely are not).
    fn support(&self, i: usize) -> usize {
        let (n, zero) = (self.pinv.len(), T::zero());
        let (dc, dv) = self.w.row(i);
        let si = self.s[i];
        let live = |x: usize| {
            let v = dv[x];
            si != zero && v - self.beta * (v - v.min_of(self.c[dc[x] as usize])) != zero
        };
        let mut prev = (self.prev)(i).filter(|&(j, v)| (j as usize) < n && v != zero);
        let (mut x, mut count) = (0, 0);
        let mut p = prev.next();
        while x < dc.len() || p.is_some() {
            let dj = dc.get(x).copied().unwrap_or(u32::MAX);
            let pj = p.map_or(u32::MAX, |e| e.0);
            if dj < pj {
                count += usize::from(live(x));
                x += 1;
            } else {
                if dj == pj {
                    x += 1;
                }
                p = prev.next();
                count += 1;
            }
        }
        count
    }

    /// Calls `f(j, value)` for each non-zero entry of row `i`, in column order. A `dB` or `P`
    /// entry that is zero counts as absent, as when it is stored sparsely.
    #[inline]
    fn row(&self, i: usize, mut f: impl FnMut(u32, T)) {
        let zero = T::zero();
        let n = self.pinv.len();
        let (dc, dv) = self.w.row(i);
        let mut prev = (self.prev)(i).filter(|&(j, v)| (j as usize) < n && v != zero);
        let si = self.s[i];
        let delta = |x: usize| -> T {
            let v = dv[x];
            let j = dc[x] as usize;
            let d = si * (v - self.beta * (v - v.min_of(self.c[j])));
            if d == zero { zero } else { d * self.dinv[j] }
        };
        let (mut x, mut p) = (0, prev.next());
        while x < dc.len() || p.is_some() {
            let dj = dc.get(x).copied().unwrap_or(u32::MAX);
            let (pj, pv) = p.unwrap_or((u32::MAX, zero));
            let (j, d, q) = if dj == pj {
                x += 1;
                p = prev.next();
                (dj, delta(x - 1), pv * self.pinv[pj as usize])
            } else if dj < pj {
                x += 1;
                (dj, delta(x - 1), zero)
            } else {
                p = prev.next();
                (pj, zero, pv * self.pinv[pj as usize])
            };
            let out = match (d != zero, q != zero) {
                (true, true) => self.a * d + self.keep * q,
                (true, false) => self.a * d,
                (false, true) => self.keep * q,
                (false, false) => continue,
            };
            if out != zero {
                f(j, out);
            }
        }
    }
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
    epoch_rows(
        stake,
        |i| weights.row_iter(i).map(|(j, v)| (j as u32, v)),
        |i| bonds_prev.row_iter(i).map(|(j, v)| (j as u32, v)),
        params,
    )
}

/// [`epoch`] over row sources, for callers that hold their rows in their own form (such as
/// the ledger's neurons), so that nothing is copied into a [`Sparse`] first: `weights(i)` and
/// `bonds_prev(i)` give row `i`'s `(column, value)` entries with columns increasing; entries
/// outside `[0, n)` (`n = stake.len()`) and zeros are ignored.
///
/// Sparse throughout: `W` is normalised once (step 2), its candidates' columns are built
/// once for consensus, clipping and `Wb` are computed where they are used, and the bonds are
/// built row by row on the union of `W`'s and `B_prev`'s supports. Column sums add in row
/// order ([`row_sums`]); row-wise steps run on every core.
pub fn epoch_rows<T, FW, IW, FB, IB>(
    stake: &[T],
    weights: FW,
    bonds_prev: FB,
    params: &YumaParams<T>,
) -> YumaOutput<T>
where
    T: Scalar + Send + Sync,
    FW: Fn(usize) -> IW + Sync,
    IW: Iterator<Item = (u32, T)>,
    FB: Fn(usize) -> IB + Sync,
    IB: Iterator<Item = (u32, T)>,
{
    let n = stake.len();
    let zero = T::zero();
    // 1.
    let mut s = stake.to_vec();
    normalize(&mut s);
    // 2.
    let w = normalize_rows_without_diagonal(n, &weights);
    // 3-6. Consensus; rank R = Wc^T S; the column sums of diag(S) Wb, for dB.
    let beta = params.bonds_penalty;
    let ColumnSums {
        consensus: c,
        rank,
        bond_sums,
    } = columns(&s, &w, params.kappa, beta);
    let mut incentive = rank.clone();
    normalize(&mut incentive);
    // 7. B = colnormalize(a dB + (1 - a) colnormalize(B_prev)).
    let dinv: Vec<T> = bond_sums.iter().map(|&x| reciprocal(x)).collect();
    let (psum, _) = row_sums::<T, (), _>(n, n, |i, acc| {
        for (j, b) in bonds_prev(i) {
            if (j as usize) < n {
                acc[j as usize] = acc[j as usize] + b;
            }
        }
    });
    let pinv: Vec<T> = psum.into_iter().map(reciprocal).collect();
    let mix = Mix {
        w: &w,
        prev: &bonds_prev,
        s: &s,
        c: &c,
        beta,
        dinv: &dinv,
        pinv: &pinv,
        a: T::one() - params.bonds_moving_average,
        keep: params.bonds_moving_average,
    };
    // Trust T_i = sum_j Wc_ij, beside each row's bound for the mixed bonds.
    let (trust, bounds): (Vec<T>, Vec<usize>) = (0..n)
        .into_par_iter()
        .with_min_len(CHUNK_ROWS)
        .map(|i| {
            let (cols, vals) = w.row(i);
            let t = cols
                .iter()
                .zip(vals)
                .fold(zero, |t, (&j, &x)| t + x.min_of(c[j as usize]));
            (t, mix.support(i))
        })
        .unzip();
    let mixed = build_par(n, &bounds, |i, oc, ov| {
        let mut k = 0;
        mix.row(i, |j, x| {
            oc[k] = j;
            ov[k] = x;
            k += 1;
        });
        k
    });
    let (msum, _) = row_sums::<T, (), _>(n, n, |i, acc| {
        for (j, x) in mixed.row_iter(i) {
            acc[j] = acc[j] + x;
        }
    });
    let minv: Vec<T> = msum.into_iter().map(reciprocal).collect();
    let bonds = mixed.scale_columns(&minv);
    // 8.
    let mut dividends: Vec<T> = (0..n)
        .into_par_iter()
        .with_min_len(CHUNK_ROWS)
        .map(|i| {
            bonds
                .row_iter(i)
                .fold(zero, |acc, (j, b)| acc + b * incentive[j])
        })
        .collect();
    normalize(&mut dividends);
    // 9.
    let mut emission: Vec<T> = incentive
        .iter()
        .zip(&dividends)
        .map(|(&x, &d)| x + d)
        .collect();
    let total = emission.iter().fold(zero, |acc, &x| acc + x);
    if total > zero {
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
