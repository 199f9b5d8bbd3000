//! Protocol v1.0 both ways: a plain v1.0 client (only `GET /hashes` and `POST /task/:id`)
//! syncing with our server, and our driver falling back against servers without the
//! extensions.

mod common;

use std::collections::BTreeMap;

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use chrono::Utc;
use common::{all, memory_store, put, replica, sync, task, v1_router, Seen, TestServer, TOKEN};
use hypertask_core::{Batch, Change, Driver, Task, TaskId};
use hypertask_driver_http::{router, ServerOptions};
use serde_json::{json, Value};

/// A client written against v1.0 only: it keeps plain JSON documents, knows nothing of
/// clocks or canonical hashes, and authenticates the original way.
struct V1Client {
    url: String,
    http: reqwest::Client,
    docs: BTreeMap<String, Value>,
    /// The server's hashes as of the last sync.
    seen: BTreeMap<String, String>,
    /// Ids edited locally since the last sync.
    dirty: Vec<String>,
}

impl V1Client {
    fn new(url: &str) -> Self {
        V1Client {
            url: url.to_owned(),
            http: reqwest::Client::new(),
            docs: BTreeMap::new(),
            seen: BTreeMap::new(),
            dirty: Vec::new(),
        }
    }

    fn edit(&mut self, doc: Value) {
        let id = doc["id"].as_str().unwrap().to_owned();
        self.docs.insert(id.clone(), doc);
        self.dirty.push(id);
    }

    async fn post(&self, id: &str, state: Option<&Value>) -> Option<Value> {
        let resp = self
            .http
            .post(format!("{}/task/{id}", self.url))
            .header("Authorization", format!("hypertask {TOKEN}"))
            .json(&json!({ "client_state": state }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body: Value = resp.json().await.unwrap();
        let state = body.as_object().unwrap()["server_state"].clone();
        (!state.is_null()).then_some(state)
    }

    /// v1.0 sync: list hashes, send what changed on either side, keep what the server answers.
    async fn sync(&mut self) {
        let resp = self
            .http
            .get(format!("{}/hashes", self.url))
            .header("Authorization", format!("hypertask {TOKEN}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let remote: BTreeMap<String, String> = resp.json().await.unwrap();
        let mut ids: Vec<String> = std::mem::take(&mut self.dirty);
        ids.extend(
            remote
                .iter()
                .filter(|(id, h)| self.seen.get(*id) != Some(*h))
                .map(|(id, _)| id.clone()),
        );
        ids.sort();
        ids.dedup();
        for id in ids {
            let local = self.docs.get(&id).cloned();
            if let Some(state) = self.post(&id, local.as_ref()).await {
                self.docs.insert(id, state);
            }
        }
        let resp = self
            .http
            .get(format!("{}/hashes", self.url))
            .header("Authorization", format!("hypertask {TOKEN}"))
            .send()
            .await
            .unwrap();
        self.seen = resp.json().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_v1_client_syncs_with_the_server() {
    let srv = TestServer::with_token().await;
    let dir = tempfile::tempdir().unwrap();
    let replica = replica(&dir, "a");
    let driver = srv.driver("server");

    // A v1.0 document: no clocks, an unknown field.
    let mut v1 = V1Client::new(&srv.url);
    v1.edit(json!({
        "id": "fromv1",
        "description": "written by a v1.0 client",
        "project": "garden",
        "created_at": "2025-01-01T00:00:00Z",
        "updated_at": "2025-01-01T00:00:00Z",
    }));
    v1.sync().await;

    // hypertask pulls it, edits it, adds a task of its own.
    sync(&replica, driver.clone()).await;
    let mut got = all(&replica);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].description(), "written by a v1.0 client");
    assert_eq!(
        got[0].get_str("project"),
        Some("garden"),
        "unknown fields survive"
    );
    got[0]
        .edit(
            &[Change::Set(
                "description".into(),
                json!("edited by hypertask"),
            )],
            Utc::now(),
        )
        .unwrap();
    let mut mine = Task::new(TaskId::new("fromht").unwrap(), Utc::now());
    mine.edit(&[Change::AddTag("home".into())], Utc::now())
        .unwrap();
    put(&replica, &[got[0].clone(), mine.clone()]);
    sync(&replica, driver.clone()).await;

    // The v1.0 client sees both.
    v1.sync().await;
    assert_eq!(v1.docs.len(), 2);
    assert_eq!(v1.docs["fromv1"]["description"], "edited by hypertask");
    assert_eq!(v1.docs["fromht"]["tags"], json!(["home"]));

    // It edits as a v1.0 client does: whole document, newer `updated_at`, no clocks.
    let later =
        hypertask_core::format_timestamp(Utc::now() + chrono::Duration::seconds(5)).unwrap();
    v1.edit(json!({
        "id": "fromv1",
        "description": "the v1.0 client had the last word",
        "project": "garden",
        "created_at": "2025-01-01T00:00:00Z",
        "updated_at": later,
    }));
    v1.sync().await;
    sync(&replica, driver.clone()).await;
    let got = all(&replica);
    assert_eq!(got[1].id().as_str(), "fromv1");
    assert_eq!(got[1].description(), "the v1.0 client had the last word");

    // Both sides hold the same documents, byte for byte.
    let server: Vec<Task> = srv.store.snapshot().into_values().collect();
    assert_eq!(got, server);
    for t in &server {
        assert_eq!(
            Task::from_value(v1.docs[t.id().as_str()].clone()).unwrap(),
            *t
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_falls_back_to_v1_against_a_v1_server() {
    let (mem, store) = memory_store();
    let srv = TestServer::start_router(mem, v1_router(store)).await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (replica(&dir, "a"), replica(&dir, "b"));
    let tasks: Vec<Task> = (0..12)
        .map(|i| task(json!({"id": format!("v1task{i:02}"), "description": format!("n{i}")})))
        .collect();
    put(&a, &tasks);

    let da = srv.driver("server");
    sync(&a, da.clone()).await;
    let seen = srv.log.take();
    assert_eq!(
        seen.iter()
            .filter(|s| s.path == "/capabilities" && s.status == StatusCode::NOT_FOUND)
            .count(),
        1,
        "capabilities are asked once: {seen:?}"
    );
    let singles = seen
        .iter()
        .filter(|s| s.method == Method::POST && s.path.starts_with("/task/"))
        .count();
    assert_eq!(singles, tasks.len(), "one v1.0 request per task");
    assert!(
        seen.iter().all(|s| s.path != "/tasks"),
        "no batches: {seen:?}"
    );
    assert!(!da.info().capabilities.cheap_root);
    assert_eq!(
        srv.store.snapshot().into_values().collect::<Vec<_>>(),
        tasks
    );

    // A second cache pulls everything, edits one, and both converge.
    let db = srv.driver("server");
    sync(&b, db.clone()).await;
    assert_eq!(all(&b), tasks);
    let mut edited = tasks[3].clone();
    edited
        .edit(
            &[Change::Set("due".into(), json!("2031-05-01T00:00:00Z"))],
            Utc::now(),
        )
        .unwrap();
    put(&b, std::slice::from_ref(&edited));
    sync(&b, db).await;
    sync(&a, da).await;
    assert_eq!(all(&a), all(&b));
    assert_eq!(all(&a)[3], edited);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_batching_gets_single_requests() {
    // `/capabilities` exists but offers only 1.0.
    let (mem, store) = memory_store();
    let app = v1_router(store).route(
        "/capabilities",
        get(|| async { Json(json!({"protocol": ["1.0"]})) }),
    );
    let srv = TestServer::start_router(mem, app).await;
    let d = srv.driver("server");
    let tasks: Vec<Task> = (0..5)
        .map(|i| task(json!({"id": format!("s{i}")})))
        .collect();
    let answers = d
        .resolve(
            tasks
                .iter()
                .map(|t| (t.id().clone(), Some(t.clone())))
                .collect(),
        )
        .await
        .unwrap();
    assert!(answers
        .iter()
        .zip(&tasks)
        .all(|((_, r), t)| r.as_ref().unwrap().as_ref() == Some(t)));
    let seen = srv.log.take();
    assert_eq!(seen.len(), 1 + tasks.len(), "{seen:?}");
    assert_eq!(seen[0].path, "/capabilities");
}

/// Strips the `Hypertask-*` hints from `/hashes`, as a third-party v1.1 server would not send
/// them.
async fn without_hints(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    for name in [
        "hypertask-protocol",
        "hypertask-max-batch",
        "hypertask-max-body-bytes",
    ] {
        h.remove(name);
    }
    resp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_are_read_lazily_and_once() {
    let (mem, store) = memory_store();
    let app = router(
        store,
        ServerOptions {
            token: Some(TOKEN.into()),
            max_batch: 4,
            ..Default::default()
        },
    )
    .layer(middleware::from_fn(without_hints));
    let srv = TestServer::start_router(mem, app).await;
    let d = srv.driver("server");
    let hashes = |status| Seen {
        method: Method::GET,
        path: "/hashes".into(),
        status,
    };

    // Listing alone never asks for capabilities.
    d.hashes(None).await.unwrap();
    d.check().await.unwrap();
    let seen = srv.log.take();
    assert_eq!(seen[0], hashes(StatusCode::OK));
    assert_eq!(seen.iter().filter(|s| s.path == "/capabilities").count(), 1);

    // Batches follow the server's max_batch; capabilities are not asked again.
    let tasks: Vec<Task> = (0..10)
        .map(|i| task(json!({"id": format!("c{i}")})))
        .collect();
    d.resolve(
        tasks
            .iter()
            .map(|t| (t.id().clone(), Some(t.clone())))
            .collect(),
    )
    .await
    .unwrap();
    let seen = srv.log.take();
    assert_eq!(seen.len(), 3, "10 tasks in batches of 4: {seen:?}");
    assert!(seen
        .iter()
        .all(|s| s.path == "/tasks" && s.status == StatusCode::OK));
    assert_eq!(d.info().capabilities.max_batch, 4);

    // Without the hints, a fresh instance asks once, right before its first batch.
    let fresh = srv.driver("server");
    fresh.hashes(None).await.unwrap();
    fresh
        .resolve(Batch::from([(tasks[0].id().clone(), None)]))
        .await
        .unwrap();
    fresh
        .resolve(Batch::from([(tasks[1].id().clone(), None)]))
        .await
        .unwrap();
    let paths: Vec<String> = srv.log.take().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, ["/hashes", "/capabilities", "/tasks", "/tasks"]);
}

/// Accepts only the original `Authorization: hypertask <token>`.
async fn original_auth_only(req: Request, next: Next) -> Response {
    let ok = req
        .headers()
        .get("authorization")
        .is_some_and(|v| v == format!("hypertask {TOKEN}").as_str());
    if ok {
        next.run(req).await
    } else {
        StatusCode::UNAUTHORIZED.into_response()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1_server_with_the_original_auth_scheme() {
    let (mem, store) = memory_store();
    let app = v1_router(store).layer(middleware::from_fn(original_auth_only));
    let srv = TestServer::start_router(mem, app).await;
    let dir = tempfile::tempdir().unwrap();
    let a = replica(&dir, "a");
    let tasks: Vec<Task> = (0..3)
        .map(|i| task(json!({"id": format!("o{i}")})))
        .collect();
    put(&a, &tasks);
    sync(&a, srv.driver("server")).await;
    assert_eq!(
        srv.store.snapshot().into_values().collect::<Vec<_>>(),
        tasks
    );
    let seen = srv.log.take();
    let refused: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.status == StatusCode::UNAUTHORIZED)
        .collect();
    assert_eq!(
        refused.len(),
        1,
        "one `Bearer` try, then the original scheme: {seen:?}"
    );
    assert_eq!(seen[0], refused[0].clone());
}
