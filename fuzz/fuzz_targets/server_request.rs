//! Arbitrary requests to the sync server: it never panics, answers only the statuses of
//! docs/http-protocol.md, and never stores anything that is not a valid task.
//!
//! Input layout: first byte picks the method, bytes up to the first NUL are the path, the next
//! run up to a NUL is the Authorization header, the rest is the body.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::Request;
use hypertask_core::{Driver, Listing, MemoryStore, StoreDriver};
use hypertask_driver_http::{router, ServerOptions};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(3, |&b| b == 0);
    let path = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let auth = parts.next().unwrap_or_default().to_vec();
    let body = parts.next().unwrap_or_default().to_vec();
    let method = ["GET", "POST", "PUT", "DELETE"][usize::from(m) % 4];
    let path = if path.starts_with('/') { path } else { format!("/{path}") };
    let mut req = Request::builder().method(method).uri(path.as_str());
    // Half the inputs carry the right token, so the handlers behind auth are reached.
    req = if m & 0x80 == 0 {
        req.header("authorization", "Bearer fuzz-token")
    } else {
        match axum::http::HeaderValue::from_bytes(&auth) {
            Ok(v) => req.header("authorization", v),
            Err(_) => req,
        }
    };
    let Ok(req) = req.header("content-type", "application/json").body(Body::from(body)) else {
        return;
    };
    runtime().block_on(async {
        let store: Arc<dyn Driver> = Arc::new(StoreDriver::new(MemoryStore::new("fuzz")));
        let app = router(
            store.clone(),
            ServerOptions {
                token: Some("fuzz-token".into()),
                max_batch: 16,
                max_body_bytes: 64 * 1024,
                ..Default::default()
            },
        );
        let status = app.oneshot(req).await.expect("infallible").status().as_u16();
        assert!(
            matches!(status, 200 | 304 | 400 | 401 | 404 | 405 | 408 | 409 | 413 | 415 | 500 | 503),
            "unexpected status {status} for {method} {path}"
        );
        // Whatever was stored is a valid task under its own id.
        if let Listing::Changed(inv) = store.hashes(None).await.expect("memory store lists") {
            assert!(inv.problems.is_empty());
        }
    });
});
