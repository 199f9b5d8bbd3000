//! Reading the words of `add`, `modify` and friends: description text, `+tag`, `-tag`,
//! `key:value` attributes (checked against the configured [`Schema`]), and literal words.

use chrono::{DateTime, TimeZone};
use hypertask_core::manage::attrs::{AttrChange, Schema};

use crate::Usage;

/// What the words of an `add`/`modify` ask for.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Mods {
    /// Description words, in order (literal words after `--` included).
    pub words: Vec<String>,
    /// Tags to add.
    pub add_tags: Vec<String>,
    /// Tags to remove (`-tag`, modify only).
    pub remove_tags: Vec<String>,
    /// Attributes to set or clear.
    pub attrs: Vec<AttrChange>,
}

impl Mods {
    /// The description words joined, when there are any.
    pub(crate) fn description(&self) -> Option<String> {
        (!self.words.is_empty()).then(|| self.words.join(" "))
    }

    /// Whether the words ask for nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.words.is_empty()
            && self.add_tags.is_empty()
            && self.remove_tags.is_empty()
            && self.attrs.is_empty()
    }
}

/// Whether `key` has the shape of an attribute name (so `key:value` is meant as one), unlike
/// `10:30` or `:-)`.
fn is_key(key: &str) -> bool {
    key.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Reads modification words. `-tag` removes a tag only when `modify` (in `add`, a leading `-`
/// is ordinary text). `literal` words (after `--`) are description text whatever they hold.
pub(crate) fn mods<Tz: TimeZone>(
    words: &[String],
    literal: &[String],
    schema: &Schema,
    now: &DateTime<Tz>,
    modify: bool,
) -> Result<Mods, Usage> {
    let mut m = Mods::default();
    for word in words {
        if let Some(tag) = word.strip_prefix('+').filter(|t| !t.is_empty()) {
            m.add_tags.push(tag.to_owned());
            continue;
        }
        if modify {
            if let Some(tag) = word.strip_prefix('-').filter(|t| !t.is_empty()) {
                m.remove_tags.push(tag.to_owned());
                continue;
            }
        }
        match word.split_once(':') {
            Some((key, value)) if is_key(key) => {
                let change = schema
                    .modification(key, value, now)
                    .map_err(|e| Usage(e.to_string()))?;
                if !modify && matches!(&change, AttrChange::Clear(_)) {
                    return Err(Usage(format!(
                        "'{word}' needs a value when adding a task, such as {key}:tomorrow"
                    )));
                }
                m.attrs.push(change);
            }
            _ => m.words.push(word.clone()),
        }
    }
    m.words.extend(literal.iter().cloned());
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;
    use serde_json::Value;

    fn parse(ws: &[&str], lit: &[&str], modify: bool) -> Result<Mods, Usage> {
        let now = DateTime::parse_from_rfc3339("2026-03-04T15:30:00+02:00").unwrap();
        let ws: Vec<String> = ws.iter().map(|s| s.to_string()).collect();
        let lit: Vec<String> = lit.iter().map(|s| s.to_string()).collect();
        mods(&ws, &lit, &Schema::default(), &now, modify)
    }

    #[test]
    fn words_split_into_description_tags_and_attributes() {
        let m = parse(
            &[
                "buy",
                "milk",
                "+home",
                "due:tomorrow",
                "project:home",
                "10:30",
            ],
            &["+x", "a:b"],
            false,
        )
        .unwrap();
        assert_eq!(m.description().as_deref(), Some("buy milk 10:30 +x a:b"));
        assert_eq!(m.add_tags, ["home"]);
        assert_eq!(
            m.attrs,
            vec![
                AttrChange::Set(
                    "due".into(),
                    Value::String("2026-03-04T22:00:00.000Z".into())
                ),
                AttrChange::Set("project".into(), Value::String("home".into())),
            ]
        );
        // In `add`, `-x` is text; in `modify` it removes a tag, and `due:` clears.
        assert_eq!(parse(&["-x"], &[], false).unwrap().words, ["-x"]);
        let m = parse(&["-x", "due:"], &[], true).unwrap();
        assert_eq!(m.remove_tags, ["x"]);
        assert_eq!(m.attrs, vec![AttrChange::Clear("due".into())]);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_usage_errors() {
        let e = parse(&["x", "foo:bar"], &[], false).unwrap_err().0;
        assert!(
            e.contains("'foo'") && e.contains("project") && e.contains("--"),
            "{e}"
        );
        assert!(parse(&["x", "due:someday"], &[], false)
            .unwrap_err()
            .0
            .contains("someday"));
        assert!(parse(&["x", "wait:"], &[], false)
            .unwrap_err()
            .0
            .contains("wait:"));
        assert!(parse(&["x", "recur:often"], &[], false)
            .unwrap_err()
            .0
            .contains("often"));
    }
}
