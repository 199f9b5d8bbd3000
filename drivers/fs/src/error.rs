//! Conversions of local failures into core's [`DriverError`], always naming the instance.

use std::io;
use std::path::Path;

use hypertask_core::{DriverError, ErrorKind};

/// An I/O failure on `path`.
pub(crate) fn io(name: &str, path: &Path, e: io::Error) -> DriverError {
    DriverError::io(name, path.display(), e)
}

/// A file in the shared directory that is not a valid task: reported, never changed.
pub(crate) fn invalid(name: &str, what: impl std::fmt::Display) -> DriverError {
    DriverError::new(
        name,
        ErrorKind::InvalidData,
        format!("{what}; left untouched"),
    )
}

/// The configured directory does not exist and `create` is off.
pub(crate) fn missing_dir(name: &str, dir: &Path) -> DriverError {
    DriverError::new(
        name,
        ErrorKind::Config,
        format!(
            "directory {} does not exist (a typo or an unmounted drive?); create it, or set \
             `create = true` in [drivers.{name}]",
            dir.display()
        ),
    )
}

/// Another process kept the directory's lock file too long.
pub(crate) fn locked(name: &str, lock: &Path) -> DriverError {
    DriverError::new(
        name,
        ErrorKind::Contended,
        format!("another process holds {} ; try again later", lock.display()),
    )
}
