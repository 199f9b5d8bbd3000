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

use std::borrow::Cow;
use std::io::Read as _;

use git2::Oid;
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

/// What the index records of a task file.
struct Known<'a> {
    /// Its name in `tasks/`.
    name: Cow<'a, [u8]>,
    kind: Kind,
    recorded: Recorded,
}

/// The file metadata and blob the index records of a file (32-bit fields, as git stores
/// them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Recorded {
    ctime: (i32, u32),
    mtime: (i32, u32),
    ino: u32,
    size: u32,
    mode: u32,
    id: Oid,
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

impl Kind {
    /// The kind of an entry with these flags (as stored in the index file).
    fn of(flags: u16, flags_extended: u16) -> Kind {
        if flags & STAGE_MASK != 0 {
            Kind::Conflicted
        } else if flags_extended & SKIP_WORKTREE != 0 {
            Kind::Hidden
        } else {
            Kind::Tracked
        }
    }
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
        let (bytes, index_time) = read_index_file(&self.workdir().join(".git").join("index"));
        let mut known = match bytes.as_deref().and_then(parse_index) {
            Some(known) => known,
            None => self.index_entries()?,
        };
        let mut status = TasksStatus {
            removed_or_conflicted: known.iter().any(|k| k.kind == Kind::Conflicted),
            ..TasksStatus::default()
        };
        // The index is sorted by path already (the sort only checks); a conflict's stages
        // share one name.
        known.sort_by(|a, b| a.name.cmp(&b.name));
        known.dedup_by(|a, b| a.name == b.name);

        let dir = self.workdir().join(TASKS_DIR);
        let tracked: Vec<&Known<'_>> = known.iter().filter(|k| k.kind == Kind::Tracked).collect();
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
                .filter(|n| known.binary_search_by(|k| (*k.name).cmp(n)).is_err())
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
                Verdict::Compare => match self.on_disk(&dir.join(path_of(&known.name))) {
                    OnDisk::File(bytes) => self.hash(&bytes)? != known.recorded.id,
                    OnDisk::Missing => {
                        status.removed_or_conflicted = true;
                        false
                    }
                    OnDisk::Foreign => true,
                },
            };
            if changed {
                status.changed.extend(task_id_of_name(&known.name));
            }
        }
        status.changed.sort();
        Ok(status)
    }

    /// The task file entries of the index as libgit2 reads it.
    fn index_entries(&self) -> Result<Vec<Known<'static>>, DriverError> {
        let index = self
            .repo
            .index()
            .map_err(self.git("cannot read the index"))?;
        Ok(index.iter().filter_map(|e| known_of(&e)).collect())
    }
}

/// A libgit2 index entry, when it is a task file's.
fn known_of(e: &git2::IndexEntry) -> Option<Known<'static>> {
    let name = e.path.strip_prefix(format!("{TASKS_DIR}/").as_bytes())?;
    is_task_name(name).then(|| Known {
        name: Cow::Owned(name.to_vec()),
        kind: Kind::of(e.flags, e.flags_extended),
        recorded: Recorded {
            ctime: (e.ctime.seconds(), e.ctime.nanoseconds()),
            mtime: (e.mtime.seconds(), e.mtime.nanoseconds()),
            ino: e.ino,
            size: e.file_size,
            mode: e.mode,
            id: e.id,
        },
    })
}

/// The index file's bytes and modification time (none when it cannot be read).
fn read_index_file(path: &Path) -> (Option<Vec<u8>>, Option<(i64, i64)>) {
    let Ok(mut file) = std::fs::File::open(path) else {
        return (None, None);
    };
    let time = file.metadata().ok().and_then(|m| stamp(&m));
    let mut bytes = Vec::new();
    match file.read_to_end(&mut bytes) {
        Ok(_) => (Some(bytes), time),
        Err(_) => (None, time),
    }
}

/// The task file entries of an index file, read directly: versions 2 and 3 of git's format
/// (what libgit2 and git write unless told otherwise). A large clone's index is read on
/// every sync, and libgit2's reading (every entry copied and put in a hash map, every path
/// validated, a SHA-1 of the whole file) cost more than the comparison it serves. `None`
/// for anything else (version 4, a malformed or truncated file): libgit2 reads those.
fn parse_index(bytes: &[u8]) -> Option<Vec<Known<'_>>> {
    const FIXED: usize = 62;
    const EXTENDED: u16 = 0x4000;
    const NAME_MASK: u16 = 0x0fff;
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };
    let u16_at = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
    };
    if bytes.get(..4)? != b"DIRC" {
        return None;
    }
    let version = u32_at(4)?;
    if !(2..=3).contains(&version) {
        return None;
    }
    let count = u32_at(8)? as usize;
    let prefix = format!("{TASKS_DIR}/");
    let mut known = Vec::new();
    let mut at = 12;
    for _ in 0..count {
        let flags = u16_at(at + FIXED - 2)?;
        let (fixed, flags_extended) = if flags & EXTENDED != 0 {
            if version < 3 {
                return None;
            }
            (FIXED + 2, u16_at(at + FIXED)?)
        } else {
            (FIXED, 0)
        };
        let rest = bytes.get(at + fixed..)?;
        let len = rest.iter().position(|&b| b == 0)?;
        let name_len = usize::from(flags & NAME_MASK);
        if name_len != usize::from(NAME_MASK) && name_len != len {
            return None;
        }
        // Padded with 1 to 8 NULs to a multiple of 8 bytes.
        let size = (fixed + len + 8) & !7;
        if bytes
            .get(at + fixed + len..at + size)?
            .iter()
            .any(|&b| b != 0)
        {
            return None;
        }
        let path = &rest[..len];
        if let Some(name) = path.strip_prefix(prefix.as_bytes()) {
            if is_task_name(name) {
                let word = |i: usize| u32_at(at + 4 * i);
                known.push(Known {
                    name: Cow::Borrowed(name),
                    kind: Kind::of(flags, flags_extended),
                    recorded: Recorded {
                        ctime: (word(0)? as i32, word(1)?),
                        mtime: (word(2)? as i32, word(3)?),
                        ino: word(5)?,
                        mode: word(6)?,
                        size: word(9)?,
                        id: Oid::from_bytes(bytes.get(at + 40..at + 60)?).ok()?,
                    },
                });
            }
        }
        at += size;
    }
    // The extensions and the checksum follow.
    (bytes.len() >= at + 20).then_some(known)
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
fn compare_metadata(
    dir: &Path,
    files: &[&Known<'_>],
    index_time: Option<(i64, i64)>,
) -> Vec<Verdict> {
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
            let e = &known.recorded;
            let st = match rustix::fs::statat(&dirfd, &*known.name, AtFlags::SYMLINK_NOFOLLOW) {
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
            let same = st.st_size as u32 == e.size
                && (mtime.0 as i32, mtime.1 as u32) == e.mtime
                && (st.st_ctime as i32, st.st_ctime_nsec as u32) == e.ctime
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
    files: &[&Known<'_>],
    _index_time: Option<(i64, i64)>,
) -> Vec<Verdict> {
    vec![Verdict::Compare; files.len()]
}

#[cfg(test)]
mod tests {
    use git2::{IndexEntry, IndexTime, Repository};

    use super::*;

    fn entry(path: &str, n: u32, flags: u16, flags_extended: u16) -> IndexEntry {
        IndexEntry {
            ctime: IndexTime::new(n as i32, n + 1),
            mtime: IndexTime::new(n as i32 + 2, n + 3),
            dev: 7,
            ino: n + 4,
            mode: if n.is_multiple_of(20) {
                0o100755
            } else {
                0o100644
            },
            uid: 1,
            gid: 2,
            file_size: n + 5,
            id: Oid::hash_object(git2::ObjectType::Blob, path.as_bytes()).unwrap(),
            flags,
            flags_extended,
            path: path.as_bytes().to_vec(),
        }
    }

    type Seen = Vec<(Vec<u8>, Kind, Recorded)>;

    fn seen<'a>(known: impl IntoIterator<Item = Known<'a>>) -> Seen {
        known
            .into_iter()
            .map(|k| (k.name.into_owned(), k.kind, k.recorded))
            .collect()
    }

    /// Writes an index of `entries` with libgit2; its bytes and what libgit2 reads back.
    fn written(entries: &[IndexEntry]) -> (Vec<u8>, Seen) {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repository::init(tmp.path()).unwrap();
        let mut index = repo.index().unwrap();
        for e in entries {
            // The entry's blob (its path's bytes) exists, as libgit2 requires.
            assert_eq!(repo.blob(&e.path).unwrap(), e.id);
            index.add(e).unwrap();
        }
        index.write().unwrap();
        let bytes = std::fs::read(tmp.path().join(".git/index")).unwrap();
        let reread = Repository::open(tmp.path()).unwrap().index().unwrap();
        let libgit2 = seen(reread.iter().filter_map(|e| known_of(&e)));
        (bytes, libgit2)
    }

    #[test]
    fn the_index_file_reads_as_libgit2_reads_it() {
        let id64 = format!("tasks/{}.json", "x".repeat(64));
        let long = format!("notes/{}", "y".repeat(5000));
        let plain = || {
            vec![
                entry("README", 0, 0, 0),
                entry("notes/a.json", 10, 0, 0),
                entry("tasks/a.json", 20, 0, 0),
                entry(&id64, 30, 0, 0),
                entry(&long, 40, 0, 0),
                entry("tasks/sub/c.json", 50, 0, 0),
                entry("tasks/z.json", 60, 0, 0),
                entry("tasks/zz.txt", 70, 0, 0),
            ]
        };
        let (bytes, libgit2) = written(&plain());
        assert_eq!(&bytes[4..8], &2u32.to_be_bytes());
        assert_eq!(libgit2.len(), 3);
        assert_eq!(seen(parse_index(&bytes).unwrap()), libgit2);

        // Skip-worktree makes it version 3; a conflict's stages are entries of their own.
        let mut extended = plain();
        extended.push(entry("tasks/hidden.json", 80, 0, SKIP_WORKTREE));
        extended.push(entry("tasks/m.json", 90, 1 << 12, 0));
        extended.push(entry("tasks/m.json", 100, 2 << 12, 0));
        let (bytes, libgit2) = written(&extended);
        assert_eq!(&bytes[4..8], &3u32.to_be_bytes());
        assert_eq!(libgit2.len(), 6);
        let kinds: Vec<Kind> = libgit2.iter().map(|s| s.1).collect();
        assert!(kinds.contains(&Kind::Hidden) && kinds.contains(&Kind::Conflicted));
        assert_eq!(seen(parse_index(&bytes).unwrap()), libgit2);

        // Anything else is left to libgit2.
        assert!(parse_index(&bytes[..bytes.len() - 30]).is_none());
        let mut v4 = bytes.clone();
        v4[7] = 4;
        assert!(parse_index(&v4).is_none());
        assert!(parse_index(b"").is_none());
    }
}
