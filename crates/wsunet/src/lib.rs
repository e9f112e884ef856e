//! # wsunet
//!
//! Weight-standardized convolutional layers and the WS+GroupNorm residual
//! U-Net (**WSResUNet**) for semantic segmentation, on [Burn](https://burn.dev).
//!
//! - [`layers::WsConv2d`] standardizes each output channel's kernel on every
//!   forward (three formulas: [`layers::Standardization`]), then convolves.
//! - [`layers::WsGnAct`] = WsConv2d → GroupNorm → SiLU;
//!   [`layers::WsResBlock`] = two of them + projection + residual + SiLU;
//!   [`layers::Up`] is one bilinear decoder step.
//! - [`WsResUNet`] = stem, four residual stages (/4 … /32), bridge, decoder
//!   with skips, 1×1 head.
//!
//! Every layer equals its PyTorch twin (`python/wsunet_torch.py`); the tests
//! prove it against committed fixtures. Weights move both ways as
//! safetensors with the twin's state-dict keys ([`weights`]); for deployment,
//! [`onnx`] writes the folded network as a self-contained ONNX file.
//!
//! On the CPU (Burn's Flex backend, `f32`), the layers and the trainer's
//! AdamW run this crate's own kernels with handwritten backward passes
//! ([`ops`]: convolution, fused GroupNorm + SiLU, weight standardization,
//! bilinear resize, AdamW), plugged in through Burn's backend extension;
//! every other device runs Burn's composed ops.
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use wsunet::WsResUNetConfig;
//!
//! let device = wsunet::parse_device("cpu").unwrap();
//! let model = WsResUNetConfig::new(4)
//!     .with_widths(vec![8, 16, 16, 32, 32])
//!     .with_groups(8)
//!     .init(&device)
//!     .expect("valid config");
//! let logits = model.forward(Tensor::<4>::zeros([1, 3, 64, 64], &device));
//! assert_eq!(logits.dims(), [1, 4, 64, 64]);
//! ```
//!
//! # The public surface
//!
//! The network: [`layers`], [`model`] (re-exported here: [`WsResUNet`],
//! [`WsResUNetConfig`]), and [`ops`], the tensor operations the layers run
//! (its kernels on raw slices are internal). Using a model: [`card`] (the
//! model file and its card: [`ModelCard`], [`load_model`], [`save_model`]),
//! [`infer`] (tiled prediction: [`Predictor`]), [`weights`] (PyTorch state
//! dicts), [`onnx`] (export). Data: [`data`] (reading, checking, augmenting
//! and batching images and masks). Training: [`train`] ([`Session`],
//! [`TrainConfig`]) and [`run_dir`] (the files of a run: [`RunDir`]);
//! [`study`] compares norm and standardization variants ([`Variant`])
//! across batch sizes.
//! Objects: [`objects`] (instance labels from the classes, measurements,
//! outlines, object-level scores). Choices spelled one way: [`choice`].
//! Running at scale: [`predict`] (prediction into files: [`predict::PredictJob`], which both clients run), [`shard`], [`provenance`], [`mod@bench`]. Devices:
//! [`device`] ([`parse_device`]). Errors: [`Error`]. Files: [`fs`] (the
//! atomic writer and JSON reader/writer every output goes through).
//! Seeded random streams, parameter initialization and shared geometry are
//! internal.

pub mod bench;
pub mod card;
pub mod choice;
pub mod data;
pub mod device;
pub mod error;
pub mod fs;
pub(crate) mod geometry;
pub mod infer;
pub(crate) mod init;
pub mod layers;
pub mod model;
pub mod objects;
pub mod onnx;
pub mod ops;
pub mod predict;
pub mod provenance;
pub mod raster;
pub(crate) mod rng;
pub mod run_dir;
pub mod shard;
pub mod study;
pub mod train;
pub mod weights;

pub use burn;
pub use card::{ModelCard, load_model, save_model};
pub use device::parse_device;
pub use error::{Error, Result};
pub use infer::Predictor;
pub use model::{MIN_INPUT_SIZE, PartInfo, Variant, WsResUNet, WsResUNetConfig};
pub use run_dir::RunDir;
pub use train::{Session, TrainConfig};
