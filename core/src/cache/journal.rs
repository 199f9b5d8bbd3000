//! The conflict journal, `<data_dir>/conflicts.jsonl`: one line per value that lost a merge,
//! appended durably, read back skipping a line a crash tore.

use std::fs::{self, OpenOptions};
use std::io::{self, Read as _, Seek as _, Write as _};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::io_err;
use super::{CacheError, CacheLock, Replica};
use crate::task::TaskId;

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

impl Replica {
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
}
