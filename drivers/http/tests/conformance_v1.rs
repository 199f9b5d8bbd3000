//! The core conformance suite through the v1.0 fallback: two http driver instances against a
//! plain v1.0 server (only `GET /hashes` and `POST /task/:id`) on loopback.

mod common;

use std::sync::Arc;

use common::{memory_store, v1_router, TestServer};
use hypertask_core::conformance::Harness;
use hypertask_core::Driver;

struct V1Loopback;

#[hypertask_core::async_trait]
impl Harness for V1Loopback {
    async fn clients(&self) -> (Arc<dyn Driver>, Arc<dyn Driver>) {
        let (mem, store) = memory_store();
        let srv = TestServer::start_router(mem, v1_router(store)).await;
        let (a, b) = (srv.driver("client-a"), srv.driver("client-b"));
        // The server runs until the test's runtime ends.
        std::mem::forget(srv);
        (a, b)
    }
}

hypertask_core::conformance_tests!(V1Loopback);
