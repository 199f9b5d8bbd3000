//! Recurrence: completing a task that has `recur` and `due` creates the next instance, exactly
//! once across every replica.
//!
//! A recurring task is its own current instance (there is no hidden template). The series is
//! named by `parent` (set on every instance after the first; the first one's id otherwise).
//! The next instance's id is derived from the series and the next due date alone — never from
//! the clock or the machine — so two replicas that complete the same instance offline create
//! the same task, and the sync merges the two copies into one. `until:` ends the series.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::when::add_period;
use super::ANNOTATION_PREFIX;
use crate::task::{format_timestamp, Change, Task, TaskError, TaskId, ID_ALPHABET};

/// Fields that belong to one instance and are not carried to the next.
const PER_INSTANCE: &[&str] = &["done", "deleted", "start", "end", "imask", "status"];

/// Dates shifted by the period along with `due`.
const SHIFTED: &[&str] = &["wait", "scheduled"];

/// The id of the instance of series `series` due at `due` (canonical timestamp): 16 characters
/// of the id alphabet taken from SHA-256 of both.
pub fn instance_id(series: &str, due: &str) -> TaskId {
    let digest = Sha256::digest(format!("hypertask recurrence\n{series}\n{due}").as_bytes());
    let s: String = digest
        .iter()
        .take(16)
        .map(|b| ID_ALPHABET[usize::from(*b) % ID_ALPHABET.len()] as char)
        .collect();
    TaskId::new(s).expect("the id alphabet makes valid ids")
}

/// Whether `task` has a recurrence but no due date to count it from (Taskwarrior refuses that
/// too): such a task would never repeat.
pub fn lacks_due(task: &Task) -> bool {
    task.get("recur").is_some()
        && task.get("due").is_none()
        && !task.is_done()
        && !task.is_deleted()
}

/// The series a recurring task belongs to: its `parent`, else its own id.
pub fn series(task: &Task) -> String {
    task.get_str("parent")
        .filter(|p| TaskId::is_valid(p))
        .unwrap_or(task.id().as_str())
        .to_owned()
}

/// The instance that follows `completed` (a task with `recur` and `due`), or `None` when it
/// does not recur, its period cannot be read, or the next due date passes `until`.
///
/// `existing` is the local state of the next instance's id, if any: when it is there and not
/// deleted the instance was already created (here or by another replica) and `None` is
/// returned; when it is a tombstone (an undone completion), it is brought back with an edit.
pub fn next_instance(
    completed: &Task,
    existing: Option<&Task>,
    now: DateTime<Utc>,
) -> Result<Option<Task>, TaskError> {
    let (Some(recur), Some(due)) = (completed.get_str("recur"), completed.get_time("due")) else {
        return Ok(None);
    };
    let Some(next_due) = add_period(due, recur) else {
        return Ok(None);
    };
    if completed.get_time("until").is_some_and(|u| next_due > u) {
        return Ok(None);
    }
    let Some(next_due_s) = format_timestamp(next_due) else {
        return Ok(None);
    };
    let series = series(completed);
    let id = instance_id(&series, &next_due_s);
    if existing.is_some_and(|t| !t.is_deleted()) {
        return Ok(None);
    }
    let shift = next_due - due;
    let mut changes = Vec::new();
    for (key, value) in completed.as_map() {
        let bookkeeping = matches!(
            key.as_str(),
            "id" | "created_at" | "updated_at" | "field_updated_at" | "tags" | "due" | "parent"
        );
        if bookkeeping || PER_INSTANCE.contains(&key.as_str()) || key.starts_with(ANNOTATION_PREFIX)
        {
            continue;
        }
        let value = if SHIFTED.contains(&key.as_str()) {
            match completed
                .get_time(key)
                .and_then(|t| t.checked_add_signed(shift))
                .and_then(format_timestamp)
            {
                Some(t) => Value::String(t),
                None => continue,
            }
        } else {
            value.clone()
        };
        changes.push(Change::Set(key.clone(), value));
    }
    changes.push(Change::Set("due".into(), Value::String(next_due_s)));
    changes.push(Change::Set("parent".into(), Value::String(series)));
    changes.extend(
        completed
            .tags()
            .iter()
            .map(|t| Change::AddTag(t.to_string())),
    );
    let task = match existing {
        Some(tombstone) => {
            // Clear what the tombstone holds that the new instance does not.
            let mut t = tombstone.clone();
            let keep: Vec<String> = changes
                .iter()
                .filter_map(|c| match c {
                    Change::Set(k, _) => Some(k.clone()),
                    _ => None,
                })
                .collect();
            for key in tombstone.as_map().keys() {
                let bookkeeping = matches!(
                    key.as_str(),
                    "id" | "created_at" | "updated_at" | "field_updated_at" | "tags"
                );
                if !bookkeeping && !keep.contains(key) {
                    changes.push(Change::Clear(key.clone()));
                }
            }
            t.edit(&changes, now)?;
            t
        }
        None => {
            let mut t = Task::new(id, now);
            t.edit(&changes, now)?;
            t
        }
    };
    Ok(Some(task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn completed() -> Task {
        Task::from_value(json!({
            "id": "seriesstart00001", "description": "water plants", "tags": ["home"],
            "recur": "1w", "due": "2026-03-02T08:00:00Z", "wait": "2026-03-01T08:00:00Z",
            "project": "home", "done": "2026-03-02T09:00:00Z", "annotation_5": "first week",
            "start": "2026-03-02T08:30:00Z",
        }))
        .unwrap()
    }

    #[test]
    fn the_next_instance_is_the_same_on_every_replica() {
        let a = next_instance(&completed(), None, Utc::now())
            .unwrap()
            .unwrap();
        let b = next_instance(
            &completed(),
            None,
            Utc::now() + chrono::Duration::seconds(5),
        )
        .unwrap()
        .unwrap();
        assert_eq!(a.id(), b.id());
        assert_eq!(
            a.id(),
            &instance_id("seriesstart00001", "2026-03-09T08:00:00.000Z")
        );
        assert_eq!(a.get_str("due"), Some("2026-03-09T08:00:00.000Z"));
        assert_eq!(a.get_str("wait"), Some("2026-03-08T08:00:00.000Z"));
        assert_eq!(a.get_str("parent"), Some("seriesstart00001"));
        assert_eq!(a.description(), "water plants");
        assert_eq!(a.tags(), ["home"]);
        assert_eq!(a.project(), Some("home"));
        for gone in ["done", "start", "annotation_5"] {
            assert!(a.get(gone).is_none(), "{gone}");
        }
        // Its successor stays in the same series.
        let mut a_done = a.clone();
        a_done
            .edit(
                &[Change::Set("done".into(), "2026-03-09T09:00:00Z".into())],
                Utc::now(),
            )
            .unwrap();
        let c = next_instance(&a_done, None, Utc::now()).unwrap().unwrap();
        assert_eq!(
            c.id(),
            &instance_id("seriesstart00001", "2026-03-16T08:00:00.000Z")
        );
        // Already created: nothing new.
        assert!(next_instance(&completed(), Some(&a), Utc::now())
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_tombstoned_instance_is_revived_and_until_ends_the_series() {
        let a = next_instance(&completed(), None, Utc::now())
            .unwrap()
            .unwrap();
        let mut dead = a.clone();
        dead.edit(
            &[
                Change::Set("deleted".into(), "2026-03-03T00:00:00Z".into()),
                Change::Set("note".into(), "stale".into()),
            ],
            Utc::now(),
        )
        .unwrap();
        let revived = next_instance(&completed(), Some(&dead), Utc::now())
            .unwrap()
            .unwrap();
        assert!(!revived.is_deleted() && revived.get("note").is_none());
        assert_eq!(revived.id(), a.id());

        let mut last = completed();
        last.edit(
            &[Change::Set("until".into(), "2026-03-05T00:00:00Z".into())],
            Utc::now(),
        )
        .unwrap();
        assert!(next_instance(&last, None, Utc::now()).unwrap().is_none());
        let mut once = completed();
        once.edit(&[Change::Clear("recur".into())], Utc::now())
            .unwrap();
        assert!(next_instance(&once, None, Utc::now()).unwrap().is_none());
    }
}
