//! The core conformance suite against clones of one fresh bare remote.

mod common;

use hypertask_core::async_trait;
use hypertask_core::conformance::{Harness, Upstream};

#[derive(Default)]
struct GitHarness {
    dirs: common::Dirs,
}

#[async_trait]
impl Harness for GitHarness {
    async fn upstream(&self) -> Box<dyn Upstream> {
        let dir = self.dirs.fresh();
        let remote = common::bare(&dir, "remote.git");
        Box::new(common::RemoteUpstream::new(
            dir,
            remote.display().to_string(),
        ))
    }
}

hypertask_core::conformance_tests!(GitHarness::default());
