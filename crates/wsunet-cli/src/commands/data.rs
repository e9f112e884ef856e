//! `wsunet data check` and `wsunet data stats`.

use anyhow::{Context, Result, bail};
use wsunet::data::{DatasetFiles, discover};
use wsunet::data::{channel_stats, check_dataset};
use wsunet::train::TrainConfig;

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::args::{IgnoreIndex, parse_ignore};

/// `wsunet data`'s one-line help (`wsunet --help`).
pub const ABOUT: &str =
    "Inspect a dataset folder: validate it, or compute normalization statistics";

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Decode every sample and report counts, class pixel frequencies, the
    /// size range and every problem found (exit code 1 if any).
    Check(CheckArgs),

    /// Per-channel mean and std of the training images, for the `normalize`
    /// entry of a training config.
    Stats(StatsArgs),
}

/// Where the dataset is and how to read its masks.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("dataset")))]
pub struct DatasetArgs {
    /// Dataset folder: images/ + masks/, train/ + val/, or Pascal VOC.
    #[arg(long, value_name = "DIR", group = "dataset")]
    pub data: Option<PathBuf>,

    /// The dataset folder given without --data (the older spelling).
    #[arg(value_name = "DIR", hide = true, group = "dataset")]
    pub dir: Option<PathBuf>,

    /// Share of a single-folder dataset held out for validation.
    #[arg(long, value_name = "F", default_value_t = TrainConfig::default().val_fraction)]
    pub val_fraction: f64,

    /// Seed of the holdout split.
    #[arg(long, value_name = "K", default_value_t = TrainConfig::default().seed)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub dataset: DatasetArgs,

    /// Number of classes (default: classes.json, else the largest mask value + 1).
    #[arg(long, value_name = "N")]
    pub num_classes: Option<usize>,

    /// Mask value of pixels to ignore, or `none`.
    #[arg(long, value_name = "I|none", default_value_t = IgnoreIndex(TrainConfig::default().ignore_index), value_parser = parse_ignore)]
    pub ignore_index: IgnoreIndex,

    /// Channels the model will take (default: the most common in the data).
    #[arg(long, value_name = "C")]
    pub in_channels: Option<usize>,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub dataset: DatasetArgs,

    /// Print JSON only.
    #[arg(long)]
    pub json: bool,
}

pub fn run(command: DataCommand) -> Result<()> {
    match command {
        DataCommand::Check(args) => check(args),
        DataCommand::Stats(args) => stats(args),
    }
}

fn open(args: &DatasetArgs) -> Result<DatasetFiles> {
    let dir = args.data.as_ref().or(args.dir.as_ref());
    let dir = dir.context("give the dataset folder: --data DIR")?;
    discover(dir, args.val_fraction, args.seed).context("fix --data or --val-fraction")
}

fn check(args: CheckArgs) -> Result<()> {
    let files = open(&args.dataset)?;
    let report = check_dataset(
        &files,
        args.num_classes,
        args.ignore_index.0,
        args.in_channels,
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "dataset {} ({} layout)",
            files.root.display(),
            report.layout
        );
        println!(
            "samples: {} train, {} val (usable)",
            report.train, report.val
        );
        let [[h0, w0], [h1, w1]] = report.size_range;
        println!("sizes: {h0}×{w0} to {h1}×{w1}");
        let channels: Vec<String> = report
            .channels
            .iter()
            .map(|(c, n)| format!("{c} ch: {n}"))
            .collect();
        println!("images: {}", channels.join(", "));
        let kinds: Vec<String> = report
            .mask_kinds
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        println!("masks: {}", kinds.join(", "));
        let total: u64 = report.class_pixels.iter().sum::<u64>() + report.ignored_pixels;
        println!(
            "\n{:<4} {:<20} {:>14} {:>8}",
            "id", "class", "train pixels", "share"
        );
        for (i, (name, n)) in report.classes.iter().zip(&report.class_pixels).enumerate() {
            println!(
                "{i:<4} {name:<20} {n:>14} {:>7.2}%",
                100.0 * *n as f64 / total.max(1) as f64
            );
        }
        if report.ignored_pixels > 0 {
            println!(
                "{:<4} {:<20} {:>14} {:>7.2}%",
                "",
                "(ignored)",
                report.ignored_pixels,
                100.0 * report.ignored_pixels as f64 / total.max(1) as f64
            );
        }
        for w in &report.warnings {
            println!("warning: {w}");
        }
        for p in &report.problems {
            println!("problem: {p}");
        }
    }
    if !report.problems.is_empty() {
        bail!(
            "{} problem(s) found in {}; fix them, or train with --skip-bad to leave those samples out",
            report.problems.len(),
            files.root.display()
        );
    }
    Ok(())
}

fn stats(args: StatsArgs) -> Result<()> {
    let files = open(&args.dataset)?;
    if files.train.is_empty() {
        bail!("{} has no training images", files.root.display());
    }
    let normalize = channel_stats(&files.train)?;
    let doc = serde_json::json!({ "normalize": normalize });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!(
            "{} training images of {}",
            files.train.len(),
            files.root.display()
        );
        for (c, (m, s)) in normalize.mean.iter().zip(&normalize.std).enumerate() {
            println!("channel {c}: mean {m:.6}  std {s:.6}");
        }
        println!("\nfor a training config:\n{}", serde_json::to_string(&doc)?);
    }
    Ok(())
}
