//! The three products of im2col + `gemm` with the whole batch as one band
//! ([`ConvGeom::whole_batch`]): the deep layers' small maps (512 channels at
//! 8×8 for a 256² input), where a band per image made every `gemm` stream
//! the whole kernel (9.4 MB at 512×512×3×3) for 64 pixels. Here the images
//! sit side by side in one unfolded matrix `[ci·k·k, n·ho·wo]` (image `i`
//! in columns `i·ho·wo..`), and each product is one `gemm` over all of
//! them; output gradients and outputs go to and from the matching
//! `[co, n·ho·wo]` layout by [`swap_outer`] (small: `co × n·ho·wo` values).

use super::geom::{ConvGeom, output, with_scratch};
use rayon::prelude::*;

use super::{inner, input_columns, matmul, row_major, transposed};

/// `[a, b, hw]` → `[b, a, hw]`: `[n, co, hw]` images to the side-by-side
/// `[co, n·hw]`, and back with the two counts swapped.
fn swap_outer(v: &[f32], a: usize, b: usize, hw: usize) -> Vec<f32> {
    let mut out = vec![0.0; v.len()];
    for (i, block) in v.chunks_exact(b * hw).enumerate().take(a) {
        for (j, plane) in block.chunks_exact(hw).enumerate() {
            out[(j * a + i) * hw..][..hw].copy_from_slice(plane);
        }
    }
    out
}

/// For every tap (`ky·k + kx`) and output pixel, the input pixel it reads,
/// or `None` in the padding: the whole unfolding of a small map as one
/// table (`k²·ho·wo` entries), so that each unfolded row is one gather.
/// On 3×3 maps a row-by-row im2col makes thousands of 1–3 value copies
/// per channel, and spent as long as the `gemm` it fed.
fn reads(g: &ConvGeom) -> Vec<Option<usize>> {
    let mut table = Vec::with_capacity(g.k * g.k * g.hw_out());
    for ky in 0..g.k {
        for kx in 0..g.k {
            for oy in 0..g.ho {
                let iy = g.input_row(oy, ky);
                table.extend((0..g.wo).map(|ox| {
                    let ix = (ox * g.s + kx).checked_sub(g.p).filter(|&ix| ix < g.w);
                    iy.zip(ix).map(|(iy, ix)| iy * g.w + ix)
                }));
            }
        }
    }
    table
}

/// Unfolds every image of `x` into `cols`, side by side (row stride n·ho·wo).
fn unfold(g: &ConvGeom, x: &[f32], cols: &mut [f32]) {
    let (rs, hw) = (g.n * g.hw_out(), g.hw_out());
    let table = reads(g);
    let channel = |(c, rows): (usize, &mut [f32])| {
        for (row, taps) in rows.chunks_exact_mut(rs).zip(table.chunks_exact(hw)) {
            for (i, out) in row.chunks_exact_mut(hw).enumerate() {
                let plane = &x[(i * g.ci + c) * g.hw_in()..][..g.hw_in()];
                for (v, at) in out.iter_mut().zip(taps) {
                    *v = at.map_or(0.0, |at| plane[at]);
                }
            }
        }
    };
    cols[..g.kk() * rs]
        .par_chunks_mut(g.k * g.k * rs)
        .enumerate()
        .for_each(channel);
}

/// Adds the side-by-side unfolded gradient `cols` back onto the images'
/// pixels (`dx`, `[n, ci, h, w]`): [`unfold`]'s transpose. Each pixel sums
/// its taps in kernel order, as `col2im` does.
fn fold(g: &ConvGeom, cols: &[f32], dx: &mut [f32]) {
    let (rs, hw) = (g.n * g.hw_out(), g.hw_out());
    let table = reads(g);
    let plane = |(p, plane): (usize, &mut [f32])| {
        let (i, c) = (p / g.ci, p % g.ci);
        let rows = &cols[c * g.k * g.k * rs..];
        for (row, taps) in rows.chunks(rs).zip(table.chunks_exact(hw)) {
            for (v, at) in row[i * hw..][..hw].iter().zip(taps) {
                if let Some(at) = at {
                    plane[*at] += v;
                }
            }
        }
    };
    dx.par_chunks_exact_mut(g.hw_in())
        .enumerate()
        .for_each(plane);
}

/// Forward: `y = W · cols(x)`, as [`super::forward`].
pub(super) fn forward(g: &ConvGeom, x: &[f32], w: &[f32]) -> Vec<f32> {
    let rs = g.n * g.hw_out();
    let mut ycat = vec![0.0; g.co * rs];
    with_scratch(g.kk() * rs, |cols| {
        unfold(g, x, cols);
        // SAFETY: `ycat` is co×rs, `w` co×kk and `cols` kk×rs, all row-major
        // and this call's own (`cols` is this thread's scratch buffer).
        unsafe {
            matmul(
                [g.co, rs, g.kk()],
                row_major(ycat.as_mut_ptr(), rs),
                false,
                row_major(w.as_ptr(), g.kk()),
                row_major(cols.as_ptr(), rs),
                inner(false),
            )
        }
    });
    swap_outer(&ycat, g.co, g.n, g.hw_out())
}

/// Input gradient: `dx = col2im(Wᵀ · dY)`, as [`super::backward_input`].
pub(super) fn backward_input(g: &ConvGeom, dy: &[f32], w: &[f32]) -> Vec<f32> {
    let rs = g.n * g.hw_out();
    let dycat = swap_outer(dy, g.n, g.co, g.hw_out());
    let mut dx = vec![0.0; g.n * g.ci * g.hw_in()];
    with_scratch(g.kk() * rs, |cols| {
        // SAFETY: `cols` is kk×rs (this thread's buffer); `w` (co×kk) is read
        // transposed; `dycat` is co×rs, row-major.
        unsafe {
            input_columns(
                g,
                row_major(cols.as_mut_ptr(), rs),
                rs,
                w,
                row_major(dycat.as_ptr(), rs),
                inner(false),
            )
        }
        fold(g, cols, &mut dx);
    });
    dx
}

/// Weight gradient: `dW = dY · cols(x)ᵀ`, as [`super::backward_weight`]
/// (one sum over every pixel of every image: the same bits on every run).
pub(super) fn backward_weight(g: &ConvGeom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let rs = g.n * g.hw_out();
    let dycat = swap_outer(dy, g.n, g.co, g.hw_out());
    let fill = |dw: *mut f32| {
        with_scratch(g.kk() * rs, |cols| {
            unfold(g, x, cols);
            // SAFETY: `dw` is co×kk and this call's own; `dycat` is co×rs;
            // `cols` (kk×rs, this thread's buffer) is read transposed.
            unsafe {
                matmul(
                    [g.co, g.kk(), rs],
                    row_major(dw, g.kk()),
                    false,
                    row_major(dycat.as_ptr(), rs),
                    transposed(cols.as_ptr(), rs),
                    inner(false),
                )
            }
        })
    };
    // SAFETY: the `gemm` (k = n·ho·wo ≥ 1, not accumulating) writes all
    // co×kk values.
    unsafe { output(g.co * g.kk(), fill) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_outer_puts_images_side_by_side_and_back() {
        // 2 images × 2 channels × 3 pixels.
        let a: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let side_by_side = swap_outer(&a, 2, 2, 3);
        assert_eq!(
            side_by_side,
            [0., 1., 2., 6., 7., 8., 3., 4., 5., 9., 10., 11.]
        );
        // 3 images × 2 channels × 2 pixels and back.
        let b: Vec<f32> = (0..12).map(|v| v as f32).collect();
        assert_eq!(swap_outer(&swap_outer(&b, 3, 2, 2), 2, 3, 2), b);
    }
}
