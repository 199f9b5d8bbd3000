//! The git driver for hypertask.
#![deny(missing_docs)]

use hypertask_core::{DriverError, ErrorKind, Registry};

/// The driver kind, as in `type = "git"`.
pub const KIND: &str = "git";

/// Registers the git driver's factory.
pub fn register(registry: &mut Registry) {
    registry.register(KIND, |spec| {
        Err(DriverError::new(&spec.name, ErrorKind::Unsupported, "the git driver is not built yet"))
    });
}
