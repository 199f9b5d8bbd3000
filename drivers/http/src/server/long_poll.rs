//! Long polls of `GET /hashes` (docs/http-protocol.md, "Long poll"): a request with
//! `If-None-Match: "<root>"` and `Prefer: wait=N` (RFC 7240) is held until the served root
//! differs from `<root>` or N seconds pass (then `304`).
//!
//! - A held request waits outside the request-concurrency limit (it takes a request permit
//!   only while it reads the store) and gets its wait on top of the request timeout. At most
//!   `max_long_polls` are held; beyond that `Prefer` is ignored and the request is a plain
//!   conditional GET, answered at once.
//! - It wakes after each write batch made through this server, and at recheck ticks shared
//!   by every held request (multiples of `long_poll_recheck` from the server's start), for
//!   writers the server does not see. One read of the store's root serves every request
//!   woken by the same event, however many are held.
//! - When the server stops, held requests are answered `304` at once.

use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::http::header::{HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hypertask_core::{ContentHash, Listing};
use tokio::sync::{watch, Mutex, Semaphore};
use tokio::time::Instant;

use super::hashes::{hashes_answer, known_root, listing};
use super::{ApiError, AppState, ServerOptions};
use crate::wire::{PREFERENCE_APPLIED_HEADER, PREFER_HEADER};

/// What long polls share: the write notifier, the last read of the store's root, the slots
/// and the stop signal.
pub(super) struct Changes {
    /// Bumped after every write batch made through this server.
    writes: watch::Sender<u64>,
    /// The last shared read of the store's root.
    seen: Mutex<Option<Seen>>,
    /// One permit per held request.
    pub(super) slots: Semaphore,
    /// Becomes `true` when the server stops.
    stop: watch::Receiver<bool>,
    /// Keeps `stop` open when nobody else holds its sender (a bare [`super::router`]).
    _stop_tx: Option<watch::Sender<bool>>,
    /// Recheck ticks are multiples of the recheck interval from here, so that every held
    /// request wakes at the same instants and one read serves them all.
    epoch: Instant,
    recheck: Duration,
}

/// One read of the store's root.
struct Seen {
    root: ContentHash,
    /// When the read started: it reflects every change made before then.
    started: Instant,
    /// The write count when it started.
    writes: u64,
}

/// A request the limit middleware let through as a long poll (a request extension).
#[derive(Debug, Clone, Copy)]
pub(super) struct Hold {
    /// How long it may be held: the wait asked for, capped.
    pub(super) wait: Duration,
}

impl Changes {
    /// The shared state of a server with `opts`, stopping when `stop` becomes `true`
    /// (never, when `None`).
    pub(super) fn new(opts: &ServerOptions, stop: Option<watch::Receiver<bool>>) -> Changes {
        let (stop, stop_tx) = match stop {
            Some(rx) => (rx, None),
            None => {
                let (tx, rx) = watch::channel(false);
                (rx, Some(tx))
            }
        };
        Changes {
            writes: watch::channel(0).0,
            seen: Mutex::new(None),
            slots: Semaphore::new(opts.max_long_polls),
            stop,
            _stop_tx: stop_tx,
            epoch: Instant::now(),
            recheck: opts.long_poll_recheck.max(Duration::from_millis(1)),
        }
    }

    /// Wakes held requests after a write batch made through this server.
    pub(super) fn wrote(&self) {
        self.writes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The first recheck tick after `now`.
    fn next_tick(&self, now: Instant) -> Instant {
        let r = self.recheck.as_nanos().max(1);
        let elapsed = now.saturating_duration_since(self.epoch).as_nanos();
        let ticks = elapsed / r + 1;
        let nanos = u64::try_from(ticks.saturating_mul(r)).unwrap_or(u64::MAX);
        self.epoch + Duration::from_nanos(nanos)
    }

    /// Keeps `read` as the last read of the root when it is newer than the one kept.
    async fn record(&self, read: Seen) {
        let mut seen = self.seen.lock().await;
        if seen.as_ref().is_none_or(|s| s.started < read.started) {
            *seen = Some(read);
        }
    }

    /// The store's root as read after `writes` writes and, when given, not before `since`:
    /// the last shared read when it qualifies, else a new one (which the others then share).
    async fn root(
        &self,
        st: &AppState,
        writes: u64,
        since: Option<Instant>,
    ) -> Result<ContentHash, Response> {
        let mut seen = self.seen.lock().await;
        if let Some(s) = seen.as_ref() {
            if s.writes >= writes && since.is_none_or(|t| s.started >= t) {
                return Ok(s.root.clone());
            }
        }
        let started = Instant::now();
        let count = *self.writes.borrow();
        let prior = seen.as_ref().map(|s| s.root.clone());
        let _permit = st.requests.acquire().await.map_err(|_| stopping())?;
        let root = match st.store.hashes(prior.as_ref()).await {
            Ok(Listing::Changed(inventory)) => inventory.root(),
            Ok(Listing::Unchanged) => match prior {
                Some(root) => root,
                None => {
                    return Err(ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the store did not list its tasks",
                    )
                    .into_response())
                }
            },
            Err(e) => return Err(ApiError::store(&e).into_response()),
        };
        *seen = Some(Seen {
            root: root.clone(),
            started,
            writes: count,
        });
        Ok(root)
    }
}

/// How long `req` may be held, when it is a long poll this server holds: `GET /hashes` (not
/// restricted to buckets) with an entity tag that is a root hash and `Prefer: wait=N` with
/// N > 0 (capped at `long_poll_max_wait`).
pub(super) fn requested(opts: &ServerOptions, req: &Request) -> Option<Duration> {
    if opts.max_long_polls == 0
        || req.method() != Method::GET
        || req
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str)
            != Some("/hashes")
        || req.uri().query().and_then(super::buckets::param).is_some()
    {
        return None;
    }
    known_root(req.headers())?;
    let wait = prefer_wait(req.headers()).filter(|&n| n > 0)?;
    Some(Duration::from_secs(wait).min(opts.long_poll_max_wait))
}

/// The `wait` preference of `Prefer` headers, in seconds (RFC 7240: `wait=N`, the name
/// case-insensitive, the value a token or a quoted string; parameters after `;` ignored).
fn prefer_wait(headers: &HeaderMap) -> Option<u64> {
    headers
        .get_all(PREFER_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|preference| {
            let head = preference.split(';').next()?;
            let (name, value) = head.split_once('=')?;
            if !name.trim().eq_ignore_ascii_case("wait") {
                return None;
            }
            value.trim().trim_matches('"').parse::<u64>().ok()
        })
}

/// Answers the long poll of a client that knows `known`: at once when the root already
/// differs, else when it changes, the wait ends or the server stops.
pub(super) async fn hold(
    st: &AppState,
    hold: Hold,
    known: ContentHash,
    headers: &HeaderMap,
) -> Response {
    let c = &st.changes;
    let deadline = Instant::now() + hold.wait;
    let mut writes = c.writes.subscribe();
    let mut stop = c.stop.clone();

    // First an ordinary conditional GET: a root that already differs is answered at once.
    let started = Instant::now();
    let count = *writes.borrow_and_update();
    let first = listing_now(st, headers, &known).await;
    if first.status() != StatusCode::NOT_MODIFIED {
        return applied(first, hold);
    }
    c.record(Seen {
        root: known.clone(),
        started,
        writes: count,
    })
    .await;

    loop {
        let tick = c.next_tick(Instant::now()).min(deadline);
        let since = tokio::select! {
            changed = writes.changed() => match changed {
                Ok(()) => None,
                // The sender lives as long as the server state: not reached.
                Err(_) => break,
            },
            () = tokio::time::sleep_until(tick) => Some(tick),
            () = stopped(&mut stop) => break,
        };
        if Instant::now() >= deadline {
            break;
        }
        let count = *writes.borrow_and_update();
        match c.root(st, count, since).await {
            Ok(root) if root == known => continue,
            Ok(_) => return applied(listing_now(st, headers, &known).await, hold),
            Err(answer) => return answer,
        }
    }
    applied(
        hashes_answer(st, StatusCode::NOT_MODIFIED.into_response(), &known),
        hold,
    )
}

/// The `/hashes` answer for a client that knows `known`, read under a request permit like any
/// request.
async fn listing_now(st: &AppState, headers: &HeaderMap, known: &ContentHash) -> Response {
    match st.requests.acquire().await {
        Ok(_permit) => listing(st, headers, Some(known.clone())).await,
        Err(_) => stopping(),
    }
}

/// Resolves once the server stops (never, if the signal is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Says that the wait was honoured: `Preference-Applied: wait=N`.
fn applied(mut resp: Response, hold: Hold) -> Response {
    let secs = hold.wait.as_secs_f64().ceil() as u64;
    let value = HeaderValue::from_str(&format!("wait={secs}")).expect("digits are a header");
    resp.headers_mut()
        .insert(HeaderName::from_static(PREFERENCE_APPLIED_HEADER), value);
    resp
}

fn stopping() -> Response {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefer(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(PREFER_HEADER, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_wait_preference_is_read_as_rfc_7240_spells_it() {
        assert_eq!(prefer_wait(&prefer(&["wait=10"])), Some(10));
        assert_eq!(
            prefer_wait(&prefer(&["respond-async, Wait = \"7\""])),
            Some(7)
        );
        assert_eq!(
            prefer_wait(&prefer(&["return=minimal", "wait=3; x=y"])),
            Some(3)
        );
        assert_eq!(prefer_wait(&prefer(&["wait=soon"])), None);
        assert_eq!(prefer_wait(&prefer(&["respond-async"])), None);
        assert_eq!(prefer_wait(&HeaderMap::new()), None);
    }

    #[tokio::test]
    async fn recheck_ticks_are_shared_multiples_of_the_interval() {
        let opts = ServerOptions {
            long_poll_recheck: Duration::from_secs(5),
            ..Default::default()
        };
        let c = Changes::new(&opts, None);
        let a = c.next_tick(c.epoch + Duration::from_millis(1200));
        let b = c.next_tick(c.epoch + Duration::from_millis(4900));
        assert_eq!(a, b);
        assert_eq!(a, c.epoch + Duration::from_secs(5));
        assert_eq!(
            c.next_tick(c.epoch + Duration::from_secs(5)),
            c.epoch + Duration::from_secs(10)
        );
    }
}
