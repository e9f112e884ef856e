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
//! - [`stream`]: objects of an image that arrives a band of rows at a time,
//!   equal to the whole image's, objects across band seams kept whole.
//! - [`table`]: an object's CSV row and GeoJSON Feature.
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
pub mod stream;
pub mod table;
pub mod target;
pub mod writers;

use serde::{Deserialize, Serialize};

pub use grow::InstanceParams;

/// What a model is trained for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// A class per pixel: masks hold class indices.
    #[default]
    Semantic,
    /// Objects: masks hold instance labels (0 background, each object its
    /// own id); the network learns background, interior and boundary
    /// ([`target`]) and objects are grown from the interiors ([`grow`]).
    Instances,
}

impl Task {
    /// Every task.
    pub const ALL: [Task; 2] = [Task::Semantic, Task::Instances];

    /// Whether this is [`Task::Semantic`] (the card leaves it out then).
    pub fn is_semantic(&self) -> bool {
        *self == Task::Semantic
    }
}

/// The class names of an instance model's three classes, in index order.
pub const INSTANCE_CLASSES: [&str; 3] = ["background", "interior", "boundary"];

/// How an instance model was trained and how its objects are extracted:
/// recorded in its card, each choice with its reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceSettings {
    /// Width in pixels of the boundary class in the training target.
    pub boundary: usize,
    /// Why that width.
    pub boundary_reason: String,
    /// The thresholds and minimum object size of the extraction.
    pub extraction: InstanceParams,
    /// Why those.
    pub extraction_reason: String,
}
