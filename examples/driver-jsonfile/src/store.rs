//! The store: one JSON object `{id: task}` in a file, rewritten atomically under a lock.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::path::PathBuf;

use hypertask_core::files::write_atomic;
use hypertask_core::{
    decide, BlockingStore, Capabilities, Decision, DriverError, DriverInfo, Entry, ErrorKind, Gets,
    Health, PutOutcome, Puts, StoreInventory, Stored, Task, TaskId, Version, Write,
};

use crate::KIND;

/// Every task in one JSON file. Its versions are the content hashes: a file of tasks keeps
/// nothing else to compare.
#[derive(Debug, Clone)]
pub struct JsonFileStore {
    name: String,
    path: PathBuf,
}

type Tasks = BTreeMap<TaskId, Task>;

impl JsonFileStore {
    /// A store named `name` over the file at `path` (created on first write).
    pub fn new(name: &str, path: PathBuf) -> Self {
        JsonFileStore {
            name: name.to_owned(),
            path,
        }
    }

    fn err(&self, kind: ErrorKind, msg: impl std::fmt::Display) -> DriverError {
        DriverError::new(&self.name, kind, format!("{}: {msg}", self.path.display()))
    }

    /// An exclusive lock on `<path>.lock`, held until the returned file is dropped.
    fn lock(&self) -> Result<File, DriverError> {
        let lock_path = self.path.with_extension("lock");
        if let Some(dir) = lock_path.parent() {
            fs::create_dir_all(dir).map_err(|e| self.err(ErrorKind::Io, e))?;
        }
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| self.err(ErrorKind::Io, e))?;
        lock.lock().map_err(|e| self.err(ErrorKind::Io, e))?;
        Ok(lock)
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

impl BlockingStore for JsonFileStore {
    fn info(&self) -> DriverInfo {
        DriverInfo {
            kind: KIND.into(),
            name: self.name.clone(),
            capabilities: Capabilities::default(),
        }
    }

    fn list(&self) -> Result<StoreInventory, DriverError> {
        let _lock = self.lock()?;
        Ok(StoreInventory {
            entries: self
                .load()?
                .iter()
                .map(|(id, t)| (id.clone(), Entry::of_hash(t)))
                .collect(),
            problems: Vec::new(),
        })
    }

    fn get(&self, ids: &[TaskId]) -> Result<Gets, DriverError> {
        let _lock = self.lock()?;
        let tasks = self.load()?;
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
    }

    fn put(&self, writes: Vec<Write>) -> Result<Puts, DriverError> {
        let _lock = self.lock()?;
        let mut tasks = self.load()?;
        let mut changed = false;
        let mut outcomes = Puts::new();
        for w in writes {
            let id = w.task.id().clone();
            let outcome = match decide(tasks.get(&id).map(Entry::of_hash).as_ref(), &w) {
                Decision::Unchanged(version) => PutOutcome::Written(version),
                Decision::Conflict => PutOutcome::Conflict,
                Decision::Write => {
                    changed = true;
                    tasks.insert(id.clone(), w.task);
                    PutOutcome::Written(Version::of_hash(&w.hash))
                }
            };
            outcomes.insert(id, Ok(outcome));
        }
        if changed {
            let bytes = serde_json::to_vec_pretty(&tasks).expect("tasks serialise");
            write_atomic(&self.path, &bytes, true).map_err(|e| self.err(ErrorKind::Io, e))?;
        }
        Ok(outcomes)
    }

    fn check(&self) -> Result<Health, DriverError> {
        let _lock = self.lock()?;
        let n = self.load()?.len();
        Ok(Health {
            ok: true,
            detail: format!("{}: {n} tasks", self.path.display()),
        })
    }
}
