//! The apply step: push what the driver lacks, store what the cache lacks, and journal every
//! value that lost a merge although it was set after the last sync with this driver.

use chrono::Utc;

use super::plan::{Plan, Planned};
use super::{blocking, DriverReport, Engine, Stop, DEFAULT_BATCH};
use crate::cache::{ConflictRecord, Side};
use crate::checked::Checked;
use crate::driver::{Batch, Driver};
use crate::merge::{lost_values, merge};
use crate::task::{format_timestamp, Task};

/// One task after the pass: both sides' states before, and the state both hold now.
struct Outcome {
    local: Option<Task>,
    remote: Option<Task>,
    now: Task,
    pushed: bool,
}

impl Engine {
    pub(super) async fn apply(
        &self,
        driver: &Checked,
        plan: Plan,
        batch_size: usize,
        rep: &mut DriverReport,
    ) -> Result<(), Stop> {
        let name = rep.name.clone();
        let (push, pull): (Vec<Planned>, Vec<Planned>) = plan
            .items
            .into_iter()
            .partition(|p| p.remote.as_ref() != Some(&p.merged));
        let mut outcomes: Vec<Outcome> = pull
            .into_iter()
            .map(|p| Outcome {
                local: p.local,
                remote: p.remote,
                now: p.merged,
                pushed: false,
            })
            .collect();

        // Push; take what the driver answers (it may hold an even newer state).
        for chunk in push.chunks(batch_size) {
            let batch: Batch = chunk
                .iter()
                .map(|p| (p.merged.id().clone(), Some(p.merged.clone())))
                .collect();
            let mut answers = driver.resolve(batch).await?;
            for p in chunk {
                let id = p.merged.id();
                match answers.remove(id) {
                    Some(Ok(Some(now))) => outcomes.push(Outcome {
                        local: p.local.clone(),
                        remote: p.remote.clone(),
                        now,
                        pushed: true,
                    }),
                    Some(Ok(None)) => rep.failed.push(format!(
                        "driver '{name}': task '{id}' was sent but the driver answered nothing"
                    )),
                    Some(Err(e)) => rep.failed.push(e.to_string()),
                    None => rep
                        .failed
                        .push(format!("driver '{name}': gave no answer for task '{id}'")),
                }
            }
            rep.failed.extend(
                answers
                    .into_values()
                    .filter_map(Result::err)
                    .map(|e| e.to_string()),
            );
            self.progress.advance(chunk.len());
        }

        let last_sync = {
            let (replica, name) = (self.replica.clone(), name.clone());
            blocking(move || replica.last_sync(&name)).await
        };
        let at = format_timestamp(Utc::now()).unwrap_or_default();
        let mut writes = Vec::new();
        let mut conflicts = Vec::new();
        for o in outcomes {
            let changed_locally = o.local.as_ref() != Some(&o.now);
            rep.count(changed_locally, o.pushed);
            for (side, before) in [(Side::Local, &o.local), (Side::Upstream, &o.remote)] {
                let Some(before) = before else { continue };
                conflicts.extend(
                    lost_values(before, &o.now)
                        .into_iter()
                        .filter(|lost| {
                            let clock = before.clocks().get(&lost.field).and_then(|c| c.as_str());
                            clock.is_some_and(|c| last_sync.as_deref().is_none_or(|s| c > s))
                        })
                        .map(|lost| ConflictRecord {
                            at: at.clone(),
                            driver: name.clone(),
                            side,
                            task: o.now.id().clone(),
                            field: lost.field,
                            lost: lost.lost,
                            kept: lost.kept,
                        }),
                );
            }
            if changed_locally {
                writes.push((o.local, o.now));
            }
        }
        // The cache is locked per chunk of writes only: an edit made since the plan read the
        // task is merged in, never overwritten (the next pass sends it on).
        self.locked(move |replica, lock| replica.record_conflicts(lock, &conflicts))
            .await?;
        for chunk in writes.chunks(DEFAULT_BATCH) {
            let chunk = chunk.to_vec();
            self.locked(move |replica, lock| {
                let mut tasks = Vec::with_capacity(chunk.len());
                for (planned, now) in chunk {
                    let current = replica.get(now.id()).ok().flatten();
                    if current == planned {
                        tasks.push(now);
                    } else if let Ok(Some(both)) = merge(current.as_ref(), Some(&now)) {
                        tasks.push(both);
                    }
                }
                replica.put(lock, &tasks)
            })
            .await?;
        }
        Ok(())
    }
}
