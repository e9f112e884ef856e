//! Checkpoints: model, optimizer and training state of a finished epoch,
//! written so that a kill at any instant leaves the latest complete
//! checkpoint loadable.
//!
//! The files are named by [`RunDir`] (`checkpoints/epoch-0007/` …);
//! `checkpoints/latest.json` says `{"epoch": 7, "dir": "epoch-0007"}`.
//!
//! An epoch's files go into a hidden `.epoch-0007.partial/` folder, which is
//! renamed to `epoch-0007/` when complete; only then is `latest.json`
//! replaced (write to a temporary file, rename). A crash before the pointer
//! moves leaves the previous checkpoint as the latest; older epochs beyond the
//! last two are deleted after the pointer moves.

use std::path::Path;

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use serde::{Deserialize, Serialize};

use super::state::TrainState;
use crate::card::{canonical_burnpack, load_params, save_params};
use crate::error::{Error, Result};
use crate::fs::{read_json_with, write_json};
use crate::run_dir::{Checkpoint, RunDir};

/// Complete checkpoints kept, the latest included (older ones are pruned).
const KEEP: usize = 2;

#[derive(Debug, Serialize, Deserialize)]
struct Latest {
    epoch: usize,
    dir: String,
}

fn fail(path: &Path, what: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        reason: format!("cannot {what}: {e}"),
        source: Some(Box::new(e)),
    }
}

/// Writes the checkpoint of a finished epoch and makes it the latest.
pub fn save<M: Module>(
    run: &RunDir,
    model: &M,
    optim: &ModuleOptimizer,
    state: &TrainState,
) -> Result<()> {
    let root = run.checkpoints();
    let name = Checkpoint::name(state.epoch);
    let files = run.partial_checkpoint(state.epoch);
    let partial = files.path().to_path_buf();
    let done = run.checkpoint(state.epoch).path().to_path_buf();
    for stale in [&partial, &done] {
        if stale.exists() {
            std::fs::remove_dir_all(stale)
                .map_err(|e| fail(stale, "remove an unfinished checkpoint", e))?;
        }
    }
    std::fs::create_dir_all(&partial)
        .map_err(|e| fail(&partial, "create the checkpoint folder", e))?;
    save_params(model, &files.model())?;
    // The optimizer's state lists parameters in hash-map order: written in
    // name order (its names carry the parameters' ids, which come from
    // their paths), so the file is the same bytes for the same state.
    let optim_path = files.optim();
    let bytes = optim
        .into_bytes()
        .map_err(|e| fail(&optim_path, "write optim.bpk", e))?;
    let bytes =
        canonical_burnpack(bytes, false).map_err(|e| fail(&optim_path, "write optim.bpk", e))?;
    std::fs::write(&optim_path, &bytes[..]).map_err(|e| fail(&optim_path, "write optim.bpk", e))?;
    write_json(&files.state(), state)?;
    std::fs::rename(&partial, &done).map_err(|e| fail(&done, "finish the checkpoint", e))?;
    write_json(
        &run.latest_checkpoint(),
        &Latest {
            epoch: state.epoch,
            dir: name,
        },
    )?;
    prune(&root, state.epoch);
    Ok(())
}

/// Deletes complete checkpoints other than the newest [`KEEP`]; failures
/// are harmless (the files stay).
fn prune(root: &Path, latest: usize) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(epoch) = Checkpoint::epoch_of(&name)
            && epoch + KEEP <= latest
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Reads a JSON file of a checkpoint; a failure names the file.
fn read<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    read_json_with(path, |e| fail(path, "parse", e)).map_err(|e| match e {
        Error::Io { path, error } => fail(&path, "read", error),
        e => e,
    })
}

/// Loads the latest complete checkpoint into `model` and `optim`.
pub fn load_latest<M: Module>(
    run: &RunDir,
    model: M,
    optim: ModuleOptimizer,
) -> Result<(M, ModuleOptimizer, TrainState)> {
    let pointer = run.latest_checkpoint();
    if !pointer.is_file() {
        return Err(Error::Checkpoint {
            path: pointer,
            reason: format!(
                "no checkpoint pointer; is {run} a wsunet run directory with at least one finished epoch?"
            ),
            source: None,
        });
    }
    let latest: Latest = read(&pointer)?;
    let files = run.checkpoint_named(&latest.dir);
    let model = load_params(model, &files.model())?;
    let optim = optim
        .load(files.optim())
        .map_err(|e| fail(&files.optim(), "read the optimizer state", e))?;
    let state_path = files.state();
    let state: TrainState = read(&state_path)?;
    if state.epoch != latest.epoch {
        return Err(Error::Checkpoint {
            path: state_path.clone(),
            reason: format!(
                "holds epoch {} but latest.json names epoch {}",
                state.epoch, latest.epoch
            ),
            source: None,
        });
    }
    Ok((model, optim, state))
}
