//! A streamed prediction's output writers: each takes the finished bands
//! on its own thread and writes one file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, sync_channel};

use super::stream::Band;
use crate::error::Result;
use crate::raster::{RasterSpec, Sample, write_tiled};

/// A finished band with its labels, shared by the output writers.
pub(super) struct Finished {
    pub(super) band: Band,
    pub(super) labels: Vec<u16>,
}

/// One output: its channel and its writer thread.
pub(super) struct Output {
    pub(super) name: PathBuf,
    pub(super) tx: SyncSender<Arc<Finished>>,
    pub(super) thread: std::thread::JoinHandle<Result<bool>>,
}

pub(super) fn spawn_output<T: Sample>(
    path: &Path,
    spec: RasterSpec,
    convert: impl Fn(&Finished) -> Vec<T> + Send + 'static,
) -> Output {
    // No queue: a writer takes a band when it is done with the last one.
    let (tx, rx) = sync_channel::<Arc<Finished>>(0);
    let target = path.to_path_buf();
    let thread = std::thread::spawn(move || {
        write_tiled::<T>(&target, &spec, rx.into_iter().map(|f| Ok(convert(&f))))
    });
    Output {
        name: path.to_path_buf(),
        tx,
        thread,
    }
}
