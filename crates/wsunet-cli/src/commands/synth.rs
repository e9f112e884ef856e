//! `wsunet synth`: writes the built-in `shapes` data as a dataset folder.

use anyhow::{Context, Result, bail};
use rayon::prelude::*;
use wsunet::data::{generate_shape_instances, generate_shapes, shapes_classes};
use wsunet::data::{write_label_png, write_mask_png, write_png};

use std::path::PathBuf;

use crate::progress::bar;
use clap::Args;

/// `wsunet synth`'s one-line help (`wsunet --help`).
pub const ABOUT: &str = "Write the built-in synthetic `shapes` dataset (circles, rectangles, triangles on textured backgrounds) as a dataset folder, or one large scene as a TIFF (--scene)";

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output folder; gets images/, masks/ and classes.json. With --scene:
    /// the scene's TIFF file (its mask goes beside it as NAME_mask.tif).
    #[arg(long, value_name = "DIR|FILE")]
    pub out: PathBuf,

    /// Write one large scene instead of a dataset: a SIDE × SIDE tiled RGB
    /// BigTIFF, a mosaic of --count generated --size images (and its mask),
    /// generated and written a band of rows at a time (for trying and
    /// benchmarking large-image prediction: `--scene 32768` is 3 GiB of
    /// pixels).
    #[arg(long, value_name = "SIDE")]
    pub scene: Option<usize>,

    /// Number of samples.
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub count: usize,

    /// Side of the square images in pixels.
    #[arg(long, value_name = "S", default_value_t = 128)]
    pub size: usize,

    /// Generator seed: the same seed always gives the same data.
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub seed: u64,

    /// Write instance labels as the masks (each shape its own id, 0 the
    /// background; grayscale PNGs, no classes.json): data for `wsunet train
    /// --task instances`.
    #[arg(long, conflicts_with = "scene")]
    pub instances: bool,

    /// Write into a folder that already holds images/ or masks/.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: SynthArgs) -> Result<()> {
    if args.count == 0 {
        bail!("--count is 0; ask for at least 1 sample");
    }
    if args.size < wsunet::MIN_INPUT_SIZE {
        bail!(
            "--size {} is below the model's minimum of {}",
            args.size,
            wsunet::MIN_INPUT_SIZE
        );
    }
    if let Some(side) = args.scene {
        return scene(&args, side);
    }
    let (images, masks) = (args.out.join("images"), args.out.join("masks"));
    for dir in [&images, &masks] {
        let occupied = dir
            .read_dir()
            .map(|mut d| d.next().is_some())
            .unwrap_or(false);
        if occupied && !args.force {
            bail!(
                "{} already holds files; choose another --out or pass --force to overwrite",
                dir.display()
            );
        }
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create {} (fix --out)", dir.display()))?;
    }
    let classes = shapes_classes();
    if !args.instances {
        classes
            .save(&args.out.join(wsunet::data::CLASSES_FILE))
            .with_context(|| format!("cannot write into {}", args.out.display()))?;
    }

    let progress = bar(args.count as u64, "writing shapes");
    let digits = (args.count - 1).to_string().len().max(5);
    (0..args.count)
        .into_par_iter()
        .try_for_each(|i| -> Result<()> {
            let name = format!("shape_{i:0digits$}.png");
            if args.instances {
                let (image, ids) = generate_shape_instances(args.seed, i as u64, args.size);
                write_png(&images.join(&name), &image)?;
                write_label_png(&masks.join(&name), &ids)?;
            } else {
                let (image, mask) = generate_shapes(args.seed, i as u64, args.size);
                write_png(&images.join(&name), &image)?;
                write_mask_png(&masks.join(&name), &mask, &classes)?;
            }
            progress.inc(1);
            Ok(())
        })?;
    progress.finish_and_clear();
    println!(
        "wrote {} samples of {}×{} (seed {}) to {}",
        args.count,
        args.size,
        args.size,
        args.seed,
        args.out.display()
    );
    Ok(())
}

/// `--scene`: one large mosaic TIFF and its mask.
fn scene(args: &SynthArgs, side: usize) -> Result<()> {
    if side < wsunet::MIN_INPUT_SIZE {
        bail!(
            "--scene {side} is below the model's minimum of {}",
            wsunet::MIN_INPUT_SIZE
        );
    }
    if !wsunet::raster::is_tiff(&args.out) {
        bail!(
            "--out {} must name a .tif file with --scene",
            args.out.display()
        );
    }
    if args.out.exists() && !args.force {
        bail!(
            "{} exists; choose another --out or pass --force to overwrite",
            args.out.display()
        );
    }
    let stem = args.out.file_stem().unwrap_or_default().to_string_lossy();
    let mask = args.out.with_file_name(format!("{stem}_mask.tif"));
    let started = std::time::Instant::now();
    wsunet::data::write_scene(
        &args.out,
        Some(&mask),
        side,
        args.size,
        args.count,
        args.seed,
    )
    .with_context(|| format!("cannot write the scene (fix --out {})", args.out.display()))?;
    println!(
        "wrote a {side}×{side} scene of {} {}-px samples (seed {}) to {} and {} in {:.1} s",
        args.count,
        args.size,
        args.seed,
        args.out.display(),
        mask.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
