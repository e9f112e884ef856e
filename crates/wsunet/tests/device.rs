//! Everything a user runs, on the test device (`WSUNET_TEST_DEVICE`, default
//! cpu; see `common::test_device`): training (the loss falls, and a resumed
//! run reaches the uninterrupted run's metrics), evaluation, tiled prediction
//! of the folded model and the benchmark, each compared with the CPU.
//!
//! On the CPU every comparison is exact. On a GPU, floating-point sums run
//! in another order (and, on some drivers, in an order that changes from run
//! to run), so values agree to the tolerances below and an argmax may flip
//! where two classes are within rounding of each other.

mod common;

use std::path::Path;

use burn::tensor::Device;
use common::{StopAfter, test_device, test_device_name, worst};
use wsunet::card::load_model;
use wsunet::data::Image;
use wsunet::data::generate_shapes;
use wsunet::infer::{PredictConfig, Predictor, Tta};
use wsunet::train::{EpochRecord, Scorer, SegLoss, Session, ShapesSpec, Silent, TrainConfig};

/// Relative tolerance of losses and metrics between two runs of the same
/// training on a GPU (resumed vs uninterrupted): the models diverge by
/// rounding from the first step, so this bounds drift, not one operation
/// (measured on lavapipe: at most 5.1e-8 over these 4 epochs).
const RUN_TOL: f64 = 1e-3;
/// Largest absolute difference of a probability, GPU vs CPU, for one
/// forward pass of the same weights (float32 sums in another order).
const PROB_TOL: f32 = 1e-4;
/// Largest fraction of pixels whose predicted class may differ from the
/// CPU's (near-ties of two classes).
const FLIP_TOL: f64 = 1e-3;

fn on_cpu() -> bool {
    test_device() == Device::flex()
}

/// The tiny run of `common::tiny` with a few more images, on `device`.
fn tiny(epochs: usize, device: &str) -> TrainConfig {
    let base = common::tiny(epochs);
    TrainConfig {
        shapes: ShapesSpec {
            train: 16,
            ..base.shapes
        },
        device: device.into(),
        ..base
    }
}

fn train(config: TrainConfig, dir: &Path) -> Vec<EpochRecord> {
    let summary = Session::new(config, dir).unwrap().run(&mut Silent).unwrap();
    summary.state.history
}

/// Whether `a` is within `tol` of `b`, relative to `b` (absolute near 0).
fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1e-3)
}

#[test]
fn training_learns_and_resumes_to_the_uninterrupted_metrics() {
    let name = test_device_name();
    let root = tempfile::tempdir().unwrap();
    let whole = train(tiny(4, &name), &root.path().join("whole"));
    let losses: Vec<f64> = whole.iter().map(|r| r.train_loss).collect();
    println!("{name}: train losses {losses:?}");
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    assert!(
        losses.windows(2).all(|w| w[1] < w[0]) && losses[3] < 0.95 * losses[0],
        "the training loss did not fall: {losses:?}"
    );

    let b = root.path().join("resumed");
    let part = Session::new(tiny(4, &name), &b)
        .unwrap()
        .run(&mut StopAfter { after: 1, seen: 0 })
        .unwrap();
    assert!(part.stopped);
    let resumed = Session::resume(&b, None, None)
        .unwrap()
        .run(&mut Silent)
        .unwrap()
        .state
        .history;
    assert_eq!(resumed.len(), whole.len());
    let again = train(tiny(4, &name), &root.path().join("again"));
    // The largest relative difference of any loss or metric between runs.
    let drift = |x: &[EpochRecord], y: &[EpochRecord]| {
        x.iter()
            .zip(y)
            .flat_map(|(p, q)| {
                [
                    (p.train_loss, q.train_loss),
                    (p.val_loss, q.val_loss),
                    (p.miou, q.miou),
                ]
            })
            .map(|(a, b)| (a - b).abs() / b.abs().max(1e-3))
            .fold(0f64, worst)
    };
    let identical = |x: &[EpochRecord], y: &[EpochRecord]| drift(x, y) == 0.0;
    println!(
        "{name}: largest relative difference of losses and mIoU: two uninterrupted runs {:.1e}, resumed vs uninterrupted {:.1e}",
        drift(&again, &whole),
        drift(&resumed, &whole)
    );
    if on_cpu() {
        assert!(identical(&again, &whole) && identical(&resumed, &whole));
    }
    for (r, w) in resumed.iter().zip(&whole) {
        println!(
            "epoch {}: loss {:.6} vs {:.6}, val loss {:.6} vs {:.6}, mIoU {:.5} vs {:.5}",
            r.epoch, r.train_loss, w.train_loss, r.val_loss, w.val_loss, r.miou, w.miou
        );
        assert!(
            close(r.train_loss, w.train_loss, RUN_TOL)
                && close(r.val_loss, w.val_loss, RUN_TOL)
                && (r.miou - w.miou).abs() <= RUN_TOL,
            "epoch {}: resumed {r:?} vs uninterrupted {w:?}",
            r.epoch
        );
    }
}

/// Counts the positions where two masks differ.
fn flips(a: &[u16], b: &[u16]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x != y).count()
}

#[test]
fn evaluation_and_tiled_prediction_equal_the_cpus() {
    // A model trained on the CPU for two epochs (decisive enough that few
    // pixels are near-ties), saved, then loaded on both devices.
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("run");
    let session = Session::new(tiny(2, "cpu"), &dir).unwrap();
    session.run(&mut Silent).unwrap();
    let device = test_device();
    let cpu = Device::flex();
    let (on_device, card) = load_model(&dir, &device).unwrap();
    let (on_cpu_model, _) = load_model(&dir, &cpu).unwrap();

    // Evaluation of the validation split, folded as `wsunet eval` runs it.
    let loss = SegLoss::new(session.config.loss, 255);
    let names: Vec<String> = card.classes.names();
    let eval = |model: &wsunet::WsResUNet, device: &Device| {
        Scorer::new(model, PredictConfig::default(), device)
            .unwrap()
            .evaluate(&session.val, 4, &loss, &mut Silent, &names)
            .unwrap()
    };
    let (a, b) = (eval(&on_device, &device), eval(&on_cpu_model, &cpu));
    let total = b.matrix.total() as f64;
    let moved: u64 = a
        .matrix
        .counts
        .iter()
        .zip(&b.matrix.counts)
        .map(|(x, y)| x.abs_diff(*y))
        .sum();
    println!(
        "eval: loss {:.7} vs cpu {:.7}; mIoU {:.6} vs {:.6}; {moved} confusion counts moved of {total}",
        a.loss, b.loss, a.scores.miou, b.scores.miou
    );
    assert_eq!(a.matrix.total(), b.matrix.total());
    assert!(close(a.loss, b.loss, 1e-4), "{} vs {}", a.loss, b.loss);
    assert!(moved as f64 <= 2.0 * FLIP_TOL * total, "{moved} of {total}");

    // Tiled prediction: a 100×75 image in 48-px tiles, with flip TTA.
    let (square, _) = generate_shapes(9, 0, 100);
    let data: Vec<f32> = (0..3)
        .flat_map(|c| square.channel(c).chunks(100))
        .flat_map(|row| &row[..75])
        .copied()
        .collect();
    let image = Image::new(3, 100, 75, data);
    let config = PredictConfig {
        tile: 48,
        overlap: 0.25,
        batch_size: 3,
        tta: Tta::Flip,
        ..PredictConfig::default()
    };
    let predict = |model: wsunet::WsResUNet, device: &Device| {
        Predictor::new(
            model,
            card.normalize.clone(),
            device.clone(),
            config.clone(),
        )
        .unwrap()
        .predict(&image, true)
        .unwrap()
    };
    let (p, q) = (predict(on_device, &device), predict(on_cpu_model, &cpu));
    assert!(p.tiles > 1, "the image was not tiled");
    assert_eq!((p.height, p.width, p.tiles), (q.height, q.width, q.tiles));
    let diff = p
        .probs
        .iter()
        .zip(&q.probs)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    let flipped = flips(&p.mask().data, &q.mask().data);
    println!(
        "predict: {} tiles, probabilities within {diff:.2e} of the cpu's, {flipped} of {} pixels flipped",
        p.tiles,
        p.height * p.width
    );
    assert!(diff <= PROB_TOL, "{diff:e}");
    assert!(flipped as f64 <= FLIP_TOL * (p.height * p.width) as f64);
    if on_cpu() {
        assert_eq!(p.probs, q.probs);
    }
}

#[test]
fn the_benchmark_runs_every_phase() {
    use wsunet::bench::{BenchConfig, PHASES, run_bench};
    let mut model = tiny(1, "cpu").model;
    model.in_channels = 3;
    model.num_classes = 4;
    let config = BenchConfig {
        model,
        batch: 2,
        size: [64, 64],
        warmup: 1,
        reps: 2,
        standardize: true,
        phases: PHASES.iter().map(|p| p.to_string()).collect(),
        layers: false,
    };
    let report = run_bench(&config, &test_device(), &test_device_name(), &mut |_| {}).unwrap();
    assert_eq!(report.results.len(), PHASES.len());
    for r in &report.results {
        println!("{}: {:.1} ms", r.phase, r.median_ms);
        assert!(r.median_ms > 0.0 && r.median_ms.is_finite(), "{r:?}");
        assert!(r.min_ms <= r.median_ms && r.median_ms <= r.max_ms, "{r:?}");
    }
}
