//! Deterministic batching for training and evaluation: the order of an epoch
//! is a function of (seed, epoch), items are prepared in parallel but kept in
//! order, and the next batch is prepared while the current one trains.
//!
//! A sample that fails to load is an error naming it; a panic while
//! preparing a batch is caught and reported the same way, so an epoch never
//! ends early without a word.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::Device;
use rand::seq::SliceRandom;
use rayon::prelude::*;

use crate::data::{SegBatch, SegBatcher, SegDataset, SegItem};
use crate::error::{Error, Result};
use crate::rng::item_rng;

/// The visiting order of epoch `epoch`: a seeded permutation, or `0..len`.
pub fn epoch_order(len: usize, seed: u64, epoch: u64, shuffle: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    if shuffle {
        order.shuffle(&mut item_rng(seed ^ 0x5EED_0F0E_D0C5, epoch));
    }
    order
}

/// `order` cut into batches of at most `batch_size` items, each batch
/// holding images of one size only (`sizes[i]` is item `i`'s): GroupNorm
/// normalizes over the whole input, so padding a small image to its
/// batch-mates' size would change its prediction. Sizes keep the order in
/// which they first appear; items keep their order within a size.
pub fn same_size_batches(
    order: &[usize],
    sizes: &[[usize; 2]],
    batch_size: usize,
) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut slot: HashMap<[usize; 2], usize> = HashMap::new();
    for &i in order {
        let g = *slot.entry(sizes[i]).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i);
    }
    groups
        .iter()
        .flat_map(|g| g.chunks(batch_size.max(1)).map(<[usize]>::to_vec))
        .collect()
}

/// The message of a caught panic.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Batches of `dataset`, prepared one batch ahead on a background thread.
pub struct Batches {
    rx: Receiver<Result<SegBatch>>,
    worker: Option<JoinHandle<()>>,
    received: usize,
    /// Number of batches.
    pub len: usize,
}

impl Batches {
    /// Starts preparing `batches` (lists of item indices) of epoch `epoch`.
    pub fn new(
        dataset: Arc<SegDataset>,
        batches: Vec<Vec<usize>>,
        epoch: u64,
        device: Device,
    ) -> Self {
        let batcher = SegBatcher {
            ignore_label: dataset.spec().ignore_label(),
        };
        let name = {
            let dataset = dataset.clone();
            move |i: usize| dataset.samples()[i].name()
        };
        Self::from_fn(
            batches,
            move |i| dataset.item_at(i, epoch),
            name,
            move |items| batcher.batch(items, &device),
        )
    }

    /// The loader itself: `load` prepares item `i` (called in parallel),
    /// `name` names it in messages, `stack` makes a batch of the items.
    fn from_fn(
        batches: Vec<Vec<usize>>,
        load: impl Fn(usize) -> Result<SegItem> + Send + Sync + 'static,
        name: impl Fn(usize) -> String + Send + Sync + 'static,
        stack: impl Fn(Vec<SegItem>) -> SegBatch + Send + 'static,
    ) -> Self {
        let len = batches.len();
        let (tx, rx) = sync_channel(1);
        let worker = std::thread::spawn(move || {
            for chunk in batches {
                // A panic in one item becomes that item's error, named.
                let items: Result<Vec<_>> = chunk
                    .par_iter()
                    .map(|&i| {
                        catch_unwind(AssertUnwindSafe(|| load(i))).unwrap_or_else(|p| {
                            Err(Error::Loader {
                                task: format!("preparing sample {}", name(i)),
                                message: panic_message(p.as_ref()),
                            })
                        })
                    })
                    .collect();
                let batch = items.and_then(|items| {
                    let names: Vec<String> = items.iter().map(|i| i.name.clone()).collect();
                    catch_unwind(AssertUnwindSafe(|| stack(items))).map_err(|p| Error::Loader {
                        task: format!("stacking the batch of {}", names.join(", ")),
                        message: panic_message(p.as_ref()),
                    })
                });
                let failed = batch.is_err();
                if tx.send(batch).is_err() || failed {
                    break;
                }
            }
        });
        Batches {
            rx,
            worker: Some(worker),
            received: 0,
            len,
        }
    }
}

impl Iterator for Batches {
    type Item = Result<SegBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.rx.recv() {
            Ok(batch) => {
                // After an error the worker stops: nothing more to report.
                self.received = if batch.is_err() {
                    self.len
                } else {
                    self.received + 1
                };
                Some(batch)
            }
            // The worker is gone: done, or it died before sending every batch.
            Err(_) => {
                let worker = self.worker.take()?;
                let outcome = worker.join();
                if self.received == self.len {
                    return None;
                }
                let why = match outcome {
                    Err(p) => panic_message(p.as_ref()),
                    Ok(()) => "it stopped early".into(),
                };
                let done = std::mem::replace(&mut self.received, self.len);
                Some(Err(Error::Loader {
                    task: "the batch loader".into(),
                    message: format!("{why} after {done} of {} batches", self.len),
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Image, Mask};
    use burn::tensor::{Tensor, TensorData};

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

    #[test]
    fn batches_hold_one_size_each() {
        let sizes = [[32, 32], [64, 48], [32, 32], [32, 32], [64, 48], [40, 40]];
        let batches = same_size_batches(&[0, 1, 2, 3, 4, 5], &sizes, 2);
        assert_eq!(batches, vec![vec![0, 2], vec![3], vec![1, 4], vec![5]]);
        let order = [5, 4, 3, 2, 1, 0];
        let mut all: Vec<usize> = same_size_batches(&order, &sizes, 3)
            .into_iter()
            .inspect(|b| assert!(b.iter().all(|&i| sizes[i] == sizes[b[0]])))
            .flatten()
            .collect();
        all.sort();
        assert_eq!(all, vec![0, 1, 2, 3, 4, 5]);
    }

    fn item(i: usize) -> SegItem {
        SegItem {
            image: Image::new(1, 2, 2, vec![i as f32; 4]),
            mask: Mask::new(2, 2, vec![0; 4]),
            name: format!("sample{i}"),
        }
    }

    fn stack(items: Vec<SegItem>) -> SegBatch {
        let device = Device::flex();
        let n = items.len();
        SegBatch {
            images: Tensor::from_data(TensorData::new(vec![0f32; n * 4], [n, 1, 2, 2]), &device),
            masks: Tensor::from_data(TensorData::new(vec![0i64; n * 4], [n, 2, 2]), &device),
            names: items.into_iter().map(|i| i.name).collect(),
        }
    }

    #[test]
    fn a_panicking_sample_is_an_error_naming_it_not_a_short_epoch() {
        let batches = vec![vec![0, 1], vec![2, 3], vec![4, 5]];
        let loader = Batches::from_fn(
            batches,
            |i| {
                assert!(i != 3, "corrupt sample data");
                Ok(item(i))
            },
            |i| format!("sample{i}"),
            stack,
        );
        let results: Vec<_> = loader.collect();
        assert_eq!(results.len(), 2, "the failing batch must be reported");
        assert!(results[0].is_ok());
        let err = results[1].as_ref().unwrap_err().to_string();
        assert!(
            err.contains("sample3") && err.contains("corrupt sample data"),
            "{err}"
        );
    }

    #[test]
    fn a_failing_batch_or_a_dead_loader_thread_is_an_error() {
        let loader = Batches::from_fn(
            vec![vec![0], vec![1, 2], vec![3]],
            |i| Ok(item(i)),
            |i| format!("sample{i}"),
            |items| {
                assert!(items[0].name != "sample1", "out of memory");
                stack(items)
            },
        );
        let results: Vec<_> = loader.collect();
        assert_eq!(results.len(), 2);
        let err = results[1].as_ref().unwrap_err().to_string();
        assert!(
            err.contains("sample1, sample2") && err.contains("out of memory"),
            "{err}"
        );
        // A panic outside any sample (here: while naming one) ends the
        // thread; the iterator reports it instead of ending quietly.
        let loader = Batches::from_fn(
            vec![vec![0], vec![1], vec![2]],
            |i| {
                assert!(i != 1, "bad sample");
                Ok(item(i))
            },
            |_| panic!("lost the sample list"),
            stack,
        );
        let results: Vec<_> = loader.collect();
        assert_eq!(results.len(), 2);
        let err = results[1].as_ref().unwrap_err().to_string();
        assert!(
            err.contains("after 1 of 3 batches") && err.contains("lost the sample list"),
            "{err}"
        );
    }
}
