//! Object-level scores of predicted instance labels against true ones.
//!
//! Semantics follow StarDist's `matching` (Schmidt et al. 2018, Weigert et
//! al. 2020): a true and a predicted object match when their IoU is at least
//! the threshold (`>=`), each object matches at most once; precision,
//! recall, F1, "accuracy" TP/(TP+FP+FN) (the Data Science Bowl 2018 "AP",
//! Caicedo et al. 2019) and panoptic quality ΣIoU_TP/(TP+FP/2+FN/2)
//! (Kirillov et al. 2019). All ratios are 0 when their denominator is 0, as
//! in StarDist, so a pair of empty images scores 0, not 1.
//!
//! Assignment: above IoU 0.5 every object has at most one partner, so any
//! assignment is the optimal one. We assign greedily by IoU descending
//! (ties by ids), which is exact there; at exactly 0.5 (equal-IoU ties) and
//! below 0.5 greedy can find fewer matches than StarDist's optimal
//! (Hungarian) assignment.

use std::collections::{HashMap, HashSet};

/// The ten IoU thresholds of the DSB 2018 score, written out so that each is
/// the nearest `f64` to its decimal (0.5 + 0.05·i would drift).
pub const AP_THRESHOLDS: [f64; 10] = [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95];

/// Pixel overlaps of one truth/prediction pair, computed once and scored at
/// any threshold.
#[derive(Debug, Clone, Default)]
pub struct Overlaps {
    /// Pixels shared by (true id, predicted id); both nonzero.
    pub pairs: HashMap<(u32, u32), u64>,
    /// Pixels per true object.
    pub truth_area: HashMap<u32, u64>,
    /// Pixels per predicted object.
    pub pred_area: HashMap<u32, u64>,
}

impl Overlaps {
    /// IoU of a true and a predicted object (0 if they do not overlap or
    /// an id is absent).
    pub fn iou(&self, t: u32, p: u32) -> f64 {
        let inter = self.pairs.get(&(t, p)).copied().unwrap_or(0);
        let at = self.truth_area.get(&t).copied().unwrap_or(0);
        let ap = self.pred_area.get(&p).copied().unwrap_or(0);
        iou_of(inter, at, ap)
    }
}

fn iou_of(inter: u64, a: u64, b: u64) -> f64 {
    let union = a + b - inter;
    if union == 0 {
        0.0
    } else {
        inter as f64 / union as f64
    }
}

/// Overlap table of two label images of the same shape (0 = background).
pub fn overlaps(truth: &[u32], pred: &[u32]) -> Overlaps {
    assert_eq!(
        truth.len(),
        pred.len(),
        "truth and prediction differ in size"
    );
    let mut o = Overlaps::default();
    for (&t, &p) in truth.iter().zip(pred) {
        if t != 0 {
            *o.truth_area.entry(t).or_insert(0) += 1;
        }
        if p != 0 {
            *o.pred_area.entry(p).or_insert(0) += 1;
        }
        if t != 0 && p != 0 {
            *o.pairs.entry((t, p)).or_insert(0) += 1;
        }
    }
    o
}

/// Match counts at one IoU threshold; [`Matching::add`] pools images
/// (StarDist's `by_image=False`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Matching {
    /// IoU a pair needs to match.
    pub threshold: f64,
    /// Matched pairs (true positives).
    pub tp: usize,
    /// Predicted objects left unmatched.
    pub fp: usize,
    /// True objects left unmatched.
    pub fn_: usize,
    /// Sum of the IoU of the true positives.
    pub sum_matched_iou: f64,
    /// True objects.
    pub n_true: usize,
    /// Predicted objects.
    pub n_pred: usize,
}

fn ratio(num: f64, den: f64) -> f64 {
    if den > 0.0 { num / den } else { 0.0 }
}

impl Matching {
    /// An empty tally at `threshold`, to [`add`](Self::add) images into.
    pub fn empty(threshold: f64) -> Self {
        Self {
            threshold,
            tp: 0,
            fp: 0,
            fn_: 0,
            sum_matched_iou: 0.0,
            n_true: 0,
            n_pred: 0,
        }
    }
    /// TP / (TP + FP).
    pub fn precision(&self) -> f64 {
        ratio(self.tp as f64, (self.tp + self.fp) as f64)
    }
    /// TP / (TP + FN).
    pub fn recall(&self) -> f64 {
        ratio(self.tp as f64, (self.tp + self.fn_) as f64)
    }
    /// TP / (TP + FP + FN): the DSB 2018 "average precision" at one threshold.
    pub fn accuracy(&self) -> f64 {
        ratio(self.tp as f64, (self.tp + self.fp + self.fn_) as f64)
    }
    /// 2·TP / (2·TP + FP + FN).
    pub fn f1(&self) -> f64 {
        ratio(
            2.0 * self.tp as f64,
            (2 * self.tp + self.fp + self.fn_) as f64,
        )
    }
    /// Mean IoU of the matched pairs (segmentation quality, SQ).
    pub fn mean_matched_iou(&self) -> f64 {
        ratio(self.sum_matched_iou, self.tp as f64)
    }
    /// ΣIoU_TP / (TP + FP/2 + FN/2) = SQ · F1.
    pub fn panoptic_quality(&self) -> f64 {
        let den = self.tp as f64 + 0.5 * self.fp as f64 + 0.5 * self.fn_ as f64;
        ratio(self.sum_matched_iou, den)
    }
    /// Pools another image's counts into this one (same threshold).
    pub fn add(&mut self, other: &Matching) {
        assert_eq!(
            self.threshold, other.threshold,
            "adding matchings at different thresholds"
        );
        self.tp += other.tp;
        self.fp += other.fp;
        self.fn_ += other.fn_;
        self.sum_matched_iou += other.sum_matched_iou;
        self.n_true += other.n_true;
        self.n_pred += other.n_pred;
    }
}

/// One-to-one matching at `threshold` (IoU `>=` threshold), greedy by IoU
/// descending; see the module doc for when that equals StarDist's.
pub fn match_at(o: &Overlaps, threshold: f64) -> Matching {
    let mut candidates: Vec<(f64, u32, u32)> = o
        .pairs
        .iter()
        .map(|(&(t, p), &inter)| (iou_of(inter, o.truth_area[&t], o.pred_area[&p]), t, p))
        // IoU 0 never matches, even at threshold 0.
        .filter(|&(iou, _, _)| iou > 0.0 && iou >= threshold)
        .collect();
    candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut used_t = HashSet::new();
    let mut used_p = HashSet::new();
    let mut m = Matching::empty(threshold);
    for (iou, t, p) in candidates {
        if !used_t.contains(&t) && !used_p.contains(&p) {
            used_t.insert(t);
            used_p.insert(p);
            m.tp += 1;
            m.sum_matched_iou += iou;
        }
    }
    m.n_true = o.truth_area.len();
    m.n_pred = o.pred_area.len();
    m.fp = m.n_pred - m.tp;
    m.fn_ = m.n_true - m.tp;
    m
}

/// Mean of [`Matching::accuracy`] over [`AP_THRESHOLDS`] for one image.
pub fn mean_ap(o: &Overlaps) -> f64 {
    let sum: f64 = AP_THRESHOLDS
        .iter()
        .map(|&t| match_at(o, t).accuracy())
        .sum();
    sum / AP_THRESHOLDS.len() as f64
}

/// Error counts for a report.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// True objects.
    pub true_objects: usize,
    /// Predicted objects.
    pub predicted: usize,
    /// True positives at IoU 0.5.
    pub matched: usize,
    /// True objects that no predicted object overlaps with IoU ≥ 0.5.
    pub missed: usize,
    /// True objects that contain ≥ 50 % of the pixels of each of at least
    /// two predicted objects (one object cut into pieces).
    pub split: usize,
    /// Predicted objects that contain ≥ 50 % of the pixels of each of at
    /// least two true objects (several objects fused into one).
    pub merged: usize,
}

/// Matched / missed / split / merged counts of one image pair.
pub fn counts(o: &Overlaps) -> Counts {
    let mut has_match: HashMap<u32, bool> = o.truth_area.keys().map(|&t| (t, false)).collect();
    // pieces[t]: predicted objects mostly inside true object t;
    // swallowed[p]: true objects mostly inside predicted object p.
    let mut pieces: HashMap<u32, usize> = HashMap::new();
    let mut swallowed: HashMap<u32, usize> = HashMap::new();
    for (&(t, p), &inter) in &o.pairs {
        let (at, ap) = (o.truth_area[&t], o.pred_area[&p]);
        if iou_of(inter, at, ap) >= 0.5 {
            has_match.insert(t, true);
        }
        if 2 * inter >= ap {
            *pieces.entry(t).or_insert(0) += 1;
        }
        if 2 * inter >= at {
            *swallowed.entry(p).or_insert(0) += 1;
        }
    }
    Counts {
        true_objects: o.truth_area.len(),
        predicted: o.pred_area.len(),
        matched: match_at(o, 0.5).tp,
        missed: has_match.values().filter(|&&m| !m).count(),
        split: pieces.values().filter(|&&n| n >= 2).count(),
        merged: swallowed.values().filter(|&&n| n >= 2).count(),
    }
}

impl Counts {
    /// Adds another image's counts.
    pub fn add(&mut self, other: &Counts) {
        self.true_objects += other.true_objects;
        self.predicted += other.predicted;
        self.matched += other.matched;
        self.missed += other.missed;
        self.split += other.split;
        self.merged += other.merged;
    }
}

/// Object scores over a dataset: every image's matches pooled at each of
/// [`AP_THRESHOLDS`] (StarDist's `matching_dataset(by_image=False)`), and
/// the error counts summed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ObjectScores {
    /// Image pairs scored.
    pub images: usize,
    /// The pooled matches at each threshold of [`AP_THRESHOLDS`].
    pub matchings: Vec<Matching>,
    /// Matched, missed, split and merged objects.
    pub counts: Counts,
}

impl Default for ObjectScores {
    fn default() -> Self {
        ObjectScores {
            images: 0,
            matchings: AP_THRESHOLDS.iter().map(|&t| Matching::empty(t)).collect(),
            counts: Counts::default(),
        }
    }
}

impl ObjectScores {
    /// Adds one image: its true and predicted labels (0 background).
    pub fn add(&mut self, truth: &[u32], pred: &[u32]) {
        let o = overlaps(truth, pred);
        for m in &mut self.matchings {
            m.add(&match_at(&o, m.threshold));
        }
        self.counts.add(&counts(&o));
        self.images += 1;
    }

    /// TP / (TP + FP + FN) at IoU 0.5: the DSB 2018 "AP50".
    pub fn ap50(&self) -> f64 {
        self.matchings[0].accuracy()
    }

    /// The mean of TP / (TP + FP + FN) over IoU 0.5, 0.55, …, 0.95.
    pub fn ap(&self) -> f64 {
        self.matchings.iter().map(Matching::accuracy).sum::<f64>() / self.matchings.len() as f64
    }

    /// F1 at IoU 0.5.
    pub fn f1_50(&self) -> f64 {
        self.matchings[0].f1()
    }

    /// Panoptic quality at IoU 0.5 (matches are unique there).
    pub fn pq(&self) -> f64 {
        self.matchings[0].panoptic_quality()
    }

    /// A printable summary.
    pub fn table(&self) -> String {
        let c = &self.counts;
        format!(
            "objects over {} image(s): AP50 {:.2} %   AP 0.5:0.95 {:.2} %   F1@0.5 {:.2} %   PQ {:.2} %\n  true {}   predicted {}   matched {}   missed {}   split {}   merged {}",
            self.images,
            100.0 * self.ap50(),
            100.0 * self.ap(),
            100.0 * self.f1_50(),
            100.0 * self.pq(),
            c.true_objects,
            c.predicted,
            c.matched,
            c.missed,
            c.split,
            c.merged
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: usize = 40;

    /// Paints rectangle [x0, x1) × [y0, y1) with `id`.
    fn rect(img: &mut [u32], id: u32, x0: usize, x1: usize, y0: usize, y1: usize) {
        for y in y0..y1 {
            img[y * W + x0..y * W + x1].fill(id);
        }
    }

    fn blank() -> Vec<u32> {
        vec![0; W * 30]
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn identical_labels_score_one() {
        let mut t = blank();
        rect(&mut t, 3, 0, 10, 0, 10);
        rect(&mut t, 9, 20, 25, 5, 25);
        let o = overlaps(&t, &t);
        for &th in &AP_THRESHOLDS {
            let m = match_at(&o, th);
            assert_eq!((m.tp, m.fp, m.fn_), (2, 0, 0));
            for v in [
                m.precision(),
                m.recall(),
                m.accuracy(),
                m.f1(),
                m.panoptic_quality(),
            ] {
                assert!(close(v, 1.0));
            }
        }
        assert!(close(mean_ap(&o), 1.0));
        let c = counts(&o);
        assert_eq!((c.matched, c.missed, c.split, c.merged), (2, 0, 0, 0));
    }

    #[test]
    fn shifted_square() {
        // 10×10 squares two columns apart: IoU = 80 / 120 = 2/3.
        let (mut t, mut p) = (blank(), blank());
        rect(&mut t, 1, 0, 10, 0, 10);
        rect(&mut p, 5, 2, 12, 0, 10);
        let o = overlaps(&t, &p);
        assert!(close(o.iou(1, 5), 2.0 / 3.0));
        let m = match_at(&o, 0.5);
        assert_eq!((m.tp, m.fp, m.fn_), (1, 0, 0));
        assert!(close(m.panoptic_quality(), 2.0 / 3.0));
        let m = match_at(&o, 0.7);
        assert_eq!((m.tp, m.fp, m.fn_), (0, 1, 1));
        assert_eq!(m.accuracy(), 0.0);
        // Matches at 0.5, 0.55, 0.6, 0.65: four of ten thresholds.
        assert!(close(mean_ap(&o), 0.4));
    }

    #[test]
    fn missed_object() {
        let (mut t, mut p) = (blank(), blank());
        rect(&mut t, 1, 0, 10, 0, 10);
        rect(&mut t, 2, 20, 30, 0, 10);
        rect(&mut p, 1, 0, 10, 0, 10);
        let o = overlaps(&t, &p);
        let m = match_at(&o, 0.5);
        assert_eq!((m.tp, m.fp, m.fn_), (1, 0, 1));
        assert!(close(m.precision(), 1.0));
        assert!(close(m.recall(), 0.5));
        assert!(close(m.accuracy(), 0.5));
        assert!(close(m.f1(), 2.0 / 3.0));
        let c = counts(&o);
        assert_eq!(
            (c.true_objects, c.predicted, c.matched, c.missed),
            (2, 1, 1, 1)
        );
    }

    #[test]
    fn merged_and_split() {
        // One prediction over two true objects of 60 and 40 pixels.
        let (mut t, mut p) = (blank(), blank());
        rect(&mut t, 1, 0, 6, 0, 10);
        rect(&mut t, 2, 6, 10, 0, 10);
        rect(&mut p, 7, 0, 10, 0, 10);
        let c = counts(&overlaps(&t, &p));
        assert_eq!((c.matched, c.missed, c.split, c.merged), (1, 1, 0, 1));
        // The same with truth and prediction swapped is a split.
        let o = overlaps(&p, &t);
        let c = counts(&o);
        assert_eq!((c.matched, c.missed, c.split, c.merged), (1, 0, 1, 0));
        let m = match_at(&o, 0.5);
        assert_eq!((m.tp, m.fp, m.fn_), (1, 1, 0));
        // Below 0.5 greedy takes the better piece only: still one match.
        let m = match_at(&o, 0.3);
        assert_eq!((m.tp, m.fp, m.fn_), (1, 1, 0));
        assert!(close(m.sum_matched_iou, 0.6));
    }

    #[test]
    fn exact_half_ties_match_once() {
        // Two equal halves under one prediction: both IoU exactly 0.5.
        let (mut t, mut p) = (blank(), blank());
        rect(&mut t, 1, 0, 5, 0, 10);
        rect(&mut t, 2, 5, 10, 0, 10);
        rect(&mut p, 1, 0, 10, 0, 10);
        let m = match_at(&overlaps(&t, &p), 0.5);
        assert_eq!((m.tp, m.fp, m.fn_), (1, 0, 1));
        assert!(close(m.sum_matched_iou, 0.5));
    }

    #[test]
    fn panoptic_quality_by_hand() {
        // A shifted (IoU 2/3), B exact (IoU 1), C a false positive:
        // PQ = (2/3 + 1) / (2 + 1/2 + 0) = 2/3.
        let (mut t, mut p) = (blank(), blank());
        rect(&mut t, 1, 0, 10, 0, 10);
        rect(&mut t, 2, 20, 30, 0, 10);
        rect(&mut p, 1, 2, 12, 0, 10);
        rect(&mut p, 2, 20, 30, 0, 10);
        rect(&mut p, 3, 0, 5, 20, 25);
        let m = match_at(&overlaps(&t, &p), 0.5);
        assert_eq!((m.tp, m.fp, m.fn_), (2, 1, 0));
        assert!(close(m.panoptic_quality(), 2.0 / 3.0));
        assert!(close(m.mean_matched_iou(), 5.0 / 6.0));
    }

    #[test]
    fn pooling_images_and_empty_images() {
        let mut t1 = blank();
        rect(&mut t1, 1, 0, 10, 0, 10);
        let mut t2 = blank();
        rect(&mut t2, 1, 0, 10, 0, 10);
        rect(&mut t2, 2, 20, 30, 0, 10);
        let mut total = Matching::empty(0.5);
        total.add(&match_at(&overlaps(&t1, &t1), 0.5));
        total.add(&match_at(&overlaps(&t2, &blank()), 0.5));
        assert_eq!(
            (total.tp, total.fp, total.fn_, total.n_true, total.n_pred),
            (1, 0, 2, 3, 1)
        );
        // Pooled 1/3, not the mean of per-image scores (1 + 0) / 2.
        assert!(close(total.accuracy(), 1.0 / 3.0));
        // Both empty: every ratio is 0, as in StarDist.
        let m = match_at(&overlaps(&blank(), &blank()), 0.5);
        assert_eq!(
            (m.accuracy(), m.f1(), m.panoptic_quality()),
            (0.0, 0.0, 0.0)
        );
    }
}

#[cfg(test)]
mod dataset_tests {
    use super::*;

    #[test]
    fn dataset_scores_pool_images_and_sum_counts() {
        // Image 1: perfect (one object). Image 2: one true object missed,
        // one false object predicted.
        let a = vec![0, 1, 1, 0];
        let mut s = ObjectScores::default();
        s.add(&a, &a);
        s.add(&[0, 0, 2, 2], &[3, 0, 0, 0]);
        assert_eq!(s.images, 2);
        // Pooled: TP 1, FP 1, FN 1 at every threshold.
        assert!((s.ap50() - 1.0 / 3.0).abs() < 1e-12);
        assert!((s.ap() - 1.0 / 3.0).abs() < 1e-12);
        assert!((s.f1_50() - 0.5).abs() < 1e-12);
        assert!((s.pq() - 0.5).abs() < 1e-12);
        assert_eq!((s.counts.true_objects, s.counts.missed), (2, 1));
        assert!(s.table().contains("AP50 33.33 %"), "{}", s.table());
    }
}
