//! Timing shared by the benches.

use std::time::Instant;

/// Median wall time of `rounds` calls of `f` in milliseconds, after one
/// untimed call.
pub fn median_ms(rounds: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut v: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
