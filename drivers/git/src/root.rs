//! The root hash of the clone's tasks, answered without listing when nothing changed: the
//! common sync, in which neither side did anything, then costs one fetch and one `lstat` of
//! each task file.
//!
//! At the end of a writing sync that listed every task, that listing (every task's hash) and
//! its root are recorded in `.git/hypertask-root` next to the branch's tree they describe.
//! They are used again only while the branch still has that very tree and no task file of
//! the working tree is changed, added or removed against the index (as `git status` would
//! find) — so the record is what a listing would find. Anything else (a fetch that moved the branch, an edit by hand, a
//! commit made with plain git) makes the caller list.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use git2::{IndexEntry, Oid};
use hypertask_core::{root_hash, ContentHash, DriverError, Hashes, TaskId};

use crate::repo::Session;
use crate::tree::{task_id_of_name, MODE_EXECUTABLE, TASKS_DIR};
use crate::worktree::{OnDisk, SKIP_WORKTREE};

/// The stage bits of an index entry's flags (non-zero: a merge conflict).
const STAGE_MASK: u16 = 0x3000;

/// Where the record lives, inside the clone's `.git`.
const RECORD: &str = "hypertask-root";
/// The record's format; a different one is ignored.
const FORMAT: &str = concat!("hypertask-root v2 ", env!("CARGO_PKG_VERSION"));

impl Session<'_> {
    /// The recorded listing and its root, when they still describe the clone.
    pub(crate) fn recorded_root(&self) -> Result<Option<(ContentHash, Hashes)>, DriverError> {
        let Ok(text) = std::fs::read_to_string(self.record_path()) else {
            return Ok(None);
        };
        let mut lines = text.lines();
        let (Some(FORMAT), Some(tree), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Ok(None);
        };
        let (Ok(tree), Some(root)) = (Oid::from_str(tree), ContentHash::parse(root)) else {
            return Ok(None);
        };
        if self.head_tree()? != Some(tree) {
            return Ok(None);
        }
        let mut listed = Hashes::new();
        for line in lines {
            let parsed = line
                .split_once(' ')
                .and_then(|(id, hash)| Some((TaskId::new(id).ok()?, ContentHash::parse(hash)?)));
            let Some((id, hash)) = parsed else {
                return Ok(None);
            };
            listed.insert(id, hash);
        }
        if root_hash(&listed) != root || !self.tasks_clean()? {
            return Ok(None);
        }
        Ok(Some((root, listed)))
    }

    /// Records `listed` as the root of the branch's current tree. Best effort: a record that
    /// cannot be written only costs a listing next time.
    pub(crate) fn record_root(&self, listed: &Hashes) -> Result<(), DriverError> {
        let Some(tree) = self.head_tree()? else {
            return Ok(());
        };
        let mut text = format!("{FORMAT}\n{tree}\n{}\n", root_hash(listed).as_str());
        for (id, hash) in listed {
            text.push_str(&format!("{id} {}\n", hash.as_str()));
        }
        let _ = hypertask_core::files::write_atomic(&self.record_path(), text.as_bytes(), false);
        Ok(())
    }

    /// Forgets the record (the next sync lists).
    pub(crate) fn forget_root(&self) {
        let _ = std::fs::remove_file(self.record_path());
    }

    fn record_path(&self) -> std::path::PathBuf {
        self.workdir().join(".git").join(RECORD)
    }

    fn head_tree(&self) -> Result<Option<Oid>, DriverError> {
        Ok(self.head()?.map(|c| c.tree_id()))
    }

    /// Whether no task file under `tasks/` differs from the index (edited, added, removed,
    /// replaced by something else): what `git status` would say of them, found the way git
    /// finds it — one `lstat` per file compared with the metadata the index recorded, and the
    /// content hashed only where that metadata differs or is racy (the file changed in the
    /// same timestamp tick as the index was written). libgit2's own status pass does the same
    /// work at about twice the cost, and it was most of a sync with nothing to do. Names in
    /// `tasks/` that are not task files cannot change a listing and are not looked at.
    fn tasks_clean(&self) -> Result<bool, DriverError> {
        let index = self
            .repo
            .index()
            .map_err(self.git("cannot read the index"))?;
        let Ok(index_meta) = std::fs::metadata(self.workdir().join(".git").join("index")) else {
            return Ok(false);
        };
        let index_time = index_meta.modified().ok();
        let prefix = format!("{TASKS_DIR}/");
        let mut tracked: HashMap<Vec<u8>, IndexEntry> = HashMap::new();
        let mut hidden: HashSet<Vec<u8>> = HashSet::new();
        for e in index.iter() {
            let Some(name) = e.path.strip_prefix(prefix.as_bytes()) else {
                continue;
            };
            if task_id_of_name(name).is_none() {
                continue;
            }
            if e.flags & STAGE_MASK != 0 {
                // A conflict left by plain git: not clean.
                return Ok(false);
            }
            if e.flags_extended & SKIP_WORKTREE != 0 {
                hidden.insert(name.to_vec());
            } else {
                tracked.insert(name.to_vec(), e);
            }
        }
        let dir = self.workdir().join(TASKS_DIR);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(_) => return Ok(tracked.is_empty()),
        };
        for entry in entries {
            let Ok(entry) = entry else {
                return Ok(false);
            };
            let name = entry.file_name();
            let name = name.as_encoded_bytes();
            if task_id_of_name(name).is_none() {
                continue;
            }
            match tracked.remove(name) {
                Some(e) => {
                    if !self.unchanged(&e, &entry, index_time)? {
                        return Ok(false);
                    }
                }
                // Kept out of the working tree (skip-worktree): git does not look at it.
                None if hidden.contains(name) => {}
                // Untracked.
                None => return Ok(false),
            }
        }
        // What is left was deleted.
        Ok(tracked.is_empty())
    }

    /// Whether the file of directory entry `entry` still holds what index entry `e` records.
    fn unchanged(
        &self,
        e: &IndexEntry,
        entry: &std::fs::DirEntry,
        index_time: Option<SystemTime>,
    ) -> Result<bool, DriverError> {
        // The entry's own metadata: a symbolic link is not followed, and the `stat` is made
        // relative to the open directory instead of walking the whole path each time.
        let Ok(meta) = entry.metadata() else {
            return Ok(false);
        };
        if !meta.file_type().is_file() {
            return Ok(false);
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt as _;
            let executable = meta.mode() & 0o111 != 0;
            if executable != (e.mode == MODE_EXECUTABLE as u32) {
                return Ok(false);
            }
            let mtime = (meta.mtime() as i32, meta.mtime_nsec() as u32);
            let same = meta.len() as u32 == e.file_size
                && mtime == (e.mtime.seconds(), e.mtime.nanoseconds())
                && (meta.ctime() as i32, meta.ctime_nsec() as u32)
                    == (e.ctime.seconds(), e.ctime.nanoseconds())
                && meta.ino() as u32 == e.ino;
            let racy = index_time.is_none_or(|t| {
                let file = SystemTime::UNIX_EPOCH
                    + std::time::Duration::new(meta.mtime().max(0) as u64, mtime.1);
                file >= t
            });
            if same && !racy {
                return Ok(true);
            }
        }
        // The metadata cannot tell: compare the content, as git does.
        match self.on_disk(&entry.path()) {
            OnDisk::File(bytes) => Ok(self.hash(&bytes)? == e.id),
            _ => Ok(false),
        }
    }
}
