//! Bilinear resizing equal to PyTorch's
//! `F.interpolate(x, size, mode="bilinear", align_corners=False)`, with a
//! backward pass on every backend: a four-tap kernel on the CPU (Flex), two
//! matrix products elsewhere.
//!
//! Burn's own `interpolate` defaults to `align_corners = true` and has no
//! bilinear backward on its CubeCL backends (tracel-ai/burn#3863). On the
//! CPU each output reads its four neighbours and the backward adds each
//! gradient into them; planes (image, channel) run in parallel, so no two
//! tasks write the same value. Other devices compute `Y = A_h · X · A_wᵀ`
//! with fixed interpolation matrices (`W_in` multiply-adds per output value
//! instead of four, but matmul has a backward everywhere).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

use super::flex::{contiguous, dims4, inputs, record, runs_here, slice, tensor};
use super::profile::{self, Work};
use crate::geometry::{Tap, bilinear_taps};

/// Resizes `x` to `size = [H_out, W_out]` with bilinear interpolation, exactly
/// as PyTorch's `F.interpolate(x, size, mode="bilinear", align_corners=False)`,
/// up or down, to any size. Returns `x` itself when the size is unchanged.
/// Differentiable on every backend.
///
/// # Shapes
///
/// - input: `[batch, channels, H, W]`
/// - output: `[batch, channels, H_out, W_out]`
///
/// # Panics
///
/// If `size` has a zero.
///
/// # Example
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use wsunet::layers::resize_bilinear;
///
/// let x = Tensor::<4>::ones([1, 2, 5, 7], &Device::flex());
/// let y = resize_bilinear(x, [11, 3]);
/// assert_eq!(y.dims(), [1, 2, 11, 3]);
/// ```
pub fn resize_bilinear(x: Tensor<4>, size: [usize; 2]) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    let [ho, wo] = size;
    assert!(ho > 0 && wo > 0, "cannot resize to {ho}×{wo}");
    if [ho, wo] == [h, w] {
        return x;
    }
    if runs_here(&x.device(), x.dtype()) && x.shape().num_elements() > 0 {
        Tensor::from_dispatch(<Dispatch as ResizeOp>::resize_bilinear_cpu(
            x.into_dispatch(),
            ho,
            wo,
        ))
    } else {
        composed(x, size)
    }
}

/// Row-major `[out_len, in_len]` matrix of [`bilinear_taps`].
pub fn interpolation_matrix(in_len: usize, out_len: usize) -> Vec<f32> {
    let mut m = vec![0f32; out_len * in_len];
    for (o, (i0, i1, l1)) in bilinear_taps(in_len, out_len).into_iter().enumerate() {
        let row = &mut m[o * in_len..(o + 1) * in_len];
        row[i0] += 1.0 - l1;
        row[i1] += l1;
    }
    m
}

fn matrix(in_len: usize, out_len: usize, transposed: bool, device: &Device) -> Tensor<2> {
    let m = Tensor::<2>::from_data(
        TensorData::new(interpolation_matrix(in_len, out_len), [out_len, in_len]),
        device,
    );
    if transposed { m.transpose() } else { m }
}

/// [`resize_bilinear`] as two matrix products (every device but the CPU).
fn composed(x: Tensor<4>, size: [usize; 2]) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    let [ho, wo] = size;
    let device = x.device();
    let x = if wo == w {
        x
    } else {
        // [n·c·h, w] · [w, wo]
        x.reshape([n * c * h, w])
            .matmul(matrix(w, wo, true, &device))
            .reshape([n, c, h, wo])
    };
    if ho == h {
        x
    } else {
        // [1, ho, h] · [n·c, h, wo], the matrix broadcast over the batch.
        matrix(h, ho, false, &device)
            .unsqueeze::<3>()
            .matmul(x.reshape([n * c, h, wo]))
            .reshape([n, c, ho, wo])
    }
}

/// The CPU kernel, plugged into Burn.
#[backend_extension(Flex, Autodiff)]
pub trait ResizeOp: Backend {
    /// Bilinear resize of `x [n, c, h, w]` to `[n, c, ho, wo]`.
    fn resize_bilinear_cpu(x: FloatTensor<Self>, ho: usize, wo: usize) -> FloatTensor<Self>;
}

fn run([x]: [FlexTensor; 1], ho: usize, wo: usize) -> (FlexTensor, ResizeGeom) {
    let [n, c, h, w] = dims4(&x);
    let g = ResizeGeom {
        planes: n * c,
        h,
        w,
        ho,
        wo,
    };
    let y = profile::timed("resize forward", || work(&g), || forward(&g, slice(&x)));
    (tensor(y, [n, c, ho, wo]), g)
}

/// A pass's row in the profile: the small map and the large one.
fn work(g: &ResizeGeom) -> Work {
    let shape = format!("{} planes {}×{} → {}×{}", g.planes, g.h, g.w, g.ho, g.wo);
    (
        shape,
        0.0,
        profile::f32_bytes(g.planes * (g.h * g.w + g.ho * g.wo)),
    )
}

impl ResizeOp for Flex {
    fn resize_bilinear_cpu(x: FloatTensor<Self>, ho: usize, wo: usize) -> FloatTensor<Self> {
        run(inputs([x]), ho, wo).0
    }
}

impl<C: CheckpointStrategy> ResizeOp for Autodiff<Flex, C> {
    fn resize_bilinear_cpu(x: FloatTensor<Self>, ho: usize, wo: usize) -> FloatTensor<Self> {
        record::<_, C, _>(ResizeBackward, [x], |x| run(x, ho, wo))
    }
}

#[derive(Debug)]
struct ResizeBackward;

impl Backward<Flex, 1> for ResizeBackward {
    type State = ResizeGeom;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let dy = contiguous(grads.consume::<Flex>(&ops.node));
        if let Some(node) = node_x {
            let [n, c, _, _] = dims4(&dy);
            let g = ops.state;
            let dx = profile::timed("resize backward", || work(&g), || backward(&g, slice(&dy)));
            grads.register::<Flex>(node.id, tensor(dx, [n, c, g.h, g.w]));
        }
    }
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

/// Resizes every plane of `x`: each input row is interpolated along the
/// width once, into one of two rows kept while consecutive output rows mix
/// the same pair (an upscale by 2 reads each input row for two output rows),
/// then the two rows are blended. The same expressions, in the same order,
/// as four taps per output value.
pub fn forward(g: &ResizeGeom, x: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), g.planes * g.h * g.w, "resize input size");
    let (rows, cols) = g.taps();
    let len = g.planes * g.ho * g.wo;
    // Every value is written below: no zeroing pass over the output (the
    // largest tensor of a decoder step, 2.4 MB at the main command's dec1).
    let mut y = Vec::with_capacity(len);
    let widen = |plane: &[f32], iy: usize, dst: &mut Vec<f32>| {
        let r = &plane[iy * g.w..][..g.w];
        dst.clear();
        dst.extend(
            cols.iter()
                .map(|&(x0, x1, lx)| (1.0 - lx) * r[x0] + lx * r[x1]),
        );
    };
    y.spare_capacity_mut()[..len]
        .par_chunks_mut(g.ho * g.wo)
        .zip(x.par_chunks(g.h * g.w))
        .for_each_init(
            || [(usize::MAX, Vec::new()), (usize::MAX, Vec::new())],
            |[top, bottom], (out, plane)| {
                // Rows of another plane are not this plane's.
                top.0 = usize::MAX;
                bottom.0 = usize::MAX;
                for (&(y0, y1, ly), out) in rows.iter().zip(out.chunks_mut(g.wo)) {
                    if top.0 != y0 {
                        if bottom.0 == y0 {
                            std::mem::swap(top, bottom);
                        } else {
                            widen(plane, y0, &mut top.1);
                            top.0 = y0;
                        }
                    }
                    if bottom.0 != y1 {
                        widen(plane, y1, &mut bottom.1);
                        bottom.0 = y1;
                    }
                    for ((o, t), b) in out.iter_mut().zip(&top.1).zip(&bottom.1) {
                        o.write((1.0 - ly) * t + ly * b);
                    }
                }
            },
        );
    // SAFETY: each plane's ho rows of wo values were written just above
    // (`rows` has ho taps, each widened row wo values), and the planes'
    // chunks cover the len values.
    unsafe { y.set_len(len) };
    y
}

/// Gradient of [`forward`] with respect to `x`, given the output gradient:
/// the forward's two passes transposed. Each input row first sums the
/// output rows that read it (whole-row multiply-adds over the output width,
/// which vectorize), then each input column gathers its horizontal taps
/// from that sum in a register. A scatter of four taps per output value
/// into the neighbours instead chains every add on the one before it and
/// ran 2–3× slower than the forward.
pub fn backward(g: &ResizeGeom, dy: &[f32]) -> Vec<f32> {
    assert_eq!(
        dy.len(),
        g.planes * g.ho * g.wo,
        "resize output-gradient size"
    );
    let (rows, cols) = g.taps();
    let readers_of_rows = readers(&rows, g.h);
    let readers_of_cols = readers(&cols, g.w);
    let len = g.planes * g.h * g.w;
    // Every value is written below (no zeroing pass).
    let mut dx = Vec::with_capacity(len);
    dx.spare_capacity_mut()[..len]
        .par_chunks_mut(g.h * g.w)
        .zip(dy.par_chunks(g.ho * g.wo))
        .for_each_init(
            || vec![0.0; g.wo],
            |sum, (plane, grad)| {
                for (row, readers) in plane.chunks_mut(g.w).zip(&readers_of_rows) {
                    sum.fill(0.0);
                    for &(oy, weight) in readers {
                        let src = &grad[oy * g.wo..][..g.wo];
                        for (s, &d) in sum.iter_mut().zip(src) {
                            *s += weight * d;
                        }
                    }
                    for (v, readers) in row.iter_mut().zip(&readers_of_cols) {
                        v.write(readers.iter().map(|&(ox, weight)| weight * sum[ox]).sum());
                    }
                }
            },
        );
    // SAFETY: each plane's h rows (`readers_of_rows` has h entries) of w
    // values (`readers_of_cols` has w) were written just above, and the
    // planes' chunks cover the len values.
    unsafe { dx.set_len(len) };
    dx
}

/// For each of `len` input coordinates, the output coordinates whose taps
/// read it and with what weight (both taps of a clamped edge are listed).
fn readers(taps: &[Tap], len: usize) -> Vec<Vec<(usize, f32)>> {
    let mut readers = vec![Vec::new(); len];
    for (o, &(i0, i1, l1)) in taps.iter().enumerate() {
        readers[i0].push((o, 1.0 - l1));
        readers[i1].push((o, l1));
    }
    readers
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};

    #[test]
    fn rows_sum_to_one() {
        for (i, o) in [(1, 5), (5, 1), (7, 13), (13, 7), (8, 16), (16, 8), (3, 3)] {
            let m = interpolation_matrix(i, o);
            for row in m.chunks(i) {
                let s: f32 = row.iter().sum();
                assert!((s - 1.0).abs() < 1e-6, "{i}->{o}: {row:?}");
            }
        }
    }

    #[test]
    fn doubling_matches_known_pytorch_weights() {
        // torch: F.interpolate(torch.arange(4.).view(1,1,1,4), size=(1,8), mode="bilinear")
        // = [0.00, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.00]
        let m = interpolation_matrix(4, 8);
        let x = [0f32, 1.0, 2.0, 3.0];
        let y: Vec<f32> = m
            .chunks(4)
            .map(|r| r.iter().zip(x).map(|(a, b)| a * b).sum())
            .collect();
        assert_eq!(y, vec![0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0]);
    }

    #[test]
    fn halving_averages_neighbour_pairs() {
        // Down by exactly 2: src = 2o + 0.5, the mean of pixels 2o and 2o+1.
        let m = interpolation_matrix(6, 3);
        assert_eq!(
            m,
            vec![
                0.5, 0.5, 0.0, 0.0, 0.0, 0.0, //
                0.0, 0.0, 0.5, 0.5, 0.0, 0.0, //
                0.0, 0.0, 0.0, 0.0, 0.5, 0.5
            ]
        );
    }

    #[test]
    fn same_size_is_identity_and_constants_stay_constant() {
        let device = Device::flex();
        let x = Tensor::<4>::random([2, 3, 5, 7], Distribution::Default, &device);
        let y = resize_bilinear(x.clone(), [5, 7]);
        y.into_data().assert_eq(&x.into_data(), true);
        let c = Tensor::<4>::full([1, 2, 5, 7], 3.5, &device);
        resize_bilinear(c, [13, 4])
            .into_data()
            .assert_approx_eq::<f32>(
                &TensorData::full([1, 2, 13, 4], 3.5f32),
                Tolerance::absolute(1e-5),
            );
    }

    /// The CPU kernel and the matrix form give the same values and the same
    /// input gradient, up and down, to odd sizes.
    #[test]
    fn the_cpu_kernel_equals_the_matrix_form() {
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::random([2, 3, 9, 6], Distribution::Default, &device);
        for size in [[18, 12], [4, 3], [13, 5], [9, 17], [1, 1]] {
            let dy = Tensor::<4>::random([2, 3, size[0], size[1]], Distribution::Default, &device);
            let run = |f: fn(Tensor<4>, [usize; 2]) -> Tensor<4>| {
                let x = x.clone().require_grad();
                let y = f(x.clone(), size);
                let grads = (y.clone() * dy.clone()).sum().backward();
                (y.inner(), x.grad(&grads).unwrap())
            };
            let (y0, dx0) = run(composed);
            let (y1, dx1) = run(resize_bilinear);
            let tol = Tolerance::absolute(1e-5);
            y1.into_data().assert_approx_eq::<f32>(&y0.into_data(), tol);
            dx1.into_data()
                .assert_approx_eq::<f32>(&dx0.into_data(), tol);
        }
    }

    const fn geom(planes: usize, h: usize, w: usize, ho: usize, wo: usize) -> ResizeGeom {
        ResizeGeom {
            planes,
            h,
            w,
            ho,
            wo,
        }
    }

    /// Up- and downscales, odd ratios, single rows and columns, many
    /// planes: the kernels' tests against their definitions.
    const SHAPES: &[ResizeGeom] = &[
        geom(3, 9, 6, 18, 12),
        geom(2, 9, 6, 4, 3),
        geom(5, 7, 5, 13, 11),
        geom(1, 1, 4, 3, 8),
        geom(4, 6, 1, 2, 5),
        geom(2, 8, 8, 8, 16),
        // One output row: every plane mixes the same two input rows.
        geom(64, 4, 5, 1, 7),
    ];

    fn test_values(len: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919) % 997) as f32 / 997.0 - 0.5)
            .collect()
    }

    /// The row-cached forward is the four-tap definition to the bit, on
    /// up- and downscales, odd ratios, single rows and columns, and many
    /// planes (the cache must not carry rows from one plane to the next).
    #[test]
    fn the_forward_is_the_four_tap_definition_exactly() {
        for &g in SHAPES {
            let ResizeGeom {
                planes,
                h,
                w,
                ho,
                wo,
            } = g;
            let x = test_values(planes * h * w);
            let (rows, cols) = g.taps();
            let mut want = Vec::new();
            for plane in x.chunks(h * w) {
                for &(y0, y1, ly) in &rows {
                    for &(x0, x1, lx) in &cols {
                        let (r0, r1) = (&plane[y0 * w..], &plane[y1 * w..]);
                        let top = (1.0 - lx) * r0[x0] + lx * r0[x1];
                        let bottom = (1.0 - lx) * r1[x0] + lx * r1[x1];
                        want.push((1.0 - ly) * top + ly * bottom);
                    }
                }
            }
            assert_eq!(forward(&g, &x), want, "{planes}×{h}×{w} → {ho}×{wo}");
        }
    }

    /// The backward is the four-tap scatter (each output gradient added
    /// into its neighbours with the forward's weights) up to float rounding,
    /// on the forward test's shapes and a 24² → 48² doubling.
    #[test]
    fn the_backward_is_the_four_tap_scatter() {
        let doubling = geom(3, 24, 24, 48, 48);
        for &g in SHAPES.iter().chain([&doubling]) {
            let ResizeGeom {
                planes,
                h,
                w,
                ho,
                wo,
            } = g;
            let dy = test_values(planes * ho * wo);
            let (rows, cols) = g.taps();
            let mut want = vec![0f32; planes * h * w];
            for (plane, grad) in want.chunks_mut(h * w).zip(dy.chunks(ho * wo)) {
                for (&(y0, y1, ly), grad) in rows.iter().zip(grad.chunks(wo)) {
                    for (&(x0, x1, lx), &d) in cols.iter().zip(grad) {
                        plane[y0 * w + x0] += (1.0 - ly) * (1.0 - lx) * d;
                        plane[y0 * w + x1] += (1.0 - ly) * lx * d;
                        plane[y1 * w + x0] += ly * (1.0 - lx) * d;
                        plane[y1 * w + x1] += ly * lx * d;
                    }
                }
            }
            let got = backward(&g, &dy);
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "{planes}×{h}×{w} → {ho}×{wo}, value {i}: {a} against {b}"
                );
            }
        }
    }

    #[test]
    fn matches_burn_interpolate_without_align_corners_on_flex() {
        use burn::tensor::module::interpolate;
        use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
        let device = Device::flex();
        let x = Tensor::<4>::random([2, 3, 9, 6], Distribution::Default, &device);
        for size in [[18, 12], [4, 3], [13, 5], [9, 17]] {
            let options = InterpolateOptions::new(InterpolateMode::Bilinear)
                .with_output_size(size)
                .with_align_corners(false);
            let reference = interpolate(x.clone(), options);
            resize_bilinear(x.clone(), size)
                .into_data()
                .assert_approx_eq::<f32>(&reference.into_data(), Tolerance::absolute(1e-5));
        }
    }
}
