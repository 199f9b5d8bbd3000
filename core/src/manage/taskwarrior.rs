//! Taskwarrior's JSON (`task export` / `task import`) and the original hypertask's task files,
//! in and out.
//!
//! In: `uuid` becomes the id (or `hypertask_id`, which our own export adds, so a round trip
//! keeps ids); `entry`/`modified`/`end` become `created_at`/`updated_at`/`done` or `deleted`;
//! dates in Taskwarrior's `YYYYMMDDTHHMMSSZ` form become canonical timestamps; `annotations`
//! become `annotation_<epoch-ms>` fields and `depends` `dep_<id>` fields; a recurrence template
//! (`status: recurring`) keeps that status; every other attribute (UDAs included) is kept as a
//! field. The conversion depends only on the input (and, for annotations, on the task already
//! held), so importing the same export twice changes nothing.
//!
//! Out: what `task import` accepts: a UUID per task (ids that are not UUIDs get a derived one
//! and travel in `hypertask_id`), Taskwarrior's date form, `status`, `annotations`, `depends`.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, TimeZone as _, Utc};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use super::attrs::Schema;
use super::{Status, ANNOTATION_PREFIX, DEP_PREFIX};
use crate::task::{canonical_timestamp, format_timestamp, parse_timestamp, Task, TaskId, EPOCH};

/// The field our export adds so a round trip keeps ids that are not UUIDs.
pub const ID_FIELD: &str = "hypertask_id";

/// Built-in date attributes in Taskwarrior's JSON, besides entry/modified/end.
const TW_DATES: &[&str] = &["due", "wait", "scheduled", "until", "start"];

/// Our timestamp fields that an import converts from either date form.
const OUR_DATES: &[&str] = &[
    "due",
    "wait",
    "scheduled",
    "until",
    "start",
    "snooze",
    "done",
    "deleted",
    "created_at",
    "updated_at",
];

/// Taskwarrior fields that are computed or local to one Taskwarrior database.
const DROPPED: &[&str] = &["id", "urgency", "field_updated_at"];

/// Reads an import: a JSON array of objects, one object per line, or a single object.
pub fn parse_input(text: &str) -> Result<Vec<Value>, String> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        return match serde_json::from_str::<Value>(text) {
            Ok(Value::Array(items)) => Ok(items),
            Ok(_) => Err("the input is not a JSON array of tasks".into()),
            Err(e) => Err(format!("the input is not valid JSON: {e}")),
        };
    }
    let mut out = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    for item in stream.by_ref() {
        let item = item.map_err(|e| format!("the input is not valid JSON: {e}"))?;
        out.push(item);
    }
    Ok(out)
}

/// Reads one Taskwarrior date: `YYYYMMDDTHHMMSSZ`, or RFC 3339.
pub fn parse_date(s: &str) -> Option<String> {
    if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y%m%dT%H%M%SZ") {
        return format_timestamp(Utc.from_utc_datetime(&t));
    }
    canonical_timestamp(s)
}

/// Writes one date in Taskwarrior's form.
pub fn format_date(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// A UUID for a task: its id when that is a UUID, else one derived from the id (version 8,
/// from SHA-256), the same on every machine.
pub fn uuid_of(id: &TaskId) -> String {
    if is_uuid(id.as_str()) {
        return id.as_str().to_ascii_lowercase();
    }
    let d = Sha256::digest(format!("hypertask id\n{id}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Maps the UUIDs an import refers to (in `depends`, `parent`) to task ids: the tasks of the
/// import itself, then the tasks already held.
#[derive(Debug, Default, Clone)]
pub struct UuidMap(BTreeMap<String, TaskId>);

impl UuidMap {
    /// The map for an import of `items` into a cache holding `held`.
    pub fn new<'a>(items: &[Value], held: impl IntoIterator<Item = &'a TaskId>) -> UuidMap {
        let mut map = BTreeMap::new();
        for id in held {
            map.insert(uuid_of(id), id.clone());
        }
        for item in items {
            if let (Some(uuid), Some(id)) =
                (item.get("uuid").and_then(Value::as_str), item_id(item))
            {
                map.insert(uuid.to_ascii_lowercase(), id);
            }
        }
        UuidMap(map)
    }

    fn id(&self, uuid: &str) -> Option<TaskId> {
        self.0
            .get(&uuid.to_ascii_lowercase())
            .cloned()
            .or_else(|| TaskId::new(uuid).ok())
    }
}

/// The id an imported object will have.
pub fn item_id(item: &Value) -> Option<TaskId> {
    let obj = item.as_object()?;
    if obj.contains_key("uuid") {
        let id = obj
            .get(ID_FIELD)
            .and_then(Value::as_str)
            .or_else(|| obj.get("uuid").and_then(Value::as_str))?;
        return TaskId::new(id).ok();
    }
    obj.get("id")
        .and_then(Value::as_str)
        .and_then(|s| TaskId::new(s).ok())
}

/// Converts one imported object into a task: Taskwarrior's JSON when it has a `uuid`, else a
/// hypertask document (the original hypertask's task files). `held` is the task already held
/// under that id: an annotation it has with the same text in the same second keeps its key.
pub fn import(
    item: &Value,
    schema: &Schema,
    uuids: &UuidMap,
    held: Option<&Task>,
) -> Result<Task, String> {
    let Value::Object(obj) = item else {
        return Err("a task must be a JSON object".into());
    };
    if !obj.contains_key("uuid") {
        let mut doc = obj.clone();
        for field in OUR_DATES {
            if let Some(Value::String(s)) = doc.get(*field) {
                if let Some(t) = parse_date(s) {
                    doc.insert(field.to_string(), Value::String(t));
                }
            }
        }
        return Task::from_value(Value::Object(doc)).map_err(|e| e.to_string());
    }
    let id = item_id(item).ok_or_else(|| {
        format!(
            "task {}: its uuid is not a usable id",
            obj.get("uuid").map(Value::to_string).unwrap_or_default()
        )
    })?;
    let name = id.to_string();
    let date = |key: &str, v: &Value| -> Result<String, String> {
        v.as_str()
            .and_then(parse_date)
            .ok_or_else(|| format!("task {name}: {key} is not a date: {v}"))
    };
    let mut doc = Map::new();
    doc.insert("id".into(), Value::String(name.clone()));
    let created = match obj.get("entry") {
        Some(v) => date("entry", v)?,
        None => EPOCH.to_owned(),
    };
    let modified = match obj.get("modified") {
        Some(v) => date("modified", v)?,
        None => created.clone(),
    };
    let end = obj.get("end").map(|v| date("end", v)).transpose()?;
    doc.insert("created_at".into(), Value::String(created));
    doc.insert("updated_at".into(), Value::String(modified.clone()));
    let status = obj
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("pending");
    match status {
        "completed" => {
            doc.insert(
                "done".into(),
                Value::String(end.unwrap_or(modified.clone())),
            );
        }
        "deleted" => {
            doc.insert(
                "deleted".into(),
                Value::String(end.unwrap_or(modified.clone())),
            );
        }
        "recurring" => {
            doc.insert("status".into(), Value::String("recurring".into()));
        }
        "pending" | "waiting" => {}
        other => return Err(format!("task {name}: unknown status '{other}'")),
    }
    for (key, value) in obj {
        match key.as_str() {
            "uuid" | "entry" | "modified" | "end" | "status" => {}
            k if k == ID_FIELD || DROPPED.contains(&k) => {}
            "tags" => {
                let tags: Vec<Value> = match value {
                    Value::Array(a) => a
                        .iter()
                        .filter(|t| t.as_str().is_some_and(|s| !s.is_empty()))
                        .cloned()
                        .collect(),
                    Value::String(s) => s
                        .split(',')
                        .filter(|t| !t.is_empty())
                        .map(|t| Value::String(t.to_owned()))
                        .collect(),
                    _ => return Err(format!("task {name}: tags is not a list")),
                };
                doc.insert("tags".into(), Value::Array(tags));
            }
            "annotations" => {
                let Value::Array(list) = value else {
                    return Err(format!("task {name}: annotations is not a list"));
                };
                for a in list {
                    let text = a
                        .get("description")
                        .and_then(Value::as_str)
                        .ok_or_else(|| format!("task {name}: an annotation has no description"))?;
                    let at = a
                        .get("entry")
                        .and_then(Value::as_str)
                        .and_then(parse_date)
                        .and_then(|s| parse_timestamp(&s))
                        .ok_or_else(|| format!("task {name}: an annotation has no entry date"))?;
                    let key = annotation_key(&doc, held, at, text);
                    doc.insert(key, Value::String(text.to_owned()));
                }
            }
            "depends" => {
                let list: Vec<&str> = match value {
                    Value::String(s) => s.split(',').filter(|d| !d.is_empty()).collect(),
                    Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                    _ => return Err(format!("task {name}: depends is not a list of uuids")),
                };
                for uuid in list {
                    let dep = uuids
                        .id(uuid.trim())
                        .ok_or_else(|| format!("task {name}: depends on '{uuid}', not a uuid"))?;
                    doc.insert(format!("{DEP_PREFIX}{dep}"), Value::String("x".into()));
                }
            }
            "parent" => {
                if let Some(p) = value.as_str().and_then(|p| uuids.id(p)) {
                    doc.insert("parent".into(), Value::String(p.to_string()));
                }
            }
            "recur" => {
                let raw = value.as_str().unwrap_or_default();
                let stored = super::when::parse_recur(raw).unwrap_or_else(|_| raw.to_owned());
                doc.insert("recur".into(), Value::String(stored));
            }
            "hypertask_done" => {
                doc.insert("done".into(), Value::String(date("hypertask_done", value)?));
            }
            k if TW_DATES.contains(&k) || OUR_DATES.contains(&k) || schema.is_date(k) => {
                doc.insert(key.clone(), Value::String(date(k, value)?));
            }
            k if k.starts_with("tags.") => {
                return Err(format!("task {name}: '{k}' cannot be a field name"));
            }
            _ => {
                doc.insert(key.clone(), value.clone());
            }
        }
    }
    Task::from_value(Value::Object(doc)).map_err(|e| e.to_string())
}

/// The key for an imported annotation: the held task's key when it has the same text in the
/// same second (our export drops the milliseconds), else the next free key from `at`.
fn annotation_key(
    doc: &Map<String, Value>,
    held: Option<&Task>,
    at: DateTime<Utc>,
    text: &str,
) -> String {
    if let Some(held) = held {
        for a in held.annotations() {
            if a.text == text && a.at.timestamp() == at.timestamp() && !doc.contains_key(a.key) {
                return a.key.to_owned();
            }
        }
    }
    let mut ms = at.timestamp_millis();
    loop {
        let key = format!("{ANNOTATION_PREFIX}{ms}");
        if !doc.contains_key(&key) {
            return key;
        }
        ms += 1;
    }
}

/// Whether an import changes nothing: `held` and `imported` hold the same fields, tags and
/// values, timestamps compared to the second (Taskwarrior's precision); clocks are ignored.
pub fn same_values(held: &Task, imported: &Task) -> bool {
    let fields = |t: &Task| -> BTreeMap<String, Value> {
        t.as_map()
            .iter()
            .filter(|(k, _)| {
                !matches!(k.as_str(), "created_at" | "updated_at" | "field_updated_at")
            })
            .map(|(k, v)| (k.clone(), to_second(v)))
            .collect()
    };
    fields(held) == fields(imported)
        && to_second(&Value::String(held.created_at().to_owned()))
            == to_second(&Value::String(imported.created_at().to_owned()))
}

fn to_second(v: &Value) -> Value {
    match v.as_str().and_then(parse_timestamp) {
        Some(t) => Value::String(format_date(t)),
        None => v.clone(),
    }
}

/// One task as Taskwarrior's JSON.
pub fn export(task: &Task, schema: &Schema, now: DateTime<Utc>) -> Value {
    let mut out = Map::new();
    let uuid = uuid_of(task.id());
    if uuid != task.id().as_str() {
        out.insert(ID_FIELD.into(), Value::String(task.id().to_string()));
    }
    out.insert("uuid".into(), Value::String(uuid));
    let tw = |s: &str| parse_timestamp(s).map(format_date);
    let status = match task.status(now) {
        Status::Pending => "pending",
        Status::Waiting => "waiting",
        Status::Completed => "completed",
        Status::Deleted => "deleted",
        Status::Recurring => "recurring",
    };
    out.insert("status".into(), Value::String(status.into()));
    if let Some(t) = tw(task.created_at()) {
        out.insert("entry".into(), Value::String(t));
    }
    if let Some(t) = tw(task.updated_at()) {
        out.insert("modified".into(), Value::String(t));
    }
    let end = task.get_str("deleted").or(task.get_str("done"));
    if let Some(t) = end.and_then(tw) {
        out.insert("end".into(), Value::String(t));
    }
    let mut annotations = Vec::new();
    let mut depends = Vec::new();
    for (key, value) in task.as_map() {
        match key.as_str() {
            "id" | "created_at" | "updated_at" | "field_updated_at" | "status" => {}
            "done" if task.is_deleted() => {
                // Taskwarrior has one `end`; keep the completion time as a field of its own.
                out.insert("hypertask_done".into(), value.clone());
            }
            "done" | "deleted" => {}
            "parent" => {
                if let Some(p) = value.as_str().and_then(|p| TaskId::new(p).ok()) {
                    out.insert("parent".into(), Value::String(uuid_of(&p)));
                }
            }
            k if k.starts_with(ANNOTATION_PREFIX) => {}
            k if k.starts_with(DEP_PREFIX) => {}
            k if TW_DATES.contains(&k) || schema.is_date(k) && !OUR_DATES.contains(&k) => {
                let v = value.as_str().and_then(tw).map(Value::String);
                out.insert(key.clone(), v.unwrap_or_else(|| value.clone()));
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    for a in task.annotations() {
        annotations.push(serde_json::json!({"entry": format_date(a.at), "description": a.text}));
    }
    for dep in task.dependencies() {
        if task.get(&format!("{DEP_PREFIX}{dep}")).is_some() {
            depends.push(Value::String(uuid_of(&dep)));
        }
    }
    if !annotations.is_empty() {
        out.insert("annotations".into(), Value::Array(annotations));
    }
    if !depends.is_empty() {
        out.insert("depends".into(), Value::Array(depends));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn import_one(v: Value, held: Option<&Task>) -> Result<Task, String> {
        let map = UuidMap::new(std::slice::from_ref(&v), []);
        import(&v, &Schema::default(), &map, held)
    }

    #[test]
    fn taskwarrior_fields_map_to_ours() {
        let t = import_one(
            json!({
                "uuid": "9f3c6a43-3d3b-4a29-a8a6-6f3dd8c8a0b1", "id": 3, "urgency": 4.5,
                "description": "call mum", "status": "completed",
                "entry": "20260101T100000Z", "modified": "20260102T100000Z",
                "end": "20260102T090000Z", "due": "20260103T000000Z",
                "project": "family", "priority": "M", "tags": ["phone"],
                "annotations": [{"entry": "20260101T110000Z", "description": "after 6pm"}],
                "depends": "0a1b2c3d-0000-4000-8000-000000000001",
                "estimate": 2, "recur": "weekly"
            }),
            None,
        )
        .unwrap();
        assert_eq!(t.id().as_str(), "9f3c6a43-3d3b-4a29-a8a6-6f3dd8c8a0b1");
        assert_eq!(t.created_at(), "2026-01-01T10:00:00.000Z");
        assert_eq!(t.updated_at(), "2026-01-02T10:00:00.000Z");
        assert_eq!(t.get_str("done"), Some("2026-01-02T09:00:00.000Z"));
        assert_eq!(t.get_str("due"), Some("2026-01-03T00:00:00.000Z"));
        assert_eq!(t.get_str("recur"), Some("1w"));
        assert_eq!(t.get("estimate"), Some(&json!(2)));
        assert_eq!(t.annotations()[0].text, "after 6pm");
        assert_eq!(t.annotations()[0].key, "annotation_1767265200000");
        assert_eq!(
            t.dependencies()[0].as_str(),
            "0a1b2c3d-0000-4000-8000-000000000001"
        );
        for gone in ["urgency", "uuid", "status", "entry", "end", "modified"] {
            assert!(t.get(gone).is_none(), "{gone}");
        }
    }

    #[test]
    fn export_then_import_keeps_the_task() {
        let now = Utc::now();
        let t = Task::from_value(json!({
            "id": "7kq2m9x4hnbd3tw8", "description": "pay rent", "project": "home",
            "created_at": "2026-01-01T10:00:00.123Z", "updated_at": "2026-01-05T10:00:00.456Z",
            "due": "2026-02-01T00:00:00Z", "annotation_1767261600789": "standing order?",
            "dep_abcd2345": "x", "tags": ["bills"], "x-size": {"n": 1},
        }))
        .unwrap();
        let out = export(&t, &Schema::default(), now);
        assert_eq!(out["hypertask_id"], "7kq2m9x4hnbd3tw8");
        assert_eq!(out["entry"], "20260101T100000Z");
        assert_eq!(out["annotations"][0]["entry"], "20260101T100000Z");
        assert!(is_uuid(out["uuid"].as_str().unwrap()));
        assert_eq!(
            out["depends"][0],
            uuid_of(&TaskId::new("abcd2345").unwrap())
        );
        let map = UuidMap::new(
            std::slice::from_ref(&out),
            [&TaskId::new("abcd2345").unwrap()],
        );
        let back = import(&out, &Schema::default(), &map, Some(&t)).unwrap();
        assert_eq!(back.id(), t.id());
        assert!(same_values(&t, &back), "{t:?}\n{back:?}");
    }

    #[test]
    fn inputs_are_arrays_or_lines() {
        assert_eq!(parse_input("[{\"a\":1},{\"b\":2}]").unwrap().len(), 2);
        assert_eq!(parse_input("{\"a\":1}\n{\"b\":2}\n").unwrap().len(), 2);
        assert!(parse_input("{\"a\":").is_err());
    }
}
