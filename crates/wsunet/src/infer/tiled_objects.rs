//! The objects of a streamed TIFF prediction: a writer thread that takes
//! the finished bands like the other outputs, labels objects as their rows
//! arrive ([`ObjectStream`]: objects across band seams stay whole, equal to
//! the whole image's up to numbering) and writes them as they close — the
//! id raster row by row, a CSV row and a GeoJSON Feature per object — each
//! under a temporary name until the image is done. A georeferenced input's
//! outlines are in its map coordinates (its EPSG code in the GeoJSON's
//! `crs` member) and the CSV adds each object's area in map units; a stated
//! pixel size adds its area in µm².

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};

use super::writer::{Finished, Output};
use crate::error::{Error, Result};
use crate::objects::stream::{Closed, LabelRows, Mode, ObjectStream, Rows};
use crate::objects::table::{GEOJSON_END, GEOJSON_START, ObjectRow, geojson_start_crs};
use crate::raster::{Photometric, RasterSpec, Resample, write_tiled};

/// The object files of one streamed input.
#[derive(Debug, Clone)]
pub struct ObjectOutputs {
    /// The object ids (32-bit; 0 background).
    pub instances: PathBuf,
    /// One row per object.
    pub csv: PathBuf,
    /// One outline per object.
    pub geojson: PathBuf,
    /// How pixels become objects.
    pub mode: Mode,
    /// Class names and colours by class index (for [`Mode::Grow`], the
    /// name and colour of every object at index 1).
    pub classes: Vec<(String, [u8; 3])>,
}

/// A text file written under a temporary name, renamed when complete.
struct TextFile {
    path: PathBuf,
    tmp: PathBuf,
    out: BufWriter<File>,
}

impl TextFile {
    fn create(path: &Path) -> Result<TextFile> {
        let tmp = crate::fs::temp_path(path);
        let file = File::create(&tmp).map_err(|error| Error::Io {
            path: path.to_path_buf(),
            error,
        })?;
        Ok(TextFile {
            path: path.to_path_buf(),
            tmp,
            out: BufWriter::new(file),
        })
    }

    fn write(&mut self, text: &str) -> Result<()> {
        self.out
            .write_all(text.as_bytes())
            .map_err(|error| Error::Io {
                path: self.path.clone(),
                error,
            })
    }

    fn finish(mut self) -> Result<()> {
        let io = |error| Error::Io {
            path: self.path.clone(),
            error,
        };
        self.out.flush().map_err(io)?;
        std::fs::rename(&self.tmp, &self.path).map_err(io)
    }
}

impl Drop for TextFile {
    fn drop(&mut self) {
        // A file finished was renamed; one abandoned leaves nothing.
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// The CSV and GeoJSON of objects, written as they close.
struct Tables<'a> {
    csv: TextFile,
    geojson: TextFile,
    features: usize,
    classes: &'a [(String, [u8; 3])],
    /// Where a pixel corner lies in the map (`None`: pixels).
    affine: Option<[f64; 6]>,
    /// Extra area columns: the area of a pixel in each (µm², map units).
    areas: Vec<f64>,
}

impl Tables<'_> {
    fn add(&mut self, objects: Vec<Closed>) -> Result<()> {
        for o in objects {
            let (name, color) = self
                .classes
                .get(o.class as usize)
                .cloned()
                .unwrap_or_else(|| (o.class.to_string(), [255, 255, 255]));
            let row = ObjectRow::new(&o.stats, &name);
            let mut line = row.csv();
            for per_pixel in &self.areas {
                line.push_str(&format!(",{:.6}", row.area as f64 * per_pixel));
            }
            self.csv.write(&(line + "\n"))?;
            let sep = if self.features > 0 { ",\n" } else { "" };
            let feature = match self.affine {
                Some([a, b, c, d, e, f]) => row.feature_at(color, &o.polygons, |(x, y)| {
                    let (x, y) = (x as f64, y as f64);
                    (a + b * x + c * y, d + e * x + f * y)
                }),
                None => row.feature(color, &o.polygons),
            };
            self.geojson.write(&format!("{sep}{feature}"))?;
            self.features += 1;
        }
        Ok(())
    }
}

/// Sends final label rows to the raster writer a few at a time (a piece
/// that closes late can finish many rows at once); false when the writer
/// has stopped.
fn send_rows(tx: &SyncSender<Vec<u32>>, rows: &LabelRows) -> bool {
    rows.chunks(LABEL_CHUNK_ROWS)
        .all(|chunk| tx.send(chunk).is_ok())
}

/// Rows of labels handed to the raster writer at a time.
const LABEL_CHUNK_ROWS: usize = 64;

/// Starts the object writer for an image of `base`'s size with `channels`
/// input channels and `classes` classes; `count` gets the number of
/// objects written.
pub(super) fn spawn_objects(
    targets: &ObjectOutputs,
    base: &RasterSpec,
    channels: usize,
    classes: usize,
    count: Arc<AtomicU64>,
) -> Output {
    let (tx, rx) = sync_channel::<Arc<Finished>>(0);
    let targets = targets.clone();
    let spec = RasterSpec {
        samples: 1,
        photometric: Photometric::Gray,
        resample: Resample::Nearest,
        geo: crate::raster::GeoTags {
            nodata: None,
            ..base.geo.clone()
        },
        ..base.clone()
    };
    let name = targets.instances.clone();
    let thread = std::thread::spawn(move || -> Result<bool> {
        let mut stream = ObjectStream::new(spec.width, channels, targets.mode);
        // Georeferenced: outlines in the map's coordinates, areas in its
        // units; a stated pixel size: areas in µm².
        let affine = spec.geo.affine();
        let mut header = ObjectRow::csv_header(channels);
        let mut areas = Vec::new();
        if let Some((x, y, 3)) = spec.resolution {
            // Pixels per centimetre.
            header.push_str(",area_um2");
            areas.push(1e4 / x * 1e4 / y);
        }
        if let Some([_, b, c, _, e, f]) = affine {
            header.push_str(",area_map_units");
            areas.push((b * f - c * e).abs());
        }
        let mut tables = Tables {
            csv: TextFile::create(&targets.csv)?,
            geojson: TextFile::create(&targets.geojson)?,
            features: 0,
            classes: &targets.classes,
            affine,
            areas,
        };
        tables.csv.write(&(header + "\n"))?;
        match spec.geo.epsg().filter(|_| affine.is_some()) {
            Some(code) => tables.geojson.write(&geojson_start_crs(code))?,
            None => tables.geojson.write(GEOJSON_START)?,
        }
        let (label_tx, label_rx) = sync_channel::<Vec<u32>>(1);
        let ids = targets.instances.clone();
        let raster = std::thread::spawn(move || {
            write_tiled::<u32>(&ids, &spec, label_rx.into_iter().map(Ok))
        });
        let streamed = || -> Result<()> {
            for f in rx {
                let b = &f.band;
                let n = b.rows * b.width;
                let (labels, confidence): (Vec<u16>, Vec<f32>) = match targets.mode {
                    Mode::Grow(_) => (Vec::new(), Vec::new()),
                    // Nodata pixels (labels past the classes) are background.
                    Mode::Classes => f
                        .labels
                        .iter()
                        .enumerate()
                        .map(|(p, &l)| match (l as usize) < classes {
                            true => (l, b.probs[l as usize * n + p]),
                            false => (0, 0.0),
                        })
                        .unzip(),
                };
                let out = stream.push(Rows {
                    rows: b.rows,
                    probs: &b.probs,
                    classes: &labels,
                    confidence: &confidence,
                    image: &b.image,
                });
                tables.add(out.objects)?;
                if !send_rows(&label_tx, &out.labels) {
                    break;
                }
            }
            let out = stream.finish();
            tables.add(out.objects)?;
            send_rows(&label_tx, &out.labels);
            Ok(())
        };
        let result = streamed();
        drop(label_tx);
        let written = raster.join().unwrap_or_else(|_| {
            Err(Error::Data {
                path: targets.instances.clone(),
                reason: "its writer thread panicked".into(),
            })
        });
        result?;
        let big = written?;
        tables.geojson.write(GEOJSON_END)?;
        let Tables { csv, geojson, .. } = tables;
        csv.finish()?;
        geojson.finish()?;
        count.store(stream.objects() as u64, Ordering::Relaxed);
        Ok(big)
    });
    Output { name, tx, thread }
}
