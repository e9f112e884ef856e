//! Loader throughput: 256×256 PNG image/mask pairs decoded, augmented,
//! normalized and batched by Burn's data loader, against the model's
//! training-step throughput on the same machine.
//!
//! `cargo bench -p wsunet --bench loader` (add `-- --quick` for fewer rounds).

use std::time::Instant;

use burn::data::dataloader::DataLoaderBuilder;
use burn::tensor::{Device, Distribution, Tensor};
use wsunet::WsResUNetConfig;
use wsunet::data::file_samples;
use wsunet::data::{AugmentConfig, Mode, Normalize, SampleSpec, SegBatcher, SegDataset, discover};
use wsunet::data::{generate_shapes, shapes_classes};
use wsunet::data::{write_mask_png, write_png};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let (count, size, batch) = (64usize, 256usize, 8usize);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("images")).unwrap();
    std::fs::create_dir_all(dir.path().join("masks")).unwrap();
    let classes = shapes_classes();
    for i in 0..count {
        let (image, mask) = generate_shapes(0, i as u64, size);
        write_png(&dir.path().join(format!("images/{i:03}.png")), &image).unwrap();
        write_mask_png(
            &dir.path().join(format!("masks/{i:03}.png")),
            &mask,
            &classes,
        )
        .unwrap();
    }
    let files = discover(dir.path(), 0.0, 0).unwrap();
    let dataset = SegDataset::new(
        file_samples(&files.train),
        SampleSpec {
            num_classes: 4,
            ignore_index: Some(255),
            in_channels: 3,
            classes: Some(classes),
            instances: None,
        },
        Normalize::neutral(3),
        Mode::Train {
            augment: AugmentConfig::default(),
            size: [size, size],
        },
        0,
    )
    .unwrap();
    let loader = DataLoaderBuilder::new(SegBatcher { ignore_label: 255 })
        .batch_size(batch)
        .shuffle(0)
        .num_workers(workers)
        .set_device(Device::flex())
        .build(dataset);

    let rounds = if quick { 3 } else { 7 };
    let mut rates = Vec::new();
    for round in 0..=rounds {
        let start = Instant::now();
        let mut n = 0;
        for b in loader.iter() {
            n += b.unwrap().names.len();
        }
        if round > 0 {
            rates.push(n as f64 / start.elapsed().as_secs_f64());
        }
    }
    let load_rate = median(rates);
    println!(
        "loader: {load_rate:.1} images/s ({size}×{size} PNG pairs, augmentation on, batch {batch}, {workers} workers, median of {rounds} epochs of {count})"
    );

    // Training-step throughput of the base model (forward + backward) at
    // batch 2 — the consumer the loader has to keep fed.
    let device = Device::flex().autodiff();
    let model = WsResUNetConfig::new(4).init(&device).unwrap();
    let x = Tensor::<4>::random([2, 3, size, size], Distribution::Default, &device);
    let steps = if quick { 2 } else { 4 };
    let mut times = Vec::new();
    for step in 0..=steps {
        let start = Instant::now();
        let loss = model.forward(x.clone()).powf_scalar(2.0).mean();
        let _grads = loss.backward();
        if step > 0 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    let step_rate = 2.0 / median(times);
    println!("train step (base model, forward + backward, batch 2): {step_rate:.2} images/s");
    println!(
        "loader / train-step throughput: {:.0}× — {}",
        load_rate / step_rate,
        if load_rate > step_rate {
            "loading cannot starve training"
        } else {
            "loading is the bottleneck"
        }
    );
}
