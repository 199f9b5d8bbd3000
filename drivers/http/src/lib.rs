//! The http driver for hypertask, and the sync server it talks to (docs/http-protocol.md).
//!
//! - [`HttpDriver`] (kind `http`): the client. `[drivers.NAME] type = "http"` with `url`,
//!   optional `token`, `timeout_secs`, `connect_timeout_secs`, `retries`, `max_tasks` and
//!   `long_poll_secs` ([`HttpConfig`]). It uses `/capabilities`, ETags, `POST /tasks` batches,
//!   bucketed listings (`/buckets`) and the `GET /hashes` long poll (for the daemon) when the
//!   server offers them and falls back to whole listings and v1.0 `POST /task/:id` otherwise.
//! - `router` / `serve` (feature `server`): the axum server behind `hypertask serve`, storing
//!   through any [`hypertask_core::Driver`] (usually a store-backed driver built from the
//!   registry). A client-only user leaves the feature off and does not compile axum.
//!
//! Modules: `wire` (the JSON bodies and headers both sides use), `transport` (the client's
//! requests, retries and capped reads), `capabilities` and `listing` (reading what a server
//! says), `driver` (the [`hypertask_core::Driver`]) with `resolve` and `buckets` (its batches
//! and its bucketed listing), `server` (behind the feature).
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod buckets;
mod capabilities;
mod config;
mod driver;
mod error;
mod listing;
mod resolve;
#[cfg(feature = "server")]
mod server;
mod transport;
mod wire;

use std::sync::Arc;

use hypertask_core::Registry;

pub use config::{check_token, HttpConfig, DEFAULT_LONG_POLL_SECS, DEFAULT_MAX_TASKS, MAX_RETRIES};
pub use driver::HttpDriver;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub use server::{
    router, serve, serve_users, shutdown_signal, users_router, Credential, ServerOptions, User,
};

/// The driver kind, as in `type = "http"`.
pub const KIND: &str = "http";

/// Registers the http driver's factory.
pub fn register(registry: &mut Registry) {
    registry.register(KIND, |spec| {
        let config: HttpConfig = spec.config()?;
        Ok(Arc::new(
            HttpDriver::new(&spec.name, config)?.with_max_task_bytes(spec.max_task_bytes),
        ))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use hypertask_core::{Driver, DriverSpec, ErrorKind};

    fn spec(options: serde_json::Value) -> DriverSpec {
        DriverSpec::new("server", KIND, options, std::env::temp_dir())
    }

    #[test]
    fn the_registry_builds_http_drivers() {
        let mut registry = Registry::new();
        register(&mut registry);
        let d = registry
            .build(&spec(serde_json::json!({
                "url": "http://127.0.0.1:7878", "token": "t", "timeout_secs": 5
            })))
            .unwrap();
        assert_eq!(
            (d.info().kind.as_str(), d.info().name.as_str()),
            ("http", "server")
        );
        assert!(d.info().capabilities.remote);

        for (options, needle) in [
            (serde_json::json!({"token": "t"}), "url"),
            (
                serde_json::json!({"url": "http://h", "colour": "red"}),
                "colour",
            ),
            (
                serde_json::json!({"url": "http://h", "timeout_secs": -1}),
                "timeout_secs",
            ),
        ] {
            let e = registry.build(&spec(options)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config);
            let msg = e.to_string();
            assert!(msg.starts_with("driver 'server': "), "{msg}");
            assert!(msg.contains(needle), "{msg}");
        }
    }
}
