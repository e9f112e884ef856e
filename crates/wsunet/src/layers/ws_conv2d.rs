//! `WsConv2d`: a 2-D convolution whose kernel is standardized on every forward.
//!
//! Weight Standardization — Qiao et al., *Micro-Batch Training with
//! Batch-Channel Normalization and Weight Standardization*, 2019
//! (arXiv:1903.10520; reference code joe-siyuan-qiao/WeightStandardization,
//! mmcv `ConvWS2d`). The `biased` and `scaled` variants follow timm's
//! `StdConv2d` (Kolesnikov et al., BiT, arXiv:1912.11370) and
//! `ScaledStdConv2d` (Brock et al., NF-Nets, arXiv:2101.08692).

use burn::config::Config;
use burn::module::{Content, DisplaySettings, Module, ModuleDisplay, Param, ParamId};
use burn::nn::Initializer;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor};

use crate::ops::{
    Standardization, conv2d, conv2d_cat, conv2d_cat_winograd, conv2d_winograd, standardize,
    winograd_kernel,
};

/// Configuration of a [`WsConv2d`].
///
/// # Example
///
/// ```
/// use burn::tensor::{Device, Distribution, Tensor};
/// use wsunet::layers::{Standardization, WsConv2dConfig};
///
/// let device = Device::flex();
/// // 3×3, stride 2, timm's StdConv2d formula; padding defaults to k / 2.
/// let conv = WsConv2dConfig::new(3, 16, 3)
///     .with_stride(2)
///     .with_standardization(Standardization::Biased)
///     .init(&device);
/// let x = Tensor::<4>::random([2, 3, 33, 40], Distribution::Default, &device);
/// assert_eq!(conv.forward(x).dims(), [2, 16, 17, 20]);
/// ```
#[derive(Config, Debug)]
pub struct WsConv2dConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Square kernel size.
    pub kernel_size: usize,
    /// Stride.
    #[config(default = 1)]
    pub stride: usize,
    /// Symmetric zero padding; `None` means `kernel_size / 2`.
    #[config(default = "None")]
    pub padding: Option<usize>,
    /// Dilation.
    #[config(default = 1)]
    pub dilation: usize,
    /// Convolution groups.
    #[config(default = 1)]
    pub groups: usize,
    /// Whether the convolution has a bias.
    #[config(default = false)]
    pub bias: bool,
    /// The standardization formula.
    #[config(default = "Standardization::default()")]
    pub standardization: Standardization,
    /// Eps of the standardization; `None` means its default.
    #[config(default = "None")]
    pub eps: Option<f64>,
}

impl WsConv2dConfig {
    /// Creates the layer; the raw weight uses PyTorch's `Conv2d` initialization
    /// (Kaiming-uniform with gain 1/√3), `gain` starts at 1.
    ///
    /// # Panics
    ///
    /// On a zero size or channels not divisible by `groups` (programmer misuse).
    pub fn init(&self, device: &Device) -> WsConv2d {
        assert!(
            self.in_channels > 0 && self.out_channels > 0 && self.kernel_size > 0,
            "WsConv2d needs positive sizes, got in={}, out={}, kernel={}",
            self.in_channels,
            self.out_channels,
            self.kernel_size
        );
        assert!(
            self.groups > 0
                && self.in_channels.is_multiple_of(self.groups)
                && self.out_channels.is_multiple_of(self.groups),
            "WsConv2d channels in={} out={} must be divisible by groups={}",
            self.in_channels,
            self.out_channels,
            self.groups
        );
        let k = self.kernel_size;
        let fan_in = self.in_channels / self.groups * k * k;
        let init = Initializer::KaimingUniform {
            gain: 1.0 / 3f64.sqrt(),
            fan_out_only: false,
        };
        let weight = init.init_with(
            [self.out_channels, self.in_channels / self.groups, k, k],
            Some(fan_in),
            None,
            device,
        );
        let bias = self.bias.then(|| {
            let bound = 1.0 / (fan_in as f64).sqrt();
            Initializer::Uniform {
                min: -bound,
                max: bound,
            }
            .init([self.out_channels], device)
        });
        let gain = (self.standardization == Standardization::Scaled)
            .then(|| Initializer::Ones.init([self.out_channels, 1, 1, 1], device));
        WsConv2d {
            weight,
            bias,
            gain,
            stride: self.stride,
            padding: self.padding.unwrap_or(k / 2),
            dilation: self.dilation,
            groups: self.groups,
            standardization: self.standardization,
            eps: self.eps.unwrap_or(self.standardization.default_eps()),
            folded: false,
            winograd: None,
        }
    }
}

/// A convolution that standardizes each output channel's kernel on every
/// forward pass, then convolves with the standardized kernel.
///
/// The raw `weight` is the trained parameter; gradients flow to it through the
/// standardization. Field names equal the PyTorch twin's state-dict keys
/// (`weight`, `bias`, `gain`), so weights load with no remapping.
///
/// A constant kernel (std 0) gives finite outputs and gradients.
///
/// # Shapes
///
/// - input: `[batch, in_channels, H, W]`
/// - output: `[batch, out_channels, H', W']` with
///   `H' = (H + 2·padding − dilation·(k − 1) − 1) / stride + 1`
#[derive(Module, Debug)]
#[module(custom_display)]
pub struct WsConv2d {
    /// Raw kernel `[out, in/groups, k, k]`.
    pub weight: Param<Tensor<4>>,
    /// Optional bias `[out]`.
    pub bias: Option<Param<Tensor<1>>>,
    /// Learnable per-channel gain `[out, 1, 1, 1]` (`Scaled` only).
    pub gain: Option<Param<Tensor<4>>>,
    /// Stride.
    #[module(skip)]
    pub stride: usize,
    /// Symmetric zero padding.
    #[module(skip)]
    pub padding: usize,
    /// Dilation.
    #[module(skip)]
    pub dilation: usize,
    /// Convolution groups.
    #[module(skip)]
    pub groups: usize,
    /// The standardization formula.
    #[module(skip)]
    pub standardization: Standardization,
    /// Eps of the standardization.
    #[module(skip)]
    pub eps: f64,
    /// Whether `weight` already holds the standardized kernel (see
    /// [`fold`](WsConv2d::fold)); then forward convolves with it as is.
    #[module(skip)]
    pub folded: bool,
    /// A folded 3×3 stride-1 kernel transformed once for Winograd's
    /// F(2×2, 3×3) (see [`prepare`](WsConv2d::prepare)), with the id of the
    /// `weight` it was taken from: a `weight` replaced since is convolved
    /// as is, never with a stale transform.
    #[module(skip)]
    pub(crate) winograd: Option<(ParamId, Tensor<3>)>,
}

impl ModuleDisplay for WsConv2d {
    fn custom_settings(&self) -> Option<DisplaySettings> {
        DisplaySettings::new()
            .with_new_line_after_attribute(false)
            .optional()
    }

    /// As burn-nn's `Conv2d` shows itself, with the standardization.
    fn custom_content(&self, content: Content) -> Option<Content> {
        let [ch_out, group_in, k, _] = self.weight.dims();
        content
            .add("ch_in", &(group_in * self.groups))
            .add("ch_out", &ch_out)
            .add("kernel_size", &k)
            .add("stride", &self.stride)
            .add("padding", &self.padding)
            .add("groups", &self.groups)
            .add("standardization", &self.standardization.to_string())
            .add("eps", &self.eps)
            .add("folded", &self.folded)
            .optional()
    }
}

impl WsConv2d {
    /// Applies the standardized convolution.
    ///
    /// # Shapes
    ///
    /// - input: `[batch, in_channels, H, W]`
    /// - output: `[batch, out_channels, H', W']`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.convolve(x, self.bias_value())
    }

    /// [`forward`](Self::forward) of the channel concatenation `cat([a, b], 1)`,
    /// without writing it on the CPU outside training ([`conv2d_cat`]).
    ///
    /// # Shapes
    ///
    /// - a: `[batch, ca, H, W]`, b: `[batch, in_channels − ca, H, W]`
    /// - output: `[batch, out_channels, H', W']`
    pub fn forward_cat(&self, a: Tensor<4>, b: Tensor<4>) -> Tensor<4> {
        self.convolve_cat(a, b, self.bias_value())
    }

    /// [`forward`](Self::forward) without the bias, for a caller that adds
    /// it in its own pass ([`bias_value`](Self::bias_value)).
    pub(crate) fn forward_unbiased(&self, x: Tensor<4>) -> Tensor<4> {
        self.convolve(x, None)
    }

    /// [`forward_cat`](Self::forward_cat) without the bias.
    pub(crate) fn forward_cat_unbiased(&self, a: Tensor<4>, b: Tensor<4>) -> Tensor<4> {
        self.convolve_cat(a, b, None)
    }

    fn convolve(&self, x: Tensor<4>, bias: Option<Tensor<1>>) -> Tensor<4> {
        match self.transformed() {
            Some(u) => conv2d_winograd(x, self.kernel(), u, bias, self.options()),
            None => conv2d(x, self.kernel(), bias, self.options()),
        }
    }

    fn convolve_cat(&self, a: Tensor<4>, b: Tensor<4>, bias: Option<Tensor<1>>) -> Tensor<4> {
        match self.transformed() {
            Some(u) => conv2d_cat_winograd(a, b, self.kernel(), u, bias, self.options()),
            None => conv2d_cat(a, b, self.kernel(), bias, self.options()),
        }
    }

    /// The Winograd transform of the kernel, if [`prepare`](Self::prepare)
    /// took one of the current `weight`.
    fn transformed(&self) -> Option<&Tensor<3>> {
        let (id, u) = self.winograd.as_ref()?;
        (self.folded && *id == self.weight.id).then_some(u)
    }

    /// Transforms a folded 3×3 stride-1 kernel once for Winograd's F(2×2,
    /// 3×3) ([`winograd_kernel`]), so that inference skips the transform
    /// each call would repeat; other layers (and kernels whose channels are
    /// too few to gain) stay as they are. [`fold`](Self::fold) calls it; call
    /// it again after changing a folded layer's `weight` (until then the
    /// layer convolves the new `weight` without the transform).
    pub fn prepare(self) -> Self {
        let fits =
            self.folded && (self.stride, self.padding, self.dilation, self.groups) == (1, 1, 1, 1);
        let winograd = fits
            .then(|| winograd_kernel(&self.weight.val()))
            .flatten()
            .map(|u| (self.weight.id, u));
        WsConv2d { winograd, ..self }
    }

    /// The kernel convolved with: the standardized weight, or the folded one.
    fn kernel(&self) -> Tensor<4> {
        if self.folded {
            self.weight.val()
        } else {
            self.standardized_weight()
        }
    }

    /// The bias, if any.
    pub(crate) fn bias_value(&self) -> Option<Tensor<1>> {
        self.bias.as_ref().map(|b| b.val())
    }

    /// Folds the standardization into the kernel for inference: `weight`
    /// becomes the standardized kernel (gain included) and forward no longer
    /// recomputes it — a plain convolution with the same outputs. Folding a
    /// folded layer changes nothing. Train and save checkpoints with the
    /// unfolded layer, whose raw weights the optimizer updates.
    pub fn fold(self) -> Self {
        if self.folded {
            return self;
        }
        let standardized = self.standardized_weight().detach();
        WsConv2d {
            weight: burn::module::Param::from_tensor(standardized),
            gain: None,
            folded: true,
            ..self
        }
        .prepare()
    }

    /// The convolution's stride, padding, dilation and groups.
    pub fn options(&self) -> ConvOptions<2> {
        ConvOptions::new(
            [self.stride; 2],
            [self.padding; 2],
            [self.dilation; 2],
            self.groups,
        )
    }

    /// The kernel actually convolved: the raw weight standardized per output
    /// channel (and scaled by `gain` for `Scaled`).
    ///
    /// # Shapes
    ///
    /// - output: `[out, in/groups, k, k]`, the raw weight's shape
    pub fn standardized_weight(&self) -> Tensor<4> {
        let gain = self.gain.as_ref().map(|g| g.val());
        standardize(self.weight.val(), gain, self.standardization, self.eps)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn shows_itself_as_burn_nn_layers_do() {
        let conv = super::WsConv2dConfig::new(4, 8, 3)
            .with_stride(2)
            .init(&burn::tensor::Device::flex());
        assert_eq!(
            format!("{conv}"),
            "WsConv2d {ch_in: 4, ch_out: 8, kernel_size: 3, stride: 2, padding: 1, groups: 1, standardization: seed, eps: 0.00001, folded: false, params: 288}"
        );
    }

    use super::*;
    use burn::tensor::{Distribution, TensorData, Tolerance};

    fn config(standardization: Standardization) -> WsConv2dConfig {
        WsConv2dConfig::new(3, 4, 3).with_standardization(standardization)
    }

    /// A layer with a fixed, non-constant kernel (std ≈ 0.7), so tolerances
    /// do not depend on a random draw.
    fn fixed(standardization: Standardization, device: &Device) -> WsConv2d {
        let mut conv = config(standardization).init(device);
        let values: Vec<f32> = (0..108).map(|i| (i as f32 * 0.7).sin()).collect();
        conv.weight = Param::from_tensor(Tensor::from_data(
            TensorData::new(values, [4, 3, 3, 3]),
            device,
        ));
        conv
    }

    #[test]
    fn standardized_kernels_have_zero_mean_and_unit_std() {
        let device = Device::flex();
        for s in [Standardization::Seed, Standardization::Biased] {
            let w = fixed(s, &device).standardized_weight().reshape([4, 27]);
            let mean = w.clone().mean_dim(1);
            let std = if s == Standardization::Seed {
                w.var(1).sqrt()
            } else {
                w.var_bias(1).sqrt()
            };
            mean.into_data().assert_approx_eq::<f32>(
                &TensorData::zeros::<f32, _>([4, 1]),
                Tolerance::absolute(1e-6),
            );
            // eps shrinks the std by a relative ~1e-5 here.
            std.into_data().assert_approx_eq::<f32>(
                &TensorData::ones::<f32, _>([4, 1]),
                Tolerance::absolute(1e-4),
            );
        }
    }

    #[test]
    fn scaled_kernel_has_gain_over_sqrt_n_std() {
        let device = Device::flex();
        let w = fixed(Standardization::Scaled, &device)
            .standardized_weight()
            .reshape([4, 27]);
        let expected = TensorData::full([4, 1], 1.0 / 27f32.sqrt());
        w.var_bias(1)
            .sqrt()
            .into_data()
            .assert_approx_eq::<f32>(&expected, Tolerance::absolute(1e-5));
    }

    #[test]
    fn output_shape_follows_stride_and_padding() {
        let device = Device::flex();
        let x = Tensor::<4>::random([2, 3, 9, 11], Distribution::Default, &device);
        let y = config(Standardization::Seed)
            .init(&device)
            .forward(x.clone());
        assert_eq!(y.dims(), [2, 4, 9, 11]);
        let y = config(Standardization::Seed)
            .with_stride(2)
            .init(&device)
            .forward(x);
        assert_eq!(y.dims(), [2, 4, 5, 6]);
    }

    #[test]
    fn gain_exists_only_for_scaled() {
        let device = Device::flex();
        assert!(config(Standardization::Seed).init(&device).gain.is_none());
        assert!(config(Standardization::Biased).init(&device).gain.is_none());
        let gain = config(Standardization::Scaled).init(&device).gain.unwrap();
        assert_eq!(gain.val().dims(), [4, 1, 1, 1]);
    }

    #[test]
    fn constant_kernel_gives_finite_output_and_gradients() {
        let device = Device::flex().autodiff();
        for s in Standardization::ALL {
            let mut conv = config(s).init(&device);
            let constant = Tensor::<4>::full([4, 3, 3, 3], 0.37, &device);
            conv.weight = Param::from_tensor(constant);
            let x =
                Tensor::<4>::random([1, 3, 6, 6], Distribution::Default, &device).require_grad();
            let y = conv.forward(x.clone());
            let grads = y.clone().sum().backward();
            let wg = conv.weight.val().grad(&grads).expect("weight gradient");
            let xg = x.grad(&grads).expect("input gradient");
            for (name, data) in [
                ("output", y.into_data()),
                ("weight grad", wg.into_data()),
                ("input grad", xg.into_data()),
            ] {
                let values = data.try_to_vec::<f32>().unwrap();
                assert!(
                    values.iter().all(|v| v.is_finite()),
                    "{s}: {name} not finite: {values:?}"
                );
            }
        }
    }

    #[test]
    fn folding_keeps_outputs_and_skips_standardization() {
        let device = Device::flex();
        let x = Tensor::<4>::random([2, 3, 7, 9], Distribution::Default, &device);
        for s in Standardization::ALL {
            let conv = fixed(s, &device);
            let expected = conv.forward(x.clone()).into_data();
            let folded = conv.fold();
            assert!(folded.folded && folded.gain.is_none());
            folded
                .forward(x.clone())
                .into_data()
                .assert_approx_eq::<f32>(&expected, Tolerance::absolute(1e-6));
            // The folded kernel is used as is: folding again changes nothing.
            let again = folded.clone().fold();
            again
                .weight
                .val()
                .into_data()
                .assert_eq(&folded.weight.val().into_data(), true);
        }
    }

    /// A folded layer wide enough for Winograd keeps its kernel's transform
    /// and convolves with it (one and two inputs); a `weight` replaced after
    /// folding is convolved as is, not through the stale transform.
    #[test]
    fn folded_winograd_layers_equal_the_plain_convolution() {
        let device = Device::flex();
        let conv = WsConv2dConfig::new(64, 64, 3).init(&device);
        let x = Tensor::<4>::random([2, 64, 10, 12], Distribution::Default, &device);
        let expected = conv.forward(x.clone()).into_data();
        let folded = conv.fold();
        assert!(folded.transformed().is_some());
        let tol = Tolerance::absolute(1e-4);
        folded
            .forward(x.clone())
            .into_data()
            .assert_approx_eq::<f32>(&expected, tol);
        let (a, b) = (x.clone().narrow(1, 0, 24), x.clone().narrow(1, 24, 40));
        folded
            .forward_cat(a, b)
            .into_data()
            .assert_approx_eq::<f32>(&expected, tol);
        let replaced = WsConv2d {
            weight: Param::from_tensor(folded.weight.val() * 2.0),
            ..folded.clone()
        };
        assert!(replaced.transformed().is_none());
        let doubled = folded.forward(x.clone()) * 2.0;
        replaced
            .forward(x.clone())
            .into_data()
            .assert_approx_eq::<f32>(&doubled.into_data(), tol);
        assert!(replaced.prepare().transformed().is_some());
        // Too few channels to gain: no transform kept.
        let narrow = WsConv2dConfig::new(16, 16, 3).init(&device).fold();
        assert!(narrow.transformed().is_none());
    }

    #[test]
    fn parses_names() {
        let parse = |name: &str| serde_json::from_value::<Standardization>(name.into());
        for s in Standardization::ALL {
            assert_eq!(parse(s.name()).unwrap(), s);
        }
        assert!(
            parse("unbiased")
                .unwrap_err()
                .to_string()
                .contains("`seed`, `biased`, `scaled`")
        );
    }
}
