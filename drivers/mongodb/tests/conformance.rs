//! The core conformance suite against a real MongoDB-protocol server
//! (`HYPERTASK_TEST_MONGODB_URI`, started by scripts/test).

mod common;

use hypertask_core::async_trait;
use hypertask_core::conformance::{Harness, Upstream};

/// Each case gets a fresh collection; its clients are separate driver instances with their
/// own MongoDB clients, like separate machines.
struct Mongo;

#[async_trait]
impl Harness for Mongo {
    async fn upstream(&self) -> Box<dyn Upstream> {
        Box::new(common::Collection(common::fresh_collection("conformance")))
    }
}

hypertask_core::conformance_tests!(Mongo);
