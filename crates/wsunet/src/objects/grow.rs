//! Seeded watershed: turn the network's three-class output (background,
//! interior, boundary) into instance labels.
//!
//! Seeds are the 8-connected components of confident interior; they are
//! grown over the foreground region by a priority flood on an elevation map
//! (the boundary probability), so two touching objects meet on their shared
//! boundary instead of merging. The flood is the marker-controlled watershed
//! of Beucher & Meyer (1993) in the ordered-queue form of Vincent & Soille
//! (1991): a min-heap keyed by elevation with a FIFO counter to break ties,
//! which makes the result deterministic.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::label::{connected_components, neighbours4, relabel_sequential, remove_small};

/// Maps an `f32` to a `u32` whose unsigned order is the numeric order of the
/// float. NaN counts as +inf so an undefined elevation is flooded last.
fn ordered_key(v: f32) -> u32 {
    // `+ 0.0` turns -0.0 into +0.0 so the two zeros tie.
    let v = if v.is_nan() { f32::INFINITY } else { v + 0.0 };
    let bits = v.to_bits();
    if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

/// Grows `seeds` (0 = no seed) over `region` in order of rising `elevation`,
/// 4-connected. Each pixel takes the label of the neighbour that reached it
/// first; equal elevations are served first-in-first-out. Seed pixels count
/// as region even where `region` is false. Region pixels no seed reaches
/// stay 0; pixels outside the region are always 0.
pub fn seeded_growth(
    seeds: &[u32],
    region: &[bool],
    elevation: &[f32],
    width: usize,
    height: usize,
) -> Vec<u32> {
    let n = width * height;
    assert_eq!(seeds.len(), n, "seeds length != width*height");
    assert_eq!(region.len(), n, "region length != width*height");
    assert_eq!(elevation.len(), n, "elevation length != width*height");

    flood(seeds, region, elevation, |i| neighbours4(i, width, height))
}

/// [`seeded_growth`] on any graph of pixels: `neighbours(i)` lists pixel
/// `i`'s 4-neighbours in the order above, left, right, below (the order of
/// [`neighbours4`]), and pixels are numbered in raster order. A subset of an
/// image numbered so (one piece of a streamed image) grows exactly as it
/// grows inside the whole image.
pub(crate) fn flood(
    seeds: &[u32],
    region: &[bool],
    elevation: &[f32],
    neighbours: impl Fn(usize) -> [Option<usize>; 4],
) -> Vec<u32> {
    let mut out = seeds.to_vec();
    let mut heap: BinaryHeap<Reverse<(u32, u64, usize)>> = BinaryHeap::new();
    let mut counter = 0u64;
    // Seeds enter in raster order, so ties at the start are resolved the same
    // way on every run.
    for (i, _) in seeds.iter().enumerate().filter(|(_, s)| **s != 0) {
        heap.push(Reverse((ordered_key(elevation[i]), counter, i)));
        counter += 1;
    }
    while let Some(Reverse((_, _, i))) = heap.pop() {
        let label = out[i];
        for j in neighbours(i).into_iter().flatten() {
            // Labelling on push means each pixel is queued at most once.
            if out[j] == 0 && region[j] {
                out[j] = label;
                heap.push(Reverse((ordered_key(elevation[j]), counter, j)));
                counter += 1;
            }
        }
    }
    out
}

/// Thresholds for [`instances_from_probs`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceParams {
    /// P(interior) at or above which a pixel is a seed.
    pub interior_threshold: f32,
    /// P(interior) + P(boundary) (= 1 − P(background)) at or above which a
    /// pixel belongs to some object.
    pub region_threshold: f32,
    /// Objects with fewer pixels are dropped.
    pub min_area: usize,
}

impl Default for InstanceParams {
    fn default() -> Self {
        Self {
            interior_threshold: 0.5,
            region_threshold: 0.5,
            min_area: 10,
        }
    }
}

/// Instance labels from planar probabilities `[classes][height][width]`
/// with classes 0 background, 1 interior, 2 boundary (`classes` must be 3).
/// Seeds: 8-connected components of P(interior) ≥ `interior_threshold`;
/// region: P(interior) + P(boundary) ≥ `region_threshold`; elevation:
/// P(boundary). Objects under `min_area` are removed and the rest numbered
/// 1..=N in raster order of their first pixel. Returns (labels, N).
pub fn instances_from_probs(
    probs: &[f32],
    classes: usize,
    width: usize,
    height: usize,
    params: &InstanceParams,
) -> (Vec<u32>, u32) {
    assert_eq!(
        classes, 3,
        "instances_from_probs needs 3 classes (bg, interior, boundary)"
    );
    let n = width * height;
    assert_eq!(
        probs.len(),
        classes * n,
        "probs length != classes*width*height"
    );
    let interior = &probs[n..2 * n];
    let boundary = &probs[2 * n..3 * n];

    let seed_mask: Vec<bool> = interior
        .iter()
        .map(|&p| p >= params.interior_threshold)
        .collect();
    let region: Vec<bool> = interior
        .iter()
        .zip(boundary)
        .map(|(&a, &b)| a + b >= params.region_threshold)
        .collect();
    let (seeds, _) = connected_components(&seed_mask, width, height, true);
    let mut labels = seeded_growth(&seeds, &region, boundary, width, height);
    remove_small(&mut labels, params.min_area);
    let count = relabel_sequential(&mut labels);
    (labels, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Synthetic network output: one-hot-ish probabilities for discs of
    /// radius `r`. Pixels within `rim` of a disc edge or of the seam to a
    /// nearer other disc are boundary; deeper pixels are interior.
    fn disc_probs(w: usize, h: usize, centres: &[(f64, f64)], r: f64, rim: f64) -> Vec<f32> {
        let n = w * h;
        let mut p = vec![0f32; 3 * n];
        for y in 0..h {
            for x in 0..w {
                let d: Vec<f64> = centres
                    .iter()
                    .map(|&(cx, cy)| (x as f64 - cx).hypot(y as f64 - cy))
                    .collect();
                let (k, &dk) = d
                    .iter()
                    .enumerate()
                    .min_by(|a, b| a.1.total_cmp(b.1))
                    .expect("one centre");
                let i = y * w + x;
                let class = if dk > r {
                    0
                } else {
                    // Distance to the bisector with every other disc that
                    // overlaps this pixel's neighbourhood.
                    let seam = centres
                        .iter()
                        .enumerate()
                        .filter(|&(j, _)| j != k)
                        .map(|(j, &(cx, cy))| {
                            let (ax, ay) = centres[k];
                            let len = (cx - ax).hypot(cy - ay);
                            (d[j] * d[j] - dk * dk) / (2.0 * len)
                        })
                        .fold(f64::INFINITY, f64::min);
                    if r - dk < rim || seam < rim { 2 } else { 1 }
                };
                p[class * n + i] = 0.9;
                for c in (0..3).filter(|&c| c != class) {
                    p[c * n + i] = 0.05;
                }
            }
        }
        p
    }

    fn areas(labels: &[u32], n: u32) -> Vec<usize> {
        (1..=n)
            .map(|id| labels.iter().filter(|&&l| l == id).count())
            .collect()
    }

    #[test]
    fn touching_discs_are_separated() {
        let (w, h) = (60, 40);
        let probs = disc_probs(w, h, &[(20.0, 20.0), (38.0, 20.0)], 10.0, 2.0);
        let (labels, n) = instances_from_probs(&probs, 3, w, h, &InstanceParams::default());
        assert_eq!(n, 2);
        let disc = std::f64::consts::PI * 100.0;
        for a in areas(&labels, n) {
            assert!((a as f64 - disc).abs() < 0.1 * disc, "area {a} vs {disc}");
        }
        // Object 1 is the left disc, object 2 the right; the seam is x = 29.
        assert_eq!(labels[20 * w + 20], 1);
        assert_eq!(labels[20 * w + 38], 2);
        assert_eq!(labels[20 * w + 27], 1);
        assert_eq!(labels[20 * w + 31], 2);

        // Plain connected components of the foreground would merge them:
        // the test above is meaningful.
        let fg: Vec<bool> = (0..w * h).map(|i| probs[i] < 0.5).collect();
        let (cc, _) = connected_components(&fg, w, h, true);
        assert_eq!(cc.iter().copied().max(), Some(1));
    }

    #[test]
    fn lone_disc_stays_whole() {
        let (w, h) = (40, 40);
        let probs = disc_probs(w, h, &[(20.0, 20.0)], 10.0, 2.0);
        let (labels, n) = instances_from_probs(&probs, 3, w, h, &InstanceParams::default());
        assert_eq!(n, 1);
        let fg = (0..w * h).filter(|&i| probs[i] < 0.5).count();
        assert_eq!(areas(&labels, 1)[0], fg, "the whole region is claimed");
        let disc = std::f64::consts::PI * 100.0;
        assert!((fg as f64 - disc).abs() < 0.1 * disc);
    }

    #[test]
    fn min_area_removes_speck_and_all_background_is_empty() {
        let (w, h) = (40, 40);
        let mut probs = disc_probs(w, h, &[(20.0, 20.0)], 10.0, 2.0);
        let n = w * h;
        // A 2×2 interior speck in a corner: a seed of its own, but tiny.
        for i in [2 * w + 2, 2 * w + 3, 3 * w + 2, 3 * w + 3] {
            probs[i] = 0.05;
            probs[n + i] = 0.9;
        }
        let (labels, count) = instances_from_probs(&probs, 3, w, h, &InstanceParams::default());
        assert_eq!(count, 1);
        assert_eq!(labels[2 * w + 2], 0);
        let keep = InstanceParams {
            min_area: 1,
            ..InstanceParams::default()
        };
        let (labels, count) = instances_from_probs(&probs, 3, w, h, &keep);
        assert_eq!(count, 2);
        assert_eq!(labels[2 * w + 2], 1, "raster order: the speck comes first");

        let mut bg = vec![0.0f32; 3 * n];
        bg[..n].fill(1.0);
        let (labels, count) = instances_from_probs(&bg, 3, w, h, &InstanceParams::default());
        assert_eq!(count, 0);
        assert!(labels.iter().all(|&l| l == 0));
    }

    #[test]
    fn growth_follows_elevation_and_is_deterministic() {
        // 1-D strip: seeds at both ends, a ridge at x = 6 → split there,
        // not in the middle (x = 4.5).
        let w = 10;
        let seeds = [1, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let region = [true; 10];
        let elev = [0.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.9, 0.1, 0.1, 0.0];
        let out = seeded_growth(&seeds, &region, &elev, w, 1);
        // Flat elevation would split in the middle (x = 4 | 5).
        let flat = seeded_growth(&seeds, &region, &[0.0; 10], w, 1);
        assert_eq!(flat, vec![1, 1, 1, 1, 1, 2, 2, 2, 2, 2]);
        assert_eq!(&out[..6], &[1, 1, 1, 1, 1, 1]);
        assert_eq!(&out[7..], &[2, 2, 2]);
        // The ridge pixel goes to whichever side reached it first.
        assert_eq!(out[6], 2);
        // NaN counts as +inf: the NaN pixel is claimed by seed 1 but
        // expanded last, so seed 2 takes x = 2 (as 0 or -inf, seed 1 would).
        let elev = [0.0, f32::NAN, 0.1, 0.1, 0.0];
        let out = seeded_growth(&[1, 0, 0, 0, 2], &[true; 5], &elev, 5, 1);
        assert_eq!(out, vec![1, 1, 2, 2, 2]);
        let zero = [0.0, 0.0, 0.1, 0.1, 0.0];
        let out = seeded_growth(&[1, 0, 0, 0, 2], &[true; 5], &zero, 5, 1);
        assert_eq!(out, vec![1, 1, 1, 2, 2]);
        // Region pixels no seed reaches, and non-region pixels, stay 0.
        let region = [true, true, true, true, false, true, true, true, true, true];
        let seeds = [1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let out = seeded_growth(&seeds, &region, &[0.5; 10], w, 1);
        assert_eq!(out, vec![1, 1, 1, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(out, seeded_growth(&seeds, &region, &[0.5; 10], w, 1));
        // A seed outside the region still counts.
        let out = seeded_growth(&[0, 0, 3, 0], &[false, true, false, true], &[0.0; 4], 4, 1);
        assert_eq!(out, vec![0, 3, 3, 3]);
    }

    #[test]
    fn ordered_key_orders_floats() {
        let v = [
            f32::NEG_INFINITY,
            -2.0,
            -0.5,
            0.0,
            1e-30,
            0.5,
            3.0,
            f32::INFINITY,
        ];
        for pair in v.windows(2) {
            assert!(ordered_key(pair[0]) < ordered_key(pair[1]), "{pair:?}");
        }
        assert_eq!(ordered_key(-0.0), ordered_key(0.0));
        assert_eq!(ordered_key(f32::NAN), ordered_key(f32::INFINITY));
    }
}
