//! The client against servers that misbehave on purpose: answers that never end or are huge,
//! listings too long to hold, redirects elsewhere. Each is a clear error naming the driver and
//! the server, never an abort, and no task body leaves the configured origin.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use common::task;
use hypertask_core::{Batch, Driver, ErrorKind, TaskId};
use hypertask_driver_http::{HttpConfig, HttpDriver};
use serde_json::json;

/// Serves `app` on 127.0.0.1; the task stops with the test's runtime.
async fn start(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A body of `{"a0": "…", ...` that never ends.
fn endless() -> Body {
    let chunks = futures::stream::iter(0u64..).map(|i| {
        Ok::<_, std::io::Error>(format!("\"t{i}\": \"{}\", ", "0".repeat(64)).into_bytes())
    });
    Body::from_stream(chunks)
}

use futures::StreamExt as _;

/// v1.1 capabilities, so the driver sends batches.
fn capabilities() -> Response {
    axum::Json(json!({"protocol": ["1.0", "1.1"], "max_batch": 100})).into_response()
}

fn driver(url: &str, max_tasks: usize) -> HttpDriver {
    let mut config = HttpConfig::new(url);
    config.max_tasks = max_tasks;
    config.retries = 0;
    HttpDriver::new("server", config).unwrap()
}

fn assert_names_driver_and_server(e: &hypertask_core::DriverError, url: &str) {
    let text = e.to_string();
    assert!(text.starts_with("driver 'server': "), "{text}");
    assert!(text.contains(url), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_listing_is_refused() {
    let url = start(Router::new().route(
        "/hashes",
        get(|| async {
            let mut r = Response::new(endless());
            r.headers_mut()
                .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
            r
        }),
    ))
    .await;
    let e = driver(&url, 1000).hashes(None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol);
    assert_names_driver_and_server(&e, &url);
    assert!(e.to_string().contains("GET /hashes with more than"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_longer_than_max_tasks_is_refused() {
    let url = start(Router::new().route(
        "/hashes",
        get(|| async {
            let listing: serde_json::Map<String, serde_json::Value> = (0..11)
                .map(|i| (format!("t{i}"), json!("0".repeat(64))))
                .collect();
            axum::Json(listing)
        }),
    ))
    .await;
    let e = driver(&url, 10).hashes(None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol);
    assert_names_driver_and_server(&e, &url);
    assert!(e.to_string().contains("more than 10 tasks"), "{e}");
    assert!(e.to_string().contains("max_tasks"), "{e}");
    // Ten is fine: every entry is read (their hashes are checked as usual).
    assert!(driver(&url, 11).hashes(None).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_or_endless_batch_answer_is_refused() {
    let url = start(
        Router::new()
            .route("/capabilities", get(|| async { capabilities() }))
            .route("/tasks", any(|| async { Response::new(endless()) }))
            .route(
                "/task/{id}",
                any(|| async {
                    // Says how large it is up front: refused before reading.
                    let mut r = Response::new(Body::from(vec![b' '; 4 << 20]));
                    r.headers_mut()
                        .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
                    r
                }),
            ),
    )
    .await;
    let d = driver(&url, 1000).with_max_task_bytes(1024);
    let t = task(json!({"id": "a", "description": "x"}));
    let e = d
        .resolve(Batch::from([(t.id().clone(), Some(t))]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol);
    assert_names_driver_and_server(&e, &url);
    assert!(e.to_string().contains("POST /tasks with more than"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_above_the_task_size_limit_fails_that_task() {
    let big = "x".repeat(4096);
    let url = start(
        Router::new()
            .route("/capabilities", get(|| async { capabilities() }))
            .route(
                "/tasks",
                any(move || {
                    let big = big.clone();
                    async move {
                        axum::Json(json!({"server_states": {
                            "big": {"id": "big", "description": big},
                            "small": {"id": "small", "description": "fine"},
                        }}))
                    }
                }),
            ),
    )
    .await;
    let d = driver(&url, 1000).with_max_task_bytes(1024);
    let (big, small) = (TaskId::new("big").unwrap(), TaskId::new("small").unwrap());
    let answers = d
        .resolve(Batch::from([(big.clone(), None), (small.clone(), None)]))
        .await
        .unwrap();
    let e = answers[&big].as_ref().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidData);
    assert!(
        e.to_string().contains("task size limit of 1024 bytes"),
        "{e}"
    );
    assert!(answers[&small].as_ref().unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_bodies_are_not_redirected_to_another_origin() {
    // The other origin counts every request that reaches it.
    let reached = Arc::new(AtomicUsize::new(0));
    let seen = reached.clone();
    let elsewhere = start(Router::new().fallback(move || {
        seen.fetch_add(1, Ordering::SeqCst);
        async { axum::Json(json!({"server_states": {}})) }
    }))
    .await;
    let target = elsewhere.clone();
    let url = start(
        Router::new()
            .route("/capabilities", get(|| async { capabilities() }))
            .fallback(move || {
                let target = target.clone();
                async move {
                    (
                        StatusCode::TEMPORARY_REDIRECT,
                        [(header::LOCATION, format!("{target}/tasks"))],
                    )
                }
            }),
    )
    .await;
    let d = driver(&url, 1000);
    let t = task(json!({"id": "secret", "description": "stays home"}));
    let e = d
        .resolve(Batch::from([(t.id().clone(), Some(t))]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol);
    assert_names_driver_and_server(&e, &url);
    assert!(e.to_string().contains("redirected POST /tasks to"), "{e}");
    assert!(e.to_string().contains(&elsewhere), "{e}");
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "a request left the origin"
    );
}
