//! Deterministic batching for training and evaluation: the order of an epoch
//! is a function of (seed, epoch), items are prepared in parallel but kept in
//! order, and the next batch is prepared while the current one trains.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::Device;
use rand::seq::SliceRandom;
use rayon::prelude::*;

use crate::data::shapes::item_rng;
use crate::data::{SegBatch, SegBatcher, SegDataset};
use crate::error::Result;

/// The visiting order of epoch `epoch`: a seeded permutation, or `0..len`.
pub fn epoch_order(len: usize, seed: u64, epoch: u64, shuffle: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    if shuffle {
        order.shuffle(&mut item_rng(seed ^ 0x5EED_0F0E_D0C5, epoch));
    }
    order
}

/// Batches of `dataset` in `order`, `batch_size` items each (the last may be
/// smaller), prepared one batch ahead on a background thread.
pub struct Batches {
    rx: Receiver<Result<SegBatch>>,
    /// Number of batches.
    pub len: usize,
}

impl Batches {
    /// Starts preparing batches of epoch `epoch`.
    pub fn new(
        dataset: Arc<SegDataset>,
        order: Vec<usize>,
        batch_size: usize,
        epoch: u64,
        device: Device,
    ) -> Self {
        let len = order.len().div_ceil(batch_size);
        let (tx, rx) = sync_channel(1);
        let batcher = SegBatcher {
            ignore_label: dataset.spec().ignore_label(),
        };
        std::thread::spawn(move || {
            for chunk in order.chunks(batch_size) {
                let items: Result<Vec<_>> = chunk
                    .par_iter()
                    .map(|&i| dataset.item_at(i, epoch))
                    .collect();
                let batch = items.map(|items| batcher.batch(items, &device));
                let failed = batch.is_err();
                if tx.send(batch).is_err() || failed {
                    break;
                }
            }
        });
        Batches { rx, len }
    }
}

impl Iterator for Batches {
    type Item = Result<SegBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        self.rx.recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_depends_on_seed_and_epoch_only() {
        let a = epoch_order(50, 1, 3, true);
        assert_eq!(a, epoch_order(50, 1, 3, true));
        assert_ne!(a, epoch_order(50, 1, 4, true));
        assert_ne!(a, epoch_order(50, 2, 3, true));
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_eq!(epoch_order(5, 1, 3, false), vec![0, 1, 2, 3, 4]);
    }
}
