//! Listing and reading tasks: `{_id, hash, bucket}` for a listing (documents without a hash are
//! read whole), a range query on `bucket` per bucket for some buckets' entries, `$in` lists for
//! a few ids and one unfiltered `find` for most of the collection.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::Ordering;

use futures::{stream, StreamExt, TryStreamExt};
use hypertask_core::{
    bucket_hashes, in_any, root_hash, Bucket, Buckets, ContentHash, Depth, DriverError, Entry,
    Gets, Hashes, Problem, Store, StoreInventory, Stored, TaskId, Version,
};
use mongodb::bson::{doc, Bson, Document};

use super::version::version_of;
use super::MongoStore;
use crate::document::{from_document, is_bucket_of, BUCKET_FIELD, HASH_FIELD};
use crate::error::convert;

/// Most ids fetched with one `$in` query.
const MAX_IN: usize = 1000;

/// The share of all buckets from which listing buckets reads the whole collection in one
/// query instead of one query per bucket.
const SCAN_ALL_SHARE: f64 = 0.25;

/// Bucket queries in flight at once.
const QUERY_CONCURRENCY: usize = 8;

/// What one listing query found, before documents without a hash are read whole.
#[derive(Default)]
pub(super) struct Scan {
    pub(super) inventory: StoreInventory,
    /// Documents without a hash (written by another client): read whole and hashed.
    pub(super) unhashed: Vec<TaskId>,
    /// Documents without a `bucket` field (written by an older version or another client).
    pub(super) unbucketed: Vec<TaskId>,
    /// Documents whose `bucket` is another value (a task field an older version stored
    /// unescaped): until rewritten, they keep the collection from being answered by bucket.
    pub(super) misbucketed: usize,
}

impl Scan {
    /// Whether every document is a task with its hash: what a stored root needs.
    pub(super) fn clean(&self) -> bool {
        self.inventory.problems.is_empty() && self.unhashed.is_empty()
    }

    /// Adds what another query found (queries of overlapping buckets may find a document
    /// twice: it is kept once).
    fn absorb(&mut self, other: Scan) {
        self.inventory.entries.extend(other.inventory.entries);
        self.inventory.problems.extend(other.inventory.problems);
        for (mine, theirs) in [
            (&mut self.unhashed, other.unhashed),
            (&mut self.unbucketed, other.unbucketed),
        ] {
            mine.extend(theirs);
            mine.sort();
            mine.dedup();
        }
        self.misbucketed += other.misbucketed;
    }
}

impl MongoStore {
    /// Every task's hash and version; stores the root (and the bucket hashes) when the listing
    /// was clean. Documents without their `bucket` get it first, when this sync may write.
    pub(super) async fn list_all(&self) -> Result<StoreInventory, DriverError> {
        let seen = self.root_generation().await?;
        let scan = self.scan(doc! {}, None).await?;
        let clean = scan.clean();
        let backfilled = self.backfill(&scan.unbucketed).await;
        let bucketed = backfilled && scan.misbucketed == 0;
        let inventory = self.settle(scan).await?;
        let count = inventory.entries.len();
        self.listed.store(count, Ordering::Relaxed);
        self.bucketed.store(bucketed, Ordering::Relaxed);
        if clean {
            let hashes: Hashes = inventory
                .entries
                .iter()
                .map(|(id, e)| (id.clone(), e.hash.clone()))
                .collect();
            let root = root_hash(&hashes);
            // Bucket hashes are kept only with the index that answers their buckets.
            let buckets = if bucketed && self.ensure_index().await {
                let depth = Depth::for_tasks(count);
                Some(Buckets {
                    depth,
                    hashes: bucket_hashes(&hashes, depth),
                })
            } else {
                None
            };
            self.store_summary(seen, &root, buckets.as_ref().map(|b| (b, count)))
                .await;
        }
        Ok(inventory)
    }

    /// The entries of `buckets` (any depths): one query on the `bucket` index when every
    /// document carries its bucket, else the whole listing filtered.
    pub(super) async fn list_buckets(
        &self,
        buckets: &BTreeSet<Bucket>,
    ) -> Result<StoreInventory, DriverError> {
        if buckets.is_empty() {
            return Ok(StoreInventory::default());
        }
        if !self.bucketed.load(Ordering::Relaxed) {
            return Ok(self.list_all().await?.restricted(buckets));
        }
        let scan = self.scan_buckets(buckets).await?;
        self.settle(scan).await
    }

    /// The documents of `buckets`: a range query on the `bucket` index per bucket (`ab` is
    /// `["ab", "ac")`) and one for the documents without a `bucket` (another client's, kept
    /// when in one of them), a few at a time; one unfiltered listing when the buckets hold a
    /// large part of the collection. Separate ranges rather than one `$or` of them: every
    /// server answers a single range from the index, while some evaluate an `$or` document by
    /// document (the SecantusDB test server took 4 s for 80 ranges over 10,000 documents,
    /// against 3 ms per range).
    pub(super) async fn scan_buckets(
        &self,
        buckets: &BTreeSet<Bucket>,
    ) -> Result<Scan, DriverError> {
        let share: f64 = buckets
            .iter()
            .map(|b| 1.0 / b.depth().buckets() as f64)
            .sum();
        if share >= SCAN_ALL_SHARE {
            return self.scan(doc! {}, Some(buckets)).await;
        }
        let mut filters: Vec<Document> = buckets
            .iter()
            .map(|b| doc! { BUCKET_FIELD: { "$gte": b.as_str(), "$lt": after(b) } })
            .collect();
        // `null` also matches a missing field, and is answered from the index.
        filters.push(doc! { BUCKET_FIELD: Bson::Null });
        let scans: Vec<Scan> = stream::iter(filters)
            .map(|filter| self.scan(filter, Some(buckets)))
            .buffer_unordered(QUERY_CONCURRENCY)
            .try_collect()
            .await?;
        let mut all = Scan::default();
        for scan in scans {
            all.absorb(scan);
        }
        Ok(all)
    }

    /// The `{_id, hash, bucket}` of the documents `filter` finds (of those in `within`, when
    /// given; problems that name no id are always kept).
    async fn scan(
        &self,
        filter: Document,
        within: Option<&BTreeSet<Bucket>>,
    ) -> Result<Scan, DriverError> {
        let coll = self.collection().await?;
        let what = self.doing("listing task hashes");
        let mut cursor = coll
            .find(filter)
            .projection(doc! { "_id": 1, HASH_FIELD: 1, BUCKET_FIELD: 1 })
            .await
            .map_err(|e| convert(&self.name, &what, e))?;
        let mut scan = Scan::default();
        while let Some(doc) = cursor
            .try_next()
            .await
            .map_err(|e| convert(&self.name, &what, e))?
        {
            let id = match doc.get("_id") {
                Some(Bson::String(s)) if TaskId::is_valid(s) => {
                    TaskId::new(s.as_str()).expect("validated just above")
                }
                other => {
                    let shown = other.map_or_else(|| "none".to_owned(), Bson::to_string);
                    scan.inventory.problems.push(Problem {
                        id: None,
                        error: self.invalid(
                            &shown,
                            "_id is not a task id (1 to 64 of A-Z a-z 0-9 _ -); left untouched",
                        ),
                    });
                    continue;
                }
            };
            if within.is_some_and(|b| !in_any(b, &id)) {
                continue;
            }
            match doc.get(BUCKET_FIELD) {
                None => scan.unbucketed.push(id.clone()),
                Some(b) if !is_bucket_of(&id, b) => scan.misbucketed += 1,
                Some(_) => {}
            }
            match doc.get_str(HASH_FIELD).ok().and_then(ContentHash::parse) {
                Some(hash) => {
                    let version = Version::of_hash(&hash);
                    scan.inventory.entries.insert(id, Entry { hash, version });
                }
                // Written by another client without a hash: read it whole and hash it.
                None => scan.unhashed.push(id),
            }
        }
        Ok(scan)
    }

    /// The scan's inventory, with its documents without a hash read whole and hashed.
    async fn settle(&self, scan: Scan) -> Result<StoreInventory, DriverError> {
        let mut inventory = scan.inventory;
        for chunk in scan.unhashed.chunks(MAX_IN) {
            for (id, got) in self.get(chunk).await? {
                match got {
                    Ok(Some(stored)) => {
                        let hash = stored.task.hash();
                        let version = stored.version;
                        inventory.entries.insert(id, Entry { hash, version });
                    }
                    Ok(None) => {}
                    Err(error) => inventory.problems.push(Problem {
                        id: Some(id),
                        error,
                    }),
                }
            }
        }
        Ok(inventory)
    }

    /// The stored state of each of `ids`.
    pub(super) async fn get_many(&self, ids: &[TaskId]) -> Result<Gets, DriverError> {
        let coll = self.collection().await?;
        let what = self.doing("reading tasks");
        let mut found: HashMap<String, Document> = HashMap::with_capacity(ids.len());
        let listed = self.listed.load(Ordering::Relaxed);
        let scan_all = ids.len() > MAX_IN && ids.len() * 2 >= listed;
        // Most of the collection: one unfiltered scan beats many `$in` lists.
        let filters: Vec<Document> = if scan_all {
            vec![doc! {}]
        } else {
            ids.chunks(MAX_IN)
                .map(|chunk| {
                    let ids: Vec<&str> = chunk.iter().map(TaskId::as_str).collect();
                    doc! { "_id": { "$in": ids } }
                })
                .collect()
        };
        let wanted: HashSet<&str> = ids.iter().map(TaskId::as_str).collect();
        for filter in filters {
            let mut cursor = coll
                .find(filter)
                .await
                .map_err(|e| convert(&self.name, &what, e))?;
            while let Some(doc) = cursor
                .try_next()
                .await
                .map_err(|e| convert(&self.name, &what, e))?
            {
                if let Ok(id) = doc.get_str("_id") {
                    if wanted.contains(id) {
                        found.insert(id.to_owned(), doc);
                    }
                }
            }
        }
        Ok(ids
            .iter()
            .map(|id| {
                let state = match found.remove(id.as_str()) {
                    None => Ok(None),
                    Some(doc) => {
                        let version = version_of(doc.get(HASH_FIELD));
                        from_document(doc)
                            .map(|task| Some(Stored { task, version }))
                            .map_err(|m| self.invalid(id.as_str(), m))
                    }
                };
                (id.clone(), state)
            })
            .collect())
    }
}

/// The first value after every bucket id starting with `bucket`: its last digit moved one
/// character up (`ab` → `ac`, `a9` → `a:`, `af` → `ag`), which sorts after all of them.
fn after(bucket: &Bucket) -> String {
    let mut bytes = bucket.as_str().as_bytes().to_vec();
    if let Some(last) = bytes.last_mut() {
        *last += 1;
    }
    String::from_utf8(bytes).expect("hex digits moved up stay ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_range_holds_exactly_its_bucket_ids() {
        let ids = [
            "0000", "09ff", "0a00", "a900", "a9ff", "aa00", "af12", "afff", "b000", "ffff",
        ];
        for prefix in ["0", "09", "a9", "af", "f", "ffff", "a9ff"] {
            let bucket = Bucket::parse(prefix).unwrap();
            let upper = after(&bucket);
            for id in ids {
                let inside = id >= prefix && id < upper.as_str();
                assert_eq!(
                    inside,
                    id.starts_with(prefix),
                    "{id} in [{prefix}, {upper})"
                );
            }
        }
    }
}
