//! Dataset-level segmentation metrics from an accumulated confusion matrix:
//! per-class IoU and Dice, mIoU, mean Dice, pixel accuracy.
//!
//! The matrix is summed over the whole validation set before any ratio is
//! taken — never an average of per-batch scores. Ignored pixels never count;
//! a class absent from both prediction and ground truth has no IoU and is
//! left out of the means.

use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

/// A `C × C` confusion matrix: `counts[truth · C + prediction]` pixels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    /// Number of classes.
    pub num_classes: usize,
    /// Row-major counts, rows = ground truth, columns = prediction.
    pub counts: Vec<u64>,
}

/// One class's scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassScore {
    /// Class name.
    pub name: String,
    /// Intersection over union; `None` when the class is in neither
    /// prediction nor ground truth.
    pub iou: Option<f64>,
    /// Dice (F1); `None` likewise.
    pub dice: Option<f64>,
    /// Ground-truth pixels of the class.
    pub pixels: u64,
}

/// Scores of a whole evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegScores {
    /// Mean IoU over classes that occur.
    pub miou: f64,
    /// Mean Dice over classes that occur.
    pub mean_dice: f64,
    /// Correct pixels / counted pixels.
    pub pixel_accuracy: f64,
    /// Per-class scores.
    pub classes: Vec<ClassScore>,
}

impl ConfusionMatrix {
    /// An empty matrix for `num_classes` classes.
    pub fn new(num_classes: usize) -> Self {
        ConfusionMatrix {
            num_classes,
            counts: vec![0; num_classes * num_classes],
        }
    }

    /// Adds pixels; those whose truth is not a class (the ignore label,
    /// padding) are skipped.
    ///
    /// # Panics
    ///
    /// If the slices differ in length or a prediction is not a class.
    pub fn add(&mut self, predictions: &[i64], truth: &[i64]) {
        assert_eq!(
            predictions.len(),
            truth.len(),
            "prediction and truth lengths"
        );
        let n = self.num_classes as i64;
        for (&p, &t) in predictions.iter().zip(truth) {
            if (0..n).contains(&t) {
                assert!((0..n).contains(&p), "prediction {p} is not a class");
                self.counts[(t * n + p) as usize] += 1;
            }
        }
    }

    /// Adds a batch: the arg-max of `logits` `[B, C, H, W]` against
    /// `target` `[B, H, W]`.
    pub fn add_batch(&mut self, logits: Tensor<4>, target: Tensor<3, Int>) {
        let [b, _, h, w] = logits.dims();
        let predictions = logits
            .argmax(1)
            .reshape([b * h * w])
            .into_data()
            .convert::<i64>();
        self.add_labels(
            predictions.as_slice::<i64>().expect("i64 predictions"),
            target,
        );
    }

    /// Adds a batch of predicted labels (`B · H · W`, row-major) against
    /// `target` `[B, H, W]`.
    pub fn add_labels(&mut self, predictions: &[i64], target: Tensor<3, Int>) {
        let [b, h, w] = target.dims();
        let truth = target.reshape([b * h * w]).into_data().convert::<i64>();
        self.add(predictions, truth.as_slice::<i64>().expect("i64 targets"));
    }

    /// Adds another matrix's counts.
    pub fn merge(&mut self, other: &ConfusionMatrix) {
        assert_eq!(self.num_classes, other.num_classes, "class counts differ");
        self.counts
            .iter_mut()
            .zip(&other.counts)
            .for_each(|(a, b)| *a += b);
    }

    fn at(&self, truth: usize, prediction: usize) -> u64 {
        self.counts[truth * self.num_classes + prediction]
    }

    /// (true positives, false positives, false negatives) of class `c`.
    fn tp_fp_fn(&self, c: usize) -> (u64, u64, u64) {
        let tp = self.at(c, c);
        let predicted: u64 = (0..self.num_classes).map(|t| self.at(t, c)).sum();
        let actual: u64 = (0..self.num_classes).map(|p| self.at(c, p)).sum();
        (tp, predicted - tp, actual - tp)
    }

    /// Per-class IoU, `None` for classes in neither prediction nor truth.
    pub fn iou(&self) -> Vec<Option<f64>> {
        (0..self.num_classes)
            .map(|c| {
                let (tp, fp, fn_) = self.tp_fp_fn(c);
                let union = tp + fp + fn_;
                (union > 0).then(|| tp as f64 / union as f64)
            })
            .collect()
    }

    /// Per-class Dice, `None` for classes in neither prediction nor truth.
    pub fn dice(&self) -> Vec<Option<f64>> {
        (0..self.num_classes)
            .map(|c| {
                let (tp, fp, fn_) = self.tp_fp_fn(c);
                let denom = 2 * tp + fp + fn_;
                (denom > 0).then(|| 2.0 * tp as f64 / denom as f64)
            })
            .collect()
    }

    /// Counted pixels.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// All scores, with class names (numbered when `names` is short).
    pub fn scores(&self, names: &[String]) -> SegScores {
        let mean = |v: &[Option<f64>]| {
            let present: Vec<f64> = v.iter().flatten().copied().collect();
            if present.is_empty() {
                0.0
            } else {
                present.iter().sum::<f64>() / present.len() as f64
            }
        };
        let (iou, dice) = (self.iou(), self.dice());
        let correct: u64 = (0..self.num_classes).map(|c| self.at(c, c)).sum();
        let total = self.total();
        SegScores {
            miou: mean(&iou),
            mean_dice: mean(&dice),
            pixel_accuracy: if total == 0 {
                0.0
            } else {
                correct as f64 / total as f64
            },
            classes: (0..self.num_classes)
                .map(|c| ClassScore {
                    name: names.get(c).cloned().unwrap_or_else(|| format!("class{c}")),
                    iou: iou[c],
                    dice: dice[c],
                    pixels: (0..self.num_classes).map(|p| self.at(c, p)).sum(),
                })
                .collect(),
        }
    }
}

impl SegScores {
    /// A per-class table for terminals.
    pub fn table(&self) -> String {
        let pct = |v: Option<f64>| {
            v.map(|x| format!("{:.2}", 100.0 * x))
                .unwrap_or_else(|| "—".into())
        };
        let mut s = format!(
            "{:<4} {:<20} {:>8} {:>8} {:>12}\n",
            "id", "class", "IoU %", "Dice %", "pixels"
        );
        for (i, c) in self.classes.iter().enumerate() {
            s.push_str(&format!(
                "{i:<4} {:<20} {:>8} {:>8} {:>12}\n",
                c.name,
                pct(c.iou),
                pct(c.dice),
                c.pixels
            ));
        }
        s.push_str(&format!(
            "mIoU {:.2} %   mean Dice {:.2} %   pixel accuracy {:.2} %",
            100.0 * self.miou,
            100.0 * self.mean_dice,
            100.0 * self.pixel_accuracy
        ));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn hand_computed_matrix_with_ignore_and_absent_class() {
        // 4 classes; class 3 never appears. 255 = ignore.
        let truth = [0, 0, 0, 1, 1, 2, 255, 255];
        let pred = [0, 0, 1, 1, 2, 2, 3, 0];
        let mut m = ConfusionMatrix::new(4);
        m.add(&pred, &truth);
        assert_eq!(m.total(), 6);
        // class 0: tp 2, fp 0, fn 1 → IoU 2/3, Dice 4/5
        // class 1: tp 1, fp 1, fn 1 → IoU 1/3, Dice 2/4
        // class 2: tp 1, fp 1, fn 0 → IoU 1/2, Dice 2/3
        // class 3: absent from both (its only prediction was on an ignored pixel)
        let iou = m.iou();
        assert_eq!(iou, vec![Some(2.0 / 3.0), Some(1.0 / 3.0), Some(0.5), None]);
        let s = m.scores(&["bg".into(), "a".into(), "b".into()]);
        assert!((s.miou - (2.0 / 3.0 + 1.0 / 3.0 + 0.5) / 3.0).abs() < 1e-12);
        assert!((s.mean_dice - (0.8 + 0.5 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
        assert!((s.pixel_accuracy - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!(s.classes[3].name, "class3");
        assert_eq!(s.classes[0].pixels, 3);
        assert!(s.table().contains("—"));
    }

    #[test]
    fn class_predicted_but_absent_from_truth_counts_as_zero() {
        let mut m = ConfusionMatrix::new(3);
        m.add(&[0, 2], &[0, 0]);
        assert_eq!(m.iou(), vec![Some(0.5), None, Some(0.0)]);
        assert!((m.scores(&[]).miou - 0.25).abs() < 1e-12);
    }

    #[test]
    fn batches_accumulate_like_one_pass() {
        let device = Device::flex();
        // Two 1×2 images, 2 classes: logits favour class 1 at pixel (0,1) of image 0.
        let logits = Tensor::<4>::from_data(
            TensorData::new(
                vec![1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.5],
                [2, 2, 1, 2],
            ),
            &device,
        );
        let target =
            Tensor::<3, Int>::from_data(TensorData::new(vec![0i64, 1, 0, 255], [2, 1, 2]), &device);
        let mut whole = ConfusionMatrix::new(2);
        whole.add_batch(logits.clone(), target.clone());
        let mut parts = ConfusionMatrix::new(2);
        parts.add_batch(logits.clone().slice(0..1), target.clone().slice(0..1));
        parts.add_batch(logits.slice(1..2), target.slice(1..2));
        assert_eq!(whole, parts);
        // image 0: preds (0, 1) vs (0, 1); image 1: preds (0, 1) vs (0, ignore)
        assert_eq!(whole.counts, vec![2, 0, 0, 1]);
    }
}
