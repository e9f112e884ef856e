//! What training reads and writes in its [`RunDir`]: the resolved config
//! and the metrics table (checkpoints: `checkpoint.rs`; models: `card.rs`).

use super::config::TrainConfig;
use super::state::EpochRecord;
use crate::error::Result;
use crate::fs::{read_json, write_atomic, write_json};
pub use crate::run_dir::RunDir;

impl RunDir {
    /// Creates the folder and writes the resolved config into it.
    pub fn write_config(&self, config: &TrainConfig) -> Result<()> {
        self.create()?;
        write_json(&self.config(), config)
    }

    /// The run's resolved config.
    pub fn read_config(&self) -> Result<TrainConfig> {
        read_json(&self.config())
    }

    /// Rewrites `metrics.csv` from the whole history (atomically).
    pub fn write_metrics(&self, history: &[EpochRecord], classes: &[String]) -> Result<()> {
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
        write_atomic(&self.metrics(), csv.as_bytes())
    }
}

/// The run that `model` belongs to (see [`RunDir::of_model`]) and its
/// training config; `None` when `model` is not in a run directory or the
/// run has no `config.json`.
pub fn run_config_of(model: &std::path::Path) -> Result<Option<(RunDir, TrainConfig)>> {
    let Some(run) = RunDir::of_model(model).filter(|run| run.config().is_file()) else {
        return Ok(None);
    };
    let config = run.read_config()?;
    Ok(Some((run, config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_run_directory_has_a_run_config() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        // A config.json of some other kind beside a model file: not a run.
        std::fs::write(run.config(), "{\"num_classes\": 2}").unwrap();
        assert!(run_config_of(&run.final_model()).unwrap().is_none());
        // With a checkpoint pointer it is one, and its config is read.
        run.write_config(&TrainConfig::default()).unwrap();
        std::fs::create_dir_all(run.checkpoints()).unwrap();
        std::fs::write(run.latest_checkpoint(), "{}").unwrap();
        let (found, config) = run_config_of(&run.final_model()).unwrap().unwrap();
        assert_eq!(found, run);
        assert_eq!(config, TrainConfig::default());
    }
}
