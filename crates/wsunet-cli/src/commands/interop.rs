//! `wsunet import` and `wsunet export`: weights to and from PyTorch.

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use wsunet::WsResUNet;
use wsunet::card::{ModelCard, load_model, save_model};
use wsunet::data::{ClassList, Normalize};
use wsunet::onnx::{OPSET, OnnxOptions, to_onnx};
use wsunet::weights::{infer_config, load_state_dict, read_shapes, save_state_dict};

use crate::cli::{ExportArgs, ImportArgs};

pub fn import(args: ImportArgs) -> Result<()> {
    let standardization = args.standardization;
    let shapes = read_shapes(&args.file).context("fix the input file")?;
    let config = infer_config(&shapes, args.groups, standardization, args.eps)
        .context("cannot infer the architecture")?;
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
    };
    let out = args.out.with_extension("bpk");
    save_model(&model, &card, &out).context("fix --out")?;
    println!(
        "imported {} ({} tensors): {} → {} classes, widths {:?}, depths {:?}, {} standardization, groups {}",
        args.file.display(),
        shapes.len(),
        card.model.in_channels,
        card.model.num_classes,
        card.model.widths,
        card.model.depths,
        card.model.standardization,
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
    println!(
        "wrote {} and {}",
        out.display(),
        out.with_extension("json").display()
    );
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
