//! The two ends of streamed prediction: an image read from the top a band
//! of rows at a time ([`RowSource`]: a whole image in memory, a TIFF read
//! tile row by tile row), and finished rows handed on from the top
//! ([`RowSink`], as [`Band`]s).

use crate::data::Image;
use crate::error::Result;

/// An image read from the top, a band of rows at a time.
pub trait RowSource {
    /// `(channels, height, width)`.
    fn size(&self) -> (usize, usize, usize);

    /// The next `rows` rows, `[C, rows, W]`, values as read (before
    /// normalization).
    fn read_rows(&mut self, rows: usize) -> Result<Vec<f32>>;

    /// The value that marks a pixel without data in every channel, as read
    /// (`NaN` marks nodata by itself).
    fn nodata(&self) -> Option<f32> {
        None
    }
}

/// A whole image as a [`RowSource`].
#[derive(Debug)]
pub struct ImageRows<'a> {
    image: &'a Image,
    next: usize,
}

impl<'a> ImageRows<'a> {
    /// Rows of `image` from its top.
    pub fn new(image: &'a Image) -> Self {
        ImageRows { image, next: 0 }
    }
}

impl RowSource for ImageRows<'_> {
    fn size(&self) -> (usize, usize, usize) {
        (self.image.channels, self.image.height, self.image.width)
    }

    fn read_rows(&mut self, rows: usize) -> Result<Vec<f32>> {
        let (h, w) = (self.image.height, self.image.width);
        let rows = rows.min(h - self.next);
        let mut out = Vec::with_capacity(self.image.channels * rows * w);
        for c in 0..self.image.channels {
            out.extend_from_slice(&self.image.channel(c)[self.next * w..(self.next + rows) * w]);
        }
        self.next += rows;
        Ok(out)
    }
}

/// Finished rows of a prediction.
#[derive(Debug, Clone)]
pub struct Band {
    /// The first row's index in the image.
    pub y: usize,
    /// Rows in the band.
    pub rows: usize,
    /// The image's width.
    pub width: usize,
    /// Classes.
    pub num_classes: usize,
    /// Probabilities, `[classes, rows, width]`.
    pub probs: Vec<f32>,
    /// Logits, `[classes, rows, width]`, when asked for.
    pub logits: Option<Vec<f32>>,
    /// The flips' disagreement, `[rows, width]`, when asked for
    /// ([`Prediction::disagreement`](super::Prediction::disagreement)).
    pub disagreement: Option<Vec<f32>>,
    /// The input's channels.
    pub channels: usize,
    /// The input rows as read, `[channels, rows, width]`.
    pub image: Vec<f32>,
}

impl Band {
    /// The uncertainty maps, `[2, rows, width]`, when the disagreement was
    /// asked for (see [`Prediction::uncertainty`](super::Prediction::uncertainty)).
    pub fn uncertainty(&self) -> Option<Vec<f32>> {
        let d = self.disagreement.as_ref()?;
        Some(super::uncertainty_planes(&self.probs, self.num_classes, d))
    }

    /// The most probable class of every pixel, row-major (ties: the lower
    /// index).
    pub fn labels(&self) -> Vec<u16> {
        let n = self.rows * self.width;
        let mut best = vec![0u16; n];
        let mut top: Vec<f32> = self.probs[..n].to_vec();
        for c in 1..self.num_classes {
            let plane = &self.probs[c * n..(c + 1) * n];
            for ((b, t), &p) in best.iter_mut().zip(top.iter_mut()).zip(plane) {
                if p > *t {
                    *t = p;
                    *b = c as u16;
                }
            }
        }
        best
    }
}

/// Where finished rows go, top to bottom.
pub trait RowSink {
    /// Takes the next finished rows.
    fn write(&mut self, band: Band) -> Result<()>;
}

impl<F: FnMut(Band) -> Result<()>> RowSink for F {
    fn write(&mut self, band: Band) -> Result<()> {
        self(band)
    }
}

impl RowSource for crate::raster::TiffRows {
    fn size(&self) -> (usize, usize, usize) {
        let l = self.level();
        (l.channels, l.height, l.width)
    }

    fn read_rows(&mut self, rows: usize) -> Result<Vec<f32>> {
        crate::raster::TiffRows::read_rows(self, rows)
    }

    fn nodata(&self) -> Option<f32> {
        crate::raster::TiffRows::nodata(self)
    }
}
