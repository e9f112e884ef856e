//! Where a training run stands: the per-epoch record and the state saved in
//! every checkpoint. Shared by the loop, checkpoints and charts, and
//! depending on none of them.

use serde::{Deserialize, Serialize};

/// A number that JSON stored as `null`: serde_json writes NaN and the
/// infinities as `null`, so a checkpoint of an epoch whose validation loss
/// was not finite must still read back.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// One epoch's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches.
    #[serde(deserialize_with = "nan_if_null")]
    pub train_loss: f64,
    /// Mean validation loss over the validation batches.
    #[serde(deserialize_with = "nan_if_null")]
    pub val_loss: f64,
    /// Validation mIoU.
    #[serde(deserialize_with = "nan_if_null")]
    pub miou: f64,
    /// Validation mean Dice.
    #[serde(deserialize_with = "nan_if_null")]
    pub mean_dice: f64,
    /// Validation pixel accuracy.
    #[serde(deserialize_with = "nan_if_null")]
    pub pixel_accuracy: f64,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    /// Wall time of the epoch (training and validation).
    pub seconds: f64,
    /// Training throughput.
    pub images_per_sec: f64,
    /// Validation IoU per class (`None`: class absent).
    pub class_iou: Vec<Option<f64>>,
    /// Validation objects' AP50 (instance runs): TP / (TP + FP + FN) at
    /// IoU 0.5 ([`ObjectScores`](crate::objects::metrics::ObjectScores)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ap50: Option<f64>,
}

impl EpochRecord {
    /// The `metrics.csv` table of `history`: a header, then one row per
    /// epoch with the IoU of each of `classes` (and the objects' AP50 last,
    /// for an instance run).
    pub fn csv(history: &[EpochRecord], classes: &[String]) -> String {
        let mut csv = String::from(
            "epoch,train_loss,val_loss,miou,mean_dice,pixel_accuracy,lr,seconds,images_per_sec",
        );
        for c in classes {
            csv.push_str(&format!(",iou_{}", c.replace([',', '"', '\n'], "_")));
        }
        let objects = history.iter().any(|r| r.ap50.is_some());
        if objects {
            csv.push_str(",ap50");
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
            if objects {
                csv.push_str(
                    &r.ap50
                        .map(|v| format!(",{v:.6}"))
                        .unwrap_or_else(|| ",".into()),
                );
            }
            csv.push('\n');
        }
        csv
    }
}

/// Where training stands; saved in every checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Finished epochs.
    pub epoch: usize,
    /// Optimizer steps taken.
    pub step: usize,
    /// Best validation score so far and its epoch: mIoU, or the objects'
    /// AP50 for an instance run.
    pub best: Option<(usize, f64)>,
    /// Every finished epoch.
    pub history: Vec<EpochRecord>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_non_finite_score_survives_a_checkpoint() {
        let record = EpochRecord {
            epoch: 1,
            train_loss: 0.5,
            val_loss: f64::NAN,
            miou: 0.25,
            mean_dice: 0.3,
            pixel_accuracy: 0.9,
            lr: 1e-3,
            seconds: 1.0,
            images_per_sec: 10.0,
            class_iou: vec![Some(0.5), None],
            ap50: None,
        };
        let json = serde_json::to_string(&record).unwrap();
        let back: EpochRecord = serde_json::from_str(&json).unwrap();
        assert!(back.val_loss.is_nan());
        assert_eq!(back.miou, 0.25);
    }
}
