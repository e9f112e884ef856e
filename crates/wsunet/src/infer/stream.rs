//! Prediction in bounded memory: the image comes in as rows from the top,
//! the blended probabilities go out as finished rows, and only the band of
//! rows that tiles still touch is held.
//!
//! Tiles are visited in the order of the whole-image prediction (rows of
//! tiles from the top, left to right, in batches of `batch_size`), and each
//! pixel sums its tiles' weighted probabilities in that same order, so the
//! streamed result is bit-identical to predicting the image held whole: it
//! is the same computation with rows released as soon as no later tile
//! touches them. Once a batch is added, every row above the next tile's top
//! is final: it is divided by its weight and handed to the sink. The input
//! held is the rows from the first unfinished one to the bottom of the
//! batch's tiles; the accumulators the rows the tiles written so far cover.
//! With tiles of side `T`, both are below `2T` rows of the image's width:
//! about `2T · W · 4 · (C + K + 1)` bytes for `C` channels and `K` classes
//! (`K` more with logits), whatever the image's height.

use burn::tensor::{Tensor, TensorData};

pub use super::rows::{Band, ImageRows, RowSink, RowSource};
use super::{Predictor, crop_prediction, gaussian_weights, pad_to};
use crate::data::Image;
use crate::error::{Error, Result};
use crate::model::MIN_INPUT_SIZE;

/// A tile whose every channel varies less than this fraction of the
/// channel's training standard deviation holds no image (glass, water, a
/// flat border) for [`PredictConfig::skip_empty`](super::PredictConfig::skip_empty).
pub const EMPTY_STD_FRACTION: f32 = 0.25;

/// How far a streamed prediction has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Tiles done (run or skipped).
    pub tiles_done: usize,
    /// Tiles in all.
    pub tiles: usize,
    /// Rows finished and handed to the sink.
    pub rows_done: usize,
    /// Rows in all.
    pub rows: usize,
}

/// What a streamed prediction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamReport {
    /// Tiles the image was cut into (1: one pass).
    pub tiles: usize,
    /// Tiles left out as empty ([`PredictConfig::skip_empty`](super::PredictConfig::skip_empty)).
    pub skipped: usize,
}

/// Rows `y0..` of `planes` planes, stored row by row (`[row][plane][W]`), so
/// rows are added at the bottom and released from the top cheaply.
struct RowBand {
    y0: usize,
    planes: usize,
    width: usize,
    data: Vec<f32>,
}

impl RowBand {
    fn new(planes: usize, width: usize) -> Self {
        RowBand {
            y0: 0,
            planes,
            width,
            data: Vec::new(),
        }
    }

    fn end(&self) -> usize {
        self.y0 + self.data.len() / (self.planes * self.width)
    }

    /// Appends `rows` rows given as `[planes, rows, W]`.
    fn push_planar(&mut self, values: &[f32], rows: usize) {
        let w = self.width;
        // Exactly: doubling would hold up to twice the band's rows.
        self.data.reserve_exact(values.len());
        for r in 0..rows {
            for p in 0..self.planes {
                self.data
                    .extend_from_slice(&values[(p * rows + r) * w..][..w]);
            }
        }
    }

    /// Appends zero rows up to row `end`.
    fn grow_to(&mut self, end: usize) {
        if end > self.end() {
            let len = (end - self.y0) * self.planes * self.width;
            self.data.reserve_exact(len - self.data.len());
            self.data.resize(len, 0.0);
        }
    }

    fn row(&self, y: usize, plane: usize) -> &[f32] {
        &self.data[((y - self.y0) * self.planes + plane) * self.width..][..self.width]
    }

    fn row_mut(&mut self, y: usize, plane: usize) -> &mut [f32] {
        &mut self.data[((y - self.y0) * self.planes + plane) * self.width..][..self.width]
    }

    /// Removes the rows above `end` and returns them as `[planes, rows, W]`.
    fn take_front(&mut self, end: usize) -> Vec<f32> {
        let rows = end - self.y0;
        let w = self.width;
        let mut out = Vec::with_capacity(rows * self.planes * w);
        for p in 0..self.planes {
            for r in 0..rows {
                out.extend_from_slice(&self.data[(r * self.planes + p) * w..][..w]);
            }
        }
        self.data.drain(..rows * self.planes * w);
        self.y0 = end;
        out
    }
}

impl Predictor {
    /// Predicts an image read from `source`, handing finished rows to
    /// `sink` from the top; `progress` hears after each batch of tiles.
    /// Memory is bounded by the tile and the width (see the module docs).
    /// The probabilities equal [`predict`](Self::predict)'s on the same
    /// image, bit for bit.
    pub fn predict_rows(
        &self,
        source: &mut dyn RowSource,
        sink: &mut dyn RowSink,
        keep_logits: bool,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<StreamReport> {
        let (c, h, w) = source.size();
        if h == 0 || w == 0 {
            return Err(Error::EmptyImage);
        }
        if self.config.scale != 1.0 {
            // Predicted on the resampled grid, handed out on the original.
            let stash = super::scale::Stash::default();
            let mut scaled = super::scale::Rescaled::new(source, self.config.scale, stash.clone());
            let (_, h2, w2) = scaled.size();
            let mut back = super::scale::ScaledBack::new(sink, (c, h, w), (h2, w2), stash);
            let plain = self.with_scale(1.0)?;
            return plain.predict_rows(&mut scaled, &mut back, keep_logits, progress);
        }
        let (ph, pw) = (h.max(MIN_INPUT_SIZE), w.max(MIN_INPUT_SIZE));
        self.model.check_input([1, c, ph, pw])?;
        if (ph, pw) != (h, w) {
            // Below the network's minimum (so small that it is held whole):
            // an edge-replicated copy is predicted and cropped back.
            let image = Image::new(c, h, w, read_exact(source, h)?);
            let padded = pad_to(&image, ph, pw);
            let mut whole = Collect::default();
            let report = self.predict_rows(
                &mut ImageRows::new(&padded),
                &mut whole,
                keep_logits,
                progress,
            )?;
            let p = crop_prediction(whole.prediction(report.tiles, ph, pw), h, w);
            sink.write(Band {
                y: 0,
                rows: h,
                width: w,
                num_classes: p.num_classes,
                probs: p.probs,
                logits: p.logits,
                disagreement: p.disagreement,
                channels: c,
                image: image.data,
            })?;
            return Ok(report);
        }
        let ((th, tw), origins) = self.config.tile_grid(h, w);
        let nodata = source.nodata();
        let mut report = StreamReport {
            tiles: origins.len(),
            skipped: 0,
        };
        let mut input = RowBand::new(c, w);
        if origins.len() == 1 {
            // One pass: the plain forward, no blending.
            input.push_planar(&read_exact(source, h)?, h);
            let data = self.tile_values(&input, (0, 0), (h, w));
            let out = self.run(self.tensor(data, [1, c, h, w]), keep_logits);
            progress(Progress {
                tiles_done: 1,
                tiles: 1,
                rows_done: h,
                rows: h,
            });
            sink.write(Band {
                y: 0,
                rows: h,
                width: w,
                num_classes: out.probs.len() / (h * w),
                probs: out.probs,
                logits: out.logits,
                disagreement: out.disagreement,
                channels: c,
                image: input.take_front(h),
            })?;
            return Ok(report);
        }
        let classes = self.num_classes();
        let weights = gaussian_weights(th, tw);
        let mut acc = RowBand::new(classes, w);
        let mut acc_logits = keep_logits.then(|| RowBand::new(classes, w));
        let mut acc_disagreement = self.config.uncertainty.then(|| RowBand::new(1, w));
        let mut weight = RowBand::new(1, w);
        let tn = th * tw;
        let background: Vec<f32> = (0..classes * tn)
            .map(|i| if i < tn { 1.0 } else { 0.0 })
            .collect();
        let zeros = vec![0f32; classes * tn];
        let batch_size = self.config.batch_size;
        let mut done = 0;
        for (b, batch) in origins.chunks(batch_size).enumerate() {
            let need = batch.iter().map(|&(y, _)| y + th).max().expect("a tile");
            if input.end() < need {
                let rows = need - input.end();
                input.push_planar(&read_exact(source, rows)?, rows);
            }
            let empty: Vec<bool> = batch
                .iter()
                .map(|&o| self.config.skip_empty && self.is_empty(&input, o, (th, tw), nodata))
                .collect();
            let run: Vec<(usize, usize)> = batch
                .iter()
                .zip(&empty)
                .filter(|(_, e)| !**e)
                .map(|(o, _)| *o)
                .collect();
            let out = if run.is_empty() {
                super::RunOut {
                    probs: Vec::new(),
                    logits: None,
                    disagreement: None,
                }
            } else {
                let mut data = Vec::with_capacity(run.len() * c * tn);
                for &origin in &run {
                    data.extend(self.tile_values(&input, origin, (th, tw)));
                }
                self.run(self.tensor(data, [run.len(), c, th, tw]), keep_logits)
            };
            acc.grow_to(need);
            weight.grow_to(need);
            for band in [&mut acc_logits, &mut acc_disagreement]
                .into_iter()
                .flatten()
            {
                band.grow_to(need);
            }
            let per_tile = classes * tn;
            let mut next_run = 0;
            for (&(y, x), &skip) in batch.iter().zip(&empty) {
                let (p, l, d) = if skip {
                    report.skipped += 1;
                    (&background[..], Some(&zeros[..]), Some(&zeros[..tn]))
                } else {
                    let i = next_run;
                    next_run += 1;
                    (
                        &out.probs[i * per_tile..(i + 1) * per_tile],
                        out.logits
                            .as_ref()
                            .map(|l| &l[i * per_tile..(i + 1) * per_tile]),
                        out.disagreement.as_ref().map(|d| &d[i * tn..(i + 1) * tn]),
                    )
                };
                add_tile(&mut acc, (y, x), (th, tw), &weights, p);
                if let (Some(acc), Some(l)) = (&mut acc_logits, l) {
                    add_tile(acc, (y, x), (th, tw), &weights, l);
                }
                if let (Some(acc), Some(d)) = (&mut acc_disagreement, d) {
                    add_tile(acc, (y, x), (th, tw), &weights, d);
                }
                for row in 0..th {
                    let dst = &mut weight.row_mut(y + row, 0)[x..x + tw];
                    for (d, k) in dst.iter_mut().zip(&weights[row * tw..][..tw]) {
                        *d += k;
                    }
                }
            }
            done += batch.len();
            // Rows above the next tile's top get nothing more.
            let finished = origins.get((b + 1) * batch_size).map_or(h, |&(y, _)| y);
            if finished > acc.y0 {
                let rows = finished - acc.y0;
                let y = acc.y0;
                let weight = weight.take_front(finished);
                let divide = |band: &mut RowBand| {
                    let mut values = band.take_front(finished);
                    for plane in values.chunks_mut(rows * w) {
                        for (v, k) in plane.iter_mut().zip(&weight) {
                            *v /= k;
                        }
                    }
                    values
                };
                let probs = divide(&mut acc);
                let logits = acc_logits.as_mut().map(divide);
                let disagreement = acc_disagreement.as_mut().map(divide);
                sink.write(Band {
                    y,
                    rows,
                    width: w,
                    num_classes: classes,
                    probs,
                    logits,
                    disagreement,
                    channels: c,
                    image: input.take_front(finished),
                })?;
            }
            progress(Progress {
                tiles_done: done,
                tiles: origins.len(),
                rows_done: finished,
                rows: h,
            });
        }
        Ok(report)
    }

    /// The normalized values of the `th × tw` tile at `(y, x)`, `[C, th, tw]`;
    /// a non-finite value (nodata) becomes 0, the channel's training mean.
    fn tile_values(
        &self,
        input: &RowBand,
        (y, x): (usize, usize),
        (th, tw): (usize, usize),
    ) -> Vec<f32> {
        let mut data = Vec::with_capacity(input.planes * th * tw);
        for ch in 0..input.planes {
            let (m, s) = (self.normalize.mean[ch], self.normalize.std[ch]);
            for row in y..y + th {
                data.extend(input.row(row, ch)[x..x + tw].iter().map(|&v| {
                    let v = (v - m) / s;
                    if v.is_finite() { v } else { 0.0 }
                }));
            }
        }
        data
    }

    /// Whether the tile holds no image: every pixel nodata, or in every
    /// channel a standard deviation (over its pixels with data) below
    /// [`EMPTY_STD_FRACTION`] of the channel's training standard deviation.
    fn is_empty(
        &self,
        input: &RowBand,
        (y, x): (usize, usize),
        (th, tw): (usize, usize),
        nodata: Option<f32>,
    ) -> bool {
        let missing = |v: f32| v.is_nan() || Some(v) == nodata;
        (0..input.planes).all(|ch| {
            let (mut n, mut sum, mut sq) = (0u64, 0f64, 0f64);
            for row in y..y + th {
                for &v in &input.row(row, ch)[x..x + tw] {
                    if !missing(v) {
                        n += 1;
                        sum += v as f64;
                        sq += (v as f64) * (v as f64);
                    }
                }
            }
            if n == 0 {
                return true;
            }
            let mean = sum / n as f64;
            let std = (sq / n as f64 - mean * mean).max(0.0).sqrt();
            std < (EMPTY_STD_FRACTION * self.normalize.std[ch]) as f64
        })
    }

    pub(super) fn tensor(&self, data: Vec<f32>, shape: [usize; 4]) -> Tensor<4> {
        Tensor::from_data(TensorData::new(data, shape), &self.device)
    }
}

/// Adds a tile's weighted values (`[K, th, tw]`) into the band.
fn add_tile(
    band: &mut RowBand,
    (y, x): (usize, usize),
    (th, tw): (usize, usize),
    weights: &[f32],
    tile: &[f32],
) {
    let tn = th * tw;
    for c in 0..band.planes {
        for row in 0..th {
            let dst = &mut band.row_mut(y + row, c)[x..x + tw];
            let src = &tile[c * tn + row * tw..][..tw];
            let wt = &weights[row * tw..][..tw];
            for ((d, s), k) in dst.iter_mut().zip(src).zip(wt) {
                *d += s * k;
            }
        }
    }
}

/// The next `rows` rows of `source`, refusing a short read.
fn read_exact(source: &mut dyn RowSource, rows: usize) -> Result<Vec<f32>> {
    let (c, _, w) = source.size();
    let values = source.read_rows(rows)?;
    if values.len() != c * rows * w {
        return Err(Error::Setting {
            field: "input".into(),
            reason: format!(
                "the image source gave {} values for {rows} rows of {c}×{w}",
                values.len()
            ),
        });
    }
    Ok(values)
}

/// A sink that assembles the whole prediction (for images held in memory).
#[derive(Debug, Default)]
pub(super) struct Collect {
    bands: Vec<Band>,
}

impl RowSink for Collect {
    fn write(&mut self, mut band: Band) -> Result<()> {
        // The caller holds the image; only the outputs are kept.
        band.image = Vec::new();
        self.bands.push(band);
        Ok(())
    }
}

impl Collect {
    /// The bands joined into one `height × width` prediction.
    pub(super) fn prediction(self, tiles: usize, height: usize, width: usize) -> super::Prediction {
        let classes = self.bands.first().map_or(0, |b| b.num_classes);
        let n = height * width;
        let keep_logits = self.bands.first().is_some_and(|b| b.logits.is_some());
        let mut probs = vec![0f32; classes * n];
        let mut logits = keep_logits.then(|| vec![0f32; classes * n]);
        let keep_disagreement = self.bands.first().is_some_and(|b| b.disagreement.is_some());
        let mut disagreement = keep_disagreement.then(|| vec![0f32; n]);
        for band in &self.bands {
            let bn = band.rows * width;
            if let (Some(all), Some(d)) = (&mut disagreement, &band.disagreement) {
                all[band.y * width..][..bn].copy_from_slice(d);
            }
            for c in 0..classes {
                probs[c * n + band.y * width..][..bn].copy_from_slice(&band.probs[c * bn..][..bn]);
                if let (Some(all), Some(l)) = (&mut logits, &band.logits) {
                    all[c * n + band.y * width..][..bn].copy_from_slice(&l[c * bn..][..bn]);
                }
            }
        }
        super::Prediction {
            num_classes: classes,
            height,
            width,
            probs,
            logits,
            disagreement,
            tiles,
        }
    }
}
