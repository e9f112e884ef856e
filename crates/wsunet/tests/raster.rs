//! Large rasters: TIFF reading (stripped and tiled, classic and BigTIFF,
//! pyramids), tiled pyramidal writing with georeferencing, and streamed
//! prediction equal to the in-memory one.
//!
//! Inputs are generated here: stripped TIFFs through the `tiff` crate's own
//! strip encoder, tiled ones through wsunet's writer, whose files are read
//! back by the `tiff` crate's decoder directly (not only through wsunet's
//! reader).

use std::fs::File;
use std::path::Path;

use burn::tensor::Device;
use tiff::decoder::{Decoder, DecodingResult};
use tiff::encoder::{TiffEncoder, colortype};
use tiff::tags::Tag;
use wsunet::WsResUNetConfig;
use wsunet::data::{ClassList, Image, Normalize, read_image};
use wsunet::infer::{PredictConfig, Predictor, ProbsType, TiffOutputs};
use wsunet::raster::{
    Chunking, Compression, GeoTags, Photometric, PixelSize, RasterSpec, Resample, SampleType,
    TiffRows, inspect, write_tiled,
};

/// A smooth, varied test pattern of `c` channels, `[C, H, W]` in [0, 1].
fn pattern(c: usize, h: usize, w: usize) -> Vec<f32> {
    (0..c * h * w)
        .map(|i| {
            let (ch, y, x) = (i / (h * w), (i / w) % h, i % w);
            let v = ((x as f32 * 0.071 + ch as f32).sin() * (y as f32 * 0.053).cos()
                + (x * y % 17) as f32 / 40.0)
                * 0.4
                + 0.5;
            v.clamp(0.0, 1.0)
        })
        .collect()
}

/// `[C, H, W]` values as `[H, W, C]` 8-bit samples.
fn to_u8_chunky(values: &[f32], c: usize, h: usize, w: usize) -> Vec<u8> {
    (0..h * w)
        .flat_map(|p| (0..c).map(move |ch| (ch, p)))
        .map(|(ch, p)| (values[ch * h * w + p] * 255.0).round() as u8)
        .collect()
}

/// The `[C, H, W]` values wsunet reads from 8-bit samples.
fn from_u8_chunky(bytes: &[u8], c: usize, h: usize, w: usize) -> Vec<f32> {
    let mut out = vec![0f32; c * h * w];
    for (i, &b) in bytes.iter().enumerate() {
        out[(i % c) * h * w + i / c] = b as f32 / 255.0;
    }
    out
}

/// Writes `[H, W, 3]` bytes as a stripped RGB TIFF through the `tiff`
/// crate's own strip encoder.
fn write_stripped_rgb(path: &Path, bytes: &[u8], (h, w): (usize, usize), rows_per_strip: u32) {
    let mut enc = TiffEncoder::new(File::create(path).unwrap()).unwrap();
    let mut image = enc
        .new_image::<colortype::RGB8>(w as u32, h as u32)
        .unwrap();
    image.rows_per_strip(rows_per_strip).unwrap();
    image.write_data(bytes).unwrap();
}

fn geo() -> GeoTags {
    GeoTags {
        pixel_scale: Some(vec![30.0, 30.0, 0.0]),
        tiepoints: Some(vec![0.0, 0.0, 0.0, 399_960.0, 4_500_000.0, 0.0]),
        transformation: None,
        key_directory: Some(vec![
            1, 1, 0, 4, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32_633, 3076, 0, 1, 9001,
        ]),
        double_params: None,
        ascii_params: Some("WGS 84 / UTM zone 33N|".into()),
        nodata: None,
    }
}

/// Writes `values` (`[C, H, W]` in [0, 1]) as a tiled 8-bit TIFF through
/// wsunet's writer, bands of `band` rows at a time.
fn write_u8_tiff(path: &Path, values: &[f32], (c, h, w): (usize, usize, usize), spec: &RasterSpec) {
    let bytes = to_u8_chunky(values, c, h, w);
    let band = 37;
    let bands = bytes
        .chunks(band * w * c)
        .map(|b| Ok(b.to_vec()))
        .collect::<Vec<_>>();
    write_tiled::<u8>(path, spec, bands).unwrap();
}

fn spec(c: usize, h: usize, w: usize) -> RasterSpec {
    RasterSpec {
        width: w,
        height: h,
        samples: c,
        photometric: if c == 3 {
            Photometric::Rgb
        } else {
            Photometric::Gray
        },
        compression: Compression::Deflate,
        tile: 64,
        resample: Resample::Average,
        pyramid: true,
        geo: GeoTags::default(),
        resolution: None,
        bigtiff: false,
    }
}

#[test]
fn stripped_tiffs_from_the_tiff_crate_read_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (h, w) = (53, 71);
    // RGB 8-bit, several rows per strip.
    let values = pattern(3, h, w);
    let bytes = to_u8_chunky(&values, 3, h, w);
    let path = dir.path().join("rgb.tif");
    write_stripped_rgb(&path, &bytes, (h, w), 8);
    let info = inspect(&path).unwrap();
    assert!(!info.bigtiff);
    assert_eq!(info.levels.len(), 1);
    let l = &info.levels[0];
    assert_eq!((l.width, l.height, l.channels), (w, h, 3));
    assert_eq!(l.chunking, Chunking::Strips { rows: 8 });
    assert_eq!(l.sample_type, Some(SampleType::U8));
    // Read in uneven bands, across strip borders.
    let mut rows = TiffRows::open(&path, 0).unwrap();
    let mut got = vec![Vec::new(); 3];
    for n in [5, 11, 1, 30, 100] {
        let band = rows.read_rows(n).unwrap();
        let n = band.len() / (3 * w);
        for (c, plane) in band.chunks(n * w).enumerate() {
            got[c].extend_from_slice(plane);
        }
    }
    assert_eq!(got.concat(), from_u8_chunky(&bytes, 3, h, w));
    assert_eq!(read_image(&path).unwrap().data, got.concat());

    // 16-bit gray, one strip, and 32-bit float.
    let path16 = dir.path().join("gray16.tif");
    let samples: Vec<u16> = (0..h * w).map(|i| (i * 977 % 65_536) as u16).collect();
    TiffEncoder::new(File::create(&path16).unwrap())
        .unwrap()
        .write_image::<colortype::Gray16>(w as u32, h as u32, &samples)
        .unwrap();
    let image = read_image(&path16).unwrap();
    assert_eq!(image.channels, 1);
    let expected: Vec<f32> = samples.iter().map(|&v| v as f32 / 65535.0).collect();
    assert_eq!(image.data, expected);
    let pathf = dir.path().join("float.tif");
    let floats: Vec<f32> = (0..h * w).map(|i| i as f32 * -0.5).collect();
    TiffEncoder::new(File::create(&pathf).unwrap())
        .unwrap()
        .write_image::<colortype::Gray32Float>(w as u32, h as u32, &floats)
        .unwrap();
    assert_eq!(read_image(&pathf).unwrap().data, floats);
    // A 16-bit 3-band image that `image` refuses (Multiband) reads.
    let path_mb = dir.path().join("multiband.tif");
    let mb: Vec<u16> = (0..3 * h * w).map(|i| (i * 31 % 4096) as u16).collect();
    TiffEncoder::new(File::create(&path_mb).unwrap())
        .unwrap()
        .write_image::<colortype::RGB16>(w as u32, h as u32, &mb)
        .unwrap();
    let image = read_image(&path_mb).unwrap();
    assert_eq!(image.channels, 3);
    assert_eq!(image.data[w * h], mb[1] as f32 / 65535.0);
}

#[test]
fn tiled_bigtiff_pyramid_round_trips_with_its_tags() {
    let dir = tempfile::tempdir().unwrap();
    let (c, h, w) = (3, 300, 2100);
    let values = pattern(c, h, w);
    let path = dir.path().join("scene.tif");
    let mut s = spec(c, h, w);
    s.geo = geo();
    s.resolution = Some((40_000.0, 40_000.0, 3));
    s.bigtiff = true;
    write_u8_tiff(&path, &values, (c, h, w), &s);
    assert_eq!(&std::fs::read(&path).unwrap()[..4], b"II+\0", "a BigTIFF");

    // The tiff crate reads it: tiles of 64, pages for the pyramid.
    let mut dec = Decoder::new(File::open(&path).unwrap()).unwrap();
    assert_eq!(dec.dimensions().unwrap(), (w as u32, h as u32));
    assert_eq!(dec.chunk_dimensions(), (64, 64));
    assert_eq!(
        dec.get_tag_f64_vec(Tag::ModelPixelScaleTag).unwrap(),
        vec![30.0, 30.0, 0.0]
    );
    let DecodingResult::U8(first) = dec.read_chunk(0).unwrap() else {
        panic!("u8 tile")
    };
    let bytes = to_u8_chunky(&values, c, h, w);
    assert_eq!(&first[..64 * 3], &bytes[..64 * 3]);
    dec.next_image().unwrap();
    assert_eq!(dec.dimensions().unwrap(), (1050, 150));
    assert_eq!(dec.get_tag_u32(Tag::NewSubfileType).unwrap(), 1);
    dec.next_image().unwrap();
    assert_eq!(dec.dimensions().unwrap(), (525, 75));
    assert!(!dec.more_images(), "the pyramid stops at ≤ 1024 px");

    // wsunet's reader: the levels, the tags, the pixel size, the values.
    let info = inspect(&path).unwrap();
    assert_eq!(info.levels.len(), 3);
    assert_eq!((info.levels[1].width, info.levels[1].height), (1050, 150));
    assert_eq!(info.geo, geo());
    let px = info.pixel_size.unwrap();
    assert!((px.x_um - 0.25).abs() < 1e-9, "{px:?}");
    let image = read_image(&path).unwrap();
    assert_eq!(image.data, from_u8_chunky(&bytes, c, h, w));
    // Level 1 is the 2×2 mean (rounded) of level 0.
    let mut rows = TiffRows::open(&path, 1).unwrap();
    let level1 = rows.read_rows(150).unwrap();
    for (y, x, ch) in [(0, 0, 0), (7, 1049, 2), (149, 500, 1)] {
        let sum: u32 = [(0, 0), (0, 1), (1, 0), (1, 1)]
            .iter()
            .map(|(dy, dx)| bytes[((2 * y + dy) * w + 2 * x + dx) * c + ch] as u32)
            .sum();
        let mean = ((sum + 2) / 4) as f32 / 255.0;
        assert_eq!(
            level1[ch * 150 * 1050 + y * 1050 + x],
            mean,
            "({y}, {x}, {ch})"
        );
    }
    // A level that is not there names the ones that are.
    let err = TiffRows::open(&path, 3).unwrap_err().to_string();
    assert!(
        err.contains(
            "there is no level 3; the file has 3 level(s) (0: 2100×300, 1: 1050×150, 2: 525×75)"
        ),
        "{err}"
    );
}

#[test]
fn bigtiff_with_zstd_and_float_bands_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let (h, w) = (70, 90);
    let mut s = spec(4, h, w);
    s.compression = Compression::Zstd;
    s.tile = 32;
    s.bigtiff = true;
    let path = dir.path().join("big.tif");
    let values: Vec<f32> = (0..4 * h * w).map(|i| i as f32 * 0.25 - 3.0).collect();
    assert!(write_tiled::<f32>(&path, &s, [Ok(values.clone())]).unwrap());
    let info = inspect(&path).unwrap();
    assert!(info.bigtiff);
    assert_eq!(info.levels[0].sample_type, Some(SampleType::F32));
    assert_eq!(info.levels[0].compression, "ZSTD");
    let mut rows = TiffRows::open(&path, 0).unwrap();
    let band = rows.read_rows(h).unwrap();
    // [H, W, 4] written, [4, H, W] read.
    for (i, v) in values.iter().enumerate() {
        let (p, c) = (i / 4, i % 4);
        assert_eq!(band[c * h * w + p], *v);
    }
    // The `tiff` crate's decoder reads the same BigTIFF.
    assert_eq!(&std::fs::read(&path).unwrap()[..4], b"II+\0");
    let mut dec = Decoder::new(File::open(&path).unwrap()).unwrap();
    let DecodingResult::F32(decoded) = dec.read_image().unwrap() else {
        panic!("f32 samples")
    };
    assert_eq!(decoded, values);
}

#[test]
fn geotiff_transformation_and_double_params_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (c, h, w) = (1, 40, 50);
    let mut s = spec(c, h, w);
    // A rotated grid (ModelTransformation instead of scale and tie point)
    // and a CRS with its own ellipsoid in GeoDoubleParams.
    s.geo = GeoTags {
        transformation: Some(vec![
            0.5, 0.1, 0.0, 1000.0, 0.1, -0.5, 0.0, 2000.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0,
        ]),
        key_directory: Some(vec![
            1, 1, 0, 3, 1024, 0, 1, 2, 2057, 34736, 1, 0, 2059, 34736, 1, 1,
        ]),
        double_params: Some(vec![6_378_137.0, 298.257_223_563]),
        nodata: Some("255".into()),
        ..GeoTags::default()
    };
    let path = dir.path().join("rotated.tif");
    write_u8_tiff(&path, &pattern(c, h, w), (c, h, w), &s);
    let info = inspect(&path).unwrap();
    assert_eq!(info.geo, s.geo);
    // Pixel (1, 2)'s corner in map coordinates through the matrix.
    let [a, b, cx, d, e, f] = info.geo.affine().unwrap();
    let (x, y) = (1.0, 2.0);
    let (mx, my) = (a + b * x + cx * y, d + e * x + f * y);
    assert!(
        (mx - 1000.7).abs() < 1e-9 && (my - 1999.1).abs() < 1e-9,
        "({mx}, {my})"
    );
}

#[test]
fn gray_8_and_16_bit_tiff_masks_read_as_their_values() {
    let dir = tempfile::tempdir().unwrap();
    let (h, w) = (9, 13);
    let path = dir.path().join("mask.tif");
    let small: Vec<u8> = (0..h * w).map(|i| (i % 5) as u8).collect();
    TiffEncoder::new(File::create(&path).unwrap())
        .unwrap()
        .write_image::<colortype::Gray8>(w as u32, h as u32, &small)
        .unwrap();
    let (mh, mw, labels) = wsunet::raster::read_tiff_mask(&path).unwrap();
    assert_eq!((mh, mw), (h, w));
    assert_eq!(labels, small.iter().map(|&v| v as u16).collect::<Vec<_>>());
    let large: Vec<u16> = (0..h * w).map(|i| (i * 517 % 65_536) as u16).collect();
    TiffEncoder::new(File::create(&path).unwrap())
        .unwrap()
        .write_image::<colortype::Gray16>(w as u32, h as u32, &large)
        .unwrap();
    let (_, _, labels) = wsunet::raster::read_tiff_mask(&path).unwrap();
    assert_eq!(labels, large);
}

#[test]
fn a_failed_write_leaves_nothing_under_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.tif");
    let s = spec(1, 100, 100);
    let bands = vec![Ok(vec![1u8; 100 * 40]), Err(wsunet::Error::EmptyImage)];
    assert!(write_tiled::<u8>(&path, &s, bands).is_err());
    // Too few rows is an error too.
    assert!(write_tiled::<u8>(&path, &s, [Ok(vec![1u8; 100 * 40])]).is_err());
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

fn tiny_predictor(tile: usize) -> Predictor {
    let device = Device::flex();
    let model = WsResUNetConfig::new(3)
        .with_widths(vec![8, 8, 16, 16, 16])
        .with_groups(4)
        .init_seeded(&device, 3)
        .unwrap();
    let config = PredictConfig {
        tile,
        batch_size: 3,
        ..PredictConfig::default()
    };
    Predictor::new(model, Normalize::neutral(3), device, config).unwrap()
}

/// Labels of a mask TIFF's level 0: a palette image, which the `tiff` crate
/// does not decode, so its tiles are read and decompressed here from the
/// directory's offsets.
fn read_labels(path: &Path) -> (usize, usize, Vec<u8>) {
    use std::io::{Read, Seek, SeekFrom};
    let mut dec = Decoder::new(File::open(path).unwrap()).unwrap();
    let (w, h) = dec.dimensions().unwrap();
    let (w, h) = (w as usize, h as usize);
    assert_eq!(
        dec.get_tag_u32(Tag::PhotometricInterpretation).unwrap(),
        3,
        "a palette image"
    );
    assert_eq!(dec.get_tag_u16_vec(Tag::ColorMap).unwrap().len(), 3 * 256);
    let compression = dec.get_tag_u32(Tag::Compression).unwrap();
    let (tw, th) = dec.chunk_dimensions();
    let (tw, th) = (tw as usize, th as usize);
    let offsets = dec.get_tag_u64_vec(Tag::TileOffsets).unwrap();
    let counts = dec.get_tag_u64_vec(Tag::TileByteCounts).unwrap();
    let mut file = File::open(path).unwrap();
    let across = w.div_ceil(tw);
    let mut labels = vec![0u8; h * w];
    for (index, (&offset, &count)) in offsets.iter().zip(&counts).enumerate() {
        let mut raw = vec![0u8; count as usize];
        file.seek(SeekFrom::Start(offset)).unwrap();
        file.read_exact(&mut raw).unwrap();
        let tile = match compression {
            1 => raw,
            8 => {
                let mut out = Vec::new();
                flate2::read::ZlibDecoder::new(&raw[..])
                    .read_to_end(&mut out)
                    .unwrap();
                out
            }
            50000 => zstd::stream::decode_all(&raw[..]).unwrap(),
            other => panic!("compression {other}"),
        };
        assert_eq!(tile.len(), tw * th, "full tiles");
        let (x0, y0) = (index % across * tw, index / across * th);
        let cols = tw.min(w - x0);
        for r in 0..th.min(h - y0) {
            labels[(y0 + r) * w + x0..][..cols].copy_from_slice(&tile[r * tw..][..cols]);
        }
    }
    (w, h, labels)
}

#[test]
fn streamed_prediction_of_a_tiled_bigtiff_equals_the_in_memory_one() {
    let dir = tempfile::tempdir().unwrap();
    let (c, h, w) = (3, 230, 170);
    let values = pattern(c, h, w);
    let path = dir.path().join("in.tif");
    let mut s = spec(c, h, w);
    s.geo = GeoTags {
        nodata: Some("0".into()),
        ..geo()
    };
    s.resolution = Some((20_000.0, 20_000.0, 3));
    s.tile = 32;
    write_u8_tiff(&path, &values, (c, h, w), &s);

    let predictor = tiny_predictor(64);
    let image = read_image(&path).unwrap();
    let whole = predictor.predict(&image, true).unwrap();
    assert!(whole.tiles > 4);
    let info = inspect(&path).unwrap();
    let out = |name: &str| dir.path().join(name);
    let outputs = TiffOutputs {
        mask: out("mask.tif"),
        overlay: Some((out("overlay.tif"), 0.5)),
        probs: Some((out("probs.tif"), ProbsType::F32)),
        logits: Some(out("logits.tif")),
        uncertainty: None,
        objects: None,
        compression: Compression::Zstd,
    };
    let classes = ClassList::numbered(3);
    let mut rows_seen = Vec::new();
    let summary = predictor
        .predict_tiff(&info, 0, &classes, &outputs, &mut |p| {
            rows_seen.push(p.rows_done)
        })
        .unwrap();
    assert_eq!(summary.report.tiles, whole.tiles);
    assert!(rows_seen.windows(2).all(|p| p[0] <= p[1]) && *rows_seen.last().unwrap() == h);
    // Labels, probabilities and logits equal the in-memory prediction's.
    let (mw, mh, labels) = read_labels(&outputs.mask);
    assert_eq!((mw, mh), (w, h));
    let expected: Vec<u8> = whole.mask().data.iter().map(|&l| l as u8).collect();
    assert_eq!(labels, expected);
    let mut dec = Decoder::new(File::open(out("probs.tif")).unwrap()).unwrap();
    let DecodingResult::F32(probs) = dec.read_image().unwrap() else {
        panic!("f32 probs")
    };
    for (p, chunk) in probs.chunks(3).enumerate() {
        for (k, &v) in chunk.iter().enumerate() {
            assert_eq!(v, whole.probs[k * h * w + p], "pixel {p} class {k}");
        }
    }
    let mut dec = Decoder::new(File::open(out("logits.tif")).unwrap()).unwrap();
    let DecodingResult::F32(logits) = dec.read_image().unwrap() else {
        panic!("f32 logits")
    };
    assert_eq!(logits[1], whole.logits.as_ref().unwrap()[h * w]);
    // Every output keeps the grid's placement and pixel size; the mask
    // declares its own nodata label (no input pixel was nodata here).
    for name in ["mask.tif", "overlay.tif", "probs.tif", "logits.tif"] {
        let info = inspect(&out(name)).unwrap();
        assert_eq!(info.geo.pixel_scale, geo().pixel_scale, "{name}");
        assert_eq!(info.geo.key_directory, geo().key_directory, "{name}");
        assert_eq!(
            info.pixel_size,
            Some(PixelSize {
                x_um: 0.5,
                y_um: 0.5
            }),
            "{name}"
        );
        assert_eq!(
            info.levels[0].chunking,
            Chunking::Tiles {
                width: 256,
                height: 256
            }
        );
    }
    assert_eq!(
        inspect(&outputs.mask).unwrap().geo.nodata.as_deref(),
        Some("255")
    );
    assert_eq!(summary.nodata_pixels, 0);
    assert_eq!(summary.class_pixels.iter().sum::<u64>(), (h * w) as u64);
}

#[test]
fn a_stripped_tiff_streams_like_the_image_held_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (h, w) = (150, 97);
    let values = pattern(3, h, w);
    let bytes = to_u8_chunky(&values, 3, h, w);
    let path = dir.path().join("strips.tif");
    write_stripped_rgb(&path, &bytes, (h, w), 7);
    let predictor = tiny_predictor(48);
    let image = Image::new(3, h, w, from_u8_chunky(&bytes, 3, h, w));
    let whole = predictor.predict(&image, false).unwrap();
    let outputs = TiffOutputs {
        mask: dir.path().join("mask.tif"),
        overlay: None,
        probs: Some((dir.path().join("probs.tif"), ProbsType::U8)),
        logits: None,
        uncertainty: None,
        objects: None,
        compression: Compression::Deflate,
    };
    let info = inspect(&path).unwrap();
    predictor
        .predict_tiff(&info, 0, &ClassList::numbered(3), &outputs, &mut |_| {})
        .unwrap();
    let (_, _, labels) = read_labels(&outputs.mask);
    let expected: Vec<u8> = whole.mask().data.iter().map(|&l| l as u8).collect();
    assert_eq!(labels, expected);
    let mut dec = Decoder::new(File::open(dir.path().join("probs.tif")).unwrap()).unwrap();
    let DecodingResult::U8(q) = dec.read_image().unwrap() else {
        panic!("u8 probs")
    };
    assert_eq!(
        q[3 * 5 + 2],
        (whole.probs[2 * h * w + 5] * 255.0).round() as u8
    );
    // No georeferencing in, none out.
    assert!(inspect(&outputs.mask).unwrap().geo.is_empty());
}

#[test]
fn nodata_pixels_get_the_masks_nodata_label_and_empty_tiles_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (c, h, w) = (3, 128, 256);
    // The left half is nodata (0 in every band), the right half an image.
    let mut values = pattern(c, h, w);
    for ch in 0..c {
        for y in 0..h {
            for x in 0..w / 2 {
                values[ch * h * w + y * w + x] = 0.0;
            }
        }
    }
    let path = dir.path().join("scene.tif");
    let mut s = spec(c, h, w);
    s.geo = GeoTags {
        nodata: Some("0".into()),
        ..GeoTags::default()
    };
    write_u8_tiff(&path, &values, (c, h, w), &s);
    let info = inspect(&path).unwrap();
    let device = Device::flex();
    let model = WsResUNetConfig::new(3)
        .with_widths(vec![8, 8, 16, 16, 16])
        .with_groups(4)
        .init_seeded(&device, 3)
        .unwrap();
    let config = PredictConfig {
        tile: 64,
        overlap: 0.0,
        skip_empty: true,
        ..PredictConfig::default()
    };
    let predictor = Predictor::new(model, Normalize::neutral(3), device, config).unwrap();
    let outputs = TiffOutputs {
        mask: dir.path().join("mask.tif"),
        overlay: None,
        probs: None,
        logits: None,
        uncertainty: None,
        objects: None,
        compression: Compression::Deflate,
    };
    let summary = predictor
        .predict_tiff(&info, 0, &ClassList::numbered(3), &outputs, &mut |_| {})
        .unwrap();
    // 2 rows × 4 columns of tiles; the left two columns are all nodata.
    assert_eq!((summary.report.tiles, summary.report.skipped), (8, 4));
    assert_eq!(summary.nodata_pixels, (h * w / 2) as u64);
    let (_, _, labels) = read_labels(&outputs.mask);
    assert!(
        labels
            .chunks(w)
            .all(|row| row[..w / 2].iter().all(|&l| l == 255))
    );
    assert!(
        labels
            .chunks(w)
            .all(|row| row[w / 2..].iter().all(|&l| l < 3))
    );
}

/// Bilinear resampling with half-pixel centres, written out here (the
/// test's own, not wsunet's): `[C, H, W]` to `[C, h2, w2]`.
fn resample(
    values: &[f32],
    c: usize,
    (h, w): (usize, usize),
    (h2, w2): (usize, usize),
) -> Vec<f32> {
    let tap = |i: usize, out: usize, len: usize| {
        let src = ((i as f64 + 0.5) * len as f64 / out as f64 - 0.5).clamp(0.0, (len - 1) as f64);
        let lo = src.floor() as usize;
        (lo, (lo + 1).min(len - 1), (src - lo as f64) as f32)
    };
    let mut out = Vec::with_capacity(c * h2 * w2);
    for ch in 0..c {
        for y in 0..h2 {
            let (y0, y1, wy) = tap(y, h2, h);
            for x in 0..w2 {
                let (x0, x1, wx) = tap(x, w2, w);
                let v = |yy: usize, xx: usize| values[(ch * h + yy) * w + xx];
                let top = v(y0, x0) + (v(y0, x1) - v(y0, x0)) * wx;
                let bottom = v(y1, x0) + (v(y1, x1) - v(y1, x0)) * wx;
                out.push(top + (bottom - top) * wy);
            }
        }
    }
    out
}

#[test]
fn scaled_prediction_is_the_prediction_of_the_resampled_image_resampled_back() {
    let (c, h, w) = (3, 70, 90);
    let image = Image::new(c, h, w, pattern(c, h, w));
    let device = Device::flex();
    let model = WsResUNetConfig::new(3)
        .with_widths(vec![8, 8, 16, 16, 16])
        .with_groups(4)
        .init_seeded(&device, 5)
        .unwrap();
    for (scale, (h2, w2)) in [(2.0, (140, 180)), (0.5, (35, 45)), (1.6, (112, 144))] {
        let config = PredictConfig {
            tile: 64,
            batch_size: 2,
            ..PredictConfig::default()
        };
        let plain =
            Predictor::new(model.clone(), Normalize::neutral(3), device.clone(), config).unwrap();
        let scaled = plain.with_scale(scale).unwrap();
        let got = scaled.predict(&image, true).unwrap();
        assert_eq!((got.height, got.width), (h, w), "×{scale}");
        let big = Image::new(c, h2, w2, resample(&image.data, c, (h, w), (h2, w2)));
        let at_scale = plain.predict(&big, true).unwrap();
        // (A NaN would pass the maxima below: rule it out first.)
        assert!(got.probs.iter().all(|v| v.is_finite()), "×{scale}");
        assert!(
            got.logits.as_ref().unwrap().iter().all(|v| v.is_finite()),
            "×{scale}"
        );
        let expected = resample(&at_scale.probs, 3, (h2, w2), (h, w));
        let worst = got
            .probs
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-5, "×{scale}: probabilities differ by {worst}");
        let logits = resample(at_scale.logits.as_ref().unwrap(), 3, (h2, w2), (h, w));
        let worst = got
            .logits
            .unwrap()
            .iter()
            .zip(&logits)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-4, "×{scale}: logits differ by {worst}");
    }
    // Out of range is a setting error.
    let plain = tiny_predictor(64);
    let err = plain.with_scale(0.01).unwrap_err().to_string();
    assert!(err.contains("scale 0.01 is outside [0.05, 20]"), "{err}");
}

#[test]
fn training_images_pixel_size_is_recorded_when_they_agree() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, per_cm: f64| {
        let path = dir.path().join(name);
        let mut s = spec(1, 40, 40);
        s.tile = 16;
        s.resolution = Some((per_cm, per_cm, 3));
        write_tiled::<u8>(&path, &s, [Ok(vec![9u8; 1600])]).unwrap();
        path
    };
    let a = write("a.tif", 20_000.0);
    let b = write("b.tif", 20_500.0);
    let c = write("c.tif", 40_000.0);
    let (size, warning) = wsunet::data::pixel_size(&[&a, &b]);
    assert_eq!(
        size,
        Some(PixelSize {
            x_um: 0.5,
            y_um: 0.5
        })
    );
    assert!(warning.is_none());
    let (size, warning) = wsunet::data::pixel_size(&[&a, &c]);
    assert_eq!(size, None);
    assert!(warning.unwrap().contains("different pixel sizes"));
    // A PNG among them: nothing is known.
    let png = dir.path().join("d.png");
    wsunet::data::write_png(&png, &Image::new(1, 4, 4, vec![0.5; 16])).unwrap();
    assert_eq!(wsunet::data::pixel_size(&[&a, &png]), (None, None));
}

#[test]
fn thirty_two_bit_id_masks_keep_small_ids_and_renumber_large_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (h, w) = (4, 5);
    let path = dir.path().join("ids.tif");
    // Ids that fit 16 bits are kept, unsigned or signed.
    let small: Vec<u32> = (0..h * w).map(|i| (i % 3) as u32 * 30_000).collect();
    TiffEncoder::new(File::create(&path).unwrap())
        .unwrap()
        .write_image::<colortype::Gray32>(w as u32, h as u32, &small)
        .unwrap();
    let l = wsunet::raster::read_tiff_labels(&path).unwrap();
    assert_eq!((l.bits, l.renumbered), (32, false));
    assert_eq!(
        l.labels,
        small.iter().map(|&v| v as u16).collect::<Vec<_>>()
    );
    // Past 65,535: renumbered in order of first appearance, 0 kept.
    let large: Vec<i32> = vec![
        0,
        0,
        250_000,
        250_000,
        7, //
        0,
        99_999,
        99_999,
        250_000,
        7, //
        0,
        0,
        0,
        0,
        0, //
        1 << 30,
        0,
        0,
        0,
        0,
    ];
    TiffEncoder::new(File::create(&path).unwrap())
        .unwrap()
        .write_image::<colortype::GrayI32>(w as u32, h as u32, &large)
        .unwrap();
    let l = wsunet::raster::read_tiff_labels(&path).unwrap();
    assert!(l.renumbered);
    assert_eq!(
        l.labels,
        vec![0, 0, 1, 1, 2, 0, 3, 3, 1, 2, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0]
    );
    let (mask, kind) = wsunet::data::read_mask(&path, None).unwrap();
    assert_eq!((kind, mask.data), (wsunet::data::MaskKind::Ids32, l.labels));
    // As an image it is refused, naming what it is read as.
    let err = TiffRows::open(&path, 0).unwrap_err().to_string();
    assert!(err.contains("32-bit integers as label masks"), "{err}");
    // A negative id names its pixel.
    let mut negative = large.clone();
    negative[7] = -3;
    TiffEncoder::new(File::create(&path).unwrap())
        .unwrap()
        .write_image::<colortype::GrayI32>(w as u32, h as u32, &negative)
        .unwrap();
    let err = wsunet::raster::read_tiff_labels(&path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("pixel (2, 1) holds the negative id -3"),
        "{err}"
    );
}
