//! The root hash of the clone's tasks, answered without listing when nothing changed: the
//! common sync, in which neither side did anything, then costs one fetch and one `lstat` of
//! each task file.
//!
//! At the end of a writing sync that listed every task, that listing (every task's hash) and
//! its root are recorded in `.git/hypertask-root` next to the branch's tree they describe.
//! They are used again only while the branch still has that very tree and no task file of
//! the working tree is changed, added or removed against the index (as `git status` would
//! find) — so the record is what a listing would find. Anything else (a fetch that moved the branch, an edit by hand, a
//! commit made with plain git) makes the caller list. A sync reads the record's root at once
//! and its listing only when it needs it (most syncs compare the roots and stop), checking
//! then that the listing hashes to the root.

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
    /// The record, when it still describes the clone.
    pub(crate) recorded: Option<Record>,
    /// The pass over the working tree, when one was made: a writing sync passes it on to
    /// its commit, which then need not look at every file again.
    pub(crate) status: Option<TasksStatus>,
}

/// A record that names the branch's current tree: its root, and the listing it was
/// computed from, still as text. Most syncs only compare the root and stop, so the listing
/// (10,000 lines for 10,000 tasks) is parsed only when a sync needs it.
#[derive(Debug)]
pub(crate) struct Record {
    /// The root hash of the listing.
    pub(crate) root: ContentHash,
    /// The record's text; the listing starts at `body`.
    text: String,
    body: usize,
}

impl Record {
    /// The recorded listing, when every line parses and the whole hashes to the recorded
    /// root; `None` for a damaged record (the caller lists instead).
    pub(crate) fn listing(&self) -> Option<Hashes> {
        let mut listed = Hashes::new();
        for line in self.text[self.body..].lines() {
            let (id, hash) = line.split_once(' ')?;
            listed.insert(TaskId::new(id).ok()?, ContentHash::parse(hash)?);
        }
        (root_hash(&listed) == self.root).then_some(listed)
    }
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

    /// The record, when its head is well formed and names the branch's current tree (its
    /// listing is checked when it is read, by [`Record::listing`]).
    fn read_record(&self) -> Result<Option<Record>, DriverError> {
        let Ok(text) = std::fs::read_to_string(self.record_path()) else {
            return Ok(None);
        };
        let mut lines = text.split_inclusive('\n');
        let mut body = 0;
        let mut line = || {
            let line = lines.next()?;
            body += line.len();
            Some(line.trim_end_matches(['\r', '\n']))
        };
        let (Some(FORMAT), Some(tree), Some(root)) = (line(), line(), line()) else {
            return Ok(None);
        };
        let (Ok(tree), Some(root)) = (Oid::from_str(tree), ContentHash::parse(root)) else {
            return Ok(None);
        };
        if self.head_tree()? != Some(tree) {
            return Ok(None);
        }
        Ok(Some(Record { root, text, body }))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A record of `listed` as `record_root` writes it, its tree line aside.
    fn record_of(listed: &Hashes) -> Record {
        let root = root_hash(listed);
        let head = format!("{FORMAT}\n{}\n{}\n", Oid::zero(), root.as_str());
        let mut text = head.clone();
        for (id, hash) in listed {
            text.push_str(&format!("{id} {}\n", hash.as_str()));
        }
        Record {
            root,
            text,
            body: head.len(),
        }
    }

    fn listing(n: usize) -> Hashes {
        (0..n)
            .map(|i| {
                let id = TaskId::new(format!("task-{i}")).unwrap();
                let hash = ContentHash::of_bytes(format!("content {i}").as_bytes());
                (id, hash)
            })
            .collect()
    }

    #[test]
    fn a_record_reads_back_as_the_listing_it_was_written_from() {
        let listed = listing(3);
        assert_eq!(record_of(&listed).listing(), Some(listed));
        assert_eq!(record_of(&Hashes::new()).listing(), Some(Hashes::new()));
    }

    #[test]
    fn a_damaged_listing_is_never_read_as_the_clone_s() {
        let listed = listing(3);
        let good = record_of(&listed);
        let other = ContentHash::of_bytes(b"something else");
        let damaged = [
            // A hash swapped for another valid one: the root no longer matches.
            good.text
                .replacen(listed.values().next().unwrap().as_str(), other.as_str(), 1),
            // A line cut short, a line without its id, a line lost, a stray line.
            good.text[..good.text.len() - 10].to_owned(),
            good.text.replacen("task-1 ", "", 1),
            good.text
                .lines()
                .filter(|l| !l.starts_with("task-1 "))
                .map(|l| format!("{l}\n"))
                .collect(),
            format!("{}garbage\n", good.text),
        ];
        for text in damaged {
            let record = Record {
                text,
                ..record_of(&listed)
            };
            assert_eq!(record.listing(), None, "{}", record.text);
        }
    }
}
