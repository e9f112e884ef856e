//! Settings that are one of a few names (`tta`, `compression`,
//! `probs_type`, …): one parser and one display for every client, from the
//! names the settings have in config files (their serde names), so a
//! choice is spelled the same on the command line, in Python and in the
//! logs.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// A setting's name for `value`: its serde name (`Tta::Flip` → `flip`).
pub fn name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        other => panic!("a choice serializes to a string, not {other:?}"),
    }
}

/// The one of `all` named `text`; an error for setting `field` listing the
/// names otherwise.
///
/// ```
/// use wsunet::infer::Tta;
/// assert_eq!(wsunet::choice::parse("tta", "flip", &Tta::ALL).unwrap(), Tta::Flip);
/// let e = wsunet::choice::parse("tta", "rotate", &Tta::ALL).unwrap_err();
/// assert_eq!(e.to_string(), r#"tta "rotate": choose "none" or "flip""#);
/// ```
pub fn parse<T: Serialize + DeserializeOwned + Copy>(
    field: &str,
    text: &str,
    all: &[T],
) -> Result<T> {
    if let Some(value) = all.iter().find(|v| name(*v) == text) {
        return Ok(*value);
    }
    let names: Vec<String> = all.iter().map(|v| format!("{:?}", name(v))).collect();
    let list = match names.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    Err(Error::setting(
        field,
        format!("{field} {text:?}: choose {list}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::ProbsType;
    use crate::raster::Compression;

    #[test]
    fn names_are_the_config_files_and_unknown_ones_list_the_choices() {
        assert_eq!(name(&Compression::Zstd), "zstd");
        assert_eq!(
            parse("probs_type", "f32", &ProbsType::ALL).unwrap(),
            ProbsType::F32
        );
        let e = parse("compression", "lzw", &Compression::ALL).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"compression "lzw": choose "none", "deflate" or "zstd""#
        );
        assert!(matches!(e, Error::Setting { field, .. } if field == "compression"));
    }
}
