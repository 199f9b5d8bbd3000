//! The root document: what this driver keeps about the whole collection, in the side
//! collection `<collection>.hypertask-meta`, so that an unchanged collection costs one read and
//! a changed one a read plus the differing buckets.
//!
//! Its fields:
//! - `gen`: a generation every batch of writes bumps before it writes (and again after), so a
//!   listing that overlapped a write never stores what it saw;
//! - `root`: the collection's root hash, stored by a clean listing, dropped by every write;
//! - `buckets` (bucket → hash), `depth` and `count` (tasks when they were computed): the bucket
//!   hashes, valid only while `bgen` (the generation they were computed at) equals `gen`.
//!
//! Bucket hashes cannot be derived from one another: a bucket's hash is the root hash of its
//! ids in id order, which interleaves the ids of its sub-buckets, so a depth-1 hash is not a
//! function of the depth-2 hashes. The driver chooses the depth it answers with, so one depth
//! is kept: the one a listing chose for its task count. A batch of writes keeps them current
//! by reading back only the buckets it touched (one indexed query), and stores them in one
//! compare-and-swap that also bumps `gen`, conditional on nobody having bumped it since the
//! batch's own first bump and on the buckets having been valid just before it. Any other
//! outcome (a concurrent batch, an older hypertask, which bumps `gen` but knows nothing of
//! `bgen`, a failure) leaves `bgen` behind `gen`: the bucket hashes are then ignored until a
//! listing stores new ones, so they are never answered wrong. The root cannot be updated that
//! way (it is the hash of the whole map), so after a write it stays unknown until a listing;
//! the bucket hashes alone still answer a no-op in one read.
//!
//! What remains as with the root before: a batch that crashes between its writes and its
//! second bump, while a listing it overlapped stores what it saw, leaves that listing's root
//! and buckets until the next write.

use std::sync::atomic::Ordering;

use hypertask_core::{Bucket, BucketHashes, Buckets, ContentHash, Depth, DriverError, Summary};
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::ReturnDocument;
use mongodb::Collection;

use super::MongoStore;
use crate::error::convert;

/// The id of the root document in the side collection `<collection>.hypertask-meta`.
const ROOT_DOC: &str = "root";

/// What a batch of writes learnt from its first bump: the generation it set and, when the
/// bucket hashes were valid just before, their depth and task count.
pub(super) struct Bumped {
    pub(super) gen: i64,
    pub(super) kept: Option<(Depth, u64)>,
}

impl MongoStore {
    /// The side collection holding the root document.
    async fn meta(&self) -> Result<Collection<Document>, DriverError> {
        Ok(self
            .client()
            .await?
            .database(&self.config.database)
            .collection(&format!("{}.hypertask-meta", self.config.collection)))
    }

    /// The root document, if it exists: one round trip.
    async fn root_document(&self) -> Result<Option<Document>, DriverError> {
        let what = self.doing("reading the root document");
        self.meta()
            .await?
            .find_one(doc! { "_id": ROOT_DOC })
            .await
            .map_err(|e| convert(&self.name, &what, e))
    }

    /// The root hash stored in the root document, if any.
    pub(super) async fn stored_root(&self) -> Result<Option<ContentHash>, DriverError> {
        Ok(self.root_document().await?.as_ref().and_then(root_of))
    }

    /// The stored root and, while valid, bucket hashes: one round trip. Valid bucket hashes
    /// also tell that every document carries its `bucket` (a listing stores them only then,
    /// and every later writer writes it) and how many tasks there are.
    pub(super) async fn stored_summary(&self) -> Result<Summary, DriverError> {
        let Some(meta) = self.root_document().await? else {
            return Ok(Summary::default());
        };
        let buckets = kept_buckets(&meta);
        if let Some((_, count)) = &buckets {
            self.bucketed.store(true, Ordering::Relaxed);
            let count = usize::try_from(*count).unwrap_or(usize::MAX);
            self.listed.store(count, Ordering::Relaxed);
        }
        Ok(Summary {
            root: root_of(&meta),
            buckets: buckets.map(|(b, _)| b),
        })
    }

    /// The root document's generation (bumped around every batch of writes), if it exists.
    pub(super) async fn root_generation(&self) -> Result<Option<i64>, DriverError> {
        Ok(self.root_document().await?.and_then(|d| int(&d, "gen")))
    }

    /// Stores what a clean listing found (`root`, and `buckets` when every document carries
    /// its bucket), unless a writer bumped the generation since `seen` was read before the
    /// listing. Best effort: a failure only costs the next sync a listing.
    pub(super) async fn store_summary(
        &self,
        seen: Option<i64>,
        root: &ContentHash,
        buckets: Option<(&Buckets, usize)>,
    ) {
        if !self.writable.load(Ordering::Relaxed) {
            return;
        }
        let Ok(meta) = self.meta().await else { return };
        let generation = seen.unwrap_or(0);
        let mut fields = doc! { "root": root.as_str() };
        if let Some((b, count)) = buckets {
            fields.insert("bgen", generation);
            fields.insert("depth", i32::from(b.depth.get()));
            fields.insert("count", i64::try_from(count).unwrap_or(i64::MAX));
            fields.insert("buckets", bucket_document(&b.hashes));
        }
        let result = match seen {
            Some(generation) => {
                meta.update_one(
                    doc! { "_id": ROOT_DOC, "gen": generation },
                    doc! { "$set": fields },
                )
                .await
            }
            None => {
                fields.insert("gen", 0_i64);
                meta.update_one(doc! { "_id": ROOT_DOC }, doc! { "$setOnInsert": fields })
                    .upsert(true)
                    .await
            }
        };
        // Not stored (no write permission, a lost race): the next sync lists instead.
        let _ = result;
    }

    /// The first bump of a batch of writes: drops the root and bumps the generation (so a
    /// failure after the writes never leaves a stale root, nor stale bucket hashes), and
    /// tells whether the bucket hashes were valid just before.
    pub(super) async fn bump_before_writes(&self) -> Result<Bumped, DriverError> {
        let what = self.doing("updating the root document");
        let after = self
            .meta()
            .await?
            .find_one_and_update(
                doc! { "_id": ROOT_DOC },
                doc! { "$inc": { "gen": 1_i64 }, "$unset": { "root": "" } },
            )
            .upsert(true)
            .return_document(ReturnDocument::After)
            .projection(doc! { "gen": 1, "bgen": 1, "depth": 1, "count": 1 })
            .await
            .map_err(|e| convert(&self.name, &what, e))?
            .unwrap_or_default();
        let gen = int(&after, "gen").unwrap_or(0);
        let kept = match (int(&after, "bgen"), depth_of(&after), int(&after, "count")) {
            (Some(bgen), Some(depth), Some(count)) if bgen + 1 == gen => {
                Some((depth, u64::try_from(count).unwrap_or(0)))
            }
            _ => None,
        };
        Ok(Bumped { gen, kept })
    }

    /// The second step of a batch of writes that kept its buckets current: stores the new
    /// hashes of the buckets it touched (`None`: now empty) and the new task count, bumping
    /// the generation, if nobody bumped it since `bumped` and the buckets are still those
    /// that were valid then. Whether it stored them.
    pub(super) async fn store_touched(
        &self,
        bumped: &Bumped,
        depth: Depth,
        touched: &[(Bucket, Option<ContentHash>)],
        count: u64,
    ) -> Result<bool, DriverError> {
        let what = self.doing("updating the root document");
        let next = bumped.gen + 1;
        let mut set = doc! {
            "gen": next,
            "bgen": next,
            "count": i64::try_from(count).unwrap_or(i64::MAX),
        };
        let mut unset = doc! { "root": "" };
        for (bucket, hash) in touched {
            let path = format!("buckets.{bucket}");
            match hash {
                Some(h) => set.insert(path, h.as_str()),
                None => unset.insert(path, ""),
            };
        }
        let result = self
            .meta()
            .await?
            .update_one(
                doc! {
                    "_id": ROOT_DOC,
                    "gen": bumped.gen,
                    "bgen": bumped.gen - 1,
                    "depth": i32::from(depth.get()),
                },
                doc! { "$set": set, "$unset": unset },
            )
            .await
            .map_err(|e| convert(&self.name, &what, e))?;
        Ok(result.matched_count == 1)
    }

    /// Drops the stored root and bumps its generation (which also leaves the bucket hashes
    /// behind it): after a batch of writes that could not keep them current, so a listing
    /// that overlapped the writes does not store what it saw.
    pub(super) async fn forget_root(&self) -> Result<(), DriverError> {
        let what = self.doing("updating the root document");
        self.meta()
            .await?
            .update_one(
                doc! { "_id": ROOT_DOC },
                doc! { "$inc": { "gen": 1_i64 }, "$unset": { "root": "" } },
            )
            .upsert(true)
            .await
            .map_err(|e| convert(&self.name, &what, e))?;
        Ok(())
    }
}

/// The `root` field of the root document.
fn root_of(meta: &Document) -> Option<ContentHash> {
    meta.get_str("root").ok().and_then(ContentHash::parse)
}

/// The bucket hashes of the root document and their task count, when they are valid: computed
/// at the current generation, at a depth, every key a bucket of that depth and every value a
/// hash.
fn kept_buckets(meta: &Document) -> Option<(Buckets, u64)> {
    if int(meta, "bgen")? != int(meta, "gen")? {
        return None;
    }
    let depth = depth_of(meta)?;
    let count = u64::try_from(int(meta, "count")?).ok()?;
    let mut hashes = BucketHashes::new();
    for (key, value) in meta.get_document("buckets").ok()? {
        let bucket = Bucket::parse(key).filter(|b| b.depth() == depth)?;
        let hash = value.as_str().and_then(ContentHash::parse)?;
        hashes.insert(bucket, hash);
    }
    Some((Buckets { depth, hashes }, count))
}

/// The bucket hashes as a document: `{"<bucket>": "<hash>", …}`.
fn bucket_document(hashes: &BucketHashes) -> Document {
    hashes
        .iter()
        .map(|(b, h)| (b.as_str().to_owned(), Bson::String(h.as_str().to_owned())))
        .collect()
}

/// The `depth` field of the root document.
fn depth_of(meta: &Document) -> Option<Depth> {
    Depth::new(u8::try_from(int(meta, "depth")?).ok()?)
}

/// An integer field, however it was stored.
fn int(doc: &Document, key: &str) -> Option<i64> {
    match doc.get(key) {
        Some(Bson::Int64(n)) => Some(*n),
        Some(Bson::Int32(n)) => Some(i64::from(*n)),
        _ => None,
    }
}
