//! TIFF layouts written by an independent writer (tifffile, through
//! `python/make_tiff_fixtures.py`; committed): an OME-TIFF pyramid in
//! SubIFDs with its physical pixel size, planar 16-bit LZW with a
//! predictor, float32 ZSTD strips, RGBA PackBits, a big-endian BigTIFF,
//! JPEG tiles in YCbCr 4:2:0 and 4:4:4 and in RGB, and a sample type wsunet refuses. Every
//! readable fixture's values are checked against the pattern it was made
//! from.

use std::path::PathBuf;

use wsunet::raster::{TiffRows, inspect};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tiff")
        .join(name)
}

/// The fixtures' pattern as wsunet reads it: `(x·7 + y·13 + c·50) mod 256`
/// over 255 (8-bit, and 16-bit = 8-bit · 257).
fn pattern(y: usize, x: usize, c: usize) -> f32 {
    ((x * 7 + y * 13 + c * 50) % 256) as f32 / 255.0
}

/// Level `level` of a fixture, `[C, H, W]`, with its size.
fn read(name: &str, level: usize) -> (usize, usize, usize, Vec<f32>) {
    let mut rows = TiffRows::open(&fixture(name), level).unwrap();
    let l = rows.level().clone();
    let values = rows.read_rows(l.height).unwrap();
    (l.channels, l.height, l.width, values)
}

/// The largest |read − expected| over a fixture's level.
fn max_error(
    (c, h, w, values): &(usize, usize, usize, Vec<f32>),
    expected: impl Fn(usize, usize, usize) -> f32,
) -> f32 {
    let mut worst = 0f32;
    for ch in 0..*c {
        for y in 0..*h {
            for x in 0..*w {
                let error = (values[(ch * h + y) * w + x] - expected(y, x, ch)).abs();
                // `max` drops a NaN: a NaN read is the worst error there is.
                worst = if error.is_nan() {
                    f32::INFINITY
                } else {
                    worst.max(error)
                };
            }
        }
    }
    worst
}

#[test]
fn ome_tiff_subifd_pyramid_and_pixel_size() {
    let info = inspect(&fixture("ome_pyramid.ome.tif")).unwrap();
    let sizes: Vec<(usize, usize)> = info.levels.iter().map(|l| (l.height, l.width)).collect();
    assert_eq!(sizes, [(96, 128), (48, 64), (24, 32)]);
    assert_eq!(info.levels[1].location, "subifd 0");
    let px = info.pixel_size.unwrap();
    assert!(
        (px.x_um - 0.25).abs() < 1e-9 && (px.y_um - 0.25).abs() < 1e-9,
        "{px:?}"
    );
    // Level 0 is the pattern; level k takes every 2^k-th pixel of it.
    for level in 0..3 {
        let step = 1 << level;
        let read = read("ome_pyramid.ome.tif", level);
        assert_eq!(
            max_error(&read, |y, x, c| pattern(y * step, x * step, c)),
            0.0
        );
    }
}

#[test]
fn planar_lzw_floats_packbits_alpha_and_big_endian_read_exactly() {
    let planar = read("planar_u16_lzw.tif", 0);
    assert_eq!((planar.0, planar.1, planar.2), (4, 70, 50));
    assert_eq!(max_error(&planar, pattern), 0.0);
    let floats = read("strips_f32_zstd.tif", 0);
    assert_eq!(max_error(&floats, pattern), 0.0);
    let rgba = read("rgba_packbits.tif", 0);
    assert_eq!(rgba.0, 3, "alpha is dropped");
    assert_eq!(max_error(&rgba, pattern), 0.0);
    let big = read("bigendian_bigtiff.tif", 0);
    assert!(inspect(&fixture("bigendian_bigtiff.tif")).unwrap().bigtiff);
    assert_eq!((big.0, big.1, big.2), (5, 50, 40));
    assert_eq!(max_error(&big, pattern), 0.0);
}

#[test]
fn jpeg_tiles_in_ycbcr_and_rgb_read_as_rgb() {
    // The fixtures hold the gradient 60 + x + y + 30·c as RGB; JPEG at
    // quality 95 keeps each value within a few levels, whichever colour
    // space the tiles were coded in (coded YCbCr read as RGB is off by
    // tens of levels).
    let smooth = |y, x, c| (60 + x + y + 30 * c) as f32 / 255.0;
    for name in ["jpeg_ycbcr420.tif", "jpeg_ycbcr444.tif", "jpeg_rgb.tif"] {
        let read = read(name, 0);
        let err = max_error(&read, smooth);
        assert!(err <= 4.0 / 255.0, "{name}: max error {}/255", err * 255.0);
    }
}

#[test]
fn signed_integers_are_refused_with_the_fix() {
    let err = TiffRows::open(&fixture("int16.tif"), 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("int16.tif"), "{err}");
    assert!(err.contains("16-bit signed integers"), "{err}");
    assert!(err.contains("gdal_translate"), "{err}");
}
