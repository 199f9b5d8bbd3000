//! The sync engine (DESIGN.md §6): reconciles the local cache with any number of drivers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde::Serialize;

use crate::cache::{CacheError, CacheLock, ConflictRecord, Replica, DEFAULT_LOCK_TIMEOUT};
use crate::driver::{Driver, Listing};
use crate::error::DriverError;
use crate::hash::{root_hash, ContentHash, Hashes};
use crate::merge::{lost_values, merge};
use crate::task::{format_timestamp, Task, TaskId};

/// How a sync behaves.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Report what would change; write nothing anywhere.
    pub dry_run: bool,
    /// Go past the mass-deletion guard.
    pub force: bool,
    /// Stop before newly tombstoning more than this share of the live tasks on either side.
    pub max_delete_percent: u32,
    /// The guard ignores syncs that tombstone fewer tasks than this (deleting 1 of 2 tasks is
    /// ordinary use, not an accident).
    pub delete_guard_min: usize,
    /// Largest batch sent to a driver (capped by the driver's own `max_batch`).
    pub batch_size: usize,
    /// Passes per driver until its map equals the cache's.
    pub max_passes: usize,
    /// Rounds over all drivers until one changes nothing.
    pub max_rounds: usize,
    /// How long to wait for another hypertask process holding the cache.
    pub lock_timeout: Duration,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            dry_run: false,
            force: false,
            max_delete_percent: 50,
            delete_guard_min: 10,
            batch_size: 1000,
            max_passes: 3,
            max_rounds: 4,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        }
    }
}

/// What happened with one driver.
#[derive(Debug, Default, Serialize)]
pub struct DriverReport {
    /// Instance name.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// Tasks taken from the driver unchanged.
    pub pulled: usize,
    /// Tasks sent to the driver unchanged.
    pub pushed: usize,
    /// Tasks that both sides changed, merged.
    pub merged: usize,
    /// Tasks that failed alone, each naming what and where.
    pub failed: Vec<String>,
    /// Upstream entries skipped as invalid, each named.
    pub skipped: Vec<String>,
    /// The error that stopped this driver, if any.
    pub error: Option<String>,
    /// Whether a retry later may help with `error`.
    pub retryable: bool,
}

impl DriverReport {
    /// Whether anything went wrong with this driver.
    pub fn is_ok(&self) -> bool {
        self.error.is_none() && self.failed.is_empty() && self.skipped.is_empty()
    }

    /// Counts one task by which sides it changed.
    fn count(&mut self, changed_locally: bool, changed_upstream: bool) {
        match (changed_locally, changed_upstream) {
            (true, true) => self.merged += 1,
            (true, false) => self.pulled += 1,
            (false, true) => self.pushed += 1,
            (false, false) => {}
        }
    }

    fn changes(&self) -> usize {
        self.pulled + self.pushed + self.merged
    }
}

/// What a whole sync did.
#[derive(Debug, Default, Serialize)]
pub struct SyncReport {
    /// One entry per driver, in configuration order.
    pub drivers: Vec<DriverReport>,
    /// Local cache files skipped as invalid, each named.
    pub local_skipped: Vec<String>,
    /// Rounds over all drivers.
    pub rounds: usize,
    /// Whether this was a dry run (nothing written).
    pub dry_run: bool,
}

impl SyncReport {
    /// Success: every driver synced and nothing was skipped.
    pub fn is_ok(&self) -> bool {
        self.local_skipped.is_empty() && self.drivers.iter().all(DriverReport::is_ok)
    }
}

/// Receives progress, for a progress bar.
pub trait Progress: Send + Sync {
    /// A driver starts a pass over `total` differing tasks.
    fn start(&self, driver: &str, total: usize);
    /// `n` more tasks are done.
    fn advance(&self, n: usize);
    /// The pass is over.
    fn finish(&self);
}

/// No progress display.
#[derive(Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: usize) {}
    fn advance(&self, _: usize) {}
    fn finish(&self) {}
}

/// One differing task: both sides' states and their merge.
struct Planned {
    local: Option<Task>,
    remote: Option<Task>,
    merged: Task,
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

/// Reconciles a [`Replica`] with drivers.
pub struct Engine {
    replica: Replica,
    drivers: Vec<Arc<dyn Driver>>,
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
    /// An engine over `replica` and `drivers`.
    pub fn new(replica: Replica, drivers: Vec<Arc<dyn Driver>>, options: SyncOptions) -> Self {
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
        let lock = if self.options.dry_run {
            None
        } else {
            let replica = self.replica.clone();
            let timeout = self.options.lock_timeout;
            Some(blocking(move || replica.lock(timeout)).await?)
        };
        let mut report = SyncReport {
            dry_run: self.options.dry_run,
            drivers: self
                .drivers
                .iter()
                .map(|d| {
                    let info = d.info();
                    DriverReport {
                        name: info.name,
                        kind: info.kind,
                        ..Default::default()
                    }
                })
                .collect(),
            ..Default::default()
        };
        let started = format_timestamp(Utc::now()).unwrap_or_default();
        let mut local_skipped = BTreeSet::new();
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
                // Skipped and failed entries are re-found each round; keep the latest.
                rep.failed.clear();
                rep.skipped.clear();
                match self
                    .sync_driver(
                        driver.as_ref(),
                        lock.as_ref(),
                        &started,
                        rep,
                        &mut local_skipped,
                    )
                    .await
                {
                    Ok(root) => {
                        local_root = root.clone();
                        *agreed = root;
                    }
                    Err(Stop::Driver(e)) => {
                        rep.retryable = e.is_retryable();
                        rep.error = Some(e.to_string());
                    }
                    Err(Stop::Guard(msg)) => rep.error = Some(msg),
                    Err(Stop::Cache(e)) => return Err(e),
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
        report.local_skipped = local_skipped.into_iter().collect();
        Ok(report)
    }

    async fn sync_driver(
        &self,
        driver: &dyn Driver,
        lock: Option<&CacheLock>,
        started: &str,
        rep: &mut DriverReport,
        local_skipped: &mut BTreeSet<String>,
    ) -> Result<Option<ContentHash>, Stop> {
        let name = driver.info().name;
        let batch_size = self
            .options
            .batch_size
            .min(driver.info().capabilities.max_batch)
            .max(1);
        let mut synced = None;
        let mut touched = false;
        for _pass in 0..self.options.max_passes {
            let replica = self.replica.clone();
            let scan = blocking(move || replica.scan()).await?;
            let mut excluded: BTreeSet<TaskId> = BTreeSet::new();
            for p in &scan.problems {
                local_skipped.insert(format!("local cache: {p}"));
                excluded.extend(p.id.clone());
            }
            let local = scan.hashes;
            let root = root_hash(&local);
            let inventory = match driver.hashes(Some(&root)).await? {
                Listing::Unchanged => {
                    synced = Some(root);
                    break;
                }
                Listing::Changed(inv) => inv,
            };
            rep.skipped.clear();
            for p in inventory.problems {
                rep.skipped.push(p.error.to_string());
                excluded.extend(p.id);
            }
            let remote = inventory.hashes;
            let diff: Vec<TaskId> = differing(&local, &remote)
                .filter(|id| !excluded.contains(*id))
                .cloned()
                .collect();
            if diff.is_empty() {
                synced = Some(root);
                break;
            }
            touched = true;
            self.progress.start(&name, diff.len());
            let outcome = self
                .reconcile(driver, lock, &local, &remote, diff, batch_size, rep)
                .await;
            self.progress.finish();
            outcome?;
            if lock.is_none() {
                // A dry run stops after one pass: it wrote nothing, so another would repeat it.
                return Ok(None);
            }
        }
        // A task that failed in one pass is tried, and fails, again in the next: report it once.
        rep.failed.sort();
        rep.failed.dedup();
        if touched {
            driver.finish().await?;
        }
        if synced.is_none() {
            // Bounded passes ran out while the upstream kept changing; the next sync goes on.
            tracing::warn!(driver = %name, "upstream still changing after {} passes", self.options.max_passes);
        }
        if let (Some(lock), true) = (lock, rep.failed.is_empty() && rep.skipped.is_empty()) {
            let (replica, lock) = (self.replica.clone(), lock.clone());
            let started = started.to_owned();
            blocking(move || replica.set_last_sync(&lock, &name, &started)).await?;
        }
        Ok(synced)
    }

    /// One pass over the differing tasks: read the driver's states, merge, guard, push, store.
    /// Without a lock (a dry run) it counts what would change and writes nothing.
    #[allow(clippy::too_many_arguments)]
    async fn reconcile(
        &self,
        driver: &dyn Driver,
        lock: Option<&CacheLock>,
        local_hashes: &Hashes,
        remote_hashes: &Hashes,
        diff: Vec<TaskId>,
        batch_size: usize,
        rep: &mut DriverReport,
    ) -> Result<(), Stop> {
        let name = driver.info().name;
        let replica = self.replica.clone();
        let ids = diff.clone();
        let local_states = blocking(move || {
            ids.into_iter()
                .map(|id| {
                    let t = replica.get(&id);
                    (id, t)
                })
                .collect::<Vec<_>>()
        })
        .await;
        let mut local: BTreeMap<TaskId, Task> = BTreeMap::new();
        for (id, t) in local_states {
            match t {
                Ok(Some(t)) => {
                    local.insert(id, t);
                }
                Ok(None) => {}
                Err(e) => rep.failed.push(format!("local cache: {e}")),
            }
        }

        // Read the driver's state of every task it holds that differs (resolving `None` writes
        // nothing), so the merge, the guard and the dry run know the outcome before any write.
        let to_read: Vec<TaskId> = diff
            .iter()
            .filter(|id| remote_hashes.contains_key(*id))
            .cloned()
            .collect();
        let mut remote: BTreeMap<TaskId, Task> = BTreeMap::new();
        let mut failed_ids = BTreeSet::new();
        for chunk in to_read.chunks(batch_size) {
            let answers = driver
                .resolve(chunk.iter().map(|id| (id.clone(), None)).collect())
                .await?;
            for (id, r) in answers {
                match r {
                    Ok(Some(t)) => {
                        remote.insert(id, t);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        rep.failed.push(e.to_string());
                        failed_ids.insert(id);
                    }
                }
            }
            if local.is_empty() {
                self.progress.advance(chunk.len());
            }
        }

        let mut plan: Vec<Planned> = Vec::new();
        for id in diff {
            if failed_ids.contains(&id) {
                continue;
            }
            let (local, remote) = (local.remove(&id), remote.remove(&id));
            match merge(local.as_ref(), remote.as_ref()) {
                Ok(Some(merged)) => plan.push(Planned {
                    local,
                    remote,
                    merged,
                }),
                Ok(None) => {}
                Err(e) => rep.failed.push(format!("driver '{name}': {e}")),
            }
        }

        self.guard(&name, local_hashes, remote_hashes, &plan)
            .await?;
        let Some(lock) = lock else {
            for p in &plan {
                rep.count(
                    p.local.as_ref() != Some(&p.merged),
                    p.remote.as_ref() != Some(&p.merged),
                );
            }
            return Ok(());
        };

        // Push what the driver lacks; take what it answers (it may hold even newer states).
        // Each outcome: (local state before, final state, whether it was pushed).
        let mut results: Vec<(Option<Task>, Task, bool)> = Vec::new();
        let (push, pull): (Vec<_>, Vec<_>) = plan
            .into_iter()
            .partition(|p| p.remote.as_ref() != Some(&p.merged));
        for p in pull {
            results.push((p.local, p.merged, false));
        }
        for chunk in push.chunks(batch_size) {
            let batch = chunk
                .iter()
                .map(|p| (p.merged.id().clone(), Some(p.merged.clone())))
                .collect();
            let answers = driver.resolve(batch).await?;
            for (p, (id, r)) in chunk.iter().zip(answers) {
                match r {
                    Ok(Some(t)) => results.push((p.local.clone(), t, true)),
                    Ok(None) => rep.failed.push(format!(
                        "driver '{name}': task '{id}' was sent but the driver answered nothing"
                    )),
                    Err(e) => rep.failed.push(e.to_string()),
                }
            }
            self.progress.advance(chunk.len());
        }

        // Store the outcome locally, journaling local values that lost although they were
        // edited after the last successful sync with this driver.
        let last_sync = {
            let replica = self.replica.clone();
            let name = name.clone();
            blocking(move || replica.last_sync(&name)).await
        };
        let now = format_timestamp(Utc::now()).unwrap_or_default();
        let mut writes = Vec::new();
        let mut conflicts = Vec::new();
        for (local, t, pushed) in results {
            let changed_locally = local.as_ref() != Some(&t);
            rep.count(changed_locally, pushed);
            if !changed_locally {
                continue;
            }
            for lost in local.iter().flat_map(|l| {
                lost_values(l, &t).into_iter().filter(|lost| {
                    let clock = l.clocks().get(&lost.field).and_then(|c| c.as_str());
                    clock.is_some_and(|c| last_sync.as_deref().is_none_or(|s| c >= s))
                })
            }) {
                conflicts.push(ConflictRecord {
                    at: now.clone(),
                    driver: name.clone(),
                    task: t.id().clone(),
                    field: lost.field,
                    lost: lost.lost,
                    kept: lost.kept,
                });
            }
            writes.push(t);
        }
        let (replica, lock) = (self.replica.clone(), lock.clone());
        blocking(move || -> Result<(), CacheError> {
            replica.record_conflicts(&lock, &conflicts)?;
            for chunk in writes.chunks(1000) {
                replica.put(&lock, chunk)?;
            }
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// Refuses a pass that would newly tombstone too many live tasks on either side.
    async fn guard(
        &self,
        name: &str,
        local_hashes: &Hashes,
        remote_hashes: &Hashes,
        plan: &[Planned],
    ) -> Result<(), Stop> {
        if self.options.force {
            return Ok(());
        }
        let newly = |side: fn(&Planned) -> Option<&Task>| {
            plan.iter()
                .filter(|p| side(p).is_some_and(|t| !t.is_deleted()) && p.merged.is_deleted())
                .count()
        };
        let (local_n, remote_n) = (newly(|p| p.local.as_ref()), newly(|p| p.remote.as_ref()));
        let min = self.options.delete_guard_min;
        // Counting live local tasks reads every file: only when the guard may trip.
        let local_live = if local_n >= min {
            let (replica, ids) = (self.replica.clone(), local_hashes.keys().cloned().collect());
            blocking(move || live_tasks(&replica, ids)).await
        } else {
            local_hashes.len()
        };
        let checks = [
            ("the local cache", local_n, local_live),
            ("the driver", remote_n, remote_hashes.len()),
        ];
        for (side, n, live) in checks {
            let limit = live as u64 * u64::from(self.options.max_delete_percent) / 100;
            if n >= min && n as u64 > limit {
                return Err(Stop::Guard(format!(
                    "driver '{name}': this sync would delete {n} of {live} tasks in {side} \
                     (more than {}%); nothing was written; rerun with --force if that is intended",
                    self.options.max_delete_percent
                )));
            }
        }
        Ok(())
    }
}

/// How many of `ids` are live (not tombstones) in the cache.
fn live_tasks(replica: &Replica, ids: Vec<TaskId>) -> usize {
    ids.iter()
        .filter(|id| {
            replica
                .get(id)
                .ok()
                .flatten()
                .is_some_and(|t| !t.is_deleted())
        })
        .count()
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
    tokio::task::spawn_blocking(f)
        .await
        .expect("blocking cache work panicked")
}
