//! The local cache: `<data_dir>/tasks/<id>.json` plus its index, the lock, the conflict journal
//! and the per-driver sync bases. Always readable and writable, offline or not.
//!
//! Blocking: call it from `spawn_blocking` in async code. (About 430 lines of code; the rest
//! of the file is its tests.)

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::files::{file_safe_name, lock_file, write_atomic, Durability, FileError, Scan, TaskDir};
use crate::hash::ContentHash;
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
    /// The data directory, or a directory it would be created in, is a file.
    #[error("the data directory {} cannot be used: {} is a file, not a directory", data_dir.display(), file.display())]
    NotADirectory {
        /// The data directory asked for.
        data_dir: PathBuf,
        /// The file in its place or above it.
        file: PathBuf,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The nearest existing path at or above `dir` when it is not a directory: what stops `dir`
/// from being created.
fn file_in_the_way(dir: &Path) -> Option<PathBuf> {
    let existing = dir.ancestors().find(|p| p.exists())?;
    (!existing.is_dir()).then(|| existing.to_owned())
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
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        // A crash may have torn the last line: start on a line of our own, so that line stays
        // the only one lost.
        if f.metadata().map_err(io_err(&path))?.len() > 0 {
            let mut last = [0u8];
            f.seek(io::SeekFrom::End(-1)).map_err(io_err(&path))?;
            f.read_exact(&mut last).map_err(io_err(&path))?;
            if last[0] != b'\n' {
                buf.insert(0, b'\n');
            }
        }
        f.write_all(&buf).map_err(io_err(&path))?;
        f.sync_data().map_err(io_err(&path))
    }

    /// The conflict journal, oldest first. Lines that cannot be parsed (a torn last line after
    /// a crash, even one torn inside a multibyte character) are skipped.
    pub fn conflicts(&self) -> Result<Vec<ConflictRecord>, CacheError> {
        let path = self.data_dir.join("conflicts.jsonl");
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&path)(e)),
        };
        Ok(bytes
            .split(|&b| b == b'\n')
            .filter_map(|line| serde_json::from_slice(line).ok())
            .collect())
    }

    /// Moves task `id`'s file, whatever it is (a corrupt or unreadable file, a symbolic link, a
    /// FIFO, a directory), out of the cache into `<data_dir>/quarantine/<id>.<UTC time>.json`,
    /// so a sync can replace it without destroying it. The file is renamed, never read or
    /// copied, and never lands on an earlier quarantined file. Returns its new path.
    ///
    /// # Errors
    /// [`CacheError::NotFound`] when the cache has no file for `id`; I/O failures.
    pub fn quarantine(&self, _lock: &CacheLock, id: &TaskId) -> Result<PathBuf, CacheError> {
        let from = self.tasks.path_of(id);
        match fs::symlink_metadata(&from) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(CacheError::NotFound(id.to_string()))
            }
            Err(e) => return Err(io_err(&from)(e)),
        }
        let dir = self.quarantine_dir();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        let mut to = dir.join(format!("{id}.{stamp}.json"));
        let mut n = 1;
        // The cache lock keeps other hypertask processes out between this check and the rename.
        while fs::symlink_metadata(&to).is_ok() {
            to = dir.join(format!("{id}.{stamp}-{n}.json"));
            n += 1;
        }
        fs::rename(&from, &to).map_err(io_err(&from))?;
        Ok(to)
    }

    /// What [`quarantine`](Self::quarantine) moved aside, sorted by path (per task, oldest
    /// first).
    pub fn quarantined(&self) -> Result<Vec<Quarantined>, CacheError> {
        let dir = self.quarantine_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name();
            // Ids hold no dot: the task is what comes before the first one.
            let id = name
                .to_str()
                .and_then(|n| n.split('.').next())
                .and_then(|stem| TaskId::new(stem).ok());
            out.push(Quarantined {
                id,
                path: entry.path(),
            });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    fn quarantine_dir(&self) -> PathBuf {
        self.data_dir.join("quarantine")
    }
}

/// A file [`Replica::quarantine`] moved out of the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// The task it was the file of, read from its name.
    pub id: Option<TaskId>,
    /// Where it is now, under `<data_dir>/quarantine`.
    pub path: PathBuf,
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn task(id: &str) -> Task {
        Task::from_value(serde_json::json!({"id": id, "description": "d"})).unwrap()
    }

    fn record(n: usize) -> ConflictRecord {
        ConflictRecord {
            at: "2026-01-01T00:00:00.000Z".into(),
            driver: "box".into(),
            side: Side::Local,
            task: TaskId::new("t").unwrap(),
            field: "description".into(),
            lost: Some(Value::String(format!("vérsion {n} ✓"))),
            kept: None,
        }
    }

    fn replica() -> (tempfile::TempDir, Replica, CacheLock) {
        let tmp = tempfile::tempdir().unwrap();
        let r = Replica::open(tmp.path().join("data")).unwrap();
        let lock = r.lock(Duration::from_secs(5)).unwrap();
        (tmp, r, lock)
    }

    #[test]
    fn a_data_dir_that_is_a_file_is_named_once() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("notes");
        fs::write(&file, b"x").unwrap();
        for data_dir in [file.clone(), file.join("sub")] {
            let e = Replica::open(&data_dir).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "the data directory {} cannot be used: {} is a file, not a directory",
                    data_dir.display(),
                    file.display()
                )
            );
        }
    }

    #[test]
    fn a_journal_torn_inside_a_multibyte_character_still_reads() {
        let (_tmp, r, lock) = replica();
        r.record_conflicts(&lock, &[record(1)]).unwrap();
        let path = r.data_dir().join("conflicts.jsonl");
        let mut torn = serde_json::to_vec(&record(2)).unwrap();
        // Cut inside the three bytes of '✓'.
        let check = torn.windows(3).position(|w| w == "✓".as_bytes()).unwrap();
        torn.truncate(check + 1);
        assert!(std::str::from_utf8(&torn).is_err());
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&torn)
            .unwrap();
        assert_eq!(r.conflicts().unwrap(), [record(1)]);
        // The next record starts on a line of its own: only the torn one is lost.
        r.record_conflicts(&lock, &[record(3)]).unwrap();
        assert_eq!(r.conflicts().unwrap(), [record(1), record(3)]);
    }

    #[test]
    fn a_cache_file_that_is_a_link_is_a_problem_never_read_through() {
        let (tmp, r, lock) = replica();
        r.put(&lock, &[task("good")]).unwrap();
        let outside = tmp.path().join("outside.json");
        fs::write(&outside, task("linked").to_pretty_json()).unwrap();
        let linked = TaskId::new("linked").unwrap();
        symlink(&outside, r.task_dir().path_of(&linked)).unwrap();
        let scan = r.scan().unwrap();
        assert_eq!(scan.hashes.len(), 1);
        assert_eq!(scan.problems.len(), 1);
        assert!(scan.problems[0].message.contains("symbolic link"));
        assert!(matches!(r.get(&linked), Err(CacheError::Corrupt(_))));
        let (tasks, problems) = r.all().unwrap();
        assert_eq!((tasks.len(), problems.len()), (1, 1));
    }

    #[test]
    fn quarantine_moves_any_file_aside_without_reading_or_following_it() {
        let (tmp, r, lock) = replica();
        let id = |s: &str| TaskId::new(s).unwrap();
        let outside = tmp.path().join("outside.json");
        fs::write(&outside, b"not ours").unwrap();
        let dir = r.task_dir().dir().to_owned();
        fs::write(dir.join("corrupt.json"), b"{ torn").unwrap();
        symlink(&outside, dir.join("link.json")).unwrap();
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            dir.join("fifo.json"),
            rustix::fs::Mode::from(0o644),
        )
        .unwrap();
        fs::create_dir(dir.join("adir.json")).unwrap();
        r.put(&lock, &[task("good")]).unwrap();

        let mut moved = Vec::new();
        for name in ["corrupt", "link", "fifo", "adir"] {
            let to = r.quarantine(&lock, &id(name)).unwrap();
            assert!(!dir.join(format!("{name}.json")).exists());
            assert!(fs::symlink_metadata(dir.join(format!("{name}.json"))).is_err());
            assert!(to.starts_with(r.data_dir().join("quarantine")));
            let file = to.file_name().unwrap().to_str().unwrap();
            assert!(
                file.starts_with(&format!("{name}.")) && file.ends_with(".json"),
                "{file}"
            );
            moved.push(to);
        }
        assert_eq!(fs::read(&moved[0]).unwrap(), b"{ torn");
        assert!(fs::symlink_metadata(&moved[1]).unwrap().is_symlink());
        assert_eq!(fs::read(&outside).unwrap(), b"not ours");
        assert!(fs::symlink_metadata(&moved[3]).unwrap().is_dir());
        let scan = r.scan().unwrap();
        assert!(scan.problems.is_empty(), "{:?}", scan.problems);
        assert_eq!(scan.hashes.len(), 1);

        // A second file of the same task never lands on the first.
        fs::write(dir.join("corrupt.json"), b"{ torn again").unwrap();
        let again = r.quarantine(&lock, &id("corrupt")).unwrap();
        assert_ne!(again, moved[0]);
        assert_eq!(fs::read(&moved[0]).unwrap(), b"{ torn");
        assert_eq!(fs::read(&again).unwrap(), b"{ torn again");

        let listed = r.quarantined().unwrap();
        assert_eq!(listed.len(), 5);
        let ids: Vec<&str> = listed
            .iter()
            .map(|q| q.id.as_ref().unwrap().as_str())
            .collect();
        assert_eq!(ids, ["adir", "corrupt", "corrupt", "fifo", "link"]);
        assert!(matches!(
            r.quarantine(&lock, &id("absent")),
            Err(CacheError::NotFound(_))
        ));
    }

    /// Moves the cache directory's mtime an hour back, as if its last change were old.
    fn age(r: &Replica) {
        let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
        File::open(r.task_dir().dir())
            .unwrap()
            .set_modified(hour_ago)
            .unwrap();
    }

    #[test]
    fn the_head_gives_the_root_until_something_else_changes_the_cache() {
        let (_tmp, r, lock) = replica();
        r.put(&lock, &[task("a"), task("b")]).unwrap();
        assert_eq!(r.trusted_root(), None, "never listed: no head yet");
        age(&r);
        let listed = r.scan().unwrap();
        let root = crate::hash::root_hash(&listed.hashes);
        assert_eq!(r.trusted_root(), Some(root.clone()));
        assert_eq!(r.scan().unwrap().hashes, listed.hashes);

        // hypertask's own writes carry the head on.
        r.put(&lock, &[task("c")]).unwrap();
        let now = r.rescan().unwrap().hashes;
        assert_eq!(now.len(), 3);
        age(&r);
        let _ = r.rescan().unwrap();
        r.put(&lock, &[task("d")]).unwrap();
        let carried = r.trusted_root().expect("carried on by the write");
        assert_eq!(carried, crate::hash::root_hash(&r.rescan().unwrap().hashes));

        // A file created by someone else: the head is not trusted, the scan lists it.
        age(&r);
        let _ = r.rescan().unwrap();
        assert!(r.trusted_root().is_some());
        fs::write(
            r.task_dir().path_of(&TaskId::new("e").unwrap()),
            task("e").to_pretty_json(),
        )
        .unwrap();
        assert_eq!(r.trusted_root(), None);
        assert_eq!(r.scan().unwrap().hashes.len(), 5);
    }

    #[test]
    fn a_racy_head_is_not_trusted_by_another_process() {
        let (_tmp, r, lock) = replica();
        r.put(&lock, &[task("a")]).unwrap();
        // Listed right after the write: a change in the same tick could hide behind the stamp.
        let _ = r.rescan().unwrap();
        let other = Replica::open(r.data_dir()).unwrap();
        assert_eq!(other.trusted_root(), None);
    }

    #[test]
    fn a_listing_with_problems_leaves_no_head() {
        let (_tmp, r, _lock) = replica();
        fs::write(r.task_dir().dir().join("bad.json"), b"{ torn").unwrap();
        age(&r);
        assert_eq!(r.scan().unwrap().problems.len(), 1);
        assert_eq!(r.trusted_root(), None);
    }

    #[test]
    fn nothing_quarantined_is_an_empty_list() {
        let (_tmp, r, _lock) = replica();
        assert!(r.quarantined().unwrap().is_empty());
    }
}
