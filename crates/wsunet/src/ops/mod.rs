//! CPU kernels with handwritten backward passes, plugged into Burn through its
//! backend extension (`#[backend_extension]`): used on the Flex device for
//! `f32` tensors, while every other device (Vulkan, CUDA) and dtype runs
//! Burn's composed ops unchanged. Nothing here knows about layers.
//!
//! - [`conv2d`]: convolution (groups 1, dilation 1) — forward, input and
//!   weight gradient in [`conv`];
//! - [`group_norm`], [`group_norm_add_silu`]: GroupNorm fused with the SiLU
//!   and the residual sum that follow it — in [`group_norm`](mod@group_norm);
//! - [`standardize`]: weight standardization of a kernel — in
//!   [`standardize`](mod@standardize);
//! - [`resize_bilinear`]: bilinear resizing — in [`resize`](mod@resize);
//! - [`adamw`]: one AdamW update in a single pass (used by the trainer's
//!   optimizer).

pub mod adamw;
pub mod conv;
pub mod group_norm;
pub mod resize;
mod simd;
pub mod standardize;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::nn::GroupNorm;
use burn::tensor::activation::silu;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Device, Tensor, TensorData};

use conv::ConvGeom;
use group_norm::{GnGeom, Tail};
use resize::ResizeGeom;
pub use standardize::Formula;

/// Operations this crate computes itself on the CPU.
#[backend_extension(Flex, Autodiff)]
pub trait CpuOps: Backend {
    /// `conv2d` with groups 1, dilation 1, a square kernel and symmetric
    /// padding; no bias.
    fn conv2d_cpu(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        padding: usize,
    ) -> FloatTensor<Self>;

    /// GroupNorm (affine) of `x [n, c, h, w]`, followed by SiLU when `silu`.
    fn group_norm_cpu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        eps: f64,
        silu: bool,
    ) -> FloatTensor<Self>;

    /// Weight standardization of every output channel of `weight [out, ..]`;
    /// `gain [out]` is read by `Formula::Scaled` only.
    fn standardize_cpu(
        weight: FloatTensor<Self>,
        gain: FloatTensor<Self>,
        formula: Formula,
        eps: f64,
    ) -> FloatTensor<Self>;

    /// Bilinear resize of `x [n, c, h, w]` to `[n, c, ho, wo]` (PyTorch's
    /// `align_corners=False`).
    fn resize_bilinear_cpu(x: FloatTensor<Self>, ho: usize, wo: usize) -> FloatTensor<Self>;

    /// `SiLU(GroupNorm(x) + residual)`.
    fn group_norm_add_silu_cpu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        groups: usize,
        eps: f64,
    ) -> FloatTensor<Self>;
}

/// Whether tensors on `device` of `dtype` run through this module's kernels.
pub fn runs_here(device: &Device, dtype: DType) -> bool {
    dtype == DType::F32 && *device == Device::flex()
}

/// A 2-D convolution: this module's kernel on the CPU when the options allow
/// it, Burn's `conv2d` otherwise. Same arguments and result as
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
    let [stride, _] = options.stride;
    let [(padding, _), _] = options.padding;
    let fits = runs_here(&x.device(), x.dtype())
        && weight.dtype() == DType::F32
        && options.groups == 1
        && options.dilation == [1, 1]
        && options.stride[0] == options.stride[1]
        && options.padding == [(padding, padding); 2]
        && ConvGeom::new(x.dims(), weight.dims(), stride, padding).is_some();
    if !fits {
        return burn::tensor::module::conv2d(x, weight, bias, options);
    }
    let y = Tensor::<4>::from_dispatch(<Dispatch as CpuOps>::conv2d_cpu(
        x.into_dispatch(),
        weight.into_dispatch(),
        stride,
        padding,
    ));
    match bias {
        Some(b) => {
            let [c] = b.dims();
            y + b.reshape([1, c, 1, 1])
        }
        None => y,
    }
}

/// The affine parameters of `gn` when this module's kernel can run it on `x`.
fn fused_norm(gn: &GroupNorm, x: &Tensor<4>) -> Option<(Tensor<1>, Tensor<1>)> {
    let [_, c, _, _] = x.dims();
    if !runs_here(&x.device(), x.dtype())
        || c != gn.num_channels
        || !c.is_multiple_of(gn.num_groups)
    {
        return None;
    }
    let gamma = gn.gamma.as_ref()?.val();
    let beta = gn.beta.as_ref()?.val();
    (gamma.dtype() == DType::F32 && beta.dtype() == DType::F32).then_some((gamma, beta))
}

/// `gn(x)`, then SiLU when `act`: one fused kernel on the CPU, Burn's
/// `GroupNorm` and `silu` elsewhere.
///
/// # Shapes
///
/// - x, output: `[batch, channels, H, W]`
pub fn group_norm(x: Tensor<4>, gn: &GroupNorm, act: bool) -> Tensor<4> {
    match fused_norm(gn, &x) {
        Some((gamma, beta)) => Tensor::from_dispatch(<Dispatch as CpuOps>::group_norm_cpu(
            x.into_dispatch(),
            gamma.into_dispatch(),
            beta.into_dispatch(),
            gn.num_groups,
            gn.epsilon,
            act,
        )),
        None => {
            let y = gn.forward(x);
            if act { silu(y) } else { y }
        }
    }
}

/// `SiLU(gn(x) + residual)`, the end of a residual block: one fused kernel
/// on the CPU, Burn's ops elsewhere.
///
/// # Shapes
///
/// - x, residual, output: `[batch, channels, H, W]`
pub fn group_norm_add_silu(x: Tensor<4>, gn: &GroupNorm, residual: Tensor<4>) -> Tensor<4> {
    match fused_norm(gn, &x) {
        Some((gamma, beta)) if residual.dims() == x.dims() && residual.dtype() == DType::F32 => {
            Tensor::from_dispatch(<Dispatch as CpuOps>::group_norm_add_silu_cpu(
                x.into_dispatch(),
                gamma.into_dispatch(),
                beta.into_dispatch(),
                residual.into_dispatch(),
                gn.num_groups,
                gn.epsilon,
            ))
        }
        _ => silu(gn.forward(x) + residual),
    }
}

/// The kernel `weight [out, in, kh, kw]` standardized per output channel by
/// this module's kernel, or `None` when it does not run on this tensor (the
/// caller composes Burn's ops). `gain [out, 1, 1, 1]` is used by
/// `Formula::Scaled` only.
pub fn standardize(
    weight: Tensor<4>,
    gain: Option<Tensor<4>>,
    formula: Formula,
    eps: f64,
) -> Option<Tensor<4>> {
    let [out, _, _, _] = weight.dims();
    if !runs_here(&weight.device(), weight.dtype()) || out == 0 {
        return None;
    }
    let gain = match gain {
        Some(g) if g.dtype() == DType::F32 && g.shape().num_elements() == out => g.reshape([out]),
        Some(_) => return None,
        None => Tensor::ones([out], &weight.device()),
    };
    Some(Tensor::from_dispatch(
        <Dispatch as CpuOps>::standardize_cpu(
            weight.into_dispatch(),
            gain.into_dispatch(),
            formula,
            eps,
        ),
    ))
}

/// `x` resized bilinearly to `size` by this module's kernel, or `None` when it
/// does not run on this tensor (the caller composes Burn's ops).
pub fn resize_bilinear(x: Tensor<4>, size: [usize; 2]) -> Option<Tensor<4>> {
    let [ho, wo] = size;
    if !runs_here(&x.device(), x.dtype()) || ho == 0 || wo == 0 || x.shape().num_elements() == 0 {
        return None;
    }
    Some(Tensor::from_dispatch(
        <Dispatch as CpuOps>::resize_bilinear_cpu(x.into_dispatch(), ho, wo),
    ))
}

/// `t` as one contiguous run of `f32`.
fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.as_slice::<f32>().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

fn slice(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("ops: tensors are made contiguous f32 before kernels run")
}

fn dims4(t: &FlexTensor) -> [usize; 4] {
    let s = t.shape();
    [s[0], s[1], s[2], s[3]]
}

fn flex_tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

fn gn_geom(x: &FlexTensor, groups: usize) -> GnGeom {
    let [n, c, h, w] = dims4(x);
    GnGeom {
        n,
        c,
        hw: h * w,
        groups,
    }
}

/// What a fused GroupNorm keeps for its backward.
#[derive(Debug, Clone)]
struct GnState {
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    residual: Option<FlexTensor>,
    stats: Vec<f32>,
    groups: usize,
    tail: Tail,
}

// The forwards on contiguous Flex tensors: the output and what the backward
// needs. The `CpuOps` impls below call them with and without autodiff.

fn conv_forward([x, w]: [FlexTensor; 2], stride: usize, padding: usize) -> (FlexTensor, ConvState) {
    let g = ConvGeom::new(dims4(&x), dims4(&w), stride, padding).unwrap_or_else(|| {
        panic!(
            "conv2d_cpu: input {:?} and kernel {:?} (stride {stride}, padding {padding}) do not fit",
            dims4(&x),
            dims4(&w)
        )
    });
    let y = flex_tensor(
        conv::forward(&g, slice(&x), slice(&w)),
        [g.n, g.co, g.ho, g.wo],
    );
    (y, (x, w, g))
}

fn gn_forward(
    [x, gamma, beta]: [FlexTensor; 3],
    residual: Option<FlexTensor>,
    groups: usize,
    eps: f64,
    tail: Tail,
) -> (FlexTensor, GnState) {
    let g = gn_geom(&x, groups);
    let (y, stats) = group_norm::forward(
        &g,
        slice(&x),
        slice(&gamma),
        slice(&beta),
        residual.as_ref().map(slice),
        tail,
        eps,
    );
    let y = flex_tensor(y, dims4(&x));
    let state = GnState {
        x,
        gamma,
        beta,
        residual,
        stats,
        groups,
        tail,
    };
    (y, state)
}

fn resize_forward([x]: [FlexTensor; 1], ho: usize, wo: usize) -> (FlexTensor, ResizeGeom) {
    let [n, c, h, w] = dims4(&x);
    let g = ResizeGeom {
        planes: n * c,
        h,
        w,
        ho,
        wo,
    };
    let y = flex_tensor(resize::forward(&g, slice(&x)), [n, c, ho, wo]);
    (y, g)
}

fn standardize_forward(
    [w, gain]: [FlexTensor; 2],
    formula: Formula,
    eps: f64,
) -> (FlexTensor, StandardizeState) {
    let shape = dims4(&w);
    let n = shape[1] * shape[2] * shape[3];
    let y = flex_tensor(
        standardize::forward(slice(&w), n, slice(&gain), formula, eps),
        shape,
    );
    (y, (w, gain, formula, eps))
}

type ConvState = (FlexTensor, FlexTensor, ConvGeom);
type StandardizeState = (FlexTensor, FlexTensor, Formula, f64);

fn flex<const N: usize>(inputs: [FloatTensor<Flex>; N]) -> [FlexTensor; N] {
    inputs.map(contiguous)
}

impl CpuOps for Flex {
    fn conv2d_cpu(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        padding: usize,
    ) -> FloatTensor<Self> {
        conv_forward(flex([x, weight]), stride, padding).0
    }

    fn group_norm_cpu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        eps: f64,
        silu: bool,
    ) -> FloatTensor<Self> {
        let tail = Tail::silu_if(silu);
        gn_forward(flex([x, gamma, beta]), None, groups, eps, tail).0
    }

    fn group_norm_add_silu_cpu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        groups: usize,
        eps: f64,
    ) -> FloatTensor<Self> {
        let r = contiguous(residual);
        gn_forward(flex([x, gamma, beta]), Some(r), groups, eps, Tail::AddSilu).0
    }

    fn resize_bilinear_cpu(x: FloatTensor<Self>, ho: usize, wo: usize) -> FloatTensor<Self> {
        resize_forward(flex([x]), ho, wo).0
    }

    fn standardize_cpu(
        weight: FloatTensor<Self>,
        gain: FloatTensor<Self>,
        formula: Formula,
        eps: f64,
    ) -> FloatTensor<Self> {
        standardize_forward(flex([weight, gain]), formula, eps).0
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
            let dx = resize::backward(&g, slice(&dy));
            grads.register::<Flex>(node.id, flex_tensor(dx, [n, c, g.h, g.w]));
        }
    }
}

#[derive(Debug)]
struct StandardizeBackward;

impl Backward<Flex, 2> for StandardizeBackward {
    type State = StandardizeState;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_w, node_gain] = ops.parents;
        let dy = contiguous(grads.consume::<Flex>(&ops.node));
        let (w, gain, formula, eps) = ops.state;
        let shape = dims4(&w);
        let n = shape[1] * shape[2] * shape[3];
        let (dw, dgain) =
            standardize::backward(slice(&w), n, slice(&gain), formula, eps, slice(&dy));
        if let Some(node) = node_w {
            grads.register::<Flex>(node.id, flex_tensor(dw, shape));
        }
        if let Some(node) = node_gain {
            grads.register::<Flex>(node.id, flex_tensor(dgain, [shape[0]]));
        }
    }
}

#[derive(Debug)]
struct Conv2dBackward;

impl Backward<Flex, 2> for Conv2dBackward {
    type State = ConvState;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let dy = contiguous(grads.consume::<Flex>(&ops.node));
        let (x, w, g) = ops.state;
        if let Some(node) = node_x {
            let dx = conv::backward_input(&g, slice(&dy), slice(&w));
            grads.register::<Flex>(node.id, flex_tensor(dx, [g.n, g.ci, g.h, g.w]));
        }
        if let Some(node) = node_w {
            let dw = conv::backward_weight(&g, slice(&x), slice(&dy));
            grads.register::<Flex>(node.id, flex_tensor(dw, [g.co, g.ci, g.k, g.k]));
        }
    }
}

/// Registers the gradients of x, gamma, beta (and the residual).
fn gn_backward<const N: usize>(ops: Ops<GnState, N>, grads: &mut Gradients) {
    let dy = contiguous(grads.consume::<Flex>(&ops.node));
    let s = ops.state;
    let g = gn_geom(&s.x, s.groups);
    let d = group_norm::backward(
        &g,
        slice(&s.x),
        slice(&s.gamma),
        slice(&s.beta),
        s.residual.as_ref().map(slice),
        s.tail,
        &s.stats,
        slice(&dy),
    );
    let dims = dims4(&s.x);
    let mut parts = [
        Some(flex_tensor(d.dx, dims)),
        Some(flex_tensor(d.dgamma, [g.c])),
        Some(flex_tensor(d.dbeta, [g.c])),
        d.dr.map(|dr| flex_tensor(dr, dims)),
    ];
    for (parent, part) in ops.parents.into_iter().zip(parts.iter_mut()) {
        if let (Some(node), Some(grad)) = (parent, part.take()) {
            grads.register::<Flex>(node.id, grad);
        }
    }
}

#[derive(Debug)]
struct GroupNormBackward;

impl Backward<Flex, 3> for GroupNormBackward {
    type State = GnState;

    fn backward(self, ops: Ops<GnState, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        gn_backward(ops, grads);
    }
}

#[derive(Debug)]
struct GroupNormAddSiluBackward;

impl Backward<Flex, 4> for GroupNormAddSiluBackward {
    type State = GnState;

    fn backward(self, ops: Ops<GnState, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        gn_backward(ops, grads);
    }
}

/// Runs `forward` on the inputs' Flex tensors and, when any input is
/// tracked, records `backward` with the state `forward` returned.
fn record<BO, C, const N: usize>(
    backward: BO,
    inputs: [FloatTensor<Autodiff<Flex, C>>; N],
    forward: impl FnOnce([FlexTensor; N]) -> (FlexTensor, BO::State),
) -> FloatTensor<Autodiff<Flex, C>>
where
    BO: Backward<Flex, N>,
    C: CheckpointStrategy,
{
    let nodes = inputs.each_ref().map(|t| t.node());
    let (y, state) = forward(inputs.map(|t| contiguous(t.into_primitive())));
    match backward.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(state, y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

impl<C: CheckpointStrategy> CpuOps for Autodiff<Flex, C> {
    fn conv2d_cpu(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        padding: usize,
    ) -> FloatTensor<Self> {
        record::<_, C, _>(Conv2dBackward, [x, weight], |xw| {
            conv_forward(xw, stride, padding)
        })
    }

    fn group_norm_cpu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        eps: f64,
        silu: bool,
    ) -> FloatTensor<Self> {
        let tail = Tail::silu_if(silu);
        record::<_, C, _>(GroupNormBackward, [x, gamma, beta], |inputs| {
            gn_forward(inputs, None, groups, eps, tail)
        })
    }

    fn group_norm_add_silu_cpu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        groups: usize,
        eps: f64,
    ) -> FloatTensor<Self> {
        record::<_, C, _>(
            GroupNormAddSiluBackward,
            [x, gamma, beta, residual],
            |[x, gamma, beta, r]| gn_forward([x, gamma, beta], Some(r), groups, eps, Tail::AddSilu),
        )
    }

    fn resize_bilinear_cpu(x: FloatTensor<Self>, ho: usize, wo: usize) -> FloatTensor<Self> {
        record::<_, C, _>(ResizeBackward, [x], |x| resize_forward(x, ho, wo))
    }

    fn standardize_cpu(
        weight: FloatTensor<Self>,
        gain: FloatTensor<Self>,
        formula: Formula,
        eps: f64,
    ) -> FloatTensor<Self> {
        record::<_, C, _>(StandardizeBackward, [weight, gain], |wg| {
            standardize_forward(wg, formula, eps)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn assert_close(a: Tensor<4>, b: Tensor<4>, what: &str) {
        let (a, b) = (
            a.into_data().try_to_vec::<f32>().unwrap(),
            b.into_data().try_to_vec::<f32>().unwrap(),
        );
        assert_eq!(a.len(), b.len(), "{what}");
        let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!((x - y).abs() <= 1e-5 * scale, "{what}[{i}]: {x} vs {y}");
        }
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

    /// The fused GroupNorm ops and Burn's GroupNorm + SiLU (+ sum) give the
    /// same output and gradients of x, gamma, beta and the residual.
    #[test]
    fn group_norm_matches_burn_forward_and_backward() {
        use burn::nn::GroupNormConfig;
        let device = Device::flex().autodiff();
        // (batch, channels, groups, H, W): 24 groups of 2 is what fit_groups
        // gives 48 channels.
        for (n, c, groups, h, w) in [(1, 48, 24, 7, 5), (3, 6, 3, 9, 11), (2, 32, 32, 4, 3)] {
            let mut gn = GroupNormConfig::new(groups, c).init(&device);
            let gamma = Tensor::<1>::random([c], Distribution::Normal(1.0, 0.5), &device);
            let beta = Tensor::<1>::random([c], Distribution::Normal(0.0, 0.5), &device);
            gn.gamma = Some(burn::module::Param::from_tensor(gamma));
            gn.beta = Some(burn::module::Param::from_tensor(beta));
            let x = Tensor::<4>::random([n, c, h, w], Distribution::Normal(0.5, 2.0), &device);
            let r = Tensor::<4>::random([n, c, h, w], Distribution::Default, &device);
            let dy = Tensor::<4>::random([n, c, h, w], Distribution::Default, &device);
            for variant in 0..3 {
                let run = |ours: bool| {
                    let (x, r) = (x.clone().require_grad(), r.clone().require_grad());
                    let y = match (variant, ours) {
                        (0, true) => group_norm(x.clone(), &gn, false),
                        (1, true) => group_norm(x.clone(), &gn, true),
                        (_, true) => group_norm_add_silu(x.clone(), &gn, r.clone()),
                        (0, false) => gn.forward(x.clone()),
                        (1, false) => silu(gn.forward(x.clone())),
                        (_, false) => silu(gn.forward(x.clone()) + r.clone()),
                    };
                    let grads = (y.clone() * dy.clone()).sum().backward();
                    let param = |p: &Option<burn::module::Param<Tensor<1>>>| {
                        p.as_ref()
                            .unwrap()
                            .val()
                            .grad(&grads)
                            .unwrap()
                            .unsqueeze::<4>()
                    };
                    (
                        y.inner(),
                        x.grad(&grads).unwrap(),
                        param(&gn.gamma),
                        param(&gn.beta),
                        r.grad(&grads),
                    )
                };
                let (y0, dx0, dg0, db0, dr0) = run(false);
                let (y1, dx1, dg1, db1, dr1) = run(true);
                let what = format!("variant {variant}, {n}×{c}×{h}×{w} in {groups} groups");
                assert_close(y1, y0, &format!("y {what}"));
                assert_close(dx1, dx0, &format!("dx {what}"));
                assert_close(dg1, dg0, &format!("dgamma {what}"));
                assert_close(db1, db0, &format!("dbeta {what}"));
                if variant == 2 {
                    assert_close(dr1.unwrap(), dr0.unwrap(), &format!("dr {what}"));
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
