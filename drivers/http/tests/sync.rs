//! The real core sync engine and local caches syncing through the http driver with the real
//! server on loopback: request counts, convergence of two replicas, failures.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use chrono::Utc;
use common::{all, memory_store, put, replica, scratch, sync, task, Seen, TestServer};
use hypertask_core::{
    Batch, Change, Checked, Driver, Engine, ErrorKind, Listing, SyncOptions, Task, TaskId,
};
use hypertask_driver_http::{HttpConfig, HttpDriver, ServerOptions};
use serde_json::json;

fn numbered(n: usize) -> Vec<Task> {
    (0..n)
        .map(|i| {
            task(json!({
                "id": format!("task{i:05}"),
                "description": format!("task number {i}"),
                "tags": ["bulk"],
                "created_at": "2026-01-01T00:00:00Z",
            }))
        })
        .collect()
}

/// A sync's first request, answered "unchanged": the bucket listing, conditional on the cache's
/// root.
fn unchanged_304() -> Seen {
    Seen {
        method: Method::GET,
        path: "/buckets".into(),
        status: StatusCode::NOT_MODIFIED,
    }
}

/// Pushes `n` tasks from one cache and pulls them into another through a server with
/// `max_batch`, counting requests server-side.
async fn counted(n: usize, max_batch: usize) {
    let srv = TestServer::start(ServerOptions {
        token: Some(common::TOKEN.into()),
        max_batch,
        ..Default::default()
    })
    .await;
    let dir = scratch();
    let a = replica(&dir, "a");
    let tasks = numbered(n);
    put(&a, &tasks);
    let bound = n.div_ceil(max_batch) + 3;

    // Initial push.
    let report = sync(&a, srv.driver("server")).await;
    assert_eq!(report.drivers[0].pushed, n);
    let seen = srv.log.take();
    assert!(
        seen.len() <= bound,
        "initial push of {n} made {} requests, more than {bound}: {seen:?}",
        seen.len()
    );
    assert!(seen
        .iter()
        .all(|s| s.status.is_success() || s.status == StatusCode::NOT_MODIFIED));
    assert_eq!(
        seen.last(),
        Some(&unchanged_304()),
        "the pass ends on an unchanged root"
    );
    assert_eq!(
        srv.store.snapshot().into_values().collect::<Vec<_>>(),
        tasks
    );

    // A no-op sync: exactly one request, answered 304; also from a fresh driver instance.
    let driver = srv.driver("server");
    for d in [driver.clone(), driver, srv.driver("server")] {
        sync(&a, d).await;
        assert_eq!(srv.log.take(), vec![unchanged_304()]);
    }

    // Initial pull into an empty cache.
    let b = replica(&dir, "b");
    let report = sync(&b, srv.driver("server")).await;
    assert_eq!(report.drivers[0].pulled, n);
    let seen = srv.log.take();
    assert!(
        seen.len() <= bound,
        "initial pull of {n} made {} requests, more than {bound}: {seen:?}",
        seen.len()
    );
    assert_eq!(all(&b), tasks);
    sync(&b, srv.driver("server")).await;
    assert_eq!(srv.log.take(), vec![unchanged_304()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_tasks_take_at_most_ceil_n_over_batch_plus_3_requests() {
    counted(10_000, 1000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smaller_server_batches_are_respected_and_counted() {
    counted(2_000, 250).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_caches_converge_with_concurrent_edits() {
    let srv = TestServer::with_token().await;
    let dir = scratch();
    let (a, b) = (replica(&dir, "a"), replica(&dir, "b"));
    let (da, db) = (srv.driver("server"), srv.driver("server"));

    // Made a minute ago, so the first sync is unambiguously after it.
    let earlier = Utc::now() - chrono::Duration::seconds(60);
    let mut t = Task::new(TaskId::new("shared1").unwrap(), earlier);
    t.edit(
        &[Change::Set("description".into(), json!("write report"))],
        earlier,
    )
    .unwrap();
    put(&a, std::slice::from_ref(&t));
    sync(&a, da.clone()).await;
    sync(&b, db.clone()).await;
    assert_eq!(all(&b), vec![t.clone()]);

    // Concurrent edits, neither side synced in between: different fields on A and B, and the
    // same field (`priority`) on both, B's edit being the later one.
    let now = Utc::now();
    let mut ta = t.clone();
    ta.edit(
        &[
            Change::Set("description".into(), json!("write the report")),
            Change::Set("priority".into(), json!("H")),
        ],
        now,
    )
    .unwrap();
    let mut tb = t.clone();
    tb.edit(
        &[
            Change::AddTag("work".into()),
            Change::Set("due".into(), json!("2030-01-01T00:00:00Z")),
            Change::Set("priority".into(), json!("L")),
        ],
        now + chrono::Duration::seconds(1),
    )
    .unwrap();
    put(&a, std::slice::from_ref(&ta));
    put(&b, std::slice::from_ref(&tb));

    // B first, so A's unsynced `priority` edit is the one that loses.
    sync(&b, db.clone()).await;
    sync(&a, da.clone()).await;
    sync(&b, db.clone()).await;

    let (fa, fb) = (all(&a), all(&b));
    assert_eq!(fa, fb, "both caches hold the same bytes");
    assert_eq!(fa, srv.store.snapshot().into_values().collect::<Vec<_>>());
    let merged = &fa[0];
    assert_eq!(merged.description(), "write the report");
    assert_eq!(merged.tags(), ["work"]);
    assert_eq!(merged.get_str("due"), Some("2030-01-01T00:00:00.000Z"));
    assert_eq!(merged.get_str("priority"), Some("L"));
    // A's losing value is journaled, not silently dropped; B lost nothing.
    let lost = a.conflicts().unwrap();
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(lost[0].field, "priority");
    assert_eq!(lost[0].lost, Some(json!("H")));
    assert_eq!(lost[0].kept, Some(json!("L")));
    assert!(b.conflicts().unwrap().is_empty());

    // Both are now up to date: one 304 each.
    srv.log.take();
    sync(&a, da).await;
    sync(&b, db).await;
    assert_eq!(srv.log.take(), vec![unchanged_304(), unchanged_304()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_is_a_retryable_error_naming_the_driver() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let mut config = HttpConfig::new(&url).with_token("t");
    config.retries = 1;
    let driver = Arc::new(HttpDriver::new("server", config).unwrap());

    let err = driver.hashes(None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.is_retryable());
    assert_eq!(
        err.to_string(),
        format!("driver 'server': cannot reach {url}: connection refused")
    );
    let err = driver
        .resolve(Batch::from([(TaskId::new("x").unwrap(), None)]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);

    // Through the engine: the driver is reported as failed and retryable; the cache is intact.
    let dir = scratch();
    let a = replica(&dir, "a");
    put(&a, &numbered(3));
    let report = Engine::new(
        a.clone(),
        vec![Checked::new(driver)],
        SyncOptions::default(),
    )
    .sync()
    .await
    .unwrap();
    let d = &report.drivers[0];
    assert!(d.retryable, "{d:?}");
    let msg = d.error.as_deref().unwrap();
    assert!(
        msg.contains("driver 'server'") && msg.contains(&url),
        "{msg}"
    );
    assert_eq!(all(&a), numbered(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_server_times_out() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        for _ in 0..8 {
            match listener.accept().await {
                Ok((socket, _)) => held.push(socket),
                Err(_) => break,
            }
        }
        std::future::pending::<()>().await;
    });
    let mut config = HttpConfig::new(&url);
    config.timeout_secs = 0.3;
    config.retries = 1;
    let driver = HttpDriver::new("server", config).unwrap();
    let err = driver.hashes(None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(err.is_retryable());
    assert_eq!(
        err.to_string(),
        format!("driver 'server': GET /hashes to {url} timed out after 0.3s")
    );
    let err = driver
        .resolve(Batch::from([(TaskId::new("x").unwrap(), None)]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(err.to_string().contains("GET /capabilities"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_only_what_a_retry_can_help() {
    // `/hashes` fails with 503 twice, then answers; `/capabilities` is always a 400.
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = Router::new()
        .route(
            "/hashes",
            get(move || {
                let h = h.clone();
                async move {
                    if h.fetch_add(1, Ordering::SeqCst) < 2 {
                        (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response()
                    } else {
                        axum::Json(json!({})).into_response()
                    }
                }
            }),
        )
        .route(
            "/capabilities",
            get(|| async { (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "no"}))) }),
        )
        .route(
            "/tasks",
            post(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        );
    let (mem, _) = memory_store();
    let srv = TestServer::start_router(mem, app).await;

    let driver = HttpDriver::new("server", HttpConfig::new(&srv.url)).unwrap();
    match driver.hashes(None).await.unwrap() {
        Listing::Changed(inv) => assert!(inv.hashes.is_empty()),
        Listing::Unchanged => panic!("no root was given"),
    }
    assert_eq!(hits.load(Ordering::SeqCst), 3, "two retries after two 503s");

    srv.log.take();
    let err = driver
        .resolve(Batch::from([(TaskId::new("x").unwrap(), None)]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert!(err.to_string().contains("no"), "{err}");
    assert_eq!(srv.log.take().len(), 1, "a 400 is not retried");

    // Retries are bounded: with `retries = 1`, a 503 that persists is sent twice, then fails.
    hits.store(0, Ordering::SeqCst);
    let mut config = HttpConfig::new(&srv.url);
    config.retries = 1;
    let driver = HttpDriver::new("server", config).unwrap();
    let err = driver.hashes(None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.to_string().contains("503"), "{err}");
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_unauthorized_and_not_retried() {
    let srv = TestServer::with_token().await;
    let driver = HttpDriver::new("server", HttpConfig::new(&srv.url).with_token("wrong")).unwrap();
    let err = driver.hashes(None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("refused the token"), "{err}");
    let anonymous = HttpDriver::new("server", HttpConfig::new(&srv.url)).unwrap();
    let err = anonymous.check().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    assert!(err.to_string().contains("requires a token"), "{err}");
    // The wrong token is tried with both schemes, `Bearer` and the original `hypertask`, once
    // each; no token at all is one request.
    let seen = srv.log.take();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.iter().all(|s| s.status == StatusCode::UNAUTHORIZED));
    assert!(srv.store.snapshot().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_batches_are_split_to_fit_the_server() {
    // Bodies above 4 KiB are refused: the driver splits batches to fit, and a task that can
    // never fit fails alone.
    let srv = TestServer::start(ServerOptions {
        token: Some(common::TOKEN.into()),
        max_batch: 1000,
        max_body_bytes: 4096,
        ..Default::default()
    })
    .await;
    let driver = srv.driver("server");
    let mut tasks: Vec<Task> = (0..40)
        .map(|i| task(json!({"id": format!("t{i:02}"), "description": "y".repeat(300)})))
        .collect();
    tasks.push(task(
        json!({"id": "huge", "description": "z".repeat(10_000)}),
    ));
    let answers = driver
        .resolve(
            tasks
                .iter()
                .map(|t| (t.id().clone(), Some(t.clone())))
                .collect(),
        )
        .await
        .unwrap();
    for t in &tasks {
        let (id, r) = (t.id(), &answers[t.id()]);
        if id.as_str() == "huge" {
            let e = r.as_ref().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidRequest);
            assert!(e.to_string().contains("4096"), "{e}");
        } else {
            assert_eq!(r.as_ref().unwrap().as_ref(), Some(t));
        }
    }
    assert_eq!(srv.store.snapshot().len(), 40);
    let seen = srv.log.take();
    assert!(seen.iter().all(|s| s.status.is_success()), "{seen:?}");
    assert!(
        seen.iter().filter(|s| s.path == "/tasks").count() > 1,
        "split into several batches"
    );
}
