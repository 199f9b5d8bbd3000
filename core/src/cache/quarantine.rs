//! The quarantine, `<data_dir>/quarantine/`: where a cache file that is not a valid task is
//! moved aside, never read or copied, so a sync can replace it without destroying it.

use std::fs;
use std::io;
use std::path::PathBuf;

use super::error::io_err;
use super::{CacheError, CacheLock, Replica};
use crate::task::TaskId;

impl Replica {
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
