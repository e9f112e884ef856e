//! How fast a run trains on this machine, measured before it starts, and
//! what that makes of its duration: the expected time printed up front and
//! the epochs that fit a wall-clock budget (`--time`).

use std::time::{Duration, Instant};

use super::config::TrainConfig;

/// The measured cost of a run's parts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    /// Seconds per optimizer step (loading and augmenting the batch,
    /// forward, backward, update) at the run's batch size and crop.
    pub step_seconds: f64,
    /// The wait for an epoch's first batch (its loader starts cold, and no
    /// step overlaps it).
    pub epoch_start_seconds: f64,
    /// Seconds to validate one validation image (forward and scoring).
    pub val_image_seconds: f64,
}

impl Pace {
    /// The median of `times`, taken after warm-up steps: the first steps
    /// pay for allocations and kernel choice (measured: the main job's
    /// first two steps take 3.5× and 2.8× a steady one, the third 1.2×).
    pub(crate) fn steady(times: &[Duration]) -> f64 {
        let mut sorted: Vec<f64> = times.iter().map(Duration::as_secs_f64).collect();
        sorted.sort_by(f64::total_cmp);
        sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
    }

    /// Seconds of one epoch of `per_epoch` steps, validation left out.
    pub fn epoch_seconds(&self, per_epoch: usize) -> f64 {
        per_epoch as f64 * self.step_seconds + self.epoch_start_seconds
    }

    /// Seconds of one validation pass over `val` images.
    pub fn validation_seconds(&self, val: usize) -> f64 {
        val as f64 * self.val_image_seconds
    }

    /// The expected duration of `config`'s run on `train` training and
    /// `val` validation images, in seconds.
    pub fn expected_seconds(&self, config: &TrainConfig, train: usize, val: usize) -> f64 {
        let per_epoch = train.div_ceil(config.batch_size.max(1));
        let validations = validations(config.epochs, config.val_every);
        config.epochs as f64 * self.epoch_seconds(per_epoch)
            + validations as f64 * self.validation_seconds(val)
    }

    /// The most epochs of `per_epoch` steps that fit `seconds`, validating
    /// every `val_every(epochs)` epochs (at least 1 epoch).
    pub fn epochs_within(
        &self,
        seconds: f64,
        per_epoch: usize,
        val: usize,
        val_every: impl Fn(usize) -> usize,
    ) -> usize {
        let cost = |epochs: usize| {
            epochs as f64 * self.epoch_seconds(per_epoch)
                + validations(epochs, val_every(epochs)) as f64 * self.validation_seconds(val)
        };
        // The cost grows with the epochs: the largest count within budget
        // by bisection.
        let (mut lo, mut hi) = (1usize, 1usize);
        while cost(hi) <= seconds && hi < 1 << 24 {
            lo = hi;
            hi *= 2;
        }
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if cost(mid) <= seconds {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

/// Validations of a run of `epochs` epochs validated every `every`: each
/// multiple of `every`, and the last epoch.
fn validations(epochs: usize, every: usize) -> usize {
    let every = every.max(1);
    epochs / every + usize::from(!epochs.is_multiple_of(every))
}

/// A duration in words: `45 s`, `6 min 20 s`, `1 h 05 min`.
pub fn duration_words(seconds: f64) -> String {
    let s = seconds.round().max(0.0) as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}

/// Parses a duration: `90` or `90s` (seconds), `10m`, `1.5h`, `1h30m`.
/// The error names the accepted forms.
pub fn parse_duration(text: &str) -> Result<f64, String> {
    let bad =
        || format!("`{text}` is not a duration; give seconds (600), or 90s, 10m, 1.5h or 1h30m");
    let t = text.trim();
    if t.is_empty() {
        return Err(bad());
    }
    if let Ok(s) = t.parse::<f64>() {
        return Ok(s);
    }
    let (mut total, mut number) = (0.0, String::new());
    for ch in t.chars() {
        if ch.is_ascii_digit() || ch == '.' {
            number.push(ch);
            continue;
        }
        let unit = match ch {
            's' => 1.0,
            'm' => 60.0,
            'h' => 3600.0,
            _ => return Err(bad()),
        };
        let value: f64 = number.parse().map_err(|_| bad())?;
        total += value * unit;
        number.clear();
    }
    if !number.is_empty() {
        return Err(bad());
    }
    Ok(total)
}

/// Times `f` once.
pub(crate) fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_form_and_refuse_the_rest() {
        assert_eq!(parse_duration("600"), Ok(600.0));
        assert_eq!(parse_duration("90s"), Ok(90.0));
        assert_eq!(parse_duration("10m"), Ok(600.0));
        assert_eq!(parse_duration("1.5h"), Ok(5400.0));
        assert_eq!(parse_duration("1h30m"), Ok(5400.0));
        for bad in ["abc", "", "10x", "m", "10m5"] {
            assert!(
                parse_duration(bad).unwrap_err().contains("not a duration"),
                "{bad}"
            );
        }
        assert_eq!(duration_words(45.2), "45 s");
        assert_eq!(duration_words(380.0), "6 min 20 s");
        assert_eq!(duration_words(3900.0), "1 h 05 min");
    }

    #[test]
    fn the_epochs_within_a_budget_fit_it_and_one_more_would_not() {
        let pace = Pace {
            step_seconds: 0.2,
            epoch_start_seconds: 0.1,
            val_image_seconds: 0.05,
        };
        let every = |e: usize| (e / 20).max(1);
        let epochs = pace.epochs_within(600.0, 3, 4, every);
        let config = |epochs| TrainConfig {
            epochs,
            batch_size: 4,
            val_every: every(epochs),
            ..TrainConfig::default()
        };
        assert!(pace.expected_seconds(&config(epochs), 12, 4) <= 600.0);
        assert!(pace.expected_seconds(&config(epochs + 1), 12, 4) > 600.0);
        assert_eq!(validations(10, 3), 4);
        assert_eq!(validations(9, 3), 3);
        // A budget below one epoch still trains one.
        assert_eq!(pace.epochs_within(0.01, 3, 4, every), 1);
    }
}
