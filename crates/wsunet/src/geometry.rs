//! Sizes the network and the data pipeline agree on, below both: the
//! smallest input the network takes, and PyTorch's bilinear interpolation
//! taps (used by the resize op and by the augmentation's rescaling).

/// Smallest input height and width: five stride-2 stages.
pub const MIN_INPUT_SIZE: usize = 32;

/// One output coordinate's taps: the two source indices and the weight of
/// the second (PyTorch's `area_pixel_compute_source_index`, clamped at 0).
pub type Tap = (usize, usize, f32);

/// PyTorch's bilinear taps along one axis (`align_corners = False`, no
/// antialiasing): for each output index, the two source indices it mixes and
/// the weight of the second, `(i0, i1, λ)` with `out = (1 − λ)·x[i0] + λ·x[i1]`.
///
/// Source coordinate of output `o`: `max((o + 0.5) · in/out − 0.5, 0)`;
/// `i0 = ⌊src⌋`, `i1 = min(i0 + 1, in − 1)`. Down-scaling therefore samples
/// the two nearest source pixels, as PyTorch does.
///
/// # Panics
///
/// If either length is 0.
pub fn bilinear_taps(in_len: usize, out_len: usize) -> Vec<Tap> {
    assert!(
        in_len > 0 && out_len > 0,
        "cannot resize between lengths {in_len} and {out_len}"
    );
    let scale = in_len as f64 / out_len as f64;
    (0..out_len)
        .map(|o| {
            let src = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(in_len - 1);
            let i1 = (i0 + 1).min(in_len - 1);
            (i0, i1, (src - i0 as f64) as f32)
        })
        .collect()
}
