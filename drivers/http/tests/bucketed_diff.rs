//! Issue 15, "diffs proportional to the change": after 10 tasks among 20,000 changed on another
//! replica, a sync asks the server for its bucket hashes and then for the differing buckets'
//! entries only, and receives a small fraction of what the whole map costs. Requests and bytes
//! are counted by the test server, never timed. A server without the extension (protocol 1.1)
//! still syncs, with whole listings; and the endpoints answer as docs/http-protocol.md says.

mod common;

use std::collections::BTreeSet;

use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use common::{all, memory_store, put, replica, scratch, sync, task, Exchange, TestServer, TOKEN};
use hypertask_core::{
    bucket_hashes, in_buckets, root_hash, Bucket, Change, Depth, Driver, Hashes, Task,
};
use hypertask_driver_http::{router, ServerOptions};
use serde_json::json;

fn tasks(n: usize) -> Vec<Task> {
    (0..n)
        .map(|i| task(json!({"id": format!("task{i:05}"), "description": format!("task {i}")})))
        .collect()
}

fn edit(tasks: &[Task], at: impl Iterator<Item = usize>) -> Vec<Task> {
    let now = Utc::now();
    at.map(|i| {
        let mut t = tasks[i].clone();
        t.edit(
            &[Change::Set(
                "description".into(),
                json!(format!("edited {i}")),
            )],
            now,
        )
        .unwrap();
        t
    })
    .collect()
}

fn get(path: &str, status: StatusCode) -> (Method, String, StatusCode) {
    (Method::GET, path.into(), status)
}

fn shape(exchanges: &[Exchange]) -> Vec<(Method, String, StatusCode)> {
    exchanges
        .iter()
        .map(|e| (e.seen.method.clone(), e.seen.path.clone(), e.seen.status))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_edits_among_twenty_thousand_tasks_fetch_only_their_buckets() {
    let srv = TestServer::with_token().await;
    let dir = scratch();
    let (a, b) = (replica(&dir, "a"), replica(&dir, "b"));
    let all_tasks = tasks(20_000);
    put(&a, &all_tasks);
    assert_eq!(
        sync(&a, srv.driver("server")).await.drivers[0].pushed,
        20_000
    );
    assert_eq!(
        sync(&b, srv.driver("server")).await.drivers[0].pulled,
        20_000
    );

    let edited = edit(&all_tasks, (0..10).map(|k| k * 1999));
    put(&b, &edited);
    assert_eq!(sync(&b, srv.driver("server")).await.drivers[0].pushed, 10);

    srv.log.take();
    let report = sync(&a, srv.driver("server")).await;
    assert_eq!(report.drivers[0].pulled, 10, "{report:?}");
    let exchanges = srv.log.take_exchanges();
    // The bucket hashes, the differing buckets' entries, the 10 tasks, then the confirming
    // pass's unchanged root.
    assert_eq!(
        shape(&exchanges),
        [
            get("/buckets", StatusCode::OK),
            get("/hashes", StatusCode::OK),
            (Method::POST, "/tasks".into(), StatusCode::OK),
            get("/buckets", StatusCode::NOT_MODIFIED),
        ],
        "{exchanges:?}"
    );
    let query = exchanges[1].query.as_deref().expect("a bucket query");
    let named: Vec<&str> = query
        .strip_prefix("buckets=")
        .expect("`buckets=`")
        .split(',')
        .collect();
    assert!((1..=10).contains(&named.len()), "buckets asked: {named:?}");
    let bucketed: usize = exchanges.iter().map(|e| e.body_bytes).sum();
    assert_eq!(all(&a), all(&b));

    // The whole map, measured the same way.
    let listing = srv.driver("probe").hashes(None).await.unwrap();
    assert!(matches!(listing, hypertask_core::Listing::Changed(_)));
    let full = srv.log.take_exchanges();
    assert_eq!(shape(&full), [get("/hashes", StatusCode::OK)]);
    assert_eq!(full[0].query, None);
    let full = full[0].body_bytes;
    println!(
        "20,000 tasks, 10 edited: the sync received {bucketed} bytes; the whole map is {full} bytes"
    );
    assert!(
        bucketed * 10 < full,
        "received {bucketed} bytes, not a small fraction of the {full} bytes of the whole map"
    );
}

/// The real server made a protocol 1.1 one: `/buckets` is a `404` and nothing advertises it.
async fn without_buckets(req: Request, next: Next) -> Response {
    if req.uri().path() == "/buckets" {
        return (StatusCode::NOT_FOUND, "no such endpoint").into_response();
    }
    assert!(
        req.uri().query().is_none(),
        "a 1.1 server is asked by bucket"
    );
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.remove("hypertask-buckets");
    if h.contains_key("hypertask-protocol") {
        h.insert("hypertask-protocol", HeaderValue::from_static("1.0, 1.1"));
    }
    resp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_buckets_is_listed_whole() {
    let (mem, store) = memory_store();
    let opts = ServerOptions {
        token: Some(TOKEN.into()),
        ..Default::default()
    };
    let app = router(store, opts).layer(middleware::from_fn(without_buckets));
    let srv = TestServer::start_router(mem, app).await;
    let dir = scratch();
    let (a, b) = (replica(&dir, "a"), replica(&dir, "b"));
    let all_tasks = tasks(300);
    put(&a, &all_tasks);

    let da = srv.driver("server");
    assert_eq!(sync(&a, da.clone()).await.drivers[0].pushed, 300);
    let first = shape(&srv.log.take_exchanges());
    assert_eq!(
        first[..2],
        [
            get("/buckets", StatusCode::NOT_FOUND),
            get("/hashes", StatusCode::OK)
        ],
        "one try, then the whole listing: {first:?}"
    );
    assert!(!da.info().capabilities.buckets);
    assert_eq!(sync(&b, srv.driver("server")).await.drivers[0].pulled, 300);
    srv.log.take();

    put(&b, &edit(&all_tasks, [7, 150].into_iter()));
    sync(&b, srv.driver("server")).await;
    // The same instance remembers: its next sync is one conditional `/hashes`.
    srv.log.take();
    let report = sync(&a, da).await;
    assert_eq!(report.drivers[0].pulled, 2, "{report:?}");
    let seen = shape(&srv.log.take_exchanges());
    assert_eq!(seen[0], get("/hashes", StatusCode::OK), "{seen:?}");
    assert!(seen.iter().all(|s| s.1 != "/buckets"), "{seen:?}");
    assert_eq!(all(&a), all(&b));
}

/// `GET` with the test token (when `auth`) and extra headers: status, headers, body.
async fn fetch(
    url: &str,
    auth: bool,
    headers: &[(&str, &str)],
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = reqwest::Client::new().get(url);
    if auth {
        req = req.bearer_auth(TOKEN);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    (status, headers, resp.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bucket_endpoints_answer_as_documented() {
    let srv = TestServer::with_token().await;
    let stored = tasks(50);
    let writer = srv.driver("writer");
    writer
        .resolve(
            stored
                .iter()
                .map(|t| (t.id().clone(), Some(t.clone())))
                .collect(),
        )
        .await
        .unwrap();
    let map: Hashes = stored.iter().map(|t| (t.id().clone(), t.hash())).collect();
    let root = root_hash(&map);

    let (status, ..) = fetch(&srv.endpoint("/buckets"), false, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, headers, body) = fetch(&srv.endpoint("/buckets"), true, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["etag"], format!("\"{root}\"").as_str());
    assert_eq!(headers["hypertask-buckets"], "true");
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let want = bucket_hashes(&map, Depth::MIN);
    assert_eq!(doc, json!({"depth": 1, "buckets": want}));
    let tag = format!("\"{root}\"");
    let (status, _, body) =
        fetch(&srv.endpoint("/buckets"), true, &[("if-none-match", &tag)]).await;
    assert_eq!((status, body.len()), (StatusCode::NOT_MODIFIED, 0));

    // Some buckets' entries, at the server's depth or another.
    let two: BTreeSet<Bucket> = want.keys().take(2).cloned().collect();
    let deep = BTreeSet::from([Bucket::of(stored[9].id(), Depth::new(2).unwrap())]);
    for asked in [two, deep] {
        let list: Vec<&str> = asked.iter().map(Bucket::as_str).collect();
        let url = srv.endpoint(&format!("/hashes?buckets={}", list.join(",")));
        let (status, headers, body) = fetch(&url, true, &[]).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        assert_eq!(headers["etag"], tag.as_str());
        let got: Hashes = serde_json::from_slice(&body).unwrap();
        assert!(!got.is_empty());
        assert_eq!(got, in_buckets(&map, &asked));
    }

    let many: Vec<String> = (0..257).map(|i| format!("{i:03x}")).collect();
    for bad in ["", "0,ff", "zz", "0,,1", &many.join(",")] {
        let url = srv.endpoint(&format!("/hashes?buckets={bad}"));
        let (status, _, body) = fetch(&url, true, &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}");
        let message = String::from_utf8_lossy(&body);
        assert!(message.contains("`buckets`"), "{message}");
    }
    let resp = reqwest::Client::new()
        .post(srv.endpoint("/buckets"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
}
