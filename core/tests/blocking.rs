//! `Blocking`: a synchronous store behind the async `Store` trait, off the reactor.

use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use futures::executor::block_on;
use hypertask_core::conformance::{Harness, Upstream};
use hypertask_core::{
    Access, Blocking, BlockingStore, Checked, Driver, DriverError, DriverInfo, Gets, Health,
    MemoryStore, Puts, Store, StoreDriver, StoreInventory, TaskId, Write,
};

/// A synchronous store: the memory store driven by blocking calls.
#[derive(Debug)]
struct SyncMemory(Arc<MemoryStore>);

impl BlockingStore for SyncMemory {
    fn info(&self) -> DriverInfo {
        self.0.info()
    }
    fn list(&self) -> Result<StoreInventory, DriverError> {
        block_on(self.0.list())
    }
    fn get(&self, ids: &[TaskId]) -> Result<Gets, DriverError> {
        block_on(self.0.get(ids))
    }
    fn put(&self, writes: Vec<Write>) -> Result<Puts, DriverError> {
        block_on(self.0.put(writes))
    }
    fn check(&self) -> Result<Health, DriverError> {
        block_on(self.0.check())
    }
}

struct SyncHarness;

struct SyncUpstream(Arc<MemoryStore>);

#[hypertask_core::async_trait]
impl Harness for SyncHarness {
    async fn upstream(&self) -> Box<dyn Upstream> {
        Box::new(SyncUpstream(Arc::new(MemoryStore::new("sync"))))
    }
}

#[hypertask_core::async_trait]
impl Upstream for SyncUpstream {
    async fn client(&self) -> Arc<dyn Driver> {
        Arc::new(StoreDriver::new(Blocking::new(SyncMemory(self.0.clone()))))
    }

    async fn store(&self) -> Option<Arc<dyn Store>> {
        Some(Arc::new(Blocking::new(SyncMemory(self.0.clone()))))
    }
}

mod conformance {
    use super::*;
    hypertask_core::conformance_tests!(SyncHarness);
}

/// A store whose `list` waits for a signal the async side sends.
#[derive(Debug)]
struct Waits(Mutex<mpsc::Receiver<()>>);

impl BlockingStore for Waits {
    fn info(&self) -> DriverInfo {
        DriverInfo {
            kind: "waits".into(),
            name: "waits".into(),
            capabilities: Default::default(),
        }
    }
    fn list(&self) -> Result<StoreInventory, DriverError> {
        // Bounded only so that a broken adapter fails instead of hanging the test run.
        self.0
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(60))
            .expect("the signal from the reactor arrives while list blocks");
        Ok(StoreInventory::default())
    }
    fn get(&self, ids: &[TaskId]) -> Result<Gets, DriverError> {
        Ok(ids.iter().map(|id| (id.clone(), Ok(None))).collect())
    }
    fn put(&self, _: Vec<Write>) -> Result<Puts, DriverError> {
        panic!("the backend exploded");
    }
    fn check(&self) -> Result<Health, DriverError> {
        unreachable!()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn blocking_calls_leave_the_reactor_free() {
    let (tx, rx) = mpsc::channel();
    let store = Blocking::new(Waits(Mutex::new(rx)));
    // On a single-threaded runtime the signal can only be sent if `list` is not blocking it.
    let (listed, ()) = tokio::join!(store.list(), async {
        tokio::task::yield_now().await;
        tx.send(()).unwrap();
    });
    listed.unwrap();
}

#[tokio::test]
async fn a_panicking_backend_fails_alone_through_checked() {
    let (_tx, rx) = mpsc::channel();
    let driver = Checked::new(Arc::new(StoreDriver::new(Blocking::new(Waits(
        Mutex::new(rx),
    )))));
    driver.begin(Access::Write).await.unwrap();
    let task = hypertask_core::Task::from_value(serde_json::json!({"id": "a"})).unwrap();
    let e = driver
        .resolve([(task.id().clone(), Some(task))].into())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("the backend exploded"), "{e}");
}
