//! `wsunet import` and `wsunet export`: weights to and from PyTorch.

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use wsunet::WsResUNet;
use wsunet::card::{ModelCard, load_model, save_model};
use wsunet::data::{ClassList, Normalize};
use wsunet::onnx::{OPSET, OnnxOptions, to_onnx};
use wsunet::weights::{infer_config, load_state_dict, read_shapes, save_state_dict};

use std::path::PathBuf;

use clap::Args;
use wsunet::layers::{Norm, Standardization};

use crate::args::choice;

/// `wsunet import`'s one-line help (`wsunet --help`).
pub const IMPORT_ABOUT: &str = "Import a PyTorch state dict (.safetensors, .pt, .pth) with the spec's keys as a wsunet model; the architecture is read from keys and shapes";

/// `wsunet export`'s one-line help (`wsunet --help`).
pub const EXPORT_ABOUT: &str = "Export a model: FILE.onnx writes a self-contained ONNX graph of the folded network for deployment (ONNX Runtime, TensorRT, OpenCV, …); any other name writes a safetensors state dict with the spec's keys, loadable by python/wsunet_torch.py with strict=True";

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

    /// The `gn.*` layers are InstanceNorms (PyTorch's
    /// `InstanceNorm2d(affine=True)`, the twin's `norm="instance"`): one
    /// channel per group. A state dict does not record it either.
    #[arg(long, conflicts_with = "groups")]
    pub instance: bool,

    /// Weight standardization (default: scaled when the file has gains,
    /// else seed; a plain Conv2d network's kernels look the same, give
    /// `none` for one). The norm (group, batch, none) follows from the keys.
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

pub fn import(args: ImportArgs) -> Result<()> {
    let standardization = args.standardization;
    let shapes = read_shapes(&args.file).context("fix the input file")?;
    let mut config = infer_config(&shapes, args.groups, standardization, args.eps)
        .context("cannot infer the architecture")?;
    if args.instance {
        if config.norm != Norm::Group {
            bail!(
                "--instance: {} has no `gn.*` keys (its norm is {}); drop --instance",
                args.file.display(),
                config.norm
            );
        }
        config.norm = Norm::Instance;
    }
    let device = Device::flex();
    let mut model = config.init(&device)?;
    load_state_dict(&mut model, &args.file)?;
    let channels = config.in_channels;
    let normalize = match (args.mean, args.std) {
        (None, None) => Normalize::identity(channels),
        (Some(mean), Some(std)) => Normalize { mean, std },
        _ => bail!("give both --mean and --std, or neither"),
    };
    normalize
        .validate(channels)
        .map_err(|e| anyhow::anyhow!("{e} (fix --mean/--std)"))?;
    let card = ModelCard {
        classes: ClassList::numbered(config.num_classes),
        model: config,
        normalize,
        ignore_index: Some(255),
        crop: None,
        pixel_size: None,
        task: Default::default(),
        instances: None,
    };
    let (out, card_path) = wsunet::card::model_paths(&args.out);
    save_model(&model, &card, &out).context("fix --out")?;
    println!(
        "imported {} ({} tensors): {} → {} classes, widths {:?}, depths {:?}, {}, groups {}",
        args.file.display(),
        shapes.len(),
        card.model.in_channels,
        card.model.num_classes,
        card.model.widths,
        card.model.depths,
        card.model.variant_description(),
        card.model.groups
    );
    if card.normalize.is_identity() {
        println!(
            "no input normalization given: images go in as read (8/16-bit scaled to [0, 1], .npy as is); if the model was trained on normalized inputs, import again with --mean and --std"
        );
    } else {
        println!(
            "input normalization mean {:?} std {:?}",
            card.normalize.mean, card.normalize.std
        );
    }
    println!("wrote {} and {}", out.display(), card_path.display());
    Ok(())
}

pub fn export(args: ExportArgs) -> Result<()> {
    let onnx = args
        .out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"));
    if !onnx && (args.normalize_input || args.argmax) {
        bail!(
            "--normalize-input and --argmax apply to ONNX files only (fix --out: name it FILE.onnx)"
        );
    }
    // clap requires one of the two spellings.
    let path = args.model.as_ref().or(args.model_pos.as_ref());
    let path = path.context("give the model: --model PATH")?;
    let (model, card) = load_model(path, &Device::flex()).context("fix --model")?;
    if onnx {
        return export_onnx(&model, &card, &args);
    }
    let model = if args.folded { model.fold() } else { model };
    save_state_dict(&model, &args.out).context("fix --out")?;
    println!(
        "wrote {}{}",
        args.out.display(),
        if args.folded {
            " (folded: standardized kernels, no gains)"
        } else {
            ""
        }
    );
    Ok(())
}

fn export_onnx(model: &WsResUNet, card: &ModelCard, args: &ExportArgs) -> Result<()> {
    let options = OnnxOptions {
        normalize_input: args.normalize_input,
        argmax: args.argmax,
    };
    let onnx = to_onnx(model, card, &options).context("fix --model")?;
    onnx.save(&args.out).context("fix --out")?;
    let ops: Vec<String> = onnx
        .op_counts
        .iter()
        .map(|(op, n)| format!("{op} {n}"))
        .collect();
    println!(
        "wrote {} (ONNX opset {OPSET}, {:.1} MB): folded network, {} nodes, {} parameters",
        args.out.display(),
        onnx.bytes().len() as f64 / 1e6,
        onnx.nodes(),
        onnx.parameters
    );
    println!("ops: {}", ops.join(", "));
    let c = card.model.in_channels;
    println!(
        "input  image  float32 [batch, {c}, height, width] {}",
        if args.normalize_input {
            "in [0, 1] (the graph normalizes)"
        } else {
            "normalized with the card's mean/std"
        }
    );
    println!(
        "output logits float32 [batch, {}, height, width]{}",
        card.model.num_classes,
        if args.argmax {
            "; labels int64 [batch, height, width]"
        } else {
            ""
        }
    );
    Ok(())
}
