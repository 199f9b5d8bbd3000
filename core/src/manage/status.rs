//! What a task's fields mean to a task manager: its status, project, priority, annotations and
//! dependencies, read from the plain fields of the document.

use std::fmt;

use chrono::{DateTime, TimeZone as _, Utc};

use crate::task::{Task, TaskId};

/// Prefix of an annotation's field: `annotation_<epoch-ms>` holds its text.
pub const ANNOTATION_PREFIX: &str = "annotation_";
/// Prefix of a dependency's field: `dep_<id>` means "this task waits for task `<id>`".
pub const DEP_PREFIX: &str = "dep_";

/// A task's status, derived from its fields (Taskwarrior's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// Open and visible.
    Pending,
    /// Open, hidden until `wait` (or `snooze`) passes.
    Waiting,
    /// `done` is set.
    Completed,
    /// `deleted` is set (a tombstone).
    Deleted,
    /// A Taskwarrior recurrence template (`status: "recurring"`), kept from an import: never
    /// listed as open; its instances are ordinary tasks.
    Recurring,
}

impl Status {
    /// Every status, in the order reports list them.
    pub const ALL: [Status; 5] = [
        Status::Pending,
        Status::Waiting,
        Status::Completed,
        Status::Deleted,
        Status::Recurring,
    ];

    /// The lowercase name (`pending`, `waiting`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Waiting => "waiting",
            Status::Completed => "completed",
            Status::Deleted => "deleted",
            Status::Recurring => "recurring",
        }
    }

    /// Reads a name (any case); `done` is accepted for `completed`.
    pub fn parse(s: &str) -> Option<Status> {
        let s = s.to_ascii_lowercase();
        if s == "done" {
            return Some(Status::Completed);
        }
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Pending or waiting: the task still has to be done.
    pub fn is_open(self) -> bool {
        matches!(self, Status::Pending | Status::Waiting)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `priority:H|M|L`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Low.
    L,
    /// Medium.
    M,
    /// High.
    H,
}

impl Priority {
    /// Reads `H`, `M` or `L` (any case).
    pub fn parse(s: &str) -> Option<Priority> {
        match s {
            "H" | "h" => Some(Priority::H),
            "M" | "m" => Some(Priority::M),
            "L" | "l" => Some(Priority::L),
            _ => None,
        }
    }

    /// The stored letter.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::H => "H",
            Priority::M => "M",
            Priority::L => "L",
        }
    }
}

/// One annotation: a note with the time it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation<'a> {
    /// Its field name, `annotation_<epoch-ms>`.
    pub key: &'a str,
    /// When it was made.
    pub at: DateTime<Utc>,
    /// The note.
    pub text: &'a str,
}

impl Task {
    /// The task's status at `now`: deleted, then completed, then a recurrence template, then
    /// waiting (`wait` or `snooze` in the future), else pending.
    pub fn status(&self, now: DateTime<Utc>) -> Status {
        if self.is_deleted() {
            Status::Deleted
        } else if self.is_done() {
            Status::Completed
        } else if self.get_str("status") == Some("recurring") {
            Status::Recurring
        } else if self.is_waiting(now) {
            Status::Waiting
        } else {
            Status::Pending
        }
    }

    /// Whether `wait` (or the original hypertask's `snooze`) is still in the future.
    pub fn is_waiting(&self, now: DateTime<Utc>) -> bool {
        ["wait", "snooze"]
            .iter()
            .any(|f| self.get_time(f).is_some_and(|w| w > now))
    }

    /// Started (`start` set) and still open.
    pub fn is_active(&self) -> bool {
        self.get("start").is_some() && !self.is_done() && !self.is_deleted()
    }

    /// `project`, a dotted hierarchy (`home.garden`).
    pub fn project(&self) -> Option<&str> {
        self.get_str("project").filter(|p| !p.is_empty())
    }

    /// `priority`; a value other than H, M or L counts as none.
    pub fn priority(&self) -> Option<Priority> {
        self.get_str("priority").and_then(Priority::parse)
    }

    /// The annotations, oldest first.
    pub fn annotations(&self) -> Vec<Annotation<'_>> {
        let mut out: Vec<Annotation<'_>> = self
            .as_map()
            .iter()
            .filter_map(|(k, v)| {
                let ms: i64 = k.strip_prefix(ANNOTATION_PREFIX)?.parse().ok()?;
                Some(Annotation {
                    key: k,
                    at: Utc.timestamp_millis_opt(ms).single()?,
                    text: v.as_str()?,
                })
            })
            .collect();
        out.sort_by(|a, b| a.at.cmp(&b.at).then(a.key.cmp(b.key)));
        out
    }

    /// The ids this task waits for: every `dep_<id>` field, and the original hypertask's
    /// `blocked_by`.
    pub fn dependencies(&self) -> Vec<TaskId> {
        let mut out: Vec<TaskId> = self
            .as_map()
            .keys()
            .filter_map(|k| k.strip_prefix(DEP_PREFIX))
            .chain(self.get_str("blocked_by"))
            .filter_map(|id| TaskId::new(id).ok())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// A field name for a new annotation made at `now` that this task does not use yet.
    pub fn new_annotation_key(&self, now: DateTime<Utc>) -> String {
        let mut ms = now.timestamp_millis();
        loop {
            let key = format!("{ANNOTATION_PREFIX}{ms}");
            if self.get(&key).is_none() && !self.clocks().contains_key(&key) {
                return key;
            }
            ms += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(doc: serde_json::Value) -> Task {
        Task::from_value(doc).unwrap()
    }

    #[test]
    fn status_follows_the_fields() {
        let now = Utc::now();
        assert_eq!(task(json!({"id": "a"})).status(now), Status::Pending);
        let later = crate::format_timestamp(now + chrono::Duration::days(1)).unwrap();
        assert_eq!(
            task(json!({"id": "a", "wait": later})).status(now),
            Status::Waiting
        );
        let t = task(json!({"id": "a", "done": "2026-01-01T00:00:00Z", "wait": later}));
        assert_eq!(t.status(now), Status::Completed);
        let t = task(
            json!({"id": "a", "done": "2026-01-01T00:00:00Z", "deleted": "2026-01-01T00:00:00Z"}),
        );
        assert_eq!(t.status(now), Status::Deleted);
        assert_eq!(
            task(json!({"id": "a", "status": "recurring"})).status(now),
            Status::Recurring
        );
    }

    #[test]
    fn attributes_are_typed() {
        let t = task(json!({
            "id": "a", "priority": "H", "project": "home.garden",
            "annotation_2000": "second", "annotation_1000": "first",
            "dep_b": "x", "blocked_by": "c",
        }));
        assert_eq!(t.priority(), Some(Priority::H));
        assert_eq!(t.project(), Some("home.garden"));
        let notes: Vec<&str> = t.annotations().iter().map(|a| a.text).collect();
        assert_eq!(notes, ["first", "second"]);
        let deps = t.dependencies();
        let deps: Vec<&str> = deps.iter().map(|d| d.as_str()).collect();
        assert_eq!(deps, ["b", "c"]);
        // A number in `priority` (an older document) is kept and means no priority.
        assert_eq!(task(json!({"id": "a", "priority": 1})).priority(), None);
        for bad in [
            json!({"id": "a", "project": 3}),
            json!({"id": "a", "annotation_x": "no time"}),
            json!({"id": "a", "annotation_5": ["not text"]}),
            json!({"id": "a", "dep_../x": "x"}),
        ] {
            assert!(Task::from_value(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn annotation_keys_never_collide() {
        let now = Utc.timestamp_millis_opt(5000).unwrap();
        let t = task(json!({"id": "a", "annotation_5000": "taken"}));
        assert_eq!(t.new_annotation_key(now), "annotation_5001");
    }
}
