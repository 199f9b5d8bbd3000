//! The local cache: `<data_dir>/tasks/<id>.json` plus its index, the locks, the conflict
//! journal, the per-driver sync bases and the quarantine. Always readable and writable, offline
//! or not. [`Replica`] and its locks and task files are here; each other part of the data
//! directory has a module of its own (`journal`, `bases`, `quarantine`), as do the errors.
//!
//! Blocking: call it from `spawn_blocking` in async code.

mod bases;
mod error;
mod journal;
mod quarantine;
#[cfg(all(test, unix))]
mod tests;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use error::CacheError;
use error::{file_in_the_way, io_err};
pub use journal::{ConflictRecord, Side};
pub use quarantine::Quarantined;

use crate::files::{lock_file, Durability, FileError, Scan, TaskDir};
use crate::hash::ContentHash;
use crate::task::{Task, TaskId};

/// How long a writing command waits for another hypertask process by default.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// The local cache in a data directory.
#[derive(Debug, Clone)]
pub struct Replica {
    data_dir: PathBuf,
    tasks: TaskDir,
}

/// Held while writing; released when the last clone drops, and by the OS if the process dies.
#[derive(Debug, Clone)]
pub struct CacheLock {
    _file: std::sync::Arc<File>,
}

impl Replica {
    /// Opens (creating when missing) the cache in `data_dir`.
    pub fn open(data_dir: impl Into<PathBuf>) -> Result<Replica, CacheError> {
        let data_dir = data_dir.into();
        let tasks = TaskDir::new(
            data_dir.join("tasks"),
            Some(data_dir.join("index.json")),
            Durability::default(),
        )
        .with_head(data_dir.join("head.json"));
        if let Err(e) = tasks.create() {
            return Err(match file_in_the_way(&data_dir) {
                Some(file) => CacheError::NotADirectory { data_dir, file },
                None => io_err(tasks.dir())(e),
            });
        }
        Ok(Replica { data_dir, tasks })
    }

    /// The same cache flushing its writes as `durability` says (default
    /// [`Durability::Batch`]).
    pub fn with_durability(mut self, durability: Durability) -> Replica {
        self.tasks = self.tasks.with_durability(durability);
        self
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The task files.
    pub fn task_dir(&self) -> &TaskDir {
        &self.tasks
    }

    /// Takes the exclusive write lock, waiting up to `timeout` for another process. Writers
    /// hold it only while they write: a sync takes it for each batch, never across network I/O.
    pub fn lock(&self, timeout: Duration) -> Result<CacheLock, CacheError> {
        self.lock_at("lock", timeout)
    }

    /// Takes the sync lock, which only syncs take (for their whole run), so two syncs of one
    /// data directory never do the same work at once while edits go on between their writes.
    pub fn sync_lock(&self, timeout: Duration) -> Result<CacheLock, CacheError> {
        self.lock_at("sync.lock", timeout)
    }

    fn lock_at(&self, name: &str, timeout: Duration) -> Result<CacheLock, CacheError> {
        let path = self.data_dir.join(name);
        let start = Instant::now();
        match lock_file(&path, timeout).map_err(io_err(&path))? {
            Some(file) => Ok(CacheLock {
                _file: std::sync::Arc::new(file),
            }),
            None => Err(CacheError::Locked {
                path,
                waited: start.elapsed(),
            }),
        }
    }

    /// Every task's hash, plus files that could not be read. While the cache's head record
    /// says nothing but hypertask changed the directory, this reads only the index.
    pub fn scan(&self) -> Result<Scan, CacheError> {
        self.tasks.scan().map_err(io_err(self.tasks.dir()))
    }

    /// [`scan`](Self::scan) listing and checking every file, whatever the head record says
    /// (`sync --rescan`); it records a fresh head.
    pub fn rescan(&self) -> Result<Scan, CacheError> {
        self.tasks.rescan().map_err(io_err(self.tasks.dir()))
    }

    /// The cache's root hash when its head record can be trusted (one `stat`, one small read);
    /// `None` when only a scan can tell.
    pub fn trusted_root(&self) -> Option<ContentHash> {
        self.tasks.trusted_root()
    }

    /// One task by full id.
    pub fn get(&self, id: &TaskId) -> Result<Option<Task>, CacheError> {
        Ok(self.tasks.read(id)?)
    }

    /// Every readable task, and the problems met on the way.
    pub fn all(&self) -> Result<(Vec<Task>, Vec<FileError>), CacheError> {
        let scan = self.scan()?;
        let mut tasks = Vec::with_capacity(scan.hashes.len());
        let mut problems: Vec<FileError> = scan
            .problems
            .into_iter()
            .map(|p| FileError {
                path: p.path,
                message: p.message,
                io: None,
            })
            .collect();
        for id in scan.hashes.keys() {
            match self.tasks.read(id) {
                Ok(Some(t)) => tasks.push(t),
                Ok(None) => {}
                Err(e) => problems.push(e),
            }
        }
        Ok((tasks, problems))
    }

    /// Finds the one task whose id is `prefix` or starts with it.
    pub fn find(&self, prefix: &str) -> Result<Task, CacheError> {
        if let Ok(id) = TaskId::new(prefix) {
            if let Some(t) = self.get(&id)? {
                return Ok(t);
            }
        }
        let scan = self.scan()?;
        let candidates: Vec<&TaskId> = scan
            .hashes
            .keys()
            .filter(|id| id.as_str().starts_with(prefix))
            .collect();
        match candidates.as_slice() {
            [] => Err(CacheError::NotFound(prefix.to_owned())),
            [one] => self
                .get(one)?
                .ok_or_else(|| CacheError::NotFound(prefix.to_owned())),
            many => Err(CacheError::Ambiguous {
                prefix: prefix.to_owned(),
                candidates: many.iter().map(|id| id.to_string()).collect(),
            }),
        }
    }

    /// Writes tasks atomically and durably (durable once [`flush`](Self::flush) returns, after
    /// [`defer_flush`](Self::defer_flush)); the caller holds the lock.
    pub fn put(&self, _lock: &CacheLock, tasks: &[Task]) -> Result<(), CacheError> {
        self.tasks
            .write_batch(tasks)
            .map_err(io_err(self.tasks.dir()))
    }

    /// Until [`flush`](Self::flush), [`put`](Self::put) renames files into place without
    /// flushing each batch (see [`TaskDir::defer_flush`]): a sync flushes once, at its end.
    pub fn defer_flush(&self, _lock: &CacheLock) {
        self.tasks.defer_flush();
    }

    /// Flushes everything [`put`](Self::put) wrote since [`defer_flush`](Self::defer_flush)
    /// and saves the head record; nothing that depends on those files is recorded before it.
    pub fn flush(&self) -> Result<(), CacheError> {
        self.tasks
            .flush()
            .map(|_| ())
            .map_err(io_err(self.tasks.dir()))
    }
}
