//! How the server runs: its token and every limit, with their defaults.

use std::time::Duration;

use hypertask_core::{Secret, DEFAULT_MAX_TASK_BYTES};

/// How the server runs. Every limit has a default that suits one user's server on a small
/// machine; `hypertask serve` reads them from `[server]`.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The token clients must present; `None` serves without authentication. Surrounding
    /// whitespace is refused by [`ServerOptions::validate`].
    pub token: Option<Secret>,
    /// Most tasks accepted in one `POST /tasks` (default 1000).
    pub max_batch: usize,
    /// Largest request body accepted, in bytes; larger bodies get `413` (default 16 MiB).
    pub max_body_bytes: usize,
    /// Largest task accepted, in bytes of JSON; a larger one is refused with `400` like any
    /// invalid task (default 1 MiB).
    pub max_task_bytes: usize,
    /// Most connections open at once; beyond it new connections wait to be accepted
    /// (default 512, below the common limit of 1024 open files).
    pub max_connections: usize,
    /// Most requests handled at once; more wait their turn (default 64).
    pub max_concurrent_requests: usize,
    /// Most request-body bytes held at once by all requests together: a request takes its
    /// length (or `max_body_bytes` when it does not say) from this budget before its body is
    /// read, and waits while the budget is spent (default 32 MiB). This bounds the memory
    /// concurrent large bodies can take.
    pub max_inflight_body_bytes: usize,
    /// How long a connection may take to send a complete request head, counted from when the
    /// server starts waiting for it (default 10 s).
    pub header_timeout: Duration,
    /// How long a connection may stay open with no request in flight and no byte moving
    /// (default 5 s): idle keep-alive and half-open connections are closed after it.
    pub idle_timeout: Duration,
    /// How long a request's body may take to arrive; slower bodies get `408` (default 30 s).
    pub body_timeout: Duration,
    /// How long one request may take in all, store included; slower ones get `503`
    /// (default 120 s). A held long poll gets its wait on top.
    pub request_timeout: Duration,
    /// The longest a `GET /hashes` long poll (`Prefer: wait=N`) is held; a longer wait asked
    /// for is cut to it (default 60 s). Whole seconds.
    pub long_poll_max_wait: Duration,
    /// Most long polls held at once; beyond it `Prefer: wait` is ignored and the request is
    /// answered at once as a plain conditional GET (default 256; 0 turns long polling off).
    /// Held requests wait outside `max_concurrent_requests`.
    pub max_long_polls: usize,
    /// How often the store's root is read again while long polls are held, for the writes
    /// that do not go through this server (another server on the same database, a shared
    /// file); one read serves every held request (default 5 s).
    pub long_poll_recheck: Duration,
    /// Most requests one user (one token) may make in a minute, in a sliding budget that
    /// refills evenly; beyond it requests get `429` with `Retry-After` (default: no limit).
    pub max_requests_per_minute: Option<u32>,
    /// Most tasks (tombstones included) one user may store; a write that would store more gets
    /// `507` (default: no limit).
    pub max_tasks: Option<usize>,
    /// Origins (`https://tasks.example.org`) whose pages may call this server from a browser
    /// (CORS). Empty by default: no CORS header is sent, so only the server's own page can.
    pub cors_origins: Vec<String>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            token: None,
            max_batch: hypertask_core::DEFAULT_BATCH,
            max_body_bytes: 16 * 1024 * 1024,
            max_task_bytes: DEFAULT_MAX_TASK_BYTES,
            max_connections: 512,
            max_concurrent_requests: 64,
            max_inflight_body_bytes: 32 * 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(120),
            long_poll_max_wait: Duration::from_secs(60),
            max_long_polls: 256,
            long_poll_recheck: Duration::from_secs(5),
            max_requests_per_minute: None,
            max_tasks: None,
            cors_origins: Vec::new(),
        }
    }
}

impl ServerOptions {
    /// Refuses options the server cannot run with: a token with surrounding whitespace, a
    /// zero limit or timeout (`max_long_polls` may be 0: no long polls).
    pub fn validate(&self) -> Result<(), String> {
        if let Some(t) = &self.token {
            crate::config::check_token(t.expose())?;
        }
        for (name, v) in [
            ("max_batch", self.max_batch),
            ("max_body_bytes", self.max_body_bytes),
            ("max_task_bytes", self.max_task_bytes),
            ("max_connections", self.max_connections),
            ("max_concurrent_requests", self.max_concurrent_requests),
            ("max_inflight_body_bytes", self.max_inflight_body_bytes),
            (
                "max_requests_per_minute",
                self.max_requests_per_minute.map_or(1, |n| n as usize),
            ),
            ("max_tasks_per_user", self.max_tasks.unwrap_or(1)),
        ] {
            if v == 0 {
                return Err(format!("`{name}` must be at least 1"));
            }
        }
        for origin in &self.cors_origins {
            valid_origin(origin)?;
        }
        for (name, d) in [
            ("header_timeout_secs", self.header_timeout),
            ("idle_timeout_secs", self.idle_timeout),
            ("body_timeout_secs", self.body_timeout),
            ("request_timeout_secs", self.request_timeout),
            ("long_poll_max_wait_secs", self.long_poll_max_wait),
            ("long_poll_recheck_secs", self.long_poll_recheck),
        ] {
            if d.is_zero() {
                return Err(format!("`{name}` must be a positive number of seconds"));
            }
        }
        Ok(())
    }

    /// The body budget a request takes: its announced length, else the largest body, never
    /// more than the whole budget.
    pub(crate) fn body_permits(&self, content_length: Option<u64>) -> u32 {
        let want = content_length
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(self.max_body_bytes)
            .min(self.max_body_bytes)
            .min(self.max_inflight_body_bytes);
        // Semaphores count in u32; budgets are counted in KiB to fit.
        u32::try_from(want.div_ceil(1024)).unwrap_or(u32::MAX)
    }

    /// The whole body budget, in the units of [`ServerOptions::body_permits`].
    pub(crate) fn body_budget(&self) -> usize {
        self.max_inflight_body_bytes.div_ceil(1024)
    }
}

/// An origin as browsers send it: `http://` or `https://`, a host and maybe a port, nothing
/// after (no path, not even `/`).
fn valid_origin(origin: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "`cors_origins`: '{origin}' is not an origin; write it as a browser sends it, \
             e.g. https://tasks.example.org or http://localhost:8080"
        )
    };
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or_else(bad)?;
    let fine = !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    fine.then_some(()).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_key() {
        assert!(ServerOptions::default().validate().is_ok());
        let o = ServerOptions {
            token: Some("tok ".into()),
            ..Default::default()
        };
        assert!(o.validate().unwrap_err().contains("whitespace"));
        let o = ServerOptions {
            max_connections: 0,
            ..Default::default()
        };
        assert!(o.validate().unwrap_err().contains("max_connections"));
        let o = ServerOptions {
            idle_timeout: Duration::ZERO,
            ..Default::default()
        };
        assert!(o.validate().unwrap_err().contains("idle_timeout_secs"));
    }

    #[test]
    fn body_permits_stay_within_the_budget() {
        let o = ServerOptions::default();
        assert_eq!(o.body_permits(Some(10)), 1);
        assert_eq!(o.body_permits(None), 16 * 1024);
        assert_eq!(o.body_permits(Some(u64::MAX)), 16 * 1024);
        let small = ServerOptions {
            max_inflight_body_bytes: 4096,
            ..Default::default()
        };
        assert_eq!(small.body_permits(None), 4);
        assert_eq!(small.body_budget(), 4);
    }

    #[test]
    fn debug_redacts_the_token() {
        let o = ServerOptions {
            token: Some("very-secret".into()),
            ..Default::default()
        };
        let shown = format!("{o:?}");
        assert!(
            !shown.contains("very-secret") && shown.contains("<redacted>"),
            "{shown}"
        );
    }
}
