//! The fs [`Store`]: a shared directory of `<id>.json` task files (docs/storage.md, "fs").
//!
//! Reads never write: a listing with a cloud-sync conflicted copy reports the merge of the
//! task and its copies, so a dry run stays a dry run. The first write of such a task (or the
//! end of a sync that wrote anything) stores the merged state and removes the copies.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hypertask_core::files::{create_exclusive, lock_file, Durability, TaskDir};
use hypertask_core::{
    async_trait, decide, expand_path, merge_tasks, Capabilities, ContentHash, Decision, DirWatch,
    DriverError, DriverInfo, Entry, ErrorKind, Gets, Health, Inventory, Problem, PutOutcome, Puts,
    Store, StoreInventory, Stored, Task, TaskId, Version, Watch, Write,
};

use crate::config::FsConfig;
use crate::error;
use crate::KIND;

/// The lock file, inside the shared directory, that serialises writers on one machine.
const LOCK_FILE: &str = ".hypertask.lock";

/// How long a write waits for another process holding the directory's lock.
const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// Conflicted copies found in the directory, by the task they copy.
type Copies = BTreeMap<TaskId, Vec<(PathBuf, Task)>>;

/// A directory of task files shared through Dropbox, Syncthing, a network drive or a USB stick.
#[derive(Debug, Clone)]
pub struct FsStore {
    inner: Arc<Inner>,
    /// The directory watch, started by the first [`Store::wait_for_change`].
    watch: Arc<Mutex<Option<Arc<DirWatch>>>>,
}

#[derive(Debug, Clone)]
struct Inner {
    name: String,
    tasks: TaskDir,
    create: bool,
    /// The directory, once this instance created it (told once, by `take_created`).
    created: Arc<std::sync::Mutex<Vec<String>>>,
}

impl FsStore {
    /// The store of driver instance `name`; its scan index is kept under `data_dir`, never in
    /// the shared directory.
    pub fn new(name: &str, config: &FsConfig, data_dir: &Path) -> Result<FsStore, DriverError> {
        if config.path.as_os_str().is_empty() {
            return Err(DriverError::new(
                name,
                ErrorKind::Config,
                format!("[drivers.{name}] has an empty `path`"),
            ));
        }
        let dir = expand_path(&config.path);
        let safe = hypertask_core::files::file_safe_name(name);
        // The directory's hash keeps indexes apart when an instance is pointed elsewhere.
        let dir_hash = ContentHash::of_bytes(dir.to_string_lossy().as_bytes());
        let index = data_dir
            .join("fs-index")
            .join(format!("{safe}-{}.json", &dir_hash.as_str()[..12]));
        Ok(FsStore {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                tasks: TaskDir::new(dir, Some(index), Durability::default()),
                create: config.create,
                created: Arc::default(),
            }),
            watch: Arc::default(),
        })
    }

    /// The same store reading task files of at most `max` bytes (default
    /// [`DEFAULT_MAX_TASK_BYTES`](hypertask_core::DEFAULT_MAX_TASK_BYTES), 1 MiB; the driver
    /// table's `max_task_bytes`). Anyone who can write the shared directory can put a huge file
    /// there: a larger one is reported as an invalid task by its size, without being read.
    pub fn with_max_task_bytes(mut self, max: usize) -> FsStore {
        let inner = Arc::make_mut(&mut self.inner);
        inner.tasks = inner.tasks.clone().with_max_task_bytes(max);
        self
    }

    /// The same store flushing its writes as `durability` says (default
    /// [`Durability::Batch`]).
    pub fn with_durability(mut self, durability: Durability) -> FsStore {
        let inner = Arc::make_mut(&mut self.inner);
        inner.tasks = inner.tasks.clone().with_durability(durability);
        self
    }

    /// The shared directory.
    pub fn dir(&self) -> &Path {
        self.inner.tasks.dir()
    }

    /// Runs blocking file work off the async reactor.
    async fn blocking<T, F>(&self, f: F) -> Result<T, DriverError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, DriverError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        hypertask_core::run_blocking(&self.inner.name, move || f(&inner)).await
    }
}

impl Inner {
    fn dir(&self) -> &Path {
        self.tasks.dir()
    }

    /// Whether the directory exists. A missing one is an error unless `create` is set; then
    /// it is created when `for_write`, and reads see an empty directory.
    fn ensure_dir(&self, for_write: bool) -> Result<bool, DriverError> {
        let dir = self.dir();
        match fs::metadata(dir) {
            Ok(m) if m.is_dir() => Ok(true),
            Ok(_) => Err(DriverError::new(
                &self.name,
                ErrorKind::Config,
                format!("{} is not a directory", dir.display()),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !self.create {
                    Err(error::missing_dir(&self.name, dir))
                } else if for_write {
                    self.tasks
                        .create()
                        .map_err(|e| error::io(&self.name, dir, e))?;
                    self.created
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(format!("the directory {}", dir.display()));
                    Ok(true)
                } else {
                    Ok(false)
                }
            }
            Err(e) => Err(error::io(&self.name, dir, e)),
        }
    }

    /// Takes the directory's exclusive lock, waiting a bounded time for another process.
    fn lock(&self) -> Result<File, DriverError> {
        let path = self.dir().join(LOCK_FILE);
        lock_file(&path, LOCK_TIMEOUT)
            .map_err(|e| error::io(&self.name, &path, e))?
            .ok_or_else(|| error::locked(&self.name, &path))
    }

    /// The conflicted copies among `names` (file names in the directory) that hold the task
    /// they are named for. Anything else is a foreign file and is ignored.
    fn copies_among<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Copies {
        let mut copies = Copies::new();
        for name in names {
            let Some(id) = copy_owner(name) else { continue };
            let path = self.dir().join(name);
            match self.tasks.read_path(&id, &path) {
                Ok(task) => copies.entry(id).or_default().push((path, task)),
                Err(e) => tracing::warn!(driver = %self.name, "ignoring {e}"),
            }
        }
        copies
    }

    /// Every conflicted copy in the directory.
    fn copies(&self) -> Result<Copies, DriverError> {
        let rd = fs::read_dir(self.dir()).map_err(|e| error::io(&self.name, self.dir(), e))?;
        let mut names = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| error::io(&self.name, self.dir(), e))?;
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(self.copies_among(names.iter().map(String::as_str)))
    }

    /// The task's file (`Err` when it is corrupt or misnamed) merged with its copies.
    fn state(&self, id: &TaskId, copies: &Copies) -> Result<Option<Task>, DriverError> {
        let mut state = self.tasks.read(id).map_err(|e| e.for_driver(&self.name))?;
        for (_, copy) in copies.get(id).into_iter().flatten() {
            state = Some(match state {
                Some(s) => merge_tasks(&s, copy).map_err(|e| {
                    DriverError::new(&self.name, ErrorKind::InvalidData, e.to_string())
                })?,
                None => copy.clone(),
            });
        }
        Ok(state)
    }

    /// Removes the conflicted copies of `ids` once their merge is stored.
    fn remove_copies<'a>(&self, ids: impl IntoIterator<Item = &'a TaskId>, copies: &Copies) {
        for id in ids {
            for (path, _) in copies.get(id).into_iter().flatten() {
                if let Err(e) = fs::remove_file(path) {
                    tracing::warn!(driver = %self.name, "cannot remove merged copy {}: {e}", path.display());
                }
            }
        }
    }

    fn list(&self) -> Result<Inventory, DriverError> {
        if !self.ensure_dir(false)? {
            return Ok(Inventory::default());
        }
        let scan = self
            .tasks
            .scan()
            .map_err(|e| error::io(&self.name, self.dir(), e))?;
        let mut inventory = Inventory {
            hashes: scan.hashes,
            problems: Vec::new(),
        };
        let copies = self.copies_among(scan.others.iter().map(String::as_str));
        for id in copies.keys() {
            if scan.problems.iter().any(|p| p.id.as_ref() == Some(id)) {
                continue; // the task's own file is corrupt: reported below, copies left alone
            }
            match self.state(id, &copies) {
                Ok(Some(t)) => {
                    inventory.hashes.insert(id.clone(), t.hash());
                }
                Ok(None) => {}
                Err(e) => inventory.problems.push(Problem {
                    id: Some(id.clone()),
                    error: e,
                }),
            }
        }
        inventory
            .problems
            .extend(scan.problems.into_iter().map(|p| Problem {
                error: error::invalid(&self.name, &p),
                id: p.id,
            }));
        Ok(inventory)
    }

    fn get(&self, ids: &[TaskId]) -> Result<Gets, DriverError> {
        if !self.ensure_dir(false)? {
            return Ok(ids.iter().map(|id| (id.clone(), Ok(None))).collect());
        }
        let copies = self.copies()?;
        Ok(ids
            .iter()
            .map(|id| {
                let state = self.state(id, &copies).map(|t| {
                    t.map(|task| Stored {
                        version: Version::of_hash(&task.hash()),
                        task,
                    })
                });
                (id.clone(), state)
            })
            .collect())
    }

    /// Compare-and-swap on the content hash: a file holds no other version.
    fn put(&self, writes: Vec<Write>) -> Result<Puts, DriverError> {
        self.ensure_dir(true)?;
        let _lock = self.lock()?;
        let copies = self.copies()?;
        let mut outcomes = Puts::new();
        let mut to_write: Vec<Task> = Vec::new();
        for w in writes {
            let id = w.task.id().clone();
            let current = match self.state(&id, &copies) {
                Ok(c) => c,
                Err(e) => {
                    outcomes.insert(id, Err(e));
                    continue;
                }
            };
            match decide(current.as_ref().map(Entry::of_hash).as_ref(), &w) {
                Decision::Unchanged(version) => {
                    // Already stored, perhaps only as the merge with copies: fold those in.
                    if copies.contains_key(&id) {
                        to_write.push(w.task);
                    }
                    outcomes.insert(id, Ok(PutOutcome::Written(version)));
                }
                Decision::Conflict => {
                    outcomes.insert(id, Ok(PutOutcome::Conflict));
                }
                Decision::Write => {
                    outcomes.insert(id, Ok(PutOutcome::Written(Version::of_hash(&w.hash))));
                    to_write.push(w.task);
                }
            }
        }
        self.tasks
            .write_batch(&to_write)
            .map_err(|e| error::io(&self.name, self.dir(), e))?;
        self.remove_copies(to_write.iter().map(Task::id), &copies);
        Ok(outcomes)
    }

    /// Folds every remaining conflicted copy into its task.
    fn fold_copies(&self) -> Result<(), DriverError> {
        if !self.ensure_dir(false)? {
            return Ok(());
        }
        if self.copies()?.is_empty() {
            return Ok(());
        }
        let _lock = self.lock()?;
        let copies = self.copies()?;
        let mut merged = Vec::new();
        for id in copies.keys() {
            // A corrupt task file keeps its copies: nothing is guessed at.
            if let Ok(Some(t)) = self.state(id, &copies) {
                merged.push(t);
            }
        }
        self.tasks
            .write_batch(&merged)
            .map_err(|e| error::io(&self.name, self.dir(), e))?;
        self.remove_copies(merged.iter().map(Task::id), &copies);
        Ok(())
    }

    fn check(&self) -> Result<Health, DriverError> {
        let dir = self.dir();
        match self.ensure_dir(false) {
            Ok(true) => {}
            Ok(false) => {
                return Ok(Health {
                    ok: true,
                    detail: format!("{} (created on the first write)", dir.display()),
                })
            }
            Err(e) => {
                return Ok(Health {
                    ok: false,
                    detail: e.message().to_owned(),
                })
            }
        }
        // A new file under a random name: nothing planted in the shared directory is written.
        let probe = create_exclusive(dir, ".hypertask-check-").and_then(|(path, file)| {
            drop(file);
            fs::remove_file(path)
        });
        if let Err(e) = probe {
            return Ok(Health {
                ok: false,
                detail: format!("{} is not writable: {e}", dir.display()),
            });
        }
        let scan = self
            .tasks
            .scan()
            .map_err(|e| error::io(&self.name, dir, e))?;
        let mut detail = format!("{}: {} tasks", dir.display(), scan.hashes.len());
        if !scan.problems.is_empty() {
            detail.push_str(&format!(", {} unreadable files", scan.problems.len()));
        }
        Ok(Health { ok: true, detail })
    }
}

/// The task a cloud-sync conflicted copy belongs to, from its file name:
/// `<id> (… conflicted copy …).json` (Dropbox) or `<id>.sync-conflict-….json` (Syncthing).
fn copy_owner(file_name: &str) -> Option<TaskId> {
    let stem = file_name.strip_suffix(".json")?;
    if file_name.starts_with('.') {
        return None;
    }
    let id = if let Some((id, rest)) = stem.split_once(" (") {
        (rest.ends_with(')') && rest.to_lowercase().contains("conflicted copy")).then_some(id)?
    } else {
        stem.split_once(".sync-conflict-")?.0
    };
    TaskId::new(id).ok()
}

#[async_trait]
impl Store for FsStore {
    fn info(&self) -> DriverInfo {
        DriverInfo {
            kind: KIND.into(),
            name: self.inner.name.clone(),
            capabilities: Capabilities {
                max_batch: hypertask_core::DEFAULT_BATCH,
                cheap_root: false,
                atomic_writes: true,
                remote: false,
                buckets: false,
            },
        }
    }

    async fn list(&self) -> Result<StoreInventory, DriverError> {
        let inventory = self.blocking(Inner::list).await?;
        Ok(StoreInventory {
            entries: inventory
                .hashes
                .into_iter()
                .map(|(id, hash)| {
                    let version = Version::of_hash(&hash);
                    (id, Entry { hash, version })
                })
                .collect(),
            problems: inventory.problems,
        })
    }

    async fn get(&self, ids: &[TaskId]) -> Result<Gets, DriverError> {
        let ids = ids.to_vec();
        self.blocking(move |inner| inner.get(&ids)).await
    }

    async fn put(&self, writes: Vec<Write>) -> Result<Puts, DriverError> {
        self.blocking(move |inner| inner.put(writes)).await
    }

    async fn finish(&self) -> Result<(), DriverError> {
        self.blocking(Inner::fold_copies).await
    }

    async fn check(&self) -> Result<Health, DriverError> {
        self.blocking(Inner::check).await
    }

    fn take_created(&self) -> Vec<String> {
        std::mem::take(&mut *self.inner.created.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Watches the directory's task files (changes by anyone: this machine's other
    /// processes, a cloud-sync client, a network share's local writes).
    async fn wait_for_change(&self) -> Result<Watch, DriverError> {
        let current = self.watch.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(watch) = current {
            watch.changed().await;
            return Ok(Watch::Changed);
        }
        let watch = self
            .blocking(|inner| {
                DirWatch::new(inner.dir()).map_err(|e| error::io(&inner.name, inner.dir(), e))
            })
            .await?;
        *self.watch.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(watch));
        Ok(Watch::Changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicted_copy_names() {
        let owner = |n: &str| copy_owner(n).map(|id| id.to_string());
        assert_eq!(
            owner("abc (Ann's conflicted copy 2026-01-02).json").as_deref(),
            Some("abc")
        );
        assert_eq!(
            owner("abc (Conflicted copy 2).json").as_deref(),
            Some("abc")
        );
        assert_eq!(
            owner("abc.sync-conflict-20260102-101010-ABCDEF.json").as_deref(),
            Some("abc")
        );
        assert_eq!(owner("abc (copy).json"), None);
        assert_eq!(owner("abc.json"), None);
        assert_eq!(owner("notes (conflicted copy).txt"), None);
        assert_eq!(owner("a b (conflicted copy).json"), None);
        assert_eq!(owner(".abc (conflicted copy).json"), None);
    }
}
