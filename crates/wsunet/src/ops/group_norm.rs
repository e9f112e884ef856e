//! GroupNorm fused with what follows it in this network, on raw `f32` slices:
//! `GN(x)`, `SiLU(GN(x))` and `SiLU(GN(x) + r)` (the end of a residual
//! block), forward and backward, for the CPU backend (Flex).
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

use rayon::prelude::*;

use super::simd::{sum, sum2, wide};

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

/// What follows the normalization.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tail {
    /// Nothing: plain GroupNorm.
    None,
    /// `SiLU(GN(x))`.
    Silu,
    /// `SiLU(GN(x) + r)`.
    AddSilu,
}

impl Tail {
    /// [`Tail::Silu`] when `silu`, else [`Tail::None`].
    pub fn silu_if(silu: bool) -> Self {
        if silu { Tail::Silu } else { Tail::None }
    }
}

/// `exp(x)` for `f32` without a library call, so loops over it vectorize
/// (Cephes `expf`: range reduction by ln 2 and a degree-6 polynomial; within
/// 2 ulp on [−87, 88]).
#[inline(always)]
fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // Round to nearest through the float mantissa (no SSE4.1 `round` needed).
    let n = (x * std::f32::consts::LOG2_E + 12_582_912.0) - 12_582_912.0;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    f32::from_bits(e.to_bits().wrapping_add(((n as i32) << 23) as u32))
}

#[inline(always)]
fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + exp(-z))
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

/// Forward of one (image, group) block; returns (mean, rstd).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn forward_block(
    g: &GnGeom,
    group: usize,
    x: &[f32],
    r: Option<&[f32]>,
    y: &mut [f32],
    gamma: &[f32],
    beta: &[f32],
    tail: Tail,
    eps: f64,
) -> (f32, f32) {
    let (mean, rstd) = stats(x, eps);
    let c0 = group * g.per_group();
    for j in 0..g.per_group() {
        let a = rstd * gamma[c0 + j];
        let b = beta[c0 + j] - mean * a;
        let range = j * g.hw..(j + 1) * g.hw;
        let (xs, ys) = (&x[range.clone()], &mut y[range.clone()]);
        match (tail, r) {
            (Tail::None, _) => ys.iter_mut().zip(xs).for_each(|(y, x)| *y = x * a + b),
            (Tail::Silu, _) => ys.iter_mut().zip(xs).for_each(|(y, x)| {
                let z = x * a + b;
                *y = z * sigmoid(z);
            }),
            (Tail::AddSilu, Some(r)) => {
                ys.iter_mut()
                    .zip(xs)
                    .zip(&r[range])
                    .for_each(|((y, x), r)| {
                        let z = x * a + b + r;
                        *y = z * sigmoid(z);
                    })
            }
            (Tail::AddSilu, None) => unreachable!("AddSilu without a residual"),
        }
    }
    (mean, rstd)
}

/// Forward: `x [n, c, hw]` → (`y`, per (image, group) `[mean, rstd]`).
/// `r` is the residual for [`Tail::AddSilu`].
pub fn forward(
    g: &GnGeom,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    r: Option<&[f32]>,
    tail: Tail,
    eps: f64,
) -> (Vec<f32>, Vec<f32>) {
    check(g, x, gamma, beta, r, tail);
    let b = g.block();
    let mut y = vec![0.0; x.len()];
    let mut stats = vec![0.0; g.n * g.groups * 2];
    y.par_chunks_mut(b)
        .zip(stats.par_chunks_mut(2))
        .enumerate()
        .for_each(|(i, (y, s))| {
            let x = &x[i * b..][..b];
            let r = r.map(|r| &r[i * b..][..b]);
            let group = i % g.groups;
            let (m, rs) = wide!(forward_block(
                g: &GnGeom, group: usize, x: &[f32], r: Option<&[f32]>, y: &mut [f32],
                gamma: &[f32], beta: &[f32], tail: Tail, eps: f64
            ) -> (f32, f32));
            s[0] = m;
            s[1] = rs;
        });
    (y, stats)
}

fn check(g: &GnGeom, x: &[f32], gamma: &[f32], beta: &[f32], r: Option<&[f32]>, tail: Tail) {
    assert!(
        g.groups > 0 && g.c.is_multiple_of(g.groups),
        "group_norm: {} channels in {} groups",
        g.c,
        g.groups
    );
    assert_eq!(x.len(), g.n * g.c * g.hw, "group_norm input size");
    assert_eq!(
        (gamma.len(), beta.len()),
        (g.c, g.c),
        "group_norm affine size"
    );
    assert_eq!(
        r.map(<[f32]>::len),
        (tail == Tail::AddSilu).then_some(x.len()),
        "group_norm residual"
    );
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

/// Backward of one (image, group) block: writes `dx` (and `dr`) and this
/// block's per-channel `Σ dz·x̂` and `Σ dz` into `sums [2, per_group]`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn backward_block(
    g: &GnGeom,
    group: usize,
    (mean, rstd): (f32, f32),
    x: &[f32],
    r: Option<&[f32]>,
    dy: &[f32],
    dx: &mut [f32],
    mut dr: Option<&mut [f32]>,
    gamma: &[f32],
    beta: &[f32],
    tail: Tail,
    sums: &mut [f32],
) {
    let cg = g.per_group();
    let c0 = group * cg;
    let (mut mg, mut mgx) = (0.0f64, 0.0f64);
    // Pass 1: dz = ∂L/∂(normalized + affine) (kept in dx; dy itself without
    // an activation), and the channel sums.
    for j in 0..cg {
        let gm = gamma[c0 + j];
        let a = rstd * gm;
        let b = beta[c0 + j] - mean * a;
        let range = j * g.hw..(j + 1) * g.hw;
        let (xs, dys) = (&x[range.clone()], &dy[range.clone()]);
        let dsilu = |x: f32, dy: f32, r: f32| {
            let z = x * a + b + r;
            let s = sigmoid(z);
            dy * s * (1.0 + z * (1.0 - s))
        };
        let dz: &[f32] = match (tail, r) {
            (Tail::None, _) => dys,
            (Tail::Silu, _) => {
                let dz = &mut dx[range.clone()];
                for (d, (&x, &dy)) in dz.iter_mut().zip(xs.iter().zip(dys)) {
                    *d = dsilu(x, dy, 0.0);
                }
                dz
            }
            (Tail::AddSilu, r) => {
                let r = &r.expect("AddSilu has a residual")[range.clone()];
                let dz = &mut dx[range.clone()];
                for ((d, &r), (&x, &dy)) in dz.iter_mut().zip(r).zip(xs.iter().zip(dys)) {
                    *d = dsilu(x, dy, r);
                }
                dz
            }
        };
        if let Some(dr) = dr.as_deref_mut() {
            dr[range.clone()].copy_from_slice(dz);
        }
        let sd = sum(dz, |d| d);
        let sdx = sum2(dz, xs, |d, x| d * ((x - mean) * rstd));
        sums[j] = sdx as f32;
        sums[cg + j] = sd as f32;
        mg += gm as f64 * sd;
        mgx += gm as f64 * sdx;
    }
    let m = g.block() as f64;
    let (mg, mgx) = ((mg / m) as f32, (mgx / m) as f32);
    // Pass 2: dx = rstd · (γ·dz − mean(γ·dz) − x̂ · mean(γ·dz·x̂)).
    for j in 0..cg {
        let gm = gamma[c0 + j];
        let range = j * g.hw..(j + 1) * g.hw;
        let grad = |dz: f32, x: f32| rstd * (gm * dz - mg - (x - mean) * rstd * mgx);
        if tail == Tail::None {
            let (dx, dy) = (&mut dx[range.clone()], &dy[range.clone()]);
            for ((d, &dy), &x) in dx.iter_mut().zip(dy).zip(&x[range]) {
                *d = grad(dy, x);
            }
        } else {
            for (d, &x) in dx[range.clone()].iter_mut().zip(&x[range]) {
                *d = grad(*d, x);
            }
        }
    }
}

/// Backward of [`forward`] given its `stats` and the output gradient `dy`.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    g: &GnGeom,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    r: Option<&[f32]>,
    tail: Tail,
    stats: &[f32],
    dy: &[f32],
) -> GnGrads {
    check(g, x, gamma, beta, r, tail);
    assert_eq!(dy.len(), x.len(), "group_norm output-gradient size");
    let b = g.block();
    let cg = g.per_group();
    let mut dx = vec![0.0; x.len()];
    let mut dr = (tail == Tail::AddSilu).then(|| vec![0.0; x.len()]);
    // Per (image, group): [Σ dz·x̂ per channel, Σ dz per channel].
    let mut sums = vec![0.0; g.n * g.groups * 2 * cg];
    let dr_chunks: Vec<Option<&mut [f32]>> = match dr.as_mut() {
        Some(dr) => dr.chunks_mut(b).map(Some).collect(),
        None => (0..g.n * g.groups).map(|_| None).collect(),
    };
    dx.par_chunks_mut(b)
        .zip(sums.par_chunks_mut(2 * cg))
        .zip(dr_chunks)
        .enumerate()
        .for_each(|(i, ((dx, s), dr))| {
            let x = &x[i * b..][..b];
            let dy = &dy[i * b..][..b];
            let r = r.map(|r| &r[i * b..][..b]);
            let st = (stats[2 * i], stats[2 * i + 1]);
            let group = i % g.groups;
            wide!(backward_block(
                g: &GnGeom, group: usize, st: (f32, f32), x: &[f32], r: Option<&[f32]>,
                dy: &[f32], dx: &mut [f32], dr: Option<&mut [f32]>, gamma: &[f32],
                beta: &[f32], tail: Tail, s: &mut [f32]
            ) -> ());
        });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_the_library() {
        let mut worst = 0.0f32;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (a, b) = (exp(x), x.exp());
            worst = worst.max(((a - b) / b).abs());
            x += 0.0137;
        }
        assert!(worst < 2.5e-7, "worst relative error {worst}");
        assert!((0.0..1e-37).contains(&exp(-1000.0)));
        assert!(exp(1000.0).is_finite());
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
        tail: Tail,
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
                if tail == Tail::AddSilu {
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
            for tail in [Tail::None, Tail::Silu, Tail::AddSilu] {
                let g = GnGeom { n, c, hw, groups };
                let len = n * c * hw;
                let x = values(len, 1);
                let gamma = values(c, 2);
                let beta = values(c, 3);
                let r = values(len, 4);
                let dy = values(len, 5);
                let rr = (tail == Tail::AddSilu).then_some(&r[..]);
                let (y, st) = forward(&g, &x, &gamma, &beta, rr, tail, 1e-5);
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
                let grads = backward(&g, &x, &gamma, &beta, rr, tail, &st, &dy);
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
