//! `wsunet eval`: dataset-level scores of a model, printed and saved as JSON.
//!
//! Which samples are scored is the library's rule
//! ([`wsunet::train::eval_split`]): the held-out split is the one the model
//! was trained with whenever its run directory says so, so a score is never
//! computed on training images by accident.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use wsunet::card::load_model;
use wsunet::data::Split;
use wsunet::data::usable_samples;
use wsunet::data::{Mode, SampleSpec, SegDataset};
use wsunet::infer::{PredictConfig, Predictor};
use wsunet::objects::Task;
use wsunet::predict::objects::score_objects;
use wsunet::train::{EvalRequest, eval_samples};
use wsunet::train::{Scorer, SegLoss, Silent};

use super::{Settings, with_fix};
use clap::Args;

use crate::args::{DeviceArg, IgnoreIndex, choice, finite, parse_ignore};
use crate::progress;

/// `wsunet eval`'s one-line help (`wsunet --help`).
pub const ABOUT: &str = "Evaluate a model on a dataset: per-class IoU and Dice, mIoU, mean Dice and pixel accuracy over the whole set, printed and written as JSON";

/// `wsunet eval --help`.
pub const LONG_ABOUT: &str = "Evaluate a model on a dataset: per-class IoU and Dice, mIoU, mean Dice and pixel accuracy over the whole set, printed and written as JSON.\n\nA model from a run is scored on the run's own held-out split (its config.json gives the data, fraction and seed), so training images are never scored by accident. Images are batched only with images of the same size: GroupNorm would otherwise see their zero padding. Images larger than the tile are scored as predict segments them (tiles blended), so eval, predict and the validation score printed during training agree.";

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The model: a run directory, or a model's .bpk/.json.
    #[arg(long, value_name = "PATH")]
    pub model: PathBuf,

    /// Dataset folder; default: the data the run trained on (its
    /// config.json, in the run directory or beside the model file).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,

    /// Which samples.
    #[arg(long, value_name = "SPLIT", default_value = "val", value_parser = choice(&Split::ALL))]
    pub split: Split,

    /// Share of a single-folder dataset held out for validation. Default:
    /// the run's own (from its config.json), else 0.2. Another value than
    /// the run's can put training images into the validation split; a
    /// warning says so.
    #[arg(long, value_name = "F", value_parser = finite::<f64>)]
    pub val_fraction: Option<f64>,

    /// Seed of the holdout split. Default: the run's own, else 0.
    #[arg(long, value_name = "K")]
    pub seed: Option<u64>,

    /// Mask value of pixels to ignore, or `none`; default: the model's.
    #[arg(long, value_name = "I|none", value_parser = parse_ignore)]
    pub ignore_index: Option<IgnoreIndex>,

    /// Leave out unreadable or invalid samples with a warning.
    #[arg(long)]
    pub skip_bad: bool,

    /// Images (of one size) per batch; tiles per forward for images larger
    /// than a tile.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub batch_size: usize,

    /// Tile side: images larger than it are scored as `wsunet predict`
    /// segments them, tile by tile and blended, so the scores are those of
    /// predict's masks. Default: as predict's (the model's training crop,
    /// else 512), which is also what validation during training uses.
    #[arg(long, value_name = "N")]
    pub tile: Option<usize>,

    /// Minimum fraction of a tile shared with its neighbour, in [0, 0.9].
    #[arg(long, value_name = "F", default_value_t = PredictConfig::default().overlap)]
    pub overlap: f32,

    /// Where to write the scores as JSON; default: eval.json in the run
    /// directory, or beside the model file.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    #[command(flatten)]
    pub device: DeviceArg,
}

pub fn run(args: EvalArgs) -> Result<()> {
    let device = args.device.open()?;
    let (model, card) = load_model(&args.model, &device).context("fix --model")?;
    let ignore = args.ignore_index.map(|i| i.0).unwrap_or(card.ignore_index);
    let settings = Settings::flags::<EvalArgs>();
    let found = eval_samples(&EvalRequest {
        model: args.model.clone(),
        data: args.data.clone(),
        split: args.split,
        val_fraction: args.val_fraction,
        seed: args.seed,
    })
    .map_err(|e| with_fix(e, &settings))?;
    if let Some(line) = found.holdout_line() {
        println!("{line}");
    }
    if let Some(warning) = found.warning() {
        let warning = settings.speak(&warning, &["val_fraction", "seed"]);
        eprintln!("warning: {warning}");
    }
    let source = found.source();
    let spec = SampleSpec {
        num_classes: card.model.num_classes,
        ignore_index: ignore,
        in_channels: card.model.in_channels,
        classes: Some(card.classes.clone()),
        instances: card.instances.as_ref().map(|i| i.boundary),
    };
    let (samples, warnings) =
        usable_samples(found.samples, &spec, args.skip_bad).map_err(|e| with_fix(e, &settings))?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    let dataset = Arc::new(SegDataset::new(
        samples,
        spec,
        card.normalize.clone(),
        Mode::Eval,
        0,
    )?);
    let loss = SegLoss::new(Default::default(), dataset.spec().ignore_label() as i64);
    let config = PredictConfig {
        tile: args.tile.unwrap_or_else(|| PredictConfig::tile_for(&card)),
        overlap: args.overlap,
        batch_size: args.batch_size.max(1),
        ..PredictConfig::default()
    };
    let tile = config.tile;
    let scorer =
        Scorer::new(&model, config.clone(), &device).map_err(|e| with_fix(e, &settings))?;
    let tiled = dataset
        .item_sizes()?
        .iter()
        .filter(|s| s[0].max(s[1]) > tile)
        .count();
    if tiled > 0 {
        println!(
            "{tiled} image(s) larger than the tile ({tile} px) are scored tile by tile, as predict segments them; --tile changes it"
        );
    }
    let eval = scorer.evaluate(
        &dataset,
        args.batch_size.max(1),
        &loss,
        &mut Silent,
        &card.classes.names(),
    )?;
    println!(
        "{} samples of {source}\n{}",
        dataset.samples().len(),
        eval.scores.table()
    );
    let objects = if card.task == Task::Instances {
        let predictor = Predictor::new(model.clone(), card.normalize.clone(), device, config)
            .map_err(|e| with_fix(e, &settings))?;
        let bar = progress::bar(dataset.samples().len() as u64, "objects");
        let scores = score_objects(&predictor, &card, dataset.samples(), &mut |done, _| {
            bar.set_position(done as u64)
        })?;
        bar.finish_and_clear();
        println!("{}", scores.table());
        Some(scores)
    } else {
        None
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| wsunet::RunDir::eval_report(&args.model));
    let mut doc = serde_json::json!({ "source": source, "samples": dataset.samples().len(), "loss": eval.loss, "scores": eval.scores, "confusion": eval.matrix });
    if let Some(o) = &objects {
        doc["objects"] = serde_json::json!({
            "ap50": o.ap50(),
            "ap": o.ap(),
            "f1_50": o.f1_50(),
            "pq": o.pq(),
            "details": o,
        });
    }
    wsunet::fs::write_json(&out, &doc)
        .with_context(|| format!("cannot write the scores (fix --out {})", out.display()))?;
    println!("scores written to {}", out.display());
    Ok(())
}
