//! The one home of file writes that matter and of JSON files.
//!
//! Every output wsunet writes (models, checkpoints, configs, metrics, masks,
//! arrays) is replaced atomically: written to a temporary sibling, then
//! renamed over the target, so a crash, a kill or a failed encoder never
//! leaves a half-written file. A failed write removes its temporary file; a
//! process killed mid-write cannot, and [`remove_stale_temps`] lets the next
//! run that owns those targets clear what it left.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

use crate::error::{Error, Result};

/// Reads a JSON file into `T`; a syntax or schema mistake is an
/// [`Error::Json`] naming the file, line and column.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    read_json_with(path, |error| Error::Json {
        path: Some(path.to_path_buf()),
        error,
    })
}

/// Reads a JSON file into `T`, turning a syntax or schema mistake into the
/// caller's error (a model card's, a checkpoint's); an unreadable file is
/// an [`Error::Io`].
pub fn read_json_with<T: serde::de::DeserializeOwned>(
    path: &Path,
    on_mistake: impl FnOnce(serde_json::Error) -> Error,
) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|error| Error::Io {
        path: path.to_path_buf(),
        error,
    })?;
    serde_json::from_str(&text).map_err(on_mistake)
}

/// `value` as compact JSON (for metadata fields of other formats).
pub fn to_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|error| Error::Json { path: None, error })
}

/// Writes `value` as pretty JSON to `path`, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|error| Error::Json {
        path: Some(path.to_path_buf()),
        error,
    })?;
    write_atomic(path, text.as_bytes())
}

/// Replaces `path` with `bytes` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |tmp| {
        std::fs::write(tmp, bytes).map_err(|error| Error::Io {
            path: path.to_path_buf(),
            error,
        })
    })
}

/// Replaces `path` atomically with what `write` writes to the temporary
/// path it is given (for encoders that open the file themselves). On any
/// failure the temporary file is removed and `path` is left as it was.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    if path.file_name().is_none() {
        return Err(Error::Io {
            path: path.to_path_buf(),
            error: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"),
        });
    }
    let tmp = temp_path(path);
    let result = write(&tmp).and_then(|()| {
        std::fs::rename(&tmp, path).map_err(|error| Error::Io {
            path: path.to_path_buf(),
            error,
        })
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A temporary sibling of `path` (same folder, so the rename is atomic),
/// unique per process and call, so threads and processes writing the same
/// target never share one.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

/// Removes the temporary files (`.NAME.tmp-PID-N`, from
/// [`write_atomic_with`]) that a killed process left in `dir`, for the
/// targets `NAME` that `owned` accepts; returns how many it removed. Only
/// the caller that alone writes those targets may call it (a live writer's
/// temporary file looks the same). A missing `dir` has none.
pub fn remove_stale_temps(dir: &Path, owned: impl Fn(&str) -> bool) -> Result<usize> {
    let io = |error| Error::Io {
        path: dir.to_path_buf(),
        error,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io(e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let Some(target) = name.to_str().and_then(temp_target) else {
            continue;
        };
        if owned(target) && entry.file_type().map_err(io)?.is_file() {
            std::fs::remove_file(entry.path()).map_err(|error| Error::Io {
                path: entry.path(),
                error,
            })?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The target's file name of a [`temp_path`] name, `None` for other names.
fn temp_target(name: &str) -> Option<&str> {
    let rest = name.strip_prefix('.')?;
    let at = rest.rfind(".tmp-")?;
    let (pid, n) = rest[at + 5..].split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (at > 0 && digits(pid) && digits(n)).then(|| &rest[..at])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_the_target_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        write_atomic(&path, b"first").unwrap();
        let err = write_atomic_with(&path, |tmp| {
            std::fs::write(tmp, b"half").unwrap();
            Err(Error::Io {
                path: tmp.to_path_buf(),
                error: std::io::Error::other("encoder failed"),
            })
        })
        .unwrap_err();
        assert!(err.to_string().contains("encoder failed"));
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "temporary file left behind");
        write_json(&path, &serde_json::json!({"a": 1})).unwrap();
        let back: serde_json::Value = read_json(&path).unwrap();
        assert_eq!(back["a"], 1);
    }

    #[test]
    fn stale_temporary_files_of_owned_targets_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let left = temp_path(&dir.path().join("a.png"));
        assert_eq!(
            temp_target(&left.file_name().unwrap().to_string_lossy()),
            Some("a.png")
        );
        for name in [
            left.file_name().unwrap().to_str().unwrap(),
            ".b.png.tmp-12-0",
            ".a.png.tmp-x-0",
            ".tmp-1-2",
            "a.png",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let removed = remove_stale_temps(dir.path(), |t| t == "a.png").unwrap();
        assert_eq!(removed, 1);
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [".a.png.tmp-x-0", ".b.png.tmp-12-0", ".tmp-1-2", "a.png"]
        );
        assert_eq!(
            remove_stale_temps(&dir.path().join("missing"), |_| true).unwrap(),
            0
        );
    }
}
