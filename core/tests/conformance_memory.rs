//! The conformance suite against the in-memory reference store, driver- and store-level.

use std::sync::Arc;

use hypertask_core::conformance::{Harness, Upstream};
use hypertask_core::{Driver, MemoryStore, Store, StoreDriver};

struct Memory;

struct MemoryUpstream(Arc<MemoryStore>);

#[hypertask_core::async_trait]
impl Harness for Memory {
    async fn upstream(&self) -> Box<dyn Upstream> {
        Box::new(MemoryUpstream(Arc::new(MemoryStore::new("mem"))))
    }
}

#[hypertask_core::async_trait]
impl Upstream for MemoryUpstream {
    async fn client(&self) -> Arc<dyn Driver> {
        Arc::new(StoreDriver::new(self.0.clone()))
    }

    async fn store(&self) -> Option<Arc<dyn Store>> {
        Some(self.0.clone())
    }
}

hypertask_core::conformance_tests!(Memory);
