//! The optimizer of a training config: AdamW or SGD, with norm parameters,
//! biases and WS gains in a group without weight decay.

use burn::module::ParamGroup;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, ModuleOptimizer, SgdConfig};

use super::config::{OptimizerKind, TrainConfig};

/// The optimizer of the default training settings (AdamW, eps 1e-8,
/// weight decay 1e-4 except on norms, biases and gains).
pub fn default_optimizer() -> ModuleOptimizer {
    optimizer(&TrainConfig::default())
}

/// The optimizer `config` asks for.
pub fn optimizer(config: &TrainConfig) -> ModuleOptimizer {
    let clip = config.grad_clip.map(GradientClippingConfig::Norm);
    // Norm parameters, biases and WS gains are not decayed.
    let no_decay =
        ParamGroup::from_any_regexes(vec![r"\.(bias|gamma|beta|gain)$"]).expect("valid pattern");
    match config.optimizer {
        OptimizerKind::Adamw => {
            let adamw = |wd: f64| {
                AdamWConfig::new()
                    .with_epsilon(1e-8)
                    .with_weight_decay(wd as f32)
            };
            adamw(config.weight_decay)
                .with_grad_clipping(clip.clone())
                .init()
                .with_group(no_decay, adamw(0.0).build(), clip.map(|c| c.init()))
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
