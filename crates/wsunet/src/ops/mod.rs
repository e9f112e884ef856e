//! The network's operations, one per file: each holds its CPU kernel on raw
//! `f32` slices, its handwritten backward, its `#[backend_extension]` trait
//! with the Flex and Autodiff impls, and the function the layers call, which
//! runs the kernel for `f32` tensors on the CPU (Flex) and Burn's composed
//! ops on every other device and dtype. Nothing here knows about layers.
//!
//! - [`conv2d`]: convolution (groups 1, dilation 1) — in `conv.rs`, whose
//!   weight gradients of 1×1 and strided layers use the row dot-product
//!   kernel of `dot_gemm.rs`, and whose direct kernel (`direct_conv.rs`)
//!   also convolves a channel concatenation without writing it
//!   ([`conv2d_cat`]);
//! - [`group_norm()`]: GroupNorm fused with the SiLU and the residual sum
//!   that follow it ([`Tail`]) — in `group_norm.rs`;
//! - [`standardize()`]: weight standardization of a kernel
//!   ([`Standardization`]) — in `standardize.rs`;
//! - [`resize_bilinear`]: bilinear resizing — in `resize.rs`;
//! - `seg_loss.rs`: cross-entropy and soft Dice (the trainer's losses but
//!   focal) in one pass with the gradient of the logits, used by
//!   `train::SegLoss` on the CPU;
//! - `adamw.rs`: one AdamW update in a single pass (used by the trainer's
//!   optimizer; no autodiff).
//!
//! The API is these functions; the kernels on raw slices, the backend
//! extension traits and their impls stay inside the crate.

pub(crate) mod adamw;
pub(crate) mod conv;
mod direct_conv;
mod dot_gemm;
mod flex;
pub(crate) mod group_norm;
pub(crate) mod resize;
pub(crate) mod seg_loss;
mod simd;
pub(crate) mod standardize;

/// The convolution kernels on raw `f32` slices, for `benches/kernels.rs`
/// only: not part of the API, and free to change.
#[doc(hidden)]
pub mod kernels {
    pub use super::conv::{ConvGeom, backward_input, backward_weight, forward};
}

pub use conv::{conv2d, conv2d_cat};
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
