//! CPU kernels with handwritten backward passes, plugged into Burn through its
//! backend extension (`#[backend_extension]`): used on the Flex device for
//! `f32` tensors, while every other device (Vulkan, CUDA) and dtype runs
//! Burn's composed ops unchanged. Nothing here knows about layers.
//!
//! - [`conv2d`]: convolution (groups 1, dilation 1) — forward, input and
//!   weight gradient in [`conv`].

pub mod conv;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Device, Tensor, TensorData};

use conv::ConvGeom;

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

fn flex_tensor(values: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

fn geom(x: &FlexTensor, w: &FlexTensor, stride: usize, padding: usize) -> ConvGeom {
    ConvGeom::new(dims4(x), dims4(w), stride, padding).unwrap_or_else(|| {
        panic!(
            "conv2d_cpu: input {:?} and kernel {:?} (stride {stride}, padding {padding}) do not fit",
            dims4(x),
            dims4(w)
        )
    })
}

impl CpuOps for Flex {
    fn conv2d_cpu(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        padding: usize,
    ) -> FloatTensor<Self> {
        let (x, w) = (contiguous(x), contiguous(weight));
        let g = geom(&x, &w, stride, padding);
        flex_tensor(
            conv::forward(&g, slice(&x), slice(&w)),
            [g.n, g.co, g.ho, g.wo],
        )
    }
}

#[derive(Debug)]
struct Conv2dBackward;

impl Backward<Flex, 2> for Conv2dBackward {
    type State = (FlexTensor, FlexTensor, ConvGeom);

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

impl<C: CheckpointStrategy> CpuOps for Autodiff<Flex, C> {
    fn conv2d_cpu(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        padding: usize,
    ) -> FloatTensor<Self> {
        match Conv2dBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (x, w) = (
                    contiguous(x.into_primitive()),
                    contiguous(weight.into_primitive()),
                );
                let g = geom(&x, &w, stride, padding);
                let y = flex_tensor(
                    conv::forward(&g, slice(&x), slice(&w)),
                    [g.n, g.co, g.ho, g.wo],
                );
                prep.finish((x, w, g), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::conv2d_cpu(
                x.into_primitive(),
                weight.into_primitive(),
                stride,
                padding,
            )),
        }
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
