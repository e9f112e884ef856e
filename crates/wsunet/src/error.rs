//! The library's error type: every failure a user can cause (a bad config, an
//! input too small, an unreadable weight file) is a value of [`Error`] with a
//! message that names the problem and the fix in the library's own terms
//! (config fields such as `epochs` or `skip_bad`, never command-line flags:
//! the `wsunet` command adds those). Callers match on the variants; I/O
//! failures keep their [`std::io::Error`] as the source.

use std::path::PathBuf;

/// Errors returned by the wsunet library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model or layer configuration that cannot be built.
    #[error("invalid model config: {0}")]
    Config(String),

    /// An input tensor the model cannot process.
    #[error("invalid input: {0}")]
    Input(String),

    /// A device name that is unknown or whose backend is not compiled in.
    #[error("invalid device `{name}`: {reason}")]
    Device {
        /// The device string as given.
        name: String,
        /// Why it cannot be used.
        reason: String,
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

    /// A dataset-level problem (no samples, a missing folder, a bad split).
    #[error("{0}")]
    Dataset(String),

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
    #[error("{} already finished {done} of {epochs} epochs; set epochs above {done} to train longer", dir.display())]
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

    /// Training cannot go on (a checkpoint that cannot be written or read,
    /// a batch that could not be prepared, …).
    #[error("{0}")]
    Training(String),

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
