//! The client side of the sync protocol (docs/http-protocol.md): the [`Driver`] over a
//! [`Transport`]. Its `resolve` is `resolve.rs`, its bucketed listing `buckets.rs`; the wire
//! types, transport, capabilities and listing are modules of their own too.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use hypertask_core::{
    Answers, Backoff, Batch, Bucket, BucketListing, Capabilities, ContentHash, Driver, DriverError,
    DriverInfo, ErrorKind, Health, Inventory, Listing, Watch, DEFAULT_MAX_TASK_BYTES,
};
use reqwest::header::{HeaderMap, ETAG, IF_NONE_MATCH};
use reqwest::{StatusCode, Url};

use crate::capabilities::{advertised, ServerCaps, DEFAULT_MAX_BATCH};
use crate::config::HttpConfig;
use crate::listing::read_inventory;
use crate::transport::{Answer, Transport};
use crate::wire::{tag_root, PREFERENCE_APPLIED_HEADER, PREFER_HEADER};
use crate::KIND;

/// Room in an answer for what surrounds the task states: keys, braces, error messages.
pub(crate) const ENVELOPE_BYTES: usize = 4096;
/// Bytes one `/hashes` entry may take: a 64-character id, a 64-digit hash, quotes and spacing.
const HASH_ENTRY_BYTES: usize = 256;
/// The first pause after a long poll the server answered at once without holding it (all
/// its slots taken); it doubles up to the long poll's wait.
const UNHELD_PAUSE: Duration = Duration::from_secs(1);

/// A driver instance talking to a hypertask sync server over HTTP.
///
/// It learns what the server offers once per instance, lazily: from the `Hypertask-*` headers
/// of a `/hashes` or `/buckets` answer when the server sends them, else from `GET /capabilities`
/// the first time it has tasks to send. With protocol 1.1 it sends `POST /tasks` batches of at most the server's `max_batch`, otherwise
/// (a 404, or no `1.1`) one v1.0 `POST /task/:id` per task. `GET /hashes` always carries the
/// caller's root as `If-None-Match`, so an unchanged server answers `304` in one round trip.
///
/// It lists by bucket (protocol 1.2: `GET /buckets`, then `GET /hashes?buckets=…` for the
/// buckets that differ) unless the server is known not to offer it; a server that answers
/// `/buckets` with `404` is listed whole from then on.
///
/// Every request is safe to repeat (the server merges, and merging is idempotent), so requests
/// that fail for a retryable reason (no connection, timeout, a 5xx answer) are sent again, up
/// to `retries` times, with jittered exponential backoff.
///
/// Answers are read with caps derived from the task size limit and the number of tasks asked
/// about, and `/hashes` with at most `max_tasks` entries: a server cannot make the client
/// hold more than that.
///
/// When the server advertises `long_poll`, [`Driver::wait_for_change`] holds a `GET /hashes`
/// long poll against the last root any `/hashes` answer carried.
pub struct HttpDriver {
    pub(crate) t: Transport,
    pub(crate) max_task_bytes: usize,
    pub(crate) max_tasks: usize,
    caps: tokio::sync::OnceCell<ServerCaps>,
    /// The server answered `GET /buckets` with `404` or `405`: it lists whole maps only.
    pub(crate) no_buckets: AtomicBool,
    /// How long a long poll asks to be held; zero: no long poll.
    long_poll: Duration,
    /// The server's root as the last `/hashes` answer gave it (its `ETag`).
    root: Mutex<Option<ContentHash>>,
    /// Whether `wait_for_change` has answered its first call.
    watching: AtomicBool,
}

/// How a long poll ended.
enum Polled {
    /// The root is no longer the one sent.
    Changed,
    /// Held for the wait, and nothing changed.
    Held,
    /// Answered at once without being held: the server has no free slot.
    NotHeld,
}

impl fmt::Debug for HttpDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpDriver")
            .field("name", &self.t.origin.name)
            .field("url", &self.t.origin.url)
            .field("token", &self.t.origin.has_token.then_some("<redacted>"))
            .field("retries", &self.t.retries)
            .field("server", &self.caps.get())
            .finish()
    }
}

impl HttpDriver {
    /// A driver instance named `name` (as in `[drivers.NAME]`). Sends nothing yet.
    pub fn new(name: &str, config: HttpConfig) -> Result<HttpDriver, DriverError> {
        Ok(HttpDriver {
            t: Transport::new(name, &config)?,
            max_task_bytes: DEFAULT_MAX_TASK_BYTES,
            max_tasks: config.max_tasks.max(1),
            caps: tokio::sync::OnceCell::new(),
            no_buckets: AtomicBool::new(false),
            long_poll: Duration::from_secs(config.long_poll_secs),
            root: Mutex::new(None),
            watching: AtomicBool::new(false),
        })
    }

    /// The same driver, refusing task states larger than `bytes` of JSON in answers and
    /// reading answers with caps derived from it.
    pub fn with_max_task_bytes(mut self, bytes: usize) -> HttpDriver {
        self.max_task_bytes = bytes;
        self
    }

    /// The server's base URL, as shown in messages.
    pub fn url(&self) -> &str {
        &self.t.origin.url
    }

    /// What the server is known to offer so far (nothing before its first answer).
    pub(crate) fn known_caps(&self) -> Option<&ServerCaps> {
        self.caps.get()
    }

    /// The server's capabilities, read once per driver instance.
    pub(crate) async fn capabilities(&self) -> Result<&ServerCaps, DriverError> {
        self.caps
            .get_or_try_init(|| crate::capabilities::fetch(&self.t))
            .await
    }

    /// `GET /hashes`, conditional on `known_root`.
    pub(crate) async fn list(
        &self,
        known_root: Option<&ContentHash>,
    ) -> Result<Listing, DriverError> {
        let what = "GET /hashes";
        let url = self.t.endpoint("hashes");
        let answer = self
            .listing_get(what, url, self.listing_limit(), known_root)
            .await?;
        match answer.status {
            StatusCode::NOT_MODIFIED if known_root.is_some() => Ok(Listing::Unchanged),
            StatusCode::OK => Ok(Listing::Changed(read_inventory(
                &self.t.origin,
                what,
                &answer.body,
                self.max_tasks,
            )?)),
            _ => Err(self.t.origin.unexpected(what, &answer)),
        }
    }

    /// `GET url` for a listing, with `known_root` as `If-None-Match`, read up to `limit`
    /// bytes; what the answer says of the server is learnt ([`HttpDriver::heard`]).
    pub(crate) async fn listing_get(
        &self,
        what: &str,
        url: Url,
        limit: usize,
        known_root: Option<&ContentHash>,
    ) -> Result<Answer, DriverError> {
        let etag = known_root.map(|r| format!("\"{r}\""));
        let answer = self
            .t
            .send(what, limit, || {
                let req = self.t.client().get(url.clone());
                match &etag {
                    Some(tag) => req.header(IF_NONE_MATCH, tag.as_str()),
                    None => req,
                }
            })
            .await?;
        self.heard(&answer);
        Ok(answer)
    }

    /// The most bytes a `/hashes` answer is read with: `max_tasks` entries.
    pub(crate) fn listing_limit(&self) -> usize {
        self.max_tasks
            .saturating_mul(HASH_ENTRY_BYTES)
            .saturating_add(ENVELOPE_BYTES)
    }

    /// Learns from a successful answer (`200` or `304`) to a listing: the root its `ETag`
    /// names, and the capabilities its `Hypertask-*` headers repeat when none are known yet.
    fn heard(&self, answer: &Answer) {
        if !matches!(answer.status, StatusCode::OK | StatusCode::NOT_MODIFIED) {
            return;
        }
        self.saw(&answer.headers);
        if self.caps.get().is_none() {
            if let Some(caps) = advertised(&answer.headers) {
                tracing::debug!(driver = %self.t.origin.name, ?caps, "server capabilities");
                // Losing a race with a concurrent `/capabilities` read is fine: same server.
                let _ = self.caps.set(caps);
            }
        }
    }

    /// Keeps the root an answer's `ETag` names as the last one seen, and returns it.
    fn saw(&self, headers: &HeaderMap) -> Option<ContentHash> {
        let root = etag_root(headers)?;
        *self.root.lock().unwrap_or_else(|e| e.into_inner()) = Some(root.clone());
        Some(root)
    }

    /// The last root a `/hashes` answer named.
    fn last_root(&self) -> Option<ContentHash> {
        self.root.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// One long poll: `GET /hashes` with `If-None-Match: "<known>"` and `Prefer: wait=N`,
    /// allowed the wait plus the usual timeout. The body of a changed listing is not read:
    /// the sync that follows lists anyway.
    async fn poll_once(&self, known: &ContentHash) -> Result<Polled, DriverError> {
        let what = "GET /hashes (long poll)";
        let url = self.t.endpoint("hashes");
        let etag = format!("\"{known}\"");
        let prefer = format!("wait={}", self.long_poll.as_secs());
        let timeout = self.long_poll + self.t.origin.timeout;
        let answer = self
            .t
            .send_unread(what, || {
                self.t
                    .client()
                    .get(url.clone())
                    .header(IF_NONE_MATCH, etag.as_str())
                    .header(PREFER_HEADER, prefer.as_str())
                    .timeout(timeout)
            })
            .await
            .map_err(|e| match e.kind() {
                // The transport names `timeout_secs`; this request was allowed more.
                ErrorKind::Timeout => self.t.origin.error(
                    ErrorKind::Timeout,
                    format!(
                        "{what} to {} got no answer within {} s (its wait plus `timeout_secs`)",
                        self.t.origin.url,
                        timeout.as_secs_f64()
                    ),
                ),
                _ => e,
            })?;
        match answer.status {
            StatusCode::OK | StatusCode::NOT_MODIFIED => {}
            _ => return Err(self.t.origin.unexpected(what, &answer)),
        }
        let Some(root) = self.saw(&answer.headers) else {
            return Err(self
                .t
                .origin
                .protocol(what, "an answer without a root hash as its `ETag`"));
        };
        Ok(if answer.status == StatusCode::OK || &root != known {
            Polled::Changed
        } else if answer.headers.contains_key(PREFERENCE_APPLIED_HEADER) {
            Polled::Held
        } else {
            Polled::NotHeld
        })
    }
}

/// The root hash an `ETag: "<root>"` names (weak or strong).
fn etag_root(headers: &HeaderMap) -> Option<ContentHash> {
    tag_root(headers.get(ETAG)?.to_str().ok()?)
}

#[async_trait]
impl Driver for HttpDriver {
    fn info(&self) -> DriverInfo {
        let caps = self.caps.get();
        DriverInfo {
            kind: KIND.into(),
            name: self.t.origin.name.clone(),
            capabilities: Capabilities {
                max_batch: caps.and_then(|c| c.max_batch).unwrap_or(DEFAULT_MAX_BATCH),
                cheap_root: caps.is_some_and(|c| c.max_batch.is_some()),
                atomic_writes: true,
                remote: true,
                buckets: self.offers_buckets(),
            },
        }
    }

    async fn hashes(&self, known_root: Option<&ContentHash>) -> Result<Listing, DriverError> {
        self.list(known_root).await
    }

    async fn buckets(
        &self,
        known_root: Option<&ContentHash>,
    ) -> Result<BucketListing, DriverError> {
        self.list_buckets(known_root).await
    }

    async fn hashes_in(&self, buckets: &BTreeSet<Bucket>) -> Result<Inventory, DriverError> {
        self.list_in(buckets).await
    }

    async fn resolve(&self, batch: Batch) -> Result<Answers, DriverError> {
        self.resolve_all(batch).await
    }

    async fn check(&self) -> Result<Health, DriverError> {
        let caps = self.capabilities().await?.clone();
        let count = match self.list(None).await? {
            Listing::Changed(inv) => inv.hashes.len(),
            Listing::Unchanged => 0,
        };
        let batching = match caps.max_batch {
            Some(n) => format!("batches of up to {n}"),
            None => "one task per request".into(),
        };
        Ok(Health {
            ok: true,
            detail: format!(
                "sync server at {}, protocol {}, {batching}, {count} tasks",
                self.t.origin.url,
                caps.protocol.join(", ")
            ),
        })
    }

    /// # Behavior
    /// - [`Watch::Unsupported`] when `long_poll_secs` is 0, or the server does not advertise
    ///   `long_poll` (or sends no `ETag`): the caller polls.
    /// - The first call answers [`Watch::Changed`] once the server's capabilities are known.
    /// - Later calls hold long polls against the last root any `/hashes` answer of this
    ///   instance carried (the watch's own or a sync's listing, which the sync then pulled),
    ///   learning it with one plain `GET /hashes` when there is none yet; they answer
    ///   [`Watch::Changed`] when an answer names another root. A long poll that times out
    ///   on the server (`304`) is sent again; one the server answered at once without holding
    ///   it (no free slot) is sent again after a pause that doubles up to the wait.
    /// - A failure (unreachable, refused, timed out) is the error of any request, after the
    ///   usual retries: the caller backs off and calls again.
    async fn wait_for_change(&self) -> Result<Watch, DriverError> {
        if self.long_poll.is_zero() || !self.capabilities().await?.long_poll {
            return Ok(Watch::Unsupported);
        }
        if !self.watching.swap(true, Ordering::SeqCst) {
            return Ok(Watch::Changed);
        }
        let mut pause = Backoff::new(UNHELD_PAUSE, self.long_poll);
        loop {
            let known = match self.last_root() {
                Some(root) => root,
                None => {
                    self.list(None).await?;
                    match self.last_root() {
                        Some(root) => root,
                        None => return Ok(Watch::Unsupported),
                    }
                }
            };
            match self.poll_once(&known).await? {
                Polled::Changed => return Ok(Watch::Changed),
                Polled::Held => pause.reset(),
                Polled::NotHeld => pause.wait().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn config_errors_name_the_instance() {
        for (url, needle) in [
            ("not a url", "invalid `url`"),
            ("ftp://h/", "http:// or https://"),
            ("http://user:pw@h/", "credentials"),
        ] {
            let e = HttpDriver::new("server", HttpConfig::new(url)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config);
            assert!(e.to_string().starts_with("driver 'server': "), "{e}");
            assert!(e.to_string().contains(needle), "{e}");
        }
        let e = HttpDriver::new("s", HttpConfig::new("http://h").with_token("a\nb")).unwrap_err();
        assert!(e.to_string().contains("`token`"), "{e}");
    }

    #[test]
    fn endpoints_keep_a_base_path_and_debug_hides_the_token() {
        let d = HttpDriver::new(
            "s",
            HttpConfig::new("https://h.example/sync").with_token("tok3n"),
        )
        .unwrap();
        assert_eq!(d.url(), "https://h.example/sync");
        assert_eq!(
            d.t.endpoint("hashes").as_str(),
            "https://h.example/sync/hashes"
        );
        assert_eq!(
            d.t.endpoint("task/x1").as_str(),
            "https://h.example/sync/task/x1"
        );
        assert!(!format!("{d:?}").contains("tok3n"));
        let info = d.info();
        assert_eq!((info.kind.as_str(), info.name.as_str()), ("http", "s"));
        assert_eq!(info.capabilities.max_batch, DEFAULT_MAX_BATCH);
    }
}
