//! A sync flushes the cache's file system once, however many batches it writes (issue 15),
//! and records nothing before that flush. Its own test binary: the flush counter is global.

use hypertask_core::files::io_counts;
use hypertask_core::{Replica, SyncOptions, Task};
use serde_json::json;

mod common;
use common::{mem, Node};

#[tokio::test]
async fn a_sync_writing_many_batches_flushes_the_cache_once() {
    let (a, b) = (Node::new(), Node::new());
    let (store, d) = mem("m");
    let tasks: Vec<Task> = (0..2_500)
        .map(|i| Task::from_value(json!({"id": format!("t{i}"), "description": "x"})).unwrap())
        .collect();
    let lock = a.replica.lock(std::time::Duration::from_secs(5)).unwrap();
    a.replica.put(&lock, &tasks).unwrap();
    drop(lock);
    a.sync(std::slice::from_ref(&d), SyncOptions::default())
        .await;
    assert_eq!(store.snapshot().len(), 2_500);

    // B pulls everything: three batches of at most 1,000 written into its cache.
    let before = io_counts();
    let r = b
        .sync(std::slice::from_ref(&d), SyncOptions::default())
        .await;
    let after = io_counts();
    assert_eq!(r.drivers[0].pulled, 2_500);
    assert_eq!(
        after.flushes - before.flushes,
        1,
        "one flush for the whole sync"
    );
    assert_eq!(b.files().len(), 2_500);

    // The head record, saved after the flush, is what another process trusts.
    assert!(b.replica.data_dir().join("head.json").exists());
    let root = b.replica.trusted_root().expect("a head after the sync");
    let other = Replica::open(b.replica.data_dir()).unwrap();
    assert_eq!(
        root,
        hypertask_core::root_hash(&other.rescan().unwrap().hashes)
    );

    // Outside a sync, every batch is flushed before it returns, as before.
    let before = io_counts();
    b.put(&Task::from_value(json!({"id": "late", "description": "y"})).unwrap());
    assert_eq!(io_counts().flushes - before.flushes, 1);
}
