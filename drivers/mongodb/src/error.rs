//! Turns mongodb errors into core's [`DriverError`], naming the driver instance and saying
//! whether a retry can help.

use hypertask_core::{DriverError, ErrorKind};
use mongodb::error::{Error, ErrorKind as MongoKind, WriteFailure};

/// The server's code for a duplicate key (here: a task id that already exists).
pub(crate) const DUPLICATE_KEY: i32 = 11000;

/// Server codes that mean "not allowed" (Unauthorized, AuthenticationFailed).
const UNAUTHORIZED_CODES: &[i32] = &[13, 18];

/// Whether `e` is a duplicate-key write error.
pub(crate) fn is_duplicate_key(e: &Error) -> bool {
    match e.kind.as_ref() {
        MongoKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        MongoKind::Command(c) => c.code == DUPLICATE_KEY,
        _ => false,
    }
}

/// Classifies `e`; `what` says what the driver was doing (`"listing tasks in hypertask.tasks"`).
pub(crate) fn convert(driver: &str, what: &str, e: Error) -> DriverError {
    let kind = match e.kind.as_ref() {
        MongoKind::ServerSelection { .. }
        | MongoKind::ConnectionPoolCleared { .. }
        | MongoKind::DnsResolve { .. }
        | MongoKind::Shutdown => ErrorKind::Unavailable,
        MongoKind::Io(io) => match io.kind() {
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => ErrorKind::Timeout,
            _ => ErrorKind::Unavailable,
        },
        MongoKind::Authentication { .. } => ErrorKind::Unauthorized,
        MongoKind::InvalidArgument { .. } | MongoKind::InvalidTlsConfig { .. } => ErrorKind::Config,
        MongoKind::Command(c) if UNAUTHORIZED_CODES.contains(&c.code) => ErrorKind::Unauthorized,
        MongoKind::Write(WriteFailure::WriteError(w)) if UNAUTHORIZED_CODES.contains(&w.code) => {
            ErrorKind::Unauthorized
        }
        MongoKind::BsonSerialization(_) => ErrorKind::InvalidRequest,
        MongoKind::BsonDeserialization(_) | MongoKind::InvalidResponse { .. } => {
            ErrorKind::Protocol
        }
        MongoKind::IncompatibleServer { .. } => ErrorKind::Unsupported,
        _ if e.contains_label(mongodb::error::RETRYABLE_WRITE_ERROR) => ErrorKind::Unavailable,
        _ => ErrorKind::Protocol,
    };
    let hint = match kind {
        ErrorKind::Unavailable => " (is the MongoDB server running and reachable?)",
        _ => "",
    };
    DriverError::new(driver, kind, format!("{what}: {}{hint}", summary(&e))).with_source(e)
}

/// The error's message in plain words: without the driver's debug fields (`labels`, `source`)
/// and without its long topology dump.
fn summary(e: &Error) -> String {
    let text = match e.kind.as_ref() {
        MongoKind::InvalidArgument { message, .. } => return message.clone(),
        kind => kind.to_string(),
    };
    // "Server selection timeout: No available servers. Topology: { … }"
    match text.find(". Topology:") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn invalid_uris_are_config_errors_naming_the_driver() {
        let e = mongodb::options::ClientOptions::parse("mongodb://h:1/?notAnOption=1&tls=maybe")
            .await
            .unwrap_err();
        let d = convert("db", "connecting", e);
        assert_eq!(d.kind(), ErrorKind::Config);
        assert_eq!(d.driver(), "db");
        assert!(
            d.to_string().starts_with("driver 'db': connecting: "),
            "{d}"
        );
    }

    #[tokio::test]
    async fn a_uri_without_a_scheme_is_one_plain_sentence() {
        let e = mongodb::options::ClientOptions::parse("mongodb//localhost")
            .await
            .unwrap_err();
        let d = convert("db", "`uri` mongodb//localhost cannot be used", e);
        assert_eq!(
            d.to_string(),
            "driver 'db': `uri` mongodb//localhost cannot be used: connection string contains no scheme"
        );
    }

    #[test]
    fn io_failures_are_retryable() {
        let e: Error = MongoKind::Io(std::sync::Arc::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )))
        .into();
        let d = convert("db", "listing", e);
        assert_eq!(d.kind(), ErrorKind::Unavailable);
        assert!(d.is_retryable());
    }
}
