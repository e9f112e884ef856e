//! Weight files: safetensors with the PyTorch twin's keys, strict loading with
//! errors that list every problem, atomic saving.

mod common;

use burn::tensor::{Device, Distribution, Tensor};
use common::{Fixture, rel_error};
use safetensors::SafeTensors;
use wsunet::WsResUNetConfig;
use wsunet::layers::{Norm, Standardization};
use wsunet::weights::{load_safetensors, save_safetensors};

/// The config of the `model_*` fixtures.
fn fixture_config(s: Standardization) -> WsResUNetConfig {
    WsResUNetConfig::new(3)
        .with_widths(vec![8, 16, 16, 32, 32])
        .with_depths(vec![1, 2, 1, 1])
        .with_groups(4)
        .with_standardization(s)
}

/// A card for a `model_*`-shaped model: 3 classes, identity normalization.
fn card_of(config: &WsResUNetConfig) -> wsunet::card::ModelCard {
    wsunet::card::ModelCard {
        model: config.clone(),
        classes: wsunet::data::ClassList::numbered(3),
        normalize: wsunet::data::Normalize::identity(3),
        ignore_index: None,
        crop: None,
        pixel_size: None,
        task: Default::default(),
        instances: None,
    }
}

fn keys(path: &std::path::Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let mut names: Vec<String> = SafeTensors::deserialize(&bytes)
        .unwrap()
        .names()
        .into_iter()
        .map(String::from)
        .collect();
    names.sort();
    names
}

/// Every `model_*` fixture: its name, standardization and norm.
const VARIANTS: [(&str, Standardization, Norm); 7] = [
    ("seed", Standardization::Seed, Norm::Group),
    ("biased", Standardization::Biased, Norm::Group),
    ("scaled", Standardization::Scaled, Norm::Group),
    ("gn", Standardization::None, Norm::Group),
    ("ws_bn", Standardization::Seed, Norm::Batch),
    ("bn", Standardization::None, Norm::Batch),
    ("ws_none", Standardization::Seed, Norm::None),
];

#[test]
fn export_has_exactly_the_pytorch_state_dict_keys() {
    let dir = tempfile::tempdir().unwrap();
    for (name, s, norm) in VARIANTS {
        let model = fixture_config(s)
            .with_norm(norm)
            .init(&Device::flex())
            .unwrap();
        let path = dir.path().join(format!("{name}.safetensors"));
        save_safetensors(&model, &path).unwrap();
        // PyTorch's step counter is not kept (PyTorch fills it in on load).
        let torch_keys: Vec<String> = keys(&Fixture::weights_path(&format!("model_{name}")))
            .into_iter()
            .filter(|k| !k.ends_with(".num_batches_tracked"))
            .collect();
        assert_eq!(keys(&path), torch_keys, "{name}");
        let stem_norm = match norm {
            Norm::Group => "stem.gn.weight",
            Norm::Batch => "stem.bn.running_var",
            Norm::None => "stem.conv.bias",
            other => panic!("no state-dict key known for {other:?}"),
        };
        assert!(torch_keys.contains(&stem_norm.to_string()), "{name}");
        assert_eq!(
            torch_keys.iter().any(|k| k.ends_with(".conv.gain")),
            s == Standardization::Scaled
        );
    }
}

/// A BatchNorm model's running statistics, after training forwards moved
/// them, survive safetensors and the model format, and evaluation uses them.
#[test]
fn batch_norm_running_statistics_are_saved_and_loaded() {
    use burn::module::Module;
    use wsunet::card::{load_model, save_model};
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let config = fixture_config(Standardization::Seed).with_norm(Norm::Batch);
    let trained = config.init_seeded(&device.clone().autodiff(), 3).unwrap();
    for _ in 0..2 {
        let x = Tensor::<4>::random(
            [2, 3, 40, 40],
            Distribution::Normal(0.5, 2.0),
            &device.clone().autodiff(),
        );
        trained.forward(x);
    }
    let model = trained.valid();
    let stats = common::running_stats(&model);
    assert!(stats["stem.bn.running_var"].iter::<f32>().all(|v| v != 1.0));
    let x = Tensor::<4>::random([1, 3, 40, 40], Distribution::Default, &device);
    let expected = model.forward(x.clone()).into_data();

    let path = dir.path().join("bn.safetensors");
    save_safetensors(&model, &path).unwrap();
    let mut fresh = config.init(&device).unwrap();
    load_safetensors(&mut fresh, &path).unwrap();
    assert_eq!(common::running_stats(&fresh), stats);
    assert!(rel_error(&fresh.forward(x.clone()).into_data(), &expected) < 1e-6);

    let card = card_of(&config);
    let bpk = dir.path().join("bn.bpk");
    save_model(&model, &card, &bpk).unwrap();
    let (back, back_card) = load_model(&bpk, &device).unwrap();
    assert_eq!(back_card.model.norm, Norm::Batch);
    assert_eq!(common::running_stats(&back), stats);
    assert!(rel_error(&back.forward(x).into_data(), &expected) < 1e-6);
}

#[test]
fn save_then_load_reproduces_the_model() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let config = fixture_config(Standardization::Scaled);
    let a = config.init(&device).unwrap();
    save_safetensors(&a, &path).unwrap();
    // Saving again replaces the file (atomically, via a temporary file).
    save_safetensors(&a, &path).unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(
        leftovers.len(),
        1,
        "temporary files left behind: {leftovers:?}"
    );

    let mut b = config.init(&device).unwrap();
    let x = Tensor::<4>::random([1, 3, 40, 48], Distribution::Default, &device);
    assert!(
        rel_error(
            &b.forward(x.clone()).into_data(),
            &a.forward(x.clone()).into_data()
        ) > 1e-3
    );
    load_safetensors(&mut b, &path).unwrap();
    let e = rel_error(&b.forward(x.clone()).into_data(), &a.forward(x).into_data());
    assert_eq!(e, 0.0);
}

#[test]
fn loading_is_strict_and_lists_every_problem() {
    let device = Device::flex();
    let path = Fixture::weights_path("model_seed");

    // Deeper stage 1, shallower stage 2: one block's keys missing, one unexpected.
    let mut other_depths = fixture_config(Standardization::Seed)
        .with_depths(vec![2, 1, 1, 1])
        .init(&device)
        .unwrap();
    let err = load_safetensors(&mut other_depths, &path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("model_seed.weights.safetensors"), "{err}");
    assert!(
        err.contains("missing keys: stage1.1.conv1.conv.weight"),
        "{err}"
    );
    assert!(
        err.contains("unexpected keys: stage2.1.conv1.conv.weight"),
        "{err}"
    );

    // Wider stem: shapes differ.
    let mut wider = fixture_config(Standardization::Seed)
        .with_widths(vec![16, 16, 16, 32, 32])
        .init(&device)
        .unwrap();
    let err = load_safetensors(&mut wider, &path).unwrap_err().to_string();
    assert!(
        err.contains("mismatches: stem.conv.weight is [8, 3, 7, 7] in the file but [16, 3, 7, 7] in the model"),
        "{err}"
    );
    assert!(err.contains("stem.gn.weight is [8]"), "{err}");
    assert!(
        !err.contains("gamma"),
        "Burn names leak into the message: {err}"
    );

    // `scaled` has gains the `seed` file lacks.
    let mut scaled = fixture_config(Standardization::Scaled)
        .init(&device)
        .unwrap();
    let err = load_safetensors(&mut scaled, &path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("missing keys: ") && err.contains(".conv.gain"),
        "{err}"
    );

    let err = load_safetensors(&mut scaled, std::path::Path::new("no/such.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no/such.safetensors: no such file"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a safetensors file").unwrap();
    let err = load_safetensors(&mut scaled, &junk)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("junk.safetensors: cannot read as safetensors"),
        "{err}"
    );
}

/// PyTorch twin → import → logits equal PyTorch's: the architecture is
/// inferred from keys and shapes, for a plain safetensors state dict and for
/// a `.pth` checkpoint wrapped in `state_dict` with `module.` prefixes.
#[test]
fn imported_pytorch_weights_give_pytorch_logits() {
    use wsunet::weights::{infer_config, load_state_dict, read_shapes};
    let device = Device::flex();
    let io = Fixture::read("model_seed");
    let dir = common::fixtures_dir();
    for file in ["model_seed.weights.safetensors", "model_seed_wrapped.pth"] {
        let path = dir.join(file);
        let shapes = read_shapes(&path).unwrap();
        assert!(
            shapes.contains_key("stem.conv.weight"),
            "{file}: prefixes not stripped"
        );
        let config = infer_config(&shapes, 4, None, None).unwrap();
        assert_eq!(config, fixture_config(Standardization::Seed), "{file}");
        let mut model = config.init(&device).unwrap();
        load_state_dict(&mut model, &path).unwrap();
        let e = rel_error(
            &model.forward(io.tensor("input", &device)).into_data(),
            &io.get("output"),
        );
        assert!(e < 1e-5, "{file}: {e:e}");
    }
    // `.conv.gain` keys imply the scaled standardization.
    let shapes = read_shapes(&dir.join("model_scaled.weights.safetensors")).unwrap();
    assert_eq!(
        infer_config(&shapes, 4, None, None)
            .unwrap()
            .standardization,
        Standardization::Scaled
    );
    // The norm follows from the keys (gn.*, bn.*, neither); a kernel's
    // formula does not (only `scaled` has gains), so `biased` and `none`
    // are given.
    for (name, s, norm) in VARIANTS {
        let path = dir.join(format!("model_{name}.weights.safetensors"));
        let given = matches!(s, Standardization::Biased | Standardization::None).then_some(s);
        let config = infer_config(&read_shapes(&path).unwrap(), 4, given, None).unwrap();
        assert_eq!(config, fixture_config(s).with_norm(norm), "{name}");
        let mut model = config.init(&device).unwrap();
        load_state_dict(&mut model, &path).unwrap();
        if norm != Norm::Batch {
            // (BatchNorm's fixture output is in training mode.)
            let io = Fixture::read(&format!("model_{name}"));
            let e = rel_error(
                &model.forward(io.tensor("input", &device)).into_data(),
                &io.get("output"),
            );
            assert!(e < 1e-4, "{name}: {e:e}");
        }
    }
    // Not a WSResUNet: a clear error naming the missing key.
    let shapes = read_shapes(&dir.join("ws_conv2d_seed.weights.safetensors")).unwrap();
    let err = infer_config(&shapes, 4, None, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no `stem.conv.weight`"), "{err}");
}

/// Export → re-import gives the same logits; a folded export has no gains
/// and standardized kernels.
#[test]
fn export_round_trip_and_folded_export() {
    use wsunet::weights::{infer_config, load_state_dict, read_shapes};
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let config = fixture_config(Standardization::Scaled);
    let model = config.init(&device).unwrap();
    let x = Tensor::<4>::random([1, 3, 40, 44], Distribution::Default, &device);
    let expected = model.forward(x.clone()).into_data();
    let path = dir.path().join("out.safetensors");
    save_safetensors(&model, &path).unwrap();
    let mut back = infer_config(&read_shapes(&path).unwrap(), 4, None, None)
        .unwrap()
        .init(&device)
        .unwrap();
    load_state_dict(&mut back, &path).unwrap();
    assert_eq!(
        rel_error(&back.forward(x.clone()).into_data(), &expected),
        0.0
    );

    let folded_path = dir.path().join("folded.safetensors");
    save_safetensors(&model.clone().fold(), &folded_path).unwrap();
    let folded_keys = keys(&folded_path);
    assert!(
        !folded_keys.iter().any(|k| k.ends_with(".gain")),
        "{folded_keys:?}"
    );
    assert_eq!(
        folded_keys.len(),
        keys(&path).len() - keys(&path).iter().filter(|k| k.ends_with(".gain")).count()
    );
}

#[test]
fn a_folded_model_cannot_be_saved_and_load_back_wrong() {
    use wsunet::card::{load_model, save_model};
    use wsunet::weights::{is_folded_file, load_state_dict, save_state_dict};
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    for s in Standardization::ALL {
        let config = fixture_config(s);
        let model = config.init_seeded(&device, 1).unwrap();
        let card = card_of(&config);
        // The model format holds raw kernels: a folded one is refused.
        let path = dir.path().join(format!("{s}.bpk"));
        let err = save_model(&model.clone().fold(), &card, &path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("folded"), "{err}");
        assert!(!path.exists() && !path.with_extension("json").exists());
        save_model(&model, &card, &path).unwrap();
        let (back, _) = load_model(&path, &device).unwrap();
        let x = Tensor::<4>::random([1, 3, 40, 40], Distribution::Default, &device);
        let err = rel_error(
            &back.forward(x.clone()).into_data(),
            &model.forward(x).into_data(),
        );
        assert!(err < 1e-6, "{s}: {err}");

        // A folded state dict is marked, and loading it into a WS model
        // (which would standardize it again) is refused.
        let folded = dir.path().join(format!("{s}.folded.safetensors"));
        save_state_dict(&model.clone().fold(), &folded).unwrap();
        assert!(is_folded_file(&folded).unwrap());
        let mut fresh = config.init(&device).unwrap();
        for err in [
            load_state_dict(&mut fresh, &folded).unwrap_err(),
            load_safetensors(&mut fresh, &folded).unwrap_err(),
        ] {
            let err = err.to_string();
            assert!(
                err.contains("folded kernels") && err.contains("unfolded"),
                "{err}"
            );
        }
        let plain = dir.path().join(format!("{s}.safetensors"));
        save_state_dict(&model, &plain).unwrap();
        assert!(!is_folded_file(&plain).unwrap());
        load_state_dict(&mut fresh, &plain).unwrap();
    }
}

/// The weights digest follows the values, not the file: the same model
/// saved as `.bpk` twice (the same bytes) or as safetensors gives the same
/// digest; one changed value changes it.
#[test]
fn the_weights_digest_follows_the_values() {
    use wsunet::card::{load_model, save_model, weights_digest};
    let device = Device::flex();
    let config = fixture_config(Standardization::Seed);
    let model = config.init_seeded(&device, 11).unwrap();
    let digest = weights_digest(&model).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one.bpk"), dir.path().join("two.bpk"));
    save_model(&model, &card_of(&config), &one).unwrap();
    save_model(&model, &card_of(&config), &two).unwrap();
    assert_eq!(std::fs::read(&one).unwrap(), std::fs::read(&two).unwrap());
    let (loaded, _) = load_model(&one, &device).unwrap();
    assert_eq!(weights_digest(&loaded).unwrap(), digest);
    // Saved again from the loaded model: still the same bytes.
    let three = dir.path().join("three.bpk");
    save_model(&loaded, &card_of(&config), &three).unwrap();
    assert_eq!(std::fs::read(&one).unwrap(), std::fs::read(&three).unwrap());
    let st = dir.path().join("m.safetensors");
    save_safetensors(&model, &st).unwrap();
    let mut fresh = config.init_seeded(&device, 99).unwrap();
    assert_ne!(weights_digest(&fresh).unwrap(), digest);
    load_safetensors(&mut fresh, &st).unwrap();
    assert_eq!(weights_digest(&fresh).unwrap(), digest);
    // One value of the head's bias moved by 1e-6.
    let mut changed = model.clone();
    let first = 0..1;
    changed.head.bias = changed.head.bias.map(|p| {
        p.map(|b| {
            let moved = b.clone().slice(first.clone()).add_scalar(1e-6);
            b.slice_assign(first.clone(), moved)
        })
    });
    assert_ne!(weights_digest(&changed).unwrap(), digest);
}
