//! Inference on images of any size: a folded model, sliding-window tiling
//! with Gaussian-weighted blending, and flip test-time augmentation.
//!
//! An image no larger than a tile goes through the network in one pass, so
//! its logits are exactly the plain forward's. A larger image is cut into
//! overlapping tiles (evenly spread, each at least `overlap` shared with its
//! neighbour); each tile's probabilities are weighted by a Gaussian centred
//! on the tile (σ = tile/8, as nnU-Net does) and accumulated on the CPU, so
//! pixels near a tile's border — where zero padding distorts the network's
//! view — count little, and the stitched map has no seams. Memory grows with
//! the image (a few `f32` planes per class), not with the network: the
//! network only ever sees `batch_size` tiles at once.
//!
//! ```
//! use burn::tensor::Device;
//! use wsunet::WsResUNetConfig;
//! use wsunet::data::{Image, Normalize};
//! use wsunet::infer::{PredictConfig, Predictor};
//!
//! let device = Device::flex();
//! let model = WsResUNetConfig::new(2)
//!     .with_widths(vec![8, 8, 16, 16, 16])
//!     .with_groups(4)
//!     .init(&device)
//!     .unwrap();
//! let config = PredictConfig { tile: 64, ..PredictConfig::default() };
//! let predictor = Predictor::new(model, Normalize::neutral(3), device, config).unwrap();
//! let image = Image::new(3, 100, 150, vec![0.5; 3 * 100 * 150]);
//! let prediction = predictor.predict(&image, false).unwrap();
//! assert_eq!(prediction.tiles, 2 * 3);
//! assert_eq!(prediction.mask().data.len(), 100 * 150);
//! ```

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};

use crate::card::ModelCard;
use crate::data::{ClassList, Image, Mask, Normalize};
use crate::error::{Error, Result};
use crate::model::{MIN_INPUT_SIZE, WsResUNet};

mod rows;
mod scale;
mod stream;
mod tiled;
mod tiled_objects;
mod writer;

use stream::Collect;
pub use stream::{Band, EMPTY_STD_FRACTION, ImageRows, Progress, RowSink, RowSource, StreamReport};
pub use tiled::{OUTPUT_TILE, ProbsType, TiffOutputs, TiffSummary};
pub use tiled_objects::ObjectOutputs;

/// Test-time augmentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Tta {
    /// The image as it is.
    #[default]
    None,
    /// The image and its horizontal, vertical and double flips; their
    /// probabilities (and logits) are averaged after flipping back.
    Flip,
}

impl Tta {
    /// Every mode.
    pub const ALL: [Tta; 2] = [Tta::None, Tta::Flip];

    /// The flips to run: `(vertical, horizontal)`.
    fn flips(self) -> &'static [(bool, bool)] {
        match self {
            Tta::None => &[(false, false)],
            Tta::Flip => &[(false, false), (false, true), (true, false), (true, true)],
        }
    }
}

/// How [`Predictor`] runs: tile size, overlap, tiles per forward, TTA.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictConfig {
    /// Tile side in pixels (at least 32). Images no larger run in one pass.
    pub tile: usize,
    /// Minimum fraction of a tile shared with its neighbour, in `[0, 0.9]`.
    pub overlap: f32,
    /// Tiles per forward pass.
    pub batch_size: usize,
    /// Test-time augmentation.
    pub tta: Tta,
    /// Leave out tiles that hold no image (every pixel nodata, or every
    /// channel's standard deviation below a quarter of its training one:
    /// slide glass, water, a scene's border); they count as certain
    /// background. GroupNorm normalizes such a tile's noise to unit
    /// variance, which a model can take for objects (docs/LARGE-IMAGES.md
    /// measures it).
    pub skip_empty: bool,
    /// Resample the image by this factor before the network and the
    /// probabilities back after it (1: as it is; 2: pixels half the size,
    /// for a model trained at twice the input's resolution), in `[0.05,
    /// 20]`. Both resample bilinearly with half-pixel centres (PyTorch's
    /// `interpolate(align_corners=False)`), streamed.
    pub scale: f64,
    /// Also blend the flips' disagreement for the uncertainty maps
    /// ([`Prediction::uncertainty`]); needs [`Tta::Flip`].
    pub uncertainty: bool,
}

impl Default for PredictConfig {
    fn default() -> Self {
        PredictConfig {
            tile: 512,
            overlap: 0.25,
            batch_size: 2,
            tta: Tta::None,
            skip_empty: false,
            scale: 1.0,
            uncertainty: false,
        }
    }
}

impl PredictConfig {
    /// The tile for a model with `card`: its training crop (the larger
    /// side) when the card records one, since GroupNorm normalizes over the
    /// whole tile and a model sees inputs of its training size best; else
    /// the default.
    pub fn tile_for(card: &ModelCard) -> usize {
        card.crop.map_or(PredictConfig::default().tile, |[h, w]| {
            h.max(w).max(MIN_INPUT_SIZE)
        })
    }

    /// Checks the ranges; the message names the setting to fix.
    pub fn validate(&self) -> Result<()> {
        if self.tile < MIN_INPUT_SIZE {
            return Err(Error::setting(
                "tile",
                format!(
                    "tile size {} is below the model's minimum {MIN_INPUT_SIZE}",
                    self.tile
                ),
            ));
        }
        if !(0.0..=0.9).contains(&self.overlap) {
            return Err(Error::setting(
                "overlap",
                format!("overlap {} is outside [0, 0.9]", self.overlap),
            ));
        }
        if self.batch_size == 0 {
            return Err(Error::setting(
                "batch_size",
                "batch_size is 0; use at least 1",
            ));
        }
        if self.uncertainty && self.tta != Tta::Flip {
            return Err(Error::setting(
                "uncertainty",
                "the uncertainty maps need test-time augmentation (the disagreement is between the flips); use tta flip",
            ));
        }
        if !(0.05..=20.0).contains(&self.scale) {
            return Err(Error::setting(
                "scale",
                format!("scale {} is outside [0.05, 20]", self.scale),
            ));
        }
        Ok(())
    }

    /// Distance between neighbouring tile starts at most.
    fn stride(&self) -> usize {
        ((self.tile as f32 * (1.0 - self.overlap)).floor() as usize).max(1)
    }

    /// The tiles of an `h × w` image: their size (the tile, or the image's
    /// side where it is smaller) and their top-left corners, rows of tiles
    /// from the top, left to right.
    fn tile_grid(&self, h: usize, w: usize) -> ((usize, usize), Vec<(usize, usize)>) {
        let (th, tw) = (self.tile.min(h), self.tile.min(w));
        let xs = tile_starts(w, tw, self.stride());
        let origins = tile_starts(h, th, self.stride())
            .into_iter()
            .flat_map(|y| xs.iter().map(move |&x| (y, x)))
            .collect();
        ((th, tw), origins)
    }
}

/// A prediction for one image: per-class probabilities (and, when asked,
/// logits), `[C, H, W]` row-major.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// Classes.
    pub num_classes: usize,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// Softmax probabilities, `num_classes · height · width`.
    pub probs: Vec<f32>,
    /// Logits, when asked for.
    pub logits: Option<Vec<f32>>,
    /// The flips' disagreement, `height · width`, when asked for
    /// ([`PredictConfig::uncertainty`]): the share of the TTA passes whose
    /// class is not the averaged prediction's, blended across tiles.
    pub disagreement: Option<Vec<f32>>,
    /// Tiles the image was cut into (1: one pass).
    pub tiles: usize,
}

impl Prediction {
    /// The uncertainty maps, `[2, height, width]`, when the disagreement was
    /// asked for: the entropy of the averaged probabilities over `ln K`
    /// (0: one class certain, 1: all equally likely), then the flips'
    /// disagreement (0: every flip chose the predicted class; 0.5: two of
    /// the four did not).
    pub fn uncertainty(&self) -> Option<Vec<f32>> {
        let disagreement = self.disagreement.as_ref()?;
        Some(uncertainty_planes(
            &self.probs,
            self.num_classes,
            disagreement,
        ))
    }

    /// The most probable class of every pixel (ties: the lower index).
    pub fn mask(&self) -> Mask {
        let n = self.height * self.width;
        let labels = (0..n)
            .map(|p| {
                let mut best = 0;
                for c in 1..self.num_classes {
                    if self.probs[c * n + p] > self.probs[best * n + p] {
                        best = c;
                    }
                }
                best as u16
            })
            .collect();
        Mask::new(self.height, self.width, labels)
    }
}

/// `[entropy, disagreement]` planes from `K` planes of probabilities and
/// a plane of disagreement (see [`Prediction::uncertainty`]).
pub(crate) fn uncertainty_planes(probs: &[f32], k: usize, disagreement: &[f32]) -> Vec<f32> {
    let n = disagreement.len();
    let scale = if k > 1 { 1.0 / (k as f32).ln() } else { 0.0 };
    let mut out = vec![0f32; 2 * n];
    for c in 0..k {
        for (e, &p) in out[..n].iter_mut().zip(&probs[c * n..(c + 1) * n]) {
            if p > 0.0 {
                *e -= p * p.ln();
            }
        }
    }
    for e in &mut out[..n] {
        *e = (*e * scale).clamp(0.0, 1.0);
    }
    out[n..].copy_from_slice(disagreement);
    out
}

/// Starts of tiles of length `tile` covering `len` with neighbours at most
/// `stride` apart, spread evenly so the first starts at 0 and the last ends
/// at `len`.
pub fn tile_starts(len: usize, tile: usize, stride: usize) -> Vec<usize> {
    if len <= tile {
        return vec![0];
    }
    let span = len - tile;
    let n = span.div_ceil(stride) + 1;
    (0..n)
        .map(|i| ((i * span) as f64 / (n - 1) as f64).round() as usize)
        .collect()
}

/// A `height × width` Gaussian bump (σ = side/8 per axis, peak 1) that
/// weights a tile's pixels in blending.
pub fn gaussian_weights(height: usize, width: usize) -> Vec<f32> {
    let axis = |len: usize| -> Vec<f64> {
        let (centre, sigma) = ((len as f64 - 1.0) / 2.0, len as f64 / 8.0);
        (0..len)
            .map(|i| (-0.5 * ((i as f64 - centre) / sigma).powi(2)).exp())
            .collect()
    };
    let (ys, xs) = (axis(height), axis(width));
    ys.iter()
        .flat_map(|y| xs.iter().map(move |x| (y * x) as f32))
        .collect()
}

/// Runs a model on images of any size: the model folded once, the card's
/// normalization applied, large images tiled and blended.
///
/// # Example
///
/// ```
/// use burn::tensor::Device;
/// use wsunet::card::{ModelCard, load_model, save_model};
/// use wsunet::data::{ClassList, Image, Normalize};
/// use wsunet::infer::{PredictConfig, Predictor, Tta};
/// use wsunet::WsResUNetConfig;
///
/// // A saved model (`wsunet train` writes one into its run directory).
/// let device = Device::flex();
/// let config = WsResUNetConfig::new(3).with_widths(vec![8, 8, 16, 16, 16]).with_groups(4);
/// let card = ModelCard {
///     model: config.clone(),
///     classes: ClassList::numbered(3),
///     normalize: Normalize::identity(3),
///     ignore_index: None,
///     crop: Some([64, 64]),
///     pixel_size: None,
///     task: Default::default(),
///     instances: None,
/// };
/// let dir = tempfile::tempdir().unwrap();
/// save_model(&config.init_seeded(&device, 0).unwrap(), &card, &dir.path().join("m.bpk")).unwrap();
///
/// let (model, card) = load_model(&dir.path().join("m.bpk"), &device).unwrap();
/// let config = PredictConfig { tile: 64, tta: Tta::Flip, ..PredictConfig::default() };
/// let predictor = Predictor::new(model, card.normalize, device, config).unwrap();
/// let prediction = predictor.predict(&Image::new(3, 80, 90, vec![0.5; 3 * 80 * 90]), true).unwrap();
/// assert_eq!((prediction.height, prediction.width), (80, 90));
/// assert_eq!(prediction.logits.unwrap().len(), 3 * 80 * 90);
/// ```
#[derive(Debug)]
pub struct Predictor {
    model: WsResUNet,
    normalize: Normalize,
    device: Device,
    config: PredictConfig,
}

impl Predictor {
    /// A predictor for `model` (folded here if it is not yet) with the input
    /// normalization it was trained with.
    pub fn new(
        model: WsResUNet,
        normalize: Normalize,
        device: Device,
        config: PredictConfig,
    ) -> Result<Self> {
        config.validate()?;
        normalize.validate(model.in_channels)?;
        let model = if model.is_folded() {
            model
        } else {
            model.fold()
        };
        Ok(Predictor {
            model,
            normalize,
            device,
            config,
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &PredictConfig {
        &self.config
    }

    /// This predictor with other settings; the folded model is shared, not
    /// copied or folded again.
    pub fn with_config(&self, config: PredictConfig) -> Result<Predictor> {
        config.validate()?;
        Ok(Predictor {
            model: self.model.clone(),
            normalize: self.normalize.clone(),
            device: self.device.clone(),
            config,
        })
    }

    /// This predictor with the images resampled by `scale` (see
    /// [`PredictConfig::scale`]).
    pub fn with_scale(&self, scale: f64) -> Result<Predictor> {
        self.with_config(PredictConfig {
            scale,
            ..self.config.clone()
        })
    }

    /// Predicts one image (values as read, normalized here). `keep_logits`
    /// also returns the logits.
    pub fn predict(&self, image: &Image, keep_logits: bool) -> Result<Prediction> {
        self.predict_with_progress(image, keep_logits, &mut |_, _| {})
    }

    /// [`predict`](Self::predict), calling `progress(done, total)` after
    /// each batch of tiles.
    pub fn predict_with_progress(
        &self,
        image: &Image,
        keep_logits: bool,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Prediction> {
        self.predict_source(
            &mut ImageRows::new(image),
            keep_logits,
            &mut |p: Progress| progress(p.tiles_done, p.tiles),
        )
    }

    /// Predicts an image read from `source` (an array borrowed from
    /// elsewhere, a file) and returns the whole prediction.
    pub fn predict_source(
        &self,
        source: &mut dyn RowSource,
        keep_logits: bool,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Prediction> {
        let (_, h, w) = source.size();
        let mut whole = Collect::default();
        let report = self.predict_rows(source, &mut whole, keep_logits, progress)?;
        Ok(whole.prediction(report.tiles, h, w))
    }

    /// The folded model.
    pub(crate) fn model(&self) -> &WsResUNet {
        &self.model
    }

    /// The device it runs on.
    pub(crate) fn device(&self) -> &Device {
        &self.device
    }

    /// Classes the model predicts.
    pub fn num_classes(&self) -> usize {
        self.model.head.weight.dims()[0]
    }

    /// Probabilities (and logits, and the flips' disagreement) of a batch,
    /// averaged over the TTA flips, as `[B, C, H, W]` values.
    fn run(&self, input: Tensor<4>, keep_logits: bool) -> RunOut {
        let flips = self.config.tta.flips();
        let mut probs: Option<Tensor<4>> = None;
        let mut logits: Option<Tensor<4>> = None;
        let mut votes = Vec::new();
        for &(v, h) in flips {
            let x = flip(input.clone(), v, h);
            let out = flip(self.model.forward(x), v, h);
            if self.config.uncertainty {
                votes.push(out.clone().argmax(1));
            }
            let p = softmax(out.clone(), 1);
            probs = Some(match probs {
                Some(sum) => sum + p,
                None => p,
            });
            if keep_logits {
                logits = Some(match logits {
                    Some(sum) => sum + out,
                    None => out,
                });
            }
        }
        let n = flips.len() as f32;
        let mean = |t: Tensor<4>| if n > 1.0 { t / n } else { t };
        let probs = mean(probs.expect("at least one flip"));
        let disagreement = (!votes.is_empty()).then(|| {
            let chosen = probs.clone().argmax(1);
            let differ = votes
                .into_iter()
                .map(|v| v.not_equal(chosen.clone()).float())
                .reduce(|a, b| a + b)
                .expect("at least one flip");
            values_f32(differ / n)
        });
        RunOut {
            probs: values_f32(probs),
            logits: logits.map(|l| values_f32(mean(l))),
            disagreement,
        }
    }
}

/// What [`Predictor::run`] gives for a batch, `[B, K, H, W]` values
/// (`[B, 1, H, W]` for the disagreement).
struct RunOut {
    probs: Vec<f32>,
    logits: Option<Vec<f32>>,
    disagreement: Option<Vec<f32>>,
}

/// A tensor's values as `f32`, whatever float type the backend computes in
/// (an f16 or f64 device gives its values converted, not a panic).
fn values_f32<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

fn flip(x: Tensor<4>, vertical: bool, horizontal: bool) -> Tensor<4> {
    match (vertical, horizontal) {
        (false, false) => x,
        (true, false) => x.flip([2]),
        (false, true) => x.flip([3]),
        (true, true) => x.flip([2, 3]),
    }
}

/// The image blended with its mask's class colours, as interleaved 8-bit
/// RGB: `alpha` of the class colour over the image, except where the class
/// colour is black (VOC's background). The image is shown as read: values in
/// `[0, 1]` as they are, other ranges stretched to `[0, 1]`; one channel as
/// gray, more than three as their first three.
///
/// # Panics
///
/// If the mask's size differs from the image's (programmer misuse).
pub fn overlay(image: &Image, mask: &Mask, classes: &ClassList, alpha: f32) -> Vec<u8> {
    assert_eq!(
        (image.height, image.width),
        (mask.height, mask.width),
        "overlay sizes"
    );
    let (min, max) = image
        .data
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let range = if min >= 0.0 && max <= 1.0 {
        (0.0, 1.0)
    } else {
        (min, 1.0 / (max - min).max(f32::MIN_POSITIVE))
    };
    overlay_pixels(
        &image.data,
        image.channels,
        &mask.data,
        classes,
        alpha,
        range,
    )
}

/// [`overlay`] of `[C, n]` values and `n` labels, each value shown as
/// `(v - offset) · scale` clamped to `[0, 1]` (`range` = `(offset, scale)`).
pub(crate) fn overlay_pixels(
    values: &[f32],
    channels: usize,
    labels: &[u16],
    classes: &ClassList,
    alpha: f32,
    (offset, scale): (f32, f32),
) -> Vec<u8> {
    let n = labels.len();
    // Fewer than three channels show the first as gray.
    let plane = |c: usize| &values[if channels < 3 { 0 } else { c } * n..][..n];
    let planes = [plane(0), plane(1), plane(2)];
    let colors: Vec<[u8; 3]> = (0..=labels.iter().copied().max().unwrap_or(0) as usize)
        .map(|i| classes.color(i))
        .collect();
    let mut rgb = Vec::with_capacity(3 * n);
    for (p, &label) in labels.iter().enumerate() {
        let color = colors[label as usize];
        for c in 0..3 {
            let v = ((planes[c][p] - offset) * scale).clamp(0.0, 1.0) * 255.0;
            let v = if color == [0, 0, 0] {
                v
            } else {
                (1.0 - alpha) * v + alpha * color[c] as f32
            };
            rgb.push(v.round() as u8);
        }
    }
    rgb
}

/// `image` grown to `height × width` by repeating its last row and column.
fn pad_to(image: &Image, height: usize, width: usize) -> Image {
    let mut data = Vec::with_capacity(image.channels * height * width);
    for c in 0..image.channels {
        let plane = image.channel(c);
        for y in 0..height {
            let row = &plane[y.min(image.height - 1) * image.width..][..image.width];
            data.extend((0..width).map(|x| row[x.min(image.width - 1)]));
        }
    }
    Image::new(image.channels, height, width, data)
}

/// The top-left `height × width` of a prediction.
fn crop_prediction(p: Prediction, height: usize, width: usize) -> Prediction {
    let crop = |values: &[f32]| -> Vec<f32> {
        let n = p.height * p.width;
        values
            .chunks(n)
            .flat_map(|plane| (0..height).flat_map(move |y| &plane[y * p.width..][..width]))
            .copied()
            .collect()
    };
    Prediction {
        num_classes: p.num_classes,
        height,
        width,
        probs: crop(&p.probs),
        logits: p.logits.as_deref().map(crop),
        disagreement: p.disagreement.as_deref().map(crop),
        tiles: p.tiles,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WsResUNetConfig;
    use burn::tensor::{DType, TensorData};

    fn tiny_model(device: &Device) -> WsResUNet {
        seeded_tiny_model(device, 0)
    }

    fn seeded_tiny_model(device: &Device, seed: u64) -> WsResUNet {
        WsResUNetConfig::new(3)
            .with_widths(vec![8, 8, 16, 16, 16])
            .with_groups(4)
            .init_seeded(device, seed)
            .unwrap()
    }

    /// The whole-image stitching that streaming replaced, kept as the
    /// reference: every tile's weighted probabilities summed into planes
    /// the size of the image, then divided by the summed weights.
    fn reference_predict(p: &Predictor, image: &Image, keep_logits: bool) -> Prediction {
        let mut image = image.clone();
        p.normalize.apply(&mut image);
        let (c, h, w) = (image.channels, image.height, image.width);
        let ((th, tw), origins) = p.config.tile_grid(h, w);
        if origins.len() == 1 {
            let out = p.run(p.tensor(image.data.clone(), [1, c, h, w]), keep_logits);
            let num_classes = out.probs.len() / (h * w);
            return Prediction {
                num_classes,
                height: h,
                width: w,
                probs: out.probs,
                logits: out.logits,
                disagreement: out.disagreement,
                tiles: 1,
            };
        }
        let weights = gaussian_weights(th, tw);
        let n = h * w;
        let (mut probs, mut logits, mut weight) = (Vec::new(), Vec::new(), vec![0f32; n]);
        for batch in origins.chunks(p.config.batch_size) {
            let mut data = Vec::new();
            for &(y, x) in batch {
                for ch in 0..c {
                    let plane = image.channel(ch);
                    for row in y..y + th {
                        data.extend_from_slice(&plane[row * w + x..row * w + x + tw]);
                    }
                }
            }
            let out = p.run(p.tensor(data, [batch.len(), c, th, tw]), keep_logits);
            let (bp, bl) = (out.probs, out.logits);
            let per_tile = bp.len() / batch.len();
            let classes = per_tile / (th * tw);
            if probs.is_empty() {
                probs = vec![0f32; classes * n];
                logits = vec![0f32; classes * n];
            }
            for (i, &(y, x)) in batch.iter().enumerate() {
                let add = |acc: &mut Vec<f32>, tile: &[f32]| {
                    for k in 0..classes {
                        for row in 0..th {
                            for col in 0..tw {
                                acc[k * n + (y + row) * w + x + col] +=
                                    tile[k * th * tw + row * tw + col] * weights[row * tw + col];
                            }
                        }
                    }
                };
                add(&mut probs, &bp[i * per_tile..(i + 1) * per_tile]);
                if let Some(bl) = &bl {
                    add(&mut logits, &bl[i * per_tile..(i + 1) * per_tile]);
                }
                for row in 0..th {
                    for col in 0..tw {
                        weight[(y + row) * w + x + col] += weights[row * tw + col];
                    }
                }
            }
        }
        let divide = |acc: &mut Vec<f32>| {
            for plane in acc.chunks_mut(n) {
                for (v, k) in plane.iter_mut().zip(&weight) {
                    *v /= k;
                }
            }
        };
        divide(&mut probs);
        divide(&mut logits);
        Prediction {
            num_classes: probs.len() / n,
            height: h,
            width: w,
            probs,
            logits: keep_logits.then_some(logits),
            disagreement: None,
            tiles: origins.len(),
        }
    }

    /// Streaming holds a band of rows, the reference the whole image; the
    /// results are the same bits for any size, tile, overlap, batch size
    /// and TTA (tiles whose batches straddle rows of tiles included).
    #[test]
    fn streamed_stitching_equals_whole_image_stitching_bit_for_bit() {
        let device = Device::flex();
        let model = tiny_model(&device);
        let cases = [
            (100, 150, 64, 0.25, 2, Tta::None),
            (97, 61, 32, 0.5, 3, Tta::None),
            (130, 45, 40, 0.1, 1, Tta::Flip),
            (64, 200, 64, 0.0, 5, Tta::None),
            (48, 61, 64, 0.25, 2, Tta::None),
        ];
        for (h, w, tile, overlap, batch_size, tta) in cases {
            let values: Vec<f32> = (0..3 * h * w)
                .map(|i| ((i * 41) % 103) as f32 / 102.0)
                .collect();
            let image = Image::new(3, h, w, values);
            let config = PredictConfig {
                tile,
                overlap,
                batch_size,
                tta,
                skip_empty: false,
                scale: 1.0,
                uncertainty: false,
            };
            let predictor =
                Predictor::new(model.clone(), Normalize::neutral(3), device.clone(), config)
                    .unwrap();
            let got = predictor.predict(&image, true).unwrap();
            let expected = reference_predict(&predictor, &image, true);
            assert_eq!(got.tiles, expected.tiles, "{h}×{w} tile {tile}");
            assert_eq!(got.probs, expected.probs, "{h}×{w} tile {tile}");
            assert_eq!(got.logits, expected.logits, "{h}×{w} tile {tile}");
        }
    }

    #[test]
    fn outputs_of_any_float_type_are_read_as_f32() {
        let device = Device::flex();
        let t = Tensor::<4>::from_data(
            TensorData::new(vec![0.5f32, -1.25, 3.0, 2.0], [1, 1, 2, 2]),
            &device,
        );
        for dtype in [DType::F64, DType::F16, DType::F32] {
            assert_eq!(
                values_f32(t.clone().cast(dtype)),
                vec![0.5, -1.25, 3.0, 2.0],
                "{dtype:?}"
            );
        }
    }

    #[test]
    fn tiles_cover_the_image_with_at_least_the_overlap() {
        for (len, tile, stride) in [(100, 64, 48), (512, 128, 96), (1000, 256, 128), (65, 64, 1)] {
            let starts = tile_starts(len, tile, stride);
            assert_eq!(starts[0], 0);
            assert_eq!(starts.last().unwrap() + tile, len, "{len} {tile}");
            for pair in starts.windows(2) {
                assert!(
                    pair[1] > pair[0] && pair[1] - pair[0] <= stride,
                    "{starts:?}"
                );
            }
        }
        assert_eq!(tile_starts(50, 64, 48), vec![0]);
        assert_eq!(tile_starts(64, 64, 48), vec![0]);
    }

    #[test]
    fn gaussian_peaks_in_the_middle_and_is_symmetric() {
        let g = gaussian_weights(8, 16);
        let max = g.iter().cloned().fold(0.0, f32::max);
        assert!((max - g[3 * 16 + 7]).abs() < 1e-7);
        assert_eq!(g[0], g[8 * 16 - 1]);
        assert!(g.iter().all(|&v| v > 0.0 && v <= 1.0));
    }

    #[test]
    fn an_image_within_one_tile_is_the_plain_forward() {
        let device = Device::flex();
        let model = tiny_model(&device);
        let (h, w) = (48, 61);
        let values: Vec<f32> = (0..3 * h * w)
            .map(|i| ((i * 37) % 101) as f32 / 100.0)
            .collect();
        let image = Image::new(3, h, w, values);
        let config = PredictConfig {
            tile: 64,
            ..PredictConfig::default()
        };
        let predictor =
            Predictor::new(model.clone(), Normalize::neutral(3), device.clone(), config).unwrap();
        let got = predictor.predict(&image, true).unwrap();
        assert_eq!(got.tiles, 1);

        let mut normalized = image.clone();
        Normalize::neutral(3).apply(&mut normalized);
        let x = Tensor::<4>::from_data(TensorData::new(normalized.data, [1, 3, h, w]), &device);
        let logits = model.fold().forward(x);
        let probs = softmax(logits.clone(), 1);
        assert_eq!(
            got.logits.unwrap(),
            logits.into_data().try_into_vec::<f32>().unwrap()
        );
        assert_eq!(got.probs, probs.into_data().try_into_vec::<f32>().unwrap());
    }

    /// Every norm and standardization variant predicts (folded: BatchNorm
    /// merged into the convolutions) as its unfolded evaluation-mode forward,
    /// in one tile and tiled.
    #[test]
    fn every_variant_predicts_as_its_evaluation_forward() {
        use crate::model::Variant;
        use burn::module::Module;
        let device = Device::flex();
        let (h, w) = (48, 61);
        let values: Vec<f32> = (0..3 * h * w)
            .map(|i| ((i * 29) % 89) as f32 / 88.0)
            .collect();
        let image = Image::new(3, h, w, values);
        let mut normalized = image.clone();
        Normalize::neutral(3).apply(&mut normalized);
        let x = Tensor::<4>::from_data(TensorData::new(normalized.data, [1, 3, h, w]), &device);
        for variant in Variant::ALL {
            let config = WsResUNetConfig::new(3)
                .with_widths(vec![8, 8, 16, 16, 16])
                .with_groups(4)
                .with_variant(variant);
            // Training-mode forwards move BatchNorm's running statistics.
            let ad = device.clone().autodiff();
            let trained = config.init_seeded(&ad, 1).unwrap();
            for seed in 0..3 {
                let batch = Tensor::<4>::random(
                    [2, 3, 40, 40],
                    burn::tensor::Distribution::Normal(0.3, 1.0 + seed as f64),
                    &ad,
                );
                let _ = trained.forward(batch);
            }
            let model = trained.valid();
            let expected = model
                .forward(x.clone())
                .into_data()
                .try_into_vec::<f32>()
                .unwrap();
            let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
            for tile in [64, 32] {
                let config = PredictConfig {
                    tile,
                    ..PredictConfig::default()
                };
                let predictor =
                    Predictor::new(model.clone(), Normalize::neutral(3), device.clone(), config)
                        .unwrap();
                let got = predictor.predict(&image, true).unwrap();
                let logits = got.logits.unwrap();
                assert!(got.probs.iter().all(|p| p.is_finite()), "{variant}");
                if tile == 64 {
                    assert_eq!(got.tiles, 1);
                    let diff = logits
                        .iter()
                        .zip(&expected)
                        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                    assert!(diff / scale < 1e-4, "{variant}: {diff} of {scale}");
                } else {
                    assert!(got.tiles > 1, "{variant}");
                }
            }
        }
    }

    /// `values` (`[C, H, W]`) mirrored along the chosen axes.
    fn mirror(
        values: &[f32],
        (h, w): (usize, usize),
        vertical: bool,
        horizontal: bool,
    ) -> Vec<f32> {
        let n = h * w;
        (0..values.len())
            .map(|i| {
                let (c, y, x) = (i / n, (i % n) / w, i % w);
                let y = if vertical { h - 1 - y } else { y };
                let x = if horizontal { w - 1 - x } else { x };
                values[c * n + y * w + x]
            })
            .collect()
    }

    #[test]
    fn flip_tta_averages_the_flipped_predictions_flipped_back() {
        let device = Device::flex();
        let model = tiny_model(&device);
        let (h, w) = (40, 56);
        let values: Vec<f32> = (0..3 * h * w)
            .map(|i| ((i * 53) % 97) as f32 / 96.0)
            .collect();
        let predictor = |tta| {
            let config = PredictConfig {
                tta,
                ..PredictConfig::default()
            };
            Predictor::new(model.clone(), Normalize::neutral(3), device.clone(), config).unwrap()
        };
        let plain = predictor(Tta::None);
        let mut expected = vec![0.0f32; 3 * h * w];
        for (v, hz) in [(false, false), (false, true), (true, false), (true, true)] {
            let image = Image::new(3, h, w, mirror(&values, (h, w), v, hz));
            let probs = plain.predict(&image, false).unwrap().probs;
            for (e, p) in expected.iter_mut().zip(mirror(&probs, (h, w), v, hz)) {
                *e += p / 4.0;
            }
        }
        let got = predictor(Tta::Flip)
            .predict(&Image::new(3, h, w, values.clone()), false)
            .unwrap()
            .probs;
        assert!(got.iter().chain(&expected).all(|v| v.is_finite()));
        let diff = got
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(diff < 1e-6, "{diff}");
        // And the flips matter: this is not the one-pass prediction.
        let one = plain
            .predict(&Image::new(3, h, w, values), false)
            .unwrap()
            .probs;
        assert!(one.iter().zip(&got).any(|(a, b)| (a - b).abs() > 1e-3));
    }

    /// Mean |difference| between neighbouring columns, per column gap
    /// (`gap x` = columns x and x+1), over all rows and classes.
    fn column_jumps(p: &Prediction) -> Vec<f32> {
        let (h, w) = (p.height, p.width);
        let mut gaps = vec![0f32; w - 1];
        for plane in p.probs.chunks(h * w) {
            for row in plane.chunks(w) {
                for (g, pair) in gaps.iter_mut().zip(row.windows(2)) {
                    *g += (pair[1] - pair[0]).abs() / h as f32;
                }
            }
        }
        gaps
    }

    /// How much larger the jumps are at the tile borders than elsewhere in
    /// the interior (1: no different).
    fn seam_ratio(p: &Prediction, tile: usize, stride: usize) -> f32 {
        let gaps = column_jumps(p);
        let starts = tile_starts(p.width, tile, stride);
        let mut seams: Vec<usize> = starts[1..].iter().map(|s| s - 1).collect();
        seams.extend(starts[..starts.len() - 1].iter().map(|s| s + tile - 1));
        let mean = |v: &mut dyn Iterator<Item = f32>| {
            let (sum, n) = v.fold((0.0, 0), |(s, n), x| (s + x, n + 1));
            sum / n as f32
        };
        let margin = 16;
        mean(&mut seams.iter().map(|&g| gaps[g]))
            / mean(&mut gaps[margin..gaps.len() - margin].iter().copied())
    }

    #[test]
    fn a_uniform_image_shows_no_tile_seams() {
        // A seam is a jump along a tile border. Blended tiles jump there no
        // more than elsewhere (over 40 random models: at most 1.3× the
        // interior's mean jump); tiles butted edge to edge (overlap 0, no
        // blending) jump 4-27× more. Seeded models: the same 8 every run.
        let device = Device::flex();
        let image = Image::new(3, 64, 192, vec![0.7; 3 * 64 * 192]);
        for seed in 0..8 {
            let model = seeded_tiny_model(&device, seed);
            let predict = |overlap| {
                let config = PredictConfig {
                    tile: 64,
                    overlap,
                    ..PredictConfig::default()
                };
                Predictor::new(model.clone(), Normalize::neutral(3), device.clone(), config)
                    .unwrap()
                    .predict(&image, false)
                    .unwrap()
            };
            let blended = seam_ratio(&predict(0.25), 64, 48);
            let butted = seam_ratio(&predict(0.0), 64, 64);
            assert!(
                blended < 1.5,
                "seed {seed}: blended tiles: seam ratio {blended}"
            );
            assert!(
                butted > 3.0,
                "seed {seed}: butted tiles: seam ratio {butted}"
            );
        }
    }

    #[test]
    fn overlay_blends_class_colours_and_keeps_black_classes_clear() {
        let image = Image::new(1, 1, 3, vec![0.0, 0.5, 1.0]);
        let mask = Mask::new(1, 3, vec![0, 1, 2]);
        let classes = ClassList::numbered(3);
        let rgb = overlay(&image, &mask, &classes, 0.5);
        let [r1, g1, b1] = classes.color(1);
        let [r2, g2, b2] = classes.color(2);
        let mix = |v: f32, c: u8| (0.5 * v * 255.0 + 0.5 * c as f32).round() as u8;
        assert_eq!(
            rgb,
            vec![
                0,
                0,
                0, // class 0 is black: the image shows through
                mix(0.5, r1),
                mix(0.5, g1),
                mix(0.5, b1),
                mix(1.0, r2),
                mix(1.0, g2),
                mix(1.0, b2),
            ]
        );
        // Values outside [0, 1] are stretched.
        let wide = Image::new(1, 1, 2, vec![-4.0, 4.0]);
        let rgb = overlay(&wide, &Mask::new(1, 2, vec![0, 0]), &classes, 0.5);
        assert_eq!(rgb, vec![0, 0, 0, 255, 255, 255]);
    }

    #[test]
    fn small_images_are_padded_and_cropped_back() {
        let device = Device::flex();
        let predictor = Predictor::new(
            tiny_model(&device),
            Normalize::neutral(3),
            device,
            PredictConfig::default(),
        )
        .unwrap();
        let p = predictor
            .predict(&Image::new(3, 5, 70, vec![0.3; 3 * 5 * 70]), false)
            .unwrap();
        assert_eq!((p.height, p.width, p.probs.len()), (5, 70, 3 * 5 * 70));
        let err = predictor
            .predict(&Image::new(1, 40, 40, vec![0.3; 1600]), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("1 channels but the model expects 3"), "{err}");
    }

    /// `image` flipped vertically and/or horizontally.
    fn flipped(image: &Image, vertical: bool, horizontal: bool) -> Image {
        let (c, h, w) = (image.channels, image.height, image.width);
        let mut data = Vec::with_capacity(c * h * w);
        for ch in 0..c {
            let plane = image.channel(ch);
            for y in 0..h {
                let sy = if vertical { h - 1 - y } else { y };
                for x in 0..w {
                    let sx = if horizontal { w - 1 - x } else { x };
                    data.push(plane[sy * w + sx]);
                }
            }
        }
        Image::new(c, h, w, data)
    }

    #[test]
    fn uncertainty_counts_the_flips_that_disagree() {
        let device = Device::flex();
        let model = seeded_tiny_model(&device, 3);
        let (h, w) = (40, 52);
        let values: Vec<f32> = (0..3 * h * w)
            .map(|i| ((i * 37) % 101) as f32 / 100.0)
            .collect();
        let image = Image::new(3, h, w, values);
        let config = |tile, tta, uncertainty| PredictConfig {
            tile,
            tta,
            uncertainty,
            ..PredictConfig::default()
        };
        let new =
            |config| Predictor::new(model.clone(), Normalize::neutral(3), device.clone(), config);
        let err = new(config(64, Tta::None, true)).unwrap_err().to_string();
        assert!(err.contains("use tta flip"), "{err}");

        let predictor = new(config(64, Tta::Flip, true)).unwrap();
        let got = predictor.predict(&image, false).unwrap();
        let plain = new(config(64, Tta::Flip, false))
            .unwrap()
            .predict(&image, false)
            .unwrap();
        assert_eq!(got.probs, plain.probs, "the maps change no probability");
        assert!(plain.disagreement.is_none() && plain.uncertainty().is_none());

        // Each flip predicted on its own and its labels flipped back.
        let single = new(config(64, Tta::None, false)).unwrap();
        let chosen = got.mask().data;
        let mut expected = vec![0f32; h * w];
        for (v, hz) in [(false, false), (false, true), (true, false), (true, true)] {
            let labels = single
                .predict(&flipped(&image, v, hz), false)
                .unwrap()
                .mask();
            let back: Vec<u16> = (0..h * w)
                .map(|i| {
                    let (y, x) = (i / w, i % w);
                    let sy = if v { h - 1 - y } else { y };
                    let sx = if hz { w - 1 - x } else { x };
                    labels.data[sy * w + sx]
                })
                .collect();
            for ((e, a), b) in expected.iter_mut().zip(&back).zip(&chosen) {
                if a != b {
                    *e += 0.25;
                }
            }
        }
        let disagreement = got.disagreement.clone().unwrap();
        assert_eq!(disagreement, expected);
        assert!(
            disagreement.iter().any(|&d| d > 0.0),
            "an untrained model's flips disagree somewhere"
        );

        // Entropy over ln K, then the disagreement.
        let maps = got.uncertainty().unwrap();
        let n = h * w;
        assert_eq!(maps.len(), 2 * n);
        for p in [0, n / 2, n - 1] {
            let e: f32 = (0..3)
                .map(|c| got.probs[c * n + p])
                .map(|q| -q * q.ln())
                .sum();
            assert!((maps[p] - e / 3f32.ln()).abs() < 1e-6);
        }
        assert_eq!(&maps[n..], &disagreement[..]);

        // Tiled: blended, still a share in [0, 1], and the probabilities
        // unchanged by the maps.
        let tiled = new(config(32, Tta::Flip, true))
            .unwrap()
            .predict(&image, false)
            .unwrap();
        let tiled_plain = new(config(32, Tta::Flip, false))
            .unwrap()
            .predict(&image, false)
            .unwrap();
        assert!(tiled.tiles > 1);
        assert_eq!(tiled.probs, tiled_plain.probs);
        let d = tiled.disagreement.unwrap();
        assert!(d.iter().all(|v| (0.0..=1.0 + 1e-6).contains(v)));
        assert!(d.iter().any(|&v| v > 0.0));
    }
}
