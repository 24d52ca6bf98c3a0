//! Correlations between rankings, and the ideal (coordinated) rank of the empirical model.

use crate::matrix::Hessians;

/// Pearson correlation. `NaN` when either input has zero variance (e.g. every rank is
/// `1/n`), where the correlation is undefined, or when the lengths differ or are < 2.
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len();
    if n != b.len() || n < 2 {
        return f64::NAN;
    }
    let ma = a.iter().sum::<f64>() / n as f64;
    let mb = b.iter().sum::<f64>() / n as f64;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        let (dx, dy) = (x - ma, y - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    if saa == 0.0 || sbb == 0.0 {
        return f64::NAN;
    }
    (sab / (saa.sqrt() * sbb.sqrt())).clamp(-1.0, 1.0)
}

/// Ranks of `xs` (1-based), ties sharing the average of their positions.
pub fn ranks(xs: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..xs.len()).collect();
    idx.sort_by(|&i, &j| xs[i].total_cmp(&xs[j]));
    let mut out = vec![0.0; xs.len()];
    let mut start = 0;
    while start < idx.len() {
        let mut end = start + 1;
        while end < idx.len() && xs[idx[end]] == xs[idx[start]] {
            end += 1;
        }
        let avg = (start + end + 1) as f64 / 2.0; // mean of positions start+1 ..= end
        for &k in &idx[start..end] {
            out[k] = avg;
        }
        start = end;
    }
    out
}

/// Spearman rank correlation (Pearson of the tie-averaged ranks).
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() {
        return f64::NAN;
    }
    pearson(&ranks(a), &ranks(b))
}

/// The ideal rank of eq. 2 in the empirical model with every output `f_j = 1`:
/// `Rideal_j = (1/n) sum_i H_i[j][j]`, the cost to the whole benchmark of removing `j`.
pub fn ideal_rank(h: &Hessians) -> Vec<f64> {
    let n = h.n();
    (0..n)
        .map(|j| (0..n).map(|i| h.get(i, j, j)).sum::<f64>() / n as f64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pearson_basics() {
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]) - 1.0).abs() < 1e-15);
        assert!((pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-15);
        assert!(pearson(&[1.0, 1.0], &[1.0, 2.0]).is_nan());
        assert!(pearson(&[1.0], &[1.0]).is_nan());
    }

    #[test]
    fn spearman_is_monotone_invariant_and_averages_ties() {
        let a = [1.0, 2.0, 3.0, 4.0];
        let b = [1.0, 8.0, 27.0, 64.0];
        assert!((spearman(&a, &b) - 1.0).abs() < 1e-15);
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
        // Known value: x = 1..5, y = [2, 1, 4, 3, 5] -> 1 - 6*4/(5*24) = 0.8
        assert!(
            (spearman(&[1.0, 2.0, 3.0, 4.0, 5.0], &[2.0, 1.0, 4.0, 3.0, 5.0]) - 0.8).abs() < 1e-12
        );
    }

    #[test]
    fn ideal_rank_is_mean_diagonal() {
        // n = 2: H_0 = [[1,0],[0,3]], H_1 = [[5,1],[1,7]]
        let full = [1.0, 0.0, 0.0, 3.0, 5.0, 1.0, 1.0, 7.0];
        let h = Hessians::from_full(2, &full).unwrap();
        assert_eq!(ideal_rank(&h), vec![3.0, 5.0]);
    }
}
