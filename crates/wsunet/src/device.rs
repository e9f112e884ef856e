//! Choosing the compute device from a name (`cpu`, `gpu[:N]`, `vulkan[:N]`,
//! `cuda[:N]`) and saying what it is.
//!
//! GPU backends are cargo features:
//! - `wgpu`: Burn's WGSL kernels through wgpu, on whichever graphics API the
//!   machine has (Vulkan on Linux, Metal on macOS, DX12 on Windows). Device
//!   `gpu` (or `wgpu`). Runs on software Vulkan too (Mesa's lavapipe), which
//!   is how CI executes the GPU path without a GPU.
//! - `vulkan`: the same runtime pinned to Vulkan, with Burn's SPIR-V kernels
//!   where the adapter supports them. Device `vulkan`. A build with this
//!   feature compiles SPIR-V for every Vulkan adapter, `gpu` included.
//! - `cuda`: Burn's CUDA backend. Device `cuda`.
//!
//! A GPU is opened when its name is parsed, so a missing driver or adapter
//! is an error here, naming what the machine has, instead of a panic on the
//! first tensor. [`describe_device`] names the adapter, API and shader
//! language of an opened device for a command's settings line.

use std::fmt;
#[cfg(any(feature = "wgpu", feature = "vulkan"))]
use std::sync::Mutex;

use burn::tensor::Device;

use crate::error::{Error, Result};

/// The device names accepted by [`parse_device`], for messages.
pub const DEVICE_NAMES: &str = "cpu, gpu[:N] (also wgpu[:N]), vulkan[:N] or cuda[:N]";

/// Parses a device name and opens the device.
///
/// - `cpu`: the Flex backend (multi-threaded, SIMD).
/// - `gpu`, `gpu:N` (or `wgpu`, `wgpu:N`): Burn's wgpu runtime (feature
///   `wgpu` or `vulkan`) on the graphics API wgpu settles on: Vulkan, else
///   DX12 or OpenGL; Metal on macOS. `N` counts that API's adapters in the
///   order wgpu lists them, software ones included; without `N`, the first
///   hardware GPU (discrete, then integrated, then virtual), else a software
///   adapter. In a build with only `cuda`, `gpu` means `cuda`.
/// - `vulkan`, `vulkan:N`: the same pinned to Vulkan (feature `vulkan`:
///   SPIR-V kernels). A software Vulkan adapter is refused: it crashes on
///   Burn's SPIR-V kernels.
/// - `cuda`, `cuda:N`: Burn's CUDA backend on GPU `N` (default 0).
///
/// Opening twice returns the same device.
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
        "gpu" | "wgpu"
            if !cfg!(any(feature = "wgpu", feature = "vulkan")) && cfg!(feature = "cuda") =>
        {
            cuda(index).map_err(fail)
        }
        "gpu" | "wgpu" => wgpu::open(kind, index, false).map_err(fail),
        "vulkan" if cfg!(feature = "vulkan") => wgpu::open(kind, index, true).map_err(fail),
        "vulkan" => Err(fail(no_vulkan_feature())),
        "cuda" => cuda(index).map_err(fail),
        _ => Err(fail(format!("expected {DEVICE_NAMES}"))),
    }
}

fn no_vulkan_feature() -> String {
    let wgsl = if cfg!(feature = "wgpu") {
        "; or use the `gpu` device (this build's WGSL kernels, which also run on Vulkan)"
    } else {
        ""
    };
    format!(
        "this build has no Vulkan SPIR-V backend; rebuild with `cargo build --release --features vulkan`{wgsl}"
    )
}

/// What a device is: its name and, for a wgpu device, its adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The device's name: `cpu`, `gpu:0`, `vulkan:1`, `cuda:0`, …
    pub name: String,
    /// The adapter behind a wgpu device (`None` for the CPU and CUDA).
    pub adapter: Option<AdapterInfo>,
}

/// The GPU adapter behind a wgpu device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterInfo {
    /// The adapter's name as its driver reports it, e.g.
    /// `llvmpipe (LLVM 15.0.6, 256 bits)` or `NVIDIA H200`.
    pub name: String,
    /// The graphics API: `Vulkan`, `Metal`, `DX12`, `OpenGL`.
    pub api: &'static str,
    /// The language Burn's kernels are compiled to: `WGSL` or `SPIR-V`.
    pub shaders: &'static str,
    /// A software renderer (lavapipe, llvmpipe, WARP): the CPU emulating a
    /// GPU, for testing.
    pub software: bool,
}

impl DeviceInfo {
    /// A warning for a device that works but is not worth using for real
    /// work: a software adapter.
    pub fn warning(&self) -> Option<String> {
        let adapter = self.adapter.as_ref().filter(|a| a.software)?;
        Some(format!(
            "{} is `{}`, a software renderer (the CPU emulating a GPU): fine for testing, but slower than the `cpu` device",
            self.name, adapter.name
        ))
    }
}

impl fmt::Display for DeviceInfo {
    /// `gpu:0 (llvmpipe (LLVM 15.0.6, 256 bits), Vulkan, WGSL, software)`,
    /// `cpu (Flex, 2 threads)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.adapter {
            Some(a) => {
                let software = if a.software { ", software" } else { "" };
                write!(
                    f,
                    "{} ({}, {}, {}{software})",
                    self.name, a.name, a.api, a.shaders
                )
            }
            None if self.name == "cpu" => {
                write!(f, "cpu (Flex, {} threads)", rayon::current_num_threads())
            }
            None => f.write_str(&self.name),
        }
    }
}

/// What `device` is, for a settings line. A GPU device opened by
/// [`parse_device`] is named with its adapter; the autodiff flag is ignored.
///
/// # Example
///
/// ```
/// let cpu = wsunet::parse_device("cpu").unwrap();
/// let info = wsunet::device::describe_device(&cpu.autodiff());
/// assert_eq!(info.name, "cpu");
/// assert!(info.warning().is_none());
/// ```
pub fn describe_device(device: &Device) -> DeviceInfo {
    let device = device.clone().without_autodiff();
    if device == Device::flex() {
        return DeviceInfo {
            name: "cpu".into(),
            adapter: None,
        };
    }
    if let Some(info) = wgpu::describe(&device) {
        return info;
    }
    DeviceInfo {
        name: format!("{device:?}"),
        adapter: None,
    }
}

/// Burn's wgpu runtime: the adapters wgpu lists, and opening one of them.
#[cfg(any(feature = "wgpu", feature = "vulkan"))]
mod wgpu {
    use burn::backend::{AutoGraphicsApi, WgpuBackend};
    use burn::tensor::wgpu::wgpu::{self as api, Backend, Backends, DeviceType};
    use burn::tensor::{Device, DeviceKind};

    use super::{AdapterInfo, DeviceInfo, Mutex};

    /// How opening a device went: the device and what it is, or why not.
    type Opened = Result<(Device, DeviceInfo), String>;

    /// Every device name asked for so far (`gpu:0`, `gpu:*` for `gpu`), with
    /// how opening it went. A runtime initializes once per process; later
    /// calls reuse it.
    static OPENED: Mutex<Vec<(String, Opened)>> = Mutex::new(Vec::new());

    /// One adapter as wgpu lists it.
    struct Listed {
        info: api::AdapterInfo,
        /// Its selector: its type and its index among adapters of that type.
        kind: Option<DeviceKind>,
    }

    fn api_name(backend: Backend) -> &'static str {
        match backend {
            Backend::Vulkan => "Vulkan",
            Backend::Metal => "Metal",
            Backend::Dx12 => "DX12",
            Backend::Gl => "OpenGL",
            Backend::BrowserWebGpu => "WebGPU",
            Backend::Noop => "none",
        }
    }

    /// The adapters of one graphics API, in wgpu's order.
    fn probe(backend: Backend) -> Vec<api::AdapterInfo> {
        let instance = api::Instance::new(api::InstanceDescriptor {
            backends: Backends::from(backend),
            ..api::InstanceDescriptor::new_without_display_handle()
        });
        futures_lite::future::block_on(instance.enumerate_adapters(Backends::from(backend)))
            .iter()
            .map(api::Adapter::get_info)
            .collect()
    }

    /// The graphics API a device comes up on and its adapters, as Burn's
    /// runtime settles it (cubecl-wgpu `settle`): the first API of the chain
    /// with a hardware GPU, else the first with any adapter.
    fn settle(pinned: bool) -> Option<(Backend, Vec<Listed>)> {
        let chain = if pinned {
            vec![Backend::Vulkan]
        } else {
            AutoGraphicsApi::chain()
        };
        let mut software_only = None;
        for backend in chain {
            let adapters = probe(backend);
            let hardware = adapters.iter().any(|a| a.device_type != DeviceType::Cpu);
            if hardware {
                return Some((backend, selectors(adapters)));
            }
            if software_only.is_none() && !adapters.is_empty() {
                software_only = Some((backend, adapters));
            }
        }
        software_only.map(|(backend, adapters)| (backend, selectors(adapters)))
    }

    /// Each adapter's selector: the runtime counts every device type from
    /// zero on its own (cubecl-wgpu `adapter_device_ids`).
    fn selectors(adapters: Vec<api::AdapterInfo>) -> Vec<Listed> {
        let mut next = [0usize; 3];
        adapters
            .into_iter()
            .map(|info| {
                let mut count = |i: usize| {
                    next[i] += 1;
                    next[i] - 1
                };
                let kind = match info.device_type {
                    DeviceType::DiscreteGpu => Some(DeviceKind::DiscreteGpu(count(0))),
                    DeviceType::IntegratedGpu => Some(DeviceKind::IntegratedGpu(count(1))),
                    DeviceType::VirtualGpu => Some(DeviceKind::VirtualGpu(count(2))),
                    DeviceType::Cpu => Some(DeviceKind::Cpu),
                    // The runtime has no selector for these.
                    DeviceType::Other => None,
                };
                Listed { info, kind }
            })
            .collect()
    }

    /// The adapter `gpu` means: the first discrete GPU, else integrated,
    /// else virtual, else anything.
    fn preferred(adapters: &[Listed]) -> Option<usize> {
        let rank = |t: DeviceType| match t {
            DeviceType::DiscreteGpu => 0,
            DeviceType::IntegratedGpu => 1,
            DeviceType::VirtualGpu => 2,
            DeviceType::Other => 3,
            DeviceType::Cpu => 4,
        };
        (0..adapters.len())
            .filter(|&i| adapters[i].kind.is_some())
            .min_by_key(|&i| rank(adapters[i].info.device_type))
    }

    fn shaders(backend: Backend) -> &'static str {
        // With the `vulkan` feature, Burn compiles SPIR-V for every Vulkan
        // adapter that has the features it needs, and WGSL elsewhere.
        if cfg!(feature = "vulkan") && backend == Backend::Vulkan {
            "SPIR-V"
        } else {
            "WGSL"
        }
    }

    /// One line per adapter: `gpu:0 llvmpipe (…) (Vulkan, software)`.
    fn listing(prefix: &str, backend: Backend, adapters: &[Listed]) -> String {
        adapters
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let software = if a.info.device_type == DeviceType::Cpu {
                    ", software"
                } else {
                    ""
                };
                format!(
                    "{prefix}:{i} `{}` ({}{software})",
                    a.info.name,
                    api_name(backend)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn no_adapter(pinned: bool) -> String {
        let apis = if pinned {
            "Vulkan".to_string()
        } else {
            let apis: Vec<&str> = AutoGraphicsApi::chain().into_iter().map(api_name).collect();
            match apis.split_last() {
                Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
                _ => apis.join(""),
            }
        };
        let driver = if cfg!(target_os = "linux") {
            " (on Debian/Ubuntu: the GPU vendor's driver, or `mesa-vulkan-drivers`, with the Vulkan loader `libvulkan1`; `vulkaninfo --summary` lists what Vulkan sees)"
        } else {
            ""
        };
        format!(
            "no GPU adapter found on {apis}; install a GPU driver with Vulkan support{driver}, or use the `cpu` device"
        )
    }

    pub(super) fn open(prefix: &str, index: Option<usize>, pinned: bool) -> Result<Device, String> {
        let mut opened = OPENED.lock().unwrap_or_else(|e| e.into_inner());
        let key = format!("{prefix}:{}", index.map_or("*".into(), |i| i.to_string()));
        if let Some((_, outcome)) = opened.iter().find(|(k, _)| *k == key) {
            return outcome.clone().map(|(device, _)| device);
        }
        let outcome = select(prefix, index, pinned).and_then(|(name, backend, listed)| {
            // Two names for one adapter (`gpu` and `gpu:0`) share its runtime.
            if let Some((_, Ok(found))) = opened
                .iter()
                .find(|(_, o)| matches!(o, Ok((_, info)) if info.name == name))
            {
                return Ok(found.clone());
            }
            init(name, backend, listed)
        });
        opened.push((key, outcome.clone()));
        outcome.map(|(device, _)| device)
    }

    /// The adapter a name selects: its canonical name, API and listing.
    fn select(
        prefix: &str,
        index: Option<usize>,
        pinned: bool,
    ) -> Result<(String, Backend, Listed), String> {
        let prefix = if prefix == "wgpu" { "gpu" } else { prefix };
        let (backend, mut adapters) = settle(pinned).ok_or_else(|| no_adapter(pinned))?;
        let i = match index {
            Some(i) if i < adapters.len() => i,
            Some(i) => {
                return Err(format!(
                    "there is no {prefix}:{i}: this machine has {} adapter(s): {}; pick one of them",
                    adapters.len(),
                    listing(prefix, backend, &adapters)
                ));
            }
            None => preferred(&adapters).ok_or_else(|| no_adapter(pinned))?,
        };
        let listed = adapters.swap_remove(i);
        Ok((format!("{prefix}:{i}"), backend, listed))
    }

    fn init(
        name: String,
        backend: Backend,
        listed: Listed,
    ) -> Result<(Device, DeviceInfo), String> {
        let software = listed.info.device_type == DeviceType::Cpu;
        let adapter = AdapterInfo {
            name: listed.info.name.clone(),
            api: api_name(backend),
            shaders: shaders(backend),
            software,
        };
        if software && adapter.shaders == "SPIR-V" {
            // Measured: Mesa's lavapipe (22.3, 25.0) segfaults compiling
            // Burn's SPIR-V kernels.
            return Err(format!(
                "`{}` is a software Vulkan renderer, which crashes on Burn's SPIR-V kernels (this build has the `vulkan` feature); build with `--features wgpu` alone for its WGSL kernels, install the GPU's Vulkan driver, or use the `cpu` device",
                adapter.name
            ));
        }
        let Some(kind) = listed.kind else {
            return Err(format!(
                "`{}` is an adapter of a type Burn's runtime cannot select by index; pick another",
                adapter.name
            ));
        };
        let graphics_api = match backend {
            Backend::Vulkan => WgpuBackend::Vulkan,
            Backend::Metal => WgpuBackend::Metal,
            Backend::Dx12 => WgpuBackend::Dx12,
            Backend::Gl => WgpuBackend::Gl,
            _ => WgpuBackend::Auto,
        };
        let (device, _) = Device::wgpu_options()
            .device_kind(kind)
            .graphics_api(graphics_api)
            .init_with_setup()
            .map_err(|e| {
                format!(
                    "cannot open `{}` on {} ({e}); check its driver, or use the `cpu` device",
                    adapter.name, adapter.api
                )
            })?;
        let info = DeviceInfo {
            name,
            adapter: Some(adapter),
        };
        Ok((device, info))
    }

    pub(super) fn describe(device: &Device) -> Option<DeviceInfo> {
        let opened = OPENED.lock().unwrap_or_else(|e| e.into_inner());
        opened.iter().find_map(|(_, outcome)| match outcome {
            Ok((d, info)) if d == device => Some(info.clone()),
            _ => None,
        })
    }
}

#[cfg(not(any(feature = "wgpu", feature = "vulkan")))]
mod wgpu {
    use super::DeviceInfo;
    use burn::tensor::Device;

    pub(super) fn open(_: &str, _: Option<usize>, _: bool) -> Result<Device, String> {
        Err("this build has no GPU backend; rebuild with `cargo build --release --features wgpu` (WGSL kernels through wgpu: Vulkan, Metal or DX12)".into())
    }

    pub(super) fn describe(_: &Device) -> Option<DeviceInfo> {
        None
    }
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
        let err = parse_device("tpu").unwrap_err().to_string();
        assert!(err.contains(DEVICE_NAMES), "{err}");
        let err = parse_device("gpu:x").unwrap_err().to_string();
        assert!(err.contains("gpu:0"), "{err}");
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
        #[cfg(not(any(feature = "wgpu", feature = "vulkan", feature = "cuda")))]
        for name in ["gpu", "wgpu:1"] {
            let err = parse_device(name).unwrap_err().to_string();
            assert!(err.contains("--features wgpu"), "{err}");
        }
    }

    #[test]
    fn the_cpu_is_described_with_its_threads() {
        let info = describe_device(&Device::flex().autodiff());
        assert_eq!(info.name, "cpu");
        assert!(info.to_string().starts_with("cpu (Flex, "), "{info}");
        assert_eq!(info.warning(), None);
    }

    #[test]
    fn a_software_adapter_is_described_and_warned_about() {
        let info = DeviceInfo {
            name: "gpu:0".into(),
            adapter: Some(AdapterInfo {
                name: "llvmpipe (LLVM 15.0.6, 256 bits)".into(),
                api: "Vulkan",
                shaders: "WGSL",
                software: true,
            }),
        };
        assert_eq!(
            info.to_string(),
            "gpu:0 (llvmpipe (LLVM 15.0.6, 256 bits), Vulkan, WGSL, software)"
        );
        let warning = info.warning().unwrap();
        assert!(
            warning.contains("slower than the `cpu` device"),
            "{warning}"
        );
        let hardware = DeviceInfo {
            adapter: info.adapter.clone().map(|a| AdapterInfo {
                software: false,
                ..a
            }),
            ..info
        };
        assert_eq!(hardware.warning(), None);
        assert!(!hardware.to_string().contains("software"));
    }
}
