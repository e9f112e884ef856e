//! A convolution's per-channel bias followed by SiLU — or by the sum with a
//! residual, then SiLU — in one pass: what follows a convolution that no
//! norm follows (a BatchNorm model folded for inference, where the norm
//! became the bias; `Norm::None`), and what follows BatchNorm in training
//! (no bias). A CPU kernel with its backward on Flex, Burn's ops elsewhere.
//!
//! Composed from Burn's ops this is up to five passes over the map (the
//! bias's broadcast sum, the residual's sum, the sigmoid, the product, and
//! the sum's copy); here the forward is one, parallel over (image, channel)
//! planes, and the backward one (it recomputes the pre-activation). SiLU:
//! Elfwing et al., arXiv:1702.03118 (`x·σ(x)`), with the same sigmoid as
//! the fused GroupNorm.

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

use super::flex::{contiguous, dims4, inputs, record, register_grads, runs_here, slice, tensor};
use super::group_norm::Tail;
use super::profile::{self, Work};
use super::simd::{sigmoid, sum, wide};

/// `tail(y + bias)` with `bias [c]` added to every channel `c` of `y`: one
/// kernel on the CPU, Burn's ops elsewhere. With neither a bias nor an
/// activation, `y` as it is.
///
/// # Shapes
///
/// - y, the residual, output: `[batch, channels, H, W]`
/// - bias: `[channels]`
pub fn bias_act(y: Tensor<4>, bias: Option<Tensor<1>>, tail: Tail) -> Tensor<4> {
    let [_, c, _, _] = y.dims();
    let fits = runs_here(&y.device(), y.dtype())
        && bias
            .as_ref()
            .is_none_or(|b| b.dtype() == DType::F32 && b.dims() == [c])
        && match &tail {
            Tail::AddSilu(r) => r.dims() == y.dims() && r.dtype() == DType::F32,
            _ => true,
        };
    if !fits || (bias.is_none() && matches!(tail, Tail::None)) {
        return tail.apply(match bias {
            Some(b) => y + b.reshape([1, c, 1, 1]),
            None => y,
        });
    }
    let bias = bias.unwrap_or_else(|| Tensor::zeros([c], &y.device()));
    let (y, bias) = (y.into_dispatch(), bias.into_dispatch());
    Tensor::from_dispatch(match tail {
        Tail::AddSilu(r) => <Dispatch as BiasActOp>::bias_add_silu_cpu(y, bias, r.into_dispatch()),
        tail => <Dispatch as BiasActOp>::bias_act_cpu(y, bias, matches!(tail, Tail::Silu)),
    })
}

/// One `(image, channel)` plane of the forward.
struct Plane<'a> {
    y: &'a [f32],
    bias: f32,
    tail: Tail<&'a [f32]>,
    out: &'a mut [MaybeUninit<f32>],
}

#[inline(always)]
fn forward_plane(p: Plane<'_>) {
    let b = p.bias;
    match p.tail {
        Tail::None => p.out.iter_mut().zip(p.y).for_each(|(o, &y)| {
            o.write(y + b);
        }),
        Tail::Silu => p.out.iter_mut().zip(p.y).for_each(|(o, &y)| {
            let z = y + b;
            o.write(z * sigmoid(z));
        }),
        Tail::AddSilu(r) => p.out.iter_mut().zip(p.y).zip(r).for_each(|((o, &y), &r)| {
            let z = y + b + r;
            o.write(z * sigmoid(z));
        }),
    }
}

/// The forward on `y [planes, hw]` with one bias per channel (plane `i` is
/// channel `i % bias.len()`).
pub fn forward(y: &[f32], bias: &[f32], hw: usize, tail: Tail<&[f32]>) -> Vec<f32> {
    check(y, bias, hw, tail);
    let mut out = Vec::with_capacity(y.len());
    out.spare_capacity_mut()[..y.len()]
        .par_chunks_mut(hw)
        .enumerate()
        .for_each(|(i, out)| {
            let plane = Plane {
                y: &y[i * hw..][..hw],
                bias: bias[i % bias.len()],
                tail: tail.map(|r| &r[i * hw..][..hw]),
                out,
            };
            wide!(forward_plane(plane: Plane<'_>) -> ())
        });
    // SAFETY: `check` asserted that y.len() is a whole number of planes of
    // hw values, and `forward_plane` writes every value of its plane.
    unsafe { out.set_len(y.len()) };
    out
}

fn check(y: &[f32], bias: &[f32], hw: usize, tail: Tail<&[f32]>) {
    let c = bias.len();
    assert!(
        hw > 0 && c > 0 && y.len().is_multiple_of(c * hw),
        "bias_act: {} values are not planes of {hw} in {c} channels",
        y.len()
    );
    if let Tail::AddSilu(r) = tail {
        assert_eq!(r.len(), y.len(), "bias_act residual size");
    }
}

/// One plane of the backward: writes `∂L/∂y` (which is also the residual's
/// gradient), returns its sum (the bias's share).
struct PlaneGrad<'a> {
    y: &'a [f32],
    bias: f32,
    tail: Tail<&'a [f32]>,
    dout: &'a [f32],
    dy: &'a mut [MaybeUninit<f32>],
}

#[inline(always)]
fn backward_plane(p: PlaneGrad<'_>) -> f64 {
    let b = p.bias;
    let dsilu = |z: f32, d: f32| {
        let s = sigmoid(z);
        d * s * (1.0 + z * (1.0 - s))
    };
    let pairs = p.dy.iter_mut().zip(p.y.iter().zip(p.dout));
    match p.tail {
        Tail::None => pairs.for_each(|(g, (_, &d))| {
            g.write(d);
        }),
        Tail::Silu => pairs.for_each(|(g, (&y, &d))| {
            g.write(dsilu(y + b, d));
        }),
        Tail::AddSilu(r) => pairs.zip(r).for_each(|((g, (&y, &d)), &r)| {
            g.write(dsilu(y + b + r, d));
        }),
    }
    // SAFETY: every value of the plane was written just above, and an
    // initialized MaybeUninit<f32> has f32's layout.
    let written: &[f32] = unsafe { std::slice::from_raw_parts(p.dy.as_ptr().cast(), p.dy.len()) };
    sum(written, |g| g)
}

/// Gradients of [`forward`] given the output's gradient `dout`: (`∂L/∂y`,
/// which the residual shares, and `∂L/∂bias`).
pub fn backward(
    y: &[f32],
    bias: &[f32],
    hw: usize,
    tail: Tail<&[f32]>,
    dout: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    check(y, bias, hw, tail);
    assert_eq!(dout.len(), y.len(), "bias_act output-gradient size");
    let mut dy = Vec::with_capacity(y.len());
    let sums: Vec<f64> = dy.spare_capacity_mut()[..y.len()]
        .par_chunks_mut(hw)
        .enumerate()
        .map(|(i, dy)| {
            let plane = PlaneGrad {
                y: &y[i * hw..][..hw],
                bias: bias[i % bias.len()],
                tail: tail.map(|r| &r[i * hw..][..hw]),
                dout: &dout[i * hw..][..hw],
                dy,
            };
            wide!(backward_plane(plane: PlaneGrad<'_>) -> f64)
        })
        .collect();
    // SAFETY: `check` asserted that y.len() is a whole number of planes of
    // hw values, and `backward_plane` writes every value of its plane.
    unsafe { dy.set_len(y.len()) };
    // Per channel, the planes of every image in order: the same bits on
    // every run.
    let c = bias.len();
    let mut dbias = vec![0.0f64; c];
    for (i, s) in sums.iter().enumerate() {
        dbias[i % c] += s;
    }
    (dy, dbias.into_iter().map(|v| v as f32).collect())
}

/// The CPU kernel, plugged into Burn.
#[backend_extension(Flex, Autodiff)]
pub trait BiasActOp: Backend {
    /// `y + bias` per channel, then SiLU when `silu`.
    fn bias_act_cpu(y: FloatTensor<Self>, bias: FloatTensor<Self>, silu: bool)
    -> FloatTensor<Self>;

    /// `SiLU(y + bias + residual)`.
    fn bias_add_silu_cpu(
        y: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        residual: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// What the backward needs: the input, the bias and the tail.
#[derive(Debug, Clone)]
struct State {
    y: FlexTensor,
    bias: FlexTensor,
    tail: Tail<FlexTensor>,
}

impl State {
    fn hw(&self) -> usize {
        let [_, _, h, w] = dims4(&self.y);
        h * w
    }

    /// A pass's row in the profile: the maps read and written, `maps`
    /// without the residual (whose read, and in the backward its
    /// gradient's write, come on top).
    fn work(&self, maps: usize) -> Work {
        let (tail, maps) = (self.tail.profile_label(), self.tail.profile_maps(maps));
        let shape = format!("{}, bias{tail}", profile::dims(dims4(&self.y)));
        (shape, 0.0, profile::f32_bytes(maps * slice(&self.y).len()))
    }
}

fn run([y, bias]: [FlexTensor; 2], tail: Tail<FlexTensor>) -> (FlexTensor, State) {
    let state = State { y, bias, tail };
    let out = profile::timed(
        "bias + activation forward",
        || state.work(2),
        || {
            forward(
                slice(&state.y),
                slice(&state.bias),
                state.hw(),
                state.tail.as_ref().map(slice),
            )
        },
    );
    (tensor(out, dims4(&state.y)), state)
}

impl BiasActOp for Flex {
    fn bias_act_cpu(
        y: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        silu: bool,
    ) -> FloatTensor<Self> {
        run(inputs([y, bias]), Tail::silu_if(silu)).0
    }

    fn bias_add_silu_cpu(
        y: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        residual: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        run(inputs([y, bias]), Tail::AddSilu(contiguous(residual))).0
    }
}

impl<C: CheckpointStrategy> BiasActOp for Autodiff<Flex, C> {
    fn bias_act_cpu(
        y: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        silu: bool,
    ) -> FloatTensor<Self> {
        let tail = Tail::silu_if(silu);
        record::<_, C, _>(BiasActBackward::<2>, [y, bias], |yb| run(yb, tail))
    }

    fn bias_add_silu_cpu(
        y: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        residual: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        record::<_, C, _>(BiasActBackward::<3>, [y, bias, residual], |[y, b, r]| {
            run([y, b], Tail::AddSilu(r))
        })
    }
}

/// The backward over `N` inputs: y, the bias, and the residual when the
/// tail adds one.
#[derive(Debug)]
struct BiasActBackward<const N: usize>;

impl<const N: usize> Backward<Flex, N> for BiasActBackward<N> {
    type State = State;

    fn backward(self, ops: Ops<State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dout = contiguous(grads.consume::<Flex>(&ops.node));
        let s = &ops.state;
        let (dy, dbias) = profile::timed(
            "bias + activation backward",
            || s.work(2),
            || {
                backward(
                    slice(&s.y),
                    slice(&s.bias),
                    s.hw(),
                    s.tail.as_ref().map(slice),
                    slice(&dout),
                )
            },
        );
        let dims = dims4(&s.y);
        let dy = tensor(dy, dims);
        let parts = [
            Some(dy.clone()),
            Some(tensor(dbias, [dims[1]])),
            matches!(s.tail, Tail::AddSilu(_)).then_some(dy),
        ];
        register_grads(&ops, grads, parts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::flex::assert_close;
    use burn::tensor::activation::silu;
    use burn::tensor::{Device, Distribution};

    /// The kernel and Burn's ops give the same output and gradients of y,
    /// the bias and the residual, for every tail, with and without a bias.
    #[test]
    fn bias_act_matches_burn_forward_and_backward() {
        let device = Device::flex().autodiff();
        for (n, c, h, w) in [(1, 48, 7, 5), (3, 6, 9, 11), (2, 1, 1, 1)] {
            let y = Tensor::<4>::random([n, c, h, w], Distribution::Normal(0.5, 3.0), &device);
            let b = Tensor::<1>::random([c], Distribution::Normal(0.0, 1.0), &device);
            let r = Tensor::<4>::random([n, c, h, w], Distribution::Default, &device);
            let dout = Tensor::<4>::random([n, c, h, w], Distribution::Default, &device);
            for (tail, with_bias) in [(0, true), (1, true), (2, true), (1, false), (2, false)] {
                let run = |ours: bool| {
                    let (y, b, r) = (
                        y.clone().require_grad(),
                        b.clone().require_grad(),
                        r.clone().require_grad(),
                    );
                    let bias = with_bias.then(|| b.clone());
                    let out = if ours {
                        let t = match tail {
                            0 => Tail::None,
                            1 => Tail::Silu,
                            _ => Tail::AddSilu(r.clone()),
                        };
                        bias_act(y.clone(), bias, t)
                    } else {
                        let z = match bias {
                            Some(b) => y.clone() + b.reshape([1, c, 1, 1]),
                            None => y.clone(),
                        };
                        match tail {
                            0 => z,
                            1 => silu(z),
                            _ => silu(z + r.clone()),
                        }
                    };
                    let grads = (out.clone() * dout.clone()).sum().backward();
                    (
                        out.inner(),
                        y.grad(&grads).unwrap(),
                        b.grad(&grads).map(|g| g.unsqueeze::<4>()),
                        r.grad(&grads),
                    )
                };
                let (o0, dy0, db0, dr0) = run(false);
                let (o1, dy1, db1, dr1) = run(true);
                let what = format!("tail {tail}, bias {with_bias}, {n}×{c}×{h}×{w}");
                assert_close(o1, o0, &format!("out {what}"));
                assert_close(dy1, dy0, &format!("dy {what}"));
                if with_bias {
                    assert_close(db1.unwrap(), db0.unwrap(), &format!("dbias {what}"));
                }
                if tail == 2 {
                    assert_close(dr1.unwrap(), dr0.unwrap(), &format!("dr {what}"));
                }
            }
        }
    }

    /// Inference (no autodiff) runs the kernel too, with the same values.
    #[test]
    fn the_kernel_runs_without_autodiff() {
        let device = Device::flex();
        let y = Tensor::<4>::random([2, 3, 4, 5], Distribution::Normal(0.0, 2.0), &device);
        let b = Tensor::<1>::random([3], Distribution::Default, &device);
        let want = silu(y.clone() + b.clone().reshape([1, 3, 1, 1]));
        assert_close(bias_act(y, Some(b), Tail::Silu), want, "bias + SiLU");
    }
}
