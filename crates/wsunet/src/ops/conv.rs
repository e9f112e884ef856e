//! 2-D convolution on raw `f32` slices: forward, input gradient and weight
//! gradient, for the CPU backend (Flex).
//!
//! Caffe-style NCHW im2col (Jia, *Learning Semantic Image Representations at a
//! Large Scale*, 2014; the layout Caffe and PyTorch's THNN used): an OIHW kernel
//! already is the `[C_out, C_in·k·k]` matrix, so no kernel re-flatten and no
//! channels-last copy is needed. The output is cut into bands of rows; each band
//! is one im2col into a reused per-thread scratch buffer and one `gemm` that
//! writes straight into the output through its row stride.
//!
//! - forward: `Y[n][:, band] = W · cols(X[n], band)`;
//! - weight gradient: `dW = Σ_bands dY[n][:, band] · cols(X[n], band)ᵀ`, summed
//!   in a fixed order (deterministic for a given thread count);
//! - input gradient: for stride 1, the forward of `dY` with the kernel transposed
//!   and flipped (a full correlation); otherwise `Wᵀ · dY` then col2im.
//!
//! One level of parallelism: with enough bands, rayon runs bands in parallel and
//! each `gemm` is single-threaded; with few (deep layers, batch 1), bands run in
//! order and `gemm` splits its own work. 1×1 stride-1 convolutions skip im2col.

use std::cell::RefCell;

use gemm::Parallelism;
use rayon::prelude::*;

/// Floats of im2col scratch per band: large enough for efficient `gemm` calls,
/// small enough to stay in the L2 cache of one core.
const BAND_FLOATS: usize = 1 << 18;

/// Shapes of one convolution (groups 1, dilation 1, square kernel, symmetric
/// zero padding: the convolutions of this crate's layers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    /// Batch.
    pub n: usize,
    /// Input channels.
    pub ci: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub co: usize,
    /// Kernel size.
    pub k: usize,
    /// Stride.
    pub s: usize,
    /// Padding.
    pub p: usize,
    /// Output height.
    pub ho: usize,
    /// Output width.
    pub wo: usize,
}

impl ConvGeom {
    /// The geometry of `x [n, ci, h, w]` convolved with `w [co, ci, k, k]`;
    /// `None` when the kernel is not square, the channels differ (groups) or
    /// the padded input is smaller than the kernel.
    pub fn new(x: [usize; 4], w: [usize; 4], stride: usize, padding: usize) -> Option<Self> {
        let [n, ci, h, wd] = x;
        let [co, wci, kh, kw] = w;
        if wci != ci || kh != kw || stride == 0 || h + 2 * padding < kh || wd + 2 * padding < kw {
            return None;
        }
        let k = kh;
        Some(ConvGeom {
            n,
            ci,
            h,
            w: wd,
            co,
            k,
            s: stride,
            p: padding,
            ho: (h + 2 * padding - k) / stride + 1,
            wo: (wd + 2 * padding - k) / stride + 1,
        })
    }

    /// Rows of the unfolded matrix: `ci·k·k`.
    fn kk(&self) -> usize {
        self.ci * self.k * self.k
    }

    fn hw_in(&self) -> usize {
        self.h * self.w
    }

    fn hw_out(&self) -> usize {
        self.ho * self.wo
    }

    /// A 1×1 stride-1 convolution without padding is a plain matrix product.
    fn pointwise(&self) -> bool {
        self.k == 1 && self.s == 1 && self.p == 0
    }

    /// Output columns `lo..hi` whose input column for kernel column `kx` lies
    /// inside the image (the others read zero padding).
    fn inside_cols(&self, kx: usize) -> (usize, usize) {
        let lo = self.p.saturating_sub(kx).div_ceil(self.s).min(self.wo);
        let hi = if self.w + self.p > kx {
            ((self.w + self.p - kx - 1) / self.s + 1).clamp(lo, self.wo)
        } else {
            lo
        };
        (lo, hi)
    }

    /// The input row that output row `oy` reads for kernel row `ky`, or
    /// `None` in the padding.
    fn input_row(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy * self.s + ky)
            .checked_sub(self.p)
            .filter(|&iy| iy < self.h)
    }

    /// The work units: (image, first output row, rows).
    fn bands(&self) -> Vec<(usize, usize, usize)> {
        let rows = (BAND_FLOATS / (self.kk() * self.wo).max(1)).clamp(1, self.ho);
        (0..self.n)
            .flat_map(|n| {
                (0..self.ho)
                    .step_by(rows)
                    .map(move |r0| (n, r0, rows.min(self.ho - r0)))
            })
            .collect()
    }

    /// Multiply-adds of the forward pass.
    pub fn macs(&self) -> usize {
        self.n * self.co * self.hw_out() * self.kk()
    }
}

/// Whether bands run in parallel (each `gemm` single-threaded) or in order.
fn outer_parallel(units: usize) -> bool {
    let threads = rayon::current_num_threads();
    threads > 1 && units >= 2 * threads
}

fn inner(outer: bool) -> Parallelism {
    let threads = rayon::current_num_threads();
    if outer || threads == 1 {
        Parallelism::None
    } else {
        Parallelism::Rayon(threads)
    }
}

/// A pointer that may cross threads: every band writes a disjoint part.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The pointer (a method, so closures capture the `Sync` wrapper).
    fn get(self) -> *mut f32 {
        self.0
    }
}

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's scratch buffer of at least `len` floats
/// (contents unspecified; `f` overwrites what it reads).
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|cell| {
        // A nested call on the same thread (rayon may run another band inside
        // a parallel im2col) gets a buffer of its own.
        match cell.try_borrow_mut() {
            Ok(mut buf) => {
                if buf.len() < len {
                    buf.resize(len, 0.0);
                }
                f(&mut buf[..len])
            }
            Err(_) => f(&mut vec![0.0; len]),
        }
    })
}

/// A vector of `len` floats that the caller overwrites entirely.
fn output(len: usize, fill: impl FnOnce(*mut f32)) -> Vec<f32> {
    let mut v: Vec<f32> = Vec::with_capacity(len);
    fill(v.spare_capacity_mut().as_mut_ptr().cast());
    // SAFETY: `fill` wrote all `len` elements (every band of every image).
    unsafe { v.set_len(len) };
    v
}

/// `dst[m×n] (+)= lhs[m×k] · rhs[k×n]`, strides in elements (row, column).
#[allow(clippy::too_many_arguments)]
unsafe fn matmul(
    [m, n, k]: [usize; 3],
    dst: *mut f32,
    [dst_rs, dst_cs]: [usize; 2],
    accumulate: bool,
    lhs: *const f32,
    [lhs_rs, lhs_cs]: [usize; 2],
    rhs: *const f32,
    [rhs_rs, rhs_cs]: [usize; 2],
    par: Parallelism,
) {
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_cs as isize,
            dst_rs as isize,
            accumulate,
            lhs,
            lhs_cs as isize,
            lhs_rs as isize,
            rhs,
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

/// Unfolds output rows `r0..r0+rows` of one image into `cols [ci·k·k, rows·wo]`.
fn im2col(g: &ConvGeom, img: &[f32], r0: usize, rows: usize, cols: &mut [f32], par: bool) {
    let t = rows * g.wo;
    let kk2 = g.k * g.k;
    let same = g.s == 1 && g.wo == g.w && g.ho == g.h;
    let channel = |(c, chunk): (usize, &mut [f32])| {
        let plane = &img[c * g.hw_in()..][..g.hw_in()];
        for ky in 0..g.k {
            for kx in 0..g.k {
                let dst = &mut chunk[(ky * g.k + kx) * t..][..t];
                if same {
                    shifted_copy(g, plane, r0, rows, ky, kx, dst);
                    continue;
                }
                let (lo, hi) = g.inside_cols(kx);
                for r in 0..rows {
                    let row = &mut dst[r * g.wo..][..g.wo];
                    let Some(iy) = g.input_row(r0 + r, ky) else {
                        row.fill(0.0);
                        continue;
                    };
                    let src = &plane[iy * g.w..][..g.w];
                    row[..lo].fill(0.0);
                    row[hi..].fill(0.0);
                    let ix0 = lo * g.s + kx - g.p;
                    if g.s == 1 {
                        row[lo..hi].copy_from_slice(&src[ix0..ix0 + hi - lo]);
                    } else {
                        for (o, v) in row[lo..hi].iter_mut().enumerate() {
                            *v = src[ix0 + o * g.s];
                        }
                    }
                }
            }
        }
    };
    let cols = &mut cols[..g.ci * kk2 * t];
    if par {
        cols.par_chunks_mut(kk2 * t).enumerate().for_each(channel);
    } else {
        cols.chunks_mut(kk2 * t).enumerate().for_each(channel);
    }
}

/// One row of the unfolded matrix of a stride-1 "same" convolution: the input
/// plane shifted by `(ky − p, kx − p)`, which is one contiguous copy, then the
/// columns that wrapped around a row edge set to zero.
fn shifted_copy(
    g: &ConvGeom,
    plane: &[f32],
    r0: usize,
    rows: usize,
    ky: usize,
    kx: usize,
    dst: &mut [f32],
) {
    let (w, p) = (g.w as isize, g.p as isize);
    let t = dst.len() as isize;
    let start = r0 as isize * w + (ky as isize - p) * w + (kx as isize - p);
    let lo = (-start).clamp(0, t);
    let hi = (g.hw_in() as isize - start).clamp(lo, t);
    let (lo, hi) = (lo as usize, hi as usize);
    dst[..lo].fill(0.0);
    if hi > lo {
        dst[lo..hi].copy_from_slice(&plane[(start + lo as isize) as usize..][..hi - lo]);
    }
    dst[hi..].fill(0.0);
    let w = g.w;
    if kx < g.p {
        let e = g.p - kx;
        for r in 0..rows {
            dst[r * w..r * w + e].fill(0.0);
        }
    } else if kx > g.p {
        let e = kx - g.p;
        for r in 0..rows {
            dst[(r + 1) * w - e..(r + 1) * w].fill(0.0);
        }
    }
}

/// Adds `cols [ci·k·k, rows·wo]` back onto the input rows they came from.
fn col2im(g: &ConvGeom, cols: &[f32], r0: usize, rows: usize, img: &mut [f32]) {
    let t = rows * g.wo;
    let kk2 = g.k * g.k;
    img.par_chunks_mut(g.hw_in())
        .zip(cols[..g.ci * kk2 * t].par_chunks(kk2 * t))
        .for_each(|(plane, chunk)| {
            for ky in 0..g.k {
                for kx in 0..g.k {
                    let src = &chunk[(ky * g.k + kx) * t..][..t];
                    let (lo, hi) = g.inside_cols(kx);
                    for r in 0..rows {
                        let Some(iy) = g.input_row(r0 + r, ky) else {
                            continue;
                        };
                        let dst = &mut plane[iy * g.w..][..g.w];
                        let row = &src[r * g.wo..][..g.wo];
                        let ix0 = lo * g.s + kx - g.p;
                        for (o, v) in row[lo..hi].iter().enumerate() {
                            dst[ix0 + o * g.s] += v;
                        }
                    }
                }
            }
        });
}

/// Calls `f` with the unfolded band (output rows `r0..r0+rows` of image
/// `img`) as a `[ci·k·k, rows·wo]` matrix: its pointer and row stride. A
/// 1×1 stride-1 convolution reads the image itself; others im2col into this
/// thread's scratch buffer (`par`: im2col parallel over channels).
fn with_cols<R>(
    g: &ConvGeom,
    img: &[f32],
    (r0, rows): (usize, usize),
    par: bool,
    f: impl FnOnce(*const f32, usize) -> R,
) -> R {
    if g.pointwise() {
        return f(img[r0 * g.wo..].as_ptr(), g.hw_in());
    }
    let t = rows * g.wo;
    with_scratch(g.kk() * t, |cols| {
        im2col(g, img, r0, rows, cols, par);
        f(cols.as_ptr(), t)
    })
}

/// Forward: `x [n, ci, h, w]`, `w [co, ci, k, k]` → `y [n, co, ho, wo]`.
pub fn forward(g: &ConvGeom, x: &[f32], w: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), g.n * g.ci * g.hw_in(), "conv input size");
    assert_eq!(w.len(), g.co * g.kk(), "conv kernel size");
    let units = g.bands();
    let outer = outer_parallel(units.len());
    let par = inner(outer);
    output(g.n * g.co * g.hw_out(), |y| {
        let y = SendPtr(y);
        let band = |&(n, r0, rows): &(usize, usize, usize)| {
            let img = &x[n * g.ci * g.hw_in()..][..g.ci * g.hw_in()];
            let t = rows * g.wo;
            // SAFETY: rows r0..r0+rows of image n are written by this band only.
            let dst = unsafe { y.get().add(n * g.co * g.hw_out() + r0 * g.wo) };
            with_cols(g, img, (r0, rows), !outer, |cols, cols_rs| unsafe {
                matmul(
                    [g.co, t, g.kk()],
                    dst,
                    [g.hw_out(), 1],
                    false,
                    w.as_ptr(),
                    [g.kk(), 1],
                    cols,
                    [cols_rs, 1],
                    par,
                )
            });
        };
        if outer {
            units.par_iter().for_each(band);
        } else {
            units.iter().for_each(band);
        }
    })
}

/// Input gradient: `dy [n, co, ho, wo]`, `w [co, ci, k, k]` → `dx [n, ci, h, w]`.
pub fn backward_input(g: &ConvGeom, dy: &[f32], w: &[f32]) -> Vec<f32> {
    assert_eq!(
        dy.len(),
        g.n * g.co * g.hw_out(),
        "conv output-gradient size"
    );
    assert_eq!(w.len(), g.co * g.kk(), "conv kernel size");
    if g.s == 1 && g.p < g.k {
        // dX = dY ⋆ W' with W'[ci][co] = W[co][ci] flipped, padding k−1−p.
        let k2 = g.k * g.k;
        let mut flipped = vec![0.0; w.len()];
        flipped
            .par_chunks_mut(g.co * k2)
            .enumerate()
            .for_each(|(c, rows)| {
                for (o, dst) in rows.chunks_mut(k2).enumerate() {
                    let src = &w[(o * g.ci + c) * k2..][..k2];
                    for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
                        *d = *s;
                    }
                }
            });
        let t = ConvGeom {
            n: g.n,
            ci: g.co,
            h: g.ho,
            w: g.wo,
            co: g.ci,
            k: g.k,
            s: 1,
            p: g.k - 1 - g.p,
            ho: g.h,
            wo: g.w,
        };
        return forward(&t, dy, &flipped);
    }
    let mut dx = vec![0.0; g.n * g.ci * g.hw_in()];
    let par = inner(false);
    for (n, r0, rows) in g.bands() {
        let t = rows * g.wo;
        let img = &mut dx[n * g.ci * g.hw_in()..][..g.ci * g.hw_in()];
        with_scratch(g.kk() * t, |cols| {
            // cols = Wᵀ · dY[n][:, band]
            unsafe {
                matmul(
                    [g.kk(), t, g.co],
                    cols.as_mut_ptr(),
                    [t, 1],
                    false,
                    w.as_ptr(),
                    [1, g.kk()],
                    dy.as_ptr().add(n * g.co * g.hw_out() + r0 * g.wo),
                    [g.hw_out(), 1],
                    par,
                )
            }
            col2im(g, cols, r0, rows, img);
        });
    }
    dx
}

/// Weight gradient: `x [n, ci, h, w]`, `dy [n, co, ho, wo]` → `dw [co, ci, k, k]`.
pub fn backward_weight(g: &ConvGeom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), g.n * g.ci * g.hw_in(), "conv input size");
    assert_eq!(
        dy.len(),
        g.n * g.co * g.hw_out(),
        "conv output-gradient size"
    );
    let units = g.bands();
    let outer = outer_parallel(units.len());
    let par = inner(outer);
    let accumulate = |acc: &mut [f32], &(n, r0, rows): &(usize, usize, usize)| {
        let img = &x[n * g.ci * g.hw_in()..][..g.ci * g.hw_in()];
        let t = rows * g.wo;
        let lhs = unsafe { dy.as_ptr().add(n * g.co * g.hw_out() + r0 * g.wo) };
        // dW += dY_band · colsᵀ: the unfolded band read transposed.
        with_cols(g, img, (r0, rows), !outer, |cols, cols_rs| unsafe {
            matmul(
                [g.co, g.kk(), t],
                acc.as_mut_ptr(),
                [g.kk(), 1],
                true,
                lhs,
                [g.hw_out(), 1],
                cols,
                [1, cols_rs],
                par,
            )
        });
    };
    let len = g.co * g.kk();
    if !outer {
        let mut acc = vec![0.0; len];
        units.iter().for_each(|u| accumulate(&mut acc, u));
        return acc;
    }
    // Fixed chunks summed in order: the same bits on every run.
    let threads = rayon::current_num_threads();
    let partials: Vec<Vec<f32>> = units
        .par_chunks(units.len().div_ceil(threads))
        .map(|chunk| {
            let mut acc = vec![0.0; len];
            chunk.iter().for_each(|u| accumulate(&mut acc, u));
            acc
        })
        .collect();
    let mut parts = partials.into_iter();
    let mut acc = parts.next().unwrap_or_else(|| vec![0.0; len]);
    for part in parts {
        acc.iter_mut().zip(&part).for_each(|(a, b)| *a += b);
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every multiply of the direct definition of the convolution, as
    /// `(output index, input index, weight index)`; padded taps are skipped.
    fn taps(g: &ConvGeom) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        let outputs = (0..g.n).flat_map(move |n| {
            (0..g.co).flat_map(move |o| {
                (0..g.ho).flat_map(move |oy| (0..g.wo).map(move |ox| (n, o, oy, ox)))
            })
        });
        outputs.flat_map(move |(n, o, oy, ox)| {
            let yi = ((n * g.co + o) * g.ho + oy) * g.wo + ox;
            (0..g.ci).flat_map(move |c| {
                (0..g.k * g.k).filter_map(move |t| {
                    let (ky, kx) = (t / g.k, t % g.k);
                    let iy = (oy * g.s + ky).checked_sub(g.p).filter(|&iy| iy < g.h)?;
                    let ix = (ox * g.s + kx).checked_sub(g.p).filter(|&ix| ix < g.w)?;
                    let xi = ((n * g.ci + c) * g.h + iy) * g.w + ix;
                    Some((yi, xi, (o * g.ci + c) * g.k * g.k + t))
                })
            })
        })
    }

    /// Direct definition of the convolution, for checking the fast paths.
    fn reference(g: &ConvGeom, x: &[f32], w: &[f32]) -> Vec<f64> {
        let mut y = vec![0.0f64; g.n * g.co * g.ho * g.wo];
        for (yi, xi, wi) in taps(g) {
            y[yi] += x[xi] as f64 * w[wi] as f64;
        }
        y
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                let v = (i as u32).wrapping_mul(2654435761).wrapping_add(seed * 97);
                ((v >> 8) % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    fn close(a: &[f32], b: &[f64], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: length");
        let scale = b.iter().fold(1e-6f64, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                ((*x as f64) - y).abs() <= 1e-5 * scale,
                "{what}[{i}]: {x} vs {y} (scale {scale})"
            );
        }
    }

    /// Gradients through the reference: `dx = ∂⟨y, dy⟩/∂x`, `dw` likewise.
    fn reference_grads(g: &ConvGeom, x: &[f32], w: &[f32], dy: &[f32]) -> (Vec<f64>, Vec<f64>) {
        let mut dx = vec![0.0f64; x.len()];
        let mut dw = vec![0.0f64; w.len()];
        for (yi, xi, wi) in taps(g) {
            dx[xi] += dy[yi] as f64 * w[wi] as f64;
            dw[wi] += dy[yi] as f64 * x[xi] as f64;
        }
        (dx, dw)
    }

    #[test]
    fn forward_and_gradients_match_the_definition_on_awkward_shapes() {
        // (n, ci, h, w, co, k, stride, padding)
        let cases = [
            (1, 3, 9, 11, 5, 3, 1, 1),
            (3, 5, 7, 6, 7, 3, 2, 1),
            (2, 6, 13, 9, 4, 1, 1, 0),
            (3, 5, 9, 7, 6, 1, 2, 0),
            (1, 3, 15, 13, 8, 7, 2, 3),
            (2, 4, 5, 5, 3, 3, 1, 0),
            (1, 2, 3, 4, 3, 5, 1, 2),
            (2, 48, 5, 7, 24, 3, 1, 1),
            // One row per band: bands that start above and end below the image.
            (1, 32, 3, 1000, 2, 3, 1, 1),
        ];
        for (i, &(n, ci, h, w, co, k, s, p)) in cases.iter().enumerate() {
            let g = ConvGeom::new([n, ci, h, w], [co, ci, k, k], s, p).unwrap();
            let x = values(n * ci * h * w, 1 + i as u32);
            let wt = values(co * ci * k * k, 50 + i as u32);
            let dy = values(n * co * g.ho * g.wo, 100 + i as u32);
            close(&forward(&g, &x, &wt), &reference(&g, &x, &wt), "y");
            let (dx, dw) = reference_grads(&g, &x, &wt, &dy);
            close(&backward_input(&g, &dy, &wt), &dx, "dx");
            close(&backward_weight(&g, &x, &dy), &dw, "dw");
        }
    }

    #[test]
    fn many_bands_in_parallel_equal_one_band() {
        // Wide enough that BAND_FLOATS cuts it into several bands per image.
        let g = ConvGeom::new([2, 16, 70, 300], [8, 16, 3, 3], 1, 1).unwrap();
        assert!(g.bands().len() > 4, "{} bands", g.bands().len());
        let x = values(2 * 16 * 70 * 300, 3);
        let wt = values(8 * 16 * 9, 4);
        let dy = values(2 * 8 * 70 * 300, 5);
        let whole = |f: &(dyn Fn() -> Vec<f32> + Sync)| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .unwrap();
            pool.install(f)
        };
        let y1 = whole(&|| forward(&g, &x, &wt));
        assert_eq!(forward(&g, &x, &wt), y1);
        let dw1 = whole(&|| backward_weight(&g, &x, &dy));
        let dw = backward_weight(&g, &x, &dy);
        let scale = dw1.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (a, b) in dw.iter().zip(&dw1) {
            assert!((a - b).abs() <= 1e-5 * scale, "{a} vs {b}");
        }
        assert_eq!(backward_weight(&g, &x, &dy), dw, "deterministic");
    }
}
