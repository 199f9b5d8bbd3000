//! The client side of the sync protocol (docs/http-protocol.md): the [`Driver`] over a
//! [`Transport`].
//!
//! About 650 lines of code: discovery, batching with 413/400 splitting, answer checks and the
//! long poll are each the driver's view of one protocol rule and read best side by side; the
//! wire types, transport, capabilities and listing are already modules of their own.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use hypertask_core::{
    Answers, Backoff, Batch, Capabilities, ContentHash, Driver, DriverError, DriverInfo, ErrorKind,
    Health, Inventory, Listing, Problem, Task, TaskId, Watch, DEFAULT_MAX_TASK_BYTES,
};
use reqwest::header::{HeaderMap, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use reqwest::StatusCode;
use serde_json::value::RawValue;

use crate::capabilities::{advertised, ServerCaps, DEFAULT_MAX_BATCH};
use crate::config::HttpConfig;
use crate::listing::{read_entries, ReadError};
use crate::transport::Transport;
use crate::wire::{
    tag_root, BatchAnswer, BatchRequest, SingleAnswer, SingleRequest, PREFERENCE_APPLIED_HEADER,
    PREFER_HEADER,
};
use crate::KIND;

/// How many v1.0 single-task requests are in flight at once.
const SINGLE_CONCURRENCY: usize = 4;
/// Room in an answer for what surrounds the task states: keys, braces, error messages.
const ENVELOPE_BYTES: usize = 4096;
/// Room per task in a batch answer besides its state: its id and any error message.
const PER_TASK_BYTES: usize = 1024;
/// Bytes one `/hashes` entry may take: a 64-character id, a 64-digit hash, quotes and spacing.
const HASH_ENTRY_BYTES: usize = 256;
/// The first pause after a long poll the server answered at once without holding it (all
/// its slots taken); it doubles up to the long poll's wait.
const UNHELD_PAUSE: Duration = Duration::from_secs(1);

/// One task's outcome (inner) or a failure of the whole exchange (outer).
type Slot = Option<Result<Option<Task>, DriverError>>;

/// A driver instance talking to a hypertask sync server over HTTP.
///
/// It learns what the server offers once per instance, lazily: from the `Hypertask-*` headers
/// of a `/hashes` answer when the server sends them, else from `GET /capabilities` the first
/// time it has tasks to send. With
/// protocol 1.1 it sends `POST /tasks` batches of at most the server's `max_batch`, otherwise
/// (a 404, or no `1.1`) one v1.0 `POST /task/:id` per task. `GET /hashes` always carries the
/// caller's root as `If-None-Match`, so an unchanged server answers `304` in one round trip.
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
    t: Transport,
    max_task_bytes: usize,
    max_tasks: usize,
    caps: tokio::sync::OnceCell<ServerCaps>,
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

    /// The server's capabilities, read once per driver instance.
    async fn capabilities(&self) -> Result<&ServerCaps, DriverError> {
        self.caps
            .get_or_try_init(|| crate::capabilities::fetch(&self.t))
            .await
    }

    async fn list(&self, known_root: Option<&ContentHash>) -> Result<Listing, DriverError> {
        let what = "GET /hashes";
        let url = self.t.endpoint("hashes");
        let etag = known_root.map(|r| format!("\"{r}\""));
        let limit = self
            .max_tasks
            .saturating_mul(HASH_ENTRY_BYTES)
            .saturating_add(ENVELOPE_BYTES);
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
        let status = answer.status;
        if matches!(status, StatusCode::OK | StatusCode::NOT_MODIFIED) {
            self.saw(&answer.headers);
        }
        if matches!(status, StatusCode::OK | StatusCode::NOT_MODIFIED) && self.caps.get().is_none()
        {
            if let Some(caps) = advertised(&answer.headers) {
                tracing::debug!(driver = %self.t.origin.name, ?caps, "server capabilities");
                // Losing a race with a concurrent `/capabilities` read is fine: same server.
                let _ = self.caps.set(caps);
            }
        }
        match status {
            StatusCode::NOT_MODIFIED if known_root.is_some() => return Ok(Listing::Unchanged),
            StatusCode::OK => {}
            _ => return Err(self.t.origin.unexpected(what, &answer)),
        }
        let o = &self.t.origin;
        let entries = read_entries(&answer.body, self.max_tasks).map_err(|e| match e {
            ReadError::TooMany(max) => o.error(
                ErrorKind::Protocol,
                format!(
                    "the server at {} lists more than {max} tasks, the most this driver accepts \
                     (`max_tasks`); the listing was refused",
                    o.url
                ),
            ),
            ReadError::Malformed(e) => o.protocol(
                what,
                format_args!("a body that is not a JSON object of id → hash: {e}"),
            ),
        })?;
        let mut inventory = Inventory::default();
        for (key, value) in entries.entries {
            let Ok(id) = TaskId::new(key.as_str()) else {
                inventory.problems.push(Problem {
                    id: None,
                    error: o.error(
                        ErrorKind::InvalidData,
                        format!("the server at {} lists the invalid task id {key:?}", o.url),
                    ),
                });
                continue;
            };
            let hash = serde_json::from_str::<&str>(value.get())
                .ok()
                .and_then(ContentHash::parse);
            match hash {
                Some(hash) => {
                    inventory.hashes.insert(id, hash);
                }
                None => inventory.problems.push(Problem {
                    error: o.error(
                        ErrorKind::InvalidData,
                        format!(
                            "the server at {} lists task '{id}' with {}, not a content hash",
                            o.url,
                            value.get()
                        ),
                    ),
                    id: Some(id),
                }),
            }
        }
        Ok(Listing::Changed(inventory))
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

    /// One `POST /tasks` per chunk of `indexes`. A chunk the server refuses as a whole (`413`
    /// too large, `400` one invalid task) is split in halves and sent again, so only the task
    /// at fault fails. Per-task failures land in `results`; a failure of the whole exchange
    /// (unreachable, unauthorized) is returned.
    async fn resolve_batched(
        &self,
        batch: &[(TaskId, Option<Task>)],
        indexes: Vec<usize>,
        max_batch: usize,
        max_body: Option<usize>,
        results: &mut [Slot],
    ) -> Result<(), DriverError> {
        let what = "POST /tasks";
        let url = self.t.endpoint("tasks");
        let o = &self.t.origin;
        let mut queue: VecDeque<Vec<usize>> = chunks(batch, indexes, max_batch).into();
        while let Some(chunk) = queue.pop_front() {
            let request = BatchRequest {
                client_states: chunk
                    .iter()
                    .map(|&i| (batch[i].0.to_string(), batch[i].1.as_ref()))
                    .collect(),
            };
            let body = serde_json::to_vec(&request).expect("tasks serialise");
            if let Some(limit) = max_body.filter(|&l| body.len() > l) {
                // Split before sending what the server said it would refuse.
                if chunk.len() > 1 {
                    split(&mut queue, &chunk);
                } else {
                    results[chunk[0]] = Some(Err(o.error(
                        ErrorKind::InvalidRequest,
                        format!(
                            "task '{}' takes {} bytes, more than the {limit} the server at {} accepts",
                            batch[chunk[0]].0,
                            body.len(),
                            o.url
                        ),
                    )));
                }
                continue;
            }
            let limit = chunk
                .len()
                .saturating_mul(self.max_task_bytes.saturating_add(PER_TASK_BYTES))
                .saturating_add(ENVELOPE_BYTES);
            let answer = self
                .t
                .send(what, limit, || {
                    self.t
                        .client()
                        .post(url.clone())
                        .header(CONTENT_TYPE, "application/json")
                        .body(body.clone())
                })
                .await?;
            match answer.status {
                StatusCode::OK => {}
                StatusCode::PAYLOAD_TOO_LARGE | StatusCode::BAD_REQUEST if chunk.len() > 1 => {
                    tracing::debug!(driver = %o.name, status = %answer.status, tasks = chunk.len(), "splitting a refused batch");
                    split(&mut queue, &chunk);
                    continue;
                }
                StatusCode::PAYLOAD_TOO_LARGE | StatusCode::BAD_REQUEST => {
                    let e = o.status(what, answer.status, &answer.body);
                    let id = &batch[chunk[0]].0;
                    results[chunk[0]] = Some(Err(
                        o.error(e.kind(), format!("task '{id}': {}", e.message()))
                    ));
                    continue;
                }
                _ => return Err(o.unexpected(what, &answer)),
            }
            let doc: BatchAnswer<Box<RawValue>> =
                serde_json::from_slice(&answer.body).map_err(|e| {
                    o.protocol(
                        what,
                        format_args!("a body without valid `server_states`: {e}"),
                    )
                })?;
            for &i in &chunk {
                let id = &batch[i].0;
                results[i] = Some(match doc.server_states.get(id.as_str()) {
                    Some(state) => self.server_state(what, id, state.as_deref()),
                    None => Err(match doc.errors.get(id.as_str()) {
                        Some(e) => o.error(
                            if e.retryable {
                                ErrorKind::Contended
                            } else {
                                ErrorKind::InvalidData
                            },
                            format!(
                                "the server at {} could not resolve task '{id}': {}",
                                o.url, e.error
                            ),
                        ),
                        None => {
                            o.protocol(what, format_args!("no state and no error for task '{id}'"))
                        }
                    }),
                });
            }
        }
        Ok(())
    }

    /// One v1.0 `POST /task/:id` per task, a few at a time.
    async fn resolve_singly(
        &self,
        batch: &[(TaskId, Option<Task>)],
        indexes: Vec<usize>,
        results: &mut [Slot],
    ) -> Result<(), DriverError> {
        let mut answers = futures::stream::iter(indexes)
            .map(|i| async move { (i, self.resolve_one(&batch[i].0, batch[i].1.as_ref()).await) })
            .buffer_unordered(SINGLE_CONCURRENCY);
        while let Some((i, answer)) = answers.next().await {
            // Returning drops the stream, which cancels the requests still in flight.
            results[i] = Some(answer?);
        }
        Ok(())
    }

    /// `POST /task/:id`. The outer error fails the whole exchange, the inner one this task.
    async fn resolve_one(
        &self,
        id: &TaskId,
        state: Option<&Task>,
    ) -> Result<Result<Option<Task>, DriverError>, DriverError> {
        let what = format!("POST /task/{id}");
        let url = self.t.endpoint(&format!("task/{id}"));
        let o = &self.t.origin;
        let body = serde_json::to_vec(&SingleRequest {
            client_state: state,
        })
        .expect("tasks serialise");
        let limit = self.max_task_bytes.saturating_add(ENVELOPE_BYTES);
        let answer = self
            .t
            .send(&what, limit, || {
                self.t
                    .client()
                    .post(url.clone())
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone())
            })
            .await?;
        match answer.status {
            StatusCode::OK => {}
            StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => {
                return Ok(Err(o.status(&what, answer.status, &answer.body)))
            }
            StatusCode::CONFLICT => {
                return Ok(Err(o.error(
                    ErrorKind::InvalidData,
                    format!(
                        "the server at {} could not resolve task '{id}': {}",
                        o.url,
                        crate::error::server_message(&answer.body)
                    ),
                )))
            }
            _ => return Err(o.unexpected(&what, &answer)),
        }
        let doc: SingleAnswer<Box<RawValue>> =
            serde_json::from_slice(&answer.body).map_err(|e| {
                o.protocol(
                    &what,
                    format_args!("a body without a valid `server_state`: {e}"),
                )
            })?;
        Ok(self.server_state(&what, id, doc.server_state.as_deref()))
    }

    /// Reads one answered state: `null` or a valid task with the asked id, no larger than the
    /// task size limit.
    fn server_state(
        &self,
        what: &str,
        id: &TaskId,
        state: Option<&RawValue>,
    ) -> Result<Option<Task>, DriverError> {
        let Some(state) = state else {
            return Ok(None);
        };
        let o = &self.t.origin;
        let text = state.get();
        if text.len() > self.max_task_bytes {
            return Err(o.error(
                ErrorKind::InvalidData,
                format!(
                    "the server at {} answered task '{id}' with {} bytes, more than the task size \
                     limit of {} bytes",
                    o.url,
                    text.len(),
                    self.max_task_bytes
                ),
            ));
        }
        let task = Task::from_json(text.as_bytes())
            .map_err(|e| o.protocol(what, format_args!("an invalid state of task '{id}': {e}")))?;
        if task.id() != id {
            return Err(o.protocol(
                what,
                format_args!("task '{}' where task '{id}' was asked", task.id()),
            ));
        }
        Ok(Some(task))
    }
}

/// The root hash an `ETag: "<root>"` names (weak or strong).
fn etag_root(headers: &HeaderMap) -> Option<ContentHash> {
    tag_root(headers.get(ETAG)?.to_str().ok()?)
}

/// Puts the two halves of `chunk` at the front of `queue`.
fn split(queue: &mut VecDeque<Vec<usize>>, chunk: &[usize]) {
    let (a, b) = chunk.split_at(chunk.len() / 2);
    queue.push_front(b.to_vec());
    queue.push_front(a.to_vec());
}

/// Splits `indexes` into chunks of at most `max` entries with distinct ids (a JSON object
/// cannot hold one id twice).
fn chunks(batch: &[(TaskId, Option<Task>)], indexes: Vec<usize>, max: usize) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut cur: Vec<usize> = Vec::new();
    let mut ids: HashSet<&TaskId> = HashSet::new();
    for i in indexes {
        if cur.len() >= max.max(1) || ids.contains(&batch[i].0) {
            out.push(std::mem::take(&mut cur));
            ids.clear();
        }
        ids.insert(&batch[i].0);
        cur.push(i);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
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
            },
        }
    }

    async fn hashes(&self, known_root: Option<&ContentHash>) -> Result<Listing, DriverError> {
        self.list(known_root).await
    }

    async fn resolve(&self, batch: Batch) -> Result<Answers, DriverError> {
        let batch: Vec<(TaskId, Option<Task>)> = batch.into_iter().collect();
        let mut results: Vec<Slot> = (0..batch.len()).map(|_| None).collect();
        let mut to_send = Vec::with_capacity(batch.len());
        for (i, (id, state)) in batch.iter().enumerate() {
            match state {
                Some(t) if t.id() != id => {
                    results[i] = Some(Err(self.t.origin.error(
                        ErrorKind::InvalidRequest,
                        format!("task '{}' was sent under the id '{id}'", t.id()),
                    )))
                }
                _ => to_send.push(i),
            }
        }
        if !to_send.is_empty() {
            let caps = self.capabilities().await?;
            match caps.max_batch {
                Some(max) => {
                    self.resolve_batched(&batch, to_send, max, caps.max_body, &mut results)
                        .await?
                }
                None => self.resolve_singly(&batch, to_send, &mut results).await?,
            }
        }
        let o = &self.t.origin;
        Ok(batch
            .into_iter()
            .zip(results)
            .map(|((id, _), r)| {
                let r = r.unwrap_or_else(|| {
                    Err(o.error(
                        ErrorKind::Protocol,
                        format!("task '{id}': no answer from {}", o.url),
                    ))
                });
                (id, r)
            })
            .collect())
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

    fn id(s: &str) -> TaskId {
        TaskId::new(s).unwrap()
    }

    #[test]
    fn chunks_respect_size_and_distinct_ids() {
        let batch: Vec<(TaskId, Option<Task>)> = ["a", "b", "c", "a", "d", "e", "f"]
            .iter()
            .map(|s| (id(s), None))
            .collect();
        let got = chunks(&batch, (0..batch.len()).collect(), 3);
        assert_eq!(got, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
        let got = chunks(&batch, (0..batch.len()).collect(), 10);
        assert_eq!(got, vec![vec![0, 1, 2], vec![3, 4, 5, 6]]);
    }

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
