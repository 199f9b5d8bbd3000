//! Bringing the remote's history in: a fast-forward, or a merge commit whose task files are
//! merged per task with core's merge rule — never a textual merge, never a conflict marker.
//!
//! Trees are merged entry by entry here rather than with libgit2's merge, which refuses
//! trees holding names like `..` or `.git`: a remote holding one must not stop every later
//! sync. Nothing of a tree but task files ever reaches the disk (see `worktree`).

use git2::{Commit, Oid, Tree};
use hypertask_core::{merge, DriverError, ErrorKind, TaskId};

use crate::commit::count_tasks;
use crate::repo::{parse_task, Session, ORIGIN};
use crate::tree::{
    self, entries, task_id_of_name, RawEntry, RawTree, MODE_BLOB, MODE_EXECUTABLE, MODE_TREE,
    TASKS_DIR,
};

/// How deep directories that are not `tasks/` are merged; deeper ones keep the local side.
const MAX_MERGE_DEPTH: usize = 32;

impl Session<'_> {
    /// Moves the branch to include `remote`: nothing when it already does, a fast-forward when
    /// the branch is behind, else a merge commit (both parents) whose task files are merged
    /// with the core rule. Uncommitted task edits in the working tree are kept on top.
    pub(crate) fn integrate(&self, remote: Oid) -> Result<(), DriverError> {
        let head = self.head()?;
        if let Some(h) = &head {
            if h.id() == remote || self.is_descendant(h.id(), remote)? {
                return Ok(());
            }
        }
        let theirs = self
            .repo
            .find_commit(remote)
            .map_err(self.git("cannot read the fetched commit"))?;
        let their_tree = theirs
            .tree()
            .map_err(self.git("cannot read the fetched tree"))?;
        let our_tree = match &head {
            Some(h) => h
                .tree()
                .map_err(self.git("cannot read the branch's tree"))?,
            None => self.empty_tree()?,
        };
        let fast_forward = match &head {
            None => true,
            Some(h) => self.is_descendant(remote, h.id())?,
        };
        let (target, target_tree) = if fast_forward {
            (remote, their_tree)
        } else {
            let h = head.as_ref().expect("a merge has a local side");
            let base_tree = match self.repo.merge_base(h.id(), remote) {
                Ok(b) => self
                    .repo
                    .find_commit(b)
                    .and_then(|c| c.tree())
                    .map_err(self.git("cannot read the merge base"))?,
                // Unrelated histories (two clients that both started on an empty remote).
                Err(_) => self.empty_tree()?,
            };
            let (tree, merged) = self.merge_trees(&base_tree, &our_tree, &their_tree)?;
            let message = format!(
                "hypertask: merge {ORIGIN}/{} on {} ({})",
                self.clone.settings.branch,
                self.clone.host,
                count_tasks(merged)
            );
            let sig = self.signature()?;
            let id = self
                .repo
                .commit(None, &sig, &sig, &message, &tree, &[h, &theirs])
                .map_err(self.git("cannot write the merge commit"))?;
            (id, tree)
        };
        self.follow(&our_tree, &target_tree)?;
        self.move_branch(head.as_ref().map(Commit::id), target)
    }

    /// Merges three trees: task files per task (the side that changed wins; both changed →
    /// the core merge rule; an unparsable side is kept as is), other entries by name (the side
    /// that changed wins; both changed → the local side). Returns the tree and how many task
    /// files differ from ours.
    fn merge_trees(
        &self,
        base: &Tree<'_>,
        ours: &Tree<'_>,
        theirs: &Tree<'_>,
    ) -> Result<(Tree<'_>, usize), DriverError> {
        let mut changed = 0;
        let id = self.merge_level(
            &entries(base),
            &entries(ours),
            &entries(theirs),
            0,
            &mut changed,
        )?;
        let tree = self
            .repo
            .find_tree(id)
            .map_err(self.git("cannot read the merged tree"))?;
        Ok((tree, changed))
    }

    /// One directory level of the three-way merge; `depth` 0 is the root, where `tasks/` is.
    fn merge_level(
        &self,
        base: &RawTree,
        ours: &RawTree,
        theirs: &RawTree,
        depth: usize,
        changed: &mut usize,
    ) -> Result<Oid, DriverError> {
        let mut names: Vec<&Vec<u8>> = base
            .keys()
            .chain(ours.keys())
            .chain(theirs.keys())
            .collect();
        names.sort();
        names.dedup();
        let mut out = RawTree::new();
        for name in names {
            let (b, o, t) = (base.get(name), ours.get(name), theirs.get(name));
            let result = if o == t || t == b {
                o.copied()
            } else if o == b {
                t.copied()
            } else if o.is_some_and(is_tree)
                && t.is_some_and(is_tree)
                && b.is_none_or(is_tree)
                && depth < MAX_MERGE_DEPTH
            {
                let tasks = depth == 0 && name == TASKS_DIR.as_bytes();
                let (bt, ot, tt) = (self.sub(b)?, self.sub(o)?, self.sub(t)?);
                let id = if tasks {
                    self.merge_tasks(&bt, &ot, &tt, changed)?
                } else {
                    self.merge_level(&bt, &ot, &tt, depth + 1, changed)?
                };
                Some(RawEntry {
                    mode: MODE_TREE,
                    id,
                })
            } else {
                tracing::warn!(driver = %self.name(), path = %String::from_utf8_lossy(name), "both sides changed an entry that is not a task file; keeping the local version");
                o.copied()
            };
            if let Some(e) = result {
                out.insert(name.clone(), e);
            }
        }
        tree::write(&self.repo, &out).map_err(self.git("cannot write the merged tree"))
    }

    /// The `tasks/` level: task files merged per task, anything else as at other levels.
    fn merge_tasks(
        &self,
        base: &RawTree,
        ours: &RawTree,
        theirs: &RawTree,
        changed: &mut usize,
    ) -> Result<Oid, DriverError> {
        let mut names: Vec<&Vec<u8>> = base
            .keys()
            .chain(ours.keys())
            .chain(theirs.keys())
            .collect();
        names.sort();
        names.dedup();
        let mut out = RawTree::new();
        for name in names {
            let (b, o, t) = (base.get(name), ours.get(name), theirs.get(name));
            let id = task_id_of_name(name).filter(|_| {
                [b, o, t]
                    .iter()
                    .all(|e| e.is_none_or(|e| matches!(e.mode, MODE_BLOB | MODE_EXECUTABLE)))
            });
            let result = if o == t || t == b {
                o.copied()
            } else if o == b {
                t.copied()
            } else if let Some(id) = &id {
                self.merge_blobs(id, o.map(|e| e.id), t.map(|e| e.id))?
                    .map(|id| RawEntry {
                        mode: MODE_BLOB,
                        id,
                    })
            } else {
                o.copied()
            };
            if id.is_some() && result != o.copied() {
                *changed += 1;
            }
            if let Some(e) = result {
                out.insert(name.clone(), e);
            }
        }
        tree::write(&self.repo, &out).map_err(self.git("cannot write the merged tree"))
    }

    /// The entries of a directory entry, empty for none.
    fn sub(&self, e: Option<&RawEntry>) -> Result<RawTree, DriverError> {
        match e {
            None => Ok(RawTree::new()),
            Some(e) => self
                .repo
                .find_tree(e.id)
                .map(|t| entries(&t))
                .map_err(self.git("cannot read a tree")),
        }
    }

    /// Both sides changed one task file: merge the two states with the core rule. A side
    /// that is not a valid task is kept as it is (reported by the next listing) rather than
    /// guessed at; the valid state stays in history and in every cache that synced it.
    fn merge_blobs(
        &self,
        id: &TaskId,
        ours: Option<Oid>,
        theirs: Option<Oid>,
    ) -> Result<Option<Oid>, DriverError> {
        let parse =
            |oid: Option<Oid>| -> Result<Result<Option<hypertask_core::Task>, ()>, DriverError> {
                let Some(oid) = oid else { return Ok(Ok(None)) };
                let blob = self
                    .repo
                    .find_blob(oid)
                    .map_err(self.git(format!("cannot read {}", tree::task_rel_path(id))))?;
                Ok(parse_task(id, blob.content()).map(Some))
            };
        let (a, b) = match (parse(ours)?, parse(theirs)?) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(()), _) => return Ok(ours),
            (_, Err(())) => return Ok(theirs),
        };
        match merge(a.as_ref(), b.as_ref()) {
            Ok(Some(task)) => self
                .repo
                .blob(&task.to_pretty_json())
                .map(Some)
                .map_err(self.git("cannot write a merged task")),
            Ok(None) => Ok(None),
            Err(e) => Err(DriverError::new(
                self.name(),
                ErrorKind::InvalidData,
                e.to_string(),
            )),
        }
    }

    /// Moves the branch from `old` to `new`, failing if someone moved it meanwhile.
    fn move_branch(&self, old: Option<Oid>, new: Oid) -> Result<(), DriverError> {
        let name = self.branch_ref();
        let msg = "hypertask: update from remote";
        let r = match old {
            Some(old) => self.repo.reference_matching(&name, new, true, old, msg),
            None => self.repo.reference(&name, new, false, msg),
        };
        r.map(|_| ()).map_err(self.git("cannot move the branch"))
    }
}

fn is_tree(e: &RawEntry) -> bool {
    e.mode == MODE_TREE
}
