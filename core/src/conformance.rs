//! The driver conformance suite: every behavioural rule of [`Driver`] and [`Store`] as a case.
//!
//! A driver crate's tests depend on `hypertask-core` with this feature, and on nothing else
//! for the suite (it brings its own async runtime):
//!
//! ```toml
//! [dev-dependencies]
//! hypertask-core = { version = "0.1", features = ["conformance"] }
//! ```
//!
//! The crate implements two traits:
//!
//! - [`Harness`] gives the suite an upstream: a fresh, empty one per call for a driver's own
//!   tests (a new temporary directory, database or server).
//! - [`Upstream`] gives clients of that one upstream. [`Upstream::client`] must be a separate
//!   driver instance, as another machine would have (its own connection, its own clone).
//!   [`Upstream::store`] (optional) returns a store-level client, which enables the cases that
//!   call [`Store::put`] directly. [`Upstream::plant`] (optional) writes raw bytes as an
//!   entry, which enables the corrupt-entry case.
//!
//! Then [`conformance_tests!`](crate::conformance_tests) in a test file expands to one
//! `#[test]` per case. [`run`] runs the cases one after another and reports each (what
//! `hypertask driver-test NAME` does); [`run_case_blocking`] runs one on a runtime of its own.
//!
//! ```
//! use std::sync::Arc;
//!
//! use hypertask_core::conformance::{run_case_blocking, Harness, Upstream};
//! use hypertask_core::{Driver, MemoryStore, Store, StoreDriver};
//!
//! /// Every call: a new, empty store.
//! struct MyHarness;
//!
//! /// One store; each client is a driver instance of its own over it.
//! struct MyUpstream(Arc<MemoryStore>);
//!
//! #[hypertask_core::async_trait]
//! impl Harness for MyHarness {
//!     async fn upstream(&self) -> Box<dyn Upstream> {
//!         Box::new(MyUpstream(Arc::new(MemoryStore::new("example"))))
//!     }
//! }
//!
//! #[hypertask_core::async_trait]
//! impl Upstream for MyUpstream {
//!     async fn client(&self) -> Arc<dyn Driver> {
//!         Arc::new(StoreDriver::new(self.0.clone()))
//!     }
//!
//!     async fn store(&self) -> Option<Arc<dyn Store>> {
//!         Some(self.0.clone())
//!     }
//! }
//!
//! // In `tests/conformance.rs`: one #[test] per case.
//! hypertask_core::conformance_tests!(MyHarness);
//!
//! // Or one case by name, anywhere.
//! # fn main() {
//! run_case_blocking(&MyHarness, "store_put_is_compare_and_swap");
//! # }
//! ```
//!
//! Every case works on task ids of its own, so the cases can share one upstream.
//! [`TASK_VECTORS`] are the normative task-format examples, for a driver that hashes or merges
//! itself.

use std::collections::BTreeSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use futures::FutureExt;
use serde_json::json;

use crate::driver::{Access, Answers, Batch, Driver, Listing};
use crate::hash::{root_hash, Hashes};
use crate::merge::merge;
use crate::store::{PutOutcome, Store, Version, Write};
use crate::task::{Change, Task, TaskId};

/// The task vectors (JSON): canonical forms, content hashes, normalisation, merge, rejected
/// inputs and root hashes, for checking another implementation of the task format (a driver
/// that hashes or merges itself, a client in another language). The format of each section is
/// described in `docs/task-format.md`.
pub const TASK_VECTORS: &str = include_str!("../vectors/task-vectors.json");

/// Gives the suite fresh upstreams.
#[async_trait]
pub trait Harness: Send + Sync {
    /// A fresh, empty upstream (or, for `driver-test`, the one upstream under test).
    async fn upstream(&self) -> Box<dyn Upstream>;
}

/// One upstream, and ways to reach it.
#[async_trait]
pub trait Upstream: Send + Sync {
    /// A new client of this upstream: a separate driver instance, as another machine would
    /// have (its own local state, its own connection).
    async fn client(&self) -> Arc<dyn Driver>;

    /// A new store-level client, for drivers built on a [`Store`]: enables the cases that call
    /// `put` directly (stale versions, create-only-if-absent). `None`: driver-level only.
    async fn store(&self) -> Option<Arc<dyn Store>> {
        None
    }

    /// Writes `raw` as the upstream's entry for `id`, bypassing the driver, so the suite can
    /// check that a corrupt entry is reported and never overwritten. `false`: not supported.
    async fn plant(&self, id: &TaskId, raw: &[u8]) -> bool {
        let _ = (id, raw);
        false
    }
}

/// How a case ended, short of failing (a failure is a panic with the reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every check passed.
    Passed,
    /// The case does not apply to this driver, and why.
    Skipped(&'static str),
}

/// The result of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    /// The case's name.
    pub name: &'static str,
    /// `Ok(verdict)`, or `Err(reason)` when a check failed.
    pub outcome: Result<Verdict, String>,
}

type CaseFuture<'a> = Pin<Box<dyn Future<Output = Verdict> + Send + 'a>>;
type CaseFn = for<'a> fn(&'a dyn Harness) -> CaseFuture<'a>;

macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        /// The name of every case, in the order [`run`] runs them.
        pub const CASES: &[&str] = &[$(stringify!($case)),*];

        fn case_fn(name: &str) -> Option<CaseFn> {
            match name {
                $(stringify!($case) => Some(|h| Box::pin($case(h))),)*
                _ => None,
            }
        }
    };
}

cases!(
    empty_upstream_lists_nothing,
    reading_a_missing_task_creates_nothing,
    create_then_list,
    update_merges_and_lists_new_hash,
    resolving_twice_is_a_no_op,
    tombstones_are_kept_and_listed,
    unknown_fields_are_kept,
    hashes_match_canonical_hashes,
    concurrent_clients_converge,
    two_clients_create_the_same_id_at_once,
    batch_equals_singles,
    answers_are_keyed_by_id,
    invalid_entries_fail_alone,
    clients_see_each_others_writes,
    large_batch_round_trips,
    read_only_sync_writes_nothing,
    cheap_root_is_honoured,
    corrupt_entry_is_reported_and_kept,
    store_get_answers_every_id_in_any_order,
    store_listing_matches_get,
    store_put_is_compare_and_swap,
    store_put_of_the_same_state_changes_nothing,
    finish_and_check_succeed,
);

/// Runs one case by name, turning a failed check into `Err(reason)`.
pub async fn run_case(harness: &dyn Harness, name: &str) -> Result<Verdict, String> {
    let case = case_fn(name).ok_or_else(|| format!("no conformance case named {name:?}"))?;
    AssertUnwindSafe(case(harness))
        .catch_unwind()
        .await
        .map_err(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the case panicked".into())
        })
}

/// Runs every case in order against `harness`, reporting each result as it comes.
pub async fn run(harness: &dyn Harness, mut report: impl FnMut(&CaseResult)) -> Vec<CaseResult> {
    let mut results = Vec::with_capacity(CASES.len());
    for &name in CASES {
        let result = CaseResult {
            name,
            outcome: run_case(harness, name).await,
        };
        report(&result);
        results.push(result);
    }
    results
}

/// Runs one case on a runtime of its own and panics when it fails: what the tests that
/// [`conformance_tests!`](crate::conformance_tests) generates call.
pub fn run_case_blocking(harness: &dyn Harness, name: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime for the conformance case");
    match runtime.block_on(run_case(harness, name)) {
        Ok(_) => {}
        Err(reason) => panic!("conformance case {name} failed: {reason}"),
    }
}

/// Expands to one `#[test]` per conformance case, each building its harness with `$h`.
///
/// Self-contained: the caller needs no async runtime of its own. See the
/// [module documentation](crate::conformance) for an example.
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
#[macro_export]
macro_rules! conformance_tests {
    ($h:expr) => {
        $crate::conformance_tests!(@cases $h;
            empty_upstream_lists_nothing,
            reading_a_missing_task_creates_nothing,
            create_then_list,
            update_merges_and_lists_new_hash,
            resolving_twice_is_a_no_op,
            tombstones_are_kept_and_listed,
            unknown_fields_are_kept,
            hashes_match_canonical_hashes,
            concurrent_clients_converge,
            two_clients_create_the_same_id_at_once,
            batch_equals_singles,
            answers_are_keyed_by_id,
            invalid_entries_fail_alone,
            clients_see_each_others_writes,
            large_batch_round_trips,
            read_only_sync_writes_nothing,
            cheap_root_is_honoured,
            corrupt_entry_is_reported_and_kept,
            store_get_answers_every_id_in_any_order,
            store_listing_matches_get,
            store_put_is_compare_and_swap,
            store_put_of_the_same_state_changes_nothing,
            finish_and_check_succeed
        );
    };
    (@cases $h:expr; $($case:ident),*) => {
        $(
            #[test]
            fn $case() {
                let harness = $h;
                $crate::conformance::run_case_blocking(&harness, stringify!($case));
            }
        )*

        #[test]
        fn conformance_case_list_is_complete() {
            assert_eq!(&[$(stringify!($case)),*][..], $crate::conformance::CASES);
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Helpers: each models what the engine does in one sync.

fn t(id: &str, v: serde_json::Value) -> Task {
    let mut doc = v;
    doc["id"] = json!(id);
    Task::from_value(doc).expect("conformance task is valid")
}

fn id(s: &str) -> TaskId {
    TaskId::new(s).expect("valid id")
}

/// The listing of `d` restricted to ids starting with `prefix` (the case's own tasks).
async fn listed(d: &dyn Driver, prefix: &str) -> Hashes {
    d.begin(Access::Read).await.expect("begin a read-only sync");
    match d.hashes(None).await.expect("hashes") {
        Listing::Changed(inv) => {
            let problems: Vec<String> = inv
                .problems
                .iter()
                .filter(|p| {
                    p.id.as_ref()
                        .is_some_and(|i| i.as_str().starts_with(prefix))
                })
                .map(|p| p.error.to_string())
                .collect();
            assert!(problems.is_empty(), "unexpected problems: {problems:?}");
            inv.hashes
                .into_iter()
                .filter(|(id, _)| id.as_str().starts_with(prefix))
                .collect()
        }
        Listing::Unchanged => panic!("hashes(None) must list the upstream"),
    }
}

/// One writing sync: begin, resolve, finish.
async fn sync(d: &dyn Driver, batch: Batch) -> Answers {
    d.begin(Access::Write).await.expect("begin a sync");
    let answers = d.resolve(batch).await.expect("resolve");
    d.finish().await.expect("finish the sync");
    answers
}

/// Resolves one task in a sync of its own and checks the answer is keyed by its id.
async fn resolve_one(d: &dyn Driver, state: Option<Task>, tid: &TaskId) -> Option<Task> {
    let mut answers = sync(d, Batch::from([(tid.clone(), state)])).await;
    assert_eq!(answers.len(), 1, "one answer per id asked: {answers:?}");
    let answer = answers
        .remove(tid)
        .unwrap_or_else(|| panic!("no answer keyed by the id asked ({tid})"));
    let task = answer.expect("the task resolves");
    if let Some(t) = &task {
        assert_eq!(t.id(), tid, "the answer is the task asked for");
    }
    task
}

/// Reads tasks in a read-only sync.
async fn read(d: &dyn Driver, ids: &[TaskId]) -> Answers {
    d.begin(Access::Read).await.expect("begin a read-only sync");
    d.resolve(ids.iter().map(|i| (i.clone(), None)).collect())
        .await
        .expect("read")
}

async fn read_one(d: &dyn Driver, tid: &TaskId) -> Option<Task> {
    let mut answers = read(d, std::slice::from_ref(tid)).await;
    answers
        .remove(tid)
        .unwrap_or_else(|| panic!("no answer keyed by the id asked ({tid})"))
        .expect("the task reads")
}

fn batch_of(tasks: &[Task]) -> Batch {
    tasks
        .iter()
        .map(|t| (t.id().clone(), Some(t.clone())))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Driver-level cases.

/// An empty upstream lists nothing; its root is the hash of `{}`.
pub async fn empty_upstream_lists_nothing(h: &dyn Harness) -> Verdict {
    let up = h.upstream().await;
    let a = up.client().await;
    assert!(
        listed(a.as_ref(), "").await.is_empty(),
        "a fresh upstream lists tasks"
    );
    let empty = root_hash(&Hashes::new());
    match a.hashes(Some(&empty)).await.expect("hashes") {
        Listing::Unchanged => {}
        Listing::Changed(inv) => assert!(inv.hashes.is_empty()),
    }
    Verdict::Passed
}

/// Reading a missing task answers `None` and writes nothing.
pub async fn reading_a_missing_task_creates_nothing(h: &dyn Harness) -> Verdict {
    let up = h.upstream().await;
    let a = up.client().await;
    assert_eq!(resolve_one(a.as_ref(), None, &id("miss-1")).await, None);
    assert!(listed(a.as_ref(), "miss-").await.is_empty());
    Verdict::Passed
}

/// A created task is answered back unchanged and listed with its hash.
pub async fn create_then_list(h: &dyn Harness) -> Verdict {
    let up = h.upstream().await;
    let a = up.client().await;
    let task = t(
        "create-1",
        json!({"description": "buy milk", "tags": ["home"]}),
    );
    let got = resolve_one(a.as_ref(), Some(task.clone()), task.id()).await;
    assert_eq!(got.as_ref(), Some(&task));
    let hashes = listed(a.as_ref(), "create-").await;
    assert_eq!(hashes.get(task.id()), Some(&task.hash()));
    assert_eq!(hashes.len(), 1);
    Verdict::Passed
}

/// An update is merged with the stored state; the listing shows the merged hash; an older
/// state sent later does not win.
pub async fn update_merges_and_lists_new_hash(h: &dyn Harness) -> Verdict {
    let up = h.upstream().await;
    let a = up.client().await;
    let v1 = t(
        "update-1",
        json!({"description": "v1", "updated_at": "2026-01-01T00:00:00Z"}),
    );
    resolve_one(a.as_ref(), Some(v1.clone()), v1.id()).await;
    let mut v2 = v1.clone();
    v2.edit(
        &[
            Change::Set("description".into(), json!("v2")),
            Change::AddTag("x".into()),
        ],
        chrono::Utc::now(),
    )
    .unwrap();
    let got = resolve_one(a.as_ref(), Some(v2.clone()), v2.id())
        .await
        .unwrap();
    assert_eq!(got, merge(Some(&v1), Some(&v2)).unwrap().unwrap());
    assert_eq!(got.description(), "v2");
    assert_eq!(
        listed(a.as_ref(), "update-").await.get(got.id()),
        Some(&got.hash())
    );
    let again = resolve_one(a.as_ref(), Some(v1.clone()), v1.id())
        .await
        .unwrap();
    assert_eq!(again, got, "an older state must not win");
    Verdict::Passed
}

/// Resolving the same state twice gives the same answer and changes nothing.
pub async fn resolving_twice_is_a_no_op(h: &dyn Harness) -> Verdict {
    let up = h.upstream().await;
    let a = up.client().await;
    let task = t("twice-1", json!({"description": "same"}));
    let first = resolve_one(a.as_ref(), Some(task.clone()), task.id()).await;
    let before = listed(a.as_ref(), "").await;
    let second = resolve_one(a.as_ref(), Some(task.clone()), task.id()).await;
    assert_eq!(first, second);
    assert_eq!(
        listed(a.as_ref(), "").await,
        before,
        "the second resolve changed the upstream"
    );
    Verdict::Passed
}

/// A tombstone is stored, listed and answered like any task.
pub async fn tombstones_are_kept_and_listed(h: &dyn Harness) -> Verdict {
    let up = h.upstream().await;
    let a = up.client().await;
    let mut task = t("tomb-1", json!({"description": "to delete"}));
    resolve_one(a.as_ref(), Some(task.clone()), task.id()).await;
    task.edit(
        &[Change::Set(
            "deleted".into(),
            json!("2026-06-01T00:00:00.000Z"),
        )],
        chrono::Utc::now(),
    )
    .unwrap();
    let got = resolve_one(a.as_ref(), Some(task.clone()), task.id())
        .await
        .unwrap();
    assert!(got.is_deleted());
    assert_eq!(
        listed(a.as_ref(), "tomb-").await.get(task.id()),
        Some(&got.hash())
    );
    assert!(read_one(a.as_ref(), task.id()).await.unwrap().is_deleted());
    Verdict::Passed
}

/// Fields the core does not know survive storage byte for byte.
pub async fn unknown_fields_are_kept(h: &dyn Harness) -> Verdict {
    let up = h.upstream().await;
    let a = up.client().await;
    let task = t(
        "unknown-1",
        json!({
            "description": "with extras",
            "rank": 1.5,
            "estimate": 1e21,
            "project": "garden",
            "meta": {"z": [3, 2, 1], "a": null, "b": true, "nested": {"deep": "x"}},
            "uda.tag.with.dots": "v",
            "emoji": "😀 \u{0007}"
        }),
    );
    resolve_one(a.as_ref(), Some(task.clone()), task.id()).await;
    let read = read_one(a.as_ref(), task.id()).await.unwrap();
    assert_eq!(read, task);
    assert_eq!(read.hash(), task.hash());
    Verdict::Passed
}

/// Listed hashes are the canonical (RFC 8785) content hashes of the stored tasks, for numbers
/// and strings whose canonical form differs from their usual one.
pub async fn hashes_match_canonical_hashes(h: &dyn Harness) -> Verdict {
    let up = h.upstream().await;
    let a = up.client().await;
    let values = [
        json!(1.0),
        json!(1e21),
        json!(-0.0),
        json!(0.1),
        json!("𝄞 non-BMP and é"),
        json!({"b": [1e-7, 100], "a": "\u{2028}"}),
    ];
    let tasks: Vec<Task> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            t(
                &format!("hash-{i}"),
                json!({"description": format!("task {i}"), "odd": v}),
            )
        })
        .collect();
    sync(a.as_ref(), batch_of(&tasks)).await;
    let hashes = listed(a.as_ref(), "hash-").await;
    let ids: Vec<TaskId> = tasks.iter().map(|t| t.id().clone()).collect();
    let mut reads = read(a.as_ref(), &ids).await;
    for task in &tasks {
        let got = reads
            .remove(task.id())
            .expect("answer")
            .expect("read")
            .expect("stored");
        assert_eq!(
            got.hash(),
            task.hash(),
            "task {} changed in storage",
            task.id()
        );
        assert_eq!(
            hashes.get(task.id()),
            Some(&task.hash()),
            "listed hash of {}",
            task.id()
        );
    }
    Verdict::Passed
}

/// Two clients resolving different edits of one task at once both land.
pub async fn concurrent_clients_converge(h: &dyn Harness) -> Verdict {
    let up = h.upstream().await;
    let (a, b) = (up.client().await, up.client().await);
    let base = t(
        "conc-1",
        json!({"description": "base", "updated_at": "2026-01-01T00:00:00Z"}),
    );
    resolve_one(a.as_ref(), Some(base.clone()), base.id()).await;
    for round in 0..4 {
        let mut ea = base.clone();
        ea.edit(&[Change::AddTag(format!("a{round}"))], chrono::Utc::now())
            .unwrap();
        let mut eb = base.clone();
        eb.edit(&[Change::AddTag(format!("b{round}"))], chrono::Utc::now())
            .unwrap();
        let (ra, rb) = tokio::join!(
            resolve_one(a.as_ref(), Some(ea), base.id()),
            resolve_one(b.as_ref(), Some(eb), base.id())
        );
        assert!(ra.is_some() && rb.is_some());
    }
    let fa = read_one(a.as_ref(), base.id()).await.unwrap();
    let fb = read_one(b.as_ref(), base.id()).await.unwrap();
    assert_eq!(fa, fb, "both clients read the same final state");
    for round in 0..4 {
        for side in ["a", "b"] {
            let tag = format!("{side}{round}");
            assert!(fa.has_tag(&tag), "lost the edit {tag}: {fa:?}");
        }
    }
    assert_eq!(
        listed(a.as_ref(), "conc-").await,
        listed(b.as_ref(), "conc-").await
    );
    Verdict::Passed
}

/// Two clients creating the same id at once end with the merge of both creations.
pub async fn two_clients_create_the_same_id_at_once(h: &dyn Harness) -> Verdict {
    let up = h.upstream().await;
    let (a, b) = (up.client().await, up.client().await);
    let ta = t(
        "same-1",
        json!({"description": "from a", "tags": ["a"], "updated_at": "2026-02-01T00:00:00Z"}),
    );
    let tb = t(
        "same-1",
        json!({"description": "from b", "tags": ["b"], "updated_at": "2026-02-01T00:00:01Z"}),
    );
    let (ra, rb) = tokio::join!(
        resolve_one(a.as_ref(), Some(ta.clone()), ta.id()),
        resolve_one(b.as_ref(), Some(tb.clone()), tb.id())
    );
    let both = merge(Some(&ta), Some(&tb)).unwrap().unwrap();
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    // Each answer is the client's own creation or the merge (a store that merges when it
    // pushes, like git, may answer before it meets the other creation); reads see the merge.
    assert!(
        ra == ta || ra == both,
        "a's answer is neither its state nor the merge: {ra:?}"
    );
    assert!(
        rb == tb || rb == both,
        "b's answer is neither its state nor the merge: {rb:?}"
    );
    assert_eq!(read_one(a.as_ref(), ta.id()).await, Some(both.clone()));
    assert_eq!(read_one(b.as_ref(), ta.id()).await, Some(both));
    Verdict::Passed
}

/// A batch gives the same answers and the same upstream as the same tasks one by one.
pub async fn batch_equals_singles(h: &dyn Harness) -> Verdict {
    let (up_a, up_c) = (h.upstream().await, h.upstream().await);
    let (a, c) = (up_a.client().await, up_c.client().await);
    let tasks: Vec<Task> = (0..20)
        .map(|i| {
            t(
                &format!("batch-{i:02}"),
                json!({"description": format!("b{i}"), "due": "2027-01-01T00:00:00Z"}),
            )
        })
        .collect();
    let batched = sync(a.as_ref(), batch_of(&tasks)).await;
    assert_eq!(batched.len(), tasks.len());
    for task in &tasks {
        let answer = batched.get(task.id()).expect("every id answered");
        let single = resolve_one(c.as_ref(), Some(task.clone()), task.id()).await;
        assert_eq!(answer.as_ref().expect("resolves"), &single);
    }
    assert_eq!(
        listed(a.as_ref(), "batch-").await,
        listed(c.as_ref(), "batch-").await
    );
    Verdict::Passed
}

/// Every answer is filed under the id it answers, whatever the ids sort like.
pub async fn answers_are_keyed_by_id(h: &dyn Harness) -> Verdict {
    let up = h.upstream().await;
    let a = up.client().await;
    // Ids whose byte order, length order and creation order all differ.
    let names = [
        "key-zz", "key-A", "key-b", "key-_", "key-10", "key-9", "key-aaa",
    ];
    let tasks: Vec<Task> = names
        .iter()
        .rev()
        .map(|n| t(n, json!({"description": format!("I am {n}")})))
        .collect();
    let answers = sync(a.as_ref(), batch_of(&tasks)).await;
    for task in &tasks {
        let got = answers[task.id()]
            .as_ref()
            .expect("resolves")
            .as_ref()
            .expect("stored");
        assert_eq!(
            got.description(),
            task.description(),
            "answer filed under {}",
            task.id()
        );
    }
    let ids: Vec<TaskId> = tasks.iter().map(|t| t.id().clone()).collect();
    let reads = read(a.as_ref(), &ids).await;
    for task in &tasks {
        let got = reads[task.id()]
            .as_ref()
            .expect("reads")
            .as_ref()
            .expect("stored");
        assert_eq!(got, task, "read of {} answered another task", task.id());
    }
    Verdict::Passed
}

/// An entry whose task id differs from its key fails alone; the rest of the batch resolves.
pub async fn invalid_entries_fail_alone(h: &dyn Harness) -> Verdict {
    let up = h.upstream().await;
    let a = up.client().await;
    assert!(
        TaskId::new("../x").is_err() && TaskId::new("a/b").is_err() && TaskId::new(".").is_err()
    );
    let good = t("inval-good", json!({"description": "fine"}));
    let wrong = t(
        "inval-other",
        json!({"description": "sent under another id"}),
    );
    let answers = sync(
        a.as_ref(),
        Batch::from([
            (id("inval-victim"), Some(wrong)),
            (good.id().clone(), Some(good.clone())),
        ]),
    )
    .await;
    assert!(
        answers[&id("inval-victim")].is_err(),
        "id mismatch must be rejected"
    );
    assert_eq!(answers[good.id()].as_ref().unwrap().as_ref(), Some(&good));
    let hashes = listed(a.as_ref(), "inval-").await;
    assert!(!hashes.contains_key(&id("inval-victim")) && !hashes.contains_key(&id("inval-other")));
    assert!(hashes.contains_key(good.id()));
    Verdict::Passed
}

/// What one client writes, another client of the same upstream reads.
pub async fn clients_see_each_others_writes(h: &dyn Harness) -> Verdict {
    let up = h.upstream().await;
    let (a, b) = (up.client().await, up.client().await);
    let task = t("shared-1", json!({"description": "from a"}));
    resolve_one(a.as_ref(), Some(task.clone()), task.id()).await;
    assert_eq!(read_one(b.as_ref(), task.id()).await, Some(task.clone()));
    assert_eq!(
        listed(b.as_ref(), "shared-").await.get(task.id()),
        Some(&task.hash())
    );
    Verdict::Passed
}

/// A batch as large as the driver's `max_batch` (capped at 500 here) round-trips.
pub async fn large_batch_round_trips(h: &dyn Harness) -> Verdict {
    let up = h.upstream().await;
    let a = up.client().await;
    let n = a.info().capabilities.max_batch.min(500);
    let tasks: Vec<Task> = (0..n)
        .map(|i| {
            t(
                &format!("large-{i:04}"),
                json!({"description": format!("task number {i}")}),
            )
        })
        .collect();
    let answers = sync(a.as_ref(), batch_of(&tasks)).await;
    assert!(answers.values().all(Result::is_ok));
    assert_eq!(listed(a.as_ref(), "large-").await.len(), n);
    Verdict::Passed
}

/// A read-only sync lists and reads, and leaves the upstream exactly as it was.
pub async fn read_only_sync_writes_nothing(h: &dyn Harness) -> Verdict {
    let up = h.upstream().await;
    let (a, b) = (up.client().await, up.client().await);
    let task = t("ro-1", json!({"description": "stored"}));
    resolve_one(a.as_ref(), Some(task.clone()), task.id()).await;
    let before = listed(b.as_ref(), "").await;
    b.begin(Access::Read).await.expect("begin a read-only sync");
    b.hashes(None).await.expect("hashes");
    let answers = b
        .resolve(Batch::from([
            (task.id().clone(), None),
            (id("ro-missing"), None),
        ]))
        .await
        .expect("read");
    assert_eq!(answers[task.id()].as_ref().unwrap().as_ref(), Some(&task));
    assert_eq!(
        listed(a.as_ref(), "").await,
        before,
        "a read-only sync changed the upstream"
    );
    Verdict::Passed
}

/// A driver that declares `cheap_root` answers a matching root with `Unchanged`.
pub async fn cheap_root_is_honoured(h: &dyn Harness) -> Verdict {
    let up = h.upstream().await;
    let a = up.client().await;
    let task = t("root-1", json!({"description": "rooted"}));
    resolve_one(a.as_ref(), Some(task.clone()), task.id()).await;
    let all = listed(a.as_ref(), "").await;
    // Asked after the driver has talked to its upstream (it may learn what the upstream
    // offers on the way).
    if !a.info().capabilities.cheap_root {
        return Verdict::Skipped("the driver does not declare cheap_root");
    }
    a.begin(Access::Read).await.expect("begin");
    match a.hashes(Some(&root_hash(&all))).await.expect("hashes") {
        Listing::Unchanged => Verdict::Passed,
        Listing::Changed(_) => {
            panic!("declares cheap_root but listed everything for a matching root")
        }
    }
}

/// A corrupt upstream entry is reported in `problems`, fails alone, and is never overwritten.
pub async fn corrupt_entry_is_reported_and_kept(h: &dyn Harness) -> Verdict {
    let up = h.upstream().await;
    let bad = id("corrupt-1");
    let raw = b"{\"id\": \"corrupt-1\", \"description\": ";
    if !up.plant(&bad, raw).await {
        return Verdict::Skipped("the harness cannot plant a raw entry");
    }
    let a = up.client().await;
    a.begin(Access::Write).await.expect("begin");
    let inventory = match a.hashes(None).await.expect("hashes") {
        Listing::Changed(inv) => inv,
        Listing::Unchanged => panic!("hashes(None) must list the upstream"),
    };
    assert!(
        !inventory.hashes.contains_key(&bad),
        "a corrupt entry was listed as a task"
    );
    assert!(
        inventory
            .problems
            .iter()
            .any(|p| p.id.as_ref() == Some(&bad)),
        "the corrupt entry is not reported: {:?}",
        inventory.problems
    );
    let good = t("corrupt-ok", json!({"description": "fine"}));
    let answers = a
        .resolve(Batch::from([
            (
                bad.clone(),
                Some(t("corrupt-1", json!({"description": "overwrite?"}))),
            ),
            (good.id().clone(), Some(good.clone())),
        ]))
        .await
        .expect("a corrupt entry does not fail the batch");
    a.finish().await.expect("finish");
    assert!(
        answers[&bad].is_err(),
        "a write over a corrupt entry must fail alone"
    );
    assert_eq!(answers[good.id()].as_ref().unwrap().as_ref(), Some(&good));
    let b = up.client().await;
    b.begin(Access::Read).await.expect("begin");
    match b.hashes(None).await.expect("hashes") {
        Listing::Changed(inv) => assert!(
            inv.problems.iter().any(|p| p.id.as_ref() == Some(&bad)),
            "the corrupt entry was overwritten"
        ),
        Listing::Unchanged => panic!("hashes(None) must list the upstream"),
    }
    Verdict::Passed
}

// ---------------------------------------------------------------------------------------------
// Store-level cases: `put` called directly, deterministic instead of relying on races.

async fn store_of(h: &dyn Harness) -> Option<(Box<dyn Upstream>, Arc<dyn Store>)> {
    let up = h.upstream().await;
    let store = up.store().await?;
    store.begin(Access::Write).await.expect("begin");
    Some((up, store))
}

/// `get` answers every id asked, keyed by id, whatever the order asked.
pub async fn store_get_answers_every_id_in_any_order(h: &dyn Harness) -> Verdict {
    let Some((_up, s)) = store_of(h).await else {
        return Verdict::Skipped("no store-level access");
    };
    let tasks: Vec<Task> = ["sget-c", "sget-a", "sget-b"]
        .iter()
        .map(|n| t(n, json!({"description": *n})))
        .collect();
    let puts = s
        .put(tasks.iter().map(|t| Write::new(t.clone(), None)).collect())
        .await
        .expect("put");
    assert!(
        puts.values()
            .all(|p| matches!(p, Ok(PutOutcome::Written(_)))),
        "{puts:?}"
    );
    for order in [
        vec!["sget-c", "sget-missing", "sget-a", "sget-b"],
        vec!["sget-b", "sget-a", "sget-missing", "sget-c"],
    ] {
        let ids: Vec<TaskId> = order.iter().map(|n| id(n)).collect();
        let gets = s.get(&ids).await.expect("get");
        let asked: BTreeSet<&TaskId> = ids.iter().collect();
        assert_eq!(
            gets.keys().collect::<BTreeSet<_>>(),
            asked,
            "answers every id asked, no other"
        );
        assert!(gets[&id("sget-missing")].as_ref().unwrap().is_none());
        for task in &tasks {
            let stored = gets[task.id()].as_ref().unwrap().as_ref().expect("stored");
            assert_eq!(
                &stored.task,
                task,
                "get answered another task for {}",
                task.id()
            );
        }
    }
    s.finish().await.expect("finish");
    Verdict::Passed
}

/// Every listed entry carries the hash and version `get` returns for it.
pub async fn store_listing_matches_get(h: &dyn Harness) -> Verdict {
    let Some((_up, s)) = store_of(h).await else {
        return Verdict::Skipped("no store-level access");
    };
    let tasks: Vec<Task> = (0..3)
        .map(|i| {
            t(
                &format!("slist-{i}"),
                json!({"description": "listed", "n": i, "f": 1.0}),
            )
        })
        .collect();
    s.put(tasks.iter().map(|t| Write::new(t.clone(), None)).collect())
        .await
        .expect("put");
    let listing = s.list().await.expect("list");
    let ids: Vec<TaskId> = tasks.iter().map(|t| t.id().clone()).collect();
    let gets = s.get(&ids).await.expect("get");
    for task in &tasks {
        let entry = listing.entries.get(task.id()).expect("listed");
        let stored = gets[task.id()].as_ref().unwrap().as_ref().expect("stored");
        assert_eq!(entry.hash, task.hash(), "listed hash is the canonical hash");
        assert_eq!(
            entry.version, stored.version,
            "listed version is the one get returns"
        );
    }
    s.finish().await.expect("finish");
    Verdict::Passed
}

/// A write lands only over the version it was merged from; `None` only creates.
pub async fn store_put_is_compare_and_swap(h: &dyn Harness) -> Verdict {
    let Some((_up, s)) = store_of(h).await else {
        return Verdict::Skipped("no store-level access");
    };
    let v1 = t(
        "scas-1",
        json!({"description": "v1", "updated_at": "2026-03-01T00:00:00Z"}),
    );
    let v2 = t(
        "scas-1",
        json!({"description": "v2", "updated_at": "2026-03-02T00:00:00Z"}),
    );
    let v3 = t(
        "scas-1",
        json!({"description": "v3", "updated_at": "2026-03-03T00:00:00Z"}),
    );
    let put = |w: Write| {
        let s = s.clone();
        async move {
            let mut out = s.put(vec![w]).await.expect("put");
            out.remove(&id("scas-1"))
                .expect("answered by id")
                .expect("no error")
        }
    };
    let PutOutcome::Written(ver1) = put(Write::new(v1.clone(), None)).await else {
        panic!("creating an absent task must succeed");
    };
    assert_eq!(
        put(Write::new(v2.clone(), None)).await,
        PutOutcome::Conflict,
        "`expected: None` must only create"
    );
    let bogus = Version::new("not-a-version-of-this-store");
    assert_eq!(
        put(Write::new(v2.clone(), Some(bogus))).await,
        PutOutcome::Conflict,
        "a stale version must conflict"
    );
    let PutOutcome::Written(ver2) = put(Write::new(v2.clone(), Some(ver1.clone()))).await else {
        panic!("a write over the current version must succeed");
    };
    assert_eq!(
        put(Write::new(v3.clone(), Some(ver1))).await,
        PutOutcome::Conflict,
        "the replaced version is stale now"
    );
    let stored = s.get(&[id("scas-1")]).await.expect("get");
    let stored = stored[&id("scas-1")]
        .as_ref()
        .unwrap()
        .as_ref()
        .expect("stored");
    assert_eq!(
        stored.task, v2,
        "a conflicting write changed the stored task"
    );
    assert_eq!(stored.version, ver2);
    s.finish().await.expect("finish");
    Verdict::Passed
}

/// Writing the state already stored answers `Written` and changes nothing.
pub async fn store_put_of_the_same_state_changes_nothing(h: &dyn Harness) -> Verdict {
    let Some((_up, s)) = store_of(h).await else {
        return Verdict::Skipped("no store-level access");
    };
    let task = t("ssame-1", json!({"description": "once"}));
    s.put(vec![Write::new(task.clone(), None)])
        .await
        .expect("put");
    let before = s.list().await.expect("list").entries;
    let version = before[task.id()].version.clone();
    let again = s
        .put(vec![Write::new(task.clone(), Some(version))])
        .await
        .expect("put");
    assert!(
        matches!(again[task.id()], Ok(PutOutcome::Written(_))),
        "{again:?}"
    );
    assert_eq!(s.list().await.expect("list").entries, before);
    s.finish().await.expect("finish");
    Verdict::Passed
}

/// `finish` with nothing written and `check` both succeed on a healthy upstream.
pub async fn finish_and_check_succeed(h: &dyn Harness) -> Verdict {
    let up = h.upstream().await;
    let a = up.client().await;
    a.begin(Access::Write).await.expect("begin");
    a.finish().await.expect("finish with nothing written");
    let health = a.check().await.expect("check");
    assert!(
        health.ok,
        "a healthy upstream reports ok: {}",
        health.detail
    );
    assert!(!a.info().name.is_empty() && !a.info().kind.is_empty());
    Verdict::Passed
}
