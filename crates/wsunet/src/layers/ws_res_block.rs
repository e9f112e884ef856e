//! `WsResBlock`: the residual block of the WSResUNet encoder.
//!
//! A ResNet basic block (He et al., arXiv:1512.03385) built from the seed's
//! WS+GN blocks, with SiLU after the residual sum.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::{Norm, Standardization, WsGnAct, WsGnActConfig};

/// Configuration of a [`WsResBlock`].
#[derive(Config, Debug)]
pub struct WsResBlockConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Stride of the first convolution (and of the projection).
    #[config(default = 1)]
    pub stride: usize,
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

impl WsResBlockConfig {
    fn block(&self, in_channels: usize, kernel: usize, stride: usize, act: bool) -> WsGnActConfig {
        WsGnActConfig::new(in_channels, self.out_channels)
            .with_kernel_size(kernel)
            .with_stride(stride)
            .with_act(act)
            .with_norm(self.norm)
            .with_groups(self.groups)
            .with_standardization(self.standardization)
            .with_eps(self.eps)
    }

    /// Creates the block; the projection exists only when the stride is not 1
    /// or the channel count changes.
    pub fn init(&self, device: &Device) -> WsResBlock {
        let needs_proj = self.stride != 1 || self.in_channels != self.out_channels;
        WsResBlock {
            conv1: self
                .block(self.in_channels, 3, self.stride, true)
                .init(device),
            conv2: self.block(self.out_channels, 3, 1, false).init(device),
            proj: needs_proj.then(|| {
                self.block(self.in_channels, 1, self.stride, false)
                    .init(device)
            }),
        }
    }
}

/// `SiLU(conv2(conv1(x)) + shortcut(x))`, where `conv1` = WsGnAct(in, out, 3,
/// stride), `conv2` = WsGnAct(out, out, 3, 1) without activation, and the
/// shortcut is `proj` = WsGnAct(in, out, 1, stride) without activation when the
/// shape changes, else the identity.
///
/// # Shapes
///
/// - input: `[batch, in_channels, H, W]`
/// - output: `[batch, out_channels, ⌈H/stride⌉, ⌈W/stride⌉]`
#[derive(Module, Debug)]
pub struct WsResBlock {
    /// First 3×3 block, carries the stride.
    pub conv1: WsGnAct,
    /// Second 3×3 block, no activation.
    pub conv2: WsGnAct,
    /// 1×1 projection of the shortcut, when the shape changes.
    pub proj: Option<WsGnAct>,
}

impl WsResBlock {
    /// Applies the residual block.
    ///
    /// # Shapes
    ///
    /// - input: `[batch, in_channels, H, W]`
    /// - output: `[batch, out_channels, H', W']`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let shortcut = match &self.proj {
            Some(proj) => proj.forward(x.clone()),
            None => x.clone(),
        };
        let h = self.conv1.forward(x);
        self.conv2.forward_add_silu(h, shortcut)
    }

    /// The block with every convolution folded (see [`WsConv2d::fold`](super::WsConv2d::fold)).
    pub fn fold(self) -> Self {
        WsResBlock {
            conv1: self.conv1.fold(),
            conv2: self.conv2.fold(),
            proj: self.proj.map(WsGnAct::fold),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn projection_only_when_shape_changes() {
        let device = Device::flex();
        assert!(WsResBlockConfig::new(16, 16).init(&device).proj.is_none());
        assert!(WsResBlockConfig::new(8, 16).init(&device).proj.is_some());
        let strided = WsResBlockConfig::new(16, 16).with_stride(2).init(&device);
        assert_eq!(
            strided.proj.as_ref().unwrap().conv.weight.val().dims()[3],
            1
        );
        assert!(!strided.conv2.act && strided.conv1.act);
    }

    #[test]
    fn downsamples_odd_sizes() {
        let device = Device::flex();
        let block = WsResBlockConfig::new(8, 16)
            .with_stride(2)
            .with_groups(4)
            .init(&device);
        let x = Tensor::<4>::random([2, 8, 11, 7], Distribution::Default, &device);
        assert_eq!(block.forward(x).dims(), [2, 16, 6, 4]);
    }
}
