//! The driver boundary: whatever a driver answers, the engine acts only on answers that are
//! filed under the id asked, read back with the hash listed, and come in time; a driver that
//! panics or hangs fails alone. And the data-loss cases of the boundary: journal both sides'
//! losers, count live tasks in the guard, begin/finish once per sync.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use hypertask_core::{
    async_trait, Access, Answers, Batch, Change, Checked, ContentHash, Driver, DriverError,
    DriverInfo, Gets, Health, Listing, MemoryStore, Puts, Side, Store, StoreDriver, StoreInventory,
    SyncOptions, Task, TaskId, Write,
};
use serde_json::json;

mod common;
use common::{mem, Node};

fn id(s: &str) -> TaskId {
    TaskId::new(s).unwrap()
}

fn task(name: &str, description: &str) -> Task {
    Task::from_value(
        json!({"id": name, "description": description, "updated_at": "2026-01-01T00:00:00Z"}),
    )
    .unwrap()
}

/// What a misbehaving driver does wrong.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// Answers reads with the states of other ids (a position-for-id mix-up).
    Misfile,
    /// Lists a hash that is not the hash of the task it then returns.
    WrongHash,
    /// Answers an id nobody asked for, next to the right answers.
    ExtraId,
    /// Panics when asked to resolve.
    Panic,
    /// Never answers a listing.
    Hang,
}

/// A driver over a memory store that misbehaves in one way, counting the sync calls it gets.
#[derive(Debug)]
struct Rogue {
    inner: StoreDriver<Arc<MemoryStore>>,
    fault: Option<Fault>,
    calls: Mutex<Vec<String>>,
}

impl Rogue {
    fn new(store: Arc<MemoryStore>, fault: Option<Fault>) -> Arc<Rogue> {
        Arc::new(Rogue {
            inner: StoreDriver::new(store),
            fault,
            calls: Mutex::default(),
        })
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn log(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
}

#[async_trait]
impl Driver for Rogue {
    fn info(&self) -> DriverInfo {
        let mut info = self.inner.info();
        info.name = "rogue".into();
        info
    }

    async fn begin(&self, access: Access) -> Result<(), DriverError> {
        self.log(format!("begin {access:?}"));
        self.inner.begin(access).await
    }

    async fn hashes(&self, known: Option<&ContentHash>) -> Result<Listing, DriverError> {
        if self.fault == Some(Fault::Hang) {
            std::future::pending::<()>().await;
        }
        let mut listing = self.inner.hashes(known).await?;
        if let (Some(Fault::WrongHash), Listing::Changed(inv)) = (self.fault, &mut listing) {
            for h in inv.hashes.values_mut() {
                *h = ContentHash::of_bytes(b"not the task");
            }
        }
        Ok(listing)
    }

    async fn resolve(&self, batch: Batch) -> Result<Answers, DriverError> {
        let writes = batch.values().filter(|s| s.is_some()).count();
        self.log(format!("resolve {} writes {writes}", batch.len()));
        if self.fault == Some(Fault::Panic) {
            panic!("the rogue driver broke");
        }
        let mut answers = self.inner.resolve(batch).await?;
        match self.fault {
            Some(Fault::Misfile) if writes == 0 && answers.len() > 1 => {
                // Rotate the states one id along: every id gets another task's state.
                let ids: Vec<TaskId> = answers.keys().cloned().collect();
                let states: Vec<_> = ids.iter().map(|i| answers.remove(i).unwrap()).collect();
                for (i, state) in states.into_iter().enumerate() {
                    answers.insert(ids[(i + 1) % ids.len()].clone(), state);
                }
            }
            Some(Fault::ExtraId) => {
                answers.insert(id("intruder"), Ok(Some(task("intruder", "planted"))));
            }
            _ => {}
        }
        Ok(answers)
    }

    async fn finish(&self) -> Result<(), DriverError> {
        self.log("finish".into());
        self.inner.finish().await
    }

    async fn check(&self) -> Result<Health, DriverError> {
        self.inner.check().await
    }
}

/// A node holding three synced tasks, then a local edit of `b`; returns the node, the store
/// and the edited task.
async fn edited_node() -> (Node, Arc<MemoryStore>, Task) {
    let node = Node::new();
    let store = Arc::new(MemoryStore::new("rogue"));
    for n in ["a", "b", "c"] {
        node.put(&task(n, &format!("task {n}")));
    }
    let honest = Checked::new(Rogue::new(store.clone(), None));
    assert!(node.sync(&[honest], SyncOptions::default()).await.is_ok());
    // Another machine changes every task upstream, this one edits `b`.
    let mut upstream = Vec::new();
    for n in ["a", "b", "c"] {
        let mut t = store.snapshot()[&id(n)].clone();
        t.edit(&[Change::AddTag(format!("up-{n}"))], Utc::now())
            .unwrap();
        upstream.push(Write::new(t, None));
    }
    for w in upstream {
        let current = store.list().await.unwrap().entries[w.task.id()]
            .version
            .clone();
        store
            .put(vec![Write::new(w.task, Some(current))])
            .await
            .unwrap();
    }
    let edited = node.edit(
        &id("b"),
        &[Change::Set("description".into(), json!("my edit"))],
        Utc::now(),
    );
    (node, store, edited)
}

#[tokio::test]
async fn answers_filed_under_other_ids_never_overwrite_a_local_edit() {
    let (node, store, edited) = edited_node().await;
    let rogue = Checked::new(Rogue::new(store.clone(), Some(Fault::Misfile)));
    let report = node.sync(&[rogue], SyncOptions::default()).await;
    let rep = &report.drivers[0];
    assert!(!report.is_ok());
    assert!(
        rep.failed
            .iter()
            .any(|f| f.contains("rogue") && f.contains("answered task")),
        "{rep:?}"
    );
    let local = node.replica.get(&id("b")).unwrap().unwrap();
    assert_eq!(local.description(), "my edit", "the local edit survived");
    assert_eq!(local, edited);
    for n in ["a", "c"] {
        let t = node.replica.get(&id(n)).unwrap().unwrap();
        assert_eq!(
            t.description(),
            format!("task {n}"),
            "{n} holds no other task's state"
        );
    }
    // With an honest driver the same sync ends with both edits.
    let honest = Checked::new(Rogue::new(store.clone(), None));
    assert!(node.sync(&[honest], SyncOptions::default()).await.is_ok());
    let b = node.replica.get(&id("b")).unwrap().unwrap();
    assert_eq!(b.description(), "my edit");
    assert!(b.has_tag("up-b"));
    assert_eq!(store.snapshot()[&id("b")], b);
}

#[tokio::test]
async fn a_store_whose_get_misfiles_answers_fails_those_tasks_by_name() {
    /// A third-party store whose `get` pairs its answers with the ids by position after
    /// sorting them in reverse: the mistake of the original bug.
    #[derive(Debug)]
    struct Shuffled(MemoryStore);

    #[async_trait]
    impl Store for Shuffled {
        fn info(&self) -> DriverInfo {
            self.0.info()
        }
        async fn list(&self) -> Result<StoreInventory, DriverError> {
            self.0.list().await
        }
        async fn get(&self, ids: &[TaskId]) -> Result<Gets, DriverError> {
            let answers = self.0.get(ids).await?;
            let mut values: Vec<_> = answers.into_values().collect();
            values.reverse();
            Ok(ids.iter().cloned().zip(values).collect())
        }
        async fn put(&self, writes: Vec<Write>) -> Result<Puts, DriverError> {
            self.0.put(writes).await
        }
        async fn check(&self) -> Result<Health, DriverError> {
            self.0.check().await
        }
    }

    let node = Node::new();
    for n in ["x1", "x2", "x3"] {
        node.put(&task(n, n));
    }
    let driver = Checked::new(Arc::new(StoreDriver::new(Shuffled(MemoryStore::new(
        "shuffled",
    )))));
    // The push creates the tasks (reads of absent tasks are all `None`), so it succeeds.
    assert!(node
        .sync(std::slice::from_ref(&driver), SyncOptions::default())
        .await
        .is_ok());
    for n in ["x1", "x2", "x3"] {
        node.edit(
            &id(n),
            &[Change::Set(
                "description".into(),
                json!(format!("mine {n}")),
            )],
            Utc::now(),
        );
    }
    let report = node.sync(&[driver], SyncOptions::default()).await;
    let failed = &report.drivers[0].failed;
    for n in ["x1", "x3"] {
        assert!(
            failed
                .iter()
                .any(|f| f.contains(&format!("'{n}'")) && f.contains("answered with task")),
            "{report:?}"
        );
    }
    for n in ["x1", "x2", "x3"] {
        let t = node.replica.get(&id(n)).unwrap().unwrap();
        assert_eq!(
            t.description(),
            format!("mine {n}"),
            "{n} kept its own state"
        );
    }
}

#[tokio::test]
async fn a_listed_hash_that_is_not_the_tasks_hash_is_a_named_error() {
    let (node, store, edited) = edited_node().await;
    let rogue = Checked::new(Rogue::new(store, Some(Fault::WrongHash)));
    let report = node.sync(&[rogue], SyncOptions::default()).await;
    let failed = &report.drivers[0].failed;
    assert!(
        failed.iter().any(|f| f.contains("was listed with hash")),
        "{report:?}"
    );
    assert_eq!(node.replica.get(&id("b")).unwrap().unwrap(), edited);
}

#[tokio::test]
async fn an_answer_for_an_id_not_asked_is_reported_and_ignored() {
    let (node, store, _) = edited_node().await;
    let rogue = Checked::new(Rogue::new(store, Some(Fault::ExtraId)));
    let report = node.sync(&[rogue], SyncOptions::default()).await;
    assert!(
        report.drivers[0]
            .failed
            .iter()
            .any(|f| f.contains("'intruder', which was not asked")),
        "{report:?}"
    );
    assert!(node.replica.get(&id("intruder")).unwrap().is_none());
}

#[tokio::test]
async fn a_panicking_driver_fails_alone() {
    let node = Node::new();
    node.put(&task("p1", "kept"));
    let rogue = Checked::new(Rogue::new(
        Arc::new(MemoryStore::new("r")),
        Some(Fault::Panic),
    ));
    let (store, good) = mem("good");
    let report = node.sync(&[rogue, good], SyncOptions::default()).await;
    let err = report.drivers[0]
        .error
        .as_deref()
        .expect("the rogue driver failed");
    assert!(err.contains("rogue") && err.contains("panicked"), "{err}");
    assert!(report.drivers[1].is_ok(), "{report:?}");
    assert!(store.snapshot().contains_key(&id("p1")));
}

#[tokio::test]
async fn a_driver_that_never_answers_times_out_and_the_others_sync() {
    let node = Node::new();
    node.put(&task("h1", "kept"));
    let rogue = Checked::new(Rogue::new(
        Arc::new(MemoryStore::new("r")),
        Some(Fault::Hang),
    ))
    .with_timeout(Duration::from_millis(300));
    let (store, good) = mem("good");
    let report = node.sync(&[rogue, good], SyncOptions::default()).await;
    let rep = &report.drivers[0];
    assert!(rep.retryable, "a timeout is worth retrying: {rep:?}");
    assert!(rep.error.as_deref().unwrap().contains("timeout"), "{rep:?}");
    assert!(report.drivers[1].is_ok());
    assert!(store.snapshot().contains_key(&id("h1")));
}

#[tokio::test]
async fn every_sync_begins_and_finishes_once_and_a_dry_run_writes_nothing() {
    let (a, b) = (Node::new(), Node::new());
    let store = Arc::new(MemoryStore::new("s"));
    let relay = mem("relay").1;
    for i in 0..5 {
        a.put(&task(&format!("t{i}"), "a"));
    }
    let rogue = Rogue::new(store.clone(), None);
    // Two drivers and tasks flowing between them take several rounds.
    b.put(&task("from-b", "b"));
    b.sync(std::slice::from_ref(&relay), SyncOptions::default())
        .await;
    let report = a
        .sync(
            &[Checked::new(rogue.clone()), relay.clone()],
            SyncOptions::default(),
        )
        .await;
    assert!(report.is_ok() && report.rounds > 1, "{report:?}");
    let calls = rogue.calls();
    assert_eq!(
        calls.iter().filter(|c| c.starts_with("begin")).count(),
        1,
        "{calls:?}"
    );
    assert_eq!(
        calls.iter().filter(|c| *c == "finish").count(),
        1,
        "{calls:?}"
    );
    assert_eq!(
        calls.last().map(String::as_str),
        Some("finish"),
        "{calls:?}"
    );

    a.edit(
        &id("t0"),
        &[Change::Set("description".into(), json!("dry"))],
        Utc::now(),
    );
    let rogue = Rogue::new(store.clone(), None);
    let before = store.snapshot();
    let dry = SyncOptions {
        dry_run: true,
        ..Default::default()
    };
    let report = a.sync(&[Checked::new(rogue.clone())], dry).await;
    assert_eq!(report.drivers[0].pushed, 1, "{report:?}");
    assert_eq!(store.snapshot(), before, "a dry run wrote");
    let calls = rogue.calls();
    assert_eq!(
        calls.first().map(String::as_str),
        Some("begin Read"),
        "{calls:?}"
    );
    assert!(
        calls
            .iter()
            .all(|c| !c.contains("writes 1") && c != "finish"),
        "{calls:?}"
    );
}

#[tokio::test]
async fn an_upstream_value_that_loses_is_journaled_too() {
    // A edits the description and syncs; B edits it a moment later (without having seen A's
    // edit) and syncs: A's value loses on B, and B's journal keeps it.
    let (a, b) = (Node::new(), Node::new());
    let (_, d) = mem("shared");
    let drivers = [d];
    a.put(&task("t", "original"));
    a.sync(&drivers, SyncOptions::default()).await;
    b.sync(&drivers, SyncOptions::default()).await;
    let tick = || std::thread::sleep(Duration::from_millis(5));
    tick();
    a.edit(
        &id("t"),
        &[Change::Set("description".into(), json!("from A"))],
        Utc::now(),
    );
    tick();
    assert!(a.sync(&drivers, SyncOptions::default()).await.is_ok());
    tick();
    b.edit(
        &id("t"),
        &[Change::Set("description".into(), json!("from B"))],
        Utc::now(),
    );
    tick();
    assert!(b.sync(&drivers, SyncOptions::default()).await.is_ok());
    assert_eq!(
        b.replica.get(&id("t")).unwrap().unwrap().description(),
        "from B"
    );
    let journal = b.replica.conflicts().unwrap();
    let record = journal
        .iter()
        .find(|r| r.field == "description")
        .unwrap_or_else(|| panic!("A's value is in no journal: {journal:?}"));
    assert_eq!(record.side, Side::Upstream);
    assert_eq!(record.lost, Some(json!("from A")));
    assert_eq!(record.kept, Some(json!("from B")));
    assert_eq!(record.driver, "shared");
    // A, syncing again, takes B's value; its own was already synced, so nothing new is lost.
    assert!(a.sync(&drivers, SyncOptions::default()).await.is_ok());
    assert!(a.replica.conflicts().unwrap().is_empty());
}

#[tokio::test]
async fn the_guard_counts_live_tasks_only() {
    // 30 tombstones and 20 live tasks upstream: deleting 15 live ones is 75% of the live
    // tasks, not 30% of all entries, and the guard trips.
    let (a, b) = (Node::new(), Node::new());
    let (store, d) = mem("m");
    let drivers = [d];
    let now = Utc::now();
    for i in 0..50 {
        let mut t = task(&format!("g{i:02}"), "x");
        if i < 30 {
            t.edit(
                &[Change::Set("deleted".into(), json!("2026-01-02T00:00:00Z"))],
                now,
            )
            .unwrap();
        }
        a.put(&t);
    }
    a.sync(&drivers, SyncOptions::default()).await;
    b.sync(&drivers, SyncOptions::default()).await;
    for i in 30..45 {
        b.edit(
            &id(&format!("g{i:02}")),
            &[Change::Set("deleted".into(), json!(now.to_rfc3339()))],
            now + chrono::Duration::seconds(1),
        );
    }
    let r = b.sync(&drivers, SyncOptions::default()).await;
    let err = r.drivers[0].error.as_deref().expect("the guard trips");
    assert!(
        err.contains("15 of the 20 live tasks in the driver"),
        "{err}"
    );
    assert_eq!(
        store.snapshot().values().filter(|t| t.is_deleted()).count(),
        30,
        "nothing was written"
    );
}

/// A driver that holds its first writing `resolve` until released, to act while a sync is in
/// flight.
#[derive(Debug)]
struct Gate {
    inner: StoreDriver<Arc<MemoryStore>>,
    armed: std::sync::atomic::AtomicBool,
    entered: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

#[async_trait]
impl Driver for Gate {
    fn info(&self) -> DriverInfo {
        self.inner.info()
    }
    async fn hashes(&self, known: Option<&ContentHash>) -> Result<Listing, DriverError> {
        self.inner.hashes(known).await
    }
    async fn resolve(&self, batch: Batch) -> Result<Answers, DriverError> {
        let writes = batch.values().any(Option::is_some);
        if writes && self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            self.entered.notify_one();
            self.release.notified().await;
        }
        self.inner.resolve(batch).await
    }
    async fn check(&self) -> Result<Health, DriverError> {
        self.inner.check().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_in_flight_never_holds_the_cache_and_keeps_an_edit_made_meanwhile() {
    let node = Node::new();
    let store = Arc::new(MemoryStore::new("gate"));
    node.put(&task("g1", "before"));
    let gate = Arc::new(Gate {
        inner: StoreDriver::new(store.clone()),
        armed: true.into(),
        entered: Default::default(),
        release: Default::default(),
    });
    let engine = hypertask_core::Engine::new(
        node.replica.clone(),
        vec![Checked::new(gate.clone())],
        SyncOptions::default(),
    );
    let sync = tokio::spawn(async move { engine.sync().await.unwrap() });
    gate.entered.notified().await;

    // The sync waits on the network: the cache is free for an edit right now.
    let lock = node
        .replica
        .lock(Duration::from_millis(200))
        .expect("the cache is not held across network I/O");
    let mut t = node.replica.get(&id("g1")).unwrap().unwrap();
    t.edit(&[Change::AddTag("meanwhile".into())], Utc::now())
        .unwrap();
    node.replica.put(&lock, std::slice::from_ref(&t)).unwrap();
    drop(lock);
    // A second sync of the same data directory waits for the first.
    assert!(node.replica.sync_lock(Duration::from_millis(50)).is_err());

    gate.release.notify_one();
    let report = sync.await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    let local = node.replica.get(&id("g1")).unwrap().unwrap();
    assert!(
        local.has_tag("meanwhile"),
        "the edit made during the sync survived: {local:?}"
    );
    assert_eq!(local.description(), "before");
    // The same sync's next pass sent it on.
    assert!(store.snapshot()[&id("g1")].has_tag("meanwhile"));
}
