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
//! eval.json          what `eval` measured (beside the model it scored)
//! events.out.tfevents.0.wsunet   TensorBoard scalars (overlays/: its images)
//! ```
//!
//! Checkpoints:
//!
//! ```text
//! checkpoints/epoch-0007/{model.bpk, optim.bpk, state.json}
//! checkpoints/.epoch-0007.partial/   the same while it is written
//! checkpoints/latest.json            which one is the latest complete one
//! ```

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::fs::{read_json, write_atomic, write_json};

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

    /// Creates the folder and writes the resolved config into it.
    pub fn write_config(&self, config: &impl Serialize) -> Result<()> {
        self.create()?;
        write_json(&self.config(), config)
    }

    /// The run's resolved config.
    pub fn read_config<T: DeserializeOwned>(&self) -> Result<T> {
        read_json(&self.config())
    }

    /// `metrics.csv`: one row per validated epoch.
    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.csv")
    }

    /// Replaces `metrics.csv` with `table` (atomically).
    pub fn write_metrics(&self, table: &str) -> Result<()> {
        write_atomic(&self.metrics(), table.as_bytes())
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

    /// The files of epoch `epoch`'s complete checkpoint.
    pub fn checkpoint(&self, epoch: usize) -> Checkpoint {
        Checkpoint::in_dir(self.checkpoints().join(Checkpoint::name(epoch)))
    }

    /// The same files while they are written, in a hidden folder renamed
    /// to [`RunDir::checkpoint`]'s when complete.
    pub fn partial_checkpoint(&self, epoch: usize) -> Checkpoint {
        let name = format!(".{}.partial", Checkpoint::name(epoch));
        Checkpoint::in_dir(self.checkpoints().join(name))
    }

    /// The checkpoint in folder `name` of `checkpoints/` (as `latest.json`
    /// names it).
    pub fn checkpoint_named(&self, name: &str) -> Checkpoint {
        Checkpoint::in_dir(self.checkpoints().join(name))
    }

    /// `events.out.tfevents.0.wsunet`: the TensorBoard event file. One
    /// fixed name, rewritten each epoch, so a resumed run has one file.
    pub fn tensorboard_events(&self) -> PathBuf {
        self.root.join("events.out.tfevents.0.wsunet")
    }

    /// `overlays/`: the validation overlays TensorBoard shows.
    pub fn overlays(&self) -> PathBuf {
        self.root.join("overlays")
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

    /// Where `eval` writes its scores of `model` by default: `eval.json` in
    /// a run directory, else beside the model file.
    pub fn eval_report(model: &Path) -> PathBuf {
        if model.is_dir() {
            model.join("eval.json")
        } else {
            model.with_file_name("eval.json")
        }
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

/// The files of one checkpoint (see the module docs for the layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    dir: PathBuf,
}

impl Checkpoint {
    fn in_dir(dir: PathBuf) -> Checkpoint {
        Checkpoint { dir }
    }

    /// The folder name of epoch `epoch`'s checkpoint (`epoch-0007`).
    pub fn name(epoch: usize) -> String {
        format!("epoch-{epoch:04}")
    }

    /// The epoch of a complete checkpoint's folder name; `None` for any
    /// other name (partial folders, `latest.json`).
    pub fn epoch_of(name: &str) -> Option<usize> {
        name.strip_prefix("epoch-")?.parse().ok()
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// `model.bpk`: the model's parameters.
    pub fn model(&self) -> PathBuf {
        self.dir.join("model.bpk")
    }

    /// `optim.bpk`: the optimizer's state.
    pub fn optim(&self) -> PathBuf {
        self.dir.join("optim.bpk")
    }

    /// `state.json`: the epoch, history, best score and data order.
    pub fn state(&self) -> PathBuf {
        self.dir.join("state.json")
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
        assert_eq!(RunDir::of_model(dir.path()), Some(run.clone()));
    }

    #[test]
    fn checkpoint_folders_are_named_by_epoch() {
        let run = RunDir::new("runs/a");
        let seventh = run.checkpoint(7);
        assert_eq!(seventh.path(), Path::new("runs/a/checkpoints/epoch-0007"));
        assert_eq!(Checkpoint::epoch_of("epoch-0007"), Some(7));
        let partial = run.partial_checkpoint(7);
        let name = partial.path().file_name().unwrap().to_str().unwrap();
        assert_eq!(Checkpoint::epoch_of(name), None);
        assert_eq!(run.checkpoint_named(&Checkpoint::name(7)), seventh);
    }
}
