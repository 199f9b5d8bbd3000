//! Bucketed diffs on MongoDB (issue 15): each document carries its bucket, the root document
//! keeps the bucket hashes, so a sync after a few edits reads only the differing buckets'
//! entries and a no-op is one round trip. Commands and documents are counted by the MongoDB
//! driver's own command monitoring, never timed. Collections written before the `bucket`
//! field, and writers that do not keep it, never get wrong bucket hashes answered.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use hypertask_core::{
    bucket_hashes, in_any, Access, Batch, Bucket, BucketListing, Change, Checked, Depth, Driver,
    Engine, Hashes, Listing, Replica, Store, StoreDriver, SyncOptions, SyncReport, Task, TaskId,
    Write,
};
use hypertask_driver_mongodb::document::to_document;
use hypertask_driver_mongodb::{MongoConfig, MongoStore};
use mongodb::bson::{doc, Bson, Document};
use mongodb::event::command::CommandEvent;
use mongodb::event::EventHandler;
use mongodb::options::ClientOptions;
use mongodb::Client;
use serde_json::json;

fn task(i: usize) -> Task {
    Task::from_value(json!({"id": format!("task{i:05}"), "description": format!("task {i}")}))
        .expect("valid task")
}

fn edited(t: &Task, what: &str) -> Task {
    let mut t = t.clone();
    t.edit(
        &[Change::Set("description".into(), json!(what))],
        chrono::Utc::now(),
    )
    .expect("edit");
    t
}

/// What one monitored client sent: every command's name and, for the reads of the tasks
/// collection, the filter and the documents answered.
#[derive(Default)]
struct Seen {
    commands: Vec<String>,
    filters: Vec<Document>,
    documents: usize,
}

/// A store on `coll` whose client reports every command to `seen`.
async fn monitored(coll: &str, seen: &Arc<Mutex<Seen>>) -> Arc<StoreDriver<MongoStore>> {
    let mut options = ClientOptions::parse(common::uri())
        .await
        .expect("test server URI parses");
    let ns = format!("{}.{coll}", common::DATABASE);
    let (seen, coll_name) = (seen.clone(), coll.to_owned());
    options.command_event_handler = Some(EventHandler::callback(move |event| {
        let mut seen = seen.lock().unwrap();
        match event {
            CommandEvent::Started(e) => {
                if e.command.get_str("find").ok() == Some(coll_name.as_str()) {
                    let filter = e.command.get_document("filter").cloned();
                    seen.filters.push(filter.unwrap_or_default());
                }
                seen.commands.push(e.command_name);
            }
            CommandEvent::Succeeded(e) => {
                let Ok(cursor) = e.reply.get_document("cursor") else {
                    return;
                };
                if cursor.get_str("ns").ok() != Some(ns.as_str()) {
                    return;
                }
                for batch in ["firstBatch", "nextBatch"] {
                    if let Ok(docs) = cursor.get_array(batch) {
                        seen.documents += docs.len();
                    }
                }
            }
            _ => {}
        }
    }));
    let client = Client::with_options(options).expect("client");
    let store = MongoStore::new(
        "db",
        MongoConfig::new(common::uri(), common::DATABASE, coll),
    )
    .expect("valid config")
    .with_client(client);
    Arc::new(StoreDriver::new(store))
}

async fn sync(replica: &Replica, driver: Arc<dyn Driver>) -> SyncReport {
    let report = Engine::new(
        replica.clone(),
        vec![Checked::new(driver)],
        SyncOptions::default(),
    )
    .sync()
    .await
    .expect("the local cache works");
    assert!(report.drivers[0].is_ok(), "{report:?}");
    report
}

fn put(replica: &Replica, tasks: &[Task]) {
    let lock = replica.lock(Duration::from_secs(10)).unwrap();
    replica.put(&lock, tasks).unwrap();
}

/// The whole listing of `coll`, as a fresh client sees it.
async fn listing(coll: &str) -> Hashes {
    let d = common::driver("probe", coll);
    d.begin(Access::Read).await.unwrap();
    match d.hashes(None).await.unwrap() {
        Listing::Changed(inv) => inv.hashes,
        Listing::Unchanged => unreachable!("an unconditional listing lists"),
    }
}

/// The bucket hashes the root document answers, checked against the listing when there are
/// some; `None` when it keeps none.
async fn kept_buckets_agree(coll: &str) -> Option<Depth> {
    let kept = common::store("probe", coll)
        .summary()
        .await
        .unwrap()
        .buckets?;
    assert_eq!(
        kept.hashes,
        bucket_hashes(&listing(coll).await, kept.depth),
        "the kept bucket hashes are not the listing's"
    );
    Some(kept.depth)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_edits_among_five_thousand_tasks_read_only_their_buckets() {
    const N: usize = 5000;
    let coll = common::fresh_collection("buckets");
    let dir = tempfile::tempdir().unwrap();
    let a = Replica::open(dir.path().join("a")).unwrap();
    let b = Replica::open(dir.path().join("b")).unwrap();
    let tasks: Vec<Task> = (0..N).map(task).collect();
    put(&a, &tasks);
    assert_eq!(
        sync(&a, common::driver("db", &coll)).await.drivers[0].pushed,
        N
    );
    assert_eq!(
        sync(&b, common::driver("db", &coll)).await.drivers[0].pulled,
        N
    );
    let depth = Depth::new(2).unwrap();
    assert_eq!(kept_buckets_agree(&coll).await, Some(depth));

    // Replica b edits 10 tasks: its writes keep the bucket hashes current without a listing.
    let changed: Vec<Task> = (0..10)
        .map(|k| edited(&tasks[k * 499], &format!("edited {k}")))
        .collect();
    put(&b, &changed);
    let seen_b = Arc::new(Mutex::new(Seen::default()));
    let report = sync(&b, monitored(&coll, &seen_b).await).await;
    assert_eq!(report.drivers[0].pushed, 10);
    {
        let seen = seen_b.lock().unwrap();
        assert!(
            seen.filters.iter().all(|f| !f.is_empty()),
            "the writer listed the collection: {:?}",
            seen.filters
        );
        assert!(seen.documents < 500, "{} documents read", seen.documents);
    }
    assert_eq!(kept_buckets_agree(&coll).await, Some(depth));

    // Replica a reads the bucket hashes, the differing buckets' entries and the 10 tasks.
    let seen_a = Arc::new(Mutex::new(Seen::default()));
    let report = sync(&a, monitored(&coll, &seen_a).await).await;
    assert_eq!(report.drivers[0].pulled, 10, "{report:?}");
    let differing: BTreeSet<Bucket> = changed.iter().map(|t| Bucket::of(t.id(), depth)).collect();
    let in_them = tasks.iter().filter(|t| in_any(&differing, t.id())).count();
    let seen = std::mem::take(&mut *seen_a.lock().unwrap());
    assert_eq!(
        seen.documents,
        in_them + 10,
        "read more than the {} buckets' {in_them} entries and the 10 tasks; commands {:?}, \
         filters {:?}",
        differing.len(),
        seen.commands,
        seen.filters
    );
    assert!(in_them * 10 < N, "the buckets are a small part: {in_them}");
    println!(
        "{N} tasks, 10 edited: {} commands read {} documents ({in_them} entries of {} buckets \
         and the 10 tasks)",
        seen.commands.len(),
        seen.documents,
        differing.len()
    );
    assert!(seen.filters.iter().all(|f| !f.is_empty()));
    assert!(
        seen.filters.iter().all(|f| !f.contains_key("$or")),
        "one range query per bucket, not an `$or` the server may evaluate document by \
         document: {:?}",
        seen.filters
    );

    // A no-op sync: one read of the root document.
    let seen_noop = Arc::new(Mutex::new(Seen::default()));
    let report = sync(&a, monitored(&coll, &seen_noop).await).await;
    assert_eq!(report.drivers[0].pulled + report.drivers[0].pushed, 0);
    let seen = std::mem::take(&mut *seen_noop.lock().unwrap());
    assert!(
        seen.commands.len() <= 3,
        "a no-op took {} round trips: {:?}",
        seen.commands.len(),
        seen.commands
    );
    assert_eq!(seen.documents, 0, "a no-op read task documents");
    println!("a no-op sync: {:?}", seen.commands);

    let (mut got_a, _) = a.all().unwrap();
    let (mut got_b, _) = b.all().unwrap();
    got_a.sort_by(|x, y| x.id().cmp(y.id()));
    got_b.sort_by(|x, y| x.id().cmp(y.id()));
    assert_eq!(got_a, got_b);
}

/// A document as a version before the `bucket` field wrote it.
fn old_document(t: &Task) -> Document {
    let mut d = to_document(t).unwrap();
    d.remove("bucket");
    d
}

/// A batch of writes as a version before the bucket hashes made it: the root document's
/// generation bumped around plain replacements without `bucket`.
async fn old_writer(coll: &str, tasks: &[Task]) {
    let meta = common::raw_collection(&format!("{coll}.hypertask-meta")).await;
    let bump = || async {
        meta.update_one(
            doc! { "_id": "root" },
            doc! { "$inc": { "gen": 1_i64 }, "$unset": { "root": "" } },
        )
        .upsert(true)
        .await
        .unwrap();
    };
    bump().await;
    let raw = common::raw_collection(coll).await;
    for t in tasks {
        raw.replace_one(doc! { "_id": t.id().as_str() }, old_document(t))
            .upsert(true)
            .await
            .unwrap();
    }
    bump().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_written_before_buckets_is_backfilled_and_an_old_writer_never_leaves_wrong_hashes(
) {
    let coll = common::fresh_collection("oldbuckets");
    let tasks: Vec<Task> = (0..300).map(task).collect();
    old_writer(&coll, &tasks).await;
    let old_task_field = Task::from_value(json!({"id": "uda", "bucket": "mine"})).unwrap();
    // An older version stored a task field `bucket` unescaped.
    let mut uda = to_document(&old_task_field).unwrap();
    uda.insert("bucket", "mine");
    common::raw_collection(&coll)
        .await
        .insert_one(uda)
        .await
        .unwrap();

    // A read-only sync changes nothing and answers by listing.
    let reader = common::driver("reader", &coll);
    reader.begin(Access::Read).await.unwrap();
    assert!(matches!(
        reader.buckets(None).await.unwrap(),
        BucketListing::Full(_)
    ));
    let raw = common::raw_collection(&coll).await;
    let without = raw
        .count_documents(doc! { "bucket": { "$exists": false } })
        .await
        .unwrap();
    assert_eq!(without, 300, "a read-only sync wrote");

    // A writing sync backfills the field, but the document whose `bucket` is a task field
    // keeps the collection from being answered by bucket until it is rewritten.
    let writer = common::driver("writer", &coll);
    writer.begin(Access::Write).await.unwrap();
    let listed = listing(&coll).await;
    assert_eq!(listed.len(), 301);
    assert_eq!(listed[old_task_field.id()], old_task_field.hash());
    assert!(matches!(
        writer.buckets(None).await.unwrap(),
        BucketListing::Full(_)
    ));
    let without = raw
        .count_documents(doc! { "bucket": { "$exists": false } })
        .await
        .unwrap();
    assert_eq!(without, 0, "not backfilled");
    assert_eq!(kept_buckets_agree(&coll).await, None);
    let answers = writer
        .resolve(Batch::from([(
            old_task_field.id().clone(),
            Some(edited(&old_task_field, "rewritten")),
        )]))
        .await
        .unwrap();
    assert!(answers.values().all(Result::is_ok), "{answers:?}");
    let stored = raw.find_one(doc! { "_id": "uda" }).await.unwrap().unwrap();
    assert_eq!(stored.get_str("~bucket").unwrap(), "mine");
    writer.begin(Access::Write).await.unwrap();
    assert!(matches!(
        writer.buckets(None).await.unwrap(),
        BucketListing::Full(_)
    ));
    assert_eq!(kept_buckets_agree(&coll).await, Some(Depth::MIN));

    // An older writer changes some tasks: the kept hashes are no longer answered...
    let changed: Vec<Task> = tasks[..5].iter().map(|t| edited(t, "old")).collect();
    old_writer(&coll, &changed).await;
    assert_eq!(kept_buckets_agree(&coll).await, None);
    let fresh = common::driver("fresh", &coll);
    fresh.begin(Access::Read).await.unwrap();
    match fresh.buckets(None).await.unwrap() {
        BucketListing::Full(inv) => assert_eq!(inv.hashes, listing(&coll).await),
        other => panic!("answered {other:?} after an older writer"),
    }
    // ...and a bucket's entries include its documents without `bucket`.
    let asked = BTreeSet::from([Bucket::of(changed[0].id(), Depth::MAX)]);
    let got = fresh.hashes_in(&asked).await.unwrap();
    assert_eq!(got.hashes[changed[0].id()], changed[0].hash());

    // A new writer's batch does not build on hashes an older writer left behind.
    let newer = common::driver("newer", &coll);
    newer.begin(Access::Write).await.unwrap();
    newer
        .resolve(Batch::from([(
            tasks[9].id().clone(),
            Some(edited(&tasks[9], "new")),
        )]))
        .await
        .unwrap();
    assert_eq!(kept_buckets_agree(&coll).await, None);
    // The next writing listing backfills and keeps them again.
    let _ = newer.buckets(None).await.unwrap();
    assert_eq!(kept_buckets_agree(&coll).await, Some(Depth::MIN));
    let without = raw
        .count_documents(doc! { "bucket": Bson::Null })
        .await
        .unwrap();
    assert_eq!(without, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_never_leave_wrong_bucket_hashes() {
    let coll = common::fresh_collection("bucketrace");
    let tasks: Vec<Task> = (0..400).map(task).collect();
    let setup = common::store("setup", &coll);
    setup
        .put(tasks.iter().map(|t| Write::new(t.clone(), None)).collect())
        .await
        .unwrap();
    setup.list().await.unwrap();
    assert_eq!(kept_buckets_agree(&coll).await, Some(Depth::MIN));

    // Eight clients write disjoint tasks at once, each in several batches; others list.
    let writers = (0..8).map(|c| {
        let coll = coll.clone();
        let mine: Vec<Task> = tasks.iter().skip(c).step_by(8).take(12).cloned().collect();
        async move {
            let d = common::driver(&format!("w{c}"), &coll);
            d.begin(Access::Write).await.unwrap();
            for (k, chunk) in mine.chunks(3).enumerate() {
                let batch: Batch = chunk
                    .iter()
                    .map(|t| (t.id().clone(), Some(edited(t, &format!("w{c} {k}")))))
                    .collect();
                let answers = d.resolve(batch).await.unwrap();
                assert!(answers.values().all(Result::is_ok), "{answers:?}");
                if k % 2 == 0 {
                    let _ = d.buckets(None).await.unwrap();
                }
            }
        }
    });
    join_all(writers).await;
    // Whatever interleaving happened, hashes that are answered are the listing's.
    kept_buckets_agree(&coll).await;
    let d = common::driver("after", &coll);
    d.begin(Access::Write).await.unwrap();
    match d.buckets(None).await.unwrap() {
        BucketListing::Changed(b) => {
            assert_eq!(b.hashes, bucket_hashes(&listing(&coll).await, b.depth))
        }
        BucketListing::Full(inv) => assert_eq!(inv.hashes, listing(&coll).await),
        BucketListing::Unchanged => panic!("unchanged without a known root"),
    }
    let ids: BTreeSet<TaskId> = listing(&coll).await.into_keys().collect();
    assert_eq!(ids.len(), 400);
}
