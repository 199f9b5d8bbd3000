//! The root document: the collection's root hash, kept in the side collection
//! `<collection>.hypertask-meta` while no write has happened since a clean listing computed
//! it, with a generation every batch of writes bumps so a listing that overlapped a write never
//! stores its root.

use std::sync::atomic::Ordering;

use hypertask_core::{ContentHash, DriverError};
use mongodb::bson::{doc, Bson, Document};
use mongodb::Collection;

use super::MongoStore;
use crate::error::convert;

/// The id of the document, in the side collection `<collection>.hypertask-meta`, that holds
/// the collection's root hash while no write has happened since it was computed.
const ROOT_DOC: &str = "root";

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
        Ok(self
            .root_document()
            .await?
            .as_ref()
            .and_then(|d| d.get_str("root").ok())
            .and_then(ContentHash::parse))
    }

    /// The root document's generation (bumped around every batch of writes), if it exists.
    pub(super) async fn root_generation(&self) -> Result<Option<i64>, DriverError> {
        Ok(self.root_document().await?.and_then(|d| generation(&d)))
    }

    /// Stores `root` as the collection's, unless a writer bumped the generation since `seen`
    /// was read before the listing. Best effort: a failure only costs the next no-op a listing.
    pub(super) async fn store_root(&self, seen: Option<i64>, root: &ContentHash) {
        if !self.writable.load(Ordering::Relaxed) {
            return;
        }
        let Ok(meta) = self.meta().await else { return };
        let result = match seen {
            Some(generation) => {
                meta.update_one(
                    doc! { "_id": ROOT_DOC, "gen": generation },
                    doc! { "$set": { "root": root.as_str() } },
                )
                .await
            }
            None => {
                meta.update_one(
                    doc! { "_id": ROOT_DOC },
                    doc! { "$setOnInsert": { "gen": 0_i64, "root": root.as_str() } },
                )
                .upsert(true)
                .await
            }
        };
        // Not stored (no write permission, a lost race): the next no-op lists instead.
        let _ = result;
    }

    /// Drops the stored root and bumps its generation: before a batch of writes (so a failure
    /// after them never leaves a stale root) and after it (so a listing that overlapped the
    /// writes does not store its root).
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

/// The `gen` field of the root document.
fn generation(doc: &Document) -> Option<i64> {
    match doc.get("gen") {
        Some(Bson::Int64(n)) => Some(*n),
        Some(Bson::Int32(n)) => Some(i64::from(*n)),
        _ => None,
    }
}
