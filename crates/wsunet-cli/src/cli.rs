//! Command-line parsing (clap derive), kept apart from running the commands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// wsunet: weight-standardized residual U-Nets for semantic segmentation.
///
/// A WS+GroupNorm residual U-Net (WSResUNet) in one native binary: inspect
/// architectures and run them on CPU or GPU.
#[derive(Debug, Parser)]
#[command(name = "wsunet", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a model's architecture (per part: channels, stride, output size)
    /// and its parameter count.
    Info(InfoArgs),
}

/// Which model to describe.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Model config as JSON (fields of WsResUNetConfig; all but num_classes
    /// optional). Without it, the spec's default model.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Number of classes; overrides the config file's. Default 4.
    #[arg(long, value_name = "N")]
    pub num_classes: Option<usize>,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    /// Input size for the table's output sizes: HxW, or one number for a square.
    #[arg(long, value_name = "HxW", default_value = "256", value_parser = parse_size)]
    pub size: [usize; 2],

    /// Also run one forward pass on this device to check that it works:
    /// cpu, vulkan[:N] or cuda[:N] (GPU backends need the matching build feature).
    #[arg(long, value_name = "DEVICE")]
    pub device: Option<String>,

    /// Print JSON (config, parts, parameter counts) instead of a table.
    #[arg(long)]
    pub json: bool,
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
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256").unwrap(), [256, 256]);
        assert_eq!(parse_size("77x101").unwrap(), [77, 101]);
        assert!(parse_size("0x5").is_err());
        assert!(parse_size("big").unwrap_err().contains("HxW"));
    }
}
