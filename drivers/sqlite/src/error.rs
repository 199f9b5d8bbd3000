//! Conversions of SQLite failures into core's [`DriverError`], always naming the instance and
//! saying whether a retry can help.

use std::path::Path;

use hypertask_core::{DriverError, ErrorKind};
use rusqlite::ErrorCode;

/// A failure of SQLite while doing `what` on the file at `path`.
pub(crate) fn sqlite(name: &str, path: &Path, what: &str, e: rusqlite::Error) -> DriverError {
    let kind = match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => ErrorKind::Contended,
        Some(ErrorCode::PermissionDenied | ErrorCode::ReadOnly | ErrorCode::CannotOpen) => {
            ErrorKind::Io
        }
        Some(ErrorCode::DiskFull | ErrorCode::SystemIoFailure) => ErrorKind::Io,
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => ErrorKind::InvalidData,
        _ => ErrorKind::Internal,
    };
    DriverError::new(name, kind, format!("{}: {what}: {e}", path.display())).with_source(e)
}

/// The configured file does not exist and `create` is off.
pub(crate) fn missing(name: &str, path: &Path) -> DriverError {
    DriverError::new(
        name,
        ErrorKind::Config,
        format!(
            "database {} does not exist (a typo or an unmounted drive?); create it, or set \
             `create = true` in [drivers.{name}]",
            path.display()
        ),
    )
}

/// A stored row that is not a valid task: reported, never overwritten.
pub(crate) fn invalid(name: &str, path: &Path, id: &str, why: &str) -> DriverError {
    DriverError::new(
        name,
        ErrorKind::InvalidData,
        format!(
            "{}: stored task '{id}' {why}; left untouched",
            path.display()
        ),
    )
}
