//! `wsunet eval`: dataset-level scores of a model, printed and saved as JSON.
//!
//! The held-out split is the one the model was trained with whenever its
//! run directory says so, so a score is never computed on training images
//! by accident.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use wsunet::card::load_model;
use wsunet::data::dataset::usable_samples;
use wsunet::data::prepare::{Split, split_samples};
use wsunet::data::{Layout, Mode, SampleSpec, SegDataset};
use wsunet::train::{SegLoss, Silent, TrainConfig, evaluate, run_config_of};

use super::{Settings, with_fix};
use clap::Args;

use crate::cli::{DeviceArg, IgnoreIndex, choice, parse_ignore};

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
    #[arg(long, value_name = "F")]
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

    /// Images per batch.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub batch_size: usize,

    /// Where to write the scores as JSON; default: eval.json in the run
    /// directory, or beside the model file.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    #[command(flatten)]
    pub device: DeviceArg,
}

/// The same folder, however it is spelled.
fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

pub fn run(args: EvalArgs) -> Result<()> {
    let device = args.device.open()?;
    let (model, card) = load_model(&args.model, &device).context("fix --model")?;
    // Folded: the same outputs without standardizing every kernel per batch.
    let model = model.fold();
    let ignore = args.ignore_index.map(|i| i.0).unwrap_or(card.ignore_index);
    let split = args.split;
    let run = run_config_of(&args.model).context("cannot read the run's config.json")?;
    // The data and its split: the run's own unless --data names other data.
    let mut config = match (&args.data, &run) {
        (None, None) => bail!(
            "--data is required unless --model is a run directory, or a model inside one, whose config.json names its data"
        ),
        (None, Some((_, run))) => run.clone(),
        (Some(dir), run) => TrainConfig {
            data: Some(dir.clone()),
            val_fraction: run.as_ref().map_or(0.2, |(_, c)| c.val_fraction),
            seed: run.as_ref().map_or(0, |(_, c)| c.seed),
            ..TrainConfig::default()
        },
    };
    if let Some(f) = args.val_fraction {
        config.val_fraction = f;
    }
    if let Some(s) = args.seed {
        config.seed = s;
    }
    let settings = Settings::flags::<EvalArgs>();
    let (samples, layout) =
        split_samples(&config.data_settings(), split).map_err(|e| with_fix(e, &settings))?;
    let holdout = layout == Some(Layout::Folder) && split != Split::All;
    if holdout {
        let own = format!(
            "val_fraction {} and seed {}",
            config.val_fraction, config.seed
        );
        match &run {
            Some((path, trained))
                if trained.val_fraction == config.val_fraction && trained.seed == config.seed =>
            {
                println!("holdout split of the run ({own}, from {})", path.display())
            }
            Some((path, trained)) => {
                let same_data = trained
                    .data
                    .as_deref()
                    .zip(config.data.as_deref())
                    .is_some_and(|(a, b)| same_dir(a, b));
                println!(
                    "holdout split with {own}, given by --val-fraction/--seed; the run trained with val_fraction {} and seed {} ({})",
                    trained.val_fraction,
                    trained.seed,
                    path.display()
                );
                if same_data {
                    eprintln!(
                        "warning: this is the run's own data with another split: these images may include its training images, which inflates the scores; leave out --val-fraction and --seed to use the run's split"
                    );
                }
            }
            None if args.val_fraction.is_none() && args.seed.is_none() => eprintln!(
                "warning: no training config beside the model, so the holdout uses val_fraction {} and seed {}; if the model was trained on this folder with other values, pass them with --val-fraction and --seed, or the scores may include training images",
                config.val_fraction, config.seed
            ),
            None => println!("holdout split with {own}"),
        }
    }
    let data = config
        .data
        .as_deref()
        .map_or("the built-in shapes data".into(), |d| {
            d.display().to_string()
        });
    if samples.is_empty() {
        bail!("the {split} split of {data} is empty (fix --split or --val-fraction)");
    }
    let spec = SampleSpec {
        num_classes: card.model.num_classes,
        ignore_index: ignore,
        in_channels: card.model.in_channels,
        classes: Some(card.classes.clone()),
    };
    let (samples, warnings) =
        usable_samples(samples, &spec, args.skip_bad).map_err(|e| with_fix(e, &settings))?;
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
    let source = match (&args.data, split) {
        (None, Split::Val) => format!("the run's validation split ({data})"),
        (None, Split::Train) => format!("the run's training split ({data})"),
        (None, Split::All) => format!("all of the run's data ({data})"),
        (Some(_), _) => format!("{data} ({split} split)"),
    };
    let loss = SegLoss::new(Default::default(), dataset.spec().ignore_label() as i64);
    let eval = evaluate(
        &model,
        &dataset,
        args.batch_size.max(1),
        &device,
        &loss,
        &mut Silent,
        &card.classes.names(),
    )?;
    println!(
        "{} samples of {source}\n{}",
        dataset.samples().len(),
        eval.scores.table()
    );
    let out = args.out.clone().unwrap_or_else(|| {
        if args.model.is_dir() {
            args.model.join("eval.json")
        } else {
            args.model.with_file_name("eval.json")
        }
    });
    let doc = serde_json::json!({ "source": source, "samples": dataset.samples().len(), "loss": eval.loss, "scores": eval.scores, "confusion": eval.matrix });
    wsunet::fs::write_json(&out, &doc)
        .with_context(|| format!("cannot write the scores (fix --out {})", out.display()))?;
    println!("scores written to {}", out.display());
    Ok(())
}
