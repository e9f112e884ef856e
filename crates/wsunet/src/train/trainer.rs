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

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::Device;

use super::checkpoint;
use super::config::{FROM_DATA, TrainConfig};
use super::confusion::SegScores;
use super::evaluate::Scorer;
use super::loader::{Batches, epoch_order};
use super::loss::SegLoss;
use super::observer::Observer;
use super::optim::optimizer;
use super::pace::{Pace, duration_words, timed};
use super::plan::{Given, Plan, VALIDATIONS};
use super::schedule::LrSchedule;
use super::state::{EpochRecord, TrainState};
use super::tensorboard;
use crate::card::{ModelCard, save_model};
use crate::data::prepare::{DataFacts, prepare};
use crate::data::{Mode, SegDataset};
use crate::device::parse_device;
use crate::error::{Error, Result};
use crate::fs::write_json;
use crate::infer::PredictConfig;
use crate::model::{WsResUNet, WsResUNetConfig};
use crate::objects::{InstanceParams, InstanceSettings, Task};
use crate::predict::objects::{score_objects, tune_extraction};
use crate::run_dir::RunDir;

/// A prepared training run: the config as given, what preparation found
/// out about the data, and the datasets. Nothing is written before
/// [`Session::run`].
pub struct Session {
    /// The run directory.
    pub dir: RunDir,
    /// The config as given (from flags and files, or the run's
    /// `config.json` on resume); never rewritten. What the data decided is
    /// in [`data`](Self::data); [`resolved_config`](Self::resolved_config)
    /// combines the two.
    pub config: TrainConfig,
    /// Classes, channels, normalization and training crop, as preparation
    /// resolved them: the one source of the model card and of
    /// `config.json`.
    pub data: DataFacts,
    /// Training samples (augmented).
    pub train: Arc<SegDataset>,
    /// Validation samples (whole images).
    pub val: Arc<SegDataset>,
    /// Samples left out, images smaller than the crop, and other warnings
    /// from preparation.
    pub warnings: Vec<String>,
    /// The compute device (without autodiff).
    pub device: Device,
    /// The plan the config came from ([`Session::planned`]); `None` for a
    /// config taken as it is.
    pub plan: Option<Plan>,
    /// The pace measured before training (a planned run).
    pub pace: Option<Pace>,
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

/// Where training stands: the model, its optimizer and the state that a
/// checkpoint saves (`state.epoch` is the last checkpointed epoch).
struct Training {
    model: WsResUNet,
    optim: ModuleOptimizer,
    state: TrainState,
}

/// What one epoch's training steps produced.
struct Trained {
    /// Mean loss over the epoch's batches.
    loss: f64,
    /// Learning rate of the last step.
    lr: f64,
    /// Training images per second.
    images_per_sec: f64,
    /// When the epoch started.
    start: Instant,
}

impl Session {
    /// Prepares a new run in `dir`, which must not hold a run already.
    pub fn new(config: TrainConfig, dir: &Path) -> Result<Session> {
        let run = RunDir::new(dir);
        if run.has_checkpoint() {
            return Err(Error::RunExists {
                dir: dir.to_path_buf(),
            });
        }
        Self::open(config, run, None)
    }

    /// Prepares a new run in `dir` with the settings that `config` leaves
    /// to the data planned from it ([`Plan`]): every field in `given` stays
    /// as `config` has it. Then measures the pace of a few steps (on a
    /// throwaway copy of the model: the run is not changed) for the expected
    /// duration, and with `config.time` sets the epochs that fit that budget.
    pub fn planned(config: TrainConfig, given: &Given, dir: &Path) -> Result<Session> {
        if config.time.is_some() && given.contains("epochs") {
            return Err(Error::setting(
                "time",
                "time and epochs both set the run's length; give one of them",
            ));
        }
        let run = RunDir::new(dir);
        if run.has_checkpoint() {
            return Err(Error::RunExists {
                dir: dir.to_path_buf(),
            });
        }
        let mut session = Self::open(config, run, Some(given))?;
        let pace = session.measure_pace()?;
        session.pace = Some(pace);
        if let Some(seconds) = session.config.time {
            session.fit_time(seconds, &pace, given);
        }
        Ok(session)
    }

    /// The plan for `config` on its data without a run: what
    /// [`Session::planned`] would train with (before a time budget).
    pub fn plan_only(config: &TrainConfig, given: &Given) -> Result<Plan> {
        config.validate()?;
        let p = prepare(&config.data_settings())?;
        let mut plan = Plan::new(config, &p, given)?;
        // The data's warnings first, as a run prints them.
        plan.warnings.splice(0..0, p.warnings);
        Ok(plan)
    }

    /// Sets the epochs (and, unless given, the validation cadence and
    /// warmup that follow from them) to fit `seconds` at `pace`.
    fn fit_time(&mut self, seconds: f64, pace: &Pace, given: &Given) {
        let per_epoch = self.steps_per_epoch();
        let val = self.val.samples().len();
        let fixed_every = given.contains("val_every").then_some(self.config.val_every);
        let every = |e: usize| fixed_every.unwrap_or((e / VALIDATIONS).max(1));
        let epochs = pace.epochs_within(seconds, per_epoch, val, every);
        let reason = format!(
            "fits the time budget of {} at the measured pace ({:.3} s a step, {:.3} s a validation image)",
            duration_words(seconds),
            pace.step_seconds,
            pace.val_image_seconds
        );
        if let Some(plan) = &mut self.plan {
            plan.config = self.config.clone();
            plan.plan_length(given, per_epoch, Some((epochs, reason)));
            self.config = plan.recorded_config();
        }
    }

    /// Times training steps (each with the loading of its batch) on
    /// the first images at the run's batch
    /// size and crop, with a throwaway copy of the model and optimizer,
    /// and the validation of the first validation image.
    pub fn measure_pace(&self) -> Result<Pace> {
        let ad = self.device.clone().autodiff();
        let mut model = self.model_config().init_seeded(&ad, self.config.seed)?;
        let mut optim = optimizer(&self.config);
        let loss_fn = self.loss();
        let n = self.train.samples().len();
        let first: Vec<usize> = (0..self.config.batch_size.min(n)).collect();
        // From one step's end to the next: loading and augmenting the batch
        // count, as they do in an epoch (on large images they can cost as
        // much as the step). The first three steps warm up.
        let mut times = Vec::new();
        let mut last = std::time::Instant::now();
        for batch in Batches::new(self.train.clone(), vec![first.clone(); 6], 1, ad.clone()) {
            let batch = batch?;
            let logits = model.clone().forward(batch.images);
            let loss = loss_fn.forward(logits, batch.masks);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(0.0, model.clone(), grads);
            times.push(last.elapsed());
            last = std::time::Instant::now();
        }
        let step_seconds = Pace::steady(&times[3..]);
        // Each epoch starts a loader whose first batch nothing overlaps.
        let (first_batch, epoch_start) = timed(|| {
            Batches::new(self.train.clone(), vec![first], 1, ad)
                .next()
                .transpose()
        });
        first_batch?;
        let epoch_start_seconds = epoch_start.as_secs_f64();
        let val_image_seconds = match self.val.samples().len() {
            0 => 0.0,
            _ => {
                let scorer = self.scorer(&model.valid())?;
                let image = self.val.item_at(0, 0)?.image;
                let mut times = Vec::new();
                for _ in 0..2 {
                    let (ran, time) = timed(|| scorer.run_image(&image, &self.device));
                    ran?;
                    times.push(time);
                }
                Pace::steady(&times)
            }
        };
        Ok(Pace {
            step_seconds,
            epoch_start_seconds,
            val_image_seconds,
        })
    }

    /// Reopens the run in `dir` from its `config.json`, optionally with a new
    /// total number of epochs and another device (applied before the device
    /// is opened, so a run can move off a device this machine lacks).
    pub fn resume(dir: &Path, epochs: Option<usize>, device: Option<&str>) -> Result<Session> {
        let run = RunDir::new(dir);
        if !run.config().is_file() || !run.has_checkpoint() {
            return Err(Error::NotARun {
                dir: dir.to_path_buf(),
            });
        }
        let stored: TrainConfig = run.read_config()?;
        let config = TrainConfig {
            epochs: epochs.unwrap_or(stored.epochs),
            device: device.map_or(stored.device.clone(), str::to_string),
            ..stored
        };
        Self::open(config, run, None)
    }

    /// Prepares the data and the datasets; with `given`, applies the plan
    /// for the fields not in it first.
    fn open(config: TrainConfig, dir: RunDir, given: Option<&Given>) -> Result<Session> {
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
        let (config, plan) = match given {
            Some(given) => {
                let plan = Plan::new(&config, &p, given)?;
                let config = plan.recorded_config();
                config.validate()?;
                (config, Some(plan))
            }
            None => (config, None),
        };
        let mut warnings = p.warnings;
        warnings.extend(plan.iter().flat_map(|p| p.warnings.clone()));
        let found = p.facts.num_classes();
        if let Some((field, n)) = classes
            && n != found
        {
            return Err(Error::setting(
                field,
                format!(
                    "{field} is {n} but the data has {found} classes; set it to {found} or to 0 (from the data)"
                ),
            ));
        }
        if let Some(w) = &config.class_weights
            && w.len() != found
        {
            return Err(Error::setting(
                "class_weights",
                format!(
                    "class_weights has {} entries but there are {found} classes",
                    w.len()
                ),
            ));
        }
        let channels = p.facts.in_channels;
        if ![FROM_DATA, channels].contains(&config.model.in_channels) {
            return Err(Error::setting(
                "model.in_channels",
                format!(
                    "model.in_channels is {} but the training images have {channels} channel(s); set it to {channels} or to 0 (from the data)",
                    config.model.in_channels
                ),
            ));
        }
        let spec = p.facts.sample_spec();
        let train = SegDataset::new(
            p.train,
            spec.clone(),
            p.facts.normalize.clone(),
            Mode::Train {
                augment: config.augmentation(),
                size: p.facts.crop,
            },
            config.seed,
        )?;
        let val = SegDataset::new(
            p.val,
            spec,
            p.facts.normalize.clone(),
            Mode::Eval,
            config.seed,
        )?;
        let session = Session {
            dir,
            config,
            data: p.facts,
            train: Arc::new(train),
            val: Arc::new(val),
            warnings,
            device,
            plan,
            pace: None,
        };
        session.card().validate()?;
        Ok(session)
    }

    /// The architecture being trained: the config's, with the channel and
    /// class counts of the data.
    pub fn model_config(&self) -> WsResUNetConfig {
        WsResUNetConfig {
            in_channels: self.data.in_channels,
            num_classes: self.data.num_classes(),
            ..self.config.model.clone()
        }
    }

    /// Validation's scorer for `model`: images as `predict` runs them with
    /// the model's card (tiles at the training crop), the validation batch
    /// size as tiles per forward.
    fn scorer(&self, model: &WsResUNet) -> Result<Scorer> {
        let config = PredictConfig {
            tile: PredictConfig::tile_for(&self.card()),
            batch_size: self.config.val_batch_size,
            ..PredictConfig::default()
        };
        Scorer::new(model, config, &self.device)
    }

    /// A predictor of `model` as `predict` runs it: the run's normalization
    /// and tile.
    fn predictor(&self, model: &WsResUNet) -> Result<crate::infer::Predictor> {
        let config = PredictConfig {
            tile: PredictConfig::tile_for(&self.card()),
            batch_size: self.config.val_batch_size,
            ..PredictConfig::default()
        };
        crate::infer::Predictor::new(
            model.clone(),
            self.data.normalize.clone(),
            self.device.clone(),
            config,
        )
    }

    /// The validation objects' AP50 of `model` (instance runs), with the
    /// card's extraction settings.
    fn object_ap50(&self, model: &WsResUNet) -> Result<Option<f64>> {
        if self.data.instances.is_none() {
            return Ok(None);
        }
        let scores = score_objects(
            &self.predictor(model)?,
            &self.card(),
            self.val.samples(),
            &mut |_, _| {},
        )?;
        Ok(Some(scores.ap50()))
    }

    /// The card of `model`: for an instance run, with the extraction's
    /// thresholds chosen on the validation images ([`tune_extraction`]).
    fn tuned_card(&self, model: &WsResUNet, observer: &mut dyn Observer) -> Result<ModelCard> {
        let mut card = self.card();
        let Some(settings) = &mut card.instances else {
            return Ok(card);
        };
        if let Some((params, reason)) =
            tune_extraction(&self.predictor(model)?, &self.card(), self.val.samples())?
        {
            let min_area = self
                .data
                .instances
                .as_ref()
                .map(|b| b.min_area_reason.clone());
            settings.extraction = params;
            settings.extraction_reason = format!(
                "{reason}; minimum area {} px: {}",
                params.min_area,
                min_area.unwrap_or_default()
            );
            observer.info(&format!("objects: {reason}"));
        }
        Ok(card)
    }

    /// The card saved with every model of this run.
    pub fn card(&self) -> ModelCard {
        ModelCard {
            model: self.model_config(),
            classes: self.data.classes.clone(),
            normalize: self.data.normalize.clone(),
            ignore_index: self.data.ignore_index,
            crop: Some(self.data.crop),
            pixel_size: self.data.pixel_size,
            task: if self.data.instances.is_some() {
                Task::Instances
            } else {
                Task::Semantic
            },
            instances: self.data.instances.as_ref().map(|b| InstanceSettings {
                boundary: b.width,
                boundary_reason: b.reason.clone(),
                extraction: InstanceParams {
                    min_area: b.min_area,
                    ..InstanceParams::default()
                },
                extraction_reason: format!(
                    "thresholds {} (interior) and {} (object), the defaults; minimum area {} px: {}",
                    InstanceParams::default().interior_threshold,
                    InstanceParams::default().region_threshold,
                    b.min_area,
                    b.min_area_reason
                ),
            }),
        }
    }

    /// The config with what the data decided written in (class and channel
    /// counts, normalization, crop): the run's `config.json`, from which
    /// `--resume` prepares the same run again. The class count is stated
    /// once, as `model.num_classes`.
    pub fn resolved_config(&self) -> TrainConfig {
        TrainConfig {
            num_classes: None,
            model: self.model_config(),
            normalize: Some(self.data.normalize.clone()),
            crop: Some(self.data.crop),
            ..self.config.clone()
        }
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
        let mut run = self.start(observer)?;
        let mut epoch = run.state.epoch;
        loop {
            epoch += 1;
            let last = epoch == self.config.epochs;
            let trained;
            (run, trained) = self.train_epoch(epoch, run, observer)?;
            // Asked once an epoch: a stop request validates and checkpoints
            // an epoch that `val_every` would skip.
            let scheduled = last || epoch.is_multiple_of(self.config.val_every);
            let stop_early = !scheduled && observer.should_stop();
            if !(scheduled || stop_early) {
                observer.epoch_trained(
                    epoch,
                    trained.loss,
                    trained.lr,
                    trained.images_per_sec,
                    trained.start.elapsed().as_secs_f64(),
                );
                continue;
            }
            let scores = self.end_epoch(epoch, &mut run, trained, observer)?;
            let stopped = stop_early || (!last && observer.should_stop());
            if last {
                let model = run.model.valid();
                let card = self.tuned_card(&model, observer)?;
                save_model(&model, &card, &self.dir.final_model())?;
                write_json(&self.dir.scores(), &scores)?;
                if self.data.instances.is_some() {
                    let (best, _) = crate::card::load_model(&self.dir.best_model(), &self.device)?;
                    let card = self.tuned_card(&best, observer)?;
                    save_model(&best, &card, &self.dir.best_model())?;
                }
            }
            if last || stopped {
                return Ok(TrainSummary {
                    state: run.state,
                    stopped,
                    scores,
                    seconds: start.elapsed().as_secs_f64(),
                });
            }
        }
    }

    /// Writes the resolved config and returns the model, optimizer and
    /// state to start from: fresh, or the latest checkpoint's.
    fn start(&self, observer: &mut dyn Observer) -> Result<Training> {
        for w in &self.warnings {
            observer.info(&format!("warning: {w}"));
        }
        let ad = self.device.clone().autodiff();
        let model = self.model_config().init_seeded(&ad, self.config.seed)?;
        let optim = optimizer(&self.config);
        let run = if self.dir.has_checkpoint() {
            let (model, optim, state) = checkpoint::load_latest(&self.dir, model, optim)?;
            observer.info(&format!(
                "resuming after epoch {} (step {})",
                state.epoch, state.step
            ));
            Training {
                model,
                optim,
                state,
            }
        } else {
            Training {
                model,
                optim,
                state: TrainState::default(),
            }
        };
        // A BatchNorm model cannot train on a batch with one value per
        // channel; say so before the first step, for full batches and the
        // epoch's last, shorter one.
        let (n, bs, config) = (
            self.train.samples().len(),
            self.config.batch_size,
            self.model_config(),
        );
        config.check_batch(bs.min(n.max(1)), self.data.crop)?;
        if n > bs && n % bs != 0 {
            config.check_batch(n % bs, self.data.crop)?;
        }
        if run.state.epoch >= self.config.epochs {
            return Err(Error::RunFinished {
                dir: self.dir.path().to_path_buf(),
                done: run.state.epoch,
                epochs: self.config.epochs,
            });
        }
        // The resolved config is what --resume reads; written only now that
        // training starts (after the checks above, so a refused resume leaves
        // the run's config.json as it was).
        self.dir.write_config(&self.resolved_config())?;
        Ok(run)
    }

    /// One pass over the training set in the epoch's order.
    fn train_epoch(
        &self,
        epoch: usize,
        mut run: Training,
        observer: &mut dyn Observer,
    ) -> Result<(Training, Trained)> {
        let start = Instant::now();
        let (loss_fn, schedule) = (self.loss(), self.schedule());
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
            self.device.clone().autodiff(),
        );
        observer.epoch_start(epoch, self.config.epochs, batches.len);
        let (mut loss_sum, mut steps, mut seen, mut lr) = (0.0, 0usize, 0usize, 0.0);
        let model_config = self.model_config();
        for batch in batches {
            let batch = batch?;
            lr = schedule.lr_at(run.state.step);
            let n = batch.names.len();
            let [_, _, h, w] = batch.images.dims();
            model_config.check_batch(n, [h, w])?;
            let logits = run.model.forward(batch.images);
            let loss = loss_fn.forward(logits, batch.masks);
            let value = loss.clone().into_scalar::<f32>() as f64;
            if !value.is_finite() {
                return Err(Error::NonFiniteLoss {
                    value,
                    epoch,
                    step: run.state.step + 1,
                    batch: steps + 1,
                    checkpoint: (run.state.epoch > 0).then_some(run.state.epoch),
                    lr: self.config.lr,
                });
            }
            let grads = GradientsParams::from_grads(loss.backward(), &run.model);
            run.model = run.optim.step(lr, run.model, grads);
            run.state.step += 1;
            steps += 1;
            loss_sum += value;
            seen += n;
            let rate = seen as f64 / start.elapsed().as_secs_f64();
            observer.batch(steps, loss_sum / steps as f64, rate, lr);
        }
        let trained = Trained {
            loss: loss_sum / steps.max(1) as f64,
            lr,
            images_per_sec: seen as f64 / start.elapsed().as_secs_f64(),
            start,
        };
        Ok((run, trained))
    }

    /// Validates the epoch's model and writes what the run keeps of it: the
    /// best model (when it is), the checkpoint, the metrics and the curves.
    fn end_epoch(
        &self,
        epoch: usize,
        run: &mut Training,
        trained: Trained,
        observer: &mut dyn Observer,
    ) -> Result<SegScores> {
        // One copy without autodiff serves validation and the best-model save.
        let eval_model = run.model.valid();
        let names = self.data.classes.names();
        let eval = self.scorer(&eval_model)?.evaluate(
            &self.val,
            self.config.val_batch_size,
            &self.loss(),
            observer,
            &names,
        )?;
        let ap50 = self.object_ap50(&eval_model)?;
        let record = EpochRecord {
            epoch,
            train_loss: trained.loss,
            val_loss: eval.loss,
            miou: eval.scores.miou,
            mean_dice: eval.scores.mean_dice,
            pixel_accuracy: eval.scores.pixel_accuracy,
            lr: trained.lr,
            seconds: trained.start.elapsed().as_secs_f64(),
            images_per_sec: trained.images_per_sec,
            class_iou: eval.scores.classes.iter().map(|c| c.iou).collect(),
            ap50,
        };
        let state = &mut run.state;
        // An instance run keeps the model whose objects score best.
        let score = record.ap50.unwrap_or(record.miou);
        let is_best = state.best.is_none_or(|(_, b)| score > b);
        if is_best {
            state.best = Some((epoch, score));
            save_model(&eval_model, &self.card(), &self.dir.best_model())?;
            write_json(&self.dir.best_scores(), &eval.scores)?;
        }
        state.epoch = epoch;
        state.history.push(record.clone());
        checkpoint::save(&self.dir, &run.model, &run.optim, state)?;
        self.dir
            .write_metrics(&EpochRecord::csv(&state.history, &names))?;
        if let Err(e) = super::curves::draw(&self.dir.curves(), &state.history) {
            observer.info(&format!("warning: could not draw curves.png: {e}"));
        }
        if (epoch.is_multiple_of(tensorboard::OVERLAY_EVERY) || epoch == self.config.epochs)
            && let Err(e) = tensorboard::save_overlays(
                &self.dir,
                epoch,
                &eval_model,
                &self.val,
                &self.data.normalize,
                &self.data.classes,
            )
        {
            observer.info(&format!(
                "warning: could not draw the validation overlays: {e}"
            ));
        }
        tensorboard::write_events(&self.dir, &state.history, &names, &|e| {
            tensorboard::saved_overlays(&self.dir, e)
        })?;
        observer.epoch_end(&record, &eval.scores, is_best);
        Ok(eval.scores)
    }
}
