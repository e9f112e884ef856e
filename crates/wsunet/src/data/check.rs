//! Whole-dataset validation (`wsunet data check`) and channel statistics
//! (`wsunet data stats`).
//!
//! Every sample is decoded (in parallel); every problem is collected — not
//! just the first — with the file it concerns and the fix.

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::Serialize;

use super::augment::Normalize;
use super::classes::ClassList;
use super::classes::class_count;
use super::io::{
    input_channels, mask_values_problem, read_image, read_mask, size_mismatch, value_counts,
};
use super::layout::{DatasetFiles, Layout, SamplePaths};
use crate::error::{Error, Result};

/// What one sample holds, or why it could not be read.
struct SampleFacts {
    pair: SamplePaths,
    split: &'static str,
    size: [usize; 2],
    channels: usize,
    kind: String,
    /// Pixel count per mask value.
    values: BTreeMap<u16, u64>,
    error: Option<String>,
}

fn facts(pair: &SamplePaths, split: &'static str, files: &DatasetFiles) -> SampleFacts {
    let mut f = SampleFacts {
        pair: pair.clone(),
        split,
        size: [0, 0],
        channels: 0,
        kind: String::new(),
        values: BTreeMap::new(),
        error: None,
    };
    let image = match read_image(&pair.image) {
        Ok(i) => i,
        Err(e) => {
            f.error = Some(e.to_string());
            return f;
        }
    };
    f.size = [image.height, image.width];
    f.channels = image.channels;
    let (mask, kind) = match read_mask(&pair.mask, files.classes.as_ref()) {
        Ok(m) => m,
        Err(e) => {
            f.error = Some(e.to_string());
            return f;
        }
    };
    f.kind = format!("{kind:?}");
    if let Some(e) = size_mismatch(&pair.mask, &mask, &pair.image, &image) {
        f.error = Some(e.to_string());
    }
    f.values = value_counts(&mask);
    f
}

/// The result of checking a dataset.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// The dataset layout.
    pub layout: String,
    /// Readable training / validation samples.
    pub train: usize,
    /// Readable validation samples.
    pub val: usize,
    /// Class names (from the class list, or numbered).
    pub classes: Vec<String>,
    /// Training pixels per class.
    pub class_pixels: Vec<u64>,
    /// Training pixels with the ignore index.
    pub ignored_pixels: u64,
    /// Smallest and largest `[H, W]` seen.
    pub size_range: [[usize; 2]; 2],
    /// Samples per image channel count.
    pub channels: BTreeMap<usize, usize>,
    /// Masks per kind (Gray8, Gray16, Palette, Rgb).
    pub mask_kinds: BTreeMap<String, usize>,
    /// Problems that make samples unusable; training refuses them unless
    /// told to skip bad samples.
    pub problems: Vec<String>,
    /// Things that are legal but probably wrong.
    pub warnings: Vec<String>,
}

/// Decodes every sample of `files` and reports counts, class frequencies,
/// sizes and every problem. `num_classes` defaults to the class list's length,
/// else to the largest mask value seen (ignore excluded) plus one;
/// `in_channels` defaults to the rule of [`input_channels`].
pub fn check_dataset(
    files: &DatasetFiles,
    num_classes: Option<usize>,
    ignore: Option<u16>,
    in_channels: Option<usize>,
) -> CheckReport {
    let all: Vec<(&SamplePaths, &'static str)> = files
        .train
        .iter()
        .map(|p| (p, "train"))
        .chain(files.val.iter().map(|p| (p, "val")))
        .collect();
    let facts: Vec<SampleFacts> = all
        .par_iter()
        .map(|(p, split)| facts(p, split, files))
        .collect();

    let mut problems = files.problems.clone();
    problems.extend(facts.iter().filter_map(|f| f.error.clone()));
    let readable: Vec<&SampleFacts> = facts.iter().filter(|f| f.error.is_none()).collect();
    let num_classes = class_count(num_classes, files.classes.as_ref(), || {
        Ok::<_, std::convert::Infallible>(
            readable
                .iter()
                .flat_map(|f| f.values.keys())
                .filter(|&&v| Some(v) != ignore)
                .max()
                .copied()
                .unwrap_or(0),
        )
    })
    .unwrap_or_else(|never| match never {});
    let in_channels = in_channels.or_else(|| {
        let counts: Vec<usize> = readable.iter().map(|f| f.channels).collect();
        input_channels(&counts)
    });
    let (train, val) = usable_counts(&readable, num_classes, ignore, in_channels, &mut problems);
    if train == 0 {
        problems.push(format!(
            "{}: the training split has no usable samples",
            files.root.display()
        ));
    }
    let (class_pixels, ignored_pixels) = class_pixels(&readable, num_classes, ignore);
    let classes = match &files.classes {
        Some(list) if list.len() == num_classes => list.names(),
        _ => ClassList::numbered(num_classes).names(),
    };
    let warnings = warnings(
        files,
        &readable,
        &classes,
        &class_pixels,
        ignore,
        (train, val),
    );
    let mut channels = BTreeMap::new();
    let mut mask_kinds = BTreeMap::new();
    for f in &readable {
        *channels.entry(f.channels).or_insert(0) += 1;
        *mask_kinds.entry(f.kind.clone()).or_insert(0) += 1;
    }
    CheckReport {
        layout: format!("{:?}", files.layout),
        train,
        val,
        classes,
        class_pixels,
        ignored_pixels,
        size_range: size_range(&readable.iter().map(|f| f.size).collect::<Vec<_>>()),
        channels,
        mask_kinds,
        problems,
        warnings,
    }
}

/// Usable training and validation samples among `readable`: those with the
/// model's channel count and mask values it can learn; a problem is
/// added for each of the others.
fn usable_counts(
    readable: &[&SampleFacts],
    num_classes: usize,
    ignore: Option<u16>,
    in_channels: Option<usize>,
    problems: &mut Vec<String>,
) -> (usize, usize) {
    let mut usable = [0, 0];
    for f in readable {
        let mut good = true;
        if let Some(c) = in_channels
            && f.channels != c
        {
            problems.push(format!(
                "{}: has {} channel(s) but the model takes {c}; convert it or set in_channels",
                f.pair.image.display(),
                f.channels
            ));
            good = false;
        }
        if let Some(reason) = mask_values_problem(&f.values, num_classes, ignore) {
            problems.push(format!("{}: {reason}", f.pair.mask.display()));
            good = false;
        }
        if good {
            usable[usize::from(f.split != "train")] += 1;
        }
    }
    (usable[0], usable[1])
}

/// Training pixels per class, and training pixels with the ignore index.
fn class_pixels(
    readable: &[&SampleFacts],
    num_classes: usize,
    ignore: Option<u16>,
) -> (Vec<u64>, u64) {
    let mut class_pixels = vec![0u64; num_classes];
    let mut ignored_pixels = 0;
    for f in readable.iter().filter(|f| f.split == "train") {
        for (&v, &n) in &f.values {
            if Some(v) == ignore {
                ignored_pixels += n;
            } else if (v as usize) < num_classes {
                class_pixels[v as usize] += n;
            }
        }
    }
    (class_pixels, ignored_pixels)
}

/// What is legal but probably wrong: an empty validation split, classes
/// without training pixels, binary masks saved as 0/255 with 255 the
/// ignore index, a class list of another length than the classes in use.
fn warnings(
    files: &DatasetFiles,
    readable: &[&SampleFacts],
    classes: &[String],
    class_pixels: &[u64],
    ignore: Option<u16>,
    (train, val): (usize, usize),
) -> Vec<String> {
    let mut warnings = Vec::new();
    if val == 0 {
        let hint = match files.layout {
            Layout::Folder => "; set val_fraction above 0",
            _ => "",
        };
        warnings.push(format!("the validation split is empty{hint}"));
    }
    if train > 0 {
        for (name, n) in classes.iter().zip(class_pixels) {
            if *n == 0 {
                warnings.push(format!(
                    "class `{name}` has no pixels in the training split"
                ));
            }
        }
        let training = || readable.iter().filter(|f| f.split == "train");
        let only_background =
            training().all(|f| f.values.keys().all(|&v| v == 0 || Some(v) == ignore));
        let has_ignored = training().any(|f| ignore.is_some_and(|i| f.values.contains_key(&i)));
        if only_background && has_ignored {
            let i = ignore.unwrap_or(0);
            warnings.push(format!(
                "every training mask holds only 0 and the ignore index {i}; if {i} marks the foreground of 0/{i} binary masks, save them as 0/1 instead"
            ));
        }
    }
    if let Some(list) = &files.classes
        && list.len() != classes.len()
    {
        warnings.push(format!(
            "classes.json lists {} classes but {} are in use",
            list.len(),
            classes.len()
        ));
    }
    warnings
}

/// The smallest and the largest `[H, W]` among `sizes` (each side on its
/// own; zeros for none).
pub(crate) fn size_range(sizes: &[[usize; 2]]) -> [[usize; 2]; 2] {
    let side = |i: usize| sizes.iter().map(move |s| s[i]);
    [
        [side(0).min().unwrap_or(0), side(1).min().unwrap_or(0)],
        [side(0).max().unwrap_or(0), side(1).max().unwrap_or(0)],
    ]
}

/// One image's channel count, per-channel sums and sums of squares, and
/// pixel count.
type ChannelSums = (usize, Vec<f64>, Vec<f64>, u64);

/// Per-channel mean and standard deviation over every pixel of `pairs`'
/// images (in parallel, accumulated in f64), for the `normalize` config.
pub fn channel_stats(pairs: &[SamplePaths]) -> Result<Normalize> {
    if pairs.is_empty() {
        return Err(Error::NoSamples {
            purpose: "compute statistics from",
        });
    }
    let partial: Vec<Result<ChannelSums>> = pairs
        .par_iter()
        .map(|p| {
            let image = read_image(&p.image)?;
            let n = (image.height * image.width) as u64;
            let sums = (0..image.channels)
                .map(|c| image.channel(c).iter().map(|&v| v as f64).sum())
                .collect();
            let squares = (0..image.channels)
                .map(|c| {
                    image
                        .channel(c)
                        .iter()
                        .map(|&v| (v as f64) * (v as f64))
                        .sum()
                })
                .collect();
            Ok((image.channels, sums, squares, n))
        })
        .collect();
    let mut channels = None;
    let (mut sums, mut squares, mut count) = (Vec::new(), Vec::new(), 0u64);
    for (p, r) in pairs.iter().zip(partial) {
        let (c, s, q, n) = r?;
        match channels {
            None => {
                channels = Some(c);
                sums = vec![0.0; c];
                squares = vec![0.0; c];
            }
            Some(expected) if expected != c => {
                return Err(Error::Data {
                    path: p.image.clone(),
                    reason: format!("has {c} channel(s) but earlier images have {expected}"),
                });
            }
            _ => {}
        }
        sums.iter_mut().zip(&s).for_each(|(a, b)| *a += b);
        squares.iter_mut().zip(&q).for_each(|(a, b)| *a += b);
        count += n;
    }
    let n = count as f64;
    let mean: Vec<f64> = sums.iter().map(|s| s / n).collect();
    let std = squares
        .iter()
        .zip(&mean)
        .map(|(q, m)| ((q / n - m * m).max(0.0)).sqrt().max(1e-6) as f32)
        .collect();
    Ok(Normalize {
        mean: mean.into_iter().map(|m| m as f32).collect(),
        std,
    })
}
