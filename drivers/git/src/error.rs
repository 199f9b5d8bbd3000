//! Conversions of git and file errors into core's [`DriverError`], always naming the instance.

use std::fmt::Display;

use hypertask_core::{DriverError, ErrorKind};

/// Classifies a libgit2 error: network trouble is retryable, a held lock is contention,
/// refused credentials are `Unauthorized`.
pub(crate) fn git(name: &str, context: impl Display, e: git2::Error) -> DriverError {
    use git2::{ErrorClass as C, ErrorCode as K};
    let kind = match (e.code(), e.class()) {
        (K::Auth, _) | (K::Certificate, _) => ErrorKind::Unauthorized,
        (K::Locked, _) => ErrorKind::Contended,
        (_, C::Net | C::Ssh | C::Http | C::Ssl | C::Callback) => ErrorKind::Unavailable,
        _ => ErrorKind::Io,
    };
    let kind = if kind == ErrorKind::Unavailable && looks_like_auth(e.message()) {
        ErrorKind::Unauthorized
    } else {
        kind
    };
    DriverError::new(name, kind, format!("{context}: {}", e.message())).with_source(e)
}

fn looks_like_auth(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("authentication") || m.contains("permission denied") || m.contains("credential")
}

/// An I/O failure on a path of the clone.
pub(crate) fn io(name: &str, context: impl Display, e: std::io::Error) -> DriverError {
    DriverError::io(name, context, e)
}

/// A configuration problem with the clone or the remote (wrong branch, not a repository).
pub(crate) fn config(name: &str, message: impl Into<String>) -> DriverError {
    DriverError::new(name, ErrorKind::Config, message)
}
