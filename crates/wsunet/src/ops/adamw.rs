//! One AdamW update of a parameter tensor in a single pass over its values
//! (Loshchilov & Hutter, arXiv:1711.05101), with the arithmetic of Burn's
//! `AdamW` (burn-optim 0.22, `adamw.rs`) in the same order and precision.
//!
//! Burn composes the update from about fourteen tensor ops, each a pass over
//! the parameter with a fresh allocation; for an 11 M parameter network that
//! is several hundred megabytes of memory traffic per step.

use rayon::prelude::*;

use super::profile;
use super::simd::wide;

/// Values per parallel task.
const CHUNK: usize = 1 << 14;

/// The scalars of one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWStep {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta_1: f32,
    /// Second-moment decay.
    pub beta_2: f32,
    /// Added to the root of the second moment.
    pub epsilon: f32,
    /// Decoupled weight decay.
    pub weight_decay: f32,
    /// Step count including this one (1 on the first step).
    pub time: usize,
}

/// One chunk of a parameter, its gradient and its moments.
struct Chunk<'a> {
    param: &'a mut [f32],
    grad: &'a [f32],
    m1: &'a mut [f32],
    m2: &'a mut [f32],
    step: AdamWStep,
}

#[inline(always)]
fn update(c: Chunk<'_>) {
    let Chunk {
        param,
        grad,
        m1,
        m2,
        step: s,
    } = c;
    let (f1, f2) = (1.0 - s.beta_1, 1.0 - s.beta_2);
    let time = s.time as i32;
    let (c1, c2) = (1f32 - s.beta_1.powi(time), 1f32 - s.beta_2.powi(time));
    let decay_rate = s.lr * s.weight_decay as f64;
    let keep = (1.0 - decay_rate) as f32;
    let lr = s.lr as f32;
    let (b1, b2, eps) = (s.beta_1, s.beta_2, s.epsilon);
    for (((p, &g), m1), m2) in param.iter_mut().zip(grad).zip(m1).zip(m2) {
        // On the first step the moments are zero, and `0·β + x` is exactly
        // Burn's `x`: one formula serves both.
        let (a, b) = (*m1 * b1 + g * f1, *m2 * b2 + (g * g) * f2);
        *m1 = a;
        *m2 = b;
        let delta = (a / c1) / ((b / c2).sqrt() + eps);
        let decayed = if decay_rate == 0.0 { *p } else { *p * keep };
        *p = decayed - delta * lr;
    }
}

/// Updates `param`, `m1` and `m2` in place (the moments start at zero).
pub fn step(param: &mut [f32], grad: &[f32], m1: &mut [f32], m2: &mut [f32], s: AdamWStep) {
    let n = param.len();
    assert!(
        grad.len() == n && m1.len() == n && m2.len() == n,
        "adamw: parameter, gradient and moments differ in size"
    );
    // Reads the parameter, its gradient and both moments, writes three.
    let work = || ("all parameters".into(), 0.0, profile::f32_bytes(7 * n));
    profile::timed("AdamW update", work, || {
        param
            .par_chunks_mut(CHUNK)
            .zip(grad.par_chunks(CHUNK))
            .zip(m1.par_chunks_mut(CHUNK))
            .zip(m2.par_chunks_mut(CHUNK))
            .for_each(|(((param, grad), m1), m2)| {
                let chunk = Chunk {
                    param,
                    grad,
                    m1,
                    m2,
                    step: s,
                };
                wide!(update(chunk: Chunk<'_>) -> ())
            })
    });
}
