//! Shared test helpers: a real server on loopback over a real in-memory store, with a
//! server-side request log that also counts the bytes of each answer's body.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hypertask_core::{
    Batch, Checked, Driver, Engine, Listing, MemoryStore, Replica, StoreDriver, SyncOptions,
    SyncReport, Task, TaskId,
};
use hypertask_driver_http::{router, HttpConfig, HttpDriver, ServerOptions};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub const TOKEN: &str = "test-token-0123456789";

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub status: StatusCode,
}

/// One request with its query and what its answer cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub seen: Seen,
    pub query: Option<String>,
    /// The bytes of the answer's body.
    pub body_bytes: usize,
}

/// Every request the server answered, in order.
#[derive(Debug, Clone, Default)]
pub struct RequestLog(Arc<Mutex<Vec<Exchange>>>);

impl RequestLog {
    pub fn take(&self) -> Vec<Seen> {
        self.take_exchanges().into_iter().map(|e| e.seen).collect()
    }

    pub fn take_exchanges(&self) -> Vec<Exchange> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

async fn record(State(log): State<RequestLog>, req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let query = req.uri().query().map(str::to_owned);
    let (parts, body) = next.run(req).await.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .expect("the answer's body");
    log.0.lock().unwrap().push(Exchange {
        seen: Seen {
            method,
            path,
            status: parts.status,
        },
        query,
        body_bytes: body.len(),
    });
    Response::from_parts(parts, Body::from(body))
}

/// A running server: its URL, the store behind it and its request log. Stops when dropped.
pub struct TestServer {
    pub url: String,
    pub store: Arc<MemoryStore>,
    pub log: RequestLog,
    _stop: oneshot::Sender<()>,
}

impl TestServer {
    /// The real server router over a fresh memory store.
    pub async fn start(opts: ServerOptions) -> TestServer {
        let store = Arc::new(MemoryStore::new("server-store"));
        let driver: Arc<dyn Driver> = Arc::new(StoreDriver::new(store.clone()));
        Self::start_router(store, router(driver, opts)).await
    }

    /// The real server with [`TOKEN`].
    pub async fn with_token() -> TestServer {
        Self::start(ServerOptions {
            token: Some(TOKEN.into()),
            ..Default::default()
        })
        .await
    }

    /// Any router (over `store`) on 127.0.0.1, counted.
    pub async fn start_router(store: Arc<MemoryStore>, app: Router) -> TestServer {
        let log = RequestLog::default();
        let app = app.layer(middleware::from_fn_with_state(log.clone(), record));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        TestServer {
            url,
            store,
            log,
            _stop: stop,
        }
    }

    /// An http driver instance named `name` pointing at this server with [`TOKEN`].
    pub fn driver(&self, name: &str) -> Arc<HttpDriver> {
        Arc::new(HttpDriver::new(name, HttpConfig::new(&self.url).with_token(TOKEN)).unwrap())
    }

    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }
}

/// A scratch directory; on tmpfs when there is one, since deleting thousands of freshly
/// flushed files from a disk can take longer than the test itself.
pub fn scratch() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new()
            .prefix("hypertask-http-")
            .tempdir_in(shm)
        {
            return dir;
        }
    }
    tempfile::tempdir().unwrap()
}

pub fn replica(dir: &tempfile::TempDir, name: &str) -> Replica {
    Replica::open(dir.path().join(name)).unwrap()
}

pub fn put(replica: &Replica, tasks: &[Task]) {
    let lock = replica.lock(Duration::from_secs(10)).unwrap();
    replica.put(&lock, tasks).unwrap();
}

pub async fn sync(replica: &Replica, driver: Arc<HttpDriver>) -> SyncReport {
    let report = Engine::new(
        replica.clone(),
        vec![Checked::new(driver)],
        SyncOptions::default(),
    )
    .sync()
    .await
    .expect("the local cache works");
    let d = &report.drivers[0];
    assert!(d.is_ok(), "sync failed: {d:?}");
    report
}

pub fn all(replica: &Replica) -> Vec<Task> {
    let (mut tasks, problems) = replica.all().unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    tasks.sort_by(|a, b| a.id().cmp(b.id()));
    tasks
}

/// A valid task from a JSON document.
pub fn task(v: Value) -> Task {
    Task::from_value(v).unwrap()
}

/// A plain v1.0 server: only `GET /hashes` (no ETag) and `POST /task/:id`, no auth, over the
/// real store driver. `/capabilities` is a 404.
pub fn v1_router(store: Arc<dyn Driver>) -> Router {
    async fn hashes(State(store): State<Arc<dyn Driver>>) -> Response {
        match store.hashes(None).await {
            Ok(Listing::Changed(inv)) => Json(inv.hashes).into_response(),
            other => (StatusCode::INTERNAL_SERVER_ERROR, format!("{other:?}")).into_response(),
        }
    }
    async fn resolve(
        State(store): State<Arc<dyn Driver>>,
        Path(id): Path<String>,
        Json(body): Json<Value>,
    ) -> Response {
        let Ok(id) = TaskId::new(id) else {
            return (StatusCode::BAD_REQUEST, "bad id").into_response();
        };
        let state = match body.get("client_state") {
            Some(Value::Null) => None,
            Some(v) => match Task::from_value(v.clone()) {
                Ok(t) if t.id() == &id => Some(t),
                _ => return (StatusCode::BAD_REQUEST, "bad task").into_response(),
            },
            None => return (StatusCode::BAD_REQUEST, "no client_state").into_response(),
        };
        match store.resolve(Batch::from([(id.clone(), state)])).await {
            Ok(mut out) => match out.remove(&id) {
                Some(Ok(t)) => Json(serde_json::json!({ "server_state": t })).into_response(),
                other => (StatusCode::INTERNAL_SERVER_ERROR, format!("{other:?}")).into_response(),
            },
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        }
    }
    Router::new()
        .route("/hashes", get(hashes))
        .route("/task/{id}", post(resolve))
        .with_state(store)
}

/// A fresh memory store and its store driver.
pub fn memory_store() -> (Arc<MemoryStore>, Arc<dyn Driver>) {
    let mem = Arc::new(MemoryStore::new("server-store"));
    let driver: Arc<dyn Driver> = Arc::new(StoreDriver::new(mem.clone()));
    (mem, driver)
}

/// One server per upstream for the conformance suite: every client is a driver instance of
/// its own; the store level is the server's memory store.
pub struct ServerUpstream(pub TestServer);

#[hypertask_core::async_trait]
impl hypertask_core::conformance::Upstream for ServerUpstream {
    async fn client(&self) -> Arc<dyn Driver> {
        self.0.driver("client")
    }
}

/// A server's answer, whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts a JSON error answer `{"error": "..."}` and returns the message.
    pub fn error(&self, status: reqwest::StatusCode) -> String {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(
            self.headers.get(reqwest::header::CONTENT_TYPE).unwrap(),
            "application/json",
            "errors are JSON"
        );
        let v = self.json();
        let obj = v.as_object().expect("an error is a JSON object");
        assert_eq!(obj.len(), 1, "only `error`: {v}");
        obj["error"]
            .as_str()
            .expect("`error` is a string")
            .to_owned()
    }
}

/// One request over real HTTP.
pub async fn call(
    method: reqwest::Method,
    url: &str,
    auth: Option<&str>,
    body: Option<&str>,
) -> Answer {
    call_with(method, url, auth, body, reqwest::header::HeaderMap::new()).await
}

/// [`call`] with extra headers.
pub async fn call_with(
    method: reqwest::Method,
    url: &str,
    auth: Option<&str>,
    body: Option<&str>,
    headers: reqwest::header::HeaderMap,
) -> Answer {
    let mut req = reqwest::Client::new().request(method, url).headers(headers);
    if let Some(a) = auth {
        req = req.header(reqwest::header::AUTHORIZATION, a);
    }
    if let Some(b) = body {
        req = req
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(b.to_owned());
    }
    let resp = req.send().await.expect("the server answers");
    Answer {
        status: resp.status(),
        headers: resp.headers().clone(),
        body: resp.bytes().await.unwrap().to_vec(),
    }
}

/// The `Authorization` value of [`TOKEN`].
pub fn bearer() -> String {
    format!("Bearer {TOKEN}")
}
