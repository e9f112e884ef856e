//! `Up`: one decoder step of the WSResUNet — bilinear upsample to the skip's
//! size, 1×1 reduce, concatenate the skip, 3×3 refine.

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
    #[config(default = "Norm::Group")]
    pub norm: Norm,
    /// Starting GroupNorm group count.
    #[config(default = 32)]
    pub groups: usize,
    /// The convolutions' standardization.
    #[config(default = "Standardization::Seed")]
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
        let x = self.reduce.forward(resize_bilinear(x, [h, w]));
        self.refine.forward(Tensor::cat(vec![x, skip], 1))
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
}
