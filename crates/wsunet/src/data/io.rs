//! Decoding images and masks into plain buffers, and writing them back.
//!
//! Images become `f32` channel-major buffers: 8-bit values / 255, 16-bit /
//! 65535, float TIFFs and `.npy` float32 arrays `[C, H, W]` as they are; alpha
//! is dropped. TIFFs (any channel count, tiled or stripped, BigTIFF) are read
//! through [`crate::raster`], the reader that streams large ones. Masks become `u16` class indices: grayscale values as they
//! are, palette PNGs by palette index (never their colours), RGB masks through
//! the class list's colours.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

use image::{DynamicImage, ImageReader};

use super::classes::ClassList;
use crate::error::{Error, Result};

/// Extensions read as images.
pub const IMAGE_EXTENSIONS: [&str; 7] = ["png", "jpg", "jpeg", "bmp", "tif", "tiff", "npy"];

/// A decoded image, channel-major (`[C, H, W]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// Channels.
    pub channels: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// `channels · height · width` values.
    pub data: Vec<f32>,
}

impl Image {
    /// A `[C, H, W]` image from its values.
    ///
    /// # Panics
    ///
    /// If the length does not match (programmer misuse).
    pub fn new(channels: usize, height: usize, width: usize, data: Vec<f32>) -> Self {
        assert_eq!(data.len(), channels * height * width, "image buffer length");
        Image {
            channels,
            height,
            width,
            data,
        }
    }

    /// The values of channel `c`.
    pub fn channel(&self, c: usize) -> &[f32] {
        let n = self.height * self.width;
        &self.data[c * n..(c + 1) * n]
    }
}

/// A decoded mask of class indices (`[H, W]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// `height · width` class indices.
    pub data: Vec<u16>,
}

impl Mask {
    /// A mask from its values.
    ///
    /// # Panics
    ///
    /// If the length does not match (programmer misuse).
    pub fn new(height: usize, width: usize, data: Vec<u16>) -> Self {
        assert_eq!(data.len(), height * width, "mask buffer length");
        Mask {
            height,
            width,
            data,
        }
    }
}

/// How a mask file stored its classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskKind {
    /// 1-, 2-, 4- or 8-bit grayscale values.
    Gray8,
    /// 16-bit grayscale values.
    Gray16,
    /// Palette (indexed) PNG, read by index.
    Palette,
    /// RGB colours mapped through the class list.
    Rgb,
    /// 32-bit TIFF object ids (instance masks), renumbered 1.. in raster
    /// order when some are past 65,535.
    Ids32,
}

fn data_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::Data {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// A file's extension in lower case (`""` when it has none).
pub fn extension(path: &Path) -> String {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

/// An image file opened with its format guessed from its content.
fn image_reader(path: &Path) -> Result<ImageReader<std::io::BufReader<File>>> {
    ImageReader::open(path)
        .map_err(|e| data_error(path, format!("cannot open: {e}")))?
        .with_guessed_format()
        .map_err(|e| data_error(path, format!("cannot read: {e}")))
}

/// `(channels, height, width)` of a `.npy` array's shape: `[C, H, W]`, or
/// `[H, W]` for one channel.
fn npy_dims(path: &Path, shape: &[u64]) -> Result<(usize, usize, usize)> {
    match *shape {
        [c, h, w] => Ok((c as usize, h as usize, w as usize)),
        [h, w] => Ok((1, h as usize, w as usize)),
        _ => Err(data_error(
            path,
            format!("the array has shape {shape:?}; expected [channels, height, width]"),
        )),
    }
}

/// Reads an image file of any supported kind.
pub fn read_image(path: &Path) -> Result<Image> {
    if extension(path) == "npy" {
        return read_npy(path);
    }
    if crate::raster::is_tiff(path) {
        let (c, h, w, data) = crate::raster::read_tiff_image(path, 0)?;
        return Ok(Image::new(c, h, w, data));
    }
    let decoded = image_reader(path)?
        .decode()
        .map_err(|e| data_error(path, format!("cannot decode the image: {e}")))?;
    Ok(from_dynamic(decoded))
}

/// Height and width of an image file, from its header (nothing decoded).
pub fn image_size(path: &Path) -> Result<[usize; 2]> {
    if extension(path) == "npy" {
        let file =
            std::fs::File::open(path).map_err(|e| data_error(path, format!("cannot open: {e}")))?;
        let npy = npyz::NpyFile::new(std::io::BufReader::new(file))
            .map_err(|e| data_error(path, format!("not a valid .npy file: {e}")))?;
        let (_, h, w) = npy_dims(path, npy.shape())?;
        return Ok([h, w]);
    }
    if crate::raster::is_tiff(path) {
        let info = crate::raster::inspect(path)?;
        let level = info.level(0)?;
        return Ok([level.height, level.width]);
    }
    let (w, h) = image_reader(path)?
        .into_dimensions()
        .map_err(|e| data_error(path, format!("cannot read the image size: {e}")))?;
    Ok([h as usize, w as usize])
}

/// The channel count [`read_image`] gives an image file (alpha dropped),
/// from its header (nothing decoded).
pub fn image_channels(path: &Path) -> Result<usize> {
    if extension(path) == "npy" {
        let file =
            std::fs::File::open(path).map_err(|e| data_error(path, format!("cannot open: {e}")))?;
        let npy = npyz::NpyFile::new(std::io::BufReader::new(file))
            .map_err(|e| data_error(path, format!("not a valid .npy file: {e}")))?;
        return Ok(npy_dims(path, npy.shape())?.0);
    }
    if crate::raster::is_tiff(path) {
        return Ok(crate::raster::inspect(path)?.level(0)?.channels);
    }
    use image::ImageDecoder;
    let decoder = image_reader(path)?
        .into_decoder()
        .map_err(|e| data_error(path, format!("cannot read the image header: {e}")))?;
    Ok(match decoder.color_type() {
        image::ColorType::L8 | image::ColorType::La8 => 1,
        image::ColorType::L16 | image::ColorType::La16 => 1,
        // Everything else is read as RGB (see `from_dynamic`).
        _ => 3,
    })
}

/// The input channel count of a model trained on images with `counts`
/// channels (in file order): the most common count, and on a tie the one
/// that comes first. Training and `data check` both use this rule; an image
/// with another count is a bad sample. `None` for no images.
pub fn input_channels(counts: &[usize]) -> Option<usize> {
    let mut tally: Vec<(usize, usize)> = Vec::new();
    for &c in counts {
        match tally.iter_mut().find(|(count, _)| *count == c) {
            Some((_, n)) => *n += 1,
            None => tally.push((c, 1)),
        }
    }
    // `max_by_key` keeps the last of equal maxima: scan from the back so
    // the first-seen count wins a tie.
    tally.iter().rev().max_by_key(|(_, n)| *n).map(|(c, _)| *c)
}

/// Channel-major `f32` from any decoded image, dropping alpha.
fn from_dynamic(img: DynamicImage) -> Image {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let planar = |channels: usize, stride: usize, values: &mut dyn Iterator<Item = f32>| {
        let mut data = vec![0f32; channels * h * w];
        for (i, v) in values.enumerate() {
            let (pixel, c) = (i / stride, i % stride);
            if c < channels {
                data[c * h * w + pixel] = v;
            }
        }
        Image::new(channels, h, w, data)
    };
    let u8s = |b: &[u8]| b.iter().map(|&v| v as f32 / 255.0).collect::<Vec<_>>();
    let u16s = |b: &[u16]| b.iter().map(|&v| v as f32 / 65535.0).collect::<Vec<_>>();
    match img {
        DynamicImage::ImageLuma8(b) => planar(1, 1, &mut u8s(&b).into_iter()),
        DynamicImage::ImageLumaA8(b) => planar(1, 2, &mut u8s(&b).into_iter()),
        DynamicImage::ImageRgb8(b) => planar(3, 3, &mut u8s(&b).into_iter()),
        DynamicImage::ImageRgba8(b) => planar(3, 4, &mut u8s(&b).into_iter()),
        DynamicImage::ImageLuma16(b) => planar(1, 1, &mut u16s(&b).into_iter()),
        DynamicImage::ImageLumaA16(b) => planar(1, 2, &mut u16s(&b).into_iter()),
        DynamicImage::ImageRgb16(b) => planar(3, 3, &mut u16s(&b).into_iter()),
        DynamicImage::ImageRgba16(b) => planar(3, 4, &mut u16s(&b).into_iter()),
        DynamicImage::ImageRgb32F(b) => planar(3, 3, &mut b.into_raw().into_iter()),
        DynamicImage::ImageRgba32F(b) => planar(3, 4, &mut b.into_raw().into_iter()),
        other => {
            let b = other.to_rgb32f();
            planar(3, 3, &mut b.into_raw().into_iter())
        }
    }
}

/// Reads a `.npy` float32 array `[C, H, W]` (or `[H, W]`, one channel).
fn read_npy(path: &Path) -> Result<Image> {
    let bytes = std::fs::read(path).map_err(|e| data_error(path, format!("cannot read: {e}")))?;
    let npy = npyz::NpyFile::new(&bytes[..])
        .map_err(|e| data_error(path, format!("not a valid .npy file: {e}")))?;
    if npy.order() != npyz::Order::C {
        return Err(data_error(
            path,
            "the array is in Fortran order; save it with numpy.ascontiguousarray",
        ));
    }
    let (c, h, w) = npy_dims(path, npy.shape())?;
    let dtype = npy.dtype();
    let data: Vec<f32> = match npy.into_vec::<f32>() {
        Ok(v) => v,
        Err(_) => {
            return Err(data_error(
                path,
                format!(
                    "the array's dtype is {}; expected float32 (numpy: a.astype(np.float32))",
                    dtype.descr()
                ),
            ));
        }
    };
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        return Err(data_error(
            path,
            format!(
                "the array holds a non-finite value ({}) at flat index {i}",
                data[i]
            ),
        ));
    }
    Ok(Image::new(c, h, w, data))
}

/// Reads a mask. PNGs are read with the `png` crate so that palette images
/// give their indices; TIFFs (8- or 16-bit gray or palette, e.g. the masks
/// `wsunet predict` writes, or 32-bit object ids) give their integer values; other formats go
/// through `image` (grayscale only). RGB masks need a class list with
/// colours.
pub fn read_mask(path: &Path, classes: Option<&ClassList>) -> Result<(Mask, MaskKind)> {
    if crate::raster::is_tiff(path) {
        let l = crate::raster::read_tiff_labels(path)?;
        let kind = if l.bits == 32 {
            MaskKind::Ids32
        } else if l.labels.iter().any(|&v| v > 255) {
            MaskKind::Gray16
        } else {
            MaskKind::Gray8
        };
        return Ok((Mask::new(l.height, l.width, l.labels), kind));
    }
    if extension(path) != "png" {
        let img = read_image(path)?;
        if img.channels != 1 {
            return Err(data_error(path, "colour masks must be PNG files"));
        }
        let data = img
            .data
            .iter()
            .map(|v| (v * 255.0).round() as u16)
            .collect();
        return Ok((Mask::new(img.height, img.width, data), MaskKind::Gray8));
    }
    read_png_mask(path, classes)
}

/// A PNG mask's values as they are stored (no gamma, no palette
/// expansion): gray or palette indices, or RGB colours mapped to classes.
fn read_png_mask(path: &Path, classes: Option<&ClassList>) -> Result<(Mask, MaskKind)> {
    let file = File::open(path).map_err(|e| data_error(path, format!("cannot open: {e}")))?;
    let mut decoder = png::Decoder::new(BufReader::new(file));
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder
        .read_info()
        .map_err(|e| data_error(path, format!("cannot decode the mask: {e}")))?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| data_error(path, "the mask is too large to decode"))?;
    let mut buf = vec![0u8; size];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| data_error(path, format!("cannot decode the mask: {e}")))?;
    let (h, w) = (info.height as usize, info.width as usize);
    let bits = info.bit_depth as usize;
    let rows = buf.chunks(info.line_size).take(h);
    use png::ColorType::*;
    let samples = match info.color_type {
        GrayscaleAlpha => 2,
        Rgb => 3,
        Rgba => 4,
        _ => 1,
    };
    match info.color_type {
        Grayscale | Indexed | GrayscaleAlpha if bits <= 8 => {
            let mut data = Vec::with_capacity(h * w);
            for row in rows {
                data.extend((0..w).map(|x| unpack(row, x * samples, bits)));
            }
            let kind = if info.color_type == Indexed {
                MaskKind::Palette
            } else {
                MaskKind::Gray8
            };
            Ok((Mask::new(h, w, data), kind))
        }
        Grayscale | GrayscaleAlpha => {
            let mut data = Vec::with_capacity(h * w);
            for row in rows {
                data.extend((0..w).map(|x| {
                    let i = 2 * x * samples;
                    u16::from_be_bytes([row[i], row[i + 1]])
                }));
            }
            Ok((Mask::new(h, w, data), MaskKind::Gray16))
        }
        Rgb | Rgba if bits == 8 => {
            let data = colour_classes(path, classes, rows, w, samples)?;
            Ok((Mask::new(h, w, data), MaskKind::Rgb))
        }
        other => Err(data_error(
            path,
            format!(
                "{other:?} masks with {bits}-bit samples are not supported; use 8/16-bit grayscale, palette or 8-bit RGB PNGs"
            ),
        )),
    }
}

/// The class index of every pixel of an 8-bit RGB(A) mask's `rows`, by the
/// colours of `classes`; an error listing the colours that no class has.
fn colour_classes<'a>(
    path: &Path,
    classes: Option<&ClassList>,
    rows: impl Iterator<Item = &'a [u8]>,
    w: usize,
    samples: usize,
) -> Result<Vec<u16>> {
    let classes = classes.filter(|c| c.has_colors()).ok_or_else(|| {
        data_error(
            path,
            "is an RGB colour mask, but the dataset has no classes.json with a colour per class; add one (e.g. [{\"name\": \"background\", \"color\": [0, 0, 0]}, …])",
        )
    })?;
    let mut data = Vec::new();
    let mut unknown: Vec<([u8; 3], usize)> = Vec::new();
    for row in rows {
        for px in row[..w * samples].chunks(samples) {
            let rgb = [px[0], px[1], px[2]];
            match classes.index_of_color(rgb) {
                Some(i) => data.push(i as u16),
                None => {
                    match unknown.iter_mut().find(|(c, _)| *c == rgb) {
                        Some((_, n)) => *n += 1,
                        None => unknown.push((rgb, 1)),
                    }
                    data.push(0);
                }
            }
        }
    }
    if unknown.is_empty() {
        return Ok(data);
    }
    unknown.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
    let listed: Vec<String> = unknown
        .iter()
        .take(8)
        .map(|(c, n)| format!("{c:?} ({n} px)"))
        .collect();
    Err(data_error(
        path,
        format!(
            "has {} colour(s) not in classes.json: {}{}; add them to classes.json (antialiased edges need an annotation export without smoothing)",
            unknown.len(),
            listed.join(", "),
            if unknown.len() > 8 { ", …" } else { "" }
        ),
    ))
}

/// The `index`-th sample of a packed row of `bits`-bit samples (bits ≤ 8).
fn unpack(row: &[u8], index: usize, bits: usize) -> u16 {
    if bits == 8 {
        return row[index] as u16;
    }
    let per_byte = 8 / bits;
    let byte = row[index / per_byte];
    let shift = 8 - bits * (index % per_byte + 1);
    ((byte >> shift) & ((1u8 << bits) - 1)) as u16
}

/// The error for a mask whose size differs from its image's, or `None`.
pub fn size_mismatch(
    mask_path: &Path,
    mask: &Mask,
    image_path: &Path,
    image: &Image,
) -> Option<Error> {
    ((mask.height, mask.width) != (image.height, image.width)).then(|| {
        data_error(
            mask_path,
            format!(
                "the mask is {}×{} but its image {} is {}×{}; masks must have their image's size",
                mask.height,
                mask.width,
                image_path.display(),
                image.height,
                image.width
            ),
        )
    })
}

/// Pixel count of every value in a mask.
pub fn value_counts(mask: &Mask) -> BTreeMap<u16, u64> {
    let mut counts = BTreeMap::new();
    for &v in &mask.data {
        *counts.entry(v).or_insert(0) += 1;
    }
    counts
}

/// Whether every value is a class (`< num_classes`) or `ignore` — the fast
/// path before [`mask_values_problem`].
pub fn mask_values_ok(mask: &Mask, num_classes: usize, ignore: Option<u16>) -> bool {
    mask.data
        .iter()
        .all(|&v| (v as usize) < num_classes || Some(v) == ignore)
}

/// A readable description of the values in `counts` that are neither a class
/// nor `ignore`, with the likely fix; `None` when there are none.
pub fn mask_values_problem(
    counts: &BTreeMap<u16, u64>,
    num_classes: usize,
    ignore: Option<u16>,
) -> Option<String> {
    let bad: Vec<(u16, u64)> = counts
        .iter()
        .filter(|(v, _)| **v as usize >= num_classes && Some(**v) != ignore)
        .map(|(v, n)| (*v, *n))
        .collect();
    if bad.is_empty() {
        return None;
    }
    let listed: Vec<String> = bad
        .iter()
        .take(10)
        .map(|(v, n)| format!("{v} ({n} px)"))
        .collect();
    let mut msg = format!(
        "has mask values {}{} but only classes 0..={} exist{}",
        listed.join(", "),
        if bad.len() > 10 { ", …" } else { "" },
        num_classes - 1,
        match ignore {
            Some(i) => format!(" and {i} is ignored"),
            None => String::new(),
        }
    );
    let has_255 = bad.iter().any(|(v, _)| *v == 255);
    if has_255 && counts.keys().all(|&v| v == 0 || v == 255) {
        msg.push_str("; this looks like a 0/255 binary mask: save it as 0/1 (e.g. mask // 255)");
    } else if has_255 && ignore != Some(255) {
        msg.push_str("; if 255 marks pixels to ignore, set the ignore index to 255");
    } else {
        let needed = bad
            .last()
            .map(|(v, _)| *v as usize + 1)
            .unwrap_or(num_classes);
        msg.push_str(&format!(
            "; if those are real classes, set num_classes to {needed}; else fix the masks"
        ));
    }
    Some(msg)
}

/// Writes an 8-bit RGB or grayscale PNG from `[0, 1]` values (clamped).
pub fn write_png(path: &Path, image: &Image) -> Result<()> {
    let n = image.height * image.width;
    let bytes: Vec<u8> = (0..n)
        .flat_map(|p| (0..image.channels).map(move |c| (c, p)))
        .map(|(c, p)| (image.data[c * n + p].clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect();
    let color = match image.channels {
        1 => png::ColorType::Grayscale,
        3 => png::ColorType::Rgb,
        c => {
            return Err(data_error(
                path,
                format!("cannot write a {c}-channel image as PNG"),
            ));
        }
    };
    write_png_bytes(
        path,
        image.width,
        image.height,
        color,
        png::BitDepth::Eight,
        None,
        &bytes,
    )
}

/// Writes interleaved 8-bit RGB pixels as a PNG.
pub fn write_rgb8_png(path: &Path, width: usize, height: usize, rgb: &[u8]) -> Result<()> {
    write_png_bytes(
        path,
        width,
        height,
        png::ColorType::Rgb,
        png::BitDepth::Eight,
        None,
        rgb,
    )
}

/// Writes a mask as a palette PNG coloured with the class list (8-bit
/// indices), or as 16-bit grayscale when an index exceeds 255.
pub fn write_mask_png(path: &Path, mask: &Mask, classes: &ClassList) -> Result<()> {
    let max = mask.data.iter().copied().max().unwrap_or(0);
    if max > 255 {
        let bytes: Vec<u8> = mask.data.iter().flat_map(|v| v.to_be_bytes()).collect();
        return write_png_bytes(
            path,
            mask.width,
            mask.height,
            png::ColorType::Grayscale,
            png::BitDepth::Sixteen,
            None,
            &bytes,
        );
    }
    let palette: Vec<u8> = (0..=max as usize).flat_map(|i| classes.color(i)).collect();
    let bytes: Vec<u8> = mask.data.iter().map(|&v| v as u8).collect();
    write_png_bytes(
        path,
        mask.width,
        mask.height,
        png::ColorType::Indexed,
        png::BitDepth::Eight,
        Some(palette),
        &bytes,
    )
}

/// Writes labels (instance ids) as a grayscale PNG, 8-bit when every value
/// fits, else 16-bit, atomically: what instance training reads as masks.
pub fn write_label_png(path: &Path, labels: &Mask) -> Result<()> {
    let (bytes, depth): (Vec<u8>, _) = if labels.data.iter().all(|&v| v <= 255) {
        let bytes = labels.data.iter().map(|&v| v as u8).collect();
        (bytes, png::BitDepth::Eight)
    } else {
        let bytes = labels.data.iter().flat_map(|v| v.to_be_bytes()).collect();
        (bytes, png::BitDepth::Sixteen)
    };
    write_png_bytes(
        path,
        labels.width,
        labels.height,
        png::ColorType::Grayscale,
        depth,
        None,
        &bytes,
    )
}

/// Writes `f32` values as a `.npy` array of the given shape (C order),
/// atomically.
pub fn write_npy(path: &Path, shape: &[usize], values: &[f32]) -> Result<()> {
    use npyz::WriterBuilder;
    assert_eq!(
        shape.iter().product::<usize>(),
        values.len(),
        "npy shape and length"
    );
    crate::fs::write_atomic_with(path, |tmp| {
        let write = || -> std::io::Result<()> {
            let file = BufWriter::new(File::create(tmp)?);
            let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
            let mut writer = npyz::WriteOptions::new()
                .default_dtype()
                .shape(&shape)
                .writer(file)
                .begin_nd()?;
            writer.extend(values.iter().copied())?;
            writer.finish()
        };
        write().map_err(|error| Error::Io {
            path: path.to_path_buf(),
            error,
        })
    })
}

fn write_png_bytes(
    path: &Path,
    width: usize,
    height: usize,
    color: png::ColorType,
    depth: png::BitDepth,
    palette: Option<Vec<u8>>,
    pixels: &[u8],
) -> Result<()> {
    let encode_error = |e: png::EncodingError| data_error(path, format!("cannot encode PNG: {e}"));
    crate::fs::write_atomic_with(path, |tmp| {
        let file = File::create(tmp).map_err(|error| Error::Io {
            path: path.to_path_buf(),
            error,
        })?;
        let mut encoder = png::Encoder::new(BufWriter::new(file), width as u32, height as u32);
        encoder.set_color(color);
        encoder.set_depth(depth);
        if let Some(palette) = palette {
            encoder.set_palette(palette);
        }
        let mut writer = encoder.write_header().map_err(encode_error)?;
        writer.write_image_data(pixels).map_err(encode_error)?;
        writer.finish().map_err(encode_error)
    })
}
