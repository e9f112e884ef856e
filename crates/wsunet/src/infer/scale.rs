//! Prediction at another resolution than the input's: the rows are
//! resampled by a factor on their way into the predictor (`Rescaled`) and
//! the finished probabilities resampled back onto the input's grid on their
//! way out (`ScaledBack`), both streamed, so a model trained at 0.5 µm a
//! pixel segments a 0.25 µm slide with objects at the size it learned.
//!
//! Both resample bilinearly with half-pixel centres (PyTorch's
//! `interpolate(..., align_corners=False)` without antialiasing): output
//! pixel `i` samples the input at `(i + 0.5) / factor − 0.5`, clamped to
//! the image. Labels are the argmax of the resampled probabilities, so
//! class borders follow the probabilities, not the coarse grid. The
//! original rows pass from the one to the other unchanged, for the overlay
//! and nodata.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use super::rows::{Band, RowSink, RowSource};
use crate::error::Result;

/// For each output index, the two input indices it lies between and the
/// weight of the second.
fn taps(out_len: usize, in_len: usize, factor: f64) -> Vec<(usize, usize, f32)> {
    (0..out_len)
        .map(|i| {
            let src = ((i as f64 + 0.5) / factor - 0.5).clamp(0.0, (in_len - 1) as f64);
            let lo = src.floor() as usize;
            let hi = (lo + 1).min(in_len - 1);
            (lo, hi, (src - lo as f64) as f32)
        })
        .collect()
}

/// The row and column taps from an `input` grid `(h, w)` to an `output`
/// grid.
type Taps = Vec<(usize, usize, f32)>;
fn grid_taps((ho, wo): (usize, usize), (hi, wi): (usize, usize)) -> (Taps, Taps) {
    (
        taps(ho, hi, ho as f64 / hi as f64),
        taps(wo, wi, wo as f64 / wi as f64),
    )
}

/// `a` to `b` by `w`, exactly `a` when they are equal (nodata stays nodata).
fn lerp(a: f32, b: f32, w: f32) -> f32 {
    a + (b - a) * w
}

/// Rows `y0..` of `planes × width` values, row by row.
struct Rows {
    y0: usize,
    planes: usize,
    width: usize,
    data: VecDeque<Vec<f32>>,
}

impl Rows {
    fn new(planes: usize, width: usize) -> Rows {
        Rows {
            y0: 0,
            planes,
            width,
            data: VecDeque::new(),
        }
    }

    fn end(&self) -> usize {
        self.y0 + self.data.len()
    }

    /// Appends `[planes, n, W]` values as `n` rows.
    fn push_planar(&mut self, values: &[f32], n: usize) {
        let w = self.width;
        for r in 0..n {
            let mut row = Vec::with_capacity(self.planes * w);
            for p in 0..self.planes {
                row.extend_from_slice(&values[(p * n + r) * w..][..w]);
            }
            self.data.push_back(row);
        }
    }

    fn row(&self, y: usize) -> &[f32] {
        &self.data[y - self.y0]
    }

    fn drop_before(&mut self, y: usize) {
        while self.y0 < y && !self.data.is_empty() {
            self.data.pop_front();
            self.y0 += 1;
        }
    }

    /// One row resampled from rows `lo`, `hi` (weight `wy`) and the
    /// columns' taps, appended plane by plane to `out[p]`.
    fn sample_into(
        &self,
        (lo, hi, wy): (usize, usize, f32),
        cols: &[(usize, usize, f32)],
        out: &mut [Vec<f32>],
    ) {
        let (a, b) = (self.row(lo), self.row(hi));
        for (p, plane) in out.iter_mut().enumerate() {
            let (a, b) = (
                &a[p * self.width..][..self.width],
                &b[p * self.width..][..self.width],
            );
            plane.extend(
                cols.iter()
                    .map(|&(x0, x1, wx)| lerp(lerp(a[x0], a[x1], wx), lerp(b[x0], b[x1], wx), wy)),
            );
        }
    }
}

/// The original rows read, waiting to go out with their probabilities.
pub(super) type Stash = Rc<RefCell<VecDeque<Vec<f32>>>>;

/// A [`RowSource`] seen `factor` times larger (or smaller), read through.
pub(super) struct Rescaled<'a> {
    inner: &'a mut dyn RowSource,
    size: (usize, usize, usize),
    rows: Rows,
    in_h: usize,
    row_taps: Taps,
    col_taps: Taps,
    next: usize,
    stash: Stash,
}

/// The size of an image scaled by `factor` (at least one pixel a side).
pub(super) fn scaled_size(h: usize, w: usize, factor: f64) -> (usize, usize) {
    let s = |n: usize| ((n as f64 * factor).round() as usize).max(1);
    (s(h), s(w))
}

impl<'a> Rescaled<'a> {
    pub(super) fn new(inner: &'a mut dyn RowSource, factor: f64, stash: Stash) -> Self {
        let (c, h, w) = inner.size();
        let (h2, w2) = scaled_size(h, w, factor);
        let (row_taps, col_taps) = grid_taps((h2, w2), (h, w));
        Rescaled {
            inner,
            size: (c, h2, w2),
            rows: Rows::new(c, w),
            in_h: h,
            row_taps,
            col_taps,
            next: 0,
            stash,
        }
    }
}

impl RowSource for Rescaled<'_> {
    fn size(&self) -> (usize, usize, usize) {
        self.size
    }

    fn nodata(&self) -> Option<f32> {
        self.inner.nodata()
    }

    fn read_rows(&mut self, n: usize) -> Result<Vec<f32>> {
        let (c, h2, w2) = self.size;
        let n = n.min(h2 - self.next);
        let mut planes = vec![Vec::with_capacity(n * w2); c];
        for y in self.next..self.next + n {
            let (lo, hi, wy) = self.row_taps[y];
            if self.rows.end() <= hi {
                let want = (hi + 1 - self.rows.end())
                    .max(32)
                    .min(self.in_h - self.rows.end());
                let values = self.inner.read_rows(want)?;
                let got = values.len() / (c * self.rows.width);
                self.rows.push_planar(&values, got);
                let mut stash = self.stash.borrow_mut();
                for r in 0..got {
                    let mut row = Vec::with_capacity(c * self.rows.width);
                    for p in 0..c {
                        row.extend_from_slice(
                            &values[(p * got + r) * self.rows.width..][..self.rows.width],
                        );
                    }
                    stash.push_back(row);
                }
            }
            self.rows.drop_before(lo);
            self.rows
                .sample_into((lo, hi, wy), &self.col_taps, &mut planes);
        }
        self.next += n;
        Ok(planes.concat())
    }
}

/// A [`RowSink`] that takes bands on the scaled grid and hands `inner`
/// bands on the original grid.
pub(super) struct ScaledBack<'a> {
    inner: &'a mut dyn RowSink,
    /// Original `(channels, height, width)`.
    size: (usize, usize, usize),
    probs: Option<Rows>,
    logits: Option<Rows>,
    disagreement: Option<Rows>,
    scaled_h: usize,
    row_taps: Taps,
    col_taps: Taps,
    next: usize,
    stash: Stash,
}

impl<'a> ScaledBack<'a> {
    pub(super) fn new(
        inner: &'a mut dyn RowSink,
        size: (usize, usize, usize),
        scaled: (usize, usize),
        stash: Stash,
    ) -> Self {
        let (_, h, w) = size;
        let (row_taps, col_taps) = grid_taps((h, w), scaled);
        ScaledBack {
            inner,
            size,
            probs: None,
            logits: None,
            disagreement: None,
            scaled_h: scaled.0,
            row_taps,
            col_taps,
            next: 0,
            stash,
        }
    }
}

impl RowSink for ScaledBack<'_> {
    fn write(&mut self, band: Band) -> Result<()> {
        let k = band.num_classes;
        let probs = self.probs.get_or_insert_with(|| Rows::new(k, band.width));
        probs.push_planar(&band.probs, band.rows);
        if let Some(l) = &band.logits {
            self.logits
                .get_or_insert_with(|| Rows::new(k, band.width))
                .push_planar(l, band.rows);
        }
        if let Some(d) = &band.disagreement {
            self.disagreement
                .get_or_insert_with(|| Rows::new(1, band.width))
                .push_planar(d, band.rows);
        }
        let (c, h, w) = self.size;
        let complete = band.y + band.rows == self.scaled_h;
        let mut out_probs = vec![Vec::new(); k];
        let mut out_logits = vec![Vec::new(); k];
        let mut out_disagreement = vec![Vec::new(); 1];
        let first = self.next;
        while self.next < h {
            let t = self.row_taps[self.next];
            let probs = self.probs.as_ref().expect("set above");
            if probs.end() <= t.1 && !complete {
                break;
            }
            probs.sample_into(t, &self.col_taps, &mut out_probs);
            if let Some(l) = &self.logits {
                l.sample_into(t, &self.col_taps, &mut out_logits);
            }
            if let Some(d) = &self.disagreement {
                d.sample_into(t, &self.col_taps, &mut out_disagreement);
            }
            self.next += 1;
        }
        let rows = self.next - first;
        if rows == 0 {
            return Ok(());
        }
        if let Some(&(lo, _, _)) = self.row_taps.get(self.next) {
            self.probs.as_mut().expect("set above").drop_before(lo);
            for rows in [&mut self.logits, &mut self.disagreement]
                .into_iter()
                .flatten()
            {
                rows.drop_before(lo);
            }
        }
        let mut image = vec![Vec::with_capacity(rows * w); c];
        {
            let mut stash = self.stash.borrow_mut();
            for _ in 0..rows {
                let row = stash
                    .pop_front()
                    .expect("original rows are read before they are predicted");
                for (p, plane) in image.iter_mut().enumerate() {
                    plane.extend_from_slice(&row[p * w..][..w]);
                }
            }
        }
        self.inner.write(Band {
            y: first,
            rows,
            width: w,
            num_classes: k,
            probs: out_probs.concat(),
            logits: band.logits.is_some().then(|| out_logits.concat()),
            disagreement: band
                .disagreement
                .is_some()
                .then(|| out_disagreement.concat()),
            channels: c,
            image: image.concat(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_use_half_pixel_centres() {
        // ×2: output 0 samples −0.25 (clamped to 0), output 1 samples 0.25.
        let t = taps(4, 2, 2.0);
        assert_eq!(t[0], (0, 1, 0.0));
        assert_eq!(t[1], (0, 1, 0.25));
        assert_eq!(t[2], (0, 1, 0.75));
        assert_eq!(t[3], (1, 1, 0.0));
        // ×0.5: output 0 samples 0.5.
        assert_eq!(taps(2, 4, 0.5)[0], (0, 1, 0.5));
        // ×1 is the identity.
        assert!(
            taps(5, 5, 1.0)
                .iter()
                .enumerate()
                .all(|(i, &(lo, _, w))| lo == i && w == 0.0)
        );
    }

    #[test]
    fn lerp_keeps_equal_values_exact() {
        for v in [0.1f32, 1.0 / 3.0, 65535.0 / 65536.0] {
            for w in [0.0f32, 0.3, 0.999] {
                assert_eq!(lerp(v, v, w), v);
            }
        }
    }
}
