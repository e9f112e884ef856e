//! Vectorizable reductions, `exp` and the sigmoid, and the AVX2 dispatch
//! shared by the element-wise kernels.
//!
//! Rust keeps the order of floating-point additions, so `iter().sum()` is a
//! serial chain the compiler cannot vectorize. These helpers sum in 16
//! independent `f32` lanes over blocks of 1024 values and add the block
//! totals in `f64`: vector speed, and an error that does not grow with the
//! length the way one long `f32` chain does.

/// Values per block whose lanes are summed in `f32`.
const BLOCK: usize = 1024;
const LANES: usize = 16;

/// `Σ f(a[i], b[i])` (pass `a` for `b` when only one input matters).
#[inline(always)]
pub fn sum2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    let mut total = 0.0f64;
    for (ab, bb) in a.chunks(BLOCK).zip(b.chunks(BLOCK)) {
        let mut acc = [0.0f32; LANES];
        let (ac, bc) = (ab.chunks_exact(LANES), bb.chunks_exact(LANES));
        let (ar, br) = (ac.remainder(), bc.remainder());
        for (x, y) in ac.zip(bc) {
            for l in 0..LANES {
                acc[l] += f(x[l], y[l]);
            }
        }
        let tail: f32 = ar.iter().zip(br).map(|(&x, &y)| f(x, y)).sum();
        total += (acc.iter().sum::<f32>() + tail) as f64;
    }
    total
}

/// `Σ f(a[i])`.
#[inline(always)]
pub fn sum(a: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    sum2(a, a, |x, _| f(x))
}

/// `exp(x)` for `f32` without a library call, so loops over it vectorize
/// (Cephes `expf`: range reduction by ln 2 and a degree-6 polynomial; within
/// 2 ulp on [−87, 88]).
#[inline(always)]
pub(super) fn exp(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5·2²³
    let x = x.clamp(-87.0, 88.0);
    // Round to nearest through the float mantissa (no SSE4.1 `round` needed):
    // `t`'s low mantissa bits then hold n in two's complement.
    let t = x * std::f32::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // 2ⁿ scaling from t's bits, not `n as i32`: Rust's saturating cast
    // (NaN → 0) does not vectorize, and took most of GroupNorm's time
    // (a scalar convert and two compares per value in a profile).
    let n_bits = t.to_bits().wrapping_sub(MAGIC.to_bits());
    f32::from_bits(e.to_bits().wrapping_add(n_bits << 23))
}

/// `1 / (1 + e^−z)` with [`exp`].
#[inline(always)]
pub(super) fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + exp(-z))
}

/// Calls `$kernel($arg)` compiled for AVX-512 or AVX2 when the CPU has it
/// (wider vectors for the element-wise loops), else the baseline build. The
/// same arithmetic in all three (no FMA contraction, sums in the fixed lanes
/// of [`sum2`]), so results do not depend on the CPU. A kernel takes one
/// argument, a struct of its inputs, so its signature is not restated here.
macro_rules! wide {
    ($kernel:ident($arg:ident: $ty:ty) -> $ret:ty) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2")]
            fn avx2($arg: $ty) -> $ret {
                $kernel($arg)
            }
            #[target_feature(enable = "avx512f")]
            fn avx512($arg: $ty) -> $ret {
                $kernel($arg)
            }
            if std::is_x86_feature_detected!("avx512f") {
                // SAFETY: `avx512` needs nothing but the AVX-512F
                // instructions, and the CPU has them (checked just above).
                unsafe { avx512($arg) }
            } else if std::is_x86_feature_detected!("avx2") {
                // SAFETY: `avx2` needs nothing but the AVX2 instructions,
                // and the CPU has them (checked just above).
                unsafe { avx2($arg) }
            } else {
                $kernel($arg)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $kernel($arg)
        }
    }};
}
pub(crate) use wide;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_equal_f64_sums_on_every_length() {
        for len in [0, 1, 15, 16, 17, 1023, 1024, 1025, 5000] {
            let a: Vec<f32> = (0..len)
                .map(|i| ((i * 7919) % 1000) as f32 / 999.0 - 0.3)
                .collect();
            let b: Vec<f32> = a.iter().map(|v| v * 2.0 + 1.0).collect();
            let want: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
            let got = sum2(&a, &b, |x, y| x * y);
            assert!(
                (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                "{len}: {got} vs {want}"
            );
            let want: f64 = a.iter().map(|&x| x as f64).sum();
            assert!(
                (sum(&a, |x| x) - want).abs() <= 1e-5 * (1.0 + want.abs()),
                "{len}"
            );
        }
    }

    #[test]
    fn exp_is_within_two_ulp_of_the_library() {
        let mut worst = 0.0f32;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (a, b) = (exp(x), x.exp());
            worst = worst.max(((a - b) / b).abs());
            x += 0.0137;
        }
        assert!(worst < 2.5e-7, "worst relative error {worst}");
        assert!((0.0..1e-37).contains(&exp(-1000.0)));
        assert!(exp(1000.0).is_finite());
    }
}
