//! Command-line parsing (clap derive), kept apart from running the commands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// wsunet: weight-standardized residual U-Nets for semantic segmentation.
///
/// A WS+GroupNorm residual U-Net (WSResUNet) in one native binary: inspect
/// architectures and run them on CPU or GPU.
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
    /// options below NAME_overlay.png, NAME_probs.npy, NAME_logits.npy.
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
    #[arg(long, value_name = "N", default_value_t = 512)]
    pub tile: usize,

    /// Minimum fraction of a tile shared with its neighbour, in [0, 0.9].
    #[arg(long, value_name = "F", default_value_t = 0.25)]
    pub overlap: f32,

    /// Tiles per forward pass.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub batch_size: usize,

    /// Test-time augmentation: none, or flip (average of the image and its
    /// horizontal, vertical and double flips; 4× the time).
    #[arg(long, value_name = "MODE", default_value = "none")]
    pub tta: String,

    /// Compute device: cpu, vulkan[:N] or cuda[:N].
    #[arg(long, value_name = "DEVICE", default_value = "cpu")]
    pub device: String,
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
        default_value = "inference,train_forward,train_step"
    )]
    pub phases: Vec<String>,

    /// CPU threads (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Compute device: cpu, vulkan[:N] or cuda[:N].
    #[arg(long, value_name = "DEVICE", default_value = "cpu")]
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

    /// Weight standardization: seed, biased or scaled (default: scaled when
    /// the file has gains, else seed).
    #[arg(long, value_name = "NAME")]
    pub standardization: Option<String>,

    /// Standardization eps (default: the formula's).
    #[arg(long, value_name = "EPS")]
    pub eps: Option<f64>,

    /// Per-channel input mean the model was trained with (comma-separated).
    #[arg(long, value_name = "M,M,…", value_delimiter = ',')]
    pub mean: Option<Vec<f32>>,

    /// Per-channel input std the model was trained with (comma-separated).
    #[arg(long, value_name = "S,S,…", value_delimiter = ',')]
    pub std: Option<Vec<f32>>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The model: a run directory, or a model's .bpk/.json.
    #[arg(value_name = "MODEL")]
    pub model: PathBuf,

    /// Output file; the extension chooses the format. FILE.onnx: an ONNX
    /// graph (opset 17) of the folded network, input `image` float32
    /// [batch, channels, height, width], output `logits` [batch, classes,
    /// height, width], batch/height/width dynamic, the model card in the
    /// file's metadata. Anything else: a safetensors state dict.
    #[arg(long, value_name = "FILE.onnx|FILE.safetensors")]
    pub to: PathBuf,

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

    /// Architecture as a model config JSON (as for `wsunet info`).
    #[arg(long, value_name = "FILE", conflicts_with = "preset")]
    pub model_config: Option<PathBuf>,

    /// Named architecture: small (default; widths 16…256, 2.8 M parameters)
    /// or base (the spec's default, widths 32…512, 11.3 M parameters).
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,

    /// Run directory. Default: runs/run-NNN, the next free number.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Continue the run in DIR from its latest checkpoint (with its own
    /// config; only --epochs and --device may change).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["data", "config", "model_config", "preset", "out"])]
    pub resume: Option<PathBuf>,

    /// Total number of epochs.
    #[arg(long, value_name = "N")]
    pub epochs: Option<usize>,

    /// Samples per optimizer step (1 works: GroupNorm needs no batch statistics).
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,

    /// Training crop: HxW, or one number for a square.
    #[arg(long, value_name = "HxW", value_parser = parse_size)]
    pub size: Option<[usize; 2]>,

    /// Peak learning rate.
    #[arg(long, value_name = "LR")]
    pub lr: Option<f64>,

    /// adamw or sgd.
    #[arg(long, value_name = "NAME")]
    pub optimizer: Option<String>,

    /// cosine, poly or constant decay after warmup.
    #[arg(long, value_name = "NAME")]
    pub schedule: Option<String>,

    /// Epochs of linear warmup (fractions allowed).
    #[arg(long, value_name = "E")]
    pub warmup_epochs: Option<f64>,

    /// Weight decay (never applied to norm parameters, biases and gains).
    #[arg(long, value_name = "WD")]
    pub weight_decay: Option<f64>,

    /// Clip each parameter's gradient to this L2 norm.
    #[arg(long, value_name = "NORM")]
    pub grad_clip: Option<f32>,

    /// ce, dice, focal or ce+dice.
    #[arg(long, value_name = "NAME")]
    pub loss: Option<String>,

    /// Per-class loss weights, comma-separated (e.g. 0.5,1,1,2).
    #[arg(long, value_name = "W,W,…", value_delimiter = ',')]
    pub class_weights: Option<Vec<f32>>,

    /// Number of classes (default: classes.json, else the largest mask value + 1).
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

    /// Compute device: cpu, vulkan[:N] or cuda[:N].
    #[arg(long, value_name = "DEVICE")]
    pub device: Option<String>,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The model: a run directory, or a model's .bpk/.json.
    #[arg(long, value_name = "PATH")]
    pub model: PathBuf,

    /// Dataset folder; default: the validation split the run trained with.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,

    /// Which samples of --data: val, train or all.
    #[arg(long, value_name = "SPLIT", default_value = "val")]
    pub split: String,

    /// Share of a single-folder dataset held out for validation (as in training).
    #[arg(long, value_name = "F", default_value_t = 0.2)]
    pub val_fraction: f64,

    /// Seed of the holdout split (as in training).
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub seed: u64,

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

    /// Compute device: cpu, vulkan[:N] or cuda[:N].
    #[arg(long, value_name = "DEVICE", default_value = "cpu")]
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
pub struct DatasetArgs {
    /// Dataset folder: images/ + masks/, train/ + val/, or Pascal VOC.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,

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
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

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

    /// Also run one forward pass on this device to check that it works:
    /// cpu, vulkan[:N] or cuda[:N] (GPU backends need the matching build feature).
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
    fn sizes() {
        assert_eq!(parse_size("256").unwrap(), [256, 256]);
        assert_eq!(parse_size("77x101").unwrap(), [77, 101]);
        assert!(parse_size("0x5").is_err());
        assert!(parse_size("big").unwrap_err().contains("HxW"));
    }
}
