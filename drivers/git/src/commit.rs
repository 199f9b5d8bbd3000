//! Commits: the task files written by the driver and those edited by hand, recorded in one
//! commit whose tree is built in memory from the branch's tree — the index is only updated
//! afterwards, as a cache of file metadata for `git status`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use git2::{Commit, ObjectType, Oid, Signature, Status, StatusOptions};
use hypertask_core::{DriverError, TaskId};

use crate::error;
use crate::repo::{parse_task, Session};
use crate::tree::{self, task_id_of_path, RawEntry, MODE_BLOB, TASKS_DIR};
use crate::worktree::{stat_entry, OnDisk};

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
    /// Commits the task files in `written`, with `hand_edits` also any other valid task file
    /// edited in the working tree and not yet committed. Files that are not valid tasks are
    /// never committed.
    pub(crate) fn commit(
        &self,
        written: &[TaskId],
        hand_edits: bool,
    ) -> Result<Committed, DriverError> {
        let mut ids: BTreeSet<TaskId> = written.iter().cloned().collect();
        let mut by_hand = false;
        if hand_edits {
            for id in self.edited_by_hand()? {
                by_hand |= ids.insert(id);
            }
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
        let odb = self
            .repo
            .odb()
            .map_err(self.git("cannot open the object store"))?;
        let dir = self.tasks_dir()?;
        let mut changes: BTreeMap<TaskId, Option<Oid>> = BTreeMap::new();
        let mut unchanged: Vec<(TaskId, Oid)> = Vec::new();
        for id in ids {
            let path = dir.join(format!("{id}.json"));
            // Only a regular file holding a valid task is committed; a symlink is not read.
            let OnDisk::File(bytes) = self.on_disk(&path) else {
                continue;
            };
            if parse_task(&id, &bytes).is_err() {
                continue;
            }
            let blob = odb
                .write(ObjectType::Blob, &bytes)
                .map_err(self.git(format!("cannot store {}", path.display())))?;
            let entry = RawEntry {
                mode: MODE_BLOB,
                id: blob,
            };
            if current.get(format!("{id}.json").as_bytes()) != Some(&entry) {
                changes.insert(id, Some(blob));
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
        self.repo
            .commit(
                Some(&self.branch_ref()),
                &sig,
                &sig,
                &message,
                &tree,
                &parents,
            )
            .map_err(self.git("cannot commit"))?;
        unchanged.extend(
            changes
                .into_iter()
                .filter_map(|(id, blob)| Some((id, blob?))),
        );
        self.record_in_index(&dir, &unchanged)?;
        done.made = true;
        Ok(done)
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

    /// The valid task files of the working tree that differ from the index (new, edited, or
    /// of another type): those edited by hand, and those a sync killed before its commit
    /// wrote. Untracked directories are looked into, since before the first commit all of
    /// `tasks/` is one.
    fn edited_by_hand(&self) -> Result<Vec<TaskId>, DriverError> {
        let mut opts = StatusOptions::new();
        opts.include_untracked(true)
            .recurse_untracked_dirs(true)
            .exclude_submodules(true)
            .pathspec(format!("{TASKS_DIR}/"));
        let statuses = self
            .repo
            .statuses(Some(&mut opts))
            .map_err(self.git("cannot read the working tree's status"))?;
        Ok(statuses
            .iter()
            .filter(|e| {
                e.status()
                    .intersects(Status::WT_NEW | Status::WT_MODIFIED | Status::WT_TYPECHANGE)
            })
            .filter_map(|e| task_id_of_path(e.path()?))
            .collect())
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
