//! The daemon's loop over real caches and in-memory stores: local changes go out, a failing
//! driver is retried while the others keep syncing, and it recovers by itself.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::*;
use crate::driver::{DriverInfo, Health};
use crate::error::{DriverError, ErrorKind};
use crate::memory::MemoryStore;
use crate::store::{Gets, Puts, Store, StoreDriver, StoreInventory, Write};
use crate::sync::DriverStatus;
use crate::task::{Task, TaskId};

/// A memory store that answers "unavailable" while `down` is set, counting its listings.
#[derive(Debug)]
struct Flaky {
    inner: MemoryStore,
    down: Arc<AtomicBool>,
    lists: Arc<AtomicUsize>,
}

impl Flaky {
    fn check_up(&self) -> Result<(), DriverError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(DriverError::new(
                "flaky",
                ErrorKind::Unavailable,
                "the upstream is down",
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Store for Flaky {
    fn info(&self) -> DriverInfo {
        self.inner.info()
    }
    async fn list(&self) -> Result<StoreInventory, DriverError> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        self.check_up()?;
        self.inner.list().await
    }
    async fn get(&self, ids: &[TaskId]) -> Result<Gets, DriverError> {
        self.check_up()?;
        self.inner.get(ids).await
    }
    async fn put(&self, writes: Vec<Write>) -> Result<Puts, DriverError> {
        self.check_up()?;
        self.inner.put(writes).await
    }
    async fn check(&self) -> Result<Health, DriverError> {
        self.check_up()?;
        self.inner.check().await
    }
}

fn upstream(driver: Arc<dyn Driver>) -> Upstream {
    Upstream {
        driver: Checked::new(driver),
        // Only local changes and retries wake the daemon in these tests.
        poll_interval: Duration::from_secs(3600),
    }
}

/// Polls `check` every 10 ms until it holds; false after a generous deadline.
async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_driver_is_retried_while_the_other_syncs_and_recovers_by_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let replica = Replica::open(tmp.path().join("data")).unwrap();
    let good = Arc::new(StoreDriver::new(Arc::new(MemoryStore::new("good"))));
    let down = Arc::new(AtomicBool::new(true));
    let lists = Arc::new(AtomicUsize::new(0));
    let flaky_store = Arc::new(Flaky {
        inner: MemoryStore::new("flaky"),
        down: Arc::clone(&down),
        lists: Arc::clone(&lists),
    });
    let flaky = Arc::new(StoreDriver::new(Arc::clone(&flaky_store)));
    let options = DaemonOptions {
        settle: Duration::from_millis(20),
        retry_base: Duration::from_millis(20),
        retry_cap: Duration::from_millis(200),
        ..DaemonOptions::default()
    };
    let lock = DaemonLock::acquire(replica.data_dir()).unwrap();
    let daemon = Daemon::new(
        lock,
        replica.clone(),
        vec![upstream(good.clone()), upstream(flaky.clone())],
        options,
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let daemon_task = tokio::spawn(daemon.run(async move {
        let _ = stopped.await;
    }));

    // A task written to the cache by "another process" reaches the working driver.
    let task = Task::from_value(serde_json::json!({"id": "t1", "description": "d"})).unwrap();
    {
        let lock = replica.lock(Duration::from_secs(5)).unwrap();
        replica.put(&lock, std::slice::from_ref(&task)).unwrap();
    }
    let id = TaskId::new("t1").unwrap();
    let good_store = good.store().clone();
    assert!(eventually(|| good_store.snapshot().contains_key(&id)).await);

    // The failing one is retried (more than once), and its error is on record.
    assert!(eventually(|| lists.load(Ordering::SeqCst) >= 3).await);
    let data_dir = replica.data_dir().to_owned();
    let flaky_status = DriverStatus::load(&data_dir, "flaky");
    assert!(flaky_status
        .last_error
        .as_deref()
        .is_some_and(|e| e.contains("down")));
    assert!(DriverStatus::load(&data_dir, "good").last_error.is_none());

    // It comes back: the task reaches it without any new local change.
    down.store(false, Ordering::SeqCst);
    assert!(eventually(|| flaky_store.inner.snapshot().contains_key(&id)).await);
    assert!(eventually(|| DriverStatus::load(&data_dir, "flaky").last_error.is_none()).await);

    stop.send(()).unwrap();
    daemon_task.await.unwrap().unwrap();
    assert_eq!(running(&data_dir), (false, None));
}

/// A memory store whose change watch fails while `down` is set, then answers once per
/// `changed` signal.
#[derive(Debug)]
struct Watched {
    inner: MemoryStore,
    down: AtomicBool,
    changed: tokio::sync::Notify,
    watches: AtomicUsize,
}

#[async_trait]
impl Store for Watched {
    fn info(&self) -> DriverInfo {
        self.inner.info()
    }
    async fn list(&self) -> Result<StoreInventory, DriverError> {
        self.inner.list().await
    }
    async fn get(&self, ids: &[TaskId]) -> Result<Gets, DriverError> {
        self.inner.get(ids).await
    }
    async fn put(&self, writes: Vec<Write>) -> Result<Puts, DriverError> {
        self.inner.put(writes).await
    }
    async fn check(&self) -> Result<Health, DriverError> {
        self.inner.check().await
    }
    async fn wait_for_change(&self) -> Result<Watch, DriverError> {
        self.watches.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(DriverError::new(
                "watched",
                ErrorKind::Unavailable,
                "the upstream is down",
            ));
        }
        self.changed.notified().await;
        Ok(Watch::Changed)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_that_failed_resumes_long_before_the_poll_interval() {
    let tmp = tempfile::tempdir().unwrap();
    let replica = Replica::open(tmp.path().join("data")).unwrap();
    let store = Arc::new(Watched {
        inner: MemoryStore::new("watched"),
        down: AtomicBool::new(true),
        changed: tokio::sync::Notify::new(),
        watches: AtomicUsize::new(0),
    });
    let driver = Arc::new(StoreDriver::new(Arc::clone(&store)));
    let options = DaemonOptions {
        settle: Duration::from_millis(20),
        retry_base: Duration::from_millis(20),
        retry_cap: Duration::from_millis(200),
        ..DaemonOptions::default()
    };
    let lock = DaemonLock::acquire(replica.data_dir()).unwrap();
    // Polled once an hour: only the watch can bring the change within the test.
    let daemon = Daemon::new(
        lock,
        replica.clone(),
        vec![upstream(driver.clone())],
        options,
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let daemon_task = tokio::spawn(daemon.run(async move {
        let _ = stopped.await;
    }));

    // The watch fails, and is tried again (more than once) within the test.
    assert!(eventually(|| store.watches.load(Ordering::SeqCst) >= 3).await);
    store.down.store(false, Ordering::SeqCst);
    let before = store.watches.load(Ordering::SeqCst);
    assert!(eventually(|| store.watches.load(Ordering::SeqCst) > before).await);

    // An upstream change, told by the resumed watch, reaches the cache.
    let task = Task::from_value(serde_json::json!({"id": "up1", "description": "d"})).unwrap();
    let answers = driver
        .resolve(crate::driver::Batch::from([(
            TaskId::new("up1").unwrap(),
            Some(task),
        )]))
        .await
        .unwrap();
    assert!(answers.values().all(Result::is_ok));
    store.changed.notify_one();
    let r = replica.clone();
    assert!(
        eventually(|| r
            .scan()
            .is_ok_and(|s| s.hashes.contains_key(&TaskId::new("up1").unwrap())))
        .await
    );

    stop.send(()).unwrap();
    daemon_task.await.unwrap().unwrap();
}
