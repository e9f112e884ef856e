//! The library's error type: every failure a user can cause (a bad config, an
//! input too small, an unreadable weight file) is a value of [`Error`] with a
//! message that names the problem and the fix in the library's own terms
//! (config fields such as `epochs` or `skip_bad`, never command-line flags:
//! the `wsunet` command adds those). Callers match on the variants; I/O
//! failures keep their [`std::io::Error`] as the source.

use std::path::PathBuf;

/// Errors returned by the wsunet library. New kinds may be added in any
/// release, so a `match` needs a `_` arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A model config that cannot be built (a width of 0, four depths
    /// instead of five, …). `field` is its JSON name, e.g. `widths`.
    #[error("invalid model config: {reason}")]
    Model {
        /// The config field to fix.
        field: String,
        /// What is wrong, naming the field and a valid value.
        reason: String,
    },

    /// A setting of a training, prediction or benchmark config that cannot
    /// be used. `field` is its JSON name, e.g. `epochs`, `augment.scale` or
    /// `model.in_channels`.
    #[error("{reason}")]
    Setting {
        /// The config field to fix.
        field: String,
        /// What is wrong, naming the field and a valid value.
        reason: String,
    },

    /// A JSON document that is not valid JSON or not the expected config;
    /// the source names the line, column and field.
    #[error("{}{error}", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    Json {
        /// The file read, when the text came from one.
        path: Option<PathBuf>,
        /// The parser's error.
        #[source]
        error: serde_json::Error,
    },

    /// An image whose channel count differs from the model's input.
    #[error("invalid input: the image has {channels} channels but the model expects {expected}")]
    InputChannels {
        /// Channels of the image.
        channels: usize,
        /// `in_channels` of the model.
        expected: usize,
    },

    /// An image smaller than the network's minimum
    /// ([`MIN_INPUT_SIZE`](crate::model::MIN_INPUT_SIZE) pixels a side).
    #[error(
        "invalid input: the image is {height}×{width}; the model needs at least {min}×{min} (five stride-2 stages)"
    )]
    InputTooSmall {
        /// Image height.
        height: usize,
        /// Image width.
        width: usize,
        /// The smallest height and width accepted.
        min: usize,
    },

    /// An image with no pixels.
    #[error("invalid input: the image is empty")]
    EmptyImage,

    /// A device name that is unknown or whose backend is not compiled in.
    #[error("invalid device `{name}`: {reason}")]
    Device {
        /// The device string as given.
        name: String,
        /// Why it cannot be used.
        reason: String,
    },

    /// An output folder whose `predict.json` records another model or other
    /// settings than this run's (see [`provenance`](crate::provenance)).
    #[error(
        "{} was written for other predictions than these: {}; predict into another folder, or overwrite its outputs",
        path.display(),
        differences.join("; ")
    )]
    PredictedBy {
        /// The record in the folder.
        path: PathBuf,
        /// What differs, one phrase each.
        differences: Vec<String>,
    },

    /// An output folder that already holds this run's output files but no
    /// record of what produced them.
    #[error(
        "{} already holds {example} but no predict.json saying which model and settings produced it; predict into another folder, or overwrite its outputs",
        dir.display()
    )]
    UnrecordedOutputs {
        /// The output folder.
        dir: PathBuf,
        /// One of the files found.
        example: String,
    },

    /// A prediction run in which images failed (each reported as it
    /// failed) or were lost to a worker thread that stopped.
    #[error("{}", images_failed(failed, *lost))]
    ImagesFailed {
        /// The inputs that failed.
        failed: Vec<PathBuf>,
        /// Images neither predicted nor failed: a worker thread stopped.
        lost: usize,
    },

    /// A worker thread of a prediction run stopped (a bug); the images it
    /// held are counted as lost.
    #[error("the {what} thread stopped")]
    Worker {
        /// Which thread.
        what: String,
    },

    /// A weight file that cannot be read or does not fit the model.
    #[error("{}: {reason}", path.display())]
    Weights {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A data file that cannot be used: unreadable, the wrong size, invalid
    /// mask values, …
    #[error("{}: {reason}", path.display())]
    Data {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong and how to fix it.
        reason: String,
    },

    /// A dataset path that is not a folder.
    #[error("{} is not a folder", path.display())]
    NotAFolder {
        /// The path given.
        path: PathBuf,
    },

    /// A folder the dataset layout needs and lacks.
    #[error(
        "{} is missing; a dataset folder holds images/ and masks/ (or train/ and val/ with both, or Pascal VOC's folders)",
        path.display()
    )]
    MissingFolder {
        /// The folder expected.
        path: PathBuf,
    },

    /// A dataset with `train/` but no `val/`.
    #[error(
        "{} has train/ but no val/; add val/images and val/masks, or put everything in images/ and masks/ for a holdout split",
        root.display()
    )]
    NoValFolder {
        /// The dataset folder.
        root: PathBuf,
    },

    /// A training or validation split without samples.
    #[error("{}: the {} split is empty{}", root.display(), if *validation { "validation" } else { "training" }, match (skipped, validation) {
        (true, _) => " once the unusable samples are left out",
        (false, true) => "; add val/, or set val_fraction above 0",
        (false, false) => "",
    })]
    EmptySplit {
        /// The dataset folder.
        root: PathBuf,
        /// The validation split (else the training split).
        validation: bool,
        /// Whether samples were left out under `skip_bad` (else the split
        /// had none to begin with).
        skipped: bool,
    },

    /// A dataset built from, or statistics asked of, no samples at all.
    #[error("there are no samples to {purpose}")]
    NoSamples {
        /// What the samples were for, e.g. `compute statistics from`.
        purpose: &'static str,
    },

    /// Samples or files that cannot be used while `skip_bad` is off.
    #[error(
        "{summary}:\n  {}\nfix them, or set skip_bad to leave them out",
        listing(problems, MAX_PROBLEMS, "\n  ")
    )]
    BadSamples {
        /// What is unusable, e.g. `3 of 40 samples cannot be used`.
        summary: String,
        /// Each problem, naming its file.
        problems: Vec<String>,
    },

    /// A new run was asked for in a directory that holds one.
    #[error("{} already holds a training run; resume it, or choose another run directory", dir.display())]
    RunExists {
        /// The run directory.
        dir: PathBuf,
    },

    /// A run to resume was asked for where there is none.
    #[error("{} is not a run directory with a checkpoint (no config.json or checkpoints/latest.json); train first, or check the path", dir.display())]
    NotARun {
        /// The directory given.
        dir: PathBuf,
    },

    /// A resumed run has already trained all its epochs.
    #[error("{} has already trained {done} epochs (epochs is {epochs}); set epochs above {done} to train longer", dir.display())]
    RunFinished {
        /// The run directory.
        dir: PathBuf,
        /// Epochs trained.
        done: usize,
        /// Epochs asked for.
        epochs: usize,
    },

    /// The training loss became NaN or infinite.
    #[error(
        "the loss became {value} at epoch {epoch}, step {step} (batch {batch} of the epoch); {}; lower lr (now {lr}) or set grad_clip",
        match checkpoint {
            Some(e) => format!("the checkpoint of epoch {e} is kept"),
            None => "no checkpoint was written yet".to_string(),
        }
    )]
    NonFiniteLoss {
        /// The loss value.
        value: f64,
        /// Epoch, from 1.
        epoch: usize,
        /// Optimizer step, from 1.
        step: usize,
        /// Batch of the epoch, from 1.
        batch: usize,
        /// The last checkpointed epoch, if any.
        checkpoint: Option<usize>,
        /// The peak learning rate.
        lr: f64,
    },

    /// A state dict whose keys or shapes are not those of a WSResUNet.
    #[error("{reason}")]
    StateDict {
        /// The state-dict key concerned.
        key: String,
        /// What is missing or wrong.
        reason: String,
    },

    /// A checkpoint of a run that cannot be written or read back.
    #[error("{}: {reason}", path.display())]
    Checkpoint {
        /// The checkpoint file or folder.
        path: PathBuf,
        /// What failed, with the underlying error's message.
        reason: String,
        /// The underlying error (I/O, JSON, Burn's record store), if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// A worker of the batch loader failed: it panicked preparing a sample
    /// or stacking a batch, or stopped before its last batch.
    #[error("{task} failed: {message}")]
    Loader {
        /// What the worker was doing, naming the samples.
        task: String,
        /// The worker's panic message, or why it stopped.
        message: String,
    },

    /// A model that cannot be written in the requested file format: a layer
    /// setting or number type the format's graph would not reproduce
    /// exactly. Nothing is written.
    #[error("cannot export to {format}: {reason}")]
    Export {
        /// The format, e.g. `ONNX`.
        format: &'static str,
        /// What the model has that the export does not support.
        reason: String,
    },

    /// A file-system error, with the file it concerns and the underlying
    /// error as its source.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        error: std::io::Error,
    },
}

impl Error {
    /// An [`Error::Model`] for `field`.
    pub(crate) fn model(field: &str, reason: impl Into<String>) -> Self {
        Error::Model {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// An [`Error::Setting`] for `field`.
    pub(crate) fn setting(field: &str, reason: impl Into<String>) -> Self {
        Error::Setting {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The config field to fix, for [`Error::Model`] and [`Error::Setting`].
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::Model { field, .. } | Error::Setting { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// How many problems an error lists before summarizing.
pub(crate) const MAX_PROBLEMS: usize = 20;

/// The first `max` of `items` joined by `sep`, and how many more there
/// are: the one way messages list problems, keys or files.
pub(crate) fn listing(items: &[String], max: usize, sep: &str) -> String {
    let mut s = items
        .iter()
        .take(max)
        .cloned()
        .collect::<Vec<_>>()
        .join(sep);
    if items.len() > max {
        s.push_str(&format!("{sep}… and {} more", items.len() - max));
    }
    s
}

/// Shorthand for results with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The message of [`Error::ImagesFailed`].
fn images_failed(failed: &[PathBuf], lost: usize) -> String {
    let mut parts = Vec::new();
    if lost > 0 {
        parts.push(format!(
            "{lost} image(s) were not predicted: a worker thread stopped (see above); run again to predict them"
        ));
    }
    if !failed.is_empty() {
        let list: Vec<String> = failed.iter().map(|p| p.display().to_string()).collect();
        parts.push(format!(
            "{} image(s) failed (listed above): {}",
            failed.len(),
            listing(&list, MAX_PROBLEMS, ", ")
        ));
    }
    parts.join("; ")
}
