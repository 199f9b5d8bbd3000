//! Durability: how a batch of writes reaches the disk, and the deferred flush that lets a sync
//! flush the file system once at its end while the head record waits in memory.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use super::safe::sync_dir;
use super::TaskDir;
use crate::head::{count_flush, Head};

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

/// The state of a directory whose writes are flushed once, at the end of a sync.
#[derive(Debug, Default)]
pub(super) struct Deferred {
    /// [`TaskDir::defer_flush`] was called and [`TaskDir::flush`] not yet.
    pub(super) on: bool,
    /// Files renamed into place since the last flush (bounded by one sync's writes).
    pub(super) written: Vec<PathBuf>,
    /// The head the writes carried on, saved by the flush (the record on disk is removed
    /// meanwhile, so nothing trusts a root whose files may not be on disk yet).
    pub(super) head: Option<Head>,
}

impl TaskDir {
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
            // The head was stamped right after the last rename: racy for other processes.
            // When the flush outlasted that tick, confirm it now, so the next sync (a no-op,
            // most often) trusts it without a listing of its own.
            if flushed {
                let _ = self.confirm_racy(path, head, false);
            }
        }
        Ok(flushed)
    }

    pub(super) fn deferred(&self) -> std::sync::MutexGuard<'_, Deferred> {
        self.inner
            .deferred
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Records `head` as the directory's head: on disk, or in memory while a flush is due.
    pub(super) fn keep_head(&self, path: &Path, head: Head) {
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
    pub(super) fn drop_head(&self, path: &Path) {
        self.deferred().head = None;
        Head::forget(path);
    }
}

/// Flushes written files: one `syncfs` of the file system holding them on Linux, an `fsync`
/// of each elsewhere.
#[cfg(target_os = "linux")]
pub(super) fn sync_filesystem<'a>(
    dir: &Path,
    _files: impl Iterator<Item = &'a Path>,
) -> io::Result<()> {
    count_flush();
    let d = File::open(dir)?;
    rustix::fs::syncfs(&d).map_err(io::Error::from)
}

#[cfg(not(target_os = "linux"))]
pub(super) fn sync_filesystem<'a>(
    _dir: &Path,
    files: impl Iterator<Item = &'a Path>,
) -> io::Result<()> {
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
