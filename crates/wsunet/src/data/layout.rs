//! Finding the image/mask pairs of a dataset folder and splitting them.
//!
//! Layouts, detected in this order:
//! - Pascal VOC: `JPEGImages/`, `SegmentationClass/`,
//!   `ImageSets/Segmentation/{train,val}.txt`;
//! - split folders: `train/{images,masks}/` and `val/{images,masks}/`;
//! - one folder: `images/NAME.ext` with `masks/NAME.png`, split into train and
//!   validation by a seeded holdout.
//!
//! A `classes.json` at the root names the classes (and their colours).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::seq::SliceRandom;

use super::classes::{CLASSES_FILE, ClassList};
use super::io::{IMAGE_EXTENSIONS, extension};
use crate::error::{Error, Result};

/// One image and its mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamplePaths {
    /// The shared file stem.
    pub name: String,
    /// The image file.
    pub image: PathBuf,
    /// The mask file.
    pub mask: PathBuf,
}

/// Which layout a dataset folder uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `images/` and `masks/`, split by holdout.
    Folder,
    /// `train/` and `val/`, each with `images/` and `masks/`.
    Split,
    /// Pascal VOC.
    Voc,
}

/// The pairs of a dataset folder, split, with every pairing problem found.
#[derive(Debug, Clone)]
pub struct DatasetFiles {
    /// The dataset folder.
    pub root: PathBuf,
    /// Its layout.
    pub layout: Layout,
    /// Training pairs.
    pub train: Vec<SamplePaths>,
    /// Validation pairs.
    pub val: Vec<SamplePaths>,
    /// The class list (`classes.json`, or VOC's classes).
    pub classes: Option<ClassList>,
    /// Problems that make files unusable: unpaired images or masks,
    /// duplicate names, unsupported files, names listed but missing.
    pub problems: Vec<String>,
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .map(|n| n.to_string_lossy().starts_with('.'))
        .unwrap_or(false)
}

fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|error| Error::Io {
        path: dir.to_path_buf(),
        error,
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|error| Error::Io {
                path: dir.to_path_buf(),
                error,
            })?
            .path();
        if path.is_file() && !is_hidden(&path) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The image files of `dir` (not recursive, hidden files left out), sorted
/// by name.
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(list_dir(dir)?
        .into_iter()
        .filter(|p| IMAGE_EXTENSIONS.contains(&extension(p).as_str()))
        .collect())
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Pairs `images/NAME.ext` with `masks/NAME.png` in one folder.
fn pair_folder(dir: &Path, problems: &mut Vec<String>) -> Result<Vec<SamplePaths>> {
    let (image_dir, mask_dir) = (dir.join("images"), dir.join("masks"));
    for d in [&image_dir, &mask_dir] {
        if !d.is_dir() {
            return Err(Error::MissingFolder { path: d.clone() });
        }
    }
    let mut images: BTreeMap<String, PathBuf> = BTreeMap::new();
    for path in list_dir(&image_dir)? {
        if !IMAGE_EXTENSIONS.contains(&extension(&path).as_str()) {
            problems.push(format!(
                "{}: unsupported image type; use {}",
                path.display(),
                IMAGE_EXTENSIONS.join(", ")
            ));
            continue;
        }
        if let Some(first) = images.insert(stem(&path), path.clone()) {
            problems.push(format!(
                "{} and {} have the same name; keep one",
                first.display(),
                path.display()
            ));
        }
    }
    let mut masks: BTreeMap<String, PathBuf> = BTreeMap::new();
    for path in list_dir(&mask_dir)? {
        if extension(&path) != "png" {
            problems.push(format!("{}: masks must be PNG files", path.display()));
            continue;
        }
        masks.insert(stem(&path), path);
    }
    let mut pairs = Vec::new();
    for (name, image) in &images {
        match masks.get(name) {
            Some(mask) => pairs.push(SamplePaths {
                name: name.clone(),
                image: image.clone(),
                mask: mask.clone(),
            }),
            None => problems.push(format!(
                "{}: no mask; expected {}",
                image.display(),
                mask_dir.join(format!("{name}.png")).display()
            )),
        }
    }
    for (name, mask) in &masks {
        if !images.contains_key(name) {
            problems.push(format!(
                "{}: no image named {name} in {}",
                mask.display(),
                image_dir.display()
            ));
        }
    }
    Ok(pairs)
}

fn voc_split(root: &Path, split: &str, problems: &mut Vec<String>) -> Result<Vec<SamplePaths>> {
    let list = root
        .join("ImageSets")
        .join("Segmentation")
        .join(format!("{split}.txt"));
    let text = std::fs::read_to_string(&list).map_err(|error| Error::Io {
        path: list.clone(),
        error,
    })?;
    let mut pairs = Vec::new();
    for name in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let image = root.join("JPEGImages").join(format!("{name}.jpg"));
        let mask = root.join("SegmentationClass").join(format!("{name}.png"));
        let mut ok = true;
        for file in [&image, &mask] {
            if !file.is_file() {
                problems.push(format!(
                    "{}: listed in {} but missing",
                    file.display(),
                    list.display()
                ));
                ok = false;
            }
        }
        if ok {
            pairs.push(SamplePaths {
                name: name.to_string(),
                image,
                mask,
            });
        }
    }
    Ok(pairs)
}

/// Splits `pairs` into (train, val) with a seeded shuffle; at least one
/// sample goes to each side when there are two or more and `fraction > 0`.
pub fn holdout(
    mut pairs: Vec<SamplePaths>,
    fraction: f64,
    seed: u64,
) -> (Vec<SamplePaths>, Vec<SamplePaths>) {
    pairs.sort_by(|a, b| a.name.cmp(&b.name));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    pairs.shuffle(&mut rng);
    let n = pairs.len();
    let mut n_val = (n as f64 * fraction).round() as usize;
    if fraction > 0.0 && n >= 2 {
        n_val = n_val.clamp(1, n - 1);
    }
    let val = pairs.split_off(n - n_val.min(n));
    (pairs, val)
}

/// Finds the pairs of the dataset at `root`; `val_fraction` and `seed` split
/// a single-folder dataset.
pub fn discover(root: &Path, val_fraction: f64, seed: u64) -> Result<DatasetFiles> {
    if !root.is_dir() {
        return Err(Error::NotAFolder {
            path: root.to_path_buf(),
        });
    }
    if !(0.0..1.0).contains(&val_fraction) {
        return Err(Error::setting(
            "val_fraction",
            format!("val_fraction is {val_fraction}; it must be at least 0 and below 1"),
        ));
    }
    let classes_path = root.join(CLASSES_FILE);
    let mut classes = if classes_path.is_file() {
        Some(ClassList::from_file(&classes_path)?)
    } else {
        None
    };
    let mut problems = Vec::new();
    let (layout, train, val) =
        if root.join("JPEGImages").is_dir() && root.join("SegmentationClass").is_dir() {
            classes.get_or_insert_with(ClassList::voc);
            let train = voc_split(root, "train", &mut problems)?;
            let val = voc_split(root, "val", &mut problems)?;
            (Layout::Voc, train, val)
        } else if root.join("train").is_dir() {
            if !root.join("val").is_dir() {
                return Err(Error::NoValFolder {
                    root: root.to_path_buf(),
                });
            }
            let train = pair_folder(&root.join("train"), &mut problems)?;
            let val = pair_folder(&root.join("val"), &mut problems)?;
            (Layout::Split, train, val)
        } else {
            let pairs = pair_folder(root, &mut problems)?;
            let (train, val) = holdout(pairs, val_fraction, seed);
            (Layout::Folder, train, val)
        };
    Ok(DatasetFiles {
        root: root.to_path_buf(),
        layout,
        train,
        val,
        classes,
        problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"").unwrap();
    }

    #[test]
    fn folder_pairs_and_reports_every_problem() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for f in [
            "images/a.png",
            "images/b.jpg",
            "images/c.tif",
            "images/orphan.png",
            "images/notes.txt",
            "images/.DS_Store",
        ] {
            touch(&r.join(f));
        }
        for f in [
            "masks/a.png",
            "masks/b.png",
            "masks/c.png",
            "masks/lonely.png",
            "masks/d.jpg",
        ] {
            touch(&r.join(f));
        }
        let files = discover(r, 0.0, 1).unwrap();
        assert_eq!(files.layout, Layout::Folder);
        let names: Vec<_> = files.train.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names.len(), 3);
        assert!(files.val.is_empty());
        let problems = files.problems.join("\n");
        assert!(problems.contains("orphan.png: no mask"), "{problems}");
        assert!(
            problems.contains("lonely.png: no image named lonely"),
            "{problems}"
        );
        assert!(
            problems.contains("notes.txt: unsupported image type"),
            "{problems}"
        );
        assert!(problems.contains("d.jpg: masks must be PNG"), "{problems}");
        assert_eq!(files.problems.len(), 4, "{problems}");
    }

    #[test]
    fn holdout_is_seeded_and_disjoint() {
        let pairs: Vec<SamplePaths> = (0..10)
            .map(|i| SamplePaths {
                name: format!("s{i}"),
                image: PathBuf::from(format!("i{i}")),
                mask: PathBuf::from(format!("m{i}")),
            })
            .collect();
        let (t1, v1) = holdout(pairs.clone(), 0.2, 7);
        let (_, v2) = holdout(pairs.iter().rev().cloned().collect(), 0.2, 7);
        assert_eq!((t1.len(), v1.len()), (8, 2));
        assert_eq!(v1, v2, "same seed, same split whatever the listing order");
        assert!(v1.iter().all(|v| !t1.contains(v)));
        let (_, v3) = holdout(pairs.clone(), 0.2, 8);
        assert_ne!(v1, v3);
        let (t, v) = holdout(pairs[..2].to_vec(), 0.01, 1);
        assert_eq!((t.len(), v.len()), (1, 1));
    }

    #[test]
    fn split_and_voc_layouts() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for f in [
            "train/images/a.png",
            "train/masks/a.png",
            "val/images/b.png",
            "val/masks/b.png",
        ] {
            touch(&r.join(f));
        }
        let files = discover(r, 0.2, 1).unwrap();
        assert_eq!(files.layout, Layout::Split);
        assert_eq!((files.train.len(), files.val.len()), (1, 1));

        let voc = tempfile::tempdir().unwrap();
        let r = voc.path();
        for f in [
            "JPEGImages/x.jpg",
            "SegmentationClass/x.png",
            "JPEGImages/y.jpg",
            "SegmentationClass/y.png",
        ] {
            touch(&r.join(f));
        }
        std::fs::create_dir_all(r.join("ImageSets/Segmentation")).unwrap();
        std::fs::write(r.join("ImageSets/Segmentation/train.txt"), "x\nz\n").unwrap();
        std::fs::write(r.join("ImageSets/Segmentation/val.txt"), "y\n").unwrap();
        let files = discover(r, 0.2, 1).unwrap();
        assert_eq!(files.layout, Layout::Voc);
        assert_eq!((files.train.len(), files.val.len()), (1, 1));
        assert_eq!(files.classes.unwrap().len(), 21);
        assert!(
            files.problems[0].contains("z.jpg: listed in"),
            "{:?}",
            files.problems
        );
    }

    #[test]
    fn missing_folders_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = discover(dir.path(), 0.2, 1).unwrap_err().to_string();
        assert!(err.contains("images is missing"), "{err}");
        let err = discover(&dir.path().join("nope"), 0.2, 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not a folder"), "{err}");
        std::fs::create_dir_all(dir.path().join("train/images")).unwrap();
        let err = discover(dir.path(), 0.2, 1).unwrap_err().to_string();
        assert!(err.contains("no val/"), "{err}");
    }
}
