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
//! `{_id, hash}`; batches are fetched with `$in`; every write is a compare-and-swap on
//! `{_id, hash}` (or an insert that fails on a duplicate `_id`), so any number of clients and
//! `hypertask serve` processes can share one collection without losing an update. Merging is
//! core's [`StoreDriver`]; this crate only stores.
//!
//! Connecting is lazy (listing drivers never connects) and fails fast: finding a server gives
//! up after 3 s by default (`server_selection_timeout_ms`), with an error naming the instance.
#![deny(missing_docs)]

mod config;
pub mod document;
mod error;
mod store;

use std::sync::Arc;

use hypertask_core::{DriverError, DriverSpec, Registry, StoreDriver};

pub use config::{MongoConfig, DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_SERVER_SELECTION_TIMEOUT_MS};
pub use store::MongoStore;

/// The driver kind, as in `type = "mongodb"`.
pub const KIND: &str = "mongodb";

/// Builds the store of a `[drivers.NAME] type = "mongodb"` table (or a server's `store`).
pub fn store_from_spec(spec: &DriverSpec) -> Result<MongoStore, DriverError> {
    MongoStore::new(&spec.name, spec.config::<MongoConfig>()?)
}

/// Registers the mongodb driver's factory.
pub fn register(registry: &mut Registry) {
    registry.register(KIND, |spec| {
        Ok(Arc::new(StoreDriver::new(store_from_spec(spec)?)) as Arc<_>)
    });
}
