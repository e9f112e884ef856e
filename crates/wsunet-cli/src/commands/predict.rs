//! `wsunet predict`: segment images or folders of images with a saved model.
//!
//! Every image is read, predicted (tiled when larger than a tile) and its
//! outputs written atomically; an image that fails is reported and skipped,
//! the rest still run, and the exit code says something failed.
//!
//! The output folder records what produced it (`predict.json`, see
//! `wsunet::provenance`): a rerun skips images whose outputs are complete,
//! and a run with another model or settings is refused. `--shard I/N`
//! predicts one share of the inputs, for job arrays. Decoding the next image
//! and encoding the last one run on their own threads, beside the network.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use indicatif::{MultiProgress, ProgressBar};
use wsunet::card::{ModelCard, load_model};
use wsunet::data::io::{IMAGE_EXTENSIONS, value_counts, write_mask_png, write_npy, write_rgb8_png};
use wsunet::data::layout::image_files;
use wsunet::data::{Image, read_image};
use wsunet::infer::{PredictConfig, Prediction, Predictor, overlay};
use wsunet::provenance::{Claim, Outputs, Provenance, Settings as Recorded};
use wsunet::shard::Shard;

use super::{Settings, with_fix};
use clap::Args;
use wsunet::infer::Tta;

use crate::cli::{DeviceArg, choice};
use crate::progress;

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

    #[command(flatten)]
    pub device: DeviceArg,

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

pub fn run(args: PredictArgs) -> Result<()> {
    if !(0.0..=1.0).contains(&args.alpha) {
        bail!("--alpha {} is outside [0, 1]", args.alpha);
    }
    let settings = Settings::flags::<PredictArgs>();
    let shard = match &args.shard {
        Some(text) => {
            Shard::parse(text, |k| std::env::var(k).ok()).map_err(|e| with_fix(e, &settings))?
        }
        None => Shard::default(),
    };
    let device = args.device.open()?;
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
        tta: args.tta,
    };
    config.validate().map_err(|e| with_fix(e, &settings))?;
    let inputs = list_inputs(&args.input)?;
    let all = plan_outputs(&inputs, &args.out)?;
    let total = all.len();
    let jobs = shard.select(all);
    if jobs.is_empty() {
        println!("shard {shard}: no images in this share of {total} input(s); nothing to do");
        return Ok(());
    }
    let outputs = Outputs {
        overlay: args.overlay.then_some(args.alpha),
        probs: args.probs,
        logits: args.logits,
    };
    let record = Provenance::new(
        &args.model,
        &card,
        Recorded {
            tile,
            overlap: args.overlap,
            tta: args.tta,
            outputs,
        },
    )
    .context("fix --model")?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {} (fix --out)", args.out.display()))?;
    let own: Vec<String> = jobs
        .iter()
        .flat_map(|(_, stem)| outputs.files(stem))
        .collect();
    match record
        .claim(&args.out, &own, args.overwrite)
        .map_err(|e| with_fix(e, &settings))?
    {
        Claim::Replaced => println!(
            "{} recorded other predictions; replaced (--overwrite)",
            args.out.join(wsunet::provenance::PROVENANCE_FILE).display()
        ),
        Claim::New | Claim::Same => {}
    }
    let share = if shard.count > 1 {
        format!("shard {shard}: {} of {total} input(s); ", jobs.len())
    } else {
        String::new()
    };
    let (todo, skipped): (Vec<_>, Vec<_>) = jobs
        .into_iter()
        .partition(|(_, stem)| args.overwrite || !outputs.complete(&args.out, stem));
    if !skipped.is_empty() {
        println!(
            "{share}skipped {} image(s) whose outputs are complete (--overwrite predicts them again)",
            skipped.len()
        );
    } else if !share.is_empty() {
        println!("{}", share.trim_end_matches("; "));
    }
    let predictor = Predictor::new(model, card.normalize.clone(), device, config)
        .context("the model card does not fit its model")?;

    let started = Instant::now();
    let report = Report::new(todo.len());
    pipeline(&predictor, &card, &args, outputs, todo.clone(), &report);
    report.bar.finish_and_clear();
    let done = report.done.load(Ordering::Relaxed);
    let failed = report
        .failed
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    println!(
        "{done} of {} image(s) predicted into {} in {:.1} s",
        todo.len(),
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    let lost = todo.len() - done - failed.len();
    if lost > 0 {
        bail!(
            "{lost} image(s) were not predicted: a worker thread stopped (see above); run again to predict them"
        );
    }
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

/// Where results go: the image bar with its lines above it on a terminal,
/// plain lines otherwise, and the inputs that failed. Shared by the threads.
struct Report {
    bars: MultiProgress,
    bar: ProgressBar,
    interactive: bool,
    done: AtomicUsize,
    failed: Mutex<Vec<PathBuf>>,
}

impl Report {
    fn new(images: usize) -> Report {
        let bars = progress::multi();
        let bar = bars.add(progress::bar(images as u64, "images"));
        Report {
            bars,
            bar,
            interactive: progress::interactive(),
            done: AtomicUsize::new(0),
            failed: Mutex::new(Vec::new()),
        }
    }

    fn done(&self, line: String) {
        if self.interactive {
            let _ = self.bars.println(line);
        } else {
            println!("{line}");
        }
        self.done.fetch_add(1, Ordering::Relaxed);
        self.bar.inc(1);
    }

    fn error(&self, line: String) {
        if self.interactive {
            self.bars.suspend(|| eprintln!("{line}"));
        } else {
            eprintln!("{line}");
        }
    }

    fn failed(&self, input: &Path, e: anyhow::Error) {
        self.error(format!("error: {e:#} (skipped)"));
        self.failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(input.to_path_buf());
        self.bar.inc(1);
    }
}

/// One image predicted, on its way to be written.
struct Predicted {
    input: PathBuf,
    stem: String,
    image: Image,
    prediction: Prediction,
    started: Instant,
}

/// Reads the next image on one thread and writes the last one's outputs on
/// another while this thread runs the network. The channels hold no queue
/// (each thread hands over one image at a time), so at most three images
/// are in memory: decoding, predicting, writing.
fn pipeline(
    predictor: &Predictor,
    card: &ModelCard,
    args: &PredictArgs,
    outputs: Outputs,
    jobs: Vec<(PathBuf, String)>,
    report: &Report,
) {
    let (decoded_tx, decoded) = sync_channel::<(PathBuf, String, Result<Image>)>(0);
    let (predicted, to_write) = sync_channel::<Predicted>(0);
    std::thread::scope(|s| {
        let reader = s.spawn(move || {
            for (input, stem) in jobs {
                let image = read_image(&input).map_err(anyhow::Error::from);
                if decoded_tx.send((input, stem, image)).is_err() {
                    break;
                }
            }
        });
        let writer = s.spawn(move || {
            for p in to_write {
                match write_outputs(&p, card, &args.out, outputs) {
                    Ok(line) => report.done(line),
                    Err(e) => report.failed(&p.input, e),
                }
            }
        });
        for (input, stem, image) in decoded {
            let started = Instant::now();
            let tile_bar = report.bars.add(progress::bar(0, "tiles"));
            let prediction = image.and_then(|image| {
                let prediction = predictor
                    .predict_with_progress(&image, args.logits, &mut |done, total| {
                        tile_bar.set_length(total as u64);
                        tile_bar.set_position(done as u64);
                    })
                    .with_context(|| format!("{}", input.display()))?;
                Ok((image, prediction))
            });
            tile_bar.finish_and_clear();
            report.bars.remove(&tile_bar);
            match prediction {
                Ok((image, prediction)) => {
                    let job = Predicted {
                        input,
                        stem,
                        image,
                        prediction,
                        started,
                    };
                    if let Err(lost) = predicted.send(job) {
                        // The writer is gone (it panicked): say so per image.
                        report.failed(&lost.0.input, anyhow::anyhow!("the output writer stopped"));
                    }
                }
                Err(e) => report.failed(&input, e),
            }
        }
        drop(predicted);
        for (name, thread) in [("reader", reader), ("writer", writer)] {
            if thread.join().is_err() {
                report.error(format!("error: the image {name} thread stopped"));
            }
        }
    });
}

/// Writes one image's outputs; returns its summary line.
fn write_outputs(p: &Predicted, card: &ModelCard, out: &Path, outputs: Outputs) -> Result<String> {
    let mask = p.prediction.mask();
    let path = |suffix: &str| out.join(format!("{}{suffix}", p.stem));
    write_mask_png(&path(".png"), &mask, &card.classes)?;
    if let Some(alpha) = outputs.overlay {
        let rgb = overlay(&p.image, &mask, &card.classes, alpha);
        write_rgb8_png(&path("_overlay.png"), mask.width, mask.height, &rgb)?;
    }
    let prediction = &p.prediction;
    let shape = [prediction.num_classes, prediction.height, prediction.width];
    if outputs.probs {
        write_npy(&path("_probs.npy"), &shape, &prediction.probs)?;
    }
    if let Some(logits) = prediction.logits.as_ref().filter(|_| outputs.logits) {
        write_npy(&path("_logits.npy"), &shape, logits)?;
    }
    let total = (mask.height * mask.width) as f64;
    let names = card.classes.names();
    let shares: Vec<String> = value_counts(&mask)
        .into_iter()
        .rev()
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .map(|(class, count)| {
            let name = names
                .get(class as usize)
                .cloned()
                .unwrap_or_else(|| class.to_string());
            format!("{name} {:.1}%", 100.0 * count as f64 / total)
        })
        .collect();
    Ok(format!(
        "{} → {}: {}×{}, {} tile(s), {:.2} s; {}",
        p.input.display(),
        path(".png").display(),
        mask.height,
        mask.width,
        prediction.tiles,
        p.started.elapsed().as_secs_f64(),
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
