//! `WsGnAct`: WsConv2d → GroupNorm → SiLU, the seed's basic block, with
//! BatchNorm or no norm as the variants it is compared against ([`Norm`]).
//!
//! The WS+GN pairing is from Qiao et al. (arXiv:1903.10520): GroupNorm (Wu &
//! He, arXiv:1803.08494) normalizes activations independently of the batch,
//! weight standardization fixes the scale of the kernels, and together they
//! train stably with batches of 1–2.

use burn::config::Config;
use burn::module::{Content, DisplaySettings, Module, ModuleDisplay, Param};
use burn::nn::{GroupNorm, GroupNormConfig};
use burn::tensor::{Device, Tensor};

use super::{
    BatchNorm2d, BatchNorm2dConfig, Norm, Standardization, WsConv2d, WsConv2dConfig,
    resize_bilinear,
};
use crate::ops::{Tail, bias_act, group_norm};

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
    /// Whether SiLU follows the norm.
    #[config(default = true)]
    pub act: bool,
    /// The normalization after the convolution.
    #[config(default = "Norm::default()")]
    pub norm: Norm,
    /// Starting GroupNorm group count, lowered by
    /// [`fit_groups`](super::fit_groups) until it divides `out_channels`
    /// (`Group` only).
    #[config(default = "super::DEFAULT_GROUPS")]
    pub groups: usize,
    /// The convolution's standardization.
    #[config(default = "Standardization::default()")]
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
            .with_bias(self.norm == Norm::None)
            .init(device);
        let gn = self
            .norm
            .group_count(self.out_channels, self.groups)
            .map(|groups| GroupNormConfig::new(groups, self.out_channels).init(device));
        let bn = (self.norm == Norm::Batch)
            .then(|| BatchNorm2dConfig::new(self.out_channels).init(device));
        WsGnAct {
            conv,
            gn,
            bn,
            act: self.act,
            instance: self.norm == Norm::Instance,
        }
    }
}

/// WsConv2d (no bias) → GroupNorm (eps 1e-5, affine) → SiLU (when `act`);
/// with `Norm::Batch` a [`BatchNorm2d`] takes the GroupNorm's place, with
/// `Norm::None` the convolution has a bias and nothing follows it.
///
/// State-dict keys: `conv.weight` (and `conv.gain`, `conv.bias`), `gn.weight`,
/// `gn.bias` (Burn names the GroupNorm parameters `gamma`/`beta`; the weight
/// I/O maps them) or `bn.weight`, `bn.bias`, `bn.running_mean`,
/// `bn.running_var`.
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
    /// GroupNorm over the convolution's output (`Norm::Group`).
    pub gn: Option<GroupNorm>,
    /// BatchNorm over the convolution's output (`Norm::Batch`).
    pub bn: Option<BatchNorm2d>,
    /// Whether SiLU is applied.
    #[module(skip)]
    pub act: bool,
    /// Whether `gn` is an InstanceNorm (one channel per group), which a
    /// GroupNorm over few channels can also be: the config's word for it.
    #[module(skip)]
    pub instance: bool,
}

impl ModuleDisplay for WsGnAct {
    fn custom_settings(&self) -> Option<DisplaySettings> {
        DisplaySettings::new().optional()
    }

    /// Its layers, and whether SiLU follows them.
    fn custom_content(&self, content: Content) -> Option<Content> {
        let mut content = content.add("conv", &self.conv);
        if let Some(gn) = &self.gn {
            content = content.add("gn", gn);
        }
        if let Some(bn) = &self.bn {
            content = content.add("bn", bn);
        }
        content.add("act", &self.act).optional()
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
        let y = self.conv.forward_unbiased(x);
        self.normalize(y, self.conv.bias_value(), Tail::silu_if(self.act))
    }

    /// conv → norm → activation over the channel concatenation
    /// `cat([a, b], 1)`, which the CPU does not write out outside training
    /// ([`WsConv2d::forward_cat`]).
    ///
    /// # Shapes
    ///
    /// - a: `[batch, ca, H, W]`, b: `[batch, in_channels − ca, H, W]`
    /// - output: `[batch, out_channels, H', W']`
    pub fn forward_cat(&self, a: Tensor<4>, b: Tensor<4>) -> Tensor<4> {
        let y = self.conv.forward_cat_unbiased(a, b);
        self.normalize(y, self.conv.bias_value(), Tail::silu_if(self.act))
    }

    /// conv → bilinear resize to `size` → norm → activation: the folded
    /// model's form of `forward(resize_bilinear(x, size))` for a pointwise
    /// convolution (see [`Up::forward`](super::Up::forward)).
    ///
    /// # Shapes
    ///
    /// - input: `[batch, in_channels, h, w]`
    /// - output: `[batch, out_channels, size[0], size[1]]`
    pub(super) fn forward_resized(&self, x: Tensor<4>, size: [usize; 2]) -> Tensor<4> {
        let y = resize_bilinear(self.conv.forward(x), size);
        self.normalize(y, None, Tail::silu_if(self.act))
    }

    /// The convolution's `bias` (when the caller left it out of `y`), the
    /// norm, then `tail`: on the CPU the tail is fused into GroupNorm
    /// ([`group_norm`]), into BatchNorm
    /// ([`BatchNorm2d::forward_then`](super::BatchNorm2d)), or into the
    /// bias where no norm follows ([`bias_act`]: a folded BatchNorm model).
    fn normalize(&self, y: Tensor<4>, bias: Option<Tensor<1>>, tail: Tail) -> Tensor<4> {
        let biased = |y: Tensor<4>| match bias.clone() {
            Some(b) => bias_act(y, Some(b), Tail::None),
            None => y,
        };
        match (&self.gn, &self.bn) {
            (Some(gn), _) => group_norm(biased(y), gn, tail),
            (None, Some(bn)) => bn.forward_then(biased(y), tail),
            (None, None) => bias_act(y, bias, tail),
        }
    }

    /// Which normalization follows the convolution.
    pub fn norm(&self) -> Norm {
        match (&self.gn, &self.bn) {
            (Some(_), _) if self.instance => Norm::Instance,
            (Some(_), _) => Norm::Group,
            (None, Some(_)) => Norm::Batch,
            (None, None) => Norm::None,
        }
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
        let y = self.conv.forward_unbiased(x);
        self.normalize(y, self.conv.bias_value(), Tail::AddSilu(residual))
    }

    /// The block prepared for inference: its convolution folded (see
    /// [`WsConv2d::fold`]) and a BatchNorm merged into it — the kernel scaled
    /// by `weight / sqrt(running_var + eps)` per output channel, the shift
    /// becoming the convolution's bias — so that no norm is left. GroupNorm
    /// depends on each input and stays.
    pub fn fold(self) -> Self {
        let conv = self.conv.fold();
        let Some(bn) = self.bn else {
            return WsGnAct { conv, ..self };
        };
        let (scale, shift) = bn.scale_shift();
        let [out] = scale.dims();
        let weight = conv.weight.val() * scale.clone().reshape([out, 1, 1, 1]);
        let bias = match &conv.bias {
            Some(b) => b.val() * scale + shift,
            None => shift,
        };
        WsGnAct {
            conv: WsConv2d {
                weight: Param::from_tensor(weight.detach()),
                bias: Some(Param::from_tensor(bias.detach())),
                ..conv
            }
            .prepare(),
            gn: None,
            bn: None,
            act: self.act,
            instance: false,
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
        assert_eq!(block.gn.as_ref().unwrap().num_groups, 24);
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

    #[test]
    fn each_norm_builds_its_layers_and_conv_bias() {
        let device = Device::flex();
        for norm in Norm::ALL {
            let block = WsGnActConfig::new(4, 8).with_norm(norm).init(&device);
            assert_eq!(block.norm(), norm);
            assert_eq!(block.conv.bias.is_some(), norm == Norm::None, "{norm}");
            let x = Tensor::<4>::random([2, 4, 6, 5], Distribution::Default, &device);
            assert_eq!(block.forward(x).dims(), [2, 8, 6, 5]);
        }
    }

    #[test]
    fn folding_merges_batch_norm_into_the_convolution() {
        use burn::module::RunningState;
        let device = Device::flex();
        let x = Tensor::<4>::random([2, 4, 7, 6], Distribution::Normal(0.0, 2.0), &device);
        for (norm, act) in [
            (Norm::Batch, true),
            (Norm::Batch, false),
            (Norm::None, true),
        ] {
            let mut block = WsGnActConfig::new(4, 8)
                .with_norm(norm)
                .with_act(act)
                .init(&device);
            if let Some(bn) = &mut block.bn {
                let stat = |d: Distribution| Tensor::<1>::random([8], d, &device);
                bn.running_mean = RunningState::new(stat(Distribution::Normal(0.0, 1.0)));
                bn.running_var = RunningState::new(stat(Distribution::Uniform(0.2, 3.0)));
                bn.weight = Param::from_tensor(stat(Distribution::Uniform(0.5, 1.5)));
                bn.bias = Param::from_tensor(stat(Distribution::Normal(0.0, 0.5)));
            }
            let expected = block.forward(x.clone());
            let folded = block.fold();
            assert!(folded.bn.is_none() && folded.gn.is_none() && folded.conv.folded);
            assert_eq!(folded.norm(), Norm::None);
            folded
                .forward(x.clone())
                .into_data()
                .assert_approx_eq::<f32>(
                    &expected.into_data(),
                    burn::tensor::Tolerance::absolute(1e-4),
                );
        }
    }
}
