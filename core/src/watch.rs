//! Watching a directory of task files, so a daemon syncs when they change instead of polling:
//! the local cache (edits by any hypertask process) and an fs driver's shared directory.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use notify::{Event, EventKind, RecursiveMode, Watcher as _};
use tokio::sync::Notify;

/// A watch on one directory's task files (`<name>.json`, not dot-files: temporary files and
/// lock files do not count, and neither does reading a file).
///
/// Changes coalesce: however many happen between two calls of [`DirWatch::changed`], the
/// second call returns once. Spurious wakes are possible (an overflowed kernel queue reports
/// "something changed"); a missed change is not, while the watch lives.
pub struct DirWatch {
    dir: PathBuf,
    changed: Arc<Notify>,
    // Dropping the watcher stops the watch.
    _watcher: notify::RecommendedWatcher,
}

impl std::fmt::Debug for DirWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirWatch").field("dir", &self.dir).finish()
    }
}

impl DirWatch {
    /// Starts watching `dir` (not its subdirectories).
    ///
    /// # Errors
    /// The directory does not exist, or the system's watch limit is reached.
    pub fn new(dir: impl Into<PathBuf>) -> io::Result<DirWatch> {
        let dir = dir.into();
        let changed = Arc::new(Notify::new());
        let signal = Arc::clone(&changed);
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
            // An error or an overflow may hide a change: wake the waiter, which re-checks.
            let relevant = match &event {
                Ok(e) => e.need_rescan() || counts(e),
                Err(_) => true,
            };
            if relevant {
                signal.notify_one();
            }
        })
        .map_err(into_io)?;
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(into_io)?;
        Ok(DirWatch {
            dir,
            changed,
            _watcher: watcher,
        })
    }

    /// The watched directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Waits until a task file changed since the previous call returned (or since the watch
    /// started, for the first call).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

/// Whether an event is a change (not an access) of a task file.
fn counts(event: &Event) -> bool {
    !matches!(event.kind, EventKind::Access(_))
        && event.paths.iter().any(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".json") && !n.starts_with('.'))
        })
}

fn into_io(e: notify::Error) -> io::Error {
    match e.kind {
        notify::ErrorKind::Io(io) => io,
        notify::ErrorKind::PathNotFound => io::Error::new(io::ErrorKind::NotFound, e.to_string()),
        _ => io::Error::other(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Whether `watch` reports a change within a generous deadline.
    async fn fires(watch: &DirWatch) -> bool {
        tokio::time::timeout(Duration::from_secs(10), watch.changed())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn task_files_wake_the_watch_and_temporary_files_and_reads_do_not() {
        let tmp = tempfile::tempdir().unwrap();
        let watch = DirWatch::new(tmp.path()).unwrap();
        std::fs::write(tmp.path().join("a.json"), b"{}").unwrap();
        std::fs::write(tmp.path().join("b.json"), b"{}").unwrap();
        assert!(fires(&watch).await);
        // Let the rest of the burst arrive: it coalesces into at most one more wake.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = tokio::time::timeout(Duration::from_millis(50), watch.changed()).await;

        std::fs::write(tmp.path().join(".a.json.tmp-1"), b"{}").unwrap();
        std::fs::write(tmp.path().join("notes.txt"), b"x").unwrap();
        let _ = std::fs::read(tmp.path().join("a.json")).unwrap();
        let quiet = tokio::time::timeout(Duration::from_millis(500), watch.changed()).await;
        assert!(quiet.is_err(), "a read or a foreign file woke the watch");

        // The rename of a temporary file onto a task file is a change.
        std::fs::rename(tmp.path().join(".a.json.tmp-1"), tmp.path().join("c.json")).unwrap();
        assert!(fires(&watch).await);
    }

    #[test]
    fn a_missing_directory_is_not_found() {
        let tmp = tempfile::tempdir().unwrap();
        let e = DirWatch::new(tmp.path().join("absent")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
