//! What the server offers, learnt by the client from `GET /capabilities` or from the
//! `Hypertask-*` headers of a `/hashes` answer.

use hypertask_core::DriverError;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;

use crate::transport::Transport;
use crate::wire::{
    CapabilitiesDoc, BUCKETS_HEADER, LONG_POLL_HEADER, MAX_BATCH_HEADER, MAX_BODY_HEADER,
    PROTOCOL_HEADER,
};

/// The batch size assumed until the server's `/capabilities` has been read.
pub(crate) const DEFAULT_MAX_BATCH: usize = hypertask_core::DEFAULT_BATCH;
/// Largest `/capabilities` answer read.
const CAPABILITIES_BYTES: usize = 64 * 1024;

/// What the server said it can do.
#[derive(Debug, Clone)]
pub(crate) struct ServerCaps {
    /// `Some(n)`: `POST /tasks` with at most `n` tasks. `None`: v1.0 only.
    pub(crate) max_batch: Option<usize>,
    /// The largest request body it accepts, when it says so.
    pub(crate) max_body: Option<usize>,
    /// The protocol versions it speaks.
    pub(crate) protocol: Vec<String>,
    /// It holds `GET /hashes` long polls (`Prefer: wait=N`).
    pub(crate) long_poll: bool,
    /// It answers `GET /buckets` and `GET /hashes?buckets=…` (protocol 1.2).
    pub(crate) buckets: bool,
}

impl ServerCaps {
    /// A v1.0 server: one task per request.
    fn v1() -> ServerCaps {
        ServerCaps {
            max_batch: None,
            max_body: None,
            protocol: vec!["1.0".into()],
            long_poll: false,
            buckets: false,
        }
    }
}

/// `GET /capabilities`; a 404 or 405 means a v1.0 server.
pub(crate) async fn fetch(t: &Transport) -> Result<ServerCaps, DriverError> {
    let what = "GET /capabilities";
    let url = t.endpoint("capabilities");
    let answer = t
        .send(what, CAPABILITIES_BYTES, || t.client().get(url.clone()))
        .await?;
    match answer.status {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => return Ok(ServerCaps::v1()),
        _ => return Err(t.origin.unexpected(what, &answer)),
    }
    let doc: CapabilitiesDoc = serde_json::from_slice(&answer.body).map_err(|e| {
        t.origin.protocol(
            what,
            format_args!("a body that is not a capabilities object: {e}"),
        )
    })?;
    let protocol = doc.protocol.unwrap_or_else(|| vec!["1.0".into()]);
    let max_batch = if protocol.iter().any(|p| p == "1.1") {
        match doc.max_batch {
            None => Some(DEFAULT_MAX_BATCH),
            Some(0) => {
                return Err(t
                    .origin
                    .protocol(what, "`max_batch` = 0, not a positive integer"))
            }
            Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        }
    } else {
        None
    };
    let caps = ServerCaps {
        max_batch,
        max_body: doc.max_body_bytes.and_then(|n| usize::try_from(n).ok()),
        protocol,
        long_poll: doc.long_poll,
        buckets: doc.buckets,
    };
    tracing::debug!(driver = %t.origin.name, ?caps, "server capabilities");
    Ok(caps)
}

/// Batching capabilities repeated in `Hypertask-*` headers of a `/hashes` answer, when they
/// offer protocol 1.1.
pub(crate) fn advertised(headers: &HeaderMap) -> Option<ServerCaps> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let protocol: Vec<String> = text(PROTOCOL_HEADER)?
        .split(',')
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    if !protocol.iter().any(|p| p == "1.1") {
        return None;
    }
    let max_batch = text(MAX_BATCH_HEADER)?
        .trim()
        .parse::<usize>()
        .ok()
        .filter(|&n| n >= 1)?;
    let max_body = text(MAX_BODY_HEADER).and_then(|v| v.trim().parse().ok());
    let flag = |name: &str| text(name).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    Some(ServerCaps {
        max_batch: Some(max_batch),
        max_body,
        protocol,
        long_poll: flag(LONG_POLL_HEADER),
        buckets: flag(BUCKETS_HEADER),
    })
}
