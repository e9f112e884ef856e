//! 3×3 stride-1 convolution with Winograd's minimal filtering, F(2×2, 3×3):
//! 16 multiplies per 2×2 output tile and channel pair instead of 36
//! (Lavin & Gray, *Fast Algorithms for Convolutional Neural Networks*,
//! CVPR 2016; the transforms are that paper's, as in NNPACK and oneDNN).
//!
//! With `d` a 4×4 input tile and `g` a 3×3 kernel, the 2×2 output tile is
//! `Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`. Summed over input channels, each of the 16
//! points `ξ` of the transformed tile is one matrix product,
//! `M[ξ] = U[ξ] · V[ξ]` (`U[ξ]`: `co × ci` transformed kernels, `V[ξ]`:
//! `ci × tiles` transformed inputs), run by `gemm`. Every product adds
//! 2.25× fewer terms than the direct kernel's `3·3` taps, for the price of
//! the three transforms (adds only, and a halving in `G`, exact in `f32`).
//!
//! The tiles are cut into units of whole tile rows (across images, so small
//! maps of several images share one product); each unit transforms its
//! input into a scratch buffer, runs the 16 products and writes its output
//! rows. Units run in parallel where there are enough of them; otherwise
//! one after another, each with its channels, products and output channels
//! split across the threads.
//!
//! The weight gradient is the same algorithm transposed, F(3×3, 2×2): the
//! forward's input transform, the output gradient's 2×2 tiles transformed
//! by `A`, the 16 products summed over tiles, then `Gᵀ · M · G` once. A
//! kernel that does not change between calls (a folded model's) can be
//! transformed once ([`transform`], [`conv_prepared`]).

use gemm::Parallelism;
use rayon::prelude::*;

use super::super::simd::wide;
use super::direct::{Input, Weights};
use super::geom::{ConvGeom, SendPtr, output, sum_by_shares, with_scratch};
use super::{Operand, matmul, outer_parallel, row_major, transposed};

/// Points of a transformed tile (4×4).
const POINTS: usize = 16;

/// Floats of transformed input and output per unit: large enough for
/// efficient products, small enough to stay in cache…
const UNIT_FLOATS: usize = 1 << 18;

/// …but at least this many tiles: each of a unit's forward products packs
/// its whole `U[ξ]`, so on deep layers units of few tiles spend more time
/// packing than multiplying. Interleaved `cargo bench --bench kernels`
/// rounds, 64 against 256 tiles (forward / input gradient / weight
/// gradient, ms, the faster of 3): 2×128×32² → 128 1.93 / 1.92 / 2.14
/// against 3.38 / 3.40 / 4.39, 1×256×32² → 128 1.93 / 1.83 / 2.26 against
/// 2.29 / 2.22 / 2.99; 256 was slower on every layer of the base model.
const MIN_TILES: usize = 64;

/// Whether [`conv`] computes `g` faster than the direct kernel: a 3×3
/// kernel at stride 1 with padding 1, on maps of 16×16 or more, and
/// channels enough that the products outweigh the transforms (whose work
/// grows with `ci + co`, the products' with `ci · co`): a harmonic mean
/// `ci·co / (ci + co)` of 32 (64 → 64), or 16 on maps 64 or more wide,
/// where each transformed row is long (64 → 32 at 128²).
///
/// Measured against the direct kernel in interleaved `cargo bench --bench
/// kernels` rounds (forward; the input gradient alike): 1×256×32² → 128
/// 3.1 → 1.9 ms, 2×128×64² → 64 5.6 → 3.6, 1×64×64² → 64 1.5 → 1.0,
/// 2×64×128² → 32 5.9 → 4.4. Slower: 8×8 and smaller maps (2×512×8² →
/// 512 3.0 → 4.2 ms: the 512×512 kernel's transform is memory-bound and
/// its rows too short), and the small model's 24² maps of 32 and 64
/// channels (8×32×24² → 32 0.49 → 0.62).
pub(super) fn suits(g: &ConvGeom) -> bool {
    let harmonic = g.ci * g.co / (g.ci + g.co);
    g.k == 3
        && g.s == 1
        && g.p == 1
        && g.ho.min(g.wo) >= 16
        && (harmonic >= 32 || (harmonic >= 16 && g.wo >= 64))
}

/// `x [n, ci, h, w]` convolved with the 3×3 kernel `w` (padding 1, stride 1)
/// → `[n, co, h, w]`.
pub(super) fn conv(g: &ConvGeom, x: Input, w: Weights) -> Vec<f32> {
    let (u, layout) = kernel_transform(g, w);
    conv_transformed(g, x, (&u, layout))
}

/// [`conv`] with the kernel transformed already: `U`, `POINTS × co × ci`
/// ([`kernel_transform`] of the forward's kernel `[co, ci, 3, 3]`).
pub(super) fn conv_prepared(g: &ConvGeom, x: Input, u: &[f32]) -> Vec<f32> {
    assert_eq!(u.len(), POINTS * g.co * g.ci, "Winograd kernel size");
    conv_transformed(g, x, (u, Layout::Rows))
}

/// Whether [`conv_prepared`] computes `g` faster than the direct kernel or
/// im2col + `gemm`: as [`suits`], but without the kernel's transform on
/// every call the 8×8 maps of deep layers gain too (`wsunet bench`,
/// inference at 1×256², 3 interleaved rounds: transformed per call 23.0 /
/// 23.0 / 24.7 ms, ahead from 16×16 maps 21.7 / 21.8 / 21.8, from 8×8
/// 23.3 / 21.2 / 21.2).
pub(super) fn prepared_suits(g: &ConvGeom) -> bool {
    g.k == 3 && g.s == 1 && g.p == 1 && g.ho.min(g.wo) >= 8 && worth_preparing(g.co, g.ci)
}

/// Whether a kernel of these channels is worth transforming ahead for
/// [`conv_prepared`] (see [`prepared_suits`]).
pub(super) fn worth_preparing(co: usize, ci: usize) -> bool {
    co * ci >= 32 * (co + ci)
}

/// The forward's kernel `w [co, ci, 3, 3]` transformed for
/// [`conv_prepared`]: `POINTS × co × ci`.
pub(super) fn transform(co: usize, ci: usize, w: &[f32]) -> Vec<f32> {
    let g = ConvGeom::new([1, ci, 3, 3], [co, ci, 3, 3], 1, 1).expect("a 3×3 kernel");
    let weights = Weights {
        data: w,
        out_stride: 9 * ci,
        in_stride: 9,
        flipped: false,
    };
    kernel_transform(&g, weights).0
}

/// [`conv`] with `U` at hand, laid out as `u_of` says.
fn conv_transformed(g: &ConvGeom, x: Input, (u, u_of): (&[f32], Layout)) -> Vec<f32> {
    debug_assert!(g.k == 3 && g.s == 1 && g.p == 1);
    let (units, tw) = units(g);
    let outer = outer_parallel(units.len());
    let fill = |y: *mut f32| {
        let y = SendPtr(y);
        let unit = |&(r0, rows): &(usize, usize)| {
            let t = rows * tw;
            with_scratch(POINTS * (g.ci + g.co) * t, |buf| {
                let (v, m) = buf.split_at_mut(POINTS * g.ci * t);
                let v_ptr = SendPtr(v.as_mut_ptr());
                by_channels(g.ci, !outer, |channels| {
                    let job = Job {
                        g,
                        src: x,
                        unit: (r0, rows),
                        channels,
                        dst: v_ptr,
                    };
                    wide!(input_channels(job: Job<'_, Input<'_>>) -> ())
                });
                products(g, (u, u_of), v, m, t, !outer);
                let m = &*m;
                by_channels(g.co, !outer, |channels| {
                    let job = Job {
                        g,
                        src: m,
                        unit: (r0, rows),
                        channels,
                        dst: y,
                    };
                    wide!(output_channels(job: Job<'_, &[f32]>) -> ())
                });
            });
        };
        if outer {
            units.par_iter().for_each(unit);
        } else {
            units.iter().for_each(unit);
        }
    };
    // SAFETY: the units cover every tile row of every image, and each
    // writes all output rows and columns of its tiles (`output_channels`).
    unsafe { output(g.n * g.co * g.hw_out(), fill) }
}

/// One range of channels of one unit for a transform (`input_channels`,
/// `gradient_channels`, `output_channels`): what it reads, where it writes.
struct Job<'a, S> {
    g: &'a ConvGeom,
    /// The input, the output gradient, or the unit's `M`.
    src: S,
    /// First tile row (over all images) and tile rows.
    unit: (usize, usize),
    channels: (usize, usize),
    /// The unit's `V` or `DY` (`POINTS × channels × rows·tw`), or the output.
    dst: SendPtr,
}

/// The units, `(first tile row, tile rows)` over all images, and the tiles
/// per tile row.
fn units(g: &ConvGeom) -> (Vec<(usize, usize)>, usize) {
    let (th, tw) = (g.ho.div_ceil(2), g.wo.div_ceil(2));
    let tile_rows = g.n * th;
    let per_unit = (UNIT_FLOATS / (POINTS * (g.ci + g.co) * tw))
        .max(MIN_TILES.div_ceil(tw))
        .clamp(1, tile_rows);
    let units = (0..tile_rows)
        .step_by(per_unit)
        .map(|r0| (r0, per_unit.min(tile_rows - r0)))
        .collect();
    (units, tw)
}

/// Weight gradient `dw [co, ci, 3, 3]` of the convolution of `x` (padding
/// 1, stride 1) for the output gradient `dy`, through F(3×3, 2×2), the
/// transpose of the forward's algorithm: per tile, `dw += Gᵀ [(A dy Aᵀ) ⊙
/// (Bᵀ d B)] G` with `dy` the tile's 2×2 output gradient and `d` its 4×4
/// input window (the forward's input transform). Summed over tiles first,
/// each of the 16 points is one product `Σ_tiles DY[ξ] · V[ξ]ᵀ`
/// (`co × tiles` times `tiles × ci`); the `Gᵀ … G` comes once at the end.
///
/// Units run in parallel in fixed shares, each thread summing into its own
/// buffer, added in order (the same bits on every run).
pub(super) fn weight_gradient(g: &ConvGeom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    debug_assert!(g.k == 3 && g.s == 1 && g.p == 1);
    let (units, tw) = units(g);
    let outer = outer_parallel(units.len());
    let len = POINTS * g.co * g.ci;
    let x = Input::one(x);
    // One task's sum over its units; the first overwrites, the rest add.
    let sum = |units: &[(usize, usize)]| -> Vec<f32> {
        let fill = |acc: *mut f32| {
            let acc = SendPtr(acc);
            for (i, &(r0, rows)) in units.iter().enumerate() {
                let t = rows * tw;
                with_scratch(POINTS * (g.ci + g.co) * t, |buf| {
                    let (v, d) = buf.split_at_mut(POINTS * g.ci * t);
                    let (v_ptr, d_ptr) = (SendPtr(v.as_mut_ptr()), SendPtr(d.as_mut_ptr()));
                    by_channels(g.ci, !outer, |channels| {
                        let job = Job {
                            g,
                            src: x,
                            unit: (r0, rows),
                            channels,
                            dst: v_ptr,
                        };
                        wide!(input_channels(job: Job<'_, Input<'_>>) -> ())
                    });
                    by_channels(g.co, !outer, |channels| {
                        let job = Job {
                            g,
                            src: dy,
                            unit: (r0, rows),
                            channels,
                            dst: d_ptr,
                        };
                        wide!(gradient_channels(job: Job<'_, &[f32]>) -> ())
                    });
                    let (v, d) = (&*v, &*d);
                    let point = |xi: usize| {
                        // SAFETY: `DY[ξ]` (co×t) and `V[ξ]` (ci×t, read
                        // transposed) lie inside `d` and `v`; `acc[ξ]`
                        // (co×ci) inside this task's `POINTS·co·ci` values,
                        // written by this point only; the first unit writes
                        // all of them before later units add.
                        unsafe {
                            matmul(
                                [g.co, g.ci, t],
                                row_major(acc.get().add(xi * g.co * g.ci), g.ci),
                                i > 0,
                                row_major(d.as_ptr().add(xi * g.co * t), t),
                                transposed(v.as_ptr().add(xi * g.ci * t), t),
                                Parallelism::None,
                            )
                        }
                    };
                    if outer {
                        (0..POINTS).for_each(point);
                    } else {
                        (0..POINTS).into_par_iter().for_each(point);
                    }
                });
            }
        };
        // SAFETY: `units` is never empty (`units` covers ≥ 1 tile row), and
        // its first unit's products write all `len` values.
        unsafe { output(len, fill) }
    };
    let m = sum_by_shares(&units, outer, len, sum);
    // dw[o][c] = Gᵀ M G, from the 16 points to the 9 taps.
    let pairs = g.co * g.ci;
    let mut dw = vec![0.0f32; 9 * pairs];
    dw.par_chunks_mut(9 * g.ci)
        .enumerate()
        .for_each(|(o, row)| {
            let job = TapsJob {
                m: &m,
                pairs,
                first: o * g.ci,
                row,
            };
            wide!(gradient_taps(job: TapsJob<'_>) -> ())
        });
    dw
}

/// One output channel's weight gradient for [`gradient_taps`].
struct TapsJob<'a> {
    /// The 16 points of every channel pair, `POINTS × pairs`.
    m: &'a [f32],
    pairs: usize,
    /// The channel's first pair.
    first: usize,
    /// Its `ci × 9` taps.
    row: &'a mut [f32],
}

/// `Gᵀ M G` of each pair of the job, [`LANES`] pairs at a time: from the 16
/// points to the 9 taps.
#[inline(always)]
fn gradient_taps(job: TapsJob<'_>) {
    let TapsJob {
        m,
        pairs,
        first,
        row,
    } = job;
    for (b, taps) in row.chunks_mut(9 * LANES).enumerate() {
        let lanes = taps.len() / 9;
        let at = |xi: usize| {
            let mut v = [0.0f32; LANES];
            v[..lanes].copy_from_slice(&m[xi * pairs + first + b * LANES..][..lanes]);
            v
        };
        // Gᵀ · M: each column k of 4 points to 3 rows; then · G, each row's
        // 4 values to 3 taps.
        let reduce = |v: [[f32; LANES]; 4]| {
            let mut r = [[0.0f32; LANES]; 3];
            for l in 0..LANES {
                let (m0, m1, m2, m3) = (v[0][l], v[1][l], v[2][l], v[3][l]);
                r[0][l] = m0 + 0.5 * (m1 + m2);
                r[1][l] = 0.5 * (m1 - m2);
                r[2][l] = 0.5 * (m1 + m2) + m3;
            }
            r
        };
        let cols = [0, 1, 2, 3].map(|k| reduce([at(k), at(4 + k), at(8 + k), at(12 + k)]));
        for a in 0..3 {
            let r = reduce([cols[0][a], cols[1][a], cols[2][a], cols[3][a]]);
            for (bb, vals) in r.iter().enumerate() {
                for (l, &v) in vals[..lanes].iter().enumerate() {
                    taps[9 * l + 3 * a + bb] = v;
                }
            }
        }
    }
}

/// `DY[ξ][o][tile] = (A dy Aᵀ)[ξ]` for the tiles of the job's tile rows and
/// channels, `dy` the tile's 2×2 output gradient (zero past the map's edge),
/// `Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]]`.
#[inline(always)]
fn gradient_channels(job: Job<'_, &[f32]>) {
    let Job {
        g,
        src: dy,
        unit: (r0, rows),
        channels: (c0, c1),
        dst: d,
    } = job;
    let tw = g.wo.div_ceil(2);
    let t = rows * tw;
    // Per row of a tile row: (a, a + b, a − b, −b) of each tile's (a, b).
    let mut rt = vec![0.0f32; 8 * tw];
    let mut p = vec![0.0f32; 2 * tw];
    for o in c0..c1 {
        for lr in 0..rows {
            let (n, ty) = tile_row(g, r0 + lr);
            let plane = &dy[(n * g.co + o) * g.hw_out()..][..g.hw_out()];
            for (i, rti) in rt.chunks_exact_mut(4 * tw).enumerate() {
                let oy = 2 * ty + i;
                if oy >= g.ho {
                    rti.fill(0.0);
                    continue;
                }
                p[..g.wo].copy_from_slice(&plane[oy * g.wo..][..g.wo]);
                let (h0, rest) = rti.split_at_mut(tw);
                let (h1, rest) = rest.split_at_mut(tw);
                let (h2, h3) = rest.split_at_mut(tw);
                for ((((ab, h0), h1), h2), h3) in p.chunks_exact(2).zip(h0).zip(h1).zip(h2).zip(h3)
                {
                    let (a, b) = (ab[0], ab[1]);
                    *h0 = a;
                    *h1 = a + b;
                    *h2 = a - b;
                    *h3 = -b;
                }
            }
            // Columns: (R0, R0 + R1, R0 − R1, −R1) per row point.
            let (top, bottom) = rt.split_at(4 * tw);
            for col in 0..4 {
                let s = col * tw..(col + 1) * tw;
                let (a, b) = (&top[s.clone()], &bottom[s]);
                // SAFETY: `(ξ·co + o)·t + lr·tw + tw` ≤ `POINTS·co·t` for
                // every point ξ; only this job writes channel `o`'s values.
                let out = |row: usize| unsafe {
                    std::slice::from_raw_parts_mut(
                        d.get().add(((row * 4 + col) * g.co + o) * t + lr * tw),
                        tw,
                    )
                };
                out(0).copy_from_slice(a);
                add(out(1), a, b);
                sub(out(2), a, b);
                out(3).iter_mut().zip(b).for_each(|(o, b)| *o = -b);
            }
        }
    }
}

/// Runs `f` on ranges of `0..channels`: all of them at once, or (`par`)
/// a few ranges per thread in parallel.
fn by_channels(channels: usize, par: bool, f: impl Fn((usize, usize)) + Sync) {
    if !par {
        return f((0, channels));
    }
    let per = channels.div_ceil(4 * rayon::current_num_threads());
    (0..channels.div_ceil(per))
        .into_par_iter()
        .for_each(|b| f((b * per, channels.min((b + 1) * per))));
}

/// How the transformed kernel is laid out: `U[ξ]` is `co × ci` row-major
/// (`Rows`), or its transpose (`Columns`).
#[derive(Clone, Copy)]
enum Layout {
    Rows,
    Columns,
}

/// The transformed kernel, `U[ξ] = (G · w(o, c) · Gᵀ)[ξ]` for all `o, c`.
/// Both kernels this module gets keep each channel pair's 9 taps together,
/// in an order that makes the pairs one run of `9·co·ci` values: the
/// forward's `w[o][c]` (`U[ξ]` then `co × ci`) and the input gradient's
/// flipped `w[c][o]` (taps reversed; `U[ξ]` then `ci × co`, the transpose).
fn kernel_transform(g: &ConvGeom, w: Weights) -> (Vec<f32>, Layout) {
    let layout = if w.in_stride == 9 && w.out_stride == 9 * g.ci {
        Layout::Rows
    } else if w.out_stride == 9 && w.in_stride == 9 * g.co {
        Layout::Columns
    } else {
        panic!("Winograd kernel layout: {w:?} for {g:?}");
    };
    let pairs = g.co * g.ci;
    assert!(w.data.len() >= 9 * pairs, "conv kernel size");
    let fill = |u: *mut f32| {
        let u = SendPtr(u);
        let per = pairs
            .div_ceil(4 * rayon::current_num_threads())
            .next_multiple_of(LANES);
        (0..pairs.div_ceil(per)).into_par_iter().for_each(|b| {
            let job = KernelJob {
                taps: w.data,
                flipped: w.flipped,
                pairs: (b * per, pairs.min((b + 1) * per)),
                total: pairs,
                u,
            };
            wide!(kernel_pairs(job: KernelJob<'_>) -> ())
        });
    };
    // SAFETY: the jobs cover all pairs, each writing its pairs' `POINTS`
    // values.
    (unsafe { output(POINTS * pairs, fill) }, layout)
}

/// Channel pairs per step of [`kernel_pairs`] (one AVX-512 vector).
const LANES: usize = 16;

/// One range of channel pairs for [`kernel_pairs`].
struct KernelJob<'a> {
    /// 9 taps per pair.
    taps: &'a [f32],
    flipped: bool,
    pairs: (usize, usize),
    /// Pairs in all (the row length of `U`).
    total: usize,
    /// `U`, `POINTS × total`.
    u: SendPtr,
}

/// `G g Gᵀ` for the job's pairs, [`LANES`] at a time.
#[inline(always)]
fn kernel_pairs(job: KernelJob<'_>) {
    let (p0, p1) = job.pairs;
    for j0 in (p0..p1).step_by(LANES) {
        let lanes = LANES.min(p1 - j0);
        let src = &job.taps[9 * j0..][..9 * lanes];
        let mut k = [[0.0f32; LANES]; 9];
        for (l, taps) in src.chunks_exact(9).enumerate() {
            for (t, &v) in taps.iter().enumerate() {
                k[if job.flipped { 8 - t } else { t }][l] = v;
            }
        }
        // G · g, row by row (3 columns each), then (G · g) · Gᵀ.
        let gg = |a: &[f32; LANES], b: &[f32; LANES], c: &[f32; LANES]| {
            let mut r = [[0.0f32; LANES]; 4];
            for l in 0..LANES {
                r[0][l] = a[l];
                r[1][l] = 0.5 * (a[l] + b[l] + c[l]);
                r[2][l] = 0.5 * (a[l] - b[l] + c[l]);
                r[3][l] = c[l];
            }
            r
        };
        let cols = [
            gg(&k[0], &k[3], &k[6]),
            gg(&k[1], &k[4], &k[7]),
            gg(&k[2], &k[5], &k[8]),
        ];
        let [c0, c1, c2] = &cols;
        for (i, ((a, b), c)) in c0.iter().zip(c1).zip(c2).enumerate() {
            let out = gg(a, b, c);
            for (j, vals) in out.iter().enumerate() {
                // SAFETY: `(4i + j)·total + j0 + lanes` ≤ `POINTS·total`, and
                // only this job writes pairs j0..j0+lanes.
                unsafe {
                    let at = job.u.get().add((4 * i + j) * job.total + j0);
                    std::ptr::copy_nonoverlapping(vals.as_ptr(), at, lanes);
                }
            }
        }
    }
}

/// The tile row `r` (over all images) as (image, tile row in the image).
fn tile_row(g: &ConvGeom, r: usize) -> (usize, usize) {
    let th = g.ho.div_ceil(2);
    (r / th, r % th)
}

/// `V[ξ][c][tile] = (Bᵀ d B)[ξ]` for the tiles of the job's tile rows and
/// channels, `d` the 4×4 input window of the tile (rows and columns from
/// −1, zero outside the image).
#[inline(always)]
fn input_channels(job: Job<'_, Input<'_>>) {
    let Job {
        g,
        src: x,
        unit: (r0, rows),
        channels: (c0, c1),
        dst: v,
    } = job;
    let tw = g.wo.div_ceil(2);
    let t = rows * tw;
    // Per input row of a tile row: the row transform of each tile,
    // (d0 − d2, d1 + d2, d2 − d1, d1 − d3), as 4 runs of `tw`.
    let mut rt = vec![0.0f32; 16 * tw];
    // The row with its zero padding: columns −1 ..= 2·tw (past the row: 0).
    let mut p = vec![0.0f32; 2 * tw + 2];
    for c in c0..c1 {
        for lr in 0..rows {
            let (n, ty) = tile_row(g, r0 + lr);
            let plane = x.plane(g, n * g.ci + c);
            for (i, rti) in rt.chunks_exact_mut(4 * tw).enumerate() {
                let Some(iy) = (2 * ty + i).checked_sub(1).filter(|&iy| iy < g.h) else {
                    rti.fill(0.0);
                    continue;
                };
                p[1..=g.w].copy_from_slice(&plane[iy * g.w..][..g.w]);
                row_transform(&p, rti, tw);
            }
            // Columns: (R0 − R2, R1 + R2, R2 − R1, R1 − R3) per row point.
            let (r_0, rest) = rt.split_at(4 * tw);
            let (r_1, rest) = rest.split_at(4 * tw);
            let (r_2, r_3) = rest.split_at(4 * tw);
            for col in 0..4 {
                let s = col * tw..(col + 1) * tw;
                let (a, b, cc, d) = (&r_0[s.clone()], &r_1[s.clone()], &r_2[s.clone()], &r_3[s]);
                // SAFETY: `(ξ·ci + c)·t + lr·tw + tw` ≤ `POINTS·ci·t` for
                // every point ξ; only this job writes channel `c`'s values.
                let out = |row: usize| unsafe {
                    std::slice::from_raw_parts_mut(
                        v.get().add(((row * 4 + col) * g.ci + c) * t + lr * tw),
                        tw,
                    )
                };
                sub(out(0), a, cc);
                add(out(1), b, cc);
                sub(out(2), cc, b);
                sub(out(3), b, d);
            }
        }
    }
}

/// `(d0 − d2, d1 + d2, d2 − d1, d1 − d3)` of every tile `j` of the padded
/// row `p` (`d = p[2j..2j+4]`), as 4 runs of `tw` in `out`.
#[inline(always)]
fn row_transform(p: &[f32], out: &mut [f32], tw: usize) {
    let (t0, rest) = out.split_at_mut(tw);
    let (t1, rest) = rest.split_at_mut(tw);
    let (t2, t3) = rest.split_at_mut(tw);
    let (lo, hi) = (
        p[..2 * tw].chunks_exact(2),
        p[2..2 * tw + 2].chunks_exact(2),
    );
    for ((((ab, cd), t0), t1), (t2, t3)) in lo.zip(hi).zip(t0).zip(t1).zip(t2.iter_mut().zip(t3)) {
        let (a, b, c, d) = (ab[0], ab[1], cd[0], cd[1]);
        *t0 = a - c;
        *t1 = b + c;
        *t2 = c - b;
        *t3 = b - d;
    }
}

/// `M[ξ] = U[ξ] · V[ξ]` for the 16 points: `co × ci` times `ci × t`.
fn products(
    g: &ConvGeom,
    (u, layout): (&[f32], Layout),
    v: &[f32],
    m: &mut [f32],
    t: usize,
    par: bool,
) {
    let dst = SendPtr(m.as_mut_ptr());
    let point = |xi: usize| {
        let u = u[xi * g.co * g.ci..].as_ptr();
        let lhs: Operand<*const f32> = match layout {
            Layout::Rows => row_major(u, g.ci),
            Layout::Columns => transposed(u, g.co),
        };
        // SAFETY: `U[ξ]` (co×ci), `V[ξ]` (ci×t) and `M[ξ]` (co×t) lie inside
        // `u`, `v` and `m`; each point writes its own `M[ξ]`.
        unsafe {
            matmul(
                [g.co, t, g.ci],
                row_major(dst.get().add(xi * g.co * t), t),
                false,
                lhs,
                row_major(v.as_ptr().add(xi * g.ci * t), t),
                Parallelism::None,
            )
        }
    };
    if par {
        (0..POINTS).into_par_iter().for_each(point);
    } else {
        (0..POINTS).for_each(point);
    }
}

/// The output tiles of the job's tile rows and channels: `Aᵀ M A` per tile,
/// rows and columns past the map's edge (odd sizes) dropped.
#[inline(always)]
fn output_channels(job: Job<'_, &[f32]>) {
    let Job {
        g,
        src: m,
        unit: (r0, rows),
        channels: (c0, c1),
        dst: y,
    } = job;
    let tw = g.wo.div_ceil(2);
    let t = rows * tw;
    let (mut q, mut even, mut odd) = (vec![0.0f32; 8 * tw], vec![0.0f32; tw], vec![0.0f32; tw]);
    for o in c0..c1 {
        for lr in 0..rows {
            let (n, ty) = tile_row(g, r0 + lr);
            let at = |xi: usize| &m[(xi * g.co + o) * t + lr * tw..][..tw];
            // Rows: Q0 = M0 + M1 + M2, Q1 = M1 − M2 − M3 per column point.
            let (q0, q1) = q.split_at_mut(4 * tw);
            for ((col, q0), q1) in q0
                .chunks_exact_mut(tw)
                .enumerate()
                .zip(q1.chunks_exact_mut(tw))
            {
                let (m0, m1, m2, m3) = (at(col), at(4 + col), at(8 + col), at(12 + col));
                for ((((q0, q1), &m0), &m1), (&m2, &m3)) in q0
                    .iter_mut()
                    .zip(q1.iter_mut())
                    .zip(m0)
                    .zip(m1)
                    .zip(m2.iter().zip(m3))
                {
                    *q0 = m0 + m1 + m2;
                    *q1 = m1 - m2 - m3;
                }
            }
            for (ri, qr) in q.chunks_exact(4 * tw).enumerate() {
                let oy = 2 * ty + ri;
                if oy >= g.ho {
                    break;
                }
                let (a, rest) = qr.split_at(tw);
                let (b, rest) = rest.split_at(tw);
                let (c, d) = rest.split_at(tw);
                for ((((ev, od), &a), &b), (&c, &d)) in even
                    .iter_mut()
                    .zip(odd.iter_mut())
                    .zip(a)
                    .zip(b)
                    .zip(c.iter().zip(d))
                {
                    *ev = a + b + c;
                    *od = b - c - d;
                }
                // SAFETY: row `oy` of plane `(n, o)` lies inside the output;
                // only this unit (tile row) and job (channel) write it.
                let out = unsafe {
                    std::slice::from_raw_parts_mut(
                        y.get().add((n * g.co + o) * g.hw_out() + oy * g.wo),
                        g.wo,
                    )
                };
                let whole = g.wo / 2;
                let pairs = &mut out[..2 * whole];
                let (ev, od) = (&even[..whole], &odd[..whole]);
                for j in 0..whole {
                    pairs[2 * j] = ev[j];
                    pairs[2 * j + 1] = od[j];
                }
                if g.wo % 2 == 1 {
                    out[g.wo - 1] = even[tw - 1];
                }
            }
        }
    }
}

/// `out = a − b`, element by element.
#[inline(always)]
fn sub(out: &mut [f32], a: &[f32], b: &[f32]) {
    out.iter_mut()
        .zip(a.iter().zip(b))
        .for_each(|(o, (a, b))| *o = a - b);
}

/// `out = a + b`, element by element.
#[inline(always)]
fn add(out: &mut [f32], a: &[f32], b: &[f32]) {
    out.iter_mut()
        .zip(a.iter().zip(b))
        .for_each(|(o, (a, b))| *o = a + b);
}

#[cfg(test)]
mod tests {
    use super::super::tests::{close, reference, reference_grads, values};
    use super::*;

    /// (n, ci, h, w, co): odd and even sizes (tiles cut at the edge), one
    /// tile row and many, images sharing a unit; the last two in units of
    /// 32 tile rows, 4 in parallel, then 3 whose tile rows cross from one
    /// image (of odd height) to the next.
    const SHAPES: [(usize, usize, usize, usize, usize); 8] = [
        (1, 3, 5, 7, 4),
        (2, 5, 2, 9, 3),
        (3, 4, 1, 1, 2),
        (1, 8, 33, 31, 6),
        (2, 16, 40, 37, 24),
        (5, 6, 3, 4, 7),
        (1, 32, 200, 16, 32),
        (3, 32, 61, 16, 32),
    ];

    /// The forward's kernel `w [co, ci, 3, 3]` as it lies.
    fn plain<'a>(g: &ConvGeom, w: &'a [f32]) -> Weights<'a> {
        Weights {
            data: w,
            out_stride: g.ci * 9,
            in_stride: 9,
            flipped: false,
        }
    }

    #[test]
    fn forward_and_weight_gradient_equal_the_definition() {
        for (i, &(n, ci, h, w, co)) in SHAPES.iter().enumerate() {
            let g = ConvGeom::new([n, ci, h, w], [co, ci, 3, 3], 1, 1).unwrap();
            let x = values(n * ci * h * w, i as u32);
            let wt = values(co * ci * 9, 100 + i as u32);
            let dy = values(n * co * h * w, 200 + i as u32);
            let what = format!("{g:?}");
            close(
                &conv(&g, Input::one(&x), plain(&g, &wt)),
                &reference(&g, &x, &wt),
                &what,
            );
            let u = transform(co, ci, &wt);
            close(
                &conv_prepared(&g, Input::one(&x), &u),
                &reference(&g, &x, &wt),
                &what,
            );
            let (_, dw) = reference_grads(&g, &x, &wt, &dy);
            close(&weight_gradient(&g, &x, &dy), &dw, &what);
        }
    }

    /// The input gradient's kernel, `w[c][o]` with its taps reversed (read
    /// transposed), and two inputs read as their concatenation.
    #[test]
    fn flipped_kernels_and_two_inputs_equal_the_definition() {
        let (n, ci, h, w, co) = (2, 10, 19, 22, 12);
        let g = ConvGeom::new([n, ci, h, w], [co, ci, 3, 3], 1, 1).unwrap();
        let x = values(n * ci * h * w, 7);
        let wt = values(co * ci * 9, 8);
        // The same kernel stored as w'[c][o] with reversed taps.
        let mut flipped = vec![0.0; wt.len()];
        for o in 0..co {
            for c in 0..ci {
                for t in 0..9 {
                    flipped[(c * co + o) * 9 + 8 - t] = wt[(o * ci + c) * 9 + t];
                }
            }
        }
        let weights = Weights {
            data: &flipped,
            out_stride: 9,
            in_stride: co * 9,
            flipped: true,
        };
        let want = reference(&g, &x, &wt);
        close(&conv(&g, Input::one(&x), weights), &want, "flipped");
        let (ca, plane) = (4, h * w);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for (k, chunk) in x.chunks(plane).enumerate() {
            if k % ci < ca {
                a.extend_from_slice(chunk)
            } else {
                b.extend_from_slice(chunk)
            }
        }
        let two = Input::cat(&a, ca, &b);
        close(&conv(&g, two, plain(&g, &wt)), &want, "two inputs");
        close(
            &conv_prepared(&g, two, &transform(co, ci, &wt)),
            &want,
            "two inputs, prepared",
        );
    }
}
