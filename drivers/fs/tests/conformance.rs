//! The core conformance suite against real directories: each case gets a fresh shared
//! directory, and every client its own data directory, as separate machines would have.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use hypertask_core::conformance::{Harness, Upstream};
use hypertask_core::{async_trait, Driver, Store, StoreDriver, TaskId};
use hypertask_driver_fs::{FsConfig, FsStore};

struct FsHarness {
    root: tempfile::TempDir,
    next: AtomicUsize,
}

impl FsHarness {
    fn new() -> Self {
        FsHarness {
            root: tempfile::tempdir().expect("temp dir"),
            next: AtomicUsize::new(0),
        }
    }
}

/// One shared directory; each client gets a data directory of its own.
struct SharedDir {
    base: PathBuf,
    clients: AtomicUsize,
}

impl SharedDir {
    fn shared(&self) -> PathBuf {
        self.base.join("shared")
    }

    fn store(&self) -> FsStore {
        let n = self.clients.fetch_add(1, Ordering::SeqCst);
        let config = FsConfig {
            path: self.shared(),
            create: true,
        };
        FsStore::new("shared", &config, &self.base.join(format!("client{n}"))).expect("store")
    }
}

#[async_trait]
impl Harness for FsHarness {
    async fn upstream(&self) -> Box<dyn Upstream> {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        Box::new(SharedDir {
            base: self.root.path().join(format!("upstream{n}")),
            clients: AtomicUsize::new(0),
        })
    }
}

#[async_trait]
impl Upstream for SharedDir {
    async fn client(&self) -> Arc<dyn Driver> {
        Arc::new(StoreDriver::new(self.store()))
    }

    async fn store(&self) -> Option<Arc<dyn Store>> {
        Some(Arc::new(SharedDir::store(self)))
    }

    async fn plant(&self, id: &TaskId, raw: &[u8]) -> bool {
        std::fs::create_dir_all(self.shared()).expect("shared dir");
        std::fs::write(self.shared().join(format!("{id}.json")), raw).expect("plant");
        true
    }
}

hypertask_core::conformance_tests!(FsHarness::new());
