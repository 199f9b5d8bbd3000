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

mod bucket_cases;
mod driver_cases;
mod store_cases;

pub use bucket_cases::*;
pub use driver_cases::*;
pub use store_cases::*;

/// The task vectors (JSON): canonical forms, content hashes, normalisation, merge, rejected
/// inputs and root hashes, for checking another implementation of the task format (a driver
/// that hashes or merges itself, a client in another language). The format of each section is
/// described in `docs/task-format.md`.
pub const TASK_VECTORS: &str = include_str!("../../vectors/task-vectors.json");

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

/// The one list of conformance cases, in the order they run: `[MACRO] ARGS…` expands to
/// `MACRO! { ARGS… case, case, … }` (the registry here, one test each in
/// [`conformance_tests!`](crate::conformance_tests)).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ([$($callback:tt)*] $($args:tt)*) => {
        $($callback)*! {
            $($args)*
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
            bucket_hashes_agree_with_the_listing,
            bucket_listing_is_the_listing_filtered,
            store_get_answers_every_id_in_any_order,
            store_listing_matches_get,
            store_put_is_compare_and_swap,
            store_put_of_the_same_state_changes_nothing,
            finish_and_check_succeed
        }
    };
}

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

crate::__conformance_cases!([cases]);

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
        .or_fail("a tokio runtime for the conformance case");
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
        $crate::__conformance_cases!([$crate::conformance_tests] @cases $h;);
    };
    (@cases $h:expr; $($case:ident),*) => {
        $(
            #[test]
            fn $case() {
                let harness = $h;
                $crate::conformance::run_case_blocking(&harness, stringify!($case));
            }
        )*
    };
}

// ---------------------------------------------------------------------------------------------
// Helpers: each models what the engine does in one sync.

/// `expect` that fails a case with the error's sentence (its `Display`), not its `Debug`:
/// the reason `hypertask driver-test` prints.
trait OrFail<T> {
    fn or_fail(self, what: &str) -> T;
}

impl<T, E: std::fmt::Display> OrFail<T> for Result<T, E> {
    #[track_caller]
    fn or_fail(self, what: &str) -> T {
        self.unwrap_or_else(|e| panic!("{what}: {e}"))
    }
}

fn t(id: &str, v: serde_json::Value) -> Task {
    let mut doc = v;
    doc["id"] = json!(id);
    Task::from_value(doc).or_fail("conformance task is valid")
}

fn id(s: &str) -> TaskId {
    TaskId::new(s).or_fail("valid id")
}

/// The listing of `d` restricted to ids starting with `prefix` (the case's own tasks).
async fn listed(d: &dyn Driver, prefix: &str) -> Hashes {
    d.begin(Access::Read)
        .await
        .or_fail("begin a read-only sync");
    match d.hashes(None).await.or_fail("hashes") {
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
    d.begin(Access::Write).await.or_fail("begin a sync");
    let answers = d.resolve(batch).await.or_fail("resolve");
    d.finish().await.or_fail("finish the sync");
    answers
}

/// Resolves one task in a sync of its own and checks the answer is keyed by its id.
async fn resolve_one(d: &dyn Driver, state: Option<Task>, tid: &TaskId) -> Option<Task> {
    let mut answers = sync(d, Batch::from([(tid.clone(), state)])).await;
    assert_eq!(answers.len(), 1, "one answer per id asked: {answers:?}");
    let answer = answers
        .remove(tid)
        .unwrap_or_else(|| panic!("no answer keyed by the id asked ({tid})"));
    let task = answer.or_fail("the task resolves");
    if let Some(t) = &task {
        assert_eq!(t.id(), tid, "the answer is the task asked for");
    }
    task
}

/// Reads tasks in a read-only sync.
async fn read(d: &dyn Driver, ids: &[TaskId]) -> Answers {
    d.begin(Access::Read)
        .await
        .or_fail("begin a read-only sync");
    d.resolve(ids.iter().map(|i| (i.clone(), None)).collect())
        .await
        .or_fail("read")
}

async fn read_one(d: &dyn Driver, tid: &TaskId) -> Option<Task> {
    let mut answers = read(d, std::slice::from_ref(tid)).await;
    answers
        .remove(tid)
        .unwrap_or_else(|| panic!("no answer keyed by the id asked ({tid})"))
        .or_fail("the task reads")
}

fn batch_of(tasks: &[Task]) -> Batch {
    tasks
        .iter()
        .map(|t| (t.id().clone(), Some(t.clone())))
        .collect()
}
