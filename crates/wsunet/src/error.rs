//! The library's error type: every failure a user can cause (a bad config, an
//! input too small, an unreadable weight file) is a value of [`Error`] with a
//! message that names the problem and the fix.

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

    /// Training cannot go on (a non-finite loss, a checkpoint that cannot
    /// be written or read, …).
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

    /// A file-system error, with the file it concerns. The message already
    /// contains the underlying error, so it is not repeated as a `source`.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
}

/// Shorthand for results with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
