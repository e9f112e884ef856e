//! `wsunet import` and `wsunet export`: weights to and from PyTorch.

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use wsunet::WsResUNet;
use wsunet::card::{ModelCard, load_model, save_model};
use wsunet::data::{ClassList, Normalize};
use wsunet::layers::Standardization;
use wsunet::onnx::{OPSET, OnnxOptions, to_onnx};
use wsunet::weights::{infer_config, load_state_dict, read_shapes, save_safetensors};

use crate::cli::{ExportArgs, ImportArgs};

pub fn import(args: ImportArgs) -> Result<()> {
    let standardization = args
        .standardization
        .as_deref()
        .map(|s| {
            s.parse::<Standardization>()
                .map_err(|e| anyhow::anyhow!("{e} (fix --standardization)"))
        })
        .transpose()?;
    let shapes = read_shapes(&args.file).context("fix the input file")?;
    let config = infer_config(&shapes, args.groups, standardization, args.eps)
        .context("cannot infer the architecture")?;
    let device = Device::flex();
    let mut model = config.init(&device)?;
    load_state_dict(&mut model, &args.file)?;
    let channels = config.in_channels;
    let normalize = match (args.mean, args.std) {
        (None, None) => Normalize::neutral(channels),
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
    println!(
        "input normalization mean {:?} std {:?}; wrote {} and {}",
        card.normalize.mean,
        card.normalize.std,
        out.display(),
        out.with_extension("json").display()
    );
    Ok(())
}

pub fn export(args: ExportArgs) -> Result<()> {
    let onnx = args
        .to
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"));
    if !onnx && (args.normalize_input || args.argmax) {
        bail!(
            "--normalize-input and --argmax apply to ONNX files only (fix --to: name it FILE.onnx)"
        );
    }
    let (model, card) = load_model(&args.model, &Device::flex()).context("fix MODEL")?;
    if onnx {
        return export_onnx(&model, &card, &args);
    }
    let model = if args.folded { model.fold() } else { model };
    save_safetensors(&model, &args.to).context("fix --to")?;
    println!(
        "wrote {}{}",
        args.to.display(),
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
    let onnx = to_onnx(model, card, &options).context("fix MODEL")?;
    onnx.save(&args.to).context("fix --to")?;
    let ops: Vec<String> = onnx
        .op_counts
        .iter()
        .map(|(op, n)| format!("{op} {n}"))
        .collect();
    println!(
        "wrote {} (ONNX opset {OPSET}, {:.1} MB): folded network, {} nodes, {} parameters",
        args.to.display(),
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
