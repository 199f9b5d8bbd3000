//! An example third-party driver: every task in one JSON file, written atomically.
//!
//! It shows the whole surface a driver crate needs: a config struct, a [`Store`](hypertask_core::Store) (core adds
//! merge, compare-and-swap and retry), `KIND` and `register`, and the conformance suite in its
//! tests. Its binary serves the same store as an external program (`type = "jsonfile"` works
//! with the stock `hypertask` once `hypertask-driver-jsonfile` is on `PATH`).
#![deny(missing_docs)]

mod config;
mod store;

use std::sync::Arc;

use hypertask_core::{Registry, StoreDriver};

pub use config::JsonFileConfig;
pub use store::JsonFileStore;

/// The driver kind, as in `type = "jsonfile"`.
pub const KIND: &str = "jsonfile";

/// Registers the jsonfile driver's factory.
pub fn register(registry: &mut Registry) {
    registry.register(KIND, |spec| {
        let config: JsonFileConfig = spec.config()?;
        Ok(Arc::new(StoreDriver::new(JsonFileStore::new(
            &spec.name, config,
        ))))
    });
}
