//! Request logging: method, path, status, never the token. Alone in its binary, so the global
//! subscriber sees every event.

mod common;

use std::sync::Arc;

use common::{TestServer, TOKEN};
use hypertask_core::Driver;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;
use serde_json::json;

/// Every request is logged with method, path and status; the token never is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_logged_without_the_token() {
    use std::io::Write;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let srv = TestServer::with_token().await;
    let body = json!({"client_state": {"id": "logged", "description": "x"}}).to_string();
    let http = reqwest::Client::new();
    let resp = http
        .post(srv.endpoint("/task/logged"))
        .header(AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = http
        .get(srv.endpoint("/hashes"))
        .header(AUTHORIZATION, "Bearer wrong-secret-value")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    srv.driver("server").hashes(None).await.unwrap();

    let log = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let requests: Vec<&str> = log.lines().filter(|l| l.contains("request")).collect();
    assert!(
        requests
            .iter()
            .any(|l| l.contains("POST") && l.contains("/task/logged") && l.contains("200")),
        "{log}"
    );
    assert!(
        requests
            .iter()
            .any(|l| l.contains("GET") && l.contains("/hashes") && l.contains("401")),
        "{log}"
    );
    assert!(
        !log.contains(TOKEN) && !log.contains("wrong-secret-value"),
        "{log}"
    );
}
