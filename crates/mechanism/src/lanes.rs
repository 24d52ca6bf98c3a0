//! Row reductions in eight lanes, and the AVX-512 form of the row loops of a game step.
//!
//! A plain `iter().sum()` is one chain of dependent additions, which neither vectorises
//! nor hides the adder's latency. These keep eight partial results, entry `j` in lane
//! `j % 8` (one AVX-512 register), and combine them in a fixed order ([`lane_sum`]).
//!
//! Each function has a portable body and, on x86-64 CPUs with AVX-512F, an explicit
//! vector kernel chosen at run time. The kernels perform the same IEEE operations in the
//! same order, lane for lane (a row's last partial block is loaded with a mask, which
//! puts its entries in the same low lanes), so both paths give the same bits; a test
//! checks it. The compiler's own vectorisation of these loops turned out narrow and
//! fragile (two lanes, scalar row ends), which is why the kernels are spelled out.

/// Lanes per partial result.
pub(crate) const LANES: usize = 8;

/// The sum of eight lanes: halves, then quarters, then pairs (the order a transposing
/// vector reduction adds them in).
#[inline(always)]
pub(crate) fn lane_sum(v: &[f64; LANES]) -> f64 {
    ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]))
}

/// Whether the AVX-512 kernels can run here (checked once, then cached by std).
#[inline(always)]
fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Runs `$kernel` from the `avx512` module when the CPU has AVX-512F, else `$portable`.
macro_rules! dispatch {
    ($kernel:ident, $portable:expr, $($arg:expr),*) => {{
        #[cfg(target_arch = "x86_64")]
        if avx512() {
            #[allow(unsafe_code)]
            // SAFETY: the kernel only needs AVX-512F, which the CPU was just checked to
            // have; it reads and writes within the slices it is given.
            return unsafe { avx512::$kernel($($arg),*) };
        }
        $portable
    }};
}

/// `sum_k a_k b_k` over the shorter of the two.
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    let len = a.len().min(b.len());
    let (a, b) = (&a[..len], &b[..len]);
    dispatch!(
        dot,
        {
            let mut acc = [0.0; LANES];
            for (j, (x, y)) in a.iter().zip(b).enumerate() {
                acc[j % LANES] += x * y;
            }
            lane_sum(&acc)
        },
        a,
        b
    )
}

/// `sum_k v_k`.
pub(crate) fn sum(v: &[f64]) -> f64 {
    dispatch!(
        sum,
        {
            let mut acc = [0.0; LANES];
            for (j, x) in v.iter().enumerate() {
                acc[j % LANES] += x;
            }
            lane_sum(&acc)
        },
        v
    )
}

/// The sum and the number of the entries greater than `theta`.
pub(crate) fn sum_count_above(v: &[f64], theta: f64) -> (f64, usize) {
    dispatch!(
        sum_count_above,
        {
            let mut acc = [0.0; LANES];
            let mut k = 0;
            for (j, &x) in v.iter().enumerate() {
                if x > theta {
                    acc[j % LANES] += x;
                    k += 1;
                }
            }
            (lane_sum(&acc), k)
        },
        v,
        theta
    )
}

/// `v_k <- max(v_k - theta, 0)`, and returns `max_k |v_k - w_k|` of the result (0 when
/// empty). `w` is at least as long as `v`.
pub(crate) fn shift_clamp_max_diff(v: &mut [f64], theta: f64, w: &[f64]) -> f64 {
    let w = &w[..v.len()];
    dispatch!(
        shift_clamp_max_diff,
        {
            let mut m = 0.0f64;
            for (x, &w) in v.iter_mut().zip(w) {
                *x = (*x - theta).max(0.0);
                m = m.max((*x - w).abs());
            }
            m
        },
        v,
        theta,
        w
    )
}

/// `out_j = sigmoid((s_i * w_j - mu_j) / T)` and `d_j = out_j - m0_j` for every `j`
/// (all slices as long as `out`).
pub(crate) fn mask_diff(
    s_i: f64,
    w: &[f64],
    mu: &[f64],
    m0: &[f64],
    temperature: f64,
    out: &mut [f64],
    d: &mut [f64],
) {
    let len = out.len();
    let (w, mu, m0, d) = (&w[..len], &mu[..len], &m0[..len], &mut d[..len]);
    dispatch!(
        mask_diff,
        {
            for j in 0..len {
                out[j] = crate::mask::mask(s_i, w[j], mu[j], temperature);
                d[j] = out[j] - m0[j];
            }
        },
        s_i,
        w,
        mu,
        m0,
        temperature,
        out,
        d
    )
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx512 {
    //! The AVX-512 kernels, operation for operation the portable bodies above.

    use std::arch::x86_64::*;

    use super::{LANES, lane_sum};

    /// Blocks of 8 over `len` entries: the start of each and the load mask of its lanes.
    fn blocks(len: usize) -> impl Iterator<Item = (usize, __mmask8)> {
        (0..len).step_by(LANES).map(move |j| {
            let r = (len - j).min(LANES);
            (j, (((1u16 << r) - 1) & 0xff) as __mmask8)
        })
    }

    // SAFETY (every masked load and store below): lanes outside `k` are not touched, and
    // `blocks` only sets lanes `j..j + r` with `j + r <= len`, the slice's length.
    #[inline(always)]
    fn load(v: &[f64], j: usize, k: __mmask8) -> __m512d {
        unsafe { _mm512_maskz_loadu_pd(k, v.as_ptr().add(j)) }
    }

    #[inline(always)]
    fn store(v: &mut [f64], j: usize, k: __mmask8, x: __m512d) {
        unsafe { _mm512_mask_storeu_pd(v.as_mut_ptr().add(j), k, x) }
    }

    #[inline(always)]
    fn lanes(x: __m512d) -> [f64; LANES] {
        let mut out = [0.0; LANES];
        unsafe { _mm512_storeu_pd(out.as_mut_ptr(), x) };
        out
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn dot(a: &[f64], b: &[f64]) -> f64 {
        let mut acc = _mm512_setzero_pd();
        for (j, k) in blocks(a.len()) {
            acc = _mm512_add_pd(acc, _mm512_mul_pd(load(a, j, k), load(b, j, k)));
        }
        lane_sum(&lanes(acc))
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn sum(v: &[f64]) -> f64 {
        let mut acc = _mm512_setzero_pd();
        for (j, k) in blocks(v.len()) {
            acc = _mm512_add_pd(acc, load(v, j, k));
        }
        lane_sum(&lanes(acc))
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn sum_count_above(v: &[f64], theta: f64) -> (f64, usize) {
        let t = _mm512_set1_pd(theta);
        let mut acc = _mm512_setzero_pd();
        let mut count = 0u32;
        for (j, k) in blocks(v.len()) {
            let x = load(v, j, k);
            let keep = _mm512_mask_cmp_pd_mask::<_CMP_GT_OQ>(k, x, t);
            acc = _mm512_mask_add_pd(acc, keep, acc, x);
            count += u32::from(keep).count_ones();
        }
        (lane_sum(&lanes(acc)), count as usize)
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn shift_clamp_max_diff(v: &mut [f64], theta: f64, w: &[f64]) -> f64 {
        let t = _mm512_set1_pd(theta);
        let zero = _mm512_setzero_pd();
        let mut m = 0.0f64;
        for (j, k) in blocks(v.len()) {
            let x = _mm512_max_pd(_mm512_sub_pd(load(v, j, k), t), zero);
            store(v, j, k, x);
            let diff = _mm512_abs_pd(_mm512_sub_pd(x, load(w, j, k)));
            m = m.max(_mm512_mask_reduce_max_pd(k, diff));
        }
        m
    }

    /// `crate::mask::mask` of eight lanes, as `sigmoid` and `exp_nonpositive` compute it.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn mask(s: __m512d, w: __m512d, mu: __m512d, t: __m512d) -> __m512d {
        const LOG2_E: f64 = std::f64::consts::LOG2_E;
        let c = crate::mask::EXP_CONSTANTS;
        let z = _mm512_div_pd(_mm512_sub_pd(_mm512_mul_pd(s, w), mu), t);
        // -|z|: set the sign bit.
        let x = _mm512_castsi512_pd(_mm512_or_si512(
            _mm512_castpd_si512(z),
            _mm512_set1_epi64(i64::MIN),
        ));
        let low = _mm512_cmp_pd_mask::<_CMP_LT_OQ>(x, _mm512_set1_pd(c.floor));
        let xc = _mm512_mask_blend_pd(low, x, _mm512_set1_pd(c.floor));
        let round = _mm512_set1_pd(c.round);
        let tt = _mm512_add_pd(_mm512_mul_pd(xc, _mm512_set1_pd(LOG2_E)), round);
        let kf = _mm512_sub_pd(tt, round);
        let r = _mm512_sub_pd(
            _mm512_sub_pd(xc, _mm512_mul_pd(kf, _mm512_set1_pd(c.ln2_hi))),
            _mm512_mul_pd(kf, _mm512_set1_pd(c.ln2_lo)),
        );
        let mut p = _mm512_set1_pd(c.taylor[0]);
        for &ck in &c.taylor[1..] {
            p = _mm512_add_pd(_mm512_mul_pd(p, r), _mm512_set1_pd(ck));
        }
        let one = _mm512_set1_pd(1.0);
        let er = _mm512_add_pd(
            _mm512_mul_pd(_mm512_add_pd(_mm512_mul_pd(p, r), one), r),
            one,
        );
        let scale = _mm512_castsi512_pd(_mm512_slli_epi64::<52>(_mm512_add_epi64(
            _mm512_castpd_si512(tt),
            _mm512_set1_epi64(1023),
        )));
        let e = _mm512_maskz_mul_pd(!low, er, scale);
        let nonneg = _mm512_cmp_pd_mask::<_CMP_GE_OQ>(z, _mm512_setzero_pd());
        let num = _mm512_mask_blend_pd(nonneg, e, one);
        _mm512_div_pd(num, _mm512_add_pd(one, e))
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn mask_diff(
        s_i: f64,
        w: &[f64],
        mu: &[f64],
        m0: &[f64],
        temperature: f64,
        out: &mut [f64],
        d: &mut [f64],
    ) {
        let (s, t) = (_mm512_set1_pd(s_i), _mm512_set1_pd(temperature));
        for (j, k) in blocks(out.len()) {
            let m = mask(s, load(w, j, k), load(mu, j, k), t);
            store(out, j, k, m);
            store(d, j, k, _mm512_sub_pd(m, load(m0, j, k)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(v: &[f64]) -> Vec<u64> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn reductions_match_the_plain_loops() {
        for len in [0, 1, 7, 8, 9, 16, 23, 100] {
            let a: Vec<f64> = (0..len).map(|k| (k as f64 * 0.71).sin()).collect();
            let b: Vec<f64> = (0..len).map(|k| (k as f64 * 0.29).cos()).collect();
            let close = |x: f64, y: f64| (x - y).abs() <= 1e-12 * (1.0 + y.abs());
            assert!(close(sum(&a), a.iter().sum()), "sum len={len}");
            let d: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!(close(dot(&a, &b), d), "dot len={len}");
            let (s, k) = sum_count_above(&a, 0.1);
            let above: Vec<f64> = a.iter().copied().filter(|&x| x > 0.1).collect();
            assert_eq!(k, above.len(), "count len={len}");
            assert!(close(s, above.iter().sum()), "sum above len={len}");
            let mut v = a.clone();
            let m = shift_clamp_max_diff(&mut v, 0.2, &b);
            let want: Vec<f64> = a.iter().map(|x| (x - 0.2).max(0.0)).collect();
            assert_eq!(v, want, "shift len={len}");
            let md = want
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max);
            assert_eq!(m, md, "max diff len={len}");
        }
    }

    /// The kernels against the portable bodies, compared bit for bit (on a CPU without
    /// AVX-512 both sides are the portable body and the test is trivially true).
    #[test]
    fn kernels_and_portable_bodies_give_the_same_bits() {
        for len in [1, 5, 8, 13, 100, 101] {
            let a: Vec<f64> = (0..len).map(|k| (k as f64 * 0.71).sin() * 3.0).collect();
            let b: Vec<f64> = (0..len).map(|k| (k as f64 * 0.29).cos()).collect();
            let portable_mask: Vec<f64> = (0..len)
                .map(|j| crate::mask::mask(1.7, a[j], b[j], 0.03))
                .collect();
            let (mut out, mut d) = (vec![0.0; len], vec![0.0; len]);
            mask_diff(1.7, &a, &b, &b, 0.03, &mut out, &mut d);
            assert_eq!(bits(&out), bits(&portable_mask), "mask len={len}");
            let pd: Vec<f64> = portable_mask.iter().zip(&b).map(|(m, b)| m - b).collect();
            assert_eq!(bits(&d), bits(&pd), "mask diff len={len}");
            let mut acc = [0.0; LANES];
            for (j, (x, y)) in a.iter().zip(&b).enumerate() {
                acc[j % LANES] += x * y;
            }
            assert_eq!(
                dot(&a, &b).to_bits(),
                lane_sum(&acc).to_bits(),
                "dot len={len}"
            );
            let mut acc = [0.0; LANES];
            let mut k = 0;
            for (j, &x) in a.iter().enumerate() {
                if x > 0.3 {
                    acc[j % LANES] += x;
                    k += 1;
                }
            }
            let (s, kk) = sum_count_above(&a, 0.3);
            assert_eq!(
                (s.to_bits(), kk),
                (lane_sum(&acc).to_bits(), k),
                "above len={len}"
            );
        }
    }
}
