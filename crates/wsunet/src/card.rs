//! The model file format: Burn's own parameter file (`NAME.bpk`) with a JSON
//! card beside it (`NAME.json`) holding the architecture, the class list and
//! the input normalization — everything a command needs to use the model
//! without restating it.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::data::{ClassList, Normalize};
use crate::error::{Error, Result};
use crate::fs::{read_json_with, write_atomic_with, write_json};
use crate::model::{WsResUNet, WsResUNetConfig};
use crate::objects::{InstanceSettings, Task};
use crate::run_dir::RunDir;

/// What the JSON beside a model file says about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCard {
    /// The architecture.
    pub model: WsResUNetConfig,
    /// Class names and colours, in index order.
    pub classes: ClassList,
    /// Normalization applied to input images.
    pub normalize: Normalize,
    /// Mask value that was ignored in training, if any.
    #[serde(default)]
    pub ignore_index: Option<u16>,
    /// The training crop `[H, W]`, when known. GroupNorm normalizes over the
    /// whole input, so a model sees inputs of about this size best:
    /// prediction tiles default to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop: Option<[usize; 2]>,
    /// The physical pixel size of the training images, when they stated
    /// one (TIFF resolution tags, OME-XML, Aperio): prediction warns when
    /// an input's differs by more than 10 %.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pixel_size: Option<crate::raster::PixelSize>,
    /// What the model predicts: classes per pixel, or objects.
    #[serde(default, skip_serializing_if = "Task::is_semantic")]
    pub task: Task,
    /// For [`Task::Instances`]: the training target's boundary width and
    /// the object extraction's settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<InstanceSettings>,
}

impl ModelCard {
    /// Checks that the parts agree (class count, channel count).
    pub fn validate(&self) -> Result<()> {
        self.model.validate()?;
        if self.classes.len() != self.model.num_classes {
            return Err(Error::model(
                "num_classes",
                format!(
                    "the card lists {} classes but the model has {}",
                    self.classes.len(),
                    self.model.num_classes
                ),
            ));
        }
        self.normalize.validate(self.model.in_channels)
    }
}

/// The `.bpk` and `.json` paths of a model given as a run directory (its
/// `model.bpk`), a `.bpk` file or a `.json` card.
pub fn model_paths(path: &Path) -> (PathBuf, PathBuf) {
    let base = if path.is_dir() {
        RunDir::new(path).final_model()
    } else {
        path.to_path_buf()
    };
    (base.with_extension("bpk"), base.with_extension("json"))
}

/// Writes `model` to `path` (`.bpk`, atomic) and its card beside it (`.json`,
/// atomic). The card is written last, so a present card means a complete model.
///
/// A folded model (see [`WsResUNet::fold`]) is refused: the file format
/// holds raw kernels, which loading standardizes, so a folded kernel would be
/// standardized twice. Save the model before folding it.
pub fn save_model(model: &WsResUNet, card: &ModelCard, path: &Path) -> Result<()> {
    let (bpk, json) = model_paths(path);
    if model.is_folded() {
        return Err(Error::Weights {
            path: bpk,
            reason: "this model is folded (its kernels are already standardized) and would load back standardized a second time; save the unfolded model, and fold it only to run it".into(),
        });
    }
    if let Some(dir) = bpk.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|error| Error::Io {
            path: dir.to_path_buf(),
            error,
        })?;
    }
    save_params(model, &bpk)?;
    write_json(&json, card)
}

/// Writes a module's parameters to a `.bpk` file, atomically, as the same
/// bytes for the same weights: its tensors in name order, each with an id
/// derived from its path (Burn's own ids are random, and its writer keeps
/// the order it is given).
pub fn save_params<M: Module>(module: &M, bpk: &Path) -> Result<()> {
    let fail = |e: &dyn std::fmt::Display| Error::Weights {
        path: bpk.to_path_buf(),
        reason: format!("cannot write the parameters: {e}"),
    };
    let bytes = module
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| fail(&e))?;
    let bytes = canonical_burnpack(bytes, true).map_err(|e| fail(&e))?;
    write_atomic_with(bpk, |tmp| {
        std::fs::write(tmp, &bytes[..]).map_err(|error| Error::Io {
            path: bpk.to_path_buf(),
            error,
        })
    })
}

/// A burnpack container rewritten in a fixed form: tensors sorted by name,
/// and with `ids_from_paths` each tensor's parameter id derived from its
/// name (as [`WsResUNetConfig::init`] gives them), metadata and scalars as
/// they were (kept sorted by the container).
pub(crate) fn canonical_burnpack(
    bytes: burn::tensor::Bytes,
    ids_from_paths: bool,
) -> std::result::Result<burn::tensor::Bytes, burn_pack::Error> {
    let reader = burn_pack::Reader::from_bytes(bytes)?;
    let metadata = reader.metadata().clone();
    let scalars = reader.scalars().clone();
    let mut tensors = reader.into_tensors()?;
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    if ids_from_paths {
        for t in &mut tensors {
            t.param_id = Some(crate::init::path_id(&t.name));
        }
    }
    let mut writer = burn_pack::Writer::new(tensors);
    for (key, value) in &metadata {
        writer = writer.with_metadata(key, value);
    }
    for (key, value) in scalars {
        writer = writer.with_scalar(&key, value);
    }
    writer.into_bytes()
}

/// A digest of a module's weights: SHA-256 over every tensor's name, type,
/// shape and bytes, in name order. The same weights give the same digest
/// whatever file they came from (`.bpk` or safetensors, saved again or
/// retrained to the same values); any changed value changes it.
pub fn weights_digest<M: Module>(module: &M) -> Result<String> {
    use sha2::{Digest, Sha256};
    let fail = |e: &dyn std::fmt::Display| Error::Weights {
        path: PathBuf::new(),
        reason: format!("cannot read the weights: {e}"),
    };
    let bytes = module
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| fail(&e))?;
    let mut tensors = burn_pack::Reader::from_bytes(bytes)
        .and_then(|r| r.into_tensors())
        .map_err(|e| fail(&e))?;
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    let mut hasher = Sha256::new();
    for t in tensors {
        hasher.update((t.name.len() as u64).to_le_bytes());
        hasher.update(t.name.as_bytes());
        hasher.update(format!("{:?}", t.dtype).as_bytes());
        for &d in t.shape.iter() {
            hasher.update((d as u64).to_le_bytes());
        }
        let data = t.into_bytes().map_err(|e| fail(&e))?;
        hasher.update((data.len() as u64).to_le_bytes());
        hasher.update(&data[..]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Reads a model saved by [`save_model`] onto `device`: `path` is a run
/// directory (its final `model.bpk`), a `.bpk` file or its `.json` card.
///
/// # Example
///
/// ```
/// use burn::tensor::Device;
/// use wsunet::WsResUNetConfig;
/// use wsunet::card::{ModelCard, load_model, save_model};
/// use wsunet::data::{ClassList, Normalize};
///
/// let device = Device::flex();
/// let config = WsResUNetConfig::new(2).with_widths(vec![8, 8, 16, 16, 16]).with_groups(4);
/// let model = config.init_seeded(&device, 0).unwrap();
/// let card = ModelCard {
///     model: config,
///     classes: ClassList::numbered(2),
///     normalize: Normalize::identity(3),
///     ignore_index: None,
///     crop: None,
///     pixel_size: None,
///     task: Default::default(),
///     instances: None,
/// };
/// let dir = tempfile::tempdir().unwrap();
/// save_model(&model, &card, &dir.path().join("unet.bpk")).unwrap();
/// let (back, back_card) = load_model(&dir.path().join("unet.bpk"), &device).unwrap();
/// assert_eq!(back_card, card);
/// # let _ = back;
/// ```
pub fn load_model(path: &Path, device: &Device) -> Result<(WsResUNet, ModelCard)> {
    let (bpk, json) = model_paths(path);
    if !json.is_file() {
        return Err(Error::Weights {
            path: json,
            reason:
                "no model card here; give a run directory or the .bpk of a model saved by wsunet"
                    .into(),
        });
    }
    let card: ModelCard = read_json_with(&json, |e| Error::Weights {
        path: json.clone(),
        reason: format!("not a model card: {e}"),
    })?;
    card.validate().map_err(|e| Error::Weights {
        path: json.clone(),
        reason: e.to_string(),
    })?;
    let model = card.model.init(device)?;
    let model = load_params(model, &bpk)?;
    Ok((model, card))
}

/// Loads a `.bpk` parameter file into `model`, which must have its shapes.
pub fn load_params<M: Module>(model: M, bpk: &Path) -> Result<M> {
    let record = ModuleRecord::load(bpk).map_err(|e| Error::Weights {
        path: bpk.to_path_buf(),
        reason: format!("cannot read the parameters: {e}"),
    })?;
    model.try_load_record(record).map_err(|e| Error::Weights {
        path: bpk.to_path_buf(),
        reason: format!("does not fit the model: {e}"),
    })
}
