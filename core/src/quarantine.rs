//! Interim quarantine of unreadable cache files (the fs hardening work replaces this).

use std::path::PathBuf;

use crate::cache::{CacheError, CacheLock, Replica};
use crate::task::TaskId;

impl Replica {
    /// Moves the cache file of `id` aside into `<data_dir>/quarantine/`, never destroying it.
    pub fn quarantine(&self, _lock: &CacheLock, id: &TaskId) -> Result<PathBuf, CacheError> {
        let from = self.task_dir().path_of(id);
        let dir = self.data_dir().join("quarantine");
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        let to = dir.join(format!("{id}.{stamp}.json"));
        let io = |path: &PathBuf| {
            let path = path.clone();
            move |source| CacheError::Io { path, source }
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        std::fs::rename(&from, &to).map_err(io(&from))?;
        Ok(to)
    }
}
