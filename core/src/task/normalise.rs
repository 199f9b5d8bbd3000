//! Validation and normalisation (docs/task-format.md): every `Task` value went through here.

use std::collections::BTreeSet;
use std::fmt::Write;

use serde_json::{Map, Value};

use super::clock::{ClockKey, TAG_CLOCK_PREFIX};
use super::time::{canonical_timestamp, is_canonical, EPOCH};
use super::{Task, MAX_TASK_DEPTH};
use crate::id::{invalid_id_message, TaskError, TaskId};

/// Fields holding a timestamp, stored in the canonical form.
const TIMESTAMP_FIELDS: &[&str] = &[
    "created_at",
    "updated_at",
    "due",
    "wait",
    "snooze",
    "done",
    "deleted",
    "scheduled",
    "until",
    "start",
];

/// Fields that must be strings.
const STRING_FIELDS: &[&str] = &["description", "recur"];

/// Validates `doc` and brings it to normal form: canonical timestamps and tags, a clock for
/// every present field and tag, `updated_at` at least the newest clock.
pub(crate) fn normalise(mut doc: Map<String, Value>) -> Result<Task, TaskError> {
    let id = match doc.get("id") {
        Some(Value::String(s)) if TaskId::is_valid(s) => TaskId::new(s.as_str())?,
        Some(Value::String(s)) => {
            return Err(TaskError::new(None, Some("id"), invalid_id_message(s)))
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
    let err = |field: &str, msg: String| TaskError::new(Some(id.as_str()), Some(field), msg);

    for (key, value) in &doc {
        if key.starts_with(TAG_CLOCK_PREFIX) {
            return Err(err(
                key,
                format!("a field name may not start with '{TAG_CLOCK_PREFIX}' (tag clocks use it)"),
            ));
        }
        if is_container(value) && nesting_exceeds(value, MAX_TASK_DEPTH - 1) {
            return Err(err(
                key,
                format!("nests deeper than {MAX_TASK_DEPTH} levels"),
            ));
        }
    }
    for &field in TIMESTAMP_FIELDS {
        if let Some(v) = doc.get_mut(field) {
            let canon = match v {
                Value::String(s) if is_canonical(s) => continue,
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
    for &field in STRING_FIELDS {
        if let Some(v) = doc.get(field) {
            if !v.is_string() {
                return Err(err(
                    field,
                    format!("must be a string, not {}", type_name(v)),
                ));
            }
        }
    }
    crate::manage::validate_attributes(&doc).map_err(|(field, msg)| err(&field, msg))?;
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
        if v.as_str().is_some_and(is_canonical) {
            continue;
        }
        let canon = v.as_str().and_then(canonical_timestamp).ok_or_else(|| {
            err(
                "field_updated_at",
                format!("clock {k:?} is not a timestamp"),
            )
        })?;
        *v = Value::String(canon);
    }

    let created = string_or_epoch(&doc, "created_at");
    let mut updated = string_or_epoch(&doc, "updated_at");
    // Every present field and tag gets a clock; the key is built only to look it up.
    let mut key = String::new();
    let present = doc
        .keys()
        .filter_map(|k| ClockKey::field(k))
        .chain(tags.iter().map(|t| ClockKey::Tag(t)));
    for clock_key in present {
        key.clear();
        write!(key, "{clock_key}").expect("writing to a String cannot fail");
        if !clocks.contains_key(key.as_str()) {
            clocks.insert(key.clone(), Value::String(updated.clone()));
        }
    }
    if let Some(newest) = clocks.values().filter_map(Value::as_str).max() {
        if newest > updated.as_str() {
            updated = newest.to_owned();
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

fn string_or_epoch(doc: &Map<String, Value>, field: &str) -> String {
    doc.get(field)
        .and_then(Value::as_str)
        .unwrap_or(EPOCH)
        .to_owned()
}

fn is_container(value: &Value) -> bool {
    matches!(value, Value::Array(_) | Value::Object(_))
}

/// Whether `value` holds arrays or objects nested more than `limit` levels deep (a scalar is
/// level 0). Iterative, so a hostile document cannot exhaust the stack.
pub(crate) fn nesting_exceeds(value: &Value, limit: usize) -> bool {
    let mut stack = vec![(value, 0usize)];
    while let Some((v, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(a) => Box::new(a.iter()),
            Value::Object(m) => Box::new(m.values()),
            _ => continue,
        };
        if depth + 1 > limit {
            return true;
        }
        stack.extend(children.map(|c| (c, depth + 1)));
    }
    false
}

pub(crate) fn type_name(v: &Value) -> &'static str {
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
    use serde_json::json;

    fn nested(levels: usize) -> Value {
        let mut v = json!("leaf");
        for _ in 0..levels {
            v = json!([v]);
        }
        v
    }

    #[test]
    fn depth_counts_the_task_object_as_level_one() {
        let ok = json!({"id": "deep", "x": nested(MAX_TASK_DEPTH - 1)});
        assert!(Task::from_value(ok).is_ok());
        let too_deep = json!({"id": "deep", "x": nested(MAX_TASK_DEPTH)});
        let e = Task::from_value(too_deep).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("x"));
    }

    #[test]
    fn a_field_named_like_a_tag_clock_is_rejected() {
        let e = Task::from_value(json!({"id": "t", "tags.x": 1})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("tags.x"));
        assert_eq!(e.id.as_deref(), Some("t"));
    }

    #[test]
    fn task_manager_timestamps_are_canonical() {
        let t =
            Task::from_value(json!({"id": "t", "scheduled": "2026-01-02T03:04:05+01:00"})).unwrap();
        assert_eq!(t.get_str("scheduled"), Some("2026-01-02T02:04:05.000Z"));
    }
}
