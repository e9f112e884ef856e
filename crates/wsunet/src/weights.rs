//! Reading and writing PyTorch-style state dicts (safetensors, and PyTorch
//! `.pt`/`.pth` pickles for reading), and inferring a WSResUNet's
//! architecture from one.
//!
//! Keys are the PyTorch twin's (`stem.conv.weight`, `stem.gn.weight`, …).
//! Burn names GroupNorm's parameters `gamma`/`beta`; burn-store's PyTorch
//! adapters map them to `weight`/`bias` both ways, so files move between
//! wsunet and `python/wsunet_torch.py` with no remapping by the user.

use std::path::Path;

use burn::module::Module;
use std::collections::BTreeMap;

use burn::store::{
    ApplyError, ApplyResult, BurnToPyTorchAdapter, ModuleSnapshot, PyTorchToBurnAdapter,
    PytorchStore, SafetensorsStore,
};

use crate::layers::{Norm, Standardization};
use crate::model::{WsResUNet, WsResUNetConfig};

use crate::error::{Error, Result};

/// How many names to list per category in an error before summarizing.
const MAX_LISTED: usize = 12;

fn listed(names: &[String]) -> String {
    crate::error::listing(names, MAX_LISTED, ", ")
}

/// The PyTorch name of a Burn parameter path: GroupNorm's `gamma`/`beta` are
/// `weight`/`bias` there; every other name is the same.
fn torch_key(path: &str) -> String {
    match path.rsplit_once('.') {
        Some((parent, "gamma")) => format!("{parent}.weight"),
        Some((parent, "beta")) => format!("{parent}.bias"),
        _ => path.to_string(),
    }
}

fn describe(error: &ApplyError) -> String {
    match error {
        ApplyError::ShapeMismatch {
            path,
            expected,
            found,
        } => format!(
            "{} is {:?} in the file but {:?} in the model",
            torch_key(path),
            found.as_slice(),
            expected.as_slice()
        ),
        ApplyError::DTypeMismatch {
            path,
            expected,
            found,
        } => format!(
            "{} is {found:?} in the file but {expected:?} in the model",
            torch_key(path)
        ),
        ApplyError::AdapterError { path, message } | ApplyError::LoadError { path, message } => {
            format!("{}: {message}", torch_key(path))
        }
    }
}

/// Turns an [`ApplyResult`] into an error listing every missing, unexpected
/// and mismatched tensor, or `Ok` when the file matched the module exactly.
fn strict_result(path: &Path, result: ApplyResult) -> Result<()> {
    let missing: Vec<String> = result
        .missing
        .iter()
        .map(|(name, _)| torch_key(name))
        .collect();
    // PyTorch's BatchNorm counts its steps in `num_batches_tracked`; with a
    // fixed momentum the count changes nothing, and PyTorch fills it in when
    // a state dict leaves it out, so it is read past, not required.
    let unused: Vec<String> = result
        .unused
        .iter()
        .filter(|name| !name.ends_with(".num_batches_tracked"))
        .map(|name| torch_key(name))
        .collect();
    let errors: Vec<String> = result.errors.iter().map(describe).collect();
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!("missing keys: {}", listed(&missing)));
    }
    if !unused.is_empty() {
        problems.push(format!("unexpected keys: {}", listed(&unused)));
    }
    if !errors.is_empty() {
        problems.push(format!("mismatches: {}", listed(&errors)));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Weights {
            path: path.to_path_buf(),
            reason: format!("does not match the model; {}", problems.join("; ")),
        })
    }
}

/// Loads a PyTorch-style safetensors state dict into `module`, strictly:
/// every parameter must be present with its shape, and no key may be left
/// over. The error lists all missing, unexpected and mismatched tensors.
///
/// # Example
///
/// A round trip; a file written by `python/wsunet_torch.py`
/// (`save_file(model.state_dict(), path)`) loads the same way.
///
/// ```
/// use burn::tensor::Device;
/// use wsunet::WsResUNetConfig;
/// use wsunet::weights::{load_safetensors, save_safetensors};
///
/// let device = Device::flex();
/// let config = WsResUNetConfig::new(2).with_widths(vec![8, 8, 16, 16, 16]).with_groups(4);
/// let model = config.init_seeded(&device, 0).unwrap();
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("unet.safetensors");
/// save_safetensors(&model, &path).unwrap();
/// let mut fresh = config.init(&device).unwrap();
/// load_safetensors(&mut fresh, &path).unwrap();
/// // A file for another architecture is refused with every mismatch listed.
/// let mut other = WsResUNetConfig::new(3).init(&device).unwrap();
/// assert!(load_safetensors(&mut other, &path).is_err());
/// ```
pub fn load_safetensors<M: Module + ModuleSnapshot>(module: &mut M, path: &Path) -> Result<()> {
    if !path.is_file() {
        return Err(Error::Weights {
            path: path.to_path_buf(),
            reason: "no such file".into(),
        });
    }
    refuse_folded(path)?;
    let mut store = SafetensorsStore::from_file(path)
        .with_from_adapter(PyTorchToBurnAdapter)
        .allow_partial(true)
        .validate(false);
    let result = module.load_from(&mut store).map_err(|e| Error::Weights {
        path: path.to_path_buf(),
        reason: format!("cannot read as safetensors: {e}"),
    })?;
    strict_result(path, result)
}

/// Metadata entry that marks a state dict of folded kernels (see
/// [`save_state_dict`]).
pub const FOLDED_METADATA: &str = "wsunet.folded";

/// Writes `module`'s parameters as a PyTorch-style safetensors state dict,
/// replacing `path` atomically (a temporary file in the same folder, then a
/// rename), so a crash never leaves a half-written file.
pub fn save_safetensors<M: Module + ModuleSnapshot>(module: &M, path: &Path) -> Result<()> {
    write_safetensors(module, path, false)
}

/// Writes a WSResUNet's state dict like [`save_safetensors`]. A folded model
/// (see [`WsResUNet::fold`]) has standardized kernels and no gains: a state
/// dict for a plain `Conv2d` network. Its file is marked as such in the
/// safetensors metadata ([`FOLDED_METADATA`]), and [`load_state_dict`] and
/// [`load_safetensors`] refuse it, since loading it into a WsConv2d network
/// would standardize the kernels a second time.
pub fn save_state_dict(model: &WsResUNet, path: &Path) -> Result<()> {
    write_safetensors(model, path, model.is_folded())
}

fn write_safetensors<M: Module + ModuleSnapshot>(
    module: &M,
    path: &Path,
    folded: bool,
) -> Result<()> {
    crate::fs::write_atomic_with(path, |tmp| {
        let mut store = SafetensorsStore::from_file(tmp)
            .with_to_adapter(BurnToPyTorchAdapter)
            .overwrite(true);
        if folded {
            store = store.metadata(FOLDED_METADATA, "true");
        }
        module.save_into(&mut store).map_err(|e| Error::Weights {
            path: path.to_path_buf(),
            reason: format!("cannot write safetensors: {e}"),
        })?;
        canonical_header(tmp).map_err(|e| Error::Weights {
            path: path.to_path_buf(),
            reason: format!("cannot write safetensors: {e}"),
        })
    })
}

/// Rewrites a safetensors file's JSON header with its keys (tensor names,
/// and the `__metadata__` entries, which the writer keeps in a hash map) in
/// sorted order, so the file is the same bytes for the same weights. The
/// data and every offset stay as they are; the header is padded with
/// spaces to a multiple of 8 bytes, as the format allows.
fn canonical_header(path: &Path) -> std::io::Result<()> {
    let bytes = std::fs::read(path)?;
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let n = u64::from_le_bytes(
        bytes
            .get(..8)
            .ok_or_else(|| invalid("no header"))?
            .try_into()
            .expect("8 bytes"),
    ) as usize;
    let header = bytes
        .get(8..8 + n)
        .ok_or_else(|| invalid("a short header"))?;
    let data = &bytes[8 + n..];
    let parsed: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|e| invalid(&e.to_string()))?;
    let sorted: BTreeMap<String, serde_json::Value> = parsed
        .into_iter()
        .map(|(key, value)| {
            let value = match value {
                serde_json::Value::Object(map) => {
                    let map: BTreeMap<String, serde_json::Value> = map.into_iter().collect();
                    serde_json::to_value(map).expect("a map of JSON values")
                }
                other => other,
            };
            (key, value)
        })
        .collect();
    let mut json = serde_json::to_vec(&sorted).map_err(|e| invalid(&e.to_string()))?;
    json.resize(json.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + json.len() + data.len());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(data);
    std::fs::write(path, out)
}

/// Whether a safetensors file is marked as holding folded kernels, read from
/// its header alone.
pub fn is_folded_file(path: &Path) -> Result<bool> {
    use std::io::Read;
    let fail = |reason: String| Error::Weights {
        path: path.to_path_buf(),
        reason,
    };
    let mut file = std::fs::File::open(path).map_err(|error| Error::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|e| fail(format!("cannot read as safetensors: {e}")))?;
    let len = u64::from_le_bytes(len);
    // safetensors caps its header at 100 MB.
    if len > 100_000_000 {
        return Err(fail("cannot read as safetensors: header too large".into()));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header)
        .map_err(|e| fail(format!("cannot read as safetensors: {e}")))?;
    let header: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| fail(format!("cannot read as safetensors: {e}")))?;
    Ok(header
        .get("__metadata__")
        .and_then(|m| m.get(FOLDED_METADATA))
        .and_then(|v| v.as_str())
        == Some("true"))
}

fn refuse_folded(path: &Path) -> Result<()> {
    if is_folded_file(path)? {
        return Err(Error::Weights {
            path: path.to_path_buf(),
            reason: "holds folded kernels (already standardized, no gains) for a plain Conv2d network; loading them into a weight-standardized model would standardize them a second time. Use the unfolded state dict".into(),
        });
    }
    Ok(())
}

/// Wrapper prefixes stripped from imported keys: checkpoints wrapped in a
/// `state_dict` or `model` entry, and `module.` from `DataParallel`.
const PREFIX_PATTERN: &str = r"^((state_dict|model|module)\.)+";

fn is_pickle(path: &Path) -> bool {
    matches!(crate::data::io::extension(path).as_str(), "pt" | "pth")
}

/// Every tensor of a state dict file with its shape, keys with their
/// wrapper prefixes (`state_dict.`, `model.`, `module.`) removed.
pub fn read_shapes(path: &Path) -> Result<BTreeMap<String, Vec<usize>>> {
    let fail = |reason: String| Error::Weights {
        path: path.to_path_buf(),
        reason,
    };
    if !path.is_file() {
        return Err(fail("no such file".into()));
    }
    let raw: Vec<(String, Vec<usize>)> = if is_pickle(path) {
        let reader = burn::store::pytorch_reader::PytorchReader::new(path)
            .map_err(|e| fail(format!("cannot read as a PyTorch checkpoint: {e}")))?;
        reader
            .tensors()
            .iter()
            .map(|(k, t)| (k.clone(), t.shape().to_vec()))
            .collect()
    } else {
        let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read: {e}")))?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| fail(format!("cannot read as safetensors: {e}")))?;
        meta.tensors()
            .into_iter()
            .map(|(k, info)| (k, info.shape.clone()))
            .collect()
    };
    let prefix = regex::Regex::new(PREFIX_PATTERN).expect("valid pattern");
    Ok(raw
        .into_iter()
        .map(|(k, shape)| (prefix.replace(&k, "").into_owned(), shape))
        .collect())
}

/// Infers a WSResUNet's architecture from its state dict's keys and shapes:
/// input channels and stem width from `stem.conv.weight`, stage widths and
/// depths from `stageN.B.conv1.conv.weight`, classes from `head.weight`,
/// `scaled` standardization from `.conv.gain` keys, and the norm from
/// `stem.gn.*` (group), `stem.bn.*` (batch) or neither (none). The GroupNorm
/// group count is not stored in a state dict: `groups` supplies it, and
/// `standardization` and `eps` override what the keys imply (a plain
/// convolution's kernel looks like a WS one: `none` must be given).
pub fn infer_config(
    shapes: &BTreeMap<String, Vec<usize>>,
    groups: usize,
    standardization: Option<Standardization>,
    eps: Option<f64>,
) -> Result<WsResUNetConfig> {
    let missing = |key: &str| Error::StateDict {
        key: key.into(),
        reason: format!("the state dict has no `{key}`; is it a WSResUNet with the spec's keys?"),
    };
    let shape = |key: &str| shapes.get(key).ok_or_else(|| missing(key));
    let stem = shape("stem.conv.weight")?;
    let head = shape("head.weight")?;
    if stem.len() != 4 || head.len() != 4 {
        return Err(Error::StateDict {
            key: if stem.len() != 4 {
                "stem.conv.weight"
            } else {
                "head.weight"
            }
            .into(),
            reason: format!(
                "stem.conv.weight {stem:?} and head.weight {head:?} must be 4-D convolution kernels"
            ),
        });
    }
    let mut widths = vec![stem[0]];
    let mut depths = Vec::new();
    for stage in 1..=4 {
        let first = shape(&format!("stage{stage}.0.conv1.conv.weight"))?;
        widths.push(first[0]);
        let prefix = format!("stage{stage}.");
        let blocks = shapes
            .keys()
            .filter_map(|k| {
                k.strip_prefix(&prefix)?
                    .split('.')
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .max()
            .map_or(0, |b| b + 1);
        depths.push(blocks);
    }
    let scaled = shapes.keys().any(|k| k.ends_with(".conv.gain"));
    let standardization = standardization.unwrap_or(if scaled {
        Standardization::Scaled
    } else {
        Standardization::Seed
    });
    let norm = if shapes.contains_key("stem.gn.weight") {
        Norm::Group
    } else if shapes.contains_key("stem.bn.weight") {
        Norm::Batch
    } else {
        Norm::None
    };
    let config = WsResUNetConfig::new(head[0])
        .with_in_channels(stem[1])
        .with_norm(norm)
        .with_widths(widths)
        .with_depths(depths)
        .with_groups(groups)
        .with_standardization(standardization)
        .with_eps(eps);
    config.validate()?;
    Ok(config)
}

/// Loads a PyTorch state dict (`.safetensors`, `.pt`, `.pth`; wrapper
/// prefixes allowed) into `module`, strictly, like [`load_safetensors`].
pub fn load_state_dict<M: Module + ModuleSnapshot>(module: &mut M, path: &Path) -> Result<()> {
    if !path.is_file() {
        return Err(Error::Weights {
            path: path.to_path_buf(),
            reason: "no such file".into(),
        });
    }
    let result = if is_pickle(path) {
        // PytorchStore maps PyTorch names (GroupNorm weight/bias) itself.
        let mut store = PytorchStore::from_file(path)
            .with_key_remapping(PREFIX_PATTERN, "")
            .map_indices_contiguous(false)
            .allow_partial(true)
            .validate(false);
        module.load_from(&mut store).map_err(|e| e.to_string())
    } else {
        refuse_folded(path)?;
        let mut store = SafetensorsStore::from_file(path)
            .with_key_remapping(PREFIX_PATTERN, "")
            .with_from_adapter(PyTorchToBurnAdapter)
            .allow_partial(true)
            .validate(false);
        module.load_from(&mut store).map_err(|e| e.to_string())
    };
    let result = result.map_err(|e| Error::Weights {
        path: path.to_path_buf(),
        reason: format!("cannot read the state dict: {e}"),
    })?;
    strict_result(path, result)
}
