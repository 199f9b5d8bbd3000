//! `hypertask-driver-jsonfile`: the jsonfile store as an external driver program.
use std::sync::Arc;

use hypertask_core::external::serve_stdio;
use hypertask_core::StoreDriver;
use hypertask_driver_jsonfile::JsonFileStore;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let served = serve_stdio(|spec| {
        let config = spec.config()?;
        Ok(Arc::new(StoreDriver::new(JsonFileStore::new(
            &spec.name, config,
        ))))
    })
    .await;
    match served {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hypertask-driver-jsonfile: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
