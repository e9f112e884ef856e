//! Predicting a TIFF file into tiled TIFF outputs without holding either:
//! the input is read a band of rows at a time on its own thread, the
//! network runs on the caller's, and each output (the label mask, and on
//! request the overlay, probabilities, logits, uncertainty and objects) is
//! compressed and written on a thread of its own as its rows are finished,
//! with its pyramid.
//!
//! Memory is the predictor's band (see [`stream`](super::stream)), the
//! input's current row of chunks in its stored sample type with 32 rows
//! read ahead, the finished band each writer is working on, and a row of
//! 256-pixel tiles per pyramid level of each output. The outputs carry the
//! input's georeferencing and pixel size, so they overlay it in QGIS, GDAL
//! and QuPath. Where the input declares a nodata value (GDAL_NODATA), the
//! mask marks its nodata pixels with its own nodata label (the largest
//! value of its sample type, declared in its GDAL_NODATA) instead of a
//! class.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};

use super::stream::{Band, Progress, RowSink, RowSource, StreamReport};
use super::tiled_objects::{ObjectOutputs, spawn_objects};
use super::writer::{Finished, Output, spawn_output};
use super::{Predictor, overlay_pixels};
use crate::data::ClassList;
use crate::error::{Error, Result};
use crate::raster::{Compression, GeoTags, Photometric, RasterSpec, Resample, TiffInfo, TiffRows};

/// Rows the reader thread hands over at a time.
const PREFETCH_ROWS: usize = 32;

/// Side of the tiles of the TIFFs written.
pub const OUTPUT_TILE: usize = 256;

/// How probabilities are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbsType {
    /// 8-bit: round(p · 255), a quarter of the size.
    #[default]
    U8,
    /// 32-bit floats, exactly as computed.
    F32,
}

impl ProbsType {
    /// Every type.
    pub const ALL: [ProbsType; 2] = [ProbsType::U8, ProbsType::F32];
}

impl std::fmt::Display for ProbsType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProbsType::U8 => "u8",
            ProbsType::F32 => "f32",
        })
    }
}

/// The files to write for one TIFF input. The mask is always written.
#[derive(Debug, Clone)]
pub struct TiffOutputs {
    /// The label mask: 8-bit palette TIFF in the class colours (16-bit
    /// grayscale past 255 classes).
    pub mask: PathBuf,
    /// The image with the class colours blended over it at this opacity
    /// (8-bit RGB).
    pub overlay: Option<(PathBuf, f32)>,
    /// Per-class probabilities, one band per class.
    pub probs: Option<(PathBuf, ProbsType)>,
    /// Per-class logits (32-bit floats), one band per class.
    pub logits: Option<PathBuf>,
    /// The uncertainty maps (32-bit floats): entropy, then the flips'
    /// disagreement (needs [`PredictConfig::uncertainty`](super::PredictConfig::uncertainty)).
    pub uncertainty: Option<PathBuf>,
    /// The objects: their ids, table and outlines, written as they close.
    pub objects: Option<ObjectOutputs>,
    /// Tile compression.
    pub compression: Compression,
}

/// What predicting one file did.
#[derive(Debug, Clone)]
pub struct TiffSummary {
    /// Width of the level predicted.
    pub width: usize,
    /// Height of the level predicted.
    pub height: usize,
    /// Tiles and skipped tiles.
    pub report: StreamReport,
    /// Pixels per class (nodata pixels not counted).
    pub class_pixels: Vec<u64>,
    /// Pixels marked nodata in the mask.
    pub nodata_pixels: u64,
    /// Objects found, when they were asked for.
    pub objects: Option<u64>,
}

/// Reads a [`RowSource`] on its own thread, `block` rows ahead of the
/// reader, so decoding overlaps the network.
struct Prefetch {
    size: (usize, usize, usize),
    nodata: Option<f32>,
    rx: Receiver<Result<Vec<f32>>>,
    /// Values received and not yet handed out, `[C, rows, W]`, with their
    /// row count.
    held: Option<(Vec<f32>, usize)>,
}

impl Prefetch {
    fn new<S: RowSource + Send + 'static>(mut source: S, block: usize) -> Prefetch {
        let size = source.size();
        let nodata = source.nodata();
        let (tx, rx) = sync_channel(1);
        std::thread::spawn(move || {
            let mut left = size.1;
            while left > 0 {
                let rows = block.min(left);
                let values = source.read_rows(rows);
                let failed = values.is_err();
                if tx.send(values).is_err() || failed {
                    return;
                }
                left -= rows;
            }
        });
        Prefetch {
            size,
            nodata,
            rx,
            held: None,
        }
    }
}

impl RowSource for Prefetch {
    fn size(&self) -> (usize, usize, usize) {
        self.size
    }

    fn nodata(&self) -> Option<f32> {
        self.nodata
    }

    fn read_rows(&mut self, rows: usize) -> Result<Vec<f32>> {
        let (c, _, w) = self.size;
        let mut parts: Vec<(Vec<f32>, usize)> = Vec::new();
        let mut have = 0;
        while have < rows {
            let (values, n) = match self.held.take() {
                Some(held) => held,
                None => match self.rx.recv() {
                    Ok(values) => {
                        let values = values?;
                        let n = values.len() / (c * w);
                        (values, n)
                    }
                    Err(_) => break,
                },
            };
            let take = n.min(rows - have);
            if take < n {
                // Split: the first `take` rows now, the rest held.
                let (mut now, mut rest) = (Vec::new(), Vec::new());
                for plane in values.chunks(n * w) {
                    now.extend_from_slice(&plane[..take * w]);
                    rest.extend_from_slice(&plane[take * w..]);
                }
                self.held = Some((rest, n - take));
                parts.push((now, take));
            } else {
                parts.push((values, n));
            }
            have += take;
        }
        if parts.len() == 1 {
            return Ok(parts.pop().expect("one part").0);
        }
        let mut out = Vec::with_capacity(c * have * w);
        for ch in 0..c {
            for (values, n) in &parts {
                out.extend_from_slice(&values[ch * n * w..(ch + 1) * n * w]);
            }
        }
        Ok(out)
    }
}

/// `[K, rows, W]` planes interleaved to `[rows, W, K]`.
fn interleave<T: Copy>(planes: &[T], k: usize, n: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(planes.len());
    for p in 0..n {
        out.extend((0..k).map(|c| planes[c * n + p]));
    }
    out
}

/// One writer thread per output file, each turning finished bands into its
/// samples: the mask (palette, or 16-bit past 255 classes, with `mask_nodata`
/// as its GDAL_NODATA), then the overlay, probabilities and logits asked for.
fn start_writers(
    outputs: &TiffOutputs,
    base: &RasterSpec,
    classes: &ClassList,
    k: usize,
    mask_nodata: Option<String>,
) -> Vec<Output> {
    let spec = |samples, photometric, resample, nodata| RasterSpec {
        samples,
        photometric,
        resample,
        geo: GeoTags {
            nodata,
            ..base.geo.clone()
        },
        ..base.clone()
    };
    let mut writers = Vec::new();
    if k > 255 {
        writers.push(spawn_output::<u16>(
            &outputs.mask,
            spec(1, Photometric::Gray, Resample::Nearest, mask_nodata),
            |f| f.labels.clone(),
        ));
    } else {
        let colors = (0..256).map(|i| classes.color(i)).collect();
        writers.push(spawn_output::<u8>(
            &outputs.mask,
            spec(
                1,
                Photometric::Palette(colors),
                Resample::Nearest,
                mask_nodata,
            ),
            |f| f.labels.iter().map(|&l| l as u8).collect(),
        ));
    }
    if let Some((path, alpha)) = &outputs.overlay {
        let (classes, alpha) = (classes.clone(), *alpha);
        writers.push(spawn_output::<u8>(
            path,
            spec(3, Photometric::Rgb, Resample::Average, None),
            move |f| {
                let b = &f.band;
                overlay_pixels(&b.image, b.channels, &f.labels, &classes, alpha, (0.0, 1.0))
            },
        ));
    }
    let bands = spec(k, Photometric::Gray, Resample::Average, None);
    match &outputs.probs {
        Some((path, ProbsType::U8)) => {
            writers.push(spawn_output::<u8>(path, bands.clone(), move |f| {
                let q: Vec<u8> = f
                    .band
                    .probs
                    .iter()
                    .map(|p| (p.clamp(0.0, 1.0) * 255.0).round() as u8)
                    .collect();
                interleave(&q, k, f.band.rows * f.band.width)
            }))
        }
        Some((path, ProbsType::F32)) => {
            writers.push(spawn_output::<f32>(path, bands.clone(), move |f| {
                interleave(&f.band.probs, k, f.band.rows * f.band.width)
            }))
        }
        None => {}
    }
    if let Some(path) = &outputs.logits {
        writers.push(spawn_output::<f32>(path, bands, move |f| {
            let logits = f.band.logits.as_ref().expect("logits kept");
            interleave(logits, k, f.band.rows * f.band.width)
        }));
    }
    if let Some(path) = &outputs.uncertainty {
        let maps = spec(2, Photometric::Gray, Resample::Average, None);
        writers.push(spawn_output::<f32>(path, maps, move |f| {
            let maps = f.band.uncertainty().expect("disagreement kept");
            interleave(&maps, 2, f.band.rows * f.band.width)
        }));
    }
    writers
}

impl Predictor {
    /// Predicts level `level` of the TIFF `info` describes into `outputs`,
    /// streamed (see the module docs). `progress` hears after each batch of
    /// tiles. On any failure no output is left under its name.
    pub fn predict_tiff(
        &self,
        info: &TiffInfo,
        level: usize,
        classes: &ClassList,
        outputs: &TiffOutputs,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<TiffSummary> {
        if outputs.uncertainty.is_some() && !self.config.uncertainty {
            return Err(Error::setting(
                "uncertainty",
                "an uncertainty output needs a predictor with the uncertainty setting on",
            ));
        }
        let rows = TiffRows::open_level(info, level)?;
        let l = rows.level().clone();
        let (w, h) = (l.width, l.height);
        let c = rows.size().0;
        let k = self.num_classes();
        let nodata = rows.nodata();
        // Level 0 carries the file's placement; a reduced level its own
        // pixel size but no georeferencing (its grid differs).
        let geo = if level == 0 {
            info.geo.clone()
        } else {
            GeoTags::default()
        };
        let resolution = info.level_pixel_size(level).map(|p| {
            let [(xn, xd), (yn, yd)] = p.per_centimetre();
            (xn as f64 / xd as f64, yn as f64 / yd as f64, 3)
        });
        let declared_nodata = info.geo.nodata.is_some();
        let mask_nodata = if k > 255 { u16::MAX } else { u8::MAX as u16 };
        let base = RasterSpec {
            width: w,
            height: h,
            samples: 1,
            photometric: Photometric::Gray,
            compression: outputs.compression,
            tile: OUTPUT_TILE,
            resample: Resample::Nearest,
            pyramid: true,
            geo,
            resolution,
            bigtiff: false,
        };
        let mask_nodata_tag = declared_nodata.then(|| mask_nodata.to_string());
        let mut writers = start_writers(outputs, &base, classes, k, mask_nodata_tag);
        let objects = outputs.objects.as_ref().map(|targets| {
            let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
            writers.push(spawn_objects(targets, &base, c, k, count.clone()));
            count
        });
        let mut class_pixels = vec![0u64; k];
        let mut nodata_pixels = 0u64;
        let writer_stopped = std::cell::Cell::new(false);
        let keep_image = outputs.overlay.is_some() || outputs.objects.is_some();
        // Small blocks: the reader decodes a whole row of chunks once and
        // hands it out in slices, so a block only sets how far it runs ahead.
        let mut source = Prefetch::new(rows, PREFETCH_ROWS);
        let result = {
            let mut sink = |mut band: Band| -> Result<()> {
                let mut labels = band.labels();
                if declared_nodata {
                    let n = band.rows * band.width;
                    for (p, label) in labels.iter_mut().enumerate() {
                        let missing = (0..band.channels).all(|c| {
                            let v = band.image[c * n + p];
                            v.is_nan() || Some(v) == nodata
                        });
                        if missing {
                            *label = mask_nodata;
                            nodata_pixels += 1;
                        }
                    }
                }
                for &label in &labels {
                    if let Some(count) = class_pixels.get_mut(label as usize) {
                        *count += 1;
                    }
                }
                if !keep_image {
                    band.image = Vec::new();
                }
                let finished = Arc::new(Finished { band, labels });
                for output in &writers {
                    if output.tx.send(finished.clone()).is_err() {
                        writer_stopped.set(true);
                        return Err(Error::Data {
                            path: output.name.clone(),
                            reason: "its writer stopped".into(),
                        });
                    }
                }
                Ok(())
            };
            self.predict_rows(
                &mut source,
                &mut sink as &mut dyn RowSink,
                outputs.logits.is_some(),
                progress,
            )
        };
        // Every writer ends (its channel is closed); a writer's own error
        // explains a send that failed, so it comes first.
        let mut first_error = None;
        for output in writers {
            drop(output.tx);
            let written = output.thread.join().unwrap_or_else(|_| {
                Err(Error::Data {
                    path: output.name.clone(),
                    reason: "its writer thread panicked".into(),
                })
            });
            if let Err(e) = written {
                first_error.get_or_insert(e);
            }
        }
        let report = match (result, first_error) {
            (Ok(report), None) => report,
            (Err(e), None) => return Err(e),
            (Ok(_), Some(e)) => return Err(e),
            // A failed write explains a stopped stream; a failed stream
            // explains the writers' missing rows.
            (Err(stream), Some(writer)) => {
                return Err(if writer_stopped.get() { writer } else { stream });
            }
        };
        Ok(TiffSummary {
            width: w,
            height: h,
            report,
            class_pixels,
            nodata_pixels,
            objects: objects.map(|n| n.load(std::sync::atomic::Ordering::Relaxed)),
        })
    }
}
