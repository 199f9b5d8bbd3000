//! The store: one JSON object `{id: task}` in a file, rewritten atomically under a lock.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::path::PathBuf;

use async_trait::async_trait;
use hypertask_core::files::write_atomic;
use hypertask_core::{
    Capabilities, DriverError, DriverInfo, Entry, ErrorKind, Gets, Health, PutOutcome, Puts, Store,
    StoreInventory, Stored, Task, TaskId, Version, Write,
};

use crate::config::JsonFileConfig;
use crate::KIND;

/// Every task in one JSON file.
#[derive(Debug, Clone)]
pub struct JsonFileStore {
    name: String,
    path: PathBuf,
}

type Tasks = BTreeMap<TaskId, Task>;

impl JsonFileStore {
    /// A store named `name` over the configured file.
    pub fn new(name: &str, config: JsonFileConfig) -> Self {
        JsonFileStore {
            name: name.to_owned(),
            path: hypertask_core::expand_path(config.path),
        }
    }

    fn err(&self, kind: ErrorKind, msg: impl std::fmt::Display) -> DriverError {
        DriverError::new(&self.name, kind, format!("{}: {msg}", self.path.display()))
    }

    /// Holds an exclusive lock on `<path>.lock` while `f` runs, off the async reactor.
    async fn locked<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Self) -> Result<T, DriverError> + Send + 'static,
    ) -> Result<T, DriverError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let lock_path = this.path.with_extension("lock");
            if let Some(dir) = lock_path.parent() {
                fs::create_dir_all(dir).map_err(|e| this.err(ErrorKind::Io, e))?;
            }
            let lock = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(|e| this.err(ErrorKind::Io, e))?;
            lock.lock().map_err(|e| this.err(ErrorKind::Io, e))?;
            f(&this)
        })
        .await
        .map_err(|e| self.err(ErrorKind::Io, e))?
    }

    fn load(&self) -> Result<Tasks, DriverError> {
        match File::open(&self.path) {
            Ok(f) => serde_json::from_reader(std::io::BufReader::new(f))
                .map_err(|e| self.err(ErrorKind::InvalidData, format!("not a task file: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Tasks::new()),
            Err(e) => Err(self.err(ErrorKind::Io, e)),
        }
    }
}

#[async_trait]
impl Store for JsonFileStore {
    fn info(&self) -> DriverInfo {
        DriverInfo {
            kind: KIND.into(),
            name: self.name.clone(),
            capabilities: Capabilities::default(),
        }
    }

    async fn list(&self) -> Result<StoreInventory, DriverError> {
        self.locked(|s| {
            Ok(StoreInventory {
                entries: s
                    .load()?
                    .iter()
                    .map(|(id, t)| {
                        let hash = t.hash();
                        let version = Version::of_hash(&hash);
                        (id.clone(), Entry { hash, version })
                    })
                    .collect(),
                problems: Vec::new(),
            })
        })
        .await
    }

    async fn get(&self, ids: &[TaskId]) -> Result<Gets, DriverError> {
        let ids = ids.to_vec();
        self.locked(move |s| {
            let tasks = s.load()?;
            Ok(ids
                .iter()
                .map(|id| {
                    let stored = tasks.get(id).map(|t| Stored {
                        task: t.clone(),
                        version: Version::of_hash(&t.hash()),
                    });
                    (id.clone(), Ok(stored))
                })
                .collect())
        })
        .await
    }

    /// Compare-and-swap on the content hash, the only version a file of tasks has.
    async fn put(&self, writes: Vec<Write>) -> Result<Puts, DriverError> {
        self.locked(move |s| {
            let mut tasks = s.load()?;
            let outcomes = writes
                .into_iter()
                .map(|w| {
                    let id = w.task.id().clone();
                    let current = tasks.get(&id).map(|t| Version::of_hash(&t.hash()));
                    let written = Version::of_hash(&w.hash);
                    if current != w.expected && current.as_ref() != Some(&written) {
                        return (id, Ok(PutOutcome::Conflict));
                    }
                    tasks.insert(id.clone(), w.task);
                    (id, Ok(PutOutcome::Written(written)))
                })
                .collect();
            let bytes = serde_json::to_vec_pretty(&tasks).expect("tasks serialise");
            write_atomic(&s.path, &bytes, true).map_err(|e| s.err(ErrorKind::Io, e))?;
            Ok(outcomes)
        })
        .await
    }

    async fn check(&self) -> Result<Health, DriverError> {
        let n = self.locked(|s| s.load()).await?.len();
        Ok(Health {
            ok: true,
            detail: format!("{}: {n} tasks", self.path.display()),
        })
    }
}
