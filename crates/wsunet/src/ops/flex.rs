//! Glue shared by the ops: Flex tensors as contiguous `f32` slices and back,
//! and recording an op with its backward on the autodiff graph.

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Flex, TensorMetadata};
use burn::tensor::{DType, Device, TensorData};

/// Whether tensors on `device` of `dtype` run through this crate's kernels:
/// `f32` on the CPU (Flex). Every other device and dtype runs Burn's
/// composed ops.
pub fn runs_here(device: &Device, dtype: DType) -> bool {
    dtype == DType::F32 && *device == Device::flex()
}

/// `t` as one contiguous run of `f32`.
pub(super) fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.as_slice::<f32>().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

/// The values of a tensor made contiguous by [`contiguous`].
pub(super) fn slice(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("ops: tensors are made contiguous f32 before kernels run")
}

/// The shape of a 4-D tensor.
pub(super) fn dims4(t: &FlexTensor) -> [usize; 4] {
    let s = t.shape();
    [s[0], s[1], s[2], s[3]]
}

/// A Flex tensor of `shape` holding `values`.
pub(super) fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// Every input made contiguous.
pub(super) fn inputs<const N: usize>(inputs: [FloatTensor<Flex>; N]) -> [FlexTensor; N] {
    inputs.map(contiguous)
}

/// Runs `forward` on the inputs' Flex tensors and, when any input is
/// tracked, records `backward` with the state `forward` returned.
pub(super) fn record<BO, C, const N: usize>(
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

/// Registers `parts[i]` as the gradient of `ops`' parent `i`, for each
/// parent that is tracked and each part that is there (the fused ops'
/// backward: x, the affine or bias parameters, the residual).
pub(super) fn register_grads<S, const N: usize>(
    ops: &Ops<S, N>,
    grads: &mut Gradients,
    parts: impl IntoIterator<Item = Option<FlexTensor>>,
) {
    for (parent, part) in ops.parents.iter().zip(parts) {
        if let (Some(node), Some(grad)) = (parent, part) {
            grads.register::<Flex>(node.id, grad);
        }
    }
}

/// Asserts that `a` equals `b` to 1e-5 of `b`'s largest value.
#[cfg(test)]
pub(crate) fn assert_close(a: burn::tensor::Tensor<4>, b: burn::tensor::Tensor<4>, what: &str) {
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
