//! Helpers shared by the binary's end-to-end tests.

#![allow(dead_code)]

use std::process::{Command, Output};

pub fn wsunet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wsunet"))
        .args(args)
        .output()
        .expect("run wsunet")
}

/// `wsunet predict --model MODEL --input INPUT --out OUT EXTRA…`.
pub fn predict(
    model: &std::path::Path,
    input: &std::path::Path,
    out: &std::path::Path,
    extra: &[&str],
) -> Output {
    let mut args = vec![
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    wsunet(&args)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts that `o` exited with 1 and an error message holding `needle`.
pub fn fails_with(o: &Output, needle: &str) {
    assert_eq!(o.status.code(), Some(1), "{}", stderr(o));
    assert!(stderr(o).contains(needle), "{}", stderr(o));
}

/// The library's committed PyTorch fixtures.
pub fn fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wsunet/tests/fixtures")
}

/// Writes `count` shapes samples of `size`² into `out`.
pub fn synth(out: &std::path::Path, count: usize, size: usize) {
    synth_with(out, count, size, &[]);
}

/// [`synth`] with more of its flags (`--instances`).
pub fn synth_with(out: &std::path::Path, count: usize, size: usize, extra: &[&str]) {
    let (count, size) = (count.to_string(), size.to_string());
    let mut args = vec![
        "synth",
        "--out",
        out.to_str().unwrap(),
        "--count",
        &count,
        "--size",
        &size,
    ];
    args.extend_from_slice(extra);
    let o = wsunet(&args);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Writes a tiny model config (widths 4…8, 2 groups) to `dir/model.json`.
pub fn tiny_model_config(dir: &std::path::Path, num_classes: usize) -> std::path::PathBuf {
    let path = dir.join("model.json");
    std::fs::write(
        &path,
        format!(r#"{{"num_classes": {num_classes}, "widths": [4, 8, 8, 8, 8], "groups": 2}}"#),
    )
    .unwrap();
    path
}

/// `train` arguments for a tiny run: 32-px crops, batch 2, into `run`.
pub fn tiny_train_args(
    data: &std::path::Path,
    model: &std::path::Path,
    epochs: usize,
    run: &std::path::Path,
) -> Vec<String> {
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let mut args: Vec<String> = ["train", "--data"].map(String::from).to_vec();
    args.push(path(data));
    args.extend(["--model-config".into(), path(model)]);
    args.extend(["--epochs".into(), epochs.to_string()]);
    args.extend(["--crop", "32", "--batch-size", "2", "--out"].map(String::from));
    args.push(path(run));
    args
}

/// A tiny model trained one epoch on eight 48-px shapes samples, as the run
/// directory `dir/run` (the data in `dir/train`, the config `dir/model.json`).
pub fn tiny_trained_run(dir: &std::path::Path) -> std::path::PathBuf {
    let train = dir.join("train");
    synth(&train, 8, 48);
    let config = tiny_model_config(dir, 4);
    let run = dir.join("run");
    let args = tiny_train_args(&train, &config, 1, &run);
    let o = wsunet(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    run
}
