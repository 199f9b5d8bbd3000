//! The fs driver for hypertask.
#![deny(missing_docs)]

use hypertask_core::{DriverError, ErrorKind, Registry};

/// The driver kind, as in `type = "fs"`.
pub const KIND: &str = "fs";

/// Registers the fs driver's factory.
pub fn register(registry: &mut Registry) {
    registry.register(KIND, |spec| {
        Err(DriverError::new(&spec.name, ErrorKind::Unsupported, "the fs driver is not built yet"))
    });
}
