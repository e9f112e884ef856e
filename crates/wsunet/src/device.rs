//! Choosing the compute device from a name: `cpu`, `vulkan[:N]`, `cuda[:N]`.
//!
//! GPU backends are cargo features (`vulkan`, `cuda`); asking for one that
//! this build lacks is an error that says how to get it.

use burn::tensor::Device;

use crate::error::{Error, Result};

/// Parses a device name into a Burn device.
///
/// - `cpu`: the Flex backend (multi-threaded, SIMD).
/// - `vulkan` or `vulkan:N`: Burn's wgpu backend on Vulkan; `N` picks the
///   N-th discrete GPU (default: the best available adapter).
/// - `cuda` or `cuda:N`: Burn's CUDA backend on GPU `N` (default 0).
///
/// # Example
///
/// ```
/// let cpu = wsunet::parse_device("cpu").unwrap();
/// assert_eq!(cpu, burn::tensor::Device::flex());
/// assert!(wsunet::parse_device("tpu").is_err());
/// ```
pub fn parse_device(name: &str) -> Result<Device> {
    let fail = |reason: String| Error::Device {
        name: name.to_string(),
        reason,
    };
    let (kind, index) = match name.split_once(':') {
        Some((kind, index)) => {
            let index = index.parse::<usize>().map_err(|_| {
                fail(format!(
                    "`{index}` is not a device index; use e.g. {kind}:0"
                ))
            })?;
            (kind, Some(index))
        }
        None => (name, None),
    };
    match kind {
        "cpu" if index.is_none() => Ok(Device::flex()),
        "cpu" => Err(fail("the CPU takes no index; use `cpu`".into())),
        "vulkan" => vulkan(index).map_err(fail),
        "cuda" => cuda(index).map_err(fail),
        _ => Err(fail("expected cpu, vulkan[:N] or cuda[:N]".into())),
    }
}

#[cfg(feature = "vulkan")]
fn vulkan(index: Option<usize>) -> Result<Device, String> {
    use burn::tensor::DeviceKind;
    use burn::tensor::wgpu::WgpuBackend;
    use std::sync::Mutex;

    /// Each adapter index asked for, with how its initialization went.
    type Started = Vec<(Option<usize>, Result<Device, String>)>;
    // A runtime initializes once per process; later calls reuse the outcome.
    static STARTED: Mutex<Started> = Mutex::new(Vec::new());
    let mut started = STARTED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, outcome)) = started.iter().find(|(i, _)| *i == index) {
        return outcome.clone();
    }
    // Burn's lazy `Device::vulkan` panics on first use when no adapter
    // answers; initializing here turns that into an error message.
    let outcome = Device::wgpu_options()
        .device_kind(match index {
            Some(i) => DeviceKind::DiscreteGpu(i),
            None => DeviceKind::DefaultDevice,
        })
        .graphics_api(WgpuBackend::Vulkan)
        .init_with_setup()
        .map_err(|e| {
            format!(
                "no usable Vulkan GPU ({e}); check the GPU driver and its Vulkan loader (`vulkaninfo --summary`), or use the `cpu` device"
            )
        })
        .and_then(|(device, setup)| {
            let info = setup.adapter.get_info();
            if info.device_type == burn::tensor::wgpu::wgpu::DeviceType::Cpu {
                // Measured: Mesa's lavapipe (22.3, 25.0) segfaults compiling
                // Burn's SPIR-V kernels, so a software adapter would crash the run.
                return Err(format!(
                    "the only Vulkan adapter is `{}`, a software renderer that cannot run Burn's GPU kernels; install the GPU's Vulkan driver, or use the `cpu` device (faster than a software GPU)",
                    info.name
                ));
            }
            Ok(device)
        });
    started.push((index, outcome.clone()));
    outcome
}

#[cfg(not(feature = "vulkan"))]
fn vulkan(_index: Option<usize>) -> Result<Device, String> {
    Err(
        "this build has no Vulkan backend; rebuild with `cargo build --release --features vulkan`"
            .into(),
    )
}

/// The device index to open, given `found` devices of `kind` on this
/// machine: an error naming what is there when the index is not.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn pick_index(kind: &str, index: Option<usize>, found: usize) -> Result<usize, String> {
    let index = index.unwrap_or(0);
    match found {
        0 => Err(format!(
            "no {kind} GPU found on this machine (is the NVIDIA driver installed? check `nvidia-smi`); use the `cpu` device"
        )),
        _ if index >= found => Err(format!(
            "there is no {kind} GPU {index}: this machine has {found} ({kind}:0 to {kind}:{}); pick one of them",
            found - 1
        )),
        _ => Ok(index),
    }
}

#[cfg(feature = "cuda")]
fn cuda(index: Option<usize>) -> Result<Device, String> {
    // `Device::cuda(N)` is lazy and panics on first use when GPU N does not
    // exist; counting first (which is safe without a driver: cubecl checks
    // for libcuda before asking) makes that an error here.
    let found = Device::enumerate(burn::tensor::DeviceType::Cuda).len();
    pick_index("cuda", index, found).map(Device::cuda)
}

#[cfg(not(feature = "cuda"))]
fn cuda(_index: Option<usize>) -> Result<Device, String> {
    Err("this build has no CUDA backend; rebuild with `cargo build --release --features cuda` (its build downloads LLVM, so it needs internet)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_indices_are_checked_against_the_devices_found() {
        assert_eq!(pick_index("cuda", None, 2), Ok(0));
        assert_eq!(pick_index("cuda", Some(1), 2), Ok(1));
        let err = pick_index("cuda", Some(2), 2).unwrap_err();
        assert!(
            err.contains("no cuda GPU 2") && err.contains("cuda:0 to cuda:1"),
            "{err}"
        );
        let err = pick_index("cuda", Some(0), 0).unwrap_err();
        assert!(
            err.contains("no cuda GPU found") && err.contains("`cpu` device"),
            "{err}"
        );
        // The listing `cuda` relies on, on a backend every build has.
        assert_eq!(Device::enumerate(burn::tensor::DeviceType::Flex).len(), 1);
    }

    #[cfg(feature = "cuda")]
    #[test]
    fn a_missing_cuda_gpu_is_an_error_up_front() {
        let err = parse_device("cuda:999").unwrap_err().to_string();
        assert!(err.contains("no cuda GPU"), "{err}");
    }

    #[test]
    fn names_and_errors() {
        assert_eq!(parse_device("cpu").unwrap(), Device::flex());
        let err = parse_device("cpu:1").unwrap_err().to_string();
        assert!(err.contains("`cpu:1`") && err.contains("no index"), "{err}");
        let err = parse_device("gpu").unwrap_err().to_string();
        assert!(
            err.contains("expected cpu, vulkan[:N] or cuda[:N]"),
            "{err}"
        );
        let err = parse_device("cuda:x").unwrap_err().to_string();
        assert!(err.contains("cuda:0"), "{err}");
        #[cfg(not(feature = "cuda"))]
        assert!(
            parse_device("cuda")
                .unwrap_err()
                .to_string()
                .contains("--features cuda")
        );
        #[cfg(not(feature = "vulkan"))]
        assert!(
            parse_device("vulkan:0")
                .unwrap_err()
                .to_string()
                .contains("--features vulkan")
        );
    }
}
