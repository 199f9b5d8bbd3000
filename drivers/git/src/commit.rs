//! Commits: the task files written by the driver and those edited by hand, recorded in one
//! commit whose tree is built in memory from the branch's tree — the index is only updated
//! afterwards, as a cache of file metadata for `git status`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use git2::{Commit, ObjectType, Oid, Signature};
use hypertask_core::{DriverError, TaskId};

use crate::error;
use crate::repo::{parse_task, Session};
use crate::tree::{self, RawEntry, MODE_BLOB};
use crate::worktree::{stat_entry, OnDisk};

/// From how many new blobs a commit stores them as one pack (git's `transfer.unpackLimit`).
const PACK_THRESHOLD: usize = 100;

/// Whether two paths are on one file system (a flush of one then covers the other).
fn same_device(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(x), Ok(y)) => x.dev() == y.dev(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (a, b);
        false
    }
}

/// Flushes the file system holding the clone's objects: `syncfs` on Linux; elsewhere, where
/// it cannot be done at once, left to git's own (libgit2 does not flush objects either).
fn sync_objects(git_dir: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let d = std::fs::File::open(git_dir)?;
        rustix::fs::syncfs(&d).map_err(std::io::Error::from)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = git_dir;
        Ok(())
    }
}

/// "1 task changed" / "3 tasks changed".
pub(crate) fn count_tasks(n: usize) -> String {
    if n == 1 {
        "1 task changed".to_owned()
    } else {
        format!("{n} tasks changed")
    }
}

/// What [`Session::commit`] did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Committed {
    /// A commit was made.
    pub(crate) made: bool,
    /// Task files other than the ones written were found edited in the working tree.
    pub(crate) by_hand: bool,
}

impl Session<'_> {
    /// Commits the task files in `written` and those edited by hand in the working tree and
    /// not yet committed: `hand_edited` when this sync's pass over the working tree found
    /// them already, else found by a pass now. Files that are not valid tasks are never
    /// committed.
    pub(crate) fn commit(
        &self,
        written: &[TaskId],
        hand_edited: Option<Vec<TaskId>>,
    ) -> Result<Committed, DriverError> {
        let mut ids: BTreeSet<TaskId> = written.iter().cloned().collect();
        let mut by_hand = false;
        let hand_edited = match hand_edited {
            Some(ids) => ids,
            // Also the files a sync killed before its commit wrote.
            None => self.tasks_status()?.changed,
        };
        for id in hand_edited {
            by_hand |= ids.insert(id);
        }
        let mut done = Committed {
            made: false,
            by_hand,
        };
        if ids.is_empty() {
            return Ok(done);
        }
        let head = self.head()?;
        let old_tree = match &head {
            Some(h) => Some(
                h.tree()
                    .map_err(self.git("cannot read the branch's tree"))?,
            ),
            None => None,
        };
        let current: BTreeMap<Vec<u8>, RawEntry> = old_tree
            .as_ref()
            .and_then(|t| tree::tasks_subtree(&self.repo, t))
            .map(|t| tree::entries(&t))
            .unwrap_or_default();
        let dir = self.tasks_dir()?;
        let mut changes: BTreeMap<TaskId, Option<Oid>> = BTreeMap::new();
        let mut unchanged: Vec<(TaskId, Oid)> = Vec::new();
        let mut new_blobs: Vec<Vec<u8>> = Vec::new();
        for id in ids {
            let path = dir.join(format!("{id}.json"));
            // Only a regular file holding a valid task is committed; a symlink is not read.
            let OnDisk::File(bytes) = self.on_disk(&path) else {
                continue;
            };
            if parse_task(&id, &bytes).is_err() {
                continue;
            }
            let blob = self.hash(&bytes)?;
            let entry = RawEntry {
                mode: MODE_BLOB,
                id: blob,
            };
            if current.get(format!("{id}.json").as_bytes()) != Some(&entry) {
                changes.insert(id, Some(blob));
                new_blobs.push(bytes);
            } else {
                // Committed already, but the index does not say so (a sync killed between
                // its commit and its index write): refreshed, so `status` is clean again.
                unchanged.push((id, blob));
            }
        }
        if changes.is_empty() {
            self.record_in_index(&dir, &unchanged)?;
            return Ok(done);
        }
        self.store_blobs(new_blobs)?;
        let tree_id = tree::with_task_files(&self.repo, old_tree.as_ref(), &changes)
            .map_err(self.git("cannot write the tree"))?;
        let tree = self
            .repo
            .find_tree(tree_id)
            .map_err(self.git("cannot read the tree"))?;
        let message = format!(
            "hypertask: {} on {}",
            count_tasks(changes.len()),
            self.clone.host
        );
        let sig = self.signature()?;
        let parents: Vec<&Commit<'_>> = head.iter().collect();
        let commit = self
            .repo
            .commit(None, &sig, &sig, &message, &tree, &parents)
            .map_err(self.git("cannot commit"))?;
        // Everything the commit names reaches the disk before the branch points at it.
        self.flush()?;
        let reflog = format!("commit: {message}");
        match &head {
            Some(parent) => {
                self.repo
                    .reference_matching(&self.branch_ref(), commit, true, parent.id(), &reflog)
            }
            None => self
                .repo
                .reference(&self.branch_ref(), commit, false, &reflog),
        }
        .map_err(self.git("cannot move the branch to the new commit"))?;
        unchanged.extend(
            changes
                .into_iter()
                .filter_map(|(id, blob)| Some((id, blob?))),
        );
        self.record_in_index(&dir, &unchanged)?;
        done.made = true;
        Ok(done)
    }

    /// Stores the blobs of a commit: a large change as one pack (as `git` receives a push of
    /// more than `transfer.unpackLimit` objects), so 10,000 tasks make two files in
    /// `.git/objects/pack` rather than 10,000 loose objects; a small one as loose objects.
    fn store_blobs(&self, blobs: Vec<Vec<u8>>) -> Result<(), DriverError> {
        let odb = self
            .repo
            .odb()
            .map_err(self.git("cannot open the object store"))?;
        if blobs.len() < PACK_THRESHOLD {
            for bytes in &blobs {
                odb.write(ObjectType::Blob, bytes)
                    .map_err(self.git("cannot store a task file"))?;
            }
            return Ok(());
        }
        // The objects are gathered in memory on a handle of their own (so nothing else this
        // session writes can end up only in memory), dumped as a pack, and the pack indexed
        // into the object store.
        let scratch = git2::Repository::open(self.workdir())
            .map_err(self.git("cannot open the clone to pack task files"))?;
        let scratch_odb = scratch
            .odb()
            .map_err(self.git("cannot open the object store"))?;
        // Above the loose and pack backends: every write below stays in memory.
        let _mempack = scratch_odb
            .add_new_mempack_backend(1000)
            .map_err(self.git("cannot gather task files in memory"))?;
        let mut builder = scratch
            .packbuilder()
            .map_err(self.git("cannot pack the task files"))?;
        // Its delta search on every core (0: as many threads as the machine has), as git's
        // `pack.threads` does by default.
        builder.set_threads(0);
        for bytes in &blobs {
            let id = scratch_odb
                .write(ObjectType::Blob, bytes)
                .map_err(self.git("cannot store a task file"))?;
            builder
                .insert_object(id, None)
                .map_err(self.git("cannot pack the task files"))?;
        }
        // (`Mempack::dump` packs only what commits reach: these blobs have none yet.)
        let mut pack = git2::Buf::new();
        builder
            .write_buf(&mut pack)
            .map_err(self.git("cannot pack the task files"))?;
        drop(builder);
        let mut writer = odb.packwriter().map_err(self.git("cannot write a pack"))?;
        std::io::Write::write_all(&mut writer, &pack).map_err(|e| {
            crate::error::io(self.name(), "writing a pack into the object store", e)
        })?;
        writer
            .commit()
            .map_err(self.git("cannot index the pack of task files"))?;
        Ok(())
    }

    /// Flushes what this sync wrote — the task files of the working tree and the objects —
    /// before a commit becomes the branch's (one `syncfs` where both share a file system).
    pub(crate) fn flush(&self) -> Result<(), DriverError> {
        let tasks = &self.clone.tasks;
        let flushed = tasks
            .flush()
            .map_err(|e| crate::error::io(self.name(), tasks.dir().display(), e))?;
        let git_dir = self.workdir().join(".git");
        if flushed && same_device(tasks.dir(), &git_dir) {
            return Ok(());
        }
        sync_objects(&git_dir).map_err(|e| crate::error::io(self.name(), git_dir.display(), e))
    }

    /// Records committed task files in the index, a cache of their metadata for `status`.
    fn record_in_index(&self, dir: &Path, files: &[(TaskId, Oid)]) -> Result<(), DriverError> {
        if files.is_empty() {
            return Ok(());
        }
        let mut index = self
            .repo
            .index()
            .map_err(self.git("cannot open the index"))?;
        for (id, blob) in files {
            index
                .add(&stat_entry(id, *blob, &dir.join(format!("{id}.json"))))
                .map_err(self.git(format!("cannot record {id} in the index")))?;
        }
        index.write().map_err(self.git("cannot write the index"))
    }

    /// The commit author: the configured one, else git's `user.name`/`user.email`, else
    /// `hypertask <hypertask@HOST>`.
    pub(crate) fn signature(&self) -> Result<Signature<'static>, DriverError> {
        let s = &self.clone.settings;
        let from_git = self.repo.signature().ok();
        let name = s
            .author_name
            .clone()
            .or_else(|| from_git.as_ref().and_then(|g| g.name().map(str::to_owned)))
            .unwrap_or_else(|| "hypertask".to_owned());
        let email = s
            .author_email
            .clone()
            .or_else(|| from_git.as_ref().and_then(|g| g.email().map(str::to_owned)))
            .unwrap_or_else(|| format!("hypertask@{}", self.clone.host));
        Signature::now(&name, &email).map_err(|e| {
            error::config(
                self.name(),
                format!("invalid commit author {name:?} <{email}>: {}", e.message()),
            )
        })
    }
}
