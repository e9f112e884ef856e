//! `wsunet predict` over folders as a cluster runs it: shards that together
//! predict every image once, reruns that skip finished images, folders that
//! refuse another model's or settings' outputs, and shards writing into one
//! folder at the same time.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;

/// A tiny model saved as a file (`NAME.bpk` + card), trained for one epoch
/// with `seed`, and a folder of 64-px images.
fn setup(dir: &Path, images: usize) -> (PathBuf, PathBuf) {
    let run = tiny_trained_run(dir);
    let data = dir.join("data");
    synth(&data, images, 64);
    (run, data.join("images"))
}

/// `wsunet predict --model MODEL --input INPUT --out OUT`, to add to.
fn predict_command(model: &Path, input: &Path, out: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wsunet"));
    command
        .args(["predict", "--model", model.to_str().unwrap()])
        .args(["--input", input.to_str().unwrap()])
        .args(["--out", out.to_str().unwrap()]);
    command
}

/// The non-hidden files of `dir` and their bytes, by name.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The masks a run reports having written (its `→ …/NAME.png` lines).
fn written(o: &Output) -> Vec<String> {
    stdout(o)
        .lines()
        .filter_map(|l| l.split(" → ").nth(1))
        .map(|rest| {
            let path = rest.split(':').next().unwrap();
            Path::new(path)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

#[test]
fn shards_predict_every_image_once_and_equal_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let (model, images) = setup(dir.path(), 7);
    let whole = dir.path().join("whole");
    let o = predict(&model, &images, &whole, &["--probs"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(written(&o).len(), 7);

    // Three shards into one folder: 3 + 2 + 2 images, none twice.
    let sharded = dir.path().join("sharded");
    let mut seen = Vec::new();
    for (i, expected) in [(0, 3), (1, 2), (2, 2)] {
        let shard = format!("{i}/3");
        let o = predict(&model, &images, &sharded, &["--probs", "--shard", &shard]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            stdout(&o).contains(&format!("shard {i}/3: {expected} of 7 input(s)")),
            "{}",
            stdout(&o)
        );
        let mine = written(&o);
        assert_eq!(mine.len(), expected, "{}", stdout(&o));
        seen.extend(mine);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 7);
    assert_eq!(
        files(&sharded),
        files(&whole),
        "outputs differ from one run's"
    );

    // A shard with no share says so and succeeds, writing nothing.
    let empty = dir.path().join("empty");
    let o = predict(&model, &images, &empty, &["--shard", "7/8"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("shard 7/8: no images in this share of 7 input(s); nothing to do"),
        "{}",
        stdout(&o)
    );
    assert!(!empty.exists());

    // --shard auto from a Slurm array task's environment.
    let auto = dir.path().join("auto");
    let o = predict_command(&model, &images, &auto)
        .args(["--shard", "auto"])
        .env("SLURM_ARRAY_TASK_ID", "5")
        .env("SLURM_ARRAY_TASK_COUNT", "3")
        .env("SLURM_ARRAY_TASK_MIN", "3")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("shard 2/3: 2 of 7"), "{}", stdout(&o));
}

#[test]
fn a_rerun_skips_finished_images_and_another_model_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (model, images) = setup(dir.path(), 4);
    let out = dir.path().join("out");
    let o = predict(&model, &images, &out, &["--overlay"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let first = files(&out);
    assert!(first.iter().any(|(name, _)| name == "predict.json"));

    // A killed run left one image without its overlay, and the overlay's
    // temporary file: only that image is redone and the file is removed; a
    // finished image's name is not touched (another shard may be writing it).
    std::fs::remove_file(out.join("shape_00002_overlay.png")).unwrap();
    let stale = out.join(".shape_00002_overlay.png.tmp-4242-0");
    let foreign = out.join(".shape_00001.png.tmp-4242-1");
    std::fs::write(&stale, b"half").unwrap();
    std::fs::write(&foreign, b"half").unwrap();
    let o = predict(&model, &images, &out, &["--overlay"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("skipped 3 image(s) whose outputs are complete"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("removed 1 temporary file(s) an interrupted run left"),
        "{}",
        stdout(&o)
    );
    assert!(!stale.exists() && foreign.exists());
    std::fs::remove_file(&foreign).unwrap();
    assert_eq!(written(&o), ["shape_00002.png"]);
    assert_eq!(files(&out), first);

    // Other settings, or another model, into the same folder: refused,
    // naming the difference, and nothing is written.
    let o = predict(&model, &images, &out, &["--overlay", "--tile", "48"]);
    fails_with(&o, "tile 32 there, 48 now");
    fails_with(&o, "fix --out, or pass --overwrite");
    let o = predict(&model, &images, &out, &[]);
    fails_with(&o, "outputs NAME.png NAME_overlay.png there, NAME.png now");
    let other = dir.path().join("other");
    let mut args = tiny_train_args(
        &dir.path().join("train"),
        &dir.path().join("model.json"),
        1,
        &other,
    );
    args.extend(["--seed".into(), "9".into()]);
    let o = wsunet(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    let o = predict(&other, &images, &out, &["--overlay"]);
    fails_with(&o, "model weights: digest");
    assert_eq!(files(&out), first, "a refused run wrote something");

    // Outputs with no record of what made them are not taken as finished.
    let legacy = dir.path().join("legacy");
    std::fs::create_dir_all(&legacy).unwrap();
    std::fs::write(legacy.join("shape_00001.png"), b"old").unwrap();
    let o = predict(&model, &images, &legacy, &[]);
    fails_with(&o, "already holds shape_00001.png but no predict.json");

    // --overwrite predicts everything again and takes the folder over.
    let o = predict(&model, &images, &out, &["--tile", "48", "--overwrite"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("replaced (--overwrite)"),
        "{}",
        stdout(&o)
    );
    assert_eq!(written(&o).len(), 4);
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("predict.json")).unwrap()).unwrap();
    assert_eq!(record["settings"]["tile"], 48);
}

#[test]
fn bad_shards_are_one_error_line_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (model, images) = setup(dir.path(), 2);
    let out = dir.path().join("out");
    for (shard, needle) in [
        ("4/4", "fix --shard: shard 4/4 does not exist"),
        ("0/0", "fix --shard: shard count 0"),
        ("x", "fix --shard: `x` is not a shard"),
        ("auto", "fix --shard: shard auto needs a Slurm job array"),
    ] {
        let o = predict_command(&model, &images, &out)
            .args(["--shard", shard])
            .env_remove("SLURM_ARRAY_TASK_ID")
            .output()
            .unwrap();
        fails_with(&o, needle);
        assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
        assert!(!out.exists(), "{shard}: wrote {}", out.display());
    }
}

#[test]
fn shards_writing_into_one_folder_at_once_do_not_corrupt_it() {
    let dir = tempfile::tempdir().unwrap();
    let (model, images) = setup(dir.path(), 12);
    let whole = dir.path().join("whole");
    assert!(
        predict(&model, &images, &whole, &["--probs"])
            .status
            .success()
    );

    let out = dir.path().join("out");
    let children: Vec<_> = (0..4)
        .map(|i| {
            predict_command(&model, &images, &out)
                .args(["--probs", "--shard", &format!("{i}/4")])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(written(&o).len(), 3, "{}", stdout(&o));
    }
    assert_eq!(files(&out), files(&whole));
    // No temporary file stays behind.
    let hidden = std::fs::read_dir(&out)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.')
        })
        .count();
    assert_eq!(hidden, 0);
}
