//! The undo journal: every local change (add, modify, done, delete, import…) is recorded with
//! each task's state before and after, so `undo` can revert the most recent one.
//!
//! A revert is itself a new local edit with new clocks, so it syncs like any edit. It puts back
//! only the fields the change touched and that nobody has changed since (a sync may have
//! brought a newer value, which stays); a task the change created is deleted. The journal is
//! `<data_dir>/undo.jsonl`, one change per line, and keeps the last [`KEEP`] changes.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead as _, Write as _};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cache::CacheLock;
use crate::files::write_atomic;
use crate::task::{format_timestamp, Change, Task};

/// How many changes the journal keeps.
pub const KEEP: usize = 100;

/// The file in the data directory.
pub const FILE_NAME: &str = "undo.jsonl";

/// One local change: the command and every task it wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// When it was made (canonical timestamp).
    pub at: String,
    /// What the user ran, for messages (`modify`, `done`, …).
    pub command: String,
    /// The tasks it wrote.
    pub steps: Vec<Step>,
}

/// One task's states around a change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// The state before (`None`: the change created the task).
    pub before: Option<Task>,
    /// The state the change wrote.
    pub after: Task,
}

impl Entry {
    /// An entry for `command` made at `now` with these (before, after) states; steps where
    /// nothing changed are left out.
    pub fn new(
        command: &str,
        now: DateTime<Utc>,
        steps: impl IntoIterator<Item = (Option<Task>, Task)>,
    ) -> Entry {
        Entry {
            at: format_timestamp(now).unwrap_or_default(),
            command: command.to_owned(),
            steps: steps
                .into_iter()
                .filter(|(b, a)| b.as_ref() != Some(a))
                .map(|(before, after)| Step { before, after })
                .collect(),
        }
    }
}

/// The journal of one data directory.
#[derive(Debug, Clone)]
pub struct Journal {
    path: PathBuf,
}

impl Journal {
    /// The journal in `data_dir`.
    pub fn new(data_dir: &Path) -> Journal {
        Journal {
            path: data_dir.join(FILE_NAME),
        }
    }

    /// Appends a change (nothing when it has no steps); the caller holds the cache lock.
    pub fn record(&self, lock: &CacheLock, entry: &Entry) -> io::Result<()> {
        if entry.steps.is_empty() {
            return Ok(());
        }
        let mut line = serde_json::to_vec(entry).expect("entries serialise");
        line.push(b'\n');
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(&line)?;
        f.sync_data()?;
        drop(f);
        // Counting lines is cheap; parsing happens only when the journal is compacted.
        let lines = std::fs::read(&self.path)?
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        if lines > 2 * KEEP {
            let entries = self.entries()?;
            let from = entries.len().saturating_sub(KEEP);
            self.rewrite(lock, &entries[from..])?;
        }
        Ok(())
    }

    /// Every recorded change, oldest first. Lines that cannot be read (a torn last line after
    /// a crash) are skipped.
    pub fn entries(&self) -> io::Result<Vec<Entry>> {
        let f = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for line in io::BufReader::new(f).lines() {
            if let Ok(entry) = serde_json::from_str(&line?) {
                out.push(entry);
            }
        }
        Ok(out)
    }

    /// Removes and returns the most recent change; the caller holds the cache lock.
    pub fn pop(&self, lock: &CacheLock) -> io::Result<Option<Entry>> {
        let mut entries = self.entries()?;
        let last = entries.pop();
        if last.is_some() {
            self.rewrite(lock, &entries)?;
        }
        Ok(last)
    }

    fn rewrite(&self, _lock: &CacheLock, entries: &[Entry]) -> io::Result<()> {
        let mut bytes = Vec::new();
        for e in entries {
            serde_json::to_writer(&mut bytes, e).expect("entries serialise");
            bytes.push(b'\n');
        }
        write_atomic(&self.path, &bytes, true)
    }
}

/// What reverting one step does to the task's current state.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Revert {
    /// The edit that puts the touched fields back.
    pub changes: Vec<Change>,
    /// Fields (clock keys) left alone because they changed again since.
    pub kept: Vec<String>,
}

/// The edit that reverts `step` on `current` (the task's state now) at `now`.
pub fn revert(step: &Step, current: &Task, now: DateTime<Utc>) -> Revert {
    let mut out = Revert::default();
    let Some(before) = &step.before else {
        // The change created the task: delete it, unless it is deleted already.
        if !current.is_deleted() {
            if let Some(ts) = format_timestamp(now) {
                out.changes
                    .push(Change::Set("deleted".into(), Value::String(ts)));
            }
        }
        return out;
    };
    let keys: std::collections::BTreeSet<&String> = before
        .clocks()
        .keys()
        .chain(step.after.clocks().keys())
        .collect();
    for key in keys {
        let (was, wrote, now_is) = (
            value_of(before, key),
            value_of(&step.after, key),
            value_of(current, key),
        );
        if was == wrote {
            continue;
        }
        if now_is != wrote {
            out.kept.push(key.clone());
            continue;
        }
        out.changes.push(match (key.strip_prefix("tags."), was) {
            (Some(tag), Some(_)) => Change::AddTag(tag.to_owned()),
            (Some(tag), None) => Change::RemoveTag(tag.to_owned()),
            (None, Some(v)) => Change::Set(key.clone(), v),
            (None, None) => Change::Clear(key.clone()),
        });
    }
    out
}

/// The value behind a clock key: a field's value, or `true` for a tag that is present.
fn value_of(task: &Task, key: &str) -> Option<Value> {
    match key.strip_prefix("tags.") {
        Some(tag) => task.tags().contains(&tag).then_some(Value::Bool(true)),
        None => task.get(key).cloned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Replica;
    use serde_json::json;

    #[test]
    fn revert_puts_back_only_what_nobody_changed_since() {
        let before = Task::from_value(json!({"id": "a", "description": "x", "tags": ["t"],
            "updated_at": "2026-01-01T00:00:00Z"}))
        .unwrap();
        let mut after = before.clone();
        let now = Utc::now();
        after
            .edit(
                &[
                    Change::Set("description".into(), "y".into()),
                    Change::Set("project".into(), "p".into()),
                    Change::RemoveTag("t".into()),
                ],
                now,
            )
            .unwrap();
        let step = Step {
            before: Some(before.clone()),
            after: after.clone(),
        };
        // A sync changed the project meanwhile.
        let mut current = after.clone();
        current
            .edit(&[Change::Set("project".into(), "q".into())], now)
            .unwrap();
        let r = revert(&step, &current, now);
        assert_eq!(r.kept, ["project"]);
        current.edit(&r.changes, now).unwrap();
        assert_eq!(current.description(), "x");
        assert_eq!(current.tags(), ["t"]);
        assert_eq!(current.get_str("project"), Some("q"));

        let created = Step {
            before: None,
            after: after.clone(),
        };
        let r = revert(&created, &after, now);
        assert!(matches!(&r.changes[..], [Change::Set(k, _)] if k == "deleted"));
    }

    #[test]
    fn the_journal_pops_the_latest_and_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let replica = Replica::open(dir.path()).unwrap();
        let lock = replica.lock(std::time::Duration::from_secs(5)).unwrap();
        let journal = Journal::new(dir.path());
        assert_eq!(journal.pop(&lock).unwrap(), None);
        let t = |n: usize| Task::from_value(json!({"id": format!("t{n}")})).unwrap();
        for n in 0..(2 * KEEP + 1) {
            let e = Entry::new("add", Utc::now(), [(None, t(n))]);
            journal.record(&lock, &e).unwrap();
        }
        assert_eq!(journal.entries().unwrap().len(), KEEP);
        let last = journal.pop(&lock).unwrap().unwrap();
        assert_eq!(last.steps[0].after.id().as_str(), format!("t{}", 2 * KEEP));
        assert_eq!(journal.entries().unwrap().len(), KEEP - 1);
        // Unchanged steps are not recorded.
        let same = Entry::new("modify", Utc::now(), [(Some(t(1)), t(1))]);
        assert!(same.steps.is_empty());
    }
}
