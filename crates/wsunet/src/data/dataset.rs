//! Burn datasets and batching for segmentation: samples from files or from
//! the built-in `shapes` generator, validated, augmented, normalized, and
//! stacked into tensors.
//!
//! A sample that cannot be used (unreadable file, size mismatch, invalid mask
//! values, wrong channel count) is a [`DatasetError`] carrying a message that
//! names the file; Burn's data loader hands it to the caller instead of
//! crashing a worker thread.

use std::sync::{Arc, OnceLock};

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::{Dataset, DatasetError};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::augment::{AugmentConfig, Normalize, augment, crop_or_pad};
use super::classes::ClassList;
use super::io::{
    Image, Mask, image_size, mask_values_ok, mask_values_problem, read_image, read_mask,
    size_mismatch, value_counts,
};
use super::layout::SamplePaths;
use super::shapes;
use crate::error::{Error, Result};
use crate::geometry::MIN_INPUT_SIZE;
use crate::rng::item_rng;

/// Where a sample comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sample {
    /// An image file and its mask.
    Files(SamplePaths),
    /// Item `index` of the `shapes` generator.
    Shapes {
        /// Generator seed.
        seed: u64,
        /// Item index.
        index: u64,
        /// Image side in pixels.
        size: usize,
    },
}

impl Sample {
    /// A short name for messages: the file stem or `shapes#index`.
    pub fn name(&self) -> String {
        match self {
            Sample::Files(p) => p.name.clone(),
            Sample::Shapes { index, .. } => format!("shapes#{index}"),
        }
    }

    /// Height and width of the image, read from the file's header.
    pub fn size(&self) -> Result<[usize; 2]> {
        match self {
            Sample::Files(p) => image_size(&p.image),
            Sample::Shapes { size, .. } => Ok([*size, *size]),
        }
    }
}

/// Image sizes of `samples`, read from file headers in parallel.
pub fn sample_sizes(samples: &[Sample]) -> Result<Vec<[usize; 2]>> {
    use rayon::prelude::*;
    samples.par_iter().map(Sample::size).collect()
}

/// What every sample must satisfy, and how to read it.
#[derive(Debug, Clone)]
pub struct SampleSpec {
    /// Classes of the model; mask values must be below this or the ignore index.
    pub num_classes: usize,
    /// Mask value that marks pixels to ignore, if any.
    pub ignore_index: Option<u16>,
    /// Image channels the model expects.
    pub in_channels: usize,
    /// The class list, needed to read RGB masks.
    pub classes: Option<ClassList>,
    /// For instance training: masks hold instance labels, turned into the
    /// three-class target (background, interior, boundary) with a boundary
    /// of this width ([`three_class_target`](crate::objects::target::three_class_target)).
    pub instances: Option<usize>,
}

impl SampleSpec {
    /// The label that ignored and padded pixels carry in batches: the ignore
    /// index, or `u16::MAX` when the files have none.
    pub fn ignore_label(&self) -> u16 {
        self.ignore_index.unwrap_or(u16::MAX)
    }

    /// Loads and checks one sample: the image and mask decode, their sizes
    /// agree, the channel count is the model's, and every mask value is a
    /// class or the ignore index. Ignored pixels get [`ignore_label`](Self::ignore_label).
    pub fn load(&self, sample: &Sample) -> Result<(Image, Mask)> {
        let (image, mut mask) = match sample {
            Sample::Shapes { seed, index, size } => match self.instances {
                Some(boundary) => {
                    let (image, ids) = shapes::generate_shape_instances(*seed, *index, *size);
                    (image, instance_target(&ids, boundary))
                }
                None => shapes::generate_shapes(*seed, *index, *size),
            },
            Sample::Files(p) => {
                let image = read_image(&p.image)?;
                let (mut mask, _) = match self.instances {
                    // Instance ids are any numbers, never classes.
                    Some(_) => read_mask(&p.mask, None)?,
                    None => read_mask(&p.mask, self.classes.as_ref())?,
                };
                if let Some(boundary) = self.instances {
                    mask = instance_target(&mask, boundary);
                }
                if let Some(e) = size_mismatch(&p.mask, &mask, &p.image, &image) {
                    return Err(e);
                }
                if image.channels != self.in_channels {
                    return Err(Error::Data {
                        path: p.image.clone(),
                        reason: format!(
                            "has {} channel(s) but the model takes {}; convert the images or set in_channels to {}",
                            image.channels, self.in_channels, image.channels
                        ),
                    });
                }
                if !mask_values_ok(&mask, self.num_classes, self.ignore_index)
                    && let Some(reason) = mask_values_problem(
                        &value_counts(&mask),
                        self.num_classes,
                        self.ignore_index,
                    )
                {
                    return Err(Error::Data {
                        path: p.mask.clone(),
                        reason,
                    });
                }
                (image, mask)
            }
        };
        if let Some(ignore) = self.ignore_index
            && ignore != self.ignore_label()
        {
            mask.data
                .iter_mut()
                .filter(|v| **v == ignore)
                .for_each(|v| *v = self.ignore_label());
        }
        Ok((image, mask))
    }
}

/// Instance labels as the three-class target of instance training (0
/// background, 1 interior, 2 boundary `boundary` pixels wide).
pub fn instance_target(labels: &Mask, boundary: usize) -> Mask {
    let ids: Vec<u32> = labels.data.iter().map(|&v| v as u32).collect();
    let target =
        crate::objects::target::three_class_target(&ids, labels.width, labels.height, boundary);
    Mask::new(
        labels.height,
        labels.width,
        target.into_iter().map(u16::from).collect(),
    )
}

/// One prepared sample: normalized image and its labels.
#[derive(Debug, Clone, PartialEq)]
pub struct SegItem {
    /// Normalized image `[C, H, W]`.
    pub image: Image,
    /// Labels; ignored pixels hold the spec's ignore label.
    pub mask: Mask,
    /// Sample name for messages.
    pub name: String,
}

/// How a dataset prepares its samples.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Random augmentation, then a random crop to `size` (mirror-padded
    /// where the augmented image is smaller).
    Train {
        /// Augmentation settings.
        augment: AugmentConfig,
        /// Training crop `[H, W]`.
        size: [usize; 2],
    },
    /// The whole image, only normalized (honest evaluation).
    Eval,
}

/// A segmentation dataset for Burn's data loader.
///
/// Augmentation is deterministic: item `i` of epoch `e` uses an RNG seeded
/// from `(seed, e, i)`, so an epoch sees the same augmentations whatever the
/// worker count or order, and a resumed run continues exactly. Fetching is
/// pure: [`Dataset::get`] gives the items of the dataset's epoch (see
/// [`at_epoch`](Self::at_epoch)), [`item_at`](Self::item_at) those of any.
#[derive(Clone)]
pub struct SegDataset {
    samples: Arc<Vec<Sample>>,
    spec: Arc<SampleSpec>,
    normalize: Normalize,
    mode: Mode,
    seed: u64,
    epoch: u64,
    sizes: OnceLock<Vec<[usize; 2]>>,
}

impl SegDataset {
    /// A dataset over `samples`.
    pub fn new(
        samples: Vec<Sample>,
        spec: SampleSpec,
        normalize: Normalize,
        mode: Mode,
        seed: u64,
    ) -> Result<Self> {
        if samples.is_empty() {
            return Err(Error::NoSamples {
                purpose: "build a dataset from",
            });
        }
        normalize.validate(spec.in_channels)?;
        if let Mode::Train { augment, size } = &mode {
            augment.validate()?;
            if size[0] < MIN_INPUT_SIZE || size[1] < MIN_INPUT_SIZE {
                return Err(Error::setting(
                    "size",
                    format!(
                        "the training size is {}×{}; it must be at least {MIN_INPUT_SIZE}×{MIN_INPUT_SIZE}",
                        size[0], size[1]
                    ),
                ));
            }
        }
        Ok(SegDataset {
            samples: Arc::new(samples),
            spec: Arc::new(spec),
            normalize,
            mode,
            seed,
            epoch: 0,
            sizes: OnceLock::new(),
        })
    }

    /// The same dataset, giving the items of epoch `epoch` through
    /// [`Dataset::get`] (epoch 0 at first).
    pub fn at_epoch(&self, epoch: u64) -> Self {
        SegDataset {
            epoch,
            ..self.clone()
        }
    }

    /// Height and width of every item as this dataset gives it: the crop
    /// in training mode, the image's own size (read once from the file
    /// headers, then kept) in evaluation mode.
    pub fn item_sizes(&self) -> Result<Vec<[usize; 2]>> {
        if let Mode::Train { size, .. } = &self.mode {
            return Ok(vec![*size; self.samples.len()]);
        }
        if let Some(sizes) = self.sizes.get() {
            return Ok(sizes.clone());
        }
        let sizes = sample_sizes(&self.samples)?;
        Ok(self.sizes.get_or_init(|| sizes).clone())
    }

    /// The samples.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// The checks applied to every sample.
    pub fn spec(&self) -> &SampleSpec {
        &self.spec
    }

    /// Item `index` as epoch `epoch` sees it: the same result every time,
    /// whatever thread asks.
    pub fn item_at(&self, index: usize, epoch: u64) -> Result<SegItem> {
        let sample = &self.samples[index];
        let (image, mask) = self.spec.load(sample)?;
        let (image, mask) = match &self.mode {
            Mode::Eval => {
                let mut image = image;
                self.normalize.apply(&mut image);
                (image, mask)
            }
            Mode::Train {
                augment: config,
                size,
            } => {
                let mut rng = item_rng(
                    self.seed ^ epoch.wrapping_mul(0xA076_1D64_78BD_642F),
                    index as u64,
                );
                let (mut image, mask) = augment(&image, &mask, config, &mut rng);
                self.normalize.apply(&mut image);
                crop_or_pad(&image, &mask, *size, &mut rng)
            }
        };
        Ok(SegItem {
            image,
            mask,
            name: sample.name(),
        })
    }
}

/// The error Burn's loader reports: the library error, message intact.
#[derive(Debug)]
pub struct SampleError(pub Error);

impl std::fmt::Display for SampleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SampleError {}

impl Dataset<SegItem> for SegDataset {
    fn get(&self, index: usize) -> std::result::Result<SegItem, DatasetError> {
        self.item_at(index, self.epoch)
            .map_err(|e| DatasetError::new(SampleError(e)))
    }

    fn len(&self) -> usize {
        self.samples.len()
    }
}

/// A batch: images `[B, C, H, W]` and labels `[B, H, W]`.
#[derive(Debug, Clone)]
pub struct SegBatch {
    /// Normalized images.
    pub images: Tensor<4>,
    /// Class indices; ignored and padded pixels hold the ignore label.
    pub masks: Tensor<3, Int>,
    /// Sample names.
    pub names: Vec<String>,
}

/// Stacks items into a [`SegBatch`], padding to the largest height and width
/// in the batch (at least the model's minimum) with 0 in images and the
/// ignore label in masks.
///
/// Padding is not neutral for this network: GroupNorm normalizes over the
/// whole input, zeros included, so a padded image is predicted differently
/// from the same image alone. wsunet's own evaluation therefore batches only
/// images of one size (see `train::loader::same_size_batches`); give this batcher
/// mixed sizes only where that difference does not matter.
#[derive(Debug, Clone)]
pub struct SegBatcher {
    /// Label of padded pixels.
    pub ignore_label: u16,
}

impl Batcher<SegItem, SegBatch> for SegBatcher {
    fn batch(&self, items: Vec<SegItem>, device: &Device) -> SegBatch {
        let h = items
            .iter()
            .map(|i| i.image.height)
            .max()
            .unwrap_or(0)
            .max(MIN_INPUT_SIZE);
        let w = items
            .iter()
            .map(|i| i.image.width)
            .max()
            .unwrap_or(0)
            .max(MIN_INPUT_SIZE);
        let c = items.first().map(|i| i.image.channels).unwrap_or(1);
        let b = items.len();
        let mut images = vec![0f32; b * c * h * w];
        let mut masks = vec![self.ignore_label as i64; b * h * w];
        for (k, item) in items.iter().enumerate() {
            let (ih, iw) = (item.image.height, item.image.width);
            for y in 0..ih {
                let src = y * iw..(y + 1) * iw;
                let dst = k * h * w + y * w;
                for (m, &l) in masks[dst..dst + iw]
                    .iter_mut()
                    .zip(&item.mask.data[src.clone()])
                {
                    *m = l as i64;
                }
                for ch in 0..c {
                    let d = (k * c + ch) * h * w + y * w;
                    images[d..d + iw].copy_from_slice(&item.image.channel(ch)[src.clone()]);
                }
            }
        }
        SegBatch {
            images: Tensor::from_data(TensorData::new(images, [b, c, h, w]), device),
            masks: Tensor::from_data(TensorData::new(masks, [b, h, w]), device),
            names: items.into_iter().map(|i| i.name).collect(),
        }
    }
}

/// Loads every sample once (in parallel) and keeps those that pass
/// [`SampleSpec::load`]. With `skip_bad`, bad samples are left out and each
/// is described in the returned warnings; without it, any bad sample is an
/// error that lists all of them. Training runs this before its first epoch,
/// so a bad file stops it at once rather than mid-epoch.
pub fn usable_samples(
    samples: Vec<Sample>,
    spec: &SampleSpec,
    skip_bad: bool,
) -> Result<(Vec<Sample>, Vec<String>)> {
    use rayon::prelude::*;
    let problems: Vec<Option<String>> = samples
        .par_iter()
        .map(|s| spec.load(s).err().map(|e| e.to_string()))
        .collect();
    let bad: Vec<String> = problems.iter().flatten().cloned().collect();
    if bad.is_empty() {
        return Ok((samples, Vec::new()));
    }
    if !skip_bad {
        return Err(Error::BadSamples {
            summary: format!("{} of {} samples cannot be used", bad.len(), samples.len()),
            problems: bad,
        });
    }
    let good = samples
        .into_iter()
        .zip(problems)
        .filter_map(|(s, p)| p.is_none().then_some(s))
        .collect();
    Ok((
        good,
        bad.into_iter().map(|p| format!("skipped: {p}")).collect(),
    ))
}

/// Sample list of `count` shapes items starting at `first`.
pub fn shapes_samples(seed: u64, first: u64, count: usize, size: usize) -> Vec<Sample> {
    (first..first + count as u64)
        .map(|index| Sample::Shapes { seed, index, size })
        .collect()
}

/// Sample list of file pairs.
pub fn file_samples(pairs: &[SamplePaths]) -> Vec<Sample> {
    pairs.iter().cloned().map(Sample::Files).collect()
}
