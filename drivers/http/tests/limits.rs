//! The server's memory and request limits, the batch split on a `400`, and the deepest task
//! the protocol carries.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{memory_store, task, v1_router, TestServer, TOKEN};
use hypertask_core::{
    Answers, Batch, ContentHash, Driver, DriverError, DriverInfo, Health, Listing, MemoryStore,
    StoreDriver, Task, TaskId, MAX_TASK_DEPTH,
};
use hypertask_driver_http::{router, ServerOptions};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A store that counts how many resolves run at once, and holds each until `open`.
#[derive(Debug)]
struct Counting {
    inner: StoreDriver<Arc<MemoryStore>>,
    now: AtomicUsize,
    most: AtomicUsize,
    open: tokio::sync::watch::Receiver<bool>,
}

#[hypertask_core::async_trait]
impl Driver for Counting {
    fn info(&self) -> DriverInfo {
        self.inner.info()
    }
    async fn hashes(&self, known: Option<&ContentHash>) -> Result<Listing, DriverError> {
        self.inner.hashes(known).await
    }
    async fn resolve(&self, batch: Batch) -> Result<Answers, DriverError> {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(n, Ordering::SeqCst);
        let mut open = self.open.clone();
        let _ = open.wait_for(|o| *o).await;
        let out = self.inner.resolve(batch).await;
        self.now.fetch_sub(1, Ordering::SeqCst);
        out
    }
    async fn check(&self) -> Result<Health, DriverError> {
        self.inner.check().await
    }
}

fn body_of(id: &str, bytes: usize) -> String {
    json!({"client_states": {id: {"id": id, "description": "x".repeat(bytes)}}}).to_string()
}

async fn post(url: &str, body: String) -> (StatusCode, Value) {
    let resp = reqwest::Client::new()
        .post(url)
        .header(AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Eight concurrent bodies of ~400 KB against a body budget of 1 MiB: at most two are held
/// (and resolved) at once, the rest wait their turn, and all eight are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_large_bodies_stay_within_the_body_budget() {
    let mem = Arc::new(MemoryStore::new("server-store"));
    let (open_tx, open) = tokio::sync::watch::channel(false);
    let store = Arc::new(Counting {
        inner: StoreDriver::new(mem.clone()),
        now: AtomicUsize::new(0),
        most: AtomicUsize::new(0),
        open,
    });
    let app = router(
        store.clone(),
        ServerOptions {
            token: Some(TOKEN.into()),
            max_inflight_body_bytes: 1 << 20,
            ..Default::default()
        },
    );
    let srv = TestServer::start_router(mem.clone(), app).await;
    let url = srv.endpoint("/tasks");
    let posts: Vec<_> = (0..8)
        .map(|i| {
            tokio::spawn(post_owned(
                url.clone(),
                body_of(&format!("big{i}"), 400_000),
            ))
        })
        .collect();
    // Let every request reach the server, then release the store.
    while store.now.load(Ordering::SeqCst) < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    open_tx.send(true).unwrap();
    for p in posts {
        assert_eq!(p.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(store.most.load(Ordering::SeqCst), 2);
    assert_eq!(mem.snapshot().len(), 8);
}

async fn post_owned(url: String, body: String) -> StatusCode {
    post(&url, body).await.0
}

/// Bodies above the cap get 413, tasks above the task cap 400; the server stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_and_tasks_are_refused_and_the_server_stays_up() {
    let srv = TestServer::start(ServerOptions {
        token: Some(TOKEN.into()),
        max_body_bytes: 64 * 1024,
        max_task_bytes: 8 * 1024,
        ..Default::default()
    })
    .await;
    let url = srv.endpoint("/tasks");
    let (status, v) = post(&url, body_of("huge", 100_000)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    let (status, v) = post(&url, body_of("large", 10_000)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"].as_str().unwrap().contains("8192"), "{v}");
    // A body of small numbers, the shape that once took 37 times its size in memory.
    let numbers = format!(
        "{{\"client_states\": {{\"n\": {{\"id\": \"n\", \"x\": [{}0]}}}}}}",
        "0,".repeat(30_000)
    );
    let (status, _) = post(&url, numbers).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = post(&url, body_of("fine", 100)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(srv.store.snapshot().len(), 1);
}

/// A task the server refuses (here: larger than its task cap) fails alone; the other tasks of
/// its batch are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_task_fails_alone_in_its_batch() {
    let srv = TestServer::start(ServerOptions {
        token: Some(TOKEN.into()),
        max_task_bytes: 2048,
        ..Default::default()
    })
    .await;
    let driver = srv.driver("server");
    let mut batch = Batch::new();
    for i in 0..40 {
        let t = task(json!({"id": format!("t{i:02}"), "description": "ok"}));
        batch.insert(t.id().clone(), Some(t));
    }
    let bad = task(json!({"id": "t17x", "description": "y".repeat(4000)}));
    batch.insert(bad.id().clone(), Some(bad.clone()));
    let answers = driver.resolve(batch).await.unwrap();
    let failed: Vec<&TaskId> = answers
        .iter()
        .filter(|(_, r)| r.is_err())
        .map(|(id, _)| id)
        .collect();
    assert_eq!(failed, vec![bad.id()]);
    let e = answers[bad.id()].as_ref().unwrap_err();
    assert!(e.to_string().contains("t17x"), "{e}");
    assert_eq!(srv.store.snapshot().len(), 40);
}

/// A task nested as deeply as a task may be.
fn deepest(id: &str) -> Task {
    let mut v = json!("bottom");
    // The task object is level 1, so MAX_TASK_DEPTH - 1 levels below it.
    for _ in 0..MAX_TASK_DEPTH - 1 {
        v = json!([v]);
    }
    task(json!({"id": id, "description": "deep", "x": v}))
}

/// The deepest valid task round-trips through `POST /tasks` and v1.0 `POST /task/:id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_of_the_greatest_depth_round_trips() {
    let srv = TestServer::with_token().await;
    let d = srv.driver("server");
    let t = deepest("deep1");
    let answers = d
        .resolve(Batch::from([(t.id().clone(), Some(t.clone()))]))
        .await
        .unwrap();
    assert_eq!(answers[t.id()].as_ref().unwrap().as_ref(), Some(&t));
    let fresh = srv.driver("again");
    let read = fresh
        .resolve(Batch::from([(t.id().clone(), None)]))
        .await
        .unwrap();
    assert_eq!(read[t.id()].as_ref().unwrap().as_ref(), Some(&t));

    let (mem, store) = memory_store();
    let v1 = TestServer::start_router(mem, v1_router(store)).await;
    let d = v1.driver("v1");
    let t = deepest("deep2");
    let answers = d
        .resolve(Batch::from([(t.id().clone(), Some(t.clone()))]))
        .await
        .unwrap();
    assert_eq!(answers[t.id()].as_ref().unwrap().as_ref(), Some(&t));
}
