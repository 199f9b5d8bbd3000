//! The safety valve: a pass that would newly tombstone too many live tasks on either side stops
//! before writing anything.

use std::collections::BTreeSet;

use super::plan::Plan;
use super::{blocking, Engine, Stop};
use crate::cache::Replica;
use crate::hash::Hashes;
use crate::task::TaskId;

impl Engine {
    /// Refuses a pass that would newly tombstone more than `max_delete_percent` of the live
    /// tasks of the local cache or of the driver. Tombstones are not live tasks, on either side.
    pub(super) async fn guard(
        &self,
        name: &str,
        local_hashes: &Hashes,
        remote_hashes: &Hashes,
        plan: &Plan,
    ) -> Result<(), Stop> {
        let deleted = |was_live: &dyn Fn(&super::plan::Planned) -> bool| {
            plan.items
                .iter()
                .filter(|p| was_live(p) && p.merged.is_deleted())
                .count()
        };
        let local_n = deleted(&|p| p.local.as_ref().is_some_and(|t| !t.is_deleted()));
        let remote_n = deleted(&|p| p.remote.as_ref().is_some_and(|t| !t.is_deleted()));
        let min = self.options.delete_guard_min;
        if local_n < min && remote_n < min {
            return Ok(());
        }
        // Counting live tasks reads every cache file: only when the guard may trip.
        let (replica, ids) = (self.replica.clone(), local_hashes.keys().cloned().collect());
        let live_local = blocking(move || live_tasks(&replica, ids)).await;
        // The driver's live tasks: those it holds in the same state as the cache (whose
        // liveness the cache tells), plus the differing ones read in this pass.
        let planned: BTreeSet<&TaskId> = plan.items.iter().map(|p| p.merged.id()).collect();
        let same_live = remote_hashes
            .iter()
            .filter(|(id, _)| !planned.contains(id))
            .filter(|(id, h)| local_hashes.get(*id) != Some(*h) || live_local.contains(*id))
            .count();
        let differing_live = plan
            .items
            .iter()
            .filter(|p| p.remote.as_ref().is_some_and(|t| !t.is_deleted()))
            .count();
        let checks = [
            ("the local cache", local_n, live_local.len()),
            ("the driver", remote_n, same_live + differing_live),
        ];
        for (side, n, live) in checks {
            let limit = live as u64 * u64::from(self.options.max_delete_percent) / 100;
            if n >= min && n as u64 > limit {
                return Err(Stop::Guard(format!(
                    "driver '{name}': this sync would delete {n} of the {live} live tasks in {side} \
                     (more than {}%); nothing was written; rerun with --force if that is intended",
                    self.options.max_delete_percent
                )));
            }
        }
        Ok(())
    }
}

/// The ids among `ids` that are live (not tombstones) in the cache.
fn live_tasks(replica: &Replica, ids: Vec<TaskId>) -> BTreeSet<TaskId> {
    ids.into_iter()
        .filter(|id| {
            replica
                .get(id)
                .ok()
                .flatten()
                .is_some_and(|t| !t.is_deleted())
        })
        .collect()
}
