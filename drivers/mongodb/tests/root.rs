//! The collection's root hash kept in a side document: a no-op reads one document instead of
//! every hash; any write drops it; a listing stores it again; a read-only sync stores nothing;
//! and a pull of most of the collection reads it whole.

mod common;

use hypertask_core::{root_hash, Access, Batch, Driver, Listing, Store, StoreDriver, Task, Write};
use mongodb::bson::doc;
use serde_json::json;

fn task(id: &str, d: &str) -> Task {
    Task::from_value(json!({"id": id, "description": d})).expect("valid task")
}

async fn root_doc(coll: &str) -> Option<mongodb::bson::Document> {
    common::raw_collection(&format!("{coll}.hypertask-meta"))
        .await
        .find_one(doc! { "_id": "root" })
        .await
        .expect("read the root document")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_root_document_answers_a_no_op_and_every_write_drops_it() {
    let coll = common::fresh_collection("root");
    let store = common::store("db", &coll);
    store.begin(Access::Write).await.unwrap();
    let writes = (0..5)
        .map(|i| Write::new(task(&format!("t{i}"), "x"), None))
        .collect();
    store.put(writes).await.unwrap();
    assert_eq!(store.root().await.unwrap(), None, "a write drops the root");

    let listed = store.list().await.unwrap();
    let hashes = listed
        .entries
        .iter()
        .map(|(id, e)| (id.clone(), e.hash.clone()))
        .collect();
    let root = root_hash(&hashes);
    assert_eq!(store.root().await.unwrap(), Some(root.clone()));
    // Another client (its own MongoDB client) answers an unchanged root without listing.
    let other = StoreDriver::new(common::store("db", &coll));
    assert!(matches!(
        other.hashes(Some(&root)).await.unwrap(),
        Listing::Unchanged
    ));

    // A write by the other client drops it for everyone.
    other.begin(Access::Write).await.unwrap();
    let answers = other
        .resolve(Batch::from([(
            task("t9", "y").id().clone(),
            Some(task("t9", "y")),
        )]))
        .await
        .unwrap();
    assert!(answers.values().all(Result::is_ok));
    assert_eq!(store.root().await.unwrap(), None);
    assert!(root_doc(&coll).await.unwrap().get_str("root").is_err());

    // A read-only sync lists but leaves the root document alone.
    let reader = common::store("db", &coll);
    reader.begin(Access::Read).await.unwrap();
    let _ = reader.list().await.unwrap();
    assert_eq!(reader.root().await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_of_most_of_the_collection_reads_every_asked_task() {
    let coll = common::fresh_collection("pull");
    let store = common::store("db", &coll);
    let tasks: Vec<Task> = (0..1500)
        .map(|i| task(&format!("p{i:05}"), &format!("task {i}")))
        .collect();
    store
        .put(tasks.iter().map(|t| Write::new(t.clone(), None)).collect())
        .await
        .unwrap();
    let reader = common::store("db", &coll);
    assert_eq!(reader.list().await.unwrap().entries.len(), 1500);
    // 1,200 of 1,500 ids, plus one that does not exist: one scan answers them all.
    let mut ids: Vec<_> = tasks[..1200].iter().map(|t| t.id().clone()).collect();
    ids.push(hypertask_core::TaskId::new("absent").unwrap());
    let got = reader.get(&ids).await.unwrap();
    assert_eq!(got.len(), 1201);
    for t in &tasks[..1200] {
        let stored = got[t.id()].as_ref().unwrap().as_ref().unwrap();
        assert_eq!(&stored.task, t);
    }
    assert!(got[&ids[1200]].as_ref().unwrap().is_none());
}
