//! End-to-end tests of the `wsunet` binary: output, exit codes and messages.

mod common;

use common::*;
use std::process::Command;

#[test]
fn info_prints_the_default_architecture() {
    let o = wsunet(&["info"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("11,348,260"), "{out}");
    assert!(
        out.contains("stage4        1    256 → 512     /32         8×8"),
        "{out}"
    );
    assert!(
        out.contains("head          1       32 → 4      /1     256×256"),
        "{out}"
    );
}

#[test]
fn info_json_with_config_file_and_device_check() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("m.json");
    std::fs::write(
        &config,
        r#"{"num_classes": 2, "in_channels": 1, "widths": [8, 8, 16, 16, 16], "groups": 4, "standardization": "scaled"}"#,
    )
    .unwrap();
    let o = wsunet(&[
        "info",
        "--config",
        config.to_str().unwrap(),
        "--num-classes",
        "5",
        "--size",
        "77x101",
        "--device",
        "cpu",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(doc["config"]["num_classes"], 5);
    assert_eq!(doc["config"]["standardization"], "scaled");
    assert_eq!(doc["input"], serde_json::json!([1, 77, 101]));
    assert_eq!(doc["parts"][0]["size"], serde_json::json!([39, 51]));
    assert_eq!(doc["device_check"]["device"], "cpu");
    let total: u64 = doc["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["params"].as_u64().unwrap())
        .sum();
    assert_eq!(doc["params"].as_u64().unwrap(), total);
}

#[test]
fn bad_input_is_one_error_line_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("typo.json");
    std::fs::write(&typo, r#"{"num_classes": 2, "width": [1]}"#).unwrap();
    let typo = typo.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["info", "--num-classes", "0"],
            "fix --num-classes: invalid model config: num_classes is 0",
        ),
        (
            &["info", "--size", "20", "--device", "cpu"],
            "fix --size: invalid input: the image is 20×20",
        ),
        (
            &["info", "--device", "tpu"],
            "fix --device: invalid device `tpu`",
        ),
        (
            &["info", "--model-config", "/no/such/file.json"],
            "fix --model-config: /no/such/file.json: No such file",
        ),
        // `--config` is the older spelling of `--model-config`.
        (&["info", "--config", typo], "unknown field `width`"),
    ];
    for (args, needle) in cases {
        let o = wsunet(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = stderr(&o);
        assert!(
            err.starts_with("error: ") && err.contains(needle),
            "{args:?}: {err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn every_command_has_help() {
    for args in [
        &["--help"][..],
        &["info", "--help"],
        &["synth", "--help"],
        &["data", "--help"],
        &["data", "check", "--help"],
        &["data", "stats", "--help"],
        &["train", "--help"],
        &["study", "--help"],
        &["eval", "--help"],
        &["predict", "--help"],
        &["bench", "--help"],
        &["import", "--help"],
        &["export", "--help"],
    ] {
        let o = wsunet(args);
        assert!(o.status.success());
        assert!(stdout(&o).contains("Usage: wsunet"), "{args:?}");
    }
}

#[test]
fn synth_writes_a_dataset_that_checks_clean() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("shapes");
    let out_s = out.to_str().unwrap();
    let o = wsunet(&[
        "synth", "--out", out_s, "--count", "12", "--size", "48", "--seed", "3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("wrote 12 samples of 48×48 (seed 3)"));
    assert!(out.join("classes.json").is_file());
    let first = std::fs::read(out.join("masks/shape_00000.png")).unwrap();

    // Same seed, same bytes; a second run into the folder needs --force.
    let o = wsunet(&[
        "synth", "--out", out_s, "--count", "12", "--size", "48", "--seed", "3",
    ]);
    fails_with(&o, "--force");
    let o = wsunet(&[
        "synth", "--out", out_s, "--count", "12", "--size", "48", "--seed", "3", "--force",
    ]);
    assert!(o.status.success());
    assert_eq!(
        std::fs::read(out.join("masks/shape_00000.png")).unwrap(),
        first
    );

    let o = wsunet(&["data", "check", out_s, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        report["train"].as_u64().unwrap() + report["val"].as_u64().unwrap(),
        12
    );
    assert_eq!(
        report["classes"],
        serde_json::json!(["background", "circle", "rectangle", "triangle"])
    );
    assert_eq!(report["mask_kinds"]["Palette"], 12);

    let o = wsunet(&["data", "stats", out_s, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stats: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(stats["normalize"]["mean"].as_array().unwrap().len(), 3);
}

#[test]
fn synth_scene_is_a_mosaic_of_the_datasets_samples() {
    let dir = tempfile::tempdir().unwrap();
    let scene = dir.path().join("scene.tif");
    let o = wsunet(&[
        "synth",
        "--scene",
        "200",
        "--size",
        "64",
        "--count",
        "3",
        "--seed",
        "2",
        "--out",
        scene.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = wsunet(&[
        "synth",
        "--count",
        "3",
        "--size",
        "64",
        "--seed",
        "2",
        "--out",
        dir.path().join("ds").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let samples: Vec<(wsunet::data::Image, Vec<u16>)> = (0..3)
        .map(|i| {
            let name = format!("shape_{i:05}.png");
            let image = wsunet::data::read_image(&dir.path().join("ds/images").join(&name));
            let (mask, _) =
                wsunet::data::read_mask(&dir.path().join("ds/masks").join(&name), None).unwrap();
            (image.unwrap(), mask.data)
        })
        .collect();
    let image = wsunet::data::read_image(&scene).unwrap();
    let (h, w, mask) = wsunet::raster::read_tiff_mask(&dir.path().join("scene_mask.tif")).unwrap();
    assert_eq!(
        (image.channels, image.height, image.width, h, w),
        (3, 200, 200, 200, 200)
    );
    // Every 64-pixel cell (cut at the right and bottom edges) is one of the
    // samples, its image and its mask.
    for (gy, gx) in (0..4).flat_map(|gy| (0..4).map(move |gx| (gy, gx))) {
        let cell: Vec<(usize, usize)> = (gy * 64..(gy * 64 + 64).min(200))
            .flat_map(|y| (gx * 64..(gx * 64 + 64).min(200)).map(move |x| (y, x)))
            .collect();
        let same = |(si, sm): &(wsunet::data::Image, Vec<u16>)| {
            cell.iter().all(|&(y, x)| {
                let (sy, sx) = (y % 64, x % 64);
                mask[y * 200 + x] == sm[sy * 64 + sx]
                    && (0..3).all(|c| {
                        image.data[(c * 200 + y) * 200 + x] == si.data[(c * 64 + sy) * 64 + sx]
                    })
            })
        };
        assert!(samples.iter().any(same), "cell ({gy}, {gx})");
    }
}

#[test]
fn data_check_lists_every_problem_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    synth(root, 4, 40);
    std::fs::write(root.join("images/shape_00001.png"), b"junk").unwrap();
    std::fs::remove_file(root.join("masks/shape_00002.png")).unwrap();
    let o = wsunet(&["data", "check", root.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.contains("problem: ")
            && out.contains("shape_00001.png")
            && out.contains("cannot decode"),
        "{out}"
    );
    assert!(out.contains("shape_00002.png: no mask"), "{out}");
    assert!(stderr(&o).contains("2 problem(s) found"), "{}", stderr(&o));
    let o = wsunet(&["data", "check", "/no/such/dir"]);
    fails_with(&o, "/no/such/dir is not a folder");
}

#[test]
fn train_then_eval_on_a_generated_folder() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synth(&data, 10, 40);
    let model = tiny_model_config(dir.path(), 4);
    let run = dir.path().join("run");
    let args = tiny_train_args(&data, &model, 1, &run);
    let o = wsunet(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("8 train, 2 val samples, 4 classes, 3 channel(s)"),
        "{out}"
    );
    assert!(out.contains("epoch 1/1  train loss"), "{out}");
    assert!(out.contains("mIoU") && out.contains("triangle"), "{out}");
    for f in [
        "model.bpk",
        "model.json",
        "metrics.csv",
        "curves.png",
        "config.json",
    ] {
        assert!(run.join(f).is_file(), "{f}");
    }

    let o = wsunet(&[
        "eval",
        "--model",
        run.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--split",
        "all",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("10 samples of"), "{}", stdout(&o));
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("eval.json")).unwrap()).unwrap();
    assert_eq!(doc["samples"], 10);
    assert_eq!(doc["scores"]["classes"].as_array().unwrap().len(), 4);

    // Without --data: the run's own validation split, scored as the run
    // validated it: the 40-px images tiled at the 32-px crop as predict
    // does, so the final epoch's mIoU comes back exactly.
    let o = wsunet(&["eval", "--model", run.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("2 samples of the run's validation split"),
        "{out}"
    );
    assert!(
        out.contains("2 image(s) larger than the tile (32 px) are scored tile by tile"),
        "{out}"
    );
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(run.join(name)).unwrap()).unwrap()
    };
    let (evaluated, validated) = (read("eval.json"), read("scores.json"));
    assert_eq!(evaluated["scores"]["miou"], validated["miou"], "{out}");
    assert_eq!(evaluated["scores"]["classes"], validated["classes"]);

    // Resuming a finished run says how to extend it.
    let o = wsunet(&["train", "--resume", run.to_str().unwrap()]);
    fails_with(&o, "pass --epochs N");
}

/// Ctrl-C (SIGINT) mid-run: the epoch under way finishes and is
/// checkpointed, the run stops with exit code 130 and says how to resume,
/// and resuming continues from that epoch.
#[cfg(unix)] // sends SIGINT with `kill`
#[test]
fn ctrl_c_stops_after_a_checkpointed_epoch_and_resumes() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synth(&data, 40, 40);
    let model = tiny_model_config(dir.path(), 4);
    let run = dir.path().join("run");
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsunet"))
        .args(tiny_train_args(&data, &model, 1000, &run))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once training is under way (a quarter-epoch progress line).
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // (The settings line also says "batch 2": match the progress line.)
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.starts_with("epoch ") && line.contains(" batch ") {
            break;
        }
    }
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(err.contains("Ctrl-C: stopping once this epoch"), "{err}");
    let stopped: usize = err
        .split("stopped after epoch ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no stop line: {err}"));
    assert!(err.contains("wsunet train --resume"), "{err}");
    assert!(stopped < 1000, "{err}");
    let last = out.iter().rev().find(|l| l.contains("train loss")).unwrap();
    assert!(last.starts_with(&format!("epoch {stopped}/1000")), "{last}");
    assert!(
        run.join(format!("checkpoints/epoch-{stopped:04}")).is_dir(),
        "no checkpoint for epoch {stopped}"
    );
    assert!(
        !run.join("model.bpk").exists(),
        "a stopped run has no final model"
    );

    let next = (stopped + 1).to_string();
    let o = wsunet(&[
        "train",
        "--resume",
        run.to_str().unwrap(),
        "--epochs",
        &next,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains(&format!("resuming after epoch {stopped}")),
        "{out}"
    );
    assert!(
        out.contains(&format!("epoch {next}/{next}  train loss")),
        "{out}"
    );
    assert!(run.join("model.bpk").is_file());
}

#[test]
fn train_errors_name_the_fix() {
    let o = wsunet(&["train", "--data", "/no/such/data"]);
    fails_with(&o, "fix --data: /no/such/data is not a folder");
    // clap refuses an unknown name, naming the flag and the choices.
    let o = wsunet(&["train", "--loss", "bce"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("invalid value 'bce' for '--loss")
            && stderr(&o).contains("[possible values: ce, dice, focal, ce+dice]"),
        "{}",
        stderr(&o)
    );
    let o = wsunet(&["train", "--epochs", "0"]);
    fails_with(&o, "epochs is 0");
    assert!(
        stderr(&o).contains("fix --epochs: epochs is 0"),
        "{}",
        stderr(&o)
    );
    // A setting without a flag is named as the config file's field.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("train.json");
    std::fs::write(&config, r#"{"momentum": 1.5}"#).unwrap();
    let o = wsunet(&["train", "--config", config.to_str().unwrap()]);
    fails_with(&o, "fix momentum in --config: momentum is 1.5");
    let o = wsunet(&["eval", "--model", "/no/such/run"]);
    fails_with(&o, "fix --model");
}

#[test]
fn import_then_export_a_pytorch_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = fixtures();
    let pth = fixtures.join("model_seed_wrapped.pth");
    let model = dir.path().join("imported/model");
    let o = wsunet(&[
        "import",
        pth.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
        "--groups",
        "4",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o)
            .contains("widths [8, 16, 16, 32, 32], depths [1, 2, 1, 1], seed standardization"),
        "{}",
        stdout(&o)
    );
    let bpk = model.with_extension("bpk");
    let out = dir.path().join("out.safetensors");
    let o = wsunet(&[
        "export",
        bpk.to_str().unwrap(),
        "--to",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(&out).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(meta.tensors().len(), 77);
    assert!(meta.tensors().contains_key("stage2.1.conv2.gn.weight"));

    // FILE.onnx chooses ONNX.
    let onnx = dir.path().join("model.onnx");
    let o = wsunet(&[
        "export",
        bpk.to_str().unwrap(),
        "--to",
        onnx.to_str().unwrap(),
        "--normalize-input",
        "--argmax",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("(ONNX opset 17,") && out.contains("Conv 26,"),
        "{out}"
    );
    assert!(out.contains("in [0, 1] (the graph normalizes)"), "{out}");
    assert!(out.contains("labels int64 [batch, height, width]"), "{out}");
    // The file is protobuf, not safetensors: it starts with field 1
    // (ir_version 8) as a varint.
    assert_eq!(&std::fs::read(&onnx).unwrap()[..2], &[0x08, 8]);

    // The ONNX-only flags are refused for safetensors. (`--model`/`--out`
    // are the spellings of every command; MODEL and --to above still work.)
    let o = wsunet(&[
        "export",
        "--model",
        bpk.to_str().unwrap(),
        "--out",
        dir.path().join("model.safetensors").to_str().unwrap(),
        "--argmax",
    ]);
    fails_with(&o, "fix --out");

    let not_unet = fixtures.join("ws_conv2d_seed.weights.safetensors");
    let o = wsunet(&[
        "import",
        not_unet.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
    ]);
    fails_with(&o, "no `stem.conv.weight`");
}

#[test]
fn import_instance_reads_group_norm_weights_as_instance_norm() {
    let dir = tempfile::tempdir().unwrap();
    let pth = fixtures().join("model_seed_wrapped.pth");
    let import = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let mut args = vec![
            "import",
            pth.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = wsunet(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let o = wsunet(&[
            "info",
            "--model",
            dir.path()
                .join(name)
                .with_extension("bpk")
                .to_str()
                .unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    let group = import("gn", &["--groups", "4"]);
    let instance = import("in", &["--instance"]);
    assert!(
        group.contains("GroupNorm") && !group.contains("InstanceNorm"),
        "{group}"
    );
    assert!(
        instance.contains("variant ws-in")
            && instance.contains("InstanceNorm (GroupNorm with one channel per group)"),
        "{instance}"
    );
    // The same tensors: only the norm's grouping differs.
    let digest = |info: &str| info.lines().next().unwrap().to_string();
    assert_eq!(digest(&group), digest(&instance));
    // The norm is used: the two models predict different probabilities.
    let data = dir.path().join("data");
    synth(&data, 1, 64);
    let image = data.join("images/shape_00000.png");
    let probs = |name: &str| {
        let out = dir.path().join(format!("pred-{name}"));
        let model = dir.path().join(name).with_extension("bpk");
        let o = predict(&model, &image, &out, &["--probs"]);
        assert!(o.status.success(), "{}", stderr(&o));
        std::fs::read(out.join("shape_00000_probs.npy")).unwrap()
    };
    assert_ne!(probs("gn"), probs("in"));
    // Weights without GroupNorm cannot be read as InstanceNorm.
    let o = wsunet(&[
        "import",
        fixtures()
            .join("model_bn.weights.safetensors")
            .to_str()
            .unwrap(),
        "--out",
        dir.path().join("bn").to_str().unwrap(),
        "--instance",
    ]);
    fails_with(
        &o,
        "has no `gn.*` keys (its norm is batch); drop --instance",
    );
}

#[test]
fn predict_writes_outputs_and_skips_unreadable_images() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = fixtures();
    let model = dir.path().join("model");
    let o = wsunet(&[
        "import",
        fixtures.join("model_seed_wrapped.pth").to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
        "--groups",
        "4",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let model = model.with_extension("bpk");
    let data = dir.path().join("data");
    synth(&data, 2, 80);
    let images = data.join("images");
    std::fs::write(images.join("broken.png"), b"not a png").unwrap();
    let out = dir.path().join("pred");
    let o = wsunet(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--input",
        images.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--overlay",
        "--probs",
        "--logits",
        "--tile",
        "48",
        "--tta",
        "flip",
        "--uncertainty",
    ]);
    // The broken file fails the run but not the other images.
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("broken.png: cannot decode the image") && err.contains("(skipped)"),
        "{err}"
    );
    assert!(err.contains("1 image(s) failed"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let log = stdout(&o);
    assert!(log.contains("2 of 3 image(s) predicted"), "{log}");
    assert!(log.contains("80×80, 4 tile(s)"), "{log}");
    for stem in ["shape_00000", "shape_00001"] {
        let mask = std::fs::read(out.join(format!("{stem}.png"))).unwrap();
        assert!(mask.windows(4).any(|w| w == b"PLTE"), "palette PNG");
        assert!(out.join(format!("{stem}_overlay.png")).is_file());
        for kind in ["probs", "logits"] {
            let npy = std::fs::read(out.join(format!("{stem}_{kind}.npy"))).unwrap();
            let header = String::from_utf8_lossy(&npy[..128]);
            assert!(header.contains("'shape': (3, 80, 80"), "{header}");
            assert!(header.contains("'descr': '<f4'"), "{header}");
        }
        let npy = std::fs::read(out.join(format!("{stem}_uncertainty.npy"))).unwrap();
        let header = String::from_utf8_lossy(&npy[..128]);
        assert!(header.contains("'shape': (2, 80, 80"), "{header}");
        let png = std::fs::read(out.join(format!("{stem}_uncertainty.png"))).unwrap();
        assert_eq!(png[25], 2, "an RGB picture");
    }
    assert!(!out.join("broken.png").exists());
    let o = wsunet(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--input",
        images.join("shape_00000.png").to_str().unwrap(),
        "--out",
        dir.path().join("pred2").to_str().unwrap(),
        "--uncertainty",
    ]);
    fails_with(
        &o,
        "fix --uncertainty: the uncertainty maps need test-time augmentation",
    );

    // Writing into the input folder would overwrite the inputs.
    let o = wsunet(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--input",
        images.to_str().unwrap(),
        "--out",
        images.to_str().unwrap(),
    ]);
    fails_with(&o, "fix --out: writing");
    fails_with(
        &o,
        "would overwrite an input image; choose another output folder",
    );
    let o = wsunet(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--input",
        images.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--overlap",
        "0.95",
    ]);
    fails_with(&o, "fix --overlap: overlap 0.95 is outside [0, 0.9]");
}

#[test]
fn hostile_tiff_headers_are_one_clear_error_not_an_abort() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = fixtures().join("hostile");
    let huge = hostile.join("huge.tif");
    // `info` shows the level and says why it cannot be read.
    let o = wsunet(&["info", "--image", huge.to_str().unwrap()]);
    assert!(stdout(&o).contains("16777216×16777216"), "{}", stdout(&o));
    fails_with(&o, "claims 16777216 × 16777216 pixels");
    let o = wsunet(&[
        "import",
        fixtures().join("model_seed_wrapped.pth").to_str().unwrap(),
        "--out",
        dir.path().join("model").to_str().unwrap(),
        "--groups",
        "4",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    for (name, needle) in [
        ("huge.tif", "claims 16777216 × 16777216 pixels"),
        ("wide.tif", "holds 300 bytes but its pixels need 8000000"),
    ] {
        let out = dir.path().join(name);
        let o = predict(
            &dir.path().join("model.bpk"),
            &hostile.join(name),
            &out,
            &[],
        );
        assert_eq!(o.status.code(), Some(1), "{name}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(name) && err.contains(needle), "{err}");
        assert!(
            !err.contains("panicked") && !err.contains("memory allocation"),
            "{err}"
        );
        let written: Vec<_> = std::fs::read_dir(&out)
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(
            written.iter().all(|n| n == "predict.json"),
            "{name}: {written:?}"
        );
    }
    // A valid 250,000² image whose uncompressed outputs (1.9 TiB) cannot
    // fit the disk is refused before its prediction starts.
    let o = predict(
        &dir.path().join("model.bpk"),
        &hostile.join("vast.tif"),
        &dir.path().join("vast"),
        &[
            "--compression",
            "none",
            "--probs",
            "--probs-type",
            "f32",
            "--logits",
        ],
    );
    fails_with(&o, "vast.tif: its outputs take ");
    fails_with(&o, "GiB uncompressed (mask 77.");
    fails_with(&o, "--compression deflate");
}

#[test]
fn bench_reports_json_and_rejects_bad_phases() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_model_config(dir.path(), 2);
    let c = config.to_str().unwrap();
    let onnx = dir.path().join("bench.onnx");
    let o = wsunet(&[
        "bench",
        "--config",
        c,
        "--size",
        "32x48",
        "--batch-size",
        "1",
        "--reps",
        "2",
        "--warmup",
        "0",
        "--no-ws",
        "--json",
        "--onnx",
        onnx.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(doc["tool"], "wsunet");
    assert_eq!(doc["config"]["standardize"], false);
    // The timed model as ONNX (a ModelProto starts with its ir_version, 8),
    // for another engine to time.
    assert_eq!(&std::fs::read(&onnx).unwrap()[..2], &[0x08, 8]);
    // The train step's parts, in order.
    let parts: Vec<&str> = doc["results"][2]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["part"].as_str().unwrap())
        .collect();
    assert_eq!(parts, ["forward", "loss", "backward", "optimizer"]);
    let phases: Vec<&str> = doc["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["phase"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["inference", "train_forward", "train_step"]);
    assert!(doc["results"][2]["images_per_s"].as_f64().unwrap() > 0.0);
    assert!(
        doc["results"][2].get("kernels").is_none(),
        "only with --layers"
    );
    // --layers: the per-kernel table after the phases.
    let o = wsunet(&[
        "bench",
        "--config",
        c,
        "--size",
        "32",
        "--reps",
        "1",
        "--warmup",
        "0",
        "--phases",
        "train_step",
        "--layers",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for want in [
        "conv weight gradient",
        "% peak",
        "outside these kernels",
        "GFLOP per repetition",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }

    // clap refuses an unknown phase and lists the phases.
    let o = wsunet(&["bench", "--config", c, "--size", "32", "--phases", "warp"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("invalid value 'warp' for '--phases")
            && stderr(&o).contains("inference, train_forward, train_step"),
        "{}",
        stderr(&o)
    );
    let o = wsunet(&["bench", "--config", c, "--size", "16"]);
    fails_with(&o, "at least 32×32");
    let o = wsunet(&[
        "bench",
        "--config",
        c,
        "--size",
        "32",
        "--onnx",
        "/no/such/dir/b.onnx",
    ]);
    fails_with(&o, "fix --onnx");
}

/// Float32 tensors of a safetensors file by name.
fn read_tensors(
    path: &std::path::Path,
) -> std::collections::BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            (name, (view.shape().to_vec(), values))
        })
        .collect()
}

#[test]
fn an_imported_state_dict_runs_on_raw_arrays_as_pytorch_does() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("imported");
    let o = wsunet(&[
        "import",
        fixtures()
            .join("model_seed.weights.safetensors")
            .to_str()
            .unwrap(),
        "--out",
        model.to_str().unwrap(),
        "--groups",
        "4",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("no input normalization given") && stdout(&o).contains("--mean"),
        "{}",
        stdout(&o)
    );
    // The twin's first input image as a raw [C, H, W] array.
    let io = read_tensors(&fixtures().join("model_seed.io.safetensors"));
    let (shape, input) = &io["input"];
    let (_, output) = &io["output"];
    let (c, h, w) = (shape[1], shape[2], shape[3]);
    let npy = dir.path().join("x.npy");
    wsunet::data::write_npy(&npy, &[c, h, w], &input[..c * h * w]).unwrap();
    let out = dir.path().join("pred");
    let o = wsunet(&[
        "predict",
        "--model",
        model.with_extension("bpk").to_str().unwrap(),
        "--input",
        npy.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--logits",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let logits = wsunet::data::read_image(&out.join("x_logits.npy")).unwrap();
    let expected = &output[..logits.data.len()];
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = logits
        .data
        .iter()
        .zip(expected)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        diff / scale < 1e-4,
        "logits differ from the twin's by {}",
        diff / scale
    );
}

#[test]
fn eval_and_resume_keep_to_the_runs_own_settings() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synth(&data, 12, 40);
    let model = tiny_model_config(dir.path(), 4);
    let run = dir.path().join("run");
    let mut args = tiny_train_args(&data, &model, 1, &run);
    args.extend(["--seed", "3", "--val-fraction", "0.3"].map(String::from));
    let o = wsunet(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    let run_s = run.to_str().unwrap();

    // A setting next to --resume is refused, naming the flag.
    let o = wsunet(&["train", "--resume", run_s, "--lr", "0.1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("'--lr <LR>'") && stderr(&o).contains("--resume"),
        "{}",
        stderr(&o)
    );
    // --device applies before the run's stored device is opened: a run
    // from a machine with a GPU this build lacks continues on the CPU.
    let config_path = run.join("config.json");
    let text = std::fs::read_to_string(&config_path).unwrap();
    std::fs::write(
        &config_path,
        text.replace(r#""device": "cpu""#, r#""device": "vulkan:3""#),
    )
    .unwrap();
    let o = wsunet(&[
        "train", "--resume", run_s, "--epochs", "2", "--device", "cpu",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("epoch 2/2"), "{}", stdout(&o));
    let resolved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    assert_eq!(resolved["device"], "cpu");

    // eval on the run's data uses the run's holdout, and so reproduces its
    // final validation scores.
    let o = wsunet(&["eval", "--model", run_s, "--data", data.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("holdout split of the run (val_fraction 0.3 and seed 3"),
        "{}",
        stdout(&o)
    );
    let read = |p: &std::path::Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let trained = read(&run.join("scores.json"))["miou"].as_f64().unwrap();
    let evaluated = read(&run.join("eval.json"))["scores"]["miou"]
        .as_f64()
        .unwrap();
    assert!(
        (trained - evaluated).abs() < 1e-4,
        "{trained} vs {evaluated}"
    );
    // Another split of the run's own data is allowed, with a warning.
    let o = wsunet(&[
        "eval",
        "--model",
        run_s,
        "--data",
        data.to_str().unwrap(),
        "--seed",
        "0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("may include its training images")
            && stderr(&o).contains("leave out --val-fraction and --seed"),
        "{}",
        stderr(&o)
    );

    // predict tiles at the training crop (32) unless told otherwise.
    let o = wsunet(&[
        "predict",
        "--model",
        run_s,
        "--input",
        data.join("images").to_str().unwrap(),
        "--out",
        dir.path().join("pred").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("tile 32: the model's training crop (32×32)")
            && stdout(&o).contains("4 tile(s)"),
        "{}",
        stdout(&o)
    );

    // Without --data, eval reads only the validation files and writes
    // nothing but its scores: a broken training image does not matter.
    let config = wsunet::train::TrainConfig::from_file(&config_path).unwrap();
    let (train, _) =
        wsunet::data::split_samples(&config.data_settings(), wsunet::data::Split::Train).unwrap();
    let wsunet::data::Sample::Files(first) = &train[0] else {
        panic!("file samples expected")
    };
    std::fs::write(&first.image, b"not a png").unwrap();
    let before = std::fs::read(&config_path).unwrap();
    let o = wsunet(&["eval", "--model", run_s]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("4 samples of the run's validation split"),
        "{}",
        stdout(&o)
    );
    assert_eq!(std::fs::read(&config_path).unwrap(), before);
}

/// A two-variant, two-batch-size study on a tiny shapes set: every output
/// file, run directories that evaluate, and a rerun that redoes nothing.
#[test]
fn study_writes_its_outputs_and_continues_without_redoing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tiny.json");
    std::fs::write(
        &config,
        r#"{"shapes": {"train": 4, "val": 2, "size": 48, "seed": 3},
            "model": {"widths": [4, 8, 8, 8, 8], "groups": 2}}"#,
    )
    .unwrap();
    let out = dir.path().join("study");
    let args = [
        "study",
        "--config",
        config.to_str().unwrap(),
        "--variants",
        "ws-gn,bn",
        "--batch-sizes",
        "2,4",
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--out",
        out.to_str().unwrap(),
    ];
    let o = wsunet(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("run 4/4: bn batch 4"), "{text}");
    assert!(
        text.contains("| ws-gn | 2 |") && text.contains("| bn | 4 |"),
        "{text}"
    );
    for file in ["study.csv", "study.json", "study.md", "study.png"] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    let csv = std::fs::read_to_string(out.join("study.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("study.json")).unwrap()).unwrap();
    assert_eq!(doc["cells"].as_array().unwrap().len(), 4);
    // A run is an ordinary run directory: its model evaluates.
    let model = out.join("runs/bn-b2-lr1-s0/model.bpk");
    assert!(model.is_file());
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(card["model"]["norm"], "batch");
    assert_eq!(card["model"]["standardization"], "none");

    // Rerun: every run is read back, none trained again.
    let stamp = std::fs::metadata(&model).unwrap().modified().unwrap();
    let o = wsunet(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).matches("(finished before)").count(), 4);
    assert_eq!(
        std::fs::metadata(&model).unwrap().modified().unwrap(),
        stamp
    );
}

#[test]
fn bad_study_arguments_are_one_clear_error_each() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s");
    let out = out.to_str().unwrap();
    for (args, expected) in [
        (vec!["--variants", "ws-gn,group"], "unknown variant `group`"),
        (vec!["--batch-sizes", "2,0"], "batch size is 0"),
        (
            vec!["--variants", "ws-bn", "--batch-sizes", "1", "--crop", "32"],
            "single value per channel",
        ),
    ] {
        let o = wsunet(&[&["study", "--out", out][..], &args].concat());
        assert_eq!(
            o.status.code(),
            Some(if expected.contains("unknown") { 2 } else { 1 }),
            "{args:?}"
        );
        let err = stderr(&o);
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// `wsunet plan` prints each planned setting with its reason, keeps what is
/// given, and a training run prints its plan and expected time first; bad
/// `--time` values name the flag.
#[test]
fn plan_prints_the_settings_and_train_says_how_long_it_will_take() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synth(&data, 10, 40);
    let d = data.to_str().unwrap();
    let o = wsunet(&["plan", "--data", d, "--batch-size", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with("plan for 8 training images (40×40, 3 channel(s))"),
        "{out}"
    );
    assert!(out.contains("  batch_size 2: given"), "{out}");
    assert!(
        out.contains("  epochs 375: a budget of 1500 optimizer steps (4 per epoch)"),
        "{out}"
    );
    assert!(
        out.contains("  val_every 18: about 20 validations"),
        "{out}"
    );
    assert!(out.contains("  crop 40×40: "), "{out}");
    let o = wsunet(&["train", "--plan-only", "--data", d, "--batch-size", "2"]);
    assert_eq!(stdout(&o), out);

    let model = tiny_model_config(dir.path(), 4);
    let run = dir.path().join("run");
    let mut args = tiny_train_args(&data, &model, 1, &run);
    args.retain(|a| a != "--epochs" && a != "1");
    args.extend(["--time".into(), "3s".into()]);
    let o = wsunet(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("  epochs ") && out.contains(": fits the time budget of 3 s"),
        "{out}"
    );
    assert!(out.contains("expected time: about "), "{out}");

    for (time, says) in [
        ("0", "is no time to train"),
        ("abc", "`abc` is not a duration"),
    ] {
        // clap's usage errors exit with 2.
        let o = wsunet(&["train", "--data", d, "--time", time]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("--time") && stderr(&o).contains(says),
            "{}",
            stderr(&o)
        );
    }
    let o = wsunet(&["train", "--data", d, "--time", "1m", "--epochs", "2"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--epochs"), "{}", stderr(&o));
}
