//! A square sparse matrix in compressed-row form, generic over the number type.
//!
//! Weights and bonds of the ledger are sparse (a neuron names a few peers), so Yuma
//! consensus works on rows of `(column, value)` pairs. Columns within a row are strictly
//! increasing, and only non-zero values are stored.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::rank::Scalar;

/// Rows per parallel task of [`build_par`]. Fixed, so the work split never depends on the
/// core count (the result never does either way: each row is computed alone).
pub(crate) const BUILD_CHUNK_ROWS: usize = 128;

/// An `n x n` matrix in compressed-row (CSR) form: row `i` is
/// `cols[ptr[i]..ptr[i + 1]]` with the values `vals[ptr[i]..ptr[i + 1]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sparse<T> {
    n: usize,
    ptr: Vec<usize>,
    cols: Vec<u32>,
    vals: Vec<T>,
}

impl<T: Scalar> Sparse<T> {
    /// The all-zero `n x n` matrix.
    pub fn zeros(n: usize) -> Sparse<T> {
        Sparse {
            n,
            ptr: vec![0; n + 1],
            cols: Vec::new(),
            vals: Vec::new(),
        }
    }

    /// From `n` rows of `(column, value)` pairs. Zero values are dropped; columns must be
    /// below `n` and each may appear once per row (pairs may come in any order).
    pub fn from_rows<R, I>(n: usize, rows: R) -> Result<Sparse<T>>
    where
        R: IntoIterator<Item = I>,
        I: IntoIterator<Item = (usize, T)>,
    {
        let mut b = Builder::with_capacity(n, 0);
        let mut count = 0;
        let mut row: Vec<(usize, T)> = Vec::new();
        for (i, r) in rows.into_iter().enumerate() {
            if i >= n {
                return Err(Error::Shape {
                    what: "sparse rows",
                    expected: n,
                    got: i + 1,
                });
            }
            row.clear();
            row.extend(r.into_iter().filter(|&(_, v)| v != T::zero()));
            row.sort_by_key(|&(j, _)| j);
            if let Some(&(j, _)) = row.iter().find(|&&(j, _)| j >= n) {
                return Err(Error::Shape {
                    what: "sparse column",
                    expected: n,
                    got: j + 1,
                });
            }
            if let Some(p) = row.windows(2).find(|p| p[0].0 == p[1].0) {
                return Err(Error::DuplicateColumn {
                    row: i,
                    col: p[0].0,
                });
            }
            b.push_row(row.iter().map(|&(j, v)| (j as u32, v)));
            count += 1;
        }
        if count != n {
            return Err(Error::Shape {
                what: "sparse rows",
                expected: n,
                got: count,
            });
        }
        Ok(b.finish())
    }

    /// From dense rows (`n` rows of `n` values each); zeros are not stored.
    pub fn from_dense<R: AsRef<[T]>>(rows: &[R]) -> Result<Sparse<T>> {
        let n = rows.len();
        if let Some(r) = rows.iter().find(|r| r.as_ref().len() != n) {
            return Err(Error::Shape {
                what: "dense row",
                expected: n,
                got: r.as_ref().len(),
            });
        }
        Sparse::from_rows(
            n,
            rows.iter()
                .map(|r| r.as_ref().iter().copied().enumerate().collect::<Vec<_>>()),
        )
    }

    /// The number of rows (and columns).
    pub fn n(&self) -> usize {
        self.n
    }

    /// The number of stored (non-zero) entries.
    pub fn nnz(&self) -> usize {
        self.cols.len()
    }

    /// Row `i`: its columns and values.
    pub fn row(&self, i: usize) -> (&[u32], &[T]) {
        let (a, b) = (self.ptr[i], self.ptr[i + 1]);
        (&self.cols[a..b], &self.vals[a..b])
    }

    /// Row `i` as `(column, value)` pairs.
    pub fn row_iter(&self, i: usize) -> impl Iterator<Item = (usize, T)> + '_ {
        let (c, v) = self.row(i);
        c.iter().map(|&j| j as usize).zip(v.iter().copied())
    }

    /// Entry `(i, j)` (zero when not stored).
    pub fn get(&self, i: usize, j: usize) -> T {
        let (c, v) = self.row(i);
        match c.binary_search(&(j as u32)) {
            Ok(k) => v[k],
            Err(_) => T::zero(),
        }
    }

    /// The dense rows, for display and small tests.
    pub fn to_dense(&self) -> Vec<Vec<T>> {
        (0..self.n)
            .map(|i| {
                let mut out = vec![T::zero(); self.n];
                for (j, v) in self.row_iter(i) {
                    out[j] = v;
                }
                out
            })
            .collect()
    }

    /// The same sparsity with every value mapped.
    pub fn map<U: Scalar>(&self, f: impl Fn(T) -> U) -> Sparse<U> {
        Sparse {
            n: self.n,
            ptr: self.ptr.clone(),
            cols: self.cols.clone(),
            vals: self.vals.iter().map(|&v| f(v)).collect(),
        }
    }

    /// Column sums, adding each column's entries in row order.
    pub fn col_sums(&self) -> Vec<T> {
        let mut out = vec![T::zero(); self.n];
        for (&j, &v) in self.cols.iter().zip(&self.vals) {
            out[j as usize] = out[j as usize] + v;
        }
        out
    }

    pub(crate) fn parts(&self) -> (&[usize], &[u32], &[T]) {
        (&self.ptr, &self.cols, &self.vals)
    }

    pub(crate) fn from_parts(n: usize, ptr: Vec<usize>, cols: Vec<u32>, vals: Vec<T>) -> Self {
        debug_assert_eq!(ptr.len(), n + 1);
        debug_assert_eq!(cols.len(), vals.len());
        Sparse { n, ptr, cols, vals }
    }
}

/// Builds an `n x n` [`Sparse`] on every core, writing each row in place: row `i` has at most
/// `bounds[i]` entries, and `write(i, cols, vals)` writes its entries (columns increasing,
/// values non-zero) at the start of the slices it is given (each `bounds[i]` long) and returns
/// how many it wrote. When every row fills its bound nothing is moved; rows that write fewer
/// are closed up afterwards.
pub(crate) fn build_par<T, F>(n: usize, bounds: &[usize], write: F) -> Sparse<T>
where
    T: Scalar + Send + Sync,
    F: Fn(usize, &mut [u32], &mut [T]) -> usize + Sync,
{
    assert_eq!(bounds.len(), n, "one bound per row");
    let mut start = Vec::with_capacity(n + 1);
    start.push(0usize);
    for &b in bounds {
        start.push(start[start.len() - 1] + b);
    }
    let total = start[n];
    // Zeroed on every core: the first touch of fresh memory is most of the cost.
    let mut cols: Vec<u32> = (0..total).into_par_iter().map(|_| 0).collect();
    let mut vals: Vec<T> = (0..total).into_par_iter().map(|_| T::zero()).collect();
    let mut lens = vec![0usize; n];
    let used: Vec<usize> = regions(&start, &mut lens, &mut cols, &mut vals)
        .into_par_iter()
        .map(|(first, c, v, l)| {
            let mut pos = 0;
            for (k, len) in l.iter_mut().enumerate() {
                let i = first + k;
                let b = bounds[i];
                let got = write(i, &mut c[pos..pos + b], &mut v[pos..pos + b]);
                debug_assert!(got <= b, "row {i} wrote {got} entries over its bound {b}");
                *len = got;
                pos += got;
            }
            pos
        })
        .collect();
    let starts: Vec<usize> = (0..used.len())
        .map(|c| start[c * BUILD_CHUNK_ROWS])
        .collect();
    close_up(n, &mut cols, &mut vals, &starts, &used, lens)
}

/// One region per chunk of `BUILD_CHUNK_ROWS` rows: its first row, its slices of `cols` and
/// `vals` (from `start[first]` to the next chunk's start) and its rows' lengths in `lens`.
#[allow(clippy::type_complexity)]
fn regions<'a, T>(
    start: &[usize],
    lens: &'a mut [usize],
    cols: &'a mut [u32],
    vals: &'a mut [T],
) -> Vec<(usize, &'a mut [u32], &'a mut [T], &'a mut [usize])> {
    let mut out = Vec::with_capacity(lens.len().div_ceil(BUILD_CHUNK_ROWS));
    let (mut c_rest, mut v_rest) = (cols, vals);
    for (chunk, l) in lens.chunks_mut(BUILD_CHUNK_ROWS).enumerate() {
        let first = chunk * BUILD_CHUNK_ROWS;
        let size = start[first + l.len()] - start[first];
        let (c, cr) = c_rest.split_at_mut(size);
        let (v, vr) = v_rest.split_at_mut(size);
        c_rest = cr;
        v_rest = vr;
        out.push((first, c, v, l));
    }
    out
}

/// Moves each chunk's `used[c]` entries from its region start `starts[c]` down to follow the
/// previous chunk's, and assembles the matrix from the row lengths.
fn close_up<T: Scalar>(
    n: usize,
    cols: &mut Vec<u32>,
    vals: &mut Vec<T>,
    starts: &[usize],
    used: &[usize],
    lens: Vec<usize>,
) -> Sparse<T> {
    let mut dest = 0;
    for (&from, &u) in starts.iter().zip(used) {
        if from != dest {
            cols.copy_within(from..from + u, dest);
            vals.copy_within(from..from + u, dest);
        }
        dest += u;
    }
    cols.truncate(dest);
    vals.truncate(dest);
    let mut ptr = Vec::with_capacity(n + 1);
    ptr.push(0);
    for l in lens {
        ptr.push(ptr[ptr.len() - 1] + l);
    }
    Sparse::from_parts(n, ptr, std::mem::take(cols), std::mem::take(vals))
}

impl<T: Scalar + Send + Sync> Sparse<T> {
    /// Multiplies every entry by `factor[j]` of its column, dropping the products that are
    /// zero, in place and on every core.
    pub(crate) fn scale_columns(self, factor: &[T]) -> Sparse<T> {
        let Sparse {
            n,
            ptr,
            mut cols,
            mut vals,
        } = self;
        let mut lens = vec![0usize; n];
        let used: Vec<usize> = regions(&ptr, &mut lens, &mut cols, &mut vals)
            .into_par_iter()
            .map(|(first, c, v, l)| {
                let base = ptr[first];
                let mut pos = 0;
                for (k, len) in l.iter_mut().enumerate() {
                    let i = first + k;
                    let begin = pos;
                    for q in ptr[i] - base..ptr[i + 1] - base {
                        let x = v[q] * factor[c[q] as usize];
                        if x != T::zero() {
                            c[pos] = c[q];
                            v[pos] = x;
                            pos += 1;
                        }
                    }
                    *len = pos - begin;
                }
                pos
            })
            .collect();
        let starts: Vec<usize> = (0..used.len()).map(|c| ptr[c * BUILD_CHUNK_ROWS]).collect();
        close_up(n, &mut cols, &mut vals, &starts, &used, lens)
    }
}

/// Builds a [`Sparse`] row by row (rows pushed in order, columns increasing within each).
pub(crate) struct Builder<T> {
    n: usize,
    ptr: Vec<usize>,
    cols: Vec<u32>,
    vals: Vec<T>,
}

impl<T: Scalar> Builder<T> {
    pub(crate) fn with_capacity(n: usize, nnz: usize) -> Self {
        let mut ptr = Vec::with_capacity(n + 1);
        ptr.push(0);
        Builder {
            n,
            ptr,
            cols: Vec::with_capacity(nnz),
            vals: Vec::with_capacity(nnz),
        }
    }

    /// Appends the next row, dropping zeros.
    pub(crate) fn push_row(&mut self, row: impl IntoIterator<Item = (u32, T)>) {
        for (j, v) in row {
            if v != T::zero() {
                self.cols.push(j);
                self.vals.push(v);
            }
        }
        self.ptr.push(self.cols.len());
    }

    pub(crate) fn finish(self) -> Sparse<T> {
        debug_assert_eq!(self.ptr.len(), self.n + 1);
        Sparse::from_parts(self.n, self.ptr, self.cols, self.vals)
    }
}
