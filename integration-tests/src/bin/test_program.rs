//! The fs driver as an external program of either level, through `serve_stdio`: its table is
//! the fs driver's plus `level = "store"` (default: hypertask merges) or `level = "driver"`
//! (the program merges, with core's `StoreDriver`).

use std::process::ExitCode;
use std::sync::Arc;

use hypertask_core::external::{serve_stdio, Served};
use hypertask_core::{DriverError, ErrorKind, StoreDriver};
use hypertask_driver_fs::{FsConfig, FsStore};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let served = serve_stdio(|spec| {
        let mut spec = spec.clone();
        let level = match spec.options.as_object_mut().and_then(|o| o.remove("level")) {
            None => "store".to_owned(),
            Some(serde_json::Value::String(level)) => level,
            Some(other) => {
                return Err(DriverError::new(
                    &spec.name,
                    ErrorKind::Config,
                    format!("level must be \"store\" or \"driver\", not {other}"),
                ))
            }
        };
        let config: FsConfig = spec.config()?;
        let store = FsStore::new(&spec.name, &config, &spec.data_dir)?;
        match level.as_str() {
            "store" => Ok(Served::Store(Arc::new(store))),
            "driver" => Ok(Served::Driver(Arc::new(StoreDriver::new(store)))),
            other => Err(DriverError::new(
                &spec.name,
                ErrorKind::Config,
                format!("level must be \"store\" or \"driver\", not {other:?}"),
            )),
        }
    })
    .await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hypertask-test-program: {e}");
            ExitCode::FAILURE
        }
    }
}
