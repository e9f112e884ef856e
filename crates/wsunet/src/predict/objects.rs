//! Objects from one prediction held in memory: instance labels (grown from
//! the interiors for an instance model, a class's connected pieces for a
//! semantic one), written as `NAME_instances.tif`, `NAME_objects.csv` (one
//! row per object) and `NAME_objects.geojson` (one outline per object, for
//! QuPath and QGIS).

use std::path::Path;

use crate::card::ModelCard;
use crate::data::Image;
use crate::data::{Sample, generate_shape_instances, read_image, read_mask};
use crate::error::{Error, Result};
use crate::infer::{OUTPUT_TILE, Prediction, Predictor};
use crate::objects::grow::instances_from_probs;
use crate::objects::label::connected_components;
use crate::objects::measure::{ObjectStats, measure};
use crate::objects::metrics::ObjectScores;
use crate::objects::outline::outlines;
use crate::objects::stream::Mode;
pub use crate::objects::table::ObjectRow;
use crate::objects::table::{GEOJSON_END, GEOJSON_START};
use crate::objects::{InstanceParams, Task};
use crate::raster::{Compression, GeoTags, Photometric, RasterSpec, Resample, write_tiled};

/// The class name objects of an instance model carry.
pub const OBJECT_CLASS: &str = "object";

/// How a streamed prediction of a model with `card` makes objects: grown
/// from interiors with the card's settings, or each class's pieces.
pub fn stream_mode(card: &ModelCard) -> Mode {
    match card.task {
        Task::Instances => Mode::Grow(
            card.instances
                .as_ref()
                .map_or_else(InstanceParams::default, |i| i.extraction),
        ),
        Task::Semantic => Mode::Classes,
    }
}

/// The class name and colour of objects by class index: an instance
/// model's objects are [`OBJECT_CLASS`] (at index 1), a semantic model's
/// its classes.
pub fn class_styles(card: &ModelCard) -> Vec<(String, [u8; 3])> {
    match card.task {
        Task::Instances => vec![
            (String::new(), [0, 0, 0]),
            (OBJECT_CLASS.to_string(), card.classes.color(1)),
        ],
        Task::Semantic => card
            .classes
            .names()
            .into_iter()
            .enumerate()
            .map(|(i, name)| (name, card.classes.color(i)))
            .collect(),
    }
}

/// Objects of one image: labels `1..=count` (0 background), the class of
/// each, and the per-pixel confidence they are measured with.
#[derive(Debug, Clone, PartialEq)]
pub struct Objects {
    /// Height of the image.
    pub height: usize,
    /// Width.
    pub width: usize,
    /// `height · width` object ids, 0 for background.
    pub labels: Vec<u32>,
    /// Objects (ids run from 1 to `count`).
    pub count: u32,
    /// The class name and colour of object `id` at `id − 1`.
    pub classes: Vec<(String, [u8; 3])>,
    /// The probability of each pixel's object class (an instance model's
    /// 1 − P(background); a semantic model's P(the pixel's class)).
    pub confidence: Vec<f32>,
}

/// The objects of `prediction` by a model with `card`: an instance model's
/// grown from its interiors with the card's extraction settings; a
/// semantic model's as the 8-connected pieces of each class but the first
/// (background).
pub fn extract(prediction: &Prediction, card: &ModelCard) -> Result<Objects> {
    let (k, h, w) = (prediction.num_classes, prediction.height, prediction.width);
    let n = h * w;
    let probs = &prediction.probs;
    match card.task {
        Task::Instances => {
            if k != crate::objects::INSTANCE_CLASSES.len() {
                return Err(Error::Model {
                    field: "num_classes".into(),
                    reason: format!(
                        "the card says instances, but the model has {k} classes, not 3 (background, interior, boundary)"
                    ),
                });
            }
            let params = card
                .instances
                .as_ref()
                .map_or_else(InstanceParams::default, |i| i.extraction);
            let (labels, count) = instances_from_probs(probs, k, w, h, &params);
            let confidence = probs[..n].iter().map(|&bg| 1.0 - bg).collect();
            let color = card.classes.color(1);
            Ok(Objects {
                height: h,
                width: w,
                labels,
                count,
                classes: vec![(OBJECT_CLASS.to_string(), color); count as usize],
                confidence,
            })
        }
        Task::Semantic => {
            let mask = prediction.mask();
            let names = card.classes.names();
            let mut labels = vec![0u32; n];
            let mut classes = Vec::new();
            for class in 1..k {
                let pixels: Vec<bool> = mask.data.iter().map(|&c| c as usize == class).collect();
                let (pieces, found) = connected_components(&pixels, w, h, true);
                let offset = classes.len() as u32;
                for (l, &p) in labels.iter_mut().zip(&pieces) {
                    if p != 0 {
                        *l = p + offset;
                    }
                }
                let name = names
                    .get(class)
                    .cloned()
                    .unwrap_or_else(|| class.to_string());
                classes.extend((0..found).map(|_| (name.clone(), card.classes.color(class))));
            }
            let confidence = mask
                .data
                .iter()
                .enumerate()
                .map(|(p, &c)| probs[c as usize * n + p])
                .collect();
            Ok(Objects {
                height: h,
                width: w,
                count: classes.len() as u32,
                labels,
                classes,
                confidence,
            })
        }
    }
}

impl Objects {
    /// Each object's measurements, by id; `planes` are the input image's
    /// channels (`height · width` values each), for the mean intensities.
    pub fn rows(&self, planes: &[&[f32]]) -> Vec<ObjectRow> {
        let stats = measure(
            &self.labels,
            self.width,
            self.height,
            0,
            Some(&self.confidence),
            planes,
        );
        stats.iter().map(|s| self.row(s)).collect()
    }

    fn row(&self, s: &ObjectStats) -> ObjectRow {
        ObjectRow::new(s, &self.classes[s.id as usize - 1].0)
    }
}

/// Writes `objects` of `image` as `stem_instances.tif`, `stem_objects.csv`
/// and `stem_objects.geojson` in `dir`, each atomically.
pub fn write_objects(
    dir: &Path,
    stem: &str,
    image: &Image,
    objects: &Objects,
    compression: Compression,
) -> Result<()> {
    let (h, w) = (objects.height, objects.width);
    let path = |suffix: &str| dir.join(format!("{stem}{suffix}"));
    write_label_tiff(&path("_instances.tif"), objects, compression)?;
    let planes: Vec<&[f32]> = image.data.chunks(h * w).collect();
    let rows = objects.rows(&planes);
    let mut csv = ObjectRow::csv_header(image.channels);
    csv.push('\n');
    for row in &rows {
        csv.push_str(&row.csv());
        csv.push('\n');
    }
    crate::fs::write_atomic(&path("_objects.csv"), csv.as_bytes())?;
    let mut json = String::from(GEOJSON_START);
    let by_id: std::collections::HashMap<u32, &ObjectRow> =
        rows.iter().map(|r| (r.id, r)).collect();
    for (k, (id, polygons)) in outlines(&objects.labels, w, h).into_iter().enumerate() {
        let (_, color) = &objects.classes[id as usize - 1];
        if k > 0 {
            json.push_str(",\n");
        }
        json.push_str(&by_id[&id].feature(*color, &polygons));
    }
    json.push_str(GEOJSON_END);
    crate::fs::write_atomic(&path("_objects.geojson"), json.as_bytes())
}

/// A sample's image and its mask as read: instance labels for instance
/// data (the built-in data's instance version for a built-in sample).
fn instance_sample(sample: &Sample) -> Result<(Image, crate::data::Mask)> {
    Ok(match sample {
        Sample::Shapes { seed, index, size } => generate_shape_instances(*seed, *index, *size),
        Sample::Files(p) => (read_image(&p.image)?, read_mask(&p.mask, None)?.0),
    })
}

/// Object scores of `predictor` (a predictor of the instance model with
/// `card`) on `samples`, whose masks hold instance labels: each image is
/// predicted as predict does (tiled when larger than a tile), its objects
/// extracted with the card's settings and matched against the labels
/// ([`ObjectScores`]). `progress(done, total)` hears after each image.
pub fn score_objects(
    predictor: &Predictor,
    card: &ModelCard,
    samples: &[Sample],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ObjectScores> {
    let mut scores = ObjectScores::default();
    for (k, sample) in samples.iter().enumerate() {
        let (image, truth) = instance_sample(sample)?;
        let prediction = predictor.predict(&image, false)?;
        let objects = extract(&prediction, card)?;
        let truth: Vec<u32> = truth.data.iter().map(|&v| v as u32).collect();
        if truth.len() != objects.labels.len() {
            return Err(Error::Data {
                path: sample.name().into(),
                reason: format!(
                    "the mask has {} pixels but the image {}",
                    truth.len(),
                    objects.labels.len()
                ),
            });
        }
        scores.add(&truth, &objects.labels);
        progress(k + 1, samples.len());
    }
    Ok(scores)
}

/// Interior thresholds [`tune_extraction`] tries.
pub const INTERIOR_THRESHOLDS: [f32; 5] = [0.3, 0.4, 0.5, 0.6, 0.7];
/// Object (1 − background) thresholds [`tune_extraction`] tries.
pub const REGION_THRESHOLDS: [f32; 3] = [0.4, 0.5, 0.6];
/// Validation images [`tune_extraction`] uses at most (the first ones).
pub const TUNE_IMAGES: usize = 32;

/// The extraction's thresholds that score best on `samples` (instance
/// labels), with the reason: every pair of [`INTERIOR_THRESHOLDS`] and
/// [`REGION_THRESHOLDS`] scored by AP50 on the first [`TUNE_IMAGES`]
/// images, each predicted once; ties keep the card's settings. The
/// minimum area stays the card's. `None` without samples.
pub fn tune_extraction(
    predictor: &Predictor,
    card: &ModelCard,
    samples: &[Sample],
) -> Result<Option<(InstanceParams, String)>> {
    let base = card
        .instances
        .as_ref()
        .map_or_else(InstanceParams::default, |i| i.extraction);
    let mut images = Vec::new();
    for sample in samples.iter().take(TUNE_IMAGES) {
        let (image, truth) = instance_sample(sample)?;
        let prediction = predictor.predict(&image, false)?;
        let truth: Vec<u32> = truth.data.iter().map(|&v| v as u32).collect();
        images.push((prediction, truth));
    }
    if images.is_empty() {
        return Ok(None);
    }
    let score = |params: &InstanceParams| {
        let mut scores = ObjectScores::default();
        for (p, truth) in &images {
            let (labels, _) = instances_from_probs(&p.probs, 3, p.width, p.height, params);
            scores.add(truth, &labels);
        }
        scores.ap50()
    };
    let start = score(&base);
    let (mut best, mut best_ap) = (base, start);
    for &interior_threshold in &INTERIOR_THRESHOLDS {
        for &region_threshold in &REGION_THRESHOLDS {
            let params = InstanceParams {
                interior_threshold,
                region_threshold,
                ..base
            };
            let ap = score(&params);
            if ap > best_ap {
                (best, best_ap) = (params, ap);
            }
        }
    }
    let reason = format!(
        "thresholds {} (interior) and {} (object) scored best of {}×{} pairs on {} validation image(s): AP50 {:.2} % (with {} and {}: {:.2} %)",
        best.interior_threshold,
        best.region_threshold,
        INTERIOR_THRESHOLDS.len(),
        REGION_THRESHOLDS.len(),
        images.len(),
        100.0 * best_ap,
        base.interior_threshold,
        base.region_threshold,
        100.0 * start
    );
    Ok(Some((best, reason)))
}

/// The labels as a tiled, pyramidal TIFF: 16-bit when every id fits, else
/// 32-bit.
fn write_label_tiff(path: &Path, objects: &Objects, compression: Compression) -> Result<()> {
    let spec = RasterSpec {
        width: objects.width,
        height: objects.height,
        samples: 1,
        photometric: Photometric::Gray,
        compression,
        tile: OUTPUT_TILE,
        resample: Resample::Nearest,
        pyramid: true,
        geo: GeoTags::default(),
        resolution: None,
        bigtiff: false,
    };
    if objects.count <= u16::MAX as u32 {
        let ids: Vec<u16> = objects.labels.iter().map(|&l| l as u16).collect();
        write_tiled(path, &spec, [Ok(ids)])?;
    } else {
        write_tiled(path, &spec, [Ok(objects.labels.clone())])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::ClassList;

    fn prediction(probs: Vec<f32>, k: usize, h: usize, w: usize) -> Prediction {
        Prediction {
            num_classes: k,
            height: h,
            width: w,
            probs,
            logits: None,
            tiles: 1,
            disagreement: None,
        }
    }

    #[test]
    fn a_semantic_model_gives_each_class_its_pieces() {
        // 2 classes past background: class 1 in two pieces, class 2 in one.
        let (h, w) = (4, 6);
        let classes = [
            0, 1, 1, 0, 2, 2, //
            0, 1, 1, 0, 2, 2, //
            0, 0, 0, 0, 0, 0, //
            1, 0, 0, 0, 0, 0,
        ];
        let n = h * w;
        let mut probs = vec![0.0; 3 * n];
        for (p, &c) in classes.iter().enumerate() {
            probs[c * n + p] = 0.9;
            probs[((c + 1) % 3) * n + p] = 0.1;
        }
        let card = ModelCard {
            model: crate::WsResUNetConfig::new(3),
            classes: ClassList::numbered(3),
            normalize: crate::data::Normalize::identity(3),
            ignore_index: None,
            crop: None,
            pixel_size: None,
            task: Task::Semantic,
            instances: None,
        };
        let objects = extract(&prediction(probs, 3, h, w), &card).unwrap();
        assert_eq!(objects.count, 3);
        assert_eq!(objects.labels[1], 1);
        assert_eq!(objects.labels[18], 2);
        assert_eq!(objects.labels[4], 3);
        let names: Vec<&str> = objects.classes.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                card.classes.names()[1].as_str(),
                &card.classes.names()[1],
                &card.classes.names()[2]
            ]
        );
        assert!(objects.confidence.iter().all(|&c| (c - 0.9).abs() < 1e-6));
    }

    /// An instance model's probabilities for discs (interior inside
    /// radius − 2, boundary in the 2-px rim, the rest background).
    fn disc_probs(h: usize, w: usize, discs: &[(f64, f64, f64)]) -> Vec<f32> {
        let n = h * w;
        let mut probs = vec![0.0f32; 3 * n];
        for p in 0..n {
            let (x, y) = ((p % w) as f64 + 0.5, (p / w) as f64 + 0.5);
            // The nearest disc decides, so touching discs meet on a seam.
            let inside = discs
                .iter()
                .map(|&(cx, cy, r)| (((x - cx).powi(2) + (y - cy).powi(2)).sqrt(), r))
                .filter(|(d, r)| d < r)
                .min_by(|a, b| (a.0 - a.1).total_cmp(&(b.0 - b.1)));
            let seam = discs
                .iter()
                .filter(|&&(cx, cy, r)| ((x - cx).powi(2) + (y - cy).powi(2)).sqrt() < r)
                .count()
                > 1;
            let class = match inside {
                None => 0,
                Some((d, r)) if d < r - 2.0 && !seam => 1,
                Some(_) => 2,
            };
            probs[class * n + p] = 0.8;
            probs[((class + 1) % 3) * n + p] = 0.2;
        }
        probs
    }

    fn instance_card() -> ModelCard {
        ModelCard {
            model: crate::WsResUNetConfig::new(3),
            classes: crate::data::instance_classes(),
            normalize: crate::data::Normalize::identity(1),
            ignore_index: None,
            crop: None,
            pixel_size: None,
            task: Task::Instances,
            instances: None,
        }
    }

    #[test]
    fn objects_files_agree_the_csv_areas_are_label_counts_and_outlines_cover_them() {
        let (h, w) = (60, 90);
        // Two touching discs and a lone one.
        let discs = [(20.0, 25.0, 12.0), (41.0, 25.0, 12.0), (72.0, 38.0, 10.0)];
        let p = prediction(disc_probs(h, w, &discs), 3, h, w);
        let objects = extract(&p, &instance_card()).unwrap();
        assert_eq!(objects.count, 3, "the touching discs stay apart");
        let image = Image::new(1, h, w, (0..h * w).map(|i| (i % 7) as f32 / 7.0).collect());
        let dir = tempfile::tempdir().unwrap();
        write_objects(dir.path(), "a", &image, &objects, Compression::Deflate).unwrap();

        let (th, tw, ids) =
            crate::raster::read_tiff_mask(&dir.path().join("a_instances.tif")).unwrap();
        assert_eq!((th, tw), (h, w));
        let mut counts = std::collections::BTreeMap::new();
        for &id in ids.iter().filter(|&&id| id != 0) {
            *counts.entry(id as u32).or_insert(0u64) += 1;
        }
        let csv = std::fs::read_to_string(dir.path().join("a_objects.csv")).unwrap();
        let mut lines = csv.lines();
        assert!(
            lines
                .next()
                .unwrap()
                .starts_with("id,class,area,centroid_x")
        );
        let areas: std::collections::BTreeMap<u32, u64> = lines
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                assert_eq!(f[1], OBJECT_CLASS);
                (f[0].parse().unwrap(), f[2].parse().unwrap())
            })
            .collect();
        assert_eq!(
            areas, counts,
            "CSV areas are the label image's pixel counts"
        );

        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("a_objects.geojson")).unwrap(),
        )
        .unwrap();
        let features = json["features"].as_array().unwrap();
        assert_eq!(features.len(), 3);
        let shoelace = |ring: &serde_json::Value| {
            let pts: Vec<(f64, f64)> = ring
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap()))
                .collect();
            pts.windows(2)
                .map(|q| q[0].0 * q[1].1 - q[1].0 * q[0].1)
                .sum::<f64>()
                / 2.0
        };
        for f in features {
            let id: u32 = f["id"].as_str().unwrap().parse().unwrap();
            assert_eq!(f["properties"]["classification"]["name"], OBJECT_CLASS);
            assert_eq!(f["geometry"]["type"], "Polygon");
            let rings = f["geometry"]["coordinates"].as_array().unwrap();
            let area: f64 = rings.iter().map(|r| shoelace(r).abs()).next().unwrap()
                - rings.iter().skip(1).map(|r| shoelace(r).abs()).sum::<f64>();
            let pixels = counts[&id] as f64;
            assert!(pixels >= 30.0);
            assert!(
                (area - pixels).abs() <= 0.02 * pixels,
                "object {id}: {area} vs {pixels}"
            );
        }
    }
}
