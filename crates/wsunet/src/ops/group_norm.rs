//! GroupNorm fused with what follows it in this network: `GN(x)`,
//! `SiLU(GN(x))` and `SiLU(GN(x) + r)` (the end of a residual block) — a CPU
//! kernel with its backward on Flex, Burn's `GroupNorm` and `silu`
//! elsewhere.
//!
//! GroupNorm: Wu & He, arXiv:1803.08494, with PyTorch's `nn.GroupNorm`
//! numerics (biased variance, `eps` inside the square root, per-channel
//! affine). SiLU: Elfwing et al., arXiv:1702.03118 (`x·σ(x)`).
//!
//! Composed from Burn's ops, each of these is about eight passes over memory
//! forward and more backward. Here a forward is three passes (mean, variance,
//! output) and a backward two, each parallel over (image, group); only the
//! mean and the reciprocal standard deviation per (image, group) are kept for
//! the backward, which recomputes the normalized values. Per-channel sums for
//! the affine gradients are added over images in a fixed order, so results are
//! the same on every run.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::nn::GroupNorm;
use burn::tensor::activation::silu;
use burn::tensor::{DType, Tensor};
use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::flex::{contiguous, dims4, inputs, record, register_grads, runs_here, slice, tensor};
use super::profile::{self, Work};
use super::simd::{sigmoid, sum, sum2, wide};

/// What follows the normalization. `R` is the residual: a tensor for
/// [`group_norm`], a slice for the kernels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Tail<R = Tensor<4>> {
    /// Nothing: plain GroupNorm.
    None,
    /// `SiLU(GN(x))`.
    Silu,
    /// `SiLU(GN(x) + r)`, the end of a residual block.
    AddSilu(R),
}

impl Tail {
    /// Applies the tail to `y` with Burn's ops: after a normalization that
    /// is not the fused GroupNorm (BatchNorm, none).
    pub fn apply(self, y: Tensor<4>) -> Tensor<4> {
        match self {
            Tail::None => y,
            Tail::Silu => silu(y),
            Tail::AddSilu(r) => silu(y + r),
        }
    }
}

impl<R> Tail<R> {
    /// SiLU when `silu`, else nothing: the tail of a block without a
    /// residual.
    pub fn silu_if(silu: bool) -> Tail<R> {
        if silu { Tail::Silu } else { Tail::None }
    }

    /// The tail as a profile row names it: nothing, ` + SiLU` or
    /// ` + residual + SiLU`.
    pub(super) fn profile_label(&self) -> &'static str {
        match self {
            Tail::None => "",
            Tail::Silu => " + SiLU",
            Tail::AddSilu(_) => " + residual + SiLU",
        }
    }

    /// The maps a pass reads and writes, `maps` of its own plus the
    /// residual's: one map fewer (its read, and in a backward its
    /// gradient's write).
    pub(super) fn profile_maps(&self, maps: usize) -> usize {
        match self {
            Tail::AddSilu(_) => 2 * maps - 1,
            _ => maps,
        }
    }

    /// The same tail with its residual borrowed.
    pub fn as_ref(&self) -> Tail<&R> {
        match self {
            Tail::None => Tail::None,
            Tail::Silu => Tail::Silu,
            Tail::AddSilu(r) => Tail::AddSilu(r),
        }
    }

    /// The same tail with its residual mapped by `f`.
    pub fn map<S>(self, f: impl FnOnce(R) -> S) -> Tail<S> {
        match self {
            Tail::None => Tail::None,
            Tail::Silu => Tail::Silu,
            Tail::AddSilu(r) => Tail::AddSilu(f(r)),
        }
    }
}

/// `gn(x)` followed by `tail`: one fused kernel on the CPU, Burn's
/// `GroupNorm`, `silu` and sum elsewhere.
///
/// # Shapes
///
/// - x, the residual, output: `[batch, channels, H, W]`
pub fn group_norm(x: Tensor<4>, gn: &GroupNorm, tail: Tail) -> Tensor<4> {
    let affine = fused_affine(gn, &x);
    match (affine, tail) {
        (Some((gamma, beta)), tail @ (Tail::None | Tail::Silu)) => {
            Tensor::from_dispatch(<Dispatch as GroupNormOp>::group_norm_cpu(
                x.into_dispatch(),
                gamma.into_dispatch(),
                beta.into_dispatch(),
                params(gn),
                matches!(tail, Tail::Silu),
            ))
        }
        (Some((gamma, beta)), Tail::AddSilu(r))
            if r.dims() == x.dims() && r.dtype() == DType::F32 =>
        {
            Tensor::from_dispatch(<Dispatch as GroupNormOp>::group_norm_add_silu_cpu(
                x.into_dispatch(),
                gamma.into_dispatch(),
                beta.into_dispatch(),
                r.into_dispatch(),
                params(gn),
            ))
        }
        (_, tail) => tail.apply(gn.forward(x)),
    }
}

/// The affine parameters of `gn` when the kernel can run it on `x`.
fn fused_affine(gn: &GroupNorm, x: &Tensor<4>) -> Option<(Tensor<1>, Tensor<1>)> {
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

fn params(gn: &GroupNorm) -> GnParams {
    GnParams {
        groups: gn.num_groups,
        eps: gn.epsilon,
    }
}

/// The GroupNorm's settings, for the kernel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GnParams {
    /// Groups (divides the channels).
    pub groups: usize,
    /// Added to the variance.
    pub eps: f64,
}

/// Shapes of one GroupNorm: `[n, c, hw]` in `groups` groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GnGeom {
    /// Batch.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Pixels per channel.
    pub hw: usize,
    /// Groups (divides `c`).
    pub groups: usize,
}

impl GnGeom {
    fn per_group(&self) -> usize {
        self.c / self.groups
    }

    fn block(&self) -> usize {
        self.per_group() * self.hw
    }
}

/// The inputs of [`forward`] and [`backward`], each `[n, c, hw]` but the
/// affine parameters `[c]`.
#[derive(Clone, Copy, Debug)]
pub struct GnInputs<'a> {
    /// The input.
    pub x: &'a [f32],
    /// Per-channel scale.
    pub gamma: &'a [f32],
    /// Per-channel shift.
    pub beta: &'a [f32],
    /// What follows, with its residual.
    pub tail: Tail<&'a [f32]>,
}

/// Mean and reciprocal standard deviation of one block (two passes, blocked
/// sums; see [`super::simd`]).
#[inline(always)]
fn stats(block: &[f32], eps: f64) -> (f32, f32) {
    let len = block.len() as f64;
    let m = (sum(block, |v| v) / len) as f32;
    let sq = sum(block, |v| (v - m) * (v - m));
    (m, (1.0 / (sq / len + eps).sqrt()) as f32)
}

/// One (image, group) block of the forward.
struct ForwardBlock<'a> {
    group: usize,
    /// The block's values of the inputs (`gamma`, `beta` whole).
    inputs: GnInputs<'a>,
    /// The block's output, every value written.
    y: &'a mut [MaybeUninit<f32>],
    per_group: usize,
    hw: usize,
    eps: f64,
}

/// Writes the block's output; returns (mean, rstd).
#[inline(always)]
fn forward_block(b: ForwardBlock<'_>) -> (f32, f32) {
    let GnInputs {
        x,
        gamma,
        beta,
        tail,
    } = b.inputs;
    let (mean, rstd) = stats(x, b.eps);
    let c0 = b.group * b.per_group;
    for j in 0..b.per_group {
        let a = rstd * gamma[c0 + j];
        let shift = beta[c0 + j] - mean * a;
        let range = j * b.hw..(j + 1) * b.hw;
        let (xs, ys) = (&x[range.clone()], &mut b.y[range.clone()]);
        match tail {
            Tail::None => ys.iter_mut().zip(xs).for_each(|(y, x)| {
                y.write(x * a + shift);
            }),
            Tail::Silu => ys.iter_mut().zip(xs).for_each(|(y, x)| {
                let z = x * a + shift;
                y.write(z * sigmoid(z));
            }),
            Tail::AddSilu(r) => ys
                .iter_mut()
                .zip(xs)
                .zip(&r[range])
                .for_each(|((y, x), r)| {
                    let z = x * a + shift + r;
                    y.write(z * sigmoid(z));
                }),
        }
    }
    (mean, rstd)
}

/// Forward: `x [n, c, hw]` → (`y`, per (image, group) `[mean, rstd]`).
pub fn forward(g: &GnGeom, inputs: GnInputs<'_>, eps: f64) -> (Vec<f32>, Vec<f32>) {
    check(g, &inputs);
    let b = g.block();
    // Every value is written below: no zeroing pass over the output.
    let mut y = Vec::with_capacity(inputs.x.len());
    let mut stats = vec![0.0; g.n * g.groups * 2];
    y.spare_capacity_mut()[..inputs.x.len()]
        .par_chunks_mut(b)
        .zip(stats.par_chunks_mut(2))
        .enumerate()
        .for_each(|(i, (y, s))| {
            let block = ForwardBlock {
                group: i % g.groups,
                inputs: GnInputs {
                    x: &inputs.x[i * b..][..b],
                    tail: inputs.tail.map(|r| &r[i * b..][..b]),
                    ..inputs
                },
                y,
                per_group: g.per_group(),
                hw: g.hw,
                eps,
            };
            let (m, rs) = wide!(forward_block(block: ForwardBlock<'_>) -> (f32, f32));
            s[0] = m;
            s[1] = rs;
        });
    // SAFETY: `check` asserted x.len() = n·c·hw, that is n·groups blocks
    // of b = per_group·hw values; `forward_block` writes every value of
    // its block (each of its per_group channels' hw values).
    unsafe { y.set_len(inputs.x.len()) };
    (y, stats)
}

fn check(g: &GnGeom, i: &GnInputs<'_>) {
    assert!(
        g.groups > 0 && g.c.is_multiple_of(g.groups),
        "group_norm: {} channels in {} groups",
        g.c,
        g.groups
    );
    assert_eq!(i.x.len(), g.n * g.c * g.hw, "group_norm input size");
    assert_eq!(
        (i.gamma.len(), i.beta.len()),
        (g.c, g.c),
        "group_norm affine size"
    );
    if let Tail::AddSilu(r) = i.tail {
        assert_eq!(r.len(), i.x.len(), "group_norm residual size");
    }
}

/// Gradients of [`forward`].
pub struct GnGrads {
    /// Input gradient, like `x`.
    pub dx: Vec<f32>,
    /// `[c]`.
    pub dgamma: Vec<f32>,
    /// `[c]`.
    pub dbeta: Vec<f32>,
    /// Residual gradient, like `x` ([`Tail::AddSilu`] only).
    pub dr: Option<Vec<f32>>,
}

/// One (image, group) block of the backward.
struct BackwardBlock<'a> {
    group: usize,
    /// (mean, rstd) of the block.
    stats: (f32, f32),
    /// What followed, with the block's residual and its gradient's block
    /// (every value written).
    tail: Tail<(&'a [f32], &'a mut [MaybeUninit<f32>])>,
    x: &'a [f32],
    gamma: &'a [f32],
    beta: &'a [f32],
    dy: &'a [f32],
    /// Every value written.
    dx: &'a mut [MaybeUninit<f32>],
    /// This block's per-channel `Σ dz·x̂`, then `Σ dz`: `[2, per_group]`.
    sums: &'a mut [f32],
    per_group: usize,
    hw: usize,
}

/// Writes `dx` (and the residual's gradient) and the block's channel sums.
#[inline(always)]
fn backward_block(b: BackwardBlock<'_>) {
    let BackwardBlock {
        group,
        stats: (mean, rstd),
        mut tail,
        x,
        gamma,
        beta,
        dy,
        dx,
        sums,
        per_group: cg,
        hw,
    } = b;
    let c0 = group * cg;
    let (mut mg, mut mgx) = (0.0f64, 0.0f64);
    let activated = !matches!(tail, Tail::None);
    // Pass 1: dz = ∂L/∂(normalized + affine) (kept in dx; dy itself without
    // an activation), and the channel sums.
    for j in 0..cg {
        let gm = gamma[c0 + j];
        let a = rstd * gm;
        let shift = beta[c0 + j] - mean * a;
        let range = j * hw..(j + 1) * hw;
        let (xs, dys) = (&x[range.clone()], &dy[range.clone()]);
        let dsilu = |x: f32, dy: f32, r: f32| {
            let z = x * a + shift + r;
            let s = sigmoid(z);
            dy * s * (1.0 + z * (1.0 - s))
        };
        let dz: &[f32] = match &mut tail {
            Tail::None => dys,
            Tail::Silu => {
                let dz = &mut dx[range.clone()];
                for (d, (&x, &dy)) in dz.iter_mut().zip(xs.iter().zip(dys)) {
                    d.write(dsilu(x, dy, 0.0));
                }
                // SAFETY: every value of `dz` was written just above, and
                // `MaybeUninit<f32>` has the layout of `f32`.
                unsafe { &*(dz as *const [MaybeUninit<f32>] as *const [f32]) }
            }
            Tail::AddSilu((r, dr)) => {
                let dz = &mut dx[range.clone()];
                let r = &r[range.clone()];
                for ((d, &r), (&x, &dy)) in dz.iter_mut().zip(r).zip(xs.iter().zip(dys)) {
                    d.write(dsilu(x, dy, r));
                }
                // SAFETY: as for `Tail::Silu`.
                let dz = unsafe { &*(dz as *const [MaybeUninit<f32>] as *const [f32]) };
                for (d, &v) in dr[range.clone()].iter_mut().zip(dz) {
                    d.write(v);
                }
                dz
            }
        };
        let sd = sum(dz, |d| d);
        let sdx = sum2(dz, xs, |d, x| d * ((x - mean) * rstd));
        sums[j] = sdx as f32;
        sums[cg + j] = sd as f32;
        mg += gm as f64 * sd;
        mgx += gm as f64 * sdx;
    }
    let m = (cg * hw) as f64;
    let (mg, mgx) = ((mg / m) as f32, (mgx / m) as f32);
    // Pass 2: dx = rstd · (γ·dz − mean(γ·dz) − x̂ · mean(γ·dz·x̂)).
    for j in 0..cg {
        let gm = gamma[c0 + j];
        let range = j * hw..(j + 1) * hw;
        let grad = |dz: f32, x: f32| rstd * (gm * dz - mg - (x - mean) * rstd * mgx);
        if activated {
            for (d, &x) in dx[range.clone()].iter_mut().zip(&x[range]) {
                // SAFETY: pass 1 wrote dz here (an activated tail writes
                // every value of the block).
                let dz = unsafe { d.assume_init_read() };
                d.write(grad(dz, x));
            }
        } else {
            let (dx, dy) = (&mut dx[range.clone()], &dy[range.clone()]);
            for ((d, &dy), &x) in dx.iter_mut().zip(dy).zip(&x[range]) {
                d.write(grad(dy, x));
            }
        }
    }
}

/// Backward of [`forward`] given its `stats` and the output gradient `dy`.
pub fn backward(g: &GnGeom, inputs: GnInputs<'_>, stats: &[f32], dy: &[f32]) -> GnGrads {
    check(g, &inputs);
    let GnInputs {
        x,
        gamma,
        beta,
        tail,
    } = inputs;
    assert_eq!(dy.len(), x.len(), "group_norm output-gradient size");
    let b = g.block();
    let cg = g.per_group();
    // Every value of dx (and dr) is written below: no zeroing pass.
    let mut dx: Vec<f32> = Vec::with_capacity(x.len());
    let mut dr: Option<Vec<f32>> =
        matches!(tail, Tail::AddSilu(_)).then(|| Vec::with_capacity(x.len()));
    // Per (image, group): [Σ dz·x̂ per channel, Σ dz per channel].
    let mut sums = vec![0.0; g.n * g.groups * 2 * cg];
    let dr_chunks: Vec<Option<&mut [MaybeUninit<f32>]>> = match dr.as_mut() {
        Some(dr) => dr.spare_capacity_mut()[..x.len()]
            .chunks_mut(b)
            .map(Some)
            .collect(),
        None => (0..g.n * g.groups).map(|_| None).collect(),
    };
    dx.spare_capacity_mut()[..x.len()]
        .par_chunks_mut(b)
        .zip(sums.par_chunks_mut(2 * cg))
        .zip(dr_chunks)
        .enumerate()
        .for_each(|(i, ((dx, sums), dr))| {
            let block_tail = match (tail, dr) {
                (Tail::AddSilu(r), Some(dr)) => Tail::AddSilu((&r[i * b..][..b], dr)),
                (Tail::Silu, _) => Tail::Silu,
                _ => Tail::None,
            };
            let block = BackwardBlock {
                group: i % g.groups,
                stats: (stats[2 * i], stats[2 * i + 1]),
                tail: block_tail,
                x: &x[i * b..][..b],
                gamma,
                beta,
                dy: &dy[i * b..][..b],
                dx,
                sums,
                per_group: cg,
                hw: g.hw,
            };
            wide!(backward_block(block: BackwardBlock<'_>) -> ());
        });
    // SAFETY: the n·groups blocks of b values cover all x.len() values
    // (`check`), and `backward_block` writes every value of its block of dx
    // (pass 2) and, with a residual, of dr (pass 1).
    unsafe {
        dx.set_len(x.len());
        if let Some(dr) = dr.as_mut() {
            dr.set_len(x.len());
        }
    }
    let mut dgamma = vec![0.0f32; g.c];
    let mut dbeta = vec![0.0f32; g.c];
    for (i, s) in sums.chunks(2 * cg).enumerate() {
        let c0 = (i % g.groups) * cg;
        for j in 0..cg {
            dgamma[c0 + j] += s[j];
            dbeta[c0 + j] += s[cg + j];
        }
    }
    GnGrads {
        dx,
        dgamma,
        dbeta,
        dr,
    }
}

/// The CPU kernels, plugged into Burn.
#[backend_extension(Flex, Autodiff)]
pub trait GroupNormOp: Backend {
    /// GroupNorm (affine) of `x [n, c, h, w]`, followed by SiLU when `silu`.
    fn group_norm_cpu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        params: GnParams,
        silu: bool,
    ) -> FloatTensor<Self>;

    /// `SiLU(GroupNorm(x) + residual)`.
    fn group_norm_add_silu_cpu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        params: GnParams,
    ) -> FloatTensor<Self>;
}

/// What a fused GroupNorm keeps for its backward.
#[derive(Debug, Clone)]
struct GnState {
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    tail: Tail<FlexTensor>,
    stats: Vec<f32>,
    groups: usize,
}

impl GnState {
    fn geom(&self) -> GnGeom {
        geom(&self.x, self.groups)
    }

    fn inputs(&self) -> GnInputs<'_> {
        GnInputs {
            x: slice(&self.x),
            gamma: slice(&self.gamma),
            beta: slice(&self.beta),
            tail: self.tail.as_ref().map(slice),
        }
    }
}

/// A pass's row in the profile: `maps` maps of x's size read or written
/// (the forward reads x and writes y, the backward reads x and dy and
/// writes dx), plus the residual's read (and its gradient's write).
fn work(s: &GnState, maps: usize) -> Work {
    let g = s.geom();
    let (tail, maps) = (s.tail.profile_label(), s.tail.profile_maps(maps));
    let shape = format!("{}, {} groups{tail}", profile::dims(dims4(&s.x)), g.groups);
    (shape, 0.0, profile::f32_bytes(maps * g.n * g.c * g.hw))
}

fn geom(x: &FlexTensor, groups: usize) -> GnGeom {
    let [n, c, h, w] = dims4(x);
    GnGeom {
        n,
        c,
        hw: h * w,
        groups,
    }
}

fn run(
    [x, gamma, beta]: [FlexTensor; 3],
    tail: Tail<FlexTensor>,
    p: GnParams,
) -> (FlexTensor, GnState) {
    let mut state = GnState {
        x,
        gamma,
        beta,
        tail,
        stats: Vec::new(),
        groups: p.groups,
    };
    let (y, stats) = profile::timed(
        "group norm forward",
        || work(&state, 2),
        || forward(&state.geom(), state.inputs(), p.eps),
    );
    state.stats = stats;
    (tensor(y, dims4(&state.x)), state)
}

impl GroupNormOp for Flex {
    fn group_norm_cpu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        params: GnParams,
        silu: bool,
    ) -> FloatTensor<Self> {
        let tail = Tail::silu_if(silu);
        run(inputs([x, gamma, beta]), tail, params).0
    }

    fn group_norm_add_silu_cpu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        params: GnParams,
    ) -> FloatTensor<Self> {
        let tail = Tail::AddSilu(contiguous(residual));
        run(inputs([x, gamma, beta]), tail, params).0
    }
}

impl<C: CheckpointStrategy> GroupNormOp for Autodiff<Flex, C> {
    fn group_norm_cpu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        params: GnParams,
        silu: bool,
    ) -> FloatTensor<Self> {
        let tail = Tail::silu_if(silu);
        record::<_, C, _>(GroupNormBackward::<3>, [x, gamma, beta], |xgb| {
            run(xgb, tail, params)
        })
    }

    fn group_norm_add_silu_cpu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        params: GnParams,
    ) -> FloatTensor<Self> {
        record::<_, C, _>(
            GroupNormBackward::<4>,
            [x, gamma, beta, residual],
            |[x, gamma, beta, r]| run([x, gamma, beta], Tail::AddSilu(r), params),
        )
    }
}

/// Registers the gradients of x, gamma, beta (and the residual).
fn gn_backward<const N: usize>(ops: Ops<GnState, N>, grads: &mut Gradients) {
    let dy = contiguous(grads.consume::<Flex>(&ops.node));
    let s = &ops.state;
    let g = s.geom();
    let d = profile::timed(
        "group norm backward",
        || work(s, 3),
        || backward(&g, s.inputs(), &s.stats, slice(&dy)),
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

/// The backward of GroupNorm over `N` inputs: x, gamma, beta, and the
/// residual when the tail adds one.
#[derive(Debug)]
struct GroupNormBackward<const N: usize>;

impl<const N: usize> Backward<Flex, N> for GroupNormBackward<N> {
    type State = GnState;

    fn backward(self, ops: Ops<GnState, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        gn_backward(ops, grads);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::flex::assert_close;
    use burn::tensor::{Device, Distribution};

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
                        (0, true) => group_norm(x.clone(), &gn, Tail::None),
                        (1, true) => group_norm(x.clone(), &gn, Tail::Silu),
                        (_, true) => group_norm(x.clone(), &gn, Tail::AddSilu(r.clone())),
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

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                let v = (i as u32)
                    .wrapping_mul(2654435761)
                    .wrapping_add(seed * 7919);
                ((v >> 8) % 4001) as f32 / 1000.0 - 2.0
            })
            .collect()
    }

    /// The loss `Σ y·w` for fixed weights `w`, in f64, from the definition.
    fn loss(
        g: &GnGeom,
        x: &[f64],
        gamma: &[f64],
        beta: &[f64],
        r: &[f64],
        tail: Tail<()>,
        w: &[f32],
    ) -> f64 {
        let b = g.block();
        let mut total = 0.0;
        for i in 0..g.n * g.groups {
            let blk = &x[i * b..][..b];
            let mean = blk.iter().sum::<f64>() / b as f64;
            let var = blk.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / b as f64;
            let rstd = 1.0 / (var + 1e-5).sqrt();
            for (k, v) in blk.iter().enumerate() {
                let c = (i % g.groups) * g.per_group() + k / g.hw;
                let mut z = (v - mean) * rstd * gamma[c] + beta[c];
                if tail == Tail::AddSilu(()) {
                    z += r[i * b + k];
                }
                let y = if tail == Tail::None {
                    z
                } else {
                    z / (1.0 + (-z).exp())
                };
                total += y * w[i * b + k] as f64;
            }
        }
        total
    }

    /// Forward against the definition; every gradient against central
    /// differences of the definition in f64.
    #[test]
    fn forward_and_gradients_match_the_definition() {
        for (n, c, hw, groups) in [(1, 6, 5, 3), (3, 48, 7, 24), (2, 4, 9, 1)] {
            for tail in [Tail::None, Tail::Silu, Tail::AddSilu(())] {
                let g = GnGeom { n, c, hw, groups };
                let len = n * c * hw;
                let x = values(len, 1);
                let gamma = values(c, 2);
                let beta = values(c, 3);
                let r = values(len, 4);
                let dy = values(len, 5);
                let inputs = GnInputs {
                    x: &x,
                    gamma: &gamma,
                    beta: &beta,
                    tail: tail.map(|()| &r[..]),
                };
                let (y, st) = forward(&g, inputs, 1e-5);
                let f64s = |v: &[f32]| v.iter().map(|&v| v as f64).collect::<Vec<f64>>();
                let (xd, gd, bd, rd) = (f64s(&x), f64s(&gamma), f64s(&beta), f64s(&r));
                // Forward: y is the gradient of Σ y·w with respect to w.
                for k in 0..len {
                    let mut w = vec![0.0f32; len];
                    w[k] = 1.0;
                    let want = loss(&g, &xd, &gd, &bd, &rd, tail, &w);
                    assert!(
                        (y[k] as f64 - want).abs() < 1e-5 * (1.0 + want.abs()),
                        "y[{k}]"
                    );
                }
                let grads = backward(&g, inputs, &st, &dy);
                let numeric = |v: &[f64], i: usize, which: u8| {
                    let h = 1e-6;
                    let mut up = v.to_vec();
                    let mut down = v.to_vec();
                    up[i] += h;
                    down[i] -= h;
                    let f = |v: &[f64]| match which {
                        0 => loss(&g, v, &gd, &bd, &rd, tail, &dy),
                        1 => loss(&g, &xd, v, &bd, &rd, tail, &dy),
                        2 => loss(&g, &xd, &gd, v, &rd, tail, &dy),
                        _ => loss(&g, &xd, &gd, &bd, v, tail, &dy),
                    };
                    (f(&up) - f(&down)) / (2.0 * h)
                };
                let what = format!("{n}×{c}×{hw} in {groups} groups, {tail:?}");
                let near = |got: f32, want: f64, name: &str, i: usize| {
                    assert!(
                        (got as f64 - want).abs() < 2e-4 * (1.0 + want.abs()),
                        "{name}[{i}] {what}: {got} vs {want}"
                    );
                };
                for i in (0..len).step_by(7) {
                    near(grads.dx[i], numeric(&xd, i, 0), "dx", i);
                    if let Some(dr) = &grads.dr {
                        near(dr[i], numeric(&rd, i, 3), "dr", i);
                    }
                }
                for i in 0..c {
                    near(grads.dgamma[i], numeric(&gd, i, 1), "dgamma", i);
                    near(grads.dbeta[i], numeric(&bd, i, 2), "dbeta", i);
                }
            }
        }
    }
}
