//! The sync bases, `<data_dir>/sync/<driver>.json`: when the last successful sync with each
//! driver started, the threshold of the conflict journal next time.

use std::fs;
use std::path::PathBuf;

use serde_json::Value;

use super::error::io_err;
use super::{CacheError, CacheLock, Replica};
use crate::files::{file_safe_name, write_atomic};

impl Replica {
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
}
