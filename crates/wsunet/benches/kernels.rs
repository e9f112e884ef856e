//! Throughput of the CPU convolution kernels (`wsunet::ops::kernels`, the kernels of `ops/conv.rs`) at the
//! base model's real shapes (batch 2, 3×256×256 input; the rows named
//! `b1 …` are layers of batch-1 inference, where the direct kernel has few
//! output-channel blocks to share each input window), next to this
//! machine's sgemm peak measured with the same `gemm` crate.
//!
//! `cargo bench -p wsunet --bench kernels` (add `-- --quick` for fewer
//! rounds, and names such as `-- stem conv1` for only the layers whose name
//! contains one of them). Prints one markdown table: GFLOP/s = 2 · multiply-adds / median
//! time, for the forward, the input gradient and the weight gradient.

mod common;

use common::median_ms;
use wsunet::ops::kernels::{self as conv, ConvGeom, ResizeGeom};

fn values(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect()
}

fn gflops(macs: usize, ms: f64) -> f64 {
    2.0 * macs as f64 / (ms * 1e6)
}

/// sgemm of square `size` matrices on all rayon threads (row-major, no
/// accumulation): the ceiling any im2col convolution here can reach.
fn sgemm_peak(size: usize, rounds: usize) -> f64 {
    let (a, b) = (values(size * size), values(size * size));
    let mut c = vec![0.0f32; size * size];
    let threads = rayon::current_num_threads();
    // SAFETY: a, b and c each hold size×size values, row-major (row stride
    // `size`, column stride 1), and c is borrowed mutably by this closure only.
    let ms = median_ms(rounds, || unsafe {
        gemm::gemm(
            size,
            size,
            size,
            c.as_mut_ptr(),
            1,
            size as isize,
            false,
            a.as_ptr(),
            1,
            size as isize,
            b.as_ptr(),
            1,
            size as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(threads),
        )
    });
    gflops(size * size * size, ms)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // Other arguments (not `--…`) pick layers whose name contains one of them.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let rounds = if quick { 3 } else { 9 };
    println!(
        "sgemm peak ({} threads): {:.0} GFLOP/s at 1024³, {:.0} GFLOP/s at 2048³\n",
        rayon::current_num_threads(),
        sgemm_peak(1024, rounds),
        sgemm_peak(2048, rounds.min(5)),
    );
    println!(
        "| layer | x (N×C×H×W) → out, k, stride | forward | input gradient | weight gradient |"
    );
    println!("|---|---|---|---|---|");
    // (name, batch, in, size, out, kernel, stride, padding)
    let shapes = [
        ("stem", 2, 3, 256, 32, 7, 2, 3),
        ("stage1 conv1", 2, 32, 128, 64, 3, 2, 1),
        ("stage1 proj", 2, 32, 128, 64, 1, 2, 0),
        ("stage1 conv2", 2, 64, 64, 64, 3, 1, 1),
        ("stage2 conv1", 2, 64, 64, 128, 3, 2, 1),
        ("stage3 conv1", 2, 128, 32, 256, 3, 2, 1),
        ("stage2 conv2", 2, 128, 32, 128, 3, 1, 1),
        ("stage3 conv2", 2, 256, 16, 256, 3, 1, 1),
        ("bridge", 2, 512, 8, 512, 3, 1, 1),
        ("dec1 reduce", 2, 64, 128, 32, 1, 1, 0),
        ("dec1 refine", 2, 64, 128, 32, 3, 1, 1),
        ("dec2 refine", 2, 128, 64, 64, 3, 1, 1),
        ("b1 stage1 conv2", 1, 64, 64, 64, 3, 1, 1),
        ("b1 stage3 conv2", 1, 256, 16, 256, 3, 1, 1),
        ("b1 dec1 refine", 1, 64, 128, 32, 3, 1, 1),
        ("b1 dec3 refine", 1, 256, 32, 128, 3, 1, 1),
        ("b1 dec4 refine", 1, 512, 16, 256, 3, 1, 1),
        ("b1 bridge", 1, 512, 8, 512, 3, 1, 1),
        ("b1 128² bridge", 1, 512, 4, 512, 3, 1, 1),
        ("128² bridge", 2, 512, 4, 512, 3, 1, 1),
        // The main command's model (small preset), batch 8, 96².
        ("main stem", 8, 3, 96, 16, 7, 2, 3),
        ("main stage1 conv1", 8, 16, 48, 32, 3, 2, 1),
        ("main stage1 proj", 8, 16, 48, 32, 1, 2, 0),
        ("main dec1 reduce", 8, 32, 48, 16, 1, 1, 0),
        ("main dec1 refine", 8, 32, 48, 16, 3, 1, 1),
        ("main stage1 conv2", 8, 32, 24, 32, 3, 1, 1),
        ("main dec2 refine", 8, 64, 24, 32, 3, 1, 1),
        ("main stage2 conv2", 8, 64, 12, 64, 3, 1, 1),
        ("main dec3 refine", 8, 128, 12, 64, 3, 1, 1),
        ("main stage3 conv2", 8, 128, 6, 128, 3, 1, 1),
        ("main dec4 refine", 8, 256, 6, 128, 3, 1, 1),
        ("main bridge", 8, 256, 3, 256, 3, 1, 1),
    ];
    for (name, n, ci, hw, co, k, s, p) in shapes {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let g = ConvGeom::new([n, ci, hw, hw], [co, ci, k, k], s, p).expect("valid shape");
        let x = values(n * ci * hw * hw);
        let w = values(co * ci * k * k);
        let dy = values(n * co * g.ho * g.wo);
        let f = median_ms(rounds, || drop(conv::forward(&g, &x, &w)));
        let bi = median_ms(rounds, || drop(conv::backward_input(&g, &dy, &w)));
        let bw = median_ms(rounds, || drop(conv::backward_weight(&g, &x, &dy)));
        let m = g.macs();
        println!(
            "| {name} | {n}×{ci}×{hw}×{hw} → {co}, {k}×{k}, /{s} | {f:.2} ms, {:.0} GFLOP/s | {bi:.2} ms, {:.0} GFLOP/s | {bw:.2} ms, {:.0} GFLOP/s |",
            gflops(m, f),
            gflops(m, bi),
            gflops(m, bw)
        );
    }
    resizes(&filters, rounds);
}

/// The decoder's bilinear resizes (and the head's), forward and backward:
/// bound by memory, so GB/s of the planes read and written.
fn resizes(filters: &[String], rounds: usize) {
    println!("\n| resize | planes, map → map | forward | backward |");
    println!("|---|---|---|---|");
    // (name, planes, in size, out size)
    let shapes = [
        ("dec1 up", 2 * 64, 64, 128),
        ("head up", 2 * 4, 128, 256),
        ("main dec1 up", 8 * 32, 24, 48),
        ("main dec3 up", 8 * 128, 6, 12),
        ("main head up", 8 * 4, 48, 96),
    ];
    for (name, planes, h, ho) in shapes {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let g = ResizeGeom {
            planes,
            h,
            w: h,
            ho,
            wo: ho,
        };
        let x = values(planes * h * h);
        let dy = values(planes * ho * ho);
        let f = median_ms(rounds, || drop(conv::resize_forward(&g, &x)));
        let b = median_ms(rounds, || drop(conv::resize_backward(&g, &dy)));
        let gbs = |ms: f64| 4.0 * (planes * (h * h + ho * ho)) as f64 / (ms * 1e6);
        println!(
            "| {name} | {planes}, {h}² → {ho}² | {f:.3} ms, {:.1} GB/s | {b:.3} ms, {:.1} GB/s |",
            gbs(f),
            gbs(b)
        );
    }
}
