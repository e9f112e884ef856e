//! Learning-rate schedules: linear warmup, then cosine or polynomial decay
//! (or constant). The rate is a pure function of the optimizer step, so a
//! resumed run needs only the step count to continue exactly.

use serde::{Deserialize, Serialize};

/// Decay after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ScheduleKind {
    /// Cosine from the base rate to `min_lr`.
    #[default]
    Cosine,
    /// `(1 − t)^0.9` polynomial decay (DeepLab's "poly").
    Poly,
    /// The base rate throughout.
    Constant,
}

impl ScheduleKind {
    /// Every schedule, in documentation order.
    pub const ALL: [ScheduleKind; 3] = [
        ScheduleKind::Cosine,
        ScheduleKind::Poly,
        ScheduleKind::Constant,
    ];
}

/// A schedule over `total_steps` optimizer steps.
#[derive(Debug, Clone, PartialEq)]
pub struct LrSchedule {
    /// Peak rate, reached at the end of warmup.
    pub base_lr: f64,
    /// Final rate of the decay.
    pub min_lr: f64,
    /// Steps of linear warmup from `base_lr / warmup_steps` to `base_lr`.
    pub warmup_steps: usize,
    /// All steps of the run.
    pub total_steps: usize,
    /// Decay after warmup.
    pub kind: ScheduleKind,
}

/// Power of the polynomial decay.
const POLY_POWER: f64 = 0.9;

impl LrSchedule {
    /// The rate of optimizer step `step` (0-based).
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.base_lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let t = ((step - self.warmup_steps) as f64 / span as f64).min(1.0);
        let range = self.base_lr - self.min_lr;
        match self.kind {
            ScheduleKind::Constant => self.base_lr,
            ScheduleKind::Cosine => {
                self.min_lr + 0.5 * range * (1.0 + (std::f64::consts::PI * t).cos())
            }
            ScheduleKind::Poly => self.min_lr + range * (1.0 - t).powf(POLY_POWER),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(kind: ScheduleKind) -> LrSchedule {
        LrSchedule {
            base_lr: 1e-3,
            min_lr: 1e-5,
            warmup_steps: 10,
            total_steps: 110,
            kind,
        }
    }

    #[test]
    fn warmup_then_decay() {
        for kind in [ScheduleKind::Cosine, ScheduleKind::Poly] {
            let s = schedule(kind);
            assert!((s.lr_at(0) - 1e-4).abs() < 1e-12);
            assert!((s.lr_at(9) - 1e-3).abs() < 1e-12);
            assert!((s.lr_at(10) - 1e-3).abs() < 1e-12);
            assert!((s.lr_at(110) - 1e-5).abs() < 1e-12);
            assert!(
                (1..200).all(|i| i < 10 || s.lr_at(i) <= s.lr_at(i - 1) + 1e-15),
                "{kind:?} not monotone"
            );
        }
        let cosine = schedule(ScheduleKind::Cosine);
        assert!((cosine.lr_at(60) - (1e-5 + 0.5 * (1e-3 - 1e-5))).abs() < 1e-12);
        let poly = schedule(ScheduleKind::Poly);
        assert!((poly.lr_at(60) - (1e-5 + (1e-3 - 1e-5) * 0.5f64.powf(0.9))).abs() < 1e-12);
        assert_eq!(schedule(ScheduleKind::Constant).lr_at(100), 1e-3);
    }
}
