//! Which samples a model is scored on: the guarantee that a model is never
//! scored on its own training images by accident.
//!
//! A model trained by wsunet lives in a run directory whose `config.json`
//! names its data and the holdout it drew (`val_fraction`, `seed`). Scoring
//! the model on that data uses the same holdout unless the caller asks for
//! another; another holdout of the same folder is allowed but flagged, since
//! it can contain training images. A model with no run beside it gets the
//! holdout the caller gives, or the defaults, with a warning.

use std::path::{Path, PathBuf};

use super::config::TrainConfig;
use super::config::run_config_of;
use crate::data::prepare::{Split, split_samples};
use crate::data::{Layout, Sample};
use crate::error::{Error, Result};
use crate::run_dir::RunDir;

/// What to score a model on.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalRequest {
    /// The model: a run directory, or a model file (in one or not).
    pub model: PathBuf,
    /// The data; `None`: the data the model's run trained on.
    pub data: Option<PathBuf>,
    /// Which samples of it.
    pub split: Split,
    /// The holdout share of a single-folder dataset; `None`: the run's.
    pub val_fraction: Option<f64>,
    /// The holdout seed; `None`: the run's.
    pub seed: Option<u64>,
}

/// Where the holdout behind the samples came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Holdout {
    /// None was drawn: the data has its own validation folder, is the
    /// built-in data, or every sample was asked for.
    NotDrawn,
    /// The model's run's own holdout (its `config.json`).
    Run {
        /// The run.
        run: RunDir,
    },
    /// Another holdout than the run's, given by the caller.
    Other {
        /// The run.
        run: RunDir,
        /// The run's holdout share and seed.
        trained: (f64, u64),
        /// Whether the data is the run's own (then the samples can include
        /// its training images).
        same_data: bool,
    },
    /// No run beside the model: the holdout given by the caller.
    Given,
    /// No run beside the model and none given: the defaults.
    Assumed,
}

/// The samples to score and where they came from.
#[derive(Debug, Clone)]
pub struct EvalSamples {
    /// The samples (not yet decoded).
    pub samples: Vec<Sample>,
    /// The data folder; `None`: the built-in shapes data.
    pub data: Option<PathBuf>,
    /// Whether the data is the run's (no data was asked for).
    pub from_run: bool,
    /// Which samples.
    pub split: Split,
    /// The holdout share and seed used for the split.
    pub val_fraction: f64,
    /// The holdout seed.
    pub seed: u64,
    /// Where the holdout came from.
    pub holdout: Holdout,
}

impl EvalSamples {
    /// The data, for messages.
    pub fn data_name(&self) -> String {
        self.data
            .as_deref()
            .map_or("the built-in shapes data".into(), |d| {
                d.display().to_string()
            })
    }

    /// What the samples are, in words (`the run's validation split (DIR)`).
    pub fn source(&self) -> String {
        let data = self.data_name();
        match (self.from_run, self.split) {
            (true, Split::Val) => format!("the run's validation split ({data})"),
            (true, Split::Train) => format!("the run's training split ({data})"),
            (true, Split::All) => format!("all of the run's data ({data})"),
            (false, split) => format!("{data} ({split} split)"),
        }
    }

    /// A line saying which holdout was used; `None` when none was drawn.
    pub fn holdout_line(&self) -> Option<String> {
        let own = format!("val_fraction {} and seed {}", self.val_fraction, self.seed);
        match &self.holdout {
            Holdout::NotDrawn | Holdout::Assumed => None,
            Holdout::Run { run } => Some(format!(
                "holdout split of the run ({own}, from {})",
                run.config().display()
            )),
            Holdout::Other { run, trained, .. } => Some(format!(
                "holdout split with {own} as given; the run trained with val_fraction {} and seed {} ({})",
                trained.0,
                trained.1,
                run.config().display()
            )),
            Holdout::Given => Some(format!("holdout split with {own}")),
        }
    }

    /// A warning when the scores may include training images.
    pub fn warning(&self) -> Option<String> {
        match self.holdout {
            Holdout::Other {
                same_data: true, ..
            } => Some(
                "this is the run's own data with another split: these images may include its training images, which inflates the scores; leave out val_fraction and seed to use the run's split".into(),
            ),
            Holdout::Assumed => Some(format!(
                "no training config beside the model, so the holdout uses val_fraction {} and seed {}; if the model was trained on this folder with other values, give them as val_fraction and seed, or the scores may include training images",
                self.val_fraction, self.seed
            )),
            _ => None,
        }
    }
}

/// The same folder, however it is spelled.
fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The samples `request` asks for, split exactly as the model's run split
/// them unless the request overrides the holdout (see the module docs).
/// Files are listed, not decoded.
pub fn eval_samples(request: &EvalRequest) -> Result<EvalSamples> {
    let run = run_config_of(&request.model)?;
    let defaults = TrainConfig::default();
    let data = match (&request.data, &run) {
        (Some(dir), _) => Some(dir.clone()),
        (None, Some((_, trained))) => trained.data.clone(),
        (None, None) => {
            return Err(Error::setting(
                "data",
                "no data given, and the model is not a run directory (or a model inside one) whose config.json names its data",
            ));
        }
    };
    let trained = run.as_ref().map(|(_, c)| c);
    let val_fraction = request
        .val_fraction
        .unwrap_or(trained.map_or(defaults.val_fraction, |c| c.val_fraction));
    let seed = request
        .seed
        .unwrap_or(trained.map_or(defaults.seed, |c| c.seed));
    let config = TrainConfig {
        data: data.clone(),
        val_fraction,
        seed,
        // The run's built-in data (its size and seed) when it trained on it.
        shapes: trained.map_or(defaults.shapes.clone(), |c| c.shapes.clone()),
        ..defaults
    };
    let (samples, layout) = split_samples(&config.data_settings(), request.split)?;
    let drawn = layout == Some(Layout::Folder) && request.split != Split::All;
    let holdout = match &run {
        _ if !drawn => Holdout::NotDrawn,
        Some((run, c)) if c.val_fraction == val_fraction && c.seed == seed => {
            Holdout::Run { run: run.clone() }
        }
        Some((run, c)) => Holdout::Other {
            run: run.clone(),
            trained: (c.val_fraction, c.seed),
            same_data: c
                .data
                .as_deref()
                .zip(data.as_deref())
                .is_some_and(|(a, b)| same_dir(a, b)),
        },
        None if request.val_fraction.is_none() && request.seed.is_none() => Holdout::Assumed,
        None => Holdout::Given,
    };
    let found = EvalSamples {
        samples,
        data,
        from_run: request.data.is_none(),
        split: request.split,
        val_fraction,
        seed,
        holdout,
    };
    if found.samples.is_empty() {
        return Err(Error::setting(
            "split",
            format!(
                "the {} split of {} is empty; choose another split, or another val_fraction for a single-folder dataset",
                found.split,
                found.data_name()
            ),
        ));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::io::{write_mask_png, write_png};
    use crate::data::shapes::{generate_shapes, shapes_classes};

    /// A single-folder dataset of `n` shapes images.
    fn folder(root: &Path, n: u64) {
        std::fs::create_dir_all(root.join("images")).unwrap();
        std::fs::create_dir_all(root.join("masks")).unwrap();
        for i in 0..n {
            let (image, mask) = generate_shapes(0, i, 32);
            write_png(&root.join(format!("images/{i:02}.png")), &image).unwrap();
            write_mask_png(
                &root.join(format!("masks/{i:02}.png")),
                &mask,
                &shapes_classes(),
            )
            .unwrap();
        }
    }

    /// A run directory (config and checkpoint pointer) trained on `data`.
    fn run(dir: &Path, data: &Path, val_fraction: f64, seed: u64) -> RunDir {
        let run = RunDir::new(dir);
        run.write_config(&TrainConfig {
            data: Some(data.to_path_buf()),
            val_fraction,
            seed,
            ..TrainConfig::default()
        })
        .unwrap();
        std::fs::create_dir_all(run.checkpoints()).unwrap();
        std::fs::write(run.latest_checkpoint(), "{}").unwrap();
        run
    }

    fn names(s: &EvalSamples) -> Vec<String> {
        s.samples.iter().map(Sample::name).collect()
    }

    #[test]
    fn a_run_is_scored_on_its_own_holdout_unless_told_otherwise() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        folder(&data, 10);
        let run = run(&tmp.path().join("run"), &data, 0.3, 3);
        let ask = |data: Option<&Path>, split, val_fraction, seed| {
            eval_samples(&EvalRequest {
                model: run.final_model(),
                data: data.map(Path::to_path_buf),
                split,
                val_fraction,
                seed,
            })
        };
        // The run's data and holdout, from its config.json.
        let own = ask(None, Split::Val, None, None).unwrap();
        assert_eq!(own.holdout, Holdout::Run { run: run.clone() });
        assert_eq!((own.val_fraction, own.seed, own.samples.len()), (0.3, 3, 3));
        assert!(own.warning().is_none() && own.from_run);
        // Naming the same data keeps the run's holdout.
        let named = ask(Some(&data), Split::Val, None, None).unwrap();
        assert_eq!(names(&named), names(&own));
        // No validation sample is a training sample.
        let train = ask(None, Split::Train, None, None).unwrap();
        assert!(names(&train).iter().all(|n| !names(&own).contains(n)));
        assert_eq!(train.samples.len() + own.samples.len(), 10);
        // Another holdout of the run's data is allowed, with a warning.
        let other = ask(None, Split::Val, None, Some(0)).unwrap();
        assert!(matches!(
            other.holdout,
            Holdout::Other {
                same_data: true,
                ..
            }
        ));
        assert!(other.warning().unwrap().contains("training images"));
        // All samples: no holdout drawn.
        let all = ask(None, Split::All, None, None).unwrap();
        assert_eq!((all.holdout, all.samples.len()), (Holdout::NotDrawn, 10));
    }

    #[test]
    fn a_model_without_a_run_needs_data_and_warns_about_the_holdout() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        folder(&data, 5);
        let model = tmp.path().join("model.bpk");
        let request = EvalRequest {
            model: model.clone(),
            data: None,
            split: Split::Val,
            val_fraction: None,
            seed: None,
        };
        let e = eval_samples(&request).unwrap_err();
        assert_eq!(e.field(), Some("data"));
        let assumed = eval_samples(&EvalRequest {
            data: Some(data.clone()),
            ..request.clone()
        })
        .unwrap();
        assert_eq!(assumed.holdout, Holdout::Assumed);
        assert!(assumed.warning().unwrap().contains("no training config"));
        let given = eval_samples(&EvalRequest {
            data: Some(data),
            seed: Some(1),
            ..request
        })
        .unwrap();
        assert_eq!(given.holdout, Holdout::Given);
        assert!(given.warning().is_none());
    }
}
