//! The server over real HTTP on loopback: every status code of docs/http-protocol.md, and that a
//! refused request stores nothing.

mod common;

use std::sync::Arc;

use common::{bearer, call, call_with, task, TestServer, TOKEN};
use hypertask_core::{root_hash, ContentHash, Driver, Hashes, MemoryStore, StoreDriver, TaskId};
use hypertask_driver_http::{serve, ServerOptions};
use reqwest::header::{
    HeaderMap, AUTHORIZATION, CONTENT_TYPE, ETAG, IF_NONE_MATCH, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

#[tokio::test]
async fn ok_etag_and_not_modified() {
    let srv = TestServer::with_token().await;
    let auth = bearer();
    let t = task(json!({"id": "abc", "description": "milk", "tags": ["home"]}));

    // Empty server: the ETag is the root of `{}`.
    let a = call(Method::GET, &srv.endpoint("/hashes"), Some(&auth), None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json(), json!({}));
    let empty_tag = format!("\"{}\"", root_hash(&Hashes::new()));
    assert_eq!(a.headers.get(ETAG).unwrap().to_str().unwrap(), empty_tag);

    // v1.0 resolve: the answer is the stored, normalised task.
    let body = json!({"client_state": t}).to_string();
    let a = call(
        Method::POST,
        &srv.endpoint("/task/abc"),
        Some(&auth),
        Some(&body),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json(), json!({"server_state": t}));
    assert_eq!(srv.store.snapshot().get("abc"), Some(&t));

    let a = call(Method::GET, &srv.endpoint("/hashes"), Some(&auth), None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json(), json!({"abc": t.hash().as_str()}));
    let hashes: Hashes = serde_json::from_slice(&a.body).unwrap();
    let etag = a.headers.get(ETAG).unwrap().clone();
    assert_eq!(
        etag.to_str().unwrap(),
        format!("\"{}\"", root_hash(&hashes))
    );

    // A matching If-None-Match: 304, no body, the same ETag.
    let mut h = HeaderMap::new();
    h.insert(IF_NONE_MATCH, etag.clone());
    let a = call_with(Method::GET, &srv.endpoint("/hashes"), Some(&auth), None, h).await;
    assert_eq!(a.status, StatusCode::NOT_MODIFIED);
    assert!(a.body.is_empty());
    assert_eq!(a.headers.get(ETAG), Some(&etag));

    // A stale one: the full map.
    let mut h = HeaderMap::new();
    h.insert(IF_NONE_MATCH, empty_tag.parse().unwrap());
    let a = call_with(Method::GET, &srv.endpoint("/hashes"), Some(&auth), None, h).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json(), json!({"abc": t.hash().as_str()}));
}

#[tokio::test]
async fn capabilities_and_batches() {
    let srv = TestServer::start(ServerOptions {
        token: Some(TOKEN.into()),
        max_batch: 7,
        ..Default::default()
    })
    .await;
    let auth = bearer();
    let a = call(
        Method::GET,
        &srv.endpoint("/capabilities"),
        Some(&auth),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let caps = a.json();
    assert_eq!(caps["protocol"], json!(["1.0", "1.1", "1.2"]));
    assert_eq!(caps["max_batch"], json!(7));
    assert_eq!(caps["buckets"], json!(true));

    let t1 = task(json!({"id": "t1", "description": "one"}));
    let t2 = task(json!({"id": "t2", "description": "two"}));
    let body = json!({"client_states": {"t1": t1, "t2": t2, "t3": null}}).to_string();
    let a = call(
        Method::POST,
        &srv.endpoint("/tasks"),
        Some(&auth),
        Some(&body),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.json(),
        json!({"server_states": {"t1": t1, "t2": t2, "t3": null}})
    );
    // The read of t3 created nothing.
    let stored = srv.store.snapshot();
    assert_eq!(
        stored.keys().map(TaskId::as_str).collect::<Vec<_>>(),
        ["t1", "t2"]
    );
}

#[tokio::test]
async fn both_authorization_schemes_are_accepted() {
    let srv = TestServer::with_token().await;
    for auth in [format!("Bearer {TOKEN}"), format!("hypertask {TOKEN}")] {
        let a = call(Method::GET, &srv.endpoint("/hashes"), Some(&auth), None).await;
        assert_eq!(a.status, StatusCode::OK, "{auth}");
    }
}

#[tokio::test]
async fn unauthorized_missing_and_wrong_token_store_nothing() {
    let srv = TestServer::with_token().await;
    let body = json!({"client_state": {"id": "abc", "description": "x"}}).to_string();
    let batch = json!({"client_states": {"abc": {"id": "abc", "description": "x"}}}).to_string();
    let wrong = [
        (None, "missing"),
        (Some("Bearer not-the-token".to_owned()), "wrong token"),
        (Some(format!("hypertask {TOKEN}x")), "wrong token"),
        (Some(format!("Basic {TOKEN}")), "unsupported"),
        (Some(TOKEN.to_owned()), "unsupported"),
    ];
    for (auth, expected) in &wrong {
        for (method, path, body) in [
            (Method::GET, "/hashes", None),
            (Method::GET, "/capabilities", None),
            (Method::POST, "/task/abc", Some(body.as_str())),
            (Method::POST, "/tasks", Some(batch.as_str())),
        ] {
            let a = call(method.clone(), &srv.endpoint(path), auth.as_deref(), body).await;
            let msg = a.error(StatusCode::UNAUTHORIZED);
            assert!(a.headers.contains_key(WWW_AUTHENTICATE));
            assert!(!msg.contains(TOKEN), "the token is never echoed: {msg}");
            assert!(
                msg.contains(expected),
                "{method} {path} with {auth:?}: {msg}"
            );
        }
    }
    assert!(
        srv.store.snapshot().is_empty(),
        "a refused request stores nothing"
    );
}

#[tokio::test]
async fn bad_requests_are_json_errors_and_store_nothing() {
    let srv = TestServer::with_token().await;
    let auth = bearer();
    let good = json!({"id": "good1", "description": "fine"});
    let cases: Vec<(&str, String, &str)> = vec![
        // Malformed JSON.
        ("/task/abc", "{\"client_state\": ".into(), "malformed JSON"),
        ("/tasks", "not json at all".into(), "malformed JSON"),
        ("/task/abc", "[1, 2]".into(), "JSON object"),
        (
            "/task/abc",
            json!({"state": null}).to_string(),
            "client_state",
        ),
        (
            "/tasks",
            json!({"client_states": [good]}).to_string(),
            "client_states",
        ),
        // Invalid task.
        (
            "/task/abc",
            json!({"client_state": {"id": "abc", "due": "next tuesday"}}).to_string(),
            "due",
        ),
        (
            "/task/abc",
            json!({"client_state": "abc"}).to_string(),
            "invalid task",
        ),
        (
            "/tasks",
            json!({"client_states": {"good1": good, "bad1": {"id": "bad1", "tags": "x"}}})
                .to_string(),
            "tags",
        ),
        // Id mismatch.
        (
            "/task/abc",
            json!({"client_state": {"id": "other", "description": "x"}}).to_string(),
            "mismatch",
        ),
        (
            "/tasks",
            json!({"client_states": {"good1": good, "victim": {"id": "other"}}}).to_string(),
            "mismatch",
        ),
        // A clock from the future, which would win every merge until then.
        (
            "/task/fut",
            json!({"client_state": {"id": "fut", "description": "x", "updated_at": "2099-01-01T00:00:00.000Z"}})
                .to_string(),
            "more than a day ahead",
        ),
        (
            "/tasks",
            json!({"client_states": {"fut": {"id": "fut", "updated_at": "2099-01-01T00:00:00.000Z"}}})
                .to_string(),
            "more than a day ahead",
        ),
        // Bad id.
        (
            "/task/bad.id",
            json!({"client_state": null}).to_string(),
            "invalid task id",
        ),
        (
            "/task/%2E%2E%2Fescape",
            json!({"client_state": null}).to_string(),
            "invalid task id",
        ),
        (
            "/tasks",
            json!({"client_states": {"good1": good, "a b": null}}).to_string(),
            "invalid id",
        ),
    ];
    for (path, body, needle) in cases {
        let a = call(Method::POST, &srv.endpoint(path), Some(&auth), Some(&body)).await;
        let msg = a.error(StatusCode::BAD_REQUEST);
        assert!(msg.contains(needle), "{path} {body}: {msg}");
        assert!(
            srv.store.snapshot().is_empty(),
            "{path} {body} stored something"
        );
    }
    // Without a JSON content type the answer is still our JSON error, not a text rejection.
    let resp = reqwest::Client::new()
        .post(srv.endpoint("/task/abc"))
        .header(AUTHORIZATION, &auth)
        .header(CONTENT_TYPE, "text/plain")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("malformed JSON"),
        "{v}"
    );
}

#[tokio::test]
async fn too_large_bodies_and_batches_are_refused() {
    let srv = TestServer::start(ServerOptions {
        token: Some(TOKEN.into()),
        max_batch: 3,
        max_body_bytes: 4096,
        ..Default::default()
    })
    .await;
    let auth = bearer();
    let big = "x".repeat(8192);
    let body = json!({"client_state": {"id": "big", "description": big}}).to_string();
    let a = call(
        Method::POST,
        &srv.endpoint("/task/big"),
        Some(&auth),
        Some(&body),
    )
    .await;
    assert!(a.error(StatusCode::PAYLOAD_TOO_LARGE).contains("4096"));

    let states: serde_json::Map<String, Value> = (0..4)
        .map(|i| (format!("t{i}"), json!({"id": format!("t{i}")})))
        .collect();
    let body = json!({"client_states": states}).to_string();
    assert!(body.len() < 4096);
    let a = call(
        Method::POST,
        &srv.endpoint("/tasks"),
        Some(&auth),
        Some(&body),
    )
    .await;
    assert!(a.error(StatusCode::PAYLOAD_TOO_LARGE).contains("max_batch"));
    assert!(srv.store.snapshot().is_empty());

    // Three is fine.
    let states: serde_json::Map<String, Value> = (0..3)
        .map(|i| (format!("t{i}"), json!({"id": format!("t{i}")})))
        .collect();
    let body = json!({"client_states": states}).to_string();
    let a = call(
        Method::POST,
        &srv.endpoint("/tasks"),
        Some(&auth),
        Some(&body),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(srv.store.snapshot().len(), 3);
}

#[tokio::test]
async fn unknown_endpoints_and_methods_answer_json() {
    let srv = TestServer::with_token().await;
    let auth = bearer();
    let a = call(Method::GET, &srv.endpoint("/nope"), Some(&auth), None).await;
    a.error(StatusCode::NOT_FOUND);
    let a = call(Method::DELETE, &srv.endpoint("/hashes"), Some(&auth), None).await;
    a.error(StatusCode::METHOD_NOT_ALLOWED);
}

/// A store whose resolve fails for one task: the wire behaviour documented in `server.rs`.
#[tokio::test]
async fn per_task_store_failures() {
    #[derive(Debug)]
    struct Corrupt(StoreDriver<Arc<MemoryStore>>);

    #[hypertask_core::async_trait]
    impl Driver for Corrupt {
        fn info(&self) -> hypertask_core::DriverInfo {
            self.0.info()
        }
        async fn hashes(
            &self,
            known: Option<&ContentHash>,
        ) -> Result<hypertask_core::Listing, hypertask_core::DriverError> {
            let mut listing = self.0.hashes(known).await?;
            if let hypertask_core::Listing::Changed(inv) = &mut listing {
                inv.problems.push(hypertask_core::Problem {
                    id: Some(TaskId::new("corrupt").unwrap()),
                    error: hypertask_core::DriverError::new(
                        "server-store",
                        hypertask_core::ErrorKind::InvalidData,
                        "corrupt.json is not a valid task",
                    ),
                });
            }
            Ok(listing)
        }
        async fn resolve(
            &self,
            batch: hypertask_core::Batch,
        ) -> Result<hypertask_core::Answers, hypertask_core::DriverError> {
            let mut out = self.0.resolve(batch).await?;
            for (id, r) in &mut out {
                if id.as_str() == "corrupt" {
                    *r = Err(hypertask_core::DriverError::new(
                        "server-store",
                        hypertask_core::ErrorKind::InvalidData,
                        "stored entry 'corrupt' is not a valid task",
                    ));
                }
            }
            Ok(out)
        }
        async fn check(&self) -> Result<hypertask_core::Health, hypertask_core::DriverError> {
            self.0.check().await
        }
    }

    let mem = Arc::new(MemoryStore::new("server-store"));
    let store: Arc<dyn Driver> = Arc::new(Corrupt(StoreDriver::new(mem.clone())));
    let srv = TestServer::start_router(
        mem,
        hypertask_driver_http::router(store, ServerOptions::default()),
    )
    .await;
    // A corrupt stored entry does not fail `/hashes`: it is left out (and logged).
    let a = call(Method::GET, &srv.endpoint("/hashes"), None, None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json(), json!({}));

    let a = call(
        Method::POST,
        &srv.endpoint("/task/corrupt"),
        None,
        Some(&json!({"client_state": null}).to_string()),
    )
    .await;
    assert!(a.error(StatusCode::CONFLICT).contains("not a valid task"));

    let body = json!({"client_states": {"corrupt": null, "fine": {"id": "fine"}}}).to_string();
    let a = call(Method::POST, &srv.endpoint("/tasks"), None, Some(&body)).await;
    assert_eq!(a.status, StatusCode::OK);
    let v = a.json();
    assert_eq!(v["server_states"].as_object().unwrap().len(), 1);
    assert_eq!(v["server_states"]["fine"]["id"], "fine");
    assert_eq!(v["errors"]["corrupt"]["retryable"], false);
    assert!(v["errors"]["corrupt"]["error"]
        .as_str()
        .unwrap()
        .contains("not a valid task"));

    // The driver turns both into per-task errors; the good task still resolves.
    let d = srv.driver("server");
    let answers = d
        .resolve(hypertask_core::Batch::from([
            (TaskId::new("corrupt").unwrap(), None),
            (TaskId::new("fine").unwrap(), None),
        ]))
        .await
        .unwrap();
    let err = answers[&TaskId::new("corrupt").unwrap()]
        .as_ref()
        .unwrap_err();
    assert_eq!(err.kind(), hypertask_core::ErrorKind::InvalidData);
    assert!(err.to_string().contains("corrupt"), "{err}");
    assert!(answers[&TaskId::new("fine").unwrap()]
        .as_ref()
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn serve_shuts_down_gracefully() {
    let store: Arc<dyn Driver> = Arc::new(StoreDriver::new(MemoryStore::new("s")));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hashes", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, store, ServerOptions::default(), async {
        let _ = stopped.await;
    }));
    let a = call(Method::GET, &url, None, None).await;
    assert_eq!(a.status, StatusCode::OK);
    stop.send(()).unwrap();
    server
        .await
        .unwrap()
        .expect("serve returns Ok after shutdown");
    let refused = reqwest::Client::new().get(&url).send().await;
    assert!(refused.unwrap_err().is_connect());
}

/// `hypertask serve` stores through a checked driver shared by every request: one client's
/// listing must not be held against another client's reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_clients_of_a_checked_store_do_not_fail_each_other() {
    let mem = Arc::new(MemoryStore::new("server-store"));
    let store = hypertask_core::Checked::new(Arc::new(StoreDriver::new(mem.clone())));
    let app = hypertask_driver_http::router(
        Arc::new(store),
        ServerOptions {
            token: Some(TOKEN.into()),
            ..Default::default()
        },
    );
    let srv = TestServer::start_router(mem, app).await;
    let (a, b) = (srv.driver("a"), srv.driver("b"));
    let first = task(json!({"id": "shared", "description": "first"}));
    b.resolve(hypertask_core::Batch::from([(
        first.id().clone(),
        Some(first.clone()),
    )]))
    .await
    .unwrap();
    // A lists; B changes the task; A reads it.
    a.hashes(None).await.unwrap();
    let mut second = first.clone();
    second
        .edit(
            &[hypertask_core::Change::Set(
                "description".into(),
                json!("second"),
            )],
            chrono::Utc::now(),
        )
        .unwrap();
    b.resolve(hypertask_core::Batch::from([(
        second.id().clone(),
        Some(second),
    )]))
    .await
    .unwrap();
    let read = a
        .resolve(hypertask_core::Batch::from([(first.id().clone(), None)]))
        .await
        .unwrap();
    let got = read[first.id()].as_ref().expect("the read succeeds");
    assert_eq!(got.as_ref().unwrap().description(), "second");
}
