//! The core conformance suite: http driver instances against one real server on loopback,
//! storing in a fresh memory store per case.

mod common;

use common::{ServerUpstream, TestServer};
use hypertask_core::conformance::{Harness, Upstream};

struct Loopback;

#[hypertask_core::async_trait]
impl Harness for Loopback {
    async fn upstream(&self) -> Box<dyn Upstream> {
        Box::new(ServerUpstream(TestServer::with_token().await))
    }
}

hypertask_core::conformance_tests!(Loopback);
