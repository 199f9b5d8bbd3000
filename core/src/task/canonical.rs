//! RFC 8785 canonical JSON of a JSON value, written straight into a buffer.
//!
//! Every task is hashed in this form (and stored in it by some drivers), tens of thousands per
//! sync. A generic canonicaliser serialises each object member into a buffer of its own and
//! re-parses every key to sort it; here a map whose keys are already in RFC 8785's order (all of
//! them, for a task: its keys are ASCII and a `serde_json::Map` keeps them sorted) is written in
//! one pass. Numbers go through `serde_jcs`, so their form is the one it has always been.

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

/// Appends the canonical form of `value` to `out`.
pub(crate) fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => write_map(out, map),
    }
}

/// Appends the canonical form of an object to `out`: members in the UTF-16 order of their keys.
pub(crate) fn write_map(out: &mut Vec<u8>, map: &Map<String, Value>) {
    let in_order = map
        .keys()
        .zip(map.keys().skip(1))
        .all(|(a, b)| utf16_cmp(a, b) == Ordering::Less);
    if in_order {
        write_members(out, map.iter());
    } else {
        let mut members: Vec<(&String, &Value)> = map.iter().collect();
        members.sort_by(|a, b| utf16_cmp(a.0, b.0));
        write_members(out, members.into_iter());
    }
}

fn write_members<'a>(out: &mut Vec<u8>, members: impl Iterator<Item = (&'a String, &'a Value)>) {
    out.push(b'{');
    for (i, (key, value)) in members.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(out, key);
        out.push(b':');
        write_value(out, value);
    }
    out.push(b'}');
}

/// RFC 8785 orders keys by their UTF-16 code units, which differs from byte order only when
/// characters above U+FFFF meet characters in U+E000..U+FFFF.
fn utf16_cmp(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        a.cmp(b)
    } else {
        a.encode_utf16().cmp(b.encode_utf16())
    }
}

/// A string as ECMAScript's `JSON.stringify` writes it: `"` and `\` escaped, the control
/// characters below U+0020 as `\b \t \n \f \r` or `\u00xx`, everything else as it is.
fn write_string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            0x0c => b"\\f",
            b'\r' => b"\\r",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if short.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.extend_from_slice(&[HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]]);
        } else {
            out.extend_from_slice(short);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn write_number(out: &mut Vec<u8>, n: &Number) {
    serde_jcs::to_writer(&mut *out, n).expect("a JSON number always canonicalises");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn canonical(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        write_value(&mut out, v);
        out
    }

    fn any_value() -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            "[a-z_]{0,6}",
            "\\PC{0,4}",
            Just("\u{e000}".to_owned()),
            Just("\u{1f600}".to_owned()),
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "(\\PC|[\u{0}-\u{1f}\u{7f}\"\\\\/\u{2028}])*".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((key.clone(), inner), 0..6)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn writes_what_serde_jcs_writes(v in any_value()) {
            prop_assert_eq!(canonical(&v), serde_jcs::to_vec(&v).unwrap());
        }
    }

    #[test]
    fn keys_are_ordered_by_utf16_code_units() {
        let v = serde_json::json!({"\u{1f600}": 1, "\u{e000}": 2, "a": 3});
        assert_eq!(
            String::from_utf8(canonical(&v)).unwrap(),
            "{\"a\":3,\"\u{1f600}\":1,\"\u{e000}\":2}"
        );
    }

    #[test]
    fn control_characters_are_escaped_the_ecmascript_way() {
        let v = Value::String("\u{0}\u{8}\t\n\u{c}\r\u{1f}\"\\/\u{7f}\u{2028}".into());
        assert_eq!(
            String::from_utf8(canonical(&v)).unwrap(),
            "\"\\u0000\\b\\t\\n\\f\\r\\u001f\\\"\\\\/\u{7f}\u{2028}\""
        );
    }
}
