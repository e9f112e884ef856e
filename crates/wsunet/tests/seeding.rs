//! Seeded initialization draws from its own stream: it neither reseeds nor
//! consumes Burn's process-wide generator, and other threads drawing from
//! that generator meanwhile change nothing. A test binary of its own, so no
//! other test draws from the global generator while this one watches it.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Distribution, Tensor};
use wsunet::WsResUNetConfig;

fn config() -> WsResUNetConfig {
    WsResUNetConfig::new(3)
        .with_widths(vec![8, 8, 16, 16, 16])
        .with_groups(4)
}

/// Every float parameter, flattened, in visiting order.
struct Values(Vec<Vec<f32>>);

impl ModuleVisitor for Values {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.val().into_data().iter::<f32>().collect());
    }
}

fn floats<const D: usize>(param: &Param<Tensor<D>>) -> Vec<f32> {
    param.val().into_data().iter::<f32>().collect()
}

fn values(model: &wsunet::WsResUNet) -> Vec<Vec<f32>> {
    let mut v = Values(Vec::new());
    model.visit(&mut v);
    v.0
}

#[test]
fn seeded_init_uses_its_own_stream() {
    let device = Device::flex();
    let reference = values(&config().init_seeded(&device, 3).unwrap());

    // Another thread drawing from the global generator all along changes
    // nothing.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let noise = {
        let (stop, device) = (stop.clone(), device.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = Tensor::<1>::random([64], Distribution::Default, &device).into_data();
            }
        })
    };
    for _ in 0..3 {
        assert_eq!(
            values(&config().init_seeded(&device, 3).unwrap()),
            reference
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    noise.join().unwrap();
    assert_ne!(
        values(&config().init_seeded(&device, 4).unwrap()),
        reference
    );

    // The caller's own random stream goes on as if nothing had happened.
    device.seed(11);
    let expected = Tensor::<1>::random([16], Distribution::Default, &device).into_data();
    device.seed(11);
    let _ = config().init_seeded(&device, 3).unwrap();
    let got = Tensor::<1>::random([16], Distribution::Default, &device).into_data();
    got.assert_eq(&expected, true);
}

#[test]
fn seeded_weights_follow_pytorch_conv_init() {
    let model = config().init_seeded(&Device::flex(), 0).unwrap();
    // Kernels U(±1/√fan_in): the 7×7 stem's fan_in is 3·7·7 = 147.
    assert_eq!(model.stem.conv.weight.val().dims(), [8, 3, 7, 7]);
    let stem = floats(&model.stem.conv.weight);
    let bound = 1.0 / 147f32.sqrt();
    assert!(stem.iter().all(|v| v.abs() <= bound));
    let max = stem.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(max > 0.9 * bound, "{max} vs {bound}");
    // The 1×1 head (fan_in 8) and its bias use the same bound.
    let head = floats(&model.head.weight);
    let bias = floats(model.head.bias.as_ref().unwrap());
    let bound = 1.0 / 8f32.sqrt();
    assert!(head.iter().chain(&bias).all(|v| v.abs() <= bound));
    assert!(bias.iter().any(|v| *v != 0.0));
    // GroupNorm starts at scale 1, shift 0.
    let gamma = floats(model.stem.gn.as_ref().unwrap().gamma.as_ref().unwrap());
    assert!(gamma.iter().all(|&g| g == 1.0));
    // Standard deviation of U(±b) is b/√3; the 16·16·3·3 kernels have 2,304 values.
    let w: Vec<f32> = values(&model)
        .into_iter()
        .find(|v| v.len() == 16 * 16 * 9)
        .unwrap();
    let std = (w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32).sqrt();
    let expected = 1.0 / (16.0f32 * 9.0).sqrt() / 3f32.sqrt();
    assert!((std / expected - 1.0).abs() < 0.05, "{std} vs {expected}");
}
