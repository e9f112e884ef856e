//! Parity with the PyTorch twin: every layer and a small full model, for all
//! three standardizations, against golden fixtures written by
//! `python/make_fixtures.py` (reference computed in float64).
//!
//! Forward outputs must agree within 1e-5 and input/weight gradients within
//! 1e-4, as max |a − b| / max |b| per tensor. The device is
//! `WSUNET_TEST_DEVICE` (default cpu; see `common::test_device`).

mod common;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use common::{Fixture, param_grads, rel_error, running_stats, test_device, worst};
use std::collections::BTreeMap;
use wsunet::layers::{
    Norm, Standardization, Up, UpConfig, WsConv2d, WsConv2dConfig, WsGnAct, WsGnActConfig,
    WsResBlock, WsResBlockConfig, resize_bilinear,
};
use wsunet::weights::load_safetensors;
use wsunet::{WsResUNet, WsResUNetConfig};

const FORWARD_TOL: f64 = 1e-5;
const GRAD_TOL: f64 = 1e-4;

/// A layer built from a fixture's config, with the fixture's weights loaded.
// Built once per fixture case; the size difference between variants is irrelevant.
#[allow(clippy::large_enum_variant)]
enum Layer {
    Conv(WsConv2d),
    GnAct(WsGnAct),
    Res(WsResBlock),
    Up(Up),
    Model(WsResUNet),
    Resize([usize; 2]),
}

impl Layer {
    fn build(case: &str, f: &Fixture, device: &Device) -> Layer {
        let std: Standardization = match f.config.get("standardization") {
            Some(name) => serde_json::from_value(name.clone()).unwrap(),
            None => Standardization::default(),
        };
        let norm: Norm = match f.config.get("norm") {
            Some(name) => serde_json::from_value(name.clone()).unwrap(),
            None => Norm::default(),
        };
        let mut layer = match f.str("kind").as_str() {
            "ws_conv2d" => Layer::Conv(
                WsConv2dConfig::new(
                    f.usize("in_channels"),
                    f.usize("out_channels"),
                    f.usize("kernel_size"),
                )
                .with_stride(f.usize("stride"))
                .with_bias(f.config["bias"].as_bool().unwrap())
                .with_standardization(std)
                .init(device),
            ),
            "ws_gn_act" => Layer::GnAct(
                WsGnActConfig::new(f.usize("in_channels"), f.usize("out_channels"))
                    .with_kernel_size(f.usize("kernel_size"))
                    .with_stride(f.usize("stride"))
                    .with_act(f.config["act"].as_bool().unwrap())
                    .with_groups(f.usize("groups"))
                    .with_standardization(std)
                    .with_norm(norm)
                    .init(device),
            ),
            "ws_res_block" => Layer::Res(
                WsResBlockConfig::new(f.usize("in_channels"), f.usize("out_channels"))
                    .with_stride(f.usize("stride"))
                    .with_groups(f.usize("groups"))
                    .with_standardization(std)
                    .init(device),
            ),
            "up" => Layer::Up(
                UpConfig::new(
                    f.usize("in_channels"),
                    f.usize("skip_channels"),
                    f.usize("out_channels"),
                )
                .with_groups(f.usize("groups"))
                .with_standardization(std)
                .init(device),
            ),
            "model" => {
                let mut config = f.config.clone();
                config.as_object_mut().unwrap().remove("kind");
                let config: WsResUNetConfig = serde_json::from_value(config).unwrap();
                Layer::Model(config.init(device).unwrap())
            }
            "resize" => {
                let size = &f.config["size"];
                Layer::Resize([
                    size[0].as_u64().unwrap() as usize,
                    size[1].as_u64().unwrap() as usize,
                ])
            }
            other => panic!("unknown kind {other}"),
        };
        let path = Fixture::weights_path(case);
        let loaded = match &mut layer {
            Layer::Conv(m) => load_safetensors(m, &path),
            Layer::GnAct(m) => load_safetensors(m, &path),
            Layer::Res(m) => load_safetensors(m, &path),
            Layer::Up(m) => load_safetensors(m, &path),
            Layer::Model(m) => load_safetensors(m, &path),
            Layer::Resize(_) => Ok(()),
        };
        loaded.unwrap_or_else(|e| panic!("{case}: {e}"));
        layer
    }

    fn forward(&self, x: Tensor<4>, skip: Option<Tensor<4>>) -> Tensor<4> {
        match self {
            Layer::Conv(m) => m.forward(x),
            Layer::GnAct(m) => m.forward(x),
            Layer::Res(m) => m.forward(x),
            Layer::Up(m) => m.forward(x, skip.expect("skip input")),
            Layer::Model(m) => m.forward(x),
            Layer::Resize(size) => resize_bilinear(x, *size),
        }
    }

    fn param_grads(
        &self,
        grads: &burn::tensor::Gradients,
    ) -> BTreeMap<String, burn::tensor::TensorData> {
        match self {
            Layer::Conv(m) => param_grads(m, grads),
            Layer::GnAct(m) => param_grads(m, grads),
            Layer::Res(m) => param_grads(m, grads),
            Layer::Up(m) => param_grads(m, grads),
            Layer::Model(m) => param_grads(m, grads),
            Layer::Resize(_) => BTreeMap::new(),
        }
    }

    /// Trainable parameters (Burn's count includes BatchNorm's running
    /// statistics; they are taken off).
    fn num_params(&self) -> usize {
        let running = self
            .running_stats()
            .values()
            .map(|d| d.num_elements())
            .sum::<usize>();
        match self {
            Layer::Conv(m) => m.num_params(),
            Layer::GnAct(m) => m.num_params(),
            Layer::Res(m) => m.num_params(),
            Layer::Up(m) => m.num_params(),
            Layer::Model(m) => m.num_params(),
            Layer::Resize(_) => 0,
        }
        .saturating_sub(running)
    }

    fn running_stats(&self) -> BTreeMap<String, burn::tensor::TensorData> {
        match self {
            Layer::GnAct(m) => running_stats(m),
            Layer::Model(m) => running_stats(m),
            _ => BTreeMap::new(),
        }
    }

    /// The layer without autodiff: BatchNorm in evaluation mode.
    fn valid(&self) -> Layer {
        match self {
            Layer::GnAct(m) => Layer::GnAct(m.valid()),
            Layer::Model(m) => Layer::Model(m.valid()),
            _ => panic!("valid() is for the BatchNorm cases"),
        }
    }
}

/// The largest forward and gradient errors of one case.
struct Errors {
    forward: f64,
    grad: f64,
    worst_grad: String,
}

/// Runs one fixture case: forward, loss = Σ output · grad_output, backward,
/// and compares output, input gradients and every parameter gradient.
fn check(case: &str) -> Errors {
    let device = test_device().autodiff();
    let f = Fixture::read(case);
    let layer = Layer::build(case, &f, &device);
    let x = f.tensor("input", &device).require_grad();
    let skip = f
        .tensors
        .contains_key("skip")
        .then(|| f.tensor("skip", &device).require_grad());
    let out = layer.forward(x.clone(), skip.clone());
    let forward = rel_error(&out.to_data(), &f.get("output"));

    let grads = (out * f.tensor("grad_output", &device)).sum().backward();
    let mut grad_errors = vec![(
        "input".to_string(),
        rel_error(&x.grad(&grads).unwrap().into_data(), &f.get("grad.input")),
    )];
    if let Some(skip) = skip {
        grad_errors.push((
            "skip".into(),
            rel_error(&skip.grad(&grads).unwrap().into_data(), &f.get("grad.skip")),
        ));
    }
    let params = layer.param_grads(&grads);
    let expected_params = f
        .tensors
        .keys()
        .filter(|k| k.starts_with("grad.") && *k != "grad.input" && *k != "grad.skip")
        .count();
    assert_eq!(
        params.len(),
        expected_params,
        "{case}: parameter count differs from the fixture"
    );
    assert_eq!(
        params.values().map(|d| d.num_elements()).sum::<usize>(),
        layer.num_params(),
        "{case}: gradients do not cover every parameter"
    );
    for (name, grad) in params {
        grad_errors.push((
            name.clone(),
            rel_error(&grad, &f.get(&format!("grad.{name}"))),
        ));
    }
    let (worst_grad, grad) = grad_errors.into_iter().fold(
        (String::new(), 0.0),
        |(n, m), (name, e)| if e > m { (name, e) } else { (n, m) },
    );
    println!("{case:32} forward {forward:.2e}  grad {grad:.2e} ({worst_grad})");
    Errors {
        forward,
        grad,
        worst_grad,
    }
}

fn check_all(cases: &[&str]) {
    check_all_within(cases, FORWARD_TOL)
}

fn check_all_within(cases: &[&str], forward_tol: f64) {
    let mut failures = Vec::new();
    for case in cases {
        let e = check(case);
        if e.forward > forward_tol {
            failures.push(format!(
                "{case}: forward error {:.3e} > {forward_tol:e}",
                e.forward
            ));
        }
        if e.grad > GRAD_TOL {
            failures.push(format!(
                "{case}: gradient error {:.3e} > {GRAD_TOL:e} in {}",
                e.grad, e.worst_grad
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn ws_conv2d_matches_pytorch() {
    check_all(&[
        "ws_conv2d_seed",
        "ws_conv2d_biased",
        "ws_conv2d_scaled",
        "ws_conv2d_seed_k7s2",
        "ws_conv2d_scaled_k1s2_bias",
    ]);
}

#[test]
fn ws_gn_act_matches_pytorch() {
    check_all(&["ws_gn_act_seed", "ws_gn_act_biased", "ws_gn_act_scaled"]);
}

#[test]
fn ws_res_block_matches_pytorch() {
    check_all(&[
        "ws_res_block_seed",
        "ws_res_block_biased",
        "ws_res_block_scaled",
        "ws_res_block_seed_identity",
    ]);
}

#[test]
fn up_matches_pytorch() {
    check_all(&["up_seed", "up_biased", "up_scaled"]);
}

#[test]
fn resize_matches_pytorch_bilinear_without_align_corners() {
    check_all(&[
        "resize_up",
        "resize_down",
        "resize_mixed",
        "resize_to_one",
        "resize_from_one",
        "resize_large_ratio",
    ]);
}

#[test]
fn model_matches_pytorch() {
    check_all(&["model_seed", "model_biased", "model_scaled"]);
}

/// The variants the study compares: plain GroupNorm, WS+BN, plain BN,
/// WS without a norm and WS+InstanceNorm (against PyTorch's InstanceNorm2d).
/// BatchNorm in training mode (batch statistics).
#[test]
fn norm_variants_match_pytorch() {
    check_all(&[
        "model_gn",
        "model_ws_bn",
        "model_bn",
        "model_ws_in",
        "ws_gn_act_batch_tiny",
    ]);
    // Without a norm, unit-variance WS kernels grow activations by about
    // √fan-in per layer (the output reaches ~1e16): float32 rounding
    // compounds over the 25 layers, so the forward gets 1e-4.
    check_all_within(&["model_ws_none"], 1e-4);
}

/// BatchNorm's state against PyTorch's: the running statistics after three
/// training forwards (PyTorch's unbiased-variance update, momentum 0.1), and
/// the evaluation-mode output with them.
#[test]
fn batch_norm_running_statistics_match_pytorch() {
    let device = test_device().autodiff();
    for case in ["model_ws_bn", "model_bn", "ws_gn_act_batch_tiny"] {
        let f = Fixture::read(case);
        let layer = Layer::build(case, &f, &device);
        for input in ["input", "step1.input", "step2.input"] {
            layer.forward(f.tensor(input, &device), None);
        }
        let stats = layer.running_stats();
        let expected = f
            .tensors
            .keys()
            .filter(|k| k.starts_with("running."))
            .count();
        assert!(
            expected > 0 && stats.len() == expected,
            "{case}: {} of {expected} statistics",
            stats.len()
        );
        let worst = stats
            .iter()
            .map(|(name, v)| rel_error(v, &f.get(&format!("running.{name}"))))
            .fold(0.0, worst);
        let eval = layer
            .valid()
            .forward(f.tensor("input", &test_device()), None);
        let eval = rel_error(&eval.into_data(), &f.get("eval.output"));
        println!("{case:32} running statistics {worst:.2e}  eval forward {eval:.2e}");
        assert!(
            worst <= FORWARD_TOL,
            "{case}: running statistics error {worst:e}"
        );
        assert!(
            eval <= FORWARD_TOL,
            "{case}: evaluation output error {eval:e}"
        );
    }
}

/// `biased` and `scaled` equal timm's `StdConv2d` and `ScaledStdConv2d` for the
/// same weights (forward only; timm's outputs computed in float64).
#[test]
fn standardizations_match_timm() {
    let device = test_device();
    for case in ["timm_stdconv2d", "timm_scaledstdconv2d"] {
        let f = Fixture::read(case);
        let Layer::Conv(conv) = Layer::build(case, &f, &device) else {
            panic!("{case} is a conv case")
        };
        let out = conv.forward(f.tensor("input", &device));
        let e = rel_error(&out.into_data(), &f.get("output"));
        println!("{case:32} forward {e:.2e}");
        assert!(e <= FORWARD_TOL, "{case}: {e:e}");
    }
}

/// Each loss and its gradient against PyTorch: `F.cross_entropy` (weighted
/// and not, ignore_index 255), segmentation_models_pytorch's multiclass Dice
/// and the focal loss, on logits `[2, 4, 9, 7]` with 15 % ignored pixels.
#[test]
fn losses_match_pytorch() {
    use burn::tensor::Int;
    use wsunet::train::{LossKind, SegLoss};
    let device = test_device().autodiff();
    let f = Fixture::read("losses");
    let target: Tensor<3, Int> = Tensor::from_data(f.get("target"), &device);
    let weights = f.get("weight").try_to_vec::<f32>().unwrap();
    for (name, kind, weighted) in [
        ("ce", LossKind::Ce, true),
        ("ce_unweighted", LossKind::Ce, false),
        ("dice", LossKind::Dice, false),
        ("focal", LossKind::Focal, true),
    ] {
        let logits = f.tensor("logits", &device).require_grad();
        let mut loss = SegLoss::new(kind, 255);
        if weighted {
            loss.class_weights = Some(weights.clone());
        }
        let value = loss.forward(logits.clone(), target.clone());
        let e = rel_error(&value.to_data(), &f.get(&format!("loss.{name}")));
        let grads = value.backward();
        let g = rel_error(
            &logits.grad(&grads).unwrap().into_data(),
            &f.get(&format!("grad.{name}")),
        );
        println!("loss {name:14} value {e:.2e}  grad {g:.2e}");
        assert!(
            e <= FORWARD_TOL && g <= GRAD_TOL,
            "{name}: value {e:e}, grad {g:e}"
        );
    }
}

/// Folding the standardization into the kernels (for inference) keeps the
/// trained model's outputs, for all three standardizations.
#[test]
fn folded_model_equals_the_training_model() {
    let device = test_device();
    for case in ["model_seed", "model_biased", "model_scaled"] {
        let f = Fixture::read(case);
        let Layer::Model(model) = Layer::build(case, &f, &device) else {
            panic!("{case} is a model case")
        };
        let x = f.tensor("input", &device);
        let reference = model.forward(x.clone()).into_data();
        let folded = model.fold();
        assert!(folded.is_folded());
        let e = rel_error(&folded.forward(x).into_data(), &reference);
        println!("{case:32} folded vs training {e:.2e}");
        assert!(e <= 1e-6, "{case}: {e:e}");
    }
}

/// The comparison every parity check uses fails on a NaN or an infinity in
/// either tensor (a maximum taken with `f64::max` would drop a NaN and pass).
#[test]
fn the_comparison_rejects_nan_and_infinity() {
    use burn::tensor::TensorData;
    let good = TensorData::new(vec![1.0f32, -2.0, 0.5], [3]);
    assert_eq!(rel_error(&good, &good), 0.0);
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let b = TensorData::new(vec![1.0f32, bad, 0.5], [3]);
        let (x, y) = (rel_error(&b, &good), rel_error(&good, &b));
        assert!(x == f64::INFINITY && y == f64::INFINITY, "{bad}: {x} {y}");
    }
    assert!(worst(0.1, f64::NAN).is_nan() && worst(f64::NAN, 0.1).is_nan());
    assert_eq!(worst(0.1, 0.2), 0.2);
}
