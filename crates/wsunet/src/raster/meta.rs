//! What places a raster on the ground or the slide: GeoTIFF georeferencing
//! and the physical pixel size. Read from an input TIFF and written,
//! unchanged, into outputs on the same pixel grid, so a mask overlays its
//! input exactly in QGIS/GDAL (the GeoTIFF tags) and QuPath (the pixel
//! size).
//!
//! GeoTIFF keeps georeferencing in six tags (ModelPixelScale 33550,
//! ModelTiepoint 33922, ModelTransformation 34264, GeoKeyDirectory 34735 and
//! its double and ASCII parameters 34736/34737, from the OGC GeoTIFF 1.1
//! standard) and GDAL its nodata value in 42113. They describe the grid, not
//! the pixel values, so copying them to a raster of the same size keeps the
//! overlay exact. The pixel size comes from the baseline resolution tags
//! (XResolution, YResolution, ResolutionUnit) or, in OME-TIFF, from the
//! OME-XML `PhysicalSizeX`/`PhysicalSizeY` of the image description.

use serde::{Deserialize, Serialize};

/// GeoTIFF's georeferencing tags, as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoTags {
    /// ModelPixelScaleTag (33550): pixel size in model units, `[x, y, z]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pixel_scale: Option<Vec<f64>>,
    /// ModelTiepointTag (33922): `[i, j, k, x, y, z]` per tie point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiepoints: Option<Vec<f64>>,
    /// ModelTransformationTag (34264): a 4×4 raster-to-model matrix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transformation: Option<Vec<f64>>,
    /// GeoKeyDirectoryTag (34735): the coordinate reference system's keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_directory: Option<Vec<u16>>,
    /// GeoDoubleParamsTag (34736).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub double_params: Option<Vec<f64>>,
    /// GeoAsciiParamsTag (34737).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ascii_params: Option<String>,
    /// GDAL_NODATA (42113): the input's nodata value, as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodata: Option<String>,
}

impl GeoTags {
    /// Whether the raster is georeferenced (it has a grid placement).
    pub fn is_georeferenced(&self) -> bool {
        self.pixel_scale.is_some() || self.tiepoints.is_some() || self.transformation.is_some()
    }

    /// Whether no tag is there.
    pub fn is_empty(&self) -> bool {
        *self == GeoTags::default()
    }

    /// The raster-to-model affine transform `[a, b, c, d, e, f]` (x = a +
    /// b·col + c·row, y = d + e·col + f·row, on pixel corners: GDAL's
    /// geotransform), from ModelTransformation or from the first tie point
    /// and the pixel scale. `None` when the raster is not georeferenced.
    pub fn affine(&self) -> Option<[f64; 6]> {
        if let Some(m) = self.transformation.as_deref().filter(|m| m.len() >= 8) {
            return Some([m[3], m[0], m[1], m[7], m[4], m[5]]);
        }
        let (t, s) = (self.tiepoints.as_deref()?, self.pixel_scale.as_deref()?);
        if t.len() < 6 || s.len() < 2 {
            return None;
        }
        let (i, j, x, y, sx, sy) = (t[0], t[1], t[3], t[4], s[0], s[1]);
        Some([x - i * sx, sx, 0.0, y + j * sy, 0.0, -sy])
    }

    /// The EPSG code of the coordinate reference system
    /// (ProjectedCSTypeGeoKey, else GeographicTypeGeoKey), when the key
    /// directory names one.
    pub fn epsg(&self) -> Option<u32> {
        let keys = self.key_directory.as_deref()?;
        let count = *keys.get(3)? as usize;
        let entries: Vec<&[u16]> = keys[4..].chunks(4).take(count).collect();
        let code = |id: u16| {
            entries
                .iter()
                .find(|e| e.len() == 4 && e[0] == id && e[1] == 0)
                .map(|e| e[3] as u32)
                .filter(|&c| c != 0 && c != 32767)
        };
        code(3072).or_else(|| code(2048))
    }

    /// The nodata value as a number, when it is one.
    pub fn nodata_value(&self) -> Option<f64> {
        self.nodata
            .as_deref()
            .and_then(|s| s.trim_matches(char::from(0)).trim().parse::<f64>().ok())
    }
}

/// A pixel's physical size, in micrometres.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PixelSize {
    /// Width of a pixel, µm.
    pub x_um: f64,
    /// Height of a pixel, µm.
    pub y_um: f64,
}

impl PixelSize {
    /// From TIFF resolution tags: `x`, `y` pixels per `unit` (2 inch,
    /// 3 centimetre; 1, no unit, gives no size).
    pub fn from_resolution(x: f64, y: f64, unit: u16) -> Option<PixelSize> {
        let um_per_unit = match unit {
            2 => 25_400.0,
            3 => 10_000.0,
            _ => return None,
        };
        (x > 0.0 && y > 0.0 && x.is_finite() && y.is_finite()).then(|| PixelSize {
            x_um: um_per_unit / x,
            y_um: um_per_unit / y,
        })
    }

    /// From an OME-XML image description: the first `Pixels` element's
    /// `PhysicalSizeX`/`PhysicalSizeY` and their units (µm when absent).
    pub fn from_ome_xml(xml: &str) -> Option<PixelSize> {
        let pixels = &xml[xml.find("<Pixels")?..];
        let tag = &pixels[..pixels.find('>')?];
        let size = |axis: &str| -> Option<f64> {
            let value: f64 = attribute(tag, &format!("PhysicalSize{axis}"))?
                .parse()
                .ok()?;
            let unit = attribute(tag, &format!("PhysicalSize{axis}Unit")).unwrap_or("µm");
            let scale = match unit {
                "µm" | "um" | "micron" | "\u{3bc}m" => 1.0,
                "nm" => 1e-3,
                "mm" => 1e3,
                "cm" => 1e4,
                "m" => 1e6,
                _ => return None,
            };
            (value > 0.0 && value.is_finite()).then_some(value * scale)
        };
        Some(PixelSize {
            x_um: size("X")?,
            y_um: size("Y")?,
        })
    }

    /// From an Aperio (SVS) image description, which states the level-0
    /// size as `MPP = 0.2527` (µm per pixel, square pixels).
    pub fn from_aperio(description: &str) -> Option<PixelSize> {
        if !description.starts_with("Aperio") {
            return None;
        }
        let value = description.split('|').find_map(|field| {
            let (key, value) = field.split_once('=')?;
            (key.trim() == "MPP").then(|| value.trim().parse::<f64>().ok())?
        })?;
        (value > 0.0 && value.is_finite()).then_some(PixelSize {
            x_um: value,
            y_um: value,
        })
    }

    /// The resolution tags that state this size: pixels per centimetre in
    /// x and y, as rationals.
    pub fn per_centimetre(&self) -> [(u32, u32); 2] {
        [self.x_um, self.y_um].map(|um| rational(10_000.0 / um))
    }

    /// The size of a pixel `factor` times larger on each side.
    pub fn scaled(&self, factor: f64) -> PixelSize {
        PixelSize {
            x_um: self.x_um * factor,
            y_um: self.y_um * factor,
        }
    }

    /// The larger relative difference between two sizes, per axis.
    pub fn relative_difference(&self, other: &PixelSize) -> f64 {
        let d = |a: f64, b: f64| (a - b).abs() / b;
        d(self.x_um, other.x_um).max(d(self.y_um, other.y_um))
    }
}

/// The value of `name="…"` in an XML start tag.
fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = tag;
    while let Some(i) = rest.find(name) {
        let before = rest[..i].chars().last();
        let after = &rest[i + name.len()..];
        rest = after;
        if before.is_some_and(|c| !c.is_whitespace()) {
            continue;
        }
        let Some(after) = after.trim_start().strip_prefix('=') else {
            continue;
        };
        let after = after.trim_start();
        let quote = after.chars().next()?;
        if quote != '"' && quote != '\'' {
            return None;
        }
        let value = &after[1..];
        return Some(&value[..value.find(quote)?]);
    }
    None
}

/// `value` as a TIFF rational with a denominator that keeps 6 significant
/// digits.
pub(crate) fn rational(value: f64) -> (u32, u32) {
    let mut denominator = 1u32;
    while denominator < 1_000_000 && value * (denominator as f64) * 10.0 < u32::MAX as f64 {
        if (value * denominator as f64).fract().abs() < 1e-9 {
            break;
        }
        denominator *= 10;
    }
    ((value * denominator as f64).round() as u32, denominator)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_and_crs_from_the_tags() {
        // A UTM scene: 10 m pixels, its top-left corner at (500000, 4000000).
        let geo = GeoTags {
            pixel_scale: Some(vec![10.0, 10.0, 0.0]),
            tiepoints: Some(vec![0.0, 0.0, 0.0, 500_000.0, 4_000_000.0, 0.0]),
            key_directory: Some(vec![1, 1, 0, 2, 1024, 0, 1, 1, 3072, 0, 1, 32633]),
            ..GeoTags::default()
        };
        assert_eq!(
            geo.affine(),
            Some([500_000.0, 10.0, 0.0, 4_000_000.0, 0.0, -10.0])
        );
        assert_eq!(geo.epsg(), Some(32633));
        // A tie point elsewhere than the corner moves the origin.
        let moved = GeoTags {
            tiepoints: Some(vec![2.0, 3.0, 0.0, 500_020.0, 3_999_970.0, 0.0]),
            ..geo.clone()
        };
        assert_eq!(moved.affine(), geo.affine());
        let matrix = GeoTags {
            transformation: Some(vec![
                2.0, 0.5, 0.0, 100.0, 0.25, -2.0, 0.0, 200.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
                1.0,
            ]),
            ..GeoTags::default()
        };
        assert_eq!(matrix.affine(), Some([100.0, 2.0, 0.5, 200.0, 0.25, -2.0]));
        assert_eq!(GeoTags::default().affine(), None);
        assert_eq!(GeoTags::default().epsg(), None);
    }

    #[test]
    fn resolution_tags_give_micrometres() {
        let p = PixelSize::from_resolution(40_000.0, 20_000.0, 3).unwrap();
        assert!((p.x_um - 0.25).abs() < 1e-12 && (p.y_um - 0.5).abs() < 1e-12);
        let p = PixelSize::from_resolution(300.0, 300.0, 2).unwrap();
        assert!((p.x_um - 84.666_666).abs() < 1e-3);
        assert_eq!(PixelSize::from_resolution(72.0, 72.0, 1), None);
        assert_eq!(PixelSize::from_resolution(0.0, 72.0, 3), None);
    }

    #[test]
    fn ome_xml_sizes_and_units() {
        let xml = r#"<?xml version="1.0"?><OME><Image ID="Image:0"><Pixels BigEndian="false" DimensionOrder="XYCZT" ID="Pixels:0" PhysicalSizeX="0.2527" PhysicalSizeXUnit="µm" PhysicalSizeY="250.0" PhysicalSizeYUnit="nm" SizeX="10"/></Image></OME>"#;
        let p = PixelSize::from_ome_xml(xml).unwrap();
        assert!((p.x_um - 0.2527).abs() < 1e-12, "{p:?}");
        assert!((p.y_um - 0.25).abs() < 1e-12, "{p:?}");
        // No unit: micrometres; a prefix of another attribute is not it.
        let xml = r#"<Pixels XPhysicalSizeX="9" PhysicalSizeX='0.5' PhysicalSizeY="0.5">"#;
        assert_eq!(
            PixelSize::from_ome_xml(xml),
            Some(PixelSize {
                x_um: 0.5,
                y_um: 0.5
            })
        );
        assert_eq!(PixelSize::from_ome_xml("<Pixels SizeX=\"3\">"), None);
        assert_eq!(PixelSize::from_ome_xml("ImageJ=1.54"), None);
    }

    #[test]
    fn aperio_descriptions_state_micrometres_per_pixel() {
        let d = "Aperio Image Library v11.2.1 \r\n46000x32914 [0,100 46000x32814] (256x256) JPEG/RGB Q=30|AppMag = 20|MPP = 0.4990|Filename = CMU-1";
        assert_eq!(
            PixelSize::from_aperio(d),
            Some(PixelSize {
                x_um: 0.499,
                y_um: 0.499
            })
        );
        assert_eq!(
            PixelSize::from_aperio("Aperio Image Library|AppMag = 20"),
            None
        );
        assert_eq!(PixelSize::from_aperio("MPP = 0.5"), None);
    }

    #[test]
    fn per_centimetre_round_trips() {
        for um in [0.25, 0.2527, 0.5, 30.0, 84.666_666_7] {
            let p = PixelSize { x_um: um, y_um: um };
            let [(n, d), _] = p.per_centimetre();
            let back = PixelSize::from_resolution(n as f64 / d as f64, 1.0, 3).unwrap();
            assert!((back.x_um - um).abs() / um < 1e-6, "{um}: {n}/{d}");
        }
    }

    #[test]
    fn nodata_parses_gdal_text() {
        let tags = GeoTags {
            nodata: Some("-9999\0".into()),
            ..GeoTags::default()
        };
        assert_eq!(tags.nodata_value(), Some(-9999.0));
        assert!(!tags.is_georeferenced());
        assert!(!tags.is_empty());
    }
}
