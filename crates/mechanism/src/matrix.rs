//! Dense storage: the weight [`Matrix`] and the learners' symmetric [`Hessians`], stored
//! as upper triangles of `8 x 8` tiles.

use crate::error::{Error, Result, check_finite};
use crate::lanes::lane_sum;

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

/// Entries in one row (and one column) of a Hessian tile: eight `f64`, one AVX-512 register.
pub const TILE: usize = crate::lanes::LANES;
const TILE_LEN: usize = TILE * TILE;

/// The `n` symmetric `n x n` Hessians of the empirical model, one per learner, stored as
/// the upper triangle of `8 x 8` tiles.
///
/// `n` is padded with zeros to a multiple of 8 (`padded(n)`), giving `nb = padded / 8`
/// block rows; for each learner the tiles `(a, b)` with `a <= b` follow each other block
/// row by block row, each tile row-major. Diagonal tiles are stored whole.
///
/// The Hessian-vector product of every learner at every step is the simulator's hot
/// path. Storing one triangle nearly halves the bytes it streams (`4 nb (nb + 1) * 64`
/// bytes per learner instead of `8 n^2`), and whole tiles let every load and every
/// multiply-add work on full vector registers, with no ragged row ends.
#[derive(Debug, Clone, PartialEq)]
pub struct Hessians {
    n: usize,
    blocks: usize,
    tiles: Vec<f64>,
}

impl Hessians {
    /// `n` rounded up to a multiple of [`TILE`]: the length of the vectors
    /// [`Hessians::matvec`] reads and writes.
    pub fn padded(n: usize) -> usize {
        n.div_ceil(TILE) * TILE
    }

    /// Entries of one learner's tiled triangle.
    fn learner_len(blocks: usize) -> usize {
        blocks * (blocks + 1) / 2 * TILE_LEN
    }

    /// Tiles `n` full row-major `n x n` matrices (`n^3` entries, learner-major). Only the
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
        let blocks = n.div_ceil(TILE);
        let mut tiles = Vec::with_capacity(n * Self::learner_len(blocks));
        for h in full.chunks_exact(n * n) {
            let entry = |j: usize, k: usize| {
                let (j, k) = (j.min(k), j.max(k));
                if k < n { h[j * n + k] } else { 0.0 }
            };
            for a in 0..blocks {
                for b in a..blocks {
                    for r in 0..TILE {
                        for c in 0..TILE {
                            tiles.push(entry(a * TILE + r, b * TILE + c));
                        }
                    }
                }
            }
        }
        Ok(Self { n, blocks, tiles })
    }

    /// The number of learners `n`.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Learner `i`'s tiled upper triangle.
    fn learner(&self, i: usize) -> &[f64] {
        let len = Self::learner_len(self.blocks);
        &self.tiles[i * len..(i + 1) * len]
    }

    /// Entry `(j, k)` of learner `i`'s Hessian.
    pub fn get(&self, i: usize, j: usize, k: usize) -> f64 {
        assert!(
            j < self.n && k < self.n,
            "entry ({j}, {k}) outside n = {}",
            self.n
        );
        let (j, k) = if j <= k { (j, k) } else { (k, j) };
        let (a, b) = (j / TILE, k / TILE);
        let tile = row_offset(self.blocks, a) + (b - a);
        self.learner(i)[tile * TILE_LEN + (j % TILE) * TILE + k % TILE]
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
        self.tiles.len() * std::mem::size_of::<f64>()
    }

    /// `y = H_i x`, reading learner `i`'s tiles once. `x` and `y` hold at least
    /// [`Hessians::padded`]`(n)` entries; `x`'s entries past `n` must be finite (they meet
    /// zero padding) and `y`'s come back zero.
    pub fn matvec(&self, i: usize, x: &[f64], y: &mut [f64]) {
        let p = self.blocks * TILE;
        assert!(
            x.len() >= p && y.len() >= p,
            "matvec vectors shorter than the padded size {p}"
        );
        sym_tiled_matvec(self.blocks, self.learner(i), &x[..p], &mut y[..p]);
    }
}

/// Where row `j` of a packed upper triangle of side `n` starts (in entries, or in tiles
/// for a triangle of tiles).
fn row_offset(n: usize, j: usize) -> usize {
    // sum over r < j of (n - r)
    j * n - j * j.saturating_sub(1) / 2
}

/// `y = H x` for a symmetric `H` stored as its upper triangle of `8 x 8` tiles in
/// `blocks` block rows (see [`Hessians`]). Each stored entry is read once and used twice:
/// for `y_a` through the tile and, mirrored, for `y_b` through its transpose.
///
/// On x86-64 CPUs with AVX-512F an explicit vector kernel runs; with AVX2 and FMA the
/// portable body is compiled again with those enabled. Every path performs the same
/// IEEE operations in the same order (fused multiply-adds where the portable body calls
/// `mul_add`), so all give the same bits; a test checks it.
fn sym_tiled_matvec(blocks: usize, tiles: &[f64], x: &[f64], y: &mut [f64]) {
    assert_eq!(
        tiles.len(),
        Hessians::learner_len(blocks),
        "tiles of the wrong size"
    );
    assert!(x.len() == blocks * TILE && y.len() == blocks * TILE);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        #[allow(unsafe_code)]
        // SAFETY: the kernel only needs AVX-512F, which the CPU was just checked to have;
        // the lengths it relies on were asserted above.
        unsafe {
            avx512::sym_tiled_matvec(blocks, tiles, x, y);
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        #[allow(unsafe_code)]
        // SAFETY: the function only needs AVX2 and FMA, which the CPU was just checked to have.
        unsafe {
            sym_tiled_matvec_avx2(blocks, tiles, x, y);
        }
        return;
    }
    sym_tiled_matvec_portable(blocks, tiles, x, y);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn sym_tiled_matvec_avx2(blocks: usize, tiles: &[f64], x: &[f64], y: &mut [f64]) {
    sym_tiled_matvec_portable(blocks, tiles, x, y);
}

/// The portable body of the tiled product: the reference every vector path matches.
#[inline(always)]
fn sym_tiled_matvec_portable(blocks: usize, tiles: &[f64], x: &[f64], y: &mut [f64]) {
    let (tiles, _) = tiles.as_chunks::<TILE_LEN>();
    let (x, _) = x.as_chunks::<TILE>();
    let (y, _) = y.as_chunks_mut::<TILE>();
    for v in y.iter_mut() {
        *v = [0.0; TILE];
    }
    let mut t = 0;
    for a in 0..blocks {
        let xa = x[a];
        // acc[r][l]: lane l of row r's dot product with x, over the block row's tiles.
        let mut acc = [[0.0f64; TILE]; TILE];
        for b in a..blocks {
            let tile = &tiles[t];
            t += 1;
            let xb = x[b];
            for r in 0..TILE {
                for l in 0..TILE {
                    acc[r][l] = tile[r * TILE + l].mul_add(xb[l], acc[r][l]);
                }
            }
            if b > a {
                // The mirrored half: y_b += tile^T x_a, two rows per partial sum.
                let yb = &mut y[b];
                for l in 0..TILE {
                    let p = |q: usize| {
                        tile[(2 * q + 1) * TILE + l]
                            .mul_add(xa[2 * q + 1], tile[2 * q * TILE + l] * xa[2 * q])
                    };
                    yb[l] += (p(0) + p(1)) + (p(2) + p(3));
                }
            }
        }
        for r in 0..TILE {
            y[a][r] += lane_sum(&acc[r]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx512 {
    //! The AVX-512 kernel of the tiled product, operation for operation the portable body.

    use std::arch::x86_64::*;

    use super::{TILE, TILE_LEN};

    /// See `sym_tiled_matvec_portable`; callers check AVX-512F and the lengths
    /// (`tiles`: the triangle of `blocks` block rows; `x`, `y`: `blocks * 8`).
    #[target_feature(enable = "avx512f")]
    pub(super) fn sym_tiled_matvec(blocks: usize, tiles: &[f64], x: &[f64], y: &mut [f64]) {
        let (tiles, _) = tiles.as_chunks::<TILE_LEN>();
        let (x, _) = x.as_chunks::<TILE>();
        let (y, _) = y.as_chunks_mut::<TILE>();
        // SAFETY (every load and store below): each pointer comes from a whole array of
        // 8 or 64 `f64`, so all 8 lanes read or written are in bounds.
        let load = |p: &[f64; TILE]| unsafe { _mm512_loadu_pd(p.as_ptr()) };
        for v in y.iter_mut() {
            unsafe { _mm512_storeu_pd(v.as_mut_ptr(), _mm512_setzero_pd()) };
        }
        let row = |tile: &[f64; TILE_LEN], r: usize| unsafe {
            _mm512_loadu_pd(tile.as_ptr().add(r * TILE))
        };
        let mut t = 0;
        for a in 0..blocks {
            let xa = x[a];
            let mut xs = [_mm512_setzero_pd(); TILE];
            for (v, &x) in xs.iter_mut().zip(&xa) {
                *v = _mm512_set1_pd(x);
            }
            let mut acc = [_mm512_setzero_pd(); TILE];
            // The diagonal tile: no mirrored half.
            {
                let tile = &tiles[t];
                t += 1;
                let xv = load(&xa);
                for (r, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm512_fmadd_pd(row(tile, r), xv, *acc);
                }
            }
            for b in a + 1..blocks {
                let tile = &tiles[t];
                t += 1;
                let xb = load(&x[b]);
                let mut rows = [_mm512_setzero_pd(); TILE];
                for (r, v) in rows.iter_mut().enumerate() {
                    *v = row(tile, r);
                }
                for r in 0..TILE {
                    acc[r] = _mm512_fmadd_pd(rows[r], xb, acc[r]);
                }
                let p = |q: usize| {
                    _mm512_fmadd_pd(
                        rows[2 * q + 1],
                        xs[2 * q + 1],
                        _mm512_mul_pd(rows[2 * q], xs[2 * q]),
                    )
                };
                let sum = _mm512_add_pd(_mm512_add_pd(p(0), p(1)), _mm512_add_pd(p(2), p(3)));
                let yb = &mut y[b];
                unsafe { _mm512_storeu_pd(yb.as_mut_ptr(), _mm512_add_pd(load(yb), sum)) };
            }
            // Transposing reduction: lane r of the result is the sum of acc[r]'s lanes,
            // added as `lanes::lane_sum` adds them.
            let halves = |u: __m512d, v: __m512d| {
                _mm512_add_pd(
                    _mm512_shuffle_f64x2::<0b01_00_01_00>(u, v),
                    _mm512_shuffle_f64x2::<0b11_10_11_10>(u, v),
                )
            };
            let h01 = halves(acc[0], acc[1]);
            let h23 = halves(acc[2], acc[3]);
            let h45 = halves(acc[4], acc[5]);
            let h67 = halves(acc[6], acc[7]);
            let quarters = |u: __m512d, v: __m512d| {
                _mm512_add_pd(
                    _mm512_shuffle_f64x2::<0b10_00_10_00>(u, v),
                    _mm512_shuffle_f64x2::<0b11_01_11_01>(u, v),
                )
            };
            let q0123 = quarters(h01, h23);
            let q4567 = quarters(h45, h67);
            // Lanes now hold [s0, s4, s1, s5, s2, s6, s3, s7].
            let pairs = _mm512_add_pd(
                _mm512_unpacklo_pd(q0123, q4567),
                _mm512_unpackhi_pd(q0123, q4567),
            );
            let order = _mm512_set_epi64(7, 5, 3, 1, 6, 4, 2, 0);
            let sums = _mm512_permutexvar_pd(order, pairs);
            let ya = &mut y[a];
            unsafe { _mm512_storeu_pd(ya.as_mut_ptr(), _mm512_add_pd(load(ya), sums)) };
        }
    }
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

    fn padded(v: &[f64]) -> Vec<f64> {
        let mut out = v.to_vec();
        out.resize(Hessians::padded(v.len()), 0.0);
        out
    }

    #[test]
    fn tiled_matvec_matches_dense() {
        // Sizes below, at and across tile edges.
        for n in [1, 2, 3, 5, 7, 8, 9, 16, 17, 33] {
            let full: Vec<f64> = (0..n).flat_map(|i| sym(n, i as u64 + 7)).collect();
            let hs = Hessians::from_full(n, &full).unwrap();
            let x = padded(&(0..n).map(|k| (k as f64 * 0.37).sin()).collect::<Vec<_>>());
            let mut y = vec![f64::NAN; Hessians::padded(n)];
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
                assert!(y[n..].iter().all(|&v| v == 0.0), "padding of y not zero");
            }
        }
    }

    #[test]
    fn dispatched_and_portable_paths_give_the_same_bits() {
        for n in [8, 37, 100] {
            let full: Vec<f64> = (0..n).flat_map(|i| sym(n, i as u64 + 100)).collect();
            let hs = Hessians::from_full(n, &full).unwrap();
            let x = padded(&(0..n).map(|k| (k as f64 * 1.37).cos()).collect::<Vec<_>>());
            let p = Hessians::padded(n);
            let (mut a, mut b) = (vec![0.0; p], vec![0.0; p]);
            for i in 0..n {
                hs.matvec(i, &x, &mut a);
                sym_tiled_matvec_portable(hs.blocks, hs.learner(i), &x, &mut b);
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&a), bits(&b), "n={n} i={i}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "padded size")]
    fn unpadded_vectors_are_refused() {
        let hs = Hessians::from_full(3, &sym(3, 1).repeat(3)).unwrap();
        hs.matvec(0, &[1.0; 3], &mut [0.0; 3]);
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
