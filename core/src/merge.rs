//! The merge rule (docs/merge.md): one pure function, a join-semilattice over task states.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::task::{canonical_value, ClockKey, Task, TaskError};

/// Merges two states of one task.
///
/// Commutative, associative and idempotent: replicas that merge the same states in any order
/// end with the same bytes. `None` is an absent task. Two different ids are an error.
pub fn merge(a: Option<&Task>, b: Option<&Task>) -> Result<Option<Task>, TaskError> {
    match (a, b) {
        (None, None) => Ok(None),
        (Some(x), None) | (None, Some(x)) => Ok(Some(x.clone())),
        (Some(a), Some(b)) => merge_tasks(a, b).map(Some),
    }
}

/// Merges two states of one task; see [`merge`].
pub fn merge_tasks(a: &Task, b: &Task) -> Result<Task, TaskError> {
    if a.id() != b.id() {
        return Err(TaskError {
            id: Some(a.id().to_string()),
            field: Some("id".into()),
            message: format!("cannot merge with a different task '{}'", b.id()),
        });
    }
    if a == b {
        return Ok(a.clone());
    }
    let (ca, cb) = (a.clocks(), b.clocks());
    let keys: BTreeSet<&String> = ca.keys().chain(cb.keys()).collect();

    let mut doc = Map::new();
    let mut clocks = Map::new();
    let mut tags = BTreeSet::new();
    let mut updated = a.updated_at().max(b.updated_at()).to_owned();

    for key in keys {
        let (clock_a, clock_b) = (clock(ca, key), clock(cb, key));
        let (va, vb) = (value_of(a, key), value_of(b, key));
        let a_wins = match clock_a.cmp(&clock_b) {
            Ordering::Greater => true,
            Ordering::Less => false,
            Ordering::Equal => compare_values(va.as_ref(), vb.as_ref()) != Ordering::Less,
        };
        let (winner_clock, winner_value) = if a_wins { (clock_a, va) } else { (clock_b, vb) };
        let winner_clock = winner_clock.expect("one side has the clock key");
        if winner_clock > updated.as_str() {
            updated = winner_clock.to_owned();
        }
        clocks.insert(key.clone(), Value::String(winner_clock.to_owned()));
        match (ClockKey::parse(key), winner_value) {
            (Some(ClockKey::Tag(tag)), Some(_)) => {
                tags.insert(tag.to_owned());
            }
            (Some(ClockKey::Field(field)), Some(v)) => {
                doc.insert(field.to_owned(), v);
            }
            _ => {}
        }
    }

    doc.insert("id".into(), Value::String(a.id().to_string()));
    doc.insert(
        "created_at".into(),
        Value::String(a.created_at().min(b.created_at()).to_owned()),
    );
    doc.insert("updated_at".into(), Value::String(updated));
    if !tags.is_empty() {
        doc.insert(
            "tags".into(),
            Value::Array(tags.into_iter().map(Value::String).collect()),
        );
    }
    doc.insert("field_updated_at".into(), Value::Object(clocks));
    Ok(Task::from_normalised(a.id().clone(), doc))
}

fn clock<'a>(clocks: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    clocks.get(key).and_then(Value::as_str)
}

/// The value a clock key guards: a field's value, `true` for a present tag, nothing for a
/// bookkeeping key.
fn value_of(task: &Task, key: &str) -> Option<Value> {
    ClockKey::parse(key).and_then(|k| k.value_in(task))
}

/// Ties on equal clocks: the greater RFC 8785 encoding wins, absent below present.
fn compare_values(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => canonical_value(a).cmp(&canonical_value(b)),
    }
}

/// A value that did not survive a merge.
#[derive(Debug, Clone, PartialEq)]
pub struct LostValue {
    /// The clock key (`description`, `tags.work`, …).
    pub field: String,
    /// The value before (`None`: it was absent); `true` stands for a present tag.
    pub lost: Option<Value>,
    /// The value after.
    pub kept: Option<Value>,
}

/// What one state lost on becoming another: clock keys whose value in `before` is not the one
/// in `after`.
pub fn lost_values(before: &Task, after: &Task) -> Vec<LostValue> {
    before
        .clocks()
        .keys()
        .filter_map(|key| {
            let (lost, kept) = (value_of(before, key), value_of(after, key));
            (lost != kept).then(|| LostValue {
                field: key.clone(),
                lost,
                kept,
            })
        })
        .collect()
}
