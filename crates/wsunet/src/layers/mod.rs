//! The layers of WSResUNet, one per file: weight-standardized convolution,
//! the WS+GN+SiLU block, the residual block, the decoder step, the bilinear
//! resize they share, and the GroupNorm group rule.

mod groups;
mod resize;
mod up;
mod ws_conv2d;
mod ws_gn_act;
mod ws_res_block;

pub use groups::fit_groups;
pub use resize::{bilinear_taps, interpolation_matrix, resize_bilinear};
pub use up::{Up, UpConfig};
pub use ws_conv2d::{Standardization, WsConv2d, WsConv2dConfig};
pub use ws_gn_act::{WsGnAct, WsGnActConfig};
pub use ws_res_block::{WsResBlock, WsResBlockConfig};
