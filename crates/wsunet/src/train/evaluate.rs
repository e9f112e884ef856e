//! Scoring a model on a dataset: the confusion matrix over every pixel and
//! the mean loss, with batches of one image size each.

use std::sync::Arc;

use burn::tensor::Device;

use super::confusion::{ConfusionMatrix, SegScores};
use super::loader::{Batches, epoch_order, same_size_batches};
use super::loss::SegLoss;
use super::observer::Observer;
use crate::data::SegDataset;
use crate::error::Result;
use crate::model::WsResUNet;

/// Validation of a model on a dataset.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Scores from the accumulated confusion matrix.
    pub scores: SegScores,
    /// The matrix.
    pub matrix: ConfusionMatrix,
    /// Mean loss over batches.
    pub loss: f64,
}

/// Evaluates `model` (without autodiff) on every sample of `dataset`: the
/// confusion matrix over all pixels, and the mean loss over batches.
///
/// Batches hold images of one size only (grouped by size), so an
/// image's prediction and scores do not depend on its batch-mates.
pub fn evaluate(
    model: &WsResUNet,
    dataset: &Arc<SegDataset>,
    batch_size: usize,
    device: &Device,
    loss_fn: &SegLoss,
    observer: &mut dyn Observer,
    class_names: &[String],
) -> Result<Evaluation> {
    let order = epoch_order(dataset.samples().len(), 0, 0, false);
    let plan = same_size_batches(&order, &dataset.item_sizes()?, batch_size);
    let batches = Batches::new(dataset.clone(), plan, 0, device.clone());
    observer.validation_start(batches.len);
    let mut matrix = ConfusionMatrix::new(dataset.spec().num_classes);
    let (mut loss_sum, mut count) = (0.0, 0usize);
    for (i, batch) in batches.enumerate() {
        let batch = batch?;
        let logits = model.forward(batch.images);
        loss_sum += loss_fn
            .forward(logits.clone(), batch.masks.clone())
            .into_scalar::<f32>() as f64;
        count += 1;
        matrix.add_batch(logits, batch.masks);
        observer.validation_batch(i + 1);
    }
    Ok(Evaluation {
        scores: matrix.scores(class_names),
        matrix,
        loss: loss_sum / count.max(1) as f64,
    })
}
