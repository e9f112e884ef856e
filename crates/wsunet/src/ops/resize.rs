//! Bilinear resizing on raw `f32` slices (PyTorch's `align_corners=False`
//! rule), forward and backward, for the CPU backend (Flex).
//!
//! The layers' portable form is two matrix products with dense interpolation
//! matrices (`layers::resize`), which costs `W_in` multiply-adds per output
//! value instead of four. Here each output reads its four neighbours, and the
//! backward adds each gradient into them; planes (image, channel) run in
//! parallel, so no two tasks write the same value.

use rayon::prelude::*;

/// One output coordinate's taps: the two source indices and the weight of
/// the second (PyTorch's `area_pixel_compute_source_index`, clamped at 0).
pub type Tap = (usize, usize, f32);

/// PyTorch's bilinear taps along one axis (`align_corners = False`, no
/// antialiasing): for each output index, the two source indices it mixes and
/// the weight of the second, `(i0, i1, λ)` with `out = (1 − λ)·x[i0] + λ·x[i1]`.
///
/// Source coordinate of output `o`: `max((o + 0.5) · in/out − 0.5, 0)`;
/// `i0 = ⌊src⌋`, `i1 = min(i0 + 1, in − 1)`. Down-scaling therefore samples
/// the two nearest source pixels, as PyTorch does.
///
/// # Panics
///
/// If either length is 0.
pub fn bilinear_taps(in_len: usize, out_len: usize) -> Vec<Tap> {
    assert!(
        in_len > 0 && out_len > 0,
        "cannot resize between lengths {in_len} and {out_len}"
    );
    let scale = in_len as f64 / out_len as f64;
    (0..out_len)
        .map(|o| {
            let src = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(in_len - 1);
            let i1 = (i0 + 1).min(in_len - 1);
            (i0, i1, (src - i0 as f64) as f32)
        })
        .collect()
}

/// Shapes of one resize: `[planes, h, w]` → `[planes, ho, wo]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResizeGeom {
    /// Images × channels.
    pub planes: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output height.
    pub ho: usize,
    /// Output width.
    pub wo: usize,
}

impl ResizeGeom {
    /// The taps of the output rows and columns.
    fn taps(&self) -> (Vec<Tap>, Vec<Tap>) {
        (
            bilinear_taps(self.h, self.ho),
            bilinear_taps(self.w, self.wo),
        )
    }
}

/// Resizes every plane of `x`.
pub fn forward(g: &ResizeGeom, x: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), g.planes * g.h * g.w, "resize input size");
    let (rows, cols) = g.taps();
    let mut y = vec![0.0; g.planes * g.ho * g.wo];
    y.par_chunks_mut(g.ho * g.wo)
        .zip(x.par_chunks(g.h * g.w))
        .for_each(|(out, plane)| {
            for (&(y0, y1, ly), out) in rows.iter().zip(out.chunks_mut(g.wo)) {
                let (r0, r1) = (&plane[y0 * g.w..][..g.w], &plane[y1 * g.w..][..g.w]);
                for (&(x0, x1, lx), o) in cols.iter().zip(out.iter_mut()) {
                    let top = (1.0 - lx) * r0[x0] + lx * r0[x1];
                    let bottom = (1.0 - lx) * r1[x0] + lx * r1[x1];
                    *o = (1.0 - ly) * top + ly * bottom;
                }
            }
        });
    y
}

/// Gradient of [`forward`] with respect to `x`, given the output gradient.
pub fn backward(g: &ResizeGeom, dy: &[f32]) -> Vec<f32> {
    assert_eq!(
        dy.len(),
        g.planes * g.ho * g.wo,
        "resize output-gradient size"
    );
    let (rows, cols) = g.taps();
    let mut dx = vec![0.0; g.planes * g.h * g.w];
    dx.par_chunks_mut(g.h * g.w)
        .zip(dy.par_chunks(g.ho * g.wo))
        .for_each(|(plane, grad)| {
            for (&(y0, y1, ly), grad) in rows.iter().zip(grad.chunks(g.wo)) {
                for (&(x0, x1, lx), &d) in cols.iter().zip(grad) {
                    let (top, bottom) = ((1.0 - ly) * d, ly * d);
                    plane[y0 * g.w + x0] += (1.0 - lx) * top;
                    plane[y0 * g.w + x1] += lx * top;
                    plane[y1 * g.w + x0] += (1.0 - lx) * bottom;
                    plane[y1 * g.w + x1] += lx * bottom;
                }
            }
        });
    dx
}
