//! The client side of the sync protocol (DESIGN.md §5).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Bytes;
use futures::StreamExt;
use hypertask_core::{
    Answers, Batch, Capabilities, ContentHash, Driver, DriverError, DriverInfo, ErrorKind, Health,
    Inventory, Listing, Problem, Task, TaskId,
};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, IF_NONE_MATCH};
use reqwest::{StatusCode, Url};
use serde_json::{Map, Value};

use crate::config::HttpConfig;
use crate::error::{is_retryable_status, is_retryable_transport, Origin};
use crate::KIND;

/// The batch size assumed until the server's `/capabilities` has been read.
const DEFAULT_MAX_BATCH: usize = 1000;
/// How many v1.0 single-task requests are in flight at once.
const SINGLE_CONCURRENCY: usize = 4;

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
pub struct HttpDriver {
    origin: Origin,
    base: Url,
    client: reqwest::Client,
    /// `Authorization` values: `Bearer <token>`, then the original `hypertask <token>`.
    auth: Option<[HeaderValue; 2]>,
    /// Whether the server refused the `Bearer` scheme and accepted the original one.
    legacy_auth: AtomicBool,
    retries: u32,
    caps: tokio::sync::OnceCell<ServerCaps>,
}

/// What the server said it can do.
#[derive(Debug, Clone)]
struct ServerCaps {
    /// `Some(n)`: `POST /tasks` with at most `n` tasks. `None`: v1.0 only.
    max_batch: Option<usize>,
    /// The largest request body it accepts, when it says so.
    max_body: Option<usize>,
    /// The protocol versions it speaks.
    protocol: Vec<String>,
}

impl fmt::Debug for HttpDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpDriver")
            .field("name", &self.origin.name)
            .field("url", &self.origin.url)
            .field("token", &self.auth.as_ref().map(|_| "<redacted>"))
            .field("retries", &self.retries)
            .field("server", &self.caps.get())
            .finish()
    }
}

impl HttpDriver {
    /// A driver instance named `name` (as in `[drivers.NAME]`). Sends nothing yet.
    pub fn new(name: &str, config: HttpConfig) -> Result<HttpDriver, DriverError> {
        let cfg_err = |msg: String| DriverError::new(name, ErrorKind::Config, msg);
        let mut base = Url::parse(config.url.trim())
            .map_err(|e| cfg_err(format!("invalid `url` {:?}: {e}", config.url)))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(cfg_err(format!(
                "`url` {:?} must start with http:// or https://",
                config.url
            )));
        }
        if base.password().is_some() || !base.username().is_empty() {
            return Err(cfg_err(
                "`url` must not carry credentials; put the token in `token`".into(),
            ));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        base.set_query(None);
        base.set_fragment(None);
        let timeout = config.timeout().map_err(cfg_err)?;
        let connect_timeout = config.connect_timeout().map_err(cfg_err)?;
        let token = config
            .token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let header = |scheme: &str, t: &str| {
            let mut v = HeaderValue::from_str(&format!("{scheme} {t}")).map_err(|_| {
                cfg_err("`token` holds characters that cannot be sent in a header".into())
            })?;
            v.set_sensitive(true);
            Ok::<_, DriverError>(v)
        };
        let auth = token
            .map(|t| Ok::<_, DriverError>([header("Bearer", t)?, header("hypertask", t)?]))
            .transpose()?;
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(timeout)
            .connect_timeout(connect_timeout)
            .user_agent(concat!("hypertask/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| cfg_err(format!("cannot build the HTTP client: {e}")))?;
        Ok(HttpDriver {
            origin: Origin {
                name: name.to_owned(),
                url: base.as_str().trim_end_matches('/').to_owned(),
                timeout,
                has_token: auth.is_some(),
            },
            base,
            client,
            auth,
            legacy_auth: AtomicBool::new(false),
            retries: config.retries,
            caps: tokio::sync::OnceCell::new(),
        })
    }

    /// The server's base URL, as shown in messages.
    pub fn url(&self) -> &str {
        &self.origin.url
    }

    fn endpoint(&self, path: &str) -> Url {
        // `base` ends with '/', and `path` is relative (task ids are URL-safe).
        self.base.join(path).expect("endpoint paths are relative")
    }

    /// Sends a request built by `build` (once per attempt) and reads the whole answer,
    /// retrying failures a retry can help with. A final retryable status is returned as is.
    async fn send(
        &self,
        what: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<(StatusCode, reqwest::header::HeaderMap, Bytes), DriverError> {
        let mut attempt = 0;
        let mut tried_legacy = false;
        loop {
            let mut req = build();
            let legacy = self.legacy_auth.load(Ordering::Relaxed);
            if let Some(auth) = &self.auth {
                req = req.header(AUTHORIZATION, auth[usize::from(legacy)].clone());
            }
            let outcome = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    resp.bytes().await.map(|body| (status, headers, body))
                }
                Err(e) => Err(e),
            };
            if let Ok((StatusCode::UNAUTHORIZED, _, _)) = &outcome {
                if self.auth.is_some() && !legacy && !tried_legacy {
                    // A v1.0 server may know only `Authorization: hypertask <token>`.
                    tried_legacy = true;
                    self.legacy_auth.store(true, Ordering::Relaxed);
                    continue;
                }
                if legacy && tried_legacy {
                    // Neither scheme was accepted: the token is wrong, not the scheme.
                    self.legacy_auth.store(false, Ordering::Relaxed);
                }
            }
            let retry = match &outcome {
                Ok((status, _, _)) => is_retryable_status(*status),
                Err(e) => is_retryable_transport(e),
            };
            if !retry || attempt >= self.retries {
                return outcome.map_err(|e| self.origin.transport(what, e));
            }
            match &outcome {
                Ok((status, _, _)) => {
                    tracing::debug!(driver = %self.origin.name, %what, %status, attempt, "retrying")
                }
                Err(e) => {
                    tracing::debug!(driver = %self.origin.name, %what, error = %e, attempt, "retrying")
                }
            }
            attempt += 1;
            backoff(attempt).await;
        }
    }

    /// The server's capabilities, read once per driver instance.
    async fn capabilities(&self) -> Result<&ServerCaps, DriverError> {
        self.caps
            .get_or_try_init(|| self.fetch_capabilities())
            .await
    }

    async fn fetch_capabilities(&self) -> Result<ServerCaps, DriverError> {
        let what = "GET /capabilities";
        let url = self.endpoint("capabilities");
        let (status, _, body) = self.send(what, || self.client.get(url.clone())).await?;
        match status {
            StatusCode::OK => {}
            // A v1.0 server has no such endpoint.
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => {
                return Ok(ServerCaps {
                    max_batch: None,
                    max_body: None,
                    protocol: vec!["1.0".into()],
                })
            }
            s => return Err(self.origin.status(what, s, &body)),
        }
        let doc: Map<String, Value> = serde_json::from_slice(&body).map_err(|e| {
            self.origin
                .protocol(what, format_args!("a body that is not a JSON object: {e}"))
        })?;
        let protocol: Vec<String> = match doc.get("protocol") {
            None => vec!["1.0".into()],
            Some(Value::Array(vs)) => vs
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Some(other) => {
                return Err(self.origin.protocol(
                    what,
                    format_args!("`protocol` = {other}, not a list of versions"),
                ))
            }
        };
        let max_batch = if protocol.iter().any(|p| p == "1.1") {
            match doc.get("max_batch") {
                None => Some(DEFAULT_MAX_BATCH),
                Some(v) => match v.as_u64().filter(|&n| n >= 1) {
                    Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
                    None => {
                        return Err(self.origin.protocol(
                            what,
                            format_args!("`max_batch` = {v}, not a positive integer"),
                        ))
                    }
                },
            }
        } else {
            None
        };
        let max_body = doc
            .get("max_body_bytes")
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok());
        let caps = ServerCaps {
            max_batch,
            max_body,
            protocol,
        };
        tracing::debug!(driver = %self.origin.name, ?caps, "server capabilities");
        Ok(caps)
    }

    async fn list(&self, known_root: Option<&ContentHash>) -> Result<Listing, DriverError> {
        let what = "GET /hashes";
        let url = self.endpoint("hashes");
        let etag = known_root.map(|r| format!("\"{r}\""));
        let (status, headers, body) = self
            .send(what, || {
                let req = self.client.get(url.clone());
                match &etag {
                    Some(tag) => req.header(IF_NONE_MATCH, tag.as_str()),
                    None => req,
                }
            })
            .await?;
        if matches!(status, StatusCode::OK | StatusCode::NOT_MODIFIED) && self.caps.get().is_none()
        {
            if let Some(caps) = advertised(&headers) {
                tracing::debug!(driver = %self.origin.name, ?caps, "server capabilities");
                // Losing a race with a concurrent `/capabilities` read is fine: same server.
                let _ = self.caps.set(caps);
            }
        }
        match status {
            StatusCode::NOT_MODIFIED if known_root.is_some() => return Ok(Listing::Unchanged),
            StatusCode::OK => {}
            s => return Err(self.origin.status(what, s, &body)),
        }
        let doc: Map<String, Value> = serde_json::from_slice(&body).map_err(|e| {
            self.origin.protocol(
                what,
                format_args!("a body that is not a JSON object of id → hash: {e}"),
            )
        })?;
        let mut inventory = Inventory::default();
        for (key, value) in doc {
            let Ok(id) = TaskId::new(key.as_str()) else {
                inventory.problems.push(Problem {
                    id: None,
                    error: self.origin.error(
                        ErrorKind::InvalidData,
                        format!(
                            "the server at {} lists the invalid task id {key:?}",
                            self.origin.url
                        ),
                    ),
                });
                continue;
            };
            match value.as_str().and_then(ContentHash::parse) {
                Some(hash) => {
                    inventory.hashes.insert(id, hash);
                }
                None => inventory.problems.push(Problem {
                    error: self.origin.error(
                        ErrorKind::InvalidData,
                        format!(
                            "the server at {} lists task '{id}' with {value}, not a content hash",
                            self.origin.url
                        ),
                    ),
                    id: Some(id),
                }),
            }
        }
        Ok(Listing::Changed(inventory))
    }

    /// One `POST /tasks` per chunk of `indexes` (split in halves when the server finds a
    /// chunk too large). Per-task failures land in `results`; a failure of the whole exchange
    /// (unreachable, unauthorized) is returned.
    async fn resolve_batched(
        &self,
        batch: &[(TaskId, Option<Task>)],
        indexes: Vec<usize>,
        max_batch: usize,
        max_body: Option<usize>,
        results: &mut [Option<Result<Option<Task>, DriverError>>],
    ) -> Result<(), DriverError> {
        let what = "POST /tasks";
        let url = self.endpoint("tasks");
        let mut queue: VecDeque<Vec<usize>> = chunks(batch, indexes, max_batch).into();
        while let Some(chunk) = queue.pop_front() {
            let states: BTreeMap<&str, Option<&Task>> = chunk
                .iter()
                .map(|&i| (batch[i].0.as_str(), batch[i].1.as_ref()))
                .collect();
            let body = serde_json::to_vec(&serde_json::json!({ "client_states": states }))
                .expect("tasks serialise");
            if let Some(limit) = max_body.filter(|&l| body.len() > l) {
                // Split before sending what the server said it would refuse.
                if chunk.len() > 1 {
                    let (a, b) = chunk.split_at(chunk.len() / 2);
                    queue.push_front(b.to_vec());
                    queue.push_front(a.to_vec());
                } else {
                    results[chunk[0]] = Some(Err(self.origin.error(
                        ErrorKind::InvalidRequest,
                        format!(
                            "task '{}' takes {} bytes, more than the {limit} the server at {} accepts",
                            batch[chunk[0]].0,
                            body.len(),
                            self.origin.url
                        ),
                    )));
                }
                continue;
            }
            let (status, _, answer) = self
                .send(what, || {
                    self.client
                        .post(url.clone())
                        .header(CONTENT_TYPE, "application/json")
                        .body(body.clone())
                })
                .await?;
            match status {
                StatusCode::OK => {}
                StatusCode::PAYLOAD_TOO_LARGE if chunk.len() > 1 => {
                    let (a, b) = chunk.split_at(chunk.len() / 2);
                    queue.push_front(b.to_vec());
                    queue.push_front(a.to_vec());
                    continue;
                }
                StatusCode::PAYLOAD_TOO_LARGE | StatusCode::BAD_REQUEST => {
                    // The server refused the chunk as a whole and stored none of it.
                    let e = self.origin.status(what, status, &answer);
                    for &i in &chunk {
                        results[i] = Some(Err(self.origin.error(e.kind(), e.message())));
                    }
                    continue;
                }
                s => return Err(self.origin.status(what, s, &answer)),
            }
            let doc: BatchAnswer = serde_json::from_slice(&answer).map_err(|e| {
                self.origin.protocol(
                    what,
                    format_args!("a body without valid `server_states`: {e}"),
                )
            })?;
            for &i in &chunk {
                let id = &batch[i].0;
                results[i] = Some(match doc.server_states.get(id.as_str()) {
                    Some(state) => self.server_state(what, id, state),
                    None => Err(match doc.errors.get(id.as_str()) {
                        Some(e) => self.origin.error(
                            if e.retryable {
                                ErrorKind::Contended
                            } else {
                                ErrorKind::InvalidData
                            },
                            format!(
                                "the server at {} could not resolve task '{id}': {}",
                                self.origin.url, e.error
                            ),
                        ),
                        None => self
                            .origin
                            .protocol(what, format_args!("no state and no error for task '{id}'")),
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
        results: &mut [Option<Result<Option<Task>, DriverError>>],
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
        let url = self.endpoint(&format!("task/{id}"));
        let body = serde_json::to_vec(&serde_json::json!({ "client_state": state }))
            .expect("tasks serialise");
        let (status, _, answer) = self
            .send(&what, || {
                self.client
                    .post(url.clone())
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone())
            })
            .await?;
        match status {
            StatusCode::OK => {}
            StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => {
                return Ok(Err(self.origin.status(&what, status, &answer)))
            }
            StatusCode::CONFLICT => {
                return Ok(Err(self.origin.error(
                    ErrorKind::InvalidData,
                    format!(
                        "the server at {} could not resolve task '{id}': {}",
                        self.origin.url,
                        crate::error::server_message(&answer)
                    ),
                )))
            }
            s => return Err(self.origin.status(&what, s, &answer)),
        }
        let doc: SingleAnswer = serde_json::from_slice(&answer).map_err(|e| {
            self.origin.protocol(
                &what,
                format_args!("a body without a valid `server_state`: {e}"),
            )
        })?;
        Ok(self.server_state(&what, id, &doc.server_state))
    }

    /// Reads one answered state: `null` or a valid task with the asked id.
    fn server_state(
        &self,
        what: &str,
        id: &TaskId,
        state: &Value,
    ) -> Result<Option<Task>, DriverError> {
        if state.is_null() {
            return Ok(None);
        }
        let task = Task::from_value(state.clone()).map_err(|e| {
            self.origin
                .protocol(what, format_args!("an invalid state of task '{id}': {e}"))
        })?;
        if task.id() != id {
            return Err(self.origin.protocol(
                what,
                format_args!("task '{}' where task '{id}' was asked", task.id()),
            ));
        }
        Ok(Some(task))
    }
}

/// `{"server_states": {...}}`, plus this server's per-task `errors`.
#[derive(serde::Deserialize)]
struct BatchAnswer {
    server_states: Map<String, Value>,
    #[serde(default)]
    errors: BTreeMap<String, TaskFailure>,
}

/// Why the server could not resolve one task of a batch.
#[derive(serde::Deserialize)]
struct TaskFailure {
    error: String,
    #[serde(default)]
    retryable: bool,
}

/// `{"server_state": null | task}`.
#[derive(serde::Deserialize)]
struct SingleAnswer {
    server_state: Value,
}

/// Batching capabilities repeated in `Hypertask-*` headers of a `/hashes` answer, when they
/// offer protocol 1.1.
fn advertised(headers: &reqwest::header::HeaderMap) -> Option<ServerCaps> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let protocol: Vec<String> = text(crate::server::PROTOCOL_HEADER.as_str())?
        .split(',')
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    if !protocol.iter().any(|p| p == "1.1") {
        return None;
    }
    let max_batch = text(crate::server::MAX_BATCH_HEADER.as_str())?
        .trim()
        .parse::<usize>()
        .ok()
        .filter(|&n| n >= 1)?;
    let max_body =
        text(crate::server::MAX_BODY_HEADER.as_str()).and_then(|v| v.trim().parse().ok());
    Some(ServerCaps {
        max_batch: Some(max_batch),
        max_body,
        protocol,
    })
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

/// Jittered exponential backoff before retry `attempt` (1-based): about 100 ms, 200 ms, 400 ms…
/// capped at 5 s.
async fn backoff(attempt: u32) {
    use rand::Rng;
    let base = 100u64
        .saturating_mul(1 << attempt.saturating_sub(1).min(6))
        .min(5000);
    let wait = base / 2 + rand::rng().random_range(0..=base / 2);
    tokio::time::sleep(Duration::from_millis(wait)).await;
}

#[async_trait]
impl Driver for HttpDriver {
    fn info(&self) -> DriverInfo {
        let caps = self.caps.get();
        DriverInfo {
            kind: KIND.into(),
            name: self.origin.name.clone(),
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
        let mut results: Vec<Option<Result<Option<Task>, DriverError>>> =
            (0..batch.len()).map(|_| None).collect();
        let mut to_send = Vec::with_capacity(batch.len());
        for (i, (id, state)) in batch.iter().enumerate() {
            match state {
                Some(t) if t.id() != id => {
                    results[i] = Some(Err(self.origin.error(
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
        Ok(batch
            .into_iter()
            .zip(results)
            .map(|((id, _), r)| {
                let r = r.unwrap_or_else(|| {
                    Err(self.origin.error(
                        ErrorKind::Protocol,
                        format!("task '{id}': no answer from {}", self.origin.url),
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
                self.origin.url,
                caps.protocol.join(", ")
            ),
        })
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
            d.endpoint("hashes").as_str(),
            "https://h.example/sync/hashes"
        );
        assert_eq!(
            d.endpoint("task/x1").as_str(),
            "https://h.example/sync/task/x1"
        );
        assert!(!format!("{d:?}").contains("tok3n"));
        let info = d.info();
        assert_eq!((info.kind.as_str(), info.name.as_str()), ("http", "s"));
        assert_eq!(info.capabilities.max_batch, DEFAULT_MAX_BATCH);
    }
}
