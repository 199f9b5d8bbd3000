//! The fs driver for hypertask: a plain directory of `<id>.json` task files (docs/storage.md),
//! so two machines sharing a Dropbox, Syncthing or network folder stay in sync.
//!
//! - Writes are atomic (temporary file, then rename) and durable per batch, and
//!   compare-and-swap under a lock file in the directory, so two processes never lose an update.
//! - Foreign files are ignored; corrupt files and files whose name and id disagree are reported
//!   by name and never overwritten.
//! - Anyone who can write the folder is untrusted: a task file is read only when it is a regular
//!   file of at most `max_task_bytes` (a symbolic link, FIFO, device or directory named like a
//!   task, or a larger file, is reported by name and left alone, never followed, never blocks),
//!   and the lock and `drivers --check` probe never open a symbolic link or a planted name.
//! - Cloud-sync conflicted copies of a task are merged in with the core merge rule, then removed.
//! - A configured directory that does not exist is an error (most likely a typo or an unmounted
//!   drive) unless `create = true`.
#![deny(missing_docs)]

mod config;
mod error;
mod store;

use std::sync::Arc;

use hypertask_core::{Driver, Registry, StoreDriver};

pub use config::FsConfig;
pub use store::FsStore;

/// The driver kind, as in `type = "fs"`.
pub const KIND: &str = "fs";

/// Registers the fs driver's factory. A namespace is a subdirectory of `path`, created when
/// `path` exists.
pub fn register(registry: &mut Registry) {
    registry.register_namespaced(KIND, |spec| {
        let mut config: FsConfig = spec.config()?;
        if !config.path.as_os_str().is_empty() {
            config.path = spec.path(&config.path);
        }
        if let Some(ns) = &spec.namespace {
            config.create |= config.path.is_dir();
            config.path = config.path.join(ns);
        }
        let store = FsStore::new(&spec.name, &config, &spec.data_dir)?
            .with_max_task_bytes(spec.max_task_bytes)
            .with_durability(spec.durability);
        Ok(Arc::new(StoreDriver::new(store)) as Arc<dyn Driver>)
    });
}
