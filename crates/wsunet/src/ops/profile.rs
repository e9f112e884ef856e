//! Wall time of every CPU kernel call, summed per op and shape: the data of
//! `wsunet bench --layers` (the per-layer roofline).
//!
//! Off by default, where a call costs one thread-local read. Between
//! [`start`] and [`stop`] each kernel call of `ops/` made on the thread that
//! called [`start`] (Flex is eager: the kernels run one after another on the
//! thread that runs the model, forward and backward, splitting their own
//! work over rayon) adds its time, its floating-point operations and the
//! bytes it must at least read and write to the row of its op and shape.
//! Calls on other threads are not recorded.

use std::cell::Cell;
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

thread_local! {
    /// This thread records now.
    static ON: Cell<bool> = const { Cell::new(false) };
    /// This thread is between [`start`] and [`stop`] (recording unless
    /// paused).
    static STARTED: Cell<bool> = const { Cell::new(false) };
}
static TABLE: Mutex<Vec<KernelTime>> = Mutex::new(Vec::new());

/// Held by each test that starts the profiler, so that one test's [`start`]
/// does not clear another's rows.
#[cfg(test)]
pub(crate) static EXCLUSIVE: Mutex<()> = Mutex::new(());

/// One op at one shape, summed over its calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelTime {
    /// The op and pass: `conv forward`, `conv input gradient`,
    /// `group norm backward`, ….
    pub op: String,
    /// The shape it ran on, e.g. `2×64×64×64 → 64, 3×3 /1`.
    pub shape: String,
    /// Calls.
    pub calls: usize,
    /// Wall time of all calls, milliseconds.
    pub ms: f64,
    /// Floating-point operations of all calls (a multiply-add counts two;
    /// 0 for ops whose cost is memory traffic).
    pub flops: f64,
    /// The least bytes all calls must read and write (each input and
    /// output once).
    pub bytes: f64,
}

/// What one call did, for its row: shape, floating-point operations,
/// bytes.
pub(crate) type Work = (String, f64, f64);

/// Runs `f`, and when profiling adds its time and `work()` to the row of
/// `op` and `work().0`. `work` runs after `f`, outside the timing.
pub(crate) fn timed<R>(op: &'static str, work: impl FnOnce() -> Work, f: impl FnOnce() -> R) -> R {
    if !ON.get() {
        return f();
    }
    let start = Instant::now();
    let r = f();
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let (shape, flops, bytes) = work();
    let mut table = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    match table.iter_mut().find(|k| k.op == op && k.shape == shape) {
        Some(k) => {
            k.calls += 1;
            k.ms += ms;
            k.flops += flops;
            k.bytes += bytes;
        }
        None => table.push(KernelTime {
            op: op.into(),
            shape,
            calls: 1,
            ms,
            flops,
            bytes,
        }),
    }
    r
}

/// `N×C×H×W` of a shape.
pub(crate) fn dims([n, c, h, w]: [usize; 4]) -> String {
    format!("{n}×{c}×{h}×{w}")
}

/// Bytes of `values` `f32`s.
pub(crate) fn f32_bytes(values: usize) -> f64 {
    4.0 * values as f64
}

/// Clears the table and starts recording this thread's kernel calls.
pub fn start() {
    TABLE.lock().unwrap_or_else(|e| e.into_inner()).clear();
    STARTED.set(true);
    ON.set(true);
}

/// Between [`start`] and [`stop`], stops (`true`) or resumes (`false`)
/// recording; does nothing otherwise.
pub fn pause(paused: bool) {
    if STARTED.get() {
        ON.set(!paused);
    }
}

/// Stops recording and returns the rows, in the order their first call
/// ran.
pub fn stop() -> Vec<KernelTime> {
    STARTED.set(false);
    ON.set(false);
    std::mem::take(&mut *TABLE.lock().unwrap_or_else(|e| e.into_inner()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_of_one_op_and_shape_sum_into_one_row() {
        let _only = EXCLUSIVE.lock().unwrap_or_else(|e| e.into_inner());
        // Other tests may run kernels meanwhile: look at this test's rows only.
        start();
        for _ in 0..3 {
            timed("profile test op", || ("1×1×1×1".into(), 2.0, 8.0), || ());
        }
        timed("profile test op", || ("2×1×1×1".into(), 4.0, 16.0), || ());
        let rows: Vec<KernelTime> = stop()
            .into_iter()
            .filter(|k| k.op == "profile test op")
            .collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].calls, rows[0].flops, rows[0].bytes),
            (3, 6.0, 24.0)
        );
        assert_eq!((rows[1].calls, rows[1].shape.as_str()), (1, "2×1×1×1"));
        // Off again, or paused: nothing is recorded; resuming records.
        timed("profile test op", || ("1×1×1×1".into(), 2.0, 8.0), || ());
        start();
        pause(true);
        timed("profile test op", || ("1×1×1×1".into(), 2.0, 8.0), || ());
        pause(false);
        timed("profile test op", || ("3×1×1×1".into(), 2.0, 8.0), || ());
        let rows: Vec<String> = stop()
            .into_iter()
            .filter(|k| k.op == "profile test op")
            .map(|k| k.shape)
            .collect();
        assert_eq!(rows, ["3×1×1×1"]);
        pause(false);
        assert!(!ON.get(), "pause outside a profile");
        // Another thread's calls are not recorded.
        start();
        std::thread::spawn(|| timed("profile test op", || ("4×1×1×1".into(), 2.0, 8.0), || ()))
            .join()
            .unwrap();
        assert!(stop().iter().all(|k| k.op != "profile test op"));
    }
}
