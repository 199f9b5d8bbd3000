//! The http driver for hypertask.
#![deny(missing_docs)]

use hypertask_core::{DriverError, ErrorKind, Registry};

/// The driver kind, as in `type = "http"`.
pub const KIND: &str = "http";

/// Registers the http driver's factory.
pub fn register(registry: &mut Registry) {
    registry.register(KIND, |spec| {
        Err(DriverError::new(&spec.name, ErrorKind::Unsupported, "the http driver is not built yet"))
    });
}
