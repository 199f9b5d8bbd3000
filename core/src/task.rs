//! The task document (DESIGN.md §2): validation, normalisation, canonical JSON, content hash and
//! local edits.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::hash::ContentHash;

/// The timestamp a task carries when its input had none.
pub const EPOCH: &str = "1970-01-01T00:00:00.000Z";

/// Fields holding a timestamp.
const TIMESTAMP_FIELDS: &[&str] = &[
    "created_at",
    "updated_at",
    "due",
    "wait",
    "snooze",
    "done",
    "deleted",
];

/// Keys that are bookkeeping, not clocked fields.
const UNCLOCKED: &[&str] = &["id", "created_at", "updated_at", "field_updated_at", "tags"];

/// The largest task document accepted by default, in bytes of JSON (1 MiB): files, blobs,
/// documents and HTTP bodies holding one task above it are rejected as invalid.
pub const DEFAULT_MAX_TASK_BYTES: usize = 1 << 20;

/// How deeply a task document may nest (the task object itself is level 1). Deeper documents
/// are rejected at input, so anything accepted can also be sent inside a protocol envelope.
pub const MAX_TASK_DEPTH: usize = 64;

/// Alphabet of generated ids: no look-alike characters.
const ID_ALPHABET: &[u8] = b"23456789abcdefghkmnpqrstwxyz";

/// Why a task document was rejected; names the task (when it has a usable id) and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct TaskError {
    /// The task's id as given, when there was one.
    pub id: Option<String>,
    /// The offending field, when one field is to blame.
    pub field: Option<String>,
    /// What is wrong, in a few words.
    pub message: String,
}

impl TaskError {
    fn new(id: Option<&str>, field: Option<&str>, message: impl Into<String>) -> Self {
        TaskError {
            id: id.map(str::to_owned),
            field: field.map(str::to_owned),
            message: message.into(),
        }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.id {
            Some(id) => write!(f, "task '{id}'")?,
            None => write!(f, "task")?,
        }
        if let Some(field) = &self.field {
            write!(f, ", field '{field}'")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A validated task id: `^[A-Za-z0-9_-]{1,64}$`, so it is always safe as a file name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId(String);

impl TaskId {
    /// Validates `s` as a task id.
    pub fn new(s: impl Into<String>) -> Result<TaskId, TaskError> {
        let s = s.into();
        if Self::is_valid(&s) {
            Ok(TaskId(s))
        } else {
            Err(TaskError::new(
                None,
                Some("id"),
                format!("invalid id {s:?}: expected 1 to 64 of A-Z a-z 0-9 _ -"),
            ))
        }
    }

    /// Whether `s` is a valid task id.
    pub fn is_valid(s: &str) -> bool {
        (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    }

    /// A fresh random id: 16 characters from an alphabet without look-alikes.
    pub fn generate() -> TaskId {
        use rand::Rng;
        let mut rng = rand::rng();
        let s = (0..16)
            .map(|_| ID_ALPHABET[rng.random_range(0..ID_ALPHABET.len())] as char)
            .collect();
        TaskId(s)
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for TaskId {
    type Err = TaskError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskId::new(s)
    }
}

impl AsRef<str> for TaskId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for TaskId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl Serialize for TaskId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TaskId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TaskId::new(s).map_err(serde::de::Error::custom)
    }
}

/// Parses an RFC 3339 timestamp into its canonical form `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn canonical_timestamp(s: &str) -> Option<String> {
    let t = DateTime::parse_from_rfc3339(s).ok()?.with_timezone(&Utc);
    format_timestamp(t)
}

/// Formats `t` in the canonical form, truncated to milliseconds; `None` outside years 0–9999.
pub fn format_timestamp(t: DateTime<Utc>) -> Option<String> {
    use chrono::Datelike;
    if !(0..=9999).contains(&t.year()) {
        return None;
    }
    let ms = t.timestamp_subsec_millis();
    let t = t.with_nanosecond_ms(ms)?;
    Some(t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

trait TruncateMs: Sized {
    fn with_nanosecond_ms(self, ms: u32) -> Option<Self>;
}

impl TruncateMs for DateTime<Utc> {
    fn with_nanosecond_ms(self, ms: u32) -> Option<Self> {
        use chrono::Timelike;
        self.with_nanosecond(ms * 1_000_000)
    }
}

/// Parses a canonical (or any RFC 3339) timestamp.
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

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
/// Every `Task` value is normalised (DESIGN.md §3), so equal tasks have equal bytes and hashes.
#[derive(Clone, PartialEq)]
pub struct Task {
    id: TaskId,
    doc: Map<String, Value>,
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
        doc.insert("id".into(), Value::String(id.0.clone()));
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
        canonical_json(&self.doc)
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
                    clocks.insert(format!("tags.{t}"), Value::String(stamp.clone()));
                }
                Change::RemoveTag(t) => {
                    tags.remove(t);
                    clocks.insert(format!("tags.{t}"), Value::String(stamp.clone()));
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

/// Whether `key` is a clock key that names a tag; returns the tag.
pub(crate) fn tag_of(key: &str) -> Option<&str> {
    key.strip_prefix("tags.")
}

/// Whether a top-level field carries its own clock.
pub(crate) fn is_clocked_field(key: &str) -> bool {
    !UNCLOCKED.contains(&key)
}

fn normalise(mut doc: Map<String, Value>) -> Result<Task, TaskError> {
    let id = match doc.get("id") {
        Some(Value::String(s)) if TaskId::is_valid(s) => TaskId(s.clone()),
        Some(Value::String(s)) => {
            return Err(TaskError::new(
                None,
                Some("id"),
                format!("invalid id {s:?}: expected 1 to 64 of A-Z a-z 0-9 _ -"),
            ))
        }
        Some(other) => {
            return Err(TaskError::new(
                None,
                Some("id"),
                format!("id must be a string, not {}", type_name(other)),
            ))
        }
        None => return Err(TaskError::new(None, Some("id"), "missing")),
    };
    let idr = Some(id.as_str());
    let err = |field: &str, msg: String| TaskError::new(idr, Some(field), msg);

    for &field in TIMESTAMP_FIELDS {
        if let Some(v) = doc.get_mut(field) {
            let canon = match v {
                Value::String(s) => canonical_timestamp(s)
                    .ok_or_else(|| err(field, format!("not an RFC 3339 timestamp: {s:?}")))?,
                other => {
                    return Err(err(
                        field,
                        format!("must be a timestamp string, not {}", type_name(other)),
                    ))
                }
            };
            *v = Value::String(canon);
        }
    }
    for field in ["description", "recur"] {
        if let Some(v) = doc.get(field) {
            if !v.is_string() {
                return Err(err(
                    field,
                    format!("must be a string, not {}", type_name(v)),
                ));
            }
        }
    }
    if let Some(v) = doc.get("blocked_by") {
        match v {
            Value::String(s) if TaskId::is_valid(s) => {}
            _ => return Err(err("blocked_by", format!("must be a task id, not {v}"))),
        }
    }
    let tags: BTreeSet<String> = match doc.remove("tags") {
        None => BTreeSet::new(),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|t| match t {
                Value::String(s) if !s.is_empty() => Ok(s),
                _ => Err(err("tags", "must be an array of non-empty strings".into())),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(err("tags", "must be an array of non-empty strings".into())),
    };
    let mut clocks = match doc.remove("field_updated_at") {
        None => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(err(
                "field_updated_at",
                "must be an object of timestamps".into(),
            ))
        }
    };
    for (k, v) in clocks.iter_mut() {
        let canon = v.as_str().and_then(canonical_timestamp).ok_or_else(|| {
            err(
                "field_updated_at",
                format!("clock {k:?} is not a timestamp"),
            )
        })?;
        *v = Value::String(canon);
    }

    let created = doc
        .get("created_at")
        .and_then(Value::as_str)
        .unwrap_or(EPOCH)
        .to_owned();
    let mut updated = doc
        .get("updated_at")
        .and_then(Value::as_str)
        .unwrap_or(EPOCH)
        .to_owned();

    let present: Vec<String> = doc
        .keys()
        .filter(|k| is_clocked_field(k))
        .cloned()
        .chain(tags.iter().map(|t| format!("tags.{t}")))
        .collect();
    for key in present {
        clocks
            .entry(key)
            .or_insert_with(|| Value::String(updated.clone()));
    }
    for v in clocks.values() {
        if let Some(s) = v.as_str() {
            if s > updated.as_str() {
                updated = s.to_owned();
            }
        }
    }

    if !tags.is_empty() {
        doc.insert(
            "tags".into(),
            Value::Array(tags.into_iter().map(Value::String).collect()),
        );
    }
    doc.insert("created_at".into(), Value::String(created));
    doc.insert("updated_at".into(), Value::String(updated));
    doc.insert("field_updated_at".into(), Value::Object(clocks));
    Ok(Task { id, doc })
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

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
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

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let a = TaskId::generate();
        let b = TaskId::generate();
        assert_eq!(a.as_str().len(), 16);
        assert_ne!(a, b);
        assert!(a.as_str().bytes().all(|c| ID_ALPHABET.contains(&c)));
    }
}
