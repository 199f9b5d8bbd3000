//! The sync server behind `hypertask serve` (docs/http-protocol.md), storing through any
//! [`Driver`]. Compiled with the `server` feature. The wire rules below and the endpoints that
//! write live here; the listings (`hashes`, `buckets`), listening, options and the long poll
//! are modules of their own.
//!
//! Wire behaviour beyond the letter of protocol 1.0, decided here:
//! - Every endpoint, `/capabilities` included, requires the token when one is configured.
//!   A configured empty token matches no request.
//! - `POST /tasks` with more than `max_batch` entries is refused with `413` (like an oversized
//!   body: the client splits and sends again); `/capabilities` advertises `max_batch` and
//!   `max_body_bytes`.
//! - A request is validated whole before anything is resolved: one bad entry refuses the batch
//!   with `400` and stores nothing.
//! - A task the store cannot resolve (a corrupt stored entry, lost compare-and-swap races):
//!   `POST /task/:id` answers `409` (stored entry unusable; retrying does not help), `503`
//!   (contended or store unreachable; retry) or `500`, each with `{"error": "..."}`.
//!   `POST /tasks` answers `200`, leaves such a task out of `server_states` and reports it in
//!   `"errors": {"<id>": {"error": "...", "retryable": bool}}`.
//! - A failure of the store as a whole answers `503` when a retry may help, else `500`.
//! - Stored entries that are not valid tasks are left out of `/hashes` and logged.
//! - After a request that sent task states, the store's `finish` (flush, commit, push) runs
//!   before the answer, so what a client is told is stored is stored.
//! - `GET /hashes` and `GET /buckets` answers (`200` and `304`) also carry what `/capabilities`
//!   advertises, as `Hypertask-Protocol: 1.0, 1.1, 1.2`, `Hypertask-Max-Batch: N`,
//!   `Hypertask-Max-Body-Bytes: M` and `Hypertask-Buckets: true`, so a client that reads them
//!   needs no extra round trip before its first batch. Clients that ignore them lose nothing.
//! - A task larger than `max_task_bytes` is an invalid task (`400`); a body that does not
//!   arrive within `body_timeout` gets `408`; a request that takes longer than
//!   `request_timeout` in all gets `503`.
//! - `GET /hashes` with `If-None-Match` and `Prefer: wait=N` is a long poll (see
//!   `long_poll`), advertised as `"long_poll": true` and `Hypertask-Long-Poll: true`.
//! - `GET /`, `/app.js` and `/app.css` are the web client (see `web`), served without a token.
//! - `GET /buckets` and `GET /hashes?buckets=…` (protocol 1.2, see `buckets`) are advertised as
//!   `"buckets": true` and `Hypertask-Buckets: true`; listings are answered from the last
//!   listing of the store while its root stays the same (see `hashes`).
//!
//! Limits ([`ServerOptions`]): at most `max_concurrent_requests` authenticated requests are
//! handled at once and their bodies together hold at most `max_inflight_body_bytes`; others
//! wait. Bodies are read as raw JSON per task and each task parsed on its own, so no document
//! for the whole body is built. Connection limits and timeouts are in [`serve`].

mod auth;
mod buckets;
mod hashes;
mod listen;
mod long_poll;
mod options;
mod quota;
mod users;
mod web;

pub use listen::{serve, serve_users};
pub use options::ServerOptions;
pub use users::{users_router, Credential, User};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use hypertask_core::{Batch, ContentHash, Driver, DriverError, ErrorKind, Task, TaskId};
use serde_json::value::RawValue;
use tokio::sync::{watch, Semaphore};

use self::auth::{authenticate, digest_of};
use self::hashes::Snapshots;
use self::long_poll::{Changes, Hold};
use self::quota::{cap_error, over_cap, RateLimit};
use crate::wire::{
    BatchAnswer, BatchRequest, CapabilitiesDoc, ErrorBody, SingleAnswer, SingleRequest,
    TaskFailure, PROTOCOL_VERSIONS,
};

struct AppState {
    store: Arc<dyn Driver>,
    /// SHA-256 of the token: comparing digests keeps the comparison constant-time whatever
    /// the presented token's length. `None` for a user's part of a several-user server, whose
    /// requests are authenticated before they reach it (see `users`).
    token_digest: Option<ContentHash>,
    opts: ServerOptions,
    /// One permit per request being handled, shared by every user.
    requests: Arc<Semaphore>,
    /// The body budget, in KiB ([`ServerOptions::body_permits`]), shared by every user.
    bodies: Arc<Semaphore>,
    /// What long polls share.
    changes: Changes,
    /// The last listing of the store, answered from while its root stays the same.
    snapshots: Snapshots,
    /// This user's request rate, when limited.
    rate: Option<RateLimit>,
}

type Shared = State<Arc<AppState>>;

/// The budgets every user of one server draws from.
#[derive(Clone)]
struct Budgets {
    requests: Arc<Semaphore>,
    bodies: Arc<Semaphore>,
}

impl Budgets {
    fn new(opts: &ServerOptions) -> Budgets {
        Budgets {
            requests: Arc::new(Semaphore::new(opts.max_concurrent_requests.max(1))),
            bodies: Arc::new(Semaphore::new(opts.body_budget().max(1))),
        }
    }
}

/// The server's routes over `store`: `GET /hashes`, `POST /task/:id`, `GET /capabilities`,
/// `POST /tasks`, `GET /buckets` and the web client, with request logging, authentication, the
/// request and body limits and the request timeout. Held long polls are released when the
/// server stops only under [`serve`].
pub fn router(store: Arc<dyn Driver>, opts: ServerOptions) -> Router {
    app(store, opts, None)
}

/// [`router`], releasing held long polls when `stop` becomes `true`.
fn app(store: Arc<dyn Driver>, opts: ServerOptions, stop: Option<watch::Receiver<bool>>) -> Router {
    let digest = opts.token.as_ref().map(|t| digest_of(t.expose()));
    let budgets = Budgets::new(&opts);
    let routes = api(store, digest, opts.clone(), &budgets, stop)
        // The web client's files: public, outside the limits and authentication above.
        .merge(web::routes())
        .layer(middleware::from_fn(log_request));
    web::with_cors(routes, &opts)
}

/// The protocol's endpoints over one store (one user's), behind `token_digest` when given,
/// with the limits; without logging and the web client, which belong to the whole server.
fn api(
    store: Arc<dyn Driver>,
    token_digest: Option<ContentHash>,
    mut opts: ServerOptions,
    budgets: &Budgets,
    stop: Option<watch::Receiver<bool>>,
) -> Router {
    opts.max_batch = opts.max_batch.max(1);
    let state = Arc::new(AppState {
        changes: Changes::new(&opts, stop),
        snapshots: Snapshots::default(),
        store,
        token_digest,
        rate: opts.max_requests_per_minute.map(RateLimit::per_minute),
        requests: budgets.requests.clone(),
        bodies: budgets.bodies.clone(),
        opts,
    });
    Router::new()
        .route("/hashes", get(hashes::hashes))
        .route("/buckets", get(buckets::buckets))
        .route("/capabilities", get(capabilities))
        .route("/task/{id}", post(resolve_one))
        .route("/tasks", post(resolve_batch))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), limit))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state)
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM: the shutdown signal for [`serve`].
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutdown requested; finishing requests in flight");
}

/// An error answer: a status and `{"error": "..."}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// The store failed as a whole.
    fn store(e: &DriverError) -> Self {
        tracing::error!(error = %e, "store failed");
        let status = if e.is_retryable() {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        ApiError::new(status, e.to_string())
    }

    /// One task could not be resolved.
    fn task(e: &DriverError) -> Self {
        let status = match e.kind() {
            ErrorKind::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorKind::InvalidData => StatusCode::CONFLICT,
            k if k.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        tracing::warn!(error = %e, %status, "task not resolved");
        ApiError::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response()
    }
}

/// Takes a request permit and the body's share of the body budget (waiting while either is
/// spent), then runs the request within the request timeout. A long poll takes a long-poll
/// slot instead (the handler takes a request permit whenever it reads the store) and gets its
/// wait on top of the timeout; with every slot taken it is an ordinary request.
async fn limit(State(st): Shared, mut req: Request, next: Next) -> Response {
    if let Some(Err(retry_after)) = st.rate.as_ref().map(RateLimit::take) {
        return quota::too_many_requests(retry_after);
    }
    let mut timeout = st.opts.request_timeout;
    // The long-poll slot, kept until the answer is made.
    let slot = long_poll::requested(&st.opts, &req).and_then(|wait| {
        let permit = st.changes.slots.try_acquire().ok()?;
        Some((permit, wait))
    });
    let _request = match &slot {
        Some((_, wait)) => {
            req.extensions_mut().insert(Hold { wait: *wait });
            timeout += *wait;
            None
        }
        None => match st.requests.acquire().await {
            Ok(permit) => Some(permit),
            Err(_) => {
                return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping")
                    .into_response()
            }
        },
    };
    let _body = if req.method() == Method::POST {
        let length = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        match st.bodies.acquire_many(st.opts.body_permits(length)).await {
            Ok(permit) => Some(permit),
            Err(_) => {
                return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping")
                    .into_response()
            }
        }
    } else {
        None
    };
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the request took longer than {} s; try again",
                timeout.as_secs_f64()
            ),
        )
        .into_response(),
    }
}

/// Logs method, path, status and duration of every request; never headers, so never the token.
async fn log_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let start = Instant::now();
    let resp = next.run(req).await;
    let elapsed_ms = start.elapsed().as_secs_f64() * 1000.0;
    tracing::info!(
        target: "hypertask::serve",
        %method,
        %path,
        status = resp.status().as_u16(),
        elapsed_ms = format_args!("{elapsed_ms:.1}"),
        "request"
    );
    resp
}

/// `GET /capabilities`.
async fn capabilities(State(st): Shared) -> Json<CapabilitiesDoc> {
    Json(CapabilitiesDoc {
        protocol: Some(PROTOCOL_VERSIONS.map(str::to_owned).to_vec()),
        max_batch: Some(st.opts.max_batch as u64),
        max_body_bytes: Some(st.opts.max_body_bytes as u64),
        max_task_bytes: Some(st.opts.max_task_bytes as u64),
        etag: true,
        long_poll: st.opts.max_long_polls > 0,
        buckets: true,
        auth: vec!["Bearer".into(), "hypertask".into()],
        server: Some("hypertask".into()),
        version: Some(env!("CARGO_PKG_VERSION").into()),
    })
}

/// Reads the request body: at most `max_body_bytes` (else `413`), within `body_timeout`
/// (else `408`).
async fn read_body(st: &AppState, body: Body) -> Result<Vec<u8>, ApiError> {
    let limit = st.opts.max_body_bytes;
    let read = async {
        let mut stream = body.into_data_stream();
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk
                .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
            if out.len() + chunk.len() > limit {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body larger than {limit} bytes"),
                ));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    };
    tokio::time::timeout(st.opts.body_timeout, read)
        .await
        .unwrap_or_else(|_| {
            Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} s",
                    st.opts.body_timeout.as_secs_f64()
                ),
            ))
        })
}

/// Parses a request body as `T`: `400` with "malformed JSON" when it is not JSON, else with
/// what the body should have been.
fn parse<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8], shape: &str) -> Result<T, ApiError> {
    let object = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if !object {
        // Serde would read an array as the struct's fields in order: refuse it first.
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                Ok(_) => {
                    ApiError::bad_request(format!("the request body must be a JSON object {shape}"))
                }
                Err(e) => ApiError::bad_request(format!("malformed JSON: {e}")),
            },
        );
    }
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::bad_request(format!(
            "the request body must be a JSON object {shape}: {e}"
        )),
        _ => ApiError::bad_request(format!("malformed JSON: {e}")),
    })
}

/// A client state sent for `id`: `null`, or a valid task with that id no larger than
/// `max_task_bytes` whose clocks are not more than a day ahead of the server's.
fn client_state(
    id: &TaskId,
    raw: Option<&RawValue>,
    max_task_bytes: usize,
) -> Result<Option<Task>, String> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let text = raw.get();
    if text.len() > max_task_bytes {
        return Err(format!(
            "invalid task: {} bytes, more than the {max_task_bytes} this server accepts",
            text.len()
        ));
    }
    let task = Task::from_json(text.as_bytes()).map_err(|e| format!("invalid task: {e}"))?;
    if task.id() != id {
        return Err(format!(
            "id mismatch: the task's id is '{}' but it was sent as '{id}'",
            task.id()
        ));
    }
    // A clock far in the future would win every merge until then: refused before it is stored.
    task.check_clocks(chrono::Utc::now())
        .map_err(|e| format!("invalid task: {e}"))?;
    Ok(Some(task))
}

/// Makes what a resolve wrote durable (commit, flush) before answering, then wakes the held
/// long polls.
async fn finish_writes(st: &AppState, wrote: bool) -> Result<(), ApiError> {
    if wrote {
        st.store.finish().await.map_err(|e| ApiError::store(&e))?;
        st.changes.wrote();
    }
    Ok(())
}

/// `POST /task/:id` (v1.0): `{"client_state": null | task}` → `{"server_state": null | task}`.
async fn resolve_one(
    State(st): Shared,
    path: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<Json<SingleAnswer<Task>>, ApiError> {
    let Path(raw) = path.map_err(|e| ApiError::bad_request(format!("invalid task id: {e}")))?;
    let id = TaskId::new(raw.as_str())
        .map_err(|e| ApiError::bad_request(format!("invalid task id in the path: {e}")))?;
    let bytes = read_body(&st, body).await?;
    let doc: SingleRequest<Box<RawValue>> = parse(&bytes, r#"{"client_state": null | task}"#)?;
    let state = client_state(&id, doc.client_state.as_deref(), st.opts.max_task_bytes)
        .map_err(ApiError::bad_request)?;
    drop(bytes);
    let wrote = state.is_some();
    let batch = Batch::from([(id.clone(), state)]);
    if !over_cap(&st, &batch).await?.is_empty() {
        return Err(cap_error(&st));
    }
    let mut answers = st
        .store
        .resolve(batch)
        .await
        .map_err(|e| ApiError::store(&e))?;
    let Some(answer) = answers.remove(&id) else {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the store gave no answer for task '{id}'"),
        ));
    };
    let task = answer.map_err(|e| ApiError::task(&e))?;
    finish_writes(&st, wrote).await?;
    if wrote {
        st.snapshots
            .apply(vec![(id, task.as_ref().map(Task::hash))]);
    }
    Ok(Json(SingleAnswer { server_state: task }))
}

/// `POST /tasks` (v1.1): `{"client_states": {id: null | task}}` → `{"server_states": {...}}`.
async fn resolve_batch(State(st): Shared, body: Body) -> Result<Json<BatchAnswer<Task>>, ApiError> {
    let bytes = read_body(&st, body).await?;
    let doc: BatchRequest<Box<RawValue>> = parse(
        &bytes,
        r#"{"client_states": {"<task id>": null | task, ...}}"#,
    )?;
    let states = doc.client_states;
    if states.len() > st.opts.max_batch {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "a batch of {} tasks is more than max_batch = {}",
                states.len(),
                st.opts.max_batch
            ),
        ));
    }
    // Validate everything before resolving anything: a refused request stores nothing.
    let mut batch = Batch::new();
    for (key, raw) in states {
        let id = TaskId::new(key.as_str())
            .map_err(|e| ApiError::bad_request(format!("client_states: {e}")))?;
        let state = client_state(&id, raw.as_deref(), st.opts.max_task_bytes)
            .map_err(|e| ApiError::bad_request(format!("client_states[\"{id}\"]: {e}")))?;
        batch.insert(id, state);
    }
    drop(bytes);
    // Tasks over the cap fail alone; a batch that is nothing but such tasks is refused whole.
    let refused = over_cap(&st, &batch).await?;
    for id in &refused {
        batch.remove(id);
    }
    if !refused.is_empty() && batch.is_empty() {
        return Err(cap_error(&st));
    }
    let mut answer = BatchAnswer {
        server_states: BTreeMap::new(),
        errors: refused
            .iter()
            .map(|id| {
                let failure = TaskFailure {
                    error: cap_error(&st).message,
                    retryable: false,
                };
                (id.to_string(), failure)
            })
            .collect(),
    };
    let wrote = batch.values().any(Option::is_some);
    let answers = st
        .store
        .resolve(batch)
        .await
        .map_err(|e| ApiError::store(&e))?;
    let mut stored = Vec::with_capacity(answers.len());
    for (id, result) in answers {
        match result {
            Ok(task) => {
                if wrote {
                    stored.push((id.clone(), task.as_ref().map(Task::hash)));
                }
                answer.server_states.insert(id.to_string(), task);
            }
            Err(e) => {
                tracing::warn!(error = %e, "task not resolved");
                answer.errors.insert(
                    id.to_string(),
                    TaskFailure {
                        error: e.to_string(),
                        retryable: e.is_retryable(),
                    },
                );
            }
        }
    }
    finish_writes(&st, wrote).await?;
    st.snapshots.apply(stored);
    Ok(Json(answer))
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}
