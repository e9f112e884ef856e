//! The ONNX export, checked by an independent runtime: tract (pure Rust)
//! loads the exported bytes and its logits must equal wsunet's folded model
//! at two input sizes (an odd one, then another batch and size, proving the
//! dynamic shapes), for every standardization and deeper stages; plus the
//! normalization and arg-max options, the metadata, and the refusals.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{DType, Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tract_onnx::prelude::{
    Arc, DatumExt, Framework, InferenceModelExt, IntoRunnable, TValue, TVec, Tensor as TractTensor,
    TypedRunnableModel, tract_ndarray, tvec,
};
use wsunet::card::ModelCard;
use wsunet::data::{ClassInfo, ClassList, Normalize};
use wsunet::layers::{Norm, Standardization};
use wsunet::onnx::{OnnxOptions, to_onnx};
use wsunet::{Error, WsResUNet, WsResUNetConfig};

/// Allowed `max|onnx − wsunet| / max|wsunet|`.
const TOLERANCE: f32 = 1e-4;

/// Moves every 1-D parameter (GroupNorm γ/β, the head's bias) and every
/// `scaled` gain away from its initial 1 or 0, so the test sees them used.
struct Perturb(ChaCha8Rng);

impl ModuleMapper for Perturb {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dims = param.val().dims();
        let is_gain = D == 4 && dims[1..] == [1, 1, 1];
        if D != 1 && !is_gain {
            return param;
        }
        let noise: Vec<f32> = (0..dims.iter().product::<usize>())
            .map(|_| self.0.random_range(-0.5..0.5))
            .collect();
        param.map(|t| {
            let noise = Tensor::<D>::from_data(TensorData::new(noise, dims), &t.device());
            t + noise
        })
    }
}

fn model(config: &WsResUNetConfig, seed: u64) -> WsResUNet {
    let model = config.init_seeded(&Device::flex(), seed).unwrap();
    model.map(&mut Perturb(ChaCha8Rng::seed_from_u64(seed)))
}

fn card(config: &WsResUNetConfig) -> ModelCard {
    let classes = (0..config.num_classes)
        .map(|i| ClassInfo {
            name: format!("class{i}"),
            color: Some([i as u8 * 40, 255 - i as u8 * 40, 7]),
        })
        .collect();
    ModelCard {
        model: config.clone(),
        classes: ClassList { classes },
        normalize: Normalize {
            mean: vec![0.4, 0.5, 0.6],
            std: vec![0.2, 0.25, 0.3],
        },
        ignore_index: Some(255),
        crop: Some([64, 64]),
        pixel_size: None,
        task: Default::default(),
        instances: None,
    }
}

fn small(standardization: Standardization) -> WsResUNetConfig {
    WsResUNetConfig::new(3)
        .with_widths(vec![8, 16, 16, 32, 32])
        .with_groups(4)
        .with_standardization(standardization)
}

type Runnable = Arc<TypedRunnableModel>;

/// Loads the file into tract for inputs of shape `dims`.
///
/// The file's batch, height and width are symbolic. tract folds `Shape` of a
/// symbolic input into constants holding the symbols and its `Resize` does
/// not resolve them at run time ("Undetermined symbol in expression:
/// batch"), so the same bytes are loaded once per input shape, with that
/// shape given as the input fact; the sizes still come from the graph's
/// Shape → Slice → Concat → Resize chain.
fn load(bytes: &[u8], dims: [usize; 4]) -> Runnable {
    tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .expect("tract reads the file")
        .with_input_fact(0, f32::fact(dims).into())
        .expect("the input is float32 [batch, channels, height, width]")
        .into_optimized()
        .expect("tract optimizes the graph")
        .into_runnable()
        .expect("tract plans the graph")
}

fn random_input(dims: [usize; 4], seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..dims.iter().product::<usize>())
        .map(|_| rng.random_range(0.0..1.0))
        .collect()
}

/// Runs the tract plan; returns its outputs as flat f32 / i64 vectors.
fn run_tract(plan: &Runnable, dims: [usize; 4], x: &[f32]) -> TVec<TValue> {
    let input = tract_ndarray::ArrayD::from_shape_vec(dims.to_vec(), x.to_vec()).unwrap();
    plan.run(tvec!(TractTensor::from(input).into()))
        .expect("tract runs")
}

fn tract_f32(value: &TValue) -> (Vec<usize>, Vec<f32>) {
    let view = value.to_plain_array_view::<f32>().unwrap();
    (view.shape().to_vec(), view.iter().copied().collect())
}

fn burn_forward(model: &WsResUNet, dims: [usize; 4], x: &[f32]) -> Vec<f32> {
    let x = Tensor::<4>::from_data(TensorData::new(x.to_vec(), dims), &Device::flex());
    model.forward(x).into_data().try_to_vec::<f32>().unwrap()
}

/// `max|a − b| / max|b|`; infinite when either holds a non-finite value.
fn relative(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    if a.iter().chain(b).any(|v| !v.is_finite()) {
        return f32::INFINITY;
    }
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    diff / b.iter().map(|v| v.abs()).fold(0f32, f32::max)
}

/// Exports `config`'s seeded model once and compares tract with wsunet at
/// 1×3×77×101 and 2×3×64×96 (the same bytes at both sizes).
fn check_parity(name: &str, config: &WsResUNetConfig, seed: u64) {
    let model = model(config, seed);
    let onnx = to_onnx(&model, &card(config), &OnnxOptions::default()).unwrap();
    let folded = model.fold();
    for (i, dims) in [[1, 3, 77, 101], [2, 3, 64, 96]].into_iter().enumerate() {
        let x = random_input(dims, seed + i as u64);
        let outputs = run_tract(&load(onnx.bytes(), dims), dims, &x);
        let (shape, ours) = tract_f32(&outputs[0]);
        assert_eq!(shape, [dims[0], config.num_classes, dims[2], dims[3]]);
        let reference = burn_forward(&folded, dims, &x);
        let rel = relative(&ours, &reference);
        println!("{name} {dims:?}: max relative difference {rel:.2e}");
        assert!(rel < TOLERANCE, "{name} {dims:?}: {rel:.2e}");
    }
}

#[test]
fn tract_equals_wsunet_for_every_standardization() {
    for (i, s) in Standardization::ALL.into_iter().enumerate() {
        check_parity(s.name(), &small(s), 10 + i as u64);
    }
}

/// BatchNorm (running statistics perturbed, folded into the Conv) and no
/// norm (convolutions with biases), with and without WS.
#[test]
fn tract_equals_wsunet_for_every_norm() {
    let variants = [
        (Standardization::Seed, Norm::Batch),
        (Standardization::None, Norm::Batch),
        (Standardization::None, Norm::None),
    ];
    for (i, (s, norm)) in variants.into_iter().enumerate() {
        let config = small(s).with_norm(norm);
        check_parity(&format!("{s} + {norm}"), &config, 40 + i as u64);
        // Folding leaves no BatchNorm: only Conv, and the GroupNorm pieces
        // when there are GroupNorms.
        let onnx = to_onnx(&model(&config, 40), &card(&config), &OnnxOptions::default()).unwrap();
        assert!(!onnx.op_counts.contains_key("BatchNormalization"));
        assert!(
            !onnx.op_counts.contains_key("InstanceNormalization"),
            "{:?}",
            onnx.op_counts
        );
    }
}

#[test]
fn tract_equals_wsunet_with_deeper_stages_and_fitted_groups() {
    // Depth 2 adds identity-shortcut blocks; widths 12/24 with 8 groups make
    // fit_groups pick 6 and 8 (not the configured count).
    let config = WsResUNetConfig::new(5)
        .with_widths(vec![12, 12, 24, 24, 24])
        .with_depths(vec![2, 1, 2, 2])
        .with_groups(8)
        .with_standardization(Standardization::Scaled);
    check_parity("depths [2, 1, 2, 2]", &config, 20);
}

#[test]
fn normalization_and_argmax_in_the_graph() {
    let config = small(Standardization::Seed);
    let (model, card) = (model(&config, 30), card(&config));
    let options = OnnxOptions {
        normalize_input: true,
        argmax: true,
    };
    let onnx = to_onnx(&model, &card, &options).unwrap();
    assert_eq!(onnx.outputs, ["logits", "labels"]);
    let dims = [2, 3, 45, 70];
    let pixels = random_input(dims, 31);
    let outputs = run_tract(&load(onnx.bytes(), dims), dims, &pixels);

    // wsunet sees the card's normalization applied outside the model.
    let plane = dims[2] * dims[3];
    let normalized: Vec<f32> = pixels
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let c = i / plane % 3;
            (v - card.normalize.mean[c]) / card.normalize.std[c]
        })
        .collect();
    let reference = burn_forward(&model.fold(), dims, &normalized);
    let (_, logits) = tract_f32(&outputs[0]);
    let rel = relative(&logits, &reference);
    println!("normalize + argmax: max relative difference {rel:.2e}");
    assert!(rel < TOLERANCE, "{rel:.2e}");

    let labels = outputs[1].to_plain_array_view::<i64>().unwrap();
    assert_eq!(labels.shape(), [dims[0], dims[2], dims[3]]);
    let classes = config.num_classes;
    for (p, &label) in labels.iter().enumerate() {
        let (n, rest) = (p / plane, p % plane);
        let scores: Vec<f32> = (0..classes)
            .map(|c| logits[(n * classes + c) * plane + rest])
            .collect();
        let best = (0..classes)
            .max_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(b.cmp(&a)))
            .unwrap();
        assert_eq!(label, best as i64, "pixel {p}: {scores:?}");
    }
}

#[test]
fn metadata_and_graph_hold_the_card_and_the_folded_kernels() {
    use prost::Message;
    let config = small(Standardization::Biased);
    let (model, card) = (model(&config, 40), card(&config));
    let onnx = to_onnx(&model, &card, &OnnxOptions::default()).unwrap();
    // Decoded with tract's own protobuf types: an independent reader.
    let file = tract_onnx::pb::ModelProto::decode(onnx.bytes()).unwrap();
    assert_eq!(file.ir_version, 8);
    assert_eq!(file.opset_import.len(), 1);
    assert_eq!(file.opset_import[0].version, 17);
    let meta: std::collections::BTreeMap<_, _> = file
        .metadata_props
        .iter()
        .map(|p| (p.key.as_str(), p.value.as_str()))
        .collect();
    assert_eq!(meta["wsunet.version"], env!("CARGO_PKG_VERSION"));
    let classes: ClassList = serde_json::from_str(meta["wsunet.classes"]).unwrap();
    assert_eq!(classes, card.classes);
    assert_eq!(classes.classes[1].color, Some([40, 215, 7]));
    let normalize: Normalize = serde_json::from_str(meta["wsunet.normalize"]).unwrap();
    assert_eq!(normalize, card.normalize);
    let architecture: WsResUNetConfig = serde_json::from_str(meta["wsunet.model"]).unwrap();
    assert_eq!(architecture, config);
    assert_eq!(meta["wsunet.outputs"], "logits");
    assert!(meta["wsunet.input"].contains("already normalized"));
    assert_eq!(meta["wsunet.crop"], "[64,64]");

    let graph = file.graph.unwrap();
    let dims = |v: &tract_onnx::pb::ValueInfoProto| -> Vec<String> {
        use tract_onnx::pb::tensor_shape_proto::dimension::Value;
        use tract_onnx::pb::type_proto::Value as Type;
        let Some(Type::TensorType(t)) = &v.r#type.as_ref().unwrap().value else {
            panic!("not a tensor")
        };
        t.shape
            .as_ref()
            .unwrap()
            .dim
            .iter()
            .map(|d| match d.value.as_ref().unwrap() {
                Value::DimValue(n) => n.to_string(),
                Value::DimParam(p) => p.clone(),
            })
            .collect()
    };
    assert_eq!(dims(&graph.input[0]), ["batch", "3", "height", "width"]);
    assert_eq!(dims(&graph.output[0]), ["batch", "3", "height", "width"]);

    // No weight standardization is left in the graph: only these operators.
    let allowed = [
        "Add",
        "Concat",
        "Conv",
        "InstanceNormalization",
        "Mul",
        "Reshape",
        "Resize",
        "Shape",
        "Sigmoid",
        "Slice",
    ];
    for node in &graph.node {
        assert!(allowed.contains(&node.op_type.as_str()), "{}", node.op_type);
    }
    // The stem's kernel is, bit for bit, the library's folded kernel.
    let stem = graph
        .initializer
        .iter()
        .find(|t| t.name == "stem.conv.weight")
        .unwrap();
    let written: Vec<f32> = stem
        .raw_data
        .chunks(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let folded = model.fold().stem.conv.weight.val();
    assert_eq!(stem.dims, folded.dims().map(|d| d as i64));
    assert_eq!(written, folded.into_data().try_to_vec::<f32>().unwrap());
}

#[test]
fn unsupported_models_are_errors() {
    let config = small(Standardization::Seed);
    let card = card(&config);
    let export_error = |model: &WsResUNet, card: &ModelCard| -> String {
        match to_onnx(model, card, &OnnxOptions::default()) {
            Err(e @ Error::Export { .. }) => e.to_string(),
            other => panic!("expected an export error, got {other:?}"),
        }
    };

    let mut dilated = model(&config, 50);
    dilated.stage2[0].conv1.conv.dilation = 2;
    let err = export_error(&dilated, &card);
    assert!(
        err.contains("stage2.0.conv1.conv") && err.contains("dilation 2"),
        "{err}"
    );

    let mut grouped = model(&config, 51);
    grouped.dec1.refine.conv.groups = 2;
    let err = export_error(&grouped, &card);
    assert!(
        err.contains("dec1.refine.conv") && err.contains("2 groups"),
        "{err}"
    );

    let mut half = model(&config, 52);
    half.head.bias = half.head.bias.map(|b| b.map(|t| t.cast(DType::F16)));
    let err = export_error(&half, &card);
    assert!(
        err.contains("head.bias is F16") && err.contains("float32"),
        "{err}"
    );

    let other = small(Standardization::Seed).with_num_classes(4);
    let err = export_error(&model(&other, 53), &card);
    assert!(err.contains("3 classes") && err.contains("4"), "{err}");
}
