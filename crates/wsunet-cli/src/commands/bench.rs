//! `wsunet bench`: whole-model speed, as a table or JSON.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use wsunet::bench::{BenchConfig, inference_model, run_bench};
use wsunet::card::ModelCard;
use wsunet::data::{ClassList, Normalize};
use wsunet::onnx::{OnnxOptions, to_onnx};

use clap::Args;
use clap::builder::PossibleValuesParser;

use crate::args::announce;
use crate::args::{DeviceArg, ModelArgs, parse_size};

/// `wsunet bench`'s one-line help (`wsunet --help`).
pub const ABOUT: &str = "Measure speed: folded inference, training-mode forward and a full train step (forward, backward, AdamW), median of several repetitions, with images/s and peak memory. Compare with python/bench_torch.py";

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    /// Images per batch.
    #[arg(long, value_name = "N", default_value_t = BenchConfig::default().batch)]
    pub batch_size: usize,

    /// Input size: HxW, or one number for a square [default: 256].
    #[arg(long, value_name = "HxW", value_parser = parse_size)]
    pub size: Option<[usize; 2]>,

    /// Untimed repetitions before timing each phase.
    #[arg(long, value_name = "N", default_value_t = BenchConfig::default().warmup)]
    pub warmup: usize,

    /// Timed repetitions per phase (the median is reported).
    #[arg(long, value_name = "N", default_value_t = BenchConfig::default().reps)]
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

    #[command(flatten)]
    pub device: DeviceArg,

    /// Also time every CPU kernel call, per layer (its shape), pass and
    /// repetition: time, share of the repetition, GFLOP/s against this
    /// machine's measured FMA peak, and GB/s — the per-layer roofline.
    #[arg(long)]
    pub layers: bool,

    /// Print the report as JSON (the format python/bench_torch.py writes).
    #[arg(long)]
    pub json: bool,

    /// Also write the model the inference phase times as an ONNX graph
    /// (folded, as `wsunet export` writes it), so that another engine can
    /// time the same network: bench/compare.sh gives it to ONNX Runtime.
    #[arg(long, value_name = "FILE.onnx")]
    pub onnx: Option<PathBuf>,
}

/// `--threads` is applied in `main` (the thread pool starts before any
/// command runs).
pub fn run(args: BenchArgs) -> Result<()> {
    let model = args.model.config()?;
    let device = wsunet::parse_device(args.device.name()).context("fix --device")?;
    let config = BenchConfig {
        model,
        batch: args.batch_size,
        size: args.size.unwrap_or(BenchConfig::default().size),
        warmup: args.warmup,
        reps: args.reps,
        standardize: !args.no_ws,
        phases: args.phases.clone(),
        layers: args.layers,
    };
    if let Some(path) = &args.onnx {
        write_onnx(&config, &device, path)?;
    }
    // stdout may be JSON: the device line goes with the progress lines.
    let info = announce(&device);
    if !args.json {
        eprintln!("device {info}");
    }
    let report = run_bench(&config, &device, &info.to_string(), &mut |phase| {
        if !args.json {
            eprintln!("measuring {phase} …");
        }
    })
    .context("fix --batch-size, --reps, --size, --phases or --model-config")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

/// Writes the inference phase's model to `path` as ONNX (raw logits, input
/// already normalized: what the phase feeds the network).
fn write_onnx(
    config: &BenchConfig,
    device: &wsunet::burn::tensor::Device,
    path: &Path,
) -> Result<()> {
    let model =
        inference_model(config, device).context("fix --batch-size, --size or --model-config")?;
    let card = ModelCard {
        classes: ClassList::numbered(config.model.num_classes),
        normalize: Normalize::neutral(config.model.in_channels),
        model: config.model.clone(),
        ignore_index: None,
        crop: None,
        pixel_size: None,
        task: Default::default(),
        instances: None,
    };
    let options = OnnxOptions {
        normalize_input: false,
        argmax: false,
    };
    let onnx =
        to_onnx(&model, &card, &options).context("the benchmarked model has no ONNX form")?;
    onnx.save(path)
        .with_context(|| format!("fix --onnx: cannot write {}", path.display()))?;
    Ok(())
}
