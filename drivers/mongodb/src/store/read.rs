//! Listing and reading tasks: `{_id, hash}` for a listing (documents without a hash are read
//! whole), `$in` lists for a few ids and one unfiltered `find` for most of the collection.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use futures::TryStreamExt;
use hypertask_core::{
    root_hash, ContentHash, DriverError, Entry, Gets, Problem, Store, StoreInventory, Stored,
    TaskId, Version,
};
use mongodb::bson::{doc, Bson, Document};

use super::version::version_of;
use super::MongoStore;
use crate::document::{from_document, HASH_FIELD};
use crate::error::convert;

/// Most ids fetched with one `$in` query.
const MAX_IN: usize = 1000;

impl MongoStore {
    /// Every task's hash and version; stores the root when the listing was clean.
    pub(super) async fn list_all(&self) -> Result<StoreInventory, DriverError> {
        let seen = self.root_generation().await?;
        let coll = self.collection().await?;
        let what = self.doing("listing task hashes");
        let mut cursor = coll
            .find(doc! {})
            .projection(doc! { "_id": 1, HASH_FIELD: 1 })
            .await
            .map_err(|e| convert(&self.name, &what, e))?;
        let mut inventory = StoreInventory::default();
        let mut unhashed = Vec::new();
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
                    inventory.problems.push(Problem {
                        id: None,
                        error: self.invalid(
                            &shown,
                            "_id is not a task id (1 to 64 of A-Z a-z 0-9 _ -); left untouched",
                        ),
                    });
                    continue;
                }
            };
            match doc.get_str(HASH_FIELD).ok().and_then(ContentHash::parse) {
                Some(hash) => {
                    let version = Version::of_hash(&hash);
                    inventory.entries.insert(id, Entry { hash, version });
                }
                // Written by another client without a hash: read it whole and hash it.
                None => unhashed.push(id),
            }
        }
        let clean = inventory.problems.is_empty() && unhashed.is_empty();
        for chunk in unhashed.chunks(MAX_IN) {
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
        self.listed
            .store(inventory.entries.len(), Ordering::Relaxed);
        if clean {
            let hashes = inventory
                .entries
                .iter()
                .map(|(id, e)| (id.clone(), e.hash.clone()))
                .collect();
            self.store_root(seen, &root_hash(&hashes)).await;
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
