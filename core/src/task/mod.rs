//! The task document (docs/task-format.md): validation, normalisation, canonical JSON, content hash and
//! local edits.

mod canonical;
mod clock;
mod normalise;
mod time;

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::hash::ContentHash;

pub use crate::id::{TaskError, TaskId};
pub use clock::{ClockKey, TAG_CLOCK_PREFIX};
pub use time::{canonical_timestamp, format_timestamp, parse_timestamp, EPOCH, MAX_CLOCK_SKEW};

pub(crate) use crate::id::ID_ALPHABET;

use clock::UNCLOCKED;
use normalise::normalise;

/// The largest task document accepted by default, in bytes of JSON (1 MiB): files, blobs,
/// documents and HTTP bodies holding one task above it are rejected as invalid.
pub const DEFAULT_MAX_TASK_BYTES: usize = 1 << 20;

/// How deeply a task document may nest (the task object itself is level 1). Deeper documents
/// are rejected at input, so anything accepted can also be sent inside a protocol envelope.
pub const MAX_TASK_DEPTH: usize = 64;

/// One change of a local edit, stamped by [`Task::edit`].
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Set a field (known or unknown) to a value.
    Set(String, Value),
    /// Remove a field; the removal is recorded in its clock.
    Clear(String),
    /// Add a tag.
    AddTag(String),
    /// Remove a tag.
    RemoveTag(String),
}

/// A valid, normalised task document. Unknown fields are kept as they came.
///
/// Every `Task` value is normalised (docs/task-format.md), so equal tasks have equal bytes and hashes.
#[derive(Clone, PartialEq)]
pub struct Task {
    id: TaskId,
    doc: Map<String, Value>,
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Task({})", Value::Object(self.doc.clone()))
    }
}

impl Task {
    /// Validates and normalises a JSON document.
    pub fn from_value(value: Value) -> Result<Task, TaskError> {
        let Value::Object(doc) = value else {
            return Err(TaskError::new(None, None, "a task must be a JSON object"));
        };
        normalise(doc)
    }

    /// Parses, validates and normalises JSON text.
    pub fn from_json(bytes: &[u8]) -> Result<Task, TaskError> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| TaskError::new(None, None, format!("not valid JSON: {e}")))?;
        Task::from_value(value)
    }

    /// A new task with this id, created now.
    pub fn new(id: TaskId, now: DateTime<Utc>) -> Task {
        let ts = format_timestamp(now).unwrap_or_else(|| EPOCH.to_owned());
        let mut doc = Map::new();
        doc.insert("id".into(), Value::String(id.as_str().to_owned()));
        doc.insert("created_at".into(), Value::String(ts.clone()));
        doc.insert("updated_at".into(), Value::String(ts));
        doc.insert("field_updated_at".into(), Value::Object(Map::new()));
        Task { id, doc }
    }

    /// The task's id.
    pub fn id(&self) -> &TaskId {
        &self.id
    }

    /// The whole document.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.doc
    }

    /// The document as a JSON value.
    pub fn to_value(&self) -> Value {
        Value::Object(self.doc.clone())
    }

    /// One field's value.
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.doc.get(field)
    }

    /// A string field.
    pub fn get_str(&self, field: &str) -> Option<&str> {
        self.doc.get(field).and_then(Value::as_str)
    }

    /// A timestamp field, parsed.
    pub fn get_time(&self, field: &str) -> Option<DateTime<Utc>> {
        self.get_str(field).and_then(parse_timestamp)
    }

    /// The description, empty when absent.
    pub fn description(&self) -> &str {
        self.get_str("description").unwrap_or("")
    }

    /// The tags, sorted.
    pub fn tags(&self) -> Vec<&str> {
        match self.doc.get("tags") {
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }

    /// `updated_at`, canonical.
    pub fn updated_at(&self) -> &str {
        self.get_str("updated_at").unwrap_or(EPOCH)
    }

    /// `created_at`, canonical.
    pub fn created_at(&self) -> &str {
        self.get_str("created_at").unwrap_or(EPOCH)
    }

    /// The per-field clocks.
    pub fn clocks(&self) -> &Map<String, Value> {
        match self.doc.get("field_updated_at") {
            Some(Value::Object(m)) => m,
            _ => unreachable!("a normalised task always has field_updated_at"),
        }
    }

    /// Whether the task carries `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        match self.doc.get("tags") {
            Some(Value::Array(a)) => a.iter().any(|t| t.as_str() == Some(tag)),
            _ => false,
        }
    }

    /// Refuses a task whose clocks run more than [`MAX_CLOCK_SKEW`] ahead of `now`: such a clock
    /// would win every merge until that date. Applied to tasks arriving from elsewhere.
    pub fn check_clocks(&self, now: DateTime<Utc>) -> Result<(), TaskError> {
        let Some(limit) = format_timestamp(now + MAX_CLOCK_SKEW) else {
            return Ok(());
        };
        let late = std::iter::once(("updated_at", self.updated_at()))
            .chain(
                self.clocks()
                    .iter()
                    .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?))),
            )
            .find(|(_, clock)| *clock > limit.as_str());
        match late {
            Some((field, clock)) => Err(TaskError::new(
                Some(self.id.as_str()),
                Some(field),
                format!(
                    "clock {clock} is more than a day ahead of this machine's time; \
                     rejected so it cannot win every merge until then"
                ),
            )),
            None => Ok(()),
        }
    }

    /// Whether the task is a tombstone (`deleted` set).
    pub fn is_deleted(&self) -> bool {
        self.doc.contains_key("deleted")
    }

    /// Whether the task is done.
    pub fn is_done(&self) -> bool {
        self.doc.contains_key("done")
    }

    /// RFC 8785 canonical JSON bytes.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        canonical::write_map(&mut out, &self.doc);
        out
    }

    /// Lowercase hex SHA-256 of the canonical JSON.
    pub fn hash(&self) -> ContentHash {
        ContentHash::of_bytes(&self.canonical_bytes())
    }

    /// The file format: pretty JSON, sorted keys, trailing newline.
    ///
    /// Keys are sorted explicitly, so the bytes do not depend on whether some crate in the
    /// build turned on serde_json's `preserve_order`.
    pub fn to_pretty_json(&self) -> Vec<u8> {
        let mut out =
            serde_json::to_vec_pretty(&sorted(&self.to_value())).expect("JSON always serialises");
        out.push(b'\n');
        out
    }

    /// The stamp a local edit made at `now` gets: `max(now, updated_at + 1 ms)`, so an edit always
    /// beats the version it was made from.
    pub fn edit_stamp(&self, now: DateTime<Utc>) -> String {
        let floor = parse_timestamp(self.updated_at())
            .map(|t| t + Duration::milliseconds(1))
            .unwrap_or(now);
        format_timestamp(now.max(floor)).unwrap_or_else(|| self.updated_at().to_owned())
    }

    /// Applies a local edit: every change is stamped with [`Task::edit_stamp`]. The task stays
    /// unchanged when the result would be invalid.
    pub fn edit(&mut self, changes: &[Change], now: DateTime<Utc>) -> Result<(), TaskError> {
        if changes.is_empty() {
            return Ok(());
        }
        let stamp = self.edit_stamp(now);
        let mut doc = self.doc.clone();
        let mut clocks = match doc.remove("field_updated_at") {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        let mut tags: BTreeSet<String> = self.tags().into_iter().map(str::to_owned).collect();
        let id = Some(self.id.as_str());
        for change in changes {
            match change {
                Change::Set(k, _) | Change::Clear(k) if UNCLOCKED.contains(&k.as_str()) => {
                    return Err(TaskError::new(id, Some(k), "cannot be edited directly"));
                }
                Change::Set(k, v) => {
                    doc.insert(k.clone(), v.clone());
                    clocks.insert(k.clone(), Value::String(stamp.clone()));
                }
                Change::Clear(k) => {
                    doc.remove(k);
                    clocks.insert(k.clone(), Value::String(stamp.clone()));
                }
                Change::AddTag(t) => {
                    tags.insert(t.clone());
                    clocks.insert(ClockKey::Tag(t).to_string(), Value::String(stamp.clone()));
                }
                Change::RemoveTag(t) => {
                    tags.remove(t);
                    clocks.insert(ClockKey::Tag(t).to_string(), Value::String(stamp.clone()));
                }
            }
        }
        doc.insert(
            "tags".into(),
            Value::Array(tags.into_iter().map(Value::String).collect()),
        );
        doc.insert("field_updated_at".into(), Value::Object(clocks));
        doc.insert("updated_at".into(), Value::String(stamp));
        *self = normalise(doc)?;
        Ok(())
    }

    /// Builds a task from a map that is already known to be normalised (the merge's output).
    pub(crate) fn from_normalised(id: TaskId, doc: Map<String, Value>) -> Task {
        debug_assert_eq!(
            normalise(doc.clone()).map(|t| t.doc).as_ref(),
            Ok(&doc),
            "merge output must be normalised"
        );
        Task { id, doc }
    }
}

impl Serialize for Task {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.doc.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Task {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Task::from_value(v).map_err(serde::de::Error::custom)
    }
}

/// RFC 8785 canonical JSON of any serialisable value.
pub fn canonical_json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    serde_jcs::to_vec(value).expect("JSON values always canonicalise")
}

/// RFC 8785 canonical JSON of a JSON value (the fast path of [`canonical_json`]).
pub(crate) fn canonical_value(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    canonical::write_value(&mut out, value);
    out
}

/// `v` with every object's keys in sorted order.
fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&m[k])))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_stamp_beats_a_clock_from_the_future() {
        let mut t = Task::from_value(serde_json::json!({
            "id": "abc", "description": "x", "updated_at": "2100-01-01T00:00:00.000Z"
        }))
        .unwrap();
        t.edit(&[Change::Set("description".into(), "y".into())], Utc::now())
            .unwrap();
        assert_eq!(t.updated_at(), "2100-01-01T00:00:00.001Z");
        assert_eq!(t.clocks()["description"], "2100-01-01T00:00:00.001Z");
    }

    #[test]
    fn invalid_edit_leaves_task_unchanged() {
        let mut t = Task::new(TaskId::new("abc").unwrap(), Utc::now());
        let before = t.clone();
        let e = t
            .edit(&[Change::Set("due".into(), "soon".into())], Utc::now())
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("due"));
        assert_eq!(t, before);
    }

    #[test]
    fn file_format_sorts_keys_at_every_level_and_ends_with_a_newline() {
        let t = Task::from_value(serde_json::json!({
            "id": "abc", "zeta": {"b": 1, "a": [{"d": 1, "c": 2}]}, "alpha": 1
        }))
        .unwrap();
        let text = String::from_utf8(t.to_pretty_json()).unwrap();
        assert!(text.ends_with("}\n"));
        let pos = |k: &str| text.find(&format!("\"{k}\"")).unwrap();
        assert!(pos("alpha") < pos("created_at") && pos("created_at") < pos("zeta"));
        assert!(pos("a") < pos("b") && pos("c") < pos("d"));
        assert_eq!(Task::from_json(text.as_bytes()).unwrap(), t);
    }
}
