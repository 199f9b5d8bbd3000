//! The core conformance suite against real SQLite files: each case gets a fresh file, and every
//! client its own connection, as separate processes would have.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use hypertask_core::conformance::{Harness, Upstream};
use hypertask_core::{async_trait, Driver, Store, StoreDriver, TaskId};
use hypertask_driver_sqlite::{SqliteConfig, SqliteStore};

struct SqliteHarness {
    root: tempfile::TempDir,
    next: AtomicUsize,
}

/// One database file; each client is a store of its own over it.
struct File(PathBuf);

impl File {
    fn store(&self) -> SqliteStore {
        SqliteStore::new("db", &SqliteConfig::new(&self.0)).expect("store")
    }
}

#[async_trait]
impl Harness for SqliteHarness {
    async fn upstream(&self) -> Box<dyn Upstream> {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        Box::new(File(self.root.path().join(format!("upstream{n}.sqlite3"))))
    }
}

#[async_trait]
impl Upstream for File {
    async fn client(&self) -> Arc<dyn Driver> {
        Arc::new(StoreDriver::new(self.store()))
    }

    async fn store(&self) -> Option<Arc<dyn Store>> {
        Some(Arc::new(File::store(self)))
    }

    /// A row written by something other than this store: the raw bytes, no hash.
    async fn plant(&self, id: &TaskId, raw: &[u8]) -> bool {
        let conn = rusqlite::Connection::open(&self.0).expect("open");
        conn.execute(
            "CREATE TABLE IF NOT EXISTS tasks (id TEXT PRIMARY KEY NOT NULL, hash TEXT, \
             rev INTEGER NOT NULL, body BLOB NOT NULL) WITHOUT ROWID",
            [],
        )
        .expect("schema");
        conn.execute(
            "INSERT INTO tasks (id, hash, rev, body) VALUES (?1, NULL, 1, ?2)",
            rusqlite::params![id.as_str(), raw],
        )
        .expect("plant");
        true
    }
}

hypertask_core::conformance_tests!(SqliteHarness {
    root: tempfile::tempdir().expect("temp dir"),
    next: AtomicUsize::new(0),
});
