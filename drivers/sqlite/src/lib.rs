//! The sqlite driver for hypertask: every task in one SQLite file, and the default store of
//! `hypertask serve`.
//!
//! - One table, `tasks(id, hash, rev, body)`: the task's canonical JSON, the content hash written
//!   with it, and a revision that is the compare-and-swap token. Each `put` is one
//!   `BEGIN IMMEDIATE` transaction that checks every expected revision and writes, so concurrent
//!   writers (threads or processes) never lose an update; the write-ahead log with
//!   `synchronous = FULL` makes each committed request durable.
//! - The root hash is kept in memory while `PRAGMA data_version` says no other connection
//!   committed since it was computed, and dropped by this store's own writes: an unchanged store
//!   answers a known root without reading a row.
//! - Rows it did not write (no valid hash, a body that is not the task named by the id) are
//!   reported by id and never overwritten.
//!
//! # Why SQLite and not redb
//!
//! Both are one file, crash-safe and transactional, and both keep `hypertask serve` free of
//! anything to install. SQLite was chosen because its file can be opened by every other process
//! at once under its own locking (a second `hypertask serve`, a `sqlite` driver instance, the
//! `sqlite3` shell for inspection and repair) while redb takes the file for one process; its
//! durability and concurrency are among the most tested of any store; and TaskChampion, the
//! peer this project measures itself against, keeps its replicas in SQLite too, so the two are
//! compared on the same engine. The price is a C compiler at build time (`rusqlite`'s
//! `bundled` build compiles SQLite from source, with no system library needed).
#![deny(missing_docs)]

mod config;
mod error;
mod store;

use std::sync::Arc;

use hypertask_core::{Driver, Registry, StoreDriver};

pub use config::SqliteConfig;
pub use store::SqliteStore;

/// The driver kind, as in `type = "sqlite"`.
pub const KIND: &str = "sqlite";

/// Registers the sqlite driver's factory. A namespace is a database file of its own beside
/// `path` (`tasks.sqlite3` → `tasks.NS.sqlite3`), created when that directory exists.
pub fn register(registry: &mut Registry) {
    registry.register_namespaced(KIND, |spec| {
        let mut config: SqliteConfig = spec.config()?;
        if !config.path.as_os_str().is_empty() {
            config.path = spec.path(&config.path);
        }
        if let Some(ns) = &spec.namespace {
            config.path = namespaced(&config.path, ns);
            config.create |= config.path.parent().is_some_and(std::path::Path::is_dir);
        }
        let store = SqliteStore::new(&spec.name, &config)?;
        Ok(Arc::new(StoreDriver::new(store)) as Arc<dyn Driver>)
    });
}

/// `dir/stem.ext` → `dir/stem.NS.ext` (`dir/stem.NS` without an extension).
fn namespaced(path: &std::path::Path, ns: &str) -> std::path::PathBuf {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let name = match path.extension() {
        Some(ext) => format!("{stem}.{ns}.{}", ext.to_string_lossy()),
        None => format!("{stem}.{ns}"),
    };
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn a_namespace_is_a_file_beside_the_database() {
        assert_eq!(
            super::namespaced(Path::new("/srv/server.sqlite3"), "alice"),
            Path::new("/srv/server.alice.sqlite3")
        );
        assert_eq!(
            super::namespaced(Path::new("tasks"), "bob"),
            Path::new("tasks.bob")
        );
    }
}
