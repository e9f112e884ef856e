//! The segmentation loss in one pass: cross-entropy (class weights, ignore
//! label) and soft Dice, or their sum, with the gradient of the logits.
//!
//! The same formulas as `train::loss::SegLoss`'s composed ops (which other
//! devices run): PyTorch's `F.cross_entropy(weight=…, ignore_index=…)` and
//! segmentation_models_pytorch's multiclass `DiceLoss` (classes absent from
//! the batch count 0). Composed, they are some twenty element-wise passes of
//! Burn's ops over the logits, each single-threaded on Flex; here the
//! forward is one parallel pass that keeps the softmax, and the backward one
//! more. Partial sums are taken over fixed blocks of pixels and added in
//! order in `f64`, so a given batch gives the same bits on every run.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::conv::SendPtr;
use super::flex::{contiguous, dims4, inputs, record, slice, tensor};
use super::profile::{self, Work};
use super::simd::{exp, sum2, wide};

/// Which terms the loss sums.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Terms {
    /// Cross-entropy.
    Ce,
    /// Soft Dice.
    Dice,
    /// Cross-entropy + soft Dice.
    CeDice,
}

impl Terms {
    fn ce(self) -> bool {
        self != Terms::Dice
    }

    fn dice(self) -> bool {
        self != Terms::Ce
    }
}

/// The loss's settings and the batch's targets (host values).
#[derive(Clone, Debug)]
pub struct LossParams {
    /// The terms.
    pub terms: Terms,
    /// `[B·H·W]` class index of each pixel, or `ignore`.
    pub targets: Arc<[i64]>,
    /// Label of pixels that do not count.
    pub ignore: i64,
    /// Per-class weights of the cross-entropy (`None`: all 1).
    pub class_weights: Option<Arc<[f32]>>,
}

/// The scalar loss `[1]` of `logits [B, C, H, W]` (`f32`, CPU) against the
/// targets in `p`.
///
/// # Panics
///
/// When the targets do not hold one value per pixel, a target other than
/// the ignore label is not a class index, or the class weights do not hold
/// one value per class (the caller checks masks before training).
pub fn seg_loss(logits: Tensor<4>, p: LossParams) -> Tensor<1> {
    Tensor::<1>::from_dispatch(<Dispatch as SegLossOp>::seg_loss_cpu(
        logits.into_dispatch(),
        p,
    ))
}

/// Pixels per block of the forward's partial sums.
const BLOCK: usize = 4096;

/// The forward's sums: `ce = (Σ w·nll, Σ w)`, and per class `Σ P·T`, `Σ P`,
/// `Σ T` for the Dice.
#[derive(Clone, Default)]
struct Sums {
    ce: [f64; 2],
    inter: Vec<f64>,
    prob: Vec<f64>,
    truth: Vec<f64>,
}

impl Sums {
    fn new(classes: usize) -> Self {
        Sums {
            ce: [0.0; 2],
            inter: vec![0.0; classes],
            prob: vec![0.0; classes],
            truth: vec![0.0; classes],
        }
    }

    fn add(&mut self, o: &Sums) {
        self.ce[0] += o.ce[0];
        self.ce[1] += o.ce[1];
        for (a, b) in [
            (&mut self.inter, &o.inter),
            (&mut self.prob, &o.prob),
            (&mut self.truth, &o.truth),
        ] {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        }
    }
}

/// The shape and the per-pixel rules shared by forward and backward.
#[derive(Clone, Debug)]
struct Geom {
    b: usize,
    c: usize,
    h: usize,
    w: usize,
}

impl Geom {
    fn hw(&self) -> usize {
        self.h * self.w
    }

    /// `(class index, weight)` of pixel `i` (image-major), or `None` when it
    /// is ignored.
    fn target(&self, p: &LossParams, i: usize) -> Option<(usize, f32)> {
        let t = p.targets[i];
        if t == p.ignore {
            return None;
        }
        let class = usize::try_from(t)
            .ok()
            .filter(|&c| c < self.c)
            .unwrap_or_else(|| panic!("seg_loss: target {t} is not one of {} classes", self.c));
        let w = p.class_weights.as_ref().map_or(1.0, |w| w[class]);
        Some((class, w))
    }

    /// The work units: (image, first pixel, pixels), in a fixed order.
    fn blocks(&self) -> Vec<(usize, usize, usize)> {
        let hw = self.hw();
        (0..self.b)
            .flat_map(|n| {
                (0..hw)
                    .step_by(BLOCK)
                    .map(move |p0| (n, p0, BLOCK.min(hw - p0)))
            })
            .collect()
    }
}

/// What the backward needs: the softmax, the sums' results, the settings.
#[derive(Clone, Debug)]
struct State {
    g: Geom,
    probs: Arc<Vec<f32>>,
    p: LossParams,
    /// Cross-entropy's normalizer `max(Σ w, 1e-12)`.
    ce_norm: f64,
    /// Per class `(present / C, dice, 1 / max(K, 1e-7))` with `K = ΣP + ΣT`
    /// (`dice` is 0 where the clamp holds `K`, which then has no gradient).
    dice: Vec<(f64, f64, f64)>,
}

fn run([x]: [FlexTensor; 1], p: LossParams) -> (FlexTensor, State) {
    let [b, c, h, w] = dims4(&x);
    let g = Geom { b, c, h, w };
    let hw = g.hw();
    assert_eq!(p.targets.len(), b * hw, "seg_loss: one target per pixel");
    if let Some(cw) = &p.class_weights {
        assert_eq!(cw.len(), c, "seg_loss: one class weight per class");
    }
    let x = slice(&x);
    // Every value is written below (each block copies its pixels of every
    // class plane): no zeroing pass.
    let mut probs: Vec<f32> = Vec::with_capacity(b * c * hw);
    let out = SendPtr(probs.as_mut_ptr());
    let blocks: Vec<Sums> = g
        .blocks()
        .par_iter()
        .map_init(
            || vec![0.0f32; (c + 4) * BLOCK],
            |buf, &(n, p0, len)| {
                let img = &x[n * c * hw..][..c * hw];
                let (pr, rest) = buf[..(c + 4) * len].split_at_mut(c * len);
                let (max, rest) = rest.split_at_mut(len);
                let (z, tk) = rest.split_at_mut(len);
                let block = Softmax {
                    img,
                    hw,
                    p0,
                    probs: &mut *pr,
                    max: &mut *max,
                    z: &mut *z,
                };
                wide!(softmax(block: Softmax<'_>) -> ());
                for (k, plane) in pr.chunks_exact(len).enumerate() {
                    // SAFETY: pixels p0..p0+len of class plane k of image
                    // n: inside `probs`, and this block's, which no other
                    // block writes.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            plane.as_ptr(),
                            out.get().add((n * c + k) * hw + p0),
                            len,
                        )
                    };
                }
                // Per pixel: the cross-entropy terms (a `ln` each), its
                // target class (−1 when ignored) and whether it counts; then
                // the Dice's sums as whole-block passes per class plane.
                let (target, keep) = tk[..2 * len].split_at_mut(len);
                let mut s = Sums::new(c);
                for i in 0..len {
                    let Some((t, wt)) = g.target(&p, n * hw + p0 + i) else {
                        (target[i], keep[i]) = (-1.0, 0.0);
                        continue;
                    };
                    (target[i], keep[i]) = (t as f32, 1.0);
                    let nll = (z[i].ln() + max[i] - img[t * hw + p0 + i]) as f64;
                    s.ce[0] += wt as f64 * nll;
                    s.ce[1] += wt as f64;
                    s.truth[t] += 1.0;
                }
                for (k, plane) in pr.chunks_exact(len).enumerate() {
                    let kf = k as f32;
                    s.prob[k] = sum2(plane, keep, |p, m| p * m);
                    s.inter[k] = sum2(plane, target, |p, t| if t == kf { p } else { 0.0 });
                }
                s
            },
        )
        .collect();
    // SAFETY: the blocks cover pixels 0..hw of every image, and each wrote
    // its pixels of all c class planes: all b·c·hw values.
    unsafe { probs.set_len(b * c * hw) };
    let mut sums = Sums::new(c);
    blocks.iter().for_each(|s| sums.add(s));
    let ce_norm = sums.ce[1].max(1e-12);
    let dice: Vec<(f64, f64, f64)> = (0..c)
        .map(|k| {
            let card = sums.prob[k] + sums.truth[k];
            let d = 2.0 * sums.inter[k] / card.max(1e-7);
            let present = if sums.truth[k] > 0.0 { 1.0 } else { 0.0 };
            (present / c as f64, d, 1.0 / card.max(1e-7))
        })
        .collect();
    let mut loss = 0.0f64;
    if p.terms.ce() {
        loss += sums.ce[0] / ce_norm;
    }
    if p.terms.dice() {
        loss += dice
            .iter()
            .map(|&(scale, d, _)| scale * (1.0 - d))
            .sum::<f64>();
    }
    let y = tensor(vec![loss as f32], [1]);
    let state = State {
        g,
        probs: Arc::new(probs),
        p,
        ce_norm,
        dice,
    };
    (y, state)
}

/// One block's softmax: pixels `p0..p0 + len` of the image `img [c, hw]`.
struct Softmax<'a> {
    img: &'a [f32],
    hw: usize,
    p0: usize,
    /// `[c, len]`: the probabilities, class-major.
    probs: &'a mut [f32],
    /// `[len]`: each pixel's largest logit.
    max: &'a mut [f32],
    /// `[len]`: each pixel's `Σ exp(logit − max)`.
    z: &'a mut [f32],
}

/// The softmax as whole-block passes over the pixels, one class plane at a
/// time (max, then exp and sum, then divide), so every pass vectorizes; a
/// pixel at a time, with the library's `expf`, took 1.3 ms of the main
/// command's step. Each pixel's sum adds its classes in order, as before.
#[inline(always)]
fn softmax(s: Softmax<'_>) {
    let len = s.max.len();
    let plane = |k: usize| &s.img[k * s.hw + s.p0..][..len];
    s.max.copy_from_slice(plane(0));
    for k in 1..s.probs.len() / len {
        for (m, &v) in s.max.iter_mut().zip(plane(k)) {
            *m = m.max(v);
        }
    }
    s.z.fill(0.0);
    for (k, e) in s.probs.chunks_exact_mut(len).enumerate() {
        for (((e, &v), &m), z) in e.iter_mut().zip(plane(k)).zip(&*s.max).zip(&mut *s.z) {
            *e = exp(v - m);
            *z += *e;
        }
    }
    for e in s.probs.chunks_exact_mut(len) {
        for (e, &z) in e.iter_mut().zip(&*s.z) {
            *e /= z;
        }
    }
}

/// [`run`], in the profile.
fn timed_run(x: [FlexTensor; 1], p: LossParams) -> (FlexTensor, State) {
    let shape = dims4(&x[0]);
    profile::timed("loss forward", || work(shape), || run(x, p))
}

/// A pass's row in the profile: the logits and their probabilities (or
/// gradient), and one target per pixel.
fn work([b, c, h, w]: [usize; 4]) -> Work {
    let shape = profile::dims([b, c, h, w]);
    (shape, 0.0, profile::f32_bytes(b * h * w * (2 * c + 1)))
}

/// The gradient of the logits, times the upstream gradient `dy`.
///
/// Per pixel with target `t`, weight `w_t` and probabilities `P`:
/// `dL/dx_k = ce·(P_k − [k = t]) + P_k·(g_k − Σ_j P_j·g_j)`, with the
/// cross-entropy's `ce = w_t / Σ w` and the Dice's `dL/dP_k = g_k = a_k +
/// b_k·[k = t]`. Taken as whole-block passes over the pixels (per-pixel
/// factors first, then one class plane at a time), so each pass
/// vectorizes: a pixel at a time, in `f64`, took 0.7 ms of the main
/// command's step.
fn backward(s: &State, dy: f32) -> Vec<f32> {
    let (g, c, hw) = (&s.g, s.g.c, s.g.hw());
    let probs = &s.probs[..];
    let dice = s.p.terms.dice();
    // g_k = −scale·(2·[k = t] − d)·(1 / K) = a_k + b_k·[k = t].
    let (a, b): (Vec<f32>, Vec<f32>) = s
        .dice
        .iter()
        .map(|&(scale, d, inv_k)| match dice {
            true => ((scale * d * inv_k) as f32, (-2.0 * scale * inv_k) as f32),
            false => (0.0, 0.0),
        })
        .unzip();
    let mut dx: Vec<f32> = Vec::with_capacity(g.b * c * hw);
    let out = SendPtr(dx.as_mut_ptr());
    g.blocks().par_iter().for_each_init(
        || vec![0.0f32; 4 * BLOCK],
        |buf, &(n, p0, len)| {
            let pr = &probs[n * c * hw..][..c * hw];
            let (target, rest) = buf[..4 * len].split_at_mut(len);
            let (ce, rest) = rest.split_at_mut(len);
            let (keep, dot) = rest.split_at_mut(len);
            // Per pixel: the target class (−1 when ignored: no class's),
            // the cross-entropy's factor and the Dice's (both 0 when
            // ignored, so the pixel's gradient is 0), times dy.
            for i in 0..len {
                let (t, ce_i, keep_i) = match g.target(&s.p, n * hw + p0 + i) {
                    Some((t, wt)) => (t as f32, (wt as f64 / s.ce_norm) as f32 * dy, dy),
                    None => (-1.0, 0.0, 0.0),
                };
                target[i] = t;
                ce[i] = if s.p.terms.ce() { ce_i } else { 0.0 };
                keep[i] = keep_i;
            }
            let plane = |k: usize| &pr[k * hw + p0..][..len];
            let block = LossGrad {
                planes: (0..c).map(plane).collect(),
                a: &a,
                b: &b,
                target,
                ce,
                keep,
                dot,
                // SAFETY: pixels p0..p0+len of each class plane of image n
                // lie inside `dx` (b·c·hw values), and only this block
                // writes them; every one is written below.
                out: (0..c)
                    .map(|k| unsafe {
                        std::slice::from_raw_parts_mut(out.get().add((n * c + k) * hw + p0), len)
                    })
                    .collect(),
            };
            wide!(loss_grad(block: LossGrad<'_>) -> ());
        },
    );
    // SAFETY: the blocks cover pixels 0..hw of every image, and each wrote
    // its pixels of all c class planes: all b·c·hw values.
    unsafe { dx.set_len(g.b * c * hw) };
    dx
}

/// One block of [`backward`]: its pixels of each class plane.
struct LossGrad<'a> {
    /// Per class, the block's probabilities.
    planes: Vec<&'a [f32]>,
    /// Per class, the Dice gradient's `a_k` and `b_k`.
    a: &'a [f32],
    b: &'a [f32],
    /// Per pixel: target class (−1 ignored), `ce·dy`, `dy` (0 ignored).
    target: &'a [f32],
    ce: &'a [f32],
    keep: &'a [f32],
    /// Per pixel, scratch for `Σ_j P_j·g_j`.
    dot: &'a mut [f32],
    /// Per class, the block's gradient (written, not read).
    out: Vec<&'a mut [f32]>,
}

#[inline(always)]
fn loss_grad(s: LossGrad<'_>) {
    let onehot = |t: f32, k: f32| if t == k { 1.0 } else { 0.0 };
    s.dot.fill(0.0);
    for (k, plane) in s.planes.iter().enumerate() {
        let (ak, bk, kf) = (s.a[k], s.b[k], k as f32);
        for ((d, &p), &t) in s.dot.iter_mut().zip(*plane).zip(s.target) {
            *d += p * (ak + bk * onehot(t, kf));
        }
    }
    for (k, (plane, out)) in s.planes.iter().zip(s.out).enumerate() {
        let (ak, bk, kf) = (s.a[k], s.b[k], k as f32);
        let pixels = plane
            .iter()
            .zip(s.target)
            .zip(s.ce)
            .zip(s.keep)
            .zip(&*s.dot);
        for (o, ((((&p, &t), &ce), &keep), &dot)) in out.iter_mut().zip(pixels) {
            let oh = onehot(t, kf);
            *o = ce * (p - oh) + keep * (p * (ak + bk * oh - dot));
        }
    }
}

/// The CPU kernel, plugged into Burn.
#[backend_extension(Flex, Autodiff)]
pub trait SegLossOp: Backend {
    /// The loss `[1]` of `logits [B, C, H, W]`.
    fn seg_loss_cpu(logits: FloatTensor<Self>, p: LossParams) -> FloatTensor<Self>;
}

impl SegLossOp for Flex {
    fn seg_loss_cpu(logits: FloatTensor<Self>, p: LossParams) -> FloatTensor<Self> {
        timed_run(inputs([logits]), p).0
    }
}

impl<C: CheckpointStrategy> SegLossOp for Autodiff<Flex, C> {
    fn seg_loss_cpu(logits: FloatTensor<Self>, p: LossParams) -> FloatTensor<Self> {
        record::<_, C, _>(SegLossBackward, [logits], |x| timed_run(x, p))
    }
}

#[derive(Debug)]
struct SegLossBackward;

impl Backward<Flex, 1> for SegLossBackward {
    type State = State;

    fn backward(self, ops: Ops<State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        if let Some(node) = node {
            let s = ops.state;
            let dy = contiguous(dy);
            let [b, c, h, w] = [s.g.b, s.g.c, s.g.h, s.g.w];
            let dx = profile::timed(
                "loss backward",
                || work([b, c, h, w]),
                || backward(&s, slice(&dy)[0]),
            );
            grads.register::<Flex>(node.id, tensor(dx, [s.g.b, s.g.c, s.g.h, s.g.w]));
        }
    }
}
