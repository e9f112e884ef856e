//! Progress display: bars on a terminal, plain log lines otherwise (CI,
//! files), so output stays readable either way.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use wsunet::train::{EpochRecord, Observer, SegScores};

/// Whether progress bars can be drawn (stderr is a terminal).
pub fn interactive() -> bool {
    std::io::stderr().is_terminal()
}

/// The one bar style: a label (`{label}`: a template key such as `{msg}`),
/// the bar, the count, `extra` and the time left.
fn style(label: &str, extra: &str) -> ProgressStyle {
    ProgressStyle::with_template(&format!(
        "{label} [{{bar:30}}] {{pos}}/{{len}} {extra} eta {{eta}}"
    ))
    .expect("valid template")
    .progress_chars("=> ")
}

/// A bar over `len` steps with a message; hidden when not on a terminal, so
/// logs and CI output stay clean.
pub fn bar(len: u64, message: &'static str) -> ProgressBar {
    let target = if interactive() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    bar.set_style(style("{msg:>16}", "{per_sec}"));
    bar.set_message(message);
    bar
}

/// Seconds as `1h 02m`, `3m 05s` or `12s`.
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match (s / 3600, (s / 60) % 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, min, sec) => format!("{min}m {sec:02}s"),
        (h, min, _) => format!("{h}h {min:02}m"),
    }
}

/// Bars drawn together, one line each (an image bar and its tile bar),
/// hidden when not on a terminal.
pub fn multi() -> MultiProgress {
    MultiProgress::with_draw_target(if interactive() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    })
}

/// Shows training: a bar per epoch with loss and images/s on a terminal,
/// a line per quarter epoch otherwise; a summary line per epoch always.
pub struct TrainProgress {
    bar: Option<ProgressBar>,
    interactive: bool,
    epoch: usize,
    epochs: usize,
    batches: usize,
    last_line: Instant,
    stop: &'static AtomicUsize,
}

impl TrainProgress {
    /// Progress for a run that stops after the current epoch once `stop`
    /// (a count of stop requests) is non-zero.
    pub fn new(stop: &'static AtomicUsize) -> Self {
        TrainProgress {
            bar: None,
            interactive: interactive(),
            epoch: 0,
            epochs: 0,
            batches: 0,
            last_line: Instant::now(),
            stop,
        }
    }

    fn new_bar(&mut self, len: usize, prefix: String) {
        if let Some(old) = self.bar.take() {
            old.finish_and_clear();
        }
        if !self.interactive {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
        bar.set_style(style("{prefix:>13}", "{msg}"));
        bar.set_prefix(prefix);
        self.bar = Some(bar);
    }

    fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => println!("{line}"),
        }
    }
}

impl Observer for TrainProgress {
    fn info(&mut self, line: &str) {
        self.println(line);
    }

    fn epoch_start(&mut self, epoch: usize, epochs: usize, batches: usize) {
        (self.epoch, self.epochs, self.batches) = (epoch, epochs, batches);
        self.new_bar(batches, format!("epoch {epoch}/{epochs}"));
        self.last_line = Instant::now();
    }

    fn batch(&mut self, done: usize, loss: f64, images_per_sec: f64, lr: f64) {
        let msg = format!("loss {loss:.4} {images_per_sec:.1} img/s lr {lr:.2e}");
        match &self.bar {
            Some(bar) => {
                bar.set_position(done as u64);
                bar.set_message(msg);
            }
            None => {
                let quarter = self.batches.div_ceil(4).max(1);
                if done.is_multiple_of(quarter) && done < self.batches {
                    println!(
                        "epoch {}/{} batch {done}/{}: {msg}",
                        self.epoch, self.epochs, self.batches
                    );
                }
            }
        }
    }

    fn validation_start(&mut self, batches: usize) {
        self.new_bar(batches, "validation".into());
    }

    fn validation_batch(&mut self, done: usize) {
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
        }
    }

    fn should_stop(&mut self) -> bool {
        self.stop.load(Ordering::SeqCst) > 0
    }

    fn epoch_trained(&mut self, epoch: usize, loss: f64, lr: f64, rate: f64, seconds: f64) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        println!(
            "epoch {epoch}/{}  train loss {loss:.4}  (not validated: --val-every)  lr {lr:.2e}  {rate:.1} img/s  {seconds:.1} s",
            self.epochs
        );
    }

    fn epoch_end(&mut self, r: &EpochRecord, _scores: &SegScores, is_best: bool) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let ap50 = r
            .ap50
            .map(|a| format!("  AP50 {:.2}%", 100.0 * a))
            .unwrap_or_default();
        println!(
            "epoch {}/{}  train loss {:.4}  val loss {:.4}  mIoU {:.2}%{ap50}  Dice {:.2}%  acc {:.2}%  lr {:.2e}  {:.1} img/s  {:.1} s{}",
            r.epoch,
            self.epochs,
            r.train_loss,
            r.val_loss,
            100.0 * r.miou,
            100.0 * r.mean_dice,
            100.0 * r.pixel_accuracy,
            r.lr,
            r.images_per_sec,
            r.seconds,
            if is_best { "  (best)" } else { "" }
        );
    }
}
