//! The engine with drivers that answer by bucket: it fetches only the differing buckets'
//! entries, and plan, guard, apply and the confirming passes stay correct with the entries it
//! did not fetch. Each driver counts the calls the engine makes.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use chrono::{Duration, Utc};
use hypertask_core::{
    Answers, Batch, Bucket, BucketListing, Change, Checked, ContentHash, Depth, Driver,
    DriverError, DriverInfo, Health, Inventory, Listing, MemoryStore, StoreDriver, SyncOptions,
    Task, TaskId,
};
use serde_json::json;

mod common;
use common::Node;

/// One call the engine made.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Hashes,
    Buckets,
    HashesIn(BTreeSet<Bucket>),
    Resolve,
}

/// A store-backed driver that declares `buckets` (answering with the trait's defaults) and
/// records every call. With `overreach`, its bucket listing lists every task, asked or not.
#[derive(Debug)]
struct Counting {
    inner: StoreDriver<Arc<MemoryStore>>,
    calls: Mutex<Vec<Call>>,
    overreach: bool,
}

impl Counting {
    fn new(store: &Arc<MemoryStore>) -> Arc<Counting> {
        Arc::new(Counting {
            inner: StoreDriver::new(store.clone()),
            calls: Mutex::new(Vec::new()),
            overreach: false,
        })
    }

    fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }

    fn record(&self, call: Call) {
        self.calls.lock().unwrap().push(call);
    }
}

#[hypertask_core::async_trait]
impl Driver for Counting {
    fn info(&self) -> DriverInfo {
        let mut info = self.inner.info();
        info.capabilities.buckets = true;
        info
    }

    async fn hashes(&self, known_root: Option<&ContentHash>) -> Result<Listing, DriverError> {
        self.record(Call::Hashes);
        self.inner.hashes(known_root).await
    }

    async fn buckets(
        &self,
        known_root: Option<&ContentHash>,
    ) -> Result<BucketListing, DriverError> {
        self.record(Call::Buckets);
        self.inner.buckets(known_root).await
    }

    async fn hashes_in(&self, buckets: &BTreeSet<Bucket>) -> Result<Inventory, DriverError> {
        self.record(Call::HashesIn(buckets.clone()));
        if self.overreach {
            if let Listing::Changed(all) = self.inner.hashes(None).await? {
                return Ok(all);
            }
        }
        self.inner.hashes_in(buckets).await
    }

    async fn resolve(&self, batch: Batch) -> Result<Answers, DriverError> {
        self.record(Call::Resolve);
        self.inner.resolve(batch).await
    }

    async fn check(&self) -> Result<Health, DriverError> {
        self.inner.check().await
    }
}

fn id(i: usize) -> TaskId {
    TaskId::new(format!("t{i:04}")).unwrap()
}

/// `n` tasks in a fresh node, synced to `store` through a counting driver.
async fn synced(n: usize, store: &Arc<MemoryStore>) -> Node {
    let node = Node::new();
    let lock = node
        .replica
        .lock(std::time::Duration::from_secs(5))
        .unwrap();
    let tasks: Vec<Task> = (0..n)
        .map(|i| {
            Task::from_value(json!({"id": id(i).as_str(), "description": format!("task {i}")}))
                .unwrap()
        })
        .collect();
    node.replica.put(&lock, &tasks).unwrap();
    drop(lock);
    let d = Counting::new(store);
    let r = node.sync(&[Checked::new(d.clone())], options()).await;
    assert!(r.is_ok(), "{r:?}");
    // An empty upstream has no bucket to fetch: the push needs no listing at all.
    assert_eq!(
        d.take(),
        [Call::Buckets, Call::Resolve, Call::Buckets],
        "initial push"
    );
    node
}

fn options() -> SyncOptions {
    SyncOptions {
        batch_size: 5000,
        ..Default::default()
    }
}

/// Ids among the first `n` whose bucket at depth 1 is `bucket`.
fn in_bucket(n: usize, bucket: &Bucket) -> Vec<TaskId> {
    (0..n)
        .map(id)
        .filter(|i| &Bucket::of(i, Depth::MIN) == bucket)
        .collect()
}

fn tombstone(node: &Node, ids: &[TaskId]) {
    let now = Utc::now();
    for i in ids {
        node.edit(
            i,
            &[Change::Set("deleted".into(), json!(now.to_rfc3339()))],
            now + Duration::seconds(1),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_few_changes_fetch_only_their_buckets() {
    let store = Arc::new(MemoryStore::new("m"));
    let a = synced(1000, &store).await;
    let b = Node::new();
    let db = Counting::new(&store);
    let r = b.sync(&[Checked::new(db.clone())], options()).await;
    assert_eq!(r.drivers[0].pulled, 1000, "{r:?}");
    assert_eq!(
        db.take()[..2],
        [Call::Buckets, Call::Hashes],
        "a new replica differs in every bucket: one whole listing"
    );

    let now = Utc::now() + Duration::seconds(1);
    let edited = [id(3), id(500), id(998)];
    for i in &edited {
        b.edit(
            i,
            &[Change::Set("description".into(), json!("edited on b"))],
            now,
        );
    }
    let r = b.sync(&[Checked::new(db.clone())], options()).await;
    assert_eq!(r.drivers[0].pushed, 3, "{r:?}");
    let calls = db.take();
    let fetched = match &calls[..] {
        [Call::Buckets, Call::HashesIn(fetched), Call::Resolve, Call::Resolve, Call::Buckets] => {
            fetched
        }
        _ => panic!("b's push: {calls:?}"),
    };
    let want: BTreeSet<Bucket> = edited.iter().map(|i| Bucket::of(i, Depth::MIN)).collect();
    assert_eq!(fetched, &want, "exactly the edited tasks' buckets");

    // A dry run on a counts the pull from the same few buckets and writes nothing.
    let da = Counting::new(&store);
    let dry = SyncOptions {
        dry_run: true,
        ..options()
    };
    let r = a.sync(&[Checked::new(da.clone())], dry).await;
    assert_eq!((r.drivers[0].pulled, r.drivers[0].pushed), (3, 0), "{r:?}");
    let r = a.sync(&[Checked::new(da.clone())], options()).await;
    assert_eq!((r.drivers[0].pulled, r.drivers[0].pushed), (3, 0), "{r:?}");
    let calls = da.take();
    assert!(
        !calls.contains(&Call::Hashes),
        "no whole listing: {calls:?}"
    );
    assert_eq!(
        calls
            .iter()
            .filter(|c| matches!(c, Call::HashesIn(f) if f == &want))
            .count(),
        2,
        "{calls:?}"
    );
    for i in &edited {
        assert_eq!(
            a.replica.get(i).unwrap().unwrap().get("description"),
            Some(&json!("edited on b"))
        );
    }
    assert_eq!(a.files(), b.files());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_in_most_buckets_list_the_whole_map() {
    let store = Arc::new(MemoryStore::new("m"));
    let a = synced(1000, &store).await;
    let now = Utc::now() + Duration::seconds(1);
    for i in (0..1000).step_by(25) {
        a.edit(
            &id(i),
            &[Change::Set("description".into(), json!("edited"))],
            now,
        );
    }
    // Forty edits spread over every bucket: more than half of them differ.
    let d = Counting::new(&store);
    let r = a.sync(&[Checked::new(d.clone())], options()).await;
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(r.drivers[0].pushed, 40, "{r:?}");
    let calls = d.take();
    assert_eq!(calls[..2], [Call::Buckets, Call::Hashes], "{calls:?}");
    assert!(
        !calls.iter().any(|c| matches!(c, Call::HashesIn(_))),
        "{calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_counts_every_upstream_task_not_only_the_fetched_ones() {
    let store = Arc::new(MemoryStore::new("m"));
    let a = synced(1000, &store).await;
    let bucket = Bucket::of(&id(0), Depth::MIN);
    let victims = in_bucket(1000, &bucket);
    assert!(victims.len() > 30, "{}", victims.len());
    // At most 1% of the 1,000 live tasks (10) may go in one sync; all the deletions fall in one
    // bucket, whose ~60 tasks alone would make 8 deletions look like more than 1%.
    let strict = SyncOptions {
        max_delete_percent: 1,
        delete_guard_min: 1,
        ..options()
    };
    tombstone(&a, &victims[..8]);
    let d = Counting::new(&store);
    let r = a.sync(&[Checked::new(d.clone())], strict.clone()).await;
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(r.drivers[0].pushed, 8);
    let calls = d.take();
    assert!(
        calls.contains(&Call::HashesIn(BTreeSet::from([bucket.clone()]))),
        "{calls:?}"
    );
    assert!(!calls.contains(&Call::Hashes), "{calls:?}");

    // Twelve more in the same bucket are more than 1% of the 992 live tasks: refused.
    tombstone(&a, &victims[8..20]);
    let r = a.sync(&[Checked::new(d.clone())], strict).await;
    let err = r.drivers[0].error.as_deref().expect("the guard trips");
    assert!(
        err.contains("12 of the 992 live tasks in the driver"),
        "{err}"
    );
    assert!(!d.take().contains(&Call::Hashes));
    assert_eq!(
        store.snapshot().values().filter(|t| t.is_deleted()).count(),
        8,
        "nothing more was written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_listing_with_tasks_outside_the_buckets_asked_fails_the_driver() {
    let store = Arc::new(MemoryStore::new("m"));
    let a = synced(200, &store).await;
    a.edit(
        &id(7),
        &[Change::Set("description".into(), json!("edited"))],
        Utc::now() + Duration::seconds(1),
    );
    let rogue = Arc::new(Counting {
        inner: StoreDriver::new(store.clone()),
        calls: Mutex::new(Vec::new()),
        overreach: true,
    });
    let r = a.sync(&[Checked::new(rogue)], options()).await;
    let err = r.drivers[0]
        .error
        .as_deref()
        .expect("the answer is refused");
    assert!(err.contains("in none of the buckets asked"), "{err}");
    assert!(
        store
            .snapshot()
            .values()
            .all(|t| t.get("description") != Some(&json!("edited"))),
        "nothing was written"
    );
}
