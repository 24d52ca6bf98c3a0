//! Rank and block inflation (paper eq. 4-6, Algorithm 1).
//!
//! - Rank: `R_j = (1/n) * sum_i S_i * W_ij`.
//! - Inflation: `S <- S + tau * R / ||R||_2`; nothing changes when `||R||_2 == 0`.
//!
//! Both are generic over [`Scalar`] so that the ledger runs this very code in its
//! deterministic fixed-point type, while the simulator runs it in `f64`.

use std::ops::{Add, Div, Mul, Sub};

use crate::matrix::Matrix;

/// The arithmetic rank and inflation need. Implemented for `f64` here and for the
/// ledger's fixed-point number there.
pub trait Scalar:
    Copy
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
{
    /// Whether adding the mechanisms' non-negative values is exact, so that sums in any
    /// grouping are bit-identical (integer-backed fixed point: yes; `f64`: no). Exact types
    /// may sum in parallel partials and count repeated values at once; the others keep the
    /// sequential order, so their rounding never changes either.
    const EXACT: bool = false;
    /// Zero.
    fn zero() -> Self;
    /// The number `n` (a count of neurons).
    fn from_count(n: usize) -> Self;
    /// The square root of a non-negative number.
    fn sqrt(self) -> Self;
    /// One.
    fn one() -> Self {
        Self::from_count(1)
    }
    /// The smaller of two numbers.
    fn min_of(self, other: Self) -> Self {
        if other < self { other } else { self }
    }
}

impl Scalar for f64 {
    fn zero() -> Self {
        0.0
    }
    fn from_count(n: usize) -> Self {
        n as f64
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
}

/// `R = (1/n) W^T S` for a dense `W`.
pub fn rank(stake: &[f64], w: &Matrix) -> Vec<f64> {
    let mut out = vec![0.0; w.n()];
    rank_into(stake, w, &mut out);
    out
}

/// `R = (1/n) W^T S` into `out`, without allocating. This is also the column shift `mu`
/// of the competitive mask (eq. 7).
pub fn rank_into(stake: &[f64], w: &Matrix, out: &mut [f64]) {
    rank_into_diag(stake, w, out, Diagonal::Keep);
}

/// [`rank_into`] with the diagonal kept or dropped.
pub fn rank_into_diag(stake: &[f64], w: &Matrix, out: &mut [f64], diagonal: Diagonal) {
    let n = w.n();
    assert_eq!(
        stake.len(),
        n,
        "stake has {} entries for {n} neurons",
        stake.len()
    );
    out[..n].fill(0.0);
    for (i, (row, &s)) in w.rows().zip(stake).enumerate() {
        if s == 0.0 {
            continue;
        }
        let own = out[i];
        for (o, &x) in out.iter_mut().zip(row) {
            *o += s * x;
        }
        if diagonal == Diagonal::Drop {
            out[i] = own;
        }
    }
    let inv = 1.0 / n as f64;
    for o in out.iter_mut() {
        *o *= inv;
    }
}

/// `R = (1/n) W^T S` for sparse rows: `rows` yields, for each neuron `i` in uid order, the
/// pairs `(j, W_ij)` of its non-zero weights. Generic over the number type, so the ledger
/// ranks in fixed point with this same code. Pairs with `j >= stake.len()` are ignored.
pub fn rank_sparse<T, R, I>(stake: &[T], rows: R) -> Vec<T>
where
    T: Scalar,
    R: IntoIterator<Item = I>,
    I: IntoIterator<Item = (usize, T)>,
{
    rank_sparse_diag(stake, rows, Diagonal::Keep)
}

/// Whether a rank counts the diagonal `W_ii` (the paper) or leaves it out (`paper_no_self`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Diagonal {
    /// `R_j = (1/n) sum_i S_i W_ij`.
    Keep,
    /// `R_j = (1/n) sum_{i != j} S_i W_ij`: a self-weight counts for nothing.
    Drop,
}

/// [`rank_sparse`] with the diagonal kept or dropped.
pub fn rank_sparse_diag<T, R, I>(stake: &[T], rows: R, diagonal: Diagonal) -> Vec<T>
where
    T: Scalar,
    R: IntoIterator<Item = I>,
    I: IntoIterator<Item = (usize, T)>,
{
    let n = stake.len();
    let mut out = vec![T::zero(); n];
    accumulate(&mut out, stake, 0, rows, diagonal);
    divide_by_count(&mut out);
    out
}

/// Adds `sum_i S_i W_ij` over the given rows (paired with `stake` in order, the first being
/// neuron `first`) into `out`, skipping `j == i` when the diagonal is dropped.
fn accumulate<T, R, I>(out: &mut [T], stake: &[T], first: usize, rows: R, diagonal: Diagonal)
where
    T: Scalar,
    R: IntoIterator<Item = I>,
    I: IntoIterator<Item = (usize, T)>,
{
    for (k, (row, &s)) in rows.into_iter().zip(stake).enumerate() {
        if s == T::zero() {
            continue;
        }
        let i = first + k;
        for (j, w) in row {
            if diagonal == Diagonal::Drop && j == i {
                continue;
            }
            if let Some(o) = out.get_mut(j) {
                *o = *o + s * w;
            }
        }
    }
}

/// Divides every entry by the number of neurons `n = out.len()`.
fn divide_by_count<T: Scalar>(out: &mut [T]) {
    let count = T::from_count(out.len().max(1));
    for o in out {
        *o = *o / count;
    }
}

/// One block of inflation: `S <- S + tau * R / ||R||_2`. Returns what was minted,
/// `tau * ||R||_1 / ||R||_2` (ranks are non-negative). Mints nothing when `||R||_2 == 0`.
pub fn inflation_step<T: Scalar>(stake: &mut [T], rank: &[T], tau: T) -> T {
    assert_eq!(stake.len(), rank.len(), "stake and rank differ in length");
    let sq = rank.iter().fold(T::zero(), |acc, &r| acc + r * r);
    let norm = sq.sqrt();
    if norm.partial_cmp(&T::zero()) != Some(std::cmp::Ordering::Greater) {
        return T::zero();
    }
    let mut minted = T::zero();
    for (s, &r) in stake.iter_mut().zip(rank) {
        let add = tau * r / norm;
        *s = *s + add;
        minted = minted + add;
    }
    minted
}

/// Rows per task of [`rank_sparse_par`]. Fixed, so the grouping of the sums does not
/// depend on the machine's core count.
pub const PAR_CHUNK_ROWS: usize = 256;

/// [`rank_sparse`] on every core: `rows[i]` is neuron `i`'s row, which `row_iter` turns into
/// its `(j, W_ij)` pairs. Rows are split into chunks of [`PAR_CHUNK_ROWS`]; each chunk's
/// partial sums use the same arithmetic, and the partials are added in chunk order. For
/// exact scalars (integers, the ledger's fixed point) the result equals [`rank_sparse`]
/// bit for bit; for `f64` only the rounding differs.
pub fn rank_sparse_par<T, R, F, I>(stake: &[T], rows: &[R], row_iter: F) -> Vec<T>
where
    T: Scalar + Send + Sync,
    R: Sync,
    F: Fn(&R) -> I + Sync,
    I: IntoIterator<Item = (usize, T)>,
{
    rank_sparse_par_diag(stake, rows, row_iter, Diagonal::Keep)
}

/// [`rank_sparse_par`] with the diagonal kept or dropped (equal, for exact scalars, to
/// [`rank_sparse_diag`]).
pub fn rank_sparse_par_diag<T, R, F, I>(
    stake: &[T],
    rows: &[R],
    row_iter: F,
    diagonal: Diagonal,
) -> Vec<T>
where
    T: Scalar + Send + Sync,
    R: Sync,
    F: Fn(&R) -> I + Sync,
    I: IntoIterator<Item = (usize, T)>,
{
    use rayon::prelude::*;
    let n = stake.len();
    let rows = &rows[..rows.len().min(n)];
    let partials: Vec<Vec<T>> = rows
        .par_chunks(PAR_CHUNK_ROWS)
        .enumerate()
        .map(|(c, chunk)| {
            let mut out = vec![T::zero(); n];
            let start = c * PAR_CHUNK_ROWS;
            accumulate(
                &mut out,
                &stake[start..start + chunk.len()],
                start,
                chunk.iter().map(&row_iter),
                diagonal,
            );
            out
        })
        .collect();
    let mut out = vec![T::zero(); n];
    for p in partials {
        for (o, x) in out.iter_mut().zip(p) {
            *o = *o + x;
        }
    }
    divide_by_count(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn simplex_rows(n: usize, raw: &[f64]) -> Matrix {
        let mut m = Matrix::from_vec(n, raw.to_vec()).unwrap();
        for i in 0..n {
            let row = m.row_mut(i);
            let s: f64 = row.iter().sum();
            for x in row.iter_mut() {
                *x /= s;
            }
        }
        m
    }

    #[test]
    fn identity_weights_give_stake_over_n() {
        let w = Matrix::identity(4);
        let r = rank(&[1.0, 2.0, 3.0, 4.0], &w);
        assert_eq!(r, vec![0.25, 0.5, 0.75, 1.0]);
    }

    #[test]
    fn zero_rank_mints_nothing() {
        let mut s = vec![0.0, 0.0];
        let minted = inflation_step(&mut s, &[0.0, 0.0], 5.0);
        assert_eq!(minted, 0.0);
        assert_eq!(s, vec![0.0, 0.0]);
    }

    #[test]
    fn zero_stake_adds_nothing_to_any_rank() {
        // eq. 5: a neuron with no stake cannot move the ranking, however it weights.
        let w = Matrix::from_rows(&[
            vec![0.5, 0.5, 0.0],
            vec![0.0, 1.0, 0.0],
            vec![0.0, 0.0, 1.0],
        ])
        .unwrap();
        let mut w2 = w.clone();
        w2.row_mut(2).copy_from_slice(&[1.0, 0.0, 0.0]);
        let s = [1.0, 2.0, 0.0];
        assert_eq!(rank(&s, &w), rank(&s, &w2));
    }

    proptest! {
        #[test]
        fn total_stake_grows_by_tau_l1_over_l2(
            n in 1usize..12,
            raw in proptest::collection::vec(0.01f64..1.0, 144),
            stake in proptest::collection::vec(0.0f64..10.0, 12),
            tau in 0.0f64..100.0,
        ) {
            let w = simplex_rows(n, &raw[..n * n]);
            let mut s = stake[..n].to_vec();
            let before: f64 = s.iter().sum();
            let r = rank(&s, &w);
            let l1: f64 = r.iter().sum();
            let l2: f64 = r.iter().map(|x| x * x).sum::<f64>().sqrt();
            let minted = inflation_step(&mut s, &r, tau);
            let after: f64 = s.iter().sum();
            let want = if l2 > 0.0 { tau * l1 / l2 } else { 0.0 };
            prop_assert!((minted - want).abs() <= 1e-9 * (1.0 + want));
            prop_assert!((after - before - want).abs() <= 1e-9 * (1.0 + after));
            // Rows on the simplex: total rank is mean stake.
            prop_assert!((l1 - before / n as f64).abs() <= 1e-9 * (1.0 + before));
        }

        #[test]
        fn sparse_rank_equals_dense(
            n in 1usize..10,
            raw in proptest::collection::vec(0.0f64..1.0, 100),
            stake in proptest::collection::vec(0.0f64..5.0, 10),
        ) {
            let w = Matrix::from_vec(n, raw[..n * n].to_vec()).unwrap();
            let dense = rank(&stake[..n], &w);
            let sparse = rank_sparse(
                &stake[..n],
                w.rows().map(|row| row.iter().copied().enumerate().filter(|(_, x)| *x != 0.0)),
            );
            for (a, b) in dense.iter().zip(&sparse) {
                prop_assert!((a - b).abs() <= 1e-12);
            }
        }
    }
}
