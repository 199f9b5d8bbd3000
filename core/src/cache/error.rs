//! The errors of the local cache.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::files::FileError;
use crate::task::TaskError;

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

pub(super) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The nearest existing path at or above `dir` when it is not a directory: what stops `dir`
/// from being created.
pub(super) fn file_in_the_way(dir: &Path) -> Option<PathBuf> {
    let existing = dir.ancestors().find(|p| p.exists())?;
    (!existing.is_dir()).then(|| existing.to_owned())
}
