//! The micro-batch study: the same network trained under several norm and
//! standardization variants and batch sizes, with a fair protocol, and the
//! comparison written as `study.csv`, `study.json`, `study.md` and
//! `study.png`.
//!
//! The question is the seed's claim (Qiao et al., arXiv:1903.10520; Wu & He,
//! arXiv:1803.08494): WS + GroupNorm trains as well with batches of 1–2 as
//! with large ones, where BatchNorm, which depends on batch statistics, does
//! not.
//!
//! Protocol, for every cell (variant × batch size × learning rate) and seed:
//! - the same training set, epochs, crops and data order: the order and each
//!   sample's crop and augmentation depend on the seed and epoch only, never
//!   on the batch size, so every cell sees the same images;
//! - the learning rate scales linearly with the batch size from one base
//!   value (`lr` at `batch_size` of the base config), the GroupNorm paper's
//!   rule; with `lr_sweep` each cell also tries half and twice that, and the
//!   value with the best mean validation mIoU is reported;
//! - the same validation set for all; BatchNorm is evaluated with its
//!   running statistics; the score is the final epoch's mIoU (not the best
//!   epoch's, which would be chosen on the validation set).
//!
//! Every run is an ordinary run directory under `runs/` (its `model.bpk` can
//! be evaluated or used for prediction); a finished run leaves `result.json`
//! there, so an interrupted study continues where it stopped.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::Variant;
use crate::train::{Session, Silent, TrainConfig};

/// Learning-rate factors of a sweep (the middle one is the scaled base).
pub const LR_SWEEP: [f64; 3] = [0.5, 1.0, 2.0];

/// Epochs of every run of a study when none are given: enough at the
/// study's batch sizes for the norms to separate on the shapes data.
pub const DEFAULT_EPOCHS: usize = 10;

/// What to compare and how long to train.
#[derive(Debug, Clone)]
pub struct StudyConfig {
    /// Everything shared by the runs: data, model, epochs, base `lr` at its
    /// `batch_size`, first seed. Its model's norm and standardization are
    /// replaced by each variant's.
    pub base: TrainConfig,
    /// Variants to train.
    pub variants: Vec<Variant>,
    /// Batch sizes to train each variant with.
    pub batch_sizes: Vec<usize>,
    /// Seeds per cell (`base.seed`, `base.seed + 1`, …).
    pub seeds: usize,
    /// Whether each cell tries three learning rates.
    pub lr_sweep: bool,
}

/// One training run of the study.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunSpec {
    /// The variant.
    pub variant: Variant,
    /// Its batch size.
    pub batch_size: usize,
    /// Factor on the batch-scaled learning rate (1 without a sweep).
    pub lr_factor: f64,
    /// Seed index, from 0.
    pub seed: usize,
}

impl RunSpec {
    /// The run's directory name under `runs/`.
    pub fn name(&self) -> String {
        format!(
            "{}-b{}-lr{}-s{}",
            self.variant, self.batch_size, self.lr_factor, self.seed
        )
    }
}

/// What one run gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// Final-epoch validation mIoU; `None` when the run diverged.
    pub miou: Option<f64>,
    /// Training loss of the last epoch trained (`None` when diverged).
    pub final_loss: Option<f64>,
    /// Whether the loss became NaN or infinite.
    pub diverged: bool,
    /// Training images per second, mean over its epochs.
    pub images_per_sec: f64,
    /// Peak resident memory while the run trained, MiB (Linux).
    pub peak_mib: Option<f64>,
    /// The learning rate it trained with.
    pub lr: f64,
}

/// One row of the comparison: a variant at a batch size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellResult {
    /// Variant name.
    pub variant: String,
    /// Batch size.
    pub batch_size: usize,
    /// The learning rate reported (the sweep's best, or the scaled base).
    pub lr: f64,
    /// Final validation mIoU per seed (`None`: diverged).
    pub miou: Vec<Option<f64>>,
    /// Mean of the finite mIoUs.
    pub miou_mean: Option<f64>,
    /// Their standard deviation (n − 1; 0 for one seed).
    pub miou_std: Option<f64>,
    /// Runs that diverged.
    pub diverged: usize,
    /// Mean training images per second.
    pub images_per_sec: f64,
    /// Largest peak resident memory of the runs, MiB.
    pub peak_mib: Option<f64>,
    /// Mean final training loss of the runs that finished.
    pub final_loss: Option<f64>,
}

/// Reports the study's progress.
pub trait StudyObserver {
    /// Run `index` (from 1) of `total` starts, or is found finished.
    fn run_start(&mut self, index: usize, total: usize, run: &RunSpec, done: bool);
    /// The run's result.
    fn run_end(&mut self, _run: &RunSpec, _result: &RunResult) {}
}

impl StudyConfig {
    /// Checks the grid, naming the setting to fix; a BatchNorm variant at a
    /// batch size whose /32 maps give one value per channel is refused here
    /// when the crop is known (otherwise when its run starts).
    pub fn validate(&self) -> Result<()> {
        let fail = |field: &str, msg: String| Err(Error::setting(field, msg));
        if self.variants.is_empty() {
            return fail("variants", "no variants given; name at least one".into());
        }
        if self.batch_sizes.is_empty() {
            return fail("batch_sizes", "no batch sizes given".into());
        }
        if self.batch_sizes.contains(&0) {
            return fail(
                "batch_sizes",
                "a batch size is 0; every batch size must be at least 1".into(),
            );
        }
        if self.seeds == 0 {
            return fail("seeds", "seeds is 0; use at least 1".into());
        }
        self.base.validate()?;
        let crop = self.base.crop.or_else(|| {
            self.base
                .data
                .is_none()
                .then_some([self.base.shapes.size; 2])
        });
        if let Some(crop) = crop {
            for &v in &self.variants {
                for &b in &self.batch_sizes {
                    self.base
                        .model
                        .clone()
                        .with_variant(v)
                        .check_batch(b, crop)
                        .map_err(|e| Error::setting("batch_sizes", format!("variant {v}: {e}")))?;
                }
            }
        }
        Ok(())
    }

    /// Every run, cell by cell (variant, then batch size, then learning
    /// rate), seeds innermost.
    pub fn runs(&self) -> Vec<RunSpec> {
        let factors: &[f64] = if self.lr_sweep { &LR_SWEEP } else { &[1.0] };
        let mut runs = Vec::new();
        for &variant in &self.variants {
            for &batch_size in &self.batch_sizes {
                for &lr_factor in factors {
                    for seed in 0..self.seeds {
                        runs.push(RunSpec {
                            variant,
                            batch_size,
                            lr_factor,
                            seed,
                        });
                    }
                }
            }
        }
        runs
    }

    /// The training config of one run.
    pub fn train_config(&self, run: &RunSpec) -> TrainConfig {
        let mut c = self.base.clone();
        let scale = run.batch_size as f64 / self.base.batch_size as f64 * run.lr_factor;
        c.lr = self.base.lr * scale;
        c.min_lr = self.base.min_lr * scale;
        c.batch_size = run.batch_size;
        c.seed = self.base.seed + run.seed as u64;
        c.model = c.model.with_variant(run.variant);
        c
    }
}

/// How many training images one epoch of `base` has: the built-in data's
/// count, or a dataset's after its split (read by preparing the data once).
pub fn train_images(base: &TrainConfig) -> Result<usize> {
    if base.data.is_none() {
        return Ok(base.shapes.train);
    }
    let probe = std::env::temp_dir().join(format!("wsunet-study-probe-{}", std::process::id()));
    let session = Session::new(base.clone(), &probe);
    let _ = std::fs::remove_dir_all(&probe);
    Ok(session?.train.samples().len())
}

/// The study's output folder.
pub struct StudyDir(PathBuf);

impl StudyDir {
    /// The folder `root`.
    pub fn new(root: &Path) -> Self {
        StudyDir(root.to_path_buf())
    }
    /// A run's directory.
    pub fn run(&self, run: &RunSpec) -> PathBuf {
        self.0.join("runs").join(run.name())
    }
    /// A path in the folder.
    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

/// Runs the study into `out` (runs already finished there are read, not
/// redone; an interrupted one resumes from its checkpoint), then writes
/// `study.json`, `study.csv`, `study.md` and `study.png`. Returns the cells.
pub fn run_study(
    config: &StudyConfig,
    out: &Path,
    observer: &mut dyn StudyObserver,
) -> Result<Vec<CellResult>> {
    config.validate()?;
    let dir = StudyDir::new(out);
    let runs = config.runs();
    let mut results = Vec::with_capacity(runs.len());
    for (i, run) in runs.iter().enumerate() {
        let run_dir = dir.run(run);
        let result_path = run_dir.join("result.json");
        let done = result_path.is_file();
        observer.run_start(i + 1, runs.len(), run, done);
        let result = if done {
            crate::fs::read_json(&result_path)?
        } else {
            let result = train_one(&config.train_config(run), &run_dir)?;
            crate::fs::write_json(&result_path, &result)?;
            result
        };
        observer.run_end(run, &result);
        results.push((*run, result));
    }
    let cells = summarize(config, &results);
    write_outputs(config, &dir, &cells)?;
    Ok(cells)
}

/// Trains one run (resuming it when it has a checkpoint).
fn train_one(config: &TrainConfig, dir: &Path) -> Result<RunResult> {
    crate::bench::reset_peak_rss();
    let session = if crate::run_dir::RunDir::new(dir).has_checkpoint() {
        Session::resume(dir, None, None)?
    } else {
        Session::new(config.clone(), dir)?
    };
    let summary = match session.run(&mut Silent) {
        Ok(summary) => summary,
        Err(Error::NonFiniteLoss { .. }) => {
            return Ok(RunResult {
                miou: None,
                final_loss: None,
                diverged: true,
                images_per_sec: 0.0,
                peak_mib: crate::bench::peak_rss_mib(),
                lr: config.lr,
            });
        }
        Err(e) => return Err(e),
    };
    let history = &summary.state.history;
    let last = history.last();
    Ok(RunResult {
        miou: last.map(|r| r.miou).filter(|m| m.is_finite()),
        final_loss: last.map(|r| r.train_loss),
        diverged: false,
        images_per_sec: history.iter().map(|r| r.images_per_sec).sum::<f64>()
            / history.len().max(1) as f64,
        peak_mib: crate::bench::peak_rss_mib(),
        lr: config.lr,
    })
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

fn std_dev(values: &[f64]) -> Option<f64> {
    let m = mean(values)?;
    if values.len() < 2 {
        return Some(0.0);
    }
    let ss: f64 = values.iter().map(|v| (v - m) * (v - m)).sum();
    Some((ss / (values.len() - 1) as f64).sqrt())
}

/// One row per (variant, batch size): the learning rate with the best mean
/// mIoU among its runs, and that rate's seeds.
fn summarize(config: &StudyConfig, results: &[(RunSpec, RunResult)]) -> Vec<CellResult> {
    let mut cells = Vec::new();
    for &variant in &config.variants {
        for &batch_size in &config.batch_sizes {
            let of_cell: Vec<&(RunSpec, RunResult)> = results
                .iter()
                .filter(|(r, _)| r.variant == variant && r.batch_size == batch_size)
                .collect();
            let mut best: Option<(f64, CellResult)> = None;
            let mut factors: Vec<f64> = of_cell.iter().map(|(r, _)| r.lr_factor).collect();
            factors.dedup();
            for factor in factors {
                let runs: Vec<&RunResult> = of_cell
                    .iter()
                    .filter(|(r, _)| r.lr_factor == factor)
                    .map(|(_, res)| res)
                    .collect();
                let finite: Vec<f64> = runs.iter().filter_map(|r| r.miou).collect();
                let losses: Vec<f64> = runs.iter().filter_map(|r| r.final_loss).collect();
                let speeds: Vec<f64> = runs
                    .iter()
                    .filter(|r| !r.diverged)
                    .map(|r| r.images_per_sec)
                    .collect();
                let cell = CellResult {
                    variant: variant.name(),
                    batch_size,
                    lr: runs.first().map_or(0.0, |r| r.lr),
                    miou: runs.iter().map(|r| r.miou).collect(),
                    miou_mean: mean(&finite),
                    miou_std: std_dev(&finite),
                    diverged: runs.iter().filter(|r| r.diverged).count(),
                    images_per_sec: mean(&speeds).unwrap_or(0.0),
                    peak_mib: runs.iter().filter_map(|r| r.peak_mib).reduce(f64::max),
                    final_loss: mean(&losses),
                };
                // Diverged runs count as 0 when choosing the learning rate.
                let score = runs.iter().map(|r| r.miou.unwrap_or(0.0)).sum::<f64>();
                if best.as_ref().is_none_or(|(s, _)| score > *s) {
                    best = Some((score, cell));
                }
            }
            if let Some((_, cell)) = best {
                cells.push(cell);
            }
        }
    }
    cells
}

fn pct(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{:.1}", v * 100.0))
}

/// The comparison as a markdown table.
pub fn markdown(cells: &[CellResult]) -> String {
    let mut out = String::from(
        "| variant | batch | lr | mIoU % (mean ± std) | per seed | diverged | images/s | peak MiB | final loss |\n|---|---:|---:|---|---|---:|---:|---:|---:|\n",
    );
    for c in cells {
        let seeds: Vec<String> = c.miou.iter().map(|m| pct(*m)).collect();
        out += &format!(
            "| {} | {} | {:.2e} | {} ± {} | {} | {} | {:.1} | {} | {} |\n",
            c.variant,
            c.batch_size,
            c.lr,
            pct(c.miou_mean),
            pct(c.miou_std),
            seeds.join(", "),
            c.diverged,
            c.images_per_sec,
            c.peak_mib.map_or("–".into(), |m| format!("{m:.0}")),
            c.final_loss.map_or("–".into(), |l| format!("{l:.3}")),
        );
    }
    out
}

fn csv(cells: &[CellResult]) -> String {
    let mut out = String::from(
        "variant,batch_size,lr,miou_mean,miou_std,miou_per_seed,diverged,images_per_sec,peak_mib,final_loss\n",
    );
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v}"));
    for c in cells {
        let seeds: Vec<String> = c.miou.iter().map(|m| opt(*m)).collect();
        out += &format!(
            "{},{},{},{},{},{},{},{},{},{}\n",
            c.variant,
            c.batch_size,
            c.lr,
            opt(c.miou_mean),
            opt(c.miou_std),
            seeds.join(";"),
            c.diverged,
            c.images_per_sec,
            opt(c.peak_mib),
            opt(c.final_loss),
        );
    }
    out
}

fn write_outputs(config: &StudyConfig, dir: &StudyDir, cells: &[CellResult]) -> Result<()> {
    #[derive(Serialize)]
    struct Report<'a> {
        variants: Vec<String>,
        batch_sizes: &'a [usize],
        seeds: usize,
        lr_sweep: bool,
        base: &'a TrainConfig,
        cells: &'a [CellResult],
    }
    let report = Report {
        variants: config.variants.iter().map(|v| v.name()).collect(),
        batch_sizes: &config.batch_sizes,
        seeds: config.seeds,
        lr_sweep: config.lr_sweep,
        base: &config.base,
        cells,
    };
    crate::fs::write_json(&dir.file("study.json"), &report)?;
    crate::fs::write_atomic(&dir.file("study.csv"), csv(cells).as_bytes())?;
    crate::fs::write_atomic(&dir.file("study.md"), markdown(cells).as_bytes())?;
    plot(&dir.file("study.png"), config, cells).map_err(|reason| Error::Io {
        path: dir.file("study.png"),
        error: std::io::Error::other(reason),
    })
}

/// `study.png`: mean mIoU against batch size (log scale), one line per
/// variant, error bars of one standard deviation.
fn plot(
    path: &Path,
    config: &StudyConfig,
    cells: &[CellResult],
) -> std::result::Result<(), String> {
    use crate::train::curves::{FONT, register_font};
    use plotters::prelude::*;
    const W: u32 = 900;
    const H: u32 = 560;
    register_font();
    let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    let max_b = config.batch_sizes.iter().copied().max().unwrap_or(1) as f64;
    let mut buffer = vec![255u8; (W * H * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (W, H)).into_drawing_area();
        let mut chart = ChartBuilder::on(&root)
            .caption("validation mIoU against batch size", (FONT, 24))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d((0.8f64..max_b * 1.25).log_scale(), 0f64..100f64)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("batch size (images per step)")
            .y_desc("mIoU %")
            .label_style((FONT, 15))
            .axis_desc_style((FONT, 16))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, variant) in config.variants.iter().enumerate() {
            let color = colors[i % colors.len()];
            let points: Vec<(f64, f64, f64)> = cells
                .iter()
                .filter(|c| c.variant == variant.name())
                .filter_map(|c| {
                    Some((
                        c.batch_size as f64,
                        c.miou_mean? * 100.0,
                        c.miou_std.unwrap_or(0.0) * 100.0,
                    ))
                })
                .collect();
            chart
                .draw_series(LineSeries::new(
                    points.iter().map(|&(x, y, _)| (x, y)),
                    color.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(variant.name())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            // Error bars: a vertical segment of ± one std and a dot at the mean.
            chart
                .draw_series(points.iter().map(|&(x, y, s)| {
                    PathElement::new(vec![(x, y - s), (x, y + s)], color.stroke_width(2))
                }))
                .map_err(|e| e.to_string())?;
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|&(x, y, _)| Circle::new((x, y), 4, color.filled())),
                )
                .map_err(|e| e.to_string())?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font((FONT, 15))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    crate::data::io::write_rgb8_png(path, W as usize, H as usize, &buffer)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::Norm;

    fn study() -> StudyConfig {
        StudyConfig {
            base: TrainConfig::default(),
            variants: vec![
                Variant::new(true, Norm::Group),
                Variant::new(true, Norm::Batch),
            ],
            batch_sizes: vec![1, 4],
            seeds: 2,
            lr_sweep: false,
        }
    }

    #[test]
    fn runs_cover_the_grid_and_scale_the_learning_rate() {
        let s = study();
        let runs = s.runs();
        assert_eq!(runs.len(), 2 * 2 * 2);
        let base = &s.base;
        for run in &runs {
            let c = s.train_config(run);
            let expected = base.lr * run.batch_size as f64 / base.batch_size as f64;
            assert!((c.lr - expected).abs() < 1e-15);
            assert_eq!(c.model.variant_name(), run.variant.name());
            assert_eq!(c.seed, base.seed + run.seed as u64);
        }
        let sweep = StudyConfig {
            lr_sweep: true,
            ..study()
        };
        assert_eq!(sweep.runs().len(), 3 * runs.len());
    }

    #[test]
    fn bad_grids_are_one_clear_error_each() {
        let err = |s: StudyConfig| s.validate().unwrap_err().to_string();
        let e = err(StudyConfig {
            batch_sizes: vec![2, 0],
            ..study()
        });
        assert!(e.contains("batch size is 0"), "{e}");
        let mut tiny = study();
        tiny.base.crop = Some([32, 32]);
        let e = err(tiny);
        assert!(
            e.contains("variant ws-bn") && e.contains("single value per channel"),
            "{e}"
        );
        assert!(
            err(StudyConfig {
                seeds: 0,
                ..study()
            })
            .contains("seeds is 0")
        );
    }

    #[test]
    fn the_best_learning_rate_is_reported_and_divergence_counted() {
        let s = StudyConfig {
            variants: vec![Variant::new(true, Norm::Group)],
            batch_sizes: vec![2],
            seeds: 2,
            lr_sweep: true,
            ..study()
        };
        let result = |miou: Option<f64>, lr| RunResult {
            miou,
            final_loss: miou.map(|_| 0.5),
            diverged: miou.is_none(),
            images_per_sec: 10.0,
            peak_mib: Some(100.0),
            lr,
        };
        let runs = s.runs();
        let values = [Some(0.5), Some(0.6), Some(0.8), Some(0.7), None, Some(0.9)];
        let results: Vec<_> = runs
            .iter()
            .zip(values)
            .map(|(r, m)| (*r, result(m, r.lr_factor)))
            .collect();
        let cells = summarize(&s, &results);
        assert_eq!(cells.len(), 1);
        // Factor 1 (0.8, 0.7) beats 0.5 (0.5, 0.6) and 2 (diverged, 0.9).
        assert_eq!(cells[0].lr, 1.0);
        assert!((cells[0].miou_mean.unwrap() - 0.75).abs() < 1e-12);
        let table = markdown(&cells);
        assert!(
            table.contains("| ws-gn | 2 |") && table.contains("75.0 ± 7.1"),
            "{table}"
        );
    }
}
