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
//!
//! TIFF inputs (whole slides, satellite scenes) are streamed: read a band of
//! rows at a time and written as tiled, pyramidal TIFFs with the input's
//! georeferencing and pixel size while they are predicted, in memory
//! bounded by the tile and the width (`wsunet::infer::Predictor::predict_tiff`).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use indicatif::{MultiProgress, ProgressBar};
use wsunet::card::{ModelCard, load_model};
use wsunet::data::image_files;
use wsunet::data::{IMAGE_EXTENSIONS, value_counts};
use wsunet::data::{Image, read_image};
use wsunet::infer::{
    PredictConfig, Prediction, Predictor, ProbsType, Progress, TiffOutputs, TiffSummary,
};
use wsunet::provenance::{Claim, OutputKind, Outputs, Provenance, Settings as Recorded};
use wsunet::raster::{Compression, TiffInfo, inspect, is_tiff};
use wsunet::shard::Shard;

use super::{Settings, with_fix};
use clap::Args;
use wsunet::infer::Tta;

use crate::args::{DeviceArg, choice};
use crate::progress;

/// `wsunet predict`'s one-line help (`wsunet --help`).
pub const ABOUT: &str = "Segment images: palette PNG masks in the class colours, optional colour overlays, probabilities or logits as .npy; images larger than a tile are predicted tile by tile and blended without seams; TIFFs of any size are streamed into tiled, pyramidal TIFFs with their georeferencing";

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// The model: a run directory, or a model's .bpk/.json.
    #[arg(long, value_name = "PATH")]
    pub model: PathBuf,

    /// An image, or a folder of images (png, jpg, bmp, tif, npy [C,H,W]
    /// float32); repeat for more. TIFF files (also BigTIFF, OME-TIFF,
    /// GeoTIFF, SVS) of any size are streamed: see --level.
    #[arg(long, value_name = "FILE|DIR", required = true)]
    pub input: Vec<PathBuf>,

    /// Output folder (created if missing): NAME.png masks, and with the
    /// options below NAME_overlay.png, NAME_probs.npy, NAME_logits.npy;
    /// for TIFF inputs tiled, pyramidal NAME.tif, NAME_overlay.tif,
    /// NAME_probs.tif, NAME_logits.tif with the input's georeferencing and
    /// pixel size. predict.json records the model and settings that
    /// produced them.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Also write the image with the class colours blended over it.
    #[arg(long)]
    pub overlay: bool,

    /// Opacity of the overlay colours, in [0, 1].
    #[arg(long, value_name = "A", default_value_t = 0.5)]
    pub alpha: f32,

    /// Also write class probabilities as float32 .npy [classes, H, W]
    /// (TIFF inputs: a TIFF with one band per class, see --probs-type).
    #[arg(long)]
    pub probs: bool,

    /// How TIFF probabilities are stored: u8 (round(p·255), a quarter of
    /// the size) or f32.
    #[arg(long, value_name = "TYPE", default_value = "u8", value_parser = choice(&ProbsType::ALL))]
    pub probs_type: ProbsType,

    /// Also write raw logits as float32 .npy [classes, H, W] (TIFF inputs:
    /// a float32 TIFF with one band per class).
    #[arg(long)]
    pub logits: bool,

    /// Also write where to proofread (needs --tta flip): NAME_uncertainty.npy,
    /// float32 [2, H, W], the entropy of the averaged probabilities over
    /// ln(classes) (0: sure, 1: every class equally likely) and the share
    /// of the four flips whose class differs from the prediction (0, 0.25,
    /// …, blended across tiles); NAME_uncertainty.png shows the entropy in
    /// red and the disagreement in green (yellow: both; black: sure). TIFF
    /// inputs: a float32 TIFF with the two bands.
    #[arg(long)]
    pub uncertainty: bool,

    /// The resolution level of TIFF inputs to predict: 0 is full
    /// resolution, 1… the file's reduced levels (OME-TIFF SubIFDs or
    /// reduced pages; `wsunet info --image FILE` lists them).
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub level: usize,

    /// Compression of the TIFFs written: none, deflate (read everywhere)
    /// or zstd (smaller, faster; GDAL ≥ 2.3).
    #[arg(long, value_name = "METHOD", default_value = "deflate", value_parser = choice(&Compression::ALL))]
    pub compression: Compression,

    /// Resample images by this factor for the network and the results back
    /// (2: pixels half the size, for a model trained at twice the input's
    /// resolution), or auto: per TIFF input, its pixel size over the
    /// model's training pixel size (both must be stated). Without it, a
    /// TIFF whose pixel size differs from the model's by over 10 % gets a
    /// warning.
    #[arg(long, value_name = "F|auto")]
    pub scale: Option<String>,

    /// Leave out tiles that hold no image (every pixel nodata, or every
    /// channel's standard deviation below a quarter of its training one:
    /// slide glass, water, a scene's border); they are written as
    /// background, and the summary says how many were skipped. A tiled
    /// GroupNorm model can see objects in such tiles' noise.
    #[arg(long)]
    pub skip_empty: bool,

    /// Tile side for large images; images no larger run in one pass.
    /// Default: the model's training crop (the larger side) when its card
    /// records one, else 512. GroupNorm normalizes over the whole tile, so
    /// tiles much larger than the training crop can score worse.
    #[arg(long, value_name = "N")]
    pub tile: Option<usize>,

    /// Minimum fraction of a tile shared with its neighbour, in [0, 0.9].
    #[arg(long, value_name = "F", default_value_t = PredictConfig::default().overlap)]
    pub overlap: f32,

    /// Tiles per forward pass.
    #[arg(long, value_name = "N", default_value_t = PredictConfig::default().batch_size)]
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

/// `--scale`: a factor, `None` for auto (per image).
fn parse_scale(text: Option<&str>) -> Result<Option<f64>> {
    match text {
        None => Ok(Some(1.0)),
        Some("auto") => Ok(None),
        Some(t) => match t.parse::<f64>() {
            Ok(f) if f.is_finite() && f > 0.0 => Ok(Some(f)),
            _ => bail!("--scale {t} is neither a positive number nor auto"),
        },
    }
}

pub fn run(args: PredictArgs) -> Result<()> {
    if !(0.0..=1.0).contains(&args.alpha) {
        bail!("--alpha {} is outside [0, 1]", args.alpha);
    }
    let scale = parse_scale(args.scale.as_deref())?;
    let settings = Settings::flags::<PredictArgs>();
    let shard = match &args.shard {
        Some(text) => {
            Shard::parse(text, |k| std::env::var(k).ok()).map_err(|e| with_fix(e, &settings))?
        }
        None => Shard::default(),
    };
    let device = args.device.open()?;
    let (model, card) = load_model(&args.model, &device).context("fix --model")?;
    if args.uncertainty && args.tta != Tta::Flip {
        bail!(
            "--uncertainty needs --tta flip: the disagreement it maps is between the flips (fix: add --tta flip)"
        );
    }
    let config = predict_config(&args, &card, scale);
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
        uncertainty: args.uncertainty,
    };
    let digest = wsunet::card::weights_digest(&model).context("fix --model")?;
    let record = Provenance::new(
        &args.model,
        digest,
        &card,
        Recorded {
            tile: config.tile,
            overlap: args.overlap,
            tta: args.tta,
            outputs,
            level: args.level,
            skip_empty: args.skip_empty,
            compression: args.compression,
            probs_type: args.probs_type,
            scale,
        },
    )
    .context("fix --model")?;
    claim_out(&args, &record, outputs, &jobs, &settings)?;
    let share = if shard.count > 1 {
        format!("shard {shard}: {} of {total} input(s); ", jobs.len())
    } else {
        String::new()
    };
    let todo = unfinished(&args, outputs, jobs, &share)?;
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
    outcome(todo.len() - done - failed.len(), &failed)
}

/// The prediction settings of `args`; the tile defaults to the model's
/// training crop (said when it does).
fn predict_config(args: &PredictArgs, card: &ModelCard, scale: Option<f64>) -> PredictConfig {
    let tile = args.tile.unwrap_or_else(|| {
        let tile = PredictConfig::tile_for(card);
        if let Some([h, w]) = card.crop {
            println!("tile {tile}: the model's training crop ({h}×{w}); --tile changes it");
        }
        tile
    });
    PredictConfig {
        tile,
        overlap: args.overlap,
        batch_size: args.batch_size,
        tta: args.tta,
        skip_empty: args.skip_empty,
        scale: scale.unwrap_or(1.0),
        uncertainty: args.uncertainty,
    }
}

/// Creates `--out` and records there what predicts into it, refusing a
/// folder that another model or other settings predicted into (unless
/// `--overwrite`).
fn claim_out(
    args: &PredictArgs,
    record: &Provenance,
    outputs: Outputs,
    jobs: &[(PathBuf, String)],
    settings: &Settings,
) -> Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {} (fix --out)", args.out.display()))?;
    let own: Vec<String> = jobs
        .iter()
        .flat_map(|(input, stem)| outputs.files(stem, kind_of(input)))
        .collect();
    match record
        .claim(&args.out, &own, args.overwrite)
        .map_err(|e| with_fix(e, settings))?
    {
        Claim::Replaced => println!(
            "{} recorded other predictions; replaced (--overwrite)",
            args.out.join(wsunet::provenance::PROVENANCE_FILE).display()
        ),
        Claim::New | Claim::Same => {}
    }
    Ok(())
}

/// The jobs whose outputs are not all there yet (all of them with
/// `--overwrite`), saying how many are skipped; `share` prefixes the line
/// in a sharded run. Temporary files that a killed run left for these
/// jobs' outputs are removed (each image belongs to one shard, so no live
/// writer owns them).
fn unfinished(
    args: &PredictArgs,
    outputs: Outputs,
    jobs: Vec<(PathBuf, String)>,
    share: &str,
) -> Result<Vec<(PathBuf, String)>> {
    let (todo, skipped): (Vec<_>, Vec<_>) = jobs.into_iter().partition(|(input, stem)| {
        args.overwrite || !outputs.complete(&args.out, stem, kind_of(input))
    });
    let targets: HashSet<String> = todo
        .iter()
        .flat_map(|(input, stem)| outputs.files(stem, kind_of(input)))
        .collect();
    let stale =
        wsunet::fs::remove_stale_temps(&args.out, |t| targets.contains(t)).context("fix --out")?;
    if stale > 0 {
        println!(
            "{share}removed {stale} temporary file(s) an interrupted run left in {}",
            args.out.display()
        );
    }
    if !skipped.is_empty() {
        println!(
            "{share}skipped {} image(s) whose outputs are complete (--overwrite predicts them again)",
            skipped.len()
        );
    } else if !share.is_empty() {
        println!("{}", share.trim_end_matches("; "));
    }
    Ok(todo)
}

/// An error when images were `lost` (a worker stopped) or `failed`.
fn outcome(lost: usize, failed: &[PathBuf]) -> Result<()> {
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

/// An input as the reader thread hands it over: a decoded image, or a TIFF
/// described (its rows are read while it is predicted).
enum Decoded {
    Image(Result<Image>),
    Tiff(Result<Box<TiffInfo>>),
}

/// The kind of outputs an input gets: TIFF inputs are streamed into TIFFs.
fn kind_of(input: &Path) -> OutputKind {
    if is_tiff(input) {
        OutputKind::Tiff
    } else {
        OutputKind::Png
    }
}

/// Reads the next image on one thread and writes the last one's outputs on
/// another while this thread runs the network. The channels hold no queue
/// (each thread hands over one image at a time), so at most three images
/// are in memory: decoding, predicting, writing. TIFF inputs are streamed
/// on this thread (their reading and writing have threads of their own).
fn pipeline(
    predictor: &Predictor,
    card: &ModelCard,
    args: &PredictArgs,
    outputs: Outputs,
    jobs: Vec<(PathBuf, String)>,
    report: &Report,
) {
    let (decoded_tx, decoded) = sync_channel::<(PathBuf, String, Decoded)>(0);
    let (predicted, to_write) = sync_channel::<Predicted>(0);
    std::thread::scope(|s| {
        let reader = s.spawn(move || {
            for (input, stem) in jobs {
                let item = if is_tiff(&input) {
                    Decoded::Tiff(inspect(&input).map(Box::new).map_err(anyhow::Error::from))
                } else {
                    Decoded::Image(read_image(&input).map_err(anyhow::Error::from))
                };
                if decoded_tx.send((input, stem, item)).is_err() {
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
        let auto_scale = args.scale.as_deref() == Some("auto");
        for (input, stem, item) in decoded {
            let image = match item {
                Decoded::Image(_) if auto_scale => {
                    report.failed(
                        &input,
                        anyhow::anyhow!(
                            "--scale auto needs the input's pixel size, which only TIFF files state; give --scale F"
                        ),
                    );
                    continue;
                }
                Decoded::Image(image) => image,
                Decoded::Tiff(info) => {
                    match info
                        .and_then(|info| stream_tiff(predictor, card, args, &info, &stem, report))
                    {
                        Ok(line) => report.done(line),
                        Err(e) => report.failed(&input, e),
                    }
                    continue;
                }
            };
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

/// Predicts a TIFF input streamed into TIFF outputs; returns its summary
/// line. Progress: a bar over rows with megapixels/s on a terminal, a line
/// per 5 % otherwise.
fn stream_tiff(
    predictor: &Predictor,
    card: &ModelCard,
    args: &PredictArgs,
    info: &TiffInfo,
    stem: &str,
    report: &Report,
) -> Result<String> {
    let started = Instant::now();
    let path = |suffix: &str| args.out.join(format!("{stem}{suffix}.tif"));
    let targets = TiffOutputs {
        mask: path(""),
        overlay: args.overlay.then(|| (path("_overlay"), args.alpha)),
        probs: args.probs.then(|| (path("_probs"), args.probs_type)),
        logits: args.logits.then(|| path("_logits")),
        uncertainty: args.uncertainty.then(|| path("_uncertainty")),
        compression: args.compression,
    };
    let level = info.level(args.level).context("fix --level")?;
    let (w, h) = (level.width, level.height);
    let scaled;
    let predictor = match resolution_check(info, args, card, report)? {
        Some(factor) => {
            scaled = predictor.with_scale(factor).context("fix --scale")?;
            &scaled
        }
        None => predictor,
    };
    let name = info.path.display().to_string();
    let bar = report.bars.add(progress::bar(h as u64, "rows"));
    let mut next_line = 0.05;
    let summary = predictor
        .predict_tiff(
            info,
            args.level,
            &card.classes,
            &targets,
            &mut |p: Progress| {
                let seconds = started.elapsed().as_secs_f64();
                let rate = (p.rows_done * w) as f64 / seconds.max(1e-9) / 1e6;
                bar.set_length(p.rows as u64);
                bar.set_position(p.rows_done as u64);
                bar.set_message(format!("{rate:.2} MP/s"));
                let done = p.tiles_done as f64 / p.tiles.max(1) as f64;
                if !report.interactive && done >= next_line && done < 1.0 {
                    let eta = seconds * (1.0 - done) / done;
                    println!(
                        "{name}: {:.0}% ({} of {} tiles, {} of {h} rows), {rate:.2} MP/s, eta {}",
                        100.0 * done,
                        p.tiles_done,
                        p.tiles,
                        p.rows_done,
                        progress::duration(eta)
                    );
                    next_line = (done / 0.05).floor() * 0.05 + 0.05;
                }
            },
        )
        .with_context(|| name.clone());
    bar.finish_and_clear();
    report.bars.remove(&bar);
    let summary = summary?;
    Ok(tiff_line(&name, &targets.mask, &summary, card, started))
}

/// The pixel size of a TIFF input against the model's training pixel size:
/// the factor to resample by for `--scale auto`; otherwise `None`, with a
/// warning when they differ by more than 10 % and no --scale was given.
fn resolution_check(
    info: &TiffInfo,
    args: &PredictArgs,
    card: &ModelCard,
    report: &Report,
) -> Result<Option<f64>> {
    let input = info.level_pixel_size(args.level);
    let auto = args.scale.as_deref() == Some("auto");
    let (Some(input), Some(trained)) = (input, card.pixel_size) else {
        if auto {
            bail!(
                "--scale auto needs the pixel size of the input (stated: {}) and of the model's training images (stated: {}); give --scale F",
                if input.is_some() { "yes" } else { "no" },
                if card.pixel_size.is_some() {
                    "yes"
                } else {
                    "no"
                }
            );
        }
        return Ok(None);
    };
    if auto {
        return Ok(Some(input.x_um / trained.x_um));
    }
    if args.scale.is_none() && input.relative_difference(&trained) > 0.1 {
        let best = (0..info.levels.len())
            .filter_map(|k| info.level_pixel_size(k).map(|p| (k, p)))
            .min_by(|a, b| {
                a.1.relative_difference(&trained)
                    .total_cmp(&b.1.relative_difference(&trained))
            });
        let level_hint = match best {
            Some((k, p)) if k != args.level && p.relative_difference(&trained) <= 0.1 => {
                format!("--level {k} ({:.3} µm/px) or ", p.x_um)
            }
            _ => String::new(),
        };
        report.error(format!(
            "warning: {} is {:.3} µm/px at level {}, but the model was trained at {:.3} µm/px: objects look {:.2}× their training size; predict with {level_hint}--scale auto",
            info.path.display(),
            input.x_um,
            args.level,
            trained.x_um,
            trained.x_um / input.x_um
        ));
    }
    Ok(None)
}

/// The summary line of a streamed TIFF.
fn tiff_line(
    input: &str,
    mask: &Path,
    s: &TiffSummary,
    card: &ModelCard,
    started: Instant,
) -> String {
    let seconds = started.elapsed().as_secs_f64();
    let pixels = (s.width * s.height) as f64;
    let names = card.classes.names();
    let shares: Vec<String> = s
        .class_pixels
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(class, &n)| {
            let name = names
                .get(class)
                .cloned()
                .unwrap_or_else(|| class.to_string());
            format!("{name} {:.1}%", 100.0 * n as f64 / pixels)
        })
        .collect();
    let skipped = if s.report.skipped > 0 {
        format!(" ({} empty, skipped)", s.report.skipped)
    } else {
        String::new()
    };
    let nodata = if s.nodata_pixels > 0 {
        format!(", nodata {:.1}%", 100.0 * s.nodata_pixels as f64 / pixels)
    } else {
        String::new()
    };
    format!(
        "{input} → {}: {}×{}, {} tile(s){skipped}, {seconds:.1} s, {:.2} MP/s; {}{nodata}",
        mask.display(),
        s.height,
        s.width,
        s.report.tiles,
        pixels / seconds.max(1e-9) / 1e6,
        shares.join(", ")
    )
}

/// Writes one image's outputs; returns its summary line.
fn write_outputs(p: &Predicted, card: &ModelCard, out: &Path, outputs: Outputs) -> Result<String> {
    let mask = outputs.write(out, &p.stem, &p.image, &p.prediction, &card.classes)?;
    let prediction = &p.prediction;
    let path = |suffix: &str| out.join(format!("{}{suffix}", p.stem));
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
