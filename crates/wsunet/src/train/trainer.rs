//! The training loop: data preparation, optimization, validation on the whole
//! validation set, checkpoints, exact resume, and the run directory.
//!
//! Built from Burn's pieces (modules, autodiff, `ModuleOptimizer` with a
//! no-weight-decay parameter group, burnpack records) rather than
//! burn-train's `Learner`, whose loader order, RNG state and asynchronous
//! three-file checkpoints cannot give an exactly resumable run, and which
//! cannot stop cleanly on a non-finite loss.
//!
//! Run directory:
//!
//! ```text
//! config.json        the resolved training config (what --resume reads)
//! metrics.csv        one row per epoch
//! curves.png         loss, mIoU and learning rate per epoch
//! checkpoints/       see checkpoint.rs
//! best.bpk/.json     the model with the best validation mIoU, and its card
//! best_scores.json   that epoch's per-class scores
//! model.bpk/.json    the final model and its card
//! scores.json        the final epoch's per-class scores
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::module::Module;
use burn::module::ParamGroup;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::checkpoint;
use super::config::{OptimizerKind, TrainConfig};
use super::confusion::{ConfusionMatrix, SegScores};
use super::loader::{Batches, epoch_order, same_size_batches};
use super::loss::SegLoss;
use super::schedule::LrSchedule;
use crate::card::{ModelCard, save_model, write_atomic};
use crate::data::check::channel_stats;
use crate::data::dataset::{file_samples, sample_sizes, shapes_samples, usable_samples};
use crate::data::shapes::shapes_classes;
use crate::data::{
    ClassList, Layout, Mode, Normalize, Sample, SampleSpec, SegDataset, discover, read_image,
    read_mask,
};
use crate::device::parse_device;
use crate::error::{Error, Result};
use crate::model::{MIN_INPUT_SIZE, WsResUNet};

/// One epoch's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches.
    pub train_loss: f64,
    /// Mean validation loss over the validation batches.
    pub val_loss: f64,
    /// Validation mIoU.
    pub miou: f64,
    /// Validation mean Dice.
    pub mean_dice: f64,
    /// Validation pixel accuracy.
    pub pixel_accuracy: f64,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    /// Wall time of the epoch (training and validation).
    pub seconds: f64,
    /// Training throughput.
    pub images_per_sec: f64,
    /// Validation IoU per class (`None`: class absent).
    pub class_iou: Vec<Option<f64>>,
}

/// Where training stands; saved in every checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Finished epochs.
    pub epoch: usize,
    /// Optimizer steps taken.
    pub step: usize,
    /// Best validation mIoU so far and its epoch.
    pub best: Option<(usize, f64)>,
    /// Every finished epoch.
    pub history: Vec<EpochRecord>,
}

/// What a training run reports as it goes. Every method has an empty
/// default, so an observer implements what it shows.
pub trait Observer {
    /// A line of information (data summary, warnings, resume point).
    fn info(&mut self, _line: &str) {}
    /// An epoch of `batches` batches starts.
    fn epoch_start(&mut self, _epoch: usize, _epochs: usize, _batches: usize) {}
    /// A training batch finished.
    fn batch(&mut self, _done: usize, _loss: f64, _images_per_sec: f64, _lr: f64) {}
    /// Validation of `batches` batches starts.
    fn validation_start(&mut self, _batches: usize) {}
    /// A validation batch finished.
    fn validation_batch(&mut self, _done: usize) {}
    /// An epoch finished.
    fn epoch_end(&mut self, _record: &EpochRecord, _scores: &SegScores, _is_best: bool) {}
    /// Asked after each finished (and checkpointed) epoch: `true` stops the
    /// run there, to be continued later with `--resume`.
    fn should_stop(&mut self) -> bool {
        false
    }
}

/// An observer that shows nothing.
pub struct Silent;

impl Observer for Silent {}

/// A prepared training run: resolved config, datasets and model card.
pub struct Session {
    /// The run directory.
    pub dir: PathBuf,
    /// The resolved config.
    pub config: TrainConfig,
    /// Architecture, classes and normalization of the model being trained.
    pub card: ModelCard,
    /// Training samples (augmented).
    pub train: Arc<SegDataset>,
    /// Validation samples (whole images).
    pub val: Arc<SegDataset>,
    /// Samples left out, images smaller than the crop, and other warnings
    /// from preparation.
    pub warnings: Vec<String>,
    /// How the training crop was chosen (shown with the run's settings).
    pub crop_note: String,
    /// The compute device (without autodiff).
    pub device: Device,
}

/// The result of a finished (or stopped) run.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    /// The final state (history, best epoch).
    pub state: TrainState,
    /// Whether the observer stopped the run before its last epoch.
    pub stopped: bool,
    /// Validation scores of the last epoch.
    pub scores: SegScores,
    /// Total wall time of this invocation.
    pub seconds: f64,
}

/// Validation of a model on a dataset.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Scores from the accumulated confusion matrix.
    pub scores: SegScores,
    /// The matrix.
    pub matrix: ConfusionMatrix,
    /// Mean loss over batches.
    pub loss: f64,
}

/// Largest mask value (other than `ignore`) over all masks, read in parallel.
fn max_mask_value(
    pairs: &[crate::data::SamplePaths],
    classes: Option<&ClassList>,
    ignore: Option<u16>,
) -> Result<u16> {
    use rayon::prelude::*;
    pairs
        .par_iter()
        .map(|p| {
            let (mask, _) = read_mask(&p.mask, classes)?;
            Ok(mask
                .data
                .iter()
                .copied()
                .filter(|&v| Some(v) != ignore)
                .max()
                .unwrap_or(0))
        })
        .try_reduce(|| 0, |a, b| Ok(a.max(b)))
}

struct Prepared {
    train: Vec<Sample>,
    val: Vec<Sample>,
    spec: SampleSpec,
    classes: ClassList,
    normalize: Normalize,
    warnings: Vec<String>,
}

/// Largest training crop side used when none is given.
pub const DEFAULT_CROP: usize = 256;

/// The training crop for images of `sizes`, with a line saying how it was
/// chosen and a warning when images are smaller than it.
///
/// Without `requested`, the crop is [`DEFAULT_CROP`] shrunk to the smallest
/// image height and width (never below the model's minimum): a crop larger
/// than the images would be mostly padding, and GroupNorm, which normalizes
/// over the whole input, would learn statistics that no whole image has.
/// Images smaller than the crop (a requested one, or after random
/// down-scaling) are mirror-padded, never zero-padded.
pub fn resolve_crop(
    requested: Option<[usize; 2]>,
    sizes: &[[usize; 2]],
) -> ([usize; 2], String, Option<String>) {
    let min_h = sizes.iter().map(|s| s[0]).min().unwrap_or(DEFAULT_CROP);
    let min_w = sizes.iter().map(|s| s[1]).min().unwrap_or(DEFAULT_CROP);
    let (crop, note) = match requested {
        Some(c) => (c, "as configured".to_string()),
        None => {
            let crop = [
                DEFAULT_CROP.min(min_h).max(MIN_INPUT_SIZE),
                DEFAULT_CROP.min(min_w).max(MIN_INPUT_SIZE),
            ];
            let note = if crop == [DEFAULT_CROP; 2] {
                format!(
                    "the default; every training image is at least {DEFAULT_CROP}×{DEFAULT_CROP}"
                )
            } else {
                format!(
                    "the {DEFAULT_CROP}×{DEFAULT_CROP} default shrunk to the smallest training image, {min_h}×{min_w}"
                )
            };
            (crop, note)
        }
    };
    let smaller = sizes
        .iter()
        .filter(|s| s[0] < crop[0] || s[1] < crop[1])
        .count();
    let warning = (smaller > 0).then(|| {
        format!(
            "{smaller} of {} training images are smaller than the {}×{} crop (the smallest is {min_h}×{min_w}); they are mirror-padded to it. A crop no larger than the images avoids padding: size [{}, {}]",
            sizes.len(),
            crop[0],
            crop[1],
            min_h.max(MIN_INPUT_SIZE),
            min_w.max(MIN_INPUT_SIZE)
        )
    });
    (crop, note, warning)
}

fn prepare_data(config: &TrainConfig) -> Result<Prepared> {
    let Some(root) = &config.data else {
        let s = &config.shapes;
        let classes = shapes_classes();
        return Ok(Prepared {
            train: shapes_samples(s.seed, 0, s.train, s.size),
            val: shapes_samples(s.seed, s.train as u64, s.val, s.size),
            spec: SampleSpec {
                num_classes: classes.len(),
                ignore_index: config.ignore_index,
                in_channels: 3,
                classes: Some(classes.clone()),
            },
            classes,
            normalize: config
                .normalize
                .clone()
                .unwrap_or_else(|| Normalize::neutral(3)),
            warnings: Vec::new(),
        });
    };
    let files = discover(root, config.val_fraction, config.seed)?;
    let mut warnings = Vec::new();
    if !files.problems.is_empty() {
        if !config.skip_bad {
            let shown: Vec<String> = files
                .problems
                .iter()
                .take(20)
                .map(|p| format!("  {p}"))
                .collect();
            return Err(Error::Dataset(format!(
                "{} problem(s) in {}:\n{}\nfix them, or pass --skip-bad to leave those files out",
                files.problems.len(),
                root.display(),
                shown.join("\n")
            )));
        }
        warnings.extend(files.problems.iter().map(|p| format!("skipped: {p}")));
    }
    if files.train.is_empty() {
        return Err(Error::Dataset(format!(
            "{}: the training split is empty",
            root.display()
        )));
    }
    if files.val.is_empty() {
        return Err(Error::Dataset(format!(
            "{}: the validation split is empty; add val/ or use --val-fraction above 0",
            root.display()
        )));
    }
    let in_channels = read_image(&files.train[0].image)?.channels;
    let num_classes = match (config.num_classes, &files.classes) {
        (Some(n), _) => n,
        (None, Some(list)) => list.len(),
        (None, None) => {
            let all: Vec<_> = files.train.iter().chain(&files.val).cloned().collect();
            max_mask_value(&all, None, config.ignore_index)? as usize + 1
        }
    };
    let classes = match &files.classes {
        Some(list) if list.len() == num_classes => list.clone(),
        Some(list) => {
            return Err(Error::Dataset(format!(
                "{}: classes.json lists {} classes but --num-classes is {num_classes}",
                root.display(),
                list.len()
            )));
        }
        None => ClassList::numbered(num_classes),
    };
    let spec = SampleSpec {
        num_classes,
        ignore_index: config.ignore_index,
        in_channels,
        classes: Some(classes.clone()),
    };
    let (train, w) = usable_samples(file_samples(&files.train), &spec, config.skip_bad)?;
    warnings.extend(w);
    let (val, w) = usable_samples(file_samples(&files.val), &spec, config.skip_bad)?;
    warnings.extend(w);
    if train.is_empty() || val.is_empty() {
        return Err(Error::Dataset(format!(
            "{}: no usable samples left in a split",
            root.display()
        )));
    }
    let normalize = match &config.normalize {
        Some(n) => n.clone(),
        None => {
            let pairs: Vec<_> = train
                .iter()
                .filter_map(|s| match s {
                    Sample::Files(p) => Some(p.clone()),
                    Sample::Shapes { .. } => None,
                })
                .collect();
            channel_stats(&pairs)?
        }
    };
    Ok(Prepared {
        train,
        val,
        spec,
        classes,
        normalize,
        warnings,
    })
}

/// Which samples of a dataset to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// The training split.
    Train,
    /// The validation split.
    Val,
    /// Both.
    All,
}

impl std::str::FromStr for Split {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "train" => Ok(Split::Train),
            "val" => Ok(Split::Val),
            "all" => Ok(Split::All),
            _ => Err(format!("unknown split `{s}`; expected val, train or all")),
        }
    }
}

/// The samples of `split` of the data `config` describes, split exactly as
/// training splits them (a folder's holdout uses `val_fraction` and
/// `seed`), without decoding any file; with the folder's layout (`None` for
/// the built-in `shapes`).
pub fn split_samples(config: &TrainConfig, split: Split) -> Result<(Vec<Sample>, Option<Layout>)> {
    let (train, val, layout) = match &config.data {
        None => {
            let s = &config.shapes;
            (
                shapes_samples(s.seed, 0, s.train, s.size),
                shapes_samples(s.seed, s.train as u64, s.val, s.size),
                None,
            )
        }
        Some(root) => {
            let files = discover(root, config.val_fraction, config.seed)?;
            (
                file_samples(&files.train),
                file_samples(&files.val),
                Some(files.layout),
            )
        }
    };
    let samples = match split {
        Split::Train => train,
        Split::Val => val,
        Split::All => train.into_iter().chain(val).collect(),
    };
    Ok((samples, layout))
}

/// The training config of the run that `model` belongs to: `config.json` in
/// a run directory, or beside a model file saved in one (`best.bpk`,
/// `model.bpk`). `None` when there is none.
pub fn run_config_of(model: &Path) -> Result<Option<(PathBuf, TrainConfig)>> {
    let dir = if model.is_dir() {
        Some(model)
    } else {
        model.parent()
    };
    let Some(path) = dir.map(|d| d.join("config.json")) else {
        return Ok(None);
    };
    if !path.is_file() {
        return Ok(None);
    }
    Ok(Some((path.clone(), TrainConfig::from_file(&path)?)))
}

/// The optimizer of the default training settings (AdamW, eps 1e-8,
/// weight decay 1e-4 except on norms, biases and gains).
pub fn default_optimizer() -> ModuleOptimizer {
    optimizer(&TrainConfig::default())
}

fn optimizer(config: &TrainConfig) -> ModuleOptimizer {
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

impl Session {
    /// Prepares a new run in `dir`, which must not hold a run already.
    pub fn new(config: TrainConfig, dir: &Path) -> Result<Session> {
        if checkpoint::exists(dir) {
            return Err(Error::Training(format!(
                "{} already holds a training run; continue it with --resume {}, or choose another output directory",
                dir.display(),
                dir.display()
            )));
        }
        Self::open(config, dir)
    }

    /// Reopens the run in `dir` from its `config.json`, optionally with a new
    /// total number of epochs and another device (applied before the device
    /// is opened, so a run can move off a device this machine lacks).
    pub fn resume(dir: &Path, epochs: Option<usize>, device: Option<&str>) -> Result<Session> {
        let path = dir.join("config.json");
        if !path.is_file() || !checkpoint::exists(dir) {
            return Err(Error::Training(format!(
                "{} is not a run directory with a checkpoint (no config.json or checkpoints/latest.json); train first, or check the path",
                dir.display()
            )));
        }
        let mut config = TrainConfig::from_file(&path)?;
        if let Some(e) = epochs {
            config.epochs = e;
        }
        if let Some(d) = device {
            config.device = d.to_string();
        }
        Self::open(config, dir)
    }

    fn open(mut config: TrainConfig, dir: &Path) -> Result<Session> {
        config.validate()?;
        let device = parse_device(&config.device)?;
        let p = prepare_data(&config)?;
        if let Some(w) = &config.class_weights
            && w.len() != p.spec.num_classes
        {
            return Err(Error::Config(format!(
                "class_weights has {} entries but there are {} classes",
                w.len(),
                p.spec.num_classes
            )));
        }
        config.num_classes = Some(p.spec.num_classes);
        config.normalize = Some(p.normalize.clone());
        let mut warnings = p.warnings;
        let (crop, crop_note) = match config.data {
            None => (config.crop(), "the shapes image size".to_string()),
            Some(_) => {
                let (crop, note, warning) = resolve_crop(config.size, &sample_sizes(&p.train)?);
                warnings.extend(warning);
                (crop, note)
            }
        };
        config.size = Some(crop);
        let card = ModelCard {
            model: config.model.build(p.spec.in_channels, p.spec.num_classes),
            classes: p.classes,
            normalize: p.normalize.clone(),
            ignore_index: config.ignore_index,
            crop: Some(crop),
        };
        card.validate()?;
        let train = SegDataset::new(
            p.train,
            p.spec.clone(),
            p.normalize.clone(),
            Mode::Train {
                augment: config.augmentation(),
                size: config.crop(),
            },
            config.seed,
        )?;
        let val = SegDataset::new(p.val, p.spec, p.normalize, Mode::Eval, config.seed)?;
        Ok(Session {
            dir: dir.to_path_buf(),
            config,
            card,
            train: Arc::new(train),
            val: Arc::new(val),
            warnings,
            crop_note,
            device,
        })
    }

    /// The loss of this run.
    pub fn loss(&self) -> SegLoss {
        SegLoss {
            kind: self.config.loss,
            class_weights: self.config.class_weights.clone(),
            ignore_label: self.train.spec().ignore_label() as i64,
            focal_gamma: self.config.focal_gamma,
        }
    }

    fn steps_per_epoch(&self) -> usize {
        self.train.samples().len().div_ceil(self.config.batch_size)
    }

    fn schedule(&self) -> LrSchedule {
        let per_epoch = self.steps_per_epoch();
        LrSchedule {
            base_lr: self.config.lr,
            min_lr: self.config.min_lr,
            warmup_steps: (self.config.warmup_epochs * per_epoch as f64).round() as usize,
            total_steps: self.config.epochs * per_epoch,
            kind: self.config.schedule,
        }
    }

    /// Trains until `config.epochs`, from the latest checkpoint when there
    /// is one.
    pub fn run(&self, observer: &mut dyn Observer) -> Result<TrainSummary> {
        let start = Instant::now();
        for w in &self.warnings {
            observer.info(&format!("warning: {w}"));
        }
        // The resolved config is what --resume reads; written only now that
        // training starts, so preparing a session changes nothing on disk.
        std::fs::create_dir_all(&self.dir).map_err(|error| Error::Io {
            path: self.dir.clone(),
            error,
        })?;
        write_atomic(
            &self.dir.join("config.json"),
            self.config.to_json().as_bytes(),
        )?;
        let ad = self.device.clone().autodiff();
        let model = self.card.model.init_seeded(&ad, self.config.seed)?;
        let optim = optimizer(&self.config);
        let (mut model, mut optim, mut state) = if checkpoint::exists(&self.dir) {
            let (m, o, s) = checkpoint::load_latest(&self.dir, model, optim)?;
            observer.info(&format!(
                "resuming after epoch {} (step {})",
                s.epoch, s.step
            ));
            (m, o, s)
        } else {
            (model, optim, TrainState::default())
        };
        if state.epoch >= self.config.epochs {
            return Err(Error::Training(format!(
                "{} already finished {} of {} epochs; pass --epochs N (more than {}) to train longer",
                self.dir.display(),
                state.epoch,
                self.config.epochs,
                state.epoch
            )));
        }
        let loss_fn = self.loss();
        let schedule = self.schedule();
        let mut last_scores = None;
        for epoch in state.epoch + 1..=self.config.epochs {
            let epoch_start = Instant::now();
            let order = epoch_order(
                self.train.samples().len(),
                self.config.seed,
                epoch as u64,
                true,
            );
            let batches = Batches::new(
                self.train.clone(),
                order
                    .chunks(self.config.batch_size)
                    .map(<[usize]>::to_vec)
                    .collect(),
                epoch as u64,
                ad.clone(),
            );
            observer.epoch_start(epoch, self.config.epochs, batches.len);
            let (mut loss_sum, mut seen, mut lr) = (0.0, 0usize, 0.0);
            for (i, batch) in batches.enumerate() {
                let batch = batch?;
                lr = schedule.lr_at(state.step);
                let n = batch.names.len();
                let logits = model.forward(batch.images);
                let loss = loss_fn.forward(logits, batch.masks);
                let value = loss.clone().into_scalar::<f32>() as f64;
                if !value.is_finite() {
                    let kept = if state.epoch > 0 {
                        format!("the checkpoint of epoch {} is kept", state.epoch)
                    } else {
                        "no checkpoint was written yet".to_string()
                    };
                    return Err(Error::Training(format!(
                        "the loss became {value} at epoch {epoch}, step {} (batch {} of the epoch); {kept}; lower --lr (now {}) or set --grad-clip",
                        state.step + 1,
                        i + 1,
                        self.config.lr
                    )));
                }
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optim.step(lr, model, grads);
                state.step += 1;
                loss_sum += value;
                seen += n;
                let rate = seen as f64 / epoch_start.elapsed().as_secs_f64();
                observer.batch(i + 1, loss_sum / (i + 1) as f64, rate, lr);
            }
            let train_seconds = epoch_start.elapsed().as_secs_f64();
            // One copy without autodiff serves validation and the best-model save.
            let eval_model = model.valid();
            let eval = evaluate(
                &eval_model,
                &self.val,
                self.config.val_batch_size,
                &self.device,
                &loss_fn,
                observer,
                &self.card.classes.names(),
            )?;
            let record = EpochRecord {
                epoch,
                train_loss: loss_sum / self.steps_per_epoch() as f64,
                val_loss: eval.loss,
                miou: eval.scores.miou,
                mean_dice: eval.scores.mean_dice,
                pixel_accuracy: eval.scores.pixel_accuracy,
                lr,
                seconds: epoch_start.elapsed().as_secs_f64(),
                images_per_sec: seen as f64 / train_seconds,
                class_iou: eval.scores.classes.iter().map(|c| c.iou).collect(),
            };
            let is_best = state.best.is_none_or(|(_, b)| record.miou > b);
            if is_best {
                state.best = Some((epoch, record.miou));
                save_model(&eval_model, &self.card, &self.dir.join("best.bpk"))?;
                write_json(&self.dir.join("best_scores.json"), &eval.scores)?;
            }
            state.epoch = epoch;
            state.history.push(record.clone());
            checkpoint::save(&self.dir, &model, &optim, &state)?;
            write_metrics(&self.dir, &state.history, &self.card.classes.names())?;
            if let Err(e) = super::curves::draw(&self.dir.join("curves.png"), &state.history) {
                observer.info(&format!("warning: could not draw curves.png: {e}"));
            }
            observer.epoch_end(&record, &eval.scores, is_best);
            last_scores = Some(eval.scores);
            if epoch < self.config.epochs && observer.should_stop() {
                return Ok(TrainSummary {
                    state,
                    stopped: true,
                    scores: last_scores.expect("an epoch ran"),
                    seconds: start.elapsed().as_secs_f64(),
                });
            }
        }
        let scores = last_scores.expect("at least one epoch ran");
        save_model(&model.valid(), &self.card, &self.dir.join("model.bpk"))?;
        write_json(&self.dir.join("scores.json"), &scores)?;
        Ok(TrainSummary {
            state,
            stopped: false,
            scores,
            seconds: start.elapsed().as_secs_f64(),
        })
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    write_atomic(
        path,
        serde_json::to_string_pretty(value)
            .expect("serializes")
            .as_bytes(),
    )
}

/// Rewrites `metrics.csv` from the whole history (atomically).
fn write_metrics(dir: &Path, history: &[EpochRecord], classes: &[String]) -> Result<()> {
    let mut csv = String::from(
        "epoch,train_loss,val_loss,miou,mean_dice,pixel_accuracy,lr,seconds,images_per_sec",
    );
    for c in classes {
        csv.push_str(&format!(",iou_{}", c.replace([',', '"', '\n'], "_")));
    }
    csv.push('\n');
    for r in history {
        csv.push_str(&format!(
            "{},{:.6},{:.6},{:.6},{:.6},{:.6},{:.3e},{:.2},{:.2}",
            r.epoch,
            r.train_loss,
            r.val_loss,
            r.miou,
            r.mean_dice,
            r.pixel_accuracy,
            r.lr,
            r.seconds,
            r.images_per_sec
        ));
        for iou in &r.class_iou {
            csv.push_str(
                &iou.map(|v| format!(",{v:.6}"))
                    .unwrap_or_else(|| ",".into()),
            );
        }
        csv.push('\n');
    }
    write_atomic(&dir.join("metrics.csv"), csv.as_bytes())
}

/// Evaluates `model` (without autodiff) on every sample of `dataset`: the
/// confusion matrix over all pixels, and the mean loss over batches.
///
/// Batches hold images of one size only (see [`same_size_batches`]), so an
/// image's prediction and scores do not depend on its batch-mates.
pub fn evaluate(
    model: &WsResUNet,
    dataset: &Arc<SegDataset>,
    batch_size: usize,
    device: &Device,
    loss_fn: &SegLoss,
    observer: &mut dyn Observer,
    class_names: &[String],
) -> Result<Evaluation> {
    let order = epoch_order(dataset.samples().len(), 0, 0, false);
    let plan = same_size_batches(&order, &dataset.item_sizes()?, batch_size);
    let batches = Batches::new(dataset.clone(), plan, 0, device.clone());
    observer.validation_start(batches.len);
    let mut matrix = ConfusionMatrix::new(dataset.spec().num_classes);
    let (mut loss_sum, mut count) = (0.0, 0usize);
    for (i, batch) in batches.enumerate() {
        let batch = batch?;
        let logits = model.forward(batch.images);
        loss_sum += loss_fn
            .forward(logits.clone(), batch.masks.clone())
            .into_scalar::<f32>() as f64;
        count += 1;
        matrix.add_batch(logits, batch.masks);
        observer.validation_batch(i + 1);
    }
    Ok(Evaluation {
        scores: matrix.scores(class_names),
        matrix,
        loss: loss_sum / count.max(1) as f64,
    })
}
