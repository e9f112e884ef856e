//! Weight standardization of a kernel `[out, in, k, k]`: each output
//! channel's row is centred and scaled by a function of its sum of squared
//! deviations — a CPU kernel with its backward on Flex, Burn's composed ops
//! elsewhere.
//!
//! Composed from Burn's ops this is four passes over the kernel forward and
//! about eight backward, with a tensor allocated for each — for an 11 M
//! parameter network, about a sixth of a training step. The kernel is one
//! pass each way per row, rows in parallel, with blocked sums (the `simd`
//! module's).
//!
//! Formulas (Qiao et al., arXiv:1903.10520; timm's `StdConv2d` and
//! `ScaledStdConv2d`), with `c = w − mean(w)` and `q = Σ c²` per row:
//!
//! | standardization | scale `s(q)` |
//! |---|---|
//! | `Seed` | `1 / (sqrt(max(q / (n − 1), 1e-30)) + eps)` |
//! | `Biased` | `1 / sqrt(q / n + eps)` |
//! | `Scaled` | `gain / sqrt(n) / sqrt(q / n + eps)` |
//!
//! Output `y = c · s(q)`; gradient `dw = s·(g − mean(g)) + 2·s'(q)·c·Σ g·c`.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::{DType, Tensor};
use std::mem::MaybeUninit;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::flex::{contiguous, dims4, inputs, record, runs_here, slice, tensor};
use super::profile::{self, Work};
use super::simd::{sum, sum2, wide};

/// Smallest variance fed to `sqrt` in the `Seed` formula (its derivative is
/// infinite at 0): a constant row gets a zero gradient through the clamp, as
/// in PyTorch, instead of NaN.
pub const MIN_VARIANCE: f64 = 1e-30;

/// How a weight-standardized convolution ([`WsConv2d`](crate::layers::WsConv2d))
/// standardizes each output channel's kernel.
///
/// With `n` elements per kernel (`in/groups × k × k`):
///
/// | variant | formula | default eps |
/// |---|---|---|
/// | `Seed` | `(w − mean) / (std_unbiased + eps)` | 1e-5 |
/// | `Biased` | `(w − mean) / sqrt(var_biased + eps)` | 1e-6 |
/// | `Scaled` | `gain · (w − mean) / sqrt(var_biased + eps) / sqrt(n)` | 1e-6 |
/// | `None` | `w`: a plain convolution, for comparing against WS | — |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Standardization {
    /// The seed's formula, as in the WS paper's code and mmcv's `ConvWS2d`.
    #[default]
    Seed,
    /// timm's `StdConv2d` (BiT).
    Biased,
    /// timm's `ScaledStdConv2d` (NF-Nets) with a learnable per-channel gain.
    Scaled,
    /// No standardization: the kernel is convolved as it is (PyTorch's
    /// `Conv2d`), the baseline that shows what WS changes.
    None,
}

impl Standardization {
    /// The eps this standardization uses unless one is given.
    pub fn default_eps(self) -> f64 {
        match self {
            Standardization::Seed => 1e-5,
            Standardization::Biased | Standardization::Scaled => 1e-6,
            Standardization::None => 0.0,
        }
    }

    /// Every variant, in documentation order.
    pub const ALL: [Standardization; 4] = [
        Standardization::Seed,
        Standardization::Biased,
        Standardization::Scaled,
        Standardization::None,
    ];

    /// The variants that standardize the kernel (all but `None`).
    pub const STANDARDIZING: [Standardization; 3] = [
        Standardization::Seed,
        Standardization::Biased,
        Standardization::Scaled,
    ];

    /// Whether the kernel is standardized (every variant but `None`).
    pub fn standardizes(self) -> bool {
        self != Standardization::None
    }

    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Standardization::Seed => "seed",
            Standardization::Biased => "biased",
            Standardization::Scaled => "scaled",
            Standardization::None => "none",
        }
    }
}

impl std::fmt::Display for Standardization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The kernel `weight [out, in, k, k]` standardized per output channel:
/// this crate's kernel on the CPU, Burn's composed ops elsewhere.
/// `gain [out, 1, 1, 1]` is read by `Scaled` only; `None` returns the
/// kernel as it is.
///
/// # Shapes
///
/// - weight, output: `[out, in, kh, kw]`
pub fn standardize(
    weight: Tensor<4>,
    gain: Option<Tensor<4>>,
    s: Standardization,
    eps: f64,
) -> Tensor<4> {
    if !s.standardizes() {
        return weight;
    }
    let [out, _, _, _] = weight.dims();
    let fits = runs_here(&weight.device(), weight.dtype())
        && out > 0
        && gain
            .as_ref()
            .is_none_or(|g| g.dtype() == DType::F32 && g.shape().num_elements() == out);
    if !fits {
        return composed(weight, gain, s, eps);
    }
    let gain = match gain {
        Some(g) => g.reshape([out]),
        None => Tensor::ones([out], &weight.device()),
    };
    Tensor::from_dispatch(<Dispatch as StandardizeOp>::standardize_cpu(
        weight.into_dispatch(),
        gain.into_dispatch(),
        s,
        eps,
    ))
}

/// [`standardize`] from Burn's ops (every device but the CPU).
fn composed(w: Tensor<4>, gain: Option<Tensor<4>>, s: Standardization, eps: f64) -> Tensor<4> {
    let shape = w.dims();
    let [out, _, _, _] = shape;
    let n = w.shape().num_elements() / out.max(1);
    let flat = w.reshape([out, n]);
    // Every op on the full kernel costs a pass over it (and more in the
    // backward), so the per-channel statistics are finished on the small
    // [out, 1] tensors and applied with one multiplication.
    let mean = flat.clone().mean_dim(1);
    let centered = flat - mean;
    let sum_sq = centered.clone().square().sum_dim(1);
    let scale = match s {
        Standardization::None => unreachable!("standardize returns a `None` kernel as it is"),
        Standardization::Seed => {
            // Unbiased (n − 1) as torch.std; a one-element kernel has no
            // spread, and dividing by 1 keeps it at 0 instead of NaN.
            let dof = n.saturating_sub(1).max(1) as f64;
            let std = sum_sq.div_scalar(dof).clamp_min(MIN_VARIANCE).sqrt();
            std.add_scalar(eps).recip()
        }
        Standardization::Biased | Standardization::Scaled => {
            let var = sum_sq.div_scalar(n as f64);
            let inv = var.add_scalar(eps).sqrt().recip();
            match gain.filter(|_| s == Standardization::Scaled) {
                Some(gain) => inv * gain.reshape([out, 1]).div_scalar((n as f64).sqrt()),
                None => inv,
            }
        }
    };
    (centered * scale).reshape(shape)
}

/// Per row: the scale, its derivative in `q`, and `∂s/∂gain` (Scaled).
fn scale(s: Standardization, q: f64, n: usize, eps: f64, gain: f64) -> (f64, f64, f64) {
    match s {
        Standardization::None => unreachable!("standardize returns a `None` kernel as it is"),
        Standardization::Seed => {
            let dof = n.saturating_sub(1).max(1) as f64;
            let v = q / dof;
            let (sigma, dsigma) = if v < MIN_VARIANCE {
                (MIN_VARIANCE.sqrt(), 0.0)
            } else {
                let sigma = v.sqrt();
                (sigma, 1.0 / (2.0 * sigma * dof))
            };
            let s = 1.0 / (sigma + eps);
            (s, -s * s * dsigma, 0.0)
        }
        Standardization::Biased | Standardization::Scaled => {
            let inv = 1.0 / (q / n as f64 + eps).sqrt();
            // Scaled: gain / sqrt(n) on top of the Biased scale.
            let (f, g) = if s == Standardization::Scaled {
                (1.0 / (n as f64).sqrt(), gain)
            } else {
                (1.0, 1.0)
            };
            (
                inv * f * g,
                -0.5 * inv * inv * inv / n as f64 * f * g,
                inv * f,
            )
        }
    }
}

/// A row's mean and its sum of squared deviations (two passes).
#[inline(always)]
fn mean_and_q(row: &[f32]) -> (f32, f64) {
    let mean = (sum(row, |v| v) / row.len() as f64) as f32;
    (mean, sum(row, |v| (v - mean) * (v - mean)))
}

/// One row of the forward: `y = standardize(w)`.
struct Row<'a> {
    y: &'a mut [MaybeUninit<f32>],
    w: &'a [f32],
    gain: f32,
    s: Standardization,
    eps: f64,
}

#[inline(always)]
fn forward_row(r: Row<'_>) {
    let (mean, q) = mean_and_q(r.w);
    let s = scale(r.s, q, r.w.len(), r.eps, r.gain as f64).0 as f32;
    for (y, &v) in r.y.iter_mut().zip(r.w) {
        y.write((v - mean) * s);
    }
}

/// One row of the backward: writes `dw`, returns `dgain`.
struct RowGrad<'a> {
    dw: &'a mut [MaybeUninit<f32>],
    w: &'a [f32],
    dy: &'a [f32],
    gain: f32,
    s: Standardization,
    eps: f64,
}

#[inline(always)]
fn backward_row(r: RowGrad<'_>) -> f32 {
    let n = r.w.len();
    let (mean, q) = mean_and_q(r.w);
    let (s, ds, dsdgain) = scale(r.s, q, n, r.eps, r.gain as f64);
    let gmean = (sum(r.dy, |v| v) / n as f64) as f32;
    let gc = sum2(r.dy, r.w, |g, v| g * (v - mean));
    let (s, k) = (s as f32, (2.0 * ds * gc) as f32);
    for ((d, &g), &v) in r.dw.iter_mut().zip(r.dy).zip(r.w) {
        d.write(s * (g - gmean) + k * (v - mean));
    }
    (gc * dsdgain) as f32
}

/// Standardizes every row of `w [rows, n]`; `gain [rows]` is read by
/// `Scaled` only.
pub fn forward(w: &[f32], n: usize, gain: &[f32], s: Standardization, eps: f64) -> Vec<f32> {
    assert!(
        n > 0 && w.len().is_multiple_of(n),
        "standardize: {} values in rows of {n}",
        w.len()
    );
    assert_eq!(gain.len(), w.len() / n, "standardize: one gain per row");
    // Every value is written below: no zeroing pass over the output.
    let mut y = Vec::with_capacity(w.len());
    y.spare_capacity_mut()[..w.len()]
        .par_chunks_mut(n)
        .zip(w.par_chunks(n))
        .zip(gain.par_iter())
        .for_each(|((y, w), &gain)| {
            let row = Row { y, w, gain, s, eps };
            wide!(forward_row(row: Row<'_>) -> ())
        });
    // SAFETY: the rows of n values cover all w.len() values (w.len() is a
    // multiple of n, asserted above), and `forward_row` writes each value
    // of its row.
    unsafe { y.set_len(w.len()) };
    y
}

/// Gradients of [`forward`]: (`dw`, `dgain`) given the output gradient `dy`.
pub fn backward(
    w: &[f32],
    n: usize,
    gain: &[f32],
    s: Standardization,
    eps: f64,
    dy: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(dy.len(), w.len(), "standardize: output-gradient size");
    assert_eq!(w.len(), gain.len() * n, "standardize: one gain per row");
    // Every value of dw is written below: no zeroing pass.
    let mut dw = Vec::with_capacity(w.len());
    let mut dgain = vec![0.0; gain.len()];
    dw.spare_capacity_mut()[..w.len()]
        .par_chunks_mut(n)
        .zip(dgain.par_iter_mut())
        .enumerate()
        .for_each(|(i, (dw, dgain))| {
            let row = RowGrad {
                dw,
                w: &w[i * n..][..n],
                dy: &dy[i * n..][..n],
                gain: gain[i],
                s,
                eps,
            };
            *dgain = wide!(backward_row(row: RowGrad<'_>) -> f32);
        });
    // SAFETY: the rows of n values, one per gain, cover all w.len() values
    // (asserted above), and `backward_row` writes each value of its row.
    unsafe { dw.set_len(w.len()) };
    (dw, dgain)
}

/// The CPU kernel, plugged into Burn.
#[backend_extension(Flex, Autodiff)]
pub trait StandardizeOp: Backend {
    /// Weight standardization of every output channel of `weight [out, ..]`;
    /// `gain [out]` is read by `Standardization::Scaled` only.
    fn standardize_cpu(
        weight: FloatTensor<Self>,
        gain: FloatTensor<Self>,
        s: Standardization,
        eps: f64,
    ) -> FloatTensor<Self>;
}

/// What the backward needs: the raw kernel, the gain, the formula and eps.
type State = (FlexTensor, FlexTensor, Standardization, f64);

fn run([w, gain]: [FlexTensor; 2], s: Standardization, eps: f64) -> (FlexTensor, State) {
    let shape = dims4(&w);
    let n = shape[1] * shape[2] * shape[3];
    let y = profile::timed(
        "weight standardization forward",
        || work(shape, 2),
        || forward(slice(&w), n, slice(&gain), s, eps),
    );
    (tensor(y, shape), (w, gain, s, eps))
}

/// A pass's row in the profile: every kernel in one row (they are small);
/// `maps` kernel-sized arrays read or written.
fn work(shape: [usize; 4], maps: usize) -> Work {
    let values = shape.iter().product::<usize>() * maps;
    ("all kernels".into(), 0.0, profile::f32_bytes(values))
}

impl StandardizeOp for Flex {
    fn standardize_cpu(
        weight: FloatTensor<Self>,
        gain: FloatTensor<Self>,
        s: Standardization,
        eps: f64,
    ) -> FloatTensor<Self> {
        run(inputs([weight, gain]), s, eps).0
    }
}

impl<C: CheckpointStrategy> StandardizeOp for Autodiff<Flex, C> {
    fn standardize_cpu(
        weight: FloatTensor<Self>,
        gain: FloatTensor<Self>,
        s: Standardization,
        eps: f64,
    ) -> FloatTensor<Self> {
        record::<_, C, _>(StandardizeBackward, [weight, gain], |wg| run(wg, s, eps))
    }
}

#[derive(Debug)]
struct StandardizeBackward;

impl Backward<Flex, 2> for StandardizeBackward {
    type State = State;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_w, node_gain] = ops.parents;
        let dy = contiguous(grads.consume::<Flex>(&ops.node));
        let (w, gain, s, eps) = ops.state;
        let shape = dims4(&w);
        let n = shape[1] * shape[2] * shape[3];
        let (dw, dgain) = profile::timed(
            "weight standardization backward",
            || work(shape, 3),
            || backward(slice(&w), n, slice(&gain), s, eps, slice(&dy)),
        );
        if let Some(node) = node_w {
            grads.register::<Flex>(node.id, tensor(dw, shape));
        }
        if let Some(node) = node_gain {
            grads.register::<Flex>(node.id, tensor(dgain, [shape[0]]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::WsConv2dConfig;
    use burn::module::Param;
    use burn::tensor::{Device, Distribution, TensorData, Tolerance};

    fn loss(w: &[f64], n: usize, gain: &[f64], s: Standardization, dy: &[f32]) -> f64 {
        let mut total = 0.0;
        for (i, row) in w.chunks(n).enumerate() {
            let mean = row.iter().sum::<f64>() / n as f64;
            let q: f64 = row.iter().map(|v| (v - mean).powi(2)).sum();
            let (s, _, _) = scale(s, q, n, 1e-5, gain[i]);
            total += row
                .iter()
                .zip(&dy[i * n..])
                .map(|(v, &d)| (v - mean) * s * d as f64)
                .sum::<f64>();
        }
        total
    }

    /// The CPU kernel and the composed ops every other
    /// device runs give the same kernel and the same gradients of the raw
    /// weight and the gain, constant kernels included. The tolerance is the
    /// composed path's: it works in `f32`, and its weight gradient (a
    /// difference of terms about 1/std ≈ 20 times larger) is off by up to
    /// 2e-4 relative, more on its smallest entries; the kernel itself is
    /// checked against `f64` central differences to 1e-6 in
    /// `gradients_match_central_differences`.
    #[test]
    fn the_cpu_kernel_equals_the_composed_standardization() {
        let device = Device::flex().autodiff();
        for s in Standardization::STANDARDIZING {
            for constant in [false, true] {
                let mut conv = WsConv2dConfig::new(5, 7, 3)
                    .with_standardization(s)
                    .init(&device);
                if constant {
                    conv.weight = Param::from_tensor(Tensor::full([7, 5, 3, 3], 0.3, &device));
                }
                if conv.gain.is_some() {
                    let g = Tensor::random([7, 1, 1, 1], Distribution::Normal(1.0, 0.5), &device);
                    conv.gain = Some(Param::from_tensor(g));
                }
                let dy = Tensor::<4>::random([7, 5, 3, 3], Distribution::Default, &device);
                let grads_of = |w: Tensor<4>| {
                    let grads = (w.clone() * dy.clone()).sum().backward();
                    let dw = conv.weight.val().grad(&grads).unwrap();
                    let dg = conv.gain.as_ref().map(|g| g.val().grad(&grads).unwrap());
                    (w.inner(), dw, dg)
                };
                let (y0, dw0, dg0) = grads_of(composed(
                    conv.weight.val(),
                    conv.gain.as_ref().map(|g| g.val()),
                    s,
                    conv.eps,
                ));
                let (y1, dw1, dg1) = grads_of(conv.standardized_weight());
                // Relative to each value, and absolute at 1e-5 of the tensor's
                // largest value: a small gradient entry is a difference of
                // terms that size, and the composed f32 path rounds there.
                let check = |a: TensorData, b: TensorData| {
                    let scale = b.iter::<f32>().fold(0f32, |m, v| m.max(v.abs()));
                    let tol =
                        Tolerance::<f32>::absolute((1e-5 * scale).max(2e-5)).set_relative(5e-4);
                    a.assert_approx_eq::<f32>(&b, tol);
                };
                if constant {
                    // A constant kernel standardizes to exactly 0. The
                    // composed path's variance is a rounding residue, not 0:
                    // its size depends on the order Flex sums in (other
                    // without AVX2), and next to eps it moves the output by
                    // up to 6e-3 and the gradient (≈ 1/sqrt(eps)) by up to
                    // 0.6 % on a baseline x86-64 (scripts/cpu-paths.sh).
                    assert!(y1.into_data().iter::<f32>().all(|v| v == 0.0), "{s:?}");
                    let tol = Tolerance::<f32>::relative(1e-2);
                    dw1.into_data()
                        .assert_approx_eq::<f32>(&dw0.into_data(), tol);
                } else {
                    check(y1.into_data(), y0.into_data());
                    check(dw1.into_data(), dw0.into_data());
                }
                if let (Some(a), Some(b)) = (dg1, dg0) {
                    if constant {
                        // Σ dy · 0: the gain's gradient is exactly 0 too.
                        assert!(a.into_data().iter::<f32>().all(|v| v == 0.0), "{s:?}");
                    } else {
                        check(a.into_data(), b.into_data());
                    }
                }
            }
        }
    }

    #[test]
    fn gradients_match_central_differences() {
        let n = 27;
        let rows = 4;
        let w: Vec<f32> = (0..rows * n)
            .map(|i| ((i * 37 % 101) as f32 / 50.0 - 1.0) * 0.3)
            .collect();
        let gain = [1.0f32, 0.5, 2.0, -1.0];
        let dy: Vec<f32> = (0..rows * n)
            .map(|i| (i * 53 % 89) as f32 / 44.0 - 1.0)
            .collect();
        for formula in Standardization::STANDARDIZING {
            let (dw, dgain) = backward(&w, n, &gain, formula, 1e-5, &dy);
            let wd: Vec<f64> = w.iter().map(|&v| v as f64).collect();
            let gd: Vec<f64> = gain.iter().map(|&v| v as f64).collect();
            let h = 1e-6;
            for i in 0..w.len() {
                let (mut up, mut down) = (wd.clone(), wd.clone());
                up[i] += h;
                down[i] -= h;
                let want = (loss(&up, n, &gd, formula, &dy) - loss(&down, n, &gd, formula, &dy))
                    / (2.0 * h);
                assert!(
                    (dw[i] as f64 - want).abs() < 1e-6 * (1.0 + want.abs()),
                    "{formula:?} dw[{i}] {} vs {want}",
                    dw[i]
                );
            }
            for i in 0..rows {
                let (mut up, mut down) = (gd.clone(), gd.clone());
                up[i] += h;
                down[i] -= h;
                let want = (loss(&wd, n, &up, formula, &dy) - loss(&wd, n, &down, formula, &dy))
                    / (2.0 * h);
                let got = if formula == Standardization::Scaled {
                    dgain[i] as f64
                } else {
                    0.0
                };
                let want = if formula == Standardization::Scaled {
                    want
                } else {
                    0.0
                };
                assert!(
                    (got - want).abs() < 1e-3 * (1.0 + want.abs()),
                    "{formula:?} dgain[{i}] {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn a_constant_row_gives_finite_values() {
        let w = vec![0.25f32; 9];
        for formula in Standardization::STANDARDIZING {
            let y = forward(&w, 9, &[1.0], formula, 1e-5);
            let (dw, dg) = backward(&w, 9, &[1.0], formula, 1e-5, &[1.0; 9]);
            assert!(
                y.iter().chain(&dw).chain(&dg).all(|v| v.is_finite()),
                "{formula:?}"
            );
        }
    }
}
