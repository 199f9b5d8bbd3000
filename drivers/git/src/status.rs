//! The task files of the working tree against the index: what `git status` says of
//! `tasks/<id>.json`, found the way git finds it, and cheaper than libgit2's status pass.
//!
//! One `lstat` per tracked task file (relative to the open `tasks` directory), compared with
//! the metadata the index recorded; the content is hashed only where that metadata differs or
//! is racy (the file changed in the same timestamp tick as the index was written, or later).
//! One listing of the directory finds the task files the index does not track. The `lstat`s
//! are spread over a few threads, as git's `core.preloadIndex` does: on a clone of 10,000
//! tasks they are most of a sync with nothing to do.
//!
//! Names in `tasks/` that are not task files cannot change a listing and are not looked at.

use std::path::Path;

use git2::IndexEntry;
use hypertask_core::{DriverError, TaskId};

use crate::repo::Session;
use crate::tree::{is_task_name, task_id_of_name, MODE_EXECUTABLE, TASKS_DIR};
use crate::worktree::{OnDisk, SKIP_WORKTREE};

/// The stage bits of an index entry's flags (non-zero: a merge conflict).
const STAGE_MASK: u16 = 0x3000;
/// Fewest tracked files one thread compares, below which another thread does not pay for
/// itself (as git's `core.preloadIndex`; a thread costs about what 50 `lstat`s do).
const FILES_PER_THREAD: usize = 500;
/// Most threads the comparison uses (it waits on the kernel's directory cache, which scales
/// with cores only so far).
const MAX_THREADS: usize = 4;

/// What one pass over `tasks/` found against the index.
#[derive(Debug, Default)]
pub(crate) struct TasksStatus {
    /// Task files new to the index, edited, or replaced by something that is not a regular
    /// file (what `git status` reports as untracked, modified or type-changed), by id.
    pub(crate) changed: Vec<TaskId>,
    /// A task file the index tracks is gone, or plain git left a merge conflict in `tasks/`.
    pub(crate) removed_or_conflicted: bool,
}

impl TasksStatus {
    /// Whether nothing under `tasks/` differs from the index.
    pub(crate) fn is_clean(&self) -> bool {
        self.changed.is_empty() && !self.removed_or_conflicted
    }
}

/// An index entry of a task file.
struct Known {
    entry: IndexEntry,
    kind: Kind,
}

impl Known {
    /// Its name in `tasks/`.
    fn name(&self) -> &[u8] {
        &self.entry.path[TASKS_DIR.len() + 1..]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Tracked: compared with the working tree.
    Tracked,
    /// Kept out of the working tree (skip-worktree): git does not look at it.
    Hidden,
    /// A merge conflict left by plain git: reported, never committed as a hand edit.
    Conflicted,
}

/// What the metadata alone says of a tracked file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Same,
    /// The metadata cannot tell (it differs, or is racy): the content decides.
    Compare,
    /// Not a regular file any more, or its executable bit changed.
    Changed,
    Removed,
}

impl Session<'_> {
    /// Compares every task file of the working tree with the index (see the module).
    pub(crate) fn tasks_status(&self) -> Result<TasksStatus, DriverError> {
        let index = self
            .repo
            .index()
            .map_err(self.git("cannot read the index"))?;
        let mut status = TasksStatus::default();
        let index_time = std::fs::symlink_metadata(self.workdir().join(".git").join("index"))
            .ok()
            .and_then(|m| stamp(&m));
        let prefix = format!("{TASKS_DIR}/");
        let mut known: Vec<Known> = Vec::new();
        for entry in index.iter() {
            let Some(name) = entry.path.strip_prefix(prefix.as_bytes()) else {
                continue;
            };
            if !is_task_name(name) {
                continue;
            }
            let kind = if entry.flags & STAGE_MASK != 0 {
                status.removed_or_conflicted = true;
                Kind::Conflicted
            } else if entry.flags_extended & SKIP_WORKTREE != 0 {
                Kind::Hidden
            } else {
                Kind::Tracked
            };
            known.push(Known { entry, kind });
        }
        drop(index);
        // The index is sorted by path already (the sort only checks); a conflict's stages
        // share one name.
        known.sort_by(|a, b| a.name().cmp(b.name()));
        known.dedup_by(|a, b| a.name() == b.name());

        let dir = self.workdir().join(TASKS_DIR);
        let tracked: Vec<&Known> = known.iter().filter(|k| k.kind == Kind::Tracked).collect();
        // The first share of the `lstat`s runs here after the listing, the others on threads
        // of their own meanwhile.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = (tracked.len() / FILES_PER_THREAD).clamp(1, cores.min(MAX_THREADS));
        let chunk = tracked.len().div_ceil(threads).max(1);
        let (verdicts, listed) = std::thread::scope(|scope| {
            let dir = dir.as_path();
            let mut chunks = tracked.chunks(chunk);
            let first = chunks.next().unwrap_or_default();
            let workers: Vec<_> = chunks
                .map(|files| scope.spawn(move || compare_metadata(dir, files, index_time)))
                .collect();
            let listed = task_names(dir);
            let mut verdicts = compare_metadata(dir, first, index_time);
            for w in workers {
                verdicts.extend(w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
            }
            (verdicts, listed)
        });
        // Every tracked file found is one of the names listed: when they are as many, no
        // name listed is untracked (files added or removed during the pass aside, which the
        // next pass sees). Otherwise, or with entries not compared, each name is looked up.
        let found = verdicts.iter().filter(|v| **v != Verdict::Removed).count();
        if listed.len() != found || tracked.len() != known.len() {
            status.changed = listed
                .iter()
                .map(|n| n.as_encoded_bytes())
                .filter(|n| known.binary_search_by(|k| k.name().cmp(n)).is_err())
                .filter_map(task_id_of_name)
                .collect();
        }
        for (known, verdict) in tracked.iter().zip(verdicts) {
            let changed = match verdict {
                Verdict::Same => false,
                Verdict::Removed => {
                    status.removed_or_conflicted = true;
                    false
                }
                Verdict::Changed => true,
                // As git does: the content decides.
                Verdict::Compare => match self.on_disk(&dir.join(path_of(known.name()))) {
                    OnDisk::File(bytes) => self.hash(&bytes)? != known.entry.id,
                    OnDisk::Missing => {
                        status.removed_or_conflicted = true;
                        false
                    }
                    OnDisk::Foreign => true,
                },
            };
            if changed {
                status.changed.extend(task_id_of_name(known.name()));
            }
        }
        status.changed.sort();
        Ok(status)
    }
}

/// The names of the task files in `dir` (none when it cannot be listed).
fn task_names(dir: &Path) -> Vec<std::ffi::OsString> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| Some(entry.ok()?.file_name()))
        .filter(|name| is_task_name(name.as_encoded_bytes()))
        .collect()
}

/// `name` as a path (task file names are ASCII).
fn path_of(name: &[u8]) -> &Path {
    Path::new(std::str::from_utf8(name).unwrap_or_default())
}

/// A file's modification time as (seconds, nanoseconds).
fn stamp(meta: &std::fs::Metadata) -> Option<(i64, i64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        Some((meta.mtime(), meta.mtime_nsec()))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}

/// What the metadata says of each of `files` (names in `dir` with their index entries).
#[cfg(unix)]
fn compare_metadata(dir: &Path, files: &[&Known], index_time: Option<(i64, i64)>) -> Vec<Verdict> {
    use rustix::fs::{AtFlags, FileType, Mode, OFlags};
    // `lstat` relative to the open directory: the kernel resolves one name, not the path.
    let Ok(dirfd) = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return vec![Verdict::Removed; files.len()];
    };
    files
        .iter()
        .map(|known| {
            let e = &known.entry;
            let st = match rustix::fs::statat(&dirfd, known.name(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(rustix::io::Errno::NOENT) => return Verdict::Removed,
                // Unreadable: the content check reports it.
                Err(_) => return Verdict::Compare,
            };
            if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
                return Verdict::Changed;
            }
            let executable = st.st_mode & 0o111 != 0;
            if executable != (e.mode == MODE_EXECUTABLE as u32) {
                return Verdict::Changed;
            }
            let mtime = (st.st_mtime as i64, st.st_mtime_nsec as i64);
            // The index stores 32-bit fields; git truncates the same way.
            let same = st.st_size as u32 == e.file_size
                && (mtime.0 as i32, mtime.1 as u32) == (e.mtime.seconds(), e.mtime.nanoseconds())
                && (st.st_ctime as i32, st.st_ctime_nsec as u32)
                    == (e.ctime.seconds(), e.ctime.nanoseconds())
                && st.st_ino as u32 == e.ino;
            let racy = index_time.is_none_or(|t| mtime >= t);
            if same && !racy {
                Verdict::Same
            } else {
                Verdict::Compare
            }
        })
        .collect()
}

/// Without the metadata git records, every file's content decides.
#[cfg(not(unix))]
fn compare_metadata(
    _dir: &Path,
    files: &[&Known],
    _index_time: Option<(i64, i64)>,
) -> Vec<Verdict> {
    vec![Verdict::Compare; files.len()]
}
