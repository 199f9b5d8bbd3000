//! `hypertask status`: whether a daemon runs, and how current each driver is.

use std::path::Path;
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::cache::{CacheError, Replica};
use crate::sync::DriverStatus;
use crate::task::parse_timestamp;

/// The whole status (its JSON is `hypertask status --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// The daemon of this data directory.
    pub daemon: DaemonState,
    /// One entry per configured driver, in the order given.
    pub drivers: Vec<DriverState>,
}

/// Whether a daemon runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DaemonState {
    /// A daemon holds the data directory's daemon lock.
    pub running: bool,
    /// Its process id, when known.
    pub pid: Option<u32>,
}

/// How current one driver is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DriverState {
    /// Instance name.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// When the last clean sync with it ended (canonical timestamp).
    pub last_success: Option<String>,
    /// When the last sync with it started.
    pub last_attempt: Option<String>,
    /// Why the last sync with it did not go through, in one sentence.
    pub last_error: Option<String>,
    /// Tasks of the local cache changed since the last clean sync with it: local changes it
    /// has not seen yet (every task when it never synced).
    pub pending: usize,
}

/// The status of `replica`'s data directory for the drivers named `(name, kind)`.
///
/// Blocking: it reads the cache directory.
pub fn status(replica: &Replica, drivers: &[(String, String)]) -> Result<Status, CacheError> {
    let (running, pid) = super::lock::running(replica.data_dir());
    let changed = modification_times(replica.task_dir().dir())?;
    let drivers = drivers
        .iter()
        .map(|(name, kind)| {
            let s = DriverStatus::load(replica.data_dir(), name);
            let since = s.last_success.as_deref().and_then(parse_timestamp);
            let pending = match since {
                // Millisecond precision on both sides: the sync's own writes end no later than
                // the millisecond it recorded as its end.
                Some(t) => changed.iter().filter(|m| **m > t).count(),
                None => changed.len(),
            };
            DriverState {
                name: name.clone(),
                kind: kind.clone(),
                last_success: s.last_success,
                last_attempt: s.last_attempt,
                last_error: s.last_error,
                pending,
            }
        })
        .collect();
    Ok(Status {
        daemon: DaemonState { running, pid },
        drivers,
    })
}

/// When each task file of `dir` was last written, to the millisecond.
fn modification_times(dir: &Path) -> Result<Vec<DateTime<Utc>>, CacheError> {
    let io_err = |source| CacheError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') || !name.ends_with(".json") {
            continue;
        }
        // A file removed since the listing is no longer a pending change.
        let Ok(modified) = entry.metadata().and_then(|m| m.modified()) else {
            continue;
        };
        out.push(to_millis(modified));
    }
    Ok(out)
}

fn to_millis(t: SystemTime) -> DateTime<Utc> {
    let t = DateTime::<Utc>::from(t);
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}
