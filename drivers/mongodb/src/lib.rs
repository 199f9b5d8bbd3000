//! The mongodb driver for hypertask: one MongoDB collection, one document per task.
//!
//! ```toml
//! [drivers.db]
//! type = "mongodb"
//! uri = "mongodb://127.0.0.1:27017"
//! database = "hypertask"
//! collection = "tasks"
//! ```
//!
//! Each task is a document whose `_id` is the task id and whose other fields are the task's
//! fields, so `{"tags": "work"}` finds the tasks tagged `work`; a `hash` field holds the content
//! hash. See [`document`] for the exact mapping (numbers, escaped names). Listing reads only
//! `{_id, hash}`; a few tasks are fetched with `$in`, most of the collection with one unfiltered
//! `find`. The collection's root hash is kept in a side document (`_id: "root"` in
//! `<collection>.hypertask-meta`): every batch of writes drops it before and after writing, and
//! a clean listing stores it again, so a sync of an unchanged collection reads one document.
//! Each document also carries its id's bucket (`bucket`, indexed) and the root document keeps
//! the collection's bucket hashes, which every batch of writes keeps current, so the driver
//! declares `buckets`: a sync after a few edits reads the root document and the differing
//! buckets' entries only (see the `root` module of the store for how concurrent writers, and
//! writers that keep no bucket hashes, never leave wrong ones answered).
//! The root is only stored while every document carries the `hash` this driver writes; another
//! application that edits task documents in place must drop their `hash` field (as it must for
//! compare-and-swap anyway), or the root document. Every write is a compare-and-swap on
//! `{_id, hash}` (or an insert that fails on a duplicate `_id`), so any number of clients and
//! `hypertask serve` processes can share one collection without losing an update. Merging is
//! core's [`StoreDriver`]; this crate only stores.
//!
//! Connecting is lazy (listing drivers never connects) and fails fast: finding a server gives
//! up after 3 s by default (`server_selection_timeout_ms`), with an error naming the instance.
//!
//! `hypertask daemon` follows the collection with a change stream (events projected down to
//! their resume token: only the fact of a change is kept) where the server offers one (a
//! replica set or sharded cluster); a standalone server refuses it and is polled at
//! `poll_interval`.
#![deny(missing_docs)]

mod config;
pub mod document;
mod error;
mod store;
mod watch;

use std::sync::Arc;

use hypertask_core::{DriverError, DriverSpec, Registry, StoreDriver};

pub use config::{MongoConfig, DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_SERVER_SELECTION_TIMEOUT_MS};
pub use store::MongoStore;

/// The driver kind, as in `type = "mongodb"`.
pub const KIND: &str = "mongodb";

/// Builds the store of a `[drivers.NAME] type = "mongodb"` table (or a server's `store`). A
/// namespace is a collection of its own: `COLLECTION.NS`.
pub fn store_from_spec(spec: &DriverSpec) -> Result<MongoStore, DriverError> {
    let mut config: MongoConfig = spec.config()?;
    if let Some(ns) = &spec.namespace {
        config.collection = format!("{}.{ns}", config.collection);
    }
    Ok(MongoStore::new(&spec.name, config)?.with_timeout(spec.timeout))
}

/// Registers the mongodb driver's factory.
pub fn register(registry: &mut Registry) {
    registry.register_namespaced(KIND, |spec| {
        Ok(Arc::new(StoreDriver::new(store_from_spec(spec)?)) as Arc<_>)
    });
}
