//! The table and outline records of objects: a row of `NAME_objects.csv`
//! and a Feature of `NAME_objects.geojson`, from an object's measurements.

use super::measure::ObjectStats;
use super::outline::Polygon;
use super::writers::{csv_row, geojson_feature};

/// What a GeoJSON file of objects starts with (then one Feature a line,
/// separated by commas).
pub const GEOJSON_START: &str = "{\"type\":\"FeatureCollection\",\"features\":[\n";
/// What it ends with.
pub const GEOJSON_END: &str = "\n]}\n";

/// [`GEOJSON_START`] naming the coordinate reference system EPSG:`code`
/// (the 2008 GeoJSON `crs` member, which GDAL and QGIS read).
pub fn geojson_start_crs(code: u32) -> String {
    format!(
        "{{\"type\":\"FeatureCollection\",\"crs\":{{\"type\":\"name\",\"properties\":{{\"name\":\"urn:ogc:def:crs:EPSG::{code}\"}}}},\"features\":[\n"
    )
}

/// One object's measurements: a row of `NAME_objects.csv`. Positions in
/// pixels: the centroid of the pixel centres (a pixel's centre is at
/// x + 0.5, y + 0.5), the bounding box's top-left pixel and size.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ObjectRow {
    /// The object's id in the label image.
    pub id: u32,
    /// Its class.
    pub class: String,
    /// Pixels (the label image's count of `id`).
    pub area: u64,
    /// Centroid x.
    pub centroid_x: f64,
    /// Centroid y.
    pub centroid_y: f64,
    /// Left column of the bounding box.
    pub bbox_x: u32,
    /// Top row of the bounding box.
    pub bbox_y: u32,
    /// Bounding box width.
    pub bbox_width: u32,
    /// Bounding box height.
    pub bbox_height: u32,
    /// Mean probability of the object's class over its pixels.
    pub mean_probability: f64,
    /// Mean of each input channel over its pixels (values as read: 8-bit
    /// images in [0, 1]).
    pub mean_intensity: Vec<f64>,
}

impl ObjectRow {
    /// The row of the object measured by `s`, of class `class`.
    pub fn new(s: &ObjectStats, class: &str) -> ObjectRow {
        let (centroid_x, centroid_y) = s.centroid();
        ObjectRow {
            id: s.id,
            class: class.to_string(),
            area: s.area,
            centroid_x,
            centroid_y,
            bbox_x: s.min_x,
            bbox_y: s.min_y,
            bbox_width: s.max_x - s.min_x + 1,
            bbox_height: s.max_y - s.min_y + 1,
            mean_probability: s.mean_prob(),
            mean_intensity: s.mean_intensity(),
        }
    }

    /// The object's GeoJSON Feature (one line) with `polygons` as its
    /// outline in pixel coordinates, its class in `color`, and its area and
    /// mean probability as measurements.
    pub fn feature(&self, color: [u8; 3], polygons: &[Polygon]) -> String {
        self.feature_at(color, polygons, |(x, y)| (x as f64, y as f64))
    }

    /// [`feature`](Self::feature) with each outline corner `(x, y)` (in
    /// pixels) placed by `at` (e.g. into a map's coordinates).
    pub fn feature_at(
        &self,
        color: [u8; 3],
        polygons: &[Polygon],
        at: impl Fn((i64, i64)) -> (f64, f64),
    ) -> String {
        let rings: Vec<Vec<Vec<(f64, f64)>>> = polygons
            .iter()
            .map(|p| {
                std::iter::once(&p.exterior)
                    .chain(&p.holes)
                    .map(|ring| ring.iter().map(|&c| at(c)).collect())
                    .collect()
            })
            .collect();
        let measurements = [
            ("Area px", self.area as f64),
            ("Mean probability", self.mean_probability),
        ];
        geojson_feature(self.id, &self.class, color, &rings, &measurements)
    }

    /// The CSV header for `channels` input channels.
    pub fn csv_header(channels: usize) -> String {
        let mut fields: Vec<String> = [
            "id",
            "class",
            "area",
            "centroid_x",
            "centroid_y",
            "bbox_x",
            "bbox_y",
            "bbox_width",
            "bbox_height",
            "mean_probability",
        ]
        .map(String::from)
        .to_vec();
        fields.extend((0..channels).map(|c| format!("mean_intensity_{c}")));
        csv_row(&fields)
    }

    /// The CSV row.
    pub fn csv(&self) -> String {
        let mut fields = vec![
            self.id.to_string(),
            self.class.clone(),
            self.area.to_string(),
            format!("{:.3}", self.centroid_x),
            format!("{:.3}", self.centroid_y),
            self.bbox_x.to_string(),
            self.bbox_y.to_string(),
            self.bbox_width.to_string(),
            self.bbox_height.to_string(),
            format!("{:.4}", self.mean_probability),
        ];
        fields.extend(self.mean_intensity.iter().map(|v| format!("{v:.4}")));
        csv_row(&fields)
    }
}
