//! `WsGnAct`: WsConv2d → GroupNorm → SiLU, the seed's basic block.
//!
//! The WS+GN pairing is from Qiao et al. (arXiv:1903.10520): GroupNorm (Wu &
//! He, arXiv:1803.08494) normalizes activations independently of the batch,
//! weight standardization fixes the scale of the kernels, and together they
//! train stably with batches of 1–2.

use burn::config::Config;
use burn::module::{Content, DisplaySettings, Module, ModuleDisplay};
use burn::nn::{GroupNorm, GroupNormConfig};
use burn::tensor::{Device, Tensor};

use super::{Standardization, WsConv2d, WsConv2dConfig, fit_groups};
use crate::ops::{Tail, group_norm};

/// Configuration of a [`WsGnAct`].
#[derive(Config, Debug)]
pub struct WsGnActConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Square kernel size; padding is `kernel_size / 2`.
    #[config(default = 3)]
    pub kernel_size: usize,
    /// Stride.
    #[config(default = 1)]
    pub stride: usize,
    /// Whether SiLU follows the GroupNorm.
    #[config(default = true)]
    pub act: bool,
    /// Starting GroupNorm group count, lowered by [`fit_groups`] until it
    /// divides `out_channels`.
    #[config(default = 32)]
    pub groups: usize,
    /// The convolution's standardization.
    #[config(default = "Standardization::Seed")]
    pub standardization: Standardization,
    /// Eps of the standardization; `None` means its default.
    #[config(default = "None")]
    pub eps: Option<f64>,
}

impl WsGnActConfig {
    /// Creates the block.
    pub fn init(&self, device: &Device) -> WsGnAct {
        let conv = WsConv2dConfig::new(self.in_channels, self.out_channels, self.kernel_size)
            .with_stride(self.stride)
            .with_standardization(self.standardization)
            .with_eps(self.eps)
            .init(device);
        let gn = GroupNormConfig::new(
            fit_groups(self.out_channels, self.groups),
            self.out_channels,
        )
        .init(device);
        WsGnAct {
            conv,
            gn,
            act: self.act,
        }
    }
}

/// WsConv2d (no bias) → GroupNorm (eps 1e-5, affine) → SiLU (when `act`).
///
/// State-dict keys: `conv.weight` (and `conv.gain`), `gn.weight`, `gn.bias`
/// (Burn names the GroupNorm parameters `gamma`/`beta`; the weight I/O maps
/// them).
///
/// # Shapes
///
/// - input: `[batch, in_channels, H, W]`
/// - output: `[batch, out_channels, ⌈H/stride⌉, ⌈W/stride⌉]` (odd kernels)
#[derive(Module, Debug)]
#[module(custom_display)]
pub struct WsGnAct {
    /// The weight-standardized convolution.
    pub conv: WsConv2d,
    /// GroupNorm over the convolution's output.
    pub gn: GroupNorm,
    /// Whether SiLU is applied.
    #[module(skip)]
    pub act: bool,
}

impl ModuleDisplay for WsGnAct {
    fn custom_settings(&self) -> Option<DisplaySettings> {
        DisplaySettings::new().optional()
    }

    /// Its two layers, and whether SiLU follows them.
    fn custom_content(&self, content: Content) -> Option<Content> {
        content
            .add("conv", &self.conv)
            .add("gn", &self.gn)
            .add("act", &self.act)
            .optional()
    }
}

impl WsGnAct {
    /// Applies conv → norm → activation.
    ///
    /// # Shapes
    ///
    /// - input: `[batch, in_channels, H, W]`
    /// - output: `[batch, out_channels, H', W']`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let tail = Tail::silu_if(self.act);
        group_norm(self.conv.forward(x), &self.gn, tail)
    }

    /// conv → norm, then the sum with `residual` and SiLU: the end of a
    /// residual block, one fused pass on the CPU. For a block without its
    /// own activation (`act` false), as [`WsResBlock`](super::WsResBlock)'s
    /// second one.
    ///
    /// # Shapes
    ///
    /// - input: `[batch, in_channels, H, W]`
    /// - residual, output: `[batch, out_channels, H', W']`
    pub fn forward_add_silu(&self, x: Tensor<4>, residual: Tensor<4>) -> Tensor<4> {
        group_norm(self.conv.forward(x), &self.gn, Tail::AddSilu(residual))
    }

    /// The block with its convolution folded (see [`WsConv2d::fold`]).
    pub fn fold(self) -> Self {
        WsGnAct {
            conv: self.conv.fold(),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn shows_its_layers_and_activation() {
        let block = WsGnActConfig::new(4, 8).init(&Device::flex());
        let shown = format!("{block}");
        assert!(shown.starts_with("WsGnAct {"), "{shown}");
        for part in [
            "conv: WsConv2d {ch_in: 4, ch_out: 8",
            "gn: GroupNorm {num_groups: 8",
            "act: true",
        ] {
            assert!(shown.contains(part), "{part} not in {shown}");
        }
    }

    #[test]
    fn fits_groups_and_keeps_padding() {
        let device = Device::flex();
        let block = WsGnActConfig::new(6, 48).with_stride(2).init(&device);
        assert_eq!(block.gn.num_groups, 24);
        assert_eq!(block.conv.padding, 1);
        let x = Tensor::<4>::random([2, 6, 9, 10], Distribution::Default, &device);
        assert_eq!(block.forward(x).dims(), [2, 48, 5, 5]);
    }

    #[test]
    fn act_flag_controls_silu() {
        let device = Device::flex();
        let x = Tensor::<4>::random([1, 4, 8, 8], Distribution::Normal(0.0, 3.0), &device);
        let plain = WsGnActConfig::new(4, 8).with_act(false).init(&device);
        let y = plain.forward(x.clone());
        // GroupNorm output is centred: without the activation it has negatives
        // below SiLU's minimum (≈ −0.2785).
        let min: f32 = y.min().into_scalar();
        assert!(min < -0.3, "min {min}");
        let with_act = WsGnActConfig::new(4, 8).init(&device);
        let min: f32 = with_act.forward(x).min().into_scalar();
        assert!(min >= -0.2785, "min {min}");
    }
}
