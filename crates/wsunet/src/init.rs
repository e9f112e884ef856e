//! Seeded weight initialization from a local random stream.
//!
//! Burn draws initial weights from one process-wide generator, lazily, when
//! a parameter is first used. Seeding that generator would reset a library
//! caller's own random stream, and a draw from another thread in between
//! would change the weights. [`SeededInit`] instead walks a freshly built
//! module and gives every randomly initialized parameter values drawn from
//! its own ChaCha stream, in the module's fixed field order, before Burn
//! ever draws them: the same seed gives the same weights whatever else the
//! process does.
//!
//! The distributions are PyTorch's `Conv2d` defaults, which are also Burn's
//! and the layers' own `init`: kernel `U(−1/√fan_in, 1/√fan_in)` (Kaiming
//! uniform with a = √5), bias the same bound. Norm scales, shifts and WS
//! gains are constants and keep their values.

use burn::module::{ModuleMapper, Param, ParamId};
use burn::tensor::{Tensor, TensorData};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::rng::item_rng;

/// A [`ModuleMapper`] that redraws convolution kernels (`weight`, rank 4)
/// and their biases (`bias` after such a kernel) from a seeded stream.
pub struct SeededInit {
    rng: ChaCha8Rng,
    path: Vec<String>,
    /// Fan-in of the last kernel seen, for the bias that follows it.
    fan_in: Option<usize>,
}

impl SeededInit {
    /// A mapper drawing from stream `seed`.
    pub fn new(seed: u64) -> Self {
        SeededInit {
            rng: item_rng(seed, 0x1A17_5EED),
            path: Vec::new(),
            fan_in: None,
        }
    }

    fn uniform(&mut self, n: usize, bound: f64) -> Vec<f32> {
        let b = bound as f32;
        (0..n).map(|_| self.rng.random_range(-b..=b)).collect()
    }
}

impl ModuleMapper for SeededInit {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, name: &str, _container_type: &str) {
        self.path.pop();
        // A bias belongs to the kernel just before it in the same layer:
        // leaving the layer (or a gain after the kernel) ends that, so a
        // BatchNorm's `bias` after a bias-free convolution keeps its zeros.
        if name != "weight" {
            self.fan_in = None;
        }
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let shape = param.lazy_shape();
        let dims = shape.to_vec();
        let fan_in = match (self.path.last().map(String::as_str), D) {
            (Some("weight"), 4) => {
                let fan_in = dims[1] * dims[2] * dims[3];
                self.fan_in = Some(fan_in);
                fan_in
            }
            (Some("bias"), 1) => match self.fan_in.take() {
                Some(fan_in) => fan_in,
                None => return param,
            },
            _ => return param,
        };
        let values = self.uniform(shape.num_elements(), 1.0 / (fan_in as f64).sqrt());
        let id = param.id;
        let tensor = Tensor::from_data(TensorData::new(values, dims), &param.lazy_device());
        // Keeps the parameter's id, device and gradient setting; the lazy
        // initializer is dropped without drawing.
        param.transform_for_load(tensor, id)
    }
}

/// FNV-1a, 64-bit: a fixed hash of a parameter's path (the same on every
/// machine and run, unlike Rust's `DefaultHasher`).
pub(crate) fn path_id(path: &str) -> u64 {
    path.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A [`ModuleMapper`] that gives every parameter an id derived from its
/// path in the module (`stage1.0.conv1.conv.weight`) instead of Burn's
/// random one, so the files that record ids (models, checkpoints, the
/// optimizer's state) are the same bytes for the same weights. Values are
/// untouched and nothing lazy is initialized.
#[derive(Debug, Default)]
pub(crate) struct PathIds {
    path: Vec<String>,
}

impl ModuleMapper for PathIds {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, mut param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.id = ParamId::from(path_id(&self.path.join(".")));
        param
    }
}
