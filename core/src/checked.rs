//! The validating boundary every driver is used through: whoever wrote a driver, its answers
//! are checked before the engine (or the server) acts on them.

use std::collections::BTreeSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;

use crate::bucket::{in_any, Bucket};
use crate::driver::{
    Access, Answers, Batch, BucketListing, Driver, DriverInfo, Health, Inventory, Listing, Watch,
};
use crate::error::{DriverError, ErrorKind};
use crate::hash::{ContentHash, Hashes};
use crate::task::{Task, TaskId, DEFAULT_MAX_TASK_BYTES};

/// How long one driver operation may take by default (`timeout` in a driver table).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A driver behind core's checks.
///
/// - Every operation is bounded by a timeout; a driver that panics fails alone with an error.
/// - Answers are matched to requests by id: an answer for an id that was not asked, a missing
///   answer, or a task filed under another id becomes a named error for that task.
/// - A task read back whose hash differs from the one the driver listed in the same sync
///   (begun with [`Driver::begin`]), that is larger than the task size limit, or whose clocks
///   run more than a day ahead, is an error for that task.
/// - In a read-only sync no write reaches the driver.
/// - Bucket hashes must all be of the depth the driver answered, and a listing restricted to
///   buckets must list only ids in those buckets; otherwise the call fails.
///
/// The registry wraps every driver it builds; the sync engine only takes checked drivers.
#[derive(Clone)]
pub struct Checked {
    inner: Arc<dyn Driver>,
    name: Arc<str>,
    timeout: Duration,
    max_task_bytes: usize,
    session: Arc<Mutex<Session>>,
}

#[derive(Default)]
struct Session {
    access: Option<Access>,
    listed: Option<Hashes>,
}

impl std::fmt::Debug for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checked")
            .field("inner", &self.inner)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Checked {
    /// `driver` behind the checks, with the default timeout and task size limit.
    pub fn new(driver: Arc<dyn Driver>) -> Checked {
        let name = driver.info().name.into();
        Checked {
            inner: driver,
            name,
            timeout: DEFAULT_TIMEOUT,
            max_task_bytes: DEFAULT_MAX_TASK_BYTES,
            session: Arc::default(),
        }
    }

    /// Bounds every operation by `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Checked {
        self.timeout = timeout;
        self
    }

    /// Refuses tasks whose canonical JSON is larger than `bytes`.
    pub fn with_max_task_bytes(mut self, bytes: usize) -> Checked {
        self.max_task_bytes = bytes;
        self
    }

    /// The driver behind the checks.
    pub fn inner(&self) -> &Arc<dyn Driver> {
        &self.inner
    }

    fn err(&self, kind: ErrorKind, message: String) -> DriverError {
        DriverError::new(&*self.name, kind, message)
    }

    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one driver operation with the timeout, turning a panic into an error.
    async fn guard<T>(
        &self,
        what: &str,
        op: impl Future<Output = Result<T, DriverError>>,
    ) -> Result<T, DriverError> {
        match tokio::time::timeout(self.timeout, AssertUnwindSafe(op).catch_unwind()).await {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".into());
                Err(self.err(
                    ErrorKind::Internal,
                    format!(
                        "the driver panicked during {what} ({msg}); it is skipped for this sync"
                    ),
                ))
            }
            Err(_) => Err(self.err(
                ErrorKind::Timeout,
                format!(
                    "{what} took longer than the timeout of {} s",
                    self.timeout.as_secs_f64()
                ),
            )),
        }
    }

    /// Keeps what the driver listed, to compare what it reads back with.
    fn listed(&self, hashes: &Hashes) {
        let mut session = self.session();
        // Only a sync compares what it reads with what it listed. A server shares one checked
        // store among clients and begins no sync: one client's listing must not be held
        // against another's read of a task changed in between.
        if session.access.is_some() {
            session.listed = Some(hashes.clone());
        }
    }

    /// Checks one task an upstream answered for `id`.
    fn check_task(
        &self,
        id: &TaskId,
        task: &Task,
        listed: Option<&ContentHash>,
    ) -> Result<(), DriverError> {
        if task.id() != id {
            return Err(self.err(
                ErrorKind::Protocol,
                format!(
                    "answered task '{}' for task '{id}'; the local state is kept",
                    task.id()
                ),
            ));
        }
        let bytes = task.canonical_bytes();
        if bytes.len() > self.max_task_bytes {
            return Err(self.err(
                ErrorKind::InvalidData,
                format!(
                    "task '{id}' is {} bytes, above the limit of {} bytes (max_task_bytes)",
                    bytes.len(),
                    self.max_task_bytes
                ),
            ));
        }
        if let Some(listed) = listed {
            let actual = ContentHash::of_bytes(&bytes);
            if &actual != listed {
                return Err(self.err(
                    ErrorKind::Protocol,
                    format!(
                        "task '{id}' was listed with hash {listed} but read back with hash {actual}; the local state is kept"
                    ),
                ));
            }
        }
        task.check_clocks(chrono::Utc::now())
            .map_err(|e| self.err(ErrorKind::InvalidData, e.to_string()))
    }
}

#[async_trait]
impl Driver for Checked {
    fn info(&self) -> DriverInfo {
        self.inner.info()
    }

    async fn begin(&self, access: Access) -> Result<(), DriverError> {
        *self.session() = Session {
            access: Some(access),
            listed: None,
        };
        self.guard("the start of the sync", self.inner.begin(access))
            .await
    }

    async fn hashes(&self, known_root: Option<&ContentHash>) -> Result<Listing, DriverError> {
        let listing = self.guard("listing", self.inner.hashes(known_root)).await?;
        if let Listing::Changed(inventory) = &listing {
            self.listed(&inventory.hashes);
        }
        Ok(listing)
    }

    async fn buckets(
        &self,
        known_root: Option<&ContentHash>,
    ) -> Result<BucketListing, DriverError> {
        let listing = self
            .guard("listing buckets", self.inner.buckets(known_root))
            .await?;
        match &listing {
            BucketListing::Changed(b) => {
                if let Some(other) = b.hashes.keys().find(|k| k.depth() != b.depth) {
                    return Err(self.err(
                        ErrorKind::Protocol,
                        format!(
                            "listed bucket '{other}' among the buckets of depth {}",
                            b.depth
                        ),
                    ));
                }
            }
            BucketListing::Full(inventory) => self.listed(&inventory.hashes),
            BucketListing::Unchanged => {}
        }
        Ok(listing)
    }

    async fn hashes_in(&self, buckets: &BTreeSet<Bucket>) -> Result<Inventory, DriverError> {
        let inventory = self
            .guard("listing buckets' tasks", self.inner.hashes_in(buckets))
            .await?;
        if let Some(id) = inventory.hashes.keys().find(|id| !in_any(buckets, id)) {
            return Err(self.err(
                ErrorKind::Protocol,
                format!("listed task '{id}', which is in none of the buckets asked"),
            ));
        }
        self.listed(&inventory.hashes);
        Ok(inventory)
    }

    async fn resolve(&self, batch: Batch) -> Result<Answers, DriverError> {
        let (reads, listed) = {
            let session = self.session();
            if session.access == Some(Access::Read) && batch.values().any(Option::is_some) {
                return Err(self.err(
                    ErrorKind::InvalidRequest,
                    "a read-only sync (dry run) tried to write; nothing was sent".into(),
                ));
            }
            let reads: BTreeSet<TaskId> = batch
                .iter()
                .filter(|(_, s)| s.is_none())
                .map(|(id, _)| id.clone())
                .collect();
            (reads, session.listed.clone())
        };
        let asked: Vec<TaskId> = batch.keys().cloned().collect();
        let mut answers = self
            .guard("resolving tasks", self.inner.resolve(batch))
            .await?;
        let mut listed = listed;
        let differs = reads.iter().any(|id| {
            match (answers.get(id), listed.as_ref().and_then(|l| l.get(id))) {
                (Some(Ok(Some(task))), Some(hash)) => {
                    &ContentHash::of_bytes(&task.canonical_bytes()) != hash
                }
                _ => false,
            }
        });
        if differs {
            // Another client may have written between the listing and this read (a shared
            // upstream): list once more. A driver whose listing disagrees with what it answers
            // still fails those tasks by name.
            if let Ok(Listing::Changed(inventory)) =
                self.guard("listing", self.inner.hashes(None)).await
            {
                self.session().listed = Some(inventory.hashes.clone());
                listed = Some(inventory.hashes);
            }
        }
        let mut checked = Answers::new();
        for id in asked {
            let answer = match answers.remove(&id) {
                None => Err(self.err(
                    ErrorKind::Protocol,
                    format!("gave no answer for task '{id}'; the local state is kept"),
                )),
                Some(Ok(Some(task))) => {
                    let listed = reads
                        .contains(&id)
                        .then(|| listed.as_ref().and_then(|l| l.get(&id)))
                        .flatten();
                    self.check_task(&id, &task, listed).map(|()| Some(task))
                }
                Some(other) => other,
            };
            checked.insert(id, answer);
        }
        for (id, _) in answers {
            let e = self.err(
                ErrorKind::Protocol,
                format!("answered task '{id}', which was not asked; the answer is ignored"),
            );
            checked.insert(id, Err(e));
        }
        Ok(checked)
    }

    async fn finish(&self) -> Result<(), DriverError> {
        if self.session().access == Some(Access::Read) {
            return Ok(());
        }
        self.guard("finishing the sync", self.inner.finish()).await
    }

    async fn check(&self) -> Result<Health, DriverError> {
        self.guard("the health check", self.inner.check()).await
    }

    fn take_created(&self) -> Vec<String> {
        self.inner.take_created()
    }

    /// Not bounded by the timeout (waiting is its job); a panic is an error.
    async fn wait_for_change(&self) -> Result<Watch, DriverError> {
        match AssertUnwindSafe(self.inner.wait_for_change())
            .catch_unwind()
            .await
        {
            Ok(answer) => answer,
            Err(_) => Err(self.err(
                ErrorKind::Internal,
                "the driver panicked while watching for changes; it is polled instead".into(),
            )),
        }
    }
}
