//! A directory of task files, `<dir>/<id>.json`: the local cache's format and the fs driver's.
//!
//! Blocking: call it from `spawn_blocking` in async code.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::hash::{ContentHash, Hashes};
use crate::task::{Task, TaskId};

/// How a batch of writes is made durable before it is reported done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// One flush of the file system for the whole batch (`syncfs` on Linux, per-file `fsync`
    /// elsewhere), then the renames, then one `fsync` of the directory.
    #[default]
    Batch,
    /// An `fsync` of every file before its rename, then one of the directory.
    PerFile,
    /// No flushing: atomic (never torn) but a crash may lose the last writes.
    None,
}

impl Durability {
    /// Reads `HYPERTASK_DURABILITY` (`batch`, `per-file`, `none`); `batch` when unset.
    pub fn from_env() -> Durability {
        match std::env::var("HYPERTASK_DURABILITY").as_deref() {
            Ok("per-file") => Durability::PerFile,
            Ok("none") => Durability::None,
            _ => Durability::Batch,
        }
    }
}

/// A file that is not a valid task, left untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProblem {
    /// The task the file is named for.
    pub id: Option<TaskId>,
    /// Where it is.
    pub path: PathBuf,
    /// What is wrong with it.
    pub message: String,
}

impl std::fmt::Display for FileProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

/// What a scan of the directory found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Hash of every valid task file.
    pub hashes: Hashes,
    /// Task files that could not be read, parsed, or whose id and name disagree.
    pub problems: Vec<FileProblem>,
    /// Other `.json` files (not `<id>.json`): foreign files or cloud-sync conflicted copies.
    pub others: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    len: u64,
    mtime_ns: i128,
    ino: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    entries: BTreeMap<String, (Stamp, ContentHash)>,
}

/// A directory of `<id>.json` task files with an index of (size, mtime, inode) → hash, so a
/// scan of unchanged files reads nothing but their metadata.
#[derive(Debug, Clone)]
pub struct TaskDir {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    index_path: Option<PathBuf>,
    durability: Durability,
}

/// A read or parse failure of one file.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
    /// Whether it is an I/O failure (as opposed to a corrupt file).
    pub io: Option<io::ErrorKind>,
}

impl TaskDir {
    /// A task directory at `dir`, with its index at `index_path` (none: always read files).
    pub fn new(
        dir: impl Into<PathBuf>,
        index_path: Option<PathBuf>,
        durability: Durability,
    ) -> Self {
        TaskDir {
            inner: Arc::new(Inner {
                dir: dir.into(),
                index_path,
                durability,
            }),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The path of a task's file.
    pub fn path_of(&self, id: &TaskId) -> PathBuf {
        self.inner.dir.join(format!("{id}.json"))
    }

    /// Creates the directory when missing.
    pub fn create(&self) -> io::Result<()> {
        fs::create_dir_all(&self.inner.dir)
    }

    /// Lists the directory: valid tasks' hashes (from the index when a file's metadata is
    /// unchanged), problem files, and other `.json` files. A missing directory is an error.
    pub fn scan(&self) -> io::Result<Scan> {
        let mut index = self.load_index();
        let mut fresh = Index::default();
        let mut scan = Scan::default();
        let mut reread = false;
        for entry in fs::read_dir(&self.inner.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(stem) = name.strip_suffix(".json") else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let Ok(id) = TaskId::new(stem) else {
                scan.others.push(name.to_owned());
                continue;
            };
            let path = entry.path();
            let meta = match entry.metadata() {
                Ok(m) if m.is_file() => m,
                Ok(_) => continue,
                Err(e) => {
                    scan.problems.push(FileProblem {
                        id: Some(id),
                        path,
                        message: format!("cannot read metadata: {e}"),
                    });
                    continue;
                }
            };
            let stamp = stamp_of(&meta);
            if let Some((s, h)) = index.entries.remove(stem) {
                if s == stamp {
                    scan.hashes.insert(id, h.clone());
                    fresh.entries.insert(stem.to_owned(), (s, h));
                    continue;
                }
            }
            reread = true;
            match self.read_path(&id, &path) {
                Ok(task) => {
                    let h = task.hash();
                    fresh.entries.insert(stem.to_owned(), (stamp, h.clone()));
                    scan.hashes.insert(id, h);
                }
                Err(e) => scan.problems.push(FileProblem {
                    id: Some(id),
                    path,
                    message: e.message,
                }),
            }
        }
        scan.others.sort();
        scan.problems.sort_by(|a, b| a.path.cmp(&b.path));
        // Entries left in the old index are files that disappeared.
        if reread || !index.entries.is_empty() {
            self.save_index(&fresh);
        }
        Ok(scan)
    }

    /// Reads one task. A missing file is `Ok(None)`; a corrupt one, or one whose id is not its
    /// name, is an error naming the file.
    pub fn read(&self, id: &TaskId) -> Result<Option<Task>, FileError> {
        let path = self.path_of(id);
        match self.read_path(id, &path) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.io == Some(io::ErrorKind::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads and validates a file that should hold task `id`.
    pub fn read_path(&self, id: &TaskId, path: &Path) -> Result<Task, FileError> {
        let bytes = fs::read(path).map_err(|e| FileError {
            path: path.to_owned(),
            message: format!("cannot read: {e}"),
            io: Some(e.kind()),
        })?;
        let task = Task::from_json(&bytes).map_err(|e| FileError {
            path: path.to_owned(),
            message: format!("not a valid task ({e}); left untouched"),
            io: None,
        })?;
        if task.id() != id {
            return Err(FileError {
                path: path.to_owned(),
                message: format!(
                    "holds task '{}' but is named for '{id}'; left untouched",
                    task.id()
                ),
                io: None,
            });
        }
        Ok(task)
    }

    /// Writes tasks atomically (temporary file, then rename: never a torn file) and durably per
    /// batch: when this returns, every file of the batch is on disk.
    pub fn write_batch(&self, tasks: &[Task]) -> io::Result<()> {
        if tasks.is_empty() {
            return Ok(());
        }
        let dir = &self.inner.dir;
        let durability = self.inner.durability;
        let mut temps = Vec::with_capacity(tasks.len());
        let result = (|| -> io::Result<()> {
            for task in tasks {
                let tmp = dir.join(format!(
                    ".{}.json.tmp-{}-{}",
                    task.id(),
                    std::process::id(),
                    rand_suffix()
                ));
                let mut f = File::create(&tmp)?;
                temps.push((tmp, self.path_of(task.id())));
                f.write_all(&task.to_pretty_json())?;
                if durability == Durability::PerFile {
                    f.sync_all()?;
                }
            }
            if durability == Durability::Batch {
                sync_filesystem(dir, temps.iter().map(|(t, _)| t.as_path()))?;
            }
            for (tmp, dest) in &temps {
                fs::rename(tmp, dest)?;
            }
            if durability != Durability::None {
                sync_dir(dir)?;
            }
            Ok(())
        })();
        if result.is_err() {
            for (tmp, _) in &temps {
                let _ = fs::remove_file(tmp);
            }
        }
        result?;
        self.record(tasks);
        Ok(())
    }

    /// Records freshly written tasks in the index so the next scan does not re-read them.
    fn record(&self, tasks: &[Task]) {
        if self.inner.index_path.is_none() {
            return;
        }
        let mut index = self.load_index();
        for task in tasks {
            if let Ok(meta) = fs::metadata(self.path_of(task.id())) {
                index
                    .entries
                    .insert(task.id().to_string(), (stamp_of(&meta), task.hash()));
            }
        }
        self.save_index(&index);
    }

    fn load_index(&self) -> Index {
        let Some(path) = &self.inner.index_path else {
            return Index::default();
        };
        fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Saves the index atomically. It is only a cache: a failure costs a re-read next time.
    fn save_index(&self, index: &Index) {
        let Some(path) = &self.inner.index_path else {
            return;
        };
        let Ok(bytes) = serde_json::to_vec(index) else {
            return;
        };
        let _ = write_atomic(path, &bytes, false);
    }
}

/// Takes an exclusive lock on `path` (created when missing), polling up to `timeout` while
/// another process holds it. `Ok(None)`: the wait ran out. The lock lasts as long as the file
/// stays open, and the OS releases it when its process dies, so a crash never leaves it stuck.
pub fn lock_file(path: &Path, timeout: std::time::Duration) -> io::Result<Option<File>> {
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    let start = std::time::Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Some(file)),
            Err(fs::TryLockError::WouldBlock) if start.elapsed() < timeout => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(fs::TryLockError::WouldBlock) => return Ok(None),
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// `name` with every character but `A-Z a-z 0-9 - _` replaced by `_`: a config-given name
/// (a driver instance) made safe as a file name.
pub fn file_safe_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes one file atomically: a temporary file in the same directory, then a rename.
pub fn write_atomic(path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    let result = (|| -> io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        if durable {
            sync_dir(dir)?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn rand_suffix() -> u32 {
    rand::random()
}

fn stamp_of(meta: &fs::Metadata) -> Stamp {
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(-1);
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(meta);
    #[cfg(not(unix))]
    let ino = 0;
    Stamp {
        len: meta.len(),
        mtime_ns,
        ino,
    }
}

/// Flushes a directory entry change (a rename) to disk.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Flushes written files: one `syncfs` of the file system holding them on Linux, an `fsync`
/// of each elsewhere.
#[cfg(target_os = "linux")]
fn sync_filesystem<'a>(dir: &Path, _files: impl Iterator<Item = &'a Path>) -> io::Result<()> {
    let d = File::open(dir)?;
    rustix::fs::syncfs(&d).map_err(io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn sync_filesystem<'a>(_dir: &Path, files: impl Iterator<Item = &'a Path>) -> io::Result<()> {
    for f in files {
        File::open(f)?.sync_all()?;
    }
    Ok(())
}
