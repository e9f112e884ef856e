//! 2-D convolution: a CPU kernel (forward, input gradient and weight
//! gradient on raw `f32` slices) with its backward on Flex, Burn's `conv2d`
//! for other devices and options.
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
//! Where all images of the batch fit one band (small maps), they are one band:
//! `batch.rs`.
//!
//! Convolutions other than 1×1 stride-1 on rows of 16 pixels or more (the
//! forward of any stride, and the stride-1 input gradient's correlation) skip
//! im2col and `gemm` altogether on CPUs with AVX2 + FMA: `direct.rs`. 3×3
//! stride-1 convolutions of maps 16×16 and larger with enough channels (the
//! forward and the input gradient's correlation) take Winograd's F(2×2, 3×3),
//! 2.25× fewer multiplies: `winograd.rs`. The geometry, scratch buffers and
//! shared pointers all these kernels use are in `geom.rs`.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

mod batch;
mod direct;
mod direct_wgrad;
mod dot_gemm;
mod geom;
mod winograd;

use super::flex::{contiguous, dims4, inputs, record, runs_here, slice, tensor};
use super::profile::{self, Work};
use direct::{Input, Weights};
use dot_gemm::{Rows, dot_gemm};
pub use geom::ConvGeom;
pub(crate) use geom::SendPtr;
use geom::{output, sum_by_shares, with_scratch};

/// A 2-D convolution: this crate's kernel on the CPU when the options allow
/// it (groups 1, dilation 1, square kernel, symmetric padding), Burn's
/// `conv2d` otherwise. Same arguments and result as
/// [`burn::tensor::module::conv2d`].
///
/// # Shapes
///
/// - x: `[batch, in, H, W]`, weight: `[out, in/groups, kh, kw]`, bias: `[out]`
/// - output: `[batch, out, H', W']`
pub fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
) -> Tensor<4> {
    let Some(p) = cpu_params(&x, x.dims(), &weight, &options) else {
        return burn::tensor::module::conv2d(x, weight, bias, options);
    };
    let y = Tensor::<4>::from_dispatch(<Dispatch as Conv2dOp>::conv2d_cpu(
        x.into_dispatch(),
        weight.into_dispatch(),
        p,
    ));
    with_bias(y, bias)
}

/// [`conv2d`] of the channel concatenation `cat([a, b], 1)` without writing
/// it out on the CPU outside training: the kernel pads each channel
/// straight from `a` or `b` (the decoder's refine step over its upsampled
/// map and its skip). When training, the concatenation is written (the
/// weight gradient reads it) and convolved as by [`conv2d`]; on other
/// devices, Burn's `cat` and `conv2d`.
///
/// # Shapes
///
/// - a: `[batch, ca, H, W]`, b: `[batch, cb, H, W]`, weight:
///   `[out, ca + cb, kh, kw]`, bias: `[out]`
/// - output: `[batch, out, H', W']`
pub fn conv2d_cat(
    a: Tensor<4>,
    b: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
) -> Tensor<4> {
    let Some(p) = cat_params(&a, &b, &weight, &options) else {
        return conv2d(Tensor::cat(vec![a, b], 1), weight, bias, options);
    };
    let y = Tensor::<4>::from_dispatch(<Dispatch as Conv2dCatOp>::conv2d_cat_cpu(
        a.into_dispatch(),
        b.into_dispatch(),
        weight.into_dispatch(),
        p,
    ));
    with_bias(y, bias)
}

/// A 3×3 kernel `[co, ci, 3, 3]` transformed once for Winograd's F(2×2,
/// 3×3), `[16, co, ci]`, for [`conv2d_winograd`] and
/// [`conv2d_cat_winograd`]: a kernel that does not change between calls
/// (a folded model's) then skips the transform each call repeats. `None`
/// off the CPU, for other kernel sizes, and for channels too few for
/// Winograd to gain.
///
/// # Example
///
/// ```
/// use burn::tensor::ops::ConvOptions;
/// use burn::tensor::{Device, Distribution, Tensor};
/// use wsunet::ops::{conv2d, conv2d_winograd, winograd_kernel};
///
/// let device = Device::flex();
/// let w = Tensor::<4>::random([64, 64, 3, 3], Distribution::Default, &device);
/// let x = Tensor::<4>::random([1, 64, 16, 16], Distribution::Default, &device);
/// let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
/// let u = winograd_kernel(&w).expect("64 → 64 channels gain from Winograd");
/// let fast = conv2d_winograd(x.clone(), w.clone(), &u, None, options.clone());
/// let plain = conv2d(x, w, None, options);
/// let scale: f32 = plain.clone().abs().max().into_scalar();
/// let diff: f32 = (fast - plain).abs().max().into_scalar();
/// assert!(diff <= 1e-5 * scale);
/// ```
pub fn winograd_kernel(weight: &Tensor<4>) -> Option<Tensor<3>> {
    let [co, ci, kh, kw] = weight.dims();
    if !runs_here(&weight.device(), weight.dtype())
        || [kh, kw] != [3, 3]
        || !winograd::worth_preparing(co, ci)
    {
        return None;
    }
    let data = weight.to_data().convert::<f32>();
    let w = data.as_slice::<f32>().ok()?;
    let u = winograd::transform(co, ci, w);
    Some(Tensor::from_data(
        burn::tensor::TensorData::new(u, [16, co, ci]),
        &weight.device(),
    ))
}

/// [`conv2d`] with the kernel's [`winograd_kernel`] `u` at hand: on the
/// CPU outside training, the 3×3 stride-1 layers that gain from it run
/// Winograd's F(2×2, 3×3) without transforming the kernel; otherwise as
/// [`conv2d`] (`u` unused).
///
/// # Shapes
///
/// - x: `[batch, in, H, W]`, weight: `[out, in, 3, 3]`, u: `[16, out, in]`,
///   bias: `[out]`
/// - output: `[batch, out, H', W']`
pub fn conv2d_winograd(
    x: Tensor<4>,
    weight: Tensor<4>,
    u: &Tensor<3>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
) -> Tensor<4> {
    let Some(p) = cpu_params(&x, x.dims(), &weight, &options) else {
        return conv2d(x, weight, bias, options);
    };
    let y = Tensor::<4>::from_dispatch(<Dispatch as Conv2dWinogradOp>::conv2d_winograd_cpu(
        x.into_dispatch(),
        weight.into_dispatch(),
        u.clone().into_dispatch(),
        p,
    ));
    with_bias(y, bias)
}

/// [`conv2d_cat`] with the kernel's [`winograd_kernel`] `u` at hand, as
/// [`conv2d_winograd`].
///
/// # Shapes
///
/// - a: `[batch, ca, H, W]`, b: `[batch, cb, H, W]`, weight:
///   `[out, ca + cb, 3, 3]`, u: `[16, out, ca + cb]`, bias: `[out]`
/// - output: `[batch, out, H', W']`
pub fn conv2d_cat_winograd(
    a: Tensor<4>,
    b: Tensor<4>,
    weight: Tensor<4>,
    u: &Tensor<3>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
) -> Tensor<4> {
    let Some(p) = cat_params(&a, &b, &weight, &options) else {
        return conv2d_cat(a, b, weight, bias, options);
    };
    let y = Tensor::<4>::from_dispatch(<Dispatch as Conv2dWinogradOp>::conv2d_cat_winograd_cpu(
        a.into_dispatch(),
        b.into_dispatch(),
        weight.into_dispatch(),
        u.clone().into_dispatch(),
        p,
    ));
    with_bias(y, bias)
}

/// The kernel's parameters when it computes the convolution of `x` (whose
/// channels `dims` gives) with these options: `f32` on the CPU, groups 1,
/// dilation 1, equal strides, symmetric padding and shapes it accepts.
fn cpu_params(
    x: &Tensor<4>,
    dims: [usize; 4],
    weight: &Tensor<4>,
    options: &ConvOptions<2>,
) -> Option<ConvParams> {
    let [stride, _] = options.stride;
    let [(padding, _), _] = options.padding;
    let fits = runs_here(&x.device(), x.dtype())
        && weight.dtype() == DType::F32
        && options.groups == 1
        && options.dilation == [1, 1]
        && options.stride[0] == options.stride[1]
        && options.padding == [(padding, padding); 2]
        && ConvGeom::new(dims, weight.dims(), stride, padding).is_some();
    fits.then_some(ConvParams { stride, padding })
}

/// [`cpu_params`] for the concatenation of `a` and `b`: both on the CPU,
/// of the same batch and size.
fn cat_params(
    a: &Tensor<4>,
    b: &Tensor<4>,
    weight: &Tensor<4>,
    options: &ConvOptions<2>,
) -> Option<ConvParams> {
    let ([n, ca, h, w], [nb, cb, hb, wb]) = (a.dims(), b.dims());
    cpu_params(a, [n, ca + cb, h, w], weight, options)
        .filter(|_| [nb, hb, wb] == [n, h, w] && runs_here(&b.device(), b.dtype()))
}

/// `y` plus the per-channel `bias`, if any.
fn with_bias(y: Tensor<4>, bias: Option<Tensor<1>>) -> Tensor<4> {
    match bias {
        Some(b) => {
            let [c] = b.dims();
            y + b.reshape([1, c, 1, 1])
        }
        None => y,
    }
}

/// Stride and symmetric padding of a convolution, for the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvParams {
    /// Stride, both axes.
    pub stride: usize,
    /// Zero padding, every side.
    pub padding: usize,
}

/// Whether bands run in parallel (each `gemm` single-threaded) or in order.
fn outer_parallel(units: usize) -> bool {
    let threads = rayon::current_num_threads();
    threads > 1 && units >= 2 * threads
}

/// Whether an input gradient's images run in parallel, one thread each
/// (`gemm` and col2im single-threaded), rather than one after another with
/// both split across the threads: each image's col2im adds into its own
/// planes only. From as many images as threads on: the strided layers'
/// input gradients (`cargo bench --bench kernels`, 2×32×128² → 64, 3×3 /2
/// 3.5–3.8 → 2.1–2.3 ms; 8×16×48² → 32, 1.4 → 0.5 ms), where each band's
/// small `gemm` and col2im split in two cost more in hand-offs than they save.
fn images_in_parallel(n: usize) -> bool {
    let threads = rayon::current_num_threads();
    threads > 1 && n >= threads
}

fn inner(outer: bool) -> Parallelism {
    let threads = rayon::current_num_threads();
    if outer || threads == 1 {
        Parallelism::None
    } else {
        Parallelism::Rayon(threads)
    }
}

/// One matrix operand: its first value and its strides in elements.
#[derive(Clone, Copy)]
struct Operand<P> {
    ptr: P,
    /// Row stride.
    rs: usize,
    /// Column stride.
    cs: usize,
}

/// `dst[m×n] (+)= lhs[m×k] · rhs[k×n]` (`accumulate`: add to `dst`).
///
/// With [`Parallelism::Rayon`], the product is cut into one block of rows
/// (or of columns, when there are too few rows) per thread, each a
/// single-threaded `gemm`: `gemm`'s own split leaves one thread idle much
/// of the time on the small products of deep layers. On 2 threads, the
/// main command's bridge (8×256×3² → 256, the whole batch as one product):
/// its forward's `256×2304 · 2304×72` 0.67–0.72 → 0.44–0.58 ms, its input
/// gradient's `2304×256 · 256×72` 0.59–0.92 → 0.43 ms.
///
/// # Safety
///
/// Every pointer must be valid for all `m×n` (`dst`), `m×k` (`lhs`) and
/// `k×n` (`rhs`) values its strides reach, `dst` for writes; `dst` must not
/// overlap `lhs` or `rhs`, and no other thread may touch the values of `dst`
/// it reaches during the call. `k` may be 0 only with `accumulate` false
/// (then `dst` is zeroed); this module never calls it with `k` = 0.
unsafe fn matmul(
    [m, n, k]: [usize; 3],
    dst: Operand<*mut f32>,
    accumulate: bool,
    lhs: Operand<*const f32>,
    rhs: Operand<*const f32>,
    par: Parallelism,
) {
    let split = match par {
        Parallelism::Rayon(threads) => blocks(m, n, threads),
        _ => None,
    };
    let Some((by_rows, per)) = split else {
        // SAFETY: the caller's contract.
        return unsafe { gemm_call([m, n, k], dst, accumulate, lhs, rhs, par) };
    };
    // Addresses, so that the closure may cross threads.
    let (d, l, r) = (dst.ptr as usize, lhs.ptr as usize, rhs.ptr as usize);
    let total = if by_rows { m } else { n };
    (0..total.div_ceil(per)).into_par_iter().for_each(|b| {
        let (start, len) = (b * per, per.min(total - b * per));
        // A block of rows moves `dst` and `lhs` down; one of columns moves
        // `dst` and `rhs` right.
        let (dims, d_step, l_step, r_step) = if by_rows {
            ([len, n, k], dst.rs, lhs.rs, 0)
        } else {
            ([m, len, k], dst.cs, 0, rhs.cs)
        };
        let at = |base: usize, step: usize| base + start * step * std::mem::size_of::<f32>();
        // SAFETY: block `b` is rows (or columns) start..start+len of `dst`
        // and the matching rows of `lhs` (columns of `rhs`): inside what
        // the caller vouched for, and no two blocks share a value of `dst`.
        unsafe {
            gemm_call(
                dims,
                Operand {
                    ptr: at(d, d_step) as *mut f32,
                    ..dst
                },
                accumulate,
                Operand {
                    ptr: at(l, l_step) as *const f32,
                    ..lhs
                },
                Operand {
                    ptr: at(r, r_step) as *const f32,
                    ..rhs
                },
                Parallelism::None,
            )
        }
    });
}

/// How [`matmul`] cuts an `m×n` product across `threads`: by rows (`true`)
/// or columns, and how many a block holds (a multiple of 8, one AVX2
/// register of `f32`); `None` for products too small to cut.
fn blocks(m: usize, n: usize, threads: usize) -> Option<(bool, usize)> {
    const MIN: usize = 32;
    let per = |len: usize| len.div_ceil(threads).next_multiple_of(8);
    if threads < 2 {
        None
    } else if m >= threads * MIN {
        Some((true, per(m)))
    } else if n >= threads * MIN {
        Some((false, per(n)))
    } else {
        None
    }
}

/// One `gemm::gemm` call: [`matmul`] without the split.
///
/// # Safety
///
/// As [`matmul`].
unsafe fn gemm_call(
    [m, n, k]: [usize; 3],
    dst: Operand<*mut f32>,
    accumulate: bool,
    lhs: Operand<*const f32>,
    rhs: Operand<*const f32>,
    par: Parallelism,
) {
    // SAFETY: the caller's contract is `gemm::gemm`'s (valid pointers for
    // the strided extents, no aliasing of the destination).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.ptr,
            dst.cs as isize,
            dst.rs as isize,
            accumulate,
            lhs.ptr,
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.ptr,
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

/// Output channels per `gemm` call of [`input_columns`].
///
/// `gemm` reads `Wᵀ` in place (its columns are `W`'s rows, so it packs
/// nothing), each block walking all `co` rows of `W` at once; in chunks of
/// 256 rows, summed into the result, the 512-channel layers run faster
/// (`cargo bench --bench kernels`, input gradient: 2×512×8×8 4.1–4.4 → 3.1
/// ms, 1×512×8×8 2.2 → 1.7, 1×512×4×4 1.4 → 1.2; 128 and 384 were slower).
const INPUT_GRADIENT_KC: usize = 256;

/// `cols [kk, t] = Wᵀ · dY` for the kernel `w [co, kk]` and `dy`, `co`
/// rows of `t` values (the input gradient's product before col2im), in
/// chunks of [`INPUT_GRADIENT_KC`] output channels.
///
/// # Safety
///
/// As [`matmul`] with `m, n, k = kk, t, co`.
unsafe fn input_columns(
    g: &ConvGeom,
    cols: Operand<*mut f32>,
    t: usize,
    w: &[f32],
    dy: Operand<*const f32>,
    par: Parallelism,
) {
    let kk = g.kk();
    let mut o0 = 0;
    while o0 < g.co {
        let kc = INPUT_GRADIENT_KC.min(g.co - o0);
        // SAFETY: rows o0..o0+kc of `w` and of `dy` are inside them; the
        // caller's contract covers the rest.
        unsafe {
            matmul(
                [kk, t, kc],
                cols,
                o0 > 0,
                transposed(w.as_ptr().add(o0 * kk), kk),
                Operand {
                    ptr: dy.ptr.add(o0 * dy.rs),
                    ..dy
                },
                par,
            )
        }
        o0 += kc;
    }
}

/// A row-major operand at `ptr` with row stride `rs`.
fn row_major<P>(ptr: P, rs: usize) -> Operand<P> {
    Operand { ptr, rs, cs: 1 }
}

/// A transposed view: element (i, j) at `ptr + j·stride + i`.
fn transposed<P>(ptr: P, stride: usize) -> Operand<P> {
    Operand {
        ptr,
        rs: 1,
        cs: stride,
    }
}

/// Unfolds output rows `r0..r0+rows` of one image into `cols [ci·k·k, rows·wo]`
/// whose rows are `rs` values apart (`rs` ≥ `rows·wo`; more when several
/// images share the matrix, each in its own columns).
fn im2col(
    g: &ConvGeom,
    img: &[f32],
    (r0, rows): (usize, usize),
    (cols, rs): (&mut [f32], usize),
    par: bool,
) {
    let t = rows * g.wo;
    let kk2 = g.k * g.k;
    let same = g.s == 1 && g.wo == g.w && g.ho == g.h;
    // Strided taps that overlap (3×3 /2, 7×7 /2) read each input value
    // several times: split the band's input rows by column phase once, and
    // every tap's row is one contiguous copy instead of a strided gather.
    let split = phases(g, r0, rows);
    let channel = |(c, chunk): (usize, &mut [f32])| {
        let plane = &img[c * g.hw_in()..][..g.hw_in()];
        let phases = split
            .as_ref()
            .map(|(start, rows)| (start, rows.0, phase_split(plane, g.w, g.s, *rows)));
        for ky in 0..g.k {
            for kx in 0..g.k {
                let dst = &mut chunk[(ky * g.k + kx) * rs..][..t];
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
                    if hi == lo {
                        continue;
                    }
                    let ix0 = lo * g.s + kx - g.p;
                    if g.s == 1 {
                        row[lo..hi].copy_from_slice(&src[ix0..ix0 + hi - lo]);
                    } else if let Some((start, y0, phases)) = &phases {
                        // src[ix0 + o·s] is phase ix0 % s's value ix0 / s + o.
                        let at = (iy - y0) * g.w + start[ix0 % g.s] + ix0 / g.s;
                        row[lo..hi].copy_from_slice(&phases[at..][..hi - lo]);
                    } else {
                        for (o, v) in row[lo..hi].iter_mut().enumerate() {
                            *v = src[ix0 + o * g.s];
                        }
                    }
                }
            }
        }
    };
    let cols = &mut cols[..(g.ci * kk2 - 1) * rs + t];
    if par {
        cols.par_chunks_mut(kk2 * rs).enumerate().for_each(channel);
    } else {
        cols.chunks_mut(kk2 * rs).enumerate().for_each(channel);
    }
}

/// The column phases of a band (output rows `r0..r0+rows`) whose strided
/// taps overlap (3×3 /2, 7×7 /2; `None` for others and empty bands): where
/// each phase starts in a regrouped row (phase `q` holds columns `q, q + s,
/// …`, after the earlier phases), and the input rows `y0..y1` the band reads.
fn phases(g: &ConvGeom, r0: usize, rows: usize) -> Option<(Vec<usize>, (usize, usize))> {
    if g.s == 1 || g.k <= g.s || rows == 0 {
        return None;
    }
    let y0 = (r0 * g.s).saturating_sub(g.p).min(g.h);
    let y1 = ((r0 + rows - 1) * g.s + g.k)
        .saturating_sub(g.p)
        .clamp(y0, g.h);
    let start: Vec<usize> = (0..g.s)
        .scan(0, |at, q| {
            let start = *at;
            *at += g.w.saturating_sub(q).div_ceil(g.s);
            Some(start)
        })
        .collect();
    Some((start, (y0, y1)))
}

/// Rows `y0..y1` of a `w`-wide `plane`, each row's columns regrouped by
/// phase: columns `q, q + s, q + 2s, …` for `q = 0, 1, …, s − 1`, one
/// after another (phase `q` starts at the sum of the earlier phases' lengths).
fn phase_split(plane: &[f32], w: usize, s: usize, (y0, y1): (usize, usize)) -> Vec<f32> {
    let mut out = Vec::with_capacity((y1 - y0) * w);
    for row in plane[y0 * w..y1 * w].chunks_exact(w) {
        for q in 0..s {
            out.extend(row.iter().skip(q).step_by(s));
        }
    }
    out
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

/// Adds `cols [ci·k·k, rows·wo]` (rows `rs` values apart, as in
/// [`im2col`]) back onto the input rows they came from.
/// `par`: parallel over channels (each channel's rows add to its own plane).
///
/// Strided taps that overlap (3×3 /2) add into the band's input rows
/// regrouped by column phase, as [`im2col`] reads them: each tap's row is
/// then one contiguous run of adds (vectorized), and the regrouped rows go
/// back to their columns once at the end, instead of every tap adding to
/// every other column (`cargo bench --bench kernels`, input gradient
/// 2×32×128² → 64, 3×3 /2: 2.72–3.07 → 2.13–2.38 ms).
fn col2im(
    g: &ConvGeom,
    (cols, rs): (&[f32], usize),
    (r0, rows): (usize, usize),
    img: &mut [f32],
    par: bool,
) {
    let t = rows * g.wo;
    let kk2 = g.k * g.k;
    let split = phases(g, r0, rows);
    let channel = |(plane, chunk): (&mut [f32], &[f32])| {
        let mut regrouped = split
            .as_ref()
            .map(|(_, (y0, y1))| vec![0.0f32; (y1 - y0) * g.w]);
        for ky in 0..g.k {
            for kx in 0..g.k {
                let src = &chunk[(ky * g.k + kx) * rs..][..t];
                let (lo, hi) = g.inside_cols(kx);
                for r in 0..rows {
                    let Some(iy) = g.input_row(r0 + r, ky) else {
                        continue;
                    };
                    let row = &src[r * g.wo..][lo..hi];
                    let ix0 = lo * g.s + kx - g.p;
                    if let (Some((start, (y0, _))), Some(buf)) = (&split, &mut regrouped) {
                        // src[o] goes to column ix0 + o·s: phase ix0 % s's
                        // value ix0 / s + o.
                        let at = (iy - y0) * g.w + start[ix0 % g.s] + ix0 / g.s;
                        for (d, v) in buf[at..][..row.len()].iter_mut().zip(row) {
                            *d += v;
                        }
                        continue;
                    }
                    let dst = &mut plane[iy * g.w..][..g.w];
                    for (o, v) in row.iter().enumerate() {
                        dst[ix0 + o * g.s] += v;
                    }
                }
            }
        }
        if let (Some((start, (y0, y1))), Some(buf)) = (&split, &regrouped) {
            for (iy, from) in (*y0..*y1).zip(buf.chunks_exact(g.w)) {
                let dst = &mut plane[iy * g.w..][..g.w];
                if g.s == 2 {
                    // Even and odd columns in pairs (vectorizes), then an
                    // odd width's last column.
                    let (even, odd) = from.split_at(start[1]);
                    for ((d, &a), &b) in dst.chunks_exact_mut(2).zip(even).zip(odd) {
                        d[0] += a;
                        d[1] += b;
                    }
                    if g.w % 2 == 1 {
                        dst[g.w - 1] += even[g.w / 2];
                    }
                    continue;
                }
                for (q, &at) in start.iter().enumerate() {
                    let len = g.w.saturating_sub(q).div_ceil(g.s);
                    for (j, v) in from[at..][..len].iter().enumerate() {
                        dst[q + j * g.s] += v;
                    }
                }
            }
        }
    };
    let cols = &cols[..(g.ci * kk2 - 1) * rs + t];
    if par {
        img.par_chunks_mut(g.hw_in())
            .zip(cols.par_chunks(kk2 * rs))
            .for_each(channel);
    } else {
        img.chunks_mut(g.hw_in())
            .zip(cols.chunks(kk2 * rs))
            .for_each(channel);
    }
}

/// Calls `f` with the unfolded band (output rows `r0..r0+rows` of image
/// `img`) as a `[ci·k·k, rows·wo]` matrix: its values and row stride (row
/// `r` is `cols[r·stride..][..rows·wo]`). A 1×1 stride-1 convolution reads
/// the image itself (rows of `h·w` from pixel `r0·wo`); others im2col into
/// this thread's scratch buffer (`par`: im2col parallel over channels).
fn with_cols<R>(
    g: &ConvGeom,
    img: &[f32],
    (r0, rows): (usize, usize),
    par: bool,
    f: impl FnOnce(&[f32], usize) -> R,
) -> R {
    if g.pointwise() {
        return f(&img[r0 * g.wo..], g.hw_in());
    }
    let t = rows * g.wo;
    with_scratch(g.kk() * t, |cols| {
        im2col(g, img, (r0, rows), (cols, t), par);
        f(cols, t)
    })
}

/// Forward: `x [n, ci, h, w]`, `w [co, ci, k, k]` → `y [n, co, ho, wo]`.
pub fn forward(g: &ConvGeom, x: &[f32], w: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), g.n * g.ci * g.hw_in(), "conv input size");
    assert_eq!(w.len(), g.co * g.kk(), "conv kernel size");
    if winograd::suits(g) {
        return winograd::conv(g, Input::one(x), forward_weights(g, w));
    }
    if direct::suits(g) {
        return direct::conv(g, Input::one(x), forward_weights(g, w));
    }
    if g.whole_batch() {
        return batch::forward(g, x, w);
    }
    let units = g.bands();
    let outer = outer_parallel(units.len());
    let par = inner(outer);
    let fill = |y: *mut f32| {
        let y = SendPtr(y);
        let band = |&(n, r0, rows): &(usize, usize, usize)| {
            let img = &x[n * g.ci * g.hw_in()..][..g.ci * g.hw_in()];
            let t = rows * g.wo;
            // SAFETY: the offset of output row r0 of image n lies inside the
            // `n·co·ho·wo` values `output` allocated.
            let dst = unsafe { y.get().add(n * g.co * g.hw_out() + r0 * g.wo) };
            with_cols(g, img, (r0, rows), !outer, |cols, cols_rs| {
                // SAFETY: `dst` reaches rows r0..r0+rows of every output
                // channel of image n (row stride ho·wo): inside the output,
                // and written by this band only; `w` is `co×kk` and `cols`
                // `kk×t` with row stride `cols_rs` (see `with_cols`).
                unsafe {
                    matmul(
                        [g.co, t, g.kk()],
                        row_major(dst, g.hw_out()),
                        false,
                        row_major(w.as_ptr(), g.kk()),
                        row_major(cols.as_ptr(), cols_rs),
                        par,
                    )
                }
            });
        };
        if outer {
            units.par_iter().for_each(band);
        } else {
            units.iter().for_each(band);
        }
    };
    // SAFETY: the bands cover every output row of every image, and each
    // band's `gemm` (k = ci·k·k ≥ 1, `ConvGeom::new` rejects empty shapes)
    // writes all `co × rows·wo` values of its rows.
    unsafe { output(g.n * g.co * g.hw_out(), fill) }
}

/// [`forward`] of the channel concatenation of `a [n, ca, h, w]` and
/// `b [n, ci − ca, h, w]`: the direct kernel reads both in place; im2col +
/// `gemm` gets the concatenation written out.
pub fn forward_cat(g: &ConvGeom, a: &[f32], ca: usize, b: &[f32], w: &[f32]) -> Vec<f32> {
    assert_eq!(a.len() + b.len(), g.n * g.ci * g.hw_in(), "conv input size");
    assert_eq!(a.len(), g.n * ca * g.hw_in(), "conv first input size");
    let x = Input::cat(a, ca, b);
    if winograd::suits(g) {
        return winograd::conv(g, x, forward_weights(g, w));
    }
    if direct::suits(g) {
        return direct::conv(g, x, forward_weights(g, w));
    }
    forward(g, &x.concatenated(g), w)
}

/// The forward's kernel `w [co, ci, k, k]` for the direct convolution.
fn forward_weights<'a>(g: &ConvGeom, w: &'a [f32]) -> Weights<'a> {
    Weights {
        data: w,
        out_stride: g.kk(),
        in_stride: g.k * g.k,
        flipped: false,
    }
}

/// The kernel of the input gradient's correlation: `W'[c][o]` is `W[o][c]`
/// with its `k×k` taps reversed.
///
/// Blocks of input channels, so each kernel row `W[o]` is read as one run of
/// `BLOCK·k·k` contiguous values: reading `W[o][c]` for one `c` at a time
/// jumps `ci·k·k` values per read and took 4–8 ms for a 512×512×3×3 kernel,
/// longer than the convolution it feeds.
fn flip_transpose(g: &ConvGeom, w: &[f32]) -> Vec<f32> {
    const BLOCK: usize = 16;
    let k2 = g.k * g.k;
    let row = g.co * k2;
    let mut flipped = vec![0.0; w.len()];
    flipped
        .par_chunks_mut(BLOCK * row)
        .enumerate()
        .for_each(|(b, rows)| {
            let c0 = b * BLOCK;
            let nb = rows.len() / row;
            for o in 0..g.co {
                let src = &w[(o * g.ci + c0) * k2..][..nb * k2];
                for (j, taps) in src.chunks_exact(k2).enumerate() {
                    let dst = &mut rows[j * row + o * k2..][..k2];
                    for (d, s) in dst.iter_mut().zip(taps.iter().rev()) {
                        *d = *s;
                    }
                }
            }
        });
    flipped
}

/// Input gradient: `dy [n, co, ho, wo]`, `w [co, ci, k, k]` → `dx [n, ci, h, w]`.
pub fn backward_input(g: &ConvGeom, dy: &[f32], w: &[f32]) -> Vec<f32> {
    assert_eq!(
        dy.len(),
        g.n * g.co * g.hw_out(),
        "conv output-gradient size"
    );
    assert_eq!(w.len(), g.co * g.kk(), "conv kernel size");
    // Stride 1: a correlation of dY. The direct kernel reads the flipped
    // kernel in place; for im2col + gemm it costs a pass over the kernel, and
    // col2im one over the unfolded gradient: flip unless the kernel is the
    // larger (more output channels than batch × pixels: 512 channels at 8×8).
    if g.s == 1 && g.p < g.k {
        // dX = dY ⋆ W' with W'[ci][co] = W[co][ci] flipped, padding k−1−p.
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
        // W' read in place: W'(c, o, tap) = W[o][c][k²−1−tap].
        let flipped = Weights {
            data: w,
            out_stride: g.k * g.k,
            in_stride: g.kk(),
            flipped: true,
        };
        if winograd::suits(&t) {
            return winograd::conv(&t, Input::one(dy), flipped);
        }
        if direct::suits(&t) {
            return direct::conv(&t, Input::one(dy), flipped);
        }
        if g.co <= g.n * g.hw_out() {
            return forward(&t, dy, &flip_transpose(g, w));
        }
    }
    if g.whole_batch() {
        return batch::backward_input(g, dy, w);
    }
    let mut dx = vec![0.0; g.n * g.ci * g.hw_in()];
    // Bands of one image add into overlapping input rows, so they run in
    // order; images run in parallel where there are enough of them.
    let bands = g.bands();
    let outer = images_in_parallel(g.n);
    let par = inner(outer);
    let image = |(n, img): (usize, &mut [f32])| {
        for &(_, r0, rows) in bands.iter().filter(|b| b.0 == n) {
            let t = rows * g.wo;
            let dy_band = &dy[n * g.co * g.hw_out() + r0 * g.wo..];
            with_scratch(g.kk() * t, |cols| {
                // cols = Wᵀ · dY[n][:, band]
                // SAFETY: `cols` holds kk×t values; `w` (co×kk) is read
                // transposed; `dy_band` reaches co rows of t values at stride
                // ho·wo from output row r0 of image n, inside `dy`; `cols` is this
                // thread's own buffer.
                unsafe {
                    input_columns(
                        g,
                        row_major(cols.as_mut_ptr(), t),
                        t,
                        w,
                        row_major(dy_band.as_ptr(), g.hw_out()),
                        par,
                    )
                }
                col2im(g, (cols, t), (r0, rows), img, !outer);
            });
        }
    };
    let len = g.ci * g.hw_in();
    if outer {
        dx.par_chunks_mut(len).enumerate().for_each(image);
    } else {
        dx.chunks_mut(len).enumerate().for_each(image);
    }
    dx
}

/// Bands of at least this many pixels take the weight gradient's product
/// as row dot products ([`dot_gemm`]); shorter rows (deep layers, small
/// maps) leave too few multiply-adds per lane sum, and go to `gemm`.
const DOT_MIN_PIXELS: usize = 256;

/// Whether the weight gradient's product of bands of `t` pixels runs as
/// row dot products: for 1×1 convolutions, where `gemm` spends more time
/// packing (transposing) its operands than multiplying — 2–3× faster there
/// (`cargo bench --bench kernels`: 1×1 at 128², 20–33 → 70–120 GFLOP/s) —
/// and for layers of at most [`SKINNY_CO`] output channels, whose `gemm`
/// has too few rows to pay for packing the unfolded input. Other 3×3 and
/// 7×7 layers keep `gemm`, as fast or faster: stride 1 100–190 against
/// 90–125 GFLOP/s (at 32 output channels 8.7–9.1 against 10.4–10.5 ms);
/// strided, in interleaved kernels-bench rounds, dot products against
/// `gemm`: 2×128×32² → 256, 3×3 /2 3.6–4.6 against 2.4–2.6 ms, 2×32×128² →
/// 64 3.2–4.1 against 2.4–2.5, 8×16×48² → 32 0.62–0.86 against 0.49–0.52,
/// the stem 2×3×256² → 32, 7×7 /2 3.0–3.1 against 2.7–3.3.
fn dot_product_weight_gradient(g: &ConvGeom, t: usize) -> bool {
    (g.k == 1 || g.co <= SKINNY_CO) && t >= DOT_MIN_PIXELS && dot_gemm::available()
}

/// Output channels up to which every weight gradient takes the dot-product
/// path: 8×32×48² → 16, 3×3 (the main command's last decoder step) 2.1–2.2
/// → 1.5–1.6 ms through im2col, and since without it (`direct_wgrad.rs`,
/// stride 1, rows of 12 outputs or more) 1.9 → 1.5–1.6 on a slower day.
const SKINNY_CO: usize = 16;

/// `acc [co, kk] += dY_band · colsᵀ` for a band of `t` pixels; the output
/// channels are split across threads unless bands already run in parallel.
fn dot_rows(g: &ConvGeom, dy_band: &[f32], cols: Rows, t: usize, acc: &mut [f32], outer: bool) {
    let threads = rayon::current_num_threads();
    let kk = g.kk();
    let dy_rows =
        |o0: usize, count: usize| Rows::strided(&dy_band[o0 * g.hw_out()..], g.hw_out(), count);
    if outer || threads == 1 {
        return dot_gemm(t, dy_rows(0, g.co), cols, acc, kk, true);
    }
    let per = g.co.div_ceil(threads).next_multiple_of(4);
    acc.par_chunks_mut(per * kk)
        .enumerate()
        .for_each(|(p, part)| dot_gemm(t, dy_rows(p * per, part.len() / kk), cols, part, kk, true));
}

/// Weight gradient: `x [n, ci, h, w]`, `dy [n, co, ho, wo]` → `dw [co, ci, k, k]`.
pub fn backward_weight(g: &ConvGeom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), g.n * g.ci * g.hw_in(), "conv input size");
    assert_eq!(
        dy.len(),
        g.n * g.co * g.hw_out(),
        "conv output-gradient size"
    );
    if winograd::suits(g) {
        return winograd::weight_gradient(g, x, dy);
    }
    if direct_wgrad::suits(g) {
        return direct_wgrad::backward_weight(g, x, dy);
    }
    if g.whole_batch() && !dot_product_weight_gradient(g, g.hw_out()) {
        return batch::backward_weight(g, x, dy);
    }
    let units = g.bands();
    let outer = outer_parallel(units.len());
    let par = inner(outer);
    let len = g.co * g.kk();
    let dot = |&(_, _, rows): &(usize, usize, usize)| dot_product_weight_gradient(g, rows * g.wo);
    // dW (+)= dY_band · colsᵀ into the co×kk values at `acc`; `add` false
    // overwrites them (a `gemm` band only: the dot-product path adds).
    let accumulate = |acc: SendPtr, &(n, r0, rows): &(usize, usize, usize), add: bool| {
        let img = &x[n * g.ci * g.hw_in()..][..g.ci * g.hw_in()];
        let t = rows * g.wo;
        let dy_band = &dy[n * g.co * g.hw_out() + r0 * g.wo..];
        with_cols(g, img, (r0, rows), !outer, |cols, cols_rs| {
            if dot_product_weight_gradient(g, t) {
                debug_assert!(add, "the dot-product path adds to initialized values");
                let b = Rows::strided(cols, cols_rs, g.kk());
                // SAFETY: `acc` points at this task's own co×kk values,
                // initialized (`add` is true on this path).
                let acc = unsafe { std::slice::from_raw_parts_mut(acc.get(), len) };
                dot_rows(g, dy_band, b, t, acc, outer);
                return;
            }
            // SAFETY: `acc` points at this task's own co×kk values;
            // `dy_band` reaches co rows of t values at stride ho·wo inside
            // `dy`; `cols` is kk×t with row stride `cols_rs` (see `with_cols`).
            unsafe {
                matmul(
                    [g.co, g.kk(), t],
                    row_major(acc.get(), g.kk()),
                    add,
                    row_major(dy_band.as_ptr(), g.hw_out()),
                    transposed(cols.as_ptr(), cols_rs),
                    par,
                )
            }
        });
    };
    // One task's sum over its bands: a first `gemm` band writes the sum
    // without a zeroing pass first (up to 9 MB for a 512-channel kernel).
    let sum = |units: &[(usize, usize, usize)]| -> Vec<f32> {
        let Some((first, rest)) = units.split_first().filter(|(u, _)| !dot(u)) else {
            let mut acc = vec![0.0; len];
            let ptr = SendPtr(acc.as_mut_ptr());
            units.iter().for_each(|u| accumulate(ptr, u, true));
            return acc;
        };
        let fill = |p: *mut f32| {
            accumulate(SendPtr(p), first, false);
            rest.iter().for_each(|u| accumulate(SendPtr(p), u, true));
        };
        // SAFETY: the first band's `gemm` (k = t ≥ 1) overwrites all co×kk
        // values before the others add to them.
        unsafe { output(len, fill) }
    };
    sum_by_shares(&units, outer, len, sum)
}

/// The CPU kernel, plugged into Burn.
#[backend_extension(Flex, Autodiff)]
pub trait Conv2dOp: Backend {
    /// `conv2d` with groups 1, dilation 1, a square kernel and symmetric
    /// padding; no bias.
    fn conv2d_cpu(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        p: ConvParams,
    ) -> FloatTensor<Self>;
}

/// The convolution of a channel concatenation, plugged into Burn.
#[backend_extension(Flex, Autodiff)]
pub trait Conv2dCatOp: Backend {
    /// `conv2d_cpu` of `cat([a, b], 1)`.
    fn conv2d_cat_cpu(
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        p: ConvParams,
    ) -> FloatTensor<Self>;
}

impl Conv2dCatOp for Flex {
    fn conv2d_cat_cpu(
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        p: ConvParams,
    ) -> FloatTensor<Self> {
        let [a, b, w] = inputs([a, b, weight]);
        let ([n, ca, h, wd], [_, cb, _, _]) = (dims4(&a), dims4(&b));
        let g = geometry("conv2d_cat_cpu", [n, ca + cb, h, wd], &w, p);
        timed_forward(&g, || forward_cat(&g, slice(&a), ca, slice(&b), slice(&w)))
    }
}

impl<C: CheckpointStrategy> Conv2dCatOp for Autodiff<Flex, C> {
    fn conv2d_cat_cpu(
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        p: ConvParams,
    ) -> FloatTensor<Self> {
        // The weight gradient reads the input as one tensor: write it.
        let x = Self::float_cat(vec![a, b], 1);
        <Self as Conv2dOp>::conv2d_cpu(x, weight, p)
    }
}

/// The convolutions with a kernel transformed for Winograd, plugged into
/// Burn: the transformed kernel on Flex, the kernel itself (and its
/// gradients) when training.
#[backend_extension(Flex, Autodiff)]
pub trait Conv2dWinogradOp: Backend {
    /// `conv2d_cpu` with the kernel's Winograd transform `u` at hand.
    fn conv2d_winograd_cpu(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        u: FloatTensor<Self>,
        p: ConvParams,
    ) -> FloatTensor<Self>;

    /// `conv2d_cat_cpu` with the kernel's Winograd transform `u` at hand.
    fn conv2d_cat_winograd_cpu(
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        u: FloatTensor<Self>,
        p: ConvParams,
    ) -> FloatTensor<Self>;
}

impl Conv2dWinogradOp for Flex {
    fn conv2d_winograd_cpu(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        u: FloatTensor<Self>,
        p: ConvParams,
    ) -> FloatTensor<Self> {
        let [x, w, u] = inputs([x, weight, u]);
        let g = geometry("conv2d_winograd_cpu", dims4(&x), &w, p);
        timed_forward(&g, || {
            if winograd::prepared_suits(&g) {
                winograd::conv_prepared(&g, Input::one(slice(&x)), slice(&u))
            } else {
                forward(&g, slice(&x), slice(&w))
            }
        })
    }

    fn conv2d_cat_winograd_cpu(
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        u: FloatTensor<Self>,
        p: ConvParams,
    ) -> FloatTensor<Self> {
        let [a, b, w, u] = inputs([a, b, weight, u]);
        let ([n, ca, h, wd], [_, cb, _, _]) = (dims4(&a), dims4(&b));
        let g = geometry("conv2d_cat_winograd_cpu", [n, ca + cb, h, wd], &w, p);
        timed_forward(&g, || {
            if winograd::prepared_suits(&g) {
                winograd::conv_prepared(&g, Input::cat(slice(&a), ca, slice(&b)), slice(&u))
            } else {
                forward_cat(&g, slice(&a), ca, slice(&b), slice(&w))
            }
        })
    }
}

impl<C: CheckpointStrategy> Conv2dWinogradOp for Autodiff<Flex, C> {
    fn conv2d_winograd_cpu(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        _u: FloatTensor<Self>,
        p: ConvParams,
    ) -> FloatTensor<Self> {
        <Self as Conv2dOp>::conv2d_cpu(x, weight, p)
    }

    fn conv2d_cat_winograd_cpu(
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        _u: FloatTensor<Self>,
        p: ConvParams,
    ) -> FloatTensor<Self> {
        <Self as Conv2dCatOp>::conv2d_cat_cpu(a, b, weight, p)
    }
}

/// What the backward needs: the input, the kernel and the geometry.
type State = (FlexTensor, FlexTensor, ConvGeom);

fn run([x, w]: [FlexTensor; 2], p: ConvParams) -> (FlexTensor, State) {
    let g = geometry("conv2d_cpu", dims4(&x), &w, p);
    let y = timed_forward(&g, || forward(&g, slice(&x), slice(&w)));
    (y, (x, w, g))
}

/// The geometry of an input of `dims` convolved with `w`; a mismatch is the
/// caller's bug (`cpu_params` checked the shapes), named by `op`.
fn geometry(op: &str, dims: [usize; 4], w: &FlexTensor, p: ConvParams) -> ConvGeom {
    ConvGeom::new(dims, dims4(w), p.stride, p.padding).unwrap_or_else(|| {
        panic!(
            "{op}: input {dims:?} and kernel {:?} ({p:?}) do not fit",
            dims4(w)
        )
    })
}

/// The forward `f` of `g`, timed for the profile, as a tensor.
fn timed_forward(g: &ConvGeom, f: impl FnOnce() -> Vec<f32>) -> FlexTensor {
    let y = profile::timed("conv forward", || work(g), f);
    tensor(y, [g.n, g.co, g.ho, g.wo])
}

/// A convolution pass's row in the profile: every pass does the same
/// multiply-adds and touches an input, the kernel and an output.
fn work(g: &ConvGeom) -> Work {
    let shape = format!(
        "{} → {}, {k}×{k} /{s}",
        profile::dims([g.n, g.ci, g.h, g.w]),
        g.co,
        k = g.k,
        s = g.s
    );
    let values = g.n * g.ci * g.h * g.w + g.co * g.ci * g.k * g.k + g.n * g.co * g.ho * g.wo;
    (shape, 2.0 * g.macs() as f64, profile::f32_bytes(values))
}

impl Conv2dOp for Flex {
    fn conv2d_cpu(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        p: ConvParams,
    ) -> FloatTensor<Self> {
        run(inputs([x, weight]), p).0
    }
}

impl<C: CheckpointStrategy> Conv2dOp for Autodiff<Flex, C> {
    fn conv2d_cpu(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        p: ConvParams,
    ) -> FloatTensor<Self> {
        record::<_, C, _>(Conv2dBackward, [x, weight], |xw| run(xw, p))
    }
}

#[derive(Debug)]
struct Conv2dBackward;

impl Backward<Flex, 2> for Conv2dBackward {
    type State = State;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let dy = contiguous(grads.consume::<Flex>(&ops.node));
        let (x, w, g) = ops.state;
        if let Some(node) = node_x {
            let dx = profile::timed(
                "conv input gradient",
                || work(&g),
                || backward_input(&g, slice(&dy), slice(&w)),
            );
            grads.register::<Flex>(node.id, tensor(dx, [g.n, g.ci, g.h, g.w]));
        }
        if let Some(node) = node_w {
            let dw = profile::timed(
                "conv weight gradient",
                || work(&g),
                || backward_weight(&g, slice(&x), slice(&dy)),
            );
            grads.register::<Flex>(node.id, tensor(dw, [g.co, g.ci, g.k, g.k]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::flex::assert_close;
    use burn::tensor::{Device, Distribution};

    /// Every multiply of the direct definition of the convolution, as
    /// `(output index, input index, weight index)`; padded taps are skipped.
    pub(super) fn taps(g: &ConvGeom) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
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
    pub(super) fn reference(g: &ConvGeom, x: &[f32], w: &[f32]) -> Vec<f64> {
        let mut y = vec![0.0f64; g.n * g.co * g.ho * g.wo];
        for (yi, xi, wi) in taps(g) {
            y[yi] += x[xi] as f64 * w[wi] as f64;
        }
        y
    }

    pub(super) fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                let v = (i as u32).wrapping_mul(2654435761).wrapping_add(seed * 97);
                ((v >> 8) % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    pub(super) fn close(a: &[f32], b: &[f64], what: &str) {
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
    pub(super) fn reference_grads(
        g: &ConvGeom,
        x: &[f32],
        w: &[f32],
        dy: &[f32],
    ) -> (Vec<f64>, Vec<f64>) {
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
            // Input channels past a whole block of the flipped kernel.
            (1, 21, 4, 5, 3, 3, 1, 1),
            // More output channels than pixels: the stride-1 input gradient
            // through Wᵀ·dY and col2im instead of the flipped kernel.
            (1, 6, 3, 3, 16, 3, 1, 1),
            // Bands of ≥ DOT_MIN_PIXELS: 1×1 and skinny strided weight
            // gradients as row dot products (where the CPU has AVX2 + FMA).
            (2, 5, 17, 19, 6, 1, 1, 0),
            (1, 3, 40, 41, 5, 3, 2, 1),
            // One row per band: bands that start above and end below the image.
            (1, 32, 3, 1000, 2, 3, 1, 1),
            // 1×1 maps: padding all around, pointwise, strided.
            (1, 4, 1, 1, 3, 3, 1, 1),
            (2, 3, 1, 1, 5, 1, 1, 0),
            (1, 2, 1, 1, 3, 3, 2, 1),
            // A one-row image, strided.
            (1, 2, 1, 7, 3, 3, 2, 1),
            // Stride 3 with overlapping taps: three column phases of 4, 3, 3.
            (1, 2, 11, 10, 3, 5, 3, 2),
            // Strided taps that do not overlap (1×1 /2) on one image: col2im
            // adds each straight to its column, not through the phases.
            (1, 4, 9, 8, 3, 1, 2, 0),
            // One input and one output channel.
            (1, 1, 6, 5, 1, 3, 1, 1),
            // The whole batch as one band (batch.rs; so are the small
            // batched cases above): col2im after Wᵀ·dY with more output
            // channels than pixels, and strided.
            (3, 6, 3, 3, 40, 3, 1, 1),
            (2, 8, 6, 6, 12, 3, 2, 1),
            // Wᵀ·dY in two chunks of output channels (INPUT_GRADIENT_KC).
            (1, 3, 3, 3, 300, 3, 1, 1),
            (2, 2, 4, 4, 260, 3, 2, 1),
        ];
        for (i, &(n, ci, h, w, co, k, s, p)) in cases.iter().enumerate() {
            let g = ConvGeom::new([n, ci, h, w], [co, ci, k, k], s, p).unwrap();
            let pointwise = k == 1 && s == 1 && p == 0;
            assert_eq!(g.whole_batch(), n > 1 && !pointwise, "{g:?}");
            let x = values(n * ci * h * w, 1 + i as u32);
            let wt = values(co * ci * k * k, 50 + i as u32);
            let dy = values(n * co * g.ho * g.wo, 100 + i as u32);
            close(&forward(&g, &x, &wt), &reference(&g, &x, &wt), "y");
            let (dx, dw) = reference_grads(&g, &x, &wt, &dy);
            close(&backward_input(&g, &dy, &wt), &dx, "dx");
            close(&backward_weight(&g, &x, &dy), &dw, "dw");
        }
    }

    /// Paths the small cases above do not reach: a strided input gradient
    /// of several images too large for one band, each image's bands (whose
    /// col2im rows overlap) in order on its own thread; and a stride-1 3×3
    /// weight gradient of at most `SKINNY_CO` output channels as row dot
    /// products.
    #[test]
    fn images_in_parallel_and_skinny_weight_gradients_match_the_definition() {
        for (i, &(n, ci, h, w, co, k, s, p)) in
            [(3, 16, 130, 127, 5, 3, 2, 1), (1, 4, 20, 21, 6, 3, 1, 1)]
                .iter()
                .enumerate()
        {
            let g = ConvGeom::new([n, ci, h, w], [co, ci, k, k], s, p).unwrap();
            assert!(!g.whole_batch(), "{g:?}");
            if n > 1 {
                assert!(g.bands().len() >= 2 * n, "{:?}", g.bands());
            }
            let x = values(n * ci * h * w, 7 + i as u32);
            let wt = values(co * ci * k * k, 70 + i as u32);
            let dy = values(n * co * g.ho * g.wo, 170 + i as u32);
            let (dx, dw) = reference_grads(&g, &x, &wt, &dy);
            close(&backward_input(&g, &dy, &wt), &dx, "dx");
            close(&backward_weight(&g, &x, &dy), &dw, "dw");
        }
    }

    /// The weight gradient without im2col (`direct_wgrad.rs`): images in
    /// parallel and one after another with the output channels split, with
    /// padding 1, none ("valid", a 5×5 kernel) and k − 1.
    #[test]
    fn weight_gradients_from_padded_planes_match_the_definition() {
        for (i, &(n, ci, h, w, co, k, s, p)) in [
            (3, 5, 14, 13, 7, 3, 1, 1),
            (1, 4, 12, 17, 16, 5, 1, 0),
            (2, 3, 9, 14, 5, 3, 1, 2),
        ]
        .iter()
        .enumerate()
        {
            let g = ConvGeom::new([n, ci, h, w], [co, ci, k, k], s, p).unwrap();
            if crate::ops::skip_without_simd(dot_gemm::available(), "dot-product gemm") {
                return;
            }
            assert!(direct_wgrad::suits(&g), "{g:?}");
            let x = values(n * ci * h * w, 9 + i as u32);
            let wt = values(co * ci * k * k, 90 + i as u32);
            let dy = values(n * co * g.ho * g.wo, 190 + i as u32);
            let (_, dw) = reference_grads(&g, &x, &wt, &dy);
            close(&backward_weight(&g, &x, &dy), &dw, "dw");
        }
    }

    /// Empty tensors never reach the kernel (whose output would otherwise
    /// stay unwritten): the geometry refuses every zero size, and the op
    /// then runs Burn's convolution.
    #[test]
    fn degenerate_shapes_are_left_to_burn() {
        let ok = ConvGeom::new([1, 2, 5, 5], [3, 2, 3, 3], 1, 1);
        assert!(ok.is_some());
        for (x, w, s) in [
            ([0, 2, 5, 5], [3, 2, 3, 3], 1),
            ([1, 0, 5, 5], [3, 0, 3, 3], 1),
            ([1, 2, 0, 5], [3, 2, 3, 3], 1),
            ([1, 2, 5, 0], [3, 2, 3, 3], 1),
            ([1, 2, 5, 5], [0, 2, 3, 3], 1),
            ([1, 2, 5, 5], [3, 2, 0, 0], 1),
            ([1, 2, 5, 5], [3, 2, 3, 3], 0),
            ([1, 2, 1, 1], [3, 2, 5, 5], 1),
        ] {
            assert_eq!(ConvGeom::new(x, w, s, 1), None, "{x:?} {w:?} stride {s}");
        }
        let device = Device::flex();
        let x = Tensor::<4>::zeros([0, 2, 5, 5], &device);
        let w = Tensor::<4>::ones([3, 2, 3, 3], &device);
        let y = conv2d(x, w, None, ConvOptions::new([1, 1], [1, 1], [1, 1], 1));
        assert_eq!(y.dims(), [0, 3, 5, 5]);
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

    /// The custom op and Burn's composed conv2d give the same output and the
    /// same input, weight and bias gradients.
    #[test]
    fn conv2d_matches_burn_forward_and_backward() {
        let device = Device::flex().autodiff();
        // (batch, in, out, H, W, k, stride, padding)
        for (n, ci, co, h, w, k, s, p) in [
            (1, 3, 32, 17, 13, 3, 1, 1),
            (3, 5, 7, 9, 11, 3, 2, 1),
            (2, 24, 48, 8, 7, 1, 2, 0),
            (1, 6, 10, 15, 9, 7, 2, 3),
            (3, 48, 20, 6, 5, 1, 1, 0),
        ] {
            let x = Tensor::<4>::random([n, ci, h, w], Distribution::Default, &device);
            let wt = Tensor::<4>::random([co, ci, k, k], Distribution::Default, &device);
            let b = Tensor::<1>::random([co], Distribution::Default, &device);
            let dy = Tensor::<4>::random(
                [n, co, (h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1],
                Distribution::Default,
                &device,
            );
            let options = ConvOptions::new([s, s], [p, p], [1, 1], 1);
            let run = |ours: bool| {
                let (x, wt, b) = (
                    x.clone().require_grad(),
                    wt.clone().require_grad(),
                    b.clone().require_grad(),
                );
                let y = if ours {
                    conv2d(x.clone(), wt.clone(), Some(b.clone()), options.clone())
                } else {
                    burn::tensor::module::conv2d(
                        x.clone(),
                        wt.clone(),
                        Some(b.clone()),
                        options.clone(),
                    )
                };
                let grads = (y.clone() * dy.clone()).sum().backward();
                (
                    y.inner(),
                    x.grad(&grads).unwrap(),
                    wt.grad(&grads).unwrap(),
                    b.grad(&grads).unwrap(),
                )
            };
            let (y0, dx0, dw0, db0) = run(false);
            let (y1, dx1, dw1, db1) = run(true);
            let what = format!("{n}×{ci}→{co} {h}×{w} k{k} s{s} p{p}");
            assert_close(y1, y0, &format!("y {what}"));
            assert_close(dx1, dx0, &format!("dx {what}"));
            assert_close(dw1, dw0, &format!("dw {what}"));
            assert_close(db1.unsqueeze(), db0.unsqueeze(), &format!("db {what}"));
        }
    }

    /// `conv2d_cat` is `conv2d` of the concatenation: the same bits on Flex
    /// (the direct kernel reading both inputs, and im2col on an 8×8 map), and
    /// on autodiff the same output and gradients of both inputs.
    #[test]
    fn conv2d_of_two_inputs_equals_conv2d_of_their_concatenation() {
        for device in [Device::flex(), Device::flex().autodiff()] {
            // (batch, channels of a and b, out, size, k, stride, padding)
            for (n, ca, cb, co, hw, k, s, p) in [
                (2, 5, 3, 10, 20, 3, 1, 1),
                (1, 4, 4, 9, 33, 3, 2, 1),
                (2, 6, 2, 8, 8, 3, 1, 1),
            ] {
                let tracked = device != Device::flex();
                let input = |c| {
                    let t = Tensor::<4>::random([n, c, hw, hw], Distribution::Default, &device);
                    if tracked { t.require_grad() } else { t }
                };
                let (a, b) = (input(ca), input(cb));
                let wt = Tensor::<4>::random([co, ca + cb, k, k], Distribution::Default, &device);
                let bias = Tensor::<1>::random([co], Distribution::Default, &device);
                let options = ConvOptions::new([s, s], [p, p], [1, 1], 1);
                let bias = Some(bias);
                let y = conv2d_cat(
                    a.clone(),
                    b.clone(),
                    wt.clone(),
                    bias.clone(),
                    options.clone(),
                );
                let cat = Tensor::cat(vec![a.clone(), b.clone()], 1);
                let want = conv2d(cat, wt, bias, options);
                let what = format!("{n}×({ca}+{cb})→{co} {hw}² k{k} s{s} tracked {tracked}");
                assert_eq!(y.to_data(), want.to_data(), "{what}");
                if tracked {
                    let dy = Tensor::<4>::random(y.dims(), Distribution::Default, &device);
                    let g1 = (y * dy.clone()).sum().backward();
                    let g0 = (want * dy).sum().backward();
                    for (t, name) in [(&a, "a"), (&b, "b")] {
                        let (got, exp) = (t.grad(&g1).unwrap(), t.grad(&g0).unwrap());
                        assert_eq!(got.to_data(), exp.to_data(), "d{name} {what}");
                    }
                }
            }
        }
    }

    #[test]
    fn other_options_fall_back_to_burn() {
        let device = Device::flex();
        let x = Tensor::<4>::random([1, 4, 9, 9], Distribution::Default, &device);
        let w = Tensor::<4>::random([4, 2, 3, 3], Distribution::Default, &device);
        let options = ConvOptions::new([1, 1], [2, 2], [2, 2], 2);
        let ours = conv2d(x.clone(), w.clone(), None, options.clone());
        let burn = burn::tensor::module::conv2d(x, w, None, options);
        assert_close(ours, burn, "grouped dilated");
    }
}
