//! `BatchNorm2d`: batch normalization with PyTorch's exact semantics.
//!
//! Ioffe & Szegedy, arXiv:1502.03167; the reference is PyTorch's
//! `nn.BatchNorm2d` (momentum 0.1, eps 1e-5, affine, running statistics).
//! burn-nn's `BatchNorm` differs in two ways that matter for weights moved
//! to and from PyTorch: it updates `running_var` with the biased batch
//! variance (PyTorch uses the unbiased one, `n / (n − 1)` times larger), and
//! it names its affine parameters `gamma`/`beta`. This layer keeps PyTorch's
//! update and its state-dict keys (`weight`, `bias`, `running_mean`,
//! `running_var`).

use burn::config::Config;
use burn::module::{Content, DisplaySettings, Module, ModuleDisplay, Param, RunningState};
use burn::nn::Initializer;
use burn::tensor::{Device, Tensor};

use crate::ops::{self, Tail, bias_act};

/// Configuration of a [`BatchNorm2d`].
#[derive(Config, Debug)]
pub struct BatchNorm2dConfig {
    /// Channels.
    pub num_features: usize,
    /// Added to the variance inside the square root.
    #[config(default = 1e-5)]
    pub eps: f64,
    /// Weight of the new batch statistics in the running averages.
    #[config(default = 0.1)]
    pub momentum: f64,
}

impl BatchNorm2dConfig {
    /// Creates the layer: weight 1, bias 0, running mean 0, running variance 1.
    ///
    /// # Panics
    ///
    /// If `num_features` is 0, `eps` is not positive or `momentum` is outside
    /// `[0, 1]` (programmer misuse).
    pub fn init(&self, device: &Device) -> BatchNorm2d {
        assert!(
            self.num_features > 0 && self.eps > 0.0 && (0.0..=1.0).contains(&self.momentum),
            "BatchNorm2d needs num_features > 0, eps > 0 and momentum in [0, 1], got {}, {}, {}",
            self.num_features,
            self.eps,
            self.momentum
        );
        let c = self.num_features;
        BatchNorm2d {
            weight: Initializer::Ones.init([c], device),
            bias: Initializer::Zeros.init([c], device),
            running_mean: RunningState::new(Tensor::zeros([c], device)),
            running_var: RunningState::new(Tensor::ones([c], device)),
            eps: self.eps,
            momentum: self.momentum,
        }
    }
}

/// Batch normalization of a `[batch, channels, H, W]` map.
///
/// In training (the input is on an autodiff device, as in
/// [`Session`](crate::Session)'s steps) each channel is normalized by the
/// mean and biased variance of its `batch × H × W` values, and the running
/// averages move towards the batch mean and the *unbiased* batch variance
/// by `momentum`. Otherwise (evaluation, prediction, a model made `valid()`)
/// the running statistics are used, and the layer is an affine map per
/// channel that [`WsGnAct::fold`](super::WsGnAct::fold) merges into the
/// convolution before it.
///
/// One training batch is one forward call: micro-batching or splitting a
/// batch across devices gives each part its own statistics, so with this
/// layer the batch size is part of the model's behaviour, not only of its
/// speed.
///
/// # Shapes
///
/// - input, output: `[batch, channels, H, W]`
#[derive(Module, Debug)]
#[module(custom_display)]
pub struct BatchNorm2d {
    /// Scale `[channels]` (PyTorch's `weight`).
    pub weight: Param<Tensor<1>>,
    /// Shift `[channels]` (PyTorch's `bias`).
    pub bias: Param<Tensor<1>>,
    /// Running mean `[channels]`.
    pub running_mean: RunningState<Tensor<1>>,
    /// Running (unbiased) variance `[channels]`.
    pub running_var: RunningState<Tensor<1>>,
    /// Added to the variance inside the square root.
    #[module(skip)]
    pub eps: f64,
    /// Weight of the new batch statistics in the running averages.
    #[module(skip)]
    pub momentum: f64,
}

impl ModuleDisplay for BatchNorm2d {
    fn custom_settings(&self) -> Option<DisplaySettings> {
        DisplaySettings::new()
            .with_new_line_after_attribute(false)
            .optional()
    }

    fn custom_content(&self, content: Content) -> Option<Content> {
        let [c] = self.weight.dims();
        content
            .add("num_features", &c)
            .add("eps", &self.eps)
            .add("momentum", &self.momentum)
            .optional()
    }
}

impl BatchNorm2d {
    /// Normalizes with batch statistics (training) or running statistics.
    ///
    /// # Panics
    ///
    /// In training, when a channel's statistics would come from a single
    /// value (`batch × H × W = 1`), as PyTorch refuses it; the trainer checks
    /// this before a step ([`WsResUNetConfig::check_batch`](crate::WsResUNetConfig::check_batch)).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_then(x, Tail::None)
    }

    /// [`forward`](Self::forward), then `tail`: on the CPU one fused pass
    /// in training ([`ops::batch_norm_train`]) and one after the affine map
    /// in evaluation ([`bias_act`]).
    pub(crate) fn forward_then(&self, x: Tensor<4>, tail: Tail) -> Tensor<4> {
        if x.device().is_autodiff() {
            self.forward_train(x, tail)
        } else {
            bias_act(self.forward_eval(x), None, tail)
        }
    }

    fn forward_eval(&self, x: Tensor<4>) -> Tensor<4> {
        let device = x.device();
        burn::tensor::module::batch_norm(
            x,
            self.weight.val(),
            self.bias.val(),
            self.running_mean.value().to_device(&device),
            self.running_var.value().to_device(&device),
            self.eps,
        )
    }

    fn forward_train(&self, x: Tensor<4>, tail: Tail) -> Tensor<4> {
        let [n, c, h, w] = x.dims();
        let count = n * h * w;
        assert!(
            count > 1,
            "BatchNorm2d: expected more than 1 value per channel when training, got input [{n}, {c}, {h}, {w}]"
        );
        let device = x.device();
        let (weight, bias) = (self.weight.val(), self.bias.val());
        let ops::BnTrainOutput {
            output,
            mean: batch_mean,
            variance,
        } = ops::batch_norm_train(x, weight, bias, self.eps, tail);
        let m = self.momentum;
        // PyTorch normalizes with the biased variance but averages the
        // unbiased one into running_var.
        let unbiased = variance
            .detach()
            .mul_scalar(count as f64 / (count - 1) as f64);
        let mean = self.running_mean.value_sync().to_device(&device);
        let var = self.running_var.value_sync().to_device(&device);
        self.running_mean.update(
            mean.mul_scalar(1.0 - m)
                .add(batch_mean.detach().mul_scalar(m))
                .detach(),
        );
        self.running_var
            .update(var.mul_scalar(1.0 - m).add(unbiased.mul_scalar(m)).detach());
        // RunningState keeps an update per thread until the next read
        // (Burn's data-parallel averaging); a training step here is one
        // thread, and reading back now makes the new statistics what a
        // checkpoint or `valid()` sees at once.
        self.running_mean.value_sync();
        self.running_var.value_sync();
        output
    }

    /// The per-channel `(scale, shift)` that evaluation applies:
    /// `y = x · scale + shift` with `scale = weight / sqrt(running_var + eps)`
    /// and `shift = bias − running_mean · scale`.
    pub fn scale_shift(&self) -> (Tensor<1>, Tensor<1>) {
        let scale =
            self.weight.val().detach() / self.running_var.value().add_scalar(self.eps).sqrt();
        let shift = self.bias.val().detach() - self.running_mean.value() * scale.clone();
        (scale, shift)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, TensorData, Tolerance};

    fn values(t: Tensor<1>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn training_uses_batch_statistics_and_updates_unbiased_running_variance() {
        let device = Device::flex().autodiff();
        let bn = BatchNorm2dConfig::new(2).init(&device);
        // Channel 0 holds 1, 2, 3, 4 (mean 2.5, biased var 1.25, unbiased 5/3);
        // channel 1 holds 0, 0, 0, 8.
        let x = Tensor::<4>::from_data(
            TensorData::new(
                vec![1.0f32, 2.0, 3.0, 4.0, 0.0, 0.0, 0.0, 8.0],
                [1, 2, 2, 2],
            ),
            &device,
        );
        let y = bn.forward(x);
        let y0: Vec<f32> = y
            .clone()
            .slice([0..1, 0..1])
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let expected: Vec<f32> = [1.0f32, 2.0, 3.0, 4.0]
            .iter()
            .map(|v| (v - 2.5) / (1.25f32 + 1e-5).sqrt())
            .collect();
        for (a, b) in y0.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-5, "{y0:?} vs {expected:?}");
        }
        let mean = values(bn.running_mean.value());
        let var = values(bn.running_var.value());
        assert!(
            (mean[0] - 0.25).abs() < 1e-6 && (mean[1] - 0.2).abs() < 1e-6,
            "{mean:?}"
        );
        // 0.9 · 1 + 0.1 · unbiased variance (5/3 and 16).
        assert!((var[0] - (0.9 + 0.1 * 5.0 / 3.0)).abs() < 1e-6, "{var:?}");
        assert!((var[1] - (0.9 + 0.1 * 16.0)).abs() < 1e-5, "{var:?}");
    }

    #[test]
    fn evaluation_uses_running_statistics_as_an_affine_map() {
        let device = Device::flex();
        let mut bn = BatchNorm2dConfig::new(3).init(&device);
        bn.running_mean = RunningState::new(Tensor::from_floats([0.5, -1.0, 2.0], &device));
        bn.running_var = RunningState::new(Tensor::from_floats([4.0, 0.25, 1.0], &device));
        bn.weight = Param::from_tensor(Tensor::from_floats([1.5, 0.5, -1.0], &device));
        bn.bias = Param::from_tensor(Tensor::from_floats([0.1, 0.2, 0.3], &device));
        let x = Tensor::<4>::random([2, 3, 4, 5], Distribution::Default, &device);
        let y = bn.forward(x.clone());
        let (scale, shift) = bn.scale_shift();
        let affine = x * scale.reshape([1, 3, 1, 1]) + shift.reshape([1, 3, 1, 1]);
        y.into_data()
            .assert_approx_eq::<f32>(&affine.into_data(), Tolerance::absolute(1e-5));
        // Evaluation leaves the running statistics alone.
        assert_eq!(values(bn.running_mean.value()), vec![0.5, -1.0, 2.0]);
    }

    #[test]
    #[should_panic(expected = "more than 1 value per channel")]
    fn one_value_per_channel_in_training_is_refused() {
        let device = Device::flex().autodiff();
        let bn = BatchNorm2dConfig::new(4).init(&device);
        bn.forward(Tensor::<4>::zeros([1, 4, 1, 1], &device));
    }

    #[test]
    fn shows_its_settings() {
        let bn = BatchNorm2dConfig::new(8).init(&Device::flex());
        let shown = format!("{bn}");
        assert!(
            shown.contains("num_features: 8") && shown.contains("momentum: 0.1"),
            "{shown}"
        );
    }
}
