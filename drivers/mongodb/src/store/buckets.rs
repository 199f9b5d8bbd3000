//! The `bucket` field and the bucket hashes of the root document (see `root`): the index that
//! answers a bucket's entries with one range query, the backfill of documents written before
//! the field existed, and the step of a batch of writes that keeps the bucket hashes current
//! by reading back only the buckets it touched.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use futures::StreamExt;
use hypertask_core::{bucket_hashes, Bucket, ContentHash, Depth, DriverError, Hashes, TaskId};
use mongodb::bson::{doc, Document};
use mongodb::IndexModel;

use super::root::Bumped;
use super::MongoStore;
use crate::document::{bucket_of, BUCKET_FIELD};

/// Backfilling updates in flight at once.
const BACKFILL_CONCURRENCY: usize = 8;

impl MongoStore {
    /// Creates the index on `bucket` once per store (a no-op on the server when it exists).
    /// Whether it exists: bucket hashes are stored only with it, since without it every bucket
    /// query would scan the collection.
    pub(super) async fn ensure_index(&self) -> bool {
        self.indexed
            .get_or_try_init(|| async {
                let coll = self.collection().await.map_err(|_| ())?;
                let index = IndexModel::builder().keys(doc! { BUCKET_FIELD: 1 }).build();
                coll.create_index(index).await.map(|_| ()).map_err(|_| ())
            })
            .await
            .is_ok()
    }

    /// Gives each of `ids` (documents found without a `bucket`) its bucket, which depends on
    /// the id alone, so this changes no task and needs no compare-and-swap. Whether every
    /// document now has one: never in a read-only sync, which writes nothing.
    pub(super) async fn backfill(&self, ids: &[TaskId]) -> bool {
        if ids.is_empty() {
            return true;
        }
        if !self.writable.load(Ordering::Relaxed) {
            return false;
        }
        let Ok(coll) = self.collection().await else {
            return false;
        };
        let coll = &coll;
        let updates: Vec<(Document, Document)> = ids
            .iter()
            .map(|id| {
                (
                    doc! { "_id": id.as_str(), BUCKET_FIELD: { "$exists": false } },
                    doc! { "$set": { BUCKET_FIELD: bucket_of(id) } },
                )
            })
            .collect();
        let results: Vec<bool> = futures::stream::iter(updates)
            .map(|(filter, update)| async move { coll.update_one(filter, update).await.is_ok() })
            .buffer_unordered(BACKFILL_CONCURRENCY)
            .collect()
            .await;
        results.into_iter().all(|ok| ok)
    }

    /// The end of a batch of writes to `ids` (`inserted` of them new): the bucket hashes kept
    /// current when they were valid before it and nothing else intervened, else the root and
    /// bucket hashes left for the next listing.
    pub(super) async fn after_writes(
        &self,
        bumped: &Bumped,
        ids: &[TaskId],
        inserted: usize,
    ) -> Result<(), DriverError> {
        match self.keep_buckets(bumped, ids, inserted).await {
            Ok(true) => Ok(()),
            // A failure here only costs the next sync a listing.
            Ok(false) | Err(_) => self.forget_root().await,
        }
    }

    /// Reads back the buckets the batch touched and stores their new hashes. Not done (`false`)
    /// when the hashes were not valid before the batch, when the collection grew past the
    /// depth they were computed for, when the batch touched most buckets (a listing is
    /// cheaper), when a touched bucket holds a document without its hash or bucket, or when
    /// another writer got in.
    async fn keep_buckets(
        &self,
        bumped: &Bumped,
        ids: &[TaskId],
        inserted: usize,
    ) -> Result<bool, DriverError> {
        let Some((depth, count)) = bumped.kept else {
            return Ok(false);
        };
        let count = count.saturating_add(u64::try_from(inserted).unwrap_or(u64::MAX));
        if Depth::for_tasks(usize::try_from(count).unwrap_or(usize::MAX)) != depth {
            return Ok(false);
        }
        let touched: BTreeSet<Bucket> = ids.iter().map(|id| Bucket::of(id, depth)).collect();
        if depth > Depth::MIN && touched.len() * 2 > depth.buckets() {
            return Ok(false);
        }
        let scan = self.scan_buckets(&touched).await?;
        if !scan.clean() || !scan.unbucketed.is_empty() || scan.misbucketed > 0 {
            return Ok(false);
        }
        let hashes: Hashes = scan
            .inventory
            .entries
            .into_iter()
            .map(|(id, e)| (id, e.hash))
            .collect();
        let mut now = bucket_hashes(&hashes, depth);
        let updates: Vec<(Bucket, Option<ContentHash>)> = touched
            .into_iter()
            .map(|b| {
                let hash = now.remove(&b);
                (b, hash)
            })
            .collect();
        self.store_touched(bumped, depth, &updates, count).await
    }
}
