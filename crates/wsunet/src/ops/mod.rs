//! The network's operations, one per file: each holds its CPU kernel on raw
//! `f32` slices, its handwritten backward, its `#[backend_extension]` trait
//! with the Flex and Autodiff impls, and the function the layers call, which
//! runs the kernel for `f32` tensors on the CPU (Flex) and Burn's composed
//! ops on every other device and dtype. Nothing here knows about layers.
//!
//! - [`conv2d`]: convolution (groups 1, dilation 1) — in [`conv`];
//! - [`group_norm()`]: GroupNorm fused with the SiLU and the residual sum
//!   that follow it ([`Tail`]) — in [`mod@group_norm`];
//! - [`standardize()`]: weight standardization of a kernel
//!   ([`Standardization`]) — in [`mod@standardize`];
//! - [`resize_bilinear`]: bilinear resizing — in [`resize`];
//! - [`adamw`]: one AdamW update in a single pass (used by the trainer's
//!   optimizer; no autodiff).

pub mod adamw;
pub mod conv;
mod flex;
pub mod group_norm;
pub mod resize;
mod simd;
pub mod standardize;

pub use conv::conv2d;
pub use flex::runs_here;
pub use group_norm::{Tail, group_norm};
pub use resize::resize_bilinear;
pub use standardize::{Standardization, standardize};
