//! The run directory: where a training run keeps what it produces, and how
//! a model finds the run it came from.
//!
//! ```text
//! config.json        the resolved training config (what --resume reads)
//! metrics.csv        one row per epoch
//! curves.png         loss, mIoU and learning rate per epoch
//! checkpoints/       see checkpoint.rs
//! best.bpk/.json     the model with the best validation mIoU, and its card
//! best_scores.json   that epoch's per-class scores
//! model.bpk/.json    the final model and its card
//! scores.json        the final epoch's per-class scores
//! ```

use std::path::{Path, PathBuf};

use super::config::TrainConfig;
use super::state::EpochRecord;
use crate::error::{Error, Result};
use crate::fs::write_atomic;

/// The resolved config's file in run directory `dir`.
pub fn config_path(dir: &Path) -> PathBuf {
    dir.join("config.json")
}

/// Creates `dir` and writes the resolved config into it.
pub fn write_config(dir: &Path, config: &TrainConfig) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|error| Error::Io {
        path: dir.to_path_buf(),
        error,
    })?;
    write_atomic(&config_path(dir), config.to_json().as_bytes())
}

/// The training config of the run that `model` belongs to: `config.json` in
/// a run directory, or beside a model file saved in one (`best.bpk`,
/// `model.bpk`). `None` when there is none; a folder counts as a run only
/// with its checkpoints beside the config, so an unrelated `config.json`
/// next to a model file is not mistaken for one.
pub fn run_config_of(model: &Path) -> Result<Option<(PathBuf, TrainConfig)>> {
    let dir = if model.is_dir() {
        Some(model)
    } else {
        model.parent()
    };
    let Some(dir) = dir.filter(|d| super::checkpoint::exists(d)) else {
        return Ok(None);
    };
    let path = config_path(dir);
    if !path.is_file() {
        return Ok(None);
    }
    Ok(Some((path.clone(), TrainConfig::from_file(&path)?)))
}

/// Rewrites `metrics.csv` from the whole history (atomically).
pub fn write_metrics(dir: &Path, history: &[EpochRecord], classes: &[String]) -> Result<()> {
    let mut csv = String::from(
        "epoch,train_loss,val_loss,miou,mean_dice,pixel_accuracy,lr,seconds,images_per_sec",
    );
    for c in classes {
        csv.push_str(&format!(",iou_{}", c.replace([',', '"', '\n'], "_")));
    }
    csv.push('\n');
    for r in history {
        csv.push_str(&format!(
            "{},{:.6},{:.6},{:.6},{:.6},{:.6},{:.3e},{:.2},{:.2}",
            r.epoch,
            r.train_loss,
            r.val_loss,
            r.miou,
            r.mean_dice,
            r.pixel_accuracy,
            r.lr,
            r.seconds,
            r.images_per_sec
        ));
        for iou in &r.class_iou {
            csv.push_str(
                &iou.map(|v| format!(",{v:.6}"))
                    .unwrap_or_else(|| ",".into()),
            );
        }
        csv.push('\n');
    }
    write_atomic(&dir.join("metrics.csv"), csv.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_run_directory_has_a_run_config() {
        let dir = tempfile::tempdir().unwrap();
        // A config.json of some other kind beside a model file: not a run.
        std::fs::write(dir.path().join("config.json"), "{\"num_classes\": 2}").unwrap();
        assert!(
            run_config_of(&dir.path().join("model.bpk"))
                .unwrap()
                .is_none()
        );
        // With a checkpoint pointer it is one, and its config is read.
        write_config(dir.path(), &TrainConfig::default()).unwrap();
        std::fs::create_dir_all(dir.path().join("checkpoints")).unwrap();
        std::fs::write(dir.path().join("checkpoints/latest.json"), "{}").unwrap();
        let (path, config) = run_config_of(&dir.path().join("model.bpk"))
            .unwrap()
            .unwrap();
        assert_eq!(path, dir.path().join("config.json"));
        assert_eq!(config, TrainConfig::default());
    }
}
