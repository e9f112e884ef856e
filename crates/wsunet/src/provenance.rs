//! What produced a folder of predictions: `predict.json`, written once into
//! the folder before its first output, naming the model (its card and the
//! SHA-256 of its weights file) and every setting that changes the outputs
//! (tile, overlap, TTA, which files are written; the normalization is the
//! card's).
//!
//! A rerun or another shard into the same folder claims it with the same
//! record and is refused with the differences named when its model or
//! settings differ, so one folder never mixes two models' outputs. Claiming
//! is atomic (the record is linked into place, never half written), so
//! shards that start together cannot both create it.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::card::{ModelCard, model_paths};
use crate::error::{Error, Result};
use crate::fs::{read_json, temp_path, write_json};
use crate::infer::Tta;

/// The record's file name in an output folder.
pub const PROVENANCE_FILE: &str = "predict.json";

/// The files written for one image: the mask always, the rest on request.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outputs {
    /// `NAME_overlay.png` (`.tif` for TIFF inputs) with this opacity of the
    /// class colours.
    pub overlay: Option<f32>,
    /// `NAME_probs.npy` (`.tif` for TIFF inputs): probabilities.
    pub probs: bool,
    /// `NAME_logits.npy` (`.tif` for TIFF inputs): logits.
    pub logits: bool,
    /// `NAME_uncertainty.png` and `NAME_uncertainty.npy` (one
    /// `NAME_uncertainty.tif` for TIFF inputs): entropy and the flips'
    /// disagreement ([`Prediction::uncertainty`](crate::infer::Prediction::uncertainty)).
    #[serde(default)]
    pub uncertainty: bool,
    /// The objects: `NAME_instances.tif` (object ids), `NAME_objects.csv`
    /// (one row per object) and `NAME_objects.geojson` (outlines). Always
    /// for an instance model; a semantic model's objects are each class's
    /// connected pieces.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub instances: bool,
}

/// What kind of files an input's outputs are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// PNG masks and overlays, `.npy` arrays (the whole image in memory).
    Png,
    /// Tiled, pyramidal TIFFs, written while streaming (TIFF inputs).
    Tiff,
}

impl Outputs {
    /// The file names written for the image whose name stem is `stem`,
    /// the mask first.
    pub fn files(&self, stem: &str, kind: OutputKind) -> Vec<String> {
        self.named_files(stem, kind)
            .into_iter()
            .map(|(_, name)| name)
            .collect()
    }

    /// [`files`](Self::files) with what each holds: `mask`, `overlay`,
    /// `probs`, `logits`, `uncertainty` (the maps as numbers: `.npy`, or
    /// the TIFF) and `uncertainty_png` (the maps as a picture, for inputs
    /// held in memory).
    pub fn named_files(&self, stem: &str, kind: OutputKind) -> Vec<(&'static str, String)> {
        let (image, array) = match kind {
            OutputKind::Png => ("png", "npy"),
            OutputKind::Tiff => ("tif", "tif"),
        };
        let mut files = vec![("mask", format!("{stem}.{image}"))];
        if self.overlay.is_some() {
            files.push(("overlay", format!("{stem}_overlay.{image}")));
        }
        if self.probs {
            files.push(("probs", format!("{stem}_probs.{array}")));
        }
        if self.logits {
            files.push(("logits", format!("{stem}_logits.{array}")));
        }
        if self.uncertainty {
            match kind {
                OutputKind::Png => {
                    files.push(("uncertainty_png", format!("{stem}_uncertainty.png")));
                    files.push(("uncertainty", format!("{stem}_uncertainty.npy")));
                }
                OutputKind::Tiff => files.push(("uncertainty", format!("{stem}_uncertainty.tif"))),
            }
        }
        if self.instances {
            files.push(("instances", format!("{stem}_instances.tif")));
            files.push(("objects_csv", format!("{stem}_objects.csv")));
            files.push(("objects_geojson", format!("{stem}_objects.geojson")));
        }
        files
    }

    /// Whether every file of `stem` is in `dir`. Outputs are written
    /// atomically, so a file that is there is whole.
    pub fn complete(&self, dir: &Path, stem: &str, kind: OutputKind) -> bool {
        self.files(stem, kind).iter().all(|f| dir.join(f).is_file())
    }

    /// Writes the PNG/`.npy` outputs of one image held in memory into
    /// `dir` (the names of [`files`](Self::files) with
    /// [`OutputKind::Png`]), each atomically; returns the mask. `image` is
    /// the image as read (for the overlay).
    pub fn write(
        &self,
        dir: &Path,
        stem: &str,
        image: &crate::data::Image,
        prediction: &crate::infer::Prediction,
        classes: &crate::data::ClassList,
    ) -> Result<crate::data::Mask> {
        use crate::data::io::{write_mask_png, write_npy, write_rgb8_png};
        let mask = prediction.mask();
        let path = |suffix: &str| dir.join(format!("{stem}{suffix}"));
        write_mask_png(&path(".png"), &mask, classes)?;
        if let Some(alpha) = self.overlay {
            let rgb = crate::infer::overlay(image, &mask, classes, alpha);
            write_rgb8_png(&path("_overlay.png"), mask.width, mask.height, &rgb)?;
        }
        let shape = [prediction.num_classes, prediction.height, prediction.width];
        if self.probs {
            write_npy(&path("_probs.npy"), &shape, &prediction.probs)?;
        }
        if let Some(logits) = prediction.logits.as_ref().filter(|_| self.logits) {
            write_npy(&path("_logits.npy"), &shape, logits)?;
        }
        if let Some(maps) = prediction.uncertainty().filter(|_| self.uncertainty) {
            let n = mask.height * mask.width;
            write_npy(
                &path("_uncertainty.npy"),
                &[2, mask.height, mask.width],
                &maps,
            )?;
            let rgb = uncertainty_rgb(&maps[..n], &maps[n..]);
            write_rgb8_png(&path("_uncertainty.png"), mask.width, mask.height, &rgb)?;
        }
        Ok(mask)
    }
}

/// The uncertainty maps as one 8-bit RGB picture: red the entropy, green
/// the flips' disagreement (yellow where both are high, black where the
/// model is sure), each from 0 to 1 as 0 to 255.
pub fn uncertainty_rgb(entropy: &[f32], disagreement: &[f32]) -> Vec<u8> {
    let byte = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    entropy
        .iter()
        .zip(disagreement)
        .flat_map(|(&e, &d)| [byte(e), byte(d), 0])
        .collect()
}

/// The settings of a prediction run that change its outputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Tile side.
    pub tile: usize,
    /// Overlap of neighbouring tiles.
    pub overlap: f32,
    /// Test-time augmentation.
    pub tta: Tta,
    /// The files written per image.
    pub outputs: Outputs,
    /// The resolution level of TIFF inputs predicted (0: full).
    #[serde(default)]
    pub level: usize,
    /// Tiles left out as empty.
    #[serde(default)]
    pub skip_empty: bool,
    /// How TIFF outputs are compressed.
    #[serde(default)]
    pub compression: crate::raster::Compression,
    /// How TIFF probabilities are stored.
    #[serde(default)]
    pub probs_type: crate::infer::ProbsType,
    /// The factor images were resampled by for the network (1: none;
    /// `None`: each image's own, from its pixel size and the model's).
    #[serde(default = "unscaled")]
    pub scale: Option<f64>,
}

fn unscaled() -> Option<f64> {
    Some(1.0)
}

/// The model a folder was predicted with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSource {
    /// Its weights file as the run that created the record named it (for
    /// people; not compared).
    pub path: PathBuf,
    /// SHA-256 of the weights file, hex (for people; compared only with a
    /// record written before `weights`).
    pub sha256: String,
    /// The digest of the weights themselves
    /// ([`weights_digest`](crate::card::weights_digest)): a model saved
    /// again, converted to safetensors and back, or retrained to the same
    /// values is the same model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<String>,
    /// Its card: architecture, classes, normalization.
    pub card: ModelCard,
}

/// The record of what produced an output folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// The program that wrote the record (not compared).
    pub tool: String,
    /// The model.
    pub model: ModelSource,
    /// The settings.
    pub settings: Settings,
}

/// How [`Provenance::claim`] found the folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// No record was there: this run's is now.
    New,
    /// The same model and settings made it: outputs there can be kept.
    Same,
    /// Another record was replaced (overwriting was asked for).
    Replaced,
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let io = |error| Error::Io {
        path: path.to_path_buf(),
        error,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

impl Provenance {
    /// The record of predicting with the model at `model` (a run directory
    /// or a model file, as [`load_model`](crate::card::load_model) takes),
    /// whose weights have the digest `weights` and whose card is `card`,
    /// with `settings`.
    pub fn new(
        model: &Path,
        weights: String,
        card: &ModelCard,
        settings: Settings,
    ) -> Result<Provenance> {
        let (bpk, _) = model_paths(model);
        Ok(Provenance {
            tool: format!("wsunet {}", env!("CARGO_PKG_VERSION")),
            model: ModelSource {
                sha256: sha256_file(&bpk)?,
                path: bpk,
                weights: Some(weights),
                card: card.clone(),
            },
            settings,
        })
    }

    /// What differs between the folder's record `self` and `other`, one
    /// phrase each; empty when they made the same outputs.
    pub fn differences(&self, other: &Provenance) -> Vec<String> {
        let mut out = Vec::new();
        let (a, b) = (&self.model, &other.model);
        let short = |s: &str| s[..s.len().min(12)].to_string();
        match (&a.weights, &b.weights) {
            (Some(x), Some(y)) if x != y => out.push(format!(
                "model weights: digest {}… ({}) there, {}… ({}) now",
                short(x),
                a.path.display(),
                short(y),
                b.path.display()
            )),
            (Some(_), Some(_)) => {}
            // A record from before weight digests: its file's hash.
            _ if a.sha256 != b.sha256 => out.push(format!(
                "model weights: sha256 {}… ({}) there, {}… ({}) now",
                short(&a.sha256),
                a.path.display(),
                short(&b.sha256),
                b.path.display()
            )),
            _ => {}
        }
        let card = |field: &str, x: String, y: String| {
            (x != y).then(|| format!("model {field}: {x} there, {y} now"))
        };
        let cards: Vec<String> = [
            card(
                "architecture",
                format!("{:?}", a.card.model),
                format!("{:?}", b.card.model),
            ),
            card(
                "classes",
                a.card.classes.names().join(", "),
                b.card.classes.names().join(", "),
            ),
            card(
                "normalization",
                format!("{:?}", a.card.normalize),
                format!("{:?}", b.card.normalize),
            ),
        ]
        .into_iter()
        .flatten()
        .collect();
        if cards.is_empty() && a.card != b.card {
            out.push("model card: its ignore index or training crop".into());
        }
        out.extend(cards);
        let (s, t) = (&self.settings, &other.settings);
        let mut setting = |name: &str, x: String, y: String| {
            if x != y {
                out.push(format!("{name} {x} there, {y} now"));
            }
        };
        setting("tile", s.tile.to_string(), t.tile.to_string());
        setting("overlap", s.overlap.to_string(), t.overlap.to_string());
        setting(
            "tta",
            format!("{:?}", s.tta).to_lowercase(),
            format!("{:?}", t.tta).to_lowercase(),
        );
        setting(
            "outputs",
            s.outputs.files("NAME", OutputKind::Png).join(" "),
            t.outputs.files("NAME", OutputKind::Png).join(" "),
        );
        setting("level", s.level.to_string(), t.level.to_string());
        setting(
            "skip-empty",
            s.skip_empty.to_string(),
            t.skip_empty.to_string(),
        );
        setting(
            "compression",
            s.compression.to_string(),
            t.compression.to_string(),
        );
        let scale = |s: Option<f64>| s.map_or("auto".to_string(), |f| f.to_string());
        setting("scale", scale(s.scale), scale(t.scale));
        setting(
            "probabilities type",
            s.probs_type.to_string(),
            t.probs_type.to_string(),
        );
        setting(
            "overlay opacity",
            format!("{:?}", s.outputs.overlay),
            format!("{:?}", t.outputs.overlay),
        );
        out
    }

    /// Claims `dir` for this record: creates `dir/predict.json` when there
    /// is none; else compares it. A record from another model or other
    /// settings is [`Error::PredictedBy`], naming the differences, unless
    /// `overwrite` (then it is replaced). `own_outputs` are the files this
    /// run will write: when `dir` has no record but already holds one of
    /// them, nothing says what produced it, so that is
    /// [`Error::UnrecordedOutputs`] unless `overwrite`.
    pub fn claim(&self, dir: &Path, own_outputs: &[String], overwrite: bool) -> Result<Claim> {
        let path = dir.join(PROVENANCE_FILE);
        if overwrite {
            let existed = path.is_file();
            write_json(&path, self)?;
            return Ok(if existed { Claim::Replaced } else { Claim::New });
        }
        if !path.exists()
            && let Some(found) = own_outputs.iter().find(|f| dir.join(f).exists())
        {
            return Err(Error::UnrecordedOutputs {
                dir: dir.to_path_buf(),
                example: found.clone(),
            });
        }
        if self.create(&path)? {
            return Ok(Claim::New);
        }
        let there: Provenance = read_json(&path)?;
        let differences = there.differences(self);
        if differences.is_empty() {
            Ok(Claim::Same)
        } else {
            Err(Error::PredictedBy { path, differences })
        }
    }

    /// Creates `path` holding this record unless it exists: written to a
    /// temporary file and hard-linked into place, which fails when the
    /// target exists, so of two runs creating it at once exactly one does,
    /// and a reader never sees it half written. `false`: it was there.
    fn create(&self, path: &Path) -> Result<bool> {
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            error: std::io::Error::other(e),
        })?;
        let tmp = temp_path(path);
        std::fs::write(&tmp, text).map_err(|error| Error::Io {
            path: tmp.clone(),
            error,
        })?;
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(error) => Err(Error::Io {
                path: path.to_path_buf(),
                error,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WsResUNetConfig;
    use crate::data::{ClassList, Normalize};

    fn record(sha: &str, tile: usize) -> Provenance {
        let config = WsResUNetConfig::new(2);
        Provenance {
            tool: "wsunet test".into(),
            model: ModelSource {
                path: PathBuf::from(format!("{sha}.bpk")),
                sha256: sha.repeat(16),
                weights: Some(format!("{sha}{sha}{sha}{sha}{sha}{sha}")),
                card: ModelCard {
                    model: config,
                    classes: ClassList::numbered(2),
                    normalize: Normalize::identity(3),
                    ignore_index: None,
                    crop: None,
                    pixel_size: None,
                    task: Default::default(),
                    instances: None,
                },
            },
            settings: Settings {
                tile,
                overlap: 0.25,
                tta: Tta::None,
                outputs: Outputs {
                    instances: false,
                    overlay: None,
                    probs: true,
                    logits: false,
                    uncertainty: false,
                },
                level: 0,
                skip_empty: false,
                compression: Default::default(),
                probs_type: Default::default(),
                scale: Some(1.0),
            },
        }
    }

    #[test]
    fn a_folder_is_claimed_once_and_refused_to_another_model_or_setting() {
        let dir = tempfile::tempdir().unwrap();
        let mine = record("ab", 64);
        assert_eq!(mine.claim(dir.path(), &[], false).unwrap(), Claim::New);
        assert_eq!(mine.claim(dir.path(), &[], false).unwrap(), Claim::Same);
        // The path and tool are not compared.
        let mut moved = mine.clone();
        moved.model.path = "elsewhere/model.bpk".into();
        moved.tool = "wsunet 9".into();
        assert_eq!(moved.claim(dir.path(), &[], false).unwrap(), Claim::Same);

        let other = record("cd", 96);
        let err = other.claim(dir.path(), &[], false).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::PredictedBy { .. }), "{err}");
        assert!(
            text.contains(
                "model weights: digest abababababab… (ab.bpk) there, cdcdcdcdcdcd… (cd.bpk) now"
            ),
            "{text}"
        );
        assert!(text.contains("tile 64 there, 96 now"), "{text}");
        // Nothing was written.
        let there: Provenance = read_json(&dir.path().join(PROVENANCE_FILE)).unwrap();
        assert_eq!(there, mine);

        assert_eq!(other.claim(dir.path(), &[], true).unwrap(), Claim::Replaced);
        let there: Provenance = read_json(&dir.path().join(PROVENANCE_FILE)).unwrap();
        assert_eq!(there, other);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "a temporary file was left behind");
    }

    #[test]
    fn the_weights_digest_decides_not_the_files_hash() {
        let dir = tempfile::tempdir().unwrap();
        let mine = record("ab", 64);
        assert_eq!(mine.claim(dir.path(), &[], false).unwrap(), Claim::New);
        // The same weights in another file (saved again, or converted).
        let mut resaved = mine.clone();
        resaved.model.sha256 = "ef".repeat(32);
        assert_eq!(resaved.claim(dir.path(), &[], false).unwrap(), Claim::Same);
        // Other weights: refused, the digests named.
        let mut other = mine.clone();
        other.model.weights = Some("9".repeat(64));
        let err = other.claim(dir.path(), &[], false).unwrap_err().to_string();
        assert!(err.contains("model weights: digest ababab"), "{err}");
        // A record from before digests compares files.
        let old_dir = tempfile::tempdir().unwrap();
        let mut old = mine.clone();
        old.model.weights = None;
        assert_eq!(old.claim(old_dir.path(), &[], false).unwrap(), Claim::New);
        assert_eq!(mine.claim(old_dir.path(), &[], false).unwrap(), Claim::Same);
        let err = resaved
            .claim(old_dir.path(), &[], false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("model weights: sha256"), "{err}");
    }

    #[test]
    fn outputs_without_a_record_are_not_taken_for_this_models() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.png"), b"png").unwrap();
        let mine = record("ab", 64);
        let files = mine.settings.outputs.files("a", OutputKind::Png);
        assert_eq!(files, ["a.png", "a_probs.npy"]);
        assert_eq!(
            mine.settings.outputs.files("a", OutputKind::Tiff),
            ["a.tif", "a_probs.tif"]
        );
        assert!(
            !mine
                .settings
                .outputs
                .complete(dir.path(), "a", OutputKind::Png)
        );
        let err = mine.claim(dir.path(), &files, false).unwrap_err();
        assert!(matches!(err, Error::UnrecordedOutputs { .. }), "{err}");
        assert!(!dir.path().join(PROVENANCE_FILE).exists());
        assert_eq!(mine.claim(dir.path(), &files, true).unwrap(), Claim::New);
    }

    #[test]
    fn racing_claims_create_the_record_once() {
        let dir = tempfile::tempdir().unwrap();
        let outcomes: Vec<Result<Claim>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let dir = dir.path();
                    s.spawn(move || {
                        record(if i % 2 == 0 { "ab" } else { "cd" }, 64).claim(dir, &[], false)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let created = outcomes
            .iter()
            .filter(|o| matches!(o, Ok(Claim::New)))
            .count();
        assert_eq!(created, 1, "{outcomes:?}");
        let there: Provenance = read_json(&dir.path().join(PROVENANCE_FILE)).unwrap();
        // Every claim with the winner's model succeeded; every other failed.
        for outcome in &outcomes {
            match outcome {
                Ok(_) => {}
                Err(Error::PredictedBy { differences, .. }) => {
                    assert!(
                        differences[0].starts_with("model weights"),
                        "{differences:?}"
                    );
                }
                Err(e) => panic!("{e}"),
            }
        }
        let winners = outcomes.iter().filter(|o| o.is_ok()).count();
        assert_eq!(winners, 4, "{} won: {outcomes:?}", there.model.sha256);
    }
}
