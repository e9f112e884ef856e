//! What every convolution kernel here shares (the dispatcher in `mod.rs`,
//! the direct kernel, im2col + `gemm`, the dot-product weight gradient): the
//! shapes of a convolution, the per-thread scratch buffer, uninitialized
//! outputs and a pointer that may cross threads.

use std::cell::RefCell;

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
    /// `None` when the kernel is not square, the channels differ (groups),
    /// the padded input is smaller than the kernel, or a size is 0 (an
    /// empty tensor: Burn's convolution handles those).
    pub fn new(x: [usize; 4], w: [usize; 4], stride: usize, padding: usize) -> Option<Self> {
        let [n, ci, h, wd] = x;
        let [co, wci, kh, kw] = w;
        if [n, ci, h, wd, co, kh, stride].contains(&0)
            || wci != ci
            || kh != kw
            || h + 2 * padding < kh
            || wd + 2 * padding < kw
        {
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
    pub(super) fn kk(&self) -> usize {
        self.ci * self.k * self.k
    }

    pub(super) fn hw_in(&self) -> usize {
        self.h * self.w
    }

    pub(super) fn hw_out(&self) -> usize {
        self.ho * self.wo
    }

    /// A 1×1 stride-1 convolution without padding is a plain matrix product.
    pub(super) fn pointwise(&self) -> bool {
        self.k == 1 && self.s == 1 && self.p == 0
    }

    /// Output columns `lo..hi` whose input column for kernel column `kx` lies
    /// inside the image (the others read zero padding).
    pub(super) fn inside_cols(&self, kx: usize) -> (usize, usize) {
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
    pub(super) fn input_row(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy * self.s + ky)
            .checked_sub(self.p)
            .filter(|&iy| iy < self.h)
    }

    /// The work units: (image, first output row, rows), of even heights.
    ///
    /// A band unfolds at least as many values as the kernel has: each band's
    /// `gemm` streams the whole kernel (or, for the weight gradient, its
    /// accumulator), so on deep layers (512×512×3×3 at 8×8) bands of
    /// `BAND_FLOATS` cost more in that stream than in multiply-adds. With
    /// this, such a layer is one band per image: its three products went from
    /// 13 / 19 / 19 ms to 9 / 10 / 11 ms per step in an instrumented build
    /// (forward, input and weight gradients of the three 512-channel layers,
    /// 2×256²).
    pub(super) fn bands(&self) -> Vec<(usize, usize, usize)> {
        let floats = self.band_floats();
        let rows = (floats / (self.kk() * self.wo).max(1)).clamp(1, self.ho);
        // The same number of bands, of heights that differ by at most one
        // (8 rows in bands of 7 gave a band of 1).
        let rows = self.ho.div_ceil(self.ho.div_ceil(rows));
        (0..self.n)
            .flat_map(|n| {
                (0..self.ho)
                    .step_by(rows)
                    .map(move |r0| (n, r0, rows.min(self.ho - r0)))
            })
            .collect()
    }

    /// Unfolded values per band: [`BAND_FLOATS`], or the kernel's size
    /// when that is larger (see [`bands`](Self::bands)).
    fn band_floats(&self) -> usize {
        BAND_FLOATS.max(self.co * self.kk())
    }

    /// Whether the whole batch unfolds into one band: several images, each
    /// small enough that all of them together fit one band (deep layers'
    /// maps of 8×8 and less). One `gemm` over all of them then streams the
    /// kernel once instead of once per image (im2col + `gemm` paths only;
    /// 1×1 stride-1 convolutions read the images in place and never do).
    pub(super) fn whole_batch(&self) -> bool {
        self.n > 1 && !self.pointwise() && self.kk() * self.n * self.hw_out() <= self.band_floats()
    }

    /// Multiply-adds of the forward pass.
    pub fn macs(&self) -> usize {
        self.n * self.co * self.hw_out() * self.kk()
    }
}

/// A pointer that may cross threads: every band writes a disjoint part.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub(crate) *mut f32);
// SAFETY: the pointer is only dereferenced (by `gemm`) for the rows of one
// band, and no two bands share a row, so threads never touch the same value.
unsafe impl Send for SendPtr {}
// SAFETY: as for `Send`: shared copies write disjoint rows.
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The pointer (a method, so closures capture the `Sync` wrapper).
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's scratch buffer of at least `len` floats
/// (contents unspecified; `f` overwrites what it reads).
pub(super) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
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

/// A vector of `len` floats written by `fill`, without zeroing it first
/// (the outputs are large and every value is overwritten).
///
/// # Safety
///
/// `fill` must write all `len` values through the pointer it is given
/// before returning; the vector is read as initialized afterwards.
pub(super) unsafe fn output(len: usize, fill: impl FnOnce(*mut f32)) -> Vec<f32> {
    let mut v: Vec<f32> = Vec::with_capacity(len);
    fill(v.spare_capacity_mut().as_mut_ptr().cast());
    // SAFETY: the caller guarantees that `fill` wrote all `len` values, and
    // the capacity is `len`.
    unsafe { v.set_len(len) };
    v
}

/// `sum` of all `units`: in one call, or (`outer`) of one fixed share of
/// them per thread, the shares' results added in order (the same bits on
/// every run).
pub(super) fn sum_by_shares<U: Sync>(
    units: &[U],
    outer: bool,
    len: usize,
    sum: impl Fn(&[U]) -> Vec<f32> + Sync,
) -> Vec<f32> {
    if !outer {
        return sum(units);
    }
    let threads = rayon::current_num_threads();
    let partials: Vec<Vec<f32>> = units
        .par_chunks(units.len().div_ceil(threads))
        .map(&sum)
        .collect();
    sum_in_order(partials, len)
}

/// The sum of per-thread partial results, added in their order (the same
/// bits on every run), or `len` zeros when there are none.
pub(super) fn sum_in_order(partials: Vec<Vec<f32>>, len: usize) -> Vec<f32> {
    let mut parts = partials.into_iter();
    let mut acc = parts.next().unwrap_or_else(|| vec![0.0; len]);
    for part in parts {
        acc.iter_mut().zip(&part).for_each(|(a, b)| *a += b);
    }
    acc
}
