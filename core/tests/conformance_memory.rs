//! The conformance suite against the in-memory reference store.

use std::sync::Arc;

use hypertask_core::conformance::Harness;
use hypertask_core::{Driver, MemoryStore, StoreDriver};

struct Memory;

#[hypertask_core::async_trait]
impl Harness for Memory {
    async fn clients(&self) -> (Arc<dyn Driver>, Arc<dyn Driver>) {
        let store = Arc::new(MemoryStore::new("mem"));
        (
            Arc::new(StoreDriver::new(store.clone())),
            Arc::new(StoreDriver::new(store)),
        )
    }
}

hypertask_core::conformance_tests!(Memory);
