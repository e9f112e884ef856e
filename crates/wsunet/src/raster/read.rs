//! Reading TIFF and BigTIFF rasters a band of rows at a time, through the
//! `tiff` crate's random chunk access: only the tiles or strips of the rows
//! asked for are decoded, so memory follows one row of chunks, never the
//! image.
//!
//! A file's *levels* are its full-resolution image (the first page) and its
//! reduced-resolution copies: OME-TIFF's SubIFDs of the first page (tag
//! 330) when it has them, else the following pages that are marked
//! reduced-resolution (NewSubfileType bit 0) or, in a tiled file, tiled
//! pages of the same sample layout that are smaller than the level before
//! (how Aperio SVS stores its pyramid between its stripped thumbnail, label
//! and macro pages). The `tiff` crate decodes pages of the main chain only,
//! so a SubIFD is opened through a view of the file whose header points at
//! it ([`Patched`]); its offsets are absolute, so nothing else changes.
//!
//! Values follow the rule of [`read_image`](crate::data::read_image):
//! 8-bit samples / 255, 16-bit / 65535, 32- and 64-bit floats as they are;
//! an alpha channel is dropped. Non-finite float values (NaN nodata in
//! remote-sensing rasters) are kept as read here; the predictor reads them
//! as the channel's mean.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Serialize;
use tiff::decoder::{ChunkType, Decoder, DecodingResult, Limits};
use tiff::tags::Tag;

use super::meta::{GeoTags, PixelSize};
use crate::error::{Error, Result};

/// The most pages looked at for reduced-resolution levels (a stack of
/// thousands of frames is not a pyramid).
const MAX_PAGES_SCANNED: usize = 256;

/// How a level's samples are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SampleType {
    /// 8-bit unsigned integers, read as value / 255.
    U8,
    /// 16-bit unsigned integers, read as value / 65535.
    U16,
    /// 32-bit floats, read as they are.
    F32,
    /// 64-bit floats, read as `f32`.
    F64,
}

impl SampleType {
    /// Bytes a stored sample takes.
    pub fn bytes(self) -> usize {
        match self {
            SampleType::U8 => 1,
            SampleType::U16 => 2,
            SampleType::F32 => 4,
            SampleType::F64 => 8,
        }
    }

    /// The value an `f32` buffer holds for a stored sample `v`.
    pub fn scale(self, v: f64) -> f32 {
        match self {
            SampleType::U8 => v as u8 as f32 / 255.0,
            SampleType::U16 => v as u16 as f32 / 65535.0,
            SampleType::F32 | SampleType::F64 => v as f32,
        }
    }
}

/// How a level is cut into chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Chunking {
    /// Tiles of `width × height` pixels.
    Tiles {
        /// Tile width.
        width: usize,
        /// Tile height.
        height: usize,
    },
    /// Strips of `rows` full-width rows.
    Strips {
        /// Rows per strip.
        rows: usize,
    },
}

/// One resolution level of a TIFF file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Level {
    /// 0 for full resolution, then coarser.
    pub index: usize,
    /// Where its directory is: `page N` or `subifd N`.
    pub location: String,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Channels read (alpha dropped).
    pub channels: usize,
    /// Samples stored per pixel.
    pub samples: usize,
    /// The stored sample type, or `None` when wsunet cannot read it
    /// (`problem` says why).
    pub sample_type: Option<SampleType>,
    /// Tiles or strips.
    pub chunking: Chunking,
    /// Whether each sample has its own plane (PlanarConfiguration 2).
    pub planar: bool,
    /// The compression's name.
    pub compression: String,
    /// Whether its one sample indexes a colour palette (a label mask).
    pub palette: bool,
    /// Why the level cannot be read, when it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Where the directory starts in the file.
    #[serde(skip)]
    ifd: u64,
    /// The stored sample that is alpha, dropped on reading.
    #[serde(skip)]
    alpha: Option<usize>,
    /// The TIFF compression code.
    #[serde(skip)]
    compression_code: u16,
    /// One 32-bit integer sample a pixel and nothing else wrong: readable
    /// as a label mask (object ids), not as an image.
    #[serde(skip)]
    ids32: bool,
}

/// What a TIFF file holds: its levels and what places them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TiffInfo {
    /// The file.
    pub path: PathBuf,
    /// A BigTIFF (64-bit offsets)?
    pub bigtiff: bool,
    /// Pages in the main chain (up to the first 256 looked at).
    pub pages: usize,
    /// Full resolution first.
    pub levels: Vec<Level>,
    /// GeoTIFF tags of the first page.
    #[serde(skip_serializing_if = "GeoTags::is_empty")]
    pub geo: GeoTags,
    /// The physical pixel size of level 0, when the file states one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pixel_size: Option<PixelSize>,
    /// The resolution tags of the first page as stored: x, y pixels per
    /// unit and the unit (1 none, 2 inch, 3 cm).
    #[serde(skip)]
    pub resolution: Option<(f64, f64, u16)>,
}

impl TiffInfo {
    /// The physical pixel size of level `index` (level 0's, scaled by the
    /// level's size), when the file states one.
    pub fn level_pixel_size(&self, index: usize) -> Option<PixelSize> {
        let (full, level) = (self.levels.first()?, self.levels.get(index)?);
        let p = self.pixel_size?;
        Some(PixelSize {
            x_um: p.x_um * full.width as f64 / level.width as f64,
            y_um: p.y_um * full.height as f64 / level.height as f64,
        })
    }

    /// Level `index`, or an error naming the levels there are.
    pub fn level(&self, index: usize) -> Result<&Level> {
        let level = self.levels.get(index).ok_or_else(|| {
            let listed: Vec<String> = self
                .levels
                .iter()
                .map(|l| format!("{}: {}×{}", l.index, l.width, l.height))
                .collect();
            Error::setting(
                "level",
                format!(
                    "{}: there is no level {index}; the file has {} level(s) ({})",
                    self.path.display(),
                    self.levels.len(),
                    listed.join(", ")
                ),
            )
        })?;
        if let Some(problem) = &level.problem {
            return Err(data_error(&self.path, problem.clone()));
        }
        Ok(level)
    }
}

fn data_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::Data {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// A `tiff` error as this file's error, with the likely cause.
fn tiff_error(path: &Path, e: tiff::TiffError) -> Error {
    let reason = match &e {
        tiff::TiffError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            format!("the file ends early ({io}); it is truncated or a chunk offset points past its end")
        }
        tiff::TiffError::LimitsExceeded => {
            "a chunk (tile or strip) or a tag is larger than wsunet decodes at once (256 MiB); re-save the image tiled (e.g. gdal_translate -co TILED=YES)".into()
        }
        _ => format!("cannot read the TIFF: {e}"),
    };
    data_error(path, reason)
}

/// The most bytes one row of chunks may decode to (a row of 1024-pixel
/// tiles across 100,000 pixels of 4 float channels is 1.6 GB).
const MAX_CHUNK_ROW_BYTES: usize = 4 << 30;

/// A zeroed buffer of `n` values, or an error naming the file when it
/// cannot be allocated (a corrupt size, or an image larger than memory).
fn zeroed<T: Default + Clone>(path: &Path, n: usize, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    let bytes = n.saturating_mul(std::mem::size_of::<T>());
    if v.try_reserve_exact(n).is_err() {
        return Err(data_error(
            path,
            format!(
                "{what} needs {:.1} GiB, more than this machine can allocate; the file is corrupt, or predict it (it streams) instead of reading it whole",
                bytes as f64 / (1u64 << 30) as f64
            ),
        ));
    }
    v.resize(n, T::default());
    Ok(v)
}

/// The file's first bytes: byte order, BigTIFF or not.
#[derive(Debug, Clone, Copy)]
struct Header {
    little_endian: bool,
    big: bool,
}

impl Header {
    fn read(path: &Path, file: &mut File) -> Result<Header> {
        let mut bytes = [0u8; 4];
        file.read_exact(&mut bytes)
            .map_err(|_| data_error(path, "the file is too short to be a TIFF"))?;
        let little_endian = match &bytes[..2] {
            b"II" => true,
            b"MM" => false,
            _ => {
                return Err(data_error(
                    path,
                    "not a TIFF file (no II/MM byte-order mark)",
                ));
            }
        };
        let magic = if little_endian {
            u16::from_le_bytes([bytes[2], bytes[3]])
        } else {
            u16::from_be_bytes([bytes[2], bytes[3]])
        };
        let big = match magic {
            42 => false,
            43 => true,
            _ => {
                return Err(data_error(
                    path,
                    format!("not a TIFF file (magic number {magic})"),
                ));
            }
        };
        Ok(Header { little_endian, big })
    }

    /// The header of a file whose first directory is at `ifd`.
    fn pointing_at(&self, ifd: u64) -> Vec<u8> {
        let mut h = Vec::with_capacity(16);
        h.extend_from_slice(if self.little_endian { b"II" } else { b"MM" });
        let u16b = |v: u16| {
            if self.little_endian {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            }
        };
        if self.big {
            h.extend_from_slice(&u16b(43));
            h.extend_from_slice(&u16b(8));
            h.extend_from_slice(&u16b(0));
            h.extend_from_slice(&if self.little_endian {
                ifd.to_le_bytes()
            } else {
                ifd.to_be_bytes()
            });
        } else {
            h.extend_from_slice(&u16b(42));
            let ifd = ifd as u32;
            h.extend_from_slice(&if self.little_endian {
                ifd.to_le_bytes()
            } else {
                ifd.to_be_bytes()
            });
        }
        h
    }
}

/// A file seen with some of its bytes replaced: its header, so that its
/// first directory is any directory of the file (a SubIFD the `tiff` crate
/// cannot reach), and for a label mask its photometric tag, so that the
/// crate decodes palette indices as the gray values they are. Patches are
/// `(offset, bytes)`, sorted and apart.
#[derive(Debug)]
struct Patched<R> {
    inner: R,
    patches: Vec<(u64, Vec<u8>)>,
    pos: u64,
}

impl<R: Read + Seek> Read for Patched<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // Inside a patch: serve from it.
        for (at, bytes) in &self.patches {
            let end = at + bytes.len() as u64;
            if (*at..end).contains(&self.pos) {
                let from = (self.pos - at) as usize;
                let n = buf.len().min(bytes.len() - from);
                buf[..n].copy_from_slice(&bytes[from..from + n]);
                self.pos += n as u64;
                self.inner.seek(SeekFrom::Start(self.pos))?;
                return Ok(n);
            }
        }
        // Before the next patch: read up to it.
        let limit = self
            .patches
            .iter()
            .map(|(at, _)| *at)
            .filter(|&at| at > self.pos)
            .min()
            .map_or(buf.len(), |at| buf.len().min((at - self.pos) as usize));
        let n = self.inner.read(&mut buf[..limit])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Read + Seek> Seek for Patched<R> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.pos = self.inner.seek(to)?;
        Ok(self.pos)
    }
}

/// Where the value of tag `tag` sits in the directory at `ifd`, read from
/// the file (`None` when the directory has no such entry).
fn entry_value_offset(
    file: &mut File,
    header: Header,
    ifd: u64,
    tag: u16,
) -> std::io::Result<Option<u64>> {
    let (count_len, entry_len, value_at) = if header.big { (8, 20, 12) } else { (2, 12, 8) };
    let mut count = [0u8; 8];
    file.seek(SeekFrom::Start(ifd))?;
    file.read_exact(&mut count[..count_len])?;
    let read_u = |b: &[u8]| -> u64 {
        let mut v = [0u8; 8];
        if header.little_endian {
            v[..b.len()].copy_from_slice(b);
            u64::from_le_bytes(v)
        } else {
            v[8 - b.len()..].copy_from_slice(b);
            u64::from_be_bytes(v)
        }
    };
    let entries = read_u(&count[..count_len]).min(4096);
    let mut entry = vec![0u8; entry_len];
    for i in 0..entries {
        file.read_exact(&mut entry)?;
        if read_u(&entry[..2]) == tag as u64 {
            return Ok(Some(
                ifd + count_len as u64 + i * entry_len as u64 + value_at,
            ));
        }
    }
    Ok(None)
}

type TiffDecoder = Decoder<Patched<BufReader<File>>>;

/// Decoding limits: chunks up to 256 MiB (the crate's default), and tag
/// values up to 64 MiB, so the offset tables of a whole-slide image (hundreds
/// of thousands of tiles) are read.
fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.ifd_value_size = 64 << 20;
    limits
}

/// A decoder whose current image is the directory at `ifd`; `as_gray`
/// reads a palette image's indices as gray values.
fn decoder_at(path: &Path, header: Header, ifd: u64, as_gray: bool) -> Result<TiffDecoder> {
    let io = |error| Error::Io {
        path: path.to_path_buf(),
        error,
    };
    let mut file = File::open(path).map_err(io)?;
    let mut patches = vec![(0, header.pointing_at(ifd))];
    if as_gray {
        let at = entry_value_offset(&mut file, header, ifd, 262)
            .map_err(|_| data_error(path, "the file ends inside a directory"))?;
        if let Some(at) = at {
            let one: [u8; 2] = if header.little_endian {
                1u16.to_le_bytes()
            } else {
                1u16.to_be_bytes()
            };
            patches.push((at, one.to_vec()));
        }
    }
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let patched = Patched {
        inner: BufReader::new(file),
        patches,
        pos: 0,
    };
    Ok(Decoder::new(patched)
        .map_err(|e| tiff_error(path, e))?
        .with_limits(limits()))
}

fn compression_name(code: u16) -> String {
    match code {
        1 => "none".into(),
        5 => "LZW".into(),
        6 => "old-style JPEG".into(),
        7 => "JPEG".into(),
        8 | 32946 => "Deflate".into(),
        32773 => "PackBits".into(),
        50000 => "ZSTD".into(),
        50001 => "WebP".into(),
        34887 => "LERC".into(),
        34712 | 33003 | 33005 => "JPEG 2000".into(),
        other => format!("code {other}"),
    }
}

/// Compressions the `tiff` crate decodes with the features wsunet builds.
fn compression_supported(code: u16) -> bool {
    matches!(code, 1 | 5 | 7 | 8 | 32946 | 32773 | 50000)
}

fn tag_u64(dec: &mut TiffDecoder, tag: Tag) -> Result<Option<u64>, tiff::TiffError> {
    dec.find_tag(tag)?.map(|v| v.into_u64()).transpose()
}

fn tag_u16_vec(dec: &mut TiffDecoder, tag: Tag) -> Result<Vec<u16>, tiff::TiffError> {
    Ok(match dec.find_tag(tag)? {
        Some(v) => v.into_u16_vec()?,
        None => Vec::new(),
    })
}

/// The level described by the directory the decoder is on.
fn describe(
    dec: &mut TiffDecoder,
    ifd: u64,
    location: String,
    file_len: u64,
) -> Result<Level, tiff::TiffError> {
    let (w, h) = dec.dimensions()?;
    let samples = tag_u64(dec, Tag::SamplesPerPixel)?.unwrap_or(1) as usize;
    let bits = tag_u16_vec(dec, Tag::BitsPerSample)?;
    let bits = bits.first().copied().unwrap_or(1);
    let format = tag_u16_vec(dec, Tag::SampleFormat)?
        .first()
        .copied()
        .unwrap_or(1);
    let photometric = tag_u64(dec, Tag::PhotometricInterpretation)?.unwrap_or(1) as u16;
    let compression = tag_u64(dec, Tag::Compression)?.unwrap_or(1) as u16;
    let planar = tag_u64(dec, Tag::PlanarConfiguration)?.unwrap_or(1) == 2;
    let extra = tag_u16_vec(dec, Tag::ExtraSamples)?;
    let chunking = match dec.get_chunk_type() {
        ChunkType::Tile => {
            let (tw, th) = dec.chunk_dimensions();
            Chunking::Tiles {
                width: tw as usize,
                height: th as usize,
            }
        }
        ChunkType::Strip => Chunking::Strips {
            rows: (dec.chunk_dimensions().1 as usize).min(h as usize),
        },
    };
    let sample_type = match (format, bits) {
        (1, 8) => Some(SampleType::U8),
        (1, 16) => Some(SampleType::U16),
        (3, 32) => Some(SampleType::F32),
        (3, 64) => Some(SampleType::F64),
        _ => None,
    };
    let kind = match format {
        1 => "unsigned integer",
        2 => "signed integer",
        3 => "floating point",
        _ => "undefined",
    };
    // The first alpha among the extra samples, which follow the colour ones.
    let alpha = extra
        .iter()
        .position(|&e| e == 1 || e == 2)
        .map(|i| samples - extra.len() + i);
    // 32-bit integers are object ids: read as label masks only.
    let ids32 = bits == 32 && matches!(format, 1 | 2) && samples == 1;
    let unreadable_samples = format!(
        "its samples are {bits}-bit {kind}s; wsunet reads 8- and 16-bit unsigned integers and 32- and 64-bit floats (convert it, e.g. gdal_translate -ot UInt16 or -ot Float32){}",
        if ids32 {
            ", and 32-bit integers as label masks"
        } else {
            ""
        }
    );
    let mut problem = None;
    if sample_type.is_none() && !ids32 {
        problem = Some(unreadable_samples.clone());
    } else if !compression_supported(compression) {
        problem = Some(format!(
            "its compression is {}, which wsunet cannot decode; re-save it with Deflate, LZW or ZSTD (e.g. gdal_translate -co COMPRESS=DEFLATE -co TILED=YES)",
            compression_name(compression)
        ));
    } else if matches!(photometric, 0 | 4 | 5 | 8 | 9 | 10) {
        let what = match photometric {
            0 => "white-is-zero grayscale",
            4 => "a transparency mask",
            5 => "CMYK",
            _ => "CIE L*a*b*",
        };
        problem = Some(format!(
            "its pixels are {what}; wsunet reads grayscale, RGB and multiband images (convert it to RGB or grayscale)"
        ));
    } else if photometric == 6 && compression != 7 {
        problem = Some(
            "its pixels are uncompressed YCbCr; wsunet reads YCbCr only inside JPEG tiles (convert it to RGB)"
                .into(),
        );
    } else if matches!(
        chunking,
        Chunking::Tiles { width: 0, .. } | Chunking::Tiles { height: 0, .. }
    ) || chunking == (Chunking::Strips { rows: 0 })
    {
        problem = Some("its tiles or strips have zero size".into());
    } else if let Some(bytes) = sample_type
        .map(SampleType::bytes)
        .or_else(|| (bits == 32 && format != 3).then_some(4))
    {
        problem = chunks_problem(
            dec,
            Claimed {
                width: w as u64,
                height: h as u64,
                samples: samples as u64,
                bytes: bytes as u64,
                planar,
                chunking,
                compression,
            },
            file_len,
        )?;
    }
    let ids32 = ids32 && problem.is_none();
    if ids32 {
        problem = Some(unreadable_samples);
    }
    let channels = samples - usize::from(alpha.is_some());
    Ok(Level {
        index: 0,
        location,
        width: w as usize,
        height: h as usize,
        channels,
        samples,
        sample_type,
        chunking,
        planar,
        compression: compression_name(compression),
        palette: photometric == 3,
        problem,
        ifd,
        alpha,
        compression_code: compression,
        ids32,
    })
}

/// The most pixels a level may claim (a million by a million); past it a
/// header is taken for corrupt, whatever its chunks say.
pub const MAX_LEVEL_PIXELS: u64 = 1 << 40;

/// How many times larger than its stored bytes a chunk of `compression`
/// can decode to, with room to spare: PackBits 128 bytes from 2; Deflate
/// 1032:1; LZW codes of 12 bits each for strings of up to ~4,000 bytes;
/// JPEG about 2 bits for an empty 8×8 block of 3 samples; ZSTD's RLE blocks
/// 128 KiB from 4 bytes. Uncompressed chunks hold their pixels.
fn max_ratio(compression: u16) -> u64 {
    match compression {
        1 => 1,
        32773 => 64,
        8 | 32946 => 1100,
        5..=7 => 4096,
        _ => 40_000,
    }
}

/// What a directory claims about its pixels.
#[derive(Debug, Clone, Copy)]
struct Claimed {
    width: u64,
    height: u64,
    samples: u64,
    bytes: u64,
    planar: bool,
    chunking: Chunking,
    compression: u16,
}

/// Why a level's size cannot be believed, checked before anything is
/// allocated from it: more pixels than [`MAX_LEVEL_PIXELS`], a chunk that
/// lies past the end of the file (or whose end overflows), or a chunk whose
/// pixels are more than its stored bytes can decode to
/// ([`max_ratio`]). `None` when it is plausible.
fn chunks_problem(
    dec: &mut TiffDecoder,
    c: Claimed,
    file_len: u64,
) -> Result<Option<String>, tiff::TiffError> {
    let pixels = c.width.saturating_mul(c.height);
    if pixels > MAX_LEVEL_PIXELS {
        return Ok(Some(format!(
            "its header claims {} × {} pixels, more than wsunet reads ({} pixels); the file is corrupt",
            c.width, c.height, MAX_LEVEL_PIXELS
        )));
    }
    let (offsets, counts) = match c.chunking {
        Chunking::Tiles { .. } => (Tag::TileOffsets, Tag::TileByteCounts),
        Chunking::Strips { .. } => (Tag::StripOffsets, Tag::StripByteCounts),
    };
    let offsets = dec.get_tag_u64_vec(offsets)?;
    let counts = dec.get_tag_u64_vec(counts)?;
    let per_pixel = if c.planar { 1 } else { c.samples } * c.bytes;
    let total = offsets.len() as u64;
    for (k, (&offset, &stored)) in offsets.iter().zip(&counts).enumerate() {
        let k = k as u64;
        // The chunk's pixels (the last strip of a plane may be short).
        let pixels = match c.chunking {
            Chunking::Tiles { width, height } => width as u64 * height as u64,
            Chunking::Strips { rows } => {
                let strips = c.height.div_ceil(rows as u64).max(1);
                let first = (k % strips) * rows as u64;
                c.width * (rows as u64).min(c.height.saturating_sub(first))
            }
        };
        let needs = pixels.saturating_mul(per_pixel);
        let end = offset.checked_add(stored);
        if end.is_none_or(|end| end > file_len) {
            return Ok(Some(format!(
                "chunk {k} of {total} (at byte {offset}, {stored} bytes) lies past the end of the file ({file_len} bytes): the file is truncated or its header is corrupt"
            )));
        }
        let ratio = max_ratio(c.compression);
        if needs > stored.saturating_mul(ratio) {
            let why = if ratio == 1 {
                "uncompressed".to_string()
            } else {
                format!(
                    "{} decodes at most {ratio} times its size",
                    compression_name(c.compression)
                )
            };
            return Ok(Some(format!(
                "chunk {k} of {total} holds {stored} bytes but its pixels need {needs} ({why}): the file is truncated, sparse or its header is corrupt"
            )));
        }
    }
    Ok(None)
}

fn geo_tags(dec: &mut TiffDecoder) -> Result<GeoTags, tiff::TiffError> {
    let doubles = |dec: &mut TiffDecoder, tag| -> Result<Option<Vec<f64>>, tiff::TiffError> {
        dec.find_tag(tag)?.map(|v| v.into_f64_vec()).transpose()
    };
    let text = |dec: &mut TiffDecoder, tag| -> Result<Option<String>, tiff::TiffError> {
        dec.find_tag(tag)?.map(|v| v.into_string()).transpose()
    };
    Ok(GeoTags {
        pixel_scale: doubles(dec, Tag::ModelPixelScaleTag)?,
        tiepoints: doubles(dec, Tag::ModelTiepointTag)?,
        transformation: doubles(dec, Tag::ModelTransformationTag)?,
        key_directory: dec
            .find_tag(Tag::GeoKeyDirectoryTag)?
            .map(|v| v.into_u16_vec())
            .transpose()?,
        double_params: doubles(dec, Tag::GeoDoubleParamsTag)?,
        ascii_params: text(dec, Tag::GeoAsciiParamsTag)?,
        nodata: text(dec, Tag::GdalNodata)?,
    })
}

fn rational(dec: &mut TiffDecoder, tag: Tag) -> Result<Option<f64>, tiff::TiffError> {
    Ok(match dec.find_tag(tag)? {
        Some(tiff::decoder::ifd::Value::Rational(n, d)) if d != 0 => Some(n as f64 / d as f64),
        Some(v) => v.into_f64().ok(),
        None => None,
    })
}

/// Lists a TIFF file's levels and metadata (nothing decoded).
pub fn inspect(path: &Path) -> Result<TiffInfo> {
    let mut file = File::open(path).map_err(|error| Error::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let header = Header::read(path, &mut file)?;
    let file_len = file
        .metadata()
        .map_err(|error| Error::Io {
            path: path.to_path_buf(),
            error,
        })?
        .len();
    file.seek(SeekFrom::Start(0)).map_err(|error| Error::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let mut dec = Decoder::new(Patched {
        inner: BufReader::new(file),
        patches: Vec::new(),
        pos: 0,
    })
    .map_err(|e| tiff_error(path, e))?
    .with_limits(limits());
    let err = |e| tiff_error(path, e);
    let first_ifd = dec.ifd_pointer().map(|p| p.0).unwrap_or(0);
    let first = describe(&mut dec, first_ifd, "page 0".into(), file_len).map_err(err)?;
    let geo = geo_tags(&mut dec).map_err(err)?;
    let resolution = match (
        rational(&mut dec, Tag::XResolution).map_err(err)?,
        rational(&mut dec, Tag::YResolution).map_err(err)?,
    ) {
        (Some(x), Some(y)) => Some((
            x,
            y,
            tag_u64(&mut dec, Tag::ResolutionUnit)
                .map_err(err)?
                .unwrap_or(2) as u16,
        )),
        _ => None,
    };
    let description = dec
        .find_tag(Tag::ImageDescription)
        .map_err(err)?
        .and_then(|v| v.into_string().ok());
    let pixel_size = description
        .as_deref()
        .and_then(|d| {
            if d.contains("<OME") || d.contains("<Pixels") {
                PixelSize::from_ome_xml(d)
            } else {
                PixelSize::from_aperio(d)
            }
        })
        .or_else(|| resolution.and_then(|(x, y, unit)| PixelSize::from_resolution(x, y, unit)));
    let subifds: Vec<u64> = match dec.find_tag(Tag::SubIfd).map_err(err)? {
        Some(v) => v
            .into_u64_vec()
            .map_err(err)?
            .into_iter()
            .filter(|&p| p != 0)
            .collect(),
        None => Vec::new(),
    };
    let tiled = matches!(first.chunking, Chunking::Tiles { .. });
    let mut levels = vec![first];
    let mut pages = 1;
    if !subifds.is_empty() {
        for (i, ifd) in subifds.into_iter().enumerate() {
            let mut sub = decoder_at(path, header, ifd, false)?;
            levels.push(describe(&mut sub, ifd, format!("subifd {i}"), file_len).map_err(err)?);
        }
    }
    let from_pages = levels.len() == 1;
    while dec.more_images() && pages < MAX_PAGES_SCANNED {
        dec.next_image().map_err(err)?;
        let ifd = dec.ifd_pointer().map(|p| p.0).unwrap_or(0);
        let page = describe(&mut dec, ifd, format!("page {pages}"), file_len).map_err(err)?;
        pages += 1;
        if !from_pages {
            continue;
        }
        let reduced = tag_u64(&mut dec, Tag::NewSubfileType)
            .map_err(err)?
            .unwrap_or(0)
            & 1
            == 1;
        let last = levels.last().expect("level 0");
        let same_layout = page.samples == last.samples && page.sample_type == last.sample_type;
        let smaller = page.width < last.width && page.height <= last.height;
        let tiled_alike = tiled && matches!(page.chunking, Chunking::Tiles { .. });
        if same_layout && smaller && (reduced || tiled_alike) {
            levels.push(page);
        }
    }
    for (i, level) in levels.iter_mut().enumerate() {
        level.index = i;
    }
    Ok(TiffInfo {
        path: path.to_path_buf(),
        bigtiff: header.big,
        pages,
        levels,
        geo,
        pixel_size,
        resolution,
    })
}

/// Reads one level of a TIFF file top to bottom, a band of rows at a time,
/// decoding only the row of chunks the rows lie in.
#[derive(Debug)]
pub struct TiffRows {
    path: PathBuf,
    decoder: TiffDecoder,
    level: Level,
    sample_type: SampleType,
    next_row: usize,
    /// The nodata value as read, from GDAL_NODATA.
    nodata: Option<f32>,
    /// Integer samples as they are (mask labels), not scaled.
    raw: bool,
    /// Where a JPEG level's chunks are, decoded here rather than by the
    /// `tiff` crate (see [`JpegChunks`]).
    jpeg: Option<JpegChunks>,
    /// The decoded row of chunks: first row, rows, `[C, rows, W]` values.
    cache: Option<(usize, usize, Samples)>,
}

impl TiffRows {
    /// Opens level `level` of `path` (0: full resolution).
    pub fn open(path: &Path, level: usize) -> Result<TiffRows> {
        let info = inspect(path)?;
        Self::open_level(&info, level)
    }

    /// Opens a level of an inspected file.
    pub fn open_level(info: &TiffInfo, level: usize) -> Result<TiffRows> {
        let level = info.level(level)?.clone();
        if level.palette {
            return Err(data_error(
                &info.path,
                "its pixels index a colour palette (a label mask, not an image); convert it to RGB",
            ));
        }
        Self::open_unchecked(info, level, false)
    }

    fn open_unchecked(info: &TiffInfo, level: Level, raw: bool) -> Result<TiffRows> {
        let mut file = File::open(&info.path).map_err(|error| Error::Io {
            path: info.path.clone(),
            error,
        })?;
        let header = Header::read(&info.path, &mut file)?;
        let mut decoder = decoder_at(&info.path, header, level.ifd, raw && level.palette)?;
        let jpeg = (level.compression_code == 7)
            .then(|| JpegChunks::read(&mut decoder, &level))
            .transpose()
            .map_err(|e| tiff_error(&info.path, e))?;
        let sample_type = level.sample_type.expect("checked by TiffInfo::level");
        let nodata = info
            .geo
            .nodata_value()
            .filter(|v| !v.is_nan())
            .map(|v| sample_type.scale(v));
        Ok(TiffRows {
            path: info.path.clone(),
            decoder,
            level,
            sample_type,
            next_row: 0,
            nodata,
            raw,
            jpeg,
            cache: None,
        })
    }

    /// The level read.
    pub fn level(&self) -> &Level {
        &self.level
    }

    /// How stored samples become values.
    pub fn sample_type(&self) -> SampleType {
        self.sample_type
    }

    /// The file's nodata value (GDAL_NODATA) as read, when it has one.
    pub fn nodata(&self) -> Option<f32> {
        self.nodata
    }

    /// The next `rows` rows (fewer at the bottom), `[C, rows, W]`.
    pub fn read_rows(&mut self, rows: usize) -> Result<Vec<f32>> {
        let (c, h, w) = (self.level.channels, self.level.height, self.level.width);
        let rows = rows.min(h - self.next_row);
        let n = c.saturating_mul(rows).saturating_mul(w);
        let mut out = zeroed(&self.path, n, "reading these rows")?;
        let end = self.next_row + rows;
        while self.next_row < end {
            let y = self.next_row;
            let (y0, n, values) = match &self.cache {
                Some((y0, n, _)) if (*y0..*y0 + *n).contains(&y) => self.cache.as_ref().unwrap(),
                _ => {
                    let chunk = self.decode_chunk_row(y)?;
                    self.cache = Some(chunk);
                    self.cache.as_ref().unwrap()
                }
            };
            let take = (y0 + n).min(end) - y;
            let (s8, s16) = if self.raw {
                (1.0, 1.0)
            } else {
                (255.0, 65535.0)
            };
            for ch in 0..c {
                let from = ch * n * w + (y - y0) * w..ch * n * w + (y - y0 + take) * w;
                let dst = &mut out[ch * rows * w + (y + rows - end) * w..][..take * w];
                match values {
                    Samples::U8(v) => convert(&v[from], dst, |s| s as f32 / s8),
                    Samples::U16(v) => convert(&v[from], dst, |s| s as f32 / s16),
                    Samples::F32(v) => dst.copy_from_slice(&v[from]),
                }
            }
            self.next_row += take;
        }
        Ok(out)
    }

    /// Decodes the row of chunks holding image row `y`.
    fn decode_chunk_row(&mut self, y: usize) -> Result<(usize, usize, Samples)> {
        let (h, w) = (self.level.height, self.level.width);
        let (cw, ch) = match self.level.chunking {
            Chunking::Tiles { width, height } => (width, height),
            Chunking::Strips { rows } => (w, rows),
        };
        let row = y / ch;
        let (y0, rows) = (row * ch, ch.min(h - row * ch));
        let across = w.div_ceil(cw);
        let per_plane = across * h.div_ceil(ch);
        let c = self.level.channels;
        let n = c.saturating_mul(rows).saturating_mul(w);
        if n.saturating_mul(4) > MAX_CHUNK_ROW_BYTES {
            return Err(data_error(
                &self.path,
                format!(
                    "one row of its {} is {rows} rows × {w} pixels × {c} channels, more than wsunet decodes at once; re-save it with smaller tiles (e.g. gdal_translate -co TILED=YES)",
                    if matches!(self.level.chunking, Chunking::Tiles { .. }) {
                        "tiles"
                    } else {
                        "strips"
                    }
                ),
            ));
        }
        let mut values = match self.sample_type {
            SampleType::U8 => Samples::U8(zeroed(&self.path, n, "a row of tiles")?),
            SampleType::U16 => Samples::U16(zeroed(&self.path, n, "a row of tiles")?),
            SampleType::F32 | SampleType::F64 => {
                Samples::F32(zeroed(&self.path, n, "a row of tiles")?)
            }
        };
        let planes = if self.level.planar {
            self.level.samples
        } else {
            1
        };
        let in_chunk = self.level.samples / planes;
        // Stored sample → channel read (alpha: none).
        let channel_of = |sample: usize| match self.level.alpha {
            Some(a) if sample == a => None,
            Some(a) if sample > a => Some(sample - 1),
            _ => Some(sample),
        };
        for plane in 0..planes {
            for col in 0..across {
                let index = plane * per_plane + row * across + col;
                let x0 = col * cw;
                let cols = cw.min(w - x0);
                let (chunk, stride) = match &self.jpeg {
                    Some(jpeg) => {
                        let (pixels, width) =
                            jpeg.decode(&mut self.decoder, index, in_chunk, &self.path)?;
                        (DecodingResult::U8(pixels), width)
                    }
                    None => (
                        self.decoder
                            .read_chunk(index as u32)
                            .map_err(|e| tiff_error(&self.path, e))?,
                        cols,
                    ),
                };
                let map: Vec<Option<usize>> =
                    (0..in_chunk).map(|s| channel_of(plane + s)).collect();
                let put = Scatter {
                    map: &map,
                    cols,
                    stride,
                    rows,
                    width: w,
                    x0,
                };
                let ok = match (&chunk, &mut values) {
                    (DecodingResult::U8(v), Samples::U8(out)) => put.run(v, out, |s| s),
                    (DecodingResult::U16(v), Samples::U16(out)) => put.run(v, out, |s| s),
                    (DecodingResult::F32(v), Samples::F32(out)) => put.run(v, out, |s| s),
                    (DecodingResult::F64(v), Samples::F32(out)) => put.run(v, out, |s| s as f32),
                    _ => false,
                };
                if !ok {
                    return Err(data_error(
                        &self.path,
                        format!(
                            "chunk {index} decodes to fewer values than its {cols}×{rows} pixels need, or to another sample type than the file declares"
                        ),
                    ));
                }
            }
        }
        Ok((y0, rows, values))
    }
}

/// A JPEG level's chunks, read and decoded here: the `tiff` crate leaves
/// JPEG output in the stream's own colour space, which for the usual
/// subsampled YCbCr tiles of slide scanners is YCbCr, not RGB; `zune-jpeg`
/// (the decoder the crate uses) converts to RGB itself when asked.
#[derive(Debug)]
struct JpegChunks {
    offsets: Vec<u64>,
    counts: Vec<u64>,
    /// The JPEGTables tag: quantization and Huffman tables shared by every
    /// chunk.
    tables: Option<Vec<u8>>,
}

impl JpegChunks {
    fn read(dec: &mut TiffDecoder, level: &Level) -> Result<JpegChunks, tiff::TiffError> {
        let (offsets, counts) = match level.chunking {
            Chunking::Tiles { .. } => (Tag::TileOffsets, Tag::TileByteCounts),
            Chunking::Strips { .. } => (Tag::StripOffsets, Tag::StripByteCounts),
        };
        Ok(JpegChunks {
            offsets: dec.get_tag_u64_vec(offsets)?,
            counts: dec.get_tag_u64_vec(counts)?,
            tables: dec
                .find_tag(Tag::JPEGTables)?
                .map(|v| v.into_u8_vec())
                .transpose()?,
        })
    }

    /// Chunk `index` as interleaved 8-bit samples (`samples` a pixel: RGB
    /// or gray), with its decoded width.
    fn decode(
        &self,
        dec: &mut TiffDecoder,
        index: usize,
        samples: usize,
        path: &Path,
    ) -> Result<(Vec<u8>, usize)> {
        use zune_jpeg::zune_core::{
            bytestream::ZCursor, colorspace::ColorSpace, options::DecoderOptions,
        };
        let (Some(&offset), Some(&count)) = (self.offsets.get(index), self.counts.get(index))
        else {
            return Err(data_error(
                path,
                format!("chunk {index} has no offset or byte count"),
            ));
        };
        if count > 256 << 20 {
            return Err(data_error(
                path,
                format!("JPEG chunk {index} claims {count} bytes"),
            ));
        }
        let mut raw = vec![0u8; count as usize];
        let reader = dec.inner();
        reader
            .seek(SeekFrom::Start(offset))
            .and_then(|_| reader.read_exact(&mut raw))
            .map_err(|e| tiff_error(path, tiff::TiffError::IoError(e)))?;
        // Shared tables go first, less their end-of-image marker and the
        // chunk's start-of-image marker (as libtiff joins them).
        let data = match &self.tables {
            Some(tables) if tables.len() >= 4 && raw.len() >= 2 => {
                let mut joined = tables[..tables.len() - 2].to_vec();
                joined.extend_from_slice(&raw[2..]);
                joined
            }
            _ => raw,
        };
        let out = match samples {
            1 => ColorSpace::Luma,
            3 => ColorSpace::RGB,
            n => {
                return Err(data_error(
                    path,
                    format!(
                        "its JPEG tiles have {n} samples a pixel; wsunet reads gray and RGB JPEG"
                    ),
                ));
            }
        };
        let options = DecoderOptions::default().jpeg_set_out_colorspace(out);
        let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(data), options);
        let pixels = decoder
            .decode()
            .map_err(|e| data_error(path, format!("cannot decode JPEG chunk {index}: {e:?}")))?;
        let width = decoder.info().map_or(0, |i| i.width as usize);
        Ok((pixels, width))
    }
}

/// A decoded row of chunks, `[C, rows, W]`, in its stored type (a quarter
/// of the memory of `f32` for 8-bit images); values become `f32` as rows
/// are handed out.
#[derive(Debug)]
enum Samples {
    U8(Vec<u8>),
    U16(Vec<u16>),
    F32(Vec<f32>),
}

fn convert<T: Copy>(src: &[T], dst: &mut [f32], value: impl Fn(T) -> f32) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = value(s);
    }
}

/// Where a decoded chunk's values go in a `[C, rows, W]` band.
struct Scatter<'a> {
    /// Sample in the chunk → channel (None: dropped).
    map: &'a [Option<usize>],
    cols: usize,
    /// Pixels from one row of the chunk to the next (≥ `cols`).
    stride: usize,
    rows: usize,
    width: usize,
    x0: usize,
}

impl Scatter<'_> {
    /// Copies `src` (row-major, `map.len()` samples a pixel, `stride`
    /// pixels a row of which the first `cols` are image; rows past `rows`
    /// are padding) into `dst`; false when `src` is too short.
    fn run<T: Copy, U>(&self, src: &[T], dst: &mut [U], value: impl Fn(T) -> U) -> bool {
        let spp = self.map.len();
        if self.stride < self.cols
            || self.rows > 0 && src.len() < ((self.rows - 1) * self.stride + self.cols) * spp
        {
            return false;
        }
        let plane = self.rows * self.width;
        for row in 0..self.rows {
            let line = &src[row * self.stride * spp..][..self.cols * spp];
            for (s, channel) in self.map.iter().enumerate() {
                let Some(c) = channel else { continue };
                let out = &mut dst[c * plane + row * self.width + self.x0..][..self.cols];
                for (o, px) in out.iter_mut().zip(line.chunks_exact(spp)) {
                    *o = value(px[s]);
                }
            }
        }
        true
    }
}

/// Reads a whole level of a TIFF file (for training data and small
/// files): `(channels, height, width, [C, H, W] values)`. Non-finite values
/// are an error, as in `.npy` arrays.
pub fn read_tiff_image(path: &Path, level: usize) -> Result<(usize, usize, usize, Vec<f32>)> {
    let mut rows = TiffRows::open(path, level)?;
    let (c, h, w) = (rows.level.channels, rows.level.height, rows.level.width);
    let data = rows.read_rows(h)?;
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        let n = h * w;
        return Err(data_error(
            path,
            format!(
                "channel {} holds a non-finite value ({}) at row {}, column {}; fill nodata before training",
                i / n,
                data[i],
                (i % n) / w,
                i % w
            ),
        ));
    }
    Ok((c, h, w, data))
}

/// Reads a label mask TIFF (level 0): one 8-, 16- or 32-bit integer sample
/// a pixel, grayscale or palette, as its integer values. Returns `(height,
/// width, labels)`; see [`read_tiff_labels`] for 32-bit masks.
pub fn read_tiff_mask(path: &Path) -> Result<(usize, usize, Vec<u16>)> {
    let l = read_tiff_labels(path)?;
    Ok((l.height, l.width, l.labels))
}

/// A label mask read from a TIFF.
#[derive(Debug, Clone, PartialEq)]
pub struct TiffLabels {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// The values, row-major.
    pub labels: Vec<u16>,
    /// The stored sample's bits (8, 16 or 32).
    pub bits: u16,
    /// Whether 32-bit ids past 65,535 were renumbered 1.. in raster order
    /// of their first pixel (0 stays background): object ids only need to
    /// differ, and no mask holds more than 65,535 objects.
    pub renumbered: bool,
}

/// [`read_tiff_mask`] with what was read: 32-bit masks (object ids, as
/// StarDist, cellpose and QuPath write them, signed or not) keep their
/// values when all fit 16 bits and are renumbered otherwise; a negative id
/// or more than 65,535 objects is an error naming the fix.
pub fn read_tiff_labels(path: &Path) -> Result<TiffLabels> {
    let info = inspect(path)?;
    let level = info
        .levels
        .first()
        .ok_or_else(|| data_error(path, "the file has no image"))?
        .clone();
    if level.ids32 {
        return read_ids32(path, &level);
    }
    let level = info.level(0)?.clone();
    if level.samples != 1
        || !matches!(
            level.sample_type,
            Some(SampleType::U8) | Some(SampleType::U16)
        )
    {
        return Err(data_error(
            path,
            "a mask TIFF must have one 8-, 16- or 32-bit integer sample a pixel (class indices or object ids)",
        ));
    }
    let bits = if level.sample_type == Some(SampleType::U8) {
        8
    } else {
        16
    };
    let (h, w) = (level.height, level.width);
    let mut rows = TiffRows::open_unchecked(&info, level, true)?;
    let values = rows.read_rows(h)?;
    Ok(TiffLabels {
        height: h,
        width: w,
        labels: values.into_iter().map(|v| v as u16).collect(),
        bits,
        renumbered: false,
    })
}

/// A 32-bit mask: decoded whole by the `tiff` crate (masks are training
/// images; its chunk limits apply), then fitted to 16 bits.
fn read_ids32(path: &Path, level: &Level) -> Result<TiffLabels> {
    let mut file = File::open(path).map_err(|error| Error::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let header = Header::read(path, &mut file)?;
    let mut dec = decoder_at(path, header, level.ifd, false)?;
    let ids: Vec<i64> = match dec.read_image().map_err(|e| tiff_error(path, e))? {
        DecodingResult::U32(v) => v.into_iter().map(i64::from).collect(),
        DecodingResult::I32(v) => v.into_iter().map(i64::from).collect(),
        _ => {
            return Err(data_error(
                path,
                "its 32-bit samples did not decode as integers",
            ));
        }
    };
    if let Some(p) = ids.iter().position(|&v| v < 0) {
        return Err(data_error(
            path,
            format!(
                "pixel ({}, {}) holds the negative id {}; object ids are 0 (background) or positive",
                p % level.width,
                p / level.width,
                ids[p]
            ),
        ));
    }
    let renumbered = ids.iter().any(|&v| v > i64::from(u16::MAX));
    let labels = if renumbered {
        let mut map = std::collections::HashMap::new();
        let mut out = Vec::with_capacity(ids.len());
        for v in ids {
            if v == 0 {
                out.push(0);
                continue;
            }
            let next = map.len() + 1;
            let id = *map.entry(v).or_insert(next);
            if id > usize::from(u16::MAX) {
                return Err(data_error(
                    path,
                    "it holds more than 65,535 objects; cut it into smaller images (with their masks) for training",
                ));
            }
            out.push(id as u16);
        }
        out
    } else {
        ids.into_iter().map(|v| v as u16).collect()
    };
    Ok(TiffLabels {
        height: level.height,
        width: level.width,
        labels,
        bits: 32,
        renumbered,
    })
}
