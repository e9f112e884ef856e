//! Layer speeds on the CPU backend, wsunet's kernels (`ops/`) against Burn's
//! own: WsConv2d against a plain Burn `Conv2d` (Flex's convolution), the fused
//! GroupNorm + SiLU against Burn's `GroupNorm` then `silu`, and
//! `resize_bilinear` against Burn's native `interpolate`, and the default loss
//! (cross-entropy + Dice) against its composed form, forward and forward +
//! backward, at sizes the base model and the main command meet.
//!
//! `cargo bench -p wsunet --bench layers` (add `-- --quick` for fewer rounds).
//! Prints one markdown table; each number is the median of the rounds.

mod common;

use burn::nn::conv::Conv2dConfig;
use burn::nn::{GroupNormConfig, PaddingConfig2d};
use burn::tensor::activation::silu;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Distribution, Int, Tensor};
use common::median_ms;
use wsunet::layers::{WsConv2dConfig, resize_bilinear};
use wsunet::train::{LossKind, SegLoss};

/// Runs the backward of `y.sum()`, or forces `y`'s computation (Flex is
/// eager, but keep GPU-safe habits).
fn finish(y: Tensor<4>, backward: bool) {
    if backward {
        let _ = y.sum().backward();
    } else {
        let _ = y.slice([0..1, 0..1, 0..1, 0..1]).into_data();
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 3 } else { 9 };
    let cpu = Device::flex();
    let ad = cpu.clone().autodiff();
    println!("| layer | input (N×C×H×W) | forward ms | forward + backward ms |");
    println!("|---|---|---|---|");

    // (batch, in, out, size): the base model's stages at 256×256 input.
    let convs = [
        (1, 32, 32, 128),
        (2, 64, 64, 64),
        (2, 128, 128, 32),
        (2, 512, 512, 8),
    ];
    for &(n, cin, cout, hw) in &convs {
        for ws in [true, false] {
            let name = if ws {
                "WsConv2d 3×3 (seed; wsunet kernels)"
            } else {
                "Conv2d 3×3 (plain; Burn's Flex conv)"
            };
            let time = |device: &Device, backward: bool| {
                let forward: Box<dyn Fn(Tensor<4>) -> Tensor<4>> = if ws {
                    let conv = WsConv2dConfig::new(cin, cout, 3).init(device);
                    Box::new(move |x| conv.forward(x))
                } else {
                    let conv = Conv2dConfig::new([cin, cout], [3, 3])
                        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                        .with_bias(false)
                        .init(device);
                    Box::new(move |x| conv.forward(x))
                };
                let x =
                    Tensor::<4>::random([n, cin, hw, hw], Distribution::Normal(0.0, 1.0), device);
                median_ms(rounds, || finish(forward(x.clone()), backward))
            };
            let (f, b) = (time(&cpu, false), time(&ad, true));
            println!("| {name} | {n}×{cin}×{hw}×{hw} | {f:.2} | {b:.2} |");
        }
    }

    for &(n, c, hw) in &[(1, 32, 128), (2, 64, 64), (2, 256, 16)] {
        for fused in [true, false] {
            let time = |device: &Device, backward: bool| {
                let gn = GroupNormConfig::new(32, c).init(device);
                let x = Tensor::<4>::random([n, c, hw, hw], Distribution::Normal(0.0, 1.0), device);
                median_ms(rounds, || {
                    let y = if fused {
                        wsunet::ops::group_norm(x.clone(), &gn, wsunet::ops::Tail::Silu)
                    } else {
                        silu(gn.forward(x.clone()))
                    };
                    finish(y, backward)
                })
            };
            let (f, b) = (time(&cpu, false), time(&ad, true));
            let name = if fused {
                "GroupNorm(32) + SiLU (wsunet fused kernel)"
            } else {
                "GroupNorm(32) + SiLU (Burn's ops)"
            };
            println!("| {name} | {n}×{c}×{hw}×{hw} | {f:.2} | {b:.2} |");
        }
    }

    // Decoder upsampling ×2 at the base model's decoder widths, and the
    // final ×2 of the head's 4 classes.
    for &(n, c, hw) in &[(2, 512, 8), (2, 128, 32), (2, 32, 128), (2, 4, 128)] {
        let size = [2 * hw, 2 * hw];
        for native in [false, true] {
            let name = if native {
                "Burn interpolate (Flex native)"
            } else {
                "resize_bilinear (wsunet four-tap kernel)"
            };
            let time = |device: &Device, backward: bool| {
                let x = Tensor::<4>::random([n, c, hw, hw], Distribution::Normal(0.0, 1.0), device);
                let x = if backward { x.require_grad() } else { x };
                median_ms(rounds, || {
                    let y = if native {
                        let options = InterpolateOptions::new(InterpolateMode::Bilinear)
                            .with_output_size(size)
                            .with_align_corners(false);
                        interpolate(x.clone(), options)
                    } else {
                        resize_bilinear(x.clone(), size)
                    };
                    finish(y, backward)
                })
            };
            let (f, b) = (time(&cpu, false), time(&ad, true));
            println!("| {name} ×2 | {n}×{c}×{hw}×{hw} | {f:.2} | {b:.2} |");
        }
    }

    // The default loss at the main command's batch and the bench's.
    for &(n, c, hw) in &[(8, 4, 96), (2, 4, 256)] {
        for fused in [true, false] {
            let loss = SegLoss::new(LossKind::CeDice, 255);
            let time = |device: &Device, backward: bool| {
                let x = Tensor::<4>::random([n, c, hw, hw], Distribution::Normal(0.0, 2.0), device);
                let x = if backward { x.require_grad() } else { x };
                let t = Tensor::<3, Int>::random(
                    [n, hw, hw],
                    Distribution::Uniform(0.0, c as f64),
                    device,
                );
                median_ms(rounds, || {
                    let y = if fused {
                        loss.forward(x.clone(), t.clone())
                    } else {
                        loss.forward_composed(x.clone(), t.clone())
                    };
                    if backward {
                        let _ = y.backward();
                    } else {
                        let _ = y.into_data();
                    }
                })
            };
            let (f, b) = (time(&cpu, false), time(&ad, true));
            let name = if fused {
                "CE + Dice loss (wsunet kernel)"
            } else {
                "CE + Dice loss (Burn's ops)"
            };
            println!("| {name} | {n}×{c}×{hw}×{hw} | {f:.2} | {b:.2} |");
        }
    }
}
