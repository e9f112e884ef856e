//! `C (+)= A · Bᵀ` where every row of `A` and `B` is long and contiguous:
//! the product of a convolution's weight gradient, `dW = dY · colsᵀ`, in
//! NCHW.
//!
//! There the shared dimension (pixels) is the long one and the outputs are
//! few (`co × ci·k·k`). A column-major `gemm` packs both operands by
//! transposing them, which on the 1×1 layers and those of few output
//! channels cost more than the multiply-adds (20–80 GFLOP/s). Here each
//! output is a dot product of two rows, taken `MR × NR` at a time in vector
//! lanes: a step loads `MR + NR` vectors and does `MR · NR` multiply-adds,
//! and nothing is packed. The rows are walked in chunks of `KC` values so a
//! block's rows stay in L1, and the lanes are summed once per chunk.
//!
//! One build per instruction set (AVX-512, AVX2 + FMA), chosen at run time,
//! each with a block that fits its register file; other CPUs keep `gemm`
//! ([`available`]).

/// Values of each row per pass: `(MR + NR) · KC` floats stay in L1.
const KC: usize = 512;

/// One matrix of rows: row `i` is `data[i·stride..][..k]`, or
/// `data[starts[i]..][..k]` when the rows are given by their starts (rows
/// that overlap: a convolution's taps as shifted views of one padded plane).
#[derive(Clone, Copy)]
pub(super) struct Rows<'a> {
    /// The values.
    pub data: &'a [f32],
    /// Values from one row's start to the next.
    pub stride: usize,
    /// Rows.
    pub count: usize,
    /// Where each row starts, in place of `i·stride`.
    pub starts: Option<&'a [usize]>,
}

impl<'a> Rows<'a> {
    /// `count` rows of `data`, `stride` values apart.
    pub(super) fn strided(data: &'a [f32], stride: usize, count: usize) -> Self {
        Rows {
            data,
            stride,
            count,
            starts: None,
        }
    }

    /// The rows of `data` that start at `starts`.
    pub(super) fn at(data: &'a [f32], starts: &'a [usize]) -> Self {
        Rows {
            data,
            stride: 0,
            count: starts.len(),
            starts: Some(starts),
        }
    }

    fn start(&self, i: usize) -> usize {
        self.starts.map_or(i * self.stride, |s| s[i])
    }

    fn row(&self, i: usize, from: usize, len: usize) -> &[f32] {
        &self.data[self.start(i) + from..][..len]
    }

    /// Whether every row holds `k` values.
    fn fit(&self, k: usize) -> bool {
        let last = match self.starts {
            Some(s) => s.iter().copied().max().unwrap_or(0),
            None => self.count.saturating_sub(1) * self.stride,
        };
        self.data.len() >= last + k
    }
}

/// Whether this CPU runs [`dot_gemm`]: AVX-512F, or AVX2 with FMA. Others
/// keep `gemm`.
pub(super) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("fma")
            && (std::is_x86_feature_detected!("avx512f") || std::is_x86_feature_detected!("avx2"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `c[i·ldc + j] (+)= Σ_{l<k} A[i][l] · B[j][l]` for every row `i` of `a`
/// and `j` of `b` (`accumulate`: add to `c`, else overwrite it).
///
/// # Panics
///
/// If the CPU lacks the instructions ([`available`]), a row of `a` or `b`
/// has fewer than `k` values, or `c` is too short for `a.count` rows of
/// `ldc` (the last of `b.count` values).
pub(super) fn dot_gemm(k: usize, a: Rows, b: Rows, c: &mut [f32], ldc: usize, accumulate: bool) {
    let (m, n) = (a.count, b.count);
    assert!(available(), "dot_gemm needs AVX-512F or AVX2 with FMA");
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        a.fit(k) && b.fit(k),
        "dot_gemm: rows of {k} values do not fit ({m} rows, {} values, stride {}; {n} rows, {} values, stride {})",
        a.data.len(),
        a.stride,
        b.data.len(),
        b.stride
    );
    assert!(
        n <= ldc && c.len() >= (m - 1) * ldc + n,
        "dot_gemm: {m}×{n} outputs do not fit {} values at stride {ldc}",
        c.len()
    );
    if !accumulate {
        for i in 0..m {
            c[i * ldc..][..n].fill(0.0);
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: `avx512::blocks` needs AVX-512F and FMA, which the CPU
            // has (`available` and the check above); the rows hold `k`
            // values each and `c` the outputs (asserted above).
            unsafe { avx512::blocks(k, a, b, c, ldc) }
        } else {
            // SAFETY: as above, with AVX2 and FMA.
            unsafe { avx2::blocks(k, a, b, c, ldc) }
        }
    }
}

/// The kernel for one instruction set: `$v` vectors of `$lanes` floats,
/// blocks of `$mr × $nr` outputs (accumulators plus one vector per row must
/// fit the register file).
#[cfg(target_arch = "x86_64")]
macro_rules! kernel {
    ($name:ident, $feature:literal, $v:ty, $lanes:literal, $mr:literal, $nr:literal,
     zero: $zero:ident, load: $load:ident, fma: $fma:ident, store: $store:ident) => {
        mod $name {
            use super::{KC, Rows};
            use std::arch::x86_64::*;

            const MR: usize = $mr;
            const NR: usize = $nr;
            const L: usize = $lanes;

            /// Every `MR × NR` block of `C`, chunk by chunk of the rows. Edge
            /// blocks repeat their last row (a valid read) and drop its
            /// results.
            ///
            /// # Safety
            ///
            /// The CPU has the instructions of `$feature`.
            #[target_feature(enable = $feature)]
            pub(super) fn blocks(k: usize, a: Rows, b: Rows, c: &mut [f32], ldc: usize) {
                let (m, n) = (a.count, b.count);
                for from in (0..k).step_by(KC) {
                    let len = KC.min(k - from);
                    for j0 in (0..n).step_by(NR) {
                        let bs: [&[f32]; NR] =
                            std::array::from_fn(|j| b.row((j0 + j).min(n - 1), from, len));
                        for i0 in (0..m).step_by(MR) {
                            let as_: [&[f32]; MR] =
                                std::array::from_fn(|i| a.row((i0 + i).min(m - 1), from, len));
                            let sums = block(as_, bs);
                            for (i, row) in sums.iter().enumerate().take(m - i0) {
                                let dst = &mut c[(i0 + i) * ldc + j0..];
                                for (d, s) in dst.iter_mut().zip(row).take(n - j0) {
                                    *d += s;
                                }
                            }
                        }
                    }
                }
            }

            /// `Σ_l a[i][l] · b[j][l]` for the `MR × NR` pairs of rows, all of
            /// one length.
            #[target_feature(enable = $feature)]
            fn block(a: [&[f32]; MR], b: [&[f32]; NR]) -> [[f32; NR]; MR] {
                let len = a[0].len();
                let steps = len / L;
                let mut acc: [[$v; NR]; MR] = [[$zero(); NR]; MR];
                for s in 0..steps {
                    let x: [$v; MR] = std::array::from_fn(|i| {
                        // SAFETY: every row holds `len ≥ (s + 1)·L` values,
                        // and the load is unaligned.
                        unsafe { $load(a[i].as_ptr().add(s * L)) }
                    });
                    let y: [$v; NR] = std::array::from_fn(|j| {
                        // SAFETY: as for `x`.
                        unsafe { $load(b[j].as_ptr().add(s * L)) }
                    });
                    for i in 0..MR {
                        for j in 0..NR {
                            acc[i][j] = $fma(x[i], y[j], acc[i][j]);
                        }
                    }
                }
                let mut out = [[0.0f32; NR]; MR];
                for i in 0..MR {
                    for j in 0..NR {
                        let mut lanes = [0.0f32; L];
                        // SAFETY: `lanes` holds exactly one vector; unaligned store.
                        unsafe { $store(lanes.as_mut_ptr(), acc[i][j]) };
                        let mut total: f32 = lanes.iter().sum();
                        for l in steps * L..len {
                            total += a[i][l] * b[j][l];
                        }
                        out[i][j] = total;
                    }
                }
                out
            }
        }
    };
}

// 16 accumulators and 8 row vectors of the 32 registers.
#[cfg(target_arch = "x86_64")]
kernel!(avx512, "avx512f,fma", __m512, 16, 4, 4,
    zero: _mm512_setzero_ps, load: _mm512_loadu_ps, fma: _mm512_fmadd_ps, store: _mm512_storeu_ps);
// 8 accumulators and 6 row vectors of the 16 registers.
#[cfg(target_arch = "x86_64")]
kernel!(avx2, "avx2,fma", __m256, 8, 2, 4,
    zero: _mm256_setzero_ps, load: _mm256_loadu_ps, fma: _mm256_fmadd_ps, store: _mm256_storeu_ps);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_values as values;

    /// Every edge: rows and columns past whole blocks, lengths past whole
    /// vectors and chunks, strides wider than the rows, accumulation.
    #[test]
    fn products_equal_the_definition() {
        if crate::ops::skip_without_simd(available(), "dot-product gemm") {
            // A CPU without AVX2 + FMA never calls the kernel (conv.rs
            // keeps gemm); scripts/cpu-paths.sh runs this test as a Haswell.
            return;
        }
        for (m, n, k, pad) in [
            (1, 1, 1, 0),
            (3, 5, 17, 3),
            (4, 4, 16, 0),
            (7, 9, 1030, 5),
            (32, 576, 384, 0),
            (5, 2, 2048, 1),
        ] {
            let (lda, ldb, ldc) = (k + pad, k + 2 * pad, n + pad);
            let a = values((m - 1) * lda + k, 1);
            let b = values((n - 1) * ldb + k, 2);
            let start = values(m * ldc, 3);
            for accumulate in [false, true] {
                let mut c = start.clone();
                let rows = Rows::strided;
                dot_gemm(
                    k,
                    rows(&a, lda, m),
                    rows(&b, ldb, n),
                    &mut c,
                    ldc,
                    accumulate,
                );
                for i in 0..m {
                    for j in 0..ldc {
                        let got = c[i * ldc + j];
                        if j >= n {
                            assert_eq!(got, start[i * ldc + j], "padding column {j} changed");
                            continue;
                        }
                        let dot: f64 = (0..k)
                            .map(|l| a[i * lda + l] as f64 * b[j * ldb + l] as f64)
                            .sum();
                        let want = dot
                            + if accumulate {
                                start[i * ldc + j] as f64
                            } else {
                                0.0
                            };
                        assert!(
                            (got as f64 - want).abs() <= 1e-4 * (1.0 + want.abs()),
                            "{m}×{n}×{k} ({accumulate}): c[{i}][{j}] = {got}, want {want}"
                        );
                    }
                }
            }
        }
    }
}
