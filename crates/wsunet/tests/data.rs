//! Data loading on small files the tests write: every layout, image and mask
//! kind, each bad-input case (the message must name the file), Burn's loader
//! with workers, and deterministic augmentation.

use std::path::Path;

use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataset::Dataset;
use burn::tensor::Device;
use image::{ImageBuffer, Luma, LumaA, Rgb, Rgba};
use npyz::WriterBuilder;
use wsunet::data::write_mask_png;
use wsunet::data::{
    AugmentConfig, ClassList, Mask, MaskKind, Mode, Normalize, SampleSpec, SegBatcher, SegDataset,
    discover, read_image, read_mask,
};
use wsunet::data::{channel_stats, check_dataset};
use wsunet::data::{file_samples, shapes_samples};

fn rgb_image(path: &Path, w: u32, h: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    ImageBuffer::from_fn(w, h, |x, y| Rgb([(x * 10) as u8, (y * 10) as u8, 77u8]))
        .save(path)
        .unwrap();
}

fn gray_mask(path: &Path, w: u32, h: u32, f: impl Fn(u32, u32) -> u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    ImageBuffer::from_fn(w, h, |x, y| Luma([f(x, y)]))
        .save(path)
        .unwrap();
}

fn spec(num_classes: usize, in_channels: usize) -> SampleSpec {
    SampleSpec {
        num_classes,
        ignore_index: Some(255),
        in_channels,
        classes: None,
        instances: None,
    }
}

/// The training split of `files`, whole images (no augmentation).
fn eval_dataset(files: &wsunet::data::DatasetFiles) -> SegDataset {
    SegDataset::new(
        file_samples(&files.train),
        spec(3, 3),
        Normalize::neutral(3),
        Mode::Eval,
        0,
    )
    .unwrap()
}

/// A folder dataset of `n` 40×36 RGB images with gray masks (0, 1, 2, 255).
fn folder_dataset(root: &Path, n: usize) {
    for i in 0..n {
        rgb_image(&root.join(format!("images/s{i}.png")), 40, 36);
        gray_mask(&root.join(format!("masks/s{i}.png")), 40, 36, |x, y| {
            if y == 0 { 255 } else { ((x / 14) % 3) as u8 }
        });
    }
}

#[test]
fn folder_layout_loads_through_burns_loader_with_workers() {
    let dir = tempfile::tempdir().unwrap();
    folder_dataset(dir.path(), 6);
    let files = discover(dir.path(), 0.34, 3).unwrap();
    assert_eq!((files.train.len(), files.val.len()), (4, 2));
    let train = SegDataset::new(
        file_samples(&files.train),
        spec(3, 3),
        Normalize::neutral(3),
        Mode::Train {
            augment: AugmentConfig::default(),
            size: [32, 48],
        },
        5,
    )
    .unwrap();
    let loader = DataLoaderBuilder::new(SegBatcher { ignore_label: 255 })
        .batch_size(3)
        .shuffle(1)
        .num_workers(2)
        .set_device(Device::flex())
        .build(train);
    let batches: Vec<_> = loader.iter().map(|b| b.expect("good data")).collect();
    // Each worker batches its own share of the items.
    assert_eq!(batches.iter().map(|b| b.names.len()).sum::<usize>(), 4);
    for b in &batches {
        let n = b.names.len();
        assert!(n <= 3);
        assert_eq!(b.images.dims(), [n, 3, 32, 48]);
        assert_eq!(b.masks.dims(), [n, 32, 48]);
    }
    let labels = batches[0]
        .masks
        .clone()
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .unwrap();
    assert!(
        labels.iter().all(|l| [0, 1, 2, 255].contains(l)),
        "labels took new values"
    );
}

#[test]
fn augmentation_is_deterministic_per_epoch_whatever_the_workers() {
    let dir = tempfile::tempdir().unwrap();
    folder_dataset(dir.path(), 4);
    let files = discover(dir.path(), 0.0, 3).unwrap();
    let make = || {
        SegDataset::new(
            file_samples(&files.train),
            spec(3, 3),
            Normalize::neutral(3),
            Mode::Train {
                augment: AugmentConfig::default(),
                size: [32, 32],
            },
            11,
        )
        .unwrap()
    };
    let epoch = |workers: usize, ds: SegDataset| {
        let mut out: Vec<(String, Vec<f32>)> = Vec::new();
        for e in 0..2 {
            let loader = DataLoaderBuilder::new(SegBatcher { ignore_label: 255 })
                .batch_size(1)
                .num_workers(workers)
                .set_device(Device::flex())
                .build(ds.at_epoch(e));
            for b in loader.iter() {
                let b = b.unwrap();
                out.push((
                    b.names[0].clone(),
                    b.images.into_data().try_into_vec::<f32>().unwrap(),
                ));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    };
    let single = epoch(0, make());
    let multi = epoch(3, make());
    assert_eq!(single.len(), 8);
    let mut single_sorted = single.clone();
    let mut multi_sorted = multi.clone();
    single_sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    multi_sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(single_sorted, multi_sorted);
    // Epochs differ: the two fetches of one item are not the same crop.
    assert_ne!(single[0].1, single[1].1);

    // Resuming at epoch 1 reproduces the second epoch, and fetching is
    // pure: the same item of the same epoch, however often asked.
    let resumed = make().at_epoch(1);
    let first = make();
    assert_eq!(first.get(0).unwrap(), first.get(0).unwrap());
    assert_eq!(first.item_at(0, 1).unwrap(), resumed.get(0).unwrap());
}

#[test]
fn eval_batches_pad_whole_images_with_ignore() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    rgb_image(&r.join("images/a.png"), 40, 36);
    gray_mask(&r.join("masks/a.png"), 40, 36, |_, _| 1);
    rgb_image(&r.join("images/b.png"), 20, 50);
    gray_mask(&r.join("masks/b.png"), 20, 50, |_, _| 2);
    let files = discover(r, 0.0, 1).unwrap();
    let ds = eval_dataset(&files);
    let loader = DataLoaderBuilder::new(SegBatcher { ignore_label: 255 })
        .batch_size(2)
        .set_device(Device::flex())
        .build(ds);
    let batch = loader.iter().next().unwrap().unwrap();
    assert_eq!(batch.images.dims(), [2, 3, 50, 40]);
    let labels = batch
        .masks
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .unwrap();
    let count = |v| labels.iter().filter(|&&l| l == v).count();
    assert_eq!(count(1), 40 * 36);
    assert_eq!(count(2), 20 * 50);
    assert_eq!(count(255), 2 * 50 * 40 - 40 * 36 - 20 * 50);
}

#[test]
fn mask_kinds_read_as_class_indices() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    // Palette PNG: index 2 has colour (0,128,0); it must read as 2, not as a colour.
    let palette_path = r.join("palette.png");
    let mask = Mask::new(2, 3, vec![0, 1, 2, 2, 1, 0]);
    write_mask_png(&palette_path, &mask, &ClassList::numbered(3)).unwrap();
    let (read, kind) = read_mask(&palette_path, None).unwrap();
    assert_eq!((read, kind), (mask.clone(), MaskKind::Palette));

    // 16-bit grayscale values above 255.
    let p16 = r.join("gray16.png");
    ImageBuffer::from_fn(3, 2, |x, y| Luma([(x + 3 * y) as u16 * 100]))
        .save(&p16)
        .unwrap();
    let (read, kind) = read_mask(&p16, None).unwrap();
    assert_eq!(kind, MaskKind::Gray16);
    assert_eq!(read.data, vec![0, 100, 200, 300, 400, 500]);

    // 8-bit gray with alpha: alpha ignored.
    let pla = r.join("la.png");
    ImageBuffer::from_fn(2, 1, |x, _| LumaA([x as u8 + 1, 7u8]))
        .save(&pla)
        .unwrap();
    assert_eq!(read_mask(&pla, None).unwrap().0.data, vec![1, 2]);

    // RGB mask through classes.json.
    let classes: ClassList = serde_json::from_str(
        r#"[{"name": "bg", "color": [0, 0, 0]}, {"name": "cell", "color": [255, 0, 0]}]"#,
    )
    .unwrap();
    let prgb = r.join("rgb.png");
    ImageBuffer::from_fn(2, 2, |x, _| {
        if x == 0 {
            Rgb([0u8, 0, 0])
        } else {
            Rgb([255, 0, 0])
        }
    })
    .save(&prgb)
    .unwrap();
    let (read, kind) = read_mask(&prgb, Some(&classes)).unwrap();
    assert_eq!((read.data, kind), (vec![0, 1, 0, 1], MaskKind::Rgb));
    let err = read_mask(&prgb, None).unwrap_err().to_string();
    assert!(
        err.contains("rgb.png") && err.contains("classes.json"),
        "{err}"
    );
    let prgb_bad = r.join("rgb_bad.png");
    ImageBuffer::from_fn(2, 2, |x, _| {
        if x == 0 {
            Rgb([0u8, 0, 0])
        } else {
            Rgb([0, 0, 255])
        }
    })
    .save(&prgb_bad)
    .unwrap();
    let err = read_mask(&prgb_bad, Some(&classes))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("rgb_bad.png")
            && err.contains("[0, 0, 255] (2 px)")
            && err.contains("not in classes.json"),
        "{err}"
    );
}

#[test]
fn image_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    let g16 = r.join("g16.png");
    ImageBuffer::from_fn(2, 1, |x, _| Luma([x as u16 * 65535]))
        .save(&g16)
        .unwrap();
    let img = read_image(&g16).unwrap();
    assert_eq!((img.channels, img.data.clone()), (1, vec![0.0, 1.0]));

    let rgba = r.join("rgba.png");
    ImageBuffer::from_fn(1, 1, |_, _| Rgba([255u8, 0, 51, 0]))
        .save(&rgba)
        .unwrap();
    let img = read_image(&rgba).unwrap();
    assert_eq!((img.channels, img.data.clone()), (3, vec![1.0, 0.0, 0.2]));

    let jpg = r.join("photo.jpg");
    ImageBuffer::from_fn(8, 8, |_, _| Rgb([200u8, 100, 50]))
        .save(&jpg)
        .unwrap();
    assert_eq!(read_image(&jpg).unwrap().channels, 3);

    // npy float32 [C, H, W] used as-is (any range, any channel count).
    let npy = r.join("multi.npy");
    let values: Vec<f32> = (0..4 * 2 * 3).map(|v| v as f32 * 10.0 - 50.0).collect();
    write_npy(&npy, &[4, 2, 3], &values);
    let img = read_image(&npy).unwrap();
    assert_eq!((img.channels, img.height, img.width), (4, 2, 3));
    assert_eq!(img.data, values);

    let npy64 = r.join("f64.npy");
    let mut out = npyz::WriteOptions::<f64>::new()
        .default_dtype()
        .shape(&[1, 2, 2])
        .writer(std::fs::File::create(&npy64).unwrap())
        .begin_nd()
        .unwrap();
    out.extend([1.0f64, 2.0, 3.0, 4.0]).unwrap();
    out.finish().unwrap();
    let err = read_image(&npy64).unwrap_err().to_string();
    assert!(err.contains("f64.npy") && err.contains("float32"), "{err}");
}

fn write_npy(path: &Path, shape: &[u64], values: &[f32]) {
    let mut out = npyz::WriteOptions::<f32>::new()
        .default_dtype()
        .shape(shape)
        .writer(std::fs::File::create(path).unwrap())
        .begin_nd()
        .unwrap();
    out.extend(values.iter().copied()).unwrap();
    out.finish().unwrap();
}

/// Loads every training sample of a one-sample folder dataset.
fn load_one(root: &Path, spec: &SampleSpec) -> String {
    let files = discover(root, 0.0, 1).unwrap();
    let samples = file_samples(&files.train);
    spec.load(&samples[0])
        .map(|_| "ok".into())
        .unwrap_or_else(|e| e.to_string())
}

#[test]
fn bad_files_are_clear_errors_naming_the_file() {
    // Truncated image.
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    rgb_image(&r.join("images/t.png"), 40, 36);
    let bytes = std::fs::read(r.join("images/t.png")).unwrap();
    std::fs::write(r.join("images/t.png"), &bytes[..bytes.len() / 2]).unwrap();
    gray_mask(&r.join("masks/t.png"), 40, 36, |_, _| 0);
    let err = load_one(r, &spec(2, 3));
    assert!(
        err.contains("images/t.png") && err.contains("cannot decode"),
        "{err}"
    );

    // Size mismatch.
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    rgb_image(&r.join("images/s.png"), 40, 36);
    gray_mask(&r.join("masks/s.png"), 40, 30, |_, _| 0);
    let err = load_one(r, &spec(2, 3));
    assert!(
        err.contains("masks/s.png")
            && err.contains("40")
            && err.contains("30×40")
            && err.contains("36×40"),
        "{err}"
    );

    // A 0/255 binary mask when 255 is not ignored.
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    rgb_image(&r.join("images/b.png"), 40, 36);
    gray_mask(
        &r.join("masks/b.png"),
        40,
        36,
        |x, _| if x < 20 { 0 } else { 255 },
    );
    let no_ignore = SampleSpec {
        ignore_index: None,
        ..spec(2, 3)
    };
    let err = load_one(r, &no_ignore);
    assert!(
        err.contains("masks/b.png")
            && err.contains("255 (720 px)")
            && err.contains("0/255 binary mask"),
        "{err}"
    );

    // Values beyond the classes.
    gray_mask(
        &r.join("masks/b.png"),
        40,
        36,
        |x, _| if x < 20 { 0 } else { 7 },
    );
    let err = load_one(r, &spec(4, 3));
    assert!(
        err.contains("masks/b.png")
            && err.contains("7 (720 px)")
            && err.contains("set num_classes to 8"),
        "{err}"
    );

    // Channel count that does not match the model.
    gray_mask(&r.join("masks/b.png"), 40, 36, |_, _| 1);
    let err = load_one(r, &spec(4, 1));
    assert!(
        err.contains("images/b.png") && err.contains("3 channel(s) but the model takes 1"),
        "{err}"
    );

    // An empty dataset.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("images")).unwrap();
    std::fs::create_dir_all(dir.path().join("masks")).unwrap();
    let files = discover(dir.path(), 0.2, 1).unwrap();
    let err = SegDataset::new(
        file_samples(&files.train),
        spec(2, 3),
        Normalize::neutral(3),
        Mode::Eval,
        0,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("no samples"), "{err}");
}

#[test]
fn a_bad_file_reaches_the_caller_as_an_error_not_a_crashed_worker() {
    let dir = tempfile::tempdir().unwrap();
    folder_dataset(dir.path(), 4);
    std::fs::write(dir.path().join("images/s2.png"), b"garbage").unwrap();
    let files = discover(dir.path(), 0.0, 1).unwrap();
    let ds = eval_dataset(&files);
    let loader = DataLoaderBuilder::new(SegBatcher { ignore_label: 255 })
        .batch_size(1)
        .num_workers(2)
        .set_device(Device::flex())
        .build(ds);
    let results: Vec<_> = loader.iter().collect();
    let errors: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(|e| e.to_string())
        .collect();
    assert!(!errors.is_empty(), "the bad file was not reported");
    assert!(errors[0].contains("images/s2.png"), "{errors:?}");
}

#[test]
fn check_reports_every_problem_and_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    folder_dataset(r, 5);
    std::fs::write(r.join("images/s1.png"), b"garbage").unwrap();
    gray_mask(&r.join("masks/s3.png"), 40, 36, |_, _| 9);
    gray_mask(&r.join("masks/s4.png"), 10, 10, |_, _| 0);
    rgb_image(&r.join("images/lonely.png"), 40, 36);
    let files = discover(r, 0.0, 1).unwrap();
    let report = check_dataset(&files, Some(3), Some(255), Some(3));
    let all = report.problems.join("\n");
    assert_eq!(report.problems.len(), 4, "{all}");
    assert!(all.contains("lonely.png: no mask"), "{all}");
    assert!(
        all.contains("images/s1.png") && all.contains("cannot decode"),
        "{all}"
    );
    assert!(
        all.contains("masks/s3.png") && all.contains("9 (1440 px)"),
        "{all}"
    );
    assert!(
        all.contains("masks/s4.png") && all.contains("10×10"),
        "{all}"
    );
    assert_eq!(report.train, 2);
    assert_eq!(report.size_range, [[36, 40], [36, 40]]);
    // Two good masks: 40 ignore pixels each, the rest split by x / 14 % 3.
    assert_eq!(report.ignored_pixels, 80);
    assert_eq!(
        report.class_pixels,
        vec![2 * 14 * 35, 2 * 14 * 35, 2 * 12 * 35]
    );

    let stats = channel_stats(&files.train[..1]).unwrap();
    // Blue is constant 77/255; red is (10·x mod 256)/255 over x.
    assert!(
        (stats.mean[2] - 77.0 / 255.0).abs() < 1e-6 && stats.std[2] < 1e-3,
        "{stats:?}"
    );
    let red: Vec<f32> = (0..40u32).map(|x| (x * 10) as u8 as f32 / 255.0).collect();
    let mean = red.iter().sum::<f32>() / 40.0;
    let std = (red.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 40.0).sqrt();
    assert!(
        (stats.mean[0] - mean).abs() < 1e-5 && (stats.std[0] - std).abs() < 1e-4,
        "{stats:?} vs {mean} {std}"
    );
}

#[test]
fn shapes_samples_load_like_files() {
    let ds = SegDataset::new(
        shapes_samples(3, 0, 4, 64),
        SampleSpec {
            classes: Some(wsunet::data::shapes_classes()),
            ..spec(4, 3)
        },
        Normalize::neutral(3),
        Mode::Eval,
        0,
    )
    .unwrap();
    let a = ds.item_at(2, 0).unwrap();
    assert_eq!((a.image.channels, a.mask.height), (3, 64));
    assert_eq!(ds.get(2).unwrap(), a);
    assert!(a.mask.data.iter().all(|&v| v < 4));
}

#[test]
fn preflight_refuses_bad_samples_or_skips_them_when_asked() {
    use wsunet::data::usable_samples;
    let dir = tempfile::tempdir().unwrap();
    folder_dataset(dir.path(), 5);
    std::fs::write(dir.path().join("images/s1.png"), b"junk").unwrap();
    gray_mask(&dir.path().join("masks/s3.png"), 40, 36, |_, _| 9);
    let files = discover(dir.path(), 0.0, 1).unwrap();
    let samples = file_samples(&files.train);
    let err = usable_samples(samples.clone(), &spec(3, 3), false)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("2 of 5 samples cannot be used"), "{err}");
    assert!(
        err.contains("images/s1.png") && err.contains("masks/s3.png") && err.contains("skip_bad"),
        "{err}"
    );
    let (good, warnings) = usable_samples(samples, &spec(3, 3), true).unwrap();
    assert_eq!(good.len(), 3);
    assert_eq!(warnings.len(), 2);
    assert!(
        warnings.iter().all(|w| w.starts_with("skipped: ")),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("s1.png"))
            && warnings.iter().any(|w| w.contains("s3.png")),
        "{warnings:?}"
    );
}

/// Training and `data check` agree on the input channel count: the most
/// common count (the first one seen on a tie), whatever image comes first.
#[test]
fn mixed_channel_counts_follow_one_rule_in_check_and_training() {
    use wsunet::TrainConfig;
    use wsunet::data::{input_channels, prepare};
    assert_eq!(input_channels(&[1, 3, 3]), Some(3));
    assert_eq!(input_channels(&[3, 1, 1, 3]), Some(3));
    assert_eq!(input_channels(&[1, 3]), Some(1));
    assert_eq!(input_channels(&[]), None);

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // The gray image sorts first in the training split.
    let gray = root.join("train/images/a0.png");
    std::fs::create_dir_all(gray.parent().unwrap()).unwrap();
    ImageBuffer::from_fn(40, 36, |x, _| Luma([x as u8]))
        .save(&gray)
        .unwrap();
    gray_mask(&root.join("train/masks/a0.png"), 40, 36, |x, _| {
        (x % 2) as u8
    });
    for i in 1..4 {
        rgb_image(&root.join(format!("train/images/s{i}.png")), 40, 36);
        gray_mask(
            &root.join(format!("train/masks/s{i}.png")),
            40,
            36,
            |x, _| (x % 2) as u8,
        );
    }
    rgb_image(&root.join("val/images/v0.png"), 40, 36);
    gray_mask(&root.join("val/masks/v0.png"), 40, 36, |x, _| (x % 2) as u8);

    let files = discover(root, 0.2, 1).unwrap();
    let report = check_dataset(&files, None, Some(255), None);
    assert_eq!(report.train, 3, "{:?}", report.problems);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("a0.png") && p.contains("has 1 channel(s) but the model takes 3")),
        "{:?}",
        report.problems
    );

    let settings = |skip_bad| {
        TrainConfig {
            data: Some(root.to_path_buf()),
            skip_bad,
            ..TrainConfig::default()
        }
        .data_settings()
    };
    let err = prepare(&settings(false)).unwrap_err().to_string();
    assert!(err.contains("a0.png") && err.contains("channel"), "{err}");
    let prepared = prepare(&settings(true)).unwrap();
    assert_eq!(prepared.facts.in_channels, 3);
    assert_eq!(prepared.train.len(), 3);
}
