//! The plan step: both sides' states of every differing task and their merge. It writes
//! nothing upstream (reading a task is `resolve` with no client state).

use std::collections::{BTreeMap, BTreeSet};

use super::{blocking, Context, DriverReport, Engine, Stop};
use crate::checked::Checked;
use crate::driver::{Batch, Driver};
use crate::hash::Hashes;
use crate::merge::merge;
use crate::task::{Task, TaskId};

/// One differing task: both sides' states and their merge.
pub(super) struct Planned {
    pub local: Option<Task>,
    pub remote: Option<Task>,
    pub merged: Task,
}

/// The outcome of one pass, before anything is written.
pub(super) struct Plan {
    pub items: Vec<Planned>,
}

impl Plan {
    /// Counts what the plan would change (a dry run's report).
    pub fn count(&self, rep: &mut DriverReport) {
        for p in &self.items {
            rep.count(
                p.local.as_ref() != Some(&p.merged),
                p.remote.as_ref() != Some(&p.merged),
            );
        }
    }
}

impl Engine {
    /// Reads both sides of `diff` and merges them. A task either side cannot read fails alone
    /// (a local file that cannot be read is quarantined first in a writing sync).
    pub(super) async fn plan(
        &self,
        cx: &mut Context,
        driver: &Checked,
        remote_hashes: &Hashes,
        diff: Vec<TaskId>,
        batch_size: usize,
        rep: &mut DriverReport,
    ) -> Result<Plan, Stop> {
        let name = rep.name.clone();
        let mut failed: BTreeSet<TaskId> = BTreeSet::new();

        let replica = self.replica.clone();
        let ids = diff.clone();
        let local_reads = blocking(move || {
            ids.into_iter()
                .map(|id| {
                    let t = replica.get(&id);
                    (id, t)
                })
                .collect::<Vec<_>>()
        })
        .await;
        let mut local: BTreeMap<TaskId, Task> = BTreeMap::new();
        for (id, read) in local_reads {
            match read {
                Ok(Some(t)) => {
                    local.insert(id, t);
                }
                Ok(None) => {}
                Err(e) if cx.sync_lock.is_some() => {
                    let note = self.quarantine(&id, &e.to_string()).await?;
                    cx.local_skipped.insert(note);
                }
                Err(e) => {
                    rep.failed.push(format!("local cache: {e}"));
                    failed.insert(id);
                }
            }
        }

        let to_read: Vec<TaskId> = diff
            .iter()
            .filter(|id| remote_hashes.contains_key(*id))
            .cloned()
            .collect();
        let mut remote: BTreeMap<TaskId, Task> = BTreeMap::new();
        // Reads carry ids only: they go in the driver's own largest batch, so a store can
        // answer a pull of most of its tasks with one scan instead of many id lists.
        let read_batch = driver.info().capabilities.max_batch.max(batch_size);
        for chunk in to_read.chunks(read_batch) {
            let batch: Batch = chunk.iter().map(|id| (id.clone(), None)).collect();
            for (id, answer) in driver.resolve(batch).await? {
                match answer {
                    Ok(Some(t)) => {
                        remote.insert(id, t);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        rep.failed.push(e.to_string());
                        failed.insert(id);
                    }
                }
            }
            if local.is_empty() {
                self.progress.advance(chunk.len());
            }
        }

        let mut items = Vec::new();
        for id in diff {
            if failed.contains(&id) {
                continue;
            }
            let (local, remote) = (local.remove(&id), remote.remove(&id));
            match merge(local.as_ref(), remote.as_ref()) {
                Ok(Some(merged)) => items.push(Planned {
                    local,
                    remote,
                    merged,
                }),
                Ok(None) => {}
                Err(e) => rep.failed.push(format!("driver '{name}': {e}")),
            }
        }
        Ok(Plan { items })
    }
}
