//! The `[drivers.NAME]` table of an http driver.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// `[drivers.NAME] type = "http"`: where the sync server is and how to talk to it.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// The server's base URL, e.g. `http://127.0.0.1:7878` (`http` or `https`).
    pub url: String,
    /// The bearer token, when the server requires one.
    #[serde(default)]
    pub token: Option<String>,
    /// Whole-request timeout in seconds (default 30).
    #[serde(default = "default_timeout")]
    pub timeout_secs: f64,
    /// Connection timeout in seconds (default 10).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: f64,
    /// How many times a request that failed for a retryable reason (connection refused,
    /// timeout, a 5xx answer) is sent again, with jittered exponential backoff (default 3).
    #[serde(default = "default_retries")]
    pub retries: u32,
}

fn default_timeout() -> f64 {
    30.0
}

fn default_connect_timeout() -> f64 {
    10.0
}

fn default_retries() -> u32 {
    3
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
        }
    }

    /// The same config with `token`.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
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
}

fn seconds(key: &str, v: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(v)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("`{key}` must be a positive number of seconds, not {v}"))
}

impl fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpConfig")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("timeout_secs", &self.timeout_secs)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .field("retries", &self.retries)
            .finish()
    }
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
}
