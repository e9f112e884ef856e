//! Helpers shared by the integration tests: reading the PyTorch fixtures,
//! collecting parameter gradients by state-dict key, and comparing tensors.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Gradients;
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::SafeTensors;
use wsunet::train::{EpochRecord, Observer, SegScores, ShapesSpec, TrainConfig};

/// The device the tests run on: `WSUNET_TEST_DEVICE` (`cpu`, `gpu`,
/// `vulkan`, …; a GPU name needs the matching cargo feature), default `cpu`.
/// Runs the GPU test set: `WSUNET_TEST_DEVICE=gpu cargo test --release
/// --features wgpu -p wsunet --test parity --test device`.
pub fn test_device() -> Device {
    let name = test_device_name();
    wsunet::parse_device(&name).unwrap_or_else(|e| panic!("WSUNET_TEST_DEVICE: {e}"))
}

/// The name of [`test_device`].
pub fn test_device_name() -> String {
    std::env::var("WSUNET_TEST_DEVICE").unwrap_or_else(|_| "cpu".into())
}

/// The folder of committed fixtures written by `python/make_fixtures.py`.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
}

/// A fixture's tensors (name → data) and its `config` metadata.
pub struct Fixture {
    pub tensors: BTreeMap<String, TensorData>,
    pub config: serde_json::Value,
}

impl Fixture {
    /// Reads `<case>.io.safetensors`.
    pub fn read(case: &str) -> Fixture {
        let path = fixtures_dir().join(format!("{case}.io.safetensors"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (_, metadata) = SafeTensors::read_metadata(&bytes).expect("safetensors header");
        let config = metadata
            .metadata()
            .as_ref()
            .and_then(|m| m.get("config"))
            .map(|c| serde_json::from_str(c).expect("config JSON"))
            .unwrap_or(serde_json::Value::Null);
        let st = SafeTensors::deserialize(&bytes).expect("safetensors");
        let tensors = st
            .tensors()
            .into_iter()
            .map(|(name, view)| {
                let shape = view.shape().to_vec();
                let data = match view.dtype() {
                    safetensors::Dtype::F32 => {
                        let values: Vec<f32> = view
                            .data()
                            .chunks_exact(4)
                            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                            .collect();
                        TensorData::new(values, shape)
                    }
                    safetensors::Dtype::I64 => {
                        let values: Vec<i64> = view
                            .data()
                            .chunks_exact(8)
                            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                            .collect();
                        TensorData::new(values, shape)
                    }
                    other => panic!("{name}: unsupported dtype {other:?}"),
                };
                (name, data)
            })
            .collect();
        Fixture { tensors, config }
    }

    /// The weights file of the case.
    pub fn weights_path(case: &str) -> PathBuf {
        fixtures_dir().join(format!("{case}.weights.safetensors"))
    }

    pub fn get(&self, name: &str) -> TensorData {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("fixture has no tensor `{name}`"))
            .clone()
    }

    pub fn tensor(&self, name: &str, device: &Device) -> Tensor<4> {
        Tensor::from_data(self.get(name), device)
    }

    pub fn usize(&self, key: &str) -> usize {
        self.config[key]
            .as_u64()
            .unwrap_or_else(|| panic!("config.{key}")) as usize
    }

    pub fn str(&self, key: &str) -> String {
        self.config[key]
            .as_str()
            .unwrap_or_else(|| panic!("config.{key}"))
            .to_string()
    }
}

/// Largest absolute difference divided by the largest absolute reference
/// value: a scale-free error that does not blow up on near-zero elements.
/// Any non-finite value in either tensor makes it infinite, so every
/// tolerance check fails on it (`f64::max` would drop a NaN and score 0).
pub fn rel_error(actual: &TensorData, expected: &TensorData) -> f64 {
    assert_eq!(actual.shape(), expected.shape(), "shapes differ");
    let a = actual.try_to_vec::<f32>().unwrap();
    let e = expected.try_to_vec::<f32>().unwrap();
    rel_error_slices(&a, &e)
}

/// [`rel_error`] of two slices of equal length.
pub fn rel_error_slices(a: &[f32], e: &[f32]) -> f64 {
    assert_eq!(a.len(), e.len(), "lengths differ");
    if a.iter().chain(e).any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    let scale = e.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
    let diff = a
        .iter()
        .zip(e)
        .fold(0f64, |m, (x, y)| m.max((*x as f64 - *y as f64).abs()));
    if scale == 0.0 { diff } else { diff / scale }
}

/// The larger of two errors, NaN if either is (unlike `f64::max`, which
/// returns the other one), for folding errors.
pub fn worst(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Gradients of every float parameter of a module, keyed by the PyTorch
/// state-dict name (Burn's GroupNorm `gamma`/`beta` read as `weight`/`bias`).
/// BatchNorm's running statistics are state, not parameters, and are left out.
pub fn param_grads<M: Module>(module: &M, grads: &Gradients) -> BTreeMap<String, TensorData> {
    collect(module, Some(grads))
}

/// The running statistics (`….running_mean`, `….running_var`) of a module's
/// BatchNorms, keyed by state-dict name.
pub fn running_stats<M: Module>(module: &M) -> BTreeMap<String, TensorData> {
    collect(module, None)
}

fn collect<M: Module>(module: &M, grads: Option<&Gradients>) -> BTreeMap<String, TensorData> {
    struct Collector<'a> {
        grads: Option<&'a Gradients>,
        path: Vec<String>,
        out: BTreeMap<String, TensorData>,
    }
    impl ModuleVisitor for Collector<'_> {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let mut path = self.path.clone();
            if let Some(last) = path.last_mut() {
                match last.as_str() {
                    "gamma" => *last = "weight".into(),
                    "beta" => *last = "bias".into(),
                    _ => {}
                }
            }
            let name = path.join(".");
            let running = name.ends_with(".running_mean") || name.ends_with(".running_var");
            match (self.grads, running) {
                (Some(grads), false) => {
                    let grad = param
                        .val()
                        .grad(grads)
                        .unwrap_or_else(|| panic!("no gradient for `{name}`"));
                    self.out.insert(name, grad.into_data());
                }
                (None, true) => {
                    self.out.insert(name, param.val().into_data());
                }
                _ => {}
            }
        }
    }
    let mut collector = Collector {
        grads,
        path: Vec::new(),
        out: BTreeMap::new(),
    };
    module.visit(&mut collector);
    collector.out
}

/// A model and data small enough to train in a second.
pub fn tiny(epochs: usize) -> TrainConfig {
    let mut c = TrainConfig {
        epochs,
        batch_size: 4,
        val_batch_size: 4,
        crop: Some([48, 48]),
        shapes: ShapesSpec {
            train: 12,
            val: 4,
            size: 48,
            seed: 5,
        },
        ..TrainConfig::default()
    };
    c.model.widths = vec![4, 8, 8, 8, 8];
    c.model.groups = 2;
    c
}

/// Stops after `after` epochs, as Ctrl-C between epochs would.
pub struct StopAfter {
    pub after: usize,
    pub seen: usize,
}

impl Observer for StopAfter {
    fn epoch_end(&mut self, _: &EpochRecord, _: &SegScores, _: bool) {
        self.seen += 1;
    }
    fn should_stop(&mut self) -> bool {
        self.seen >= self.after
    }
}
