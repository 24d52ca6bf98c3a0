//! Element-wise f32 math for the models' CPU kernels: `exp`, `tanh` and GELU (tanh form),
//! without branches or library calls so that loops over them vectorise, and
//! [`multiversion!`], which compiles a kernel for AVX-512, for AVX2 + FMA and for the
//! baseline target and picks one at run time by [`simd_level`].
//!
//! libm's `tanhf` and `expm1f` are scalar calls: on the wire's feed-forward expert they took a
//! quarter of a call's time, and in the neuron's GELU most of a training step's element-wise
//! time. The neuron's fused ops and the wire's expert both use this crate, so the two models
//! compute GELU the same way.
//!
//! ```
//! use bt_vecmath::{gelu_fwd, simd_level};
//!
//! let x = [-2.0f32, 0.0, 1.0];
//! let mut y = [0.0f32; 3];
//! gelu_fwd(simd_level(), &x, &mut y);
//! assert!((y[2] - 0.841_192).abs() < 1e-5);
//! ```

/// `sqrt(2 / pi)`, GELU's scale inside the tanh.
pub const GELU_C: f32 = 0.797_884_6;
/// The cubic coefficient of GELU's tanh form.
pub const GELU_A: f32 = 0.044_715;

/// `e^x` in f32 within 2e-7 relative error (Cephes' `expf` polynomial after reducing `x` by
/// multiples of ln 2), without branches or calls so that loops over it vectorise. `x` is clamped
/// to `[-87, 88]`: below, the result is about 1.6e-38 instead of a denormal or zero.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts, so `n * LN2_HI` is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    // 2^n through the exponent bits; n is in [-126, 127] after the clamp. `shifted` is
    // `ROUND + n` exactly, so its bits less ROUND's are `n`: integer arithmetic on the bits
    // vectorises, where `n as i32` (a saturating conversion) compiles to scalar code.
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    er * f32::from_bits(((n_bits + 127) as u32) << 23)
}

/// `tanh` through one [`exp`], accurate to a few ulps in f32 and vectorisable.
#[inline(always)]
pub fn tanh(z: f32) -> f32 {
    let z = z.clamp(-9.0, 9.0);
    let e = exp(2.0 * z);
    (e - 1.0) / (e + 1.0)
}

/// GELU, tanh form: `x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`, as candle's `gelu` and
/// hivemind's `ffn` expert (`gelu_fast`) compute it.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + tanh(GELU_C * (x + GELU_A * x * x * x)))
}

/// The derivative of [`gelu`].
#[inline(always)]
pub fn gelu_grad(x: f32) -> f32 {
    let t = tanh(GELU_C * (x + GELU_A * x * x * x));
    let dt = (1.0 - t * t) * GELU_C * (1.0 + 3.0 * GELU_A * x * x);
    0.5 * (1.0 + t) + 0.5 * x * dt
}

/// Lanes of the partial sums in [`sum`] and [`dot`]: one AVX-512 register of f32.
const LANES: usize = 16;

/// The sum of `x`, taken in [`LANES`] interleaved partial sums so that it vectorises (a plain
/// left-to-right f32 sum cannot: each add waits for the one before).
#[inline(always)]
pub fn sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + tail.iter().sum::<f32>()
}

/// The largest value of `x` (`-inf` for none), in [`LANES`] partial maxima so that it
/// vectorises. NaNs are ignored, as `f32::max` ignores them.
#[inline(always)]
pub fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = a.max(v);
        }
    }
    acc.iter()
        .chain(tail)
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

/// `sum(x[i] * y[i])` over the shorter slice, in [`LANES`] partial sums like [`sum`].
#[inline(always)]
pub fn dot(x: &[f32], y: &[f32]) -> f32 {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &y[..n]);
    let mut acc = [0f32; LANES];
    let (xc, yc) = (x.chunks_exact(LANES), y.chunks_exact(LANES));
    let tail: f32 = xc
        .remainder()
        .iter()
        .zip(yc.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (c, d) in xc.zip(yc) {
        for ((a, v), w) in acc.iter_mut().zip(c).zip(d) {
            *a += v * w;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The widest vector unit this CPU has: 2 for AVX-512, 1 for AVX2 with FMA, 0 otherwise.
pub fn simd_level() -> u8 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return 2;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return 1;
        }
    }
    0
}

/// `fn $name(level, args..)` runs the `#[inline(always)]` kernel `$body(args..)` compiled for
/// AVX-512 (level 2), AVX2 + FMA (level 1) or the baseline target (0), so that its loops
/// vectorise as wide as the CPU allows. `level` comes from [`simd_level`]; a level the CPU
/// lacks must never be passed.
///
/// ```
/// #[inline(always)]
/// fn double_chunk(x: &mut [f32]) {
///     x.iter_mut().for_each(|v| *v *= 2.0);
/// }
/// bt_vecmath::multiversion!(pub(crate) double => double_chunk(x: &mut [f32]));
///
/// let mut x = [1.0f32, 2.0];
/// double(bt_vecmath::simd_level(), &mut x);
/// assert_eq!(x, [2.0, 4.0]);
/// ```
#[macro_export]
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis $name:ident => $body:ident ($($arg:ident : $ty:ty),* $(,)?)) => {
        $(#[$meta])*
        $vis fn $name(level: u8, $($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) {
                    $body($($arg),*)
                }
                #[allow(unsafe_code)]
                match level {
                    // SAFETY: the caller passes the level `simd_level` found on this CPU.
                    2 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above: AVX2 and FMA are present.
                    1 => return unsafe { avx2($($arg),*) },
                    _ => {}
                }
            }
            let _ = level;
            $body($($arg),*)
        }
    };
}

/// `y = GELU(x)`, element by element.
#[inline(always)]
fn gelu_fwd_chunk(x: &[f32], y: &mut [f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = gelu(x);
    }
}

/// `y = GELU(x + b)` on one row, with the pre-activation `a = x + b` written back to `x`.
#[inline(always)]
fn bias_gelu_keep_chunk(x: &mut [f32], b: &[f32], y: &mut [f32]) {
    for ((y, x), &b) in y.iter_mut().zip(x.iter_mut()).zip(b) {
        *x += b;
        *y = gelu(*x);
    }
}

/// `x = GELU(x + b)` on one row, in place.
#[inline(always)]
fn bias_gelu_inplace_chunk(x: &mut [f32], b: &[f32]) {
    for (x, &b) in x.iter_mut().zip(b) {
        *x = gelu(*x + b);
    }
}

/// `out = g * GELU'(x)`.
#[inline(always)]
fn gelu_bwd_chunk(x: &[f32], g: &[f32], out: &mut [f32]) {
    for ((o, &x), &g) in out.iter_mut().zip(x).zip(g) {
        *o = g * gelu_grad(x);
    }
}

/// `g *= GELU'(x)`, in place.
#[inline(always)]
fn gelu_bwd_inplace_chunk(x: &[f32], g: &mut [f32]) {
    for (g, &x) in g.iter_mut().zip(x) {
        *g *= gelu_grad(x);
    }
}

multiversion!(
    /// `y = GELU(x)` on the shorter of the two slices, for the CPU's `level`.
    pub gelu_fwd => gelu_fwd_chunk(x: &[f32], y: &mut [f32])
);
multiversion!(
    /// `y = GELU(x + b)` and `x += b` on one row (all three of one length).
    pub bias_gelu_keep => bias_gelu_keep_chunk(x: &mut [f32], b: &[f32], y: &mut [f32])
);
multiversion!(
    /// `x = GELU(x + b)` on one row, in place.
    pub bias_gelu_inplace => bias_gelu_inplace_chunk(x: &mut [f32], b: &[f32])
);
multiversion!(
    /// `out = g * GELU'(x)`.
    pub gelu_bwd => gelu_bwd_chunk(x: &[f32], g: &[f32], out: &mut [f32])
);
multiversion!(
    /// `g *= GELU'(x)`, in place.
    pub gelu_bwd_inplace => gelu_bwd_inplace_chunk(x: &[f32], g: &mut [f32])
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_2e7_of_std() {
        let mut worst = 0f32;
        for k in -8700..8800 {
            let x = k as f32 * 0.01 + 0.003;
            let (a, b) = (exp(x), x.exp());
            worst = worst.max((a - b).abs() / b);
        }
        assert!(worst < 2e-7, "worst relative error {worst}");
        assert!(exp(-1e4) > 0.0 && exp(-1e4) < 2e-38);
        assert!(exp(1e4).is_finite());
    }

    #[test]
    fn max_is_the_largest_and_ignores_nan() {
        assert_eq!(max(&[]), f32::NEG_INFINITY);
        for n in [1usize, 15, 16, 17, 100] {
            let mut x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.61).sin()).collect();
            let want = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            assert_eq!(max(&x), want, "n = {n}");
            x[n / 2] = f32::NAN;
            assert!(!max(&x).is_nan(), "n = {n}");
        }
    }

    #[test]
    fn sum_and_dot_match_f64_references() {
        for n in [0usize, 1, 15, 16, 17, 100, 1024] {
            let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.61).sin()).collect();
            let y: Vec<f32> = (0..n).map(|i| (i as f32 * 0.27).cos()).collect();
            let s: f64 = x.iter().map(|&v| f64::from(v)).sum();
            let d: f64 = x
                .iter()
                .zip(&y)
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum();
            assert!((f64::from(sum(&x)) - s).abs() < 1e-4, "n={n}");
            assert!((f64::from(dot(&x, &y)) - d).abs() < 1e-4, "n={n}");
        }
        assert_eq!(dot(&[1.0, 2.0, 3.0], &[4.0, 5.0]), 14.0);
    }

    #[test]
    fn tanh_is_within_a_few_ulps_of_std() {
        let mut worst = 0f32;
        for k in -1200..1200 {
            let z = k as f32 * 0.01 + 0.001;
            worst = worst.max((tanh(z) - z.tanh()).abs());
        }
        assert!(worst < 1e-6, "worst absolute error {worst}");
        assert_eq!(tanh(50.0), 1.0);
        assert_eq!(tanh(-50.0), -1.0);
    }

    #[test]
    fn gelu_matches_known_values_and_its_derivative() {
        for (x, want) in [(0.0f32, 0.0f32), (1.0, 0.841_192), (-2.0, -0.045_402_3)] {
            assert!((gelu(x) - want).abs() < 1e-5, "gelu({x}) = {}", gelu(x));
            let num = (gelu(x + 1e-3) - gelu(x - 1e-3)) / 2e-3;
            assert!((gelu_grad(x) - num).abs() < 1e-3, "gelu'({x})");
        }
    }

    /// Every compiled version of every kernel gives the same values as the scalar functions
    /// (to the rounding that FMA contraction may change).
    #[test]
    fn every_level_agrees_with_the_scalar_functions() {
        let n = 77;
        let x: Vec<f32> = (0..n).map(|i| i as f32 * 0.13 - 5.0).collect();
        let b: Vec<f32> = (0..n).map(|i| (i % 5) as f32 * 0.1 - 0.2).collect();
        let g: Vec<f32> = (0..n).map(|i| 1.0 + i as f32 * 0.01).collect();
        let close = |p: f32, q: f32| (p - q).abs() <= 1e-6 * (1.0 + q.abs());
        for level in 0..=simd_level() {
            let mut y = vec![0f32; n];
            gelu_fwd(level, &x, &mut y);
            assert!(y.iter().zip(&x).all(|(&y, &x)| close(y, gelu(x))));

            let (mut a, mut y2) = (x.clone(), vec![0f32; n]);
            bias_gelu_keep(level, &mut a, &b, &mut y2);
            for i in 0..n {
                assert!(close(a[i], x[i] + b[i]) && close(y2[i], gelu(x[i] + b[i])));
            }
            let mut c = x.clone();
            bias_gelu_inplace(level, &mut c, &b);
            assert!(c.iter().zip(&y2).all(|(&p, &q)| close(p, q)));

            let mut out = vec![0f32; n];
            gelu_bwd(level, &x, &g, &mut out);
            let mut g2 = g.clone();
            gelu_bwd_inplace(level, &x, &mut g2);
            for i in 0..n {
                let want = g[i] * gelu_grad(x[i]);
                assert!(
                    close(out[i], want) && close(g2[i], want),
                    "level {level} at {i}"
                );
            }
        }
    }
}
