//! Reading and writing PyTorch-style safetensors state dicts.
//!
//! Keys are the PyTorch twin's (`stem.conv.weight`, `stem.gn.weight`, …).
//! Burn names GroupNorm's parameters `gamma`/`beta`; burn-store's PyTorch
//! adapters map them to `weight`/`bias` both ways, so files move between
//! wsunet and `python/wsunet_torch.py` with no remapping by the user.

use std::path::Path;

use burn::module::Module;
use burn::store::{
    ApplyError, ApplyResult, BurnToPyTorchAdapter, ModuleSnapshot, PyTorchToBurnAdapter,
    SafetensorsStore,
};

use crate::error::{Error, Result};

/// How many names to list per category in an error before summarizing.
const MAX_LISTED: usize = 12;

fn listed(names: &[String]) -> String {
    let mut s = names
        .iter()
        .take(MAX_LISTED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > MAX_LISTED {
        s.push_str(&format!(", … ({} in all)", names.len()));
    }
    s
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
    let unused: Vec<String> = result.unused.iter().map(|name| torch_key(name)).collect();
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
pub fn load_safetensors<M: Module + ModuleSnapshot>(module: &mut M, path: &Path) -> Result<()> {
    if !path.is_file() {
        return Err(Error::Weights {
            path: path.to_path_buf(),
            reason: "no such file".into(),
        });
    }
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

/// Writes `module`'s parameters as a PyTorch-style safetensors state dict,
/// replacing `path` atomically (a temporary file in the same folder, then a
/// rename), so a crash never leaves a half-written file.
pub fn save_safetensors<M: Module + ModuleSnapshot>(module: &M, path: &Path) -> Result<()> {
    if path.file_name().is_none() {
        return Err(Error::Weights {
            path: path.to_path_buf(),
            reason: "not a file path".into(),
        });
    }
    let tmp = crate::atomic::temp_path(path);
    let mut store = SafetensorsStore::from_file(&tmp)
        .with_to_adapter(BurnToPyTorchAdapter)
        .overwrite(true);
    module.save_into(&mut store).map_err(|e| Error::Weights {
        path: path.to_path_buf(),
        reason: format!("cannot write safetensors: {e}"),
    })?;
    std::fs::rename(&tmp, path).map_err(|error| {
        let _ = std::fs::remove_file(&tmp);
        Error::Io {
            path: path.to_path_buf(),
            error,
        }
    })
}
