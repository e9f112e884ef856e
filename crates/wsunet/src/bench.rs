//! Whole-model speed measurements, shared by `wsunet bench` and comparable
//! with `python/bench_torch.py` (same phases, same JSON).
//!
//! Three phases, each warmed up and then timed several times (the median is
//! the result):
//! - `inference`: the folded model (standardized kernels computed once),
//!   without autodiff;
//! - `train_forward`: the training model's forward on the autodiff device
//!   (standardization and the graph for backward included);
//! - `train_step`: forward, cross-entropy, backward and an AdamW update.
//!
//! Every timed repetition ends by reading a value back, so GPU work is
//! finished inside the timing. The peak resident memory of each phase is
//! read from `/proc/self/status` after resetting it (Linux only; `None`
//! elsewhere).

use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{WsResUNet, WsResUNetConfig};
use crate::ops::profile::{self, KernelTime};
use crate::train::loss::{LossKind, SegLoss};

/// What to measure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchConfig {
    /// The architecture.
    pub model: WsResUNetConfig,
    /// Images per batch.
    pub batch: usize,
    /// Input height and width.
    pub size: [usize; 2],
    /// Untimed repetitions before timing.
    pub warmup: usize,
    /// Timed repetitions.
    pub reps: usize,
    /// `false`: every WsConv2d runs as a plain convolution (the same network
    /// without weight standardization), to measure what WS costs.
    pub standardize: bool,
    /// Phases to run: any of `inference`, `train_forward`, `train_step`.
    pub phases: Vec<String>,
    /// Also time every CPU kernel call of the timed repetitions (the
    /// per-layer roofline, [`PhaseResult::kernels`]) and this machine's FMA
    /// peak ([`BenchReport::fma_peak_gflops`]).
    #[serde(default)]
    pub layers: bool,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            model: WsResUNetConfig::new(4),
            batch: 2,
            size: [256, 256],
            warmup: 2,
            reps: 5,
            standardize: true,
            phases: PHASES.iter().map(|s| s.to_string()).collect(),
            layers: false,
        }
    }
}

/// The phases, in the order they run.
pub const PHASES: [&str; 3] = ["inference", "train_forward", "train_step"];

/// One phase's timings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseResult {
    /// Phase name.
    pub phase: String,
    /// Median time of one repetition, milliseconds.
    pub median_ms: f64,
    /// Fastest repetition, milliseconds.
    pub min_ms: f64,
    /// Slowest repetition, milliseconds.
    pub max_ms: f64,
    /// Images per second at the median.
    pub images_per_s: f64,
    /// Peak resident memory during the phase, MiB (Linux).
    pub peak_rss_mib: Option<f64>,
    /// Where a repetition's time goes (`train_step`: forward, loss,
    /// backward, optimizer), each part's median over the timed repetitions.
    /// The parts are timed with a read-back after each, so on a GPU they
    /// add up to a little more than the phase's median.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<PartTime>,
    /// With [`BenchConfig::layers`]: the CPU kernels' calls, time,
    /// operations and bytes per repetition (each the mean over the timed
    /// repetitions), in the order they first ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernels: Option<Kernels>,
}

/// The CPU kernels of a phase's repetition ([`crate::ops::profile`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kernels {
    /// Mean time of a timed repetition, milliseconds: what the kernels'
    /// shares are of.
    pub mean_ms: f64,
    /// One row per op and shape; `calls`, `ms`, `flops` and `bytes` per
    /// repetition.
    pub rows: Vec<KernelTime>,
}

/// One part of a phase's repetition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartTime {
    /// What the part does.
    pub part: String,
    /// Median time, milliseconds.
    pub median_ms: f64,
}

/// A benchmark run: settings and results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// `wsunet` (or `pytorch` for the twin's script).
    pub tool: String,
    /// The device as given.
    pub device: String,
    /// CPU threads available to the backend.
    pub threads: usize,
    /// Parameters of the model.
    pub parameters: usize,
    /// The settings.
    pub config: BenchConfig,
    /// One entry per phase.
    pub results: Vec<PhaseResult>,
    /// With [`BenchConfig::layers`]: this machine's measured peak of `f32`
    /// fused multiply-adds on all threads ([`fma_peak_gflops`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fma_peak_gflops: Option<f64>,
}

/// Runs the phases of `config` on `device` (named `device_name` in the
/// report). `progress` is told each phase's name before it runs.
pub fn run_bench(
    config: &BenchConfig,
    device: &Device,
    device_name: &str,
    progress: &mut dyn FnMut(&str),
) -> Result<BenchReport> {
    if config.batch == 0 || config.reps == 0 {
        let field = if config.batch == 0 { "batch" } else { "reps" };
        return Err(Error::setting(field, "batch and reps must be at least 1"));
    }
    if let Some(bad) = config.phases.iter().find(|p| !PHASES.contains(&p.as_str())) {
        return Err(Error::setting(
            "phases",
            format!("unknown phase `{bad}`; use {}", PHASES.join(", ")),
        ));
    }
    let [h, w] = config.size;
    let dims = [config.batch, config.model.in_channels, h, w];
    let model = config.model.init_seeded(device, 0)?;
    model.check_input(dims)?;
    // Calibration and the training phases run BatchNorm in training mode.
    config.model.check_batch(config.batch, config.size)?;
    let parameters = model.num_params();
    let mut results = Vec::new();
    for phase in PHASES {
        if !config.phases.iter().any(|p| p == phase) {
            continue;
        }
        progress(phase);
        let result = match phase {
            "inference" => {
                let x = Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), device);
                let folded = calibrated(&model, config, device).fold();
                time_phase(phase, config, || {
                    sync(folded.forward(x.clone()));
                    None
                })
            }
            "train_forward" => {
                let (trained, x) = training_setup(config, device, dims)?;
                // Burn frees a forward's graph at the next backward: run one,
                // untimed, so graphs do not pile up between repetitions.
                time_phase(phase, config, || {
                    let y = trained.forward(x.clone());
                    sync(y.clone());
                    Some(Box::new(move || {
                        let _ = y.sum().backward();
                    }) as Box<dyn FnOnce()>)
                })
            }
            _ => {
                let (trained, x) = training_setup(config, device, dims)?;
                let target = Tensor::<3, Int>::random(
                    [config.batch, h, w],
                    Distribution::Uniform(0.0, config.model.num_classes as f64),
                    &x.device(),
                );
                let loss_fn = SegLoss::new(LossKind::Ce, -1);
                let mut optim = crate::train::default_optimizer();
                let mut model = Some(trained);
                let mut parts: Vec<[f64; 4]> = Vec::new();
                let mut result = time_phase(phase, config, || {
                    let m = model.take().expect("model");
                    let mut clock = Clock::start();
                    let y = m.forward(x.clone());
                    sync(y.clone());
                    let forward = clock.lap();
                    let loss = loss_fn.forward(y, target.clone());
                    let _ = loss.clone().into_data();
                    let loss_ms = clock.lap();
                    let grads = GradientsParams::from_grads(loss.backward(), &m);
                    let backward = clock.lap();
                    let m = optim.step(1e-4, m, grads);
                    // Reading an updated parameter waits for the update.
                    sync(m.head.weight.val());
                    parts.push([forward, loss_ms, backward, clock.lap()]);
                    model = Some(m);
                    None
                });
                let timed = &parts[config.warmup.min(parts.len())..];
                result.parts = ["forward", "loss", "backward", "optimizer"]
                    .iter()
                    .enumerate()
                    .map(|(i, part)| PartTime {
                        part: part.to_string(),
                        median_ms: median(&mut timed.iter().map(|p| p[i]).collect::<Vec<_>>()),
                    })
                    .collect();
                result
            }
        };
        results.push(result);
    }
    Ok(BenchReport {
        tool: "wsunet".into(),
        device: device_name.into(),
        threads: rayon::current_num_threads(),
        parameters,
        config: config.clone(),
        results,
        fma_peak_gflops: if config.layers {
            fma_peak_gflops()
        } else {
            None
        },
    })
}

/// Independent chains of fused multiply-adds per thread in
/// [`fma_peak_gflops`]: enough to cover the FMA latency (4 cycles) on two
/// FMA ports, and few enough to stay in registers.
#[cfg(target_arch = "x86_64")]
const CHAINS: usize = 12;

/// This machine's peak rate of `f32` fused multiply-adds on all rayon
/// threads, GFLOP/s (a multiply-add counts two): 12 independent
/// chains of FMAs on the widest vectors the CPU has (AVX-512 or AVX2),
/// every thread at once, the best of five rounds of about 0.1 s (their
/// length set by a shorter first round). The
/// ceiling of any `f32` convolution here. `None` without FMA (or off
/// x86-64).
pub fn fma_peak_gflops() -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        let avx512 = std::is_x86_feature_detected!("avx512f");
        if !std::is_x86_feature_detected!("fma")
            || !(avx512 || std::is_x86_feature_detected!("avx2"))
        {
            return None;
        }
        let lanes = if avx512 { 16 } else { 8 };
        // One round of `iters` rounds of FMAs on every thread: its GFLOP/s and
        // seconds.
        let round = |iters: usize| {
            let start = Instant::now();
            let sums = rayon::broadcast(|_| {
                if avx512 {
                    // SAFETY: needs AVX-512F only, which the CPU has
                    // (checked above).
                    unsafe { fma_chains_avx512(iters) }
                } else {
                    // SAFETY: needs AVX and FMA only, which the CPU has
                    // (AVX2 implies AVX; both checked above).
                    unsafe { fma_chains_avx2(iters) }
                }
            });
            let seconds = start.elapsed().as_secs_f64();
            std::hint::black_box(sums);
            let flops = (2 * lanes * CHAINS * iters * rayon::current_num_threads()) as f64;
            (flops / seconds / 1e9, seconds)
        };
        // Rounds of about 0.1 s wherever it runs (an emulated CPU is
        // hundreds of times slower): grow the count from a short round.
        let mut iters = 20_000;
        loop {
            let seconds = round(iters).1;
            if seconds >= 0.025 || iters >= 1 << 28 {
                iters = (iters as f64 * (0.1 / seconds.max(1e-9)).clamp(1.0, 16.0)) as usize;
                break;
            }
            iters *= 8;
        }
        let best = (0..5).map(|_| round(iters).0).fold(0.0, f64::max);
        Some(best)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// `iters` rounds of one FMA on each of [`CHAINS`] 16-lane accumulators.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn fma_chains_avx512(iters: usize) -> f32 {
    use std::arch::x86_64::*;
    let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-6));
    let mut acc = [_mm512_setzero_ps(); CHAINS];
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm512_fmadd_ps(*v, a, b);
        }
    }
    acc.iter().map(|&v| _mm512_reduce_add_ps(v)).sum()
}

/// `iters` rounds of one FMA on each of [`CHAINS`] 8-lane accumulators.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,fma")]
fn fma_chains_avx2(iters: usize) -> f32 {
    use std::arch::x86_64::*;
    let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-6));
    let mut acc = [_mm256_setzero_ps(); CHAINS];
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm256_fmadd_ps(*v, a, b);
        }
    }
    let mut lanes = [0.0f32; 8];
    let mut total = 0.0;
    for &v in &acc {
        // SAFETY: `lanes` holds exactly the 8 f32 an __m256 stores.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
        total += lanes.iter().sum::<f32>();
    }
    total
}

/// The model the `inference` phase times, before folding: the seeded
/// initialization of `config.model`, with a BatchNorm model's running
/// statistics calibrated (see `calibrated`). The same model on every call:
/// `wsunet bench --onnx` exports it, so that another engine times exactly
/// the network the phase times.
pub fn inference_model(config: &BenchConfig, device: &Device) -> Result<WsResUNet> {
    let [h, w] = config.size;
    let model = config.model.init_seeded(device, 0)?;
    model.check_input([config.batch.max(1), config.model.in_channels, h, w])?;
    config.model.check_batch(config.batch.max(1), config.size)?;
    Ok(calibrated(&model, config, device))
}

/// Training-mode forwards that bring a BatchNorm model's running statistics
/// (0 and 1 when fresh) to within 1 % of a batch's: with the fresh ones a
/// WS network's activations are not normalized at all, and the inference
/// timing would measure arithmetic on values no trained model produces. The
/// batch is the configured shape of standard normal values from a fixed
/// seed, so the result depends on `config` alone.
fn calibrated(model: &WsResUNet, config: &BenchConfig, device: &Device) -> WsResUNet {
    if config.model.norm != crate::layers::Norm::Batch {
        return model.clone();
    }
    let ad = device.clone().autodiff();
    // Without gradients no graph is kept, but BatchNorm still sees an
    // autodiff device: training mode.
    let training = model.clone().fork(&ad).no_grad();
    let [h, w] = config.size;
    let dims = [config.batch.max(1), config.model.in_channels, h, w];
    let mut rng = crate::rng::item_rng(0, 0);
    let values: Vec<f32> = (0..dims.iter().product())
        .map(|_| crate::rng::normal(&mut rng))
        .collect();
    let x = Tensor::<4>::from_data(burn::tensor::TensorData::new(values, dims), &ad);
    // 0.9^44 < 1 %.
    for _ in 0..44 {
        let _ = training.forward(x.clone()).detach();
    }
    training.valid()
}

/// Cleanup to run after a timed repetition, outside the timing.
type Untimed = Option<Box<dyn FnOnce()>>;

fn time_phase(phase: &str, config: &BenchConfig, mut step: impl FnMut() -> Untimed) -> PhaseResult {
    reset_peak_rss();
    for _ in 0..config.warmup {
        if let Some(cleanup) = step() {
            cleanup();
        }
    }
    if config.layers {
        profile::start();
    }
    let mut times: Vec<f64> = (0..config.reps)
        .map(|_| {
            let start = Instant::now();
            let cleanup = step();
            let elapsed = start.elapsed().as_secs_f64() * 1e3;
            if let Some(cleanup) = cleanup {
                // Outside the timing, and outside the profile.
                profile::pause(true);
                cleanup();
                profile::pause(false);
            }
            elapsed
        })
        .collect();
    let kernels = config.layers.then(|| {
        let reps = config.reps as f64;
        let rows = profile::stop()
            .into_iter()
            .map(|k| KernelTime {
                calls: k.calls / config.reps,
                ms: k.ms / reps,
                flops: k.flops / reps,
                bytes: k.bytes / reps,
                ..k
            })
            .collect();
        Kernels {
            mean_ms: times.iter().sum::<f64>() / reps,
            rows,
        }
    });
    let median = median(&mut times);
    PhaseResult {
        phase: phase.into(),
        median_ms: median,
        min_ms: times[0],
        max_ms: times[times.len() - 1],
        images_per_s: config.batch as f64 / (median / 1e3),
        peak_rss_mib: peak_rss_mib(),
        parts: Vec::new(),
        kernels,
    }
}

/// The median of `times` (the mean of the middle two for an even count),
/// which it leaves sorted.
fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    match times.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => times[n / 2],
        n => (times[n / 2 - 1] + times[n / 2]) / 2.0,
    }
}

/// Milliseconds between laps.
struct Clock(Instant);

impl Clock {
    fn start() -> Self {
        Clock(Instant::now())
    }

    /// Milliseconds since the start or the last lap.
    fn lap(&mut self) -> f64 {
        let now = Instant::now();
        let ms = (now - self.0).as_secs_f64() * 1e3;
        self.0 = now;
        ms
    }
}

/// Waits for `t` to be computed (reads one value back).
fn sync(t: Tensor<4>) {
    let _ = t.slice([0..1, 0..1, 0..1, 0..1]).into_data();
}

/// The training model (plain convolutions when standardization is off) and
/// an input batch, on the autodiff device.
fn training_setup(
    config: &BenchConfig,
    device: &Device,
    dims: [usize; 4],
) -> Result<(WsResUNet, Tensor<4>)> {
    let ad = device.clone().autodiff();
    let model = if config.standardize {
        config.model.clone()
    } else {
        // Plain convolutions; the norm stays (folding would merge a BatchNorm).
        config
            .model
            .clone()
            .with_standardization(crate::layers::Standardization::None)
    };
    let model = model.init_seeded(&ad, 0)?;
    let x = Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &ad);
    Ok((model, x))
}

/// Resets the kernel's peak-RSS counter of this process (Linux ≥ 4.0).
pub(crate) fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident memory since the last reset, MiB (Linux).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

impl BenchReport {
    /// A plain-text table of the results.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{} on {}: {} parameters, batch {}, {}×{}×{}, variant {}, median of {} after {} warm-up\n",
            self.tool,
            // The device line names the threads when it knows them.
            if self.device.contains("threads") {
                self.device.clone()
            } else {
                format!("{} ({} threads)", self.device, self.threads)
            },
            self.parameters,
            self.config.batch,
            self.config.model.in_channels,
            self.config.size[0],
            self.config.size[1],
            // --no-ws runs the same norm with plain convolutions.
            crate::model::Variant::new(
                self.config.standardize && self.config.model.variant().ws,
                self.config.model.norm
            ),
            self.config.reps,
            self.config.warmup
        );
        out.push_str(&format!(
            "{:<14} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
            "phase", "median ms", "min ms", "max ms", "images/s", "peak MiB"
        ));
        for r in &self.results {
            out.push_str(&format!(
                "{:<14} {:>10.1} {:>10.1} {:>10.1} {:>10.2} {:>10}\n",
                r.phase,
                r.median_ms,
                r.min_ms,
                r.max_ms,
                r.images_per_s,
                r.peak_rss_mib
                    .map(|m| format!("{m:.0}"))
                    .unwrap_or_else(|| "-".into())
            ));
        }
        for r in self.results.iter().filter(|r| !r.parts.is_empty()) {
            let parts: Vec<String> = r
                .parts
                .iter()
                .map(|p| format!("{} {:.1}", p.part, p.median_ms))
                .collect();
            out.push_str(&format!(
                "{} parts, ms (medians): {}\n",
                r.phase,
                parts.join(", ")
            ));
        }
        for r in &self.results {
            if let Some(k) = &r.kernels {
                out.push_str(&k.table(&r.phase, self.fma_peak_gflops));
            }
        }
        out
    }
}

impl Kernels {
    /// The per-layer roofline of `phase`: one line per kernel and shape
    /// (time, share of the repetition, GFLOP/s and its share of `peak`,
    /// GB/s), then the same summed per op, the time outside the kernels,
    /// and the whole repetition's arithmetic rate.
    pub fn table(&self, phase: &str, peak: Option<f64>) -> String {
        let share = |ms: f64| 100.0 * ms / self.mean_ms;
        let rate = |flops: f64, ms: f64| flops / (ms * 1e6);
        let of_peak = |gflops: f64| match peak {
            Some(p) if gflops > 0.0 => format!("{:.0} %", 100.0 * gflops / p),
            _ => "-".into(),
        };
        let line = |op: &str, shape: &str, calls: String, k: &KernelTime| {
            let gflops = rate(k.flops, k.ms);
            format!(
                "{op:<32} {shape:<40} {calls:>5} {:>8.2} {:>6.1} % {:>8} {:>7} {:>7.1}\n",
                k.ms,
                share(k.ms),
                if k.flops > 0.0 {
                    format!("{gflops:.0}")
                } else {
                    "-".into()
                },
                of_peak(gflops),
                k.bytes / (k.ms * 1e6),
            )
        };
        let mut out = format!(
            "\n{phase}: CPU kernels per repetition (mean of the timed repetitions, {:.1} ms){}\n",
            self.mean_ms,
            match peak {
                Some(p) => format!("; this machine's FMA peak {p:.0} GFLOP/s"),
                None => String::new(),
            }
        );
        // Winograd's layers do 2.25× fewer multiplies than they are
        // credited with, so their rate may pass the peak.
        out.push_str(
            "(GFLOP count a convolution's direct multiply-adds, 2·n·co·ho·wo·ci·k²: \
             effective rates for the 3×3 layers that run Winograd's F(2×2, 3×3))\n",
        );
        let header = format!(
            "{:<32} {:<40} {:>5} {:>8} {:>8} {:>8} {:>7} {:>7}\n",
            "kernel", "shape", "calls", "ms", "share", "GFLOP/s", "% peak", "GB/s"
        );
        out.push_str(&header);
        for k in &self.rows {
            out.push_str(&line(&k.op, &k.shape, k.calls.to_string(), k));
        }
        out.push_str(&format!("\n{phase}: the same, summed per kernel\n"));
        out.push_str(&header);
        let mut ops: Vec<KernelTime> = Vec::new();
        for k in &self.rows {
            match ops.iter_mut().find(|o| o.op == k.op) {
                Some(o) => {
                    o.calls += k.calls;
                    o.ms += k.ms;
                    o.flops += k.flops;
                    o.bytes += k.bytes;
                }
                None => ops.push(KernelTime {
                    shape: String::new(),
                    ..k.clone()
                }),
            }
        }
        for o in &ops {
            out.push_str(&line(&o.op, "", o.calls.to_string(), o));
        }
        let kernels_ms: f64 = ops.iter().map(|o| o.ms).sum();
        let flops: f64 = ops.iter().map(|o| o.flops).sum();
        out.push_str(&format!(
            "{:<32} {:<40} {:>5} {:>8.2} {:>6.1} %\n",
            "outside these kernels",
            "Burn's ops, copies, the graph",
            "",
            self.mean_ms - kernels_ms,
            share(self.mean_ms - kernels_ms)
        ));
        let whole = rate(flops, self.mean_ms);
        out.push_str(&format!(
            "{phase}: {:.2} GFLOP per repetition in {:.1} ms: {whole:.0} GFLOP/s{}\n",
            flops / 1e9,
            self.mean_ms,
            match peak {
                Some(p) => format!(
                    ", {:.0} % of the FMA peak (it would take {:.1} ms at the peak)",
                    100.0 * whole / p,
                    flops / (p * 1e6)
                ),
                None => String::new(),
            }
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tiny_bench_runs_every_phase() {
        let config = BenchConfig {
            model: WsResUNetConfig::new(2)
                .with_widths(vec![4, 8, 8, 8, 8])
                .with_groups(2),
            batch: 1,
            size: [32, 48],
            warmup: 1,
            reps: 3,
            ..BenchConfig::default()
        };
        let mut seen = Vec::new();
        let report = run_bench(&config, &Device::flex(), "cpu", &mut |p| {
            seen.push(p.to_string())
        })
        .unwrap();
        assert_eq!(seen, PHASES);
        assert_eq!(report.results.len(), 3);
        for r in &report.results {
            assert!(r.min_ms <= r.median_ms && r.median_ms <= r.max_ms, "{r:?}");
            assert!(r.images_per_s > 0.0);
        }
        let text = report.table();
        assert!(text.contains("train_step"), "{text}");
        let unknown = BenchConfig {
            phases: vec!["bogus".into()],
            ..config
        };
        let err = run_bench(&unknown, &Device::flex(), "cpu", &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown phase `bogus`"), "{err}");
    }

    /// `layers` lists every kernel of the timed repetitions, per
    /// repetition: the train step's weight gradients do every convolution's
    /// multiply-adds once, its input gradients all but the stem's, and the
    /// inference phase has no backward.
    #[test]
    fn the_roofline_lists_every_kernel_of_a_repetition() {
        let _only = profile::EXCLUSIVE.lock().unwrap_or_else(|e| e.into_inner());
        let config = BenchConfig {
            model: WsResUNetConfig::new(2)
                .with_widths(vec![4, 8, 8, 8, 8])
                .with_groups(2),
            batch: 2,
            size: [32, 32],
            warmup: 1,
            reps: 2,
            phases: vec!["inference".into(), "train_step".into()],
            layers: true,
            ..BenchConfig::default()
        };
        let report = run_bench(&config, &Device::flex(), "cpu", &mut |_| {}).unwrap();
        let kernels = |phase: &str| {
            let r = report.results.iter().find(|r| r.phase == phase).unwrap();
            r.kernels.clone().expect("kernels with `layers`")
        };
        let sum = |k: &Kernels, op: &str, f: fn(&KernelTime) -> f64| -> f64 {
            k.rows.iter().filter(|r| r.op == op).map(f).sum()
        };
        let step = kernels("train_step");
        let forward = sum(&step, "conv forward", |k| k.flops);
        assert!(forward > 0.0);
        assert_eq!(sum(&step, "conv weight gradient", |k| k.flops), forward);
        // The stem, the first convolution, has an input without gradient.
        let stem = step.rows.iter().find(|k| k.op == "conv forward").unwrap();
        assert!(stem.shape.starts_with("2×3×32×32"), "{stem:?}");
        let input = sum(&step, "conv input gradient", |k| k.flops);
        assert_eq!(input, forward - stem.flops);
        for op in [
            "group norm forward",
            "group norm backward",
            "weight standardization forward",
            "resize backward",
            "loss forward",
            "AdamW update",
        ] {
            assert!(sum(&step, op, |k| k.calls as f64) >= 1.0, "{op} missing");
        }
        let kernels_ms: f64 = step.rows.iter().map(|k| k.ms).sum();
        assert!(kernels_ms > 0.0 && kernels_ms <= step.mean_ms * 1.01);
        let inference = kernels("inference");
        // The folded decoder reduces channels before it resizes: no more
        // arithmetic than the training forward.
        let folded = sum(&inference, "conv forward", |k| k.flops);
        assert!(folded > 0.0 && folded <= forward, "{folded} vs {forward}");
        assert_eq!(
            sum(&inference, "conv input gradient", |k| k.calls as f64),
            0.0
        );
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("fma") && std::is_x86_feature_detected!("avx2") {
            // Measured, not looked up: positive, and finite (an emulated CPU
            // in CI measures its emulation's speed).
            let peak = report.fma_peak_gflops.unwrap();
            assert!(peak > 0.0 && peak.is_finite(), "{peak}");
        }
        let text = report.table();
        assert!(
            text.contains("conv weight gradient") && text.contains("% peak"),
            "{text}"
        );
    }

    /// A BatchNorm model's calibration moves its running statistics, and
    /// gives the same model on every call (what `--onnx` exports is what the
    /// inference phase times).
    #[test]
    fn the_inference_model_is_calibrated_and_the_same_every_time() {
        let config = BenchConfig {
            model: WsResUNetConfig::new(2)
                .with_widths(vec![4, 8, 8, 8, 8])
                .with_groups(2)
                .with_norm(crate::layers::Norm::Batch),
            batch: 1,
            size: [64, 64],
            ..BenchConfig::default()
        };
        let device = Device::flex();
        let x = Tensor::<4>::random([1, 3, 64, 64], Distribution::Default, &device);
        let out = |m: WsResUNet| m.forward(x.clone()).into_data();
        let fresh = out(config.model.init_seeded(&device, 0).unwrap());
        let a = out(inference_model(&config, &device).unwrap());
        assert_eq!(a, out(inference_model(&config, &device).unwrap()));
        assert_ne!(a, fresh);
        // One value per channel at /32: an error, not BatchNorm's panic.
        let one = BenchConfig {
            size: [32, 32],
            ..config
        };
        let err = inference_model(&one, &device).unwrap_err().to_string();
        assert!(err.contains("single value per channel"), "{err}");
        let err = run_bench(&one, &device, "cpu", &mut |_| {}).unwrap_err();
        assert!(
            err.to_string().contains("single value per channel"),
            "{err}"
        );
    }
}
