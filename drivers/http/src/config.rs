//! The `[drivers.NAME]` table of an http driver.

use std::time::Duration;

use hypertask_core::Secret;
use reqwest::Url;
use serde::Deserialize;

/// `[drivers.NAME] type = "http"`: where the sync server is and how to talk to it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// The server's base URL, e.g. `http://127.0.0.1:7878` (`http` or `https`).
    pub url: String,
    /// The bearer token, when the server requires one.
    #[serde(default)]
    pub token: Option<Secret>,
    /// Whole-request timeout in seconds (default 30).
    #[serde(default = "default_timeout")]
    pub timeout_secs: f64,
    /// Connection timeout in seconds (default 10).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: f64,
    /// How many times a request that failed for a retryable reason (connection refused,
    /// timeout, a 5xx answer) is sent again, with jittered exponential backoff (default 3,
    /// at most [`MAX_RETRIES`]).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Most entries accepted in one `GET /hashes` answer (default 1,000,000): a server that
    /// lists more is refused rather than filling memory.
    #[serde(default = "default_max_tasks")]
    pub max_tasks: usize,
    /// How long `hypertask daemon` asks the server to hold its long poll for changes, in
    /// seconds (default 50, under the common 60-second proxy timeout); 0 turns the long poll
    /// off, leaving `poll_interval`. Used only when the server advertises `long_poll`.
    #[serde(default = "default_long_poll")]
    pub long_poll_secs: u64,
}

/// The default of `long_poll_secs`.
pub const DEFAULT_LONG_POLL_SECS: u64 = 50;

/// The most `retries` accepted: with the backoff capped at 5 s, about a minute of retrying.
pub const MAX_RETRIES: u32 = 10;

/// The default of `max_tasks`.
pub const DEFAULT_MAX_TASKS: usize = 1_000_000;

fn default_timeout() -> f64 {
    30.0
}

fn default_connect_timeout() -> f64 {
    10.0
}

fn default_retries() -> u32 {
    3
}

fn default_max_tasks() -> usize {
    DEFAULT_MAX_TASKS
}

fn default_long_poll() -> u64 {
    DEFAULT_LONG_POLL_SECS
}

impl HttpConfig {
    /// A config for `url` with no token and the default timeouts and retries.
    pub fn new(url: impl Into<String>) -> Self {
        HttpConfig {
            url: url.into(),
            token: None,
            timeout_secs: default_timeout(),
            connect_timeout_secs: default_connect_timeout(),
            retries: default_retries(),
            max_tasks: default_max_tasks(),
            long_poll_secs: default_long_poll(),
        }
    }

    /// The same config with `token`.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Secret::new(token));
        self
    }

    /// The whole-request timeout, when it is a positive, finite number of seconds.
    pub(crate) fn timeout(&self) -> Result<Duration, String> {
        seconds("timeout_secs", self.timeout_secs)
    }

    /// The connection timeout, when it is a positive, finite number of seconds.
    pub(crate) fn connect_timeout(&self) -> Result<Duration, String> {
        seconds("connect_timeout_secs", self.connect_timeout_secs)
    }

    /// `retries`, when it is at most [`MAX_RETRIES`].
    pub(crate) fn retries(&self) -> Result<u32, String> {
        if self.retries > MAX_RETRIES {
            return Err(format!(
                "`retries` = {} is more than the {MAX_RETRIES} allowed",
                self.retries
            ));
        }
        Ok(self.retries)
    }

    /// The token to send: `None` when unset or empty; an error when it has surrounding
    /// whitespace (see [`check_token`]).
    pub(crate) fn token(&self) -> Result<Option<&str>, String> {
        match self.token.as_ref().map(Secret::expose) {
            None | Some("") => Ok(None),
            Some(t) => check_token(t).map(Some),
        }
    }

    /// The server's base URL: `http` or `https`, no credentials, no query or fragment.
    pub(crate) fn base_url(&self) -> Result<Url, String> {
        let url = self.url.trim();
        let mut base = Url::parse(url)
            .map_err(|e| format!("invalid `url` {:?}: {e}", hypertask_core::redact_url(url)))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(format!(
                "`url` {:?} must start with http:// or https://",
                hypertask_core::redact_url(url)
            ));
        }
        if base.password().is_some() || !base.username().is_empty() {
            return Err("`url` must not carry credentials; put the token in `token`".into());
        }
        base.set_query(None);
        base.set_fragment(None);
        Ok(base)
    }
}

/// A token as both sides use it. Surrounding whitespace is refused rather than trimmed: a
/// token copied with a stray space or newline would otherwise match on one side only.
pub fn check_token(token: &str) -> Result<&str, String> {
    if token.trim() != token {
        return Err(
            "`token` starts or ends with whitespace; remove it (tokens are compared exactly)"
                .into(),
        );
    }
    Ok(token)
}

fn seconds(key: &str, v: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(v)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("`{key}` must be a positive number of seconds, not {v}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_token() {
        let c = HttpConfig::new("http://x").with_token("s3cret-token");
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret-token"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn defaults_and_unknown_keys() {
        let c: HttpConfig =
            serde_json::from_value(serde_json::json!({"url": "http://h:1"})).unwrap();
        assert_eq!(c.timeout().unwrap(), Duration::from_secs(30));
        assert_eq!(c.connect_timeout().unwrap(), Duration::from_secs(10));
        assert_eq!(c.retries, 3);
        assert!(c.token.is_none());
        let err = serde_json::from_value::<HttpConfig>(
            serde_json::json!({"url": "http://h:1", "tokn": "x"}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("tokn"), "{err}");
    }

    #[test]
    fn timeouts_must_be_positive() {
        let mut c = HttpConfig::new("http://x");
        c.timeout_secs = 0.0;
        assert!(c.timeout().unwrap_err().contains("timeout_secs"));
        c.connect_timeout_secs = f64::NAN;
        assert!(c.connect_timeout().is_err());
        c.timeout_secs = 0.25;
        assert_eq!(c.timeout().unwrap(), Duration::from_millis(250));
    }

    #[test]
    fn retries_are_bounded() {
        let mut c = HttpConfig::new("http://x");
        c.retries = MAX_RETRIES;
        assert_eq!(c.retries().unwrap(), MAX_RETRIES);
        c.retries = u32::MAX;
        assert!(c.retries().unwrap_err().contains("`retries`"));
    }

    #[test]
    fn tokens_with_surrounding_whitespace_are_refused() {
        for bad in [" tok", "tok ", "tok\n", "\ttok"] {
            let e = HttpConfig::new("http://x")
                .with_token(bad)
                .token()
                .unwrap_err();
            assert!(e.contains("whitespace"), "{e}");
        }
        assert_eq!(
            HttpConfig::new("http://x")
                .with_token("t o k")
                .token()
                .unwrap(),
            Some("t o k")
        );
        assert_eq!(
            HttpConfig::new("http://x").with_token("").token().unwrap(),
            None
        );
    }
}
