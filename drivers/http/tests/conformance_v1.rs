//! The core conformance suite through the v1.0 fallback: http driver instances against a
//! plain v1.0 server (only `GET /hashes` and `POST /task/:id`) on loopback.

mod common;

use common::{memory_store, v1_router, ServerUpstream, TestServer};
use hypertask_core::conformance::{Harness, Upstream};

struct V1Loopback;

#[hypertask_core::async_trait]
impl Harness for V1Loopback {
    async fn upstream(&self) -> Box<dyn Upstream> {
        let (mem, store) = memory_store();
        Box::new(ServerUpstream(
            TestServer::start_router(mem, v1_router(store)).await,
        ))
    }
}

hypertask_core::conformance_tests!(V1Loopback);
