//! The segmentation scores as Burn metrics, for users of burn-train's
//! `Learner`: each accumulates a confusion matrix over the whole epoch and
//! reports the dataset-level value at its end (a `Final` entry, never an
//! average of per-batch values).

use burn::tensor::{Int, Tensor, TensorReadError};
use burn::train::metric::{
    Metric, MetricAttributes, MetricMetadata, MetricName, Numeric, NumericAttributes, NumericEntry,
    SerializedEntry,
};

use super::confusion::{ConfusionMatrix, SegScores};

/// What the segmentation metrics read from a model's output: logits
/// `[B, C, H, W]` and targets `[B, H, W]` (ignored pixels hold a value
/// outside `0..C`).
#[derive(Debug, Clone)]
pub struct SegMetricInput {
    /// Class logits.
    pub logits: Tensor<4>,
    /// Ground-truth classes.
    pub targets: Tensor<3, Int>,
}

/// Which score a [`SegMetric`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegScore {
    /// Mean IoU over classes that occur.
    MeanIou,
    /// Mean Dice over classes that occur.
    MeanDice,
    /// Correct pixels / counted pixels.
    PixelAccuracy,
}

/// A Burn metric over an accumulated confusion matrix.
#[derive(Debug, Clone)]
pub struct SegMetric {
    name: MetricName,
    score: SegScore,
    matrix: ConfusionMatrix,
    last: Option<f64>,
}

impl SegMetric {
    /// A metric reporting `score` for `num_classes` classes.
    pub fn new(score: SegScore, num_classes: usize) -> Self {
        let name = match score {
            SegScore::MeanIou => "mIoU",
            SegScore::MeanDice => "Mean Dice",
            SegScore::PixelAccuracy => "Pixel Accuracy",
        };
        SegMetric {
            name: std::sync::Arc::new(name.to_string()),
            score,
            matrix: ConfusionMatrix::new(num_classes),
            last: None,
        }
    }

    fn value_of(&self, scores: &SegScores) -> f64 {
        match self.score {
            SegScore::MeanIou => scores.miou,
            SegScore::MeanDice => scores.mean_dice,
            SegScore::PixelAccuracy => scores.pixel_accuracy,
        }
    }
}

impl Metric for SegMetric {
    type Input = SegMetricInput;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: None,
            higher_is_better: true,
        }
        .into()
    }

    fn update(
        &mut self,
        item: &SegMetricInput,
        _metadata: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        self.matrix
            .add_batch(item.logits.clone(), item.targets.clone());
        Ok(SerializedEntry::not_available(None))
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        let value = self.value_of(&self.matrix.scores(&[]));
        self.last = Some(value);
        Ok(SerializedEntry::new(
            format!("epoch {:.2} %", 100.0 * value),
            NumericEntry::Final(value).serialize(),
        ))
    }

    fn clear(&mut self) {
        self.matrix = ConfusionMatrix::new(self.matrix.num_classes);
        self.last = None;
    }
}

impl Numeric for SegMetric {
    fn value(&self) -> Option<NumericEntry> {
        None
    }

    fn running_value(&self) -> Option<NumericEntry> {
        None
    }

    fn final_value(&self) -> NumericEntry {
        NumericEntry::Final(self.last.unwrap_or(f64::NAN))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn epoch_value_is_the_dataset_level_score() {
        let device = Device::flex();
        let batch = |logits: Vec<f32>, targets: Vec<i64>| SegMetricInput {
            logits: Tensor::from_data(TensorData::new(logits, [1, 2, 1, 2]), &device),
            targets: Tensor::from_data(TensorData::new(targets, [1, 1, 2]), &device),
        };
        let mut metric = SegMetric::new(SegScore::MeanIou, 2);
        let meta = MetricMetadata {
            progress: burn::data::dataloader::Progress {
                items_processed: 1,
                items_total: 2,
                unit: None,
            },
            iteration: Some(0),
            lr: None,
        };
        // Batch 1: both pixels right (class 0, class 1). Batch 2: one wrong.
        let b1 = batch(vec![1.0, 0.0, 0.0, 1.0], vec![0, 1]);
        let b2 = batch(vec![1.0, 0.0, 0.0, 1.0], vec![1, 1]);
        assert_eq!(metric.update(&b1, &meta).unwrap().serialized, "N/A");
        metric.update(&b2, &meta).unwrap();
        let entry = metric.compute().unwrap();
        // Whole matrix: class 0 tp 1 fp 1 fn 0 → 1/2; class 1 tp 2 fp 0 fn 1 → 2/3.
        let expected = (0.5 + 2.0 / 3.0) / 2.0;
        assert_eq!(entry.serialized, format!("{expected},final"));
        assert!(matches!(metric.final_value(), NumericEntry::Final(v) if v == expected));
        metric.clear();
        assert!(matches!(metric.final_value(), NumericEntry::Final(v) if v.is_nan()));
    }
}
