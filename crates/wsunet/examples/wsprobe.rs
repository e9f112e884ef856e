use std::time::Instant;
use burn::tensor::{Device, Distribution, Tensor};
fn t<const D: usize>(name: &str, mut f: impl FnMut() -> Tensor<D>) {
    f();
    let s = Instant::now();
    for _ in 0..20 { let _ = f().into_data(); }
    println!("{name}: {:.2} ms", s.elapsed().as_secs_f64() * 50.0);
}
fn main() {
    let d = Device::flex();
    let w4 = Tensor::<4>::random([512, 512, 3, 3], Distribution::Normal(0.0, 1.0), &d);
    let flat = w4.clone().reshape([512, 4608]);
    let mean = flat.clone().mean_dim(1);
    let centered = flat.clone() - mean.clone();
    let std = centered.clone().square().sum_dim(1).div_scalar(4607.0).clamp_min(1e-30).sqrt();
    t("reshape", || w4.clone().reshape([512, 4608]));
    t("mean_dim", || flat.clone().mean_dim(1));
    t("sub", || flat.clone() - mean.clone());
    t("square", || centered.clone().square());
    t("square sum", || centered.clone().square().sum_dim(1));
    t("std", || centered.clone().square().sum_dim(1).div_scalar(4607.0).clamp_min(1e-30).sqrt());
    t("div", || centered.clone() / std.clone().add_scalar(1e-5));
    t("mul recip", || centered.clone() * std.clone().add_scalar(1e-5).recip());
    t("reshape back", || centered.clone().reshape([512, 512, 3, 3]));
    t("into_data only", || w4.clone());
}
