//! The `GET /hashes` long poll (`Prefer: wait=N`) over a real server on loopback: held until
//! a write through the server or a foreign write seen at a recheck, `304` after the wait,
//! the held-request cap, release on shutdown, plain conditional GETs unchanged, and the http
//! driver's `wait_for_change` built on it.
//!
//! No test measures speed: a held request is given a wait far beyond the test's deadline, so
//! only the behaviour under test can answer it in time.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{task, v1_router, TestServer, TOKEN};
use hypertask_core::{Batch, ContentHash, Driver, MemoryStore, StoreDriver, TaskId, Watch};
use hypertask_driver_http::{serve, HttpConfig, HttpDriver, ServerOptions};
use reqwest::header::{HeaderMap, AUTHORIZATION, ETAG, IF_NONE_MATCH};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A generous bound for anything that should happen: far below the waits held requests ask
/// for, so a request answered within it was answered by the event under test.
const DEADLINE: Duration = Duration::from_secs(30);
/// What held requests ask for (and the servers' cap): beyond [`DEADLINE`].
const LONG: u64 = 120;
/// A recheck interval no test reaches: only the write notifier or shutdown can answer.
const NEVER: Duration = Duration::from_secs(3600);

/// `serve` (the real listener, with graceful shutdown) over a memory store.
struct Server {
    url: String,
    store: Arc<MemoryStore>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(opts: ServerOptions) -> Server {
        let store = Arc::new(MemoryStore::new("server-store"));
        let driver: Arc<dyn Driver> = Arc::new(StoreDriver::new(store.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(
            listener,
            driver,
            ServerOptions {
                token: Some(TOKEN.into()),
                ..opts
            },
            async {
                let _ = stopped.await;
            },
        ));
        Server {
            url,
            store,
            stop: Some(stop),
            task,
        }
    }

    /// A server whose held requests only a write through it (or shutdown) can answer.
    async fn notified_only() -> Server {
        Server::start(ServerOptions {
            long_poll_max_wait: Duration::from_secs(LONG),
            long_poll_recheck: NEVER,
            ..Default::default()
        })
        .await
    }

    fn driver(&self, name: &str, config: impl FnOnce(&mut HttpConfig)) -> HttpDriver {
        let mut c = HttpConfig::new(&self.url).with_token(TOKEN);
        config(&mut c);
        HttpDriver::new(name, c).unwrap()
    }

    /// Writes a task through the server, as another client.
    async fn write_through(&self, id: &str, description: &str) {
        let other = self.driver("other", |_| {});
        let t = task(json!({"id": id, "description": description}));
        let answers = other
            .resolve(Batch::from([(TaskId::new(id).unwrap(), Some(t))]))
            .await
            .unwrap();
        assert!(answers.values().all(Result::is_ok), "{answers:?}");
    }

    /// The served root, read with a plain `GET /hashes`.
    async fn root(&self) -> ContentHash {
        let a = get(&self.url, &[]).await;
        assert_eq!(a.status, StatusCode::OK);
        etag(&a.headers)
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// `GET /hashes` with the token and `headers`, allowed far longer than any hold.
async fn get(url: &str, headers: &[(&str, String)]) -> Answer {
    let mut req = reqwest::Client::new()
        .get(format!("{url}/hashes"))
        .header(AUTHORIZATION, format!("Bearer {TOKEN}"))
        .timeout(Duration::from_secs(LONG * 2));
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    let resp = req.send().await.unwrap();
    Answer {
        status: resp.status(),
        headers: resp.headers().clone(),
        body: resp.bytes().await.unwrap().to_vec(),
    }
}

/// A long poll against `root`, asking to be held `wait` seconds.
async fn long_poll(url: &str, root: &ContentHash, wait: u64) -> Answer {
    get(
        url,
        &[
            (IF_NONE_MATCH.as_str(), format!("\"{root}\"")),
            ("prefer", format!("wait={wait}")),
        ],
    )
    .await
}

fn etag(headers: &HeaderMap) -> ContentHash {
    let tag = headers.get(ETAG).expect("an ETag").to_str().unwrap();
    ContentHash::parse(tag.trim_matches('"')).expect("the ETag is a root hash")
}

fn applied(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("preference-applied")
        .map(|v| v.to_str().unwrap())
}

/// Waits for `fut` within [`DEADLINE`].
async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {DEADLINE:?}"))
}

/// Starts `d.wait_for_change()` in the background and checks that it is still waiting after
/// `settle`: nothing the test did so far may count as a change.
async fn still_waiting(
    d: &Arc<HttpDriver>,
    settle: Duration,
    why: &str,
) -> JoinHandle<Result<Watch, hypertask_core::DriverError>> {
    let waiting = {
        let d = d.clone();
        tokio::spawn(async move { d.wait_for_change().await })
    };
    tokio::time::sleep(settle).await;
    if waiting.is_finished() {
        panic!("{why}: {:?}", waiting.await);
    }
    waiting
}

/// Spawns a long poll and returns once the server holds it: with `max_long_polls = 1`, a
/// probe that is answered at once without `Preference-Applied` shows the slot is taken. (The
/// spawned poll is sent again while a probe holds the slot.)
async fn held(srv: &Server, root: &ContentHash) -> JoinHandle<Answer> {
    let (url, r) = (srv.url.clone(), root.clone());
    let poll = tokio::spawn(async move {
        loop {
            let a = long_poll(&url, &r, LONG).await;
            if a.status != StatusCode::NOT_MODIFIED || applied(&a.headers).is_some() {
                return a;
            }
        }
    });
    within("the first long poll held", async {
        loop {
            let probe = long_poll(&srv.url, root, 1).await;
            assert_eq!(probe.status, StatusCode::NOT_MODIFIED);
            if applied(&probe.headers).is_none() {
                return;
            }
        }
    })
    .await;
    poll
}

#[tokio::test]
async fn capabilities_advertise_the_long_poll() {
    let srv = Server::start(ServerOptions::default()).await;
    let caps: Value = reqwest::Client::new()
        .get(format!("{}/capabilities", srv.url))
        .header(AUTHORIZATION, format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(caps["long_poll"], true, "{caps}");
    let a = get(&srv.url, &[]).await;
    assert_eq!(a.headers.get("hypertask-long-poll").unwrap(), "true");

    let off = Server::start(ServerOptions {
        max_long_polls: 0,
        ..Default::default()
    })
    .await;
    let caps: Value = reqwest::Client::new()
        .get(format!("{}/capabilities", off.url))
        .header(AUTHORIZATION, format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(caps["long_poll"], false, "{caps}");
    let root = off.root().await;
    assert!(get(&off.url, &[])
        .await
        .headers
        .get("hypertask-long-poll")
        .is_none());
    // Switched off, `Prefer: wait` is ignored: a plain conditional GET.
    let a = within(
        "a long poll to a server without them",
        long_poll(&off.url, &root, LONG),
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_MODIFIED);
    assert_eq!(applied(&a.headers), None);
}

#[tokio::test]
async fn a_held_request_answers_as_soon_as_another_client_writes() {
    let srv = Server::notified_only().await;
    let root = srv.root().await;
    let (url, r) = (srv.url.clone(), root.clone());
    let poll = tokio::spawn(async move { long_poll(&url, &r, LONG).await });
    // Give the request time to be held (if it arrives after the write, it is answered at
    // once all the same: either way only the write can answer it within the deadline).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!poll.is_finished(), "the long poll was not held");
    srv.write_through("t1", "written by another client").await;

    let a = within("the held request's answer", poll).await.unwrap();
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(applied(&a.headers), Some(&*format!("wait={LONG}")));
    let listed: Value = serde_json::from_slice(&a.body).unwrap();
    assert!(listed.get("t1").is_some(), "{listed}");
    assert_ne!(etag(&a.headers), root);
    assert_eq!(etag(&a.headers), srv.root().await);
}

#[tokio::test]
async fn a_write_the_server_did_not_make_is_seen_at_the_next_recheck() {
    let srv = Server::start(ServerOptions {
        long_poll_max_wait: Duration::from_secs(LONG),
        long_poll_recheck: Duration::from_millis(200),
        ..Default::default()
    })
    .await;
    let root = srv.root().await;
    let (url, r) = (srv.url.clone(), root.clone());
    let poll = tokio::spawn(async move { long_poll(&url, &r, LONG).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Another writer of the same store (another server on the same database, say).
    StoreDriver::new(srv.store.clone())
        .resolve(Batch::from([(
            TaskId::new("t2").unwrap(),
            Some(task(
                json!({"id": "t2", "description": "written behind the server"}),
            )),
        )]))
        .await
        .unwrap();
    let a = within("the held request's answer", poll).await.unwrap();
    assert_eq!(a.status, StatusCode::OK);
    assert_ne!(etag(&a.headers), root);
}

#[tokio::test]
async fn with_nothing_changed_the_answer_is_304_after_the_wait() {
    let srv = Server::start(ServerOptions {
        long_poll_max_wait: Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    let root = srv.root().await;
    let started = Instant::now();
    let a = within("the long poll's end", long_poll(&srv.url, &root, 1)).await;
    assert_eq!(a.status, StatusCode::NOT_MODIFIED);
    assert_eq!(etag(&a.headers), root);
    assert_eq!(applied(&a.headers), Some("wait=1"));
    // It was held (a timer never fires early).
    assert!(started.elapsed() >= Duration::from_secs(1));

    // A longer wait is cut to the server's cap, and says so.
    let a = within(
        "the capped long poll's end",
        long_poll(&srv.url, &root, LONG),
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_MODIFIED);
    assert_eq!(applied(&a.headers), Some("wait=1"));
}

#[tokio::test]
async fn beyond_the_held_request_cap_a_long_poll_is_a_plain_conditional_get() {
    let srv = Server::start(ServerOptions {
        long_poll_max_wait: Duration::from_secs(LONG),
        long_poll_recheck: NEVER,
        max_long_polls: 1,
        ..Default::default()
    })
    .await;
    let root = srv.root().await;
    // `held` returns only once a probe beyond the cap was answered at once, unheld.
    let first = held(&srv, &root).await;
    let beyond = within("a request beyond the cap", long_poll(&srv.url, &root, LONG)).await;
    assert_eq!(beyond.status, StatusCode::NOT_MODIFIED);
    assert_eq!(etag(&beyond.headers), root);
    assert_eq!(applied(&beyond.headers), None);
    assert!(!first.is_finished());
    srv.write_through("t3", "while the slot is taken").await;
    let a = within("the held request's answer", first).await.unwrap();
    assert_eq!(a.status, StatusCode::OK);
}

#[tokio::test]
async fn shutdown_answers_held_requests_at_once() {
    let mut srv = Server::start(ServerOptions {
        long_poll_max_wait: Duration::from_secs(LONG),
        long_poll_recheck: NEVER,
        max_long_polls: 1,
        ..Default::default()
    })
    .await;
    let root = srv.root().await;
    let poll = held(&srv, &root).await;
    let _ = srv.stop.take().unwrap().send(());
    let a = within("the held request's answer on shutdown", poll)
        .await
        .unwrap();
    assert_eq!(a.status, StatusCode::NOT_MODIFIED);
    assert_eq!(etag(&a.headers), root);
    within("the server's stop", &mut srv.task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn conditional_gets_without_a_wait_are_answered_at_once() {
    let srv = Server::notified_only().await;
    let root = srv.root().await;
    // v1.0 and ETag clients: no `Prefer`.
    let a = within("a plain conditional GET", async {
        get(&srv.url, &[(IF_NONE_MATCH.as_str(), format!("\"{root}\""))]).await
    })
    .await;
    assert_eq!(a.status, StatusCode::NOT_MODIFIED);
    assert_eq!(etag(&a.headers), root);
    assert_eq!(applied(&a.headers), None);
    // `wait=0`, a malformed wait, and a wait without `If-None-Match` are not held either.
    for headers in [
        vec![
            (IF_NONE_MATCH.as_str(), format!("\"{root}\"")),
            ("prefer", "wait=0".to_owned()),
        ],
        vec![
            (IF_NONE_MATCH.as_str(), format!("\"{root}\"")),
            ("prefer", "wait=later".to_owned()),
        ],
        vec![("prefer", format!("wait={LONG}"))],
        vec![
            (IF_NONE_MATCH.as_str(), "*".to_owned()),
            ("prefer", format!("wait={LONG}")),
        ],
    ] {
        let a = within("a request that is not a long poll", get(&srv.url, &headers)).await;
        assert!(
            matches!(a.status, StatusCode::OK | StatusCode::NOT_MODIFIED),
            "{headers:?}: {}",
            a.status
        );
        assert_eq!(applied(&a.headers), None, "{headers:?}");
    }
    // A root that already differs is answered at once, listing and all.
    let stale = ContentHash::of_bytes(b"an old root");
    let a = within(
        "a long poll against a stale root",
        long_poll(&srv.url, &stale, LONG),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(etag(&a.headers), root);
}

#[tokio::test]
async fn held_requests_do_not_take_the_request_limit() {
    let srv = Server::start(ServerOptions {
        long_poll_max_wait: Duration::from_secs(LONG),
        long_poll_recheck: NEVER,
        max_concurrent_requests: 1,
        ..Default::default()
    })
    .await;
    let root = srv.root().await;
    let mut polls = Vec::new();
    for _ in 0..3 {
        let (url, r) = (srv.url.clone(), root.clone());
        polls.push(tokio::spawn(async move { long_poll(&url, &r, LONG).await }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // With one request permit and three held requests, writes and listings still go through.
    srv.write_through("t4", "past three held requests").await;
    for poll in polls {
        let a = within("a held request's answer", poll).await.unwrap();
        assert_eq!(a.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn the_driver_waits_for_changes_with_the_long_poll() {
    let srv = Server::notified_only().await;
    let d = Arc::new(srv.driver("watcher", |_| {}));
    // The first call answers once the watch is in place.
    assert_eq!(
        within("the first call", d.wait_for_change()).await.unwrap(),
        Watch::Changed
    );
    let waiting = still_waiting(
        &d,
        Duration::from_millis(300),
        "nothing changed, yet the driver answered",
    )
    .await;
    srv.write_through("t5", "for the watcher").await;
    let w = within("the driver's answer", waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(w, Watch::Changed);

    // A change between two calls is not lost: the next call answers at once.
    srv.write_through("t6", "between two calls").await;
    let w = within("the next call", d.wait_for_change()).await.unwrap();
    assert_eq!(w, Watch::Changed);

    // A change a listing (a sync) already saw is not reported again: the driver waits.
    srv.write_through("t8", "seen by a sync").await;
    let _ = d.hashes(None).await.unwrap();
    let waiting = still_waiting(
        &d,
        Duration::from_millis(300),
        "the root the sync saw did not count",
    )
    .await;
    waiting.abort();
}

#[tokio::test]
async fn the_driver_holds_again_after_a_wait_that_ends_unchanged() {
    // The server cuts every wait to one second: the driver sees 304s and keeps waiting.
    let srv = Server::start(ServerOptions {
        long_poll_max_wait: Duration::from_secs(1),
        long_poll_recheck: NEVER,
        ..Default::default()
    })
    .await;
    let d = Arc::new(srv.driver("watcher", |_| {}));
    assert_eq!(d.wait_for_change().await.unwrap(), Watch::Changed);
    // Several held requests end unchanged meanwhile.
    let waiting = still_waiting(
        &d,
        Duration::from_millis(2500),
        "a 304 after the wait was taken for a change",
    )
    .await;
    srv.write_through("t7", "after a few waits").await;
    let w = within("the driver's answer", waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(w, Watch::Changed);
}

#[tokio::test]
async fn without_the_long_poll_the_driver_leaves_polling_to_the_caller() {
    // A server that does not hold long polls.
    let off = Server::start(ServerOptions {
        max_long_polls: 0,
        ..Default::default()
    })
    .await;
    let d = off.driver("w", |_| {});
    assert_eq!(d.wait_for_change().await.unwrap(), Watch::Unsupported);
    // A v1.0 server (no `/capabilities`, no ETag).
    let mem = Arc::new(MemoryStore::new("v1"));
    let v1 =
        TestServer::start_router(mem.clone(), v1_router(Arc::new(StoreDriver::new(mem)))).await;
    let d = HttpDriver::new("w", HttpConfig::new(&v1.url)).unwrap();
    assert_eq!(d.wait_for_change().await.unwrap(), Watch::Unsupported);
    // A client with the long poll turned off.
    let srv = Server::notified_only().await;
    let d = srv.driver("w", |c| c.long_poll_secs = 0);
    assert_eq!(d.wait_for_change().await.unwrap(), Watch::Unsupported);
}

#[tokio::test]
async fn an_unreachable_server_is_a_retryable_error() {
    let mut srv = Server::notified_only().await;
    let d = srv.driver("w", |c| c.retries = 0);
    assert_eq!(d.wait_for_change().await.unwrap(), Watch::Changed);
    let _ = d.hashes(None).await.unwrap();
    let _ = srv.stop.take().unwrap().send(());
    within("the server's stop", &mut srv.task)
        .await
        .unwrap()
        .unwrap();
    let e = within("the driver's answer", d.wait_for_change())
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "{e}");
}

#[tokio::test]
async fn the_long_poll_outlives_the_request_timeout() {
    let srv = Server::notified_only().await;
    // Requests time out after half a second; a long poll is allowed its wait on top.
    let d = Arc::new(srv.driver("watcher", |c| {
        c.timeout_secs = 0.5;
        c.retries = 0;
        c.long_poll_secs = 20;
    }));
    assert_eq!(d.wait_for_change().await.unwrap(), Watch::Changed);
    let _ = d.hashes(None).await.unwrap();
    let waiting = still_waiting(&d, Duration::from_millis(1500), "the long poll ended early").await;
    srv.write_through("t9", "after the request timeout").await;
    let w = within("the driver's answer", waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(w, Watch::Changed);
}
