//! Same weights, same bytes: two trainings of the same model in separate
//! processes (and one stopped after its first epoch and resumed) write
//! byte-identical models, checkpoints, safetensors and ONNX files, and
//! `info --model` prints the same weights digest for them, also after a
//! round trip through safetensors; other weights give another digest.

mod common;

use std::path::Path;

use common::*;

/// The bytes of every file under `dir` whose name ends in `.bpk`, by path
/// relative to `dir`.
fn bpk_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "bpk") {
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                out.push((name, std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// The weights digest `info --model` prints.
fn digest(model: &Path) -> String {
    let o = wsunet(&["info", "--model", model.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
        .lines()
        .find_map(|l| l.strip_prefix("weights digest "))
        .unwrap_or_else(|| panic!("no digest in {}", stdout(&o)))
        .to_string()
}

fn export(run: &Path, out: &Path) {
    let o = wsunet(&[
        "export",
        "--model",
        run.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn identical_weights_give_identical_files_and_digests() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synth(&data, 8, 48);
    let config = tiny_model_config(dir.path(), 4);
    let train = |run: &Path, epochs: usize| {
        let mut args = tiny_train_args(&data, &config, epochs, run);
        // Warmup over all of epoch 1, so its learning rates do not depend
        // on the run's length: the one-epoch run resumed to two then is the
        // two-epoch run (the plan would make warmup 10 % of each run).
        args.extend(["--warmup-epochs".into(), "1".into()]);
        let o = wsunet(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(o.status.success(), "{}", stderr(&o));
    };
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    train(&a, 2);
    train(&b, 2);
    // Stopped after one epoch, resumed to two.
    train(&c, 1);
    let o = wsunet(&["train", "--resume", c.to_str().unwrap(), "--epochs", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));

    let files_a = bpk_files(&a);
    let names: Vec<&str> = files_a.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.contains(&"model.bpk") && names.contains(&"best.bpk"),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.ends_with("optim.bpk")),
        "checkpoints are compared too: {names:?}"
    );
    assert_eq!(files_a, bpk_files(&b), "two runs wrote different bytes");
    let model = |run: &Path| std::fs::read(run.join("model.bpk")).unwrap();
    assert_eq!(model(&a), model(&c), "the resumed run's model differs");

    for ext in ["safetensors", "onnx"] {
        let (ea, eb) = (
            dir.path().join(format!("a.{ext}")),
            dir.path().join(format!("b.{ext}")),
        );
        export(&a, &ea);
        export(&b, &eb);
        assert_eq!(
            std::fs::read(&ea).unwrap(),
            std::fs::read(&eb).unwrap(),
            "{ext} exports differ"
        );
    }

    let digest_a = digest(&a);
    assert_eq!(digest_a.len(), 64);
    assert_eq!(digest_a, digest(&b));
    assert_eq!(digest_a, digest(&c));
    // The same weights through safetensors and back: the same digest.
    let imported = dir.path().join("imported");
    let o = wsunet(&[
        "import",
        dir.path().join("a.safetensors").to_str().unwrap(),
        "--out",
        imported.to_str().unwrap(),
        "--groups",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(digest(&imported.with_extension("bpk")), digest_a);
    // Other weights (one more epoch): another digest.
    let d = dir.path().join("d");
    train(&d, 3);
    assert_ne!(digest(&d), digest_a);
}
