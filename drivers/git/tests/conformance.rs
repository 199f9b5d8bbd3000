//! The core conformance suite against two clones of one fresh bare remote.

mod common;

use std::sync::Arc;

use hypertask_core::{async_trait, conformance::Harness, Driver};

#[derive(Default)]
struct GitHarness {
    dirs: common::Dirs,
}

#[async_trait]
impl Harness for GitHarness {
    async fn clients(&self) -> (Arc<dyn Driver>, Arc<dyn Driver>) {
        let dir = self.dirs.fresh();
        let remote = common::bare(&dir, "remote.git");
        (
            common::client(&dir, "a", &remote),
            common::client(&dir, "b", &remote),
        )
    }
}

hypertask_core::conformance_tests!(GitHarness::default());
