//! `wsunet eval`: dataset-level scores of a model, printed and saved as JSON.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use wsunet::card::load_model;
use wsunet::data::dataset::{file_samples, usable_samples};
use wsunet::data::{Mode, SampleSpec, SegDataset, discover};
use wsunet::train::{SegLoss, Session, Silent, evaluate};

use crate::cli::EvalArgs;

pub fn run(args: EvalArgs) -> Result<()> {
    let device = wsunet::parse_device(&args.device).context("fix --device")?;
    let (model, card) = load_model(&args.model, &device).context("fix --model")?;
    // Folded: the same outputs without standardizing every kernel per batch.
    let model = model.fold();
    let ignore = args.ignore_index.map(|i| i.0).unwrap_or(card.ignore_index);
    let (dataset, source) = match &args.data {
        Some(dir) => {
            let files = discover(dir, args.val_fraction, args.seed).context("fix --data")?;
            let pairs = match args.split.as_str() {
                "val" => files.val.clone(),
                "train" => files.train.clone(),
                "all" => files.train.iter().chain(&files.val).cloned().collect(),
                other => bail!("--split {other} is not val, train or all"),
            };
            if pairs.is_empty() {
                bail!(
                    "the {} split of {} is empty (fix --split or --val-fraction)",
                    args.split,
                    dir.display()
                );
            }
            let spec = SampleSpec {
                num_classes: card.model.num_classes,
                ignore_index: ignore,
                in_channels: card.model.in_channels,
                classes: Some(card.classes.clone()),
            };
            let (samples, warnings) = usable_samples(file_samples(&pairs), &spec, args.skip_bad)?;
            for w in warnings {
                eprintln!("warning: {w}");
            }
            let ds = SegDataset::new(samples, spec, card.normalize.clone(), Mode::Eval, 0)?;
            (
                Arc::new(ds),
                format!("{} ({} split)", dir.display(), args.split),
            )
        }
        None => {
            if !args.model.is_dir() {
                bail!(
                    "--data is required unless --model is a run directory (whose validation split is used)"
                );
            }
            let session = Session::resume(&args.model, None)
                .context("cannot reopen the run's data (give --data)")?;
            (
                session.val.clone(),
                "the run's validation split".to_string(),
            )
        }
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
    let doc = serde_json::json!({ "source": source, "samples": dataset.samples().len(), "scores": eval.scores, "confusion": eval.matrix });
    wsunet::card::write_atomic(&out, serde_json::to_string_pretty(&doc)?.as_bytes())
        .with_context(|| format!("cannot write the scores (fix --out {})", out.display()))?;
    println!("scores written to {}", out.display());
    Ok(())
}
