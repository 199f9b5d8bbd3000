//! `wait_for_change` on a change stream: another client's write wakes a pending wait.

mod common;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hypertask_core::{Batch, Store, Task, Watch};

/// A generous bound so a broken watch fails the test instead of hanging it; not a speed
/// threshold.
const DEADLINE: Duration = Duration::from_secs(30);

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not answer within {DEADLINE:?}"))
}

/// Writes a task through another driver instance (its own client) on `collection`.
async fn write_elsewhere(collection: &str, id: &str) {
    let other = common::driver("other", collection);
    let task = Task::from_value(serde_json::json!({"id": id, "description": "from elsewhere"}))
        .expect("valid task");
    let answers = other
        .resolve(Batch::from([(task.id().clone(), Some(task))]))
        .await
        .expect("resolve");
    assert!(answers.values().all(Result::is_ok), "{answers:?}");
}

/// A store on `coll` whose change stream is open (its first call answered).
async fn watching(coll: &str) -> Arc<hypertask_driver_mongodb::MongoStore> {
    let store = Arc::new(common::store("db", coll));
    assert_eq!(
        within("the first call", store.wait_for_change())
            .await
            .expect("the change stream opens"),
        Watch::Changed
    );
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_by_another_client_wakes_a_pending_wait() {
    let coll = common::fresh_collection("watch");
    let store = watching(&coll).await;
    let pending = tokio::spawn({
        let store = Arc::clone(&store);
        async move { store.wait_for_change().await }
    });
    write_elsewhere(&coll, "watched1").await;
    let answer = within("the pending call", pending)
        .await
        .expect("the wait does not panic");
    assert_eq!(answer.expect("no error"), Watch::Changed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_wait_loses_neither_the_stream_nor_a_change() {
    let coll = common::fresh_collection("watch_drop");
    let store = watching(&coll).await;
    // A wait given up on (the daemon's select picked another branch).
    let given_up = tokio::spawn({
        let store = Arc::clone(&store);
        async move { store.wait_for_change().await }
    });
    given_up.abort();
    assert!(given_up.await.unwrap_err().is_cancelled());
    // A change while nobody waits is still answered by the next call.
    write_elsewhere(&coll, "watched2").await;
    assert_eq!(
        within("the next call", store.wait_for_change())
            .await
            .unwrap(),
        Watch::Changed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_ends_is_a_retryable_error_then_reopens() {
    let coll = common::fresh_collection("watch_end");
    write_elsewhere(&coll, "watched3").await;
    let store = watching(&coll).await;
    // Dropping the collection invalidates the stream: the server ends it.
    common::raw_collection(&coll)
        .await
        .drop()
        .await
        .expect("drop the collection");
    let mut error = None;
    for _ in 0..3 {
        // The drop itself may be answered as a change first.
        match within("a call after the drop", store.wait_for_change()).await {
            Ok(Watch::Changed) => continue,
            Ok(Watch::Unsupported) => panic!("the stream was open"),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    let error = error.expect("the ended stream is reported");
    assert!(error.is_retryable(), "{error}");
    assert_eq!(error.driver(), "db");
    assert!(error.message().contains(&coll), "{error}");
    assert_eq!(
        within("the call after the error", store.wait_for_change())
            .await
            .expect("a new stream opens"),
        Watch::Changed
    );
}

/// A standalone server (no change streams; scripts/test starts SecantusDB `--standalone` and
/// names it in `HYPERTASK_TEST_MONGODB_STANDALONE_URI`) is left to polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_server_is_polled() {
    let uri = std::env::var("HYPERTASK_TEST_MONGODB_STANDALONE_URI")
        .expect("HYPERTASK_TEST_MONGODB_STANDALONE_URI names a standalone server");
    let coll = common::fresh_collection("watch_standalone");
    let store = hypertask_driver_mongodb::MongoStore::new(
        "db",
        hypertask_driver_mongodb::MongoConfig::new(uri, common::DATABASE, coll),
    )
    .expect("valid config");
    for call in ["the first call", "a later call"] {
        assert_eq!(
            within(call, store.wait_for_change())
                .await
                .expect("a refused change stream is no error"),
            Watch::Unsupported
        );
    }
}
