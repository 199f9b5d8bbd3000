//! What browsers see: the web client's files (public, locked down by their headers) and CORS,
//! closed unless `cors_origins` lists an origin. Over real HTTP on loopback.

mod common;

use common::{bearer, call_with, TestServer, TOKEN};
use hypertask_driver_http::ServerOptions;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};

#[tokio::test]
async fn the_web_client_is_public_and_locked_down_and_no_cors_by_default() {
    let srv = TestServer::with_token().await;
    for (path, media) in [
        ("/", "text/html; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/app.css", "text/css; charset=utf-8"),
    ] {
        let a = call_with(
            Method::GET,
            &srv.endpoint(path),
            None,
            None,
            HeaderMap::new(),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{path} needs no token");
        assert_eq!(a.headers["content-type"], media);
        let csp = a.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert_eq!(a.headers["x-content-type-options"], "nosniff");
        assert_eq!(a.headers["x-frame-options"], "DENY");
    }
    // The page's source never holds a token and the protocol still needs one.
    let a = call_with(
        Method::GET,
        &srv.endpoint("/"),
        None,
        None,
        HeaderMap::new(),
    )
    .await;
    assert!(!String::from_utf8_lossy(&a.body).contains(TOKEN));
    assert_eq!(
        call_with(
            Method::GET,
            &srv.endpoint("/hashes"),
            None,
            None,
            HeaderMap::new()
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    // No CORS header, whatever the origin and even for a preflight.
    let mut h = HeaderMap::new();
    h.insert("origin", "https://evil.example".parse().unwrap());
    let a = call_with(
        Method::GET,
        &srv.endpoint("/hashes"),
        Some(&bearer()),
        None,
        h.clone(),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.headers.get("access-control-allow-origin").is_none());
    h.insert("access-control-request-method", "GET".parse().unwrap());
    let a = call_with(Method::OPTIONS, &srv.endpoint("/hashes"), None, None, h).await;
    assert!(a.headers.get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn configured_origins_get_cors_and_others_do_not() {
    let srv = TestServer::start(ServerOptions {
        token: Some(TOKEN.into()),
        cors_origins: vec!["https://tasks.example.org".into()],
        ..ServerOptions::default()
    })
    .await;
    let preflight = |origin: &'static str| {
        let mut h = HeaderMap::new();
        h.insert("origin", origin.parse().unwrap());
        h.insert("access-control-request-method", "GET".parse().unwrap());
        h.insert(
            "access-control-request-headers",
            "authorization,if-none-match,prefer".parse().unwrap(),
        );
        h
    };
    // A preflight carries no token and is answered before authentication.
    let a = call_with(
        Method::OPTIONS,
        &srv.endpoint("/hashes"),
        None,
        None,
        preflight("https://tasks.example.org"),
    )
    .await;
    assert!(a.status.is_success(), "{}", a.status);
    assert_eq!(
        a.headers["access-control-allow-origin"],
        "https://tasks.example.org"
    );
    let allowed = a.headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("prefer"),
        "{allowed}"
    );
    let a = call_with(
        Method::OPTIONS,
        &srv.endpoint("/hashes"),
        None,
        None,
        preflight("https://evil.example"),
    )
    .await;
    assert!(a.headers.get("access-control-allow-origin").is_none());

    // The real request: the allowed origin may read the answer and its entity tag.
    let mut h = HeaderMap::new();
    h.insert("origin", "https://tasks.example.org".parse().unwrap());
    let a = call_with(
        Method::GET,
        &srv.endpoint("/hashes"),
        Some(&bearer()),
        None,
        h,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.headers["access-control-allow-origin"],
        "https://tasks.example.org"
    );
    let exposed = a.headers["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(exposed.contains("etag"), "{exposed}");
}

#[test]
fn an_origin_must_be_written_as_browsers_send_it() {
    for bad in [
        "tasks.example.org",
        "https://x.org/",
        "https://x.org/app",
        "ftp://x.org",
        "*",
    ] {
        let opts = ServerOptions {
            cors_origins: vec![bad.into()],
            ..ServerOptions::default()
        };
        assert!(opts.validate().is_err(), "{bad}");
    }
    let opts = ServerOptions {
        cors_origins: vec![
            "http://localhost:8080".into(),
            "https://tasks.example.org".into(),
        ],
        ..ServerOptions::default()
    };
    assert_eq!(opts.validate(), Ok(()));
}
