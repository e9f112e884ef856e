//! The network's operations, one per file: each holds its CPU kernel on raw
//! `f32` slices, its handwritten backward, its `#[backend_extension]` trait
//! with the Flex and Autodiff impls, and the function the layers call, which
//! runs the kernel for `f32` tensors on the CPU (Flex) and Burn's composed
//! ops on every other device and dtype. Nothing here knows about layers.
//!
//! - [`conv2d`]: convolution (groups 1, dilation 1) — in `conv/`, whose
//!   weight gradients of 1×1 and strided layers use the row dot-product
//!   kernel of `conv/dot_gemm.rs`, and whose direct kernel (`conv/direct.rs`)
//!   also convolves a channel concatenation without writing it
//!   ([`conv2d_cat`]);
//! - [`group_norm()`]: GroupNorm fused with the SiLU and the residual sum
//!   that follow it ([`Tail`]) — in `group_norm.rs`;
//! - [`batch_norm_train()`]: BatchNorm in training fused with the same
//!   tail — in `batch_norm.rs`;
//! - [`bias_act()`]: the same tail after a convolution's bias where no norm
//!   follows (a folded BatchNorm model, no norm) or after BatchNorm in
//!   evaluation — in `bias_act.rs`;
//! - [`standardize()`]: weight standardization of a kernel
//!   ([`Standardization`]) — in `standardize.rs`;
//! - [`resize_bilinear`]: bilinear resizing — in `resize.rs`;
//! - `seg_loss.rs`: cross-entropy and soft Dice (the trainer's losses but
//!   focal) in one pass with the gradient of the logits, used by
//!   `train::SegLoss` on the CPU;
//! - `adamw.rs`: one AdamW update in a single pass (used by the trainer's
//!   optimizer; no autodiff).
//!
//! [`profile`] times every kernel call when asked (`wsunet bench --layers`).
//!
//! The API is these functions; the kernels on raw slices, the backend
//! extension traits and their impls stay inside the crate.

pub(crate) mod adamw;
pub(crate) mod batch_norm;
pub(crate) mod bias_act;
pub(crate) mod conv;
mod flex;
pub(crate) mod group_norm;
pub mod profile;
pub(crate) mod resize;
pub(crate) mod seg_loss;
mod simd;
pub(crate) mod standardize;

/// The convolution and resize kernels on raw `f32` slices, for
/// `benches/kernels.rs` only: not part of the API, and free to change.
#[doc(hidden)]
pub mod kernels {
    pub use super::conv::{ConvGeom, backward_input, backward_weight, forward};
    pub use super::resize::{ResizeGeom, backward as resize_backward, forward as resize_forward};
}

pub use batch_norm::{BnTrainOutput, batch_norm_train};
pub use bias_act::bias_act;
pub use conv::{conv2d, conv2d_cat, conv2d_cat_winograd, conv2d_winograd, winograd_kernel};
pub use flex::runs_here;
pub use group_norm::{Tail, group_norm};
pub use resize::resize_bilinear;
pub use standardize::{Standardization, standardize};

/// `len` deterministic test values in [−1, 1], a different sequence per
/// `seed` (the kernels' unit tests).
#[cfg(test)]
fn test_values(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919 + seed * 104729) % 2001) as f32 / 1000.0 - 1.0)
        .collect()
}

/// What `scripts/cpu-paths.sh` says the (emulated) CPU is:
/// `WSUNET_EXPECT_CPU=avx2` (AVX2 and FMA, no AVX-512: a Haswell) or
/// `baseline` (SSE2 only); unset on a real machine.
#[cfg(test)]
fn expected_cpu() -> Option<String> {
    std::env::var("WSUNET_EXPECT_CPU").ok()
}

/// Whether a kernel test must skip because this CPU lacks the SIMD kernels
/// (`available` false); on a CPU said to have AVX2 and FMA that is a
/// failure, so an emulated run cannot pass without testing the kernel.
#[cfg(test)]
fn skip_without_simd(available: bool, kernel: &str) -> bool {
    if !available {
        assert_ne!(
            expected_cpu().as_deref(),
            Some("avx2"),
            "{kernel}: the AVX2 + FMA kernel is not available on a CPU said to have AVX2 and FMA"
        );
    }
    !available
}

#[cfg(test)]
mod tests {
    /// Under `scripts/cpu-paths.sh`, the emulated CPU reports the features
    /// of the model it emulates (else the runs would test this machine's
    /// paths again).
    #[test]
    fn the_cpu_has_the_features_it_is_said_to_have() {
        #[cfg(target_arch = "x86_64")]
        {
            let (avx2, fma, avx512) = (
                std::is_x86_feature_detected!("avx2"),
                std::is_x86_feature_detected!("fma"),
                std::is_x86_feature_detected!("avx512f"),
            );
            match super::expected_cpu().as_deref() {
                None => {}
                Some("avx2") => assert!(
                    avx2 && fma && !avx512,
                    "expected AVX2 + FMA without AVX-512, found avx2 {avx2} fma {fma} avx512f {avx512}"
                ),
                Some("baseline") => assert!(
                    !avx2 && !fma && !avx512,
                    "expected SSE2 only, found avx2 {avx2} fma {fma} avx512f {avx512}"
                ),
                Some(other) => panic!("WSUNET_EXPECT_CPU={other}: expected avx2 or baseline"),
            }
        }
    }
}
