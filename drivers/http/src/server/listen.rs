//! Accepting connections: a cap on open connections, a header-read timeout and an idle
//! timeout per connection, graceful shutdown. HTTP/1.1 only (the server speaks plain HTTP;
//! TLS and HTTP/2 belong to a reverse proxy in front of it).

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hypertask_core::Driver;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tower::Service;

use super::users::{users_app, User};
use super::{app, ServerOptions};

/// How long the accept loop pauses after an accept error (out of file descriptors, say)
/// before trying again, so the error does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serves [`router`](super::router) on `listener` until `shutdown` completes, then answers
/// held long polls at once, finishes the requests in flight and returns.
///
/// At most `max_connections` connections are open at once; further ones wait in the
/// listener's backlog until one closes. A connection that does not send a complete request
/// head within `header_timeout`, or stays `idle_timeout` with no request in flight and no byte
/// moving, is closed, so slow or silent connections cannot hold the server's slots.
pub async fn serve(
    listener: TcpListener,
    store: Arc<dyn Driver>,
    opts: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    opts.validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let info = store.info();
    tracing::info!(
        addr = %listener.local_addr()?,
        store = %info.name,
        store_kind = %info.kind,
        auth = opts.token.is_some(),
        max_connections = opts.max_connections,
        "hypertask sync server listening"
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    // Held long polls are answered when `stop_tx` fires, so shutdown does not wait them out.
    let app = app(store, opts.clone(), Some(stop_rx.clone()));
    accept(listener, app, &opts, (stop_tx, stop_rx), shutdown).await
}

/// [`serve`] for several users ([`users_router`](super::users_router)): each request is
/// answered from the store of the user whose token it presents.
pub async fn serve_users(
    listener: TcpListener,
    users: Vec<User>,
    opts: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    opts.validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    tracing::info!(
        addr = %listener.local_addr()?,
        users = users.len(),
        max_connections = opts.max_connections,
        "hypertask sync server listening"
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let app = users_app(users, opts.clone(), Some(stop_rx.clone()))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    accept(listener, app, &opts, (stop_tx, stop_rx), shutdown).await
}

/// The accept loop shared by [`serve`] and [`serve_users`].
async fn accept(
    listener: TcpListener,
    app: Router,
    opts: &ServerOptions,
    (stop_tx, stop_rx): (watch::Sender<bool>, watch::Receiver<bool>),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let addr = listener.local_addr()?;
    let limits = Limits {
        header: opts.header_timeout,
        idle: opts.idle_timeout,
    };
    let max = opts.max_connections;
    let slots = Arc::new(Semaphore::new(max));
    let mut shutdown = pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let (app, stop) = (app.clone(), stop_rx.clone());
        tokio::spawn(async move {
            connection(stream, app, limits, stop).await;
            drop(slot);
        });
    }
    drop(listener);
    tracing::info!(%addr, "shutdown requested; finishing requests in flight");
    let _ = stop_tx.send(true);
    // Every connection holds a slot until it ends.
    let _all = slots
        .acquire_many(u32::try_from(max).unwrap_or(u32::MAX))
        .await;
    tracing::info!(%addr, "hypertask sync server stopped");
    Ok(())
}

/// The per-connection timeouts.
#[derive(Clone, Copy)]
struct Limits {
    header: Duration,
    idle: Duration,
}

/// When a connection last moved a byte, and how many of its requests are being handled.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn touch(&self) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(now, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Counts a request as in flight while it lives.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(activity: Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one connection until it ends, idles out or the server stops.
async fn connection(
    stream: TcpStream,
    app: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity {
        start: Instant::now(),
        last_ms: AtomicU64::new(0),
        in_flight: AtomicUsize::new(0),
    });
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let guard = InFlight::new(activity.clone());
            let mut app = app.clone();
            async move {
                let resp = app.call(req.map(axum::body::Body::new)).await;
                drop(guard);
                resp
            }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header)
        .serve_connection(io, service);
    let mut conn = pin!(conn);
    let mut stopping = false;
    let mut check_at = activity.last() + limits.idle;
    loop {
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            changed = stop.changed(), if !stopping => {
                stopping = true;
                if changed.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
            () = tokio::time::sleep_until(check_at.into()) => {
                let now = Instant::now();
                if activity.in_flight.load(Ordering::Relaxed) > 0 {
                    // A request is being handled; its own timeout bounds it.
                    check_at = now + limits.idle;
                } else if activity.last() + limits.idle <= now {
                    tracing::debug!("closing an idle connection");
                    return;
                } else {
                    check_at = activity.last() + limits.idle;
                }
            }
        }
    }
}

/// A stream that notes when it last moved a byte.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        res
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        res
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
