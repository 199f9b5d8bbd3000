//! The atomic batch writer: every file through a fresh temporary file and a rename, flushed as
//! the directory's [`Durability`] says, then recorded in the index (and the head carried on).

use std::fs;
use std::io::{self, Write as _};
use std::sync::atomic::Ordering;

use super::flush::sync_filesystem;
use super::safe::{create_exclusive, sync_dir};
use super::scan::{stamp_of, Stamp};
use super::{Durability, TaskDir};
use crate::head::{DirStamp, Head};
use crate::task::Task;

impl TaskDir {
    /// Writes tasks atomically (temporary file, then rename: never a torn file) and durably per
    /// batch: when this returns, every file of the batch is on disk — unless
    /// [`defer_flush`](Self::defer_flush) moved the flush of [`Durability::Batch`] to
    /// [`flush`](Self::flush).
    pub fn write_batch(&self, tasks: &[Task]) -> io::Result<()> {
        if tasks.is_empty() {
            return Ok(());
        }
        let dir = &self.inner.dir;
        let mut durability = self.inner.durability;
        if durability == Durability::Batch {
            let mut deferred = self.deferred();
            if deferred.on {
                // Noted before the first rename: a failure half-way still leaves a flush due.
                deferred
                    .written
                    .extend(tasks.iter().map(|t| self.path_of(t.id())));
                durability = Durability::None;
            }
        }
        // Whether the head describes the directory up to this write (before any temp file
        // changes its stamp): only then does the write carry it on.
        let head = self.trusted_head();
        let mut temps = Vec::with_capacity(tasks.len());
        let result = (|| -> io::Result<()> {
            for task in tasks {
                let (tmp, mut f) = create_exclusive(dir, &format!(".{}.json.tmp-", task.id()))?;
                temps.push((tmp, self.path_of(task.id())));
                f.write_all(&task.to_pretty_json())?;
                if durability == Durability::PerFile {
                    f.sync_all()?;
                }
            }
            if durability == Durability::Batch {
                sync_filesystem(dir, temps.iter().map(|(t, _)| t.as_path()))?;
            }
            for (tmp, dest) in &temps {
                fs::rename(tmp, dest)?;
            }
            if durability != Durability::None {
                sync_dir(dir)?;
            }
            Ok(())
        })();
        if result.is_err() {
            for (tmp, _) in &temps {
                let _ = fs::remove_file(tmp);
            }
        }
        result?;
        // Stamped after the rename, which moves the ctime: the stamp the next scan will see.
        let stamps: Vec<Option<Stamp>> = temps
            .iter()
            .map(|(_, dest)| fs::symlink_metadata(dest).ok().map(|m| stamp_of(&m)))
            .collect();
        self.record(tasks, &stamps, head);
        Ok(())
    }

    /// Records freshly written tasks in the index so the next scan does not re-read them, and
    /// carries the head on when it described the directory before the write.
    fn record(&self, tasks: &[Task], stamps: &[Option<Stamp>], head: Option<Head>) {
        if self.inner.index_path.is_none() {
            return;
        }
        let after = self
            .inner
            .head_path
            .as_ref()
            .and_then(|_| DirStamp::now(&self.inner.dir).ok());
        let mut index = self.take_index();
        let carried = head.filter(|h| h.generation == index.generation && after.is_some());
        let mut complete = true;
        for (task, stamp) in tasks.iter().zip(stamps) {
            match stamp {
                Some(stamp) => {
                    index
                        .entries
                        .insert(task.id().to_string(), (*stamp, task.hash()));
                }
                None => {
                    complete = false;
                    index.entries.remove(task.id().as_str());
                }
            }
        }
        index.generation += 1;
        let index = self.save_index(index);
        let Some(path) = &self.inner.head_path else {
            return;
        };
        match (carried, after) {
            (Some(_), Some(after)) if complete => {
                let head = Head::new(index.generation, index.root(), index.entries.len(), after);
                self.keep_head(path, head);
                self.inner
                    .own_generation
                    .store(index.generation, Ordering::Relaxed);
            }
            _ => self.drop_head(path),
        }
    }
}
