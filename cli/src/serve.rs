//! `serve`: the HTTP sync server of DESIGN.md §5 over a store built from `[server] store`.

use std::net::SocketAddr;

use anyhow::{bail, Context as _, Result};
use hypertask_core::Registry;
use hypertask_driver_http::{serve as run_server, shutdown_signal, ServerOptions};
use serde_json::{json, Value};

use crate::settings::Settings;
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
    if token.is_none() {
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

    let runtime = crate::remote::runtime()?;
    let _entered = runtime.enter();
    let store = registry.build(&spec)?;
    let options = ServerOptions {
        token,
        ..ServerOptions::default()
    };
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        eprintln!(
            "hypertask: serving http://{} from a {} store; Ctrl-C stops",
            listener.local_addr()?,
            spec.kind
        );
        run_server(
            listener,
            std::sync::Arc::new(store),
            options,
            shutdown_signal(),
        )
        .await?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(true)
}
