//! Per-object measurements in one pass over a label band: area, centroid,
//! bounding box, mean confidence and mean intensity per input channel — the
//! basic "region properties" of CellProfiler / scikit-image `regionprops`,
//! kept as sums so that halves of an object measured in separate bands
//! (tiles cut at a seam) can be merged exactly.
//!
//! Coordinates: a pixel's position is its centre, (x + 0.5, y + 0.5), with
//! y the row in the whole image (band row + `origin_y`). Centroids thus
//! agree with polygons on pixel edges (`outline.rs`): a single pixel (x, y)
//! has centroid (x + 0.5, y + 0.5), the centre of its square. Bounding boxes
//! are inclusive pixel indices.

use std::collections::HashMap;

/// Sums over one object's pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectStats {
    pub id: u32,
    pub area: u64,
    /// Σ (x + 0.5) over the object's pixels.
    pub sum_x: f64,
    /// Σ (y + 0.5), y counted in the whole image.
    pub sum_y: f64,
    pub min_x: u32,
    pub min_y: u32,
    pub max_x: u32,
    pub max_y: u32,
    /// Σ per-pixel confidence (0 when none was given).
    pub sum_prob: f64,
    /// Σ intensity, one entry per input channel.
    pub sum_intensity: Vec<f64>,
}

impl ObjectStats {
    /// Mean pixel centre (x, y); see the module doc for the convention.
    pub fn centroid(&self) -> (f64, f64) {
        let a = self.area.max(1) as f64;
        (self.sum_x / a, self.sum_y / a)
    }

    pub fn mean_prob(&self) -> f64 {
        self.sum_prob / self.area.max(1) as f64
    }

    pub fn mean_intensity(&self) -> Vec<f64> {
        let a = self.area.max(1) as f64;
        self.sum_intensity.iter().map(|s| s / a).collect()
    }

    /// Adds another part of the same object (e.g. its half in the next band).
    pub fn merge(&mut self, other: &ObjectStats) {
        assert_eq!(self.id, other.id, "merging different objects");
        assert_eq!(
            self.sum_intensity.len(),
            other.sum_intensity.len(),
            "channel counts differ"
        );
        self.area += other.area;
        self.sum_x += other.sum_x;
        self.sum_y += other.sum_y;
        self.min_x = self.min_x.min(other.min_x);
        self.min_y = self.min_y.min(other.min_y);
        self.max_x = self.max_x.max(other.max_x);
        self.max_y = self.max_y.max(other.max_y);
        self.sum_prob += other.sum_prob;
        for (s, o) in self.sum_intensity.iter_mut().zip(&other.sum_intensity) {
            *s += o;
        }
    }
}

/// Measures every nonzero label of a band of `height` rows starting at row
/// `origin_y` of the whole image. `prob` is an optional per-pixel confidence,
/// `channels` the input image planes (each `width * height`, may be none).
/// Returns the objects sorted by id.
pub fn measure(
    labels: &[u32],
    width: usize,
    height: usize,
    origin_y: u64,
    prob: Option<&[f32]>,
    channels: &[&[f32]],
) -> Vec<ObjectStats> {
    let n = width * height;
    assert_eq!(labels.len(), n, "labels length != width*height");
    if let Some(p) = prob {
        assert_eq!(p.len(), n, "prob length != width*height");
    }
    for c in channels {
        assert_eq!(c.len(), n, "channel length != width*height");
    }
    let mut m = Measurer::new(channels.len());
    for (i, &id) in labels.iter().enumerate().filter(|(_, l)| **l != 0) {
        m.add(
            id,
            (i % width) as u32,
            origin_y + (i / width) as u64,
            prob.map(|p| p[i]),
            channels.iter().map(|c| c[i]),
        );
    }
    m.finish()
}

/// Measures objects from their pixels given one at a time in raster order
/// (what [`measure`] does over a band; the streamed objects' pixels come as
/// lists).
#[derive(Debug)]
pub(crate) struct Measurer {
    channels: usize,
    index: HashMap<u32, usize>,
    stats: Vec<ObjectStats>,
}

impl Measurer {
    pub(crate) fn new(channels: usize) -> Measurer {
        Measurer {
            channels,
            index: HashMap::new(),
            stats: Vec::new(),
        }
    }

    /// Adds pixel (`x`, `y_whole`) of object `id`.
    pub(crate) fn add(
        &mut self,
        id: u32,
        x: u32,
        y_whole: u64,
        prob: Option<f32>,
        intensity: impl Iterator<Item = f32>,
    ) {
        // Rows past u32 do not occur in practice; clamp rather than wrap.
        let y = u32::try_from(y_whole).unwrap_or(u32::MAX);
        let k = *self.index.entry(id).or_insert_with(|| {
            self.stats.push(ObjectStats {
                id,
                area: 0,
                sum_x: 0.0,
                sum_y: 0.0,
                min_x: x,
                min_y: y,
                max_x: x,
                max_y: y,
                sum_prob: 0.0,
                sum_intensity: vec![0.0; self.channels],
            });
            self.stats.len() - 1
        });
        let s = &mut self.stats[k];
        s.area += 1;
        s.sum_x += f64::from(x) + 0.5;
        s.sum_y += y_whole as f64 + 0.5;
        s.min_x = s.min_x.min(x);
        s.max_x = s.max_x.max(x);
        // Raster order: the first pixel has the smallest row.
        s.max_y = y;
        if let Some(p) = prob {
            s.sum_prob += f64::from(p);
        }
        for (acc, c) in s.sum_intensity.iter_mut().zip(intensity) {
            *acc += f64::from(c);
        }
    }

    /// The objects, sorted by id.
    pub(crate) fn finish(mut self) -> Vec<ObjectStats> {
        self.stats.sort_by_key(|s| s.id);
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_objects() {
        // 6×4 band at row 10 of the whole image.
        #[rustfmt::skip]
        let labels = [
            0, 0, 0, 0, 0, 9,
            0, 0, 4, 4, 4, 0,
            0, 0, 4, 4, 4, 0,
            0, 0, 0, 0, 0, 0,
        ];
        let prob: Vec<f32> = (0..24).map(|i| (i % 4) as f32 * 0.25).collect();
        let c0: Vec<f32> = (0..24).map(|i| i as f32).collect();
        let c1 = vec![2.0f32; 24];
        let s = measure(&labels, 6, 4, 10, Some(&prob), &[&c0, &c1]);
        assert_eq!(s.iter().map(|o| o.id).collect::<Vec<_>>(), vec![4, 9]);
        let o = &s[0];
        assert_eq!(o.area, 6);
        assert_eq!(o.centroid(), (3.5, 12.0));
        assert_eq!((o.min_x, o.max_x, o.min_y, o.max_y), (2, 4, 11, 12));
        // Pixels 8, 9, 10, 14, 15, 16 → prob (0, .25, .5, .5, .75, 0).
        assert!((o.mean_prob() - 2.0 / 6.0).abs() < 1e-12);
        assert_eq!(o.mean_intensity(), vec![12.0, 2.0]);
        let p = &s[1];
        assert_eq!((p.area, p.centroid()), (1, (5.5, 10.5)));
        assert_eq!((p.min_y, p.max_y), (10, 10));
        // No confidence, no channels.
        let s = measure(&labels, 6, 4, 0, None, &[]);
        assert_eq!((s[0].mean_prob(), s[0].mean_intensity().len()), (0.0, 0));
        assert!(measure(&[0; 4], 2, 2, 0, None, &[]).is_empty());
    }

    #[test]
    fn merged_halves_equal_the_whole() {
        let (w, h) = (9, 8);
        let labels: Vec<u32> = (0..w * h)
            .map(|i| {
                let (x, y) = (i % w, i / w);
                if (x + 2 * y) % 7 < 3 {
                    1 + (x / 3) as u32
                } else {
                    0
                }
            })
            .collect();
        let prob: Vec<f32> = (0..w * h).map(|i| (i % 8) as f32 / 8.0).collect();
        let img: Vec<f32> = (0..w * h).map(|i| (i * 3 % 11) as f32).collect();
        let whole = measure(&labels, w, h, 0, Some(&prob), &[&img]);

        let cut = 3 * w;
        let top = measure(&labels[..cut], w, 3, 0, Some(&prob[..cut]), &[&img[..cut]]);
        let bottom = measure(
            &labels[cut..],
            w,
            h - 3,
            3,
            Some(&prob[cut..]),
            &[&img[cut..]],
        );
        let mut merged = top;
        for b in &bottom {
            match merged.iter_mut().find(|m| m.id == b.id) {
                Some(m) => m.merge(b),
                None => merged.push(b.clone()),
            }
        }
        merged.sort_by_key(|m| m.id);
        // All values are sums of exactly representable numbers: exact.
        assert_eq!(merged, whole);
        assert_eq!(whole.len(), 3);
    }
}
