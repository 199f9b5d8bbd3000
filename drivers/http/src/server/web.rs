//! The web client (`web/`), served at `/` from files built into the binary: nothing is fetched
//! at run time and no JavaScript toolchain is needed to build it. The page signs in with the
//! server's token and then speaks the same protocol as any client, so these routes need no
//! token themselves; they hand out nothing but the page.
//!
//! Every answer forbids what the page does not need: scripts, styles and requests from this
//! server only, no framing, no referrer, no MIME sniffing. No CORS header is sent unless
//! `cors_origins` names other origins (a web client hosted elsewhere), so other sites' pages
//! cannot read the answers of this server.

use axum::http::header::{AUTHORIZATION, ETAG, IF_NONE_MATCH, RETRY_AFTER};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::ServerOptions;
use crate::wire::{
    BUCKETS_HEADER, LONG_POLL_HEADER, MAX_BATCH_HEADER, MAX_BODY_HEADER, PREFERENCE_APPLIED_HEADER,
    PREFER_HEADER, PROTOCOL_HEADER,
};

/// Only this server's own files and endpoints; no inline script or style, no plugins, no frames.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// A file of the page and its media type.
struct Asset {
    body: &'static str,
    media_type: &'static str,
}

const INDEX: Asset = Asset {
    body: include_str!("web/index.html"),
    media_type: "text/html; charset=utf-8",
};
const SCRIPT: Asset = Asset {
    body: include_str!("web/app.js"),
    media_type: "text/javascript; charset=utf-8",
};
const STYLE: Asset = Asset {
    body: include_str!("web/app.css"),
    media_type: "text/css; charset=utf-8",
};

impl IntoResponse for &'static Asset {
    fn into_response(self) -> Response {
        let mut resp = self.body.into_response();
        let headers = resp.headers_mut();
        for (name, value) in [
            (CONTENT_TYPE, self.media_type),
            (CONTENT_SECURITY_POLICY, CSP),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (X_FRAME_OPTIONS, "DENY"),
            (REFERRER_POLICY, "no-referrer"),
            // The page changes with the binary: always revalidate.
            (CACHE_CONTROL, "no-cache"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        resp
    }
}

/// `GET /`, `/app.js` and `/app.css`, without authentication.
pub(super) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { &INDEX }))
        .route("/app.js", get(|| async { &SCRIPT }))
        .route("/app.css", get(|| async { &STYLE }))
}

/// `router` answering cross-origin requests from `cors_origins` (preflights included, before
/// authentication, as browsers send them without the token); unchanged when there are none.
pub(super) fn with_cors(router: Router, opts: &ServerOptions) -> Router {
    if opts.cors_origins.is_empty() {
        return router;
    }
    let origins: Vec<HeaderValue> = opts
        .cors_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    let ours = |names: &[&'static str]| -> Vec<HeaderName> {
        names.iter().map(|n| HeaderName::from_static(n)).collect()
    };
    let mut exposed = ours(&[
        PREFERENCE_APPLIED_HEADER,
        PROTOCOL_HEADER,
        MAX_BATCH_HEADER,
        MAX_BODY_HEADER,
        LONG_POLL_HEADER,
        BUCKETS_HEADER,
    ]);
    exposed.extend([ETAG, RETRY_AFTER]);
    let mut allowed = ours(&[PREFER_HEADER]);
    allowed.extend([AUTHORIZATION, CONTENT_TYPE, IF_NONE_MATCH]);
    router.layer(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers(allowed)
            .expose_headers(exposed)
            .max_age(std::time::Duration::from_secs(600)),
    )
}
