//! The TIFF reader never panics: random bytes, and valid files (tiled and
//! stripped, classic and BigTIFF) with bytes changed, inserted or cut off,
//! are read through every entry point (`inspect`, every level's rows, the
//! whole image, the mask reader) and give an error or a value, never a
//! panic.

use std::fs::File;
use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;
use tiff::encoder::{TiffEncoder, colortype};
use wsunet::raster::{
    Compression, GeoTags, Photometric, RasterSpec, Resample, TiffRows, inspect, read_tiff_mask,
    write_tiled,
};

/// Valid seed files: a tiled BigTIFF with a pyramid and GeoTIFF tags
/// (Deflate), a tiled classic TIFF (ZSTD, 16-bit), a stripped RGB TIFF, an
/// uncompressed gray one, and the committed fixtures.
fn seeds() -> &'static Vec<Vec<u8>> {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        let spec = |w: usize, h: usize, samples: usize, compression, bigtiff| RasterSpec {
            width: w,
            height: h,
            samples,
            photometric: if samples == 3 {
                Photometric::Rgb
            } else {
                Photometric::Gray
            },
            compression,
            tile: 16,
            resample: Resample::Average,
            pyramid: true,
            geo: GeoTags {
                pixel_scale: Some(vec![1.0, 1.0, 0.0]),
                key_directory: Some(vec![1, 1, 0, 1, 1024, 0, 1, 1]),
                nodata: Some("0".into()),
                ..GeoTags::default()
            },
            resolution: Some((100.0, 100.0, 3)),
            bigtiff,
        };
        let path = dir.path().join("a.tif");
        let pixels: Vec<u8> = (0..40 * 23 * 3).map(|i| (i * 7 % 256) as u8).collect();
        write_tiled::<u8>(
            &path,
            &spec(40, 23, 3, Compression::Deflate, true),
            [Ok(pixels)],
        )
        .unwrap();
        out.push(std::fs::read(&path).unwrap());
        let samples: Vec<u16> = (0..33 * 20).map(|i| (i * 131 % 65_536) as u16).collect();
        write_tiled::<u16>(
            &path,
            &spec(33, 20, 1, Compression::Zstd, false),
            [Ok(samples)],
        )
        .unwrap();
        out.push(std::fs::read(&path).unwrap());
        let rgb: Vec<u8> = (0..30 * 21 * 3).map(|i| (i * 13 % 256) as u8).collect();
        {
            let mut enc = TiffEncoder::new(File::create(&path).unwrap()).unwrap();
            let mut image = enc.new_image::<colortype::RGB8>(30, 21).unwrap();
            image.rows_per_strip(4).unwrap();
            image.write_data(&rgb).unwrap();
        }
        out.push(std::fs::read(&path).unwrap());
        let gray: Vec<u8> = (0..25 * 25).map(|i| (i % 251) as u8).collect();
        TiffEncoder::new(File::create(&path).unwrap())
            .unwrap()
            .write_image::<colortype::Gray8>(25, 25, &gray)
            .unwrap();
        out.push(std::fs::read(&path).unwrap());
        // The committed fixtures of other writers' layouts (JPEG, planar,
        // SubIFDs, big-endian, PackBits, LZW with a predictor).
        let fixtures =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiff");
        let mut names: Vec<_> = std::fs::read_dir(&fixtures)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "tif"))
            .collect();
        names.sort();
        out.extend(names.iter().map(|p| std::fs::read(p).unwrap()));
        out
    })
}

/// Every way wsunet reads a TIFF; the results are ignored, a panic fails.
fn read_everything(path: &Path) {
    if let Ok(info) = inspect(path) {
        for level in 0..info.levels.len() + 1 {
            if let Ok(mut rows) = TiffRows::open_level(&info, level) {
                let h = rows.level().height;
                let mut left = h;
                while left > 0 {
                    match rows.read_rows(7) {
                        Ok(v) if !v.is_empty() => left = left.saturating_sub(7),
                        _ => break,
                    }
                }
            }
        }
    }
    let _ = wsunet::data::read_image(path);
    let _ = read_tiff_mask(path);
}

fn check(bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.tif");
    std::fs::write(&path, bytes).unwrap();
    read_everything(&path);
}

#[test]
fn seeds_read_whole() {
    for seed in seeds() {
        check(seed);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn mutated_tiffs_never_panic(
        which in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..12),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let mut bytes = seeds()[which.index(seeds().len())].clone();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        check(&bytes);
    }

    #[test]
    fn header_and_directory_bytes_mutated_never_panic(
        which in any::<prop::sample::Index>(),
        edits in prop::collection::vec((0usize..64, any::<u8>()), 1..6),
        tail_edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
    ) {
        // The header and the first directory entries decide the layout:
        // mutate them most, and the directories at the end (wsunet's writer
        // puts them there) too.
        let mut bytes = seeds()[which.index(seeds().len())].clone();
        for (at, value) in edits {
            let i = at.min(bytes.len() - 1);
            bytes[i] = value;
        }
        let n = bytes.len();
        for (at, value) in tail_edits {
            let i = n - 1 - at.index(n.min(600));
            bytes[i] = value;
        }
        check(&bytes);
    }

    #[test]
    fn random_bytes_never_panic(mut bytes in prop::collection::vec(any::<u8>(), 0..400), big in any::<bool>()) {
        // Half of them start like a TIFF, so the parser goes past the magic.
        if bytes.len() >= 4 {
            bytes[..4].copy_from_slice(if big { b"II+\0" } else { b"II*\0" });
        }
        check(&bytes);
    }
}
