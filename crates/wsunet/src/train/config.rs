//! The training configuration: everything `wsunet train` needs, as one JSON
//! document. Every field has a default; unknown fields are errors. The
//! resolved config (defaults, flags and measured normalization filled in) is
//! written into the run directory, and `--resume` reads it back.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::loss::LossKind;
use super::schedule::ScheduleKind;
use crate::data::prepare::DataSettings;
pub use crate::data::shapes::ShapesSpec;
use crate::data::{AugmentConfig, Normalize};
use crate::error::{Error, Result};
use crate::model::WsResUNetConfig;
use crate::objects::Task;
use crate::run_dir::RunDir;

/// Named architectures for training: name and stage widths; everything else
/// (depths 1, 1, 1, 1, groups, standardization) is the spec's default. `small`
/// (2.8 M parameters) is the default of `wsunet train`, `base` the spec's
/// default model (11.3 M).
pub const PRESETS: [(&str, [usize; 5]); 2] = [
    ("small", [16, 32, 64, 128, 256]),
    ("base", [32, 64, 128, 256, 512]),
];

/// The model config of a named preset (see [`PRESETS`]) for training:
/// `in_channels` and `num_classes` are 0, "from the data".
pub fn preset(name: &str) -> Result<WsResUNetConfig> {
    let names: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
    PRESETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, widths)| {
            WsResUNetConfig::new(FROM_DATA)
                .with_in_channels(FROM_DATA)
                .with_widths(widths.to_vec())
        })
        .ok_or_else(|| {
            Error::setting(
                "model",
                format!(
                    "unknown model preset `{name}`; expected {}",
                    names.join(" or ")
                ),
            )
        })
}

/// `in_channels` or `num_classes` of [`TrainConfig::model`] that the data
/// decides.
pub const FROM_DATA: usize = 0;

/// A model config for training: a [`WsResUNetConfig`] whose `in_channels`
/// and `num_classes` may be left out, and are then [`FROM_DATA`] (run
/// directories of earlier versions hold only the architecture).
fn training_model(mut value: serde_json::Value) -> serde_json::Result<WsResUNetConfig> {
    if let Some(fields) = value.as_object_mut() {
        for key in ["in_channels", "num_classes"] {
            fields.entry(key).or_insert(FROM_DATA.into());
        }
    }
    serde_json::from_value(value)
}

/// Reads [`TrainConfig::model`] (see [`training_model`]).
fn model_from_data<'de, D: serde::Deserializer<'de>>(d: D) -> Result<WsResUNetConfig, D::Error> {
    training_model(serde_json::Value::deserialize(d)?).map_err(serde::de::Error::custom)
}

/// Reads a model config file to train: as [`WsResUNetConfig::from_file`],
/// but a left-out `in_channels` or `num_classes` is [`FROM_DATA`] (rather
/// than 3 channels, or an error).
pub fn model_from_file(path: &std::path::Path) -> Result<WsResUNetConfig> {
    let value: serde_json::Value = crate::fs::read_json(path)?;
    training_model(value).map_err(|error| Error::Json {
        path: Some(path.to_path_buf()),
        error,
    })
}

/// Which optimizer to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum OptimizerKind {
    /// AdamW (decoupled weight decay).
    #[default]
    Adamw,
    /// SGD with momentum (and optionally Nesterov).
    Sgd,
}

impl OptimizerKind {
    /// Every optimizer, in documentation order.
    pub const ALL: [OptimizerKind; 2] = [OptimizerKind::Adamw, OptimizerKind::Sgd];
}

impl std::fmt::Display for OptimizerKind {
    /// The config's (and `--optimizer`'s) name: `adamw`, `sgd`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OptimizerKind::Adamw => "adamw",
            OptimizerKind::Sgd => "sgd",
        })
    }
}

/// One setting of a training plan (see [`Plan`](super::Plan)), recorded
/// in the run's `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// The config field (`batch_size`, `epochs`, …).
    pub field: String,
    /// Its value, as printed.
    pub value: String,
    /// Why: the rule, or `given` when the user set it.
    pub reason: String,
}

/// Everything a training run needs.
///
/// # Example
///
/// Train a tiny network for one epoch on a little of the built-in `shapes`
/// data (a dataset folder goes in `data`), then load the saved model:
///
/// ```
/// use wsunet::train::{Session, ShapesSpec, Silent, TrainConfig};
///
/// let mut config = TrainConfig {
///     epochs: 1,
///     batch_size: 4,
///     shapes: ShapesSpec { train: 8, val: 4, size: 48, seed: 0 },
///     ..TrainConfig::default()
/// };
/// config.model.widths = vec![4, 8, 8, 8, 8];
/// config.model.groups = 2;
/// let dir = tempfile::tempdir().unwrap();
/// let session = Session::new(config, dir.path()).unwrap();
/// let summary = session.run(&mut Silent).unwrap();
/// assert_eq!(summary.state.epoch, 1);
/// let (model, card) = wsunet::card::load_model(dir.path(), &burn::tensor::Device::flex()).unwrap();
/// assert_eq!(card.classes.len(), 4);
/// # let _ = model;
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Dataset folder; `None` trains on the built-in `shapes` data.
    pub data: Option<PathBuf>,
    /// The built-in data's size and seed.
    pub shapes: ShapesSpec,
    /// Share of a single-folder dataset held out for validation.
    pub val_fraction: f64,
    /// Mask value of ignored pixels (`None`: no value is ignored).
    pub ignore_index: Option<u16>,
    /// Number of classes (`None`: `model.num_classes` when set, else
    /// classes.json, else the masks; the built-in `shapes` data has 4).
    pub num_classes: Option<usize>,
    /// Leave out samples that cannot be used, with a warning, instead of stopping.
    pub skip_bad: bool,
    /// `semantic` (masks hold classes) or `instances` (masks hold instance
    /// labels, each object its own id: the model learns background,
    /// interior and boundary, and predicts objects).
    #[serde(skip_serializing_if = "Task::is_semantic")]
    pub task: Task,
    /// Training crop `[H, W]` (`None`: the `shapes` size, or for a dataset
    /// folder 256 × 256 shrunk to the smallest training image; the resolved
    /// crop is written into the run's config). Images smaller than the crop
    /// are mirror-padded, with a warning. Configs written before the field
    /// had this name call it `size`; they still read.
    #[serde(alias = "size")]
    pub crop: Option<[usize; 2]>,
    /// Samples per optimizer step.
    pub batch_size: usize,
    /// Samples per validation batch.
    pub val_batch_size: usize,
    /// Epochs (passes over the training samples).
    pub epochs: usize,
    /// Validate, checkpoint and report metrics every this many epochs (and
    /// always after the last one, or when a run is stopped). 1: every epoch.
    /// On a tiny dataset an epoch is a few steps and validation with its
    /// writes can cost half as much as training; a larger interval saves it.
    /// A resumed run restarts after the last checkpoint and redoes the
    /// epochs since, with the same result.
    pub val_every: usize,
    /// The network (default: the `small` preset). Its `in_channels` and
    /// `num_classes` are 0 (or left out) to take them from the data: the
    /// training images' channels, and `num_classes` above, classes.json or
    /// the masks. When set, they must agree with the data.
    #[serde(deserialize_with = "model_from_data")]
    pub model: WsResUNetConfig,
    /// The loss.
    pub loss: LossKind,
    /// Per-class loss weights (cross-entropy, focal).
    pub class_weights: Option<Vec<f32>>,
    /// γ of the focal loss.
    pub focal_gamma: f32,
    /// The optimizer.
    pub optimizer: OptimizerKind,
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate of the decay.
    pub min_lr: f64,
    /// Weight decay (not applied to norm parameters, biases and gains).
    pub weight_decay: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// SGD Nesterov momentum.
    pub nesterov: bool,
    /// Epochs of linear warmup (may be fractional).
    pub warmup_epochs: f64,
    /// Decay after warmup.
    pub schedule: ScheduleKind,
    /// Clip each parameter's gradient to this L2 norm.
    pub grad_clip: Option<f32>,
    /// Training augmentation (`None`: none for `shapes`, whose generator
    /// already gives every sample fresh; the default augmentation for a
    /// dataset folder).
    pub augment: Option<AugmentConfig>,
    /// Per-channel normalization (`None`: measured from the training images;
    /// mean 0.5, std 0.25 for `shapes`).
    pub normalize: Option<Normalize>,
    /// Seed of initialization, shuffling, augmentation and the holdout split.
    pub seed: u64,
    /// Compute device: `cpu`, `gpu[:N]`, `vulkan[:N]`, `cuda[:N]` (see
    /// [`parse_device`](crate::parse_device)).
    pub device: String,
    /// A wall-clock budget in seconds for a planned run
    /// ([`Session::planned`](super::Session::planned)): the number of epochs
    /// is set to fit it from the pace measured before training, and the
    /// warmup and decay are laid over that length.
    pub time: Option<f64>,
    /// What the plan chose and why, one entry a setting: written by a
    /// planned run into its `config.json` as a record; not read back.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<Choice>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            data: None,
            shapes: ShapesSpec::default(),
            val_fraction: 0.2,
            ignore_index: Some(255),
            num_classes: None,
            skip_bad: false,
            task: Task::Semantic,
            crop: None,
            batch_size: 8,
            val_batch_size: 8,
            epochs: 5,
            val_every: 1,
            model: preset("small").expect("known preset"),
            loss: LossKind::default(),
            class_weights: None,
            focal_gamma: 2.0,
            optimizer: OptimizerKind::default(),
            lr: 3e-3,
            min_lr: 1e-5,
            weight_decay: 1e-4,
            momentum: 0.9,
            nesterov: true,
            warmup_epochs: 0.5,
            schedule: ScheduleKind::default(),
            grad_clip: None,
            augment: None,
            normalize: None,
            seed: 0,
            device: "cpu".into(),
            time: None,
            plan: Vec::new(),
        }
    }
}

impl TrainConfig {
    /// Reads a JSON config file.
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        crate::fs::read_json(path)
    }

    /// The data part of the config: what data preparation needs.
    pub fn data_settings(&self) -> DataSettings {
        DataSettings {
            data: self.data.clone(),
            shapes: self.shapes.clone(),
            val_fraction: self.val_fraction,
            seed: self.seed,
            ignore_index: self.ignore_index,
            num_classes: self.class_count().map(|(_, n)| n),
            skip_bad: self.skip_bad,
            normalize: self.normalize.clone(),
            crop: self.crop,
            task: self.task,
        }
    }

    /// `model.num_classes` when set.
    fn model_classes(&self) -> Option<usize> {
        (self.model.num_classes != FROM_DATA).then_some(self.model.num_classes)
    }

    /// The class count the config sets, with the field that sets it:
    /// `num_classes`, else `model.num_classes`; `None` leaves it to the data.
    pub fn class_count(&self) -> Option<(&'static str, usize)> {
        match (self.num_classes, self.model_classes()) {
            (Some(n), _) => Some(("num_classes", n)),
            (None, Some(m)) => Some(("model.num_classes", m)),
            (None, None) => None,
        }
    }

    /// The training augmentation.
    pub fn augmentation(&self) -> AugmentConfig {
        self.augment.clone().unwrap_or(match self.data {
            None => AugmentConfig::none(),
            Some(_) => AugmentConfig::default(),
        })
    }

    /// Checks every number, naming the setting to fix.
    pub fn validate(&self) -> Result<()> {
        self.validate_lengths()?;
        self.validate_optimizer()?;
        self.validate_classes()?;
        self.augmentation().validate()?;
        // The network itself (widths, depths, …), with what the data decides
        // standing in as 1.
        WsResUNetConfig {
            in_channels: self.model.in_channels.max(1),
            num_classes: self.model.num_classes.max(1),
            ..self.model.clone()
        }
        .validate()
        .map_err(|e| match e {
            Error::Model { field, reason } => Error::Model {
                field: format!("model.{field}"),
                reason,
            },
            e => e,
        })
    }

    /// Batch sizes, epochs, the validation cadence and the shapes counts.
    fn validate_lengths(&self) -> Result<()> {
        let fail = |field: &str, msg: String| Err(Error::setting(field, msg));
        for (field, value) in [
            ("batch_size", self.batch_size),
            ("val_batch_size", self.val_batch_size),
        ] {
            if value == 0 {
                return fail(field, format!("{field} is 0; it must be at least 1"));
            }
        }
        if self.epochs == 0 {
            return fail("epochs", "epochs is 0; train for at least 1 epoch".into());
        }
        if self.val_every == 0 {
            return fail(
                "val_every",
                "val_every is 0; validate at least every 1 epoch".into(),
            );
        }
        if let Some(t) = self.time
            && !(t.is_finite() && t > 0.0)
        {
            return fail(
                "time",
                format!("time is {t} s; give a positive duration such as 10m"),
            );
        }
        if self.data.is_none() && (self.shapes.train == 0 || self.shapes.val == 0) {
            return fail(
                "shapes",
                "shapes.train and shapes.val must be at least 1".into(),
            );
        }
        Ok(())
    }

    /// The learning rates, weight decay, warmup, momentum and clipping.
    fn validate_optimizer(&self) -> Result<()> {
        let fail = |field: &str, msg: String| Err(Error::setting(field, msg));
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return fail(
                "lr",
                format!(
                    "lr is {}; it must be a positive number such as 1e-3",
                    self.lr
                ),
            );
        }
        if !(self.min_lr.is_finite() && self.min_lr >= 0.0 && self.min_lr <= self.lr) {
            return fail(
                "min_lr",
                format!(
                    "min_lr is {}; it must be between 0 and lr ({})",
                    self.min_lr, self.lr
                ),
            );
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return fail(
                "weight_decay",
                format!(
                    "weight_decay is {}; it must be 0 or more",
                    self.weight_decay
                ),
            );
        }
        if !(self.warmup_epochs.is_finite() && self.warmup_epochs >= 0.0) {
            return fail(
                "warmup_epochs",
                format!(
                    "warmup_epochs is {}; it must be 0 or more",
                    self.warmup_epochs
                ),
            );
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return fail(
                "momentum",
                format!("momentum is {}; it must be in [0, 1)", self.momentum),
            );
        }
        if let Some(c) = self.grad_clip
            && !(c.is_finite() && c > 0.0)
        {
            return fail(
                "grad_clip",
                format!("grad_clip is {c}; it must be positive"),
            );
        }
        Ok(())
    }

    /// Class weights, and `num_classes` against `model.num_classes`.
    fn validate_classes(&self) -> Result<()> {
        let fail = |field: &str, msg: String| Err(Error::setting(field, msg));
        if let Some(w) = &self.class_weights
            && w.iter().any(|v| !(v.is_finite() && *v >= 0.0))
        {
            return fail(
                "class_weights",
                format!("class_weights {w:?} must all be 0 or more"),
            );
        }
        if let (Some(n), Some(m)) = (self.num_classes, self.model_classes())
            && n != m
        {
            return fail(
                "num_classes",
                format!("num_classes is {n} but model.num_classes is {m}; set one of them"),
            );
        }
        Ok(())
    }
}

/// The run that `model` belongs to (see [`RunDir::of_model`]) and its
/// training config; `None` when `model` is not in a run directory or the
/// run has no `config.json`.
pub fn run_config_of(model: &std::path::Path) -> Result<Option<(RunDir, TrainConfig)>> {
    let Some(run) = RunDir::of_model(model).filter(|run| run.config().is_file()) else {
        return Ok(None);
    };
    let config = run.read_config()?;
    Ok(Some((run, config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_run_directory_has_a_run_config() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        // A config.json of some other kind beside a model file: not a run.
        std::fs::write(run.config(), "{\"num_classes\": 2}").unwrap();
        assert!(run_config_of(&run.final_model()).unwrap().is_none());
        // With a checkpoint pointer it is one, and its config is read.
        run.write_config(&TrainConfig::default()).unwrap();
        std::fs::create_dir_all(run.checkpoints()).unwrap();
        std::fs::write(run.latest_checkpoint(), "{}").unwrap();
        let (found, config) = run_config_of(&run.final_model()).unwrap().unwrap();
        assert_eq!(found, run);
        assert_eq!(config, TrainConfig::default());
    }

    #[test]
    fn configs_that_call_the_crop_size_still_read() {
        let old: TrainConfig = serde_json::from_str(r#"{"size": [64, 96]}"#).unwrap();
        assert_eq!(old.crop, Some([64, 96]));
        let written = serde_json::to_value(&old).unwrap();
        assert_eq!(written["crop"], serde_json::json!([64, 96]));
        assert!(written.get("size").is_none());
    }

    #[test]
    fn partial_json_takes_defaults_and_rejects_typos() {
        let c: TrainConfig =
            serde_json::from_str(r#"{"epochs": 3, "model": {"widths": [8, 8, 16, 16, 16]}}"#)
                .unwrap();
        assert_eq!(c.epochs, 3);
        assert_eq!(c.batch_size, 8);
        assert_eq!(c.model.depths, vec![1, 1, 1, 1]);
        assert_eq!((c.model.in_channels, c.model.num_classes), (0, 0));
        assert_eq!(preset("base").unwrap().widths, vec![32, 64, 128, 256, 512]);
        assert!(
            preset("huge")
                .unwrap_err()
                .to_string()
                .contains("small or base")
        );
        let e = serde_json::from_str::<TrainConfig>(r#"{"epoch": 3}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `epoch`"), "{e}");
        let back: TrainConfig = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        for field in ["batch_size", "val_batch_size"] {
            let mut zero = serde_json::to_value(TrainConfig::default()).unwrap();
            zero[field] = 0.into();
            let e = serde_json::from_value::<TrainConfig>(zero)
                .unwrap()
                .validate()
                .unwrap_err();
            assert_eq!(e.field(), Some(field));
        }
        for kind in OptimizerKind::ALL {
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                kind.to_string().as_str()
            );
        }
    }

    #[test]
    fn the_model_takes_channels_and_classes_from_the_data_unless_set() {
        // A run directory of wsunet 0.1: the architecture without the two.
        let old: TrainConfig = serde_json::from_str(
            r#"{"num_classes": 3, "model": {"widths": [4, 8, 8, 8, 8], "depths": [1, 1, 1, 1],
                "groups": 2, "standardization": "seed", "eps": null}}"#,
        )
        .unwrap();
        assert_eq!((old.model.in_channels, old.model.num_classes), (0, 0));
        assert_eq!(old.data_settings().num_classes, Some(3));
        old.validate().unwrap();
        // model.num_classes alone tells the data how many classes there are.
        let set = TrainConfig {
            model: WsResUNetConfig::new(5),
            ..TrainConfig::default()
        };
        assert_eq!(set.data_settings().num_classes, Some(5));
        let e = TrainConfig {
            num_classes: Some(4),
            ..set
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("num_classes is 4 but model.num_classes is 5"),
            "{e}"
        );
        let e = serde_json::from_str::<TrainConfig>(r#"{"model": {"widths": [1], "width": 2}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `width`"), "{e}");
        // A model config file to train: the same rule.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.json");
        std::fs::write(&path, r#"{"widths": [4, 8, 8, 8, 8], "groups": 2}"#).unwrap();
        let model = model_from_file(&path).unwrap();
        assert_eq!(
            (model.in_channels, model.num_classes, model.groups),
            (0, 0, 2)
        );
        std::fs::write(&path, r#"{"in_channels": 1, "num_classes": 3}"#).unwrap();
        let model = model_from_file(&path).unwrap();
        assert_eq!((model.in_channels, model.num_classes), (1, 3));
    }

    #[test]
    fn validation_names_the_setting() {
        let cases = [
            (
                TrainConfig {
                    epochs: 0,
                    ..Default::default()
                },
                "epochs",
            ),
            (
                TrainConfig {
                    lr: -1.0,
                    ..Default::default()
                },
                "lr is -1",
            ),
            (
                TrainConfig {
                    batch_size: 0,
                    ..Default::default()
                },
                "batch_size",
            ),
            (
                TrainConfig {
                    grad_clip: Some(0.0),
                    ..Default::default()
                },
                "grad_clip",
            ),
            (
                TrainConfig {
                    model: WsResUNetConfig {
                        depths: vec![1],
                        ..preset("small").unwrap()
                    },
                    ..Default::default()
                },
                "depths",
            ),
        ];
        for (c, needle) in cases {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
        // The field to fix, as the config's JSON names it.
        let field = |c: TrainConfig| c.validate().unwrap_err().field().map(String::from);
        let mut c = TrainConfig::default();
        c.model.depths = vec![1];
        assert_eq!(field(c).as_deref(), Some("model.depths"));
        let c = TrainConfig {
            min_lr: 1.0,
            ..Default::default()
        };
        assert_eq!(field(c).as_deref(), Some("min_lr"));
        TrainConfig::default().validate().unwrap();
    }
}
