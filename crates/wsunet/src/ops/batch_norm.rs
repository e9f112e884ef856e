//! BatchNorm in training fused with what follows it in this network:
//! `BN(x)`, `SiLU(BN(x))` and `SiLU(BN(x) + r)` — a CPU kernel with its
//! backward on Flex, Burn's `batch_norm_train` and `silu` elsewhere.
//!
//! BatchNorm: Ioffe & Szegedy, arXiv:1502.03167, with PyTorch's
//! `nn.BatchNorm2d` numerics in training (the biased batch variance, `eps`
//! inside the square root, per-channel affine); the running averages are
//! the layer's business ([`crate::layers::BatchNorm2d`]), from the batch
//! statistics [`batch_stats`] returns. The kernel is GroupNorm's
//! (`group_norm.rs`) with a channel's values spread over every image's
//! plane: the statistics are two passes per channel, the output one, the
//! backward two, each parallel over channels or `(image, channel)` planes;
//! per-channel sums are added over images in a fixed order (the same bits
//! on every run).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::{DType, Tensor, TensorData};
use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::flex::{contiguous, dims4, inputs, record, register_grads, runs_here, slice, tensor};
use super::group_norm::Tail;
use super::profile::{self, Work};
use super::simd::{sigmoid, sum, sum2, wide};

/// `tail(BN(x))` in training with the batch's statistics, and those
/// statistics: one kernel on the CPU, Burn's `batch_norm_train` and the
/// tail's ops elsewhere.
///
/// # Shapes
///
/// - x, the residual, output: `[batch, channels, H, W]`
/// - gamma, beta, mean, variance: `[channels]`
pub fn batch_norm_train(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    eps: f64,
    tail: Tail,
) -> BnTrainOutput {
    let [n, c, h, w] = x.dims();
    let fits = runs_here(&x.device(), x.dtype())
        && [gamma.dtype(), beta.dtype()] == [DType::F32; 2]
        && gamma.dims() == [c]
        && beta.dims() == [c]
        && n * h * w > 0
        && match &tail {
            Tail::AddSilu(r) => r.dims() == x.dims() && r.dtype() == DType::F32,
            _ => true,
        };
    if !fits {
        let out = burn::tensor::module::batch_norm_train(x, gamma, beta, eps);
        return BnTrainOutput {
            output: tail.apply(out.output),
            mean: out.mean,
            variance: out.variance,
        };
    }
    let (mean, variance) = batch_stats(&x);
    let p = BnParams {
        mean: mean.clone(),
        rstd: variance
            .iter()
            .map(|&v| (1.0 / (v as f64 + eps).sqrt()) as f32)
            .collect(),
    };
    let (x, gamma, beta) = (
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
    );
    let output = Tensor::from_dispatch(match tail {
        Tail::AddSilu(r) => {
            <Dispatch as BatchNormOp>::batch_norm_add_silu_cpu(x, gamma, beta, r.into_dispatch(), p)
        }
        tail => {
            <Dispatch as BatchNormOp>::batch_norm_cpu(x, gamma, beta, p, matches!(tail, Tail::Silu))
        }
    });
    let device = output.device();
    let stat = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [c]), &device);
    BnTrainOutput {
        output,
        mean: stat(mean),
        variance: stat(variance),
    }
}

/// What [`batch_norm_train`] returns.
#[derive(Debug)]
pub struct BnTrainOutput {
    /// `tail(BN(x))`.
    pub output: Tensor<4>,
    /// Per-channel batch mean (no gradient).
    pub mean: Tensor<1>,
    /// Per-channel biased batch variance (no gradient).
    pub variance: Tensor<1>,
}

/// Per-channel mean and biased variance of `x` over batch and pixels (two
/// passes per channel, blocked sums), without gradient.
fn batch_stats(x: &Tensor<4>) -> (Vec<f32>, Vec<f32>) {
    let [n, c, h, w] = x.dims();
    let Ok(x) = x.clone().inner().try_into_primitive::<Flex>() else {
        unreachable!("batch_stats: the caller checked that x is on Flex")
    };
    let x = contiguous(x);
    let g = BnGeom::new([n, c, h, w]);
    profile::timed(
        "batch norm statistics",
        || g.work(1),
        || stats(&g, slice(&x)),
    )
}

/// Layout of `x [n, c, hw]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct BnGeom {
    n: usize,
    c: usize,
    hw: usize,
    /// `[n, c, h, w]`, for the profile.
    dims: [usize; 4],
}

impl BnGeom {
    fn new(dims: [usize; 4]) -> Self {
        let [n, c, h, w] = dims;
        BnGeom {
            n,
            c,
            hw: h * w,
            dims,
        }
    }

    /// Channel `c`'s plane in image `n`.
    fn plane<'a>(&self, v: &'a [f32], n: usize, c: usize) -> &'a [f32] {
        &v[(n * self.c + c) * self.hw..][..self.hw]
    }

    /// A pass's row in the profile: `maps` maps of x's size read or written.
    fn work(&self, maps: usize) -> Work {
        let shape = profile::dims(self.dims);
        (
            shape,
            0.0,
            profile::f32_bytes(maps * self.n * self.c * self.hw),
        )
    }
}

/// The statistics of every channel, in parallel over channels.
fn stats(g: &BnGeom, x: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let count = (g.n * g.hw) as f64;
    let (mean, var): (Vec<f32>, Vec<f32>) = (0..g.c)
        .into_par_iter()
        .map(|c| {
            let planes = || (0..g.n).map(move |n| g.plane(x, n, c));
            let m = (planes().map(|p| sum(p, |v| v)).sum::<f64>() / count) as f32;
            let q: f64 = planes().map(|p| sum(p, |v| (v - m) * (v - m))).sum();
            (m, (q / count) as f32)
        })
        .unzip();
    (mean, var)
}

/// The batch statistics the kernel normalizes with, per channel.
#[derive(Clone, Debug, PartialEq)]
pub struct BnParams {
    mean: Vec<f32>,
    rstd: Vec<f32>,
}

/// One `(image, channel)` plane of the forward.
struct Plane<'a> {
    x: &'a [f32],
    /// `y = x·a + shift` before the tail.
    a: f32,
    shift: f32,
    tail: Tail<&'a [f32]>,
    y: &'a mut [MaybeUninit<f32>],
}

#[inline(always)]
fn forward_plane(p: Plane<'_>) {
    let (a, shift) = (p.a, p.shift);
    match p.tail {
        Tail::None => p.y.iter_mut().zip(p.x).for_each(|(y, &x)| {
            y.write(x * a + shift);
        }),
        Tail::Silu => p.y.iter_mut().zip(p.x).for_each(|(y, &x)| {
            let z = x * a + shift;
            y.write(z * sigmoid(z));
        }),
        Tail::AddSilu(r) => p.y.iter_mut().zip(p.x).zip(r).for_each(|((y, &x), &r)| {
            let z = x * a + shift + r;
            y.write(z * sigmoid(z));
        }),
    }
}

/// The inputs of the forward and backward kernels.
#[derive(Clone, Copy)]
struct BnInputs<'a> {
    x: &'a [f32],
    gamma: &'a [f32],
    beta: &'a [f32],
    tail: Tail<&'a [f32]>,
    p: &'a BnParams,
}

impl BnInputs<'_> {
    /// Channel `c`'s affine map after normalization: `(a, shift)`.
    fn affine(&self, c: usize) -> (f32, f32) {
        let a = self.p.rstd[c] * self.gamma[c];
        (a, self.beta[c] - self.p.mean[c] * a)
    }
}

fn check(g: &BnGeom, i: &BnInputs<'_>) {
    assert!(g.hw > 0, "batch_norm: empty planes");
    assert_eq!(i.x.len(), g.n * g.c * g.hw, "batch_norm input size");
    assert_eq!(
        [i.gamma.len(), i.beta.len(), i.p.mean.len(), i.p.rstd.len()],
        [g.c; 4],
        "batch_norm per-channel sizes"
    );
    if let Tail::AddSilu(r) = i.tail {
        assert_eq!(r.len(), i.x.len(), "batch_norm residual size");
    }
}

fn forward(g: &BnGeom, i: BnInputs<'_>) -> Vec<f32> {
    check(g, &i);
    let mut y = Vec::with_capacity(i.x.len());
    y.spare_capacity_mut()[..i.x.len()]
        .par_chunks_mut(g.hw)
        .enumerate()
        .for_each(|(k, y)| {
            let (a, shift) = i.affine(k % g.c);
            let plane = Plane {
                x: &i.x[k * g.hw..][..g.hw],
                a,
                shift,
                tail: i.tail.map(|r| &r[k * g.hw..][..g.hw]),
                y,
            };
            wide!(forward_plane(plane: Plane<'_>) -> ())
        });
    // SAFETY: `check` asserted x.len() = n·c·hw: the planes of hw values
    // cover it, and `forward_plane` writes every value of its plane.
    unsafe { y.set_len(i.x.len()) };
    y
}

/// Pass 1 of the backward on one plane: `dz = ∂L/∂(x·a + shift)` into
/// `dx` (and the residual's gradient, the same values, into `dr`); returns
/// `(Σ dz·x̂, Σ dz)`.
struct PlaneGrad<'a> {
    x: &'a [f32],
    dy: &'a [f32],
    a: f32,
    shift: f32,
    mean: f32,
    rstd: f32,
    tail: Tail<(&'a [f32], &'a mut [f32])>,
    dx: &'a mut [f32],
}

#[inline(always)]
fn backward_plane(p: PlaneGrad<'_>) -> (f64, f64) {
    let PlaneGrad {
        x,
        dy,
        a,
        shift,
        mean,
        rstd,
        tail,
        dx,
    } = p;
    let dsilu = |x: f32, dy: f32, r: f32| {
        let z = x * a + shift + r;
        let s = sigmoid(z);
        dy * s * (1.0 + z * (1.0 - s))
    };
    let dz: &[f32] = match tail {
        Tail::None => dy,
        Tail::Silu => {
            for (d, (&x, &dy)) in dx.iter_mut().zip(x.iter().zip(dy)) {
                *d = dsilu(x, dy, 0.0);
            }
            dx
        }
        Tail::AddSilu((r, dr)) => {
            for ((d, &r), (&x, &dy)) in dx.iter_mut().zip(r).zip(x.iter().zip(dy)) {
                *d = dsilu(x, dy, r);
            }
            dr.copy_from_slice(dx);
            dx
        }
    };
    (sum2(dz, x, |d, x| d * ((x - mean) * rstd)), sum(dz, |d| d))
}

/// Pass 2 on one plane: `dx = rstd · (γ·dz − mean(γ·dz) − x̂·mean(γ·dz·x̂))`,
/// `dz` in `dx` already (activated) or `dy` (no tail).
struct PlaneDx<'a> {
    x: &'a [f32],
    dy: Option<&'a [f32]>,
    gamma: f32,
    mean: f32,
    rstd: f32,
    /// `mean(γ·dz)`, `mean(γ·dz·x̂)` over the channel.
    mg: f32,
    mgx: f32,
    dx: &'a mut [f32],
}

#[inline(always)]
fn dx_plane(p: PlaneDx<'_>) {
    let (gm, mean, rstd, mg, mgx) = (p.gamma, p.mean, p.rstd, p.mg, p.mgx);
    let grad = |dz: f32, x: f32| rstd * (gm * dz - mg - (x - mean) * rstd * mgx);
    match p.dy {
        Some(dy) => {
            for ((d, &dy), &x) in p.dx.iter_mut().zip(dy).zip(p.x) {
                *d = grad(dy, x);
            }
        }
        None => {
            for (d, &x) in p.dx.iter_mut().zip(p.x) {
                *d = grad(*d, x);
            }
        }
    }
}

/// Gradients of the forward: `dx`, `dgamma`, `dbeta` and (with a residual)
/// `dr`.
struct BnGrads {
    dx: Vec<f32>,
    dgamma: Vec<f32>,
    dbeta: Vec<f32>,
    dr: Option<Vec<f32>>,
}

fn backward(g: &BnGeom, i: BnInputs<'_>, dy: &[f32]) -> BnGrads {
    check(g, &i);
    assert_eq!(dy.len(), i.x.len(), "batch_norm output-gradient size");
    let hw = g.hw;
    let mut dx = vec![0.0f32; i.x.len()];
    let mut dr = matches!(i.tail, Tail::AddSilu(_)).then(|| vec![0.0f32; i.x.len()]);
    let dr_planes: Vec<Option<&mut [f32]>> = match dr.as_mut() {
        Some(dr) => dr.chunks_mut(hw).map(Some).collect(),
        None => (0..g.n * g.c).map(|_| None).collect(),
    };
    // Pass 1, per plane: dz and its two sums.
    let sums: Vec<(f64, f64)> = dx
        .par_chunks_mut(hw)
        .zip(dr_planes)
        .enumerate()
        .map(|(k, (dx, dr))| {
            let c = k % g.c;
            let (a, shift) = i.affine(c);
            let tail = match (i.tail, dr) {
                (Tail::AddSilu(r), Some(dr)) => Tail::AddSilu((&r[k * hw..][..hw], dr)),
                (Tail::Silu, _) => Tail::Silu,
                _ => Tail::None,
            };
            let plane = PlaneGrad {
                x: &i.x[k * hw..][..hw],
                dy: &dy[k * hw..][..hw],
                a,
                shift,
                mean: i.p.mean[c],
                rstd: i.p.rstd[c],
                tail,
                dx,
            };
            wide!(backward_plane(plane: PlaneGrad<'_>) -> (f64, f64))
        })
        .collect();
    // Per channel, images in order.
    let (mut sdx, mut sd) = (vec![0.0f64; g.c], vec![0.0f64; g.c]);
    for (k, &(a, b)) in sums.iter().enumerate() {
        sdx[k % g.c] += a;
        sd[k % g.c] += b;
    }
    let count = (g.n * hw) as f64;
    // Pass 2, per plane.
    let activated = !matches!(i.tail, Tail::None);
    dx.par_chunks_mut(hw).enumerate().for_each(|(k, dx)| {
        let c = k % g.c;
        let gm = i.gamma[c];
        let plane = PlaneDx {
            x: &i.x[k * hw..][..hw],
            dy: (!activated).then(|| &dy[k * hw..][..hw]),
            gamma: gm,
            mean: i.p.mean[c],
            rstd: i.p.rstd[c],
            mg: (gm as f64 * sd[c] / count) as f32,
            mgx: (gm as f64 * sdx[c] / count) as f32,
            dx,
        };
        wide!(dx_plane(plane: PlaneDx<'_>) -> ())
    });
    BnGrads {
        dx,
        dgamma: sdx.iter().map(|&v| v as f32).collect(),
        dbeta: sd.iter().map(|&v| v as f32).collect(),
        dr,
    }
}

/// The CPU kernels, plugged into Burn.
#[backend_extension(Flex, Autodiff)]
pub trait BatchNormOp: Backend {
    /// BatchNorm of `x [n, c, h, w]` with the batch statistics `p`, then
    /// SiLU when `silu`.
    fn batch_norm_cpu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        p: BnParams,
        silu: bool,
    ) -> FloatTensor<Self>;

    /// `SiLU(BN(x) + residual)`.
    fn batch_norm_add_silu_cpu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        p: BnParams,
    ) -> FloatTensor<Self>;
}

/// What the backward keeps.
#[derive(Debug, Clone)]
struct BnState {
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    tail: Tail<FlexTensor>,
    p: BnParams,
}

impl BnState {
    fn geom(&self) -> BnGeom {
        let [n, c, h, w] = dims4(&self.x);
        BnGeom::new([n, c, h, w])
    }

    fn inputs(&self) -> BnInputs<'_> {
        BnInputs {
            x: slice(&self.x),
            gamma: slice(&self.gamma),
            beta: slice(&self.beta),
            tail: self.tail.as_ref().map(slice),
            p: &self.p,
        }
    }

    /// A pass's row in the profile: `maps` maps of x's size, and the
    /// residual's read (and its gradient's write) on top.
    fn work(&self, maps: usize) -> Work {
        self.geom().work(self.tail.profile_maps(maps))
    }
}

fn run(
    [x, gamma, beta]: [FlexTensor; 3],
    tail: Tail<FlexTensor>,
    p: BnParams,
) -> (FlexTensor, BnState) {
    let state = BnState {
        x,
        gamma,
        beta,
        tail,
        p,
    };
    let y = profile::timed(
        "batch norm forward",
        || state.work(2),
        || forward(&state.geom(), state.inputs()),
    );
    (tensor(y, dims4(&state.x)), state)
}

impl BatchNormOp for Flex {
    fn batch_norm_cpu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        p: BnParams,
        silu: bool,
    ) -> FloatTensor<Self> {
        run(inputs([x, gamma, beta]), Tail::silu_if(silu), p).0
    }

    fn batch_norm_add_silu_cpu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        p: BnParams,
    ) -> FloatTensor<Self> {
        run(
            inputs([x, gamma, beta]),
            Tail::AddSilu(contiguous(residual)),
            p,
        )
        .0
    }
}

impl<C: CheckpointStrategy> BatchNormOp for Autodiff<Flex, C> {
    fn batch_norm_cpu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        p: BnParams,
        silu: bool,
    ) -> FloatTensor<Self> {
        let tail = Tail::silu_if(silu);
        record::<_, C, _>(BatchNormBackward::<3>, [x, gamma, beta], |xgb| {
            run(xgb, tail, p)
        })
    }

    fn batch_norm_add_silu_cpu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        p: BnParams,
    ) -> FloatTensor<Self> {
        record::<_, C, _>(
            BatchNormBackward::<4>,
            [x, gamma, beta, residual],
            |[x, gamma, beta, r]| run([x, gamma, beta], Tail::AddSilu(r), p),
        )
    }
}

/// The backward over `N` inputs: x, gamma, beta, and the residual when the
/// tail adds one.
#[derive(Debug)]
struct BatchNormBackward<const N: usize>;

impl<const N: usize> Backward<Flex, N> for BatchNormBackward<N> {
    type State = BnState;

    fn backward(self, ops: Ops<BnState, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = contiguous(grads.consume::<Flex>(&ops.node));
        let s = &ops.state;
        let g = s.geom();
        let d = profile::timed(
            "batch norm backward",
            || s.work(3),
            || backward(&g, s.inputs(), slice(&dy)),
        );
        let dims = dims4(&s.x);
        let parts = [
            Some(tensor(d.dx, dims)),
            Some(tensor(d.dgamma, [g.c])),
            Some(tensor(d.dbeta, [g.c])),
            d.dr.map(|dr| tensor(dr, dims)),
        ];
        register_grads(&ops, grads, parts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::flex::assert_close;
    use burn::tensor::{Device, Distribution};

    /// The kernel and Burn's `batch_norm_train` + SiLU (+ sum) give the same
    /// output, statistics and gradients of x, gamma, beta and the residual.
    #[test]
    fn batch_norm_matches_burn_forward_and_backward() {
        let device = Device::flex().autodiff();
        for (n, c, h, w) in [(2, 48, 7, 5), (3, 6, 9, 11), (1, 4, 2, 3), (4, 3, 1, 1)] {
            let x = Tensor::<4>::random([n, c, h, w], Distribution::Normal(0.5, 2.0), &device);
            let gamma = Tensor::<1>::random([c], Distribution::Normal(1.0, 0.5), &device);
            let beta = Tensor::<1>::random([c], Distribution::Normal(0.0, 0.5), &device);
            let r = Tensor::<4>::random([n, c, h, w], Distribution::Default, &device);
            let dy = Tensor::<4>::random([n, c, h, w], Distribution::Default, &device);
            for variant in 0..3 {
                let run = |ours: bool| {
                    let (x, r) = (x.clone().require_grad(), r.clone().require_grad());
                    let (gamma, beta) = (gamma.clone().require_grad(), beta.clone().require_grad());
                    let tail = match variant {
                        0 => Tail::None,
                        1 => Tail::Silu,
                        _ => Tail::AddSilu(r.clone()),
                    };
                    let (y, mean, var) = if ours {
                        let out =
                            batch_norm_train(x.clone(), gamma.clone(), beta.clone(), 1e-5, tail);
                        (out.output, out.mean, out.variance)
                    } else {
                        let out = burn::tensor::module::batch_norm_train(
                            x.clone(),
                            gamma.clone(),
                            beta.clone(),
                            1e-5,
                        );
                        (tail.apply(out.output), out.mean, out.variance)
                    };
                    let grads = (y.clone() * dy.clone()).sum().backward();
                    let stats = Tensor::cat(vec![mean.inner(), var.inner()], 0).unsqueeze::<4>();
                    (
                        y.inner(),
                        stats,
                        x.grad(&grads).unwrap(),
                        gamma.grad(&grads).unwrap().unsqueeze::<4>(),
                        beta.grad(&grads).unwrap().unsqueeze::<4>(),
                        r.grad(&grads),
                    )
                };
                let (y0, s0, dx0, dg0, db0, dr0) = run(false);
                let (y1, s1, dx1, dg1, db1, dr1) = run(true);
                let what = format!("variant {variant}, {n}×{c}×{h}×{w}");
                assert_close(y1, y0, &format!("y {what}"));
                assert_close(s1, s0, &format!("mean, variance {what}"));
                assert_close(dx1, dx0, &format!("dx {what}"));
                assert_close(dg1, dg0, &format!("dgamma {what}"));
                assert_close(db1, db0, &format!("dbeta {what}"));
                if variant == 2 {
                    assert_close(dr1.unwrap(), dr0.unwrap(), &format!("dr {what}"));
                }
            }
        }
    }

    /// A dtype the kernel does not take runs Burn's ops, with the same
    /// values.
    #[test]
    fn other_dtypes_run_burn_ops() {
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::random([2, 3, 4, 4], Distribution::Default, &device);
        let (g, b) = (
            Tensor::<1>::ones([3], &device),
            Tensor::<1>::zeros([3], &device),
        );
        let ours = batch_norm_train(x.clone(), g.clone(), b.clone(), 1e-5, Tail::Silu);
        let (x, g, b) = (x.cast(DType::F64), g.cast(DType::F64), b.cast(DType::F64));
        let burn = batch_norm_train(x, g, b, 1e-5, Tail::Silu);
        assert_eq!(burn.output.dtype(), DType::F64);
        assert_close(ours.output, burn.output.cast(DType::F32), "output");
    }
}
