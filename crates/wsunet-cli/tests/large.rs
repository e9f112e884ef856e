//! `wsunet predict` on TIFF inputs: streamed into tiled, pyramidal TIFFs
//! with the input's georeferencing, equal to the in-memory prediction of the
//! same pixels; `info --image` lists levels; bad TIFFs are one error each,
//! with nothing left under an output's name.

mod common;

use std::path::Path;

use common::*;
use wsunet::raster::{
    Compression, GeoTags, Photometric, RasterSpec, Resample, inspect, read_tiff_mask, write_tiled,
};

/// A georeferenced, tiled BigTIFF with a pyramid holding `rgb` (`[H, W, 3]`).
fn geotiff(path: &Path, rgb: &[u8], h: usize, w: usize) {
    let spec = RasterSpec {
        width: w,
        height: h,
        samples: 3,
        photometric: Photometric::Rgb,
        compression: Compression::Deflate,
        tile: 32,
        resample: Resample::Average,
        pyramid: true,
        geo: GeoTags {
            pixel_scale: Some(vec![10.0, 10.0, 0.0]),
            tiepoints: Some(vec![0.0, 0.0, 0.0, 500_000.0, 6_000_000.0, 0.0]),
            key_directory: Some(vec![1, 1, 0, 2, 1024, 0, 1, 1, 3072, 0, 1, 32_632]),
            ..GeoTags::default()
        },
        resolution: Some((1000.0, 1000.0, 3)),
        bigtiff: true,
    };
    write_tiled::<u8>(path, &spec, [Ok(rgb.to_vec())]).unwrap();
}

#[test]
fn a_geotiff_is_streamed_into_tiled_tiffs_equal_to_its_png_prediction() {
    let dir = tempfile::tempdir().unwrap();
    let run = tiny_trained_run(dir.path());
    // A 1100×150 image (wide enough for a pyramid level), as a PNG and a TIFF.
    let data = dir.path().join("big");
    synth(&data, 1, 1100);
    let png = data.join("images").join("shape_00000.png");
    let image = wsunet::data::read_image(&png).unwrap();
    let (h, w) = (150, 1100);
    let rgb: Vec<u8> = (0..h * w * 3)
        .map(|i| (image.data[(i % 3) * 1100 * 1100 + i / 3] * 255.0).round() as u8)
        .collect();
    let tif = dir.path().join("scene.tif");
    geotiff(&tif, &rgb, h, w);
    let crop = dir.path().join("crop");
    std::fs::create_dir_all(&crop).unwrap();
    let crop_png = crop.join("scene.png");
    wsunet::data::write_png(
        &crop_png,
        &wsunet::data::Image::new(
            3,
            h,
            w,
            (0..3 * h * w)
                .map(|i| rgb[(i % (h * w)) * 3 + i / (h * w)] as f32 / 255.0)
                .collect(),
        ),
    )
    .unwrap();

    let out = dir.path().join("out");
    let o = predict(
        &run,
        &tif,
        &out,
        &["--probs", "--overlay", "--compression", "zstd"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("scene.tif → "), "{text}");
    assert!(text.contains("150×1100"), "{text}");
    let mask = out.join("scene.tif");
    for name in ["scene.tif", "scene_overlay.tif", "scene_probs.tif"] {
        let info = inspect(&out.join(name)).unwrap();
        assert_eq!(
            info.levels.len(),
            2,
            "{name}: level 0 and one reduced level"
        );
        assert_eq!((info.levels[1].width, info.levels[1].height), (550, 75));
        assert_eq!(info.levels[0].compression, "ZSTD");
        assert_eq!(
            info.geo.tiepoints,
            Some(vec![0.0, 0.0, 0.0, 500_000.0, 6_000_000.0, 0.0])
        );
        assert_eq!(info.geo.pixel_scale, Some(vec![10.0, 10.0, 0.0]));
        let px = info.pixel_size.unwrap();
        assert!((px.x_um - 10.0).abs() < 1e-9, "{name}: {px:?}");
    }
    // The uncertainty maps as a two-band float TIFF beside the mask.
    let flips = dir.path().join("flips");
    let o = predict(&run, &tif, &flips, &["--tta", "flip", "--uncertainty"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let info = inspect(&flips.join("scene_uncertainty.tif")).unwrap();
    assert_eq!((info.levels[0].width, info.levels[0].height), (1100, 150));
    assert_eq!(info.levels[0].channels, 2);

    // A georeferenced input's objects: outlines in its map coordinates
    // (UTM zone 32N, 10 m pixels), areas in map units and µm.
    let objects = dir.path().join("objects");
    let o = predict(&run, &tif, &objects, &["--instances"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = std::fs::read_to_string(objects.join("scene_objects.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header[header.len() - 2..], ["area_um2", "area_map_units"]);
    for line in lines {
        let f: Vec<f64> = line
            .split(',')
            .skip(2)
            .map(|v| v.parse().unwrap())
            .collect();
        let (area, um2, map) = (f[0], f[f.len() - 2], f[f.len() - 1]);
        assert!((um2 - area * 100.0).abs() < 1e-6 * um2.max(1.0), "{line}");
        assert!((map - area * 100.0).abs() < 1e-6 * map.max(1.0), "{line}");
    }
    let geojson: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(objects.join("scene_objects.geojson")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        geojson["crs"]["properties"]["name"],
        "urn:ogc:def:crs:EPSG::32632"
    );
    let features = geojson["features"].as_array().unwrap();
    assert!(!features.is_empty());
    for f in features {
        let ring = &f["geometry"]["coordinates"][0];
        let ring = if ring[0][0].is_array() {
            &ring[0]
        } else {
            ring
        };
        for p in ring.as_array().unwrap() {
            let (x, y) = (p[0].as_f64().unwrap(), p[1].as_f64().unwrap());
            assert!((500_000.0..=511_000.0).contains(&x), "{x}");
            assert!((5_998_500.0..=6_000_000.0).contains(&y), "{y}");
        }
    }

    // The same pixels as a PNG, predicted in memory: the same labels.
    let png_out = dir.path().join("png_out");
    let o = predict(&run, &crop_png, &png_out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (png_mask, _) = wsunet::data::read_mask(&png_out.join("scene.png"), None).unwrap();
    let (mh, mw, labels) = read_tiff_mask(&mask).unwrap();
    assert_eq!((mh, mw), (h, w));
    assert_eq!(labels, png_mask.data);

    // A rerun skips it; another setting is refused with the difference.
    let o = predict(
        &run,
        &tif,
        &out,
        &["--probs", "--overlay", "--compression", "zstd"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("skipped 1 image(s)"), "{}", stdout(&o));
    let o = predict(&run, &tif, &out, &["--probs", "--overlay"]);
    fails_with(&o, "compression zstd there, deflate now");

    // Level 1 is predicted at its own size, with its own pixel size.
    let out1 = dir.path().join("out1");
    let o = predict(&run, &tif, &out1, &["--level", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let info = inspect(&out1.join("scene.tif")).unwrap();
    assert_eq!((info.levels[0].width, info.levels[0].height), (550, 75));
    assert!((info.pixel_size.unwrap().x_um - 20.0).abs() < 1e-9);
    assert!(
        !info.geo.is_georeferenced(),
        "a reduced level's grid is not the file's"
    );

    // `info --image` lists the levels and the placement.
    let o = wsunet(&["info", "--image", tif.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("1100×150"), "{text}");
    assert!(text.contains("550×75"), "{text}");
    assert!(text.contains("BigTIFF"), "{text}");
    assert!(text.contains("georeferenced"), "{text}");
}

#[test]
fn bad_tiffs_are_one_error_each_and_leave_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let run = tiny_trained_run(dir.path());
    let good = dir.path().join("good.tif");
    let rgb: Vec<u8> = (0..64 * 80 * 3).map(|i| (i * 7 % 256) as u8).collect();
    geotiff(&good, &rgb, 64, 80);
    let bytes = std::fs::read(&good).unwrap();
    let bad = dir.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    // Truncated in the middle of its tiles.
    std::fs::write(bad.join("truncated.tif"), &bytes[..bytes.len() / 3]).unwrap();
    // Not a TIFF at all.
    std::fs::write(bad.join("garbage.tif"), b"this is not a tiff file at all").unwrap();
    // Read fine until its last tile, whose compressed bytes are garbage:
    // the prediction fails after rows above it were written.
    let tall = dir.path().join("tall.tif");
    let pixels: Vec<u8> = (0..300 * 80 * 3).map(|i| (i * 13 % 256) as u8).collect();
    geotiff(&tall, &pixels, 300, 80);
    let mut tall_bytes = std::fs::read(&tall).unwrap();
    let mut dec = tiff::decoder::Decoder::new(std::fs::File::open(&tall).unwrap()).unwrap();
    let offsets = dec.get_tag_u64_vec(tiff::tags::Tag::TileOffsets).unwrap();
    let counts = dec
        .get_tag_u64_vec(tiff::tags::Tag::TileByteCounts)
        .unwrap();
    let (at, n) = (
        *offsets.last().unwrap() as usize,
        *counts.last().unwrap() as usize,
    );
    tall_bytes[at..at + n].fill(0xff);
    std::fs::write(bad.join("late_tile.tif"), &tall_bytes).unwrap();
    assert!(
        inspect(&bad.join("late_tile.tif")).unwrap().levels[0]
            .problem
            .is_none()
    );
    let out = dir.path().join("out");
    let o = predict(&run, &bad, &out, &[]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("garbage.tif") && err.contains("not a TIFF"),
        "{err}"
    );
    assert!(err.contains("truncated.tif"), "{err}");
    assert!(
        err.contains("late_tile.tif") && err.contains("cannot read the TIFF"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let left: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "predict.json")
        .collect();
    assert!(left.is_empty(), "outputs left behind: {left:?}");

    // A level that is not there names the levels.
    let o = predict(&run, &good, &dir.path().join("o2"), &["--level", "4"]);
    fails_with(
        &o,
        "there is no level 4; the file has 1 level(s) (0: 80×64)",
    );
    fails_with(&o, "fix --level");
}

#[test]
fn pixel_size_mismatch_warns_and_scale_auto_resamples() {
    let dir = tempfile::tempdir().unwrap();
    let run = tiny_trained_run(dir.path());
    // The model's card says it was trained at 5 µm a pixel; the input is
    // 10 µm a pixel (1,000 pixels a centimetre).
    for card in ["model.json", "best.json"] {
        let path = run.join(card);
        let mut json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        json["pixel_size"] = serde_json::json!({"x_um": 5.0, "y_um": 5.0});
        std::fs::write(&path, serde_json::to_string(&json).unwrap()).unwrap();
    }
    let (h, w) = (90, 120);
    let rgb: Vec<u8> = (0..h * w * 3).map(|i| (i * 7 % 251) as u8).collect();
    let tif = dir.path().join("scene.tif");
    geotiff(&tif, &rgb, h, w);
    let out = dir.path().join("plain");
    let o = predict(&run, &tif, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("is 10.000 µm/px at level 0, but the model was trained at 5.000 µm/px: objects look 0.50× their training size; predict with --scale auto"),
        "{err}"
    );
    // --scale auto predicts at twice the size and writes the input's grid.
    let out = dir.path().join("auto");
    let o = predict(&run, &tif, &out, &["--scale", "auto"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    let (mh, mw, _) = read_tiff_mask(&out.join("scene.tif")).unwrap();
    assert_eq!((mh, mw), (h, w));
    let record = std::fs::read_to_string(out.join("predict.json")).unwrap();
    assert!(record.contains("\"scale\": null"), "{record}");
    // A PNG states no pixel size: auto is an error for it.
    let png_dir = dir.path().join("png");
    synth(&png_dir, 1, 40);
    let o = predict(
        &run,
        &png_dir.join("images"),
        &dir.path().join("o3"),
        &["--scale", "auto"],
    );
    fails_with(
        &o,
        "fix --scale: scale auto needs the input's pixel size, which only TIFF files state",
    );
    let o = predict(&run, &tif, &dir.path().join("o4"), &["--scale=-1"]);
    fails_with(
        &o,
        "fix --scale: scale -1 is neither a positive number nor auto",
    );
}
