//! The local cache: `<data_dir>/tasks/<id>.json` plus its index, the lock, the conflict journal
//! and the per-driver sync bases. Always readable and writable, offline or not.
//!
//! Blocking: call it from `spawn_blocking` in async code.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::files::{file_safe_name, lock_file, write_atomic, Durability, FileError, Scan, TaskDir};
use crate::task::{Task, TaskError, TaskId};

/// How long a writing command waits for another hypertask process by default.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of the local cache; each names the path or id concerned.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// An I/O failure.
    #[error("{}: {source}", path.display())]
    Io {
        /// Where.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A task file that is not a valid task.
    #[error(transparent)]
    Corrupt(#[from] FileError),
    /// Another process held the lock for too long.
    #[error("another hypertask process is using {} (waited {waited:?}); try again when it is done", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// How long this process waited.
        waited: Duration,
    },
    /// No task matches the id or prefix.
    #[error("no task matches '{0}'")]
    NotFound(String),
    /// Several tasks match the prefix.
    #[error("'{prefix}' is ambiguous: it matches {}", candidates.join(", "))]
    Ambiguous {
        /// The prefix given.
        prefix: String,
        /// The ids it matches.
        candidates: Vec<String>,
    },
    /// A task that failed validation.
    #[error(transparent)]
    Task(#[from] TaskError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Which side of a sync held a value that lost a merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// This machine's cache.
    #[default]
    Local,
    /// The driver's upstream (another machine's edit).
    Upstream,
}

/// A value that lost a merge during a sync, kept so nothing a user typed disappears.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConflictRecord {
    /// When the sync replaced it.
    pub at: String,
    /// The driver instance the sync was with.
    pub driver: String,
    /// Where the losing value was: in the local cache or in the driver's upstream.
    #[serde(default)]
    pub side: Side,
    /// The task.
    pub task: TaskId,
    /// The clock key (`description`, `tags.work`, …).
    pub field: String,
    /// The value that lost (`null` when that side had removed it).
    pub lost: Option<Value>,
    /// The value that won (`null`: removed).
    pub kept: Option<Value>,
}

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
            Durability::from_env(),
        );
        tasks.create().map_err(io_err(tasks.dir()))?;
        Ok(Replica { data_dir, tasks })
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

    /// Every task's hash, plus files that could not be read.
    pub fn scan(&self) -> Result<Scan, CacheError> {
        self.tasks.scan().map_err(io_err(self.tasks.dir()))
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

    /// Writes tasks atomically and durably; the caller holds the lock.
    pub fn put(&self, _lock: &CacheLock, tasks: &[Task]) -> Result<(), CacheError> {
        self.tasks
            .write_batch(tasks)
            .map_err(io_err(self.tasks.dir()))
    }

    /// When the last successful sync with `driver` started (canonical timestamp), if ever.
    pub fn last_sync(&self, driver: &str) -> Option<String> {
        let bytes = fs::read(self.base_path(driver)).ok()?;
        let v: Value = serde_json::from_slice(&bytes).ok()?;
        v.get("last_sync")?.as_str().map(str::to_owned)
    }

    /// Records that a sync with `driver` that started at `started` succeeded.
    pub fn set_last_sync(
        &self,
        _lock: &CacheLock,
        driver: &str,
        started: &str,
    ) -> Result<(), CacheError> {
        let path = self.base_path(driver);
        let bytes = serde_json::to_vec(&serde_json::json!({ "last_sync": started }))
            .expect("JSON serialises");
        write_atomic(&path, &bytes, false).map_err(io_err(&path))
    }

    fn base_path(&self, driver: &str) -> PathBuf {
        let safe = file_safe_name(driver);
        self.data_dir.join("sync").join(format!("{safe}.json"))
    }

    /// Appends values that lost a merge to the conflict journal.
    pub fn record_conflicts(
        &self,
        _lock: &CacheLock,
        records: &[ConflictRecord],
    ) -> Result<(), CacheError> {
        if records.is_empty() {
            return Ok(());
        }
        let path = self.data_dir.join("conflicts.jsonl");
        let mut buf = Vec::new();
        for r in records {
            serde_json::to_writer(&mut buf, r).expect("records serialise");
            buf.push(b'\n');
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        f.write_all(&buf).map_err(io_err(&path))?;
        f.sync_data().map_err(io_err(&path))
    }

    /// The conflict journal, oldest first. Lines that cannot be parsed (a torn last line after
    /// a crash) are skipped.
    pub fn conflicts(&self) -> Result<Vec<ConflictRecord>, CacheError> {
        let path = self.data_dir.join("conflicts.jsonl");
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let mut out = Vec::new();
        for line in io::BufReader::new(f).lines() {
            let line = line.map_err(io_err(&path))?;
            if let Ok(r) = serde_json::from_str(&line) {
                out.push(r);
            }
        }
        Ok(out)
    }
}
