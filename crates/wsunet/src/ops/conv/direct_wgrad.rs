//! The weight gradient of a stride-1 convolution without im2col: every
//! kernel tap's input rows read in place, as shifted views of one
//! zero-padded plane (the "shifted-pointer" form of `direct.rs`, applied to
//! `dW = dY · colsᵀ`).
//!
//! With the input padded once (planes of `(h+2p) × (w+2p)`) and the output
//! gradient written at the same row width (`w + 2p`, zeros in the `k − 1`
//! columns past `wo`), output `q = y·(w+2p) + x` reads input
//! `q + ky·(w+2p) + kx` for tap `(ky, kx)`, so
//!
//! `dW[o][c][ky][kx] = Σ_q dY'[o][q] · X'[c][q + ky·(w+2p) + kx]`:
//!
//! a dot product of a row of `dY'` with a shifted run of `X'`. The
//! dot-product kernel ([`dot_gemm`]) takes those runs as overlapping rows
//! of the padded planes, where im2col first copied `k²` of them per input
//! channel (9× the input for a 3×3 kernel: 21 MB per step at the main
//! command's last decoder layer, 8×32×48² → 16, whose weight gradient went
//! from 1.86–1.94 to 1.51–1.56 ms). The padding columns are computed and
//! dropped: `(k − 1) / (w + 2p)` of the work (4 % at 48 wide, 14 % at 12),
//! so narrow maps keep im2col ([`suits`]).

use rayon::prelude::*;

use super::SKINNY_CO;
use super::dot_gemm::{self, Rows, dot_gemm};
use super::geom::{ConvGeom, with_scratch};

/// Narrowest output rows taken here (see the module docs).
const MIN_WO: usize = 12;

/// Whether [`backward_weight`] computes `g`: stride 1 and a kernel larger
/// than 1×1 (a 1×1 needs no unfolding), at most [`SKINNY_CO`] output
/// channels, rows of at least [`MIN_WO`] outputs, on a CPU with the
/// dot-product kernel.
///
/// Wider layers keep im2col + `gemm`, faster there (`cargo bench --bench
/// kernels`, weight gradient, this path against `gemm`: 8×32×24² → 32
/// 1.07 against 0.70–1.02 ms, 2×128×64² → 64 10.3–10.5 against 7.4–7.5 ms):
/// the dot-product kernel streams every output channel's row once per
/// four taps, which `gemm`'s packing avoids.
pub(super) fn suits(g: &ConvGeom) -> bool {
    g.s == 1 && g.k > 1 && g.co <= SKINNY_CO && g.wo >= MIN_WO && dot_gemm::available()
}

/// The padded layout of one image.
struct Padded {
    /// Padded plane height and width.
    hp: usize,
    wp: usize,
    /// Outputs per channel at the padded width, the last row's padding
    /// columns left out: `(ho − 1)·wp + wo`.
    t: usize,
}

impl Padded {
    fn new(g: &ConvGeom) -> Self {
        let (hp, wp) = (g.h + 2 * g.p, g.w + 2 * g.p);
        Padded {
            hp,
            wp,
            t: (g.ho - 1) * wp + g.wo,
        }
    }

    /// `x [ci, h, w]` into `out [ci, hp, wp]`, zeros around every plane.
    fn input(&self, g: &ConvGeom, x: &[f32], out: &mut [f32]) {
        for (plane, src) in out
            .chunks_exact_mut(self.hp * self.wp)
            .zip(x.chunks_exact(g.hw_in()))
        {
            plane[..g.p * self.wp].fill(0.0);
            plane[(g.p + g.h) * self.wp..].fill(0.0);
            for (row, src) in plane[g.p * self.wp..]
                .chunks_exact_mut(self.wp)
                .zip(src.chunks_exact(g.w))
            {
                row[..g.p].fill(0.0);
                row[g.p..g.p + g.w].copy_from_slice(src);
                row[g.p + g.w..].fill(0.0);
            }
        }
    }

    /// `dy [co, ho, wo]` into `out [co, ho·wp]`: each row followed by
    /// `wp − wo` zeros.
    fn output_grad(&self, g: &ConvGeom, dy: &[f32], out: &mut [f32]) {
        for (plane, src) in out
            .chunks_exact_mut(g.ho * self.wp)
            .zip(dy.chunks_exact(g.hw_out()))
        {
            for (row, src) in plane.chunks_exact_mut(self.wp).zip(src.chunks_exact(g.wo)) {
                row[..g.wo].copy_from_slice(src);
                row[g.wo..].fill(0.0);
            }
        }
    }

    /// Where tap `(c, ky, kx)`'s run starts in the padded planes, in the
    /// order of the kernel's values (`c·k² + ky·k + kx`).
    fn tap_starts(&self, g: &ConvGeom) -> Vec<usize> {
        (0..g.ci)
            .flat_map(|c| {
                (0..g.k * g.k)
                    .map(move |tap| c * self.hp * self.wp + (tap / g.k) * self.wp + tap % g.k)
            })
            .collect()
    }
}

/// Weight gradient: `x [n, ci, h, w]`, `dy [n, co, ho, wo]` →
/// `dw [co, ci, k, k]`, for a `g` that [`suits`].
///
/// Images run in parallel when there are at least as many as threads,
/// each thread summing its own fixed share into its own buffer, added in
/// order (the same bits on every run); otherwise one after another, the
/// output channels split across the threads.
pub(super) fn backward_weight(g: &ConvGeom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    debug_assert!(suits(g), "{g:?}");
    let pad = Padded::new(g);
    let starts = pad.tap_starts(g);
    let (x_len, dy_len) = (g.ci * pad.hp * pad.wp, g.co * g.ho * pad.wp);
    let len = g.co * g.kk();
    let threads = rayon::current_num_threads();
    // dW (+)= one image's product, its output channels split `parts` ways.
    let image = |n: usize, acc: &mut [f32], parts: usize| {
        with_scratch(x_len + dy_len, |buf| {
            let (xp, dyp) = buf.split_at_mut(x_len);
            pad.input(g, &x[n * g.ci * g.hw_in()..][..g.ci * g.hw_in()], xp);
            pad.output_grad(g, &dy[n * g.co * g.hw_out()..][..g.co * g.hw_out()], dyp);
            let (xp, dyp) = (&*xp, &*dyp);
            let taps = Rows::at(xp, &starts);
            let rows = g.ho * pad.wp;
            let per = g.co.div_ceil(parts).next_multiple_of(4);
            let part = |(i, acc): (usize, &mut [f32])| {
                let a = Rows::strided(&dyp[i * per * rows..], rows, acc.len() / g.kk());
                dot_gemm(pad.t, a, taps, acc, g.kk(), true);
            };
            if parts > 1 {
                acc.par_chunks_mut(per * g.kk()).enumerate().for_each(part);
            } else {
                acc.chunks_mut(per * g.kk()).enumerate().for_each(part);
            }
        })
    };
    if threads > 1 && g.n >= threads {
        let share = g.n.div_ceil(threads);
        let partials: Vec<Vec<f32>> = (0..g.n)
            .step_by(share)
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|n0| {
                let mut acc = vec![0.0; len];
                (n0..(n0 + share).min(g.n)).for_each(|n| image(n, &mut acc, 1));
                acc
            })
            .collect();
        let mut parts = partials.into_iter();
        let mut acc = parts.next().expect("at least one image");
        for part in parts {
            acc.iter_mut().zip(&part).for_each(|(a, b)| *a += b);
        }
        acc
    } else {
        let mut acc = vec![0.0; len];
        (0..g.n).for_each(|n| image(n, &mut acc, threads));
        acc
    }
}
