//! The run directory: the one place that names the files a training run
//! writes. The trainer, the checkpoints, model loading and the CLI ask a
//! [`RunDir`] for a file instead of spelling its name.
//!
//! ```text
//! config.json        the resolved training config (what --resume reads)
//! metrics.csv        one row per validated epoch
//! curves.png         loss, mIoU and learning rate per epoch
//! checkpoints/       model, optimizer and state of the latest epochs (train::checkpoint)
//! best.bpk/.json     the model with the best validation mIoU, and its card
//! best_scores.json   that epoch's per-class scores
//! model.bpk/.json    the final model and its card
//! scores.json        the final epoch's per-class scores
//! ```

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A training run's folder and the paths of its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// The run directory at `root` (nothing is read or created).
    pub fn new(root: impl Into<PathBuf>) -> RunDir {
        RunDir { root: root.into() }
    }

    /// The folder itself.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Creates the folder (and its parents) when missing.
    pub fn create(&self) -> Result<()> {
        std::fs::create_dir_all(&self.root).map_err(|error| Error::Io {
            path: self.root.clone(),
            error,
        })
    }

    /// `config.json`: the resolved training config.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.json")
    }

    /// `metrics.csv`: one row per validated epoch.
    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.csv")
    }

    /// `curves.png`: loss, mIoU and learning rate per epoch.
    pub fn curves(&self) -> PathBuf {
        self.root.join("curves.png")
    }

    /// `checkpoints/`: the latest epochs' model, optimizer and state.
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    /// `checkpoints/latest.json`: which checkpoint is the latest complete one.
    pub fn latest_checkpoint(&self) -> PathBuf {
        self.checkpoints().join("latest.json")
    }

    /// `best.bpk`: the model with the best validation mIoU (card beside it).
    pub fn best_model(&self) -> PathBuf {
        self.root.join("best.bpk")
    }

    /// `best_scores.json`: the per-class scores of the best epoch.
    pub fn best_scores(&self) -> PathBuf {
        self.root.join("best_scores.json")
    }

    /// `model.bpk`: the final model (card beside it).
    pub fn final_model(&self) -> PathBuf {
        self.root.join("model.bpk")
    }

    /// `scores.json`: the per-class scores of the final epoch.
    pub fn scores(&self) -> PathBuf {
        self.root.join("scores.json")
    }

    /// Whether the folder holds a run: a checkpoint pointer, written after
    /// the first finished epoch. A folder with only a `config.json` is not
    /// one (an unrelated config beside a model file is not mistaken for it).
    pub fn has_checkpoint(&self) -> bool {
        self.latest_checkpoint().is_file()
    }

    /// The run a model belongs to: `model` itself when it is a run
    /// directory, or the folder of a model file saved in one (`best.bpk`,
    /// `model.bpk`); `None` when that folder holds no run.
    pub fn of_model(model: &Path) -> Option<RunDir> {
        let dir = if model.is_dir() {
            Some(model)
        } else {
            model.parent()
        };
        dir.map(RunDir::new).filter(RunDir::has_checkpoint)
    }
}

impl std::fmt::Display for RunDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.root.display().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_is_a_run_only_with_a_checkpoint_pointer() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        std::fs::write(run.config(), "{}").unwrap();
        assert!(!run.has_checkpoint());
        assert_eq!(RunDir::of_model(&run.final_model()), None);
        std::fs::create_dir_all(run.checkpoints()).unwrap();
        std::fs::write(run.latest_checkpoint(), "{}").unwrap();
        assert_eq!(RunDir::of_model(&run.best_model()), Some(run.clone()));
        assert_eq!(RunDir::of_model(dir.path()), Some(run));
    }
}
