//! Objects end to end: instance training from instance label masks, the
//! object files predict writes, object scores from eval, and the errors
//! and warnings of data that does not fit the task.

mod common;

use common::*;

#[test]
fn instance_runs_record_their_task_predict_objects_and_score_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synth_with(&data, 10, 48, &["--instances"]);
    assert!(!data.join("classes.json").exists());
    let config = tiny_model_config(dir.path(), 3);
    let run = dir.path().join("run");
    let mut args = tiny_train_args(&data, &config, 2, &run);
    args.extend(["--task".into(), "instances".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = wsunet(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let log = stdout(&o);
    assert!(
        log.contains("boundary 2 px: median object diameter"),
        "{log}"
    );
    assert!(log.contains("min_area "), "{log}");
    assert!(log.contains("interior"), "{log}");
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("model.json")).unwrap()).unwrap();
    assert_eq!(card["task"], "instances");
    assert_eq!(card["instances"]["boundary"], 2);
    let names: Vec<&str> = card["classes"]
        .as_array()
        .map(|c| c.iter().map(|c| c["name"].as_str().unwrap()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["background", "interior", "boundary"], "{card}");

    // An instance model always writes its objects.
    let out = dir.path().join("pred");
    let image = data.join("images").join("shape_00000.png");
    let o = wsunet(&[
        "predict",
        "--model",
        run.to_str().unwrap(),
        "--input",
        image.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("object(s)"), "{}", stdout(&o));
    for name in [
        "shape_00000.png",
        "shape_00000_instances.tif",
        "shape_00000_objects.csv",
        "shape_00000_objects.geojson",
    ] {
        assert!(out.join(name).is_file(), "{name}");
    }
    let csv = std::fs::read_to_string(out.join("shape_00000_objects.csv")).unwrap();
    let rows = csv.lines().count() - 1;
    let geojson: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("shape_00000_objects.geojson")).unwrap(),
    )
    .unwrap();
    assert_eq!(geojson["type"], "FeatureCollection");
    assert_eq!(geojson["features"].as_array().unwrap().len(), rows);
    let record = std::fs::read_to_string(out.join("predict.json")).unwrap();
    assert!(record.contains("\"instances\": true"), "{record}");

    // eval scores objects beside pixels.
    let o = wsunet(&["eval", "--model", run.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("objects over 2 image(s): AP50 "),
        "{}",
        stdout(&o)
    );
    let scores: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("eval.json")).unwrap()).unwrap();
    let ap50 = scores["objects"]["ap50"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&ap50), "{scores}");
}

#[test]
fn semantic_models_give_objects_on_request_and_bad_task_data_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let run = tiny_trained_run(dir.path());
    let images = dir.path().join("train").join("images");
    let out = dir.path().join("pred");
    let o = wsunet(&[
        "predict",
        "--model",
        run.to_str().unwrap(),
        "--input",
        images.join("shape_00001.png").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--instances",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = std::fs::read_to_string(out.join("shape_00001_objects.csv")).unwrap();
    // Objects carry the class they are pieces of.
    for line in csv.lines().skip(1) {
        let class = line.split(',').nth(1).unwrap();
        assert!(
            ["circle", "rectangle", "triangle"].contains(&class),
            "{line}"
        );
    }

    // A TIFF is streamed in bands: its objects equal those of the same
    // image as a PNG, predicted whole (objects cross the band seams).
    let (h, w) = (150, 200);
    let rgb: Vec<u8> = (0..h * w * 3)
        .map(|i| {
            let (x, y) = ((i / 3) % w, (i / 3) / w);
            (((x / 23 + y / 17) % 3) * 90 + (i % 3) * 20) as u8
        })
        .collect();
    let scene = dir.path().join("scene");
    std::fs::create_dir(&scene).unwrap();
    let spec = wsunet::raster::RasterSpec {
        width: w,
        height: h,
        samples: 3,
        photometric: wsunet::raster::Photometric::Rgb,
        compression: wsunet::raster::Compression::Deflate,
        tile: 64,
        resample: wsunet::raster::Resample::Average,
        pyramid: false,
        geo: Default::default(),
        resolution: None,
        bigtiff: false,
    };
    wsunet::raster::write_tiled::<u8>(&scene.join("s.tif"), &spec, [Ok(rgb.clone())]).unwrap();
    let image = wsunet::data::Image::new(
        3,
        h,
        w,
        (0..3)
            .flat_map(|c| rgb.iter().skip(c).step_by(3).map(|&v| v as f32 / 255.0))
            .collect(),
    );
    wsunet::data::write_png(&scene.join("s.png"), &image).unwrap();
    let mut tables = Vec::new();
    for name in ["s.tif", "s.png"] {
        let out = dir.path().join(format!("pred-{name}"));
        let o = wsunet(&[
            "predict",
            "--model",
            run.to_str().unwrap(),
            "--input",
            scene.join(name).to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--instances",
            "--tile",
            "48",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(out.join("s_instances.tif").is_file());
        let csv = std::fs::read_to_string(out.join("s_objects.csv")).unwrap();
        // Rows without their ids (numbered in another order), sorted.
        let mut rows: Vec<String> = csv
            .lines()
            .skip(1)
            .map(|l| l.split_once(',').unwrap().1.to_string())
            .collect();
        rows.sort();
        let geojson: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("s_objects.geojson")).unwrap())
                .unwrap();
        assert_eq!(geojson["features"].as_array().unwrap().len(), rows.len());
        tables.push(rows);
    }
    assert!(tables[0].len() > 3, "objects to compare: {:?}", tables[0]);
    assert_eq!(
        tables[0], tables[1],
        "streamed objects equal the whole image's"
    );

    // Class masks (one value on nine separate squares) given as instance
    // labels: warned, naming the masks.
    let masks = dir.path().join("train").join("masks");
    for entry in std::fs::read_dir(&masks).unwrap() {
        let path = entry.unwrap().path();
        let (mut mask, _) = wsunet::data::read_mask(&path, None).unwrap();
        let w = mask.width;
        for (p, v) in mask.data.iter_mut().enumerate() {
            let (x, y) = (p % w, p / w);
            *v = (x % 16 < 6 && y % 16 < 6) as u16;
        }
        wsunet::data::write_label_png(&path, &mask).unwrap();
    }
    std::fs::remove_file(dir.path().join("train").join("classes.json")).unwrap();
    let config = tiny_model_config(dir.path(), 3);
    let mut args = tiny_train_args(
        &dir.path().join("train"),
        &config,
        1,
        &dir.path().join("r2"),
    );
    args.extend(["--task".into(), "instances".into(), "--plan-only".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = wsunet(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        all.contains("look like class masks, not instance labels"),
        "{all}"
    );

    // An instance model has three classes.
    let o = wsunet(&[
        "train",
        "--data",
        dir.path().join("train").to_str().unwrap(),
        "--task",
        "instances",
        "--num-classes",
        "4",
        "--plan-only",
    ]);
    fails_with(&o, "num_classes 4 with task instances");
}
