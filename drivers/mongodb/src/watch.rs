//! The change stream behind [`MongoStore::wait_for_change`](crate::MongoStore): a background
//! task follows it and keeps only the fact that something changed.

use std::future::Future;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use hypertask_core::{DriverError, ErrorKind, Watch};
use mongodb::bson::Document;
use mongodb::change_stream::ChangeStream;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::error::convert;

/// Where [`Store::wait_for_change`] stands.
pub(crate) enum WatchState {
    /// Not opened yet, or ended and reported: the next call opens it.
    Closed,
    /// The server refused a change stream (a standalone server): the caller polls.
    Unsupported,
    /// A background task reads the stream and signals each event.
    Open {
        /// What the task signals.
        signal: Arc<StreamSignal>,
        /// The task, held only to be aborted with this state.
        _reader: AbortOnDrop,
    },
}

/// What the task reading the change stream tells [`Store::wait_for_change`]: only that
/// something happened (one stored permit, so events coalesce and none is lost), and why the
/// stream ended.
#[derive(Default)]
pub(crate) struct StreamSignal {
    event: Notify,
    ended: Mutex<Option<DriverError>>,
}

impl StreamSignal {
    fn has_ended(&self) -> bool {
        self.ended
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    fn take_end(&self) -> Option<DriverError> {
        self.ended.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// The task reading the change stream, aborted when the store (or a reopened stream) drops it.
pub(crate) struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Spawns the task that follows `stream` for driver instance `name`; `what` names the
/// operation in its errors.
pub(crate) fn follow(stream: ChangeStream<Document>, name: String, what: String) -> WatchState {
    let signal = Arc::new(StreamSignal::default());
    let task = {
        let signal = Arc::clone(&signal);
        tokio::spawn(async move {
            let mut stream = stream;
            let error = loop {
                match stream.next().await {
                    Some(Ok(_)) => signal.event.notify_one(),
                    Some(Err(e)) => {
                        let e = convert(&name, &what, e);
                        break if e.is_retryable() {
                            e
                        } else {
                            DriverError::new(&name, ErrorKind::Unavailable, e.message())
                        };
                    }
                    // Invalidated (the collection was dropped or renamed) or closed.
                    None => {
                        break DriverError::new(
                            &name,
                            ErrorKind::Unavailable,
                            format!("{what}: the server ended it"),
                        )
                    }
                }
            };
            *signal.ended.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
            signal.event.notify_one();
        })
    };
    WatchState::Open {
        signal,
        _reader: AbortOnDrop(task),
    }
}

/// [`Store::wait_for_change`](hypertask_core::Store::wait_for_change) over the state in
/// `watch`; `open` opens a stream when there is none (`None`: the server refuses them).
pub(crate) async fn wait(
    watch: &tokio::sync::Mutex<WatchState>,
    open: impl Future<Output = Result<Option<WatchState>, DriverError>>,
) -> Result<Watch, DriverError> {
    let signal = {
        let mut state = watch.lock().await;
        match &*state {
            WatchState::Unsupported => return Ok(Watch::Unsupported),
            WatchState::Open { signal, .. } => Arc::clone(signal),
            WatchState::Closed => {
                *state = open.await?.unwrap_or(WatchState::Unsupported);
                return Ok(match *state {
                    WatchState::Unsupported => Watch::Unsupported,
                    _ => Watch::Changed,
                });
            }
        }
    };
    // Checked before waiting too: a call dropped after the last signal left the end here.
    if !signal.has_ended() {
        signal.event.notified().await;
        if !signal.has_ended() {
            return Ok(Watch::Changed);
        }
    }
    // The error stays in the signal until the state is closed under the lock, so a call
    // dropped in between leaves it to the next.
    let mut state = watch.lock().await;
    let ended = match &*state {
        WatchState::Open { signal: s, .. } if Arc::ptr_eq(s, &signal) => signal.take_end(),
        _ => None,
    };
    match ended {
        Some(error) => {
            *state = WatchState::Closed;
            Err(error)
        }
        // Another call reported it (and may have reopened): a spurious answer is allowed.
        None => Ok(Watch::Changed),
    }
}
