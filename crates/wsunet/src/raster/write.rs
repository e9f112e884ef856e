//! Writing tiled TIFF / BigTIFF rasters with reduced-resolution levels while
//! their rows arrive, in memory bounded by one row of tiles per level.
//!
//! The `tiff` crate writes strips only (tiled writing is its open issue
//! image-rs/image-tiff#166), so the tiles go through its low-level
//! [`DirectoryEncoder`]: every tile of every level is compressed here
//! (Deflate with `flate2`, ZSTD with `zstd`) and appended with
//! `write_data` as soon as its rows are complete; the directories, which
//! only list where the tiles are, are written last. Level 0 is the first
//! page, each reduced level (half the size, down to about 1,024 pixels on
//! the long side) a following page with NewSubfileType = 1: the layout of
//! GDAL's internal overviews, which QuPath (through OpenSlide's generic
//! tiled TIFF or Bio-Formats) and QGIS read as a pyramid. Georeferencing
//! and the pixel size go on level 0 (GDAL takes an overview's placement
//! from its full-resolution page); each level's resolution tags are scaled
//! to its pixels. A file whose tiles could pass 4 GiB is a BigTIFF.
//!
//! The file is written under a temporary name and renamed when complete,
//! so a failure or a kill never leaves a partial raster under the final
//! name.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use tiff::encoder::{DirectoryEncoder, Rational, TiffEncoder, TiffKind};
use tiff::tags::Tag;

use super::meta::GeoTags;
use crate::error::{Error, Result};

/// A pyramid stops halving once the long side is at most this.
pub const PYRAMID_MIN_SIDE: usize = 1024;

/// How tiles are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Stored as they are.
    None,
    /// zlib Deflate (TIFF compression 8): read everywhere.
    #[default]
    Deflate,
    /// Zstandard (TIFF compression 50000): smaller and faster; GDAL ≥ 2.3,
    /// libtiff ≥ 4.0.10.
    Zstd,
}

impl Compression {
    /// Every method.
    pub const ALL: [Compression; 3] = [Compression::None, Compression::Deflate, Compression::Zstd];

    fn code(self) -> u16 {
        match self {
            Compression::None => 1,
            Compression::Deflate => 8,
            Compression::Zstd => 50000,
        }
    }

    fn compress(self, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
        match self {
            Compression::None => Ok(bytes.to_vec()),
            Compression::Deflate => {
                let mut e = flate2::write::ZlibEncoder::new(
                    Vec::with_capacity(bytes.len() / 4),
                    flate2::Compression::new(6),
                );
                e.write_all(bytes)?;
                e.finish()
            }
            Compression::Zstd => zstd::bulk::compress(bytes, 3),
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Compression::None => "none",
            Compression::Deflate => "deflate",
            Compression::Zstd => "zstd",
        })
    }
}

/// How a reduced level is made from the one above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resample {
    /// The top-left pixel of each 2×2 block (labels: never a class that is
    /// not there).
    Nearest,
    /// The mean of each 2×2 block (probabilities, images).
    Average,
}

/// What the pixels mean, for viewers.
#[derive(Debug, Clone, PartialEq)]
pub enum Photometric {
    /// Grayscale, or several unnamed bands (the first gray, the rest extra).
    Gray,
    /// Three samples of red, green and blue.
    Rgb,
    /// One 8-bit sample indexing these colours (a label mask).
    Palette(Vec<[u8; 3]>),
}

/// A raster to write.
#[derive(Debug, Clone)]
pub struct RasterSpec {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Samples per pixel.
    pub samples: usize,
    /// What the samples mean.
    pub photometric: Photometric,
    /// Tile compression.
    pub compression: Compression,
    /// Tile side (a multiple of 16).
    pub tile: usize,
    /// How reduced levels are made.
    pub resample: Resample,
    /// Whether to write reduced levels.
    pub pyramid: bool,
    /// Georeferencing (and nodata) for level 0.
    pub geo: GeoTags,
    /// Resolution tags of level 0: x, y pixels per unit, the unit.
    pub resolution: Option<(f64, f64, u16)>,
    /// Write a BigTIFF even when a classic TIFF would do (it always is one
    /// when the tiles could pass 4 GiB).
    pub bigtiff: bool,
}

impl RasterSpec {
    /// The sizes of the levels written, full resolution first.
    pub fn level_sizes(&self) -> Vec<(usize, usize)> {
        let mut sizes = vec![(self.width, self.height)];
        if self.pyramid {
            while let Some(&(w, h)) = sizes.last().filter(|(w, h)| *w.max(h) > PYRAMID_MIN_SIDE) {
                sizes.push((w.div_ceil(2), h.div_ceil(2)));
            }
        }
        sizes
    }

    /// The bytes its tiles take uncompressed, every level, for samples of
    /// `sample_bytes` bytes (edge tiles are stored whole).
    pub fn uncompressed_bytes(&self, sample_bytes: usize) -> u64 {
        self.level_sizes()
            .iter()
            .map(|&(w, h)| {
                let tiles = w.div_ceil(self.tile) as u64 * h.div_ceil(self.tile) as u64;
                tiles * (self.tile * self.tile) as u64 * self.samples as u64 * sample_bytes as u64
            })
            .sum()
    }
}

/// A sample type the writer stores.
pub trait Sample: Copy + Default + Send + 'static {
    /// TIFF SampleFormat: 1 unsigned integer, 3 float.
    const FORMAT: u16;
    /// Bits per sample.
    const BITS: u16;
    /// The mean of `values` (rounded for integers).
    fn average(values: &[Self]) -> Self;
    /// Appends the values' bytes in the machine's order (the order the
    /// `tiff` encoder declares in the header).
    fn put_bytes(values: &[Self], out: &mut Vec<u8>);
}

impl Sample for u8 {
    const FORMAT: u16 = 1;
    const BITS: u16 = 8;
    fn average(values: &[u8]) -> u8 {
        let n = values.len() as u32;
        ((values.iter().map(|&v| v as u32).sum::<u32>() + n / 2) / n) as u8
    }
    fn put_bytes(values: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(values);
    }
}

impl Sample for u16 {
    const FORMAT: u16 = 1;
    const BITS: u16 = 16;
    fn average(values: &[u16]) -> u16 {
        let n = values.len() as u32;
        ((values.iter().map(|&v| v as u32).sum::<u32>() + n / 2) / n) as u16
    }
    fn put_bytes(values: &[u16], out: &mut Vec<u8>) {
        out.extend(values.iter().flat_map(|v| v.to_ne_bytes()));
    }
}

impl Sample for u32 {
    const FORMAT: u16 = 1;
    const BITS: u16 = 32;
    fn average(values: &[u32]) -> u32 {
        let n = values.len() as u64;
        ((values.iter().map(|&v| v as u64).sum::<u64>() + n / 2) / n) as u32
    }
    fn put_bytes(values: &[u32], out: &mut Vec<u8>) {
        out.extend(values.iter().flat_map(|v| v.to_ne_bytes()));
    }
}

impl Sample for f32 {
    const FORMAT: u16 = 3;
    const BITS: u16 = 32;
    fn average(values: &[f32]) -> f32 {
        values.iter().sum::<f32>() / values.len() as f32
    }
    fn put_bytes(values: &[f32], out: &mut Vec<u8>) {
        out.extend(values.iter().flat_map(|v| v.to_ne_bytes()));
    }
}

/// One level's rows waiting to fill a row of tiles, and where its tiles
/// went.
struct Level<T> {
    width: usize,
    height: usize,
    /// Rows received so far.
    rows_in: usize,
    /// Rows of the current row of tiles, `[rows, width, samples]`.
    band: Vec<T>,
    /// A row waiting for its pair, to make the next level's row.
    pending: Option<Vec<T>>,
    offsets: Vec<u64>,
    counts: Vec<u64>,
}

/// Writes one raster's tiles and level 0's directory; rows come from the
/// top through `push`.
struct TiledWriter<'a, W: Write + std::io::Seek, K: TiffKind, T: Sample> {
    spec: &'a RasterSpec,
    dir: DirectoryEncoder<'a, W, K>,
    levels: Vec<Level<T>>,
    scratch: Vec<u8>,
}

impl<'a, W: Write + std::io::Seek, K: TiffKind, T: Sample> TiledWriter<'a, W, K, T> {
    fn new(spec: &'a RasterSpec, encoder: &'a mut TiffEncoder<W, K>) -> tiff::TiffResult<Self> {
        let levels = spec
            .level_sizes()
            .into_iter()
            .map(|(width, height)| {
                let tiles = width.div_ceil(spec.tile) * height.div_ceil(spec.tile);
                Level {
                    width,
                    height,
                    rows_in: 0,
                    band: Vec::new(),
                    pending: None,
                    offsets: vec![0; tiles],
                    counts: vec![0; tiles],
                }
            })
            .collect();
        Ok(TiledWriter {
            spec,
            dir: encoder.image_directory()?,
            levels,
            scratch: Vec::new(),
        })
    }

    /// Adds full-width rows at the bottom of level 0, `[rows, width,
    /// samples]`.
    fn push(&mut self, rows: &[T]) -> std::io::Result<()> {
        let row_len = self.spec.width * self.spec.samples;
        for row in rows.chunks(row_len) {
            self.push_row(0, row.to_vec())?;
        }
        Ok(())
    }

    fn push_row(&mut self, level: usize, row: Vec<T>) -> std::io::Result<()> {
        let tile = self.spec.tile;
        let l = &mut self.levels[level];
        l.band.extend_from_slice(&row);
        l.rows_in += 1;
        let (rows_in, height) = (l.rows_in, l.height);
        if rows_in % tile == 0 || rows_in == height {
            self.write_tile_row(level)?;
        }
        if level + 1 < self.levels.len() {
            let l = &mut self.levels[level];
            let pair = match l.pending.take() {
                Some(first) => Some((first, Some(row))),
                None if rows_in == height => Some((row, None)),
                None => {
                    l.pending = Some(row);
                    None
                }
            };
            if let Some((a, b)) = pair {
                let down = self.halve(level, &a, b.as_deref());
                self.push_row(level + 1, down)?;
            }
        }
        Ok(())
    }

    /// The next level's row from one or two rows of `level`.
    fn halve(&self, level: usize, a: &[T], b: Option<&[T]>) -> Vec<T> {
        let s = self.spec.samples;
        let w = self.levels[level].width;
        let half = w.div_ceil(2);
        let mut out = Vec::with_capacity(half * s);
        let mut block = Vec::with_capacity(4);
        for x in 0..half {
            let xs = [2 * x, (2 * x + 1).min(w - 1)];
            for c in 0..s {
                match self.spec.resample {
                    Resample::Nearest => out.push(a[xs[0] * s + c]),
                    Resample::Average => {
                        block.clear();
                        let cols = if xs[0] == xs[1] { &xs[..1] } else { &xs[..] };
                        for row in std::iter::once(a).chain(b) {
                            block.extend(cols.iter().map(|&x| row[x * s + c]));
                        }
                        out.push(T::average(&block));
                    }
                }
            }
        }
        out
    }

    /// Cuts the level's band into tiles (zero-padded to full size at the
    /// right and bottom edges), compresses and appends them.
    fn write_tile_row(&mut self, level: usize) -> std::io::Result<()> {
        let (tile, s) = (self.spec.tile, self.spec.samples);
        let l = &mut self.levels[level];
        let rows = l.band.len() / (l.width * s);
        let tile_row = (l.rows_in - 1) / tile;
        let across = l.width.div_ceil(tile);
        let mut values = vec![T::default(); tile * tile * s];
        for col in 0..across {
            let x0 = col * tile;
            let cols = tile.min(l.width - x0);
            values.iter_mut().for_each(|v| *v = T::default());
            for r in 0..rows {
                values[r * tile * s..][..cols * s]
                    .copy_from_slice(&l.band[(r * l.width + x0) * s..][..cols * s]);
            }
            self.scratch.clear();
            T::put_bytes(&values, &mut self.scratch);
            let bytes = self.spec.compression.compress(&self.scratch)?;
            let offset = self
                .dir
                .write_data(&bytes[..])
                .map_err(std::io::Error::other)?;
            let index = tile_row * across + col;
            l.offsets[index] = offset;
            l.counts[index] = bytes.len() as u64;
        }
        l.band.clear();
        Ok(())
    }

    /// Writes level 0's directory; returns where the reduced levels' tiles
    /// are, for their directories.
    fn finish(self) -> tiff::TiffResult<Vec<LevelDirectory>> {
        let TiledWriter {
            spec,
            mut dir,
            levels,
            ..
        } = self;
        let mut levels = levels.into_iter().map(|l| LevelDirectory {
            width: l.width,
            height: l.height,
            offsets: l.offsets,
            counts: l.counts,
        });
        let first = levels.next().expect("level 0");
        write_tags::<W, K, T>(&mut dir, spec, &first, 0)?;
        dir.finish()?;
        Ok(levels.collect())
    }
}

/// Where a level's tiles are.
struct LevelDirectory {
    width: usize,
    height: usize,
    offsets: Vec<u64>,
    counts: Vec<u64>,
}

/// The tags of one level's directory (`index` 0: full resolution).
fn write_tags<W: Write + std::io::Seek, K: TiffKind, T: Sample>(
    dir: &mut DirectoryEncoder<'_, W, K>,
    spec: &RasterSpec,
    level: &LevelDirectory,
    index: usize,
) -> tiff::TiffResult<()> {
    let s = spec.samples;
    dir.write_tag(Tag::NewSubfileType, u32::from(index > 0))?;
    dir.write_tag(Tag::ImageWidth, level.width as u32)?;
    dir.write_tag(Tag::ImageLength, level.height as u32)?;
    dir.write_tag(Tag::BitsPerSample, &vec![T::BITS; s][..])?;
    dir.write_tag(Tag::Compression, spec.compression.code())?;
    let photometric: u16 = match spec.photometric {
        Photometric::Gray => 1,
        Photometric::Rgb => 2,
        Photometric::Palette(_) => 3,
    };
    dir.write_tag(Tag::PhotometricInterpretation, photometric)?;
    dir.write_tag(Tag::SamplesPerPixel, s as u16)?;
    dir.write_tag(Tag::PlanarConfiguration, 1u16)?;
    dir.write_tag(Tag::TileWidth, spec.tile as u32)?;
    dir.write_tag(Tag::TileLength, spec.tile as u32)?;
    if std::mem::size_of::<K::OffsetType>() == 8 {
        dir.write_tag(Tag::TileOffsets, &level.offsets[..])?;
        dir.write_tag(Tag::TileByteCounts, &level.counts[..])?;
    } else {
        let narrow = |v: &[u64]| -> Vec<u32> { v.iter().map(|&o| o as u32).collect() };
        dir.write_tag(Tag::TileOffsets, &narrow(&level.offsets)[..])?;
        dir.write_tag(Tag::TileByteCounts, &narrow(&level.counts)[..])?;
    }
    dir.write_tag(Tag::SampleFormat, &vec![T::FORMAT; s][..])?;
    let colour = match spec.photometric {
        Photometric::Rgb => 3,
        _ => 1,
    };
    if s > colour {
        // The bands past the colour ones are unnamed data (0).
        dir.write_tag(Tag::ExtraSamples, &vec![0u16; s - colour][..])?;
    }
    if let Photometric::Palette(colors) = &spec.photometric {
        let n = 1usize << T::BITS;
        let mut map = vec![0u16; 3 * n];
        for (i, rgb) in colors.iter().take(n).enumerate() {
            for c in 0..3 {
                map[c * n + i] = rgb[c] as u16 * 257;
            }
        }
        dir.write_tag(Tag::ColorMap, &map[..])?;
    }
    if let Some((x, y, unit)) = spec.resolution {
        let factor = (1usize << index) as f64;
        let rational = |v: f64| {
            let (n, d) = super::meta::rational(v / factor);
            Rational { n, d }
        };
        dir.write_tag(Tag::XResolution, rational(x))?;
        dir.write_tag(Tag::YResolution, rational(y))?;
        dir.write_tag(Tag::ResolutionUnit, unit)?;
    }
    dir.write_tag(Tag::Software, concat!("wsunet ", env!("CARGO_PKG_VERSION")))?;
    if index == 0 {
        let geo = &spec.geo;
        if let Some(v) = &geo.pixel_scale {
            dir.write_tag(Tag::ModelPixelScaleTag, &v[..])?;
        }
        if let Some(v) = &geo.tiepoints {
            dir.write_tag(Tag::ModelTiepointTag, &v[..])?;
        }
        if let Some(v) = &geo.transformation {
            dir.write_tag(Tag::ModelTransformationTag, &v[..])?;
        }
        if let Some(v) = &geo.key_directory {
            dir.write_tag(Tag::GeoKeyDirectoryTag, &v[..])?;
        }
        if let Some(v) = &geo.double_params {
            dir.write_tag(Tag::GeoDoubleParamsTag, &v[..])?;
        }
        if let Some(v) = &geo.ascii_params {
            dir.write_tag(Tag::GeoAsciiParamsTag, v.as_str())?;
        }
        if let Some(v) = &geo.nodata {
            dir.write_tag(Tag::GdalNodata, v.as_str())?;
        }
    }
    Ok(())
}

/// Whether a raster's tiles could pass the 4 GiB a classic TIFF addresses
/// (judged from the uncompressed size, with room for the directories and
/// for compression that does not compress).
fn needs_bigtiff<T: Sample>(spec: &RasterSpec) -> bool {
    let bytes = spec.uncompressed_bytes(T::BITS as usize / 8);
    bytes + bytes / 64 + (64 << 20) > u32::MAX as u64
}

fn encode_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Data {
        path: path.to_path_buf(),
        reason: format!("cannot write the TIFF: {e}"),
    }
}

/// Writes `spec`'s raster to `path` (atomically) from bands of full-width
/// rows, `[rows, width, samples]`, from the top. Returns whether it is a
/// BigTIFF. A band that fails ends the write with its error, leaving
/// nothing under `path`.
pub fn write_tiled<T: Sample>(
    path: &Path,
    spec: &RasterSpec,
    bands: impl IntoIterator<Item = Result<Vec<T>>>,
) -> Result<bool> {
    if spec.tile == 0 || !spec.tile.is_multiple_of(16) {
        return Err(Error::setting(
            "tile",
            format!(
                "a TIFF tile side must be a positive multiple of 16, not {}",
                spec.tile
            ),
        ));
    }
    let big = spec.bigtiff || needs_bigtiff::<T>(spec);
    crate::fs::write_atomic_with(path, |tmp| {
        let file = File::create(tmp).map_err(|error| Error::Io {
            path: path.to_path_buf(),
            error,
        })?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        if big {
            let encoder = TiffEncoder::new_big(&mut out).map_err(|e| encode_error(path, e))?;
            encode::<_, _, T>(path, spec, encoder, bands)?;
        } else {
            let encoder = TiffEncoder::new(&mut out).map_err(|e| encode_error(path, e))?;
            encode::<_, _, T>(path, spec, encoder, bands)?;
        }
        out.flush().map_err(|e| encode_error(path, e))
    })?;
    Ok(big)
}

fn encode<W: Write + std::io::Seek, K: TiffKind, T: Sample>(
    path: &Path,
    spec: &RasterSpec,
    mut encoder: TiffEncoder<W, K>,
    bands: impl IntoIterator<Item = Result<Vec<T>>>,
) -> Result<()> {
    let io = |e: std::io::Error| encode_error(path, e);
    let reduced = {
        let mut writer =
            TiledWriter::<W, K, T>::new(spec, &mut encoder).map_err(|e| encode_error(path, e))?;
        for band in bands {
            writer.push(&band?).map_err(io)?;
        }
        let rows = writer.levels[0].rows_in;
        if rows != spec.height {
            return Err(encode_error(
                path,
                format!("{rows} of its {} rows were given", spec.height),
            ));
        }
        writer.finish().map_err(|e| encode_error(path, e))?
    };
    for (i, level) in reduced.iter().enumerate() {
        let mut dir = encoder
            .image_directory()
            .map_err(|e| encode_error(path, e))?;
        write_tags::<W, K, T>(&mut dir, spec, level, i + 1).map_err(|e| encode_error(path, e))?;
        dir.finish().map_err(|e| encode_error(path, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(width: usize, height: usize, samples: usize, pyramid: bool) -> RasterSpec {
        RasterSpec {
            width,
            height,
            samples,
            photometric: Photometric::Gray,
            compression: Compression::Deflate,
            tile: 256,
            resample: Resample::Nearest,
            pyramid,
            geo: GeoTags::default(),
            resolution: None,
            bigtiff: false,
        }
    }

    #[test]
    fn bigtiff_once_tiles_could_pass_4_gib() {
        // 60,000² one-byte labels with their pyramid: 4.5 GiB of tiles.
        assert!(needs_bigtiff::<u8>(&spec(60_000, 60_000, 1, true)));
        // 50,000² without the pyramid: 2.3 GiB.
        assert!(!needs_bigtiff::<u8>(&spec(50_000, 50_000, 1, false)));
        // Four f32 bands at 17,000²: 4.3 GiB.
        assert!(needs_bigtiff::<f32>(&spec(17_000, 17_000, 4, false)));
        assert!(!needs_bigtiff::<f32>(&spec(16_000, 16_000, 4, false)));
    }

    #[test]
    fn pyramid_halves_down_to_1024_on_the_long_side() {
        let sizes = spec(5000, 3001, 1, true).level_sizes();
        assert_eq!(sizes, [(5000, 3001), (2500, 1501), (1250, 751), (625, 376)]);
        assert_eq!(spec(1024, 100, 1, true).level_sizes(), [(1024, 100)]);
        assert_eq!(spec(5000, 5000, 1, false).level_sizes(), [(5000, 5000)]);
    }

    #[test]
    fn averages_round_and_nearest_keeps_labels() {
        assert_eq!(u8::average(&[1, 2]), 2);
        assert_eq!(u8::average(&[255, 255, 255, 254]), 255);
        assert_eq!(u16::average(&[0, 1, 1, 1]), 1);
        assert_eq!(f32::average(&[0.5, 1.0]), 0.75);
    }
}
