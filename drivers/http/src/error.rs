//! Conversions of transport failures and HTTP answers into core's [`DriverError`], always naming
//! the driver instance and the server's URL.

use std::time::Duration;

use hypertask_core::{DriverError, ErrorKind};
use reqwest::StatusCode;

/// Who is talking to whom: the driver instance and the server's base URL, for error messages.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    pub(crate) name: String,
    pub(crate) url: String,
    pub(crate) timeout: Duration,
    pub(crate) has_token: bool,
}

impl Origin {
    /// An error of `kind` about this server.
    pub(crate) fn error(&self, kind: ErrorKind, message: impl Into<String>) -> DriverError {
        DriverError::new(&self.name, kind, message)
    }

    /// The server answered something that does not follow the protocol.
    pub(crate) fn protocol(&self, what: &str, detail: impl std::fmt::Display) -> DriverError {
        self.error(
            ErrorKind::Protocol,
            format!("the server at {} answered {what} with {detail}", self.url),
        )
    }

    /// A request that got no HTTP answer: connection refused, timeout, reset.
    pub(crate) fn transport(&self, what: &str, e: reqwest::Error) -> DriverError {
        let cause = root_cause(&e);
        let err = if e.is_timeout() {
            self.error(
                ErrorKind::Timeout,
                format!(
                    "{what} to {} timed out after {}",
                    self.url,
                    seconds(self.timeout)
                ),
            )
        } else if e.is_connect() {
            self.error(
                ErrorKind::Unavailable,
                format!("cannot reach {}: {cause}", self.url),
            )
        } else if e.is_decode() {
            self.error(
                ErrorKind::Protocol,
                format!("cannot read the answer of {} to {what}: {cause}", self.url),
            )
        } else if e.is_builder() {
            self.error(
                ErrorKind::Config,
                format!("cannot build {what} for {}: {cause}", self.url),
            )
        } else {
            self.error(
                ErrorKind::Unavailable,
                format!("{what} to {} failed: {cause}", self.url),
            )
        };
        err.with_source(e)
    }

    /// An answer other than the expected one; a redirect names where it pointed.
    pub(crate) fn unexpected(&self, what: &str, answer: &crate::transport::Answer) -> DriverError {
        if answer.status.is_redirection() {
            let to = answer
                .headers
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(hypertask_core::redact_url)
                .unwrap_or_else(|| "nowhere".into());
            return self.error(
                ErrorKind::Protocol,
                format!(
                    "the server at {} redirected {what} to {to} ({}); redirects to another \
                     origin are not followed, so task bodies never leave the configured server: \
                     set `url` to the new address",
                    self.url, answer.status
                ),
            );
        }
        self.status(what, answer.status, &answer.body)
    }

    /// An HTTP answer other than the expected one.
    pub(crate) fn status(&self, what: &str, status: StatusCode, body: &[u8]) -> DriverError {
        let said = server_message(body);
        let said = if said.is_empty() {
            String::new()
        } else {
            format!(": {said}")
        };
        let (kind, message) = match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN if self.has_token => (
                ErrorKind::Unauthorized,
                format!(
                    "the server at {} refused the token ({status}){said}",
                    self.url
                ),
            ),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => (
                ErrorKind::Unauthorized,
                format!(
                    "the server at {} requires a token ({status}); set `token`{said}",
                    self.url
                ),
            ),
            StatusCode::BAD_REQUEST => (
                ErrorKind::InvalidRequest,
                format!(
                    "the server at {} rejected {what} ({status}){said}",
                    self.url
                ),
            ),
            StatusCode::PAYLOAD_TOO_LARGE => (
                ErrorKind::InvalidRequest,
                format!(
                    "the server at {} found {what} too large ({status}){said}",
                    self.url
                ),
            ),
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => (
                ErrorKind::Protocol,
                format!(
                    "no hypertask sync server at {}: {what} answered {status}{said}",
                    self.url
                ),
            ),
            s if is_retryable_status(s) => (
                ErrorKind::Unavailable,
                format!("the server at {} failed {what} ({status}){said}", self.url),
            ),
            _ => (
                ErrorKind::Protocol,
                format!(
                    "the server at {} answered {what} with {status}{said}",
                    self.url
                ),
            ),
        };
        self.error(kind, message)
    }
}

/// 5xx, 408 and 429: the same request may succeed later.
pub(crate) fn is_retryable_status(s: StatusCode) -> bool {
    s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT || s == StatusCode::TOO_MANY_REQUESTS
}

/// Whether a request that got no answer may succeed when sent again.
pub(crate) fn is_retryable_transport(e: &reqwest::Error) -> bool {
    !(e.is_builder() || e.is_decode() || e.is_redirect())
}

/// The `error` of a `{"error": "..."}` body, else the start of the body as text.
pub(crate) fn server_message(body: &[u8]) -> String {
    if let Ok(e) = serde_json::from_slice::<crate::wire::ErrorBody>(body) {
        return e.error;
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// The innermost cause of a transport error, worded for people.
fn root_cause(e: &reqwest::Error) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    let mut io: Option<&std::io::Error> = None;
    while let Some(next) = cur.source() {
        if let Some(i) = next.downcast_ref::<std::io::Error>() {
            io = Some(i);
        }
        cur = next;
    }
    if let Some(i) = io {
        use std::io::ErrorKind as K;
        let plain = match i.kind() {
            K::ConnectionRefused => Some("connection refused"),
            K::ConnectionReset => Some("connection reset by the server"),
            K::ConnectionAborted => Some("connection aborted"),
            K::TimedOut => Some("timed out"),
            K::AddrNotAvailable => Some("address not available"),
            _ => None,
        };
        return plain.map_or_else(|| i.to_string(), str::to_owned);
    }
    cur.to_string()
}

fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(has_token: bool) -> Origin {
        Origin {
            name: "server".into(),
            url: "http://127.0.0.1:9".into(),
            timeout: Duration::from_millis(1500),
            has_token,
        }
    }

    #[test]
    fn statuses_map_to_kinds() {
        let o = origin(true);
        let cases = [
            (StatusCode::UNAUTHORIZED, ErrorKind::Unauthorized),
            (StatusCode::BAD_REQUEST, ErrorKind::InvalidRequest),
            (StatusCode::PAYLOAD_TOO_LARGE, ErrorKind::InvalidRequest),
            (StatusCode::NOT_FOUND, ErrorKind::Protocol),
            (StatusCode::SERVICE_UNAVAILABLE, ErrorKind::Unavailable),
            (StatusCode::INTERNAL_SERVER_ERROR, ErrorKind::Unavailable),
            (StatusCode::IM_A_TEAPOT, ErrorKind::Protocol),
        ];
        for (status, kind) in cases {
            let e = o.status("GET /hashes", status, br#"{"error":"because"}"#);
            assert_eq!(e.kind(), kind, "{status}");
            assert_eq!(e.driver(), "server");
            let text = e.to_string();
            assert!(text.starts_with("driver 'server': "), "{text}");
            assert!(text.contains("http://127.0.0.1:9"), "{text}");
            assert!(text.contains("because"), "{text}");
        }
        let e = origin(false).status("GET /hashes", StatusCode::UNAUTHORIZED, b"");
        assert!(e.to_string().contains("requires a token"), "{e}");
    }

    #[test]
    fn server_messages_are_read_or_cut() {
        assert_eq!(server_message(br#"{"error":"bad id"}"#), "bad id");
        assert_eq!(server_message(b" plain text \n"), "plain text");
        let long = "x".repeat(500);
        assert_eq!(server_message(long.as_bytes()).chars().count(), 201);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(seconds(Duration::from_secs(30)), "30s");
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5s");
    }
}
