//! The git [`Store`]: task files in a working clone, committed and pushed.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hypertask_core::{
    async_trait, Access, Capabilities, DriverError, DriverInfo, Entry, ErrorKind, Gets, Health,
    Problem, PutOutcome, Puts, Store, StoreInventory, Stored, Task, TaskId, Version, Write,
};

use crate::config::{redact_url, GitConfig};
use crate::error;
use crate::repo::{Session, WorkingClone};
use crate::tree::task_rel_path;
use crate::KIND;

/// Tasks as `tasks/<id>.json` in a git working clone, optionally synced through a remote.
///
/// - `list` and `get` first fetch and bring the remote's changes in (fast-forward, or a merge
///   commit whose task files are merged with the core rule), so every client reads what the
///   others pushed.
/// - `put` compare-and-swaps against the working tree's files under the clone's process lock,
///   commits the batch as one commit and pushes; a rejected push fetches, merges and pushes
///   again.
/// - `finish` commits task files edited by hand in the working tree and pushes anything left
///   unpushed; with nothing to do it does nothing.
#[derive(Debug, Clone)]
pub struct GitStore {
    clone: Arc<WorkingClone>,
    /// The current sync only reads: nothing is fetched into refs, committed or pushed.
    read_only: Arc<AtomicBool>,
}

impl GitStore {
    /// The store of instance `name` with its options; `data_dir` hosts the default clone path.
    /// Nothing is touched on disk until the first operation.
    pub fn new(name: &str, config: &GitConfig, data_dir: &Path) -> Result<GitStore, DriverError> {
        let settings = config.settle(name, data_dir)?;
        Ok(GitStore {
            clone: Arc::new(WorkingClone::new(name.to_owned(), settings)),
            read_only: Arc::default(),
        })
    }

    /// The working clone's directory.
    pub fn path(&self) -> &Path {
        &self.clone.settings.path
    }

    /// Runs `f` on the opened, locked clone on the blocking pool.
    async fn run<T, F>(&self, f: F) -> Result<T, DriverError>
    where
        T: Send + 'static,
        F: FnOnce(&Session<'_>, &WorkingClone) -> Result<T, DriverError> + Send + 'static,
    {
        let clone = self.clone.clone();
        let name = clone.name.clone();
        tokio::task::spawn_blocking(move || {
            let session = clone.session()?;
            f(&session, &clone)
        })
        .await
        .map_err(|e| DriverError::new(name, ErrorKind::Io, format!("git worker failed: {e}")))?
    }
}

#[async_trait]
impl Store for GitStore {
    fn info(&self) -> DriverInfo {
        DriverInfo {
            kind: KIND.to_owned(),
            name: self.clone.name.clone(),
            capabilities: Capabilities {
                max_batch: 1000,
                cheap_root: false,
                atomic_writes: true,
                remote: self.clone.settings.remote.is_some(),
            },
        }
    }

    async fn begin(&self, access: Access) -> Result<(), DriverError> {
        self.read_only
            .store(access == Access::Read, Ordering::SeqCst);
        Ok(())
    }

    async fn list(&self) -> Result<StoreInventory, DriverError> {
        let read_only = self.read_only.load(Ordering::SeqCst);
        self.run(move |session, clone| {
            if !read_only {
                // Task files written but not committed (a sync killed between its write and
                // its commit, or a hand edit) are what the working tree lists, so they must
                // reach the branch and the remote now: no later step would notice them.
                session.commit(&[])?;
            }
            // TODO(git owner): a read-only sync should read the fetched tree without moving
            // local refs; for now it integrates the remote like a writing sync (never pushes).
            session.refresh()?;
            let scan = clone
                .tasks
                .scan()
                .map_err(|e| error::io(&clone.name, clone.tasks.dir().display(), e))?;
            let problems = scan
                .problems
                .into_iter()
                .map(|p| Problem {
                    error: DriverError::new(&clone.name, ErrorKind::InvalidData, p.to_string()),
                    id: p.id,
                })
                .collect();
            Ok(StoreInventory {
                entries: scan
                    .hashes
                    .into_iter()
                    .map(|(id, hash)| {
                        let version = Version::of_hash(&hash);
                        (id, Entry { hash, version })
                    })
                    .collect(),
                problems,
            })
        })
        .await
    }

    async fn get(&self, ids: &[TaskId]) -> Result<Gets, DriverError> {
        let ids = ids.to_vec();
        self.run(move |session, clone| {
            session.refresh()?;
            Ok(ids
                .iter()
                .map(|id| {
                    let state = clone
                        .tasks
                        .read(id)
                        .map_err(|e| error::file(&clone.name, e))
                        .map(|t| {
                            t.map(|task| Stored {
                                version: Version::of_hash(&task.hash()),
                                task,
                            })
                        });
                    (id.clone(), state)
                })
                .collect())
        })
        .await
    }

    async fn put(&self, writes: Vec<Write>) -> Result<Puts, DriverError> {
        if self.read_only.load(Ordering::SeqCst) {
            return Err(DriverError::new(
                &self.clone.name,
                ErrorKind::InvalidRequest,
                "a read-only sync tried to write",
            ));
        }
        self.run(move |session, clone| {
            let mut outcomes = Puts::new();
            let mut batch: Vec<Task> = Vec::new();
            for w in writes {
                let id = w.task.id().clone();
                let current = match clone.tasks.read(&id) {
                    Ok(c) => c.map(|t| Version::of_hash(&t.hash())),
                    Err(e) => {
                        outcomes.insert(id, Err(error::file(&clone.name, e)));
                        continue;
                    }
                };
                let written = Version::of_hash(&w.hash);
                if current.as_ref() == Some(&written) {
                    outcomes.insert(id, Ok(PutOutcome::Written(written)));
                } else if current != w.expected {
                    outcomes.insert(id, Ok(PutOutcome::Conflict));
                } else {
                    batch.push(w.task);
                    outcomes.insert(id, Ok(PutOutcome::Written(written)));
                }
            }
            if batch.is_empty() {
                return Ok(outcomes);
            }
            clone.tasks.write_batch(&batch).map_err(|e| {
                error::io(&clone.name, format!("writing to {}", clone.tasks.dir().display()), e)
            })?;
            let ids: Vec<TaskId> = batch.iter().map(|t| t.id().clone()).collect();
            tracing::debug!(driver = %clone.name, files = ?ids.iter().map(task_rel_path).collect::<Vec<_>>(), "committing");
            session.commit(&ids)?;
            session.push()?;
            Ok(outcomes)
        })
        .await
    }

    async fn finish(&self) -> Result<(), DriverError> {
        if self.read_only.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.run(|session, _| {
            session.commit(&[])?;
            session.push()
        })
        .await
    }

    async fn check(&self) -> Result<Health, DriverError> {
        self.run(|session, clone| {
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
}
