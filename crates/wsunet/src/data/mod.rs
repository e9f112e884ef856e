//! Segmentation data: dataset layouts (folders, Pascal VOC), every common
//! mask kind, the built-in `shapes` data, joint augmentation, normalization,
//! Burn datasets and batching, and whole-dataset checks and statistics.

pub mod augment;
pub mod check;
pub mod classes;
pub mod dataset;
pub mod io;
pub mod layout;
pub mod prepare;
pub mod shapes;

pub use augment::{AugmentConfig, Normalize};
pub use classes::{ClassInfo, ClassList};
pub use dataset::{Mode, Sample, SampleSpec, SegBatch, SegBatcher, SegDataset, SegItem};
pub use io::{Image, Mask, MaskKind, read_image, read_mask};
pub use layout::{DatasetFiles, Layout, SamplePaths, discover};
