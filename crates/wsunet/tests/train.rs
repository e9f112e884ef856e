//! Training on tiny configs: exact resume, interrupted checkpoint writes,
//! non-finite losses, batch size 1, and the run directory's files.

use std::path::Path;

use burn::tensor::Device;
use wsunet::card::load_model;
use wsunet::data::Normalize;
use wsunet::train::{EpochRecord, Observer, SegScores, Session, ShapesSpec, Silent, TrainConfig};

/// A model and data small enough to train in a second.
fn tiny(epochs: usize) -> TrainConfig {
    let mut c = TrainConfig {
        epochs,
        batch_size: 4,
        val_batch_size: 4,
        size: Some([48, 48]),
        shapes: ShapesSpec {
            train: 12,
            val: 4,
            size: 48,
            seed: 5,
        },
        ..TrainConfig::default()
    };
    c.model.widths = vec![4, 8, 8, 8, 8];
    c.model.groups = 2;
    c
}

/// Stops after `after` epochs, as Ctrl-C between epochs would.
struct StopAfter {
    after: usize,
    seen: usize,
}

impl Observer for StopAfter {
    fn epoch_end(&mut self, _: &EpochRecord, _: &SegScores, _: bool) {
        self.seen += 1;
    }
    fn should_stop(&mut self) -> bool {
        self.seen >= self.after
    }
}

fn params(dir: &Path) -> Vec<f32> {
    let (model, _) = load_model(dir, &Device::flex()).unwrap();
    let mut values = Vec::new();
    for t in [
        model.head.weight.val().into_data(),
        model.stem.conv.weight.val().into_data(),
    ] {
        values.extend(t.try_to_vec::<f32>().unwrap());
    }
    values
}

#[test]
fn resumed_run_equals_uninterrupted_run() {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    let whole = Session::new(tiny(3), &a).unwrap().run(&mut Silent).unwrap();
    assert!(!whole.stopped);
    assert_eq!(whole.state.history.len(), 3);

    let part = Session::new(tiny(3), &b)
        .unwrap()
        .run(&mut StopAfter { after: 1, seen: 0 })
        .unwrap();
    assert!(part.stopped);
    assert_eq!(part.state.epoch, 1);
    assert!(
        !b.join("model.bpk").exists(),
        "a stopped run has no final model"
    );

    let resumed = Session::resume(&b, None, None)
        .unwrap()
        .run(&mut Silent)
        .unwrap();
    let strip = |h: &[EpochRecord]| {
        h.iter()
            .map(|r| {
                (
                    r.epoch,
                    r.train_loss,
                    r.val_loss,
                    r.miou,
                    r.class_iou.clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&resumed.state.history), strip(&whole.state.history));
    assert_eq!(resumed.state.step, whole.state.step);
    assert_eq!(params(&b), params(&a));
}

#[test]
fn an_interrupted_checkpoint_write_leaves_the_previous_one_loadable() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("run");
    Session::new(tiny(3), &dir)
        .unwrap()
        .run(&mut StopAfter { after: 1, seen: 0 })
        .unwrap();
    // A kill while epoch 2 was being written: a half-written hidden folder,
    // and even a finished folder whose pointer was never updated.
    let cp = dir.join("checkpoints");
    std::fs::create_dir_all(cp.join(".epoch-0002.partial")).unwrap();
    std::fs::write(cp.join(".epoch-0002.partial/model.bpk"), b"trunc").unwrap();
    std::fs::create_dir_all(cp.join("epoch-0002")).unwrap();
    std::fs::write(cp.join("epoch-0002/model.bpk"), b"garbage").unwrap();
    let latest = std::fs::read_to_string(cp.join("latest.json")).unwrap();
    assert!(latest.contains("\"epoch\":1"), "{latest}");

    let mut lines = Vec::new();
    struct Log<'a>(&'a mut Vec<String>);
    impl Observer for Log<'_> {
        fn info(&mut self, line: &str) {
            self.0.push(line.to_string());
        }
    }
    let summary = Session::resume(&dir, None, None)
        .unwrap()
        .run(&mut Log(&mut lines))
        .unwrap();
    assert!(
        lines.iter().any(|l| l.contains("resuming after epoch 1")),
        "{lines:?}"
    );
    assert_eq!(summary.state.epoch, 3);
    assert!(!cp.join(".epoch-0002.partial").exists());
    // Only the last two checkpoints are kept.
    assert!(
        !cp.join("epoch-0001").exists()
            && cp.join("epoch-0002").is_dir()
            && cp.join("epoch-0003").is_dir()
    );
}

#[test]
fn a_non_finite_loss_stops_with_the_epoch_and_step() {
    let root = tempfile::tempdir().unwrap();
    let mut c = tiny(2);
    // A normalization that scales pixels to ~1e30 overflows GroupNorm.
    c.normalize = Some(Normalize {
        mean: vec![0.0; 3],
        std: vec![1e-30; 3],
    });
    let err = Session::new(c, &root.path().join("nan"))
        .unwrap()
        .run(&mut Silent)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("the loss became NaN at epoch 1, step "),
        "{err}"
    );
    assert!(
        err.contains("no checkpoint was written yet") && err.contains("--lr"),
        "{err}"
    );
}

#[test]
fn batch_size_one_trains() {
    let root = tempfile::tempdir().unwrap();
    let mut c = tiny(1);
    c.batch_size = 1;
    c.val_batch_size = 1;
    let summary = Session::new(c, &root.path().join("b1"))
        .unwrap()
        .run(&mut Silent)
        .unwrap();
    let r = &summary.state.history[0];
    assert_eq!(summary.state.step, 12);
    assert!(r.train_loss.is_finite() && r.miou > 0.0, "{r:?}");
}

#[test]
fn run_directory_holds_everything_and_refuses_reuse() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("run");
    Session::new(tiny(2), &dir)
        .unwrap()
        .run(&mut Silent)
        .unwrap();
    for f in [
        "config.json",
        "metrics.csv",
        "curves.png",
        "best.bpk",
        "best.json",
        "best_scores.json",
        "model.bpk",
        "model.json",
        "scores.json",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(
        csv.starts_with("epoch,train_loss,val_loss,miou,mean_dice,pixel_accuracy,lr"),
        "{csv}"
    );
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .ends_with("iou_rectangle,iou_triangle"),
        "{csv}"
    );
    let config = TrainConfig::from_file(&dir.join("config.json")).unwrap();
    assert_eq!(config.num_classes, Some(4));
    assert!(config.normalize.is_some());

    let err = Session::new(tiny(2), &dir).err().unwrap().to_string();
    assert!(
        err.contains("already holds a training run") && err.contains("--resume"),
        "{err}"
    );
    let err = Session::resume(&dir, None, None)
        .unwrap()
        .run(&mut Silent)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("already finished 2 of 2 epochs") && err.contains("--epochs"),
        "{err}"
    );
    // Extending the run continues from epoch 3.
    let more = Session::resume(&dir, Some(3), None)
        .unwrap()
        .run(&mut Silent)
        .unwrap();
    assert_eq!(more.state.history.len(), 3);
}
