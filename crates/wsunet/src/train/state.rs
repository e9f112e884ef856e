//! Where a training run stands: the per-epoch record and the state saved in
//! every checkpoint. Shared by the loop, checkpoints and charts, and
//! depending on none of them.

use serde::{Deserialize, Serialize};

/// One epoch's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches.
    pub train_loss: f64,
    /// Mean validation loss over the validation batches.
    pub val_loss: f64,
    /// Validation mIoU.
    pub miou: f64,
    /// Validation mean Dice.
    pub mean_dice: f64,
    /// Validation pixel accuracy.
    pub pixel_accuracy: f64,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    /// Wall time of the epoch (training and validation).
    pub seconds: f64,
    /// Training throughput.
    pub images_per_sec: f64,
    /// Validation IoU per class (`None`: class absent).
    pub class_iou: Vec<Option<f64>>,
}

/// Where training stands; saved in every checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Finished epochs.
    pub epoch: usize,
    /// Optimizer steps taken.
    pub step: usize,
    /// Best validation mIoU so far and its epoch.
    pub best: Option<(usize, f64)>,
    /// Every finished epoch.
    pub history: Vec<EpochRecord>,
}
