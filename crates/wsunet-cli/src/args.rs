//! The argument types and parsers the commands share: `--device` (opened
//! and announced here), the model-config arguments, the enum and number
//! parsers. It sits below `commands/` (which use it) and `cli.rs` (which
//! lists the commands); it knows neither.

use std::path::PathBuf;

use anyhow::Context as _;
use burn::tensor::Device;
use clap::Args;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use serde::Serialize;
use wsunet::WsResUNetConfig;
use wsunet::device::{DeviceInfo, describe_device};

/// `--device` of every command that computes.
const DEVICE_HELP: &str = "Compute device: cpu; gpu[:N] (any GPU through wgpu: Vulkan, Metal or DX12; build feature wgpu), vulkan[:N] (SPIR-V kernels; feature vulkan) or cuda[:N] (feature cuda). N counts the adapters; the device line names the one in use";

/// `--device`, shared by every command that computes; opened (and named in
/// a device line) by [`DeviceArg::open`]. Left out, it is `cpu`, except for
/// `train`, which takes the `--config`'s device or, with `--resume`, the
/// run's (said in its `--help`).
#[derive(Debug, Clone, Args)]
pub struct DeviceArg {
    #[arg(long, value_name = "DEVICE", help = DEVICE_HELP)]
    pub device: Option<String>,
}

impl DeviceArg {
    /// The device's name: as given, else `cpu`.
    pub fn name(&self) -> &str {
        self.device.as_deref().unwrap_or("cpu")
    }

    /// Opens the device and prints its device line (see [`open_device`]).
    pub fn open(&self) -> anyhow::Result<burn::tensor::Device> {
        open_device(self.name())
    }
}

/// Opens `--device NAME` and says what it is (see [`announce`]).
pub fn open_device(name: &str) -> anyhow::Result<Device> {
    let device = wsunet::parse_device(name).context("fix --device")?;
    println!("device {}", announce(&device));
    Ok(device)
}

/// What `device` is, for a settings line; a software GPU adapter gets a
/// warning on stderr.
pub fn announce(device: &Device) -> DeviceInfo {
    let info = describe_device(device);
    if let Some(warning) = info.warning() {
        eprintln!("warning: {warning}");
    }
    info
}

/// The name a library enum's value has in config files (serde's).
fn serde_name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// A value parser for a library enum: accepts exactly the names config
/// files use for `values`, and `--help` lists them.
pub fn choice<T>(values: &[T]) -> impl TypedValueParser<Value = T>
where
    T: Serialize + Clone + Send + Sync + 'static,
{
    let values = values.to_vec();
    let names: Vec<String> = values.iter().map(serde_name).collect();
    PossibleValuesParser::new(names.clone()).map(move |name| {
        let i = names.iter().position(|n| *n == name);
        // clap accepted `name`, so it is one of `names`.
        values[i.unwrap_or(0)].clone()
    })
}

/// The mask value of ignored pixels, if any (`--ignore-index I|none`);
/// serialized as the config's `ignore_index` (a number or null).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct IgnoreIndex(pub Option<u16>);

impl std::fmt::Display for IgnoreIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(v) => write!(f, "{v}"),
            None => f.write_str("none"),
        }
    }
}

/// Parses an ignore index: a mask value, or `none`.
pub fn parse_ignore(s: &str) -> Result<IgnoreIndex, String> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(IgnoreIndex(None));
    }
    s.parse::<u16>()
        .map(|v| IgnoreIndex(Some(v)))
        .map_err(|_| format!("`{s}` is not a mask value (0–65535) or `none`"))
}

/// Which model to describe.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Model config as JSON (fields of WsResUNetConfig; all but num_classes
    /// optional). Without it, the spec's default model.
    #[arg(long, value_name = "FILE", alias = "config")]
    pub model_config: Option<PathBuf>,

    /// Number of classes; overrides the config file's. Default 4.
    #[arg(long, value_name = "N")]
    pub num_classes: Option<usize>,

    /// Norm and standardization variant; overrides the config file's:
    /// ws-gn (the seed's), gn, ws-bn, bn, ws-in, in (InstanceNorm), ws-none
    /// or plain.
    #[arg(long, value_name = "NAME")]
    pub variant: Option<wsunet::Variant>,
}

/// The number of classes of the built-in `shapes` data, used when none is given.
const DEFAULT_CLASSES: usize = wsunet::data::SHAPES_CLASSES.len();

impl ModelArgs {
    /// `--model-config` and `--num-classes` as a validated config.
    pub fn config(&self) -> anyhow::Result<WsResUNetConfig> {
        use anyhow::Context as _;
        let mut config = match &self.model_config {
            Some(path) => WsResUNetConfig::from_file(path).context("fix --model-config")?,
            None => WsResUNetConfig::new(DEFAULT_CLASSES),
        };
        if let Some(n) = self.num_classes {
            config.num_classes = n;
        }
        if let Some(v) = self.variant {
            config = config.with_variant(v);
        }
        config.validate().context(match &self.model_config {
            Some(path) => format!("fix --model-config {} or --num-classes", path.display()),
            None => "fix --num-classes".to_string(),
        })?;
        Ok(config)
    }
}

/// Parses a finite number. clap alone would take `nan` and `inf`, which a
/// JSON config cannot hold (they would silently become `null`).
pub fn finite<T: std::str::FromStr + Copy + Into<f64>>(s: &str) -> Result<T, String> {
    let value: T = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number"))?;
    if value.into().is_finite() {
        Ok(value)
    } else {
        Err(format!("`{s}` is not a finite number"))
    }
}

/// Parses `H`x`W` or a single number into `[H, W]`.
pub fn parse_size(s: &str) -> Result<[usize; 2], String> {
    let parse = |v: &str| {
        v.trim()
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("`{s}` is not a size; use HxW (e.g. 256x320) or one number"))
    };
    match s.split_once(['x', 'X', '×']) {
        Some((h, w)) => Ok([parse(h)?, parse(w)?]),
        None => parse(s).map(|n| [n, n]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignore_index() {
        assert_eq!(parse_ignore("255").unwrap(), IgnoreIndex(Some(255)));
        assert_eq!(parse_ignore("none").unwrap(), IgnoreIndex(None));
        assert_eq!(IgnoreIndex(None).to_string(), "none");
        assert_eq!(
            parse_ignore(&IgnoreIndex(Some(7)).to_string()).unwrap(),
            IgnoreIndex(Some(7))
        );
        assert!(parse_ignore("-1").unwrap_err().contains("none"));
    }

    #[test]
    fn numbers_are_finite() {
        assert_eq!(finite::<f64>(" 0.5").unwrap(), 0.5);
        for bad in ["nan", "inf", "-infinity", "x"] {
            assert!(finite::<f32>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256").unwrap(), [256, 256]);
        assert_eq!(parse_size("77x101").unwrap(), [77, 101]);
        assert!(parse_size("0x5").is_err());
        assert!(parse_size("big").unwrap_err().contains("HxW"));
    }
}
