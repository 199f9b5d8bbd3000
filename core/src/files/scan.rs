//! Listing a task directory through its stat index: a file whose size, mtime, ctime and inode
//! are those the index recorded is not read again, and while the head record says only hypertask
//! changed the directory, the index answers without listing at all.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read as _};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::Deserialize;

use super::safe::{not_regular, too_large_message, write_atomic_meta};
use super::{FileProblem, Scan, TaskDir};
use crate::hash::{root_of, ContentHash};
use crate::head::{count_index_read, count_listing, fs_clock, DirStamp, Head};
use crate::task::TaskId;

/// The task count from which a head still in its racy window is waited out (at most 50 ms)
/// rather than the directory listed with a `stat` per file (about that long for 5,000 files).
const WAIT_OUT_FROM_TASKS: usize = 5_000;
/// How often the file system's clock is read while a tick is waited out (ext4 and xfs tick
/// every 1–10 ms, by the kernel's timer, unless a reader asked for a finer stamp).
const PROBE_EVERY: std::time::Duration = std::time::Duration::from_millis(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
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

/// Read from JSON only as earlier versions wrote it; written by [`Index::encode`].
#[derive(Debug, Default, Clone, Deserialize)]
pub(super) struct Index {
    /// Bumped by every change; a head describes one generation.
    #[serde(default)]
    pub(super) generation: u64,
    pub(super) entries: BTreeMap<String, (Stamp, ContentHash)>,
}

/// The index as this process last read or wrote it.
#[derive(Debug)]
pub(super) struct Loaded {
    /// The stamp of the index file it was read from or written to.
    stamp: Stamp,
    index: Arc<Index>,
}

/// The first word of the index file's line-based format.
const INDEX_FORMAT: &str = "hypertask-stat-index-2";

impl Index {
    /// Whether `head` was recorded for this very index (its generation and size).
    fn describes(&self, head: &Head) -> bool {
        self.generation == head.generation && self.entries.len() == head.count
    }

    pub(super) fn root(&self) -> ContentHash {
        root_of(self.entries.iter().map(|(id, (_, h))| (id.as_str(), h)))
    }

    /// The file's bytes: a line `hypertask-stat-index-2 <generation>`, then one line
    /// `<id> <len> <mtime_ns> <ctime_ns> <ino> <hash>` per entry in id order. Parsing this
    /// costs a fraction of a JSON map's (a 100,000-task cache reads it on most syncs).
    fn encode(&self) -> Vec<u8> {
        use std::io::Write as _;
        let mut out = Vec::with_capacity(32 + self.entries.len() * 128);
        let _ = writeln!(out, "{INDEX_FORMAT} {}", self.generation);
        for (id, (s, h)) in &self.entries {
            let _ = writeln!(
                out,
                "{id} {} {} {} {} {}",
                s.len, s.mtime_ns, s.ctime_ns, s.ino, h
            );
        }
        out
    }

    /// Reads [`encode`](Self::encode)'s format, or the JSON of earlier versions; `None` for
    /// anything else (the index is only a cache: every file is then read again).
    fn decode(bytes: &[u8]) -> Option<Index> {
        if bytes.first() == Some(&b'{') {
            return serde_json::from_slice(bytes).ok();
        }
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.lines();
        let generation = lines
            .next()?
            .strip_prefix(INDEX_FORMAT)?
            .strip_prefix(' ')?
            .parse()
            .ok()?;
        let mut entries = Vec::new();
        for line in lines {
            let mut f = line.split(' ');
            let (Some(id), Some(len), Some(mtime), Some(ctime), Some(ino), Some(hash), None) = (
                f.next(),
                f.next(),
                f.next(),
                f.next(),
                f.next(),
                f.next(),
                f.next(),
            ) else {
                return None;
            };
            let stamp = Stamp {
                len: len.parse().ok()?,
                mtime_ns: mtime.parse().ok()?,
                ctime_ns: ctime.parse().ok()?,
                ino: ino.parse().ok()?,
            };
            entries.push((id.to_owned(), (stamp, ContentHash::parse(hash)?)));
        }
        // In id order as written: the map is built in bulk, without a search per entry.
        Some(Index {
            generation,
            entries: entries.into_iter().collect(),
        })
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
    /// that tick is over and the directory's entries are exactly the index's, names and inode
    /// numbers, read with one listing and no `stat` per file: what a create, removal or rename
    /// by anyone else changes. When `wait`, a tick still running is waited out: until the file
    /// system's own clock (a probe file's mtime beside the head) has moved past the directory's
    /// last change, a few milliseconds, or without a probe the rest of a 50 ms window. The head
    /// is then recorded again with a stamp that is no longer racy, so later processes trust it
    /// at once. This costs a listing instead of the `stat` of every file. Not seen, as by any
    /// trusted head: a change made inside a file in place (or a file removed and created again
    /// in place, in that same tick, on a reused inode number); `sync --rescan` reads everything.
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
        let mut clock = None;
        if stamp.racy(recorded_ns) {
            // Still in the tick: for a large directory, waiting it out costs less than the
            // `stat` of every file (a sync started right after an edit).
            if !wait {
                return None;
            }
            let probe = path.with_extension("clock");
            let left = stamp.racy_left(recorded_ns)?;
            let until = std::time::Instant::now() + left;
            clock = fs_clock(dir, &probe);
            while clock.is_some_and(|c| !stamp.settled_by(c)) && std::time::Instant::now() < until {
                std::thread::sleep(PROBE_EVERY);
                clock = fs_clock(dir, &probe);
            }
            if clock.is_none() {
                std::thread::sleep(left);
            }
            (stamp, recorded_ns) = DirStamp::now(dir).ok()?;
        }
        // The clock was read before the listing below: a change after it moves the stamp.
        let settled = clock.filter(|&c| stamp.settled_by(c));
        if !head.racy_for(&stamp) || (stamp.racy(recorded_ns) && settled.is_none()) {
            return None;
        }
        let index = self.load_index();
        if !index.describes(&head) {
            return None;
        }
        // Looked up by hash: the listing comes in the file system's order, not the index's.
        let inodes: std::collections::HashMap<&str, u64> = index
            .entries
            .iter()
            .map(|(stem, (stamp, _))| (stem.as_str(), stamp.ino))
            .collect();
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
            if *inodes.get(stem)? != entry.ino() {
                return None;
            }
            listed += 1;
        }
        if listed != index.entries.len() || DirStamp::of(dir).ok()? != stamp {
            return None;
        }
        let mut head = Head::new(head.generation, head.root, head.count, (stamp, recorded_ns));
        if let Some(c) = settled {
            head = head.confirmed_at(c);
        }
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
        if !index.describes(&head) {
            return None;
        }
        let mut scan = Scan::default();
        for (stem, (_, hash)) in &index.entries {
            scan.hashes
                .insert(TaskId::new(stem.as_str()).ok()?, hash.clone());
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
        let index = self.load_index();
        let generation = index.generation;
        let mut scan = Scan::default();
        // The task files listed, then sorted by name and walked together with the index (in
        // the same order): at 100,000 files, looking every name up in the index and inserting
        // it into two ordered maps in the directory's own order was most of a scan.
        let mut listed: Vec<(String, TaskId, std::path::PathBuf, Stamp)> = Vec::new();
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
            listed.push((stem.to_owned(), id, path, stamp_of(&meta)));
        }
        listed.sort_unstable_by(|a, b| a.0.cmp(&b.0));

        let mut matched = 0;
        let mut reread = false;
        let mut entries = Vec::with_capacity(listed.len());
        let mut hashes = Vec::with_capacity(listed.len());
        let mut known = index.entries.iter().peekable();
        for (stem, id, path, stamp) in listed {
            while known.next_if(|(k, _)| k.as_str() < stem.as_str()).is_some() {}
            if let Some((_, (s, h))) = known.next_if(|(k, _)| **k == stem) {
                matched += 1;
                if *s == stamp {
                    hashes.push((id, h.clone()));
                    entries.push((stem, (*s, h.clone())));
                    continue;
                }
            }
            reread = true;
            match self.read_file(&id, &path) {
                Ok((task, meta)) => {
                    let h = task.hash();
                    entries.push((stem, (stamp_of(&meta), h.clone())));
                    hashes.push((id, h));
                }
                Err(e) => scan.problems.push(FileProblem {
                    id: Some(id),
                    path,
                    message: e.message,
                }),
            }
        }
        // In order already: both maps are built in bulk.
        scan.hashes = hashes.into_iter().collect();
        let mut fresh = Index {
            generation,
            entries: entries.into_iter().collect(),
        };
        scan.others.sort();
        scan.problems.sort_by(|a, b| a.path.cmp(&b.path));
        // Entries of the old index not listed are files that disappeared.
        let fresh = if reread || matched != index.entries.len() {
            fresh.generation += 1;
            self.save_index(fresh)
        } else {
            // The same entries as the index on disk, which stays the loaded one.
            Arc::new(fresh)
        };
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

    /// The index, parsed once per change of its file: the passes of one sync (a head
    /// confirmed, a scan from it, the writes) share one read.
    pub(super) fn load_index(&self) -> Arc<Index> {
        let Some(path) = &self.inner.index_path else {
            return Arc::default();
        };
        let mut loaded = self.loaded();
        // The handle's own metadata: what was read is what the stamp describes.
        let Ok(mut file) = fs::File::open(path) else {
            return Arc::default();
        };
        let Ok(stamp) = file.metadata().map(|m| stamp_of(&m)) else {
            return Arc::default();
        };
        if let Some(l) = loaded.as_ref().filter(|l| l.stamp == stamp) {
            return l.index.clone();
        }
        count_index_read();
        let mut bytes = Vec::new();
        let index: Index = file
            .read_to_end(&mut bytes)
            .ok()
            .and_then(|_| Index::decode(&bytes))
            .unwrap_or_default();
        let index = Arc::new(index);
        *loaded = Some(Loaded {
            stamp,
            index: index.clone(),
        });
        index
    }

    /// The index to change and save: the loaded one, taken out of the memo (no copy unless
    /// another thread holds it).
    pub(super) fn take_index(&self) -> Index {
        let index = self.load_index();
        *self.loaded() = None;
        Arc::unwrap_or_clone(index)
    }

    /// Saves the index atomically and keeps it as the loaded one. It is only a cache: a
    /// failure costs a re-read next time.
    pub(super) fn save_index(&self, index: Index) -> Arc<Index> {
        let index = Arc::new(index);
        let Some(path) = &self.inner.index_path else {
            return index;
        };
        if let Ok(meta) = write_atomic_meta(path, &index.encode(), false) {
            *self.loaded() = Some(Loaded {
                stamp: stamp_of(&meta),
                index: index.clone(),
            });
        }
        index
    }

    fn loaded(&self) -> std::sync::MutexGuard<'_, Option<Loaded>> {
        self.inner.loaded.lock().unwrap_or_else(|p| p.into_inner())
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
    fn the_index_reads_back_what_it_wrote_and_the_json_of_earlier_versions() {
        let stamp = |n: u64| Stamp {
            len: n,
            mtime_ns: 1_796_312_969_289_321_667 + i128::from(n),
            ctime_ns: -1,
            ino: n * 7,
        };
        let hash = |s: &str| ContentHash::of_bytes(s.as_bytes());
        let index = Index {
            generation: 42,
            entries: BTreeMap::from([
                ("a".to_owned(), (stamp(1), hash("a"))),
                ("b-2_x".to_owned(), (stamp(2), hash("b"))),
            ]),
        };
        let bytes = index.encode();
        assert!(bytes.starts_with(b"hypertask-stat-index-2 42\n"));
        let back = Index::decode(&bytes).unwrap();
        assert_eq!(back.generation, 42);
        assert_eq!(back.entries, index.entries);

        let json = serde_json::json!({"generation": 3, "entries": {
            "a": [{"len": 1, "mtime_ns": 5, "ctime_ns": 6, "ino": 7}, hash("a")],
        }});
        let old = Index::decode(&serde_json::to_vec(&json).unwrap()).unwrap();
        assert_eq!((old.generation, old.entries["a"].0.ino), (3, 7));

        // Anything else is no index: every file is read again.
        for bad in [
            &b""[..],
            b"hypertask-stat-index-2 x\n",
            b"hypertask-stat-index-2 1\na 1 2 3 4\n",
            b"hypertask-stat-index-2 1\na 1 2 3 4 notahash\n",
            b"hypertask-stat-index-9 1\n",
        ] {
            assert!(Index::decode(bad).is_none(), "{bad:?}");
        }
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
