//! The working set: small numbers for the open tasks, so `done 3` means one thing.
//!
//! Numbers are assigned by `list`/`next` ([`WorkingSet::renumber`]) and stay what they were
//! until the next renumbering, whatever a sync brings in meanwhile; a task added locally gets
//! the next free number at once. The set is kept per data directory in `working-set.json`, a
//! JSON array of ids (position + 1 = number).

use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::cache::CacheLock;
use crate::files::write_atomic;
use crate::task::{Task, TaskId};

/// The file in the data directory.
pub const FILE_NAME: &str = "working-set.json";

/// Numbers → task ids for one data directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkingSet {
    ids: Vec<TaskId>,
}

impl WorkingSet {
    /// The set stored in `data_dir`; empty when there is none yet. An unreadable or damaged
    /// file also reads as empty: the numbers are a convenience that the next `list` rebuilds.
    pub fn load(data_dir: &Path) -> WorkingSet {
        let ids = std::fs::read(path(data_dir))
            .ok()
            .and_then(|b| serde_json::from_slice::<Vec<String>>(&b).ok())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|s| TaskId::new(s).ok())
            .collect();
        WorkingSet { ids }
    }

    /// Writes the set to `data_dir` atomically; the caller holds the cache lock.
    pub fn save(&self, data_dir: &Path, _lock: &CacheLock) -> io::Result<()> {
        let ids: Vec<&str> = self.ids.iter().map(TaskId::as_str).collect();
        let bytes = serde_json::to_vec(&ids).expect("ids serialise");
        write_atomic(&path(data_dir), &bytes, false)
    }

    /// The task with number `n`.
    pub fn get(&self, n: usize) -> Option<&TaskId> {
        n.checked_sub(1).and_then(|i| self.ids.get(i))
    }

    /// The number of task `id`, if it has one.
    pub fn number_of(&self, id: &TaskId) -> Option<usize> {
        self.ids.iter().position(|i| i == id).map(|i| i + 1)
    }

    /// How many numbers are assigned.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no number is assigned.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Gives `id` the next free number (or returns the one it has).
    pub fn push(&mut self, id: &TaskId) -> usize {
        if let Some(n) = self.number_of(id) {
            return n;
        }
        self.ids.push(id.clone());
        self.ids.len()
    }

    /// Numbers the open (pending or waiting) tasks 1…n: tasks that had a number keep their
    /// order, closed ones drop out, and new ones follow, oldest first.
    pub fn renumber(&mut self, tasks: &[Task], now: DateTime<Utc>) {
        let open: std::collections::BTreeMap<&TaskId, &Task> = tasks
            .iter()
            .filter(|t| t.status(now).is_open())
            .map(|t| (t.id(), t))
            .collect();
        let mut ids: Vec<TaskId> = self
            .ids
            .iter()
            .filter(|id| open.contains_key(id))
            .cloned()
            .collect();
        let mut fresh: Vec<&Task> = open
            .values()
            .filter(|t| !ids.contains(t.id()))
            .copied()
            .collect();
        fresh.sort_by(|a, b| a.created_at().cmp(b.created_at()).then(a.id().cmp(b.id())));
        ids.extend(fresh.into_iter().map(|t| t.id().clone()));
        self.ids = ids;
    }
}

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Replica;
    use serde_json::json;

    #[test]
    fn numbers_are_stable_until_renumbered() {
        let dir = tempfile::tempdir().unwrap();
        let replica = Replica::open(dir.path()).unwrap();
        let lock = replica.lock(std::time::Duration::from_secs(5)).unwrap();
        let t = |id: &str, created: &str, extra: serde_json::Value| {
            let mut doc = json!({"id": id, "description": id, "created_at": created});
            doc.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            Task::from_value(doc).unwrap()
        };
        let now = Utc::now();
        let mut tasks = vec![
            t("bbbb", "2026-01-02T00:00:00Z", json!({})),
            t("aaaa", "2026-01-01T00:00:00Z", json!({})),
            t(
                "done",
                "2026-01-01T00:00:00Z",
                json!({"done": "2026-01-03T00:00:00Z"}),
            ),
        ];
        let mut ws = WorkingSet::default();
        ws.renumber(&tasks, now);
        assert_eq!(ws.get(1).unwrap().as_str(), "aaaa");
        assert_eq!(ws.get(2).unwrap().as_str(), "bbbb");
        assert_eq!(ws.len(), 2);
        ws.save(dir.path(), &lock).unwrap();
        assert_eq!(WorkingSet::load(dir.path()), ws);

        // aaaa is completed and a new task arrives: bbbb moves up, the new one follows.
        tasks[1] = t(
            "aaaa",
            "2026-01-01T00:00:00Z",
            json!({"done": "2026-01-04T00:00:00Z"}),
        );
        tasks.push(t("cccc", "2025-01-01T00:00:00Z", json!({})));
        ws.renumber(&tasks, now);
        assert_eq!(ws.number_of(&TaskId::new("bbbb").unwrap()), Some(1));
        assert_eq!(ws.number_of(&TaskId::new("cccc").unwrap()), Some(2));
        assert_eq!(ws.push(&TaskId::new("dddd").unwrap()), 3);
        assert!(ws.get(0).is_none() && ws.get(4).is_none());

        std::fs::write(dir.path().join(FILE_NAME), b"{broken").unwrap();
        assert!(WorkingSet::load(dir.path()).is_empty());
    }
}
