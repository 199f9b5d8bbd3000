//! The document a task is stored as, and back.
//!
//! - `_id` is the task id; every other task field is a top-level field of the same name with
//!   the same JSON shape (timestamps stay RFC 3339 strings; `field_updated_at` keeps its dotted
//!   clock keys such as `tags.work`, which MongoDB 5.0+ stores as plain field names).
//! - `hash` is the task's content hash, so listing needs only `{_id, hash}`.
//! - `bucket` is the id's [bucket](hypertask_core::Bucket) at the deepest depth (4 hex digits),
//!   indexed, so the entries of any bucket at any depth are one range query on it.
//! - A task field whose name would clash with that layout (`_id`, `hash`, `bucket`), that
//!   MongoDB refuses
//!   at the top level (`$…`), or that starts with the escape character `~` is stored with one
//!   more leading `~`; reading strips one. The mapping is a bijection, so every task round-trips.
//!   Versions before `bucket` stored a task field `bucket` unescaped: a `bucket` that is not
//!   the id's bucket is read as that task field.
//! - Integers are stored as 64-bit integers (those above `i64::MAX` as Decimal128), other
//!   numbers as doubles, so the canonical JSON, and the hash, come back identical.
//! - Documents other MongoDB clients insert without `hash` are read whole and hashed. Whoever
//!   edits a stored document by hand should `$unset` its `hash` too: listing trusts the field.

use hypertask_core::{format_timestamp, Bucket, Depth, Task, TaskId};
use mongodb::bson::{Bson, Decimal128, Document};
use serde_json::{Map, Number, Value};

/// The field holding the task's content hash.
pub const HASH_FIELD: &str = "hash";

/// The field holding the id's bucket at the deepest depth.
pub const BUCKET_FIELD: &str = "bucket";

/// The `bucket` field's value for `id`: its bucket at [`Depth::MAX`].
pub fn bucket_of(id: &TaskId) -> String {
    Bucket::of(id, Depth::MAX).as_str().to_owned()
}

/// Whether `value` is the `bucket` field of a document with `_id` `id` as this driver writes
/// it (anything else under that name is a task field an older version stored unescaped).
pub fn is_bucket_of(id: &TaskId, value: &Bson) -> bool {
    matches!(value, Bson::String(s) if *s == bucket_of(id))
}

/// Prefix of an escaped top-level field name.
const ESCAPE: char = '~';

fn needs_escape(task_key: &str) -> bool {
    task_key == "_id"
        || task_key == HASH_FIELD
        || task_key == BUCKET_FIELD
        || task_key.starts_with('$')
        || task_key.starts_with(ESCAPE)
}

/// The document field name of top-level task field `key`.
pub fn field_name(key: &str) -> String {
    if needs_escape(key) {
        format!("{ESCAPE}{key}")
    } else {
        key.to_owned()
    }
}

/// The document storing `task`: `_id`, the task's fields, `hash` and `bucket`.
///
/// Fails only for what BSON cannot hold (a field name containing a NUL character).
pub fn to_document(task: &Task) -> Result<Document, String> {
    let mut doc = Document::new();
    doc.insert("_id", task.id().as_str());
    for (k, v) in task.as_map() {
        if k == "id" {
            continue;
        }
        if k.contains('\0') {
            return Err(format!(
                "field {k:?} has a NUL character in its name, which MongoDB cannot store"
            ));
        }
        doc.insert(field_name(k), json_to_bson(k, v)?);
    }
    doc.insert(HASH_FIELD, task.hash().as_str());
    doc.insert(BUCKET_FIELD, bucket_of(task.id()));
    Ok(doc)
}

/// The task a document stores. Errors say what is wrong with the document.
pub fn from_document(doc: Document) -> Result<Task, String> {
    let id = match doc.get("_id") {
        Some(Bson::String(s)) if TaskId::is_valid(s) => {
            TaskId::new(s.as_str()).expect("validated just above")
        }
        Some(other) => {
            return Err(format!(
                "_id {other} is not a task id (1 to 64 of A-Z a-z 0-9 _ -)"
            ))
        }
        None => return Err("the document has no _id".into()),
    };
    let mut map = Map::new();
    for (k, v) in doc {
        if k == "_id" || k == HASH_FIELD || (k == BUCKET_FIELD && is_bucket_of(&id, &v)) {
            continue;
        }
        let key = k.strip_prefix(ESCAPE).unwrap_or(&k).to_owned();
        let value = bson_to_json(&k, v)?;
        if key == "id" {
            if value.as_str() != Some(id.as_str()) {
                return Err(format!("field '{k}' = {value} disagrees with _id '{id}'"));
            }
            continue;
        }
        map.insert(key, value);
    }
    map.insert("id".into(), Value::String(id.as_str().to_owned()));
    Task::from_value(Value::Object(map)).map_err(|e| e.to_string())
}

/// A JSON value as BSON, keeping integers and doubles apart.
pub fn json_to_bson(path: &str, v: &Value) -> Result<Bson, String> {
    Ok(match v {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Bson::Int64(i)
            } else if let Some(u) = n.as_u64() {
                let d: Decimal128 = u
                    .to_string()
                    .parse()
                    .map_err(|e| format!("field '{path}': {u} does not fit Decimal128: {e}"))?;
                Bson::Decimal128(d)
            } else {
                Bson::Double(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => Bson::String(s.clone()),
        Value::Array(a) => Bson::Array(
            a.iter()
                .enumerate()
                .map(|(i, v)| json_to_bson(&format!("{path}.{i}"), v))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => {
            let mut d = Document::new();
            for (k, v) in m {
                if k.contains('\0') {
                    return Err(format!(
                        "field '{path}' has a key with a NUL character, which MongoDB cannot store"
                    ));
                }
                d.insert(k.clone(), json_to_bson(&format!("{path}.{k}"), v)?);
            }
            Bson::Document(d)
        }
    })
}

/// A BSON value as JSON. Values only other MongoDB clients write are mapped as a person
/// would expect: dates become canonical timestamps, Decimal128 a number, ObjectIds their hex
/// string, anything else (binary, regex, …) its BSON text form.
pub fn bson_to_json(path: &str, b: Bson) -> Result<Value, String> {
    Ok(match b {
        Bson::Null | Bson::Undefined => Value::Null,
        Bson::Boolean(b) => Value::Bool(b),
        Bson::Int32(i) => Value::from(i),
        Bson::Int64(i) => Value::from(i),
        Bson::Double(f) => Value::Number(
            Number::from_f64(f)
                .ok_or_else(|| format!("field '{path}' holds {f}, which JSON cannot represent"))?,
        ),
        Bson::Decimal128(d) => decimal_to_json(path, &d)?,
        Bson::String(s) => Value::String(s),
        Bson::Array(a) => Value::Array(
            a.into_iter()
                .enumerate()
                .map(|(i, v)| bson_to_json(&format!("{path}.{i}"), v))
                .collect::<Result<_, _>>()?,
        ),
        Bson::Document(d) => {
            let mut m = Map::new();
            for (k, v) in d {
                let v = bson_to_json(&format!("{path}.{k}"), v)?;
                m.insert(k, v);
            }
            Value::Object(m)
        }
        Bson::DateTime(dt) => chrono::DateTime::from_timestamp_millis(dt.timestamp_millis())
            .and_then(format_timestamp)
            .map(Value::String)
            .ok_or_else(|| format!("field '{path}' holds a date outside years 0-9999"))?,
        Bson::ObjectId(oid) => Value::String(oid.to_hex()),
        other => Value::String(other.to_string()),
    })
}

fn decimal_to_json(path: &str, d: &Decimal128) -> Result<Value, String> {
    let s = d.to_string();
    if let Ok(i) = s.parse::<i64>() {
        return Ok(Value::from(i));
    }
    if let Ok(u) = s.parse::<u64>() {
        return Ok(Value::from(u));
    }
    s.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map(Value::Number)
        .ok_or_else(|| format!("field '{path}' holds Decimal128 {s}, which JSON cannot represent"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(v: Value) -> Task {
        Task::from_json(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn tasks_round_trip_with_the_same_hash() {
        let text = r#"{"id": "rt1", "description": "x", "tags": ["work", "home"],
            "due": "2026-03-01T10:00:00Z",
            "priority": 1.5, "estimate": 1e21, "count": 3, "neg": -7, "zero": 0, "whole": 2.0,
            "huge": 18446744073709551615, "tiny": 5e-324,
            "meta": {"z": [3, 2.5, 1], "a": null, "b": true, "nested": {"deep": "x", "": 1}},
            "uda.with.dots": "v", "field_updated_at": {"tags.work": "2026-01-01T00:00:00Z"}}"#;
        let t = Task::from_json(text.as_bytes()).unwrap();
        let doc = to_document(&t).unwrap();
        assert_eq!(doc.get_str("_id").unwrap(), "rt1");
        assert_eq!(doc.get_str(HASH_FIELD).unwrap(), t.hash().as_str());
        assert_eq!(doc.get("count"), Some(&Bson::Int64(3)));
        assert_eq!(doc.get("whole"), Some(&Bson::Double(2.0)));
        assert!(matches!(doc.get("huge"), Some(Bson::Decimal128(_))));
        assert!(doc
            .get_document("field_updated_at")
            .unwrap()
            .contains_key("tags.work"));
        // Through the BSON bytes, as a server would hand it back.
        let bytes = doc.to_vec().unwrap();
        let back = Document::from_reader(bytes.as_slice()).unwrap();
        let read = from_document(back).unwrap();
        assert_eq!(read.canonical_bytes(), t.canonical_bytes());
        assert_eq!(read, t);
    }

    #[test]
    fn clashing_field_names_are_escaped_and_restored() {
        let t = task(
            json!({"id": "esc1", "hash": "mine", "_id": 5, "$set": {"a": 1},
            "~x": 1, "~~y": 2, "plain": 3, "bucket": "b"}),
        );
        let doc = to_document(&t).unwrap();
        let keys: Vec<&str> = doc.keys().map(String::as_str).collect();
        for k in [
            "~hash", "~_id", "~$set", "~~x", "~~~y", "plain", "~bucket", "bucket",
        ] {
            assert!(keys.contains(&k), "{k} missing from {keys:?}");
        }
        assert_eq!(doc.get_str("_id").unwrap(), "esc1");
        assert_eq!(from_document(doc).unwrap(), t);
    }

    #[test]
    fn the_bucket_field_is_the_ids_and_an_older_versions_bucket_field_is_the_tasks() {
        let t = task(json!({"id": "ca1", "description": "x"}));
        let doc = to_document(&t).unwrap();
        let id = TaskId::new("ca1").unwrap();
        let want = Bucket::of(&id, Depth::MAX);
        assert_eq!(doc.get_str(BUCKET_FIELD).unwrap(), want.as_str());
        assert_eq!(from_document(doc.clone()).unwrap(), t);
        // Written by a version that stored a task field `bucket` unescaped.
        let mut old = doc;
        old.insert(BUCKET_FIELD, "mine");
        let read = from_document(old).unwrap();
        assert_eq!(read.get_str("bucket"), Some("mine"));
    }

    #[test]
    fn documents_from_other_clients_are_read() {
        let mut doc = Document::new();
        doc.insert("_id", "other1");
        doc.insert("description", "typed by hand");
        doc.insert("tags", vec![Bson::from("work")]);
        doc.insert("n", Bson::Int32(4));
        doc.insert(
            "due",
            Bson::DateTime(mongodb::bson::DateTime::from_millis(86_400_000)),
        );
        let t = from_document(doc).unwrap();
        assert_eq!(t.get("n"), Some(&json!(4)));
        assert_eq!(t.get_str("due"), Some("1970-01-02T00:00:00.000Z"));
        assert_eq!(t.tags(), vec!["work"]);
    }

    #[test]
    fn bad_documents_are_errors_naming_the_field() {
        let mut doc = Document::new();
        doc.insert("_id", "bad1");
        doc.insert("due", 5);
        let e = from_document(doc).unwrap_err();
        assert!(e.contains("due"), "{e}");
        let mut doc = Document::new();
        doc.insert("_id", "../etc");
        assert!(from_document(doc).unwrap_err().contains("not a task id"));
        let mut doc = Document::new();
        doc.insert("_id", "x1");
        doc.insert("id", "x2");
        assert!(from_document(doc).unwrap_err().contains("disagrees"));
        let mut doc = Document::new();
        doc.insert("_id", "x1");
        doc.insert("f", f64::NAN);
        assert!(from_document(doc).unwrap_err().contains("'f'"));
    }

    #[test]
    fn nul_in_a_key_is_refused() {
        let t = task(json!({"id": "nul1", "m": {"a\u{0}b": 1}}));
        assert!(to_document(&t).unwrap_err().contains("NUL"));
    }
}
