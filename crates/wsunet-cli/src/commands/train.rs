//! `wsunet train`: resolves the config from defaults, --config and flags,
//! then runs (or resumes) training with progress output.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use clap::Args;
use clap::builder::PossibleValuesParser;
use serde::Serialize;
use wsunet::WsResUNetConfig;
use wsunet::objects::Task;
use wsunet::train::{
    Given, LossKind, OptimizerKind, PRESETS, ScheduleKind, Session, TrainConfig, model_from_file,
    preset,
};

use super::{Settings, with_fix};
use crate::args::{DeviceArg, IgnoreIndex, choice, finite, parse_ignore, parse_size};
use crate::progress::TrainProgress;

/// `wsunet train`'s one-line help (`wsunet --help`).
pub const ABOUT: &str = "Train a model. With no arguments, trains on the built-in `shapes` data";

/// `wsunet plan`'s one-line help.
pub const PLAN_ABOUT: &str = "Print the settings `wsunet train` would plan from the data, each with its reason, without training";

/// `wsunet plan --help`.
pub const PLAN_LONG_ABOUT: &str = "Print the settings `wsunet train` would plan from the data, each with its reason, without training (as `wsunet train --plan-only`). Takes train's flags: the ones given stay as given.\n\nThe plan reads the training set's fingerprint (image count and sizes, channels, intensity statistics, class pixel shares) and sets the run's length as a budget of 1,500 optimizer steps (at least 5 epochs), the batch size (4 under 64 images, else 8), about 20 validations, a warmup of 10 % of the run, the crop, the augmentation and whether rare classes get loss weights.";

/// `wsunet train --help`.
pub const LONG_ABOUT: &str = "Train a model. With no arguments, trains on the built-in `shapes` data.\n\nSettings the flags and --config leave open are planned from the data (see `wsunet plan`): the run's length as a budget of optimizer steps that does not shrink with the dataset, the batch size, the validation cadence, the warmup, the crop, the augmentation and class weights; each choice is printed with its reason and recorded in config.json. Before the first epoch a few steps are timed and the expected duration printed; --time 10m trains for a wall-clock budget instead of a number of epochs.\n\nSettings come from defaults and the plan, then --config, then the flags. The run directory gets config.json, metrics.csv, curves.png, TensorBoard event files (events.out.tfevents.0.wsunet, with validation overlays in overlays/), checkpoints/, best.bpk (+ .json) and the final model.bpk (+ .json).\n\nWithout --device, training runs on the --config's device (default cpu); with --resume, on the run's own unless --device names another.\n\nCtrl-C stops once the current epoch is finished and checkpointed (exit code 130; continue with --resume); a second Ctrl-C quits at once, keeping the last finished epoch's checkpoint.";

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Training config (JSON, every field optional); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Architecture as a model config JSON (as for `wsunet info`); its
    /// num_classes and in_channels, when given, must fit the data (left out:
    /// the data's).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "preset",
        group = "settings"
    )]
    pub model_config: Option<PathBuf>,

    /// Named architecture: small (default; widths 16…256, 2.8 M parameters)
    /// or base (the spec's default, widths 32…512, 11.3 M parameters).
    #[arg(long, value_name = "NAME", value_parser = PossibleValuesParser::new(PRESETS.map(|(name, _)| name)))]
    pub preset: Option<String>,

    /// Run directory. Default: runs/run-NNN, the next free number.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Print the plan (the settings chosen from the data, each with its
    /// reason) and stop; as `wsunet plan`.
    #[arg(long, conflicts_with = "resume")]
    pub plan_only: bool,

    /// Continue the run in DIR from its latest checkpoint with its own
    /// config.json. Only --epochs and --device may be given with it; any
    /// other setting is an error, since the run was trained with its own.
    #[arg(long, value_name = "DIR", conflicts_with_all = [
        "data", "config", "model_config", "preset", "out", "batch_size", "val_batch_size", "crop",
        "lr", "min_lr", "optimizer", "schedule", "warmup_epochs", "weight_decay", "grad_clip",
        "loss", "class_weights", "num_classes", "ignore_index", "val_fraction", "skip_bad", "task",
        "seed", "val_every", "time",
    ])]
    pub resume: Option<PathBuf>,

    #[command(flatten)]
    pub settings: Flags,

    // Its help is the shared one; the default is said in the command's.
    #[command(flatten)]
    pub device: DeviceArg,
}

/// The flags that set a field of the training config, named as the field
/// is (`--batch-size` sets `batch_size`): serialized, they are the part of a
/// config they override.
#[derive(Debug, Args, Serialize)]
pub struct Flags {
    /// Dataset folder (images/ + masks/, train/ + val/, or Pascal VOC);
    /// default: the built-in `shapes` data.
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<PathBuf>,

    /// Total number of epochs. Default: planned from the data (a budget of
    /// 1,500 optimizer steps, at least 5 epochs).
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epochs: Option<usize>,

    /// Train for a wall-clock budget instead of a number of epochs: 600
    /// (seconds), 90s, 10m, 1.5h or 1h30m. The epochs that fit it are set
    /// from the pace measured before training; warmup and decay are laid
    /// over them.
    #[arg(long, value_name = "DURATION", value_parser = parse_time, conflicts_with = "epochs")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<f64>,

    /// Validate, checkpoint and print metrics every N epochs (and after the
    /// last). Default: planned, about 20 validations a run (every epoch on
    /// the built-in data).
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_every: Option<usize>,

    /// Samples per optimizer step (1 works: GroupNorm needs no batch
    /// statistics). Default: planned, 4 for datasets under 64 images, else
    /// 8. Validation batches are --val-batch-size.
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,

    /// Images per validation batch (default 8). Only speed and memory
    /// depend on it: validation batches hold images of one size, and
    /// GroupNorm normalizes each image on its own.
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_batch_size: Option<usize>,

    /// Training crop: HxW, or one number for a square. Default: 256×256
    /// shrunk to the smallest training image (the shapes size for the
    /// built-in data). Images smaller than the crop are mirror-padded, with
    /// a warning.
    #[arg(long, value_name = "HxW", value_parser = parse_size)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crop: Option<[usize; 2]>,

    /// Peak learning rate.
    #[arg(long, value_name = "LR", value_parser = finite::<f64>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,

    /// Final learning rate of the decay (default 1e-5; at most --lr).
    #[arg(long, value_name = "LR", value_parser = finite::<f64>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_lr: Option<f64>,

    /// The optimizer.
    #[arg(long, value_name = "NAME", value_parser = choice(&OptimizerKind::ALL))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optimizer: Option<OptimizerKind>,

    /// Decay after warmup.
    #[arg(long, value_name = "NAME", value_parser = choice(&ScheduleKind::ALL))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleKind>,

    /// Epochs of linear warmup (fractions allowed). Default: planned, 10 %
    /// of the run.
    #[arg(long, value_name = "E", value_parser = finite::<f64>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_epochs: Option<f64>,

    /// Weight decay (never applied to norm parameters, biases and gains).
    #[arg(long, value_name = "WD", value_parser = finite::<f64>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f64>,

    /// Clip each parameter's gradient to this L2 norm.
    #[arg(long, value_name = "NORM", value_parser = finite::<f32>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grad_clip: Option<f32>,

    /// The loss: cross-entropy, soft Dice, focal, or cross-entropy + Dice.
    #[arg(long, value_name = "NAME", value_parser = choice(&LossKind::ALL.map(|(kind, _)| kind)))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss: Option<LossKind>,

    /// Per-class loss weights, comma-separated (e.g. 0.5,1,1,2).
    #[arg(long, value_name = "W,W,…", value_delimiter = ',', value_parser = finite::<f32>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class_weights: Option<Vec<f32>>,

    /// What the masks hold: semantic (a class per pixel) or instances
    /// (instance labels: 0 background, each object its own id; the model
    /// learns background, object interior and boundary, with a boundary
    /// width chosen from the objects' size, and predict writes the objects:
    /// NAME_instances.tif, NAME_objects.csv, NAME_objects.geojson).
    #[arg(long, value_name = "TASK", value_parser = choice(&Task::ALL))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<Task>,

    /// Number of classes; overrides the model config's (default: the model
    /// config's, else classes.json, else the largest mask value + 1; the
    /// built-in shapes data has 4).
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_classes: Option<usize>,

    /// Mask value of pixels to ignore, or `none` (default 255).
    #[arg(long, value_name = "I|none", value_parser = parse_ignore)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignore_index: Option<IgnoreIndex>,

    /// Share of a single-folder dataset held out for validation.
    #[arg(long, value_name = "F", value_parser = finite::<f64>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_fraction: Option<f64>,

    /// Leave out unreadable or invalid samples with a warning instead of stopping.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub skip_bad: bool,

    /// Seed of initialization, shuffling, augmentation and the holdout split.
    #[arg(long, value_name = "K")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// The next free `runs/run-NNN`.
fn next_run_dir() -> PathBuf {
    (1..)
        .map(|i| Path::new("runs").join(format!("run-{i:03}")))
        .find(|p| !p.exists())
        .expect("a free run number")
}

/// Prints the plan for `config` on its data, and its warnings.
fn print_plan(config: &TrainConfig, given: &Given, settings: &Settings) -> Result<()> {
    let plan = Session::plan_only(config, given).map_err(|e| with_fix(e, settings))?;
    for line in plan.lines() {
        println!("{line}");
    }
    for warning in &plan.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(())
}

/// Parses `--time`: a positive duration.
fn parse_time(text: &str) -> Result<f64, String> {
    let seconds = wsunet::train::parse_duration(text)?;
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(format!(
            "`{text}` is no time to train; give a positive duration such as 10m"
        ));
    }
    Ok(seconds)
}

/// The config fields the user gave, which the plan keeps: the keys of
/// `--config`, the flags given, `model` for --preset/--model-config.
pub(crate) fn given(args: &TrainArgs) -> Result<Given> {
    let mut given = Given::new();
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {} (fix --config)", path.display()))?;
        if let Ok(serde_json::Value::Object(fields)) = serde_json::from_str(&text) {
            given.extend(fields.keys().cloned());
        }
    }
    if let serde_json::Value::Object(flags) = serde_json::to_value(&args.settings)? {
        given.extend(flags.keys().cloned());
    }
    if args.preset.is_some() || args.model_config.is_some() {
        given.insert("model".into());
    }
    Ok(given)
}

/// Defaults, then the config file, then every flag given.
/// Applies `--preset` (the architecture only: channels and classes stay
/// the config's) or `--model-config` to a training config.
pub fn set_model(
    c: &mut TrainConfig,
    preset_name: Option<&str>,
    model_config: Option<&Path>,
) -> Result<()> {
    if let Some(name) = preset_name {
        c.model = WsResUNetConfig {
            in_channels: c.model.in_channels,
            num_classes: c.model.num_classes,
            ..preset(name).context("fix --preset")?
        };
    }
    if let Some(path) = model_config {
        c.model = model_from_file(path).context("fix --model-config")?;
    }
    Ok(())
}

pub(crate) fn resolve(args: &TrainArgs) -> Result<TrainConfig> {
    let mut c = match &args.config {
        Some(path) => TrainConfig::from_file(path).context("fix --config")?,
        None => TrainConfig::default(),
    };
    set_model(&mut c, args.preset.as_deref(), args.model_config.as_deref())?;
    // Each flag replaces its field.
    let mut config = serde_json::to_value(&c)?;
    if let (Some(fields), serde_json::Value::Object(flags)) = (
        config.as_object_mut(),
        serde_json::to_value(&args.settings)?,
    ) {
        fields.extend(flags);
    }
    let mut c: TrainConfig =
        serde_json::from_value(config).context("cannot apply the flags to the config")?;
    if let Some(n) = args.settings.num_classes {
        // The flag decides the class count wherever the config states it.
        c.model.num_classes = n;
    }
    if let Some(device) = &args.device.device {
        c.device = device.clone();
    }
    Ok(c)
}

/// Ctrl-C presses seen since training started.
static INTERRUPTS: AtomicUsize = AtomicUsize::new(0);

/// A run stopped on request (Ctrl-C) after a checkpointed epoch; `main`
/// prints it as it is and exits with 130, the shell's code for SIGINT.
#[derive(Debug)]
pub struct Interrupted(pub String);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Interrupted {}

/// First Ctrl-C: finish and checkpoint the current epoch, then stop (the
/// trainer asks the observer after each epoch). Second: quit at once; the
/// checkpoint of the last finished epoch is intact (writes are atomic).
fn stop_on_ctrl_c(run: &Path) -> Result<()> {
    let run = run.display().to_string();
    ctrlc::set_handler(move || {
        if INTERRUPTS.fetch_add(1, Ordering::SeqCst) == 0 {
            eprintln!(
                "\nCtrl-C: stopping once this epoch is finished and checkpointed; press Ctrl-C again to quit now"
            );
        } else {
            eprintln!(
                "\nquit; the last finished epoch is checkpointed, continue with: wsunet train --resume {run}"
            );
            std::process::exit(130);
        }
    })
    .context("cannot install the Ctrl-C handler")
}

pub fn run(args: TrainArgs) -> Result<()> {
    let settings = match &args.resume {
        Some(dir) => Settings::run(dir),
        None => Settings::flags::<TrainArgs>(),
    };
    let fix = |e| with_fix(e, &settings);
    let session = match &args.resume {
        // clap has refused every other setting next to --resume (see cli.rs).
        Some(dir) => Session::resume(dir, args.settings.epochs, args.device.device.as_deref())
            .map_err(fix)
            .context("cannot resume (fix --resume, --epochs or --device)")?,
        None => {
            let config = resolve(&args)?;
            let given = given(&args)?;
            if args.plan_only {
                return print_plan(&config, &given, &settings);
            }
            let dir = args.out.clone().unwrap_or_else(next_run_dir);
            Session::planned(config, &given, &dir).map_err(fix)?
        }
    };
    // Before anything is printed: a Ctrl-C once the run is announced stops
    // it cleanly rather than killing the process.
    stop_on_ctrl_c(session.dir.path())?;
    let c = &session.config;
    let card = session.card();
    let data = match &c.data {
        Some(d) => d.display().to_string(),
        None => format!(
            "built-in shapes ({} train / {} val, {}×{})",
            c.shapes.train, c.shapes.val, c.shapes.size, c.shapes.size
        ),
    };
    println!("run directory {}", session.dir);
    println!(
        "data {data}: {} train, {} val samples, {} classes, {} channel(s)",
        session.train.samples().len(),
        session.val.samples().len(),
        card.model.num_classes,
        card.model.in_channels
    );
    println!(
        "model widths {:?} depths {:?} ({}); {} epochs, batch {}, crop {}×{} ({}), {} lr {:.1e}, {} loss, device {}",
        card.model.widths,
        card.model.depths,
        card.model.variant_description(),
        c.epochs,
        c.batch_size,
        session.data.crop[0],
        session.data.crop[1],
        session.data.crop_note,
        c.optimizer,
        c.lr,
        c.loss,
        crate::args::announce(&session.device)
    );
    if let Some(plan) = &session.plan {
        for line in plan.lines() {
            println!("{line}");
        }
    }
    if let Some(pace) = &session.pace {
        let (train, val) = (session.train.samples().len(), session.val.samples().len());
        println!(
            "expected time: about {} ({:.3} s a step, {:.3} s a validation image, measured on this machine)",
            wsunet::train::duration_words(pace.expected_seconds(c, train, val)),
            pace.step_seconds,
            pace.val_image_seconds
        );
    }
    let mut progress = TrainProgress::new(&INTERRUPTS);
    let summary = session.run(&mut progress).map_err(fix)?;
    if summary.stopped {
        return Err(Interrupted(format!(
            "stopped after epoch {} of {} (Ctrl-C); every finished epoch is checkpointed, continue with: wsunet train --resume {}",
            summary.state.epoch,
            session.config.epochs,
            session.dir
        ))
        .into());
    }
    println!("\nvalidation, last epoch:\n{}", summary.scores.table());
    if let Some((epoch, score)) = summary.state.best {
        let what = if summary.state.history.iter().any(|r| r.ap50.is_some()) {
            "objects' AP50"
        } else {
            "mIoU"
        };
        println!(
            "best {what} {:.2}% at epoch {epoch} ({})",
            100.0 * score,
            session.dir.best_model().display()
        );
    }
    println!(
        "trained in {:.1} s; model: {} (with {})",
        summary.seconds,
        session.dir.final_model().display(),
        wsunet::card::model_paths(&session.dir.final_model())
            .1
            .display()
    );
    Ok(())
}
