//! The small storage trait and the generic driver that gives any store merge, compare-and-swap
//! and retry.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use crate::driver::{Driver, DriverInfo, Health, Inventory, Listing, Resolved};
use crate::error::{DriverError, ErrorKind};
use crate::hash::ContentHash;
use crate::merge::merge;
use crate::task::{Task, TaskId};

/// How many times a compare-and-swap that lost to a concurrent writer is retried.
const MAX_CAS_ATTEMPTS: u32 = 16;

/// A conditional write: store `task` only if the stored task's hash is still `expected`
/// (`None`: only if there is still no task with this id).
#[derive(Debug, Clone)]
pub struct Write {
    /// Hash of the state the new one was merged from.
    pub expected: Option<ContentHash>,
    /// The new state.
    pub task: Task,
}

/// The outcome of one conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The task was stored.
    Written,
    /// Someone else changed the task since it was read; nothing was written.
    Conflict,
}

/// A place tasks are stored: it lists, fetches and writes conditionally. It never merges;
/// [`StoreDriver`] does that.
#[async_trait]
pub trait Store: Send + Sync + Debug + 'static {
    /// Kind, instance name and capabilities.
    fn info(&self) -> DriverInfo;

    /// Every stored task's content hash.
    ///
    /// # Behavior
    /// - An empty store lists nothing.
    /// - The hash of each entry is [`Task::hash`] of the stored task, as [`Store::get`] returns
    ///   it.
    /// - Entries that cannot be parsed are reported in `problems` (naming where they are) and
    ///   left untouched; foreign entries that are not tasks are ignored.
    async fn list(&self) -> Result<Inventory, DriverError>;

    /// Fetches tasks by id: one answer per id, in order.
    ///
    /// # Behavior
    /// - A missing task is `Ok(None)`.
    /// - An entry that cannot be parsed is `Err` for that id alone.
    async fn get(
        &self,
        ids: &[TaskId],
    ) -> Result<Vec<Result<Option<Task>, DriverError>>, DriverError>;

    /// Writes tasks conditionally: one answer per write, in order.
    ///
    /// # Behavior
    /// - A write whose `expected` no longer matches the stored hash (or, with `None`, whose id
    ///   now exists) is [`PutOutcome::Conflict`] and changes nothing.
    /// - A write never leaves a torn entry: readers see the old state or the new one.
    /// - Writing a state equal to the stored one is a no-op that answers `Written`.
    /// - Never overwrites an entry it could not parse: that write fails alone.
    async fn put(
        &self,
        writes: Vec<Write>,
    ) -> Result<Vec<Result<PutOutcome, DriverError>>, DriverError>;

    /// Makes what `put` wrote since the last call durable and visible upstream (commit, push).
    ///
    /// # Behavior
    /// - With nothing written since the last call, does nothing.
    async fn finish(&self) -> Result<(), DriverError> {
        Ok(())
    }

    /// Whether the store is reachable and writable.
    async fn check(&self) -> Result<Health, DriverError>;
}

/// The [`Driver`] of any [`Store`]: merges with the core rule, writes with compare-and-swap and
/// retries when a concurrent writer got in first.
#[derive(Debug)]
pub struct StoreDriver<S> {
    store: S,
}

impl<S: Store> StoreDriver<S> {
    /// Wraps a store.
    pub fn new(store: S) -> Self {
        StoreDriver { store }
    }

    /// The wrapped store.
    pub fn store(&self) -> &S {
        &self.store
    }

    fn name(&self) -> String {
        self.store.info().name
    }
}

#[async_trait]
impl<S: Store> Driver for StoreDriver<S> {
    fn info(&self) -> DriverInfo {
        self.store.info()
    }

    async fn hashes(&self, known_root: Option<&ContentHash>) -> Result<Listing, DriverError> {
        let inventory = self.store.list().await?;
        if inventory.problems.is_empty() && known_root == Some(&inventory.root()) {
            return Ok(Listing::Unchanged);
        }
        Ok(Listing::Changed(inventory))
    }

    async fn resolve(
        &self,
        batch: Vec<(TaskId, Option<Task>)>,
    ) -> Result<Vec<Resolved>, DriverError> {
        let mut results: Vec<Option<Result<Option<Task>, DriverError>>> =
            (0..batch.len()).map(|_| None).collect();
        let mut pending: Vec<usize> = Vec::with_capacity(batch.len());
        for (i, (id, client)) in batch.iter().enumerate() {
            match client {
                Some(t) if t.id() != id => {
                    results[i] = Some(Err(DriverError::new(
                        self.name(),
                        ErrorKind::InvalidRequest,
                        format!("task '{}' was sent under the id '{id}'", t.id()),
                    )));
                }
                _ => pending.push(i),
            }
        }

        for attempt in 0..MAX_CAS_ATTEMPTS {
            if pending.is_empty() {
                break;
            }
            if attempt > 0 {
                backoff(attempt).await;
            }
            let ids: Vec<TaskId> = pending.iter().map(|&i| batch[i].0.clone()).collect();
            let current = self.store.get(&ids).await?;
            if current.len() != ids.len() {
                return Err(DriverError::new(
                    self.name(),
                    ErrorKind::Protocol,
                    "store answered a different number of tasks than asked",
                ));
            }
            let mut writes = Vec::new();
            let mut writing = Vec::new();
            for (&i, cur) in pending.iter().zip(current) {
                let cur = match cur {
                    Ok(cur) => cur,
                    Err(e) => {
                        results[i] = Some(Err(e));
                        continue;
                    }
                };
                let merged = match merge(batch[i].1.as_ref(), cur.as_ref()) {
                    Ok(m) => m,
                    Err(e) => {
                        results[i] = Some(Err(DriverError::new(
                            self.name(),
                            ErrorKind::InvalidRequest,
                            e.to_string(),
                        )));
                        continue;
                    }
                };
                match merged {
                    Some(m) if Some(&m) != cur.as_ref() => {
                        writes.push(Write {
                            expected: cur.as_ref().map(Task::hash),
                            task: m.clone(),
                        });
                        writing.push((i, m));
                    }
                    same => results[i] = Some(Ok(same)),
                }
            }
            let outcomes = if writes.is_empty() {
                Vec::new()
            } else {
                self.store.put(writes).await?
            };
            let mut retry = Vec::new();
            for ((i, merged), outcome) in writing.into_iter().zip(outcomes) {
                match outcome {
                    Ok(PutOutcome::Written) => results[i] = Some(Ok(Some(merged))),
                    Ok(PutOutcome::Conflict) => retry.push(i),
                    Err(e) => results[i] = Some(Err(e)),
                }
            }
            pending = retry;
        }
        for i in pending {
            results[i] = Some(Err(DriverError::new(
                self.name(),
                ErrorKind::Contended,
                format!(
                    "task '{}': lost {MAX_CAS_ATTEMPTS} compare-and-swap races to other writers",
                    batch[i].0
                ),
            )));
        }
        Ok(batch
            .into_iter()
            .zip(results)
            .map(|((id, _), r)| {
                let r = r.unwrap_or_else(|| {
                    Err(DriverError::new(
                        self.name(),
                        ErrorKind::Protocol,
                        format!("task '{id}': store gave no answer"),
                    ))
                });
                (id, r)
            })
            .collect())
    }

    async fn finish(&self) -> Result<(), DriverError> {
        self.store.finish().await
    }

    async fn check(&self) -> Result<Health, DriverError> {
        self.store.check().await
    }
}

/// Jittered exponential backoff for contended writes: 2 ms, 4 ms, … capped at 200 ms.
async fn backoff(attempt: u32) {
    use rand::Rng;
    let base = 2u64.saturating_pow(attempt.min(7)).min(200);
    let jitter = rand::rng().random_range(0..=base);
    tokio::time::sleep(Duration::from_millis(base / 2 + jitter)).await;
}

/// A store in memory: the reference [`Store`] for tests and the conformance suite.
#[derive(Debug)]
pub struct MemoryStore {
    name: String,
    tasks: Mutex<BTreeMap<TaskId, Task>>,
}

impl MemoryStore {
    /// An empty store named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        MemoryStore {
            name: name.into(),
            tasks: Mutex::new(BTreeMap::new()),
        }
    }

    /// A copy of everything stored.
    pub fn snapshot(&self) -> BTreeMap<TaskId, Task> {
        self.tasks.lock().expect("memory store poisoned").clone()
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

    async fn list(&self) -> Result<Inventory, DriverError> {
        let tasks = self.tasks.lock().expect("memory store poisoned");
        Ok(Inventory {
            hashes: tasks.iter().map(|(id, t)| (id.clone(), t.hash())).collect(),
            problems: Vec::new(),
        })
    }

    async fn get(
        &self,
        ids: &[TaskId],
    ) -> Result<Vec<Result<Option<Task>, DriverError>>, DriverError> {
        let tasks = self.tasks.lock().expect("memory store poisoned");
        Ok(ids.iter().map(|id| Ok(tasks.get(id).cloned())).collect())
    }

    async fn put(
        &self,
        writes: Vec<Write>,
    ) -> Result<Vec<Result<PutOutcome, DriverError>>, DriverError> {
        let mut tasks = self.tasks.lock().expect("memory store poisoned");
        Ok(writes
            .into_iter()
            .map(|w| {
                let current = tasks.get(w.task.id()).map(Task::hash);
                if current.as_ref() == Some(&w.task.hash()) {
                    return Ok(PutOutcome::Written);
                }
                if current != w.expected {
                    return Ok(PutOutcome::Conflict);
                }
                tasks.insert(w.task.id().clone(), w.task);
                Ok(PutOutcome::Written)
            })
            .collect())
    }

    async fn check(&self) -> Result<Health, DriverError> {
        let n = self.tasks.lock().expect("memory store poisoned").len();
        Ok(Health {
            ok: true,
            detail: format!("in memory, {n} tasks"),
        })
    }
}

#[async_trait]
impl<S: Store> Store for std::sync::Arc<S> {
    fn info(&self) -> DriverInfo {
        (**self).info()
    }
    async fn list(&self) -> Result<Inventory, DriverError> {
        (**self).list().await
    }
    async fn get(
        &self,
        ids: &[TaskId],
    ) -> Result<Vec<Result<Option<Task>, DriverError>>, DriverError> {
        (**self).get(ids).await
    }
    async fn put(
        &self,
        writes: Vec<Write>,
    ) -> Result<Vec<Result<PutOutcome, DriverError>>, DriverError> {
        (**self).put(writes).await
    }
    async fn finish(&self) -> Result<(), DriverError> {
        (**self).finish().await
    }
    async fn check(&self) -> Result<Health, DriverError> {
        (**self).check().await
    }
}
