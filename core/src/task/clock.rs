//! Clock keys: the names under which `field_updated_at` records when each field or tag changed.

use std::fmt;

use serde_json::Value;

use super::Task;

/// The prefix of a tag's clock key. A field whose name starts with it is invalid, so a clock
/// key always means exactly one thing.
pub const TAG_CLOCK_PREFIX: &str = "tags.";

/// Top-level keys that are bookkeeping: they carry no clock of their own.
pub(crate) const UNCLOCKED: &[&str] =
    &["id", "created_at", "updated_at", "field_updated_at", "tags"];

/// One key of `field_updated_at` (docs/task-format.md): a field, or one tag (`tags.<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ClockKey<'a> {
    /// A top-level field other than the bookkeeping ones.
    Field(&'a str),
    /// One tag of the `tags` set.
    Tag(&'a str),
}

impl<'a> ClockKey<'a> {
    /// Reads a key of `field_updated_at`; `None` for a bookkeeping key, which guards no value.
    pub fn parse(key: &'a str) -> Option<ClockKey<'a>> {
        match key.strip_prefix(TAG_CLOCK_PREFIX) {
            Some(tag) => Some(ClockKey::Tag(tag)),
            None => ClockKey::field(key),
        }
    }

    /// The clock key of a top-level field; `None` for a bookkeeping field.
    pub fn field(name: &'a str) -> Option<ClockKey<'a>> {
        (!UNCLOCKED.contains(&name)).then_some(ClockKey::Field(name))
    }

    /// The value this key guards in `task`: the field's value, or `true` for a present tag.
    pub fn value_in(self, task: &Task) -> Option<Value> {
        match self {
            ClockKey::Field(name) => task.get(name).cloned(),
            ClockKey::Tag(tag) => task.has_tag(tag).then_some(Value::Bool(true)),
        }
    }
}

impl fmt::Display for ClockKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClockKey::Field(name) => f.write_str(name),
            ClockKey::Tag(tag) => write!(f, "{TAG_CLOCK_PREFIX}{tag}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_print_back() {
        for key in [
            "description",
            "tags.work",
            "annotation_1700000000000",
            "tags.a.b",
        ] {
            assert_eq!(ClockKey::parse(key).unwrap().to_string(), key);
        }
        assert_eq!(ClockKey::parse("tags.a.b"), Some(ClockKey::Tag("a.b")));
        assert_eq!(ClockKey::parse("updated_at"), None);
        assert_eq!(ClockKey::field("tags"), None);
    }
}
