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

use super::{
    col2im, im2col, images_in_parallel, inner, input_columns, matmul, row_major, transposed,
};

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

/// Unfolds every image of `x` into `cols`, side by side (row stride n·ho·wo).
fn unfold(g: &ConvGeom, x: &[f32], cols: &mut [f32]) {
    let rs = g.n * g.hw_out();
    for i in 0..g.n {
        let img = &x[i * g.ci * g.hw_in()..][..g.ci * g.hw_in()];
        im2col(g, img, (0, g.ho), (&mut cols[i * g.hw_out()..], rs), true);
    }
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
    let outer = images_in_parallel(g.n);
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
        let cols = &*cols;
        let image = |(i, img): (usize, &mut [f32])| {
            col2im(g, (&cols[i * g.hw_out()..], rs), (0, g.ho), img, !outer);
        };
        if outer {
            dx.par_chunks_exact_mut(g.ci * g.hw_in())
                .enumerate()
                .for_each(image);
        } else {
            dx.chunks_exact_mut(g.ci * g.hw_in())
                .enumerate()
                .for_each(image);
        }
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
