//! A store in memory: the reference [`Store`] for tests and the conformance suite.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::driver::{DriverInfo, Health};
use crate::error::DriverError;
use crate::store::{
    decide, Decision, Entry, Gets, PutOutcome, Puts, Store, StoreInventory, Stored, Version, Write,
};
use crate::task::{Task, TaskId};

/// A store in memory. Its versions are revision numbers, not content hashes, so it exercises
/// the opaque-version contract the way a database with revisions would.
#[derive(Debug)]
pub struct MemoryStore {
    name: String,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    tasks: BTreeMap<TaskId, (Stored, crate::hash::ContentHash)>,
    revision: u64,
}

impl MemoryStore {
    /// An empty store named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        MemoryStore {
            name: name.into(),
            state: Mutex::new(State::default()),
        }
    }

    /// A copy of everything stored.
    pub fn snapshot(&self) -> BTreeMap<TaskId, Task> {
        self.lock()
            .tasks
            .iter()
            .map(|(id, (s, _))| (id.clone(), s.task.clone()))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-written entry: recover the state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn info(&self) -> DriverInfo {
        DriverInfo {
            kind: "memory".into(),
            name: self.name.clone(),
            capabilities: Default::default(),
        }
    }

    async fn list(&self) -> Result<StoreInventory, DriverError> {
        Ok(StoreInventory {
            entries: self
                .lock()
                .tasks
                .iter()
                .map(|(id, (s, hash))| {
                    let entry = Entry {
                        hash: hash.clone(),
                        version: s.version.clone(),
                    };
                    (id.clone(), entry)
                })
                .collect(),
            problems: Vec::new(),
        })
    }

    async fn get(&self, ids: &[TaskId]) -> Result<Gets, DriverError> {
        let state = self.lock();
        Ok(ids
            .iter()
            .map(|id| (id.clone(), Ok(state.tasks.get(id).map(|(s, _)| s.clone()))))
            .collect())
    }

    async fn put(&self, writes: Vec<Write>) -> Result<Puts, DriverError> {
        let mut state = self.lock();
        let mut out = Puts::new();
        for w in writes {
            let id = w.task.id().clone();
            let current = state.tasks.get(&id).map(|(s, hash)| Entry {
                hash: hash.clone(),
                version: s.version.clone(),
            });
            let outcome = match decide(current.as_ref(), &w) {
                Decision::Unchanged(version) => PutOutcome::Written(version),
                Decision::Conflict => PutOutcome::Conflict,
                Decision::Write => {
                    state.revision += 1;
                    let version = Version::new(format!("r{}", state.revision));
                    let stored = Stored {
                        task: w.task,
                        version: version.clone(),
                    };
                    state.tasks.insert(id.clone(), (stored, w.hash));
                    PutOutcome::Written(version)
                }
            };
            out.insert(id, Ok(outcome));
        }
        Ok(out)
    }

    async fn check(&self) -> Result<Health, DriverError> {
        let n = self.lock().tasks.len();
        Ok(Health {
            ok: true,
            detail: format!("in memory, {n} tasks"),
        })
    }
}
