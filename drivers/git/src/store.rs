//! The git [`Store`]: task files in a working clone, committed and pushed.

use std::path::Path;
use std::sync::Arc;

use hypertask_core::{
    async_trait, Capabilities, DriverError, DriverInfo, ErrorKind, Health, Inventory, Problem,
    PutOutcome, Store, Task, TaskId, Write,
};

use crate::clone::{task_rel_path, Session, WorkingClone};
use crate::config::{redact_url, GitConfig};
use crate::error;
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
}

impl GitStore {
    /// The store of instance `name` with its options; `data_dir` hosts the default clone path.
    /// Nothing is touched on disk until the first operation.
    pub fn new(name: &str, config: &GitConfig, data_dir: &Path) -> Result<GitStore, DriverError> {
        let settings = config.settle(name, data_dir)?;
        Ok(GitStore {
            clone: Arc::new(WorkingClone::new(name.to_owned(), settings)),
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

    async fn list(&self) -> Result<Inventory, DriverError> {
        self.run(|session, clone| {
            // Task files written but not committed (a sync killed between its write and its
            // commit, or a hand edit) are what the working tree lists, so they must reach the
            // branch and the remote now: no later step would notice them.
            session.commit(&[])?;
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
            Ok(Inventory {
                hashes: scan.hashes,
                problems,
            })
        })
        .await
    }

    async fn get(
        &self,
        ids: &[TaskId],
    ) -> Result<Vec<Result<Option<Task>, DriverError>>, DriverError> {
        let ids = ids.to_vec();
        self.run(move |session, clone| {
            session.refresh()?;
            Ok(ids
                .iter()
                .map(|id| {
                    clone
                        .tasks
                        .read(id)
                        .map_err(|e| error::file(&clone.name, e))
                })
                .collect())
        })
        .await
    }

    async fn put(
        &self,
        writes: Vec<Write>,
    ) -> Result<Vec<Result<PutOutcome, DriverError>>, DriverError> {
        self.run(move |session, clone| {
            let mut outcomes = Vec::with_capacity(writes.len());
            let mut batch: Vec<Task> = Vec::new();
            for w in writes {
                let current = match clone.tasks.read(w.task.id()) {
                    Ok(c) => c.map(|t| t.hash()),
                    Err(e) => {
                        outcomes.push(Err(error::file(&clone.name, e)));
                        continue;
                    }
                };
                if current.as_ref() == Some(&w.task.hash()) {
                    outcomes.push(Ok(PutOutcome::Written));
                } else if current != w.expected
                    || batch.iter().any(|t: &Task| t.id() == w.task.id())
                {
                    outcomes.push(Ok(PutOutcome::Conflict));
                } else {
                    batch.push(w.task);
                    outcomes.push(Ok(PutOutcome::Written));
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
