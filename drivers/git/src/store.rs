//! The git [`Store`]: task files in a working clone, committed and pushed once per sync.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hypertask_core::files::Durability;
use hypertask_core::{
    async_trait, decide, redact_url, root_hash, Access, Capabilities, ContentHash, Decision,
    DriverError, DriverInfo, Entry, ErrorKind, Gets, Hashes, Health, Problem, PutOutcome, Puts,
    Store, StoreInventory, Stored, Task, TaskId, Version, Write,
};

use crate::commit::Committed;
use crate::config::GitConfig;
use crate::error;
use crate::preview::Preview;
use crate::repo::{parse_task, Session, WorkingClone};
use crate::root::Record;
use crate::tree::task_rel_path;
use crate::KIND;

/// Tasks as `tasks/<id>.json` in a git working clone, optionally synced through a remote.
///
/// One sync is one transaction with the remote:
/// - `begin(Write)` fetches and brings the remote's changes in (a fast-forward, or a merge
///   commit whose task files are merged with the core rule); `begin(Read)` (a dry run) only
///   looks: it computes what the clone would hold, writing nothing to the clone or the remote.
/// - `list` and `get` read the working tree's task files (plus, in a dry run, that view).
/// - `put` compare-and-swaps against the working tree's files under the clone's process lock
///   and writes them (atomically, not yet flushed); nothing is committed yet.
/// - `finish` makes one commit of everything the sync wrote and of task files edited by hand,
///   saying how many tasks changed (a large change's blobs in one pack), flushes the files
///   and objects once before the branch moves to it, and pushes it; a rejected push fetches, merges per task and
///   pushes again (bounded). With nothing to commit or push it does nothing.
///
/// A caller that never calls `begin` gets a writing sync begun by its first call.
#[derive(Debug, Clone)]
pub struct GitStore {
    clone: Arc<WorkingClone>,
    state: Arc<Mutex<SyncState>>,
}

/// Where the current sync is.
#[derive(Debug, Default)]
struct SyncState {
    /// The current sync's access; `None` before `begin` and after `finish`.
    access: Option<Access>,
    /// A dry run's view of the remote's changes.
    preview: Option<Arc<Preview>>,
    /// Task files written since `begin`, committed by `finish`.
    staged: BTreeSet<TaskId>,
    /// Every task's hash as last listed in this writing sync (kept up to date by `put`), when
    /// the listing had no problems: recorded by `finish` as the root of what it committed.
    listed: Option<Hashes>,
    /// The record `root` found valid, its listing not read yet (`listed` takes it over when
    /// the sync needs it).
    record: Option<Record>,
    /// `root` found the recorded root valid (nothing changed) and nothing was written since.
    clean: bool,
    /// The task files `root`'s pass over the working tree found edited by hand (new, edited
    /// or replaced), committed by `finish` without looking at every file again; `None` when
    /// no pass was made. An edit made after that pass is committed by the next sync, whose
    /// pass finds it (the record of the root is only used while nothing differs).
    hand_edited: Option<Vec<TaskId>>,
}

impl SyncState {
    /// The listing of this sync: the one made (and kept up to date) in it, or else the valid
    /// record's, read now. A record whose listing turns out damaged is dropped, and the sync
    /// is no longer taken as clean (its end records a fresh listing).
    fn recorded_listing(&mut self) -> Option<&Hashes> {
        if self.listed.is_none() {
            if let Some(record) = self.record.take() {
                self.listed = record.listing();
                self.clean &= self.listed.is_some();
            }
        }
        self.listed.as_ref()
    }
}

impl GitStore {
    /// The store of instance `name` with its options; `data_dir` hosts the default clone path.
    /// Fetches and pushes may take core's default timeout, task files core's default size
    /// limit (see [`GitStore::with_limits`]). Nothing is touched on disk until the first
    /// operation.
    pub fn new(name: &str, config: &GitConfig, data_dir: &Path) -> Result<GitStore, DriverError> {
        let settings = config.settle(name, data_dir)?;
        Ok(GitStore {
            clone: Arc::new(WorkingClone::new(name.to_owned(), settings)),
            state: Arc::default(),
        })
    }

    /// The same store with `timeout` for each fetch and push and `max_task_bytes` for each
    /// task file read or written (a driver table's `timeout` and `max_task_bytes`).
    pub fn with_limits(self, timeout: Duration, max_task_bytes: usize) -> GitStore {
        self.with_settings(|s| {
            s.timeout = timeout;
            s.max_task_bytes = max_task_bytes as u64;
        })
    }

    /// The same store flushing the clone's task files as `durability` says (default
    /// [`Durability::Batch`]).
    pub fn with_durability(self, durability: Durability) -> GitStore {
        self.with_settings(|s| s.durability = durability)
    }

    fn with_settings(self, change: impl FnOnce(&mut crate::config::Settings)) -> GitStore {
        let mut settings = self.clone.settings.clone();
        change(&mut settings);
        GitStore {
            clone: Arc::new(WorkingClone::new(self.clone.name.clone(), settings)),
            state: Arc::default(),
        }
    }

    /// The working clone's directory.
    pub fn path(&self) -> &Path {
        &self.clone.settings.path
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SyncState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the opened, locked clone on the blocking pool.
    async fn run<T, F>(&self, op: &'static str, f: F) -> Result<T, DriverError>
    where
        T: Send + 'static,
        F: FnOnce(&Session<'_>, &WorkingClone) -> Result<T, DriverError> + Send + 'static,
    {
        let clone = self.clone.clone();
        hypertask_core::run_blocking(&self.clone.name, move || {
            let start = std::time::Instant::now();
            let session = clone.session()?;
            let out = f(&session, &clone);
            tracing::debug!(driver = %clone.name, op, ms = start.elapsed().as_millis() as u64, "git operation done");
            out
        })
        .await
    }

    /// The current sync's access and dry-run view, beginning a writing sync when none was.
    async fn begun(&self) -> Result<(Access, Option<Arc<Preview>>), DriverError> {
        let current = {
            let s = self.state();
            s.access.map(|a| (a, s.preview.clone()))
        };
        match current {
            Some(c) => Ok(c),
            None => {
                self.begin(Access::Write).await?;
                Ok((Access::Write, None))
            }
        }
    }
}

#[async_trait]
impl Store for GitStore {
    fn info(&self) -> DriverInfo {
        DriverInfo {
            kind: KIND.to_owned(),
            name: self.clone.name.clone(),
            capabilities: Capabilities {
                max_batch: hypertask_core::DEFAULT_BATCH,
                cheap_root: true,
                atomic_writes: true,
                remote: self.clone.settings.remote.is_some(),
                buckets: false,
            },
        }
    }

    async fn begin(&self, access: Access) -> Result<(), DriverError> {
        let preview = match access {
            Access::Read => Some(Arc::new(
                self.run("begin", |session, _| session.preview()).await?,
            )),
            Access::Write => {
                self.run("begin", |session, _| session.catch_up()).await?;
                // The task files `put` writes are flushed once, by `finish`, before the
                // commit that records them moves the branch.
                self.clone.tasks.defer_flush();
                None
            }
        };
        *self.state() = SyncState {
            access: Some(access),
            preview,
            ..SyncState::default()
        };
        Ok(())
    }

    async fn root(&self) -> Result<Option<ContentHash>, DriverError> {
        let (access, preview) = self.begun().await?;
        if preview.is_some_and(|p| !p.changes.is_empty()) {
            return Ok(None);
        }
        if access == Access::Write {
            // Listed in this sync and kept up to date by every put since: the confirming
            // pass of a sync needs no second listing.
            let s = self.state();
            if let Some(listed) = &s.listed {
                return Ok(Some(root_hash(listed)));
            }
            if let Some(record) = &s.record {
                return Ok(Some(record.root.clone()));
            }
        }
        let writing = access == Access::Write;
        let check = self
            .run("root", move |session, _| session.recorded_root(writing))
            .await?;
        let root = check.recorded.as_ref().map(|record| record.root.clone());
        if writing {
            let mut s = self.state();
            s.hand_edited = check.status.map(|status| status.changed);
            if let Some(record) = check.recorded {
                s.clean = true;
                s.record = Some(record);
            }
        }
        Ok(root)
    }

    async fn list(&self) -> Result<StoreInventory, DriverError> {
        let (access, preview) = self.begun().await?;
        if access == Access::Write {
            // Listed (or read from a valid record) in this sync, kept up to date by every put.
            if let Some(listed) = self.state().recorded_listing() {
                return Ok(StoreInventory {
                    entries: listed
                        .iter()
                        .map(|(id, hash)| (id.clone(), entry(hash.clone())))
                        .collect(),
                    problems: Vec::new(),
                });
            }
        }
        let inventory = self
            .run("list", move |_, clone| {
                let scan = clone
                    .tasks
                    .scan()
                    .map_err(|e| error::io(&clone.name, clone.tasks.dir().display(), e))?;
                let mut inventory = StoreInventory {
                    entries: scan
                        .hashes
                        .into_iter()
                        .map(|(id, hash)| (id, entry(hash)))
                        .collect(),
                    problems: scan
                        .problems
                        .into_iter()
                        .map(|p| Problem {
                            error: DriverError::new(
                                &clone.name,
                                ErrorKind::InvalidData,
                                format!("{p}; left untouched"),
                            ),
                            id: p.id,
                        })
                        .collect(),
                };
                if let Some(preview) = preview {
                    for (id, bytes) in &preview.changes {
                        inventory.problems.retain(|p| p.id.as_ref() != Some(id));
                        inventory.entries.remove(id);
                        match bytes.as_deref().map(|b| parse_task(id, b)) {
                            None => {}
                            Some(Ok(task)) => {
                                inventory.entries.insert(id.clone(), entry(task.hash()));
                            }
                            Some(Err(())) => inventory.problems.push(Problem {
                                error: unparsable(&clone.name, id),
                                id: Some(id.clone()),
                            }),
                        }
                    }
                }
                Ok(inventory)
            })
            .await?;
        if access == Access::Write {
            let listed = inventory.problems.is_empty().then(|| {
                inventory
                    .entries
                    .iter()
                    .map(|(id, e)| (id.clone(), e.hash.clone()))
                    .collect()
            });
            self.state().listed = listed;
        }
        Ok(inventory)
    }

    async fn get(&self, ids: &[TaskId]) -> Result<Gets, DriverError> {
        let (_, preview) = self.begun().await?;
        let ids = ids.to_vec();
        self.run("get", move |_, clone| {
            Ok(ids
                .iter()
                .map(|id| {
                    let seen = preview.as_ref().and_then(|p| p.changes.get(id));
                    let state = match seen {
                        Some(None) => Ok(None),
                        Some(Some(bytes)) => parse_task(id, bytes)
                            .map(Some)
                            .map_err(|()| unparsable(&clone.name, id)),
                        None => clone.tasks.read(id).map_err(|e| e.for_driver(&clone.name)),
                    };
                    let stored = state.map(|t| {
                        t.map(|task| Stored {
                            version: Version::of_hash(&task.hash()),
                            task,
                        })
                    });
                    (id.clone(), stored)
                })
                .collect())
        })
        .await
    }

    async fn put(&self, writes: Vec<Write>) -> Result<Puts, DriverError> {
        let (access, _) = self.begun().await?;
        if access == Access::Read {
            return Err(DriverError::new(
                &self.clone.name,
                ErrorKind::InvalidRequest,
                "a read-only sync (dry run) tried to write",
            ));
        }
        let written = self
            .run("put", move |_, clone| {
                let mut outcomes = Puts::new();
                let mut batch: Vec<Task> = Vec::new();
                for w in writes {
                    let id = w.task.id().clone();
                    let current = match clone.tasks.read(&id) {
                        Ok(c) => c.as_ref().map(Entry::of_hash),
                        Err(e) => {
                            outcomes.insert(id, Err(e.for_driver(&clone.name)));
                            continue;
                        }
                    };
                    match decide(current.as_ref(), &w) {
                        Decision::Unchanged(version) => {
                            outcomes.insert(id, Ok(PutOutcome::Written(version)));
                        }
                        Decision::Conflict => {
                            outcomes.insert(id, Ok(PutOutcome::Conflict));
                        }
                        Decision::Write => {
                            let written = Version::of_hash(&w.hash);
                            outcomes.insert(id, Ok(PutOutcome::Written(written)));
                            batch.push(w.task);
                        }
                    }
                }
                if !batch.is_empty() {
                    clone.tasks.write_batch(&batch).map_err(|e| {
                        error::io(
                            &clone.name,
                            format!("writing to {}", clone.tasks.dir().display()),
                            e,
                        )
                    })?;
                    tracing::debug!(driver = %clone.name, files = ?batch.iter().map(|t| task_rel_path(t.id())).collect::<Vec<_>>(), "written, committed at the end of the sync");
                }
                let ids: Vec<(TaskId, ContentHash)> =
                    batch.iter().map(|t| (t.id().clone(), t.hash())).collect();
                Ok((outcomes, ids))
            })
            .await?;
        let (outcomes, ids) = written;
        let mut s = self.state();
        // The writes mend the listing: read the record's now if only it holds one.
        s.recorded_listing();
        s.clean = false;
        for (id, hash) in ids {
            if let Some(listed) = &mut s.listed {
                listed.insert(id.clone(), hash);
            }
            s.staged.insert(id);
        }
        Ok(outcomes)
    }

    async fn finish(&self) -> Result<(), DriverError> {
        let mut state = std::mem::take(&mut *self.state());
        if state.access == Some(Access::Read) {
            return Ok(());
        }
        self.run("finish", move |session, _| {
            let head = |s: &Session<'_>| Ok::<_, DriverError>(s.head()?.map(|c| c.id()));
            let before = head(session)?;
            let staged: Vec<TaskId> = std::mem::take(&mut state.staged).into_iter().collect();
            let committed = if state.clean && staged.is_empty() {
                // The recorded root said nothing changed, and nothing was written since.
                Committed::default()
            } else {
                session.commit(&staged, state.hand_edited.take())?
            };
            // Files written that the commit did not need (or none) are flushed all the same.
            session
                .clone
                .tasks
                .flush()
                .map_err(|e| error::io(session.name(), session.clone.tasks.dir().display(), e))?;
            let after_commit = head(session)?;
            session.push()?;
            let merged = head(session)? != after_commit;
            // When nothing changed at all, the record stays valid as it is (its listing
            // unread when the sync did not need it): `clean` means a valid record was found.
            let unchanged = state.clean && staged.is_empty() && !merged && before == after_commit;
            if !unchanged {
                match state.recorded_listing() {
                    // The listing plus the writes is exactly what was committed.
                    Some(listed) if !committed.by_hand && !merged => session.record_root(listed)?,
                    _ => session.forget_root(),
                }
            }
            Ok(())
        })
        .await
    }

    async fn check(&self) -> Result<Health, DriverError> {
        self.run("check", |session, clone| {
            session.probe_writable()?;
            session.probe()?;
            let scan = clone
                .tasks
                .scan()
                .map_err(|e| error::io(&clone.name, clone.tasks.dir().display(), e))?;
            let remote = match &clone.settings.remote {
                Some(r) => format!(", remote {} reachable", redact_url(&r.url())),
                None => ", no remote".to_owned(),
            };
            Ok(Health {
                ok: true,
                detail: format!(
                    "git clone at {} on branch '{}'{remote}, {} tasks{}",
                    clone.settings.path.display(),
                    clone.settings.branch,
                    scan.hashes.len(),
                    match scan.problems.len() {
                        0 => String::new(),
                        n => format!(", {n} unreadable task files"),
                    }
                ),
            })
        })
        .await
    }

    fn take_created(&self) -> Vec<String> {
        self.clone.take_created()
    }
}

fn entry(hash: ContentHash) -> Entry {
    Entry {
        version: Version::of_hash(&hash),
        hash,
    }
}

fn unparsable(name: &str, id: &TaskId) -> DriverError {
    DriverError::new(
        name,
        ErrorKind::InvalidData,
        format!(
            "{} on the remote is not a valid task; left untouched",
            task_rel_path(id)
        ),
    )
}
