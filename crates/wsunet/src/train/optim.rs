//! The optimizer of a training config: AdamW or SGD, with norm parameters,
//! biases and WS gains in a group without weight decay. AdamW steps run as
//! one fused pass per parameter on the CPU ([`FusedAdamW`]).

use burn::module::ParamGroup;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{
    AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, LearningRate, ModuleOptimizer,
    Optimizer, SgdConfig,
};
use burn::tensor::{DType, Device, Tensor, TensorData};

use super::config::{OptimizerKind, TrainConfig};
use crate::ops::{self, adamw::AdamWStep};

/// Burn's AdamW with its step computed by the fused kernel of
/// `ops/adamw.rs` for `f32` parameters on the CPU: the same arithmetic in
/// one pass instead of about fourteen. The state is Burn's `AdamWState`, so checkpoints do not depend
/// on which of the two ran. Other devices run Burn's `AdamW` unchanged.
#[derive(Clone)]
pub struct FusedAdamW {
    step: AdamWStep,
    burn: AdamW,
}

impl FusedAdamW {
    /// AdamW with betas 0.9 and 0.999 (PyTorch's defaults), `epsilon` and
    /// decoupled `weight_decay`.
    pub fn new(epsilon: f32, weight_decay: f32) -> Self {
        let (beta_1, beta_2) = (0.9, 0.999);
        let burn = AdamWConfig::new()
            .with_beta_1(beta_1)
            .with_beta_2(beta_2)
            .with_epsilon(epsilon)
            .with_weight_decay(weight_decay)
            .build();
        let step = AdamWStep {
            lr: 0.0,
            beta_1,
            beta_2,
            epsilon,
            weight_decay,
            time: 0,
        };
        FusedAdamW { step, burn }
    }
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .try_into_vec::<f32>()
        .expect("FusedAdamW: checked to be f32 before the fused step")
}

impl Optimizer for FusedAdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let device = tensor.device();
        let fused = ops::runs_here(&device, tensor.dtype())
            && grad.dtype() == DType::F32
            && state.as_ref().is_none_or(|s| {
                s.momentum.moment_1.dtype() == DType::F32
                    && s.momentum.moment_2.dtype() == DType::F32
            });
        if !fused {
            return self.burn.step(lr, tensor, grad, state);
        }
        let shape = tensor.shape();
        let n = shape.num_elements();
        let (mut param, grad) = (values(tensor), values(grad));
        let (mut m1, mut m2, time) = match state {
            Some(s) => (
                values(s.momentum.moment_1),
                values(s.momentum.moment_2),
                s.momentum.time + 1,
            ),
            None => (vec![0.0; n], vec![0.0; n], 1),
        };
        let step = AdamWStep {
            lr,
            time,
            ..self.step
        };
        ops::adamw::step(&mut param, &grad, &mut m1, &mut m2, step);
        let tensor =
            |v: Vec<f32>| Tensor::<D>::from_data(TensorData::new(v, shape.clone()), &device);
        let momentum = AdaptiveMomentumState::new(time, tensor(m1), tensor(m2));
        (tensor(param), Some(AdamWState::new(momentum)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        AdamW::to_device(state, device)
    }
}

/// The optimizer of the default training settings (AdamW, eps 1e-8,
/// weight decay 1e-4 except on norms, biases and gains).
pub fn default_optimizer() -> ModuleOptimizer {
    optimizer(&TrainConfig::default())
}

/// The optimizer `config` asks for.
pub fn optimizer(config: &TrainConfig) -> ModuleOptimizer {
    let clip = config.grad_clip.map(GradientClippingConfig::Norm);
    // Norm parameters (GroupNorm's gamma/beta, BatchNorm's bn.weight/bias),
    // biases and WS gains are not decayed.
    let no_decay =
        ParamGroup::from_any_regexes(vec![r"\.(bias|gamma|beta|gain)$", r"\.bn\.weight$"])
            .expect("valid pattern");
    match config.optimizer {
        OptimizerKind::Adamw => {
            let adamw = |wd: f64| FusedAdamW::new(1e-8, wd as f32);
            let mut optim = ModuleOptimizer::from(adamw(config.weight_decay));
            if let Some(clip) = &clip {
                optim = optim.with_grad_clipping(clip.init());
            }
            optim.with_group(no_decay, adamw(0.0), clip.map(|c| c.init()))
        }
        OptimizerKind::Sgd => {
            let momentum = Some(MomentumConfig {
                momentum: config.momentum,
                dampening: 0.0,
                nesterov: config.nesterov,
            });
            SgdConfig::new()
                .with_momentum(momentum.clone())
                .with_weight_decay(Some(WeightDecayConfig {
                    penalty: config.weight_decay as f32,
                }))
                .with_gradient_clipping(clip.clone())
                .init()
                .with_group(
                    no_decay,
                    SgdConfig::new().with_momentum(momentum).build(),
                    clip.map(|c| c.init()),
                )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};

    /// Three steps of the fused AdamW equal Burn's AdamW: parameters, both
    /// moments and the step count, with and without weight decay.
    #[test]
    fn fused_adamw_equals_burns_adamw() {
        let device = Device::flex();
        for wd in [0.0, 0.05] {
            let burn = AdamWConfig::new()
                .with_epsilon(1e-8)
                .with_weight_decay(wd)
                .build();
            let fused = FusedAdamW::new(1e-8, wd);
            let mut p0 = Tensor::<4>::random([3, 5, 7, 2], Distribution::Default, &device);
            let mut p1 = p0.clone();
            let (mut s0, mut s1) = (None, None);
            for step in 0..3 {
                let grad =
                    Tensor::<4>::random([3, 5, 7, 2], Distribution::Normal(0.0, 2.0), &device);
                let lr = 1e-2 / (step + 1) as f64;
                (p0, s0) = burn.step(lr, p0, grad.clone(), s0);
                (p1, s1) = fused.step(lr, p1, grad, s1);
            }
            let tol = Tolerance::<f32>::absolute(1e-7).set_relative(1e-6);
            p1.into_data().assert_approx_eq::<f32>(&p0.into_data(), tol);
            let (m0, m1) = (s0.unwrap().momentum, s1.unwrap().momentum);
            assert_eq!(m1.time, m0.time);
            m1.moment_1
                .into_data()
                .assert_approx_eq::<f32>(&m0.moment_1.into_data(), tol);
            m1.moment_2
                .into_data()
                .assert_approx_eq::<f32>(&m0.moment_2.into_data(), tol);
        }
    }
}
