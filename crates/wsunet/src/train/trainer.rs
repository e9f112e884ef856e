//! The training loop: a [`Session`] describes a run (config, prepared data,
//! model card) without touching the disk; [`Session::run`] trains it, with
//! validation on the whole validation set each epoch, checkpoints, exact
//! resume and the files of the run directory (see `run_dir.rs`).
//!
//! Built from Burn's pieces (modules, autodiff, `ModuleOptimizer` with a
//! no-weight-decay parameter group, burnpack records) rather than
//! burn-train's `Learner`, whose loader order, RNG state and asynchronous
//! three-file checkpoints cannot give an exactly resumable run, and which
//! cannot stop cleanly on a non-finite loss.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::Device;

use super::checkpoint;
use super::config::{FROM_DATA, TrainConfig};
use super::confusion::SegScores;
use super::evaluate::evaluate;
use super::loader::{Batches, epoch_order};
use super::loss::SegLoss;
use super::observer::Observer;
use super::optim::optimizer;
use super::run_dir::{config_path, write_config, write_metrics};
use super::schedule::LrSchedule;
use super::state::{EpochRecord, TrainState};
use crate::card::{ModelCard, save_model};
use crate::data::prepare::prepare;
use crate::data::{Mode, SegDataset};
use crate::device::parse_device;
use crate::error::{Error, Result};
use crate::fs::write_json;

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

impl Session {
    /// Prepares a new run in `dir`, which must not hold a run already.
    pub fn new(config: TrainConfig, dir: &Path) -> Result<Session> {
        if checkpoint::exists(dir) {
            return Err(Error::RunExists {
                dir: dir.to_path_buf(),
            });
        }
        Self::open(config, dir)
    }

    /// Reopens the run in `dir` from its `config.json`, optionally with a new
    /// total number of epochs and another device (applied before the device
    /// is opened, so a run can move off a device this machine lacks).
    pub fn resume(dir: &Path, epochs: Option<usize>, device: Option<&str>) -> Result<Session> {
        let path = config_path(dir);
        if !path.is_file() || !checkpoint::exists(dir) {
            return Err(Error::NotARun {
                dir: dir.to_path_buf(),
            });
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
        // The setting the class count came from: the one to fix.
        let classes = config.class_count();
        let classes_field = classes.map_or("num_classes", |(field, _)| field);
        let p = prepare(&config.data_settings()).map_err(|e| match e {
            Error::Setting { field, reason } if field == "num_classes" => {
                Error::setting(classes_field, reason)
            }
            e => e,
        })?;
        if let Some((field, n)) = classes
            && n != p.spec.num_classes
        {
            return Err(Error::setting(
                field,
                format!(
                    "{field} is {n} but the data has {} classes; set it to {} or to 0 (from the data)",
                    p.spec.num_classes, p.spec.num_classes
                ),
            ));
        }
        if let Some(w) = &config.class_weights
            && w.len() != p.spec.num_classes
        {
            return Err(Error::setting(
                "class_weights",
                format!(
                    "class_weights has {} entries but there are {} classes",
                    w.len(),
                    p.spec.num_classes
                ),
            ));
        }
        if ![FROM_DATA, p.spec.in_channels].contains(&config.model.in_channels) {
            return Err(Error::setting(
                "model.in_channels",
                format!(
                    "model.in_channels is {} but the training images have {} channel(s); set it to {} or to 0 (from the data)",
                    config.model.in_channels, p.spec.in_channels, p.spec.in_channels
                ),
            ));
        }
        // The resolved config: what --resume reads back.
        config.num_classes = Some(p.spec.num_classes);
        config.model.num_classes = p.spec.num_classes;
        config.model.in_channels = p.spec.in_channels;
        config.normalize = Some(p.normalize.clone());
        config.size = Some(p.crop);
        let card = ModelCard {
            model: config.model.clone(),
            classes: p.classes,
            normalize: p.normalize.clone(),
            ignore_index: config.ignore_index,
            crop: Some(p.crop),
        };
        card.validate()?;
        let train = SegDataset::new(
            p.train,
            p.spec.clone(),
            p.normalize.clone(),
            Mode::Train {
                augment: config.augmentation(),
                size: p.crop,
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
            warnings: p.warnings,
            crop_note: p.crop_note,
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
        write_config(&self.dir, &self.config)?;
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
            return Err(Error::RunFinished {
                dir: self.dir.clone(),
                done: state.epoch,
                epochs: self.config.epochs,
            });
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
                    return Err(Error::NonFiniteLoss {
                        value,
                        epoch,
                        step: state.step + 1,
                        batch: i + 1,
                        checkpoint: (state.epoch > 0).then_some(state.epoch),
                        lr: self.config.lr,
                    });
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
            let last = epoch == self.config.epochs;
            let stop = !last && observer.should_stop();
            if !(last || stop || epoch.is_multiple_of(self.config.val_every)) {
                observer.epoch_trained(
                    epoch,
                    loss_sum / self.steps_per_epoch() as f64,
                    lr,
                    seen as f64 / train_seconds,
                    train_seconds,
                );
                continue;
            }
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
            if !last && (stop || observer.should_stop()) {
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
