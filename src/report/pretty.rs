//! Indented JSON for people, with raw fragments indented like the rest.
//!
//! A finding's evidence is kept as compact JSON text
//! ([`crate::engine::findings::Evidence`]) and `serde_json` writes such
//! text verbatim, even inside an indented document. [`to_writer`] writes
//! what `serde_json::to_writer_pretty` writes, with each raw fragment laid
//! out as if it had been serialised in place: the same bytes the document
//! had when evidence was a parsed value, without parsing it.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::ser::{Formatter, PrettyFormatter};

/// Indentation per level, as `serde_json`'s pretty printer uses.
const INDENT: &[u8] = b"  ";

/// `value` as indented JSON on `w`.
pub fn to_writer<W: Write, T: Serialize + ?Sized>(w: W, value: &T) -> serde_json::Result<()> {
    let mut ser = serde_json::Serializer::with_formatter(
        w,
        Pretty {
            inner: PrettyFormatter::with_indent(INDENT),
            depth: 0,
        },
    );
    value.serialize(&mut ser)
}

/// `serde_json`'s pretty formatter, counting how deep it is so a raw
/// fragment can be indented from there.
struct Pretty {
    inner: PrettyFormatter<'static>,
    depth: usize,
}

impl Formatter for Pretty {
    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.depth += 1;
        self.inner.begin_array(w)
    }
    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.depth = self.depth.saturating_sub(1);
        self.inner.end_array(w)
    }
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.inner.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.inner.end_array_value(w)
    }
    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.depth += 1;
        self.inner.begin_object(w)
    }
    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.depth = self.depth.saturating_sub(1);
        self.inner.end_object(w)
    }
    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.inner.begin_object_key(w, first)
    }
    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.inner.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.inner.end_object_value(w)
    }
    fn write_raw_fragment<W: ?Sized + Write>(&mut self, w: &mut W, raw: &str) -> io::Result<()> {
        indent_compact(w, raw, self.depth)
    }
}

/// Compact JSON `raw` laid out as `serde_json`'s pretty printer would at
/// nesting `depth`: a line per element, `": "` after keys, empty
/// containers as `{}` and `[]`. Strings are copied as they are, escapes
/// and all. Input with whitespace between tokens (never written here: the
/// evidence is serialised compact, and read back as stored) is copied
/// with it, still valid JSON.
fn indent_compact<W: ?Sized + Write>(w: &mut W, raw: &str, depth: usize) -> io::Result<()> {
    let bytes = raw.as_bytes();
    let mut depth = depth;
    let mut i = 0;
    let mut start = 0;
    let newline = |w: &mut W, depth: usize| -> io::Result<()> {
        w.write_all(b"\n")?;
        (0..depth).try_for_each(|_| w.write_all(INDENT))
    };
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                // To the closing quote: a backslash escapes the next byte.
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                continue;
            }
            open @ (b'{' | b'[') => {
                let close = if open == b'{' { b'}' } else { b']' };
                w.write_all(&bytes[start..=i])?;
                if bytes.get(i + 1) == Some(&close) {
                    w.write_all(&[close])?;
                    i += 2;
                } else {
                    depth += 1;
                    newline(w, depth)?;
                    i += 1;
                }
                start = i;
                continue;
            }
            close @ (b'}' | b']') => {
                w.write_all(&bytes[start..i])?;
                depth = depth.saturating_sub(1);
                newline(w, depth)?;
                w.write_all(&[close])?;
            }
            b',' => {
                w.write_all(&bytes[start..=i])?;
                newline(w, depth)?;
            }
            b':' => {
                w.write_all(&bytes[start..=i])?;
                w.write_all(b" ")?;
            }
            _ => {
                i += 1;
                continue;
            }
        }
        i += 1;
        start = i;
    }
    w.write_all(&bytes[start.min(bytes.len())..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    /// A document holding `v` as a parsed value and as raw text.
    fn both(v: &Value) -> (String, String) {
        let raw = serde_json::value::to_raw_value(v).expect("raw");
        let parsed = json!({"a": [1, {"evidence": v}], "b": {}});
        let mut expected = Vec::new();
        serde_json::to_writer_pretty(&mut expected, &parsed).expect("pretty");
        #[derive(Serialize)]
        struct Doc<'a> {
            a: (u8, Inner<'a>),
            b: Value,
        }
        #[derive(Serialize)]
        struct Inner<'a> {
            evidence: &'a serde_json::value::RawValue,
        }
        let doc = Doc {
            a: (1, Inner { evidence: &raw }),
            b: json!({}),
        };
        let mut got = Vec::new();
        to_writer(&mut got, &doc).expect("ours");
        (
            String::from_utf8(expected).expect("utf8"),
            String::from_utf8(got).expect("utf8"),
        )
    }

    #[test]
    fn a_raw_fragment_is_laid_out_as_if_serialised_in_place() {
        let v = json!({
            "approval": {"id": "APR-1", "url": null, "tags": [], "meta": {}},
            "credential.active": true,
            "quoted": "a \"b\" {c} [d], e: f \\",
            "list": [1, 2.5, -3, [], [[]], {"x": [{}]}],
            "unicode": "é ✓ \u{1}",
        });
        let (expected, got) = both(&v);
        assert_eq!(got, expected);
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            ".*".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(".*", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_value_is_laid_out_as_serde_json_lays_it_out(v in value()) {
            let (expected, got) = both(&v);
            prop_assert_eq!(got, expected);
        }
    }
}
