//! `serve`: the HTTP sync server (docs/http-protocol.md) over a store built from
//! `[server] store`, with the limits of `[server]` (SECURITY.md).

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use hypertask_core::{ContentHash, Registry, Secret};
use hypertask_driver_http::{
    serve as run_server, serve_users, shutdown_signal, Credential, ServerOptions, User,
};
use serde_json::{json, Value};

use crate::settings::{ServerSettings, Settings, UserSettings};
use crate::Usage;

/// Where the server listens when neither `--listen` nor `[server] listen` says.
const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

/// Runs the server until SIGINT/SIGTERM. Refuses to start without a token unless
/// `allow_no_auth = true` and the address is a loopback one.
pub(crate) fn serve(
    settings: &Settings,
    registry: &Registry,
    listen: Option<String>,
) -> Result<bool> {
    let server = settings.server.clone().unwrap_or_default();
    let listen = listen
        .or(server.listen.clone())
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let addr: SocketAddr = listen.parse().map_err(|_| {
        Usage(format!(
            "'{listen}' is not an address to listen on (e.g. 127.0.0.1:7878)"
        ))
    })?;
    let token = server.token.clone().filter(|t| !t.is_empty());
    let options = options(&server, token.clone()).map_err(|e| Usage(format!("[server] {e}")))?;
    if token.is_some() && !server.users.is_empty() {
        return Err(Usage(
            "[server] token and [server.users.NAME] cannot both be set: with users, each signs in with their own token"
                .into(),
        )
        .into());
    }
    if token.is_none() && server.users.is_empty() {
        if !server.allow_no_auth {
            bail!(
                "refusing to serve without a token: set [server] token (or HYPERTASK_SERVER__TOKEN), \
                 or set [server] allow_no_auth = true to serve a loopback address without authentication"
            );
        }
        if !addr.ip().is_loopback() {
            bail!("refusing to serve {addr} without a token: allow_no_auth only applies to loopback addresses");
        }
    }

    // The store: `[server] store = { type = "…", … }`, by default one SQLite file in the data
    // dir; a data dir that already serves from the directory store of earlier versions keeps it.
    let mut store = server.store.clone().unwrap_or_else(|| {
        let (dir, file) = (
            settings.data_dir.join("server"),
            settings.data_dir.join("server.sqlite3"),
        );
        if dir.is_dir() && !file.exists() {
            json!({ "type": "fs", "path": dir, "create": true })
        } else {
            json!({ "type": "sqlite", "path": file, "create": true })
        }
    });
    let kind = match store.as_object_mut().and_then(|t| t.remove("type")) {
        Some(Value::String(kind)) => kind,
        _ => bail!("[server] store needs a type, e.g. store = {{ type = \"fs\", path = \"…\" }}"),
    };
    let spec = crate::remote::spec_of(settings, "server-store", &kind, &store)?;
    // Several users: one namespace of the store each, built before anything listens.
    let users = server
        .users
        .iter()
        .map(|(name, user)| {
            let credential = credential(name, user).map_err(Usage)?;
            let spec = spec
                .clone()
                .with_namespace(name.as_str())
                .map_err(|e| Usage(format!("[server.users.{name}]: {}", e.message())))?;
            let store = registry.build(&spec)?;
            Ok(User {
                name: name.clone(),
                credential,
                store: std::sync::Arc::new(store),
            })
        })
        .collect::<Result<Vec<User>>>()?;

    let runtime = crate::remote::runtime()?;
    let _entered = runtime.enter();
    let store = registry.build(&spec)?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let whose = if users.is_empty() {
            String::new()
        } else {
            format!(" for {} users", users.len())
        };
        // Never `eprintln!`: a server whose stderr is closed or full keeps serving.
        let _ = writeln!(
            std::io::stderr(),
            "hypertask: serving http://{}{whose} from a {} store; Ctrl-C stops",
            listener.local_addr()?,
            spec.kind
        );
        if users.is_empty() {
            run_server(
                listener,
                std::sync::Arc::new(store),
                options,
                shutdown_signal(),
            )
            .await?;
        } else {
            serve_users(listener, users, options, shutdown_signal()).await?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(true)
}

/// How `[server.users.NAME]` signs in: exactly one of `token` and `token_sha256`.
fn credential(name: &str, user: &UserSettings) -> Result<Credential, String> {
    let table = format!("[server.users.{name}]");
    match (&user.token, &user.token_sha256) {
        (Some(token), None) => {
            hypertask_driver_http::check_token(token.expose())
                .map_err(|e| format!("{table} token: {e}"))?;
            Ok(Credential::Token(token.clone()))
        }
        (None, Some(hex)) => ContentHash::parse(hex.trim())
            .map(Credential::Sha256)
            .ok_or_else(|| {
                format!(
                    "{table} token_sha256 must be 64 lowercase hex digits (printf %s TOKEN | sha256sum)"
                )
            }),
        (Some(_), Some(_)) => Err(format!("{table} has both token and token_sha256; keep one")),
        (None, None) => Err(format!("{table} needs a token (or token_sha256)")),
    }
}

/// The server options of `[server]`: each limit key left out keeps its default.
fn options(server: &ServerSettings, token: Option<Secret>) -> Result<ServerOptions, String> {
    let d = ServerOptions::default();
    let secs = |key: &str, v: Option<f64>, default: Duration| match v {
        None => Ok(default),
        Some(v) => Duration::try_from_secs_f64(v)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("`{key}` must be a positive number of seconds, not {v}")),
    };
    let options = ServerOptions {
        token,
        max_batch: server.max_batch.unwrap_or(d.max_batch),
        max_body_bytes: server.max_body_bytes.unwrap_or(d.max_body_bytes),
        max_task_bytes: server.max_task_bytes.unwrap_or(d.max_task_bytes),
        max_connections: server.max_connections.unwrap_or(d.max_connections),
        max_concurrent_requests: server
            .max_concurrent_requests
            .unwrap_or(d.max_concurrent_requests),
        max_inflight_body_bytes: server
            .max_inflight_body_bytes
            .unwrap_or(d.max_inflight_body_bytes),
        header_timeout: secs(
            "header_timeout_secs",
            server.header_timeout_secs,
            d.header_timeout,
        )?,
        idle_timeout: secs(
            "idle_timeout_secs",
            server.idle_timeout_secs,
            d.idle_timeout,
        )?,
        body_timeout: secs(
            "body_timeout_secs",
            server.body_timeout_secs,
            d.body_timeout,
        )?,
        request_timeout: secs(
            "request_timeout_secs",
            server.request_timeout_secs,
            d.request_timeout,
        )?,
        long_poll_max_wait: server
            .long_poll_max_wait_secs
            .map_or(d.long_poll_max_wait, Duration::from_secs),
        max_long_polls: server.max_long_polls.unwrap_or(d.max_long_polls),
        long_poll_recheck: secs(
            "long_poll_recheck_secs",
            server.long_poll_recheck_secs,
            d.long_poll_recheck,
        )?,
        max_requests_per_minute: server.max_requests_per_minute,
        max_tasks: server.max_tasks_per_user,
        cors_origins: server.cors_origins.clone(),
    };
    options.validate()?;
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_come_from_server_settings() {
        let s = ServerSettings {
            max_connections: Some(7),
            idle_timeout_secs: Some(0.5),
            ..Default::default()
        };
        let o = options(&s, Some("tok".into())).unwrap();
        assert_eq!(o.max_connections, 7);
        assert_eq!(o.idle_timeout, Duration::from_millis(500));
        assert_eq!(o.max_batch, ServerOptions::default().max_batch);

        let e = options(&s, Some(" tok".into())).unwrap_err();
        assert!(e.contains("whitespace"), "{e}");
        let bad = ServerSettings {
            body_timeout_secs: Some(-1.0),
            ..Default::default()
        };
        assert!(options(&bad, None)
            .unwrap_err()
            .contains("body_timeout_secs"));
        let zero = ServerSettings {
            max_batch: Some(0),
            ..Default::default()
        };
        assert!(options(&zero, None).unwrap_err().contains("max_batch"));
    }
}
