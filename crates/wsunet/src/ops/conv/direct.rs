//! Convolution without im2col: the input is read in place, each kernel tap
//! as a shifted run of one zero-padded plane.
//!
//! With the input padded once (`p` zeros around every plane, planes of
//! `(h+2p) × (w+2p)`), output pixel `(y, x)` taken at flat index
//! `q = y·(w+2p) + x` reads input `q + ky·(w+2p) + kx` for tap `(ky, kx)`:
//! for a run of consecutive `q`, every tap is one contiguous run of the
//! padded plane. So a block of `MR` output channels × `TILE` consecutive
//! `q` is a small matrix product, `Σ_c Σ_tap W[o][c][tap] · X_c[q + off(tap)]`,
//! with the image itself as the packed right-hand side: the same
//! register-blocked microkernel as a `gemm` (`MR × TILE` accumulators, a
//! weight broadcast times a vector of pixels per step), without the
//! unfolded copy that im2col writes and `gemm` then packs again. The `q`
//! whose `x` falls in the padding columns (`x ≥ wo`, `k − 1` per row) are
//! computed and dropped. This is the "shifted-pointer" form of implicit GEMM
//! (as in Zhang et al., *High Performance Zero-Memory Overhead Direct
//! Convolutions*, ICML 2018, which also computes from the image in place).
//!
//! Strided convolutions split each padded plane into `s × s` phase planes
//! (rows and columns `≡ a, b (mod s)`) while padding it; output `(y, x)` then
//! reads tap `(ky, kx)` at `(y + ky/s, x + kx/s)` of phase `(ky mod s, kx mod s)`,
//! again one run per tap, with rows `⌈(w+2p)/s⌉` wide ([`Layout`]).
//!
//! The weights are read where they lie, a row per output channel, so the
//! forward (`W[o][c]`) and the input gradient's transposed, flipped kernel
//! (`W[c][o]` reversed) are the same loop with other strides.
//!
//! One build per instruction set (AVX-512: 8 × 48, AVX2 + FMA: 4 × 24),
//! chosen at run time; other CPUs keep im2col + `gemm` ([`available`]).

use rayon::prelude::*;

use super::dot_gemm;
use super::geom::{ConvGeom, SendPtr, output, with_scratch};

/// Input values (all channels) of one unit's window of pixels that should
/// stay in L2 while its output channels are walked.
const WINDOW_FLOATS: usize = 1 << 16;

/// How the kernel's values are laid out: `W(o, c, tap)` lies at
/// `o·out_stride + c·in_stride + tap` (`flipped`: `… + (k²−1−tap)`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Weights<'a> {
    /// The values.
    pub data: &'a [f32],
    /// From one output channel's values to the next.
    pub out_stride: usize,
    /// From one input channel's values to the next.
    pub in_stride: usize,
    /// Taps in reverse order (the input gradient's kernel).
    pub flipped: bool,
}

/// The input of a convolution: one tensor, or two whose channels are
/// concatenated (`a`'s first), read where they lie.
#[derive(Clone, Copy, Debug)]
pub(super) struct Input<'a> {
    a: &'a [f32],
    b: &'a [f32],
    /// Channels of `a` when there are two.
    split: Option<usize>,
}

impl<'a> Input<'a> {
    /// One tensor `[n, ci, h, w]`.
    pub(super) fn one(x: &'a [f32]) -> Self {
        Input {
            a: x,
            b: &[],
            split: None,
        }
    }

    /// The channels of `a [n, ca, h, w]`, then those of `b`.
    pub(super) fn cat(a: &'a [f32], ca: usize, b: &'a [f32]) -> Self {
        Input {
            a,
            b,
            split: Some(ca),
        }
    }

    /// Plane `i = image · ci + channel` (`h·w` values).
    pub(super) fn plane(&self, g: &ConvGeom, i: usize) -> &'a [f32] {
        let hw = g.h * g.w;
        let (n, c) = (i / g.ci, i % g.ci);
        match self.split {
            None => &self.a[i * hw..][..hw],
            Some(ca) if c < ca => &self.a[(n * ca + c) * hw..][..hw],
            Some(ca) => &self.b[(n * (g.ci - ca) + c - ca) * hw..][..hw],
        }
    }

    fn len(&self) -> usize {
        self.a.len() + self.b.len()
    }

    /// The channels as one tensor `[n, ci, h, w]` (for kernels that need
    /// it written out).
    pub(super) fn concatenated(&self, g: &ConvGeom) -> Vec<f32> {
        (0..g.n * g.ci)
            .flat_map(|i| self.plane(g, i))
            .copied()
            .collect()
    }
}

/// Whether this CPU runs [`conv`]: AVX-512F, or AVX2 with FMA.
pub(super) fn available() -> bool {
    dot_gemm::available()
}

/// Whether [`conv`] computes `g` no slower than im2col + `gemm`: a kernel
/// larger than 1×1 or a stride (a 1×1 stride-1 convolution needs no
/// unfolding), and rows of at least 16 outputs. On narrower maps the dropped
/// padding columns are a large share (8×8: 2 of every 10).
pub(super) fn suits(g: &ConvGeom) -> bool {
    (g.s > 1 || g.k > 1) && g.wo >= 16 && available()
}

/// The blocking of one instruction set's microkernel.
#[derive(Clone, Copy)]
struct Shape {
    /// Output channels per block.
    mr: usize,
    /// Consecutive flat pixels per block.
    tile: usize,
}

/// The arguments of one microkernel call.
struct Block<'a> {
    /// Input channels.
    ci: usize,
    /// Floats of one input channel as laid out (all its phase planes).
    plane: usize,
    /// Offset of each tap in a channel (`Layout::tap`; `ky·(w+2p) + kx` at
    /// stride 1).
    taps: &'a [usize],
    /// Offset of each tap in a weight row (reversed when flipped).
    wtaps: &'a [usize],
    /// Floats from one input channel's weights to the next.
    in_stride: usize,
    /// Offsets in a channel of the cache lines a tile reads (see
    /// [`prefetch_offsets`]).
    prefetch: &'a [usize],
}

/// How many channels ahead a tile prefetches the lines it will read: each
/// channel's rows lie a whole plane apart, a jump the hardware prefetcher
/// does not follow. Measured on nine layers of `benches/kernels.rs`: their
/// summed forward 1–18 % faster in three interleaved rounds; 1 and 4 ahead
/// about the same as 2.
const PREFETCH_AHEAD: usize = 2;

/// Offsets, 16 floats (one 64-byte line) apart, that touch every line a tile
/// of `tile` pixels reads at tap offsets `taps`: each tap's run, merged with
/// the runs it overlaps.
fn prefetch_offsets(taps: &[usize], tile: usize) -> Vec<usize> {
    let mut runs: Vec<(usize, usize)> = taps.iter().map(|&t| (t, t + tile)).collect();
    runs.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (a, b) in runs {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
        .into_iter()
        .flat_map(|(a, b)| (a..b).step_by(16).chain(std::iter::once(b - 1)))
        .collect()
}

/// `y [n, co, ho, wo]` for `x [n, ci, h, w]` and a kernel of `g.k²` taps
/// with stride `g.s` and `g.p` zeros of padding, `g.co` output channels laid
/// out as `w` says.
///
/// # Panics
///
/// If the CPU lacks the instructions ([`available`]), or `x` or `w` are
/// smaller than `g` says.
pub(super) fn conv(g: &ConvGeom, x: Input, w: Weights) -> Vec<f32> {
    conv_with(g, x, w, true)
}

/// [`conv`], with the AVX-512 kernel only if `wide` (tests force the AVX2
/// one on CPUs that have both).
fn conv_with(g: &ConvGeom, x: Input, w: Weights, wide: bool) -> Vec<f32> {
    assert!(
        available(),
        "direct convolution needs AVX-512F or AVX2 with FMA"
    );
    assert_eq!(x.len(), g.n * g.ci * g.h * g.w, "conv input size");
    if let Some(ca) = x.split {
        assert_eq!(x.a.len(), g.n * ca * g.h * g.w, "conv first input size");
    }
    let k2 = g.k * g.k;
    assert!(
        w.data.len() >= (g.co - 1) * w.out_stride + (g.ci - 1) * w.in_stride + k2,
        "conv kernel size"
    );
    #[cfg(target_arch = "x86_64")]
    {
        if wide && std::is_x86_feature_detected!("avx512f") {
            return run(g, x, w, avx512::SHAPE, |b, x, rows, out| {
                // SAFETY: AVX-512F and FMA are present (checked above);
                // `run` passes pointers valid for the reads `tile` makes.
                unsafe { avx512::tile(b, x, rows, out) }
            });
        }
        run(g, x, w, avx2::SHAPE, |b, x, rows, out| {
            // SAFETY: as above, with AVX2 and FMA (`available`).
            unsafe { avx2::tile(b, x, rows, out) }
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("available() is false off x86-64")
}

/// Where the input lies after padding: per channel, the padded plane split
/// into `ps²` phase planes (`ps = min(s, k)`: phase `(a, b)` holds padded
/// rows `a, a+s, …` and columns `b, b+s, …`), so that for any stride a tap
/// reads one contiguous run. Stride 1 has one phase: the padded plane.
#[derive(Clone, Copy, Debug)]
pub(super) struct Layout {
    /// Phases per axis.
    ps: usize,
    /// Rows and columns of a phase plane.
    hq: usize,
    pub(super) wq: usize,
}

impl Layout {
    pub(super) fn new(g: &ConvGeom) -> Self {
        let (hp, wp) = (g.h + 2 * g.p, g.w + 2 * g.p);
        Layout {
            ps: g.s.min(g.k),
            hq: hp.div_ceil(g.s),
            wq: wp.div_ceil(g.s),
        }
    }

    /// Floats of one phase plane.
    fn phase(&self) -> usize {
        self.hq * self.wq
    }

    /// Floats of one channel (all its phases).
    pub(super) fn plane(&self) -> usize {
        self.ps * self.ps * self.phase()
    }

    /// Offset of tap `(ky, kx)` in a channel: output `q = oy·wq + ox` reads
    /// padded `(oy·s + ky, ox·s + kx)` at `q + tap`.
    pub(super) fn tap(&self, s: usize, ky: usize, kx: usize) -> usize {
        ((ky % s) * self.ps + kx % s) * self.phase() + (ky / s) * self.wq + kx / s
    }
}

/// Writes the channels of `x` in `layout` into `buf`, one after another, and
/// zeros after them (the last tiles of the last channel read there). Each
/// value is written once: the image where it lies, zeros only in the
/// padding rows and columns around it.
pub(super) fn pad_into(g: &ConvGeom, x: Input, l: Layout, buf: &mut [f32]) {
    let phases = l.ps * l.ps;
    let (body, slack) = buf.split_at_mut(g.n * g.ci * l.plane());
    slack.fill(0.0);
    // One unit per phase plane: the stem's three channels are twelve.
    body.par_chunks_mut(l.phase())
        .enumerate()
        .for_each(|(unit, phase)| {
            let src = x.plane(g, unit / phases);
            let (a, b) = (unit % phases / l.ps, unit % l.ps);
            // Phase columns j whose padded column j·s + b is in the image.
            let j0 = g.p.saturating_sub(b).div_ceil(g.s).min(l.wq);
            let j1 = (g.p + g.w).saturating_sub(b).div_ceil(g.s).clamp(j0, l.wq);
            for (i, out) in phase.chunks_exact_mut(l.wq).enumerate() {
                let row = (i * g.s + a).checked_sub(g.p).filter(|&r| r < g.h);
                let Some(row) = row.filter(|_| j1 > j0) else {
                    out.fill(0.0); // a padding row (or an image narrower than the stride)
                    continue;
                };
                out[..j0].fill(0.0);
                out[j1..].fill(0.0);
                let src = &src[row * g.w + j0 * g.s + b - g.p..];
                let out = &mut out[j0..j1];
                let Some((last, out)) = out.split_last_mut() else {
                    continue;
                };
                // Every s-th value; whole chunks of s vectorize (the stride
                // a constant of the loop), the last value alone.
                *last = src[out.len() * g.s];
                match g.s {
                    1 => out.copy_from_slice(&src[..out.len()]),
                    2 => strided::<2>(out, src),
                    3 => strided::<3>(out, src),
                    s => {
                        for (v, x) in out.iter_mut().zip(src.chunks_exact(s)) {
                            *v = x[0];
                        }
                    }
                }
            }
        });
}

/// `out[j] = src[j·S]` for every `j` of `out`.
fn strided<const S: usize>(out: &mut [f32], src: &[f32]) {
    for (v, x) in out.iter_mut().zip(src.chunks_exact(S)) {
        *v = x[0];
    }
}

/// The driver: lays out the input, cuts the work into units of (image,
/// window of tiles, group of output-channel blocks), and writes each block's
/// valid pixels into the output.
fn run(
    g: &ConvGeom,
    x: Input,
    w: Weights,
    shape: Shape,
    kernel: impl Fn(&Block, *const f32, &[*const f32], &mut [f32]) + Sync,
) -> Vec<f32> {
    let l = Layout::new(g);
    let plane = l.plane();
    let tile = shape.tile;
    // A tile reads at most `tile` values past the largest tap offset (< one
    // channel), from a start below `ho·wq + tile` (< one channel more). The
    // buffer is this thread's scratch, shared with im2col: a fresh one per
    // call raised a train step's peak memory by 26 MiB (batch 1, 128²).
    let len = g.n * g.ci * plane + plane + 2 * tile;
    with_scratch(len, |xp| {
        pad_into(g, x, l, xp);
        compute(g, xp, w, shape, l, &kernel)
    })
}

/// The units of [`run`] over the laid-out input `xp`.
fn compute(
    g: &ConvGeom,
    xp: &[f32],
    w: Weights,
    shape: Shape,
    l: Layout,
    kernel: &(impl Fn(&Block, *const f32, &[*const f32], &mut [f32]) + Sync),
) -> Vec<f32> {
    let Shape { mr, tile } = shape;
    let plane = l.plane();
    let k2 = g.k * g.k;
    let taps: Vec<usize> = (0..k2).map(|t| l.tap(g.s, t / g.k, t % g.k)).collect();
    let wtaps: Vec<usize> = (0..k2)
        .map(|t| if w.flipped { k2 - 1 - t } else { t })
        .collect();
    let prefetch = prefetch_offsets(&taps, tile);
    let block = Block {
        ci: g.ci,
        plane,
        taps: &taps,
        wtaps: &wtaps,
        in_stride: w.in_stride,
        prefetch: &prefetch,
    };

    // Windows of tiles whose input (all channels and phases) fits
    // WINDOW_FLOATS.
    let tiles = (g.ho * l.wq).div_ceil(tile);
    let reach = ((g.k - 1) / g.s + 1) * l.wq;
    let per_window = (WINDOW_FLOATS / (g.ci * l.ps * l.ps)).saturating_sub(reach) / tile;
    let per_window = per_window.clamp(1, tiles);
    let windows = tiles.div_ceil(per_window);
    // Output-channel blocks, in groups so that there are enough units to
    // keep every thread busy (deep layers have few windows).
    let blocks = g.co.div_ceil(mr);
    let threads = rayon::current_num_threads();
    let groups = (4 * threads).div_ceil(g.n * windows).clamp(1, blocks);
    let per_group = blocks.div_ceil(groups);
    let groups = blocks.div_ceil(per_group);

    let hw_out = g.ho * g.wo;
    let fill = |y: *mut f32| {
        let out = SendPtr(y);
        (0..g.n * windows * groups).into_par_iter().for_each(|u| {
            let (n, rest) = (u / (windows * groups), u % (windows * groups));
            let (win, grp) = (rest / groups, rest % groups);
            let mut acc = vec![0.0f32; mr * tile];
            let img = &xp[n * g.ci * plane..];
            for b in grp * per_group..((grp + 1) * per_group).min(blocks) {
                let o0 = b * mr;
                // Rows past the last channel repeat it (a valid read); their
                // results are dropped.
                let rows: Vec<*const f32> = (0..mr)
                    .map(|i| w.data[(o0 + i).min(g.co - 1) * w.out_stride..].as_ptr())
                    .collect();
                for t in win * per_window..((win + 1) * per_window).min(tiles) {
                    let q0 = t * tile;
                    kernel(&block, img[q0..].as_ptr(), &rows, &mut acc);
                    for (i, vals) in acc.chunks_exact(tile).enumerate().take(g.co - o0) {
                        let base = (n * g.co + o0 + i) * hw_out;
                        store_valid(g, l.wq, q0, vals, |at, run| {
                            // SAFETY: `at..at + run.len()` are output pixels of
                            // channel o0 + i of image n (inside the `n·co·ho·wo`
                            // values reserved), and only this unit's (image,
                            // channel block, window) writes them.
                            unsafe {
                                std::ptr::copy_nonoverlapping(
                                    run.as_ptr(),
                                    out.get().add(base + at),
                                    run.len(),
                                )
                            }
                        });
                    }
                }
            }
        });
    };
    // SAFETY: the units cover every (image, channel, tile), the tiles cover
    // every flat index q < ho·wq, and `store_valid` writes each valid pixel
    // of those: all `n·co·ho·wo` values are written.
    unsafe { output(g.n * g.co * hw_out, fill) }
}

/// Hands `put(first output pixel, values)` the runs of `vals` (flat indices
/// `q0..q0+len` of rows `wp` wide) that are output pixels: `x < wo` and
/// `y < ho`.
fn store_valid(
    g: &ConvGeom,
    wp: usize,
    q0: usize,
    vals: &[f32],
    mut put: impl FnMut(usize, &[f32]),
) {
    let mut q = q0;
    let end = q0 + vals.len();
    while q < end {
        let (y, x) = (q / wp, q % wp);
        if y >= g.ho {
            break;
        }
        let row_end = (q - x + wp).min(end);
        if x < g.wo {
            let len = (g.wo - x).min(row_end - q);
            put(y * g.wo + x, &vals[q - q0..][..len]);
        }
        q = row_end;
    }
}

/// The microkernel for one instruction set: `MR` output channels ×
/// `NV` vectors of `$lanes` pixels (`MR·NV` accumulators, `NV` pixel vectors
/// and a broadcast weight must fit the register file).
#[cfg(target_arch = "x86_64")]
macro_rules! kernel {
    ($name:ident, $feature:literal, $v:ty, $lanes:literal, $mr:literal, $nv:literal,
     zero: $zero:ident, load: $load:ident, set1: $set1:ident, fma: $fma:ident, store: $store:ident) => {
        mod $name {
            use super::{Block, PREFETCH_AHEAD, Shape};
            use std::arch::x86_64::*;

            const MR: usize = $mr;
            const NV: usize = $nv;
            const L: usize = $lanes;
            pub(super) const SHAPE: Shape = Shape {
                mr: MR,
                tile: NV * L,
            };

            /// `out[i][j] = Σ_c Σ_t W(i, c, t) · x[c·plane + taps[t] + j]`
            /// for `MR` rows and `NV·L` pixels.
            ///
            /// # Safety
            ///
            /// The CPU has the instructions of `$feature`; `x` is valid for
            /// reads of `(ci−1)·plane + taps[t] + NV·L` values for every
            /// tap, each `rows[i]` for `(ci−1)·in_stride + wtaps[t] + 1`;
            /// `rows` has `MR` pointers and `out` `MR·NV·L` values.
            #[target_feature(enable = $feature)]
            pub(super) unsafe fn tile(
                b: &Block,
                x: *const f32,
                rows: &[*const f32],
                out: &mut [f32],
            ) {
                let rows: [*const f32; MR] = std::array::from_fn(|i| rows[i]);
                let mut acc: [[$v; NV]; MR] = [[$zero(); NV]; MR];
                for c in 0..b.ci {
                    // SAFETY: c < ci, so channel c's plane starts inside the
                    // reads the caller made valid.
                    let xc = unsafe { x.add(c * b.plane) };
                    if c + PREFETCH_AHEAD < b.ci {
                        let ahead = xc.wrapping_add(PREFETCH_AHEAD * b.plane);
                        for &off in b.prefetch {
                            // A hint: reads nothing, faults on no address.
                            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(off).cast());
                        }
                    }
                    let wc = c * b.in_stride;
                    for (&off, &woff) in b.taps.iter().zip(b.wtaps) {
                        let px: [$v; NV] = std::array::from_fn(|j| {
                            // SAFETY: `off + NV·L` values from channel c's
                            // plane are readable (the caller's contract);
                            // unaligned load.
                            unsafe { $load(xc.add(off + j * L)) }
                        });
                        for i in 0..MR {
                            // SAFETY: `wc + woff` ≤ (ci−1)·in_stride + wtaps[t],
                            // readable from every row (the caller's contract).
                            let a = unsafe { $set1(*rows[i].add(wc + woff)) };
                            for j in 0..NV {
                                acc[i][j] = $fma(a, px[j], acc[i][j]);
                            }
                        }
                    }
                }
                for i in 0..MR {
                    for j in 0..NV {
                        // SAFETY: `out` holds MR·NV·L values; unaligned store.
                        unsafe { $store(out.as_mut_ptr().add((i * NV + j) * L), acc[i][j]) };
                    }
                }
            }
        }
    };
}

// 24 accumulators, 3 pixel vectors and a broadcast of the 32 registers.
#[cfg(target_arch = "x86_64")]
kernel!(avx512, "avx512f,fma", __m512, 16, 8, 3,
    zero: _mm512_setzero_ps, load: _mm512_loadu_ps, set1: _mm512_set1_ps,
    fma: _mm512_fmadd_ps, store: _mm512_storeu_ps);
// 12 accumulators, 3 pixel vectors and a broadcast of the 16 registers.
#[cfg(target_arch = "x86_64")]
kernel!(avx2, "avx2,fma", __m256, 8, 4, 3,
    zero: _mm256_setzero_ps, load: _mm256_loadu_ps, set1: _mm256_set1_ps,
    fma: _mm256_fmadd_ps, store: _mm256_storeu_ps);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_values as values;

    /// The definition: `y[n][o][oy][ox] = Σ W(o, c, ky, kx) · x[n][c][oy·s+ky−p][ox·s+kx−p]`.
    fn reference(g: &ConvGeom, x: &[f32], w: &[f32], flipped: bool) -> Vec<f64> {
        let mut y = vec![0.0f64; g.n * g.co * g.ho * g.wo];
        let k2 = g.k * g.k;
        for n in 0..g.n {
            for o in 0..g.co {
                for oy in 0..g.ho {
                    for ox in 0..g.wo {
                        let mut s = 0.0f64;
                        for c in 0..g.ci {
                            for t in 0..k2 {
                                let iy = (oy * g.s + t / g.k) as isize - g.p as isize;
                                let ix = (ox * g.s + t % g.k) as isize - g.p as isize;
                                if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                    continue;
                                }
                                let wv = if flipped {
                                    w[(c * g.co + o) * k2 + k2 - 1 - t]
                                } else {
                                    w[(o * g.ci + c) * k2 + t]
                                };
                                s += wv as f64
                                    * x[((n * g.ci + c) * g.h + iy as usize) * g.w + ix as usize]
                                        as f64;
                            }
                        }
                        y[((n * g.co + o) * g.ho + oy) * g.wo + ox] = s;
                    }
                }
            }
        }
        y
    }

    /// Both kernels against the definition: output channels past whole blocks,
    /// rows past whole tiles, windows and channel groups, padding other than
    /// "same", 5×5 and 7×7, strides 2 and 3 (odd and even sizes, 1×1
    /// included), and the input gradient's flipped, transposed layout.
    #[test]
    fn both_kernels_equal_the_definition() {
        if crate::ops::skip_without_simd(available(), "direct convolution") {
            // conv.rs keeps im2col + gemm on such CPUs.
            return;
        }
        for &(n, ci, h, w, co, k, s, p) in &[
            (1, 1, 16, 16, 1, 3, 1, 1),
            (2, 3, 17, 19, 13, 3, 1, 1),
            (1, 5, 20, 33, 9, 5, 1, 2),
            (1, 4, 18, 18, 8, 3, 1, 0),
            (2, 40, 23, 29, 17, 3, 1, 2),
            (1, 600, 16, 16, 3, 3, 1, 1),
            (2, 3, 40, 37, 10, 7, 2, 3),
            (1, 6, 35, 34, 9, 3, 2, 1),
            (1, 7, 34, 33, 5, 1, 2, 0),
            (1, 2, 50, 52, 3, 4, 3, 1),
            (2, 300, 32, 32, 12, 3, 2, 1),
        ] {
            let g = ConvGeom::new([n, ci, h, w], [co, ci, k, k], s, p).unwrap();
            let x = values(n * ci * h * w, 1);
            let wv = values(co * ci * k * k, 2);
            for flipped in [false, true] {
                let weights = if flipped {
                    Weights {
                        data: &wv,
                        out_stride: k * k,
                        in_stride: co * k * k,
                        flipped,
                    }
                } else {
                    Weights {
                        data: &wv,
                        out_stride: ci * k * k,
                        in_stride: k * k,
                        flipped,
                    }
                };
                let want = reference(&g, &x, &wv, flipped);
                for wide in [true, false] {
                    let got = conv_with(&g, Input::one(&x), weights, wide);
                    assert_eq!(got.len(), want.len());
                    for (i, (&a, &b)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (a as f64 - b).abs() <= 1e-4 * (1.0 + b.abs()),
                            "{g:?} flipped {flipped} wide {wide}: y[{i}] = {a}, want {b}"
                        );
                    }
                }
            }
        }
    }

    /// Whatever the alignment of the plane, the prefetched offsets touch
    /// every 64-byte line that a tile's taps read (stride 1 and a strided
    /// layout).
    #[test]
    fn prefetch_offsets_touch_every_line_a_tile_reads() {
        for (k, s, hw) in [(3, 1, 20), (7, 2, 40), (1, 2, 9)] {
            let g = ConvGeom::new([1, 1, hw, hw], [1, 1, k, k], s, k / 2).unwrap();
            let l = Layout::new(&g);
            let taps: Vec<usize> = (0..k * k).map(|t| l.tap(s, t / k, t % k)).collect();
            let tile = 48;
            let offsets = prefetch_offsets(&taps, tile);
            for base in 0..16 {
                let line = |f: usize| (base + f) / 16;
                let touched: std::collections::HashSet<usize> =
                    offsets.iter().map(|&o| line(o)).collect();
                for &t in &taps {
                    for f in t..t + tile {
                        assert!(
                            touched.contains(&line(f)),
                            "k{k} s{s} base {base}: float {f}"
                        );
                    }
                }
            }
        }
    }

    /// Two inputs read in place give the bits of their concatenation, for
    /// both strides' layouts and a split inside a channel block.
    #[test]
    fn two_inputs_equal_their_concatenation() {
        if crate::ops::skip_without_simd(available(), "direct convolution of two inputs") {
            return;
        }
        for &(n, ca, cb, hw, co, k, s, p) in &[
            (2, 3, 5, 17, 9, 3, 1, 1),
            (1, 8, 8, 20, 16, 3, 2, 1),
            (2, 1, 4, 16, 3, 1, 2, 0),
        ] {
            let ci = ca + cb;
            let g = ConvGeom::new([n, ci, hw, hw], [co, ci, k, k], s, p).unwrap();
            let (a, b) = (values(n * ca * hw * hw, 3), values(n * cb * hw * hw, 4));
            let x: Vec<f32> = (0..n)
                .flat_map(|i| {
                    let a = &a[i * ca * hw * hw..][..ca * hw * hw];
                    a.iter().chain(&b[i * cb * hw * hw..][..cb * hw * hw])
                })
                .copied()
                .collect();
            let wv = values(co * ci * k * k, 5);
            let weights = Weights {
                data: &wv,
                out_stride: ci * k * k,
                in_stride: k * k,
                flipped: false,
            };
            assert_eq!(
                conv(&g, Input::cat(&a, ca, &b), weights),
                conv(&g, Input::one(&x), weights),
                "{g:?}"
            );
        }
    }
}
