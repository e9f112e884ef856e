//! `shapes`: a built-in synthetic segmentation dataset, generated
//! deterministically from a seed with no files.
//!
//! Each sample is a textured, noisy background with 2–6 overlapping circles,
//! rotated rectangles and triangles of varied sizes. Every shape gets a random
//! colour, independent of its class, so a model has to learn shape, not
//! colour. Classes: 0 background, 1 circle, 2 rectangle, 3 triangle.

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::classes::ClassList;
use super::io::{Image, Mask};
use crate::rng::{item_rng, normal};

/// Class names of the `shapes` data, in index order.
pub const SHAPES_CLASSES: [&str; 4] = ["background", "circle", "rectangle", "triangle"];

/// The class list of the `shapes` data, with display colours.
pub fn shapes_classes() -> ClassList {
    let colors = [[0, 0, 0], [230, 25, 75], [60, 180, 75], [0, 130, 200]];
    ClassList::named(&SHAPES_CLASSES, &colors)
}

/// A smooth random texture: a few plane waves, values in about [−1, 1].
struct Texture {
    waves: Vec<(f32, f32, f32, f32)>,
}

impl Texture {
    fn new(rng: &mut impl Rng, size: usize) -> Self {
        let waves = (0..3)
            .map(|_| {
                let angle = rng.random_range(0.0..std::f32::consts::TAU);
                let freq = rng.random_range(1.0..6.0) * std::f32::consts::TAU / size as f32;
                (
                    angle.cos() * freq,
                    angle.sin() * freq,
                    rng.random_range(0.0..std::f32::consts::TAU),
                    rng.random_range(0.3..1.0),
                )
            })
            .collect();
        Texture { waves }
    }

    fn at(&self, x: f32, y: f32) -> f32 {
        let total: f32 = self.waves.iter().map(|w| w.3).sum();
        self.waves
            .iter()
            .map(|&(fx, fy, p, a)| a * (fx * x + fy * y + p).sin())
            .sum::<f32>()
            / total
    }
}

fn random_color(rng: &mut impl Rng) -> [f32; 3] {
    [rng.random(), rng.random(), rng.random()]
}

fn distance(a: [f32; 3], b: [f32; 3]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

/// One geometric shape and its class.
enum Shape {
    Circle {
        cx: f32,
        cy: f32,
        r: f32,
    },
    Rect {
        cx: f32,
        cy: f32,
        a: f32,
        b: f32,
        cos: f32,
        sin: f32,
    },
    Triangle {
        v: [(f32, f32); 3],
    },
}

impl Shape {
    fn class(&self) -> u16 {
        match self {
            Shape::Circle { .. } => 1,
            Shape::Rect { .. } => 2,
            Shape::Triangle { .. } => 3,
        }
    }

    fn contains(&self, x: f32, y: f32) -> bool {
        match *self {
            Shape::Circle { cx, cy, r } => (x - cx).powi(2) + (y - cy).powi(2) <= r * r,
            Shape::Rect {
                cx,
                cy,
                a,
                b,
                cos,
                sin,
            } => {
                let (dx, dy) = (x - cx, y - cy);
                (dx * cos + dy * sin).abs() <= a && (-dx * sin + dy * cos).abs() <= b
            }
            Shape::Triangle { v } => {
                let side = |(x1, y1): (f32, f32), (x2, y2): (f32, f32)| {
                    (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1)
                };
                let (d1, d2, d3) = (side(v[0], v[1]), side(v[1], v[2]), side(v[2], v[0]));
                (d1 >= 0.0 && d2 >= 0.0 && d3 >= 0.0) || (d1 <= 0.0 && d2 <= 0.0 && d3 <= 0.0)
            }
        }
    }

    fn random(rng: &mut impl Rng, size: f32) -> Shape {
        let r = rng.random_range(0.08..0.24) * size;
        let cx = rng.random_range(0.05..0.95) * size;
        let cy = rng.random_range(0.05..0.95) * size;
        match rng.random_range(1..=3) {
            1 => Shape::Circle { cx, cy, r },
            2 => {
                let angle: f32 = rng.random_range(0.0..std::f32::consts::PI);
                Shape::Rect {
                    cx,
                    cy,
                    a: r * rng.random_range(0.6..1.0),
                    b: r * rng.random_range(0.45..0.9),
                    cos: angle.cos(),
                    sin: angle.sin(),
                }
            }
            _ => {
                let start: f32 = rng.random_range(0.0..std::f32::consts::TAU);
                let v = [0.0f32, 1.0, 2.0].map(|k| {
                    let a = start + k * std::f32::consts::TAU / 3.0 + rng.random_range(-0.35..0.35);
                    let rr = r * rng.random_range(1.25..1.6);
                    (cx + rr * a.cos(), cy + rr * a.sin())
                });
                Shape::Triangle { v }
            }
        }
    }
}

/// Generates sample `index` of the `shapes` data with seed `seed`: an RGB
/// image `[3, size, size]` in `[0, 1]` and its mask. The same arguments always
/// give the same sample.
///
/// # Example
///
/// ```
/// let (image, mask) = wsunet::data::generate_shapes(7, 0, 64);
/// assert_eq!((image.channels, image.height, mask.width), (3, 64, 64));
/// assert_eq!(wsunet::data::generate_shapes(7, 0, 64).1, mask);
/// ```
pub fn generate_shapes(seed: u64, index: u64, size: usize) -> (Image, Mask) {
    generate(seed, index, size, false)
}

/// [`generate_shapes`]' image with instance labels instead of classes: each
/// shape its own id (1, 2, … in drawing order; a shape drawn over another
/// takes the pixels it covers, so ids need not all be present), 0 the
/// background. The built-in data of instance training.
///
/// ```
/// let (image, classes) = wsunet::data::generate_shapes(7, 0, 64);
/// let (same, ids) = wsunet::data::generate_shape_instances(7, 0, 64);
/// assert_eq!(image, same);
/// // Object pixels are the same pixels; only their values differ.
/// assert!(classes.data.iter().zip(&ids.data).all(|(c, i)| (*c == 0) == (*i == 0)));
/// ```
pub fn generate_shape_instances(seed: u64, index: u64, size: usize) -> (Image, Mask) {
    generate(seed, index, size, true)
}

fn generate(seed: u64, index: u64, size: usize, instances: bool) -> (Image, Mask) {
    let mut rng = item_rng(seed, index);
    let s = size as f32;
    let base = [0, 1, 2].map(|_| rng.random_range(0.2..0.8));
    let texture = Texture::new(&mut rng, size);
    let texture_gain = [0, 1, 2].map(|_| rng.random_range(0.04..0.15));
    let noise = rng.random_range(0.01..0.05);

    let mut color = vec![[0f32; 3]; size * size];
    let mut mask = vec![0u16; size * size];
    for (p, c) in color.iter_mut().enumerate() {
        let t = texture.at((p % size) as f32, (p / size) as f32);
        *c = [0, 1, 2].map(|k| base[k] + texture_gain[k] * t);
    }

    // i32, as this range has always been drawn: another type could draw
    // other numbers from the stream and change the built-in data.
    let n: i32 = rng.random_range(2..=6);
    for id in 1..=n as u16 {
        let shape = Shape::random(&mut rng, s);
        // A colour far enough from the background to be visible.
        let mut fill = random_color(&mut rng);
        for _ in 0..16 {
            if distance(fill, base) >= 0.3 {
                break;
            }
            fill = random_color(&mut rng);
        }
        let shade = Texture::new(&mut rng, size);
        for y in 0..size {
            for x in 0..size {
                let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
                if shape.contains(fx, fy) {
                    let p = y * size + x;
                    let t = 0.06 * shade.at(fx, fy);
                    color[p] = fill.map(|v| v + t);
                    mask[p] = if instances { id } else { shape.class() };
                }
            }
        }
    }

    let mut data = vec![0f32; 3 * size * size];
    for (p, c) in color.iter().enumerate() {
        for k in 0..3 {
            data[k * size * size + p] = (c[k] + noise * normal(&mut rng)).clamp(0.0, 1.0);
        }
    }
    (Image::new(3, size, size, data), Mask::new(size, size, mask))
}

/// The built-in `shapes` data used when no dataset folder is given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShapesSpec {
    /// Training samples (regenerated identically each epoch, then augmented).
    pub train: usize,
    /// Validation samples (distinct from the training ones).
    pub val: usize,
    /// Image side in pixels.
    pub size: usize,
    /// Generator seed.
    pub seed: u64,
}

impl Default for ShapesSpec {
    fn default() -> Self {
        ShapesSpec {
            train: 8192,
            val: 128,
            size: 96,
            seed: 0,
        }
    }
}

/// Writes a large `shapes` scene: a `side × side` mosaic of `pool`
/// generated `cell`-pixel samples (each grid cell picks one by a seeded
/// hash), as a tiled 8-bit RGB TIFF (BigTIFF when large) and, when
/// `mask_path` is given, its palette mask. Rows are generated and written a
/// band at a time, so memory holds the pool, never the scene: for
/// benchmarks and the large-image tests.
pub fn write_scene(
    image_path: &std::path::Path,
    mask_path: Option<&std::path::Path>,
    side: usize,
    cell: usize,
    pool: usize,
    seed: u64,
) -> crate::Result<()> {
    use crate::raster::{Compression, GeoTags, Photometric, RasterSpec, Resample, write_tiled};
    use rayon::prelude::*;
    let samples: Vec<(Vec<u8>, Vec<u8>)> = (0..pool as u64)
        .into_par_iter()
        .map(|i| {
            let (image, mask) = generate_shapes(seed, i, cell);
            let n = cell * cell;
            let rgb = (0..3 * n)
                .map(|j| (image.data[(j % 3) * n + j / 3] * 255.0).round() as u8)
                .collect();
            (rgb, mask.data.iter().map(|&l| l as u8).collect())
        })
        .collect();
    let pick = |gy: usize, gx: usize| -> usize {
        let mut h = seed ^ ((gy as u64) << 32 | gx as u64);
        h = h.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^= h >> 29;
        (h.wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 32) as usize % pool
    };
    let band_rows = 256;
    let samples = &samples;
    let rows = |samples_per_px: usize, mask: bool| {
        (0..side.div_ceil(band_rows)).map(move |b| {
            let (y0, y1) = (b * band_rows, ((b + 1) * band_rows).min(side));
            let mut out = Vec::with_capacity((y1 - y0) * side * samples_per_px);
            for y in y0..y1 {
                let mut x = 0;
                while x < side {
                    let take = (cell - x % cell).min(side - x);
                    let (image, labels) = &samples[pick(y / cell, x / cell)];
                    let src = if mask { labels } else { image };
                    let start = ((y % cell) * cell + x % cell) * samples_per_px;
                    out.extend_from_slice(&src[start..start + take * samples_per_px]);
                    x += take;
                }
            }
            Ok(out)
        })
    };
    let spec = |samples, photometric, resample| RasterSpec {
        width: side,
        height: side,
        samples,
        photometric,
        compression: Compression::Deflate,
        tile: 256,
        resample,
        pyramid: false,
        geo: GeoTags::default(),
        resolution: None,
        bigtiff: true,
    };
    write_tiled::<u8>(
        image_path,
        &spec(3, Photometric::Rgb, Resample::Average),
        rows(3, false),
    )?;
    if let Some(path) = mask_path {
        let colors = (0..256).map(|i| shapes_classes().color(i)).collect();
        write_tiled::<u8>(
            path,
            &spec(1, Photometric::Palette(colors), Resample::Nearest),
            rows(1, true),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_for_a_seed_and_different_across_seeds_and_indices() {
        let a = generate_shapes(42, 3, 64);
        assert_eq!(generate_shapes(42, 3, 64), a);
        assert_ne!(generate_shapes(43, 3, 64).1, a.1);
        assert_ne!(generate_shapes(42, 4, 64).1, a.1);
    }

    #[test]
    fn every_class_appears_and_values_are_in_range() {
        let mut pixels = [0usize; 4];
        for i in 0..40 {
            let (image, mask) = generate_shapes(1, i, 64);
            assert!(image.data.iter().all(|v| (0.0..=1.0).contains(v)));
            for &m in &mask.data {
                pixels[m as usize] += 1;
            }
        }
        let total: usize = pixels.iter().sum();
        for (class, n) in pixels.iter().enumerate() {
            let share = *n as f64 / total as f64;
            assert!(share > 0.04, "class {class} covers only {share:.3}");
        }
        assert!(pixels[0] as f64 / (total as f64) < 0.9);
    }

    #[test]
    fn colour_does_not_give_the_class_away() {
        // Mean colour of each class's pixels across many samples is close to
        // grey: classes are not separable by colour.
        let mut sums = [[0f64; 3]; 4];
        let mut counts = [0f64; 4];
        for i in 0..60 {
            let (image, mask) = generate_shapes(9, i, 48);
            for (p, &m) in mask.data.iter().enumerate() {
                for (c, sum) in sums[m as usize].iter_mut().enumerate() {
                    *sum += image.channel(c)[p] as f64;
                }
                counts[m as usize] += 1.0;
            }
        }
        for class in 1..4 {
            for (c, sum) in sums[class].iter().enumerate() {
                let mean = sum / counts[class];
                assert!(
                    (0.35..0.65).contains(&mean),
                    "class {class} channel {c} mean {mean:.3}"
                );
            }
        }
    }
}
