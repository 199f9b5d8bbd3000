//! A directory of task files, `<dir>/<id>.json`: the local cache's format and the fs driver's
//! ([`TaskDir`]: scanning with a stat index, reading, atomic batch writes, one flush per sync);
//! and, in `safe`, the one place for safe file access in directories other people can write to
//! (a shared folder, a git working clone, the cache itself):
//!
//! - [`open_regular`] and [`read_capped`] read only regular files: a symbolic link is never
//!   followed, a FIFO or device never blocks, and the check uses the opened handle's metadata,
//!   so nothing can be swapped in between; reading stops at a size limit.
//! - [`create_exclusive`] makes new files under unpredictable names, refusing anything already
//!   there (a planted symbolic link included); [`write_atomic`] and [`TaskDir::write_batch`]
//!   write through it and rename.
//! - [`lock_file`] is the one lock helper: it never follows, creates through or truncates a
//!   symbolic link and refuses anything but a regular file.
//!
//! Blocking: call it from `spawn_blocking` in async code. (About 650 lines of code: the
//! [`TaskDir`] with its index, head record and deferred flush, which all keep one directory's
//! bookkeeping consistent; the rest of the file is its tests.)

mod safe;

pub use safe::{
    create_exclusive, file_safe_name, lock_file, open_regular, read_capped, write_atomic,
};
use safe::{not_regular, read_capped_meta, sync_dir, too_large_message};

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::error::{DriverError, ErrorKind};
use crate::hash::{root_of, ContentHash, Hashes};
use crate::head::{count_flush, count_listing, count_task_read, DirStamp, Head};
pub use crate::head::{io_counts, IoCounts};
use crate::task::{Task, TaskId, DEFAULT_MAX_TASK_BYTES};

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

impl std::str::FromStr for Durability {
    type Err = String;

    /// `batch`, `per-file` or `none` (the front end's `HYPERTASK_DURABILITY`).
    fn from_str(s: &str) -> Result<Durability, String> {
        match s {
            "batch" => Ok(Durability::Batch),
            "per-file" => Ok(Durability::PerFile),
            "none" => Ok(Durability::None),
            other => Err(format!(
                "unknown durability '{other}' (batch, per-file or none)"
            )),
        }
    }
}

/// A file that is not a valid task (whoever reports it leaves it untouched or quarantines it).
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
    /// Bumped by every change; a head describes one generation.
    #[serde(default)]
    generation: u64,
    entries: BTreeMap<String, (Stamp, ContentHash)>,
}

impl Index {
    fn root(&self) -> ContentHash {
        root_of(self.entries.iter().map(|(id, (_, h))| (id.as_str(), h)))
    }
}

/// A directory of `<id>.json` task files with an index of (size, mtime, inode) → hash, so a
/// scan of unchanged files reads nothing but their metadata.
#[derive(Debug, Clone)]
pub struct TaskDir {
    inner: Arc<Inner>,
}

#[derive(Debug, Clone)]
struct Inner {
    dir: PathBuf,
    index_path: Option<PathBuf>,
    /// Where the head record is kept: only for a directory hypertask owns (the cache).
    head_path: Option<PathBuf>,
    /// The head generation this process wrote last (0: none), shared by clones.
    own_generation: Arc<AtomicU64>,
    durability: Durability,
    max_task_bytes: usize,
    /// Writes whose flush waits for [`TaskDir::flush`], shared by clones.
    deferred: Arc<Mutex<Deferred>>,
}

/// The state of a directory whose writes are flushed once, at the end of a sync.
#[derive(Debug, Default)]
struct Deferred {
    /// [`TaskDir::defer_flush`] was called and [`TaskDir::flush`] not yet.
    on: bool,
    /// Files renamed into place since the last flush (bounded by one sync's writes).
    written: Vec<PathBuf>,
    /// The head the writes carried on, saved by the flush (the record on disk is removed
    /// meanwhile, so nothing trusts a root whose files may not be on disk yet).
    head: Option<Head>,
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

impl FileError {
    /// The error of driver instance `driver` for this file: an I/O failure, or a file that is
    /// not a valid task, which fails alone and is left untouched.
    pub fn for_driver(self, driver: &str) -> DriverError {
        match self.io {
            Some(_) => DriverError::new(driver, ErrorKind::Io, self.to_string()),
            None => DriverError::new(
                driver,
                ErrorKind::InvalidData,
                format!("{self}; left untouched"),
            ),
        }
    }
}

impl TaskDir {
    /// A task directory at `dir`, with its index at `index_path` (none: always read files).
    /// Task files above [`DEFAULT_MAX_TASK_BYTES`] are refused; see
    /// [`with_max_task_bytes`](Self::with_max_task_bytes).
    pub fn new(
        dir: impl Into<PathBuf>,
        index_path: Option<PathBuf>,
        durability: Durability,
    ) -> Self {
        TaskDir {
            inner: Arc::new(Inner {
                dir: dir.into(),
                index_path,
                head_path: None,
                own_generation: Arc::new(AtomicU64::new(0)),
                durability,
                max_task_bytes: DEFAULT_MAX_TASK_BYTES,
                deferred: Arc::default(),
            }),
        }
    }

    /// The same directory with another limit for one task file, in bytes: a larger file is
    /// reported as an invalid task without being read.
    pub fn with_max_task_bytes(mut self, max: usize) -> Self {
        Arc::make_mut(&mut self.inner).max_task_bytes = max;
        self
    }

    /// The same directory flushing its writes as `durability` says.
    pub fn with_durability(mut self, durability: Durability) -> Self {
        Arc::make_mut(&mut self.inner).durability = durability;
        self
    }

    /// The same directory keeping a head record at `path` (next to the index), for a directory
    /// only hypertask writes: its writes keep the root hash up to date, and while the
    /// directory's stamp says nobody else changed it, [`scan`](Self::scan) answers from the
    /// index and [`trusted_root`](Self::trusted_root) from the head, without listing.
    pub fn with_head(mut self, path: PathBuf) -> Self {
        Arc::make_mut(&mut self.inner).head_path = Some(path);
        self
    }

    /// The largest task file read, in bytes.
    pub fn max_task_bytes(&self) -> usize {
        self.inner.max_task_bytes
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

    /// Every valid task's hash, problem files, and other `.json` files. With a trusted head
    /// (see [`with_head`](Self::with_head)) the index answers without listing the directory
    /// (and `others` is empty); otherwise see [`rescan`](Self::rescan).
    pub fn scan(&self) -> io::Result<Scan> {
        if let Some(scan) = self.scan_from_head() {
            return Ok(scan);
        }
        self.rescan()
    }

    /// The root hash of every valid task, when the head record can be trusted: one `stat` of
    /// the directory and one small read. `None`: list instead.
    pub fn trusted_root(&self) -> Option<ContentHash> {
        self.trusted_head().map(|h| h.root)
    }

    fn trusted_head(&self) -> Option<Head> {
        let path = self.inner.head_path.as_ref()?;
        let pending = self.deferred().head.clone();
        let head = pending.or_else(|| Head::load(path))?;
        let now = DirStamp::of(&self.inner.dir).ok()?;
        let own = match self.inner.own_generation.load(Ordering::Relaxed) {
            0 => None,
            g => Some(g),
        };
        head.trusted(&now, own).then_some(head)
    }

    fn scan_from_head(&self) -> Option<Scan> {
        let head = self.trusted_head()?;
        let index = self.load_index();
        if index.generation != head.generation || index.entries.len() != head.count {
            return None;
        }
        let mut scan = Scan::default();
        for (stem, (_, hash)) in index.entries {
            scan.hashes.insert(TaskId::new(stem).ok()?, hash);
        }
        Some(scan)
    }

    /// Lists the directory: valid tasks' hashes (from the index when a file's metadata is
    /// unchanged), problem files, and other `.json` files. A missing directory is an error.
    /// With a head record, a listing without problems records a fresh head.
    pub fn rescan(&self) -> io::Result<Scan> {
        count_listing();
        let stamp = match &self.inner.head_path {
            Some(_) => Some(DirStamp::now(&self.inner.dir)?),
            None => None,
        };
        let mut index = self.load_index();
        let generation = index.generation;
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
            // The entry's own metadata: a symbolic link is not followed.
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) => {
                    scan.problems.push(FileProblem {
                        id: Some(id),
                        path,
                        message: format!("cannot read metadata: {e}"),
                    });
                    continue;
                }
            };
            if !meta.is_file() {
                let message = not_regular(meta.file_type()).to_string();
                scan.problems.push(FileProblem {
                    id: Some(id),
                    path,
                    message,
                });
                continue;
            }
            if meta.len() > self.inner.max_task_bytes as u64 {
                let message = too_large_message(self.inner.max_task_bytes);
                scan.problems.push(FileProblem {
                    id: Some(id),
                    path,
                    message,
                });
                continue;
            }
            let stamp = stamp_of(&meta);
            if let Some((s, h)) = index.entries.remove(stem) {
                if s == stamp {
                    scan.hashes.insert(id, h.clone());
                    fresh.entries.insert(stem.to_owned(), (s, h));
                    continue;
                }
            }
            reread = true;
            match self.read_file(&id, &path) {
                Ok((task, meta)) => {
                    let h = task.hash();
                    fresh
                        .entries
                        .insert(stem.to_owned(), (stamp_of(&meta), h.clone()));
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
        fresh.generation = generation;
        if reread || !index.entries.is_empty() {
            fresh.generation += 1;
            self.save_index(&fresh);
        }
        if let (Some(path), Some(stamp)) = (&self.inner.head_path, stamp) {
            if scan.problems.is_empty() {
                let head = Head::new(fresh.generation, fresh.root(), fresh.entries.len(), stamp);
                self.keep_head(path, head);
                // This process has just seen the directory: its own writes carry the head on.
                self.inner
                    .own_generation
                    .store(fresh.generation, Ordering::Relaxed);
            } else {
                self.drop_head(path);
            }
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

    /// Reads and validates a file that should hold task `id`: a regular file (never through a
    /// symbolic link, never blocking on a FIFO) of at most [`max_task_bytes`](Self::max_task_bytes).
    pub fn read_path(&self, id: &TaskId, path: &Path) -> Result<Task, FileError> {
        self.read_file(id, path).map(|(task, _)| task)
    }

    /// [`read_path`](Self::read_path), with the metadata of the file as it was read.
    fn read_file(&self, id: &TaskId, path: &Path) -> Result<(Task, fs::Metadata), FileError> {
        let max = self.inner.max_task_bytes;
        count_task_read();
        let (bytes, meta) = read_capped_meta(path, max).map_err(|e| {
            let (message, io) = match e.kind() {
                io::ErrorKind::FileTooLarge => (too_large_message(max), None),
                io::ErrorKind::InvalidData => (e.to_string(), None),
                kind => (format!("cannot read: {e}"), Some(kind)),
            };
            FileError {
                path: path.to_owned(),
                message,
                io,
            }
        })?;
        let task = Task::from_json(&bytes).map_err(|e| FileError {
            path: path.to_owned(),
            message: format!("not a valid task ({e})"),
            io: None,
        })?;
        if task.id() != id {
            return Err(FileError {
                path: path.to_owned(),
                message: format!("holds task '{}' but is named for '{id}'", task.id()),
                io: None,
            });
        }
        Ok((task, meta))
    }

    /// Writes tasks atomically (temporary file, then rename: never a torn file) and durably per
    /// batch: when this returns, every file of the batch is on disk — unless
    /// [`defer_flush`](Self::defer_flush) moved the flush of [`Durability::Batch`] to
    /// [`flush`](Self::flush).
    pub fn write_batch(&self, tasks: &[Task]) -> io::Result<()> {
        if tasks.is_empty() {
            return Ok(());
        }
        let dir = &self.inner.dir;
        let mut durability = self.inner.durability;
        if durability == Durability::Batch {
            let mut deferred = self.deferred();
            if deferred.on {
                // Noted before the first rename: a failure half-way still leaves a flush due.
                deferred
                    .written
                    .extend(tasks.iter().map(|t| self.path_of(t.id())));
                durability = Durability::None;
            }
        }
        // Whether the head describes the directory up to this write (before any temp file
        // changes its stamp): only then does the write carry it on.
        let head = self.trusted_head();
        let mut temps = Vec::with_capacity(tasks.len());
        let mut stamps = Vec::with_capacity(tasks.len());
        let result = (|| -> io::Result<()> {
            for task in tasks {
                let (tmp, mut f) = create_exclusive(dir, &format!(".{}.json.tmp-", task.id()))?;
                temps.push((tmp, self.path_of(task.id())));
                f.write_all(&task.to_pretty_json())?;
                if durability == Durability::PerFile {
                    f.sync_all()?;
                }
                // A rename keeps size, mtime and inode: the stamp the next scan will see.
                stamps.push(f.metadata().ok().map(|m| stamp_of(&m)));
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
        self.record(tasks, &stamps, head);
        Ok(())
    }

    /// Records freshly written tasks in the index so the next scan does not re-read them, and
    /// carries the head on when it described the directory before the write.
    fn record(&self, tasks: &[Task], stamps: &[Option<Stamp>], head: Option<Head>) {
        if self.inner.index_path.is_none() {
            return;
        }
        let after = self
            .inner
            .head_path
            .as_ref()
            .and_then(|_| DirStamp::now(&self.inner.dir).ok());
        let mut index = self.load_index();
        let carried = head.filter(|h| h.generation == index.generation && after.is_some());
        let mut complete = true;
        for (task, stamp) in tasks.iter().zip(stamps) {
            match stamp {
                Some(stamp) => {
                    index
                        .entries
                        .insert(task.id().to_string(), (*stamp, task.hash()));
                }
                None => {
                    complete = false;
                    index.entries.remove(task.id().as_str());
                }
            }
        }
        index.generation += 1;
        self.save_index(&index);
        let Some(path) = &self.inner.head_path else {
            return;
        };
        match (carried, after) {
            (Some(_), Some(after)) if complete => {
                let head = Head::new(index.generation, index.root(), index.entries.len(), after);
                self.keep_head(path, head);
                self.inner
                    .own_generation
                    .store(index.generation, Ordering::Relaxed);
            }
            _ => self.drop_head(path),
        }
    }

    /// From now until [`flush`](Self::flush), [`write_batch`](Self::write_batch) under
    /// [`Durability::Batch`] renames its files into place without flushing them: a sync
    /// writing 10,000 tasks in batches of 1,000 then flushes the file system once, not ten
    /// times. Meanwhile the head record is kept in memory only, so no other process (nor this
    /// one after a crash) trusts a root whose files may not be on disk yet. The other modes
    /// are unchanged: `PerFile` still flushes every file, `None` nothing.
    pub fn defer_flush(&self) {
        self.deferred().on = true;
    }

    /// Ends [`defer_flush`](Self::defer_flush): when anything was written since, flushes the
    /// file system holding the directory (`syncfs` on Linux, an `fsync` of every file
    /// elsewhere) and the directory, then saves the head record the writes carried on. When
    /// this returns `Ok`, every file written since `defer_flush` is on disk; call it before
    /// recording anything that depends on them. `Ok(true)`: the file system was flushed.
    ///
    /// # Errors
    /// The flush's I/O error; the head record then stays removed (the next scan lists).
    pub fn flush(&self) -> io::Result<bool> {
        let (written, head) = {
            let mut deferred = self.deferred();
            deferred.on = false;
            (std::mem::take(&mut deferred.written), deferred.head.take())
        };
        let flushed = !written.is_empty();
        if flushed {
            let dir = &self.inner.dir;
            sync_filesystem(dir, written.iter().map(PathBuf::as_path))?;
            sync_dir(dir)?;
        }
        if let (Some(path), Some(head)) = (&self.inner.head_path, head) {
            head.save(path);
        }
        Ok(flushed)
    }

    fn deferred(&self) -> std::sync::MutexGuard<'_, Deferred> {
        self.inner
            .deferred
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Records `head` as the directory's head: on disk, or in memory while a flush is due.
    fn keep_head(&self, path: &Path, head: Head) {
        let mut deferred = self.deferred();
        if deferred.on && !deferred.written.is_empty() {
            deferred.head = Some(head);
            drop(deferred);
            Head::forget(path);
        } else {
            deferred.head = None;
            drop(deferred);
            head.save(path);
        }
    }

    /// No head is trusted until the next listing.
    fn drop_head(&self, path: &Path) {
        self.deferred().head = None;
        Head::forget(path);
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

/// Flushes written files: one `syncfs` of the file system holding them on Linux, an `fsync`
/// of each elsewhere.
#[cfg(target_os = "linux")]
fn sync_filesystem<'a>(dir: &Path, _files: impl Iterator<Item = &'a Path>) -> io::Result<()> {
    count_flush();
    let d = File::open(dir)?;
    rustix::fs::syncfs(&d).map_err(io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn sync_filesystem<'a>(_dir: &Path, files: impl Iterator<Item = &'a Path>) -> io::Result<()> {
    count_flush();
    for f in files {
        match File::open(f) {
            Ok(file) => file.sync_all()?,
            // Moved away since it was written (a quarantine): nothing of it left to flush.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::safe::no_follow;
    use super::*;
    use std::os::unix::fs::symlink;
    use std::sync::mpsc;
    use std::time::Duration;

    fn task(id: &str) -> Task {
        Task::from_value(serde_json::json!({"id": id, "description": "d"})).unwrap()
    }

    fn mkfifo(path: &Path) {
        rustix::fs::mkfifoat(rustix::fs::CWD, path, rustix::fs::Mode::from(0o644)).unwrap();
    }

    /// Runs `f` on its own thread. Should it hang on `fifo`, the FIFO's other end is opened so
    /// the thread is released, and the test fails.
    fn never_hangs<T: Send + 'static>(fifo: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(v) => v,
            Err(_) => {
                let mut writer = fs::OpenOptions::new();
                let _w = no_follow(writer.write(true)).open(fifo);
                let mut reader = fs::OpenOptions::new();
                let _r = no_follow(reader.read(true)).open(fifo);
                panic!("blocked on the FIFO {}", fifo.display());
            }
        }
    }

    #[test]
    fn open_regular_refuses_links_fifos_and_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside.txt");
        fs::write(&outside, b"secret").unwrap();
        let link = tmp.path().join("link.json");
        symlink(&outside, &link).unwrap();
        let fifo = tmp.path().join("fifo.json");
        mkfifo(&fifo);
        let dir = tmp.path().join("dir.json");
        fs::create_dir(&dir).unwrap();

        let err = |p: &Path| open_regular(p).map(|_| ()).unwrap_err();
        let e = err(&link);
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(e.to_string(), "is a symbolic link, not a regular file");
        let f = fifo.clone();
        let e = never_hangs(&fifo, move || open_regular(&f).map(|_| ()).unwrap_err());
        assert_eq!(e.to_string(), "is a FIFO, not a regular file");
        assert_eq!(err(&dir).to_string(), "is a directory, not a regular file");
        assert_eq!(
            err(&tmp.path().join("absent")).kind(),
            io::ErrorKind::NotFound
        );
        assert!(open_regular(&outside).is_ok());
    }

    #[test]
    fn read_capped_stops_at_the_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f");
        fs::write(&p, b"12345").unwrap();
        assert_eq!(read_capped(&p, 5).unwrap(), b"12345");
        assert_eq!(
            read_capped(&p, 4).unwrap_err().kind(),
            io::ErrorKind::FileTooLarge
        );
        // A sparse file far beyond the limit is refused by its size: nothing is read.
        let sparse = tmp.path().join("sparse");
        File::create(&sparse).unwrap().set_len(3 << 30).unwrap();
        let e = read_capped(&sparse, DEFAULT_MAX_TASK_BYTES).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(e.to_string(), "holds more than the limit of 1048576 bytes");
    }

    #[test]
    fn task_files_that_are_links_or_too_large_are_problems_left_in_place() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside.json");
        fs::write(&outside, task("linked").to_pretty_json()).unwrap();
        let dir = TaskDir::new(tmp.path().join("tasks"), None, Durability::None)
            .with_max_task_bytes(4096);
        dir.create().unwrap();
        dir.write_batch(&[task("good")]).unwrap();
        symlink(&outside, dir.dir().join("linked.json")).unwrap();
        let big =
            Task::from_value(serde_json::json!({"id": "big", "description": "x".repeat(5000)}))
                .unwrap();
        fs::write(dir.dir().join("big.json"), big.to_pretty_json()).unwrap();

        let scan = dir.scan().unwrap();
        assert_eq!(
            scan.hashes.keys().map(TaskId::as_str).collect::<Vec<_>>(),
            ["good"]
        );
        let problems: Vec<String> = scan.problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].ends_with(
            "big.json: is larger than the limit of 4096 bytes for one task (max_task_bytes)"
        ));
        assert!(problems[1].ends_with("linked.json: is a symbolic link, not a regular file"));
        let linked = TaskId::new("linked").unwrap();
        let e = dir.read(&linked).unwrap_err();
        assert!(e.message.contains("symbolic link") && e.io.is_none(), "{e}");
        assert!(dir.read(&TaskId::new("big").unwrap()).is_err());
        assert!(fs::symlink_metadata(dir.path_of(&linked))
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn a_lock_file_is_never_followed_nor_blocks() {
        let tmp = tempfile::tempdir().unwrap();
        let wait = Duration::from_secs(1);
        // A symbolic link to a file that does not exist yet: the target is never created.
        let target = tmp.path().join("planted");
        let link = tmp.path().join("link.lock");
        symlink(&target, &link).unwrap();
        let e = lock_file(&link, wait).unwrap_err();
        assert_eq!(e.to_string(), "is a symbolic link, not a regular file");
        assert!(!target.exists());
        // A symbolic link to a file with content: never truncated or locked through.
        fs::write(&target, b"keep me").unwrap();
        assert!(lock_file(&link, wait).is_err());
        assert_eq!(fs::read(&target).unwrap(), b"keep me");
        // A FIFO: refused at once.
        let fifo = tmp.path().join("fifo.lock");
        mkfifo(&fifo);
        let f = fifo.clone();
        let e = never_hangs(&fifo, move || lock_file(&f, wait).map(|_| ()).unwrap_err());
        assert_eq!(e.to_string(), "is a FIFO, not a regular file");
        // A regular file keeps its content.
        let plain = tmp.path().join("plain.lock");
        fs::write(&plain, b"pid 1").unwrap();
        assert!(lock_file(&plain, wait).unwrap().is_some());
        assert_eq!(fs::read(&plain).unwrap(), b"pid 1");
    }

    #[test]
    fn new_files_get_fresh_unpredictable_names_and_links_are_replaced_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, _) = create_exclusive(tmp.path(), ".probe-").unwrap();
        let (b, _) = create_exclusive(tmp.path(), ".probe-").unwrap();
        assert_ne!(a, b);
        let name = a.file_name().unwrap().to_str().unwrap();
        assert!(!name.contains(&std::process::id().to_string()), "{name}");
        assert_eq!(name.len(), ".probe-".len() + 32);

        let victim = tmp.path().join("victim");
        fs::write(&victim, b"keep me").unwrap();
        let dest = tmp.path().join("dest.json");
        symlink(&victim, &dest).unwrap();
        write_atomic(&dest, b"new", false).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep me");
        assert!(fs::symlink_metadata(&dest).unwrap().is_file());
        assert_eq!(fs::read(&dest).unwrap(), b"new");
        let left: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
