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

use git2::Oid;
use hypertask_core::{root_hash, ContentHash, DriverError, Hashes, TaskId};

use crate::repo::Session;
use crate::status::TasksStatus;

/// Where the record lives, inside the clone's `.git`.
const RECORD: &str = "hypertask-root";
/// The record's format; a different one is ignored.
const FORMAT: &str = concat!("hypertask-root v2 ", env!("CARGO_PKG_VERSION"));

/// What [`Session::recorded_root`] found.
#[derive(Debug, Default)]
pub(crate) struct RootCheck {
    /// The recorded listing and its root, when they still describe the clone.
    pub(crate) recorded: Option<(ContentHash, Hashes)>,
    /// The pass over the working tree, when one was made: a writing sync passes it on to
    /// its commit, which then need not look at every file again.
    pub(crate) status: Option<TasksStatus>,
}

impl Session<'_> {
    /// The recorded listing and its root, when they still describe the clone. The working
    /// tree is compared with the index when the record is otherwise valid, and with
    /// `look_anyway` also when it is not (a writing sync commits, and its commit needs the
    /// task files edited by hand).
    pub(crate) fn recorded_root(&self, look_anyway: bool) -> Result<RootCheck, DriverError> {
        let record = self.read_record()?;
        if record.is_none() && !look_anyway {
            return Ok(RootCheck::default());
        }
        let status = self.tasks_status()?;
        Ok(RootCheck {
            recorded: record.filter(|_| status.is_clean()),
            status: Some(status),
        })
    }

    /// The record, when it is well formed and names the branch's current tree.
    fn read_record(&self) -> Result<Option<(ContentHash, Hashes)>, DriverError> {
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
        Ok((root_hash(&listed) == root).then_some((root, listed)))
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
}
