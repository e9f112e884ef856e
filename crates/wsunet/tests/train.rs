//! Training on tiny configs: exact resume, interrupted checkpoint writes,
//! non-finite losses, batch size 1, and the run directory's files.

mod common;

use std::path::Path;

use burn::tensor::Device;
use common::{StopAfter, tiny};
use wsunet::card::load_model;
use wsunet::data::Normalize;
use wsunet::infer::PredictConfig;
use wsunet::layers::Norm;
use wsunet::train::{EpochRecord, Observer, SegScores, Session, Silent, TrainConfig};

/// A few weights of a run's final model, and every BatchNorm running
/// statistic it has.
fn params(dir: &Path) -> Vec<f32> {
    let (model, _) = load_model(dir, &Device::flex()).unwrap();
    let mut values = Vec::new();
    let stats = common::running_stats(&model);
    for t in [
        model.head.weight.val().into_data(),
        model.stem.conv.weight.val().into_data(),
    ]
    .into_iter()
    .chain(stats.into_values())
    {
        values.extend(t.try_to_vec::<f32>().unwrap());
    }
    values
}

#[test]
fn resumed_run_equals_uninterrupted_run() {
    for norm in [Norm::Group, Norm::Batch] {
        resumed_equals_uninterrupted(norm);
    }
}

fn resumed_equals_uninterrupted(norm: Norm) {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    let config = || {
        let mut c = tiny(3);
        c.model.norm = norm;
        c
    };
    let whole = Session::new(config(), &a)
        .unwrap()
        .run(&mut Silent)
        .unwrap();
    assert!(!whole.stopped);
    assert_eq!(whole.state.history.len(), 3);
    if norm == Norm::Batch {
        // The running statistics moved from their initial 0 and 1.
        let (model, _) = load_model(&a, &Device::flex()).unwrap();
        let mean = &common::running_stats(&model)["stem.bn.running_mean"];
        assert!(
            mean.iter::<f32>().any(|v| v != 0.0),
            "{norm}: running_mean never updated"
        );
    }

    let part = Session::new(config(), &b)
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
    assert_eq!(
        strip(&resumed.state.history),
        strip(&whole.state.history),
        "{norm}"
    );
    assert_eq!(resumed.state.step, whole.state.step);
    assert_eq!(params(&b), params(&a), "{norm}");
}

/// Records which epochs were validated and which only trained.
#[derive(Default)]
struct Epochs {
    trained: Vec<usize>,
    validated: Vec<usize>,
    stop_after_validations: Option<usize>,
}

impl Observer for Epochs {
    fn epoch_trained(&mut self, epoch: usize, loss: f64, _: f64, _: f64, _: f64) {
        assert!(loss.is_finite());
        self.trained.push(epoch);
    }
    fn epoch_end(&mut self, r: &EpochRecord, _: &SegScores, _: bool) {
        self.validated.push(r.epoch);
    }
    fn should_stop(&mut self) -> bool {
        self.stop_after_validations
            .is_some_and(|n| self.validated.len() >= n)
    }
}

#[test]
fn validating_every_other_epoch_skips_the_rest_and_resumes_exactly() {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    let every_2 = |epochs| TrainConfig {
        val_every: 2,
        ..tiny(epochs)
    };
    let mut seen = Epochs::default();
    let whole = Session::new(every_2(5), &a)
        .unwrap()
        .run(&mut seen)
        .unwrap();
    // The last epoch is always validated.
    assert_eq!((seen.trained, seen.validated), (vec![1, 3], vec![2, 4, 5]));
    let epochs: Vec<usize> = whole.state.history.iter().map(|r| r.epoch).collect();
    assert_eq!(epochs, [2, 4, 5]);
    assert_eq!(whole.state.step, 5 * 3, "every epoch trained");

    // Stopped after the first validation (epoch 2), then resumed.
    let mut first = Epochs {
        stop_after_validations: Some(1),
        ..Epochs::default()
    };
    let part = Session::new(every_2(5), &b)
        .unwrap()
        .run(&mut first)
        .unwrap();
    assert!(part.stopped);
    assert_eq!(part.state.epoch, 2);
    let mut rest = Epochs::default();
    let resumed = Session::resume(&b, None, None)
        .unwrap()
        .run(&mut rest)
        .unwrap();
    assert_eq!((rest.trained, rest.validated), (vec![3], vec![4, 5]));
    let miou = |h: &[EpochRecord]| h.iter().map(|r| (r.epoch, r.miou)).collect::<Vec<_>>();
    assert_eq!(miou(&resumed.state.history), miou(&whole.state.history));
    assert_eq!(params(&b), params(&a));
}

#[test]
fn a_stop_in_an_epoch_without_validation_validates_and_checkpoints_it() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("run");
    let config = TrainConfig {
        val_every: 3,
        ..tiny(4)
    };
    // Asks to stop from the start: epoch 1 would be skipped, but is
    // validated and checkpointed because the run stops there.
    let mut stop = Epochs {
        stop_after_validations: Some(0),
        ..Epochs::default()
    };
    let part = Session::new(config, &dir).unwrap().run(&mut stop).unwrap();
    assert!(part.stopped);
    assert_eq!((stop.trained, stop.validated), (vec![], vec![1]));
    let resumed = Session::resume(&dir, None, None)
        .unwrap()
        .run(&mut Silent)
        .unwrap();
    assert_eq!(resumed.state.epoch, 4);
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
    let compact: String = latest.split_whitespace().collect();
    assert!(compact.contains("\"epoch\":1,"), "{latest}");

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
        err.contains("no checkpoint was written yet") && err.contains("lower lr"),
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
    // The class count is stated once, in the model.
    assert_eq!(config.num_classes, None);
    assert_eq!((config.model.in_channels, config.model.num_classes), (3, 4));
    assert!(config.normalize.is_some());

    let err = Session::new(tiny(2), &dir).err().unwrap().to_string();
    assert!(
        err.contains("already holds a training run") && err.contains("resume it"),
        "{err}"
    );
    let stored = std::fs::read(dir.join("config.json")).unwrap();
    let err = Session::resume(&dir, Some(1), None)
        .unwrap()
        .run(&mut Silent)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("already trained 2 epochs (epochs is 1)")
            && err.contains("set epochs above 2"),
        "{err}"
    );
    // A refused resume leaves the run's config as it was.
    assert_eq!(std::fs::read(dir.join("config.json")).unwrap(), stored);
    // Extending the run continues from epoch 3.
    let more = Session::resume(&dir, Some(3), None)
        .unwrap()
        .run(&mut Silent)
        .unwrap();
    assert_eq!(more.state.history.len(), 3);
}

#[test]
fn a_model_whose_channels_or_classes_differ_from_the_data_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let open = |in_channels, num_classes| {
        let mut config = tiny(1);
        config.model.in_channels = in_channels;
        config.model.num_classes = num_classes;
        Session::new(config, dir.path())
    };
    let err = open(1, 0).err().unwrap().to_string();
    assert!(
        err.contains("model.in_channels is 1 but the training images have 3 channel(s)"),
        "{err}"
    );
    // The built-in shapes data has 4 classes.
    let err = open(0, 5).err().unwrap().to_string();
    assert!(
        err.contains("model.num_classes is 5 but the data has 4 classes"),
        "{err}"
    );
    // Given and equal to the data's: accepted as if left out.
    assert_eq!(open(3, 4).unwrap().card().model.num_classes, 4);
}

/// Writes shapes samples as a dataset folder (images/, masks/,
/// classes.json); sample `i` is `side(i)` pixels square.
fn shapes_folder(root: &Path, count: u64, side: impl Fn(u64) -> usize) {
    use wsunet::data::{generate_shapes, shapes_classes};
    use wsunet::data::{write_mask_png, write_png};
    let classes = shapes_classes();
    std::fs::create_dir_all(root.join("images")).unwrap();
    std::fs::create_dir_all(root.join("masks")).unwrap();
    classes.save(&root.join("classes.json")).unwrap();
    for i in 0..count {
        let (image, mask) = generate_shapes(9, i, side(i));
        let name = format!("s{i:03}.png");
        write_png(&root.join("images").join(&name), &image).unwrap();
        write_mask_png(&root.join("masks").join(&name), &mask, &classes).unwrap();
    }
}

/// A tiny config training on the dataset folder `data`.
fn tiny_on(data: &Path, epochs: usize) -> TrainConfig {
    TrainConfig {
        data: Some(data.to_path_buf()),
        crop: None,
        val_fraction: 0.25,
        ..tiny(epochs)
    }
}

#[test]
fn the_crop_follows_small_images_and_padding_is_announced() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    // Six 48-px images and two of 40 px: the default crop is the smallest.
    shapes_folder(&data, 8, |i| if i < 6 { 48 } else { 40 });
    let dir = root.path().join("run");
    let session = Session::new(tiny_on(&data, 1), &dir).unwrap();
    let smallest = if session
        .train
        .samples()
        .iter()
        .any(|s| s.size().unwrap()[0] == 40)
    {
        40
    } else {
        48
    };
    assert_eq!(session.data.crop, [smallest; 2]);
    assert_eq!(session.resolved_config().crop, Some([smallest; 2]));
    assert_eq!(session.card().crop, Some([smallest; 2]));
    // The config as given is left as it was.
    assert_eq!(session.config.crop, None);
    assert!(
        session.data.crop_note.contains("smallest training image"),
        "{}",
        session.data.crop_note
    );
    assert!(
        !session.warnings.iter().any(|w| w.contains("crop")),
        "{:?}",
        session.warnings
    );
    // Preparing a session writes nothing: the run directory appears only
    // when training starts.
    assert!(!dir.exists(), "Session::new wrote into {}", dir.display());

    // A crop larger than the images is kept, with a warning naming the fix.
    let session = Session::new(
        TrainConfig {
            crop: Some([64, 64]),
            ..tiny_on(&data, 1)
        },
        &dir,
    )
    .unwrap();
    let warning = session
        .warnings
        .iter()
        .find(|w| w.contains("crop"))
        .expect("a warning about the crop");
    assert!(
        warning.contains("smaller than the 64×64 crop") && warning.contains("mirror-padded"),
        "{warning}"
    );

    // Large images keep the 256 default; tiny ones get the model's minimum.
    let sizes = [[300, 400], [512, 280]];
    assert_eq!(wsunet::data::resolve_crop(None, &sizes).0, [256, 256]);
    let (crop, _, warning) = wsunet::data::resolve_crop(None, &[[20, 90], [64, 64]]);
    assert_eq!(crop, [32, 64]);
    assert!(warning.unwrap().contains("1 of 2 training images"));
}

/// The evaluation of `model` on `names`' samples of `data`, `batch` at a time.
fn evaluate_on(
    model: &wsunet::WsResUNet,
    data: &Path,
    keep: impl Fn(&str) -> bool,
    batch: usize,
) -> wsunet::train::Evaluation {
    use std::sync::Arc;
    use wsunet::data::file_samples;
    use wsunet::data::{Mode, SampleSpec, SegDataset, discover};
    use wsunet::train::{Scorer, SegLoss};
    let files = discover(data, 0.0, 0).unwrap();
    let pairs: Vec<_> = files.train.into_iter().filter(|p| keep(&p.name)).collect();
    let spec = SampleSpec {
        num_classes: 4,
        ignore_index: Some(255),
        in_channels: 3,
        classes: files.classes,
        instances: None,
    };
    let ds = SegDataset::new(
        file_samples(&pairs),
        spec,
        Normalize::neutral(3),
        Mode::Eval,
        0,
    )
    .unwrap();
    let loss = SegLoss::new(Default::default(), 255);
    Scorer::new(model, PredictConfig::default(), &Device::flex())
        .unwrap()
        .evaluate(&Arc::new(ds), batch, &loss, &mut Silent, &[])
        .unwrap()
}

#[test]
fn an_image_scores_the_same_alone_and_beside_a_larger_one() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    // s000 is 40 px, s001 is 72 px: batched together, the small one used to
    // be zero-padded to 72 px, which GroupNorm then normalized over.
    shapes_folder(&data, 2, |i| if i == 0 { 40 } else { 72 });
    let mut config = tiny(1).model.with_in_channels(3).with_num_classes(4);
    config.groups = 2;
    let model = config.init_seeded(&Device::flex(), 4).unwrap();
    let together = evaluate_on(&model, &data, |_| true, 2);
    let small = evaluate_on(&model, &data, |n| n == "s000", 1);
    let large = evaluate_on(&model, &data, |n| n == "s001", 1);
    let mut apart = small.matrix.clone();
    apart.merge(&large.matrix);
    assert_eq!(together.matrix, apart);
    // One batch per size: the mean loss is that of the two images alone.
    let alone = (small.loss + large.loss) / 2.0;
    assert!(
        (together.loss - alone).abs() < 1e-5 * alone,
        "{} vs {alone}",
        together.loss
    );
}

#[test]
fn a_model_trained_on_small_images_evaluates_as_it_trained() {
    // 48-px images with the default crop: training sees whole images, as
    // evaluation does, so the loss that evaluation measures on the training
    // images is the loss training reported (measured: 0.99×; 1.89× when
    // these images were zero-padded to a 256-px crop, the old default).
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    shapes_folder(&data, 8, |_| 48);
    let dir = root.path().join("run");
    let config = TrainConfig {
        augment: Some(wsunet::data::AugmentConfig::none()),
        val_fraction: 0.0,
        batch_size: 2,
        ..tiny_on(&data, 30)
    };
    let err = Session::new(config.clone(), &dir)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("validation split is empty"), "{err}");
    let config = TrainConfig {
        val_fraction: 0.25,
        ..config
    };
    let summary = Session::new(config, &dir)
        .unwrap()
        .run(&mut Silent)
        .unwrap();
    let trained = summary.state.history.last().unwrap().train_loss;
    let (model, card) = load_model(&dir, &Device::flex()).unwrap();
    let run = TrainConfig::from_file(&dir.join("config.json")).unwrap();
    let (train_samples, _) =
        wsunet::data::split_samples(&run.data_settings(), wsunet::data::Split::Train).unwrap();
    let names: Vec<String> = train_samples.iter().map(|s| s.name()).collect();
    let files = wsunet::data::discover(&data, 0.0, 0).unwrap();
    let pairs: Vec<_> = files
        .train
        .into_iter()
        .filter(|p| names.contains(&p.name))
        .collect();
    assert_eq!(pairs.len(), 6);
    let spec = wsunet::data::SampleSpec {
        num_classes: 4,
        ignore_index: Some(255),
        in_channels: 3,
        classes: Some(card.classes.clone()),
        instances: None,
    };
    let ds = wsunet::data::SegDataset::new(
        wsunet::data::file_samples(&pairs),
        spec,
        card.normalize.clone(),
        wsunet::data::Mode::Eval,
        0,
    )
    .unwrap();
    let loss = wsunet::train::SegLoss::new(Default::default(), 255);
    let eval = wsunet::train::Scorer::new(&model, PredictConfig::default(), &Device::flex())
        .unwrap()
        .evaluate(&std::sync::Arc::new(ds), 4, &loss, &mut Silent, &[])
        .unwrap();
    let ratio = eval.loss / trained;
    assert!(
        (0.8..1.25).contains(&ratio),
        "training reported loss {trained:.4}, evaluation of its own training images {:.4}",
        eval.loss
    );
}

/// The run's TensorBoard event file holds every epoch of `metrics.csv`
/// (read back with its CRCs checked), and a resumed run's file has each
/// epoch once.
#[test]
fn the_event_file_holds_the_metrics_of_every_epoch() {
    use wsunet::train::tensorboard::{EventKind, ValueKind, read_events};
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    Session::new(tiny(2), &run)
        .unwrap()
        .run(&mut StopAfter { after: 1, seen: 0 })
        .unwrap();
    Session::resume(&run, Some(2), None)
        .unwrap()
        .run(&mut Silent)
        .unwrap();
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let rows: Vec<Vec<String>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(String::from).collect())
        .collect();
    let events = read_events(&wsunet::RunDir::new(&run).tensorboard_events()).unwrap();
    assert!(matches!(&events[0].what, Some(EventKind::FileVersion(v)) if v == "brain.Event:2"));
    let summaries: Vec<_> = events[1..]
        .iter()
        .map(|e| match &e.what {
            Some(EventKind::Summary(s)) => (e.step, s.clone()),
            other => panic!("a summary, not {other:?}"),
        })
        .collect();
    assert_eq!(summaries.len(), 2, "one event per epoch, none repeated");
    for ((step, summary), row) in summaries.iter().zip(&rows) {
        assert_eq!(*step, row[0].parse::<i64>().unwrap());
        let value = |tag: &str| match summary.value.iter().find(|v| v.tag == tag) {
            Some(v) => match &v.value {
                Some(ValueKind::SimpleValue(x)) => *x as f64,
                _ => panic!("{tag} is not a scalar"),
            },
            None => panic!("no {tag} at epoch {step}"),
        };
        for (tag, column) in [
            ("train/loss", 1),
            ("val/loss", 2),
            ("val/miou", 3),
            ("val/dice", 4),
        ] {
            let expected: f64 = row[column].parse().unwrap();
            assert!((value(tag) - expected).abs() < 1e-5, "{tag} at {step}");
        }
    }
    // The last epoch has its validation overlays.
    let (_, last) = summaries.last().unwrap();
    assert!(
        last.value
            .iter()
            .any(|v| v.tag.starts_with("val/overlay/")
                && matches!(v.value, Some(ValueKind::Image(_)))),
        "no overlay image"
    );
}

/// On the built-in data the plan gives the defaults, so the main job is
/// unchanged.
#[test]
fn the_plan_for_the_built_in_data_is_the_defaults() {
    use wsunet::train::Given;
    let defaults = TrainConfig::default();
    let plan = Session::plan_only(&defaults, &Given::new()).unwrap();
    let c = &plan.config;
    assert_eq!(
        (c.batch_size, c.epochs, c.val_every, c.warmup_epochs),
        (
            defaults.batch_size,
            defaults.epochs,
            defaults.val_every,
            defaults.warmup_epochs
        )
    );
    assert_eq!(c.augmentation(), defaults.augmentation());
    assert_eq!(c.class_weights, None);
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    let lines = plan.lines().join("\n");
    assert!(
        lines.starts_with("plan for 8192 training images (96×96, 3 channel(s))"),
        "{lines}"
    );
    assert!(lines.contains("  epochs 5: at least 5 epochs"), "{lines}");
}

/// On a small folder the run's length comes from the step budget; what
/// the user gives stays, and the cadence and warmup follow it.
#[test]
fn a_small_folder_gets_a_step_budget_and_given_settings_stay() {
    use wsunet::train::{Given, STEP_BUDGET, VALIDATIONS};
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    shapes_folder(&data, 10, |_| 48);
    let config = TrainConfig {
        data: Some(data.clone()),
        ..TrainConfig::default()
    };
    let plan = Session::plan_only(&config, &Given::new()).unwrap();
    let c = &plan.config;
    let train = plan.fingerprint.train;
    assert_eq!(train, 8);
    assert_eq!(c.batch_size, 4);
    let per_epoch = train.div_ceil(4);
    assert_eq!(c.epochs, STEP_BUDGET.div_ceil(per_epoch));
    assert_eq!(c.val_every, c.epochs / VALIDATIONS);
    assert!((c.warmup_epochs - 0.1 * c.epochs as f64).abs() < 1e-9);
    assert!(c.augmentation().hflip);
    let fractions = plan.fingerprint.class_fractions.clone().unwrap();
    assert_eq!(fractions.len(), 4);
    assert!((fractions.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    let lines = plan.lines().join("\n");
    assert!(
        lines.contains("  batch_size 4: fewer than 64 training images"),
        "{lines}"
    );
    assert!(
        lines.contains("  class_weights none: the loss's Dice term"),
        "{lines}"
    );

    let given: Given = ["epochs".to_string(), "batch_size".to_string()].into();
    let mine = TrainConfig {
        epochs: 3,
        batch_size: 2,
        ..config.clone()
    };
    let plan = Session::plan_only(&mine, &given).unwrap();
    assert_eq!((plan.config.epochs, plan.config.batch_size), (3, 2));
    assert_eq!(plan.config.val_every, 1);
    let lines = plan.lines().join("\n");
    assert!(
        lines.contains("  epochs 3: given") && lines.contains("  batch_size 2: given"),
        "{lines}"
    );
}

/// A class that no training mask has is said before training.
#[test]
fn the_plan_warns_of_a_class_without_training_pixels() {
    use wsunet::data::{ClassList, Mask, generate_shapes, write_mask_png, write_png};
    use wsunet::train::Given;
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    std::fs::create_dir_all(data.join("images")).unwrap();
    std::fs::create_dir_all(data.join("masks")).unwrap();
    let classes = ClassList::numbered(3);
    classes.save(&data.join("classes.json")).unwrap();
    for i in 0..5 {
        let (image, _) = generate_shapes(1, i, 40);
        // Classes 0 and 1 only.
        let mask = Mask::new(40, 40, (0..1600).map(|p| (p % 40 < 20) as u16).collect());
        let name = format!("m{i}.png");
        write_png(&data.join("images").join(&name), &image).unwrap();
        write_mask_png(&data.join("masks").join(&name), &mask, &classes).unwrap();
    }
    let config = TrainConfig {
        data: Some(data),
        ..TrainConfig::default()
    };
    let plan = Session::plan_only(&config, &Given::new()).unwrap();
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.contains("class `class2` has no pixels") && w.contains("cannot learn it")),
        "{:?}",
        plan.warnings
    );
}

/// A planned run measures its pace, fits a time budget with it and keeps
/// its plan in config.json; a budget and a number of epochs together are
/// refused.
#[test]
fn a_planned_run_fits_its_time_budget_and_records_the_plan() {
    use wsunet::train::Given;
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    shapes_folder(&data, 8, |_| 48);
    let config = TrainConfig {
        time: Some(2.0),
        ..tiny_on(&data, 1)
    };
    let given: Given = ["model", "crop", "val_fraction", "shapes"]
        .map(String::from)
        .into();
    let dir = root.path().join("run");
    let session = Session::planned(config.clone(), &given, &dir).unwrap();
    let pace = session.pace.unwrap();
    assert!(
        pace.step_seconds > 0.0 && pace.val_image_seconds > 0.0,
        "{pace:?}"
    );
    let c = &session.config;
    let (train, val) = (session.train.samples().len(), session.val.samples().len());
    assert!(c.epochs >= 1);
    // As many epochs as fit, and not one more (unless one alone does not).
    assert!(c.epochs == 1 || pace.expected_seconds(c, train, val) <= 2.0);
    let longer = TrainConfig {
        epochs: c.epochs + 1,
        val_every: (c.epochs + 1) / wsunet::train::VALIDATIONS,
        ..c.clone()
    };
    let longer = TrainConfig {
        val_every: longer.val_every.max(1),
        ..longer
    };
    assert!(pace.expected_seconds(&longer, train, val) > 2.0);
    let epochs = c.plan.iter().find(|p| p.field == "epochs").unwrap();
    assert!(
        epochs.reason.starts_with("fits the time budget of 2 s"),
        "{epochs:?}"
    );
    session.run(&mut StopAfter { after: 1, seen: 0 }).unwrap();
    let written: TrainConfig = wsunet::RunDir::new(&dir).read_config().unwrap();
    assert_eq!(written.epochs, c.epochs);
    assert!(written.plan.iter().any(|p| p.field == "batch_size"));

    let given: Given = ["epochs".to_string()].into();
    let err = Session::planned(config, &given, &root.path().join("other"))
        .err()
        .unwrap();
    assert!(
        matches!(&err, wsunet::Error::Setting { field, .. } if field == "time"),
        "{err}"
    );
}

#[test]
fn validation_scores_the_masks_that_predict_writes() {
    // 64-px images and a 32-px crop: predict cuts them into tiles of the
    // crop and blends them. The run's validation mIoU must be the mIoU of
    // those masks, not of a whole-image pass (which differs).
    use wsunet::data::{Sample, Split, read_image, read_mask, split_samples};
    use wsunet::infer::Predictor;
    use wsunet::train::ConfusionMatrix;
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    shapes_folder(&data, 8, |_| 64);
    let dir = root.path().join("run");
    let config = TrainConfig {
        crop: Some([32, 32]),
        ..tiny_on(&data, 2)
    };
    let summary = Session::new(config, &dir)
        .unwrap()
        .run(&mut Silent)
        .unwrap();
    let validated = summary.state.history.last().unwrap().miou;

    let device = Device::flex();
    let (model, card) = load_model(&dir, &device).unwrap();
    let predictor = |tile| {
        let config = PredictConfig {
            tile,
            ..PredictConfig::default()
        };
        Predictor::new(
            model.clone(),
            card.normalize.clone(),
            device.clone(),
            config,
        )
        .unwrap()
    };
    assert_eq!(PredictConfig::tile_for(&card), 32);
    let (tiled, whole) = (predictor(32), predictor(64));
    let run = TrainConfig::from_file(&dir.join("config.json")).unwrap();
    let (val, _) = split_samples(&run.data_settings(), Split::Val).unwrap();
    assert_eq!(val.len(), 2);
    let mut matrices = [ConfusionMatrix::new(4), ConfusionMatrix::new(4)];
    for sample in val {
        let Sample::Files(paths) = sample else {
            panic!("a folder's samples are files")
        };
        let image = read_image(&paths.image).unwrap();
        let (mask, _) = read_mask(&paths.mask, Some(&card.classes)).unwrap();
        let truth: Vec<i64> = mask.data.iter().map(|&l| l as i64).collect();
        for (matrix, predictor) in matrices.iter_mut().zip([&tiled, &whole]) {
            let labels = predictor.predict(&image, false).unwrap().mask().data;
            let labels: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
            matrix.add(&labels, &truth);
        }
    }
    let names = card.classes.names();
    let [tiled, whole] = matrices.map(|m| m.scores(&names).miou);
    assert_eq!(validated, tiled, "whole-image mIoU {whole}");
    assert_ne!(
        tiled, whole,
        "the two paths must differ for this test to mean anything"
    );
}

#[test]
fn images_below_the_network_minimum_train_and_validate_padded() {
    // 20-px images: the crop is the network's 32-px minimum, training
    // mirror-pads them (with a warning saying so) and validation pads them
    // as predict does, instead of refusing the forward.
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    shapes_folder(&data, 6, |_| 20);
    let session = Session::new(tiny_on(&data, 1), &root.path().join("run")).unwrap();
    assert_eq!(session.card().crop, Some([32, 32]));
    assert!(
        session
            .warnings
            .iter()
            .any(|w| w.contains("smaller than 32 px on a side (the smallest is 20×20)")),
        "{:?}",
        session.warnings
    );
    let summary = session.run(&mut Silent).unwrap();
    assert!(summary.state.history[0].miou.is_finite());

    // One image cannot be split into training and validation.
    let one = root.path().join("one");
    shapes_folder(&one, 1, |_| 48);
    let err = Session::new(tiny_on(&one, 1), &root.path().join("run1"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("holds one image with a mask; a run needs at least two"),
        "{err}"
    );
}
