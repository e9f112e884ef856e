//! A job's inputs: the image files its paths name, each paired with the
//! name stem of its outputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::data::{IMAGE_EXTENSIONS, image_files};
use crate::error::{Error, Result};
use crate::provenance::OutputKind;
use crate::raster::is_tiff;

/// The kind of outputs an input gets: TIFF inputs are streamed into TIFFs.
pub fn kind_of(input: &Path) -> OutputKind {
    if is_tiff(input) {
        OutputKind::Tiff
    } else {
        OutputKind::Png
    }
}

/// The image files named by `inputs`: files as given, folders' images (not
/// recursive, hidden files left out) sorted by name.
pub fn list_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let found = image_files(input)?;
            if found.is_empty() {
                return Err(Error::setting(
                    "input",
                    format!(
                        "{} holds no images ({})",
                        input.display(),
                        IMAGE_EXTENSIONS.join(", ")
                    ),
                ));
            }
            files.extend(found);
        } else if input.is_file() {
            files.push(input.clone());
        } else {
            return Err(Error::setting(
                "input",
                format!("{} does not exist", input.display()),
            ));
        }
    }
    Ok(files)
}

/// Pairs every input with its output name stem; refuses two inputs that
/// would write the same files, and outputs that would overwrite an input.
pub fn plan_outputs(inputs: &[PathBuf], out: &Path) -> Result<Vec<(PathBuf, String)>> {
    let mut by_stem: BTreeMap<String, &PathBuf> = BTreeMap::new();
    let mut jobs = Vec::new();
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let inputs_canonical: Vec<PathBuf> = inputs.iter().map(|p| canonical(p)).collect();
    for input in inputs {
        let stem = input
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(other) = by_stem.insert(stem.clone(), input) {
            return Err(Error::setting(
                "out",
                format!(
                    "{} and {} would both write {stem}.png in {}; predict them into different output folders",
                    other.display(),
                    input.display(),
                    out.display()
                ),
            ));
        }
        for suffix in [".png", "_overlay.png", ".tif", "_overlay.tif"] {
            let target = canonical(&out.join(format!("{stem}{suffix}")));
            if inputs_canonical.contains(&target) {
                return Err(Error::setting(
                    "out",
                    format!(
                        "writing {} would overwrite an input image; choose another output folder",
                        target.display()
                    ),
                ));
            }
        }
        jobs.push((input.clone(), stem));
    }
    Ok(jobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_give_their_images_and_clashes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::create_dir(&a).unwrap();
        for name in ["x.png", "y.tif", "notes.txt"] {
            std::fs::write(a.join(name), b"").unwrap();
        }
        let files = list_inputs(std::slice::from_ref(&a)).unwrap();
        assert_eq!(files, vec![a.join("x.png"), a.join("y.tif")]);
        let jobs = plan_outputs(&files, &dir.path().join("out")).unwrap();
        assert_eq!(jobs[1].1, "y");
        assert_eq!(kind_of(&jobs[1].0), OutputKind::Tiff);

        let other = dir.path().join("x.jpg");
        std::fs::write(&other, b"").unwrap();
        let e = plan_outputs(&[a.join("x.png"), other], dir.path()).unwrap_err();
        assert!(e.to_string().contains("would both write x.png"), "{e}");
        // Predicting a folder of masks into itself would overwrite them.
        let e = plan_outputs(&files, &a).unwrap_err();
        assert!(
            e.to_string().contains("would overwrite an input image"),
            "{e}"
        );

        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let e = list_inputs(&[empty]).unwrap_err();
        assert!(
            matches!(&e, Error::Setting { field, .. } if field == "input"),
            "{e}"
        );
        let e = list_inputs(&[dir.path().join("missing.png")]).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
    }
}
