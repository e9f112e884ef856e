//! The layers of WSResUNet, one per file: weight-standardized convolution,
//! the WS+GN+SiLU block (and its norm variants, with PyTorch's BatchNorm), the residual block, the decoder step and the
//! GroupNorm group rule; the bilinear resize they share is an op
//! ([`resize_bilinear`]).

mod batch_norm;
mod groups;
mod norm;
mod up;
mod ws_conv2d;
mod ws_gn_act;
mod ws_res_block;

pub use crate::ops::{Standardization, resize_bilinear};
pub use batch_norm::{BatchNorm2d, BatchNorm2dConfig};
pub use groups::{DEFAULT_GROUPS, fit_groups};
pub use norm::Norm;
pub use up::{Up, UpConfig};
pub use ws_conv2d::{WsConv2d, WsConv2dConfig};
pub use ws_gn_act::{WsGnAct, WsGnActConfig};
pub use ws_res_block::{WsResBlock, WsResBlockConfig};
