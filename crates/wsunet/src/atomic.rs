//! Small file helpers: atomic replacement (write a temporary sibling, then
//! rename it over the target, so a crash or kill never leaves a half-written
//! file) and reading JSON configs with errors that name the file.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Reads a JSON file into `T`; a syntax or schema mistake is an
/// [`Error::Config`] naming the file, line and column.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|error| Error::Io {
        path: path.to_path_buf(),
        error,
    })?;
    serde_json::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
}

/// A temporary sibling of `path` (same folder, so the rename is atomic),
/// unique per process.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}
