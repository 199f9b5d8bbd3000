//! A directory of task files, `<dir>/<id>.json`: the local cache's format and the fs driver's.
//! [`TaskDir`] is one directory's handle; each of its jobs has a module:
//!
//! - `scan`: the stat index (size, mtime, ctime, inode → hash) and the listing that consults it, so
//!   an unchanged file is never read again; the head record lets a listing be skipped.
//! - `read`: reading and validating one task file.
//! - `write`: the atomic batch writer, which keeps the index and the head up to date.
//! - `flush`: [`Durability`], and the deferred flush that makes a whole sync durable at once.
//! - `safe`: the one place for safe file access in directories other people can write to (a
//!   shared folder, a git working clone, the cache itself):
//!   - [`open_regular`] and [`read_capped`] read only regular files: a symbolic link is never
//!     followed, a FIFO or device never blocks, and the check uses the opened handle's
//!     metadata, so nothing can be swapped in between; reading stops at a size limit.
//!   - [`create_exclusive`] makes new files under unpredictable names, refusing anything
//!     already there (a planted symbolic link included); [`write_atomic`] and
//!     [`TaskDir::write_batch`] write through it and rename.
//!   - [`lock_file`] is the one lock helper: it never follows, creates through or truncates a
//!     symbolic link and refuses anything but a regular file.
//!
//! Blocking: call it from `spawn_blocking` in async code.

mod flush;
mod read;
mod safe;
mod scan;
mod write;

pub use flush::Durability;
pub use safe::{
    create_exclusive, file_safe_name, lock_file, open_regular, read_capped, write_atomic,
};

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use crate::error::{DriverError, ErrorKind};
use crate::hash::Hashes;
pub use crate::head::{io_counts, IoCounts};
use crate::task::{TaskId, DEFAULT_MAX_TASK_BYTES};
use flush::Deferred;

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

/// A directory of `<id>.json` task files with an index of (size, mtime, ctime, inode) → hash, so a
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
    /// The index as this process last read or wrote it, with the stamp of its file then, so
    /// the passes of one sync parse it once (shared by clones).
    loaded: Arc<Mutex<Option<scan::Loaded>>>,
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
                loaded: Arc::default(),
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
}
