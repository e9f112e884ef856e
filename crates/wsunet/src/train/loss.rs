//! Segmentation losses, all ignore-aware: cross-entropy with class weights,
//! soft Dice, focal, and CE + Dice (the default).
//!
//! Shapes throughout: logits `[B, C, H, W]`, targets `[B, H, W]` (class
//! indices, or the ignore label for pixels that do not count).

use burn::tensor::activation::{log_softmax, softmax};

use crate::ops::runs_here;
use crate::ops::seg_loss::{LossParams, Terms, seg_loss};
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// Which loss to train with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LossKind {
    /// Cross-entropy (with class weights).
    Ce,
    /// Soft Dice over classes present in the batch.
    Dice,
    /// Focal loss (γ = `focal_gamma`).
    Focal,
    /// Cross-entropy + soft Dice.
    #[default]
    #[serde(rename = "ce+dice")]
    CeDice,
}

impl LossKind {
    /// Every kind with its name, for parsing and help.
    pub const ALL: [(LossKind, &'static str); 4] = [
        (LossKind::Ce, "ce"),
        (LossKind::Dice, "dice"),
        (LossKind::Focal, "focal"),
        (LossKind::CeDice, "ce+dice"),
    ];
}

impl std::fmt::Display for LossKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = LossKind::ALL
            .iter()
            .find(|(k, _)| k == self)
            .map(|(_, n)| *n)
            .unwrap_or("?");
        f.write_str(name)
    }
}

/// A configured loss.
#[derive(Debug, Clone)]
pub struct SegLoss {
    /// The formula.
    pub kind: LossKind,
    /// Per-class weights for cross-entropy (and focal), `None` = all 1.
    pub class_weights: Option<Vec<f32>>,
    /// Label of pixels that do not count.
    pub ignore_label: i64,
    /// Focusing parameter γ of the focal loss.
    pub focal_gamma: f32,
}

/// Parts shared by the losses: validity mask and safe targets.
struct Targets {
    /// `[B, H, W]` targets with ignored pixels set to class 0 (so they index).
    safe: Tensor<3, Int>,
    /// `[B, H, W]` 1 where the pixel counts, else 0.
    valid: Tensor<3>,
}

fn targets(target: Tensor<3, Int>, ignore: i64) -> Targets {
    let ignored = target.clone().equal_elem(ignore);
    let valid = ignored.clone().bool_not().float();
    Targets {
        safe: target.mask_fill(ignored, 0),
        valid,
    }
}

/// `[B, C, H, W]` one-hot of `safe` targets.
fn one_hot(safe: &Tensor<3, Int>, classes: usize) -> Tensor<4> {
    let [b, h, w] = safe.dims();
    let device = safe.device();
    let ids = Tensor::<1, Int>::arange(0..classes as i64, &device).reshape([1, classes, 1, 1]);
    safe.clone()
        .reshape([b, 1, h, w])
        .equal(ids.expand([b, classes, h, w]))
        .float()
}

impl SegLoss {
    /// A loss of `kind` with no class weights.
    pub fn new(kind: LossKind, ignore_label: i64) -> Self {
        SegLoss {
            kind,
            class_weights: None,
            ignore_label,
            focal_gamma: 2.0,
        }
    }

    /// The scalar loss for a batch.
    ///
    /// # Shapes
    ///
    /// - logits: `[B, C, H, W]`
    /// - target: `[B, H, W]`
    /// - output: `[1]`
    pub fn forward(&self, logits: Tensor<4>, target: Tensor<3, Int>) -> Tensor<1> {
        let terms = match self.kind {
            LossKind::Ce => Some(Terms::Ce),
            LossKind::Dice => Some(Terms::Dice),
            LossKind::CeDice => Some(Terms::CeDice),
            LossKind::Focal => None,
        };
        match terms {
            Some(terms) if runs_here(&logits.device(), logits.dtype()) => {
                let targets = target.into_data().convert::<i64>();
                let params = LossParams {
                    terms,
                    targets: targets.as_slice::<i64>().expect("i64 targets").into(),
                    ignore: self.ignore_label,
                    class_weights: self.class_weights.as_deref().map(Into::into),
                };
                seg_loss(logits, params)
            }
            _ => self.forward_composed(logits, target),
        }
    }

    /// [`Self::forward`] as Burn's composed ops, which every device but the
    /// CPU runs (the CPU runs cross-entropy and Dice as one kernel of this
    /// crate); public for comparisons (`benches/layers.rs`).
    pub fn forward_composed(&self, logits: Tensor<4>, target: Tensor<3, Int>) -> Tensor<1> {
        match self.kind {
            LossKind::Ce => self.cross_entropy(logits, target),
            LossKind::Dice => self.dice(logits, target),
            LossKind::Focal => self.focal(logits, target),
            LossKind::CeDice => {
                self.cross_entropy(logits.clone(), target.clone()) + self.dice(logits, target)
            }
        }
    }

    /// Per-pixel class weights `[B, H, W]` for the (safe) targets.
    fn pixel_weights(&self, t: &Targets, classes: usize) -> Tensor<3> {
        match &self.class_weights {
            None => t.valid.clone(),
            Some(w) => {
                let device = t.valid.device();
                let w = Tensor::<1>::from_data(TensorData::new(w.clone(), [classes]), &device);
                let [b, h, ww] = t.safe.dims();
                let per_pixel = w
                    .select(0, t.safe.clone().reshape([b * h * ww]))
                    .reshape([b, h, ww]);
                per_pixel * t.valid.clone()
            }
        }
    }

    /// Weighted cross-entropy: Σ w_t · (−log p_t) / Σ w_t over counted pixels,
    /// as PyTorch's `F.cross_entropy(weight=…, ignore_index=…)`.
    pub fn cross_entropy(&self, logits: Tensor<4>, target: Tensor<3, Int>) -> Tensor<1> {
        let classes = logits.dims()[1];
        let t = targets(target, self.ignore_label);
        let nll = self.nll(logits, &t);
        let w = self.pixel_weights(&t, classes);
        (nll * w.clone()).sum() / w.sum().clamp_min(1e-12)
    }

    /// `[B, H, W]` negative log-likelihood of the (safe) targets.
    fn nll(&self, logits: Tensor<4>, t: &Targets) -> Tensor<3> {
        let [b, _, h, w] = logits.dims();
        log_softmax(logits, 1)
            .gather(1, t.safe.clone().reshape([b, 1, h, w]))
            .reshape([b, h, w])
            .neg()
    }

    /// Focal loss `Σ w_t (1 − p_t)^γ (−log p_t) / Σ w_t` over counted pixels
    /// (Lin et al., arXiv:1708.02002; class weights play α's role).
    pub fn focal(&self, logits: Tensor<4>, target: Tensor<3, Int>) -> Tensor<1> {
        let classes = logits.dims()[1];
        let t = targets(target, self.ignore_label);
        let nll = self.nll(logits, &t);
        let pt = nll.clone().neg().exp();
        let focus = (pt.neg() + 1.0)
            .clamp_min(0.0)
            .powf_scalar(self.focal_gamma);
        let w = self.pixel_weights(&t, classes);
        (focus * nll * w.clone()).sum() / w.sum().clamp_min(1e-12)
    }

    /// Soft Dice: per class `1 − 2|P∩T| / (|P| + |T|)` over counted pixels of
    /// the whole batch, averaged over classes, where classes absent from the
    /// batch's targets contribute 0 (as segmentation_models_pytorch's
    /// multiclass `DiceLoss`).
    pub fn dice(&self, logits: Tensor<4>, target: Tensor<3, Int>) -> Tensor<1> {
        let [b, classes, h, w] = logits.dims();
        let t = targets(target, self.ignore_label);
        let valid = t.valid.clone().reshape([b, 1, h, w]);
        let probs = softmax(logits, 1) * valid.clone();
        let truth = one_hot(&t.safe, classes) * valid;
        let sum_c = |x: Tensor<4>| {
            x.swap_dims(0, 1)
                .reshape([classes, b * h * w])
                .sum_dim(1)
                .reshape([classes])
        };
        let intersection = sum_c(probs.clone() * truth.clone());
        let cardinality = sum_c(probs) + sum_c(truth.clone());
        let present = sum_c(truth).greater_elem(0.0).float();
        let dice = intersection.mul_scalar(2.0) / cardinality.clamp_min(1e-7);
        ((dice.neg() + 1.0) * present).mean()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn batch() -> (Tensor<4>, Tensor<3, Int>) {
        let device = Device::flex();
        // One image 1×2 with 3 classes; the second pixel is ignored.
        let logits = Tensor::<4>::from_data(
            TensorData::new(vec![2.0f32, 0.0, 1.0, 5.0, 0.0, 0.0], [1, 3, 1, 2]),
            &device,
        );
        let target =
            Tensor::<3, Int>::from_data(TensorData::new(vec![0i64, 255], [1, 1, 2]), &device);
        (logits, target)
    }

    #[test]
    fn cross_entropy_by_hand() {
        let (logits, target) = batch();
        // Pixel 0: logits (2, 1, 0) → −log softmax_0 = log(e² + e + 1) − 2.
        let expected = ((2f32).exp() + 1f32.exp() + 1.0).ln() - 2.0;
        let loss: f32 = SegLoss::new(LossKind::Ce, 255)
            .forward(logits, target)
            .into_scalar();
        assert!((loss - expected).abs() < 1e-6, "{loss} vs {expected}");
    }

    #[test]
    fn focal_by_hand() {
        let (logits, target) = batch();
        let nll = ((2f32).exp() + 1f32.exp() + 1.0).ln() - 2.0;
        let expected = (1.0 - (-nll).exp()).powi(2) * nll;
        let loss: f32 = SegLoss::new(LossKind::Focal, 255)
            .forward(logits, target)
            .into_scalar();
        assert!((loss - expected).abs() < 1e-6, "{loss} vs {expected}");
    }

    #[test]
    fn dice_by_hand() {
        let (logits, target) = batch();
        // Only class 0 is present; p0 = softmax(2,1,0)_0.
        let p: Vec<f32> = [2f32, 1.0, 0.0].iter().map(|v| v.exp()).collect();
        let p0 = p[0] / p.iter().sum::<f32>();
        let dice0 = 2.0 * p0 / (p0 + 1.0);
        let expected = (1.0 - dice0) / 3.0;
        let loss: f32 = SegLoss::new(LossKind::Dice, 255)
            .forward(logits, target)
            .into_scalar();
        assert!((loss - expected).abs() < 1e-6, "{loss} vs {expected}");
    }

    #[test]
    fn all_ignored_is_zero_not_nan() {
        let device = Device::flex();
        let logits = Tensor::<4>::ones([1, 2, 2, 2], &device);
        let target = Tensor::<3, Int>::full([1, 2, 2], 255, &device);
        for (kind, _) in LossKind::ALL {
            let loss: f32 = SegLoss::new(kind, 255)
                .forward(logits.clone(), target.clone())
                .into_scalar();
            assert_eq!(loss, 0.0, "{kind}");
        }
    }

    /// The CPU kernel and the composed ops give the same loss and the same
    /// gradient of the logits: ignored pixels, class weights, a class absent
    /// from the batch; images of one block of pixels and of two (the second
    /// shorter).
    #[test]
    fn the_cpu_kernel_equals_the_composed_loss() {
        let device = Device::flex().autodiff();
        // `forward` takes the kernel here.
        assert!(runs_here(&device, burn::tensor::DType::F32));
        for [h, w] in [[9, 7], [70, 65]] {
            the_cpu_kernel_equals_the_composed_loss_at(&device, h, w);
        }
    }

    fn the_cpu_kernel_equals_the_composed_loss_at(device: &Device, h: usize, w: usize) {
        use burn::tensor::Distribution;
        let logits = Tensor::<4>::random([2, 4, h, w], Distribution::Normal(0.0, 2.0), device);
        // Classes 0..2 and the ignore label 9: class 3 never occurs.
        let labels: Vec<i64> = (0..2 * h * w)
            .map(|i| {
                if i % 7 == 3 {
                    9
                } else {
                    (i * 5 % 11 % 3) as i64
                }
            })
            .collect();
        let target = Tensor::<3, Int>::from_data(TensorData::new(labels, [2, h, w]), device);
        for (kind, _) in LossKind::ALL {
            for weights in [None, Some(vec![0.5f32, 2.0, 1.0, 3.0])] {
                let mut loss = SegLoss::new(kind, 9);
                loss.class_weights = weights;
                let run = |fused: bool| {
                    let x = logits.clone().require_grad();
                    let y = if fused {
                        loss.forward(x.clone(), target.clone())
                    } else {
                        loss.forward_composed(x.clone(), target.clone())
                    };
                    let v: f32 = y.clone().into_scalar();
                    let grad = x.grad(&y.backward()).unwrap().into_data();
                    (v, grad.try_to_vec::<f32>().unwrap())
                };
                let ((a, da), (b, db)) = (run(true), run(false));
                assert!(
                    (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                    "{kind}: {a} vs {b}"
                );
                let scale = db.iter().fold(0f32, |m, v| m.max(v.abs()));
                for (i, (x, y)) in da.iter().zip(&db).enumerate() {
                    assert!((x - y).abs() <= 1e-5 * scale, "{kind} d[{i}]: {x} vs {y}");
                }
            }
        }
    }

    #[test]
    fn names() {
        let parse = |name: &str| serde_json::from_value::<LossKind>(name.into());
        for (kind, name) in LossKind::ALL {
            assert_eq!(parse(name).unwrap(), kind);
            assert_eq!(kind.to_string(), name);
        }
        assert!(parse("bce").unwrap_err().to_string().contains("ce+dice"));
    }
}
