//! The typed error every driver returns.

use std::fmt;

/// What went wrong, and so whether a retry can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The upstream could not be reached (connection refused, DNS, server down). Retryable.
    Unavailable,
    /// The upstream did not answer in time. Retryable.
    Timeout,
    /// A compare-and-swap kept losing to concurrent writers. Retryable.
    Contended,
    /// The upstream holds data that is not a valid task (a corrupt file, a bad document).
    InvalidData,
    /// The request was refused as malformed (bad id, invalid task, protocol violation).
    InvalidRequest,
    /// Authentication failed or is missing.
    Unauthorized,
    /// The driver's configuration is wrong.
    Config,
    /// Local I/O failed (permissions, disk full).
    Io,
    /// The upstream answered something that does not follow the protocol.
    Protocol,
    /// The upstream does not offer what was asked.
    Unsupported,
    /// The driver itself failed (it panicked, or broke its own contract).
    Internal,
}

impl ErrorKind {
    /// Whether trying the same operation again later may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Unavailable | Self::Timeout | Self::Contended)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unavailable => "unavailable",
            Self::Timeout => "timed out",
            Self::Contended => "contended",
            Self::InvalidData => "invalid data",
            Self::InvalidRequest => "invalid request",
            Self::Unauthorized => "unauthorized",
            Self::Config => "configuration error",
            Self::Io => "I/O error",
            Self::Protocol => "protocol error",
            Self::Unsupported => "unsupported",
            Self::Internal => "internal error",
        })
    }
}

/// An error from one driver instance. Its message always names the instance.
#[derive(Debug, thiserror::Error)]
#[error("driver '{driver}': {message}")]
pub struct DriverError {
    driver: String,
    kind: ErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl DriverError {
    /// An error of `kind` in driver instance `driver`.
    pub fn new(driver: impl Into<String>, kind: ErrorKind, message: impl Into<String>) -> Self {
        DriverError {
            driver: driver.into(),
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The driver instance's name.
    pub fn driver(&self) -> &str {
        &self.driver
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the driver's name.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether a retry can help.
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }

    /// Classifies an I/O error: timeouts and refused connections are retryable.
    pub fn io(driver: impl Into<String>, context: impl fmt::Display, e: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let kind = match e.kind() {
            K::TimedOut | K::WouldBlock => ErrorKind::Timeout,
            K::ConnectionRefused | K::ConnectionReset | K::ConnectionAborted | K::NotConnected => {
                ErrorKind::Unavailable
            }
            K::InvalidData => ErrorKind::InvalidData,
            _ => ErrorKind::Io,
        };
        DriverError::new(driver, kind, format!("{context}: {e}")).with_source(e)
    }
}
