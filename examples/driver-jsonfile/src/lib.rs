//! An example third-party driver: every task in one JSON file, written atomically.
//!
//! It shows the whole surface a driver crate needs: a config struct, a synchronous store
//! ([`hypertask_core::BlockingStore`]; core runs it off the async reactor and adds merge,
//! compare-and-swap retries and answer checks), `KIND` and `register`, and the conformance
//! suite in its tests. Its binaries are the three-line `hypertask` with this driver built in
//! (`hypertask-jsonfile`) and the same store as an external program
//! (`hypertask-driver-jsonfile`, for a stock `hypertask` with `type = "jsonfile"`).
#![deny(missing_docs)]

mod config;
mod store;

use std::sync::Arc;

use hypertask_core::{Blocking, DriverError, DriverSpec, Registry, StoreDriver};

pub use config::JsonFileConfig;
pub use store::JsonFileStore;

/// The driver kind, as in `type = "jsonfile"`.
pub const KIND: &str = "jsonfile";

/// The store of a `[drivers.NAME] type = "jsonfile"` table.
pub fn store(spec: &DriverSpec) -> Result<Blocking<JsonFileStore>, DriverError> {
    let config: JsonFileConfig = spec.config()?;
    Ok(Blocking::new(JsonFileStore::new(
        &spec.name,
        spec.path(&config.path),
    )))
}

/// Registers the jsonfile driver's factory.
pub fn register(registry: &mut Registry) {
    registry.register(KIND, |spec| Ok(Arc::new(StoreDriver::new(store(spec)?))));
}
