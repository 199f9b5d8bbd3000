//! The sync server behind `hypertask serve` (DESIGN.md §5), storing through any [`Driver`].
//!
//! Wire behaviour beyond the letter of §5, decided here:
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
//! - `GET /hashes` answers (`200` and `304`) also carry what `/capabilities` advertises, as
//!   `Hypertask-Protocol: 1.0, 1.1`, `Hypertask-Max-Batch: N` and `Hypertask-Max-Body-Bytes: M`,
//!   so a client that reads them needs no extra round trip before its first batch. Clients
//!   that ignore them lose nothing.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::header::{
    HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CACHE_CONTROL, ETAG, IF_NONE_MATCH,
    WWW_AUTHENTICATE,
};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hypertask_core::{Batch, ContentHash, Driver, DriverError, ErrorKind, Listing, Task, TaskId};
use serde_json::{json, Map, Value};
use subtle::ConstantTimeEq;

/// How the server runs.
#[derive(Clone)]
pub struct ServerOptions {
    /// The token clients must present; `None` serves without authentication.
    pub token: Option<String>,
    /// Most tasks accepted in one `POST /tasks`.
    pub max_batch: usize,
    /// Largest request body accepted, in bytes; larger bodies get `413`.
    pub max_body_bytes: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            token: None,
            max_batch: 1000,
            max_body_bytes: 16 * 1024 * 1024,
        }
    }
}

impl fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerOptions")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("max_batch", &self.max_batch)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

struct AppState {
    store: Arc<dyn Driver>,
    /// SHA-256 of the token: comparing digests keeps the comparison constant-time whatever
    /// the presented token's length.
    token_digest: Option<ContentHash>,
    max_batch: usize,
    max_body_bytes: usize,
}

type Shared = State<Arc<AppState>>;

/// The protocol versions, repeated on `/hashes` answers.
pub(crate) const PROTOCOL_HEADER: HeaderName = HeaderName::from_static("hypertask-protocol");
/// `max_batch`, repeated on `/hashes` answers.
pub(crate) const MAX_BATCH_HEADER: HeaderName = HeaderName::from_static("hypertask-max-batch");
/// `max_body_bytes`, repeated on `/hashes` answers.
pub(crate) const MAX_BODY_HEADER: HeaderName = HeaderName::from_static("hypertask-max-body-bytes");

/// The server's routes over `store`: `GET /hashes`, `POST /task/:id`, `GET /capabilities`,
/// `POST /tasks`, with authentication, the body limit and request logging.
pub fn router(store: Arc<dyn Driver>, opts: ServerOptions) -> Router {
    let state = Arc::new(AppState {
        store,
        token_digest: opts
            .token
            .as_deref()
            .map(|t| ContentHash::of_bytes(t.as_bytes())),
        max_batch: opts.max_batch.max(1),
        max_body_bytes: opts.max_body_bytes,
    });
    Router::new()
        .route("/hashes", get(hashes))
        .route("/capabilities", get(capabilities))
        .route("/task/{id}", post(resolve_one))
        .route("/tasks", post(resolve_batch))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(DefaultBodyLimit::max(opts.max_body_bytes))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// Serves [`router`] on `listener` until `shutdown` completes, then finishes the requests in
/// flight and returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Arc<dyn Driver>,
    opts: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let info = store.info();
    tracing::info!(
        %addr,
        store = %info.name,
        store_kind = %info.kind,
        auth = opts.token.is_some(),
        "hypertask sync server listening"
    );
    axum::serve(listener, router(store, opts))
        .with_graceful_shutdown(shutdown)
        .await?;
    tracing::info!(%addr, "hypertask sync server stopped");
    Ok(())
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
        (self.status, Json(json!({ "error": self.message }))).into_response()
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

/// Accepts `Authorization: Bearer <token>` and the original `Authorization: hypertask <token>`.
async fn authenticate(State(st): Shared, req: Request, next: Next) -> Response {
    if let Some(expected) = &st.token_digest {
        let header = req.headers().get(AUTHORIZATION);
        let presented = header
            .and_then(|v| v.to_str().ok())
            .and_then(presented_token);
        let message = match presented {
            None if header.is_none() => {
                Some("missing `Authorization` header; send `Authorization: Bearer <token>`")
            }
            None => {
                Some("unsupported `Authorization` header; send `Authorization: Bearer <token>`")
            }
            Some(t) => {
                let digest = ContentHash::of_bytes(t.as_bytes());
                let same: bool = digest
                    .as_str()
                    .as_bytes()
                    .ct_eq(expected.as_str().as_bytes())
                    .into();
                (!same || t.is_empty()).then_some("wrong token")
            }
        };
        if let Some(message) = message {
            let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
            resp.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"hypertask\""),
            );
            return resp;
        }
    }
    next.run(req).await
}

/// The token of an `Authorization` value with the `Bearer` or `hypertask` scheme.
fn presented_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("hypertask"))
        .then(|| token.trim())
}

/// `GET /hashes`: `{id: hash}` with `ETag: "<root>"`; `304` to a matching `If-None-Match`.
async fn hashes(State(st): Shared, headers: HeaderMap) -> Response {
    // The client's root goes to the store, which answers it without listing when it keeps its
    // root (a store only this server writes).
    let known = known_root(&headers);
    let inventory = match st.store.hashes(known.as_ref()).await {
        Ok(Listing::Changed(inv)) => inv,
        Ok(Listing::Unchanged) => match known {
            Some(root) => {
                return hashes_answer(&st, StatusCode::NOT_MODIFIED.into_response(), &root)
            }
            None => {
                return ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the store did not list its tasks",
                )
                .into_response()
            }
        },
        Err(e) => return ApiError::store(&e).into_response(),
    };
    for p in &inventory.problems {
        tracing::warn!(error = %p.error, "stored entry is not a valid task; left out of /hashes");
    }
    let root = inventory.root();
    let resp = if matches_etag(&headers, root.as_str()) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        Json(inventory.hashes).into_response()
    };
    hashes_answer(&st, resp, &root)
}

/// The first entity tag of `If-None-Match` that is a root hash.
fn known_root(headers: &HeaderMap) -> Option<ContentHash> {
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|tag| {
            let tag = tag.trim().trim_start_matches("W/");
            ContentHash::parse(tag.strip_prefix('"')?.strip_suffix('"')?)
        })
        .next()
}

/// A `/hashes` answer's headers: the root as its entity tag, and the batching capabilities.
fn hashes_answer(st: &AppState, mut resp: Response, root: &ContentHash) -> Response {
    let etag = HeaderValue::from_str(&format!("\"{root}\"")).expect("hex digits are a header");
    let h = resp.headers_mut();
    h.insert(ETAG, etag);
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(PROTOCOL_HEADER, HeaderValue::from_static("1.0, 1.1"));
    h.insert(MAX_BATCH_HEADER, HeaderValue::from(st.max_batch));
    h.insert(MAX_BODY_HEADER, HeaderValue::from(st.max_body_bytes));
    resp
}

/// Whether `If-None-Match` names the entity tag `"<root>"` (weak or strong) or is `*`.
fn matches_etag(headers: &HeaderMap, root: &str) -> bool {
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| {
            tag == "*"
                || tag
                    .trim_start_matches("W/")
                    .strip_prefix('"')
                    .and_then(|t| t.strip_suffix('"'))
                    == Some(root)
        })
}

/// `GET /capabilities`.
async fn capabilities(State(st): Shared) -> Json<Value> {
    Json(json!({
        "protocol": ["1.0", "1.1"],
        "max_batch": st.max_batch,
        "max_body_bytes": st.max_body_bytes,
        "etag": true,
        "auth": ["Bearer", "hypertask"],
        "server": "hypertask",
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// The request body as a JSON object, or the `400`/`413` that refuses it.
fn json_object(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<Map<String, Value>, ApiError> {
    let bytes = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {limit} bytes"),
        ),
        status => ApiError::new(status, format!("cannot read the request body: {rejection}")),
    })?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request(
            "the request body must be a JSON object",
        )),
        Err(e) => Err(ApiError::bad_request(format!("malformed JSON: {e}"))),
    }
}

/// A client state sent for `id`: `null`, or a valid task with that id.
fn client_state(id: &TaskId, value: Value) -> Result<Option<Task>, String> {
    if value.is_null() {
        return Ok(None);
    }
    let task = Task::from_value(value).map_err(|e| format!("invalid task: {e}"))?;
    if task.id() != id {
        return Err(format!(
            "id mismatch: the task's id is '{}' but it was sent as '{id}'",
            task.id()
        ));
    }
    Ok(Some(task))
}

/// Makes what a resolve wrote durable (commit, flush) before answering.
async fn finish_writes(st: &AppState, wrote: bool) -> Result<(), ApiError> {
    if wrote {
        st.store.finish().await.map_err(|e| ApiError::store(&e))?;
    }
    Ok(())
}

/// `POST /task/:id` (v1.0): `{"client_state": null | task}` → `{"server_state": null | task}`.
async fn resolve_one(
    State(st): Shared,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(raw) = path.map_err(|e| ApiError::bad_request(format!("invalid task id: {e}")))?;
    let id = TaskId::new(raw.as_str())
        .map_err(|e| ApiError::bad_request(format!("invalid task id in the path: {e}")))?;
    let mut doc = json_object(body, st.max_body_bytes)?;
    let state = doc
        .remove("client_state")
        .ok_or_else(|| ApiError::bad_request("the body has no `client_state`"))?;
    let state = client_state(&id, state).map_err(ApiError::bad_request)?;
    let wrote = state.is_some();
    let mut answers = st
        .store
        .resolve(Batch::from([(id.clone(), state)]))
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
    Ok(Json(json!({ "server_state": task })))
}

/// `POST /tasks` (v1.1): `{"client_states": {id: null | task}}` → `{"server_states": {...}}`.
async fn resolve_batch(
    State(st): Shared,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let mut doc = json_object(body, st.max_body_bytes)?;
    let states = match doc.remove("client_states") {
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(ApiError::bad_request(
                "`client_states` must be an object of task id → null | task",
            ))
        }
        None => return Err(ApiError::bad_request("the body has no `client_states`")),
    };
    if states.len() > st.max_batch {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "a batch of {} tasks is more than max_batch = {}",
                states.len(),
                st.max_batch
            ),
        ));
    }
    // Validate everything before resolving anything: a refused request stores nothing.
    let mut batch = Batch::new();
    for (key, value) in states {
        let id = TaskId::new(key.as_str())
            .map_err(|e| ApiError::bad_request(format!("client_states: {e}")))?;
        let state = client_state(&id, value)
            .map_err(|e| ApiError::bad_request(format!("client_states[\"{id}\"]: {e}")))?;
        batch.insert(id, state);
    }
    let wrote = batch.values().any(Option::is_some);
    let answers = st
        .store
        .resolve(batch)
        .await
        .map_err(|e| ApiError::store(&e))?;
    let mut server_states = Map::new();
    let mut errors = Map::new();
    for (id, answer) in answers {
        match answer {
            Ok(task) => {
                server_states.insert(id.to_string(), json!(task));
            }
            Err(e) => {
                tracing::warn!(error = %e, "task not resolved");
                errors.insert(
                    id.to_string(),
                    json!({ "error": e.to_string(), "retryable": e.is_retryable() }),
                );
            }
        }
    }
    finish_writes(&st, wrote).await?;
    let mut answer = json!({ "server_states": server_states });
    if !errors.is_empty() {
        answer["errors"] = Value::Object(errors);
    }
    Ok(Json(answer))
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_schemes() {
        assert_eq!(presented_token("Bearer abc"), Some("abc"));
        assert_eq!(presented_token("bearer  abc "), Some("abc"));
        assert_eq!(presented_token("hypertask abc"), Some("abc"));
        assert_eq!(presented_token("Basic abc"), None);
        assert_eq!(presented_token("abc"), None);
    }

    #[test]
    fn etag_matching() {
        let root = "ab".repeat(32);
        let mut h = HeaderMap::new();
        assert!(!matches_etag(&h, &root));
        h.insert(
            IF_NONE_MATCH,
            format!("\"x\", W/\"{root}\"").parse().unwrap(),
        );
        assert!(matches_etag(&h, &root));
        h.insert(IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert!(!matches_etag(&h, &root));
        h.insert(IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(matches_etag(&h, &root));
    }

    #[test]
    fn options_debug_redacts_the_token() {
        let o = ServerOptions {
            token: Some("very-secret".into()),
            ..Default::default()
        };
        let shown = format!("{o:?}");
        assert!(
            !shown.contains("very-secret") && shown.contains("<redacted>"),
            "{shown}"
        );
        assert_eq!(o.max_batch, 1000);
        assert_eq!(o.max_body_bytes, 16 * 1024 * 1024);
    }
}
