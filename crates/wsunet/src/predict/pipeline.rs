//! The threads of a job: the next image read on one, the last one's
//! outputs written on another, while the caller's thread runs the network.
//! The channels hold no queue (each thread hands over one image at a
//! time), so at most three images are in memory: reading, predicting,
//! writing. TIFF inputs are streamed on the caller's thread (their reading
//! and writing have threads of their own).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use super::space::{OutputsSize, free_bytes};
use super::{ImageDone, ImageProgress, PIXEL_SIZE_TOLERANCE, PredictJob, PredictObserver, Scale};
use crate::card::ModelCard;
use crate::data::{Image, read_image, value_counts};
use crate::error::{Error, Result};
use crate::infer::{ObjectOutputs, Prediction, Predictor, Progress, TiffOutputs};
use crate::provenance::OutputKind;
use crate::raster::{TiffInfo, inspect, is_tiff};

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

/// The images done and the inputs that failed, as the threads find them.
struct Outcome<'a> {
    observer: &'a dyn PredictObserver,
    done: Mutex<Vec<ImageDone>>,
    failed: Mutex<Vec<PathBuf>>,
}

impl Outcome<'_> {
    fn done(&self, image: ImageDone) {
        self.observer.done(&image);
        self.done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(image);
    }

    fn failed(&self, input: &Path, error: Error) {
        self.observer.failed(input, error);
        self.failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(input.to_path_buf());
    }
}

/// Predicts `jobs` (inputs with their output stems); returns the images
/// done and the inputs that failed.
pub(super) fn run(
    job: &PredictJob,
    predictor: &Predictor,
    card: &ModelCard,
    jobs: Vec<(PathBuf, String)>,
    observer: &dyn PredictObserver,
) -> (Vec<ImageDone>, Vec<PathBuf>) {
    let outcome = Outcome {
        observer,
        done: Mutex::new(Vec::new()),
        failed: Mutex::new(Vec::new()),
    };
    let (decoded_tx, decoded) = sync_channel::<(PathBuf, String, Decoded)>(0);
    let (predicted, to_write) = sync_channel::<Predicted>(0);
    std::thread::scope(|s| {
        let reader = s.spawn(move || {
            for (input, stem) in jobs {
                let item = if is_tiff(&input) {
                    Decoded::Tiff(inspect(&input).map(Box::new))
                } else {
                    Decoded::Image(read_image(&input))
                };
                if decoded_tx.send((input, stem, item)).is_err() {
                    break;
                }
            }
        });
        let outcome = &outcome;
        let writer = s.spawn(move || {
            for p in to_write {
                match write_outputs(job, &p, card) {
                    Ok(done) => outcome.done(done),
                    Err(e) => outcome.failed(&p.input, e),
                }
            }
        });
        for (input, stem, item) in decoded {
            let image = match item {
                Decoded::Image(_) if job.scale == Scale::Auto => {
                    outcome.failed(
                        &input,
                        Error::setting(
                            "scale",
                            "scale auto needs the input's pixel size, which only TIFF files state; give a scale factor",
                        ),
                    );
                    continue;
                }
                Decoded::Image(image) => image,
                Decoded::Tiff(info) => {
                    let streamed = info.and_then(|info| {
                        stream_tiff(job, predictor, card, &info, &input, &stem, observer)
                    });
                    observer.predicted(&input);
                    match streamed {
                        Ok(done) => outcome.done(done),
                        Err(e) => outcome.failed(&input, e),
                    }
                    continue;
                }
            };
            let started = Instant::now();
            let prediction = image.and_then(|image| {
                let width = image.width;
                let prediction = predictor.predict_source(
                    &mut crate::infer::ImageRows::new(&image),
                    job.outputs.logits,
                    &mut |progress: Progress| {
                        observer.progress(
                            &input,
                            &ImageProgress {
                                kind: OutputKind::Png,
                                width,
                                progress,
                                seconds: started.elapsed().as_secs_f64(),
                            },
                        )
                    },
                )?;
                Ok((image, prediction))
            });
            observer.predicted(&input);
            match prediction {
                Ok((image, prediction)) => {
                    let p = Predicted {
                        input,
                        stem,
                        image,
                        prediction,
                        started,
                    };
                    if let Err(lost) = predicted.send(p) {
                        // The writer is gone (it panicked): say so per image.
                        outcome.failed(
                            &lost.0.input,
                            Error::Worker {
                                what: "output writer".into(),
                            },
                        );
                    }
                }
                Err(e) => outcome.failed(&input, e),
            }
        }
        drop(predicted);
        for (name, thread) in [("image reader", reader), ("output writer", writer)] {
            if thread.join().is_err() {
                observer.warning(
                    &Error::Worker {
                        what: name.to_string(),
                    }
                    .to_string(),
                );
            }
        }
    });
    (
        outcome.done.into_inner().unwrap_or_else(|e| e.into_inner()),
        outcome
            .failed
            .into_inner()
            .unwrap_or_else(|e| e.into_inner()),
    )
}

/// Writes one image's outputs.
fn write_outputs(job: &PredictJob, p: &Predicted, card: &ModelCard) -> Result<ImageDone> {
    let mask = job
        .outputs
        .write(&job.out, &p.stem, &p.image, &p.prediction, &card.classes)?;
    let objects = if job.outputs.instances {
        let objects = super::objects::extract(&p.prediction, card)?;
        super::objects::write_objects(&job.out, &p.stem, &p.image, &objects, job.compression)?;
        Some(objects.count as u64)
    } else {
        None
    };
    let mut class_pixels = vec![0u64; p.prediction.num_classes];
    for (class, count) in value_counts(&mask) {
        if let Some(n) = class_pixels.get_mut(class as usize) {
            *n = count;
        }
    }
    Ok(ImageDone {
        input: p.input.clone(),
        files: job.files_of(&p.input, &p.stem),
        kind: OutputKind::Png,
        height: mask.height,
        width: mask.width,
        tiles: p.prediction.tiles,
        skipped_tiles: 0,
        class_pixels,
        class_names: card.classes.names(),
        nodata_pixels: 0,
        objects,
        seconds: p.started.elapsed().as_secs_f64(),
    })
}

/// Predicts a TIFF input streamed into TIFF outputs.
fn stream_tiff(
    job: &PredictJob,
    predictor: &Predictor,
    card: &ModelCard,
    info: &TiffInfo,
    input: &Path,
    stem: &str,
    observer: &dyn PredictObserver,
) -> Result<ImageDone> {
    let started = Instant::now();
    let path = |suffix: &str| job.out.join(format!("{stem}{suffix}.tif"));
    let o = &job.outputs;
    let targets = TiffOutputs {
        mask: path(""),
        overlay: o.overlay.map(|alpha| (path("_overlay"), alpha)),
        probs: o.probs.then(|| (path("_probs"), job.probs_type)),
        logits: o.logits.then(|| path("_logits")),
        uncertainty: o.uncertainty.then(|| path("_uncertainty")),
        objects: o.instances.then(|| ObjectOutputs {
            instances: path("_instances"),
            csv: job.out.join(format!("{stem}_objects.csv")),
            geojson: job.out.join(format!("{stem}_objects.geojson")),
            mode: super::objects::stream_mode(card),
            classes: super::objects::class_styles(card),
        }),
        compression: job.compression,
    };
    let (width, height) = {
        let level = info.level(job.level)?;
        (level.width, level.height)
    };
    // The outputs against the disk, before an hour of prediction.
    let size = OutputsSize::of(
        (width, height),
        card.classes.len(),
        &job.outputs,
        job.probs_type,
    );
    if let Some(free) = free_bytes(&job.out)
        && let Some(warning) = size.check(input, &job.out, free, job.compression)?
    {
        observer.warning(&warning);
    }
    let scaled;
    let predictor = match resolution_check(job, info, card, observer)? {
        Some(factor) => {
            scaled = predictor.with_scale(factor)?;
            &scaled
        }
        None => predictor,
    };
    let summary = predictor.predict_tiff(
        info,
        job.level,
        &card.classes,
        &targets,
        &mut |progress: Progress| {
            observer.progress(
                input,
                &ImageProgress {
                    kind: OutputKind::Tiff,
                    width,
                    progress,
                    seconds: started.elapsed().as_secs_f64(),
                },
            )
        },
    )?;
    Ok(ImageDone {
        input: input.to_path_buf(),
        files: job.files_of(input, stem),
        kind: OutputKind::Tiff,
        height: summary.height,
        width: summary.width,
        tiles: summary.report.tiles,
        skipped_tiles: summary.report.skipped,
        class_pixels: summary.class_pixels,
        class_names: card.classes.names(),
        nodata_pixels: summary.nodata_pixels,
        objects: summary.objects,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The pixel size of a TIFF input against the model's training pixel size:
/// the factor to resample by for [`Scale::Auto`]; otherwise `None`, with a
/// warning when they differ by more than [`PIXEL_SIZE_TOLERANCE`] and the
/// images are not resampled.
fn resolution_check(
    job: &PredictJob,
    info: &TiffInfo,
    card: &ModelCard,
    observer: &dyn PredictObserver,
) -> Result<Option<f64>> {
    let input = info.level_pixel_size(job.level);
    let auto = job.scale == Scale::Auto;
    let stated = |s: bool| if s { "yes" } else { "no" };
    let (Some(input), Some(trained)) = (input, card.pixel_size) else {
        if auto {
            return Err(Error::setting(
                "scale",
                format!(
                    "scale auto needs the pixel size of the input (stated: {}) and of the model's training images (stated: {}); give a scale factor",
                    stated(input.is_some()),
                    stated(card.pixel_size.is_some())
                ),
            ));
        }
        return Ok(None);
    };
    if auto {
        return Ok(Some(input.x_um / trained.x_um));
    }
    if job.scale == Scale::Factor(1.0) && input.relative_difference(&trained) > PIXEL_SIZE_TOLERANCE
    {
        let best = (0..info.levels.len())
            .filter_map(|k| info.level_pixel_size(k).map(|p| (k, p)))
            .min_by(|a, b| {
                a.1.relative_difference(&trained)
                    .total_cmp(&b.1.relative_difference(&trained))
            });
        let level_hint = match best {
            Some((k, p))
                if k != job.level && p.relative_difference(&trained) <= PIXEL_SIZE_TOLERANCE =>
            {
                format!("level {k} ({:.3} µm/px) or ", p.x_um)
            }
            _ => String::new(),
        };
        observer.warning(&format!(
            "{} is {:.3} µm/px at level {}, but the model was trained at {:.3} µm/px: objects look {:.2}× their training size; predict with {level_hint}scale auto",
            info.path.display(),
            input.x_um,
            job.level,
            trained.x_um,
            trained.x_um / input.x_um
        ));
    }
    Ok(None)
}
