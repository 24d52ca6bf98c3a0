//! Euclidean projection onto the probability simplex (sort-based; Duchi et al. 2008).
//!
//! `Proj(v) = argmin_{x >= 0, sum x = 1} ||x - v||_2`, which is `x_j = max(v_j - theta, 0)`
//! for the one `theta` that makes the entries sum to 1.
//!
//! Two exact algorithms find that `theta`: [`project`] sorts (Duchi et al. 2008, as the spec
//! names it); [`project_fast`] uses Michelot's (1986) fixed-point iteration, which needs no
//! sort and no scratch and runs in a few linear passes. Both return the same point up to
//! rounding (a test checks it); the game uses the fast one because the sort was a third of
//! a step's time.

use crate::lanes;

/// Projects `v` onto the simplex in place. `scratch` must hold at least `v.len()` entries
/// (its contents are overwritten); nothing is allocated. An empty `v` is left alone.
pub fn project(v: &mut [f64], scratch: &mut [f64]) {
    let n = v.len();
    if n == 0 {
        return;
    }
    let u = &mut scratch[..n];
    u.copy_from_slice(v);
    u.sort_unstable_by(|a, b| b.total_cmp(a));
    // Largest k with u_k - (sum_{r<=k} u_r - 1)/k > 0; theta from that k.
    let mut cumsum = 0.0;
    let mut theta = 0.0;
    for (k, &uk) in u.iter().enumerate() {
        cumsum += uk;
        let t = (cumsum - 1.0) / (k + 1) as f64;
        if uk - t > 0.0 {
            theta = t;
        }
    }
    for x in v.iter_mut() {
        *x = (*x - theta).max(0.0);
    }
}

/// Projects `v` onto the simplex in place with Michelot's algorithm (see [`threshold`]).
pub fn project_fast(v: &mut [f64]) {
    let theta = threshold(v);
    for x in v.iter_mut() {
        *x = (*x - theta).max(0.0);
    }
}

/// The `theta` of the projection of `v` (`x_j = max(v_j - theta, 0)`), by Michelot's
/// algorithm: start from `theta = (sum v - 1) / n`, drop every entry `<= theta`,
/// recompute `theta` over the rest, until the set stops shrinking. `theta` only grows,
/// and the largest entry always stays (so the set is never empty); the loop ends after at
/// most `n` passes, usually 2-5. 0 for an empty `v`.
pub fn threshold(v: &[f64]) -> f64 {
    let n = v.len();
    if n == 0 {
        return 0.0;
    }
    let mut count = n;
    let mut theta = (lanes::sum(v) - 1.0) / n as f64;
    loop {
        let (sum, k) = lanes::sum_count_above(v, theta);
        if k == 0 {
            // Unreachable in exact arithmetic; keep the last theta if rounding gets here.
            return theta;
        }
        let next = (sum - 1.0) / k as f64;
        if k >= count {
            return next;
        }
        count = k;
        theta = next;
    }
}

/// Projects a copy of `v` (allocating); for tests and one-off use.
pub fn projected(v: &[f64]) -> Vec<f64> {
    let mut out = v.to_vec();
    let mut scratch = vec![0.0; v.len()];
    project(&mut out, &mut scratch);
    out
}

/// Whether `v` lies on the simplex to within `tol`.
pub fn on_simplex(v: &[f64], tol: f64) -> bool {
    !v.is_empty()
        && v.iter().all(|&x| x.is_finite() && x >= -tol)
        && (v.iter().sum::<f64>() - 1.0).abs() <= tol
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_points() {
        assert_eq!(projected(&[0.2, 0.3, 0.5]), vec![0.2, 0.3, 0.5]);
        assert_eq!(projected(&[2.0, 0.0]), vec![1.0, 0.0]);
        assert_eq!(projected(&[0.0, 0.0]), vec![0.5, 0.5]);
        let p = projected(&[1.0, 1.0, -5.0]);
        assert_eq!(p, vec![0.5, 0.5, 0.0]);
    }

    fn dist2(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
    }

    proptest! {
        #[test]
        fn result_is_on_the_simplex(v in proptest::collection::vec(-10.0f64..10.0, 1..40)) {
            let p = projected(&v);
            prop_assert!(on_simplex(&p, 1e-12));
        }

        #[test]
        fn fast_and_sort_based_agree(v in proptest::collection::vec(-10.0f64..10.0, 1..200)) {
            let p = projected(&v);
            let mut q = v.clone();
            project_fast(&mut q);
            prop_assert!(on_simplex(&q, 1e-12));
            for (a, b) in p.iter().zip(&q) {
                prop_assert!((a - b).abs() <= 1e-13, "sort {a} vs fast {b}");
            }
        }

        #[test]
        fn idempotent(v in proptest::collection::vec(-10.0f64..10.0, 1..40)) {
            let p = projected(&v);
            let pp = projected(&p);
            for (a, b) in p.iter().zip(&pp) {
                prop_assert!((a - b).abs() <= 1e-12);
            }
        }

        #[test]
        fn nearest_point(
            v in proptest::collection::vec(-3.0f64..3.0, 1..20),
            others in proptest::collection::vec(proptest::collection::vec(0.0f64..1.0, 20), 1..20),
        ) {
            // No other simplex point (random, normalised) is closer to v than Proj(v).
            let p = projected(&v);
            let best = dist2(&p, &v);
            for o in &others {
                let q = &o[..v.len()];
                let s: f64 = q.iter().sum();
                if s <= 0.0 { continue; }
                let q: Vec<f64> = q.iter().map(|x| x / s).collect();
                prop_assert!(best <= dist2(&q, &v) + 1e-12);
            }
            // The optimality conditions: with theta the shift, p_j = max(v_j - theta, 0).
            let support: Vec<usize> = (0..v.len()).filter(|&j| p[j] > 0.0).collect();
            prop_assert!(!support.is_empty());
            let theta = v[support[0]] - p[support[0]];
            for j in 0..v.len() {
                prop_assert!((p[j] - (v[j] - theta).max(0.0)).abs() <= 1e-9);
            }
        }
    }
}
