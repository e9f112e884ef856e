//! What predicting one image did, and its summary line.

use std::fmt;
use std::path::PathBuf;

use crate::provenance::OutputKind;

/// One image predicted and its outputs written.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageDone {
    /// The input.
    pub input: PathBuf,
    /// The files written, by kind ([`Outputs::named_files`](crate::provenance::Outputs::named_files)), the mask first.
    pub files: Vec<(&'static str, PathBuf)>,
    /// In memory (PNG-style outputs) or streamed (TIFF).
    pub kind: OutputKind,
    /// Height of the image (of the level predicted).
    pub height: usize,
    /// Width.
    pub width: usize,
    /// Tiles predicted.
    pub tiles: usize,
    /// Tiles left out as empty.
    pub skipped_tiles: usize,
    /// Pixels of each class, by class index (nodata pixels not counted).
    pub class_pixels: Vec<u64>,
    /// The classes' names, by index.
    pub class_names: Vec<String>,
    /// Pixels marked nodata.
    pub nodata_pixels: u64,
    /// Objects found, when they were asked for.
    pub objects: Option<u64>,
    /// Seconds from reading to the last output written.
    pub seconds: f64,
}

impl ImageDone {
    /// The mask's path.
    pub fn mask(&self) -> &std::path::Path {
        &self.files[0].1
    }
}

impl fmt::Display for ImageDone {
    /// `INPUT → MASK: H×W, N tile(s), seconds; class shares`, with the
    /// speed, skipped tiles and nodata share of streamed TIFFs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pixels = (self.height * self.width) as f64;
        let shares: Vec<String> = self
            .class_pixels
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(class, &n)| {
                let name = self
                    .class_names
                    .get(class)
                    .cloned()
                    .unwrap_or_else(|| class.to_string());
                format!("{name} {:.1}%", 100.0 * n as f64 / pixels)
            })
            .collect();
        write!(
            f,
            "{} → {}: {}×{}, {} tile(s)",
            self.input.display(),
            self.mask().display(),
            self.height,
            self.width,
            self.tiles
        )?;
        if let Some(n) = self.objects {
            write!(f, ", {n} object(s)")?;
        }
        match self.kind {
            OutputKind::Png => write!(f, ", {:.2} s; {}", self.seconds, shares.join(", ")),
            OutputKind::Tiff => {
                if self.skipped_tiles > 0 {
                    write!(f, " ({} empty, skipped)", self.skipped_tiles)?;
                }
                write!(
                    f,
                    ", {:.1} s, {:.2} MP/s; {}",
                    self.seconds,
                    pixels / self.seconds.max(1e-9) / 1e6,
                    shares.join(", ")
                )?;
                if self.nodata_pixels > 0 {
                    write!(
                        f,
                        ", nodata {:.1}%",
                        100.0 * self.nodata_pixels as f64 / pixels
                    )?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_the_files_the_size_and_the_class_shares() {
        let mut done = ImageDone {
            input: "in/a.png".into(),
            files: vec![("mask", "out/a.png".into())],
            kind: OutputKind::Png,
            height: 10,
            width: 20,
            tiles: 1,
            skipped_tiles: 0,
            class_pixels: vec![150, 0, 50],
            class_names: vec!["background".into(), "cell".into()],
            nodata_pixels: 0,
            objects: None,
            seconds: 0.5,
        };
        assert_eq!(
            done.to_string(),
            "in/a.png → out/a.png: 10×20, 1 tile(s), 0.50 s; background 75.0%, 2 25.0%"
        );
        done.kind = OutputKind::Tiff;
        done.skipped_tiles = 3;
        done.nodata_pixels = 20;
        assert_eq!(
            done.to_string(),
            "in/a.png → out/a.png: 10×20, 1 tile(s) (3 empty, skipped), 0.5 s, 0.00 MP/s; background 75.0%, 2 25.0%, nodata 10.0%"
        );
    }
}
