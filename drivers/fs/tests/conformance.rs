//! The core conformance suite against real directories: each case gets a fresh shared
//! directory and two clients with separate data directories, as two machines would have.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use hypertask_core::conformance::Harness;
use hypertask_core::{async_trait, Driver, StoreDriver};
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

#[async_trait]
impl Harness for FsHarness {
    async fn clients(&self) -> (Arc<dyn Driver>, Arc<dyn Driver>) {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let base = self.root.path().join(format!("upstream{n}"));
        let config = FsConfig {
            path: base.join("shared"),
            create: true,
        };
        let client = |who: &str| -> Arc<dyn Driver> {
            let store = FsStore::new("shared", &config, &base.join(who)).expect("store");
            Arc::new(StoreDriver::new(store))
        };
        (client("a"), client("b"))
    }
}

hypertask_core::conformance_tests!(FsHarness::new());
