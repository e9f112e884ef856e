//! Dependency-free text writers for object tables and outlines: CSV rows
//! quoted per RFC 4180, and GeoJSON (RFC 7946) features in the shape QuPath
//! imports as detections (`objectType`, `classification` with name and
//! colour, `measurements` as a name → number map).

use std::fmt::Write;

/// One CSV record (no line terminator). A field is quoted when it contains
/// a comma, a double quote, CR or LF; quotes inside are doubled (RFC 4180).
pub fn csv_row<S: AsRef<str>>(fields: &[S]) -> String {
    let cells: Vec<String> = fields
        .iter()
        .map(|f| {
            let f = f.as_ref();
            if f.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f.to_string()
            }
        })
        .collect();
    cells.join(",")
}

/// `s` as a JSON string literal, quotes included (RFC 8259 §7).
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON number: `Display` gives the shortest text that reads back to the
/// same `f64`, never an exponent, and no decimals for integers. JSON has no
/// NaN or infinity, so those become `null`.
pub fn json_number(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".to_string()
    }
}

fn ring_json(out: &mut String, ring: &[(f64, f64)]) {
    out.push('[');
    for (k, &(x, y)) in ring.iter().enumerate() {
        if k > 0 {
            out.push(',');
        }
        let _ = write!(out, "[{},{}]", json_number(x), json_number(y));
    }
    out.push(']');
}

fn polygon_json(out: &mut String, rings: &[Vec<(f64, f64)>]) {
    out.push('[');
    for (k, ring) in rings.iter().enumerate() {
        if k > 0 {
            out.push(',');
        }
        ring_json(out, ring);
    }
    out.push(']');
}

/// One GeoJSON Feature on one line (no line terminator). `polygons`: each
/// polygon is its rings, exterior first, then holes; one polygon gives a
/// `Polygon`, several a `MultiPolygon`, none a `null` geometry. The id is
/// written as a string, and again as the number `object_id` in properties.
pub fn geojson_feature(
    id: u32,
    class_name: &str,
    color: [u8; 3],
    polygons: &[Vec<Vec<(f64, f64)>>],
    measurements: &[(&str, f64)],
) -> String {
    let mut out = String::new();
    let _ = write!(out, "{{\"type\":\"Feature\",\"id\":\"{id}\",\"geometry\":");
    match polygons {
        [] => out.push_str("null"),
        [one] => {
            out.push_str("{\"type\":\"Polygon\",\"coordinates\":");
            polygon_json(&mut out, one);
            out.push('}');
        }
        many => {
            out.push_str("{\"type\":\"MultiPolygon\",\"coordinates\":[");
            for (k, p) in many.iter().enumerate() {
                if k > 0 {
                    out.push(',');
                }
                polygon_json(&mut out, p);
            }
            out.push_str("]}");
        }
    }
    let _ = write!(
        out,
        ",\"properties\":{{\"objectType\":\"detection\",\"classification\":{{\"name\":{},\"color\":[{},{},{}]}},\"measurements\":{{",
        json_string(class_name),
        color[0],
        color[1],
        color[2]
    );
    for (k, (name, value)) in measurements.iter().enumerate() {
        if k > 0 {
            out.push(',');
        }
        let _ = write!(out, "{}:{}", json_string(name), json_number(*value));
    }
    let _ = write!(out, "}},\"object_id\":{id}}}}}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minimal JSON validator (RFC 8259 grammar): returns the rest after one
    /// value, or None on a syntax error.
    fn value(s: &[u8]) -> Option<&[u8]> {
        let s = ws(s);
        match *s.first()? {
            b'{' => seq(&s[1..], b'}', |s| {
                let s = string(ws(s))?;
                let s = ws(s);
                (s.first() == Some(&b':')).then_some(())?;
                value(&s[1..])
            }),
            b'[' => seq(&s[1..], b']', value),
            b'"' => string(s),
            b't' => s.strip_prefix(b"true"),
            b'f' => s.strip_prefix(b"false"),
            b'n' => s.strip_prefix(b"null"),
            _ => {
                let end = s
                    .iter()
                    .position(|c| !b"+-0123456789.eE".contains(c))
                    .unwrap_or(s.len());
                std::str::from_utf8(&s[..end]).ok()?.parse::<f64>().ok()?;
                (end > 0 && !s.starts_with(b"+") && !s.starts_with(b".")).then_some(&s[end..])
            }
        }
    }
    fn ws(s: &[u8]) -> &[u8] {
        let k = s
            .iter()
            .position(|c| !b" \t\r\n".contains(c))
            .unwrap_or(s.len());
        &s[k..]
    }
    fn seq(mut s: &[u8], close: u8, item: impl Fn(&[u8]) -> Option<&[u8]>) -> Option<&[u8]> {
        if ws(s).first() == Some(&close) {
            return Some(&ws(s)[1..]);
        }
        loop {
            s = ws(item(s)?);
            match *s.first()? {
                b',' => s = &s[1..],
                c if c == close => return Some(&s[1..]),
                _ => return None,
            }
        }
    }
    fn string(s: &[u8]) -> Option<&[u8]> {
        (s.first() == Some(&b'"')).then_some(())?;
        let mut i = 1;
        loop {
            match *s.get(i)? {
                b'"' => return Some(&s[i + 1..]),
                b'\\' => {
                    i += match *s.get(i + 1)? {
                        b'u' => s
                            .get(i + 2..i + 6)?
                            .iter()
                            .all(u8::is_ascii_hexdigit)
                            .then_some(6)?,
                        c if b"\"\\/bfnrt".contains(&c) => 2,
                        _ => return None,
                    }
                }
                c if c < 0x20 => return None,
                _ => i += 1,
            }
        }
    }
    fn valid(s: &str) -> bool {
        value(s.as_bytes()).is_some_and(|rest| ws(rest).is_empty())
    }

    #[test]
    fn validator_rejects_bad_json() {
        for bad in [
            "{\"a\":1,}",
            "[1 2]",
            "\"a\nb\"",
            "\"\\x\"",
            "NaN",
            "{a:1}",
            "[1",
        ] {
            assert!(!valid(bad), "{bad}");
        }
        assert!(valid("{\"a\":[1,-2.5e3,null,true,\"\\u00e9\"]}"));
    }

    #[test]
    fn csv_quoting() {
        assert_eq!(csv_row(&["a", "b c", "1.5"]), "a,b c,1.5");
        assert_eq!(
            csv_row(&[
                "x,y".to_string(),
                "say \"hi\"".to_string(),
                "two\nlines".to_string(),
                String::new()
            ]),
            "\"x,y\",\"say \"\"hi\"\"\",\"two\nlines\","
        );
    }

    #[test]
    fn json_escaping_and_numbers() {
        assert_eq!(
            json_string("a\"b\\c\nd\u{1}é"),
            "\"a\\\"b\\\\c\\nd\\u0001é\""
        );
        assert!(valid(&json_string("\u{0}\u{1f}\t\u{8}\u{c}\r\"\\/")));
        assert_eq!(json_number(3.0), "3");
        assert_eq!(json_number(0.1), "0.1");
        assert_eq!(json_number(-2.5), "-2.5");
        assert_eq!(json_number(1e21), "1000000000000000000000");
        assert_eq!(json_number(f64::NAN), "null");
        assert_eq!(json_number(f64::NEG_INFINITY), "null");
        assert_eq!(json_number(1.0 / 3.0).parse::<f64>(), Ok(1.0 / 3.0));
    }

    #[test]
    fn polygon_feature_exact_text() {
        let square = vec![vec![
            (0.0, 0.0),
            (2.0, 0.0),
            (2.0, 2.0),
            (0.0, 2.0),
            (0.0, 0.0),
        ]];
        let f = geojson_feature(
            7,
            "Nucleus",
            [255, 0, 10],
            &[square],
            &[("Area px", 4.0), ("Mean", 0.25)],
        );
        assert_eq!(
            f,
            "{\"type\":\"Feature\",\"id\":\"7\",\"geometry\":{\"type\":\"Polygon\",\"coordinates\":\
             [[[0,0],[2,0],[2,2],[0,2],[0,0]]]},\"properties\":{\"objectType\":\"detection\",\
             \"classification\":{\"name\":\"Nucleus\",\"color\":[255,0,10]},\
             \"measurements\":{\"Area px\":4,\"Mean\":0.25},\"object_id\":7}}"
        );
        assert!(valid(&f));
    }

    #[test]
    fn multipolygon_and_awkward_values_stay_valid() {
        let ring = |x: f64| vec![(x, 0.0), (x + 1.0, 0.0), (x + 1.0, 1.0), (x, 1.0), (x, 0.0)];
        let with_hole = vec![ring(0.0), ring(0.5)];
        let f = geojson_feature(
            1,
            "we\"ird\\\n",
            [0, 0, 0],
            &[with_hole, vec![ring(5.0)]],
            &[("nan", f64::NAN)],
        );
        assert!(f.contains("\"type\":\"MultiPolygon\",\"coordinates\":[[[[0,0],"));
        assert!(f.contains("\"nan\":null"));
        assert!(valid(&f), "{f}");
        let f = geojson_feature(2, "x", [1, 2, 3], &[], &[]);
        assert!(f.contains("\"geometry\":null") && f.contains("\"measurements\":{}"));
        assert!(valid(&f), "{f}");
    }
}
