//! `hypertask-driver-jsonfile`: the jsonfile store as an external program (protocol 1, store
//! level), so a stock `hypertask` can use `type = "jsonfile"` once this is on `PATH`.

use std::sync::Arc;

use hypertask_core::external::{serve_stdio, Served};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let served = serve_stdio(|spec| {
        let store = hypertask_driver_jsonfile::store(spec)?;
        Ok(Served::Store(Arc::new(store)))
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
