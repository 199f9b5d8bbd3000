//! The conditional writes of [`Store::put`](hypertask_core::Store::put): new tasks in one
//! unordered `insert_many`, the rest (and inserts that clashed) each a compare-and-swap on
//! `{_id, hash}`.

use std::collections::BTreeSet;

use futures::StreamExt;
use hypertask_core::{DriverError, ErrorKind, PutOutcome, Puts, TaskId, Version, Write};
use mongodb::bson::{doc, Document};
use mongodb::error::InsertManyError;
use mongodb::Collection;

use super::version::cas_or_equal_filter;
use super::MongoStore;
use crate::document::{to_document, HASH_FIELD};
use crate::error::{convert, is_duplicate_key};

/// Conditional writes of one batch in flight at once.
const WRITE_CONCURRENCY: usize = 8;

impl MongoStore {
    /// The writes of [`Store::put`](hypertask_core::Store::put), between the two updates of
    /// the root document.
    pub(super) async fn put_all(
        &self,
        coll: &Collection<Document>,
        writes: Vec<Write>,
    ) -> Result<Puts, DriverError> {
        let mut outcomes: Vec<Option<Result<PutOutcome, DriverError>>> =
            (0..writes.len()).map(|_| None).collect();
        // New tasks go in one unordered insert_many: one round trip for an initial push.
        let mut inserts: Vec<(usize, Document)> = Vec::new();
        for (i, w) in writes.iter().enumerate() {
            if w.expected.is_none() {
                match to_document(&w.task) {
                    Ok(doc) => inserts.push((i, doc)),
                    Err(m) => {
                        outcomes[i] = Some(Err(DriverError::new(
                            &self.name,
                            ErrorKind::InvalidRequest,
                            format!("task '{}': {m}", w.task.id()),
                        )))
                    }
                }
            }
        }
        if !inserts.is_empty() {
            let what = self.doing(&format!("inserting {} new tasks", inserts.len()));
            let docs: Vec<&Document> = inserts.iter().map(|(_, d)| d).collect();
            // Inserts that failed alone (an id that exists by now) are settled one by one
            // below, which tells an equal document (a no-op) from a conflict.
            let failed: BTreeSet<usize> = match coll.insert_many(docs).ordered(false).await {
                Ok(_) => BTreeSet::new(),
                Err(e) => match *e.kind {
                    mongodb::error::ErrorKind::InsertMany(InsertManyError {
                        write_errors: Some(ref errors),
                        write_concern_error: None,
                        ..
                    }) => errors.iter().map(|w| w.index).collect(),
                    _ => return Err(convert(&self.name, &what, e)),
                },
            };
            for (k, (i, _)) in inserts.iter().enumerate() {
                if !failed.contains(&k) {
                    let version = Version::of_hash(&writes[*i].hash);
                    outcomes[*i] = Some(Ok(PutOutcome::Written(version)));
                }
            }
        }
        // Replacements (and inserts that clashed) are conditional on the stored hash, each on
        // its own, several at a time.
        let ids: Vec<TaskId> = writes.iter().map(|w| w.task.id().clone()).collect();
        let rest: Vec<(usize, Write)> = writes
            .into_iter()
            .enumerate()
            .filter(|(i, _)| outcomes[*i].is_none())
            .collect();
        let settled: Vec<(usize, Result<PutOutcome, DriverError>)> = futures::stream::iter(rest)
            .map(|(i, w)| async move { (i, self.put_one(coll, w).await) })
            .buffered(WRITE_CONCURRENCY)
            .collect()
            .await;
        for (i, r) in settled {
            outcomes[i] = Some(r);
        }
        let mut puts = Puts::new();
        for (id, outcome) in ids.into_iter().zip(outcomes) {
            let outcome = outcome.expect("every write was settled");
            // A server that went away fails the whole batch once, not every task on its own.
            if outcome.as_ref().is_err_and(DriverError::is_retryable) {
                return outcome.map(|_| puts);
            }
            puts.insert(id, outcome);
        }
        Ok(puts)
    }

    /// One write on its own: an insert if absent, or a replacement of the version read.
    async fn put_one(
        &self,
        coll: &Collection<Document>,
        write: Write,
    ) -> Result<PutOutcome, DriverError> {
        let id = write.task.id().clone();
        let new_hash = write.hash.clone();
        let doc = to_document(&write.task).map_err(|m| {
            DriverError::new(
                &self.name,
                ErrorKind::InvalidRequest,
                format!("task '{id}': {m}"),
            )
        })?;
        let what = self.doing(&format!("writing task '{id}'"));
        let outcome = match &write.expected {
            // Insert if absent; an equal document already there is a no-op, any other one a
            // duplicate key.
            None => {
                let filter = doc! { "_id": id.as_str(), HASH_FIELD: new_hash.as_str() };
                match coll.replace_one(filter, doc).upsert(true).await {
                    Ok(_) => PutOutcome::Written(Version::of_hash(&new_hash)),
                    Err(e) if is_duplicate_key(&e) => PutOutcome::Conflict,
                    Err(e) => return Err(convert(&self.name, &what, e)),
                }
            }
            // Replace only the version that was read (or an equal document, which changes
            // nothing).
            Some(expected) => {
                let mut filter = doc! { "_id": id.as_str() };
                filter.extend(cas_or_equal_filter(expected, new_hash.as_str()));
                let result = coll
                    .replace_one(filter, doc)
                    .await
                    .map_err(|e| convert(&self.name, &what, e))?;
                if result.matched_count == 1 {
                    PutOutcome::Written(Version::of_hash(&new_hash))
                } else {
                    PutOutcome::Conflict
                }
            }
        };
        Ok(outcome)
    }
}
