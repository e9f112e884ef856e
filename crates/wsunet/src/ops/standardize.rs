//! Weight standardization on raw `f32` slices, forward and backward, for the
//! CPU backend (Flex): each row of a kernel `[out, n]` is centred and scaled
//! by a function of its sum of squared deviations.
//!
//! Composed from Burn's ops this is four passes over the kernel forward and
//! about eight backward, with a tensor allocated for each — for an 11 M
//! parameter network, about a sixth of a training step. Here it is one pass
//! each way per row, rows in parallel, with blocked sums (see [`super::simd`]).
//!
//! Formulas (Qiao et al., arXiv:1903.10520; timm's `StdConv2d` and
//! `ScaledStdConv2d`), with `c = w − mean(w)` and `q = Σ c²` per row:
//!
//! | formula | scale `s(q)` |
//! |---|---|
//! | `Seed` | `1 / (sqrt(max(q / (n − 1), 1e-30)) + eps)` |
//! | `Biased` | `1 / sqrt(q / n + eps)` |
//! | `Scaled` | `gain / sqrt(n) / sqrt(q / n + eps)` |
//!
//! Output `y = c · s(q)`; gradient `dw = s·(g − mean(g)) + 2·s'(q)·c·Σ g·c`.

use rayon::prelude::*;

use super::simd::{sum, sum2, wide};

/// Smallest variance fed to `sqrt` in the `Seed` formula (its derivative is
/// infinite at 0): a constant row gets a zero gradient through the clamp, as
/// in PyTorch, instead of NaN.
pub const MIN_VARIANCE: f64 = 1e-30;

/// Which scale function a row gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Formula {
    /// `(w − mean) / (std_unbiased + eps)`.
    Seed,
    /// `(w − mean) / sqrt(var_biased + eps)`.
    Biased,
    /// `gain · (w − mean) / sqrt(var_biased + eps) / sqrt(n)`.
    Scaled,
}

/// Per row: the scale, its derivative in `q`, and `∂s/∂gain` (Scaled).
fn scale(formula: Formula, q: f64, n: usize, eps: f64, gain: f64) -> (f64, f64, f64) {
    match formula {
        Formula::Seed => {
            let dof = n.saturating_sub(1).max(1) as f64;
            let v = q / dof;
            let (sigma, dsigma) = if v < MIN_VARIANCE {
                (MIN_VARIANCE.sqrt(), 0.0)
            } else {
                let sigma = v.sqrt();
                (sigma, 1.0 / (2.0 * sigma * dof))
            };
            let s = 1.0 / (sigma + eps);
            (s, -s * s * dsigma, 0.0)
        }
        Formula::Biased | Formula::Scaled => {
            let inv = 1.0 / (q / n as f64 + eps).sqrt();
            // Scaled: gain / sqrt(n) on top of the Biased scale.
            let (f, g) = if formula == Formula::Scaled {
                (1.0 / (n as f64).sqrt(), gain)
            } else {
                (1.0, 1.0)
            };
            (
                inv * f * g,
                -0.5 * inv * inv * inv / n as f64 * f * g,
                inv * f,
            )
        }
    }
}

/// A row's mean and its sum of squared deviations (two passes).
#[inline(always)]
fn mean_and_q(row: &[f32]) -> (f32, f64) {
    let mean = (sum(row, |v| v) / row.len() as f64) as f32;
    (mean, sum(row, |v| (v - mean) * (v - mean)))
}

#[inline(always)]
fn forward_row(y: &mut [f32], row: &[f32], gain: f32, formula: Formula, eps: f64) {
    let (mean, q) = mean_and_q(row);
    let s = scale(formula, q, row.len(), eps, gain as f64).0 as f32;
    for (y, &v) in y.iter_mut().zip(row) {
        *y = (v - mean) * s;
    }
}

#[inline(always)]
fn backward_row(
    dw: &mut [f32],
    row: &[f32],
    g: &[f32],
    gain: f32,
    formula: Formula,
    eps: f64,
) -> f32 {
    let n = row.len();
    let (mean, q) = mean_and_q(row);
    let (s, ds, dsdgain) = scale(formula, q, n, eps, gain as f64);
    let gmean = (sum(g, |v| v) / n as f64) as f32;
    let gc = sum2(g, row, |g, v| g * (v - mean));
    let (s, k) = (s as f32, (2.0 * ds * gc) as f32);
    for ((d, &g), &v) in dw.iter_mut().zip(g).zip(row) {
        *d = s * (g - gmean) + k * (v - mean);
    }
    (gc * dsdgain) as f32
}

/// Standardizes every row of `w [rows, n]`; `gain [rows]` is read by
/// `Scaled` only.
pub fn forward(w: &[f32], n: usize, gain: &[f32], formula: Formula, eps: f64) -> Vec<f32> {
    assert!(
        n > 0 && w.len().is_multiple_of(n),
        "standardize: {} values in rows of {n}",
        w.len()
    );
    assert_eq!(gain.len(), w.len() / n, "standardize: one gain per row");
    let mut y = vec![0.0; w.len()];
    y.par_chunks_mut(n)
        .zip(w.par_chunks(n))
        .zip(gain.par_iter())
        .for_each(|((y, row), &gain)| {
            wide!(forward_row(y: &mut [f32], row: &[f32], gain: f32, formula: Formula, eps: f64) -> ())
        });
    y
}

/// Gradients of [`forward`]: (`dw`, `dgain`) given the output gradient `dy`.
pub fn backward(
    w: &[f32],
    n: usize,
    gain: &[f32],
    formula: Formula,
    eps: f64,
    dy: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(dy.len(), w.len(), "standardize: output-gradient size");
    let mut dw = vec![0.0; w.len()];
    let mut dgain = vec![0.0; gain.len()];
    dw.par_chunks_mut(n)
        .zip(dgain.par_iter_mut())
        .enumerate()
        .for_each(|(i, (dw, dgain))| {
            let (row, g, gain) = (&w[i * n..][..n], &dy[i * n..][..n], gain[i]);
            *dgain = wide!(backward_row(
                dw: &mut [f32], row: &[f32], g: &[f32], gain: f32, formula: Formula, eps: f64
            ) -> f32);
        });
    (dw, dgain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loss(w: &[f64], n: usize, gain: &[f64], formula: Formula, dy: &[f32]) -> f64 {
        let mut total = 0.0;
        for (i, row) in w.chunks(n).enumerate() {
            let mean = row.iter().sum::<f64>() / n as f64;
            let q: f64 = row.iter().map(|v| (v - mean).powi(2)).sum();
            let (s, _, _) = scale(formula, q, n, 1e-5, gain[i]);
            total += row
                .iter()
                .zip(&dy[i * n..])
                .map(|(v, &d)| (v - mean) * s * d as f64)
                .sum::<f64>();
        }
        total
    }

    #[test]
    fn gradients_match_central_differences() {
        let n = 27;
        let rows = 4;
        let w: Vec<f32> = (0..rows * n)
            .map(|i| ((i * 37 % 101) as f32 / 50.0 - 1.0) * 0.3)
            .collect();
        let gain = [1.0f32, 0.5, 2.0, -1.0];
        let dy: Vec<f32> = (0..rows * n)
            .map(|i| (i * 53 % 89) as f32 / 44.0 - 1.0)
            .collect();
        for formula in [Formula::Seed, Formula::Biased, Formula::Scaled] {
            let (dw, dgain) = backward(&w, n, &gain, formula, 1e-5, &dy);
            let wd: Vec<f64> = w.iter().map(|&v| v as f64).collect();
            let gd: Vec<f64> = gain.iter().map(|&v| v as f64).collect();
            let h = 1e-6;
            for i in 0..w.len() {
                let (mut up, mut down) = (wd.clone(), wd.clone());
                up[i] += h;
                down[i] -= h;
                let want = (loss(&up, n, &gd, formula, &dy) - loss(&down, n, &gd, formula, &dy))
                    / (2.0 * h);
                assert!(
                    (dw[i] as f64 - want).abs() < 1e-6 * (1.0 + want.abs()),
                    "{formula:?} dw[{i}] {} vs {want}",
                    dw[i]
                );
            }
            for i in 0..rows {
                let (mut up, mut down) = (gd.clone(), gd.clone());
                up[i] += h;
                down[i] -= h;
                let want = (loss(&wd, n, &up, formula, &dy) - loss(&wd, n, &down, formula, &dy))
                    / (2.0 * h);
                let got = if formula == Formula::Scaled {
                    dgain[i] as f64
                } else {
                    0.0
                };
                let want = if formula == Formula::Scaled {
                    want
                } else {
                    0.0
                };
                assert!(
                    (got - want).abs() < 1e-3 * (1.0 + want.abs()),
                    "{formula:?} dgain[{i}] {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn a_constant_row_gives_finite_values() {
        let w = vec![0.25f32; 9];
        for formula in [Formula::Seed, Formula::Biased, Formula::Scaled] {
            let y = forward(&w, 9, &[1.0], formula, 1e-5);
            let (dw, dg) = backward(&w, 9, &[1.0], formula, 1e-5, &[1.0; 9]);
            assert!(
                y.iter().chain(&dw).chain(&dg).all(|v| v.is_finite()),
                "{formula:?}"
            );
        }
    }
}
