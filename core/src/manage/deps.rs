//! Dependencies across tasks: which open tasks are blocked (they wait for an open task) and
//! which are blocking (an open task waits for them).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::task::{Task, TaskId};

/// The dependency graph of a set of tasks, as of one instant.
#[derive(Debug, Clone, Default)]
pub struct Dependencies {
    open: BTreeSet<TaskId>,
    blocked: BTreeSet<TaskId>,
    blocking: BTreeSet<TaskId>,
}

impl Dependencies {
    /// The graph of `tasks` at `now`. A dependency on a task that is not open (done, deleted,
    /// or unknown here) blocks nothing.
    pub fn new(tasks: &[Task], now: DateTime<Utc>) -> Dependencies {
        let open: BTreeSet<TaskId> = tasks
            .iter()
            .filter(|t| t.status(now).is_open())
            .map(|t| t.id().clone())
            .collect();
        let mut blocked = BTreeSet::new();
        let mut blocking = BTreeSet::new();
        let mut waits: BTreeMap<&TaskId, Vec<TaskId>> = BTreeMap::new();
        for t in tasks.iter().filter(|t| open.contains(t.id())) {
            waits.insert(t.id(), t.dependencies());
        }
        for (id, deps) in waits {
            for dep in deps.into_iter().filter(|d| open.contains(d) && d != id) {
                blocked.insert(id.clone());
                blocking.insert(dep);
            }
        }
        Dependencies {
            open,
            blocked,
            blocking,
        }
    }

    /// Whether `id` is open and waits for an open task.
    pub fn is_blocked(&self, id: &TaskId) -> bool {
        self.blocked.contains(id)
    }

    /// Whether an open task waits for `id`.
    pub fn is_blocking(&self, id: &TaskId) -> bool {
        self.blocking.contains(id)
    }

    /// Whether `id` is open (pending or waiting).
    pub fn is_open(&self, id: &TaskId) -> bool {
        self.open.contains(id)
    }
}
