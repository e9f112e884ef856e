//! Command-line parsing (clap derive), kept apart from running the commands.

use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use wsunet::data::prepare::Split;
use wsunet::infer::Tta;
use wsunet::layers::Standardization;
use wsunet::train::{LossKind, OptimizerKind, PRESETS, ScheduleKind};

/// `--device` of every command that computes.
const DEVICE_HELP: &str = "Compute device: cpu; gpu[:N] (any GPU through wgpu: Vulkan, Metal or DX12; build feature wgpu), vulkan[:N] (SPIR-V kernels; feature vulkan) or cuda[:N] (feature cuda). N counts the adapters; the device line names the one in use";

/// wsunet: weight-standardized residual U-Nets for semantic segmentation.
///
/// A WS+GroupNorm residual U-Net (WSResUNet) in one native binary: check a
/// dataset, train on it, evaluate, segment images of any size, measure
/// speed, and move weights to and from PyTorch, on the CPU or a GPU.
#[derive(Debug, Parser)]
#[command(name = "wsunet", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a model's architecture (per part: channels, stride, output size)
    /// and its parameter count.
    Info(InfoArgs),

    /// Write the built-in synthetic `shapes` dataset (circles, rectangles,
    /// triangles on textured backgrounds) as a dataset folder.
    Synth(SynthArgs),

    /// Inspect a dataset folder: validate it, or compute normalization statistics.
    #[command(subcommand)]
    Data(DataCommand),

    /// Train a model. With no arguments, trains on the built-in `shapes` data.
    ///
    /// Settings come from defaults, then --config, then the flags. The run
    /// directory gets config.json, metrics.csv, curves.png, checkpoints/,
    /// best.bpk (+ .json) and the final model.bpk (+ .json).
    ///
    /// Ctrl-C stops once the current epoch is finished and checkpointed
    /// (exit code 130; continue with --resume); a second Ctrl-C quits at once,
    /// keeping the last finished epoch's checkpoint.
    Train(Box<TrainArgs>),

    /// Evaluate a model on a dataset: per-class IoU and Dice, mIoU, mean Dice
    /// and pixel accuracy over the whole set, printed and written as JSON.
    ///
    /// A model from a run is scored on the run's own held-out split (its
    /// config.json gives the data, fraction and seed), so training images
    /// are never scored by accident. Images are batched only with images of
    /// the same size: GroupNorm would otherwise see their zero padding.
    Eval(EvalArgs),

    /// Segment images: palette PNG masks in the class colours, optional
    /// colour overlays, probabilities or logits as .npy. Images larger than a
    /// tile are predicted tile by tile and blended without seams.
    Predict(PredictArgs),

    /// Measure speed: folded inference, training-mode forward and a full
    /// train step (forward, backward, AdamW), median of several repetitions,
    /// with images/s and peak memory. Compare with python/bench_torch.py.
    Bench(BenchArgs),

    /// Import a PyTorch state dict (.safetensors, .pt, .pth) with the spec's
    /// keys as a wsunet model; the architecture is read from keys and shapes.
    Import(ImportArgs),

    /// Export a model: FILE.onnx writes a self-contained ONNX graph of the
    /// folded network for deployment (ONNX Runtime, TensorRT, OpenCV, …);
    /// any other name writes a safetensors state dict with the spec's keys,
    /// loadable by python/wsunet_torch.py with strict=True.
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// The model: a run directory, or a model's .bpk/.json.
    #[arg(long, value_name = "PATH")]
    pub model: PathBuf,

    /// An image, or a folder of images (png, jpg, bmp, tif, npy [C,H,W]
    /// float32); repeat for more.
    #[arg(long, value_name = "FILE|DIR", required = true)]
    pub input: Vec<PathBuf>,

    /// Output folder (created if missing): NAME.png masks, and with the
    /// options below NAME_overlay.png, NAME_probs.npy, NAME_logits.npy;
    /// predict.json records the model and settings that produced them.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Also write the image with the class colours blended over it.
    #[arg(long)]
    pub overlay: bool,

    /// Opacity of the overlay colours, in [0, 1].
    #[arg(long, value_name = "A", default_value_t = 0.5)]
    pub alpha: f32,

    /// Also write class probabilities as float32 .npy [classes, H, W].
    #[arg(long)]
    pub probs: bool,

    /// Also write raw logits as float32 .npy [classes, H, W].
    #[arg(long)]
    pub logits: bool,

    /// Tile side for large images; images no larger run in one pass.
    /// Default: the model's training crop (the larger side) when its card
    /// records one, else 512. GroupNorm normalizes over the whole tile, so
    /// tiles much larger than the training crop can score worse.
    #[arg(long, value_name = "N")]
    pub tile: Option<usize>,

    /// Minimum fraction of a tile shared with its neighbour, in [0, 0.9].
    #[arg(long, value_name = "F", default_value_t = 0.25)]
    pub overlap: f32,

    /// Tiles per forward pass.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub batch_size: usize,

    /// Test-time augmentation: none, or flip (average of the image and its
    /// horizontal, vertical and double flips; 4× the time).
    #[arg(long, value_name = "MODE", default_value = "none", value_parser = choice(&Tta::ALL))]
    pub tta: Tta,

    #[arg(long, value_name = "DEVICE", default_value = "cpu", help = DEVICE_HELP)]
    pub device: String,

    /// Predict one share of the inputs, for a job array: I/N (I from 0 to
    /// N-1) takes every N-th image of the sorted list from the I-th on, so N
    /// tasks together predict every image exactly once; auto reads I and N
    /// from a Slurm job array (SLURM_ARRAY_TASK_ID, _COUNT, _MIN). Every
    /// task must be given the same --input list.
    #[arg(long, value_name = "I/N|auto")]
    pub shard: Option<String>,

    /// Predict every image again, replacing outputs that are there, and the
    /// folder's predict.json if another model or other settings wrote it.
    /// Without it, images whose outputs are complete are skipped, and a
    /// folder predicted with another model or settings is refused.
    #[arg(long)]
    pub overwrite: bool,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    /// Images per batch.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub batch_size: usize,

    /// Input size: HxW, or one number for a square.
    #[arg(long, value_name = "HxW", default_value = "256", value_parser = parse_size)]
    pub size: [usize; 2],

    /// Untimed repetitions before timing each phase.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub warmup: usize,

    /// Timed repetitions per phase (the median is reported).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub reps: usize,

    /// Run every WsConv2d as a plain convolution: the same network without
    /// weight standardization, to measure what standardization costs.
    #[arg(long)]
    pub no_ws: bool,

    /// Phases to run (comma-separated): inference, train_forward, train_step.
    #[arg(
        long,
        value_name = "P,P,…",
        value_delimiter = ',',
        default_value = "inference,train_forward,train_step",
        value_parser = PossibleValuesParser::new(wsunet::bench::PHASES)
    )]
    pub phases: Vec<String>,

    /// CPU threads (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    #[arg(long, value_name = "DEVICE", default_value = "cpu", help = DEVICE_HELP)]
    pub device: String,

    /// Print the report as JSON (the format python/bench_torch.py writes).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The state dict (wrapped in `state_dict`/`model` or prefixed by
    /// `module.` is fine).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Output model: writes NAME.bpk and NAME.json.
    #[arg(long, value_name = "MODEL")]
    pub out: PathBuf,

    /// GroupNorm starting group count (a state dict does not record it).
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub groups: usize,

    /// Weight standardization (default: scaled when the file has gains,
    /// else seed).
    #[arg(long, value_name = "NAME", value_parser = choice(&Standardization::ALL))]
    pub standardization: Option<Standardization>,

    /// Standardization eps (default: the formula's).
    #[arg(long, value_name = "EPS")]
    pub eps: Option<f64>,

    /// Per-channel input mean the model was trained with (comma-separated).
    /// Without --mean and --std, inputs are not normalized: images go in as
    /// read (8/16-bit scaled to [0, 1], .npy as is), as a state dict records
    /// no preprocessing.
    #[arg(long, value_name = "M,M,…", value_delimiter = ',')]
    pub mean: Option<Vec<f32>>,

    /// Per-channel input std the model was trained with (comma-separated).
    #[arg(long, value_name = "S,S,…", value_delimiter = ',')]
    pub std: Option<Vec<f32>>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The model: a run directory, or a model's .bpk/.json.
    #[arg(long, value_name = "PATH", required_unless_present = "model_pos")]
    pub model: Option<PathBuf>,

    /// The model given without --model (the older spelling).
    #[arg(value_name = "MODEL", hide = true, conflicts_with = "model")]
    pub model_pos: Option<PathBuf>,

    /// Output file; the extension chooses the format. FILE.onnx: an ONNX
    /// graph (opset 17) of the folded network, input `image` float32
    /// [batch, channels, height, width], output `logits` [batch, classes,
    /// height, width], batch/height/width dynamic, the model card in the
    /// file's metadata. Anything else: a safetensors state dict.
    #[arg(long, value_name = "FILE.onnx|FILE.safetensors", alias = "to")]
    pub out: PathBuf,

    /// safetensors: write standardized kernels (and no gains) for a plain
    /// Conv2d network. ONNX files are always folded.
    #[arg(long)]
    pub folded: bool,

    /// ONNX: the graph applies the card's (x − mean) / std itself, so the
    /// runtime feeds images scaled to [0, 1]. Without it, `image` must
    /// already be normalized.
    #[arg(long)]
    pub normalize_input: bool,

    /// ONNX: also output `labels`, the arg-max class index of each pixel
    /// (int64 [batch, height, width]).
    #[arg(long)]
    pub argmax: bool,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Dataset folder (images/ + masks/, train/ + val/, or Pascal VOC);
    /// default: the built-in `shapes` data.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,

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

    /// Continue the run in DIR from its latest checkpoint with its own
    /// config.json. Only --epochs and --device may be given with it; any
    /// other setting is an error, since the run was trained with its own.
    #[arg(long, value_name = "DIR", conflicts_with_all = [
        "data", "config", "model_config", "preset", "out", "batch_size", "size", "lr", "min_lr",
        "optimizer", "schedule", "warmup_epochs", "weight_decay", "grad_clip", "loss",
        "class_weights", "num_classes", "ignore_index", "val_fraction", "skip_bad", "seed",
        "val_every",
    ])]
    pub resume: Option<PathBuf>,

    /// Total number of epochs.
    #[arg(long, value_name = "N")]
    pub epochs: Option<usize>,

    /// Validate, checkpoint and print metrics every N epochs (and after the
    /// last). Default 1. On a tiny dataset, where an epoch is a few steps,
    /// a larger N saves the validation and checkpoint writes of the epochs
    /// between.
    #[arg(long, value_name = "N")]
    pub val_every: Option<usize>,

    /// Samples per optimizer step (1 works: GroupNorm needs no batch statistics).
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,

    /// Training crop: HxW, or one number for a square. Default: 256×256
    /// shrunk to the smallest training image (the shapes size for the
    /// built-in data). Images smaller than the crop are mirror-padded, with
    /// a warning.
    #[arg(long, value_name = "HxW", value_parser = parse_size)]
    pub size: Option<[usize; 2]>,

    /// Peak learning rate.
    #[arg(long, value_name = "LR")]
    pub lr: Option<f64>,

    /// Final learning rate of the decay (default 1e-5; at most --lr).
    #[arg(long, value_name = "LR")]
    pub min_lr: Option<f64>,

    /// The optimizer.
    #[arg(long, value_name = "NAME", value_parser = choice(&OptimizerKind::ALL))]
    pub optimizer: Option<OptimizerKind>,

    /// Decay after warmup.
    #[arg(long, value_name = "NAME", value_parser = choice(&ScheduleKind::ALL))]
    pub schedule: Option<ScheduleKind>,

    /// Epochs of linear warmup (fractions allowed).
    #[arg(long, value_name = "E")]
    pub warmup_epochs: Option<f64>,

    /// Weight decay (never applied to norm parameters, biases and gains).
    #[arg(long, value_name = "WD")]
    pub weight_decay: Option<f64>,

    /// Clip each parameter's gradient to this L2 norm.
    #[arg(long, value_name = "NORM")]
    pub grad_clip: Option<f32>,

    /// The loss: cross-entropy, soft Dice, focal, or cross-entropy + Dice.
    #[arg(long, value_name = "NAME", value_parser = choice(&LossKind::ALL.map(|(kind, _)| kind)))]
    pub loss: Option<LossKind>,

    /// Per-class loss weights, comma-separated (e.g. 0.5,1,1,2).
    #[arg(long, value_name = "W,W,…", value_delimiter = ',')]
    pub class_weights: Option<Vec<f32>>,

    /// Number of classes; overrides the model config's (default: the model
    /// config's, else classes.json, else the largest mask value + 1; the
    /// built-in shapes data has 4).
    #[arg(long, value_name = "N")]
    pub num_classes: Option<usize>,

    /// Mask value of pixels to ignore, or `none` (default 255).
    #[arg(long, value_name = "I|none", value_parser = parse_ignore)]
    pub ignore_index: Option<IgnoreIndex>,

    /// Share of a single-folder dataset held out for validation.
    #[arg(long, value_name = "F")]
    pub val_fraction: Option<f64>,

    /// Leave out unreadable or invalid samples with a warning instead of stopping.
    #[arg(long)]
    pub skip_bad: bool,

    /// Seed of initialization, shuffling, augmentation and the holdout split.
    #[arg(long, value_name = "K")]
    pub seed: Option<u64>,

    #[arg(long, value_name = "DEVICE", help = DEVICE_HELP)]
    pub device: Option<String>,
}

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

    #[arg(long, value_name = "DEVICE", default_value = "cpu", help = DEVICE_HELP)]
    pub device: String,
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Decode every sample and report counts, class pixel frequencies, the
    /// size range and every problem found (exit code 1 if any).
    Check(CheckArgs),

    /// Per-channel mean and std of the training images, for the `normalize`
    /// entry of a training config.
    Stats(StatsArgs),
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output folder; gets images/, masks/ and classes.json.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Number of samples.
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub count: usize,

    /// Side of the square images in pixels.
    #[arg(long, value_name = "S", default_value_t = 128)]
    pub size: usize,

    /// Generator seed: the same seed always gives the same data.
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub seed: u64,

    /// Write into a folder that already holds images/ or masks/.
    #[arg(long)]
    pub force: bool,
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
    #[arg(long, value_name = "F", default_value_t = 0.2)]
    pub val_fraction: f64,

    /// Seed of the holdout split.
    #[arg(long, value_name = "K", default_value_t = 0)]
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
    #[arg(long, value_name = "I|none", default_value = "255", value_parser = parse_ignore)]
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

/// The name a library enum's value has in config files (serde's).
fn serde_name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// A value parser for a library enum: accepts exactly the names config
/// files use for `values`, and `--help` lists them.
fn choice<T>(values: &[T]) -> impl TypedValueParser<Value = T>
where
    T: Serialize + Clone + Send + Sync + 'static,
{
    let values = values.to_vec();
    let names: Vec<String> = values.iter().map(serde_name).collect();
    PossibleValuesParser::new(names.clone()).map(move |name| {
        let i = names.iter().position(|n| *n == name);
        // clap accepted `name`, so it is one of `names`.
        values[i.unwrap_or(0)].clone()
    })
}

/// The mask value of ignored pixels, if any (`--ignore-index I|none`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IgnoreIndex(pub Option<u16>);

/// Parses an ignore index: a mask value, or `none`.
pub fn parse_ignore(s: &str) -> Result<IgnoreIndex, String> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(IgnoreIndex(None));
    }
    s.parse::<u16>()
        .map(|v| IgnoreIndex(Some(v)))
        .map_err(|_| format!("`{s}` is not a mask value (0–65535) or `none`"))
}

/// Which model to describe.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Model config as JSON (fields of WsResUNetConfig; all but num_classes
    /// optional). Without it, the spec's default model.
    #[arg(long, value_name = "FILE", alias = "config")]
    pub model_config: Option<PathBuf>,

    /// Number of classes; overrides the config file's. Default 4.
    #[arg(long, value_name = "N")]
    pub num_classes: Option<usize>,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    /// Input size for the table's output sizes: HxW, or one number for a square.
    #[arg(long, value_name = "HxW", default_value = "256", value_parser = parse_size)]
    pub size: [usize; 2],

    /// Also run one forward pass on this device to check that it works (the
    /// names of --device elsewhere: cpu, gpu[:N], vulkan[:N], cuda[:N]).
    #[arg(long, value_name = "DEVICE")]
    pub device: Option<String>,

    /// Print JSON (config, parts, parameter counts) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Parses `H`x`W` or a single number into `[H, W]`.
pub fn parse_size(s: &str) -> Result<[usize; 2], String> {
    let parse = |v: &str| {
        v.trim()
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("`{s}` is not a size; use HxW (e.g. 256x320) or one number"))
    };
    match s.split_once(['x', 'X', '×']) {
        Some((h, w)) => Ok([parse(h)?, parse(w)?]),
        None => parse(s).map(|n| [n, n]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn ignore_index() {
        assert_eq!(parse_ignore("255").unwrap(), IgnoreIndex(Some(255)));
        assert_eq!(parse_ignore("none").unwrap(), IgnoreIndex(None));
        let cli = Cli::try_parse_from(["wsunet", "data", "check", "d", "--ignore-index", "none"])
            .unwrap();
        let Command::Data(DataCommand::Check(args)) = cli.command else {
            panic!("parsed the wrong command")
        };
        assert_eq!(args.ignore_index, IgnoreIndex(None));
        assert!(parse_ignore("-1").unwrap_err().contains("none"));
    }

    #[test]
    fn resume_refuses_every_setting_but_epochs_and_device() {
        let command = Cli::command();
        let train = command.find_subcommand("train").unwrap();
        let mut checked = 0;
        for arg in train.get_arguments() {
            let id = arg.get_id().as_str();
            let Some(long) = arg.get_long() else { continue };
            if ["resume", "help", "version"].contains(&id) {
                continue;
            }
            let flag = format!("--{long}");
            let choices = arg.get_possible_values();
            let value = choices.first().map_or("1", |v| v.get_name());
            let mut argv = vec!["wsunet", "train", "--resume", "runs/a", flag.as_str()];
            if arg.get_action().takes_values() {
                argv.push(value);
            }
            let parsed = Cli::try_parse_from(&argv);
            if ["epochs", "device"].contains(&id) {
                assert!(parsed.is_ok(), "{flag} must be allowed with --resume");
            } else {
                let err = parsed.expect_err(&flag);
                assert_eq!(
                    err.kind(),
                    clap::error::ErrorKind::ArgumentConflict,
                    "{flag}: {err}"
                );
                // The flag given is named, and only it.
                let named = format!("cannot be used with '{flag}");
                assert!(err.to_string().contains(&named), "{err}");
                checked += 1;
            }
        }
        assert!(checked >= 20, "only {checked} settings checked");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256").unwrap(), [256, 256]);
        assert_eq!(parse_size("77x101").unwrap(), [77, 101]);
        assert!(parse_size("0x5").is_err());
        assert!(parse_size("big").unwrap_err().contains("HxW"));
    }
}
