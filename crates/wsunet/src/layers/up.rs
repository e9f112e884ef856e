//! `Up`: one decoder step of the WSResUNet — bilinear upsample to the skip's
//! size, 1×1 reduce, concatenate the skip, 3×3 refine. Folded for inference,
//! it reduces before upsampling (the two commute) and, on the CPU, convolves
//! the concatenation without writing it.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::{Norm, Standardization, WsGnAct, WsGnActConfig, resize_bilinear};

/// Configuration of an [`Up`] step.
#[derive(Config, Debug)]
pub struct UpConfig {
    /// Channels of the incoming (coarser) feature map.
    pub in_channels: usize,
    /// Channels of the skip connection.
    pub skip_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// The normalization after each convolution.
    #[config(default = "Norm::default()")]
    pub norm: Norm,
    /// Starting GroupNorm group count.
    #[config(default = "super::DEFAULT_GROUPS")]
    pub groups: usize,
    /// The convolutions' standardization.
    #[config(default = "Standardization::default()")]
    pub standardization: Standardization,
    /// Eps of the standardization; `None` means its default.
    #[config(default = "None")]
    pub eps: Option<f64>,
}

impl UpConfig {
    /// Creates the decoder step.
    pub fn init(&self, device: &Device) -> Up {
        let block = |in_channels, kernel| {
            WsGnActConfig::new(in_channels, self.out_channels)
                .with_kernel_size(kernel)
                .with_norm(self.norm)
                .with_groups(self.groups)
                .with_standardization(self.standardization)
                .with_eps(self.eps)
                .init(device)
        };
        Up {
            reduce: block(self.in_channels, 1),
            refine: block(self.out_channels + self.skip_channels, 3),
        }
    }
}

/// `refine(cat[reduce(resize(x, skip's H×W)), skip])` with bilinear resizing
/// (`align_corners = false`), `reduce` = WsGnAct(in, out, 1) and `refine` =
/// WsGnAct(out + skip, out, 3). Resizing to the skip's exact size makes any
/// input size work, odd ones included.
///
/// # Shapes
///
/// - x: `[batch, in_channels, h, w]`
/// - skip: `[batch, skip_channels, H, W]`
/// - output: `[batch, out_channels, H, W]`
#[derive(Module, Debug)]
pub struct Up {
    /// 1×1 channel reduction after upsampling.
    pub reduce: WsGnAct,
    /// 3×3 block over the concatenation with the skip.
    pub refine: WsGnAct,
}

impl Up {
    /// Applies the decoder step.
    ///
    /// # Shapes
    ///
    /// - x: `[batch, in_channels, h, w]`
    /// - skip: `[batch, skip_channels, H, W]`
    /// - output: `[batch, out_channels, H, W]`
    pub fn forward(&self, x: Tensor<4>, skip: Tensor<4>) -> Tensor<4> {
        let [_, _, h, w] = skip.dims();
        let x = if self.reduce_first() {
            self.reduce.forward_resized(x, [h, w])
        } else {
            self.reduce.forward(resize_bilinear(x, [h, w]))
        };
        self.refine.forward_cat(x, skip)
    }

    /// Whether forward convolves before upsampling: in a folded (inference)
    /// step whose reduction is pointwise. A 1×1 convolution mixes the
    /// channels of each pixel and bilinear resizing the pixels of each
    /// channel with weights that sum to 1, so the two commute, bias
    /// included; before the upsampling the convolution runs on a quarter of
    /// the pixels, and the resize moves `out_channels` planes instead of
    /// `in_channels`. Equal up to rounding (the test below); training keeps
    /// the seed's order, the one its gradients are checked in.
    pub(crate) fn reduce_first(&self) -> bool {
        let conv = &self.reduce.conv;
        let [_, _, kh, kw] = conv.weight.dims();
        conv.folded && [kh, kw] == [1, 1] && conv.stride == 1 && conv.padding == 0
    }

    /// The step with both convolutions folded (see [`WsConv2d::fold`](super::WsConv2d::fold)).
    pub fn fold(self) -> Self {
        Up {
            reduce: self.reduce.fold(),
            refine: self.refine.fold(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn output_takes_the_skip_size() {
        let device = Device::flex();
        let up = UpConfig::new(16, 8, 8).with_groups(4).init(&device);
        let x = Tensor::<4>::random([2, 16, 5, 6], Distribution::Default, &device);
        let skip = Tensor::<4>::random([2, 8, 11, 13], Distribution::Default, &device);
        assert_eq!(up.forward(x, skip).dims(), [2, 8, 11, 13]);
        assert_eq!(up.refine.conv.weight.val().dims(), [8, 16, 3, 3]);
    }

    /// The folded step convolves before upsampling (`reduce_first`); its
    /// output is the unfolded step's, for GroupNorm and for a BatchNorm
    /// merged into a biased convolution, at an odd scale factor.
    #[test]
    fn folding_reduces_before_upsampling_with_the_same_output() {
        let device = Device::flex();
        for norm in [Norm::Group, Norm::Batch] {
            let up = UpConfig::new(16, 8, 8)
                .with_groups(4)
                .with_norm(norm)
                .init(&device);
            let x = Tensor::<4>::random([2, 16, 5, 6], Distribution::Normal(0.0, 1.0), &device);
            let skip = Tensor::<4>::random([2, 8, 11, 13], Distribution::Normal(0.0, 1.0), &device);
            let plain = up.forward(x.clone(), skip.clone());
            let folded = up.fold();
            assert!(folded.reduce_first(), "{norm:?}");
            let diff: f32 = (folded.forward(x, skip) - plain).abs().max().into_scalar();
            assert!(diff < 1e-4, "{norm:?}: max difference {diff}");
        }
    }
}
