//! The mongodb driver against a real MongoDB-protocol server: document layout, fidelity,
//! concurrency, documents from other clients and failure modes.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::TryStreamExt;
use hypertask_core::{
    Batch, Change, Driver, ErrorKind, Listing, PutOutcome, Registry, Store, Task, TaskId, Version,
    Write,
};
use mongodb::bson::{doc, Bson};
use serde_json::json;

fn task(v: serde_json::Value) -> Task {
    Task::from_value(v).expect("valid task")
}

async fn resolve(d: &dyn Driver, t: &Task) -> Task {
    let mut out = d
        .resolve(Batch::from([(t.id().clone(), Some(t.clone()))]))
        .await
        .expect("resolve");
    out.remove(t.id())
        .unwrap()
        .expect("task resolves")
        .expect("a task")
}

async fn read(d: &dyn Driver, id: &str) -> Option<Task> {
    let id = TaskId::new(id).unwrap();
    let mut out = d
        .resolve(Batch::from([(id.clone(), None)]))
        .await
        .expect("resolve");
    out.remove(&id).unwrap().expect("task reads")
}

async fn listing(d: &dyn Driver) -> hypertask_core::Inventory {
    match d.hashes(None).await.expect("hashes") {
        Listing::Changed(inv) => inv,
        Listing::Unchanged => panic!("hashes(None) lists"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_are_plain_queryable_fields_and_round_trip_exactly() {
    let coll = common::fresh_collection("layout");
    let d = common::driver("db", &coll);
    let original = Task::from_json(
        br#"{"id": "layout1", "description": "write report", "tags": ["work", "q3"],
            "due": "2026-03-01T10:00:00+02:00",
            "priority": 1.5, "estimate": 1e21, "count": 3, "neg": -7, "whole": 2.0,
            "huge": 18446744073709551615, "small": 1e-7,
            "meta": {"z": [3, 2.5, 1, null], "a": null, "b": false, "nested": {"deep": "x"}},
            "uda.with.dots": "v", "hash": "a field of my own", "_id": 7, "$where": "x",
            "~tilde": 1}"#,
    )
    .unwrap();
    resolve(d.as_ref(), &original).await;

    let raw = common::raw_collection(&coll).await;
    let stored = raw
        .find_one(doc! { "tags": "work" })
        .await
        .unwrap()
        .expect("the task is found by a plain query on tags");
    assert_eq!(stored.get_str("_id").unwrap(), "layout1");
    assert_eq!(stored.get_str("description").unwrap(), "write report");
    assert_eq!(stored.get_str("due").unwrap(), "2026-03-01T08:00:00.000Z");
    assert_eq!(stored.get_str("hash").unwrap(), original.hash().as_str());
    assert_eq!(stored.get("count"), Some(&Bson::Int64(3)));
    assert_eq!(stored.get("priority"), Some(&Bson::Double(1.5)));
    assert_eq!(stored.get_str("~hash").unwrap(), "a field of my own");
    assert_eq!(stored.get("~_id"), Some(&Bson::Int64(7)));
    assert_eq!(stored.get_str("uda.with.dots").unwrap(), "v");
    let clocks = stored.get_document("field_updated_at").unwrap();
    assert!(
        clocks.contains_key("tags.work"),
        "dotted clock keys are stored: {clocks}"
    );
    assert!(!stored.contains_key("id"), "the id is _id only");

    let fresh = common::driver("db2", &coll);
    let back = read(fresh.as_ref(), "layout1").await.expect("stored");
    assert_eq!(back.canonical_bytes(), original.canonical_bytes());
    assert_eq!(back.hash(), original.hash());
    assert_eq!(
        listing(fresh.as_ref()).await.hashes.get(original.id()),
        Some(&original.hash())
    );
}

/// 16 clients (separate driver instances and MongoDB clients) each edit the same 8 tasks at
/// once, every client a different tag and field; every one of the 8 × 16 edits must survive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_concurrent_clients_lose_no_edit() {
    const TASKS: usize = 8;
    const CLIENTS: usize = 16;
    let coll = common::fresh_collection("concurrency");
    let setup = common::driver("setup", &coll);
    let base: Vec<Task> = (0..TASKS)
        .map(|j| {
            task(
                json!({"id": format!("shared{j}"), "description": format!("task {j}"),
                "updated_at": "2026-01-01T00:00:00Z"}),
            )
        })
        .collect();
    setup
        .resolve(
            base.iter()
                .map(|t| (t.id().clone(), Some(t.clone())))
                .collect(),
        )
        .await
        .unwrap();

    let clients: Vec<Arc<dyn Driver>> = (0..CLIENTS)
        .map(|i| common::driver(&format!("client{i}"), &coll))
        .collect();
    let mut handles = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        let client = client.clone();
        let base = base.clone();
        handles.push(tokio::spawn(async move {
            let now = chrono::Utc::now();
            let batch: Batch = base
                .into_iter()
                .enumerate()
                .map(|(j, mut t)| {
                    t.edit(
                        &[
                            Change::AddTag(format!("c{i}")),
                            Change::Set(format!("note_c{i}"), json!(i * 100 + j)),
                        ],
                        now,
                    )
                    .unwrap();
                    (t.id().clone(), Some(t))
                })
                .collect();
            let answers = client.resolve(batch).await.expect("resolve");
            for (id, r) in answers {
                let got = r.unwrap_or_else(|e| panic!("client {i}, task {id}: {e}"));
                let got = got.expect("a task");
                assert!(
                    got.tags().contains(&format!("c{i}").as_str()),
                    "own edit answered"
                );
            }
        }));
    }
    for h in handles {
        h.await.expect("client task");
    }

    let check = common::driver("checker", &coll);
    let mut merged_edits = 0;
    for (j, t) in base.iter().enumerate() {
        let fin = read(check.as_ref(), t.id().as_str())
            .await
            .expect("task exists");
        for i in 0..CLIENTS {
            let tag_kept = fin.tags().contains(&format!("c{i}").as_str());
            let field_kept = fin.get(&format!("note_c{i}")) == Some(&json!(i * 100 + j));
            assert!(
                tag_kept && field_kept,
                "client {i}'s edit of {} was lost: {fin:?}",
                t.id()
            );
            merged_edits += 1;
        }
        assert_eq!(fin.description(), format!("task {j}"));
    }
    assert_eq!(merged_edits, TASKS * CLIENTS);
    let inv = listing(check.as_ref()).await;
    assert_eq!(inv.hashes.len(), TASKS);
    for t in &base {
        let fin = read(check.as_ref(), t.id().as_str()).await.unwrap();
        assert_eq!(
            inv.hashes.get(t.id()),
            Some(&fin.hash()),
            "stored hash is the content's"
        );
    }
}

/// Documents another application wrote: without `hash` they are read whole and hashed, and
/// can be updated; documents that are not tasks are reported and left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_from_other_clients_are_listed_updated_or_reported() {
    let coll = common::fresh_collection("foreign");
    let raw = common::raw_collection(&coll).await;
    raw.insert_many([
        doc! { "_id": "byhand1", "description": "typed in mongosh", "tags": ["work"], "n": 4_i32 },
        doc! { "description": "no string id" },
        doc! { "_id": "broken1", "due": "not a date", "hash": "0".repeat(64) },
        doc! { "_id": "broken2", "due": 12_i32 },
    ])
    .await
    .unwrap();

    let d = common::driver("db", &coll);
    let inv = listing(d.as_ref()).await;
    let expected = task(json!({"id": "byhand1", "description": "typed in mongosh",
        "tags": ["work"], "n": 4}));
    assert_eq!(inv.hashes.get(expected.id()), Some(&expected.hash()));
    let problems: Vec<String> = inv.problems.iter().map(|p| p.error.to_string()).collect();
    assert_eq!(inv.problems.len(), 2, "{problems:?}");
    assert!(
        problems.iter().all(|p| p.starts_with("driver 'db': ")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("not a task id")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("broken2") && p.contains("due")),
        "{problems:?}"
    );

    // An edit of the hand-written task lands and gives it a hash.
    let mut edited = expected.clone();
    edited
        .edit(&[Change::AddTag("home".into())], chrono::Utc::now())
        .unwrap();
    let got = resolve(d.as_ref(), &edited).await;
    assert_eq!(got.tags(), vec!["home", "work"]);
    let stored = raw
        .find_one(doc! { "_id": "byhand1" })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.get_str("hash").unwrap(), got.hash().as_str());

    // A corrupt document fails alone and is never overwritten.
    let good = task(json!({"id": "fine1", "description": "ok"}));
    let answers = d
        .resolve(Batch::from([
            (
                TaskId::new("broken1").unwrap(),
                Some(task(json!({"id": "broken1"}))),
            ),
            (good.id().clone(), Some(good.clone())),
        ]))
        .await
        .unwrap();
    let err = answers[&TaskId::new("broken1").unwrap()]
        .as_ref()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidData);
    assert!(err.to_string().contains("broken1"), "{err}");
    assert_eq!(answers[good.id()].as_ref().unwrap().as_ref(), Some(&good));
    let untouched = raw
        .find_one(doc! { "_id": "broken1" })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(untouched.get_str("due").unwrap(), "not a date");
}

/// The store's own compare-and-swap: a stale `expected` is a conflict and changes nothing;
/// writing what is already stored is a no-op that succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_compare_and_swap() {
    let coll = common::fresh_collection("cas");
    let s = common::store("db", &coll);
    let v1 = task(json!({"id": "cas1", "description": "v1"}));
    let v2 = task(json!({"id": "cas1", "description": "v2", "updated_at": "2030-01-01T00:00:00Z"}));
    let put = |w: Write| {
        let s = &s;
        async move {
            let id = w.task.id().clone();
            s.put(vec![w]).await.unwrap().remove(&id).unwrap().unwrap()
        }
    };
    let written = |t: &Task| PutOutcome::Written(Version::of_hash(&t.hash()));
    assert_eq!(put(Write::new(v1.clone(), None)).await, written(&v1));
    // Insert-if-absent again: the same state is a no-op, another one a conflict.
    assert_eq!(put(Write::new(v1.clone(), None)).await, written(&v1));
    assert_eq!(
        put(Write::new(v2.clone(), None)).await,
        PutOutcome::Conflict
    );
    // Replace on a stale version is a conflict.
    let stale = Some(Version::of_hash(&v2.hash()));
    assert_eq!(
        put(Write::new(v2.clone(), stale)).await,
        PutOutcome::Conflict
    );
    let current = Some(Version::of_hash(&v1.hash()));
    assert_eq!(
        put(Write::new(v2.clone(), current.clone())).await,
        written(&v2)
    );
    assert_eq!(
        put(Write::new(v2.clone(), current)).await,
        written(&v2),
        "writing the stored state again is a no-op"
    );
    let got = s
        .get(&[v1.id().clone()])
        .await
        .unwrap()
        .remove(v1.id())
        .unwrap()
        .unwrap()
        .map(|stored| stored.task);
    assert_eq!(got, Some(v2.clone()));
    let docs: Vec<_> = common::raw_collection(&coll)
        .await
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(docs.len(), 1);
}

/// A document another application wrote without `hash`, or with a `hash` that is not a
/// string, has a version of its own that a compare-and-swap matches exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_without_a_string_hash_are_compare_and_swapped_too() {
    let coll = common::fresh_collection("casforeign");
    let raw = common::raw_collection(&coll).await;
    raw.insert_many([
        doc! { "_id": "nohash", "description": "typed by hand" },
        doc! { "_id": "numhash", "description": "odd", "hash": 42_i32 },
    ])
    .await
    .unwrap();
    let s = common::store("db", &coll);
    for name in ["nohash", "numhash"] {
        let id = TaskId::new(name).unwrap();
        let stored = s
            .get(std::slice::from_ref(&id))
            .await
            .unwrap()
            .remove(&id)
            .unwrap();
        let stored = stored.unwrap().unwrap();
        let mut edited = stored.task.clone();
        edited
            .edit(&[Change::AddTag("x".into())], chrono::Utc::now())
            .unwrap();
        let bogus = Some(Version::new("0".repeat(64)));
        let out = s
            .put(vec![Write::new(edited.clone(), bogus)])
            .await
            .unwrap();
        assert_eq!(out[&id].as_ref().unwrap(), &PutOutcome::Conflict, "{name}");
        let out = s
            .put(vec![Write::new(
                edited.clone(),
                Some(stored.version.clone()),
            )])
            .await
            .unwrap();
        assert!(
            matches!(out[&id], Ok(PutOutcome::Written(_))),
            "{name}: {out:?}"
        );
        // The version it was read at is stale now.
        let out = s
            .put(vec![Write::new(stored.task.clone(), Some(stored.version))])
            .await
            .unwrap();
        assert_eq!(out[&id].as_ref().unwrap(), &PutOutcome::Conflict, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_the_server_and_writes_a_probe_outside_the_tasks() {
    let coll = common::fresh_collection("check");
    let d = common::driver("db", &coll);
    let health = d.check().await.expect("check");
    assert!(health.ok, "{}", health.detail);
    assert!(health.detail.contains("MongoDB"), "{}", health.detail);
    assert!(health.detail.contains(&coll), "{}", health.detail);
    assert!(
        listing(d.as_ref()).await.hashes.is_empty(),
        "the probe is not a task"
    );
    let client = mongodb::Client::with_uri_str(common::uri()).await.unwrap();
    let probe = client
        .database(common::DATABASE)
        .collection::<mongodb::bson::Document>(&format!("{coll}.hypertask-check"))
        .find_one(doc! { "_id": "probe" })
        .await
        .unwrap()
        .expect("probe written");
    assert_eq!(probe.get_str("by").unwrap(), "db");
}

/// Nobody listens: every operation fails with a retryable error naming the instance, without
/// waiting for the operating system's TCP timeouts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_fails_fast_naming_the_driver() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut registry = Registry::new();
    hypertask_driver_mongodb::register(&mut registry);
    let mut spec = common::spec("office-db", &format!("mongodb://127.0.0.1:{port}"), "tasks");
    spec.options["server_selection_timeout_ms"] = json!(500);
    // Building never connects.
    let d = registry.build(&spec).expect("builds without connecting");
    assert_eq!(d.info().kind, "mongodb");
    assert!(d.info().capabilities.remote && d.info().capabilities.atomic_writes);

    let e = d.hashes(None).await.unwrap_err();
    assert_eq!(e.driver(), "office-db");
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(e.is_retryable());
    let text = e.to_string();
    assert!(text.starts_with("driver 'office-db': "), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    let e = d.check().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    let t = task(json!({"id": "x1"}));
    let e = d
        .resolve(Batch::from([(t.id().clone(), Some(t))]))
        .await
        .unwrap_err();
    assert_eq!(e.driver(), "office-db");
}

#[test]
fn bad_configs_are_config_errors_naming_the_instance() {
    let mut registry = Registry::new();
    hypertask_driver_mongodb::register(&mut registry);
    let mut spec = common::spec("db", "mongodb://127.0.0.1:1", "tasks");
    spec.options["colection"] = json!("typo");
    let e = registry.build(&spec).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(
        e.to_string().contains("colection") && e.to_string().contains("[drivers.db]"),
        "{e}"
    );
    let mut spec = common::spec("db", "mongodb://127.0.0.1:1", "");
    spec.options["collection"] = json!("");
    assert_eq!(registry.build(&spec).unwrap_err().kind(), ErrorKind::Config);
}

#[tokio::test]
async fn an_invalid_uri_is_a_config_error_on_first_use() {
    let mut registry = Registry::new();
    hypertask_driver_mongodb::register(&mut registry);
    let d = registry
        .build(&common::spec("db", "http://not-mongodb", "tasks"))
        .unwrap();
    let e = d.hashes(None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert_eq!(e.driver(), "db");
}

#[test]
fn tag_sets_survive_as_arrays() {
    // The set semantics the query `{"tags": "work"}` relies on.
    let t = task(json!({"id": "tags1", "tags": ["b", "a", "b"]}));
    let doc = hypertask_driver_mongodb::document::to_document(&t).unwrap();
    let tags: BTreeSet<&str> = doc
        .get_array("tags")
        .unwrap()
        .iter()
        .filter_map(Bson::as_str)
        .collect();
    assert_eq!(tags, BTreeSet::from(["a", "b"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_inserts_settles_clashes_one_by_one() {
    let coll = common::fresh_collection("batchins");
    let s = common::store("db", &coll);
    let old = task(json!({"id": "exists1", "description": "stored"}));
    let new = |id: &str| task(json!({"id": id, "description": "new"}));
    let w = |t: &Task| Write::new(t.clone(), None);
    s.put(vec![w(&old)]).await.unwrap();
    let other = task(
        json!({"id": "exists1", "description": "someone else's", "updated_at": "2030-01-01T00:00:00Z"}),
    );
    let outcomes = s
        .put(vec![w(&new("fresh1")), w(&old), w(&new("fresh2"))])
        .await
        .unwrap();
    assert!(
        outcomes
            .values()
            .all(|o| matches!(o, Ok(PutOutcome::Written(_)))),
        "new ids insert together, an equal stored task is a no-op: {outcomes:?}"
    );
    let clash = s.put(vec![w(&new("fresh3")), w(&other)]).await.unwrap();
    assert_eq!(clash[other.id()].as_ref().unwrap(), &PutOutcome::Conflict);
    assert!(matches!(
        clash[new("fresh3").id()],
        Ok(PutOutcome::Written(_))
    ));
    let got = s
        .get(&[new("fresh2").id().clone(), old.id().clone()])
        .await
        .unwrap();
    let task_of = |t: &Task| {
        got[t.id()]
            .as_ref()
            .unwrap()
            .as_ref()
            .map(|s| s.task.clone())
    };
    assert_eq!(task_of(&old), Some(old.clone()));
    assert_eq!(task_of(&new("fresh2")), Some(new("fresh2")));
}

/// Many ids are read by one unfiltered scan when they are most of the collection, and in `$in`
/// lists of at most 1,000 otherwise: either way exactly the tasks asked, absent ones as none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_ids_read_the_same_by_a_scan_or_in_lists() {
    let coll = common::fresh_collection("manyids");
    let s = common::store("db", &coll);
    let tasks: Vec<Task> = (0..2100)
        .map(|i| task(json!({"id": format!("t{i:04}"), "description": format!("n{i}")})))
        .collect();
    let writes = tasks.iter().map(|t| Write::new(t.clone(), None)).collect();
    let puts = s.put(writes).await.unwrap();
    assert!(puts
        .values()
        .all(|o| matches!(o, Ok(PutOutcome::Written(_)))));
    assert_eq!(s.list().await.unwrap().entries.len(), 2100);
    let absent = TaskId::new("absent").unwrap();
    // 2,101 ids of 2,100 listed: one scan. 1,041 ids: two `$in` lists.
    for wanted in [&tasks[..], &tasks[..1040]] {
        let mut ids: Vec<TaskId> = wanted.iter().map(|t| t.id().clone()).collect();
        ids.push(absent.clone());
        let got = s.get(&ids).await.unwrap();
        assert_eq!(got.len(), ids.len());
        assert!(matches!(got[&absent], Ok(None)));
        for t in wanted {
            let stored = got[t.id()].as_ref().unwrap().as_ref().expect("stored");
            assert_eq!(&stored.task, t);
        }
    }
}
