//! The core conformance suite against a real MongoDB-protocol server
//! (`HYPERTASK_TEST_MONGODB_URI`, started by scripts/test).

mod common;

use std::sync::Arc;

use hypertask_core::{async_trait, conformance::Harness, Driver};

/// Each case gets a fresh collection; its two clients are separate driver instances with their
/// own MongoDB clients, like two machines.
struct Mongo;

#[async_trait]
impl Harness for Mongo {
    async fn clients(&self) -> (Arc<dyn Driver>, Arc<dyn Driver>) {
        let collection = common::fresh_collection("conformance");
        (
            common::driver("db-a", &collection),
            common::driver("db-b", &collection),
        )
    }
}

hypertask_core::conformance_tests!(Mongo);
