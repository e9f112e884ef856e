//! The training plan: settings derived from a fingerprint of the training
//! data instead of fixed defaults, each with its reason.
//!
//! A fixed number of epochs means something different on every dataset:
//! five epochs are 5,120 optimizer steps on the built-in data and 15 on a
//! folder of eleven images. After nnU-Net (Isensee et al., *nnU-Net: a
//! self-configuring method for deep learning-based biomedical image
//! segmentation*, Nature Methods 2021), which fixes a budget of iterations
//! and derives the rest from a dataset fingerprint, the plan sets the run's
//! length as a budget of optimizer steps that does not shrink with the
//! dataset, and the batch size, validation cadence, warmup, class weights
//! and augmentation from the data. nnU-Net's budget (250,000 steps) is for a
//! GPU; this one fits minutes on a laptop CPU.
//!
//! Every setting the user gives (a flag, a config field, a keyword) stays
//! as given: the plan fills in the rest. On the built-in data the plan gives
//! the defaults of [`TrainConfig`] exactly.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::config::{Choice, TrainConfig};
use super::loss::LossKind;
use crate::data::{AugmentConfig, Prepared, Sample, instance_target, read_mask, value_counts};
use crate::error::Result;

/// The optimizer steps a planned run takes at least: enough to converge on
/// a small dataset (measured in STUDY.md), about five minutes of 256² crops
/// at batch 4 with the `small` model on two CPU cores.
pub const STEP_BUDGET: usize = 1500;
/// The fewest epochs a planned run takes (a large dataset passes its step
/// budget in fewer).
pub const MIN_EPOCHS: usize = 5;
/// About how many times a planned run validates.
pub const VALIDATIONS: usize = 20;
/// Datasets with fewer training images than this train with batches of
/// [`SMALL_BATCH`]: the same images then give more optimizer steps, and
/// GroupNorm normalizes each image on its own, so nothing is lost.
pub const SMALL_DATASET: usize = 64;
/// See [`SMALL_DATASET`].
pub const SMALL_BATCH: usize = 4;
/// Masks read for the class frequencies (evenly spaced over the training
/// images when there are more).
const MASKS_READ: usize = 256;

/// The config fields a user gave (flags, config file keys, keywords): the
/// plan leaves them as they are.
pub type Given = BTreeSet<String>;

/// What the plan looked at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Training images (samples).
    pub train: usize,
    /// Validation images.
    pub val: usize,
    /// Smallest and largest `[H, W]` of the training images.
    pub size_range: [[usize; 2]; 2],
    /// Image channels.
    pub channels: usize,
    /// Mean and standard deviation of each channel (the input normalization).
    pub mean: Vec<f32>,
    /// See [`mean`](Self::mean).
    pub std: Vec<f32>,
    /// Share of labelled training pixels per class (from up to 256 masks;
    /// `None` for the built-in data, whose generator draws fresh shapes).
    pub class_fractions: Option<Vec<f64>>,
}

/// The settings of a run, derived from its data.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// What the plan looked at.
    pub fingerprint: Fingerprint,
    /// Each setting and its reason, in the order they are printed.
    pub choices: Vec<Choice>,
    /// The config with the plan applied.
    pub config: TrainConfig,
    /// Warnings about the data (a class without training pixels, …).
    pub warnings: Vec<String>,
}

impl Plan {
    /// The plan for `config` on its prepared data `prepared`, keeping the
    /// fields in `given`.
    pub fn new(config: &TrainConfig, prepared: &Prepared, given: &Given) -> Result<Plan> {
        let fingerprint = fingerprint(config, prepared)?;
        let mut plan = Plan {
            fingerprint,
            choices: Vec::new(),
            config: config.clone(),
            warnings: Vec::new(),
        };
        plan.class_warnings(prepared);
        let f = plan.fingerprint.clone();
        let n = f.train.max(1);

        let batch = if n < SMALL_DATASET {
            SMALL_BATCH.min(n)
        } else {
            TrainConfig::default().batch_size
        };
        plan.set(given, "batch_size", batch, |c| &mut c.batch_size, || {
            if n < SMALL_DATASET {
                format!(
                    "fewer than {SMALL_DATASET} training images: small batches give more steps from the same images, and GroupNorm does not depend on the batch"
                )
            } else {
                "the default for datasets of 64 images or more".into()
            }
        });
        let [h, w] = prepared.facts.crop;
        let crop_reason = if given.contains("crop") {
            "given".to_string()
        } else {
            prepared.facts.crop_note.clone()
        };
        plan.choices.push(Choice {
            field: "crop".into(),
            value: format!("{h}×{w}"),
            reason: crop_reason,
        });
        if let Some(b) = &prepared.facts.instances {
            plan.choices.push(Choice {
                field: "boundary".into(),
                value: format!("{} px", b.width),
                reason: b.reason.clone(),
            });
            plan.choices.push(Choice {
                field: "min_area".into(),
                value: format!("{} px", b.min_area),
                reason: b.min_area_reason.clone(),
            });
        }
        let per_epoch = n.div_ceil(plan.config.batch_size.max(1));
        plan.plan_length(given, per_epoch, None);
        plan.plan_augmentation(given);
        plan.plan_class_weights(given);
        Ok(plan)
    }

    /// Sets `epochs`, `val_every` and `warmup_epochs` (each unless given)
    /// for `per_epoch` steps an epoch; `epochs` from the step budget, or
    /// `fitted` (epochs and the reason) when a time budget decided them.
    pub(crate) fn plan_length(
        &mut self,
        given: &Given,
        per_epoch: usize,
        fitted: Option<(usize, String)>,
    ) {
        let (epochs, why) = fitted.unwrap_or_else(|| {
            let epochs = STEP_BUDGET.div_ceil(per_epoch.max(1)).max(MIN_EPOCHS);
            let why = if epochs == MIN_EPOCHS {
                format!(
                    "at least {MIN_EPOCHS} epochs; {} steps, past the budget of {STEP_BUDGET}",
                    epochs * per_epoch
                )
            } else {
                format!(
                    "a budget of {STEP_BUDGET} optimizer steps ({per_epoch} per epoch): the run's length does not shrink with the dataset"
                )
            };
            (epochs, why)
        });
        self.set(given, "epochs", epochs, |c| &mut c.epochs, || why);
        let epochs = self.config.epochs;
        let every = (epochs / VALIDATIONS).max(1);
        self.set(
            given,
            "val_every",
            every,
            |c| &mut c.val_every,
            || format!("about {VALIDATIONS} validations over {epochs} epochs, or every epoch"),
        );
        let warmup = 0.1 * epochs as f64;
        self.set(
            given,
            "warmup_epochs",
            warmup,
            |c| &mut c.warmup_epochs,
            || "10 % of the run".into(),
        );
    }

    /// The augmentation: none for the built-in data (its generator draws
    /// every sample fresh), the default set for a dataset folder.
    fn plan_augmentation(&mut self, given: &Given) {
        let folder = self.config.data.is_some();
        let augment = if folder {
            AugmentConfig::default()
        } else {
            AugmentConfig::none()
        };
        let shown = if folder {
            let a = &augment;
            format!(
                "flips, 90° turns, scale {}–{}, brightness {}, contrast {}, gamma {}, noise {}",
                a.scale[0], a.scale[1], a.brightness, a.contrast, a.gamma, a.noise
            )
        } else {
            "none".into()
        };
        let reason = if folder {
            format!(
                "{} training images: the same images are seen {} times",
                self.fingerprint.train, self.config.epochs
            )
        } else {
            "the built-in generator draws every sample fresh".into()
        };
        if given.contains("augment") {
            self.choices.push(Choice {
                field: "augment".into(),
                value: "as given".into(),
                reason: "given".into(),
            });
        } else {
            self.config.augment = Some(augment);
            self.choices.push(Choice {
                field: "augment".into(),
                value: shown,
                reason,
            });
        }
    }

    /// Class weights: none when the loss has a Dice term (it weighs every
    /// class equally); with a cross-entropy or focal loss alone, the
    /// inverse square root of each class's pixel share (relative to the
    /// median class, within 0.1–10) when the rarest class has under 1 %.
    fn plan_class_weights(&mut self, given: &Given) {
        if given.contains("class_weights") {
            self.choices.push(Choice {
                field: "class_weights".into(),
                value: format!("{:?}", self.config.class_weights),
                reason: "given".into(),
            });
            return;
        }
        let Some(fractions) = self.fingerprint.class_fractions.clone() else {
            self.choices.push(Choice {
                field: "class_weights".into(),
                value: "none".into(),
                reason: "the built-in data's classes are balanced by its generator".into(),
            });
            return;
        };
        let present: Vec<f64> = fractions.iter().copied().filter(|&f| f > 0.0).collect();
        let rarest = present.iter().copied().fold(f64::INFINITY, f64::min);
        let rare = format!("the rarest class has {:.2} % of the pixels", 100.0 * rarest);
        let dice = matches!(self.config.loss, LossKind::CeDice | LossKind::Dice);
        let (weights, reason) = if dice {
            (
                None,
                format!("the loss's Dice term weighs every class equally ({rare})"),
            )
        } else if rarest >= 0.01 || present.is_empty() {
            (None, format!("no class is rare ({rare})"))
        } else {
            let mut sorted = present.clone();
            sorted.sort_by(f64::total_cmp);
            let median = sorted[sorted.len() / 2];
            let weights: Vec<f32> = fractions
                .iter()
                .map(|&f| {
                    if f > 0.0 {
                        (median / f).sqrt().clamp(0.1, 10.0) as f32
                    } else {
                        1.0
                    }
                })
                .collect();
            (
                Some(weights),
                format!("{rare}: weights √(median share / share), within 0.1–10"),
            )
        };
        let value = match &weights {
            Some(w) => format!(
                "[{}]",
                w.iter()
                    .map(|v| format!("{v:.2}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => "none".into(),
        };
        self.config.class_weights = weights;
        self.choices.push(Choice {
            field: "class_weights".into(),
            value,
            reason,
        });
    }

    /// Warnings from the class frequencies: a class without training
    /// pixels (the model cannot learn it), masks that are all background.
    fn class_warnings(&mut self, prepared: &Prepared) {
        let Some(fractions) = &self.fingerprint.class_fractions else {
            return;
        };
        let names = prepared.facts.classes.names();
        if fractions.iter().skip(1).all(|&f| f == 0.0) && fractions.len() > 1 {
            self.warnings.push(
                "every training mask read is background (class 0) only: the model learns to predict background everywhere; check the masks (values 1.. mark the other classes)"
                    .into(),
            );
            return;
        }
        for (name, &f) in names.iter().zip(fractions) {
            if f == 0.0 {
                self.warnings.push(format!(
                    "class `{name}` has no pixels in the training masks read: the model cannot learn it; annotate some, or leave it out of classes.json"
                ));
            }
        }
    }

    /// Sets `field` (the config's `slot`) to `value` unless it is in
    /// `given`, and records the choice.
    fn set<T: std::fmt::Display + Copy>(
        &mut self,
        given: &Given,
        field: &str,
        value: T,
        slot: impl Fn(&mut TrainConfig) -> &mut T,
        reason: impl FnOnce() -> String,
    ) {
        let slot = slot(&mut self.config);
        let reason = if given.contains(field) {
            "given".to_string()
        } else {
            *slot = value;
            reason()
        };
        let value = slot.to_string();
        match self.choices.iter_mut().find(|c| c.field == field) {
            Some(c) => {
                c.value = value;
                c.reason = reason;
            }
            None => self.choices.push(Choice {
                field: field.into(),
                value,
                reason,
            }),
        }
    }

    /// The config to train with: the plan applied, and its choices
    /// recorded (`config.json`'s `plan`).
    pub fn recorded_config(&self) -> TrainConfig {
        TrainConfig {
            plan: self.choices.clone(),
            ..self.config.clone()
        }
    }

    /// One line a setting: `field value: reason`, after a line on the data.
    pub fn lines(&self) -> Vec<String> {
        let f = &self.fingerprint;
        let [[h0, w0], [h1, w1]] = f.size_range;
        let sizes = if [h0, w0] == [h1, w1] {
            format!("{h0}×{w0}")
        } else {
            format!("{h0}×{w0} to {h1}×{w1}")
        };
        let mut lines = vec![format!(
            "plan for {} training images ({sizes}, {} channel(s)) and {} validation images:",
            f.train, f.channels, f.val
        )];
        lines.extend(
            self.choices
                .iter()
                .map(|c| format!("  {} {}: {}", c.field, c.value, c.reason)),
        );
        lines
    }
}

/// The fingerprint of `prepared`'s training data.
fn fingerprint(config: &TrainConfig, prepared: &Prepared) -> Result<Fingerprint> {
    let size_range = crate::data::check::size_range(&crate::data::sample_sizes(&prepared.train)?);
    let class_fractions = match config.data {
        None => None,
        Some(_) => Some(class_fractions(prepared)?),
    };
    Ok(Fingerprint {
        train: prepared.train.len(),
        val: prepared.val.len(),
        size_range,
        channels: prepared.facts.in_channels,
        mean: prepared.facts.normalize.mean.clone(),
        std: prepared.facts.normalize.std.clone(),
        class_fractions,
    })
}

/// Each class's share of the labelled pixels of up to [`MASKS_READ`]
/// training masks (ignored pixels left out).
fn class_fractions(prepared: &Prepared) -> Result<Vec<f64>> {
    use rayon::prelude::*;
    let facts = &prepared.facts;
    let k = facts.num_classes();
    let files: Vec<_> = prepared
        .train
        .iter()
        .filter_map(|s| match s {
            Sample::Files(p) => Some(p),
            Sample::Shapes { .. } => None,
        })
        .collect();
    let step = files.len().div_ceil(MASKS_READ).max(1);
    let counts = files
        .par_iter()
        .step_by(step)
        .map(|p| {
            let mask = match &facts.instances {
                Some(b) => instance_target(&read_mask(&p.mask, None)?.0, b.width),
                None => read_mask(&p.mask, Some(&facts.classes))?.0,
            };
            Ok(value_counts(&mask))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut pixels = vec![0u64; k];
    for c in counts {
        for (v, n) in c {
            if Some(v) != facts.ignore_index && (v as usize) < k {
                pixels[v as usize] += n;
            }
        }
    }
    let total = pixels.iter().sum::<u64>().max(1) as f64;
    Ok(pixels.iter().map(|&n| n as f64 / total).collect())
}
