//! What a no-op sync costs, counted rather than timed: against an unchanged server it makes one
//! request and reads no cache file. Its own test binary, so the process-wide file counters see
//! only this test.

mod common;

use std::fs::File;
use std::time::{Duration, SystemTime};

use common::{task, TestServer};
use hypertask_core::files::io_counts;
use hypertask_core::{Checked, Engine, Replica, SyncOptions};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_op_sync_makes_one_request_and_reads_no_task_file() {
    let srv = TestServer::with_token().await;
    let tmp = tempfile::tempdir().unwrap();
    let replica = Replica::open(tmp.path().join("data")).unwrap();
    let lock = replica.lock(Duration::from_secs(5)).unwrap();
    let tasks: Vec<_> = (0..200)
        .map(|i| task(json!({"id": format!("t{i:04}"), "description": format!("task {i}")})))
        .collect();
    replica.put(&lock, &tasks).unwrap();
    drop(lock);
    let sync = |options: SyncOptions| {
        let engine = Engine::new(
            replica.clone(),
            vec![Checked::new(srv.driver("server"))],
            options,
        );
        async move { engine.sync().await.unwrap() }
    };
    let report = sync(SyncOptions::default()).await;
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(srv.store.snapshot().len(), 200);

    // The cache's last change is old now, as it is for a user's next sync; that sync lists the
    // cache once (nothing recorded a head for this old state yet).
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    File::open(replica.task_dir().dir())
        .unwrap()
        .set_modified(hour_ago)
        .unwrap();
    let report = sync(SyncOptions::default()).await;
    assert!(report.is_ok(), "{report:?}");

    srv.log.take();
    let before = io_counts();
    let report = sync(SyncOptions::default()).await;
    assert!(report.is_ok(), "{report:?}");
    let after = io_counts();
    assert_eq!(after.task_reads - before.task_reads, 0, "no task file read");
    assert_eq!(after.dir_listings - before.dir_listings, 0, "no listing");
    let seen = srv.log.take();
    assert_eq!(seen.len(), 1, "one request: {seen:?}");
    assert_eq!(seen[0].status, 304, "{seen:?}");

    // `--rescan` lists the cache (still without reading a task file: the index knows them).
    let before = io_counts();
    let report = sync(SyncOptions {
        rescan: true,
        ..SyncOptions::default()
    })
    .await;
    assert!(report.is_ok(), "{report:?}");
    let after = io_counts();
    assert_eq!(after.dir_listings - before.dir_listings, 1);
    assert_eq!(after.task_reads - before.task_reads, 0);
    assert_eq!(srv.log.take().len(), 1);
}
