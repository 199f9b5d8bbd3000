//! What the sqlite store does beyond the conformance suite: its root without a listing (kept
//! across its own writes), and another process's commit noticed.

use hypertask_core::{root_hash, Driver, Listing, Store, StoreDriver, Task, Write};
use hypertask_driver_sqlite::{SqliteConfig, SqliteStore};
use serde_json::json;

fn task(id: &str, d: &str) -> Task {
    Task::from_value(json!({"id": id, "description": d})).unwrap()
}

#[tokio::test]
async fn the_root_is_kept_across_own_writes_until_another_connection_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("server.sqlite3");
    let a = SqliteStore::new("db", &SqliteConfig::new(&path)).unwrap();
    let b = SqliteStore::new("db", &SqliteConfig::new(&path)).unwrap();
    assert_eq!(
        a.root().await.unwrap(),
        Some(root_hash(&Default::default()))
    );
    assert!(!path.exists(), "a read creates nothing");

    a.put(vec![Write::new(task("x", "1"), None)]).await.unwrap();
    assert_eq!(a.root().await.unwrap(), None, "never listed: no root known");
    let listed = a.list().await.unwrap();
    let mut hashes: hypertask_core::Hashes = listed
        .entries
        .iter()
        .map(|(id, e)| (id.clone(), e.hash.clone()))
        .collect();
    let root = root_hash(&hashes);
    assert_eq!(a.root().await.unwrap(), Some(root.clone()));
    let driver = StoreDriver::new(a.clone());
    assert!(matches!(
        driver.hashes(Some(&root)).await.unwrap(),
        Listing::Unchanged
    ));

    // Its own writes keep it: the listed map follows them, and the root is theirs.
    let z = task("z", "3");
    a.put(vec![Write::new(z.clone(), None)]).await.unwrap();
    hashes.insert(z.id().clone(), z.hash());
    assert_eq!(a.root().await.unwrap(), Some(root_hash(&hashes)));

    // Another connection's commit: the kept root is not trusted any more.
    let _ = b.list().await.unwrap();
    b.put(vec![Write::new(task("y", "2"), None)]).await.unwrap();
    assert_eq!(a.root().await.unwrap(), None);
    assert_eq!(a.list().await.unwrap().entries.len(), 3);
    // Nor after its own next write: the map it kept misses the other's.
    a.put(vec![Write::new(task("w", "4"), None)]).await.unwrap();
    let _ = b.put(vec![Write::new(task("v", "5"), None)]).await.unwrap();
    assert_eq!(a.root().await.unwrap(), None);
    let listed = a.list().await.unwrap();
    assert_eq!(listed.entries.len(), 5);
    assert_eq!(
        a.root().await.unwrap(),
        Some(root_hash(
            &listed
                .entries
                .iter()
                .map(|(id, e)| (id.clone(), e.hash.clone()))
                .collect()
        ))
    );
}

#[test]
fn a_missing_file_without_create_is_a_config_error() {
    let tmp = tempfile::tempdir().unwrap();
    let config = SqliteConfig {
        path: tmp.path().join("absent.sqlite3"),
        create: false,
    };
    let store = SqliteStore::new("db", &config).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let e = rt.block_on(store.list()).unwrap_err();
    assert_eq!(e.kind(), hypertask_core::ErrorKind::Config);
    assert!(e.to_string().contains("absent.sqlite3"), "{e}");
}

/// Many connections creating one new file at once: SQLite answers "database is locked" to all
/// but one while the first switches the file to the write-ahead log; none of them may fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_connections_creating_one_file_at_once_all_succeed() {
    for round in 0..20 {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("new.sqlite3");
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(8));
        let writers = (0..8).map(|i| {
            let store = SqliteStore::new("db", &SqliteConfig::new(&path)).unwrap();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .put(vec![Write::new(task(&format!("t{i}"), "x"), None)])
                    .await
            })
        });
        for w in writers.collect::<Vec<_>>() {
            w.await
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
    }
}
