//! Segmentation data: dataset layouts (folders, Pascal VOC), every common
//! mask kind, the built-in `shapes` data, joint augmentation, normalization,
//! Burn datasets and batching, and whole-dataset checks and statistics.

pub(crate) mod augment;
pub(crate) mod check;
pub(crate) mod classes;
pub(crate) mod dataset;
pub(crate) mod io;
pub(crate) mod layout;
pub(crate) mod prepare;
pub(crate) mod shapes;

pub use augment::{AugmentConfig, Normalize};
pub use check::{CheckReport, channel_stats, check_dataset};
pub use classes::{CLASSES_FILE, ClassInfo, ClassList, instance_classes};
pub use dataset::{
    Mode, Sample, SampleError, SampleSpec, SegBatch, SegBatcher, SegDataset, SegItem, file_samples,
    instance_target, sample_sizes, shapes_samples, usable_samples,
};
pub use io::{
    IMAGE_EXTENSIONS, Image, Mask, MaskKind, image_channels, image_size, input_channels,
    read_image, read_mask, value_counts, write_label_png, write_mask_png, write_npy, write_png,
    write_rgb8_png,
};
pub use layout::{DatasetFiles, Layout, SamplePaths, discover, image_files};
pub use prepare::{
    DEFAULT_CROP, DataFacts, DataSettings, Prepared, Split, pixel_size, prepare, resolve_crop,
    split_samples,
};
pub use shapes::{
    SHAPES_CLASSES, ShapesSpec, generate_shape_instances, generate_shapes, shapes_classes,
    write_scene,
};
