//! The core conformance suite: two http driver instances against one real server on loopback,
//! storing in a fresh memory store per case.

mod common;

use std::sync::Arc;

use common::TestServer;
use hypertask_core::conformance::Harness;
use hypertask_core::Driver;

struct Loopback;

#[hypertask_core::async_trait]
impl Harness for Loopback {
    async fn clients(&self) -> (Arc<dyn Driver>, Arc<dyn Driver>) {
        let srv = TestServer::with_token().await;
        let (a, b) = (srv.driver("client-a"), srv.driver("client-b"));
        // The server runs until the test's runtime ends.
        std::mem::forget(srv);
        (a, b)
    }
}

hypertask_core::conformance_tests!(Loopback);
