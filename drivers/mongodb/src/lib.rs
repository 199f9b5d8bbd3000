//! The mongodb driver for hypertask.
#![deny(missing_docs)]

use hypertask_core::{DriverError, ErrorKind, Registry};

/// The driver kind, as in `type = "mongodb"`.
pub const KIND: &str = "mongodb";

/// Registers the mongodb driver's factory.
pub fn register(registry: &mut Registry) {
    registry.register(KIND, |spec| {
        Err(DriverError::new(&spec.name, ErrorKind::Unsupported, "the mongodb driver is not built yet"))
    });
}
