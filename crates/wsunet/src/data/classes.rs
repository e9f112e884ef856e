//! Class lists: names and colours of the segmentation classes, read from a
//! dataset's `classes.json`, and the colour map of RGB masks and palettes.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One class: its name and, for RGB masks and palettes, its colour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassInfo {
    /// Human-readable name.
    pub name: String,
    /// RGB colour of the class in colour masks and written palettes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<[u8; 3]>,
}

/// The classes of a dataset, in index order.
///
/// `classes.json` is a JSON list, index = position:
///
/// ```json
/// [{"name": "background", "color": [0, 0, 0]}, {"name": "cell", "color": [255, 0, 0]}]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClassList {
    /// The classes; a class's index is its position.
    pub classes: Vec<ClassInfo>,
}

/// The name of the class list file in a dataset folder.
pub const CLASSES_FILE: &str = "classes.json";

/// Pascal VOC's 21 classes.
const VOC_NAMES: [&str; 21] = [
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
];

impl ClassList {
    /// Classes of these names and colours, in index order.
    pub fn named(names: &[&str], colors: &[[u8; 3]]) -> ClassList {
        ClassList {
            classes: names
                .iter()
                .zip(colors)
                .map(|(name, &color)| ClassInfo {
                    name: name.to_string(),
                    color: Some(color),
                })
                .collect(),
        }
    }

    /// Reads and checks a `classes.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let list: ClassList = crate::fs::read_json_with(path, |e| Error::Data {
            path: path.to_path_buf(),
            reason: format!(
                "not a class list ({e}); expected [{{\"name\": \"background\", \"color\": [0, 0, 0]}}, …]"
            ),
        })?;
        list.validate().map_err(|reason| Error::Data {
            path: path.to_path_buf(),
            reason,
        })?;
        Ok(list)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if self.classes.is_empty() {
            return Err("the class list is empty".into());
        }
        let mut colours: Vec<([u8; 3], &str)> = Vec::new();
        for c in &self.classes {
            if let Some(colour) = c.color {
                if let Some((_, other)) = colours.iter().find(|(k, _)| *k == colour) {
                    return Err(format!(
                        "classes `{other}` and `{}` share the colour {colour:?}",
                        c.name
                    ));
                }
                colours.push((colour, &c.name));
            }
        }
        if !colours.is_empty() && colours.len() != self.classes.len() {
            return Err("either every class has a colour or none does".into());
        }
        Ok(())
    }

    /// `n` classes named `class0`, `class1`, … with the default palette.
    pub fn numbered(n: usize) -> Self {
        ClassList {
            classes: (0..n)
                .map(|i| ClassInfo {
                    name: format!("class{i}"),
                    color: Some(default_color(i)),
                })
                .collect(),
        }
    }

    /// Pascal VOC's 21 classes with VOC's own palette.
    pub fn voc() -> Self {
        ClassList {
            classes: VOC_NAMES
                .iter()
                .enumerate()
                .map(|(i, name)| ClassInfo {
                    name: name.to_string(),
                    color: Some(default_color(i)),
                })
                .collect(),
        }
    }

    /// Number of classes.
    pub fn len(&self) -> usize {
        self.classes.len()
    }

    /// Whether the list is empty (never true for a validated list).
    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }

    /// Class names in index order.
    pub fn names(&self) -> Vec<String> {
        self.classes.iter().map(|c| c.name.clone()).collect()
    }

    /// Whether every class has a colour (needed to read RGB masks).
    pub fn has_colors(&self) -> bool {
        self.classes.iter().all(|c| c.color.is_some())
    }

    /// The colour of class `i`: its own, else the default palette's.
    pub fn color(&self, i: usize) -> [u8; 3] {
        self.classes
            .get(i)
            .and_then(|c| c.color)
            .unwrap_or_else(|| default_color(i))
    }

    /// The class index of an RGB colour, if some class has it.
    pub fn index_of_color(&self, rgb: [u8; 3]) -> Option<usize> {
        self.classes.iter().position(|c| c.color == Some(rgb))
    }

    /// Writes the list to `path` as pretty JSON (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::fs::write_json(path, self)
    }
}

/// The Pascal VOC colour map (bit-interleaved), used as the default palette:
/// class 0 black, 1 dark red, 2 dark green, 3 olive, 4 dark blue, …
pub fn default_color(index: usize) -> [u8; 3] {
    let mut c = [0u8; 3];
    let mut i = index;
    for shift in (0..8).rev() {
        for (channel, value) in c.iter_mut().enumerate() {
            *value |= (((i >> channel) & 1) << shift) as u8;
        }
        i >>= 3;
        if i == 0 {
            break;
        }
    }
    c
}

/// The classes of an instance model ([`INSTANCE_CLASSES`](crate::objects::INSTANCE_CLASSES)):
/// background black, interior red, boundary yellow.
pub fn instance_classes() -> ClassList {
    let colors = [[0, 0, 0], [230, 25, 75], [255, 225, 25]];
    ClassList::named(&crate::objects::INSTANCE_CLASSES, &colors)
}

/// The number of classes of a dataset: `given`, else the class list's
/// length, else the largest mask value (other than the ignore index) + 1,
/// which `largest` computes only when it is needed.
pub fn class_count<E>(
    given: Option<usize>,
    list: Option<&ClassList>,
    largest: impl FnOnce() -> Result<u16, E>,
) -> Result<usize, E> {
    match (given, list) {
        (Some(n), _) => Ok(n),
        (None, Some(list)) => Ok(list.len()),
        (None, None) => Ok(largest()? as usize + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voc_palette_colours() {
        assert_eq!(default_color(0), [0, 0, 0]);
        assert_eq!(default_color(1), [128, 0, 0]);
        assert_eq!(default_color(2), [0, 128, 0]);
        assert_eq!(default_color(3), [128, 128, 0]);
        assert_eq!(default_color(15), [192, 128, 128]);
        assert_eq!(default_color(20), [0, 64, 128]);
        assert_eq!(ClassList::voc().len(), 21);
    }

    #[test]
    fn reads_and_validates_class_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CLASSES_FILE);
        std::fs::write(
            &path,
            r#"[{"name": "bg", "color": [0, 0, 0]}, {"name": "cell", "color": [255, 0, 0]}]"#,
        )
        .unwrap();
        let list = ClassList::from_file(&path).unwrap();
        assert_eq!(list.names(), ["bg", "cell"]);
        assert_eq!(list.index_of_color([255, 0, 0]), Some(1));
        assert_eq!(list.index_of_color([1, 2, 3]), None);

        for (text, needle) in [
            (r#"[]"#, "empty"),
            (
                r#"[{"name": "a", "color": [1, 1, 1]}, {"name": "b", "color": [1, 1, 1]}]"#,
                "share the colour",
            ),
            (
                r#"[{"name": "a", "color": [1, 1, 1]}, {"name": "b"}]"#,
                "every class has a colour",
            ),
            (r#"{"classes": 3}"#, "not a class list"),
            (
                r#"[{"name": "a", "colour": [1, 1, 1]}]"#,
                "unknown field `colour`",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = ClassList::from_file(&path).unwrap_err().to_string();
            assert!(
                err.contains("classes.json") && err.contains(needle),
                "{text}: {err}"
            );
        }
    }
}
