//! Dense storage: the weight [`Matrix`] and the learners' packed symmetric [`Hessians`].

use crate::error::{Error, Result, check_finite};

/// A dense row-major `n x n` matrix of `f64` (the weight matrix `W`).
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    n: usize,
    data: Vec<f64>,
}

impl Matrix {
    /// An `n x n` matrix of zeros.
    pub fn zeros(n: usize) -> Self {
        Self {
            n,
            data: vec![0.0; n * n],
        }
    }

    /// The `n x n` identity (every learner keeps its whole row).
    pub fn identity(n: usize) -> Self {
        let mut m = Self::zeros(n);
        for i in 0..n {
            m.data[i * n + i] = 1.0;
        }
        m
    }

    /// Wraps a row-major buffer of `n * n` finite entries.
    pub fn from_vec(n: usize, data: Vec<f64>) -> Result<Self> {
        if data.len() != n * n {
            return Err(Error::Shape {
                what: "matrix",
                expected: n * n,
                got: data.len(),
            });
        }
        check_finite("matrix", &data)?;
        Ok(Self { n, data })
    }

    /// Builds a matrix from equal-length rows.
    pub fn from_rows(rows: &[Vec<f64>]) -> Result<Self> {
        let n = rows.len();
        let mut data = Vec::with_capacity(n * n);
        for row in rows {
            if row.len() != n {
                return Err(Error::Shape {
                    what: "matrix row",
                    expected: n,
                    got: row.len(),
                });
            }
            data.extend_from_slice(row);
        }
        Self::from_vec(n, data)
    }

    /// The side length `n`.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Entry `(i, j)`.
    pub fn get(&self, i: usize, j: usize) -> f64 {
        self.data[i * self.n + j]
    }

    /// Sets entry `(i, j)`.
    pub fn set(&mut self, i: usize, j: usize, v: f64) {
        self.data[i * self.n + j] = v;
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.n..(i + 1) * self.n]
    }

    /// Row `i`, mutable.
    pub fn row_mut(&mut self, i: usize) -> &mut [f64] {
        &mut self.data[i * self.n..(i + 1) * self.n]
    }

    /// Iterates over the rows.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = &[f64]> {
        // `max(1)` keeps `chunks_exact` valid for the empty matrix.
        self.data.chunks_exact(self.n.max(1))
    }

    /// The row-major entries.
    pub fn as_slice(&self) -> &[f64] {
        &self.data
    }

    /// The row-major entries, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [f64] {
        &mut self.data
    }

    /// The mean of the main diagonal.
    pub fn mean_diagonal(&self) -> f64 {
        if self.n == 0 {
            return 0.0;
        }
        (0..self.n).map(|i| self.get(i, i)).sum::<f64>() / self.n as f64
    }

    /// The largest `|a_ij - b_ij|`.
    pub fn max_abs_diff(&self, other: &Matrix) -> f64 {
        self.data
            .iter()
            .zip(&other.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max)
    }
}

/// The `n` symmetric `n x n` Hessians of the empirical model, one per learner, stored
/// packed: for each learner the upper triangle row by row (`n (n + 1) / 2` entries).
///
/// The Hessian-vector product of every learner at every step is the simulator's hot
/// path; packing halves the bytes it streams.
#[derive(Debug, Clone, PartialEq)]
pub struct Hessians {
    n: usize,
    packed: Vec<f64>,
}

impl Hessians {
    /// Entries of one packed Hessian.
    pub fn packed_len(n: usize) -> usize {
        n * (n + 1) / 2
    }

    /// Packs `n` full row-major `n x n` matrices (`n^3` entries, learner-major). Only the
    /// upper triangle is read: callers validate symmetry first.
    pub fn from_full(n: usize, full: &[f64]) -> Result<Self> {
        if full.len() != n * n * n {
            return Err(Error::Shape {
                what: "hessians",
                expected: n * n * n,
                got: full.len(),
            });
        }
        check_finite("hessians", full)?;
        let mut packed = Vec::with_capacity(n * Self::packed_len(n));
        for h in full.chunks_exact(n * n) {
            for j in 0..n {
                packed.extend_from_slice(&h[j * n + j..(j + 1) * n]);
            }
        }
        Ok(Self { n, packed })
    }

    /// The number of learners `n`.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Learner `i`'s packed upper triangle.
    pub fn packed(&self, i: usize) -> &[f64] {
        let len = Self::packed_len(self.n);
        &self.packed[i * len..(i + 1) * len]
    }

    /// Entry `(j, k)` of learner `i`'s Hessian.
    pub fn get(&self, i: usize, j: usize, k: usize) -> f64 {
        let (j, k) = if j <= k { (j, k) } else { (k, j) };
        self.packed(i)[row_offset(self.n, j) + (k - j)]
    }

    /// Learner `i`'s Hessian as a full row-major matrix.
    pub fn full(&self, i: usize) -> Matrix {
        let n = self.n;
        let mut m = Matrix::zeros(n);
        for j in 0..n {
            for k in 0..n {
                m.set(j, k, self.get(i, j, k));
            }
        }
        m
    }

    /// Bytes one pass over all Hessians reads (what a game step streams).
    pub fn bytes(&self) -> usize {
        self.packed.len() * std::mem::size_of::<f64>()
    }

    /// `y = H_i x`, reading learner `i`'s packed Hessian once.
    pub fn matvec(&self, i: usize, x: &[f64], y: &mut [f64]) {
        sym_packed_matvec(self.n, self.packed(i), x, y);
    }
}

/// Where row `j` of a packed upper triangle starts.
fn row_offset(n: usize, j: usize) -> usize {
    // sum over r < j of (n - r)
    j * n - j * j.saturating_sub(1) / 2
}

/// `y = H x` for a symmetric `H` stored as its packed upper triangle. Each stored entry is
/// read once and used twice (for `y_j` and, mirrored, for `y_k`).
///
/// On x86-64 CPUs with AVX-512F or AVX2 the same code is compiled again with those enabled
/// and chosen at run time. The arithmetic is identical lane for lane (no fused multiply-add,
/// the same order of additions), so both paths give the same bits.
pub fn sym_packed_matvec(n: usize, packed: &[f64], x: &[f64], y: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        #[allow(unsafe_code)]
        // SAFETY: the function only needs AVX-512F, which the CPU was just checked to have.
        unsafe {
            sym_packed_matvec_avx512(n, packed, x, y);
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        #[allow(unsafe_code)]
        // SAFETY: the function only needs AVX2, which the CPU was just checked to have.
        unsafe {
            sym_packed_matvec_avx2(n, packed, x, y);
        }
        return;
    }
    sym_packed_matvec_portable(n, packed, x, y);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn sym_packed_matvec_avx512(n: usize, packed: &[f64], x: &[f64], y: &mut [f64]) {
    sym_packed_matvec_portable(n, packed, x, y);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn sym_packed_matvec_avx2(n: usize, packed: &[f64], x: &[f64], y: &mut [f64]) {
    sym_packed_matvec_portable(n, packed, x, y);
}

/// The portable body of [`sym_packed_matvec`].
#[inline(always)]
pub fn sym_packed_matvec_portable(n: usize, packed: &[f64], x: &[f64], y: &mut [f64]) {
    assert_eq!(
        packed.len(),
        Hessians::packed_len(n),
        "packed Hessian of the wrong size"
    );
    assert!(x.len() >= n && y.len() >= n, "vectors shorter than n");
    y[..n].fill(0.0);
    let mut off = 0;
    for j in 0..n {
        let len = n - j;
        let row = &packed[off..off + len];
        off += len;
        let xj = x[j];
        let (head, tail) = y.split_at_mut(j + 1);
        let acc = row[0] * xj + dot_axpy(&row[1..], &x[j + 1..n], &mut tail[..len - 1], xj);
        head[j] += acc;
    }
}

const LANES: usize = 8;

/// Returns `sum_k a_k x_k` and adds `a_k * s` to `y_k`, in one pass over `a`.
///
/// Eight independent accumulators let the compiler vectorise the reduction (and hide the
/// adder's latency) while keeping the order of additions fixed, so results are bit-for-bit
/// repeatable.
#[inline(always)]
fn dot_axpy(a: &[f64], x: &[f64], y: &mut [f64], s: f64) -> f64 {
    let len = a.len();
    let (a8, a_rest) = a.as_chunks::<LANES>();
    let (x8, x_rest) = x[..len].as_chunks::<LANES>();
    let (y8, y_rest) = y[..len].as_chunks_mut::<LANES>();
    let mut acc = [0.0f64; LANES];
    for ((a8, x8), y8) in a8.iter().zip(x8).zip(y8.iter_mut()) {
        for l in 0..LANES {
            acc[l] += a8[l] * x8[l];
            y8[l] += a8[l] * s;
        }
    }
    let mut rest = 0.0;
    for ((a1, x1), y1) in a_rest.iter().zip(x_rest).zip(y_rest.iter_mut()) {
        rest += a1 * x1;
        *y1 += a1 * s;
    }
    // Halve the vector (lanes l and l + 4, then l and l + 2): the order a wide register
    // reduces in, so the accumulator can stay one register.
    let h = [
        acc[0] + acc[4],
        acc[1] + acc[5],
        acc[2] + acc[6],
        acc[3] + acc[7],
    ];
    ((h[0] + h[2]) + (h[1] + h[3])) + rest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) - 0.5
        };
        let mut h = vec![0.0; n * n];
        for j in 0..n {
            for k in j..n {
                let v = next();
                h[j * n + k] = v;
                h[k * n + j] = v;
            }
        }
        h
    }

    #[test]
    fn packed_matvec_matches_dense() {
        for n in [1, 2, 3, 5, 8, 17, 33] {
            let full: Vec<f64> = (0..n).flat_map(|i| sym(n, i as u64 + 7)).collect();
            let hs = Hessians::from_full(n, &full).unwrap();
            let x: Vec<f64> = (0..n).map(|k| (k as f64 * 0.37).sin()).collect();
            let mut y = vec![0.0; n];
            for i in 0..n {
                hs.matvec(i, &x, &mut y);
                let h = &full[i * n * n..(i + 1) * n * n];
                for j in 0..n {
                    let want: f64 = (0..n).map(|k| h[j * n + k] * x[k]).sum();
                    assert!((y[j] - want).abs() < 1e-12, "n={n} i={i} j={j}");
                    for k in 0..n {
                        assert_eq!(hs.get(i, j, k), h[j * n + k]);
                    }
                }
            }
        }
    }

    #[test]
    fn dispatched_and_portable_paths_give_the_same_bits() {
        let n = 37;
        let full: Vec<f64> = (0..n).flat_map(|i| sym(n, i as u64 + 100)).collect();
        let hs = Hessians::from_full(n, &full).unwrap();
        let x: Vec<f64> = (0..n).map(|k| (k as f64 * 1.37).cos()).collect();
        let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
        for i in 0..n {
            sym_packed_matvec(n, hs.packed(i), &x, &mut a);
            sym_packed_matvec_portable(n, hs.packed(i), &x, &mut b);
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a), bits(&b));
        }
    }

    #[test]
    fn shapes_are_checked() {
        assert!(matches!(
            Matrix::from_vec(2, vec![0.0; 3]),
            Err(Error::Shape { .. })
        ));
        assert!(matches!(
            Matrix::from_vec(1, vec![f64::NAN]),
            Err(Error::NonFinite { index: 0, .. })
        ));
        assert!(matches!(
            Hessians::from_full(2, &[0.0; 4]),
            Err(Error::Shape { .. })
        ));
    }
}
