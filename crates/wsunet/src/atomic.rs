//! Atomic file replacement: write a temporary sibling, then rename it over
//! the target, so a crash or kill never leaves a half-written file.

use std::path::{Path, PathBuf};

/// A temporary sibling of `path` (same folder, so the rename is atomic),
/// unique per process.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}
