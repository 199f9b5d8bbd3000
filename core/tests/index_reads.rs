//! A sync parses the cache's stat index once, however many of its steps need it (issue 15:
//! "each pass reads what it needs once"). Its own test binary: the counter is global.

use std::time::Duration;

use chrono::Utc;
use hypertask_core::files::io_counts;
use hypertask_core::{Change, Engine, Replica, SyncOptions, Task};
use serde_json::json;

mod common;
use common::{mem, Node};

#[tokio::test]
async fn a_sync_right_after_an_edit_by_another_process_parses_the_index_once() {
    let a = Node::new();
    let (store, d) = mem("m");
    // Large enough that a head still in its racy window is waited out and confirmed by a
    // listing (which reads the index) rather than replaced by a listing with a stat per file.
    let tasks: Vec<Task> = (0..5_000)
        .map(|i| Task::from_value(json!({"id": format!("t{i}"), "description": "x"})).unwrap())
        .collect();
    let lock = a.replica.lock(Duration::from_secs(5)).unwrap();
    a.replica.put(&lock, &tasks).unwrap();
    drop(lock);
    a.sync(std::slice::from_ref(&d), SyncOptions::default())
        .await;
    assert_eq!(store.snapshot().len(), 5_000);

    // Another process edits ten tasks (as `hypertask modify` does) and a third one syncs:
    // each opens the cache afresh, with nothing of it in memory.
    let editor = Replica::open(a.replica.data_dir()).unwrap();
    let lock = editor.lock(Duration::from_secs(5)).unwrap();
    let edited: Vec<Task> = (0..10)
        .map(|i| {
            let mut t = tasks[i * 400].clone();
            t.edit(
                &[Change::Set("description".into(), json!("edited"))],
                Utc::now(),
            )
            .unwrap();
            t
        })
        .collect();
    editor.put(&lock, &edited).unwrap();
    drop(lock);

    let syncer = Replica::open(a.replica.data_dir()).unwrap();
    let before = io_counts();
    let report = Engine::new(syncer, vec![d], SyncOptions::default())
        .sync()
        .await
        .unwrap();
    let after = io_counts();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.drivers[0].pushed, 10);
    assert_eq!(after.index_reads - before.index_reads, 1, "{report:?}");
    assert_eq!(
        after.task_reads - before.task_reads,
        10,
        "the edited tasks only"
    );
    assert_eq!(
        after.dir_listings - before.dir_listings,
        0,
        "no listing with stats"
    );
}
