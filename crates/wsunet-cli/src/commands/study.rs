//! `wsunet study`: trains the same network under several norm and
//! standardization variants and batch sizes, and prints and writes the
//! comparison (the protocol is the library's `study` module's).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use clap::builder::PossibleValuesParser;
use wsunet::Variant;
use wsunet::study::{RunResult, RunSpec, StudyConfig, StudyObserver, run_study, train_images};
use wsunet::train::{PRESETS, TrainConfig};

use super::{Settings, with_fix};
use crate::args::{DeviceArg, finite, parse_size};

/// `wsunet study`'s one-line help (`wsunet --help`).
pub const ABOUT: &str = "Compare norm and standardization variants across batch sizes: the seed's claim (WS + GroupNorm trains with tiny batches, BatchNorm does not), measured on your data or the built-in shapes";

/// `wsunet study --help`.
pub const LONG_ABOUT: &str = "Compare norm and standardization variants across batch sizes: the seed's claim (WS + GroupNorm trains with tiny batches, BatchNorm does not), measured on your data or the built-in shapes.\n\nFair protocol: every run sees the same training images, crops and data order for a given seed; the learning rate scales linearly with the batch size from one base value (--lr at --lr-batch); optionally three rates per cell, chosen on validation (--lr-sweep); BatchNorm is evaluated with its running statistics; the score is the final epoch's validation mIoU, on the same validation set for all. Each run is an ordinary run directory under OUT/runs; an interrupted study continues where it stopped.";

#[derive(Debug, Args)]
pub struct StudyArgs {
    /// Dataset folder (as for `wsunet train`); default: the built-in
    /// `shapes` data.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,

    /// Variants, comma-separated: ws-gn (the seed's WS + GroupNorm), gn,
    /// ws-bn, bn, ws-in, in (InstanceNorm, nnU-Net's norm), ws-none, plain.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "ws-gn,gn,ws-bn,bn,ws-none"
    )]
    pub variants: Vec<Variant>,

    /// Batch sizes, comma-separated.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "1,2,4,8"
    )]
    pub batch_sizes: Vec<usize>,

    /// Seeds per cell; each seed fixes the initial weights, the data order
    /// and the crops, the same for every cell.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub seeds: usize,

    /// Epochs of every run (default 10, the study's).
    #[arg(long, value_name = "N", conflicts_with = "images")]
    pub epochs: Option<usize>,

    /// Training images every run sees, rounded up to whole epochs.
    #[arg(long, value_name = "N")]
    pub images: Option<usize>,

    /// Base learning rate, at --lr-batch images per step; each batch size B
    /// trains with lr · B / lr-batch (default: train's lr and batch size).
    #[arg(long, value_name = "LR", value_parser = finite::<f64>)]
    pub lr: Option<f64>,

    /// The batch size --lr is meant for.
    #[arg(long, value_name = "N")]
    pub lr_batch: Option<usize>,

    /// Also try half and twice each cell's learning rate; the one with the
    /// best mean validation mIoU is reported (three times the runs).
    #[arg(long)]
    pub lr_sweep: bool,

    /// Training crop HxW (default: as `wsunet train`).
    #[arg(long, value_name = "HxW", value_parser = parse_size)]
    pub crop: Option<[usize; 2]>,

    /// Named architecture: small (default) or base.
    #[arg(long, value_name = "NAME", conflicts_with = "model_config", value_parser = PossibleValuesParser::new(PRESETS.map(|(name, _)| name)))]
    pub preset: Option<String>,

    /// Architecture as a model config JSON; its norm and standardization are
    /// replaced by each variant's.
    #[arg(long, value_name = "FILE")]
    pub model_config: Option<PathBuf>,

    /// Training config JSON with the other settings (every field optional;
    /// the flags above override it).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// First seed (seeds are N, N+1, …).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Output folder: study.csv, study.json, study.md, study.png and runs/.
    /// Running again with the same folder continues: finished runs are read,
    /// not redone.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    #[command(flatten)]
    pub device: DeviceArg,
}

fn base_config(args: &StudyArgs) -> Result<TrainConfig> {
    let mut c = match &args.config {
        Some(path) => TrainConfig::from_file(path).context("fix --config")?,
        None => TrainConfig::default(),
    };
    super::train::set_model(&mut c, args.preset.as_deref(), args.model_config.as_deref())?;
    if args.data.is_some() {
        c.data = args.data.clone();
    }
    if let Some(crop) = args.crop {
        c.crop = Some(crop);
    }
    if let Some(lr) = args.lr {
        c.lr = lr;
    }
    if let Some(b) = args.lr_batch {
        if b == 0 {
            bail!("--lr-batch is 0; it is the batch size --lr is meant for (at least 1)");
        }
        c.batch_size = b;
    }
    if let Some(seed) = args.seed {
        c.seed = seed;
    }
    if let Some(device) = &args.device.device {
        c.device = device.clone();
    }
    c.epochs = args.epochs.unwrap_or(wsunet::study::DEFAULT_EPOCHS);
    // Validation is the final epoch's: nothing is chosen on earlier ones.
    c.val_every = c.epochs;
    Ok(c)
}

/// Prints a line per run.
struct Lines {
    start: Instant,
}

impl StudyObserver for Lines {
    fn run_start(&mut self, index: usize, total: usize, run: &RunSpec, done: bool) {
        print!(
            "run {index}/{total}: {} batch {} lr ×{} seed {}",
            run.variant, run.batch_size, run.lr_factor, run.seed
        );
        if done {
            print!(" (finished before)");
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        self.start = Instant::now();
    }

    fn run_end(&mut self, _run: &RunSpec, r: &RunResult) {
        match (r.diverged, r.miou) {
            (true, _) => println!(" → diverged (non-finite loss)"),
            (false, Some(m)) => println!(
                " → mIoU {:.1} %, {:.1} images/s ({:.0} s)",
                m * 100.0,
                r.images_per_sec,
                self.start.elapsed().as_secs_f64()
            ),
            (false, None) => println!(" → no validation score"),
        }
    }
}

pub fn run(args: StudyArgs) -> Result<()> {
    let settings = Settings::flags::<StudyArgs>();
    let mut base = base_config(&args)?;
    if let Some(images) = args.images {
        let per_epoch = train_images(&base).map_err(|e| with_fix(e, &settings))?;
        base.epochs = images.div_ceil(per_epoch.max(1)).max(1);
        base.val_every = base.epochs;
        println!(
            "{images} images per run: {} epochs of {per_epoch} training images",
            base.epochs
        );
    }
    let study = StudyConfig {
        base,
        variants: args.variants.clone(),
        batch_sizes: args.batch_sizes.clone(),
        seeds: args.seeds,
        lr_sweep: args.lr_sweep,
    };
    study
        .validate()
        .map_err(|e| with_fix(e, &settings))
        .context("fix --variants, --batch-sizes, --seeds or --size")?;
    println!(
        "study: variants {}, batch sizes {:?}, {} seed(s), {} epochs per run, lr {:.1e} at batch {} scaled linearly{}; {} runs into {}",
        study
            .variants
            .iter()
            .map(|v| v.name())
            .collect::<Vec<_>>()
            .join(", "),
        study.batch_sizes,
        study.seeds,
        study.base.epochs,
        study.base.lr,
        study.base.batch_size,
        if study.lr_sweep {
            ", swept ×0.5/×1/×2"
        } else {
            ""
        },
        study.runs().len(),
        args.out.display()
    );
    let cells = run_study(
        &study,
        &args.out,
        &mut Lines {
            start: Instant::now(),
        },
    )
    .map_err(|e| with_fix(e, &settings))?;
    println!();
    print!("{}", wsunet::study::markdown(&cells));
    println!();
    println!(
        "wrote {}/study.csv, study.json, study.md, study.png and the runs in {}/runs",
        args.out.display(),
        args.out.display()
    );
    Ok(())
}
