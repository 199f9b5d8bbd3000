//! `hypertask daemon`: keeps the local cache in sync with every driver continuously.
//!
//! The daemon never edits tasks: commands read and write the cache as always, and the daemon
//! syncs when something changed.
//!
//! - **Local changes**: a watch on the cache's task files wakes it; it syncs every driver that
//!   has not agreed with the cache's new root hash (its own writes leave the root every driver
//!   agreed with, so they wake nothing).
//! - **Upstream changes**: a driver that can tell ([`crate::Driver::wait_for_change`], e.g. the
//!   fs driver's directory watch, the http driver's long poll) wakes it; every driver is also
//!   polled at its `poll_interval`.
//! - A burst of wakes within [`DaemonOptions::settle`] is one sync. A driver whose sync fails
//!   is retried after a jittered exponential delay ([`crate::Backoff`], capped) while the others
//!   go on; it recovers by itself when its upstream returns.
//! - Shutdown (see [`Termination`]) lets the sync in flight finish.

mod lock;
mod status;

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::cache::{CacheError, Replica};
use crate::checked::Checked;
use crate::driver::{Driver, Watch};
use crate::hash::{root_hash, ContentHash};
use crate::sync::{DriverReport, Engine, SyncOptions};
use crate::watch::DirWatch;

pub use lock::{running, DaemonLock, LockError};
pub use status::{status, DaemonState, DriverState, Status};

/// One driver the daemon keeps in sync.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The driver, behind core's checks.
    pub driver: Checked,
    /// How often it is synced when nothing signalled a change (the driver table's
    /// `poll_interval`).
    pub poll_interval: Duration,
}

/// How the daemon paces itself.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// How each sync behaves.
    pub sync: SyncOptions,
    /// How long a burst of changes is gathered before the one sync it causes.
    pub settle: Duration,
    /// The first retry delay of a failing driver; it doubles (with jitter) up to `retry_cap`.
    pub retry_base: Duration,
    /// The longest retry delay.
    pub retry_cap: Duration,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        DaemonOptions {
            sync: SyncOptions::default(),
            settle: Duration::from_millis(100),
            retry_base: Duration::from_secs(1),
            retry_cap: Duration::from_secs(300),
        }
    }
}

/// Why the daemon stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Another daemon runs, or the lock file is unusable.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The local cache cannot be watched.
    #[error("cannot watch the local cache {}: {source}", path.display())]
    Watch {
        /// The cache's task directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The local cache itself failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// What woke the daemon.
#[derive(Debug, Clone, Copy)]
enum Wake {
    /// A task file of the cache changed.
    Local,
    /// Driver number N said its upstream changed.
    Upstream(usize),
}

/// The daemon's view of one driver.
#[derive(Debug)]
struct Slot {
    /// A sync with it is wanted.
    due: bool,
    /// The cache root its upstream last agreed with.
    agreed: Option<ContentHash>,
    /// When to sync with it even if nothing signalled a change.
    next_poll: Instant,
    /// After a failure: not before then.
    retry_at: Option<Instant>,
    backoff: Backoff,
    /// Failures in a row, for the log.
    failures: u32,
}

/// The running daemon of one data directory.
#[derive(Debug)]
pub struct Daemon {
    replica: Replica,
    upstreams: Vec<Upstream>,
    options: DaemonOptions,
    _lock: DaemonLock,
}

impl Daemon {
    /// A daemon over `replica` and `upstreams`, holding the data directory's `lock`.
    pub fn new(
        lock: DaemonLock,
        replica: Replica,
        upstreams: Vec<Upstream>,
        options: DaemonOptions,
    ) -> Daemon {
        Daemon {
            replica,
            upstreams,
            options,
            _lock: lock,
        }
    }

    /// Syncs once, then whenever something changed, until `shutdown` resolves; the sync in
    /// flight then finishes first.
    ///
    /// # Errors
    /// The cache cannot be watched. Driver failures are never errors: they are retried.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), DaemonError> {
        let (stop_tx, mut stop) = watch::channel(false);
        let stopper = tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut watchers = tokio::task::JoinSet::new();

        let dir = self.replica.task_dir().dir().to_owned();
        let local = DirWatch::new(&dir).map_err(|source| DaemonError::Watch {
            path: dir.clone(),
            source,
        })?;
        let local_tx = tx.clone();
        watchers.spawn(async move {
            loop {
                local.changed().await;
                if local_tx.send(Wake::Local).is_err() {
                    return;
                }
            }
        });
        for (i, up) in self.upstreams.iter().enumerate() {
            // A failed watch is retried after a jittered exponential delay, never longer than
            // the poll interval (which covers the driver meanwhile).
            let retry = Backoff::new(
                self.options.retry_base.min(up.poll_interval),
                self.options.retry_cap.min(up.poll_interval),
            );
            watchers.spawn(watch_upstream(
                i,
                up.driver.clone(),
                retry,
                self.options.settle,
                tx.clone(),
            ));
        }
        drop(tx);

        let now = Instant::now();
        let mut slots: Vec<Slot> = self
            .upstreams
            .iter()
            .map(|_| Slot {
                due: true,
                agreed: None,
                next_poll: now,
                retry_at: None,
                backoff: Backoff::new(self.options.retry_base, self.options.retry_cap),
                failures: 0,
            })
            .collect();
        tracing::info!(
            "watching {} and syncing with {} driver(s)",
            dir.display(),
            slots.len()
        );

        while !*stop.borrow() {
            let now = Instant::now();
            let ready: Vec<usize> = (0..slots.len())
                .filter(|&i| slots[i].due && slots[i].retry_at.is_none_or(|t| t <= now))
                .collect();
            if !ready.is_empty() {
                self.batch(&ready, &mut slots).await;
                self.compare_local(&mut slots).await;
                continue;
            }
            // A due driver waits for its retry time (never for its poll: that would spin);
            // the others for their next poll.
            let wake_at = slots
                .iter()
                .filter_map(|s| if s.due { s.retry_at } else { Some(s.next_poll) })
                .min()
                .unwrap_or(now + Duration::from_secs(3600));
            tokio::select! {
                _ = stop.changed() => {}
                Some(first) = rx.recv() => {
                    // Gather the rest of the burst: one sync for all of it.
                    tokio::time::sleep(self.options.settle).await;
                    let mut wakes = vec![first];
                    while let Ok(w) = rx.try_recv() {
                        wakes.push(w);
                    }
                    let mut local = false;
                    for w in wakes {
                        match w {
                            Wake::Local => local = true,
                            Wake::Upstream(i) => slots[i].due = true,
                        }
                    }
                    if local {
                        self.compare_local(&mut slots).await;
                    }
                }
                _ = tokio::time::sleep_until(wake_at) => {
                    let now = Instant::now();
                    for s in slots.iter_mut().filter(|s| s.next_poll <= now) {
                        s.due = true;
                    }
                }
            }
        }
        watchers.abort_all();
        stopper.abort();
        tracing::info!("stopped");
        Ok(())
    }

    /// One sync with the drivers numbered `ready`.
    async fn batch(&self, ready: &[usize], slots: &mut [Slot]) {
        let drivers = ready
            .iter()
            .map(|&i| self.upstreams[i].driver.clone())
            .collect();
        let engine = Engine::new(self.replica.clone(), drivers, self.options.sync.clone());
        let names: Vec<String> = ready
            .iter()
            .map(|&i| self.upstreams[i].driver.info().name)
            .collect();
        tracing::debug!("syncing with {}", names.join(", "));
        let started = Instant::now();
        for &i in ready {
            slots[i].due = false;
            slots[i].next_poll = started + self.upstreams[i].poll_interval;
        }
        match engine.sync().await {
            Ok(report) => {
                for (&i, rep) in ready.iter().zip(&report.drivers) {
                    settle_slot(&mut slots[i], rep, started);
                }
            }
            Err(e) => {
                // The cache itself (another sync holding it, a full disk): retry later.
                for &i in ready {
                    let s = &mut slots[i];
                    let delay = s.backoff.next_delay();
                    s.due = true;
                    s.retry_at = Some(started + delay);
                    s.failures += 1;
                }
                tracing::warn!("sync failed: {e}; retrying");
            }
        }
    }

    /// Marks due every driver that has not agreed with the cache as it is now.
    async fn compare_local(&self, slots: &mut [Slot]) {
        let replica = self.replica.clone();
        let scan = match tokio::task::spawn_blocking(move || replica.scan()).await {
            Ok(Ok(scan)) => scan,
            Ok(Err(e)) => {
                tracing::warn!("cannot read the local cache: {e}");
                return;
            }
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        let root = root_hash(&scan.hashes);
        for s in slots.iter_mut() {
            if s.agreed.as_ref() != Some(&root) {
                s.due = true;
            }
        }
    }
}

/// Updates a driver's slot from its part of a sync that started at `started`.
fn settle_slot(s: &mut Slot, rep: &DriverReport, started: Instant) {
    let what = format!("{} ({})", rep.name, rep.kind);
    match (&rep.error, &rep.agreed_root) {
        (None, Some(root)) => {
            if s.failures > 0 {
                tracing::info!("{what}: synced again after {} failure(s)", s.failures);
            }
            s.backoff.reset();
            s.retry_at = None;
            s.failures = 0;
            s.agreed = Some(root.clone());
            let changes = [
                ("pulled", rep.pulled),
                ("pushed", rep.pushed),
                ("merged", rep.merged),
            ];
            if changes.iter().any(|(_, n)| *n > 0) {
                let parts: Vec<String> = changes
                    .iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(w, n)| format!("{w} {n}"))
                    .collect();
                tracing::info!("{what}: {}", parts.join(", "));
            }
        }
        (error, _) => {
            // Failed, or did not reach agreement (tasks that failed alone, an upstream that
            // kept changing): try again after a delay, never at once.
            let delay = s.backoff.next_delay();
            s.due = true;
            s.retry_at = Some(started + delay);
            s.failures += 1;
            s.agreed = None;
            let why = error
                .clone()
                .or_else(|| rep.failed.first().cloned())
                .unwrap_or_else(|| "the upstream kept changing".into());
            tracing::warn!("{what}: {why}; retrying in {:.1} s", delay.as_secs_f64());
        }
    }
}

/// Forwards driver `i`'s change notifications, for drivers that give them; at most one per
/// `settle`, so a driver that always answers at once cannot make the daemon spin. A failed
/// watch (an upstream that went away) is tried again after the next delay of `retry`, reset
/// by the next answer, so the watch resumes soon after the upstream returns.
async fn watch_upstream(
    i: usize,
    driver: Checked,
    mut retry: Backoff,
    settle: Duration,
    tx: mpsc::UnboundedSender<Wake>,
) {
    loop {
        match driver.wait_for_change().await {
            Ok(Watch::Changed) => {
                retry.reset();
                if tx.send(Wake::Upstream(i)).is_err() {
                    return;
                }
                tokio::time::sleep(settle).await;
            }
            Ok(Watch::Unsupported) => return,
            Err(e) => {
                let delay = retry.next_delay();
                tracing::warn!(
                    "{e}; polling instead, watching again in {:.1} s",
                    delay.as_secs_f64()
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C elsewhere). Made before the daemon starts so a
/// signal that arrives during the first sync is not lost to the default handler.
#[derive(Debug)]
pub struct Termination {
    #[cfg(unix)]
    signals: (tokio::signal::unix::Signal, tokio::signal::unix::Signal),
}

impl Termination {
    /// Installs the handlers. Must run inside a tokio runtime.
    pub fn new() -> io::Result<Termination> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Termination {
                signals: (
                    signal(SignalKind::terminate())?,
                    signal(SignalKind::interrupt())?,
                ),
            })
        }
        #[cfg(not(unix))]
        Ok(Termination {})
    }

    /// Waits for the signal.
    pub async fn wait(self) {
        #[cfg(unix)]
        {
            let (mut term, mut int) = self.signals;
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests;
