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
use super::direct::{Input, Layout, pad_into};
use super::dot_gemm::{self, Rows, dot_gemm};
use super::geom::{ConvGeom, sum_in_order, with_scratch};

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

/// Weight gradient: `x [n, ci, h, w]`, `dy [n, co, ho, wo]` →
/// `dw [co, ci, k, k]`, for a `g` that [`suits`].
///
/// The whole batch is padded once (`direct.rs`'s layout: at stride 1 one
/// plane per channel, rows `wq = w + 2p` wide). Images run in parallel
/// when there are at least as many as threads, each thread summing its own
/// fixed share into its own buffer, added in order (the same bits on every
/// run); otherwise one after another, the output channels split across the
/// threads.
pub(super) fn backward_weight(g: &ConvGeom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    debug_assert!(suits(g), "{g:?}");
    let l = Layout::new(g);
    let plane = l.plane();
    // Tap (c, ky, kx)'s run in one image's padded planes, in the order of
    // the kernel's values (`c·k² + ky·k + kx`).
    let starts: Vec<usize> = (0..g.ci)
        .flat_map(|c| (0..g.k * g.k).map(move |tap| c * plane + l.tap(1, tap / g.k, tap % g.k)))
        .collect();
    let wq = l.wq;
    // Outputs per channel at the padded width, the last row's padding
    // columns left out.
    let t = (g.ho - 1) * wq + g.wo;
    let rows = g.ho * wq;
    let len = g.co * g.kk();
    let threads = rayon::current_num_threads();
    // dW (+)= image n's product, its output channels split `parts` ways;
    // `dyp` holds its output gradient at the padded width.
    let image = |xp: &[f32], n: usize, dyp: &mut [f32], acc: &mut [f32], parts: usize| {
        let src = &dy[n * g.co * g.hw_out()..][..g.co * g.hw_out()];
        for (row, src) in dyp.chunks_exact_mut(wq).zip(src.chunks_exact(g.wo)) {
            row[..g.wo].copy_from_slice(src);
            row[g.wo..].fill(0.0);
        }
        let dyp = &*dyp;
        let taps = Rows::at(&xp[n * g.ci * plane..][..g.ci * plane], &starts);
        let per = g.co.div_ceil(parts).next_multiple_of(4);
        let part = |(i, acc): (usize, &mut [f32])| {
            let a = Rows::strided(&dyp[i * per * rows..], rows, acc.len() / g.kk());
            dot_gemm(t, a, taps, acc, g.kk(), true);
        };
        if parts > 1 {
            acc.par_chunks_mut(per * g.kk()).enumerate().for_each(part);
        } else {
            acc.chunks_mut(per * g.kk()).enumerate().for_each(part);
        }
    };
    with_scratch(g.n * g.ci * plane, |xp| {
        pad_into(g, Input::one(x), l, xp);
        let xp = &*xp;
        if threads > 1 && g.n >= threads {
            let share = g.n.div_ceil(threads);
            let partials: Vec<Vec<f32>> = (0..g.n)
                .step_by(share)
                .collect::<Vec<_>>()
                .into_par_iter()
                .map(|n0| {
                    let (mut acc, mut dyp) = (vec![0.0; len], vec![0.0; g.co * rows]);
                    for n in n0..(n0 + share).min(g.n) {
                        image(xp, n, &mut dyp, &mut acc, 1);
                    }
                    acc
                })
                .collect();
            sum_in_order(partials, len)
        } else {
            let (mut acc, mut dyp) = (vec![0.0; len], vec![0.0; g.co * rows]);
            (0..g.n).for_each(|n| image(xp, n, &mut dyp, &mut acc, threads));
            acc
        }
    })
}
