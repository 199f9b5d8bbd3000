//! Purging tombstones: a deleted task whose deletion is older than N days, and that every
//! configured driver has synced since, is dropped from the local cache. Its id is remembered in
//! `<data_dir>/purged.json` so the sync engine neither pulls it back nor pushes it again; the
//! drivers keep their copy for the replicas that have not synced yet.

use std::collections::BTreeSet;
use std::io;
use std::path::Path;

use chrono::{DateTime, Duration, Utc};

use crate::cache::{CacheLock, Replica};
use crate::files::write_atomic;
use crate::task::{Task, TaskId};

/// The file in the data directory.
pub const FILE_NAME: &str = "purged.json";

/// The ids purged from the cache in `data_dir` (empty when none, or the file is unreadable).
pub fn purged(data_dir: &Path) -> BTreeSet<TaskId> {
    std::fs::read(data_dir.join(FILE_NAME))
        .ok()
        .and_then(|b| serde_json::from_slice::<Vec<String>>(&b).ok())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|s| TaskId::new(s).ok())
        .collect()
}

/// Whether `task` may be purged at `now`: deleted more than `days` ago, before the last
/// successful sync with every driver (`last_syncs`, one per configured driver; `None` = never
/// synced).
pub fn eligible(
    task: &Task,
    days: u32,
    last_syncs: &[Option<DateTime<Utc>>],
    now: DateTime<Utc>,
) -> bool {
    let Some(deleted) = task.get_time("deleted") else {
        return false;
    };
    deleted < now - Duration::days(days.into())
        && last_syncs.iter().all(|s| s.is_some_and(|s| s > deleted))
}

/// Records `ids` as purged, then removes their files; the caller holds the cache lock.
pub fn purge(replica: &Replica, _lock: &CacheLock, ids: &[TaskId]) -> io::Result<()> {
    let mut all = purged(replica.data_dir());
    all.extend(ids.iter().cloned());
    let list: Vec<&str> = all.iter().map(TaskId::as_str).collect();
    let bytes = serde_json::to_vec(&list).expect("ids serialise");
    write_atomic(&replica.data_dir().join(FILE_NAME), &bytes, true)?;
    for id in ids {
        match std::fs::remove_file(replica.task_dir().path_of(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_old_tombstones_every_driver_has_seen() {
        let now = crate::parse_timestamp("2026-03-01T00:00:00Z").unwrap();
        let t = |deleted: Option<&str>| {
            let mut doc = json!({"id": "a"});
            if let Some(d) = deleted {
                doc["deleted"] = json!(d);
            }
            Task::from_value(doc).unwrap()
        };
        let old = t(Some("2026-01-01T00:00:00Z"));
        let seen = Some(crate::parse_timestamp("2026-01-02T00:00:00Z").unwrap());
        assert!(eligible(&old, 30, &[seen, seen], now));
        assert!(eligible(&old, 30, &[], now));
        assert!(!eligible(&old, 30, &[seen, None], now));
        assert!(!eligible(&old, 90, &[seen], now));
        assert!(!eligible(&t(None), 0, &[seen], now));
        let before = Some(crate::parse_timestamp("2025-12-01T00:00:00Z").unwrap());
        assert!(!eligible(&old, 30, &[before], now));
    }
}
