//! The sync engine (docs/architecture.md): reconciles the local cache with any number of drivers.
//!
//! One pass with one driver is four steps: [`listing`] learns the upstream's map (by bucket when
//! the driver can), [`plan`] reads both sides of every differing task and merges them (pure with
//! respect to the upstream), [`guard`] refuses a mass deletion, and [`apply`] pushes what the
//! driver lacks and stores what the cache lacks.

mod apply;
mod guard;
mod listing;
mod plan;
mod report;
mod status;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::cache::{CacheError, CacheLock, Replica, DEFAULT_LOCK_TIMEOUT};
use crate::checked::Checked;
use crate::driver::{Access, Driver};
use crate::error::DriverError;
use crate::files::Scan;
use crate::hash::{root_hash, ContentHash, Hashes};
use crate::task::{format_timestamp, TaskId};

pub use report::{DriverReport, NoProgress, Progress, SyncReport};
pub use status::DriverStatus;

/// How a sync behaves.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Report what would change; write nothing anywhere.
    pub dry_run: bool,
    /// Go past the mass-deletion guard.
    pub force: bool,
    /// List and check every cache file once, whatever the cache's head record says.
    pub rescan: bool,
    /// Stop before newly tombstoning more than this share of the live tasks on either side.
    pub max_delete_percent: u32,
    /// The guard ignores syncs that tombstone fewer tasks than this (deleting 1 of 2 tasks is
    /// ordinary use, not an accident).
    pub delete_guard_min: usize,
    /// Largest batch of task states sent to a driver (capped by the driver's own
    /// `max_batch`). Reads, which carry ids only, go in batches of the driver's `max_batch`.
    pub batch_size: usize,
    /// Passes per driver until its map equals the cache's.
    pub max_passes: usize,
    /// Rounds over all drivers until one changes nothing.
    pub max_rounds: usize,
    /// How long to wait for another hypertask process holding the cache (or, for the sync
    /// lock, for another sync of the same data directory).
    pub lock_timeout: Duration,
}

/// The default largest batch, and the cache's write chunk.
pub const DEFAULT_BATCH: usize = 1000;

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            dry_run: false,
            force: false,
            rescan: false,
            max_delete_percent: 50,
            delete_guard_min: 10,
            batch_size: DEFAULT_BATCH,
            max_passes: 3,
            max_rounds: 4,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        }
    }
}

/// Why one driver's pass stopped.
enum Stop {
    Driver(DriverError),
    Cache(CacheError),
    Guard(String),
}

impl From<DriverError> for Stop {
    fn from(e: DriverError) -> Self {
        Stop::Driver(e)
    }
}

impl From<CacheError> for Stop {
    fn from(e: CacheError) -> Self {
        Stop::Cache(e)
    }
}

/// What one sync shares between its drivers.
struct Context {
    /// The sync lock, held for the whole sync; `None` in a dry run, which writes nothing. The
    /// cache's write lock is only taken for each write, so edits go on during a sync.
    sync_lock: Option<CacheLock>,
    /// When this sync started: a driver's new sync base when it succeeds.
    started: String,
    /// Local cache files that could not be read, each named once.
    local_skipped: BTreeSet<String>,
    /// The next scan lists every file (`--rescan`), whatever the head record says.
    rescan: bool,
}

/// Reconciles a [`Replica`] with drivers.
pub struct Engine {
    replica: Replica,
    drivers: Vec<Checked>,
    options: SyncOptions,
    progress: Arc<dyn Progress>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("replica", &self.replica)
            .field("drivers", &self.drivers)
            .field("options", &self.options)
            .finish()
    }
}

impl Engine {
    /// An engine over `replica` and `drivers`. Drivers come behind core's checks ([`Checked`],
    /// as [`crate::Registry::build`] makes them), so no answer is acted on unchecked.
    pub fn new(replica: Replica, drivers: Vec<Checked>, options: SyncOptions) -> Self {
        Engine {
            replica,
            drivers,
            options,
            progress: Arc::new(NoProgress),
        }
    }

    /// Reports progress to `progress`.
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = progress;
        self
    }

    /// Syncs with every driver, in rounds, until a whole round changes nothing.
    ///
    /// A failing driver is reported and skipped; the others still sync. Only a failure of the
    /// local cache itself (its lock, its directory) is an `Err`.
    pub async fn sync(&self) -> Result<SyncReport, CacheError> {
        let (access, sync_lock) = if self.options.dry_run {
            (Access::Read, None)
        } else {
            let replica = self.replica.clone();
            let timeout = self.options.lock_timeout;
            let lock = blocking(move || replica.sync_lock(timeout)).await?;
            // The sync's cache writes are flushed once, before anything is recorded.
            self.replica.defer_flush(&lock);
            (Access::Write, Some(lock))
        };
        let mut report = SyncReport::new(&self.drivers, self.options.dry_run);
        let mut cx = Context {
            sync_lock,
            started: format_timestamp(Utc::now()).unwrap_or_default(),
            local_skipped: BTreeSet::new(),
            rescan: self.options.rescan,
        };

        let mut began = vec![false; self.drivers.len()];
        for ((driver, rep), began) in self.drivers.iter().zip(&mut report.drivers).zip(&mut began) {
            match driver.begin(access).await {
                Ok(()) => *began = true,
                Err(e) => rep.fail(&e),
            }
        }

        // The cache's root each driver last agreed with, and the cache's current root as far
        // as the engine knows (it is the only writer while it holds the lock).
        let mut agreed: Vec<Option<ContentHash>> = vec![None; self.drivers.len()];
        let mut local_root: Option<ContentHash> = None;
        for round in 0..self.options.max_rounds {
            report.rounds = round + 1;
            let mut changed = false;
            for ((driver, rep), agreed) in self
                .drivers
                .iter()
                .zip(report.drivers.iter_mut())
                .zip(agreed.iter_mut())
            {
                if rep.error.is_some() {
                    continue;
                }
                if agreed.is_some() && *agreed == local_root {
                    // Nothing changed locally since this driver agreed: no request needed.
                    continue;
                }
                let before = rep.changes();
                match self.sync_driver(&mut cx, driver, rep).await {
                    Ok(root) => {
                        local_root = root.clone();
                        *agreed = root;
                    }
                    Err(Stop::Driver(e)) => rep.fail(&e),
                    Err(Stop::Guard(msg)) => rep.error = Some(msg),
                    Err(Stop::Cache(e)) => {
                        // What was written so far is still made durable; the error stands.
                        if let Err(flush) = self.flush().await {
                            tracing::warn!("{flush}");
                        }
                        return Err(e);
                    }
                }
                if rep.error.is_some() {
                    local_root = None;
                }
                changed |= rep.changes() != before;
            }
            if !changed || self.options.dry_run {
                break;
            }
        }

        for (rep, agreed) in report.drivers.iter_mut().zip(agreed) {
            if rep.error.is_none() {
                rep.agreed_root = agreed;
            }
        }

        if cx.sync_lock.is_some() {
            // The cache's writes reach the disk before any driver commits or anything records
            // this sync (last-sync times, status, the head record).
            self.flush().await?;
            for ((driver, rep), began) in self.drivers.iter().zip(&mut report.drivers).zip(&began) {
                if !began {
                    continue;
                }
                if let Err(e) = driver.finish().await {
                    rep.fail(&e);
                }
                if rep.is_ok() {
                    let (name, started) = (rep.name.clone(), cx.started.clone());
                    self.locked(move |replica, lock| replica.set_last_sync(lock, &name, &started))
                        .await?;
                }
            }
            self.record_status(&report, &cx.started).await;
        }
        for (driver, rep) in self.drivers.iter().zip(&mut report.drivers) {
            rep.created = driver.take_created();
        }
        report.local_skipped = cx.local_skipped.into_iter().collect();
        Ok(report)
    }

    /// Passes over one driver until its map equals the cache's (bounded). Returns the root
    /// both agree on, or `None` when they do not agree yet (dry run, passes ran out).
    async fn sync_driver(
        &self,
        cx: &mut Context,
        driver: &Checked,
        rep: &mut DriverReport,
    ) -> Result<Option<ContentHash>, Stop> {
        let name = driver.info().name;
        let batch_size = self
            .options
            .batch_size
            .min(driver.info().capabilities.max_batch)
            .max(1);
        for _pass in 0..self.options.max_passes {
            // The cache's head record gives its root without a listing while nothing but
            // hypertask changed it: an unchanged upstream then costs one request, no scan.
            let trusted = if cx.rescan {
                None
            } else {
                let replica = self.replica.clone();
                blocking(move || replica.trusted_root()).await
            };
            let (scanned, root) = match trusted {
                Some(root) => (None, root),
                None => {
                    let local = self.scan(cx).await?;
                    let root = root_hash(&local.hashes);
                    (Some(local), root)
                }
            };
            let Some(upstream) = self.list(driver, &root).await? else {
                rep.skipped.clear();
                return Ok(Some(root));
            };
            let local = match scanned {
                Some(local) => local,
                None => self.scan(cx).await?,
            };
            let root = root_hash(&local.hashes);
            let Some(inventory) = self
                .upstream(driver, upstream, &local.hashes, &root)
                .await?
            else {
                rep.skipped.clear();
                return Ok(Some(root));
            };
            let mut excluded: BTreeSet<TaskId> =
                local.problems.iter().filter_map(|p| p.id.clone()).collect();
            rep.skipped = inventory
                .problems
                .iter()
                .map(|p| p.error.to_string())
                .collect();
            excluded.extend(inventory.problems.into_iter().filter_map(|p| p.id));
            // Tombstones purged here stay out of the cache (manage::purge).
            excluded.extend(crate::manage::purge::purged(self.replica.data_dir()));
            let remote = inventory.hashes;
            let diff: Vec<TaskId> = differing(&local.hashes, &remote)
                .filter(|id| !excluded.contains(*id))
                .cloned()
                .collect();
            if diff.is_empty() {
                return Ok(Some(root));
            }
            // Failures are those of the latest pass: a task that failed once and then synced
            // is not a failure.
            rep.failed.clear();
            self.progress.start(&name, diff.len());
            let outcome = self
                .pass(cx, driver, &local.hashes, &remote, diff, batch_size, rep)
                .await;
            self.progress.finish();
            outcome?;
            if cx.sync_lock.is_none() {
                // A dry run stops after one pass: it wrote nothing, so another would repeat it.
                return Ok(None);
            }
        }
        // Bounded passes ran out while the upstream kept changing; the next sync goes on.
        tracing::warn!(driver = %name, "upstream still changing after {} passes", self.options.max_passes);
        Ok(None)
    }

    /// One pass over the differing tasks: plan, guard, apply.
    #[allow(clippy::too_many_arguments)]
    async fn pass(
        &self,
        cx: &mut Context,
        driver: &Checked,
        local: &Hashes,
        remote: &Hashes,
        diff: Vec<TaskId>,
        batch_size: usize,
        rep: &mut DriverReport,
    ) -> Result<(), Stop> {
        let plan = self.plan(cx, driver, remote, diff, batch_size, rep).await?;
        if !self.options.force {
            self.guard(&rep.name, local, remote, &plan).await?;
        }
        if cx.sync_lock.is_none() {
            plan.count(rep);
            return Ok(());
        }
        self.apply(driver, plan, batch_size, rep).await
    }

    /// Scans the cache. In a writing sync, files that cannot be read are moved into the
    /// quarantine (so the upstream's copy can restore the task) and named in the report.
    async fn scan(&self, cx: &mut Context) -> Result<Scan, Stop> {
        let replica = self.replica.clone();
        let rescan = std::mem::take(&mut cx.rescan);
        let mut scan = blocking(move || {
            if rescan {
                replica.rescan()
            } else {
                replica.scan()
            }
        })
        .await?;
        if cx.sync_lock.is_none() {
            for p in &scan.problems {
                cx.local_skipped.insert(format!("local cache: {p}"));
            }
            return Ok(scan);
        };
        for p in std::mem::take(&mut scan.problems) {
            let Some(id) = p.id.clone() else {
                cx.local_skipped.insert(format!("local cache: {p}"));
                continue;
            };
            let note = self.quarantine(&id, &p.message).await?;
            cx.local_skipped.insert(note);
        }
        Ok(scan)
    }

    /// Moves an unreadable cache file aside and says where it went.
    async fn quarantine(&self, id: &TaskId, why: &str) -> Result<String, CacheError> {
        let qid = id.clone();
        let moved = self
            .locked(move |replica, lock| replica.quarantine(lock, &qid))
            .await?;
        Ok(format!(
            "local cache: task '{id}' could not be read ({why}); the file was moved to {} and the task is restored from the upstreams that have it",
            moved.display()
        ))
    }
}

impl Engine {
    /// Records each driver's outcome for `hypertask status`. A failure to record is logged,
    /// never a failure of the sync.
    async fn record_status(&self, report: &SyncReport, started: &str) {
        let ended = format_timestamp(Utc::now()).unwrap_or_default();
        let (data_dir, started) = (self.replica.data_dir().to_owned(), started.to_owned());
        let outcomes: Vec<(String, Option<String>)> = report
            .drivers
            .iter()
            .map(|rep| (rep.name.clone(), DriverStatus::error_of(rep)))
            .collect();
        blocking(move || {
            for (name, error) in outcomes {
                let mut status = DriverStatus::load(&data_dir, &name);
                status.record(error, &started, &ended);
                if let Err(e) = status.save(&data_dir, &name) {
                    tracing::warn!(driver = %name, "cannot record the sync status: {e}");
                }
            }
        })
        .await;
    }

    /// Flushes the cache's writes of this sync (see [`Replica::defer_flush`]).
    async fn flush(&self) -> Result<(), CacheError> {
        let replica = self.replica.clone();
        blocking(move || replica.flush()).await
    }

    /// Runs `f` off the reactor under the cache's write lock, held only for `f`.
    async fn locked<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Replica, &CacheLock) -> Result<T, CacheError> + Send + 'static,
    ) -> Result<T, CacheError> {
        let (replica, timeout) = (self.replica.clone(), self.options.lock_timeout);
        blocking(move || {
            let lock = replica.lock(timeout)?;
            f(&replica, &lock)
        })
        .await
    }
}

/// Ids whose hash differs between two maps, including ids only one side has.
fn differing<'a>(a: &'a Hashes, b: &'a Hashes) -> impl Iterator<Item = &'a TaskId> {
    let only_b = b.keys().filter(|id| !a.contains_key(*id));
    a.iter()
        .filter(|(id, h)| b.get(*id) != Some(*h))
        .map(|(id, _)| id)
        .chain(only_b)
}

/// Runs blocking file I/O off the async reactor.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
