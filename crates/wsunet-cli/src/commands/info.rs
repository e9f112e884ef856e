//! `wsunet info`: the architecture table and parameter count of a model
//! config, or (`--image`) what a TIFF file holds: its resolution levels,
//! tiling, sample type, compression, georeferencing and pixel size.

use std::time::Instant;

use anyhow::{Context, Result};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use wsunet::device::DeviceInfo;
use wsunet::layers::{Norm, Standardization};
use wsunet::{WsResUNet, WsResUNetConfig, parse_device};

use clap::Args;

use crate::args::{ModelArgs, parse_size};

/// `wsunet info`'s one-line help (`wsunet --help`).
pub const ABOUT: &str = "Print a model's architecture (per part: channels, stride, output size) and its parameter count; with --model, a saved model's classes and weights digest; with --image, what a TIFF file holds (levels, tiles, placement, pixel size)";

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

    /// A saved model (a run directory, or a model's .bpk/.json) instead of a
    /// config: prints the digest of its weights (the same for the same
    /// weights in any file: compare two models with it), its classes, and
    /// its architecture.
    #[arg(long = "model", value_name = "PATH", conflicts_with_all = ["model_config", "num_classes", "variant"])]
    pub trained: Option<std::path::PathBuf>,

    /// Describe this TIFF file instead of a model: its resolution levels
    /// (what `predict --level` chooses), tiling, samples, compression,
    /// georeferencing and pixel size.
    #[arg(long, value_name = "FILE")]
    pub image: Option<std::path::PathBuf>,
}

/// `--image`: a TIFF's levels and placement.
fn image_info(path: &std::path::Path, json: bool) -> Result<()> {
    let info = wsunet::raster::inspect(path).context("fix --image")?;
    // The table (or JSON) is printed either way; a full-resolution level
    // that cannot be read then makes the command fail, naming why.
    let unreadable = || -> Result<()> {
        match info.level(0) {
            Ok(_) => Ok(()),
            Err(e) => Err(anyhow::Error::new(e).context("fix --image")),
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return unreadable();
    }
    println!(
        "{}: {}, {} page(s)",
        path.display(),
        if info.bigtiff { "BigTIFF" } else { "TIFF" },
        info.pages
    );
    println!(
        "\n{:<6} {:>13} {:>9} {:>8} {:>12} {:>9}  where",
        "level", "width×height", "channels", "samples", "chunks", "compress"
    );
    for l in &info.levels {
        let chunks = match l.chunking {
            wsunet::raster::Chunking::Tiles { width, height } => format!("tiles {width}×{height}"),
            wsunet::raster::Chunking::Strips { rows } => format!("strips {rows}"),
        };
        let samples = match l.sample_type {
            Some(t) => format!("{t:?}").to_lowercase(),
            None => "?".into(),
        };
        println!(
            "{:<6} {:>13} {:>9} {:>8} {:>12} {:>9}  {}{}{}",
            l.index,
            format!("{}×{}", l.width, l.height),
            l.channels,
            samples,
            chunks,
            l.compression,
            l.location,
            if l.planar { ", planar" } else { "" },
            l.problem
                .as_ref()
                .map(|p| format!("; cannot be read: {p}"))
                .unwrap_or_default()
        );
    }
    match &info.pixel_size {
        Some(p) => println!("\npixel size {:.4} × {:.4} µm", p.x_um, p.y_um),
        None => println!("\npixel size: not stated"),
    }
    let geo = &info.geo;
    if geo.is_georeferenced() {
        let scale = geo
            .pixel_scale
            .as_ref()
            .map(|s| {
                format!(
                    ", pixel {} × {} map units",
                    s[0],
                    s.get(1).copied().unwrap_or(0.0)
                )
            })
            .unwrap_or_default();
        println!("georeferenced (GeoTIFF){scale}");
    } else {
        println!("not georeferenced");
    }
    if let Some(nodata) = &geo.nodata {
        println!("nodata {}", nodata.trim_matches(char::from(0)));
    }
    unreadable()
}

/// Parameters of each named part, in [`WsResUNetConfig::layout`] order.
fn part_params(model: &WsResUNet) -> Vec<usize> {
    let stage = |s: &[wsunet::layers::WsResBlock]| s.iter().map(|b| b.num_params()).sum();
    vec![
        model.stem.num_params(),
        stage(&model.stage1),
        stage(&model.stage2),
        stage(&model.stage3),
        stage(&model.stage4),
        model.bridge.iter().map(|b| b.num_params()).sum(),
        model.dec4.num_params(),
        model.dec3.num_params(),
        model.dec2.num_params(),
        model.dec1.num_params(),
        model.head.num_params(),
    ]
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn run(args: InfoArgs) -> Result<()> {
    if let Some(path) = &args.image {
        return image_info(path, args.json);
    }
    let config = match &args.trained {
        Some(path) => {
            let (model, card) =
                wsunet::card::load_model(path, &Device::flex()).context("fix --model")?;
            let digest = wsunet::card::weights_digest(&model).context("fix --model")?;
            if !args.json {
                println!("weights digest {digest}");
                println!(
                    "classes {}; training crop {}; pixel size {}",
                    card.classes.names().join(", "),
                    card.crop
                        .map_or("not recorded".into(), |[h, w]| format!("{h}×{w}")),
                    card.pixel_size
                        .map_or("not recorded".into(), |p| format!("{:.4} µm", p.x_um))
                );
            } else {
                println!(
                    "{}",
                    serde_json::json!({"weights_digest": digest, "card": card})
                );
                return Ok(());
            }
            card.model
        }
        None => args.model.config()?,
    };
    // Parameters are counted on the CPU; the optional device check builds the
    // model again where it will run.
    let model = config.init(&Device::flex())?;
    let parts = config.layout(args.size);
    let params = part_params(&model);
    let total = model.num_params();
    let [h, w] = args.size;

    let check = match &args.device {
        Some(name) => Some(check_device(&config, name, args.size)?),
        None => None,
    };

    if args.json {
        let rows: Vec<_> = parts
            .iter()
            .zip(&params)
            .map(|(p, n)| {
                serde_json::json!({
                    "name": p.name, "blocks": p.blocks, "in_channels": p.in_channels,
                    "out_channels": p.out_channels, "stride": p.stride, "size": p.size, "params": n,
                })
            })
            .collect();
        let mut doc = serde_json::json!({
            "config": config, "input": [config.in_channels, h, w], "parts": rows, "params": total,
        });
        if let Some((device, ms)) = check {
            doc["device_check"] = serde_json::json!({
                "device": device.name,
                "description": device.to_string(),
                "forward_ms": ms,
            });
        }
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }

    println!(
        "WSResUNet: {} input channels → {} classes, widths {:?}, depths {:?}",
        config.in_channels, config.num_classes, config.widths, config.depths
    );
    let groups: Vec<String> = config
        .group_counts()
        .iter()
        .map(|(c, g)| format!("{c}:{g}"))
        .collect();
    let norm = match config.norm {
        Norm::Group => format!("GroupNorm groups per width {}", groups.join(" ")),
        Norm::Batch => "BatchNorm (momentum 0.1, eps 1e-5; running statistics in inference)".into(),
        Norm::None => "no norm (the convolutions have biases)".into(),
        Norm::Instance => "InstanceNorm (GroupNorm with one channel per group)".into(),
        other => format!("norm {other}"),
    };
    let standardization = match config.standardization {
        Standardization::None => "plain convolutions (no standardization)".to_string(),
        s => format!(
            "WsConv2d standardization {s} (eps {:e})",
            config.resolved_eps()
        ),
    };
    println!(
        "variant {}: {standardization}; {norm}",
        config.variant_name()
    );
    println!();
    println!(
        "{:<8} {:>6} {:>12} {:>7} {:>11} {:>12}",
        "part", "blocks", "channels", "stride", "output", "parameters"
    );
    println!(
        "{:<8} {:>6} {:>12} {:>7} {:>11} {:>12}",
        "input",
        "",
        config.in_channels,
        "/1",
        format!("{h}×{w}"),
        ""
    );
    for (p, n) in parts.iter().zip(&params) {
        println!(
            "{:<8} {:>6} {:>12} {:>7} {:>11} {:>12}",
            p.name,
            p.blocks,
            format!("{} → {}", p.in_channels, p.out_channels),
            format!("/{}", p.stride),
            format!("{}×{}", p.size[0], p.size[1]),
            thousands(*n)
        );
    }
    println!("{:<8} {:>52}", "total", thousands(total));
    if let Some((device, ms)) = check {
        println!(
            "\nforward pass on {device}: 1×{}×{h}×{w} in {ms:.1} ms",
            config.in_channels
        );
    }
    Ok(())
}

/// Builds the model on `name` and times one forward pass of a zero image.
fn check_device(
    config: &WsResUNetConfig,
    name: &str,
    size: [usize; 2],
) -> Result<(DeviceInfo, f64)> {
    let device = parse_device(name).context("fix --device")?;
    let model = config.init(&device)?;
    let [h, w] = size;
    model
        .check_input([1, config.in_channels, h, w])
        .context("fix --size")?;
    let x = Tensor::<4>::zeros([1, config.in_channels, h, w], &device);
    let start = Instant::now();
    let y = model.forward(x);
    let values = y
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    anyhow::ensure!(
        values.iter().all(|v| v.is_finite()),
        "the forward pass on {name} produced non-finite values"
    );
    Ok((crate::args::announce(&device), ms))
}
