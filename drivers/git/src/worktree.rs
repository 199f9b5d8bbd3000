//! The working tree, the one place the driver writes files — and it writes only task files.
//!
//! A remote's tree is someone else's data: it may name `..`, `.git/hooks/post-checkout`, an
//! absolute path or a symlink out of the clone. So only `tasks/<id>.json` regular files (an id
//! is ASCII letters, digits, `_`, `-`) are ever materialised, always as plain non-executable
//! files inside a `tasks` directory that is a real directory of the clone. Everything else in a
//! tree stays in git's object store: the index records it with git's skip-worktree bit (as a
//! sparse checkout does), so plain `git status` in the clone stays clean and a commit made
//! there by hand keeps it, and names no index may hold are left out of the index altogether.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use git2::{IndexEntry, IndexTime, ObjectType, Oid, Tree};
use hypertask_core::files::write_atomic;
use hypertask_core::{merge, DriverError, ErrorKind, TaskId};

use crate::error;
use crate::repo::{parse_task, Session};
use crate::tree::{task_files, task_id_of_path, MODE_BLOB, MODE_EXECUTABLE, MODE_TREE, TASKS_DIR};

/// libgit2's `GIT_INDEX_ENTRY_SKIP_WORKTREE` (in the extended flags).
pub(crate) const SKIP_WORKTREE: u16 = 1 << 14;
/// How deep a remote tree is followed when recording it in the index.
const MAX_TREE_DEPTH: usize = 32;
/// How many entries that are not task files are recorded in the index at most; a tree with
/// more is someone else's repository, and the rest stay in the object store only.
const MAX_FOREIGN_ENTRIES: usize = 100_000;

/// What is on disk where a task file goes.
pub(crate) enum OnDisk {
    Missing,
    /// A regular file and its bytes.
    File(Vec<u8>),
    /// A symlink, a directory, something unreadable or too large: never touched.
    Foreign,
}

impl Session<'_> {
    /// The clone's `tasks` directory, created when missing. Refuses one that is a symlink or
    /// not a directory, so no write can be led out of the clone.
    pub(crate) fn tasks_dir(&self) -> Result<PathBuf, DriverError> {
        let dir = self.workdir().join(TASKS_DIR);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_dir() => Ok(dir),
            Ok(_) => Err(DriverError::new(
                self.name(),
                ErrorKind::Config,
                format!(
                    "{} is not a directory (a symlink or a file); the git driver writes task \
                     files only into a real directory of the clone",
                    dir.display()
                ),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::create_dir(&dir)
                .map(|()| dir.clone())
                .map_err(|e| error::io(self.name(), dir.display(), e)),
            Err(e) => Err(error::io(self.name(), dir.display(), e)),
        }
    }

    /// Makes the task files of the working tree, and the index, follow the branch from tree
    /// `from` to tree `to`. Files the user changed and did not commit are never overwritten:
    /// a valid task edit is merged with the incoming state and stays uncommitted; anything
    /// else is left exactly as it is.
    pub(crate) fn follow(&self, from: &Tree<'_>, to: &Tree<'_>) -> Result<(), DriverError> {
        let dir = self.tasks_dir()?;
        let old = task_files(&self.repo, from);
        let new = task_files(&self.repo, to);
        let new_modes = task_modes(&self.repo, to);
        let mut touched: BTreeMap<TaskId, IndexEntry> = BTreeMap::new();
        let ids: Vec<&TaskId> = {
            let mut v: Vec<&TaskId> = old.keys().chain(new.keys()).collect();
            v.sort();
            v.dedup();
            v
        };
        for id in ids {
            let (old_id, new_id) = (old.get(id).copied(), new.get(id).copied());
            if old_id == new_id {
                continue;
            }
            let path = dir.join(format!("{id}.json"));
            let current = self.on_disk(&path);
            let current_id = match &current {
                OnDisk::File(b) => Some(self.hash(b)?),
                OnDisk::Missing => None,
                OnDisk::Foreign => {
                    tracing::warn!(driver = %self.name(), path = %path.display(), "not a regular task file; left as it is");
                    continue;
                }
            };
            let new_bytes = match new_id {
                Some(b) => match self.blob_within_limit(b)? {
                    Some(bytes) => Some(bytes),
                    None => {
                        tracing::warn!(driver = %self.name(), task = %id, "task file larger than a task may be; left in the object store");
                        touched.insert(id.clone(), skipped_entry(id, b));
                        continue;
                    }
                },
                None => None,
            };
            let current_bytes = match current {
                OnDisk::File(b) => Some(b),
                _ => None,
            };
            let (wanted, clean) = if current_id == old_id {
                (new_bytes, true)
            } else {
                let merged = self.merge_uncommitted(id, current_bytes.as_deref(), new_bytes);
                let clean = match (&merged, new_id) {
                    (Some(b), Some(n)) => self.hash(b)? == n,
                    _ => false,
                };
                (merged, clean)
            };
            if wanted != current_bytes {
                match &wanted {
                    Some(bytes) => write_atomic(&path, bytes, false)
                        .map_err(|e| error::io(self.name(), path.display(), e))?,
                    None => match fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(error::io(self.name(), path.display(), e)),
                    },
                }
            }
            if let Some(new_id) = new_id {
                let mut entry = if clean {
                    stat_entry(id, new_id, &path)
                } else {
                    // Uncommitted: the index keeps the branch's blob; git compares contents.
                    blank_entry(
                        crate::tree::task_rel_path(id).into_bytes(),
                        new_id,
                        MODE_BLOB,
                    )
                };
                // The index records the tree's mode: a task file committed executable shows
                // as changed (it is written plain) and the next commit makes it plain.
                entry.mode = new_modes.get(id).copied().unwrap_or(MODE_BLOB) as u32;
                touched.insert(id.clone(), entry);
            }
        }
        self.rebuild_index(to, &touched)
    }

    /// An uncommitted edit of a task met an incoming state: the merge of the two when both
    /// are valid tasks, else the file as it is.
    pub(crate) fn merge_uncommitted(
        &self,
        id: &TaskId,
        current: Option<&[u8]>,
        incoming: Option<Vec<u8>>,
    ) -> Option<Vec<u8>> {
        let current_vec = current.map(<[u8]>::to_vec);
        let Some(cur) = current else {
            return current_vec;
        };
        let Ok(mine) = parse_task(id, cur) else {
            return current_vec;
        };
        let theirs = match &incoming {
            Some(b) => match parse_task(id, b) {
                Ok(t) => Some(t),
                Err(()) => return current_vec,
            },
            None => None,
        };
        match merge(Some(&mine), theirs.as_ref()) {
            Ok(Some(m)) if m != mine => Some(m.to_pretty_json()),
            _ => current_vec,
        }
    }

    /// What is at `path`, read without following a symlink and at most one byte past the
    /// task size limit.
    pub(crate) fn on_disk(&self, path: &Path) -> OnDisk {
        match fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => OnDisk::Missing,
            Ok(m) if m.file_type().is_file() && m.len() <= self.max_task_bytes() => {
                let mut bytes = Vec::with_capacity(m.len() as usize);
                match open_no_follow(path)
                    .and_then(|f| f.take(self.max_task_bytes() + 1).read_to_end(&mut bytes))
                {
                    Ok(n) if n as u64 <= self.max_task_bytes() => OnDisk::File(bytes),
                    _ => OnDisk::Foreign,
                }
            }
            _ => OnDisk::Foreign,
        }
    }

    /// A blob's bytes, `None` when it is larger than a task may be.
    pub(crate) fn blob_within_limit(&self, id: Oid) -> Result<Option<Vec<u8>>, DriverError> {
        let odb = self
            .repo
            .odb()
            .map_err(self.git("cannot open the object store"))?;
        let (size, _) = odb
            .read_header(id)
            .map_err(self.git(format!("cannot read object {id}")))?;
        if size as u64 > self.max_task_bytes() {
            return Ok(None);
        }
        let blob = self
            .repo
            .find_blob(id)
            .map_err(self.git(format!("cannot read object {id}")))?;
        Ok(Some(blob.content().to_vec()))
    }

    pub(crate) fn hash(&self, bytes: &[u8]) -> Result<Oid, DriverError> {
        Oid::hash_object(ObjectType::Blob, bytes).map_err(self.git("cannot hash a task file"))
    }

    /// Rewrites the index as tree `to`: `touched` task files as given, unchanged entries with
    /// their recorded file metadata (so status need not re-read them), every other entry
    /// marked skip-worktree.
    fn rebuild_index(
        &self,
        to: &Tree<'_>,
        touched: &BTreeMap<TaskId, IndexEntry>,
    ) -> Result<(), DriverError> {
        let mut index = self
            .repo
            .index()
            .map_err(self.git("cannot open the index"))?;
        let previous: HashMap<Vec<u8>, IndexEntry> = index
            .iter()
            .filter(|e| e.flags & 0x3000 == 0)
            .map(|e| (e.path.clone(), e))
            .collect();
        let mut entries = Vec::new();
        let mut foreign = 0;
        self.walk(to, &mut Vec::new(), 0, &mut |path, mode, id| {
            let kept = previous
                .get(path)
                .filter(|e| e.id == id && e.mode == mode as u32)
                .map(copy_entry);
            let task = std::str::from_utf8(path)
                .ok()
                .and_then(task_id_of_path)
                .filter(|_| matches!(mode, MODE_BLOB | MODE_EXECUTABLE));
            let entry = match task {
                Some(t) => match touched.get(&t) {
                    Some(e) => copy_entry(e),
                    None => kept.unwrap_or_else(|| blank_entry(path.to_vec(), id, mode)),
                },
                None => {
                    foreign += 1;
                    if foreign > MAX_FOREIGN_ENTRIES {
                        return;
                    }
                    kept.unwrap_or_else(|| {
                        let mut e = blank_entry(path.to_vec(), id, mode);
                        e.flags_extended |= SKIP_WORKTREE;
                        e
                    })
                }
            };
            entries.push(entry);
        })?;
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        index.clear().map_err(self.git("cannot clear the index"))?;
        for e in &entries {
            if let Err(err) = index.add(e) {
                tracing::debug!(driver = %self.name(), path = %String::from_utf8_lossy(&e.path), error = %err.message(), "left out of the index");
            }
        }
        index.write().map_err(self.git("cannot write the index"))
    }

    /// Calls `f(path, mode, id)` for every non-directory entry of `tree`, skipping names that
    /// no index can hold and trees deeper than [`MAX_TREE_DEPTH`].
    fn walk(
        &self,
        tree: &Tree<'_>,
        prefix: &mut Vec<u8>,
        depth: usize,
        f: &mut dyn FnMut(&[u8], i32, Oid),
    ) -> Result<(), DriverError> {
        for e in tree.iter() {
            let name = e.name_bytes();
            if !is_plain_name(name) {
                continue;
            }
            let len = prefix.len();
            if !prefix.is_empty() {
                prefix.push(b'/');
            }
            prefix.extend_from_slice(name);
            if e.filemode() == MODE_TREE {
                if depth < MAX_TREE_DEPTH {
                    if let Ok(sub) = self.repo.find_tree(e.id()) {
                        self.walk(&sub, prefix, depth + 1, f)?;
                    }
                }
            } else {
                f(prefix, e.filemode(), e.id());
            }
            prefix.truncate(len);
        }
        Ok(())
    }
}

/// A name that is safe as one path component on any system git runs on: not empty, not `.`
/// or `..`, no separator, no NUL, and not `.git` in any case, with trailing dots or spaces
/// (Windows) or NTFS short-name and stream aliases (`git~1`, `.git::$INDEX_ALLOCATION`).
/// HFS+ ignores some zero-width characters; a name holding any non-ASCII character that
/// folds to `.git` is rejected by refusing names that start with `.git` after removing them.
pub(crate) fn is_plain_name(name: &[u8]) -> bool {
    if name.is_empty() || name == b"." || name == b".." {
        return false;
    }
    if name.iter().any(|&c| c == b'/' || c == b'\\' || c == 0) {
        return false;
    }
    let Ok(s) = std::str::from_utf8(name) else {
        return false;
    };
    // HFS+ ignorable code points (zero-width joiners and the like).
    let folded: String = s
        .chars()
        .filter(|c| {
            !matches!(
                c,
                '\u{200c}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{206a}'..='\u{206f}' | '\u{feff}'
            )
        })
        .collect::<String>()
        .to_ascii_lowercase();
    let trimmed = folded.trim_end_matches(['.', ' ']);
    let stem = trimmed.split(':').next().unwrap_or(trimmed);
    !(stem == ".git" || stem == "git~1")
}

fn copy_entry(e: &IndexEntry) -> IndexEntry {
    IndexEntry {
        path: e.path.clone(),
        ..*e
    }
}

/// An index entry with no file metadata: git compares the file's contents to decide.
fn blank_entry(path: Vec<u8>, id: Oid, mode: i32) -> IndexEntry {
    IndexEntry {
        ctime: IndexTime::new(0, 0),
        mtime: IndexTime::new(0, 0),
        dev: 0,
        ino: 0,
        mode: mode as u32,
        uid: 0,
        gid: 0,
        file_size: 0,
        id,
        flags: 0,
        flags_extended: 0,
        path,
    }
}

/// A task file that is not in the working tree on purpose (too large to be a task).
fn skipped_entry(id: &TaskId, blob: Oid) -> IndexEntry {
    let mut e = blank_entry(crate::tree::task_rel_path(id).into_bytes(), blob, MODE_BLOB);
    e.flags_extended |= SKIP_WORKTREE;
    e
}

/// The index entry of a task file just written with blob `id`, with its file metadata so
/// status and plain git need not re-read it.
pub(crate) fn stat_entry(id: &TaskId, blob: Oid, path: &Path) -> IndexEntry {
    let mut e = blank_entry(crate::tree::task_rel_path(id).into_bytes(), blob, MODE_BLOB);
    #[cfg(unix)]
    if let Ok(m) = fs::symlink_metadata(path) {
        use std::os::unix::fs::MetadataExt;
        // The index stores 32-bit fields; git truncates the same way.
        e.ctime = IndexTime::new(m.ctime() as i32, m.ctime_nsec() as u32);
        e.mtime = IndexTime::new(m.mtime() as i32, m.mtime_nsec() as u32);
        e.dev = m.dev() as u32;
        e.ino = m.ino() as u32;
        e.uid = m.uid();
        e.gid = m.gid();
        e.file_size = m.len() as u32;
    }
    #[cfg(not(unix))]
    let _ = path;
    e
}

/// The mode of each task file of `tree`.
fn task_modes(repo: &git2::Repository, tree: &Tree<'_>) -> BTreeMap<TaskId, i32> {
    crate::tree::tasks_subtree(repo, tree)
        .map(|t| {
            t.iter()
                .filter_map(|e| Some((crate::tree::task_id_of_name(e.name_bytes())?, e.filemode())))
                .collect()
        })
        .unwrap_or_default()
}

/// Opens a file for reading without following a final symlink.
fn open_no_follow(path: &Path) -> std::io::Result<fs::File> {
    let mut opts = fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // A symlink fails to open, a FIFO does not block.
        let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
        opts.custom_flags(flags.bits() as i32);
    }
    let f = opts.open(path)?;
    if !f.metadata()?.file_type().is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::is_plain_name;

    #[test]
    fn git_directory_aliases_are_not_plain_names() {
        for bad in [
            &b".git"[..],
            b".GIT",
            b".Git.",
            b".git ",
            b".git. .",
            b"git~1",
            b"GIT~1",
            b".git::$INDEX_ALLOCATION",
            ".g\u{200c}it".as_bytes(),
            "\u{feff}.git".as_bytes(),
            b"..",
            b".",
            b"",
            b"a/b",
            b"a\\b",
            b"a\0b",
            b"\xff",
        ] {
            assert!(!is_plain_name(bad), "{:?}", String::from_utf8_lossy(bad));
        }
        for ok in [&b".gitignore"[..], b"git", b"tasks", b"x.json", b".github"] {
            assert!(is_plain_name(ok), "{:?}", String::from_utf8_lossy(ok));
        }
    }
}
