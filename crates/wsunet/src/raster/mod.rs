//! Large rasters: TIFF and BigTIFF read a band of rows at a time
//! ([`TiffRows`]) and written as tiled, compressed, pyramidal TIFF while
//! their rows arrive ([`write_tiled`]), with the georeferencing and pixel
//! size that place them ([`GeoTags`], [`PixelSize`]).
//!
//! Whole-slide images (OME-TIFF, Aperio SVS) and satellite scenes
//! (GeoTIFF, Cloud-Optimized GeoTIFF) are larger than memory; these are the
//! pieces that let [`Predictor::predict_rows`](crate::infer::Predictor::predict_rows)
//! segment them in memory bounded by the tile and the width.

mod meta;
mod read;
mod write;

pub use meta::{GeoTags, PixelSize};
pub use read::{
    Chunking, Level, SampleType, TiffInfo, TiffLabels, TiffRows, inspect, read_tiff_image,
    read_tiff_labels, read_tiff_mask,
};
pub use write::{
    Compression, PYRAMID_MIN_SIDE, Photometric, RasterSpec, Resample, Sample, write_tiled,
};

/// Whether `path` names a TIFF file (by its extension: `tif`, `tiff`, and
/// the TIFF-based `svs`, `btf`, `tf8`).
pub fn is_tiff(path: &std::path::Path) -> bool {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .is_some_and(|e| matches!(e.as_str(), "tif" | "tiff" | "svs" | "btf" | "tf8"))
}
