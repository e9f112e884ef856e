//! `wsunet predict`: segment images or folders of images with a saved model.
//!
//! Every image is read, predicted (tiled when larger than a tile) and its
//! outputs written atomically; an image that fails is reported and skipped,
//! the rest still run, and the exit code says something failed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use wsunet::card::{ModelCard, load_model};
use wsunet::data::io::{IMAGE_EXTENSIONS, value_counts, write_mask_png, write_npy, write_rgb8_png};
use wsunet::data::layout::image_files;
use wsunet::data::read_image;
use wsunet::infer::{PredictConfig, Predictor, overlay};

use super::{Settings, open_device, with_fix};
use crate::cli::PredictArgs;
use crate::progress;

pub fn run(args: PredictArgs) -> Result<()> {
    let tta = args.tta;
    if !(0.0..=1.0).contains(&args.alpha) {
        bail!("--alpha {} is outside [0, 1]", args.alpha);
    }
    let device = open_device(&args.device)?;
    let (model, card) = load_model(&args.model, &device).context("fix --model")?;
    let tile = args.tile.unwrap_or_else(|| {
        let tile = PredictConfig::tile_for(&card);
        if let Some([h, w]) = card.crop {
            println!("tile {tile}: the model's training crop ({h}×{w}); --tile changes it");
        }
        tile
    });
    let config = PredictConfig {
        tile,
        overlap: args.overlap,
        batch_size: args.batch_size,
        tta,
    };
    config
        .validate()
        .map_err(|e| with_fix(e, &Settings::flags::<PredictArgs>()))?;
    let inputs = list_inputs(&args.input)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {} (fix --out)", args.out.display()))?;
    let jobs = plan_outputs(&inputs, &args.out)?;
    let predictor = Predictor::new(model, card.normalize.clone(), device, config)
        .context("the model card does not fit its model")?;

    let interactive = progress::interactive();
    // The image bar and, under it, the current image's tile bar.
    let bars = progress::multi();
    let bar = bars.add(progress::bar(jobs.len() as u64, "images"));
    let started = Instant::now();
    let mut failed = Vec::new();
    for (input, stem) in &jobs {
        let tile_bar = bars.add(progress::bar(0, "tiles"));
        let result = predict_one(&predictor, &card, &args, input, stem, &mut |done, total| {
            tile_bar.set_length(total as u64);
            tile_bar.set_position(done as u64);
        });
        tile_bar.finish_and_clear();
        bars.remove(&tile_bar);
        // Hidden bars print nothing: plain lines off a terminal.
        match result {
            Ok(line) if interactive => {
                let _ = bars.println(line);
            }
            Ok(line) => println!("{line}"),
            Err(e) => {
                let line = format!("error: {e:#} (skipped)");
                if interactive {
                    bars.suspend(|| eprintln!("{line}"));
                } else {
                    eprintln!("{line}");
                }
                failed.push(input.clone());
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let done = jobs.len() - failed.len();
    println!(
        "{done} of {} image(s) predicted into {} in {:.1} s",
        jobs.len(),
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    if !failed.is_empty() {
        bail!(
            "{} image(s) failed (listed above): {}",
            failed.len(),
            failed
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// Predicts one image and writes its outputs; returns the summary line.
fn predict_one(
    predictor: &Predictor,
    card: &ModelCard,
    args: &PredictArgs,
    input: &Path,
    stem: &str,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<String> {
    let started = Instant::now();
    let image = read_image(input)?;
    let prediction = predictor
        .predict_with_progress(&image, args.logits, progress)
        .with_context(|| format!("{}", input.display()))?;
    let mask = prediction.mask();
    let out = |suffix: &str| args.out.join(format!("{stem}{suffix}"));
    write_mask_png(&out(".png"), &mask, &card.classes)?;
    if args.overlay {
        let rgb = overlay(&image, &mask, &card.classes, args.alpha);
        write_rgb8_png(&out("_overlay.png"), mask.width, mask.height, &rgb)?;
    }
    let shape = [prediction.num_classes, prediction.height, prediction.width];
    if args.probs {
        write_npy(&out("_probs.npy"), &shape, &prediction.probs)?;
    }
    if let Some(logits) = &prediction.logits {
        write_npy(&out("_logits.npy"), &shape, logits)?;
    }
    let total = (mask.height * mask.width) as f64;
    let shares: Vec<String> = value_counts(&mask)
        .into_iter()
        .rev()
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .map(|(class, count)| {
            let name = card
                .classes
                .names()
                .get(class as usize)
                .cloned()
                .unwrap_or_else(|| class.to_string());
            format!("{name} {:.1}%", 100.0 * count as f64 / total)
        })
        .collect();
    Ok(format!(
        "{} → {}: {}×{}, {} tile(s), {:.2} s; {}",
        input.display(),
        out(".png").display(),
        mask.height,
        mask.width,
        prediction.tiles,
        started.elapsed().as_secs_f64(),
        shares.join(", ")
    ))
}

/// The image files named by `--input`: files as given, folders' images
/// (not recursive, hidden files left out) sorted by name.
fn list_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let found = image_files(input).context("fix --input")?;
            if found.is_empty() {
                bail!(
                    "{} holds no images ({}) (fix --input)",
                    input.display(),
                    IMAGE_EXTENSIONS.join(", ")
                );
            }
            files.extend(found);
        } else if input.is_file() {
            files.push(input.clone());
        } else {
            bail!("{} does not exist (fix --input)", input.display());
        }
    }
    Ok(files)
}

/// Pairs every input with its output name stem; refuses two inputs that
/// would write the same files, and outputs that would overwrite an input.
fn plan_outputs(inputs: &[PathBuf], out: &Path) -> Result<Vec<(PathBuf, String)>> {
    let mut by_stem: BTreeMap<String, &PathBuf> = BTreeMap::new();
    let mut jobs = Vec::new();
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let inputs_canonical: Vec<PathBuf> = inputs.iter().map(|p| canonical(p)).collect();
    for input in inputs {
        let stem = input
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(other) = by_stem.insert(stem.clone(), input) {
            bail!(
                "{} and {} would both write {stem}.png in {}; predict them into different --out folders",
                other.display(),
                input.display(),
                out.display()
            );
        }
        for suffix in [".png", "_overlay.png"] {
            let target = canonical(&out.join(format!("{stem}{suffix}")));
            if inputs_canonical.contains(&target) {
                bail!(
                    "writing {} would overwrite an input image; choose another --out",
                    target.display()
                );
            }
        }
        jobs.push((input.clone(), stem));
    }
    Ok(jobs)
}
