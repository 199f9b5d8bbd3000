//! Listing a task directory through its stat index: a file whose size, mtime, ctime and inode
//! are those the index recorded is not read again, and while the head record says only hypertask
//! changed the directory, the index answers without listing at all.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use super::safe::{not_regular, too_large_message, write_atomic};
use super::{FileProblem, Scan, TaskDir};
use crate::hash::{root_of, ContentHash};
use crate::head::{count_listing, DirStamp, Head};
use crate::task::TaskId;

/// The task count from which a head still in its racy window is waited out (at most 50 ms)
/// rather than the directory listed with a `stat` per file (about that long for 5,000 files).
const WAIT_OUT_FROM_TASKS: usize = 5_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Stamp {
    len: u64,
    mtime_ns: i128,
    /// The change time: an edit in place that restores the mtime (`touch -r`, a sync tool
    /// copying times) still moves it. Indexes written before it was kept read as 0, so their
    /// files are read once more.
    #[serde(default)]
    ctime_ns: i128,
    ino: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Index {
    /// Bumped by every change; a head describes one generation.
    #[serde(default)]
    pub(super) generation: u64,
    pub(super) entries: BTreeMap<String, (Stamp, ContentHash)>,
}

impl Index {
    pub(super) fn root(&self) -> ContentHash {
        root_of(self.entries.iter().map(|(id, (_, h))| (id.as_str(), h)))
    }
}

impl TaskDir {
    /// Every valid task's hash, problem files, and other `.json` files. With a trusted head
    /// (see [`with_head`](Self::with_head)) the index answers without listing the directory
    /// (and `others` is empty); otherwise see [`rescan`](Self::rescan).
    pub fn scan(&self) -> io::Result<Scan> {
        if let Some(scan) = self.scan_from_head() {
            return Ok(scan);
        }
        self.rescan()
    }

    /// The root hash of every valid task, when the head record can be trusted: one `stat` of
    /// the directory and one small read. `None`: list instead.
    pub fn trusted_root(&self) -> Option<ContentHash> {
        self.trusted_head().map(|h| h.root)
    }

    pub(super) fn trusted_head(&self) -> Option<Head> {
        let path = self.inner.head_path.as_ref()?;
        let pending = self.deferred().head.clone();
        let head = pending.or_else(|| Head::load(path))?;
        let now = DirStamp::of(&self.inner.dir).ok()?;
        let own = match self.inner.own_generation.load(Ordering::Relaxed) {
            0 => None,
            g => Some(g),
        };
        if head.trusted(&now, own) {
            return Some(head);
        }
        if head.racy_for(&now) {
            let wait = head.count >= WAIT_OUT_FROM_TASKS;
            return self.confirm_racy(path, head, wait);
        }
        None
    }

    /// A head another process recorded within a tick of its own change (its stamp is racy: a
    /// change by someone else in that same tick would leave the stamp as it is). Trusted when
    /// that tick is over (waited out when `wait`) and the directory's entries are
    /// exactly the index's, names and inode numbers, read with one listing and no `stat` per
    /// file: what a create, removal or rename by anyone else changes. The head is then recorded
    /// again with a stamp that is no longer racy, so later processes trust it at once. This
    /// costs a listing instead of the `stat` of every file. Not seen, as by any trusted head: a
    /// change made inside a file in place (or a file removed and created again in place, in
    /// that same tick, on a reused inode number); `sync --rescan` reads everything.
    #[cfg(unix)]
    pub(super) fn confirm_racy(
        &self,
        path: &std::path::Path,
        head: Head,
        wait: bool,
    ) -> Option<Head> {
        use std::os::unix::fs::DirEntryExt as _;
        let dir = &self.inner.dir;
        let (mut stamp, mut recorded_ns) = DirStamp::now(dir).ok()?;
        if stamp.racy(recorded_ns) {
            // Still in the tick: for a large directory, waiting out the rest of a short window
            // costs less than the `stat` of every file (a sync started right after an edit).
            if !wait {
                return None;
            }
            std::thread::sleep(stamp.racy_left(recorded_ns)?);
            (stamp, recorded_ns) = DirStamp::now(dir).ok()?;
        }
        if !head.racy_for(&stamp) || stamp.racy(recorded_ns) {
            return None;
        }
        let index = self.load_index();
        if index.generation != head.generation || index.entries.len() != head.count {
            return None;
        }
        let mut listed = 0;
        for entry in fs::read_dir(dir).ok()? {
            let entry = entry.ok()?;
            let name = entry.file_name();
            // The names a listing reads as tasks (see `rescan`); any other is left out there too.
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if stem.starts_with('.') || TaskId::new(stem).is_err() {
                continue;
            }
            let (known, _) = index.entries.get(stem)?;
            if known.ino != entry.ino() {
                return None;
            }
            listed += 1;
        }
        if listed != index.entries.len() || DirStamp::of(dir).ok()? != stamp {
            return None;
        }
        let head = Head::new(head.generation, head.root, head.count, (stamp, recorded_ns));
        self.keep_head(path, head.clone());
        Some(head)
    }

    #[cfg(not(unix))]
    pub(super) fn confirm_racy(
        &self,
        _path: &std::path::Path,
        _head: Head,
        _wait: bool,
    ) -> Option<Head> {
        None
    }

    fn scan_from_head(&self) -> Option<Scan> {
        let head = self.trusted_head()?;
        let index = self.load_index();
        if index.generation != head.generation || index.entries.len() != head.count {
            return None;
        }
        let mut scan = Scan::default();
        for (stem, (_, hash)) in index.entries {
            scan.hashes.insert(TaskId::new(stem).ok()?, hash);
        }
        Some(scan)
    }

    /// Lists the directory: valid tasks' hashes (from the index when a file's metadata is
    /// unchanged), problem files, and other `.json` files. A missing directory is an error.
    /// With a head record, a listing without problems records a fresh head.
    pub fn rescan(&self) -> io::Result<Scan> {
        count_listing();
        let stamp = match &self.inner.head_path {
            Some(_) => Some(DirStamp::now(&self.inner.dir)?),
            None => None,
        };
        let mut index = self.load_index();
        let generation = index.generation;
        let mut fresh = Index::default();
        let mut scan = Scan::default();
        let mut reread = false;
        for entry in fs::read_dir(&self.inner.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(stem) = name.strip_suffix(".json") else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let Ok(id) = TaskId::new(stem) else {
                scan.others.push(name.to_owned());
                continue;
            };
            let path = entry.path();
            // The entry's own metadata: a symbolic link is not followed.
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) => {
                    scan.problems.push(FileProblem {
                        id: Some(id),
                        path,
                        message: format!("cannot read metadata: {e}"),
                    });
                    continue;
                }
            };
            if !meta.is_file() {
                let message = not_regular(meta.file_type()).to_string();
                scan.problems.push(FileProblem {
                    id: Some(id),
                    path,
                    message,
                });
                continue;
            }
            if meta.len() > self.inner.max_task_bytes as u64 {
                let message = too_large_message(self.inner.max_task_bytes);
                scan.problems.push(FileProblem {
                    id: Some(id),
                    path,
                    message,
                });
                continue;
            }
            let stamp = stamp_of(&meta);
            if let Some((s, h)) = index.entries.remove(stem) {
                if s == stamp {
                    scan.hashes.insert(id, h.clone());
                    fresh.entries.insert(stem.to_owned(), (s, h));
                    continue;
                }
            }
            reread = true;
            match self.read_file(&id, &path) {
                Ok((task, meta)) => {
                    let h = task.hash();
                    fresh
                        .entries
                        .insert(stem.to_owned(), (stamp_of(&meta), h.clone()));
                    scan.hashes.insert(id, h);
                }
                Err(e) => scan.problems.push(FileProblem {
                    id: Some(id),
                    path,
                    message: e.message,
                }),
            }
        }
        scan.others.sort();
        scan.problems.sort_by(|a, b| a.path.cmp(&b.path));
        // Entries left in the old index are files that disappeared.
        fresh.generation = generation;
        if reread || !index.entries.is_empty() {
            fresh.generation += 1;
            self.save_index(&fresh);
        }
        if let (Some(path), Some(stamp)) = (&self.inner.head_path, stamp) {
            if scan.problems.is_empty() {
                let head = Head::new(fresh.generation, fresh.root(), fresh.entries.len(), stamp);
                self.keep_head(path, head);
                // This process has just seen the directory: its own writes carry the head on.
                self.inner
                    .own_generation
                    .store(fresh.generation, Ordering::Relaxed);
            } else {
                self.drop_head(path);
            }
        }
        Ok(scan)
    }

    pub(super) fn load_index(&self) -> Index {
        let Some(path) = &self.inner.index_path else {
            return Index::default();
        };
        fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Saves the index atomically. It is only a cache: a failure costs a re-read next time.
    pub(super) fn save_index(&self, index: &Index) {
        let Some(path) = &self.inner.index_path else {
            return;
        };
        let Ok(bytes) = serde_json::to_vec(index) else {
            return;
        };
        let _ = write_atomic(path, &bytes, false);
    }
}

pub(super) fn stamp_of(meta: &fs::Metadata) -> Stamp {
    let (mtime_ns, ctime_ns, ino) = crate::head::times_of(meta);
    Stamp {
        len: meta.len(),
        mtime_ns,
        ctime_ns,
        ino,
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::super::Durability;
    use super::*;
    use crate::task::Task;
    use std::os::unix::fs::symlink;

    fn task(id: &str) -> Task {
        Task::from_value(serde_json::json!({"id": id, "description": "d"})).unwrap()
    }

    #[test]
    fn task_files_that_are_links_or_too_large_are_problems_left_in_place() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside.json");
        fs::write(&outside, task("linked").to_pretty_json()).unwrap();
        let dir = TaskDir::new(tmp.path().join("tasks"), None, Durability::None)
            .with_max_task_bytes(4096);
        dir.create().unwrap();
        dir.write_batch(&[task("good")]).unwrap();
        symlink(&outside, dir.dir().join("linked.json")).unwrap();
        let big =
            Task::from_value(serde_json::json!({"id": "big", "description": "x".repeat(5000)}))
                .unwrap();
        fs::write(dir.dir().join("big.json"), big.to_pretty_json()).unwrap();

        let scan = dir.scan().unwrap();
        assert_eq!(
            scan.hashes.keys().map(TaskId::as_str).collect::<Vec<_>>(),
            ["good"]
        );
        let problems: Vec<String> = scan.problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].ends_with(
            "big.json: is larger than the limit of 4096 bytes for one task (max_task_bytes)"
        ));
        assert!(problems[1].ends_with("linked.json: is a symbolic link, not a regular file"));
        let linked = TaskId::new("linked").unwrap();
        let e = dir.read(&linked).unwrap_err();
        assert!(e.message.contains("symbolic link") && e.io.is_none(), "{e}");
        assert!(dir.read(&TaskId::new("big").unwrap()).is_err());
        assert!(fs::symlink_metadata(dir.path_of(&linked))
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn an_edit_in_place_that_restores_the_mtime_is_read_again() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = TaskDir::new(
            tmp.path().join("tasks"),
            Some(tmp.path().join("index.json")),
            Durability::None,
        );
        dir.create().unwrap();
        let before =
            Task::from_value(serde_json::json!({"id": "a", "description": "one"})).unwrap();
        dir.write_batch(std::slice::from_ref(&before)).unwrap();
        assert_eq!(dir.rescan().unwrap().hashes[before.id()], before.hash());

        // Same size, same inode, and the mtime put back: only the ctime tells.
        let after = Task::from_value(serde_json::json!({"id": "a", "description": "two"})).unwrap();
        let path = dir.path_of(before.id());
        let mtime = fs::metadata(&path).unwrap().modified().unwrap();
        let bytes = after.to_pretty_json();
        assert_eq!(bytes.len(), before.to_pretty_json().len());
        let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
        std::io::Write::write_all(&mut &f, &bytes).unwrap();
        f.set_times(fs::FileTimes::new().set_modified(mtime))
            .unwrap();
        drop(f);
        assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), mtime);

        assert_eq!(dir.rescan().unwrap().hashes[before.id()], after.hash());
    }
}
