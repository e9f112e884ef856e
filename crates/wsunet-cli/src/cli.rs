//! The command line's top level (clap derive): the commands, and the
//! argument types and parsers they share. Each command's own arguments live
//! with its handler in `commands/`.

use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use wsunet::WsResUNetConfig;

use crate::commands::{bench, data, eval, info, interop, predict, study, synth, train};

/// `--device` of every command that computes.
const DEVICE_HELP: &str = "Compute device: cpu; gpu[:N] (any GPU through wgpu: Vulkan, Metal or DX12; build feature wgpu), vulkan[:N] (SPIR-V kernels; feature vulkan) or cuda[:N] (feature cuda). N counts the adapters; the device line names the one in use";

/// `--device`, shared by every command that computes; opened (and named in
/// a device line) by [`DeviceArg::open`]. Left out, it is `cpu`, except for
/// `train`, which takes the `--config`'s device or, with `--resume`, the
/// run's (said in its `--help`).
#[derive(Debug, Clone, Args)]
pub struct DeviceArg {
    #[arg(long, value_name = "DEVICE", help = DEVICE_HELP)]
    pub device: Option<String>,
}

impl DeviceArg {
    /// The device's name: as given, else `cpu`.
    pub fn name(&self) -> &str {
        self.device.as_deref().unwrap_or("cpu")
    }

    /// Opens the device and prints its device line (see
    /// [`open_device`](crate::commands::open_device)).
    pub fn open(&self) -> anyhow::Result<burn::tensor::Device> {
        crate::commands::open_device(self.name())
    }
}

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
    Info(info::InfoArgs),

    /// Write the built-in synthetic `shapes` dataset (circles, rectangles,
    /// triangles on textured backgrounds) as a dataset folder.
    Synth(synth::SynthArgs),

    /// Inspect a dataset folder: validate it, or compute normalization statistics.
    #[command(subcommand)]
    Data(data::DataCommand),

    /// Train a model. With no arguments, trains on the built-in `shapes` data.
    ///
    /// Settings come from defaults, then --config, then the flags. The run
    /// directory gets config.json, metrics.csv, curves.png, checkpoints/,
    /// best.bpk (+ .json) and the final model.bpk (+ .json).
    ///
    /// Without --device, training runs on the --config's device (default
    /// cpu); with --resume, on the run's own unless --device names another.
    ///
    /// Ctrl-C stops once the current epoch is finished and checkpointed
    /// (exit code 130; continue with --resume); a second Ctrl-C quits at once,
    /// keeping the last finished epoch's checkpoint.
    Train(Box<train::TrainArgs>),

    /// Evaluate a model on a dataset: per-class IoU and Dice, mIoU, mean Dice
    /// and pixel accuracy over the whole set, printed and written as JSON.
    ///
    /// A model from a run is scored on the run's own held-out split (its
    /// config.json gives the data, fraction and seed), so training images
    /// are never scored by accident. Images are batched only with images of
    /// the same size: GroupNorm would otherwise see their zero padding.
    Eval(eval::EvalArgs),

    /// Segment images: palette PNG masks in the class colours, optional
    /// colour overlays, probabilities or logits as .npy. Images larger than a
    /// tile are predicted tile by tile and blended without seams.
    Predict(predict::PredictArgs),

    /// Measure speed: folded inference, training-mode forward and a full
    /// train step (forward, backward, AdamW), median of several repetitions,
    /// with images/s and peak memory. Compare with python/bench_torch.py.
    Bench(bench::BenchArgs),

    /// Compare norm and standardization variants across batch sizes: the
    /// seed's claim (WS + GroupNorm trains with tiny batches, BatchNorm
    /// does not), measured on your data or the built-in shapes.
    ///
    /// Fair protocol: every run sees the same training images, crops and
    /// data order for a given seed; the learning rate scales linearly with
    /// the batch size from one base value (--lr at --lr-batch); optionally
    /// three rates per cell, chosen on validation (--lr-sweep); BatchNorm
    /// is evaluated with its running statistics; the score is the final
    /// epoch's validation mIoU, on the same validation set for all. Each run
    /// is an ordinary run directory under OUT/runs; an interrupted study
    /// continues where it stopped.
    Study(Box<study::StudyArgs>),

    /// Import a PyTorch state dict (.safetensors, .pt, .pth) with the spec's
    /// keys as a wsunet model; the architecture is read from keys and shapes.
    Import(interop::ImportArgs),

    /// Export a model: FILE.onnx writes a self-contained ONNX graph of the
    /// folded network for deployment (ONNX Runtime, TensorRT, OpenCV, …);
    /// any other name writes a safetensors state dict with the spec's keys,
    /// loadable by python/wsunet_torch.py with strict=True.
    Export(interop::ExportArgs),
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
pub fn choice<T>(values: &[T]) -> impl TypedValueParser<Value = T>
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

/// The mask value of ignored pixels, if any (`--ignore-index I|none`);
/// serialized as the config's `ignore_index` (a number or null).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct IgnoreIndex(pub Option<u16>);

impl std::fmt::Display for IgnoreIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(v) => write!(f, "{v}"),
            None => f.write_str("none"),
        }
    }
}

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

    /// Norm and standardization variant; overrides the config file's:
    /// ws-gn (the seed's), gn, ws-bn, bn, ws-none or plain.
    #[arg(long, value_name = "NAME")]
    pub variant: Option<wsunet::Variant>,
}

/// The number of classes of the built-in `shapes` data, used when none is given.
const DEFAULT_CLASSES: usize = wsunet::data::shapes::SHAPES_CLASSES.len();

impl ModelArgs {
    /// `--model-config` and `--num-classes` as a validated config.
    pub fn config(&self) -> anyhow::Result<WsResUNetConfig> {
        use anyhow::Context;
        let mut config = match &self.model_config {
            Some(path) => WsResUNetConfig::from_file(path).context("fix --model-config")?,
            None => WsResUNetConfig::new(DEFAULT_CLASSES),
        };
        if let Some(n) = self.num_classes {
            config.num_classes = n;
        }
        if let Some(v) = self.variant {
            config = config.with_variant(v);
        }
        config.validate().context(match &self.model_config {
            Some(path) => format!("fix --model-config {} or --num-classes", path.display()),
            None => "fix --num-classes".to_string(),
        })?;
        Ok(config)
    }
}

/// Parses a finite number. clap alone would take `nan` and `inf`, which a
/// JSON config cannot hold (they would silently become `null`).
pub fn finite<T: std::str::FromStr + Copy + Into<f64>>(s: &str) -> Result<T, String> {
    let value: T = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number"))?;
    if value.into().is_finite() {
        Ok(value)
    } else {
        Err(format!("`{s}` is not a finite number"))
    }
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
        let Command::Data(data::DataCommand::Check(args)) = cli.command else {
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
    fn numbers_are_finite() {
        assert_eq!(finite::<f64>(" 0.5").unwrap(), 0.5);
        for bad in ["nan", "inf", "-infinity", "x"] {
            assert!(finite::<f32>(bad).is_err(), "{bad}");
        }
        let e = Cli::try_parse_from(["wsunet", "train", "--grad-clip", "nan"]).unwrap_err();
        assert!(e.to_string().contains("not a finite number"), "{e}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256").unwrap(), [256, 256]);
        assert_eq!(parse_size("77x101").unwrap(), [77, 101]);
        assert!(parse_size("0x5").is_err());
        assert!(parse_size("big").unwrap_err().contains("HxW"));
    }
}
