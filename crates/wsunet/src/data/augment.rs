//! Joint augmentation of an image and its mask, and per-channel
//! normalization.
//!
//! Geometric steps (random scale, flips, 90° rotations, crop/pad) move image
//! and mask together: the image is resampled bilinearly (PyTorch's
//! `align_corners = False` grid), the mask by nearest neighbour on the same
//! grid, so labels never take new values and ignore pixels stay ignore.
//! Photometric jitter (brightness, contrast, gamma, noise) touches the image
//! only.

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::io::{Image, Mask};
use crate::error::{Error, Result};
use crate::geometry::bilinear_taps;
use crate::rng::normal;

/// Random augmentation applied to training samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    /// Range of the random scale factor (1 = no scaling).
    pub scale: [f32; 2],
    /// Random horizontal flips.
    pub hflip: bool,
    /// Random vertical flips.
    pub vflip: bool,
    /// Random rotations by 0, 90, 180 or 270 degrees.
    pub rot90: bool,
    /// Largest brightness shift (added, in units of the image range).
    pub brightness: f32,
    /// Largest relative contrast change.
    pub contrast: f32,
    /// Largest log-gamma change (images in [0, 1] only).
    pub gamma: f32,
    /// Largest standard deviation of added Gaussian noise.
    pub noise: f32,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            scale: [0.75, 1.25],
            hflip: true,
            vflip: true,
            rot90: true,
            brightness: 0.1,
            contrast: 0.15,
            gamma: 0.15,
            noise: 0.03,
        }
    }
}

impl AugmentConfig {
    /// No augmentation at all.
    pub fn none() -> Self {
        AugmentConfig {
            scale: [1.0, 1.0],
            hflip: false,
            vflip: false,
            rot90: false,
            brightness: 0.0,
            contrast: 0.0,
            gamma: 0.0,
            noise: 0.0,
        }
    }

    /// Checks the ranges, naming the field to fix.
    pub fn validate(&self) -> Result<()> {
        let [lo, hi] = self.scale;
        if !(lo > 0.0 && lo <= hi && hi.is_finite()) {
            return Err(Error::setting(
                "augment.scale",
                format!("augment.scale is {:?}; it needs 0 < min ≤ max", self.scale),
            ));
        }
        for (name, v) in [
            ("brightness", self.brightness),
            ("contrast", self.contrast),
            ("gamma", self.gamma),
            ("noise", self.noise),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::setting(
                    &format!("augment.{name}"),
                    format!("augment.{name} is {v}; it must be 0 or more"),
                ));
            }
        }
        if self.contrast >= 1.0 {
            return Err(Error::setting(
                "augment.contrast",
                format!("augment.contrast is {}; it must be below 1", self.contrast),
            ));
        }
        Ok(())
    }
}

/// Per-channel normalization `(x − mean) / std`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalize {
    /// Per-channel mean.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation.
    pub std: Vec<f32>,
}

impl Normalize {
    /// Mean 0.5 and std 0.25 for every channel: a neutral default for [0, 1]
    /// images until `wsunet data stats` measures the real values.
    pub fn neutral(channels: usize) -> Self {
        Normalize {
            mean: vec![0.5; channels],
            std: vec![0.25; channels],
        }
    }

    /// Mean 0 and std 1: the values go to the network as they are read
    /// (8- and 16-bit images scaled to [0, 1], `.npy` untouched). The honest
    /// default for an imported model, whose state dict records no
    /// preprocessing.
    pub fn identity(channels: usize) -> Self {
        Normalize {
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
        }
    }

    /// Whether this normalization changes nothing.
    pub fn is_identity(&self) -> bool {
        self.mean.iter().all(|&m| m == 0.0) && self.std.iter().all(|&s| s == 1.0)
    }

    /// Checks lengths against the channel count and that stds are positive.
    pub fn validate(&self, channels: usize) -> Result<()> {
        if self.mean.len() != channels || self.std.len() != channels {
            return Err(Error::setting(
                "normalize",
                format!(
                    "normalize has {} means and {} stds but images have {channels} channels",
                    self.mean.len(),
                    self.std.len()
                ),
            ));
        }
        if let Some(s) = self.std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(Error::setting(
                "normalize.std",
                format!("normalize.std holds {s}; every std must be positive"),
            ));
        }
        Ok(())
    }

    /// Normalizes `image` in place.
    ///
    /// # Panics
    ///
    /// If the channel counts differ (call [`validate`](Self::validate) first).
    pub fn apply(&self, image: &mut Image) {
        assert_eq!(self.mean.len(), image.channels, "normalize channel count");
        let n = image.height * image.width;
        for (c, values) in image.data.chunks_mut(n).enumerate() {
            let (m, s) = (self.mean[c], self.std[c]);
            values.iter_mut().for_each(|v| *v = (*v - m) / s);
        }
    }
}

/// Rebuilds image and mask at `h × w`, taking output pixel `(y, x)` from
/// source pixel `map(y, x)`, or filling when it returns `None`.
fn remap(
    image: &Image,
    mask: &Mask,
    h: usize,
    w: usize,
    fill: (f32, u16),
    map: impl Fn(usize, usize) -> Option<(usize, usize)>,
) -> (Image, Mask) {
    let (sh, sw) = (image.height, image.width);
    let mut data = vec![fill.0; image.channels * h * w];
    let mut labels = vec![fill.1; h * w];
    for y in 0..h {
        for x in 0..w {
            if let Some((sy, sx)) = map(y, x) {
                let (src, dst) = (sy * sw + sx, y * w + x);
                labels[dst] = mask.data[src];
                for c in 0..image.channels {
                    data[c * h * w + dst] = image.data[c * sh * sw + src];
                }
            }
        }
    }
    (
        Image::new(image.channels, h, w, data),
        Mask::new(h, w, labels),
    )
}

/// Resizes the image bilinearly and the mask by nearest neighbour, on the
/// same pixel grid.
pub fn resize_pair(image: &Image, mask: &Mask, h: usize, w: usize) -> (Image, Mask) {
    let (sh, sw) = (image.height, image.width);
    let ty = bilinear_taps(sh, h);
    let tx = bilinear_taps(sw, w);
    let mut data = vec![0f32; image.channels * h * w];
    for c in 0..image.channels {
        let src = image.channel(c);
        let dst = &mut data[c * h * w..(c + 1) * h * w];
        for (y, &(y0, y1, ly)) in ty.iter().enumerate() {
            for (x, &(x0, x1, lx)) in tx.iter().enumerate() {
                let top = src[y0 * sw + x0] * (1.0 - lx) + src[y0 * sw + x1] * lx;
                let bottom = src[y1 * sw + x0] * (1.0 - lx) + src[y1 * sw + x1] * lx;
                dst[y * w + x] = top * (1.0 - ly) + bottom * ly;
            }
        }
    }
    let nearest = |o: usize, out: usize, input: usize| {
        (((o as f64 + 0.5) * input as f64 / out as f64) as usize).min(input - 1)
    };
    let labels = (0..h * w)
        .map(|p| mask.data[nearest(p / w, h, sh) * sw + nearest(p % w, w, sw)])
        .collect();
    (
        Image::new(image.channels, h, w, data),
        Mask::new(h, w, labels),
    )
}

/// Index `i` of an axis of length `n`, mirrored at the borders without
/// repeating the edge (OpenCV's `BORDER_REFLECT_101`, NumPy's `reflect`):
/// `… 2 1 | 0 1 2 … n−1 | n−2 n−3 …`, repeated for any distance.
fn reflect(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let i = i.rem_euclid(period) as usize;
    if i < n { i } else { period as usize - i }
}

/// Crops (random position) or pads (random placement) to `size`.
///
/// Padding mirrors the image and its mask at the borders (reflection
/// without repeating the edge, OpenCV's `BORDER_REFLECT_101`) instead of
/// filling with zeros: GroupNorm normalizes over the whole input, so a zero
/// border would change the statistics every layer learns from, and the same
/// image seen whole at evaluation would look different to the network. Mirrored labels describe the mirrored
/// pixels, so they stay valid targets.
pub fn crop_or_pad(
    image: &Image,
    mask: &Mask,
    size: [usize; 2],
    rng: &mut impl Rng,
) -> (Image, Mask) {
    let [h, w] = size;
    // Source offset of output pixel 0 per axis: a random crop position, or
    // a random placement (negative) inside the padded output.
    let mut offset = |src: usize, dst: usize| {
        if src >= dst {
            rng.random_range(0..=src - dst) as isize
        } else {
            -(rng.random_range(0..=dst - src) as isize)
        }
    };
    let oy = offset(image.height, h);
    let ox = offset(image.width, w);
    let (ih, iw) = (image.height, image.width);
    remap(image, mask, h, w, (0.0, 0), |y, x| {
        Some((reflect(y as isize + oy, ih), reflect(x as isize + ox, iw)))
    })
}

/// Random scale, flips and rotation (no cropping), then photometric jitter.
pub fn augment(
    image: &Image,
    mask: &Mask,
    config: &AugmentConfig,
    rng: &mut impl Rng,
) -> (Image, Mask) {
    let [lo, hi] = config.scale;
    let (mut image, mut mask) = if hi > lo || lo != 1.0 {
        let s = if hi > lo {
            rng.random_range(lo..=hi)
        } else {
            lo
        };
        let h = ((image.height as f32 * s).round() as usize).max(1);
        let w = ((image.width as f32 * s).round() as usize).max(1);
        resize_pair(image, mask, h, w)
    } else {
        (image.clone(), mask.clone())
    };
    let flip_h = config.hflip && rng.random_bool(0.5);
    let flip_v = config.vflip && rng.random_bool(0.5);
    let turns = if config.rot90 {
        rng.random_range(0..4)
    } else {
        0
    };
    if flip_h || flip_v || turns > 0 {
        let (h, w) = (image.height, image.width);
        // Output (y, x) → source, composing flips then counter-clockwise turns.
        let flip = |y: usize, x: usize| {
            (
                if flip_v { h - 1 - y } else { y },
                if flip_h { w - 1 - x } else { x },
            )
        };
        let (oh, ow) = if turns % 2 == 1 { (w, h) } else { (h, w) };
        (image, mask) = remap(&image, &mask, oh, ow, (0.0, 0), |y, x| {
            let (fy, fx) = match turns {
                0 => (y, x),
                1 => (x, w - 1 - y),
                2 => (h - 1 - y, w - 1 - x),
                _ => (h - 1 - x, y),
            };
            Some(flip(fy, fx))
        });
    }
    photometric(&mut image, config, rng);
    (image, mask)
}

/// Brightness, contrast, gamma and noise on the image only. Images in
/// [0, 1] (decoded 8/16-bit files) stay in [0, 1]; other ranges (`.npy`) get
/// the linear steps only.
fn photometric(image: &mut Image, config: &AugmentConfig, rng: &mut impl Rng) {
    let unit = image.data.iter().all(|v| (0.0..=1.0).contains(v));
    let range = if unit {
        1.0
    } else {
        let (lo, hi) = image
            .data
            .iter()
            .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        (hi - lo).max(f32::EPSILON)
    };
    let uniform = |rng: &mut dyn rand::RngCore, m: f32| {
        if m > 0.0 {
            rng.random_range(-m..=m)
        } else {
            0.0
        }
    };
    let shift = uniform(rng, config.brightness) * range;
    let contrast = 1.0 + uniform(rng, config.contrast);
    let gamma = uniform(rng, config.gamma).exp();
    let sigma = if config.noise > 0.0 {
        rng.random_range(0.0..=config.noise) * range
    } else {
        0.0
    };
    if shift == 0.0 && contrast == 1.0 && gamma == 1.0 && sigma == 0.0 {
        return;
    }
    let mean =
        image.data.iter().map(|&v| v as f64).sum::<f64>() as f32 / image.data.len().max(1) as f32;
    for v in image.data.iter_mut() {
        let mut x = (*v - mean) * contrast + mean + shift;
        if unit {
            x = x.clamp(0.0, 1.0).powf(gamma);
        }
        if sigma > 0.0 {
            x += sigma * normal(rng);
        }
        *v = if unit { x.clamp(0.0, 1.0) } else { x };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::item_rng;

    /// A 1-channel image whose mask is its threshold at 0.5, with an ignore
    /// band, so alignment and label invariants can be checked after any
    /// transform.
    fn pair(h: usize, w: usize) -> (Image, Mask) {
        let mut data = vec![0.1f32; h * w];
        let mut labels = vec![0u16; h * w];
        for y in 0..h {
            for x in 0..w {
                let p = y * w + x;
                if (x as i32 - 12).pow(2) + (y as i32 - 9).pow(2) < 36 || (x > 22 && y < 6) {
                    data[p] = 0.9;
                    labels[p] = 1;
                }
                if y == h - 1 {
                    labels[p] = 255;
                }
            }
        }
        (Image::new(1, h, w, data), Mask::new(h, w, labels))
    }

    #[test]
    fn flips_and_rotations_keep_image_and_mask_aligned() {
        let (image, mask) = pair(20, 30);
        let config = AugmentConfig {
            scale: [1.0, 1.0],
            brightness: 0.0,
            contrast: 0.0,
            gamma: 0.0,
            noise: 0.0,
            ..AugmentConfig::default()
        };
        let mut shapes = std::collections::HashSet::new();
        for i in 0..32 {
            let (a, m) = augment(&image, &mask, &config, &mut item_rng(1, i));
            shapes.insert((a.height, a.width, m.data.clone()));
            for (p, &l) in m.data.iter().enumerate() {
                if l != 255 {
                    assert_eq!(l == 1, a.data[p] > 0.5, "sample {i} pixel {p}");
                }
            }
            let count = |d: &[u16], v| d.iter().filter(|&&x| x == v).count();
            assert_eq!(count(&m.data, 255), count(&mask.data, 255));
        }
        assert!(shapes.len() >= 6, "only {} distinct results", shapes.len());
        assert!(shapes.iter().any(|s| s.0 == 30), "no 90° turn seen");
    }

    #[test]
    fn scaling_keeps_labels_and_nearly_keeps_alignment() {
        let (image, mask) = pair(20, 30);
        let config = AugmentConfig {
            scale: [0.6, 1.7],
            ..AugmentConfig::none()
        };
        for i in 0..16 {
            let (a, m) = augment(&image, &mask, &config, &mut item_rng(2, i));
            assert!(
                m.data.iter().all(|l| [0, 1, 255].contains(l)),
                "labels took new values"
            );
            let labelled: Vec<usize> = (0..m.data.len()).filter(|&p| m.data[p] != 255).collect();
            let agree = labelled
                .iter()
                .filter(|&&p| (m.data[p] == 1) == (a.data[p] > 0.5))
                .count();
            let share = agree as f64 / labelled.len() as f64;
            assert!(share > 0.9, "sample {i}: only {share:.3} of pixels agree");
        }
    }

    #[test]
    fn crop_and_pad_mirror_and_keep_alignment() {
        let (image, mask) = pair(20, 30);
        for (i, size) in [[16, 16], [40, 50], [20, 30], [10, 60], [90, 7]]
            .into_iter()
            .enumerate()
        {
            let (a, m) = crop_or_pad(&image, &mask, size, &mut item_rng(3, i as u64));
            assert_eq!(
                [a.height, a.width, m.height, m.width],
                [size[0], size[1], size[0], size[1]]
            );
            // Every output pixel is an input pixel with its own label: no
            // zero fill for GroupNorm to learn from.
            for (p, &l) in m.data.iter().enumerate() {
                match l {
                    255 => assert!([0.1, 0.9].contains(&a.data[p])),
                    1 => assert_eq!(a.data[p], 0.9),
                    _ => assert_eq!(a.data[p], 0.1),
                }
            }
            // The ignored bottom row is mirrored, not spread: about one row
            // in twenty stays ignored.
            let ignored = m.data.iter().filter(|&&l| l == 255).count() as f64;
            assert!(ignored <= (size[0] * size[1]) as f64 / 10.0, "{ignored}");
        }
        assert_eq!(
            (-4..9).map(|i| reflect(i, 4)).collect::<Vec<_>>(),
            vec![2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2]
        );
        assert_eq!(reflect(-5, 1), 0);
    }

    #[test]
    fn photometric_changes_the_image_only_and_stays_in_range() {
        let (image, mask) = pair(20, 30);
        let config = AugmentConfig {
            scale: [1.0, 1.0],
            hflip: false,
            vflip: false,
            rot90: false,
            ..AugmentConfig::default()
        };
        let (a, m) = augment(&image, &mask, &config, &mut item_rng(4, 0));
        assert_eq!(m, mask);
        assert_ne!(a.data, image.data);
        assert!(a.data.iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn same_rng_same_result() {
        let (image, mask) = pair(20, 30);
        let config = AugmentConfig::default();
        let a = augment(&image, &mask, &config, &mut item_rng(5, 9));
        let b = augment(&image, &mask, &config, &mut item_rng(5, 9));
        assert_eq!(a, b);
    }

    #[test]
    fn normalize_and_validation() {
        let mut image = Image::new(2, 1, 2, vec![0.0, 1.0, 2.0, 4.0]);
        let n = Normalize {
            mean: vec![0.5, 3.0],
            std: vec![0.5, 2.0],
        };
        n.validate(2).unwrap();
        n.apply(&mut image);
        assert_eq!(image.data, vec![-1.0, 1.0, -0.5, 0.5]);
        assert!(
            n.validate(3)
                .unwrap_err()
                .to_string()
                .contains("3 channels")
        );
        assert!(
            Normalize {
                mean: vec![0.0],
                std: vec![0.0]
            }
            .validate(1)
            .unwrap_err()
            .to_string()
            .contains("positive")
        );
        let e = AugmentConfig {
            scale: [2.0, 1.0],
            ..AugmentConfig::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.field(), Some("augment.scale"), "{e}");
    }
}
