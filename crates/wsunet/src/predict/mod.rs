//! Prediction into files: the use case that `wsunet predict` and Python's
//! `Model.predict_file` both run, so the two write the same files by
//! construction.
//!
//! A [`PredictJob`] lists its inputs (files, and folders' images), pairs
//! each with its output names, takes its share of a sharded run, claims the
//! output folder with a [`Provenance`] record (refusing one that another
//! model or other settings predicted into), skips images whose outputs are
//! complete, and predicts the rest: images read on one thread and written
//! on another while the network runs on the caller's, TIFFs streamed into
//! tiled, pyramidal TIFFs. An image that fails is reported and skipped; the
//! rest still run. Clients hear what happens through a [`PredictObserver`]
//! (progress bars, log lines) and get a [`JobReport`].
//!
//! ```no_run
//! use std::path::{Path, PathBuf};
//! use wsunet::infer::{PredictConfig, Predictor};
//! use wsunet::predict::{PredictJob, SavedModel, Silent};
//!
//! let device = wsunet::parse_device("cpu").unwrap();
//! let model = SavedModel::load(Path::new("runs/run-001"), &device).unwrap();
//! let predictor = model.predictor(PredictConfig::default(), device).unwrap();
//! let job = PredictJob::new("predictions");
//! let report = job.run(&predictor, &model, &[PathBuf::from("images")], &Silent).unwrap();
//! report.check().unwrap();
//! ```

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use burn::tensor::Device;

use crate::card::{ModelCard, load_model, weights_digest};
use crate::error::{Error, Result};
use crate::infer::{PredictConfig, Predictor, ProbsType, Progress};
use crate::objects::Task;
use crate::provenance::{Claim, OutputKind, Outputs, PROVENANCE_FILE, Provenance, Settings};
use crate::raster::Compression;
use crate::shard::Shard;

mod inputs;
pub mod objects;
mod pipeline;
pub mod space;
mod summary;

pub use inputs::{kind_of, list_inputs, plan_outputs};
pub use summary::ImageDone;

/// How far apart a TIFF's pixel size and the model's training pixel size
/// may be (relative difference) before prediction warns about it.
pub const PIXEL_SIZE_TOLERANCE: f64 = 0.1;

/// The factor images are resampled by for the network.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    /// This factor for every image (1: as they are; 2: pixels half the
    /// size, for a model trained at twice the input's resolution).
    Factor(f64),
    /// Per TIFF input, its pixel size over the model's training pixel
    /// size (both must be stated).
    Auto,
}

impl Default for Scale {
    fn default() -> Self {
        Scale::Factor(1.0)
    }
}

impl FromStr for Scale {
    type Err = Error;

    /// `auto`, or a positive number.
    fn from_str(text: &str) -> Result<Scale> {
        if text == "auto" {
            return Ok(Scale::Auto);
        }
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() && f > 0.0 => Ok(Scale::Factor(f)),
            _ => Err(Error::setting(
                "scale",
                format!("scale {text} is neither a positive number nor auto"),
            )),
        }
    }
}

impl std::fmt::Display for Scale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scale::Factor(x) => write!(f, "{x}"),
            Scale::Auto => f.write_str("auto"),
        }
    }
}

impl Scale {
    /// As [`Settings::scale`] records it: `None` for auto.
    fn recorded(self) -> Option<f64> {
        match self {
            Scale::Factor(f) => Some(f),
            Scale::Auto => None,
        }
    }
}

/// A model as loaded from its file, with what a prediction record names.
#[derive(Debug, Clone)]
pub struct SavedModel {
    /// The path it was loaded from (a run directory or a model file).
    pub path: PathBuf,
    /// Its card.
    pub card: ModelCard,
    /// The digest of its weights ([`weights_digest`]).
    pub digest: String,
    /// The network (not folded).
    pub model: crate::WsResUNet,
}

impl SavedModel {
    /// Loads the model at `path` (a run directory, or a model's `.bpk` or
    /// `.json`) onto `device`.
    pub fn load(path: &Path, device: &Device) -> Result<SavedModel> {
        let (model, card) = load_model(path, device)?;
        let digest = weights_digest(&model)?;
        Ok(SavedModel {
            path: path.to_path_buf(),
            card,
            digest,
            model,
        })
    }

    /// A predictor of this model on `device` with `config`.
    pub fn predictor(&self, config: PredictConfig, device: Device) -> Result<Predictor> {
        Predictor::new(
            self.model.clone(),
            self.card.normalize.clone(),
            device,
            config,
        )
    }
}

/// Progress on the image being predicted.
#[derive(Debug, Clone, Copy)]
pub struct ImageProgress {
    /// PNG-style (tiles of an image in memory) or a streamed TIFF.
    pub kind: OutputKind,
    /// Width of the image (of the level predicted).
    pub width: usize,
    /// Tiles and rows done.
    pub progress: Progress,
    /// Seconds since the image started.
    pub seconds: f64,
}

/// What a client hears while a job runs. Every method has a default that
/// does nothing. Called from the job's threads, so it is `Sync`.
pub trait PredictObserver: Sync {
    /// A line about the run: its share of a sharded run, images skipped,
    /// temporary files removed, a record replaced.
    fn info(&self, _line: &str) {}
    /// `images` inputs are about to be predicted.
    fn started(&self, _images: usize) {}
    /// A warning about one input (its pixel size differs from the
    /// model's).
    fn warning(&self, _line: &str) {}
    /// Progress on `input`, after each batch of tiles.
    fn progress(&self, _input: &Path, _progress: &ImageProgress) {}
    /// `input`'s network pass is over (its outputs may still be written).
    fn predicted(&self, _input: &Path) {}
    /// `input`'s outputs are written.
    fn done(&self, _image: &ImageDone) {}
    /// `input` failed and was skipped.
    fn failed(&self, _input: &Path, _error: Error) {}
}

/// An observer that hears nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl PredictObserver for Silent {}

/// Predicting inputs into an output folder.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictJob {
    /// The output folder (created if missing).
    pub out: PathBuf,
    /// The files written per image beside the mask.
    pub outputs: Outputs,
    /// The resolution level of TIFF inputs (0: full resolution).
    pub level: usize,
    /// How TIFF outputs are compressed.
    pub compression: Compression,
    /// How TIFF probabilities are stored.
    pub probs_type: ProbsType,
    /// The factor images are resampled by.
    pub scale: Scale,
    /// This run's share of the inputs.
    pub shard: Shard,
    /// Predict every image again, replacing outputs that are there (and a
    /// record of other predictions); otherwise complete images are
    /// skipped and a folder of other predictions is refused.
    pub overwrite: bool,
}

/// What a job did.
#[derive(Debug, Clone, Default)]
pub struct JobReport {
    /// Inputs listed.
    pub total: usize,
    /// Inputs in this shard.
    pub selected: usize,
    /// Inputs whose outputs were complete, so skipped.
    pub skipped: usize,
    /// Inputs predicted now.
    pub todo: usize,
    /// The images predicted and written.
    pub done: Vec<ImageDone>,
    /// The inputs that failed.
    pub failed: Vec<PathBuf>,
    /// Seconds the predictions took.
    pub seconds: f64,
}

impl JobReport {
    /// Inputs that were neither done nor failed: a worker thread stopped.
    pub fn lost(&self) -> usize {
        self.todo - self.done.len() - self.failed.len()
    }

    /// An error when an image failed or was lost.
    pub fn check(&self) -> Result<()> {
        if self.failed.is_empty() && self.lost() == 0 {
            Ok(())
        } else {
            Err(Error::ImagesFailed {
                failed: self.failed.clone(),
                lost: self.lost(),
            })
        }
    }
}

impl PredictJob {
    /// A job writing masks alone into `out`, every other setting the
    /// library's default.
    pub fn new(out: impl Into<PathBuf>) -> PredictJob {
        PredictJob {
            out: out.into(),
            outputs: Outputs::default(),
            level: 0,
            compression: Compression::default(),
            probs_type: ProbsType::default(),
            scale: Scale::default(),
            shard: Shard::default(),
            overwrite: false,
        }
    }

    /// Checks the settings; the message names the setting to fix.
    pub fn validate(&self) -> Result<()> {
        if let Some(alpha) = self.outputs.overlay
            && !(0.0..=1.0).contains(&alpha)
        {
            return Err(Error::setting(
                "alpha",
                format!("the overlay opacity alpha {alpha} is outside [0, 1]"),
            ));
        }
        if let Scale::Factor(f) = self.scale {
            PredictConfig {
                scale: f,
                ..PredictConfig::default()
            }
            .validate()?;
        }
        Ok(())
    }

    /// This job for a model with `card`: an instance model always writes
    /// its objects.
    pub fn for_model(&self, card: &ModelCard) -> PredictJob {
        let mut job = self.clone();
        job.outputs.instances |= card.task == Task::Instances;
        job
    }

    /// The predictor this job runs: `predictor`'s settings with the job's
    /// scale factor and uncertainty output.
    fn predictor(&self, predictor: &Predictor) -> Result<Predictor> {
        let config = PredictConfig {
            scale: match self.scale {
                Scale::Factor(f) => f,
                Scale::Auto => 1.0,
            },
            uncertainty: self.outputs.uncertainty,
            ..predictor.config().clone()
        };
        predictor.with_config(config)
    }

    /// The record of this job with `model` and `config` (what
    /// `predict.json` holds).
    pub fn provenance(&self, model: &SavedModel, config: &PredictConfig) -> Result<Provenance> {
        Provenance::new(
            &model.path,
            model.digest.clone(),
            &model.card,
            Settings {
                tile: config.tile,
                overlap: config.overlap,
                tta: config.tta,
                outputs: self.outputs,
                level: self.level,
                skip_empty: config.skip_empty,
                compression: self.compression,
                probs_type: self.probs_type,
                scale: self.scale.recorded(),
            },
        )
    }

    /// Predicts `inputs` (image files, and folders whose images are taken
    /// in name order) with `predictor` (a predictor of `model`; its scale
    /// and uncertainty settings are the job's) into [`out`](Self::out).
    ///
    /// Errors are for the job as a whole (bad settings, no inputs, an
    /// output folder of other predictions); an image that fails is told to
    /// `observer` and listed in the report ([`JobReport::check`]).
    pub fn run(
        &self,
        predictor: &Predictor,
        model: &SavedModel,
        inputs: &[PathBuf],
        observer: &dyn PredictObserver,
    ) -> Result<JobReport> {
        if model.card.task == Task::Instances && !self.outputs.instances {
            return self
                .for_model(&model.card)
                .run(predictor, model, inputs, observer);
        }
        self.validate()?;
        let predictor = self.predictor(predictor)?;
        let files = list_inputs(inputs)?;
        let all = plan_outputs(&files, &self.out)?;
        let total = all.len();
        let jobs = self.shard.select(all);
        let mut report = JobReport {
            total,
            selected: jobs.len(),
            ..JobReport::default()
        };
        if jobs.is_empty() {
            observer.info(&format!(
                "shard {}: no images in this share of {total} input(s); nothing to do",
                self.shard
            ));
            return Ok(report);
        }
        let record = self.provenance(model, predictor.config())?;
        self.claim(&record, &jobs, observer)?;
        let share = if self.shard.count > 1 {
            format!("shard {}: {} of {total} input(s); ", self.shard, jobs.len())
        } else {
            String::new()
        };
        let todo = self.unfinished(jobs, &share, observer)?;
        report.skipped = report.selected - todo.len();
        report.todo = todo.len();
        observer.started(todo.len());
        let started = Instant::now();
        let (done, failed) = pipeline::run(self, &predictor, &model.card, todo, observer);
        report.done = done;
        report.failed = failed;
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }

    /// Creates the output folder and records there what predicts into it,
    /// refusing a folder that another model or other settings predicted
    /// into (unless [`overwrite`](Self::overwrite)).
    fn claim(
        &self,
        record: &Provenance,
        jobs: &[(PathBuf, String)],
        observer: &dyn PredictObserver,
    ) -> Result<()> {
        std::fs::create_dir_all(&self.out).map_err(|error| Error::Io {
            path: self.out.clone(),
            error,
        })?;
        let own: Vec<String> = jobs
            .iter()
            .flat_map(|(input, stem)| self.outputs.files(stem, kind_of(input)))
            .collect();
        if record.claim(&self.out, &own, self.overwrite)? == Claim::Replaced {
            observer.info(&format!(
                "{} recorded other predictions; replaced (overwrite)",
                self.out.join(PROVENANCE_FILE).display()
            ));
        }
        Ok(())
    }

    /// The jobs whose outputs are not all there yet (all of them with
    /// `overwrite`), saying how many are skipped; `share` prefixes the
    /// line in a sharded run. Temporary files that a killed run left for
    /// these jobs' outputs are removed (each image belongs to one shard,
    /// so no live writer owns them).
    fn unfinished(
        &self,
        jobs: Vec<(PathBuf, String)>,
        share: &str,
        observer: &dyn PredictObserver,
    ) -> Result<Vec<(PathBuf, String)>> {
        let (todo, skipped): (Vec<_>, Vec<_>) = jobs.into_iter().partition(|(input, stem)| {
            self.overwrite || !self.outputs.complete(&self.out, stem, kind_of(input))
        });
        let targets: std::collections::HashSet<String> = todo
            .iter()
            .flat_map(|(input, stem)| self.outputs.files(stem, kind_of(input)))
            .collect();
        let stale = crate::fs::remove_stale_temps(&self.out, |t| targets.contains(t))?;
        if stale > 0 {
            observer.info(&format!(
                "{share}removed {stale} temporary file(s) an interrupted run left in {}",
                self.out.display()
            ));
        }
        if !skipped.is_empty() {
            observer.info(&format!(
                "{share}skipped {} image(s) whose outputs are complete (overwrite predicts them again)",
                skipped.len()
            ));
        } else if !share.is_empty() {
            observer.info(share.trim_end_matches("; "));
        }
        Ok(todo)
    }

    /// The files of `input` (whose name stem is `stem`) by kind, as
    /// [`Outputs::named_files`] names them, in the output folder.
    pub fn files_of(&self, input: &Path, stem: &str) -> Vec<(&'static str, PathBuf)> {
        self.outputs
            .named_files(stem, kind_of(input))
            .into_iter()
            .map(|(kind, name)| (kind, self.out.join(name)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_parses_factors_and_auto_and_refuses_the_rest() {
        assert_eq!("auto".parse::<Scale>().unwrap(), Scale::Auto);
        assert_eq!("2".parse::<Scale>().unwrap(), Scale::Factor(2.0));
        assert_eq!("0.5".parse::<Scale>().unwrap().to_string(), "0.5");
        for bad in ["0", "-1", "nan", "inf", "two", ""] {
            let e = bad.parse::<Scale>().unwrap_err();
            assert!(
                matches!(&e, Error::Setting { field, .. } if field == "scale"),
                "{e}"
            );
        }
    }

    #[test]
    fn settings_are_checked_by_field() {
        let mut job = PredictJob::new("out");
        job.validate().unwrap();
        job.outputs.overlay = Some(1.5);
        let e = job.validate().unwrap_err();
        assert!(
            matches!(&e, Error::Setting { field, .. } if field == "alpha"),
            "{e}"
        );
        assert!(e.to_string().contains("1.5 is outside [0, 1]"), "{e}");
        job.outputs.overlay = Some(0.5);
        job.scale = Scale::Factor(40.0);
        let e = job.validate().unwrap_err();
        assert!(
            matches!(&e, Error::Setting { field, .. } if field == "scale"),
            "{e}"
        );
    }

    #[test]
    fn a_report_with_failures_or_lost_images_is_an_error() {
        let mut report = JobReport {
            todo: 2,
            ..JobReport::default()
        };
        assert_eq!(report.lost(), 2);
        assert!(report.check().is_err());
        report.failed = vec![PathBuf::from("a.png"), PathBuf::from("b.png")];
        let e = report.check().unwrap_err().to_string();
        assert!(
            e.contains("2 image(s) failed") && e.contains("a.png, b.png"),
            "{e}"
        );
        report.failed.clear();
        report.todo = 0;
        report.check().unwrap();
    }
}
