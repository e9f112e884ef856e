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

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use indicatif::{MultiProgress, ProgressBar};
use wsunet::Error;
use wsunet::card::ModelCard;
use wsunet::infer::{PredictConfig, ProbsType, Tta};
use wsunet::predict::{ImageDone, ImageProgress, PredictJob, PredictObserver, SavedModel, Scale};
use wsunet::provenance::{OutputKind, Outputs};
use wsunet::raster::Compression;
use wsunet::shard::Shard;

use super::{Settings, with_fix};
use clap::Args;

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

    /// Also write the objects: NAME_instances.tif (an id per object, 0
    /// background), NAME_objects.csv (one row per object: id, class, area,
    /// centroid, bounding box, mean probability and intensity) and
    /// NAME_objects.geojson (outlines, for QuPath's File › Import objects
    /// and QGIS). A semantic model's objects are each class's connected
    /// pieces; an instance model (trained with --task instances) always
    /// writes its objects, grown from their interiors.
    #[arg(long)]
    pub instances: bool,

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

pub fn run(args: PredictArgs) -> Result<()> {
    let settings = Settings::flags::<PredictArgs>();
    let fix = |e: Error| with_fix(e, &settings);
    let scale = match &args.scale {
        Some(text) => text.parse::<Scale>().map_err(fix)?,
        None => Scale::default(),
    };
    let shard = match &args.shard {
        Some(text) => Shard::parse(text, |k| std::env::var(k).ok()).map_err(fix)?,
        None => Shard::default(),
    };
    let job = PredictJob {
        out: args.out.clone(),
        outputs: Outputs {
            overlay: args.overlay.then_some(args.alpha),
            probs: args.probs,
            logits: args.logits,
            uncertainty: args.uncertainty,
            instances: args.instances,
        },
        level: args.level,
        compression: args.compression,
        probs_type: args.probs_type,
        scale,
        shard,
        overwrite: args.overwrite,
    };
    job.validate().map_err(fix)?;
    let device = args.device.open()?;
    let model = SavedModel::load(&args.model, &device).context("fix --model")?;
    let config = predict_config(&args, &model.card);
    config.validate().map_err(fix)?;
    let predictor = model
        .predictor(config, device)
        .context("the model card does not fit its model")?;
    let observer = Shown::new(&settings);
    let report = job
        .run(&predictor, &model, &args.input, &observer)
        .map_err(fix)?;
    observer.bar.finish_and_clear();
    if report.selected == 0 {
        return Ok(());
    }
    println!(
        "{} of {} image(s) predicted into {} in {:.1} s",
        report.done.len(),
        report.todo,
        args.out.display(),
        report.seconds
    );
    report.check().map_err(anyhow::Error::from)
}

/// The prediction settings of `args`; the tile defaults to the model's
/// training crop (said when it does).
fn predict_config(args: &PredictArgs, card: &ModelCard) -> PredictConfig {
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
        uncertainty: args.uncertainty,
        ..PredictConfig::default()
    }
}

/// The config fields the job's messages name, spoken as flags.
const FIELDS: [&str; 5] = ["scale", "level", "overwrite", "tta", "alpha"];

/// Shows a job: the image bar with its lines above it and a bar for the
/// image under way on a terminal, plain lines otherwise (a line per 5 % of
/// a streamed TIFF).
struct Shown<'a> {
    settings: &'a Settings,
    bars: MultiProgress,
    bar: ProgressBar,
    interactive: bool,
    /// The bar of the image under way, and the share of its tiles after
    /// which the next plain progress line is due.
    current: Mutex<Option<(ProgressBar, f64)>>,
}

impl<'a> Shown<'a> {
    fn new(settings: &'a Settings) -> Self {
        let bars = progress::multi();
        let bar = bars.add(progress::bar(0, "images"));
        Shown {
            settings,
            bars,
            bar,
            interactive: progress::interactive(),
            current: Mutex::new(None),
        }
    }

    fn line(&self, line: String) {
        if self.interactive {
            let _ = self.bars.println(line);
        } else {
            println!("{line}");
        }
    }

    fn error(&self, line: String) {
        if self.interactive {
            self.bars.suspend(|| eprintln!("{line}"));
        } else {
            eprintln!("{line}");
        }
    }
}

impl PredictObserver for Shown<'_> {
    fn info(&self, line: &str) {
        self.line(self.settings.speak(line, &FIELDS));
    }

    fn started(&self, images: usize) {
        self.bar.set_length(images as u64);
    }

    fn warning(&self, line: &str) {
        // The advice after "predict with" names settings; the rest names
        // the file and its levels in words.
        let text = match line.split_once("predict with ") {
            Some((what, advice)) => {
                format!(
                    "{what}predict with {}",
                    self.settings.speak(advice, &FIELDS)
                )
            }
            None => line.to_string(),
        };
        self.error(format!("warning: {text}"));
    }

    fn progress(&self, input: &Path, p: &ImageProgress) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let (bar, next_line) = current.get_or_insert_with(|| {
            let label = match p.kind {
                OutputKind::Png => "tiles",
                OutputKind::Tiff => "rows",
            };
            (self.bars.add(progress::bar(0, label)), 0.05)
        });
        let q = &p.progress;
        match p.kind {
            OutputKind::Png => {
                bar.set_length(q.tiles as u64);
                bar.set_position(q.tiles_done as u64);
            }
            OutputKind::Tiff => {
                let rate = (q.rows_done * p.width) as f64 / p.seconds.max(1e-9) / 1e6;
                bar.set_length(q.rows as u64);
                bar.set_position(q.rows_done as u64);
                bar.set_message(format!("{rate:.2} MP/s"));
                let done = q.tiles_done as f64 / q.tiles.max(1) as f64;
                if !self.interactive && done >= *next_line && done < 1.0 {
                    let eta = p.seconds * (1.0 - done) / done;
                    println!(
                        "{}: {:.0}% ({} of {} tiles, {} of {} rows), {rate:.2} MP/s, eta {}",
                        input.display(),
                        100.0 * done,
                        q.tiles_done,
                        q.tiles,
                        q.rows_done,
                        q.rows,
                        progress::duration(eta)
                    );
                    *next_line = (done / 0.05).floor() * 0.05 + 0.05;
                }
            }
        }
    }

    fn predicted(&self, _input: &Path) {
        if let Some((bar, _)) = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            bar.finish_and_clear();
            self.bars.remove(&bar);
        }
    }

    fn done(&self, image: &ImageDone) {
        self.line(image.to_string());
        self.bar.inc(1);
    }

    fn failed(&self, input: &Path, error: Error) {
        let name = input.display().to_string();
        let error = with_fix(error, self.settings);
        let text = format!("{error:#}");
        let text = if text.contains(&name) {
            text
        } else {
            format!("{name}: {text}")
        };
        self.error(format!("error: {text} (skipped)"));
        self.bar.inc(1);
    }
}
