//! A read-only sync's view (`sync --dry-run`): what the clone would hold after bringing the
//! remote's changes in, computed without writing anything to the clone — no ref moves, no
//! objects, no files. The remote's objects are fetched into a temporary directory outside the
//! clone (read through an in-memory alternate) and removed afterwards.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use git2::Oid;
use hypertask_core::{merge, DriverError, ErrorKind, Task, TaskId};

use crate::repo::{parse_task, Session};
use crate::tree::task_files;
use crate::worktree::OnDisk;

/// The task files a read-only sync sees differently from the working tree: new bytes, or
/// `None` where the task file would be removed.
#[derive(Debug, Default)]
pub(crate) struct Preview {
    pub(crate) changes: BTreeMap<TaskId, Option<Vec<u8>>>,
}

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<TempDir> {
        use rand::Rng;
        let suffix: u64 = rand::rng().random();
        let path = std::env::temp_dir().join(format!("hypertask-git-preview-{suffix:016x}"));
        std::fs::create_dir(&path)?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the merge of one task gives, before the working tree is considered.
enum Outcome {
    /// The remote's blob (or its removal).
    Theirs(Option<Oid>),
    /// Both sides changed it: the core merge of the two.
    Merged(Option<Task>),
}

impl Session<'_> {
    /// The view of a read-only sync; empty without a remote or when the remote holds nothing
    /// the branch lacks.
    pub(crate) fn preview(&self) -> Result<Preview, DriverError> {
        let Some(location) = &self.clone.settings.remote else {
            return Ok(Preview::default());
        };
        if let crate::config::RemoteLocation::Local(p) = location {
            if !p.exists() && self.clone.settings.create_remote {
                // A writing sync would create it empty: nothing to see.
                return Ok(Preview::default());
            }
            self.check_local(location)?;
        }
        let tmp = TempDir::new()
            .map_err(|e| crate::error::io(self.name(), std::env::temp_dir().display(), e))?;
        let Some(remote) = self.fetch_quarantined(location, &tmp.0)? else {
            return Ok(Preview::default());
        };
        let odb = self
            .repo
            .odb()
            .map_err(self.git("cannot open the object store"))?;
        odb.add_disk_alternate(&tmp.0.to_string_lossy())
            .map_err(self.git("cannot read the fetched objects"))?;
        self.view_of(remote)
    }

    /// What the clone would hold after integrating `remote`.
    fn view_of(&self, remote: Oid) -> Result<Preview, DriverError> {
        let head = self.head()?;
        if let Some(h) = &head {
            if h.id() == remote || self.is_descendant(h.id(), remote)? {
                return Ok(Preview::default());
            }
        }
        let tree_of = |id: Oid| {
            self.repo
                .find_commit(id)
                .and_then(|c| c.tree())
                .map_err(self.git("cannot read a fetched tree"))
        };
        let theirs = task_files(&self.repo, &tree_of(remote)?);
        let (base, ours) = match &head {
            None => (BTreeMap::new(), BTreeMap::new()),
            Some(h) => {
                let ours = task_files(&self.repo, &tree_of(h.id())?);
                let base = match self.repo.merge_base(h.id(), remote) {
                    Ok(b) if b == h.id() => ours.clone(),
                    Ok(b) => task_files(&self.repo, &tree_of(b)?),
                    Err(_) => BTreeMap::new(),
                };
                (base, ours)
            }
        };
        let mut ids: Vec<&TaskId> = ours.keys().chain(theirs.keys()).collect();
        ids.sort();
        ids.dedup();
        let dir = self.workdir().join(crate::tree::TASKS_DIR);
        let mut preview = Preview::default();
        for id in ids {
            let (b, o, t) = (base.get(id), ours.get(id), theirs.get(id));
            let outcome = if o == t || t == b {
                continue;
            } else if o == b {
                Outcome::Theirs(t.copied())
            } else {
                match (self.parsed(id, o)?, self.parsed(id, t)?) {
                    (Ok(a), Ok(b)) => match merge(a.as_ref(), b.as_ref()) {
                        Ok(m) => Outcome::Merged(m),
                        Err(e) => {
                            return Err(DriverError::new(
                                self.name(),
                                ErrorKind::InvalidData,
                                e.to_string(),
                            ))
                        }
                    },
                    // An unparsable local side is kept; an unparsable remote side wins as is.
                    (Err(()), _) => continue,
                    (_, Err(())) => Outcome::Theirs(t.copied()),
                }
            };
            let incoming = match outcome {
                Outcome::Theirs(Some(blob)) => match self.blob_within_limit(blob)? {
                    Some(bytes) => Some(bytes),
                    None => continue,
                },
                Outcome::Theirs(None) | Outcome::Merged(None) => None,
                Outcome::Merged(Some(task)) => Some(task.to_pretty_json()),
            };
            let path = dir.join(format!("{id}.json"));
            let current = match self.on_disk(&path) {
                OnDisk::File(b) => Some(b),
                OnDisk::Missing => None,
                OnDisk::Foreign => continue,
            };
            let current_id = match &current {
                Some(b) => Some(self.hash(b)?),
                None => None,
            };
            let wanted = if current_id.as_ref() == o {
                incoming
            } else {
                self.merge_uncommitted(id, current.as_deref(), incoming)
            };
            if wanted != current {
                preview.changes.insert(id.clone(), wanted);
            }
        }
        Ok(preview)
    }

    /// A side of a task file parsed; `Ok(None)` when the side has no such file.
    fn parsed(
        &self,
        id: &TaskId,
        blob: Option<&Oid>,
    ) -> Result<Result<Option<Task>, ()>, DriverError> {
        let Some(blob) = blob else {
            return Ok(Ok(None));
        };
        Ok(match self.blob_within_limit(*blob)? {
            Some(bytes) => parse_task(id, &bytes).map(Some),
            None => Err(()),
        })
    }

    /// Fetches the remote branch's objects into `objects` (the clone's own objects serve as
    /// an alternate, so only what is missing is sent) without touching the clone. Returns the
    /// remote branch's commit, `None` when the remote has no such branch.
    fn fetch_quarantined(
        &self,
        location: &crate::config::RemoteLocation,
        objects: &Path,
    ) -> Result<Option<Oid>, DriverError> {
        let url = location.url();
        let cli = self.cli(&url);
        let branch = &self.clone.settings.branch;
        let Some(tip) = cli.ls_remote(branch).map_err(|e| self.transport_error(e))? else {
            return Ok(None);
        };
        if self.repo.find_commit(tip).is_err() {
            let own = self.workdir().join(".git").join("objects");
            cli.fetch_into(branch, objects, &own)
                .map_err(|e| self.transport_error(e))?;
        }
        Ok(Some(tip))
    }
}
