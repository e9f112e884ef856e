//! The outputs of a TIFF input against the disk, before it is predicted: a
//! whole slide's probabilities can need more room than the disk has, and
//! finding out after an hour of prediction loses the hour.
//!
//! The estimate is what the tiles take uncompressed (every pyramid level,
//! edge tiles whole); the object tables are left out (they grow with the
//! objects, not the pixels). Uncompressed outputs that do not fit are
//! refused; compressed ones that might not fit get a warning with the
//! numbers, since how well they compress depends on the image.

use std::path::Path;

use crate::error::{Error, Result};
use crate::infer::{OUTPUT_TILE, ProbsType};
use crate::provenance::Outputs;
use crate::raster::{Compression, Photometric, RasterSpec, Resample};

/// What the outputs of one input need.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputsSize {
    /// Each output's name and uncompressed bytes.
    pub outputs: Vec<(&'static str, u64)>,
}

impl OutputsSize {
    /// The outputs of a `width × height` input predicted into `classes`
    /// classes: the mask always, the others as asked.
    pub fn of(
        (width, height): (usize, usize),
        classes: usize,
        asked: &Outputs,
        probs_type: ProbsType,
    ) -> OutputsSize {
        let spec = |samples| RasterSpec {
            width,
            height,
            samples,
            photometric: Photometric::Gray,
            compression: Compression::None,
            tile: OUTPUT_TILE,
            resample: Resample::Nearest,
            pyramid: true,
            geo: Default::default(),
            resolution: None,
            bigtiff: false,
        };
        let probs_bytes = match probs_type {
            ProbsType::U8 => 1,
            ProbsType::F32 => 4,
        };
        let mut outputs = vec![(
            "mask",
            spec(1).uncompressed_bytes(if classes > 255 { 2 } else { 1 }),
        )];
        let mut add = |on: bool, name, samples, bytes| {
            if on {
                outputs.push((name, spec(samples).uncompressed_bytes(bytes)));
            }
        };
        add(asked.overlay.is_some(), "overlay", 3, 1);
        add(asked.probs, "probs", classes, probs_bytes);
        add(asked.logits, "logits", classes, 4);
        add(asked.uncertainty, "uncertainty", 2, 4);
        add(asked.instances, "instances", 1, 4);
        OutputsSize { outputs }
    }

    /// All outputs' bytes.
    pub fn total(&self) -> u64 {
        self.outputs.iter().map(|(_, b)| b).sum()
    }

    /// Against `free` bytes on the output's disk: an error when the
    /// outputs are stored uncompressed and do not fit; a warning to show
    /// when they are compressed and would not fit uncompressed.
    pub fn check(
        &self,
        input: &Path,
        out: &Path,
        free: u64,
        compression: Compression,
    ) -> Result<Option<String>> {
        let total = self.total();
        if total <= free {
            return Ok(None);
        }
        let listed: Vec<String> = self
            .outputs
            .iter()
            .map(|(name, bytes)| format!("{name} {}", gib(*bytes)))
            .collect();
        let need = format!(
            "its outputs take {} uncompressed ({}) and {} has {} free",
            gib(total),
            listed.join(", "),
            out.display(),
            gib(free)
        );
        if compression == Compression::None {
            return Err(Error::Data {
                path: input.to_path_buf(),
                reason: format!(
                    "{need}; free space, write elsewhere (--out), or compress the outputs (--compression deflate)"
                ),
            });
        }
        Ok(Some(format!(
            "{}: {need}; compressed they may fit, but watch the disk",
            input.display()
        )))
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Bytes free to an unprivileged user on the disk holding `dir`, where the
/// platform tells it.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        let s = rustix::fs::statvfs(dir).ok()?;
        Some(s.f_bavail.saturating_mul(s.f_frsize))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_count_tiles_and_pyramid_levels() {
        let asked = Outputs {
            probs: true,
            ..Outputs::default()
        };
        // 2,000 × 600: 8 × 3 tiles of 256², then 1,000 × 300 (4 × 2 tiles),
        // whose sides are within the pyramid's smallest level.
        let s = OutputsSize::of((2000, 600), 3, &asked, ProbsType::F32);
        let tile = 256 * 256u64;
        assert_eq!(s.outputs[0], ("mask", (24 + 8) * tile));
        assert_eq!(s.outputs[1], ("probs", (24 + 8) * tile * 3 * 4));
        assert_eq!(s.total(), 32 * tile * 13);
    }

    #[test]
    fn uncompressed_outputs_that_do_not_fit_are_refused_compressed_ones_warned() {
        let s = OutputsSize {
            outputs: vec![("mask", 3 << 30), ("probs", 9 << 30)],
        };
        let (input, out) = (Path::new("slide.tif"), Path::new("out"));
        assert_eq!(
            s.check(input, out, 20 << 30, Compression::None).unwrap(),
            None
        );
        let e = s
            .check(input, out, 10 << 30, Compression::None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("slide.tif")
                && e.contains("its outputs take 12.0 GiB uncompressed (mask 3.0 GiB, probs 9.0 GiB) and out has 10.0 GiB free")
                && e.contains("--compression deflate"),
            "{e}"
        );
        let w = s
            .check(input, out, 10 << 30, Compression::Deflate)
            .unwrap()
            .unwrap();
        assert!(w.contains("compressed they may fit"), "{w}");
    }

    #[test]
    fn the_disk_reports_its_free_space() {
        let dir = tempfile::tempdir().unwrap();
        if cfg!(unix) {
            assert!(free_bytes(dir.path()).unwrap() > 0);
        }
    }
}
