//! Every command that computes, on the test device (`WSUNET_TEST_DEVICE`,
//! default cpu): each names the device, with its adapter on a GPU, and a
//! software adapter gets a warning. Bad device names are one error line.

mod common;

use common::*;

fn device() -> String {
    std::env::var("WSUNET_TEST_DEVICE").unwrap_or_else(|_| "cpu".into())
}

/// The `device …` description a command printed in `text`.
fn device_line(text: &str) -> &str {
    text.lines()
        .find_map(|l| {
            l.strip_prefix("device ")
                .or_else(|| l.split(", device ").nth(1))
        })
        .unwrap_or_else(|| panic!("no device line in:\n{text}"))
}

/// Asserts that the device line names the test device, and that a software
/// adapter was warned about on stderr.
fn names_the_device(o: &std::process::Output, line_in: &str) {
    assert!(o.status.success(), "{}", stderr(o));
    let line = device_line(line_in);
    let name = device();
    let family = name.split(':').next().unwrap().replace("wgpu", "gpu");
    assert!(line.starts_with(&family), "{line}");
    if name != "cpu" {
        // `gpu:0 (NAME, Vulkan, WGSL)`: the adapter, its API and shaders.
        assert!(
            line.contains(", WGSL") || line.contains(", SPIR-V"),
            "{line}"
        );
    }
    if line.contains(", software)") {
        assert!(stderr(o).contains("software renderer"), "{}", stderr(o));
    } else {
        assert!(!stderr(o).contains("software renderer"), "{}", stderr(o));
    }
}

#[test]
fn train_eval_predict_bench_and_info_run_on_the_device() {
    let dev = device();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synth(&data, 10, 40);
    let model = tiny_model_config(dir.path(), 4);
    let run = dir.path().join("run");
    let mut args = tiny_train_args(&data, &model, 2, &run);
    args.extend(["--device".into(), dev.clone()]);
    let o = wsunet(&args.iter().map(String::as_str).collect::<Vec<_>>());
    names_the_device(&o, &stdout(&o));
    assert!(
        stdout(&o).contains("epoch 2/2  train loss"),
        "{}",
        stdout(&o)
    );

    let run_dir = run.to_str().unwrap();
    let o = wsunet(&["eval", "--model", run_dir, "--device", &dev]);
    names_the_device(&o, &stdout(&o));
    assert!(stdout(&o).contains("mIoU"), "{}", stdout(&o));

    // 40-px images in 32-px tiles: tiled and blended on the device.
    let out = dir.path().join("pred");
    let o = wsunet(&[
        "predict",
        "--model",
        run_dir,
        "--input",
        data.join("images").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--tile",
        "32",
        "--device",
        &dev,
    ]);
    names_the_device(&o, &stdout(&o));
    let masks = std::fs::read_dir(&out).unwrap().count();
    assert!(masks >= 10, "{masks} outputs");

    let o = wsunet(&[
        "bench",
        "--model-config",
        model.to_str().unwrap(),
        "--size",
        "64",
        "--batch-size",
        "1",
        "--warmup",
        "1",
        "--reps",
        "2",
        "--device",
        &dev,
    ]);
    names_the_device(&o, &stderr(&o));
    for phase in ["inference", "train_forward", "train_step"] {
        assert!(stdout(&o).contains(phase), "{}", stdout(&o));
    }

    let o = wsunet(&["info", "--size", "64", "--device", &dev]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let line = out
        .lines()
        .find(|l| l.starts_with("forward pass on "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains(" in ") && line.ends_with(" ms"), "{line}");
}

#[test]
fn a_device_that_is_not_there_is_one_error_line() {
    for command in [
        vec!["info", "--device"],
        vec!["bench", "--reps", "1", "--device"],
    ] {
        let run = |name: &str| {
            let mut args = command.clone();
            args.push(name);
            wsunet(&args)
        };
        fails_with(&run("npu"), "expected cpu, gpu[:N]");
        fails_with(&run("gpu:x"), "use e.g. gpu:0");
        if cfg!(feature = "wgpu") {
            let o = run("gpu:99");
            fails_with(&o, "there is no gpu:99: this machine has");
            assert!(stderr(&o).contains("gpu:0 `"), "{}", stderr(&o));
        } else if !cfg!(feature = "vulkan") && !cfg!(feature = "cuda") {
            fails_with(
                &run("gpu"),
                "rebuild with `cargo build --release --features wgpu`",
            );
        }
        if !cfg!(feature = "vulkan") {
            fails_with(&run("vulkan"), "--features vulkan");
        }
        if !cfg!(feature = "cuda") {
            fails_with(&run("cuda:1"), "--features cuda");
        }
    }
}

/// With no Vulkan or OpenGL driver to load, `gpu` says what to install.
#[cfg(all(feature = "wgpu", target_os = "linux"))]
#[test]
fn a_machine_without_a_gpu_driver_gets_the_fix() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_wsunet"))
        .args(["info", "--device", "gpu"])
        // The Vulkan loader reads its drivers from these (older and newer
        // loaders), and wgpu's OpenGL fallback its EGL driver from the last:
        // pointing them at nothing hides every driver.
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .env("__EGL_VENDOR_LIBRARY_FILENAMES", "/nonexistent/egl.json")
        .output()
        .unwrap();
    fails_with(&o, "no GPU adapter found");
    assert!(stderr(&o).contains("mesa-vulkan-drivers"), "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
}
