//! The conformance suite, twice: the crate in-process, and its program as an external driver
//! (protocol 1, store level), the way a stock `hypertask` runs it.

use std::path::PathBuf;
use std::sync::Arc;

use hypertask_core::conformance::{Harness, Upstream};
use hypertask_core::external::{ExternalDriver, ExternalStore};
use hypertask_core::{Driver, DriverSpec, Registry, Store};

/// Temporary directories live as long as the test process; each harness call gets a new one.
fn fresh_file() -> PathBuf {
    let dir = tempfile::tempdir().unwrap().keep();
    dir.join("tasks.json")
}

fn spec(path: &PathBuf) -> DriverSpec {
    DriverSpec::new(
        "example",
        hypertask_driver_jsonfile::KIND,
        serde_json::json!({ "path": path }),
        path.parent().unwrap(),
    )
}

fn program() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hypertask-driver-jsonfile"))
}

/// One task file; every client is a driver instance of its own.
struct File {
    path: PathBuf,
    external: bool,
}

#[hypertask_core::async_trait]
impl Upstream for File {
    async fn client(&self) -> Arc<dyn Driver> {
        let spec = spec(&self.path);
        if self.external {
            Arc::new(ExternalDriver::new(spec, program()))
        } else {
            let mut registry = Registry::new();
            hypertask_driver_jsonfile::register(&mut registry);
            Arc::new(registry.build(&spec).unwrap())
        }
    }

    async fn store(&self) -> Option<Arc<dyn Store>> {
        let spec = spec(&self.path);
        Some(if self.external {
            Arc::new(ExternalStore::new(spec, program()))
        } else {
            Arc::new(hypertask_driver_jsonfile::store(&spec).unwrap())
        })
    }
}

mod in_process {
    use super::*;

    struct InProcess;

    #[hypertask_core::async_trait]
    impl Harness for InProcess {
        async fn upstream(&self) -> Box<dyn Upstream> {
            Box::new(File {
                path: fresh_file(),
                external: false,
            })
        }
    }

    hypertask_core::conformance_tests!(InProcess);
}

mod external_program {
    use super::*;

    struct External;

    #[hypertask_core::async_trait]
    impl Harness for External {
        async fn upstream(&self) -> Box<dyn Upstream> {
            Box::new(File {
                path: fresh_file(),
                external: true,
            })
        }
    }

    hypertask_core::conformance_tests!(External);
}

#[test]
fn unknown_kind_without_a_program_lists_the_kinds() {
    let mut registry = Registry::new();
    hypertask_driver_jsonfile::register(&mut registry);
    let mut s = spec(&fresh_file());
    s.kind = "nosuchkind".into();
    let err = registry.build(&s).unwrap_err().to_string();
    assert!(
        err.contains("unknown driver type 'nosuchkind'") && err.contains("jsonfile"),
        "{err}"
    );
    assert!(err.contains("hypertask-driver-nosuchkind"), "{err}");
}
