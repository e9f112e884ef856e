//! From a dataset description to checked training and validation samples:
//! listing and splitting a folder (or the built-in `shapes`), decoding and
//! checking every sample, finding the classes, measuring the normalization
//! and choosing the training crop.

use std::path::{Path, PathBuf};

use super::check::channel_stats;
use super::classes::instance_classes;
use super::classes::{CLASSES_FILE, class_count};
use super::dataset::{file_samples, sample_sizes, shapes_samples, usable_samples};
use super::io::{image_channels, input_channels};
use super::shapes::{ShapesSpec, shapes_classes};
use super::{
    ClassList, DatasetFiles, Layout, Normalize, Sample, SamplePaths, SampleSpec, discover,
    read_mask,
};
use crate::error::{Error, Result};
use crate::geometry::MIN_INPUT_SIZE;
use crate::objects::target::{
    BoundaryChoice, choose_boundary, looks_like_instances, looks_semantic,
};
use crate::objects::{INSTANCE_CLASSES, Task};

/// What data preparation needs to know (the data fields of a training
/// config).
#[derive(Debug, Clone, PartialEq)]
pub struct DataSettings {
    /// Dataset folder; `None` uses the built-in `shapes` data.
    pub data: Option<PathBuf>,
    /// The built-in data's size and seed.
    pub shapes: ShapesSpec,
    /// Share of a single-folder dataset held out for validation.
    pub val_fraction: f64,
    /// Seed of the holdout split.
    pub seed: u64,
    /// Mask value of ignored pixels.
    pub ignore_index: Option<u16>,
    /// Number of classes (`None`: from classes.json, else the masks).
    pub num_classes: Option<usize>,
    /// Leave out unusable samples with a warning instead of failing.
    pub skip_bad: bool,
    /// Input normalization (`None`: measured on the training images).
    pub normalize: Option<Normalize>,
    /// Training crop (`None`: chosen from the data).
    pub crop: Option<[usize; 2]>,
    /// Classes per pixel, or objects from instance labels.
    pub task: Task,
}

/// The built-in data's training and validation samples: items `0..train`,
/// then the next `val` (never the same images).
fn shapes_splits(s: &ShapesSpec) -> (Vec<Sample>, Vec<Sample>) {
    (
        shapes_samples(s.seed, 0, s.train, s.size),
        shapes_samples(s.seed, s.train as u64, s.val, s.size),
    )
}

/// Largest mask value (other than `ignore`) over all masks, read in parallel.
fn max_mask_value(
    pairs: &[crate::data::SamplePaths],
    classes: Option<&ClassList>,
    ignore: Option<u16>,
) -> Result<u16> {
    use rayon::prelude::*;
    pairs
        .par_iter()
        .map(|p| {
            let (mask, _) = read_mask(&p.mask, classes)?;
            Ok(mask
                .data
                .iter()
                .copied()
                .filter(|&v| Some(v) != ignore)
                .max()
                .unwrap_or(0))
        })
        .try_reduce(|| 0, |a, b| Ok(a.max(b)))
}

/// What preparation found out about the data: the facts a run's model card
/// and its `config.json` record, stated once.
#[derive(Debug, Clone, PartialEq)]
pub struct DataFacts {
    /// The classes, in index order (their count is the class count).
    pub classes: ClassList,
    /// Channels of every image.
    pub in_channels: usize,
    /// Mask value of ignored pixels, if any.
    pub ignore_index: Option<u16>,
    /// Input normalization (given, or measured on the training images).
    pub normalize: Normalize,
    /// The training crop `[H, W]`.
    pub crop: [usize; 2],
    /// How the crop was chosen (see [`resolve_crop`]).
    pub crop_note: String,
    /// The training images' physical pixel size, when every one states it
    /// and they agree within 10 % (see [`pixel_size`]).
    pub pixel_size: Option<crate::raster::PixelSize>,
    /// For instance training: the target's boundary width and the
    /// smallest object kept, chosen from the training labels.
    pub instances: Option<BoundaryChoice>,
}

impl DataFacts {
    /// The number of classes.
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// What every sample must satisfy to be read into a batch.
    pub fn sample_spec(&self) -> SampleSpec {
        SampleSpec {
            num_classes: self.num_classes(),
            ignore_index: self.ignore_index,
            in_channels: self.in_channels,
            classes: Some(self.classes.clone()),
            instances: self.instances.as_ref().map(|b| b.width),
        }
    }
}

/// Checked training and validation samples, with what was found about them.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Usable training samples.
    pub train: Vec<Sample>,
    /// Usable validation samples.
    pub val: Vec<Sample>,
    /// Classes, channels, normalization and crop.
    pub facts: DataFacts,
    /// Samples left out, images smaller than the crop, and other warnings.
    pub warnings: Vec<String>,
}

/// Largest training crop side used when none is given.
pub const DEFAULT_CROP: usize = 256;

/// The training crop for images of `sizes`, with a line saying how it was
/// chosen and a warning when images are smaller than it.
///
/// Without `requested`, the crop is [`DEFAULT_CROP`] shrunk to the smallest
/// image height and width (never below the model's minimum): a crop larger
/// than the images would be mostly padding, and GroupNorm, which normalizes
/// over the whole input, would learn statistics that no whole image has.
/// Images smaller than the crop (a requested one, or after random
/// down-scaling) are mirror-padded, never zero-padded.
pub fn resolve_crop(
    requested: Option<[usize; 2]>,
    sizes: &[[usize; 2]],
) -> ([usize; 2], String, Option<String>) {
    let min_h = sizes.iter().map(|s| s[0]).min().unwrap_or(DEFAULT_CROP);
    let min_w = sizes.iter().map(|s| s[1]).min().unwrap_or(DEFAULT_CROP);
    let (crop, note) = match requested {
        Some(c) => (c, "as configured".to_string()),
        None => {
            let crop = [
                DEFAULT_CROP.min(min_h).max(MIN_INPUT_SIZE),
                DEFAULT_CROP.min(min_w).max(MIN_INPUT_SIZE),
            ];
            let note = if crop == [DEFAULT_CROP; 2] {
                format!(
                    "the default; every training image is at least {DEFAULT_CROP}×{DEFAULT_CROP}"
                )
            } else if min_h.min(min_w) < MIN_INPUT_SIZE {
                format!(
                    "the smallest training image, {min_h}×{min_w}, raised to the network's minimum of {MIN_INPUT_SIZE} px"
                )
            } else {
                format!(
                    "the {DEFAULT_CROP}×{DEFAULT_CROP} default shrunk to the smallest training image, {min_h}×{min_w}"
                )
            };
            (crop, note)
        }
    };
    let smaller = sizes
        .iter()
        .filter(|s| s[0] < crop[0] || s[1] < crop[1])
        .count();
    let below_minimum = min_h.min(min_w) < MIN_INPUT_SIZE;
    let warning = (smaller > 0).then(|| {
        if below_minimum {
            return format!(
                "{smaller} of {} training images are smaller than {MIN_INPUT_SIZE} px on a side (the smallest is {min_h}×{min_w}), the least the network takes (five stride-2 stages); they are mirror-padded to the {}×{} crop, and predict pads them to {MIN_INPUT_SIZE} px too. Images of at least {MIN_INPUT_SIZE}×{MIN_INPUT_SIZE} avoid the padding",
                sizes.len(),
                crop[0],
                crop[1],
            );
        }
        format!(
            "{smaller} of {} training images are smaller than the {}×{} crop (the smallest is {min_h}×{min_w}); they are mirror-padded to it. A crop no larger than the images avoids padding: crop [{}, {}]",
            sizes.len(),
            crop[0],
            crop[1],
            min_h.max(MIN_INPUT_SIZE),
            min_w.max(MIN_INPUT_SIZE)
        )
    });
    (crop, note, warning)
}

/// Lists, checks and splits the data `settings` describe: every sample is
/// decoded once (a bad one stops here, or is left out with a warning under
/// `skip_bad`), classes and channels are found, the normalization is
/// measured from the training images when not given, and the training crop
/// is chosen (see [`resolve_crop`]).
pub fn prepare(config: &DataSettings) -> Result<Prepared> {
    let Some(root) = &config.data else {
        return Ok(prepare_shapes(config));
    };
    let (files, mut warnings) = listed_files(root, config)?;
    let in_channels = {
        use rayon::prelude::*;
        let counts = files
            .train
            .par_iter()
            .map(|p| image_channels(&p.image))
            .collect::<Result<Vec<usize>>>()?;
        input_channels(&counts).expect("the training split is not empty")
    };
    let (classes, instances) = match config.task {
        Task::Semantic => {
            let num_classes = class_count(config.num_classes, files.classes.as_ref(), || {
                let all: Vec<_> = files.train.iter().chain(&files.val).cloned().collect();
                max_mask_value(&all, None, config.ignore_index)
            })?;
            if config.num_classes.is_none() && files.classes.is_none() && num_classes >= 20 {
                warnings.extend(instance_like(&files.train)?);
            }
            (class_list(root, &files, num_classes)?, None)
        }
        Task::Instances => {
            instance_class_count(config.num_classes)?;
            let (choice, w) = instance_choice(&files.train)?;
            warnings.extend(w);
            (instance_classes(), Some(choice))
        }
    };
    let spec = SampleSpec {
        num_classes: classes.len(),
        ignore_index: config.ignore_index,
        in_channels,
        classes: Some(classes.clone()),
        instances: instances.as_ref().map(|b| b.width),
    };
    let (train, w) = usable_samples(file_samples(&files.train), &spec, config.skip_bad)?;
    warnings.extend(w);
    let (val, w) = usable_samples(file_samples(&files.val), &spec, config.skip_bad)?;
    warnings.extend(w);
    if train.is_empty() || val.is_empty() {
        return Err(Error::EmptySplit {
            root: root.clone(),
            validation: !train.is_empty(),
            skipped: true,
        });
    }
    let train_files: Vec<SamplePaths> = train
        .iter()
        .filter_map(|s| match s {
            Sample::Files(p) => Some(p.clone()),
            Sample::Shapes { .. } => None,
        })
        .collect();
    let normalize = match &config.normalize {
        Some(n) => n.clone(),
        None => channel_stats(&train_files)?,
    };
    let (crop, crop_note, warning) = resolve_crop(config.crop, &sample_sizes(&train)?);
    warnings.extend(warning);
    let images: Vec<&Path> = train_files.iter().map(|p| p.image.as_path()).collect();
    let (pixel_size, warning) = pixel_size(&images);
    warnings.extend(warning);
    Ok(Prepared {
        train,
        val,
        facts: DataFacts {
            classes,
            in_channels,
            ignore_index: config.ignore_index,
            normalize,
            crop,
            crop_note,
            pixel_size,
            instances,
        },
        warnings,
    })
}

/// A warning when the class masks of a semantic run look like instance
/// labels (many values, each one blob), read from up to 16 masks.
fn instance_like(train: &[SamplePaths]) -> Result<Option<String>> {
    let mut labels = Vec::new();
    for p in train.iter().take(16) {
        let (mask, _) = read_mask(&p.mask, None)?;
        labels.push((
            mask.data.iter().map(|&v| v as u32).collect::<Vec<u32>>(),
            mask.width,
            mask.height,
        ));
    }
    let masks: Vec<(&[u32], usize, usize)> = labels
        .iter()
        .map(|(l, w, h)| (l.as_slice(), *w, *h))
        .collect();
    Ok(looks_like_instances(&masks).map(|n| {
        format!(
            "the masks hold {n} values, nearly each a single blob: they look like instance labels (each object its own id), which a semantic run takes for {n} classes; train with task instances"
        )
    }))
}

/// An instance model has three classes: an error when another count is
/// asked for.
fn instance_class_count(given: Option<usize>) -> Result<()> {
    match given {
        Some(n) if n != INSTANCE_CLASSES.len() => Err(Error::setting(
            "num_classes",
            format!(
                "num_classes {n} with task instances: an instance model has {} classes ({}); leave num_classes out",
                INSTANCE_CLASSES.len(),
                INSTANCE_CLASSES.join(", ")
            ),
        )),
        _ => Ok(()),
    }
}

/// Instance masks read for the boundary choice (evenly spaced over the
/// training masks when there are more).
const INSTANCE_MASKS_READ: usize = 256;

/// The boundary width and minimum object size from the training instance
/// masks, with warnings for masks that are all background or look like
/// class masks.
fn instance_choice(train: &[SamplePaths]) -> Result<(BoundaryChoice, Vec<String>)> {
    use rayon::prelude::*;
    let step = train.len().div_ceil(INSTANCE_MASKS_READ).max(1);
    let labels = train
        .par_iter()
        .step_by(step)
        .map(|p| {
            let (mask, _) = read_mask(&p.mask, None)?;
            let ids: Vec<u32> = mask.data.iter().map(|&v| v as u32).collect();
            Ok((p.mask.clone(), ids, mask.width, mask.height))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut warnings = Vec::new();
    let empty: Vec<String> = labels
        .iter()
        .filter(|(_, ids, _, _)| ids.iter().all(|&v| v == 0))
        .map(|(path, ..)| path.display().to_string())
        .collect();
    if !empty.is_empty() {
        warnings.push(format!(
            "{} of {} instance masks read hold no object (all 0): {}; they teach background only",
            empty.len(),
            labels.len(),
            crate::error::listing(&empty, 5, ", ")
        ));
    }
    let semantic: Vec<String> = labels
        .iter()
        .filter_map(|(path, ids, w, h)| {
            looks_semantic(ids, *w, *h).map(|why| format!("{}: {why}", path.display()))
        })
        .collect();
    if !semantic.is_empty() {
        warnings.push(format!(
            "{} of {} masks look like class masks, not instance labels (each object its own id): {}; with task instances, give masks whose every object has its own number",
            semantic.len(),
            labels.len(),
            crate::error::listing(&semantic, 3, "; ")
        ));
    }
    let images: Vec<(&[u32], usize, usize)> = labels
        .iter()
        .map(|(_, ids, w, h)| (ids.as_slice(), *w, *h))
        .collect();
    Ok((choose_boundary(&images), warnings))
}

/// The built-in shapes data: its splits and facts, nothing read.
fn prepare_shapes(config: &DataSettings) -> Prepared {
    let s = &config.shapes;
    let (train, val) = shapes_splits(s);
    let instances = (config.task == Task::Instances).then(|| {
        let samples: Vec<(Vec<u32>, usize)> = (0..s.train.min(INSTANCE_MASKS_READ) as u64)
            .map(|i| {
                let (_, ids) = super::shapes::generate_shape_instances(s.seed, i, s.size);
                (ids.data.iter().map(|&v| v as u32).collect(), s.size)
            })
            .collect();
        let images: Vec<(&[u32], usize, usize)> = samples
            .iter()
            .map(|(ids, size)| (ids.as_slice(), *size, *size))
            .collect();
        choose_boundary(&images)
    });
    let (crop, crop_note) = match config.crop {
        Some(size) => (size, "as configured".to_string()),
        None => ([s.size; 2], "the shapes image size".to_string()),
    };
    Prepared {
        train,
        val,
        facts: DataFacts {
            classes: if instances.is_some() {
                instance_classes()
            } else {
                shapes_classes()
            },
            in_channels: 3,
            ignore_index: config.ignore_index,
            normalize: config
                .normalize
                .clone()
                .unwrap_or_else(|| Normalize::neutral(3)),
            crop,
            crop_note,
            pixel_size: None,
            instances,
        },
        warnings: Vec::new(),
    }
}

/// The samples of the folder `root`, split: an error when files have
/// problems (unless `skip_bad`: then warnings) or a split is empty.
fn listed_files(root: &Path, config: &DataSettings) -> Result<(DatasetFiles, Vec<String>)> {
    let files = discover(root, config.val_fraction, config.seed)?;
    let mut warnings = Vec::new();
    if !files.problems.is_empty() {
        if !config.skip_bad {
            return Err(Error::BadSamples {
                summary: format!("{} problem(s) in {}", files.problems.len(), root.display()),
                problems: files.problems.clone(),
            });
        }
        warnings.extend(files.problems.iter().map(|p| format!("skipped: {p}")));
    }
    if files.train.len() + files.val.len() == 1 && files.layout != Layout::Split {
        return Err(Error::setting(
            "data",
            format!(
                "{} holds one image with a mask; a run needs at least two, one to train on and one to validate on; add images",
                root.display()
            ),
        ));
    }
    for (split, validation) in [(&files.train, false), (&files.val, true)] {
        if split.is_empty() {
            return Err(Error::EmptySplit {
                root: root.to_path_buf(),
                validation,
                skipped: false,
            });
        }
    }
    Ok((files, warnings))
}

/// The classes of the folder's list when it has `num_classes` of them (an
/// error when it has another count), else numbered classes.
fn class_list(root: &Path, files: &DatasetFiles, num_classes: usize) -> Result<ClassList> {
    match &files.classes {
        Some(list) if list.len() == num_classes => Ok(list.clone()),
        Some(list) => Err(Error::setting(
            "num_classes",
            format!(
                "{}: {} lists {} classes but {num_classes} were asked for",
                root.display(),
                if root.join(CLASSES_FILE).is_file() {
                    CLASSES_FILE
                } else {
                    "Pascal VOC's class list"
                },
                list.len()
            ),
        )),
        None => Ok(ClassList::numbered(num_classes)),
    }
}

/// The physical pixel size of training images: the first image's when
/// every image is a TIFF that states one (resolution tags, OME-XML,
/// Aperio) within 10 % of it; with a warning when they state sizes that
/// disagree, since a model learns objects at one scale.
pub fn pixel_size(images: &[&Path]) -> (Option<crate::raster::PixelSize>, Option<String>) {
    let mut sizes = Vec::with_capacity(images.len());
    for path in images {
        if !crate::raster::is_tiff(path) {
            return (None, None);
        }
        match crate::raster::inspect(path).ok().and_then(|i| i.pixel_size) {
            Some(p) => sizes.push((p, *path)),
            None => return (None, None),
        }
    }
    let Some(&(first, first_path)) = sizes.first() else {
        return (None, None);
    };
    match sizes
        .iter()
        .find(|(p, _)| p.relative_difference(&first) > 0.1)
    {
        None => (Some(first), None),
        Some((other, path)) => (
            None,
            Some(format!(
                "training images have different pixel sizes ({} is {:.4} µm, {} is {:.4} µm): resample them to one before training, or the model learns objects at several scales; no pixel size is recorded",
                first_path.display(),
                first.x_um,
                path.display(),
                other.x_um
            )),
        ),
    }
}

/// Which samples of a dataset to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// The training split.
    Train,
    /// The validation split.
    Val,
    /// Both.
    All,
}

impl Split {
    /// Every split.
    pub const ALL: [Split; 3] = [Split::Val, Split::Train, Split::All];
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::All => "all",
        })
    }
}

/// The samples of `split` of the data `config` describes, split exactly as
/// training splits them (a folder's holdout uses `val_fraction` and
/// `seed`), without decoding any file; with the folder's layout (`None` for
/// the built-in `shapes`).
pub fn split_samples(config: &DataSettings, split: Split) -> Result<(Vec<Sample>, Option<Layout>)> {
    let (train, val, layout) = match &config.data {
        None => {
            let (train, val) = shapes_splits(&config.shapes);
            (train, val, None)
        }
        Some(root) => {
            let files = discover(root, config.val_fraction, config.seed)?;
            (
                file_samples(&files.train),
                file_samples(&files.val),
                Some(files.layout),
            )
        }
    };
    let samples = match split {
        Split::Train => train,
        Split::Val => val,
        Split::All => train.into_iter().chain(val).collect(),
    };
    Ok((samples, layout))
}
