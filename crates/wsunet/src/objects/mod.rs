//! From pixels to objects: instance segmentation on top of the network's
//! classes, by the classical bottom-up route (a U-Net learns background,
//! object interior and object boundary; objects are grown from the
//! interiors).
//!
//! - [`target`]: the three-class learning target from instance labels, and
//!   the boundary width chosen from the objects' size.
//! - [`grow`]: seeded watershed from the predicted probabilities to
//!   instance labels.
//! - [`label`]: connected components, for seeds and for semantic models'
//!   objects (a class's connected pieces).
//! - [`measure`]: per-object area, centroid, bounding box, mean
//!   probability and intensity.
//! - [`outline`]: polygons on pixel edges (areas equal pixel counts).
//! - [`metrics`]: object-level scores (AP at IoU thresholds in the
//!   DSB 2018 / StarDist sense, F1, panoptic quality, split and merge
//!   counts).
//! - [`writers`]: CSV rows and GeoJSON features (QuPath's and QGIS's
//!   readers).
//!
//! Everything here works on plain row-major slices (`u32` labels, `f32`
//! probabilities), so it runs beside any backend.

pub mod grow;
pub mod label;
pub mod measure;
pub mod metrics;
pub mod outline;
pub mod target;
pub mod writers;
