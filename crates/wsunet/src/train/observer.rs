//! How a training run reports progress, kept apart from any user interface:
//! the CLI's progress bars implement [`Observer`], library callers may use
//! [`Silent`].

use super::confusion::SegScores;
use super::state::EpochRecord;

/// What a training run reports as it goes. Every method has an empty
/// default, so an observer implements what it shows.
pub trait Observer {
    /// A line of information (data summary, warnings, resume point).
    fn info(&mut self, _line: &str) {}
    /// An epoch of `batches` batches starts.
    fn epoch_start(&mut self, _epoch: usize, _epochs: usize, _batches: usize) {}
    /// A training batch finished.
    fn batch(&mut self, _done: usize, _loss: f64, _images_per_sec: f64, _lr: f64) {}
    /// Validation of `batches` batches starts.
    fn validation_start(&mut self, _batches: usize) {}
    /// A validation batch finished.
    fn validation_batch(&mut self, _done: usize) {}
    /// An epoch finished without validation (`val_every` > 1): its
    /// training loss, learning rate, images/s and seconds.
    fn epoch_trained(&mut self, _epoch: usize, _loss: f64, _lr: f64, _rate: f64, _seconds: f64) {}
    /// An epoch finished and was validated and checkpointed.
    fn epoch_end(&mut self, _record: &EpochRecord, _scores: &SegScores, _is_best: bool) {}
    /// Asked after each finished epoch: `true` stops the run there (an epoch
    /// that `val_every` would skip is validated and checkpointed first), to
    /// be continued later with `--resume`.
    fn should_stop(&mut self) -> bool {
        false
    }
}

/// An observer that shows nothing.
pub struct Silent;

impl Observer for Silent {}
