//! The small storage trait and the generic driver that gives any store merge, compare-and-swap
//! and retry.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Debug};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::backoff::Backoff;
use crate::bucket::{in_any, Bucket};
use crate::driver::{
    grouped, Access, Answers, Batch, BucketListing, Buckets, Driver, DriverInfo, Health, Inventory,
    Listing, Problem, Watch,
};
use crate::error::{DriverError, ErrorKind};
use crate::hash::{root_hash, ContentHash};
use crate::merge::merge;
use crate::task::{Task, TaskId};

/// How many times a compare-and-swap that lost to a concurrent writer is retried.
const MAX_CAS_ATTEMPTS: u32 = 16;

/// A store's own compare-and-swap token for one stored task: an etag, a revision, a git blob
/// id, or simply the content hash when that is all a store can compare. Opaque to everyone
/// but the store that issued it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Version(String);

impl Version {
    /// A version as the store spells it.
    pub fn new(v: impl Into<String>) -> Version {
        Version(v.into())
    }

    /// The version of a store whose only token is the content hash.
    pub fn of_hash(hash: &ContentHash) -> Version {
        Version(hash.as_str().to_owned())
    }

    /// The token.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One listed entry: the stored task's content hash and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The content hash written with the task (see [`Write::hash`]).
    pub hash: ContentHash,
    /// The compare-and-swap token of the stored state.
    pub version: Version,
}

impl Entry {
    /// The entry of `task` in a store whose only version is the content hash.
    pub fn of_hash(task: &Task) -> Entry {
        let hash = task.hash();
        Entry {
            version: Version::of_hash(&hash),
            hash,
        }
    }
}

/// Everything a store holds, plus entries it could not read.
#[derive(Debug, Default)]
pub struct StoreInventory {
    /// Every valid stored task, by id.
    pub entries: BTreeMap<TaskId, Entry>,
    /// Entries skipped as invalid, each naming what and where. They are left untouched.
    pub problems: Vec<Problem>,
}

impl StoreInventory {
    /// The entries whose id falls in one of `buckets`, with the problems of those ids and
    /// those that name no id: what [`Store::list_in`] answers.
    pub fn restricted(mut self, buckets: &BTreeSet<Bucket>) -> StoreInventory {
        self.entries.retain(|id, _| in_any(buckets, id));
        self.problems.retain(|p| p.belongs_to(buckets));
        self
    }

    /// The id → hash map and problems, as [`Driver::hashes`] answers them.
    fn into_inventory(self) -> Inventory {
        Inventory {
            hashes: self
                .entries
                .into_iter()
                .map(|(id, e)| (id, e.hash))
                .collect(),
            problems: self.problems,
        }
    }
}

/// What a store keeps up to date about everything it holds, read at once by
/// [`Store::summary`] so that an unchanged or slightly changed store costs one read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// The root hash of what [`Store::list`] would list, when the store keeps it.
    pub root: Option<ContentHash>,
    /// The bucket hashes of what [`Store::list`] would list, at a depth the store chose, when
    /// it keeps them.
    pub buckets: Option<Buckets>,
}

/// A stored task and its version.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The task as stored.
    pub task: Task,
    /// The compare-and-swap token of this state.
    pub version: Version,
}

/// A conditional write: store `task` only if the stored version is still `expected`
/// (`None`: only if there is still no task with this id).
#[derive(Debug, Clone)]
pub struct Write {
    /// The new state.
    pub task: Task,
    /// Its content hash, to be stored next to it and listed back unchanged.
    pub hash: ContentHash,
    /// The version the new state was merged from.
    pub expected: Option<Version>,
}

impl Write {
    /// A write of `task` over the state whose version is `expected`.
    pub fn new(task: Task, expected: Option<Version>) -> Write {
        Write {
            hash: task.hash(),
            task,
            expected,
        }
    }
}

/// The outcome of one conditional write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    /// The task was stored; this is its new version.
    Written(Version),
    /// The stored version is no longer the expected one; nothing was written.
    Conflict,
}

/// What a store does with one conditional write (see [`decide`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The stored state is already the written one: write nothing, answer
    /// [`PutOutcome::Written`] with the stored version.
    Unchanged(Version),
    /// The stored version is not the expected one: write nothing, answer
    /// [`PutOutcome::Conflict`].
    Conflict,
    /// Store the task, then answer [`PutOutcome::Written`] with its new version.
    Write,
}

/// The compare-and-swap rule of [`Store::put`] for one write, given the entry stored for its
/// id (`None`: absent). Every store decides with this, under whatever lock or transaction
/// makes the decision and the write atomic.
///
/// ```
/// use hypertask_core::{decide, Decision, Entry, Task, Write};
///
/// let v1 = Task::from_value(serde_json::json!({"id": "a", "description": "v1"})).unwrap();
/// let v2 = Task::from_value(serde_json::json!({"id": "a", "description": "v2"})).unwrap();
/// let stored = Entry::of_hash(&v1);
/// assert_eq!(decide(None, &Write::new(v1.clone(), None)), Decision::Write);
/// assert_eq!(decide(Some(&stored), &Write::new(v2.clone(), None)), Decision::Conflict);
/// let over_v1 = Write::new(v2, Some(stored.version.clone()));
/// assert_eq!(decide(Some(&stored), &over_v1), Decision::Write);
/// let same = Write::new(v1, None);
/// assert_eq!(decide(Some(&stored), &same), Decision::Unchanged(stored.version.clone()));
/// ```
pub fn decide(current: Option<&Entry>, write: &Write) -> Decision {
    match current {
        Some(entry) if entry.hash == write.hash => Decision::Unchanged(entry.version.clone()),
        _ if current.map(|e| &e.version) != write.expected.as_ref() => Decision::Conflict,
        _ => Decision::Write,
    }
}

/// Answers of [`Store::get`], keyed by id.
pub type Gets = BTreeMap<TaskId, Result<Option<Stored>, DriverError>>;

/// Answers of [`Store::put`], keyed by id.
pub type Puts = BTreeMap<TaskId, Result<PutOutcome, DriverError>>;

/// A place tasks are stored: it lists, fetches and writes conditionally. It never merges;
/// [`StoreDriver`] does that.
#[async_trait]
pub trait Store: Send + Sync + Debug + 'static {
    /// Kind, instance name and capabilities.
    fn info(&self) -> DriverInfo;

    /// Starts a sync (see [`Driver::begin`]).
    ///
    /// # Behavior
    /// - Called once per sync before any other call of that sync.
    /// - With [`Access::Read`] the store writes nothing anywhere until the next `begin`.
    async fn begin(&self, access: Access) -> Result<(), DriverError> {
        let _ = access;
        Ok(())
    }

    /// The root hash of everything stored, when the store keeps it up to date and can answer
    /// it without listing (declare [`crate::Capabilities::cheap_root`] then).
    ///
    /// # Behavior
    /// - `Ok(None)`: the store cannot tell cheaply; the caller lists instead.
    /// - `Ok(Some(root))` equals the root hash of what [`Store::list`] would list.
    async fn root(&self) -> Result<Option<ContentHash>, DriverError> {
        Ok(None)
    }

    /// Every stored task's hash and version.
    ///
    /// # Behavior
    /// - An empty store lists nothing.
    /// - An entry's hash is the one written with it, which is [`Task::hash`] of the task
    ///   [`Store::get`] returns; its version is the one `get` returns.
    /// - Entries that cannot be parsed are reported in `problems` (naming where they are) and
    ///   left untouched; foreign entries that are not tasks are ignored.
    async fn list(&self) -> Result<StoreInventory, DriverError>;

    /// The root hash and the bucket hashes the store keeps, read together (declare
    /// [`crate::Capabilities::buckets`] when it keeps bucket hashes).
    ///
    /// # Behavior
    /// - A part is `None` when the store cannot tell it without listing; a part that is there
    ///   equals [`root_hash`] (or [`crate::bucket_hashes`] at its depth) of what
    ///   [`Store::list`] would list.
    /// - The default is [`Store::root`] alone.
    async fn summary(&self) -> Result<Summary, DriverError> {
        Ok(Summary {
            root: self.root().await?,
            buckets: None,
        })
    }

    /// The stored entries whose id falls in one of `buckets` (of any depths).
    ///
    /// # Behavior
    /// - Exactly what [`Store::list`] would list, restricted as [`StoreInventory::restricted`]
    ///   restricts it; an empty set lists nothing.
    /// - The default lists everything and filters.
    async fn list_in(&self, buckets: &BTreeSet<Bucket>) -> Result<StoreInventory, DriverError> {
        if buckets.is_empty() {
            return Ok(StoreInventory::default());
        }
        Ok(self.list().await?.restricted(buckets))
    }

    /// Fetches tasks by id.
    ///
    /// # Behavior
    /// - Answers every id asked exactly once, keyed by that id, whatever the order of `ids`.
    /// - A missing task is `Ok(None)`.
    /// - An entry that cannot be parsed is `Err` for that id alone.
    async fn get(&self, ids: &[TaskId]) -> Result<Gets, DriverError>;

    /// Writes tasks conditionally. The ids of one call are distinct.
    ///
    /// # Behavior
    /// - Answers every write exactly once, keyed by its task's id.
    /// - A write whose `expected` version is no longer the stored one (or, with `None`, whose
    ///   id now exists) is [`PutOutcome::Conflict`] and changes nothing.
    /// - A write never leaves a torn entry: readers see the old state or the new one.
    /// - Writing a state equal to the stored one changes nothing and answers `Written`.
    /// - Never overwrites an entry it could not parse: that write fails alone.
    async fn put(&self, writes: Vec<Write>) -> Result<Puts, DriverError>;

    /// Makes what `put` wrote since `begin` durable and visible upstream (commit, push).
    ///
    /// # Behavior
    /// - Called once at the end of a sync begun with [`Access::Write`].
    /// - With nothing written since `begin`, does nothing.
    async fn finish(&self) -> Result<(), DriverError> {
        Ok(())
    }

    /// Whether the store is reachable and writable.
    async fn check(&self) -> Result<Health, DriverError>;

    /// As [`Driver::take_created`].
    fn take_created(&self) -> Vec<String> {
        Vec::new()
    }

    /// Waits until what is stored may have changed (see [`Driver::wait_for_change`]).
    ///
    /// # Behavior
    /// - The default answers [`Watch::Unsupported`] at once: the caller polls.
    /// - The first call answers [`Watch::Changed`] once the watch is in place; later calls
    ///   answer after a change since the previous answer (coalesced, never lost).
    async fn wait_for_change(&self) -> Result<Watch, DriverError> {
        Ok(Watch::Unsupported)
    }
}

/// The [`Driver`] of any [`Store`]: merges with the core rule, writes with compare-and-swap and
/// retries when a concurrent writer got in first. It checks the store's answers by id.
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

    fn err(&self, kind: ErrorKind, message: String) -> DriverError {
        DriverError::new(self.store.info().name, kind, message)
    }

    /// The whole listing: `Unchanged` when it is clean and its root is `known_root`.
    async fn listing(&self, known_root: Option<&ContentHash>) -> Result<Listing, DriverError> {
        let inventory = self.store.list().await?.into_inventory();
        if inventory.problems.is_empty() && known_root == Some(&root_hash(&inventory.hashes)) {
            return Ok(Listing::Unchanged);
        }
        Ok(Listing::Changed(inventory))
    }

    /// Reads `ids`, checking that every answer is filed under the id asked.
    async fn read(&self, ids: &[TaskId]) -> Result<Gets, DriverError> {
        let mut gets = self.store.get(ids).await?;
        let mut out = Gets::new();
        for id in ids {
            let answer = match gets.remove(id) {
                None => Err(self.err(
                    ErrorKind::Protocol,
                    format!("task '{id}': the store gave no answer"),
                )),
                Some(Ok(Some(s))) if s.task.id() != id => Err(self.err(
                    ErrorKind::Protocol,
                    format!(
                        "task '{id}': the store answered with task '{}'; nothing was written",
                        s.task.id()
                    ),
                )),
                Some(other) => other,
            };
            out.insert(id.clone(), answer);
        }
        if let Some(extra) = gets.keys().next() {
            tracing::warn!(driver = %self.store.info().name, task = %extra, "store answered a task that was not asked; ignored");
        }
        Ok(out)
    }
}

#[async_trait]
impl<S: Store> Driver for StoreDriver<S> {
    fn info(&self) -> DriverInfo {
        self.store.info()
    }

    async fn begin(&self, access: Access) -> Result<(), DriverError> {
        self.store.begin(access).await
    }

    async fn hashes(&self, known_root: Option<&ContentHash>) -> Result<Listing, DriverError> {
        if let Some(known) = known_root {
            if self.store.root().await?.as_ref() == Some(known) {
                return Ok(Listing::Unchanged);
            }
        }
        self.listing(known_root).await
    }

    /// For a store that declares [`crate::Capabilities::buckets`], its summary: `Unchanged`
    /// for a kept root equal to `known_root`, else the kept bucket hashes; when it keeps
    /// neither it is listed and answers its whole inventory ([`BucketListing::Full`]), so
    /// finding that out costs no second listing. Any other store answers as
    /// [`Driver::buckets`] does by default.
    async fn buckets(
        &self,
        known_root: Option<&ContentHash>,
    ) -> Result<BucketListing, DriverError> {
        if !self.store.info().capabilities.buckets {
            return Ok(grouped(self.hashes(known_root).await?));
        }
        let summary = self.store.summary().await?;
        if known_root.is_some() && summary.root.as_ref() == known_root {
            return Ok(BucketListing::Unchanged);
        }
        if let Some(buckets) = summary.buckets {
            return Ok(BucketListing::Changed(buckets));
        }
        Ok(match self.listing(known_root).await? {
            Listing::Unchanged => BucketListing::Unchanged,
            Listing::Changed(inventory) => BucketListing::Full(inventory),
        })
    }

    async fn hashes_in(&self, buckets: &BTreeSet<Bucket>) -> Result<Inventory, DriverError> {
        Ok(self.store.list_in(buckets).await?.into_inventory())
    }

    async fn resolve(&self, batch: Batch) -> Result<Answers, DriverError> {
        let mut answers = Answers::new();
        let mut pending: Vec<TaskId> = Vec::with_capacity(batch.len());
        for (id, client) in &batch {
            match client {
                Some(t) if t.id() != id => {
                    answers.insert(
                        id.clone(),
                        Err(self.err(
                            ErrorKind::InvalidRequest,
                            format!("task '{}' was sent under the id '{id}'", t.id()),
                        )),
                    );
                }
                _ => pending.push(id.clone()),
            }
        }

        let mut backoff = Backoff::contention();
        for _ in 0..MAX_CAS_ATTEMPTS {
            if pending.is_empty() {
                break;
            }
            let mut writes = Vec::new();
            let mut merged_states = BTreeMap::new();
            for (id, current) in self.read(&pending).await? {
                let stored = match current {
                    Ok(stored) => stored,
                    Err(e) => {
                        answers.insert(id, Err(e));
                        continue;
                    }
                };
                let client = batch.get(&id).and_then(Option::as_ref);
                let merged = match merge(client, stored.as_ref().map(|s| &s.task)) {
                    Ok(m) => m,
                    Err(e) => {
                        answers.insert(id, Err(self.err(ErrorKind::InvalidRequest, e.to_string())));
                        continue;
                    }
                };
                match merged {
                    Some(m) if Some(&m) != stored.as_ref().map(|s| &s.task) => {
                        writes.push(Write::new(m.clone(), stored.map(|s| s.version)));
                        merged_states.insert(id, m);
                    }
                    same => {
                        answers.insert(id, Ok(same));
                    }
                }
            }
            let mut outcomes = if writes.is_empty() {
                Puts::new()
            } else {
                self.store.put(writes).await?
            };
            let mut retry = Vec::new();
            for (id, merged) in merged_states {
                match outcomes.remove(&id) {
                    Some(Ok(PutOutcome::Written(_))) => {
                        answers.insert(id, Ok(Some(merged)));
                    }
                    Some(Ok(PutOutcome::Conflict)) => retry.push(id),
                    Some(Err(e)) => {
                        answers.insert(id, Err(e));
                    }
                    None => {
                        let e = self.err(
                            ErrorKind::Protocol,
                            format!("task '{id}': the store gave no answer to the write"),
                        );
                        answers.insert(id, Err(e));
                    }
                }
            }
            pending = retry;
            if !pending.is_empty() {
                backoff.wait().await;
            }
        }
        for id in pending {
            let e = self.err(
                ErrorKind::Contended,
                format!(
                    "task '{id}': lost {MAX_CAS_ATTEMPTS} compare-and-swap races to other writers"
                ),
            );
            answers.insert(id, Err(e));
        }
        Ok(answers)
    }

    async fn finish(&self) -> Result<(), DriverError> {
        self.store.finish().await
    }

    async fn check(&self) -> Result<Health, DriverError> {
        self.store.check().await
    }

    fn take_created(&self) -> Vec<String> {
        self.store.take_created()
    }

    async fn wait_for_change(&self) -> Result<Watch, DriverError> {
        self.store.wait_for_change().await
    }
}

#[async_trait]
impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    fn info(&self) -> DriverInfo {
        (**self).info()
    }
    async fn begin(&self, access: Access) -> Result<(), DriverError> {
        (**self).begin(access).await
    }
    async fn root(&self) -> Result<Option<ContentHash>, DriverError> {
        (**self).root().await
    }
    async fn list(&self) -> Result<StoreInventory, DriverError> {
        (**self).list().await
    }
    async fn summary(&self) -> Result<Summary, DriverError> {
        (**self).summary().await
    }
    async fn list_in(&self, buckets: &BTreeSet<Bucket>) -> Result<StoreInventory, DriverError> {
        (**self).list_in(buckets).await
    }
    async fn get(&self, ids: &[TaskId]) -> Result<Gets, DriverError> {
        (**self).get(ids).await
    }
    async fn put(&self, writes: Vec<Write>) -> Result<Puts, DriverError> {
        (**self).put(writes).await
    }
    async fn finish(&self) -> Result<(), DriverError> {
        (**self).finish().await
    }
    async fn check(&self) -> Result<Health, DriverError> {
        (**self).check().await
    }
    fn take_created(&self) -> Vec<String> {
        (**self).take_created()
    }

    async fn wait_for_change(&self) -> Result<Watch, DriverError> {
        (**self).wait_for_change().await
    }
}
