//! Scoring a model on a dataset the way `predict` runs it: the confusion
//! matrix over every pixel and the mean loss.
//!
//! Validation during training and `wsunet eval` both come here, and both
//! run each image as [`Predictor`] does: an image no larger than the tile in
//! one pass (same-size images batched), a larger one cut into overlapping
//! tiles and blended, its labels the blended probabilities' arg-max. So the
//! score a run prints is the score `predict` gives on the same images
//! (measured: on a 512×256 image a whole-image pass and predict's tiles at
//! the crop disagreed on 1.2 % of the pixels, 0.6 points of mIoU).

use std::sync::Arc;

use burn::tensor::{Device, Tensor, TensorData};

use super::confusion::{ConfusionMatrix, SegScores};
use super::loader::{Batches, epoch_order, same_size_batches};
use super::loss::SegLoss;
use super::observer::Observer;
use crate::data::{Image, Normalize, SegDataset};
use crate::error::Result;
use crate::infer::{PredictConfig, Predictor, Tta};
use crate::model::{MIN_INPUT_SIZE, WsResUNet};

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

/// A model (folded once) run on normalized image batches as `predict` runs
/// it: see the module docs.
#[derive(Debug)]
pub struct Scorer {
    predictor: Predictor,
}

/// One batch's outputs: the logits (blended, for tiled images) and, for
/// tiled images, each pixel's class from the blended probabilities (in one
/// pass it is the logits' arg-max).
struct Scored {
    logits: Tensor<4>,
    labels: Option<Vec<i64>>,
}

impl Scorer {
    /// A scorer for `model` with `config`'s tile, overlap and tiles per
    /// forward (its TTA is used as given; validation uses none).
    pub fn new(model: &WsResUNet, config: PredictConfig, device: &Device) -> Result<Self> {
        let identity = Normalize::identity(model.in_channels);
        let predictor = Predictor::new(model.clone(), identity, device.clone(), config)?;
        Ok(Scorer { predictor })
    }

    /// The settings in use.
    pub fn config(&self) -> &PredictConfig {
        self.predictor.config()
    }

    /// Whether images of `h × w` run in one plain pass (no tiles, no
    /// padding up to the network's minimum, no TTA or resampling).
    fn one_pass(&self, h: usize, w: usize) -> bool {
        let c = self.config();
        let fits = (MIN_INPUT_SIZE..=c.tile).contains(&h) && (MIN_INPUT_SIZE..=c.tile).contains(&w);
        fits && c.tta == Tta::None && c.scale == 1.0
    }

    /// The outputs for a batch of same-size, normalized images.
    ///
    /// # Shapes
    ///
    /// - images: `[batch, channels, H, W]`
    /// - logits: `[batch, classes, H, W]`, labels: `batch · H · W`
    fn run(&self, images: Tensor<4>) -> Result<Scored> {
        let [b, c, h, w] = images.dims();
        if self.one_pass(h, w) {
            let logits = self.predictor.model().forward(images);
            return Ok(Scored {
                logits,
                labels: None,
            });
        }
        let device = images.device();
        let (mut logits, mut labels) = (Vec::new(), Vec::with_capacity(b * h * w));
        for i in 0..b {
            let one = images.clone().narrow(0, i, 1);
            let values = one.into_data().iter::<f32>().collect();
            let prediction = self.predictor.predict(&Image::new(c, h, w, values), true)?;
            labels.extend(prediction.mask().data.iter().map(|&l| l as i64));
            let k = prediction.num_classes;
            let data = TensorData::new(prediction.logits.expect("asked for logits"), [1, k, h, w]);
            logits.push(Tensor::<4>::from_data(data, &device));
        }
        Ok(Scored {
            logits: Tensor::cat(logits, 0),
            labels: Some(labels),
        })
    }

    /// Times one image through [`run`](Self::run), as the pace estimate
    /// of a validation image.
    pub(crate) fn run_image(&self, image: &Image, device: &Device) -> Result<()> {
        let shape = [1, image.channels, image.height, image.width];
        let x = Tensor::<4>::from_data(TensorData::new(image.data.clone(), shape), device);
        self.run(x).map(|_| ())
    }

    /// Scores `model` on every sample of `dataset`: the confusion matrix over
    /// all pixels, and the mean loss over batches of `batch_size` images.
    ///
    /// Batches hold images of one size only (grouped by size), so an
    /// image's prediction and scores do not depend on its batch-mates.
    pub fn evaluate(
        &self,
        dataset: &Arc<SegDataset>,
        batch_size: usize,
        loss_fn: &SegLoss,
        observer: &mut dyn Observer,
        class_names: &[String],
    ) -> Result<Evaluation> {
        let device = self.predictor.device().clone();
        let order = epoch_order(dataset.samples().len(), 0, 0, false);
        let plan = same_size_batches(&order, &dataset.item_sizes()?, batch_size);
        let batches = Batches::new(dataset.clone(), plan, 0, device);
        observer.validation_start(batches.len);
        let mut matrix = ConfusionMatrix::new(dataset.spec().num_classes);
        let (mut loss_sum, mut count) = (0.0, 0usize);
        for (i, batch) in batches.enumerate() {
            let batch = batch?;
            let scored = self.run(batch.images)?;
            loss_sum += loss_fn
                .forward(scored.logits.clone(), batch.masks.clone())
                .into_scalar::<f32>() as f64;
            count += 1;
            match scored.labels {
                Some(labels) => matrix.add_labels(&labels, batch.masks),
                None => matrix.add_batch(scored.logits, batch.masks),
            }
            observer.validation_batch(i + 1);
        }
        Ok(Evaluation {
            scores: matrix.scores(class_names),
            matrix,
            loss: loss_sum / count.max(1) as f64,
        })
    }
}
