//! The driver conformance suite: every behavioural rule of [`Driver`] as a test case.
//!
//! A driver crate implements [`Harness`] and calls [`conformance_tests!`](crate::conformance_tests)
//! in a test file, which expands to one `#[tokio::test]` per case:
//!
//! ```ignore
//! struct MyHarness;
//! #[hypertask_core::async_trait]
//! impl hypertask_core::conformance::Harness for MyHarness { /* … */ }
//! hypertask_core::conformance_tests!(MyHarness::new());
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;

use crate::driver::{Driver, Listing};
use crate::hash::{root_hash, Hashes};
use crate::merge::merge;
use crate::task::{Change, Task, TaskId};

/// Gives the suite fresh upstreams.
#[async_trait]
pub trait Harness: Send + Sync {
    /// Two independent clients (separate driver instances, as two machines would have) of one
    /// fresh, empty upstream.
    async fn clients(&self) -> (Arc<dyn Driver>, Arc<dyn Driver>);
}

/// Expands to one `#[tokio::test]` per conformance case, each building its harness with `$h`.
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
            batch_equals_singles,
            invalid_entries_fail_alone,
            clients_see_each_others_writes,
            large_batch_round_trips,
            finish_and_check_succeed
        );
    };
    (@cases $h:expr; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let harness = $h;
                $crate::conformance::$case(&harness).await;
            }
        )*
    };
}

fn t(id: &str, v: serde_json::Value) -> Task {
    let mut doc = v;
    doc["id"] = json!(id);
    Task::from_value(doc).expect("conformance task is valid")
}

fn id(s: &str) -> TaskId {
    TaskId::new(s).expect("valid id")
}

async fn listed(d: &dyn Driver) -> Hashes {
    match d.hashes(None).await.expect("hashes") {
        Listing::Changed(inv) => {
            assert!(
                inv.problems.is_empty(),
                "unexpected problems: {:?}",
                inv.problems
            );
            inv.hashes
        }
        Listing::Unchanged => panic!("hashes(None) must list the upstream"),
    }
}

async fn resolve_one(d: &dyn Driver, task: Option<Task>, tid: &TaskId) -> Option<Task> {
    let mut out = d.resolve(vec![(tid.clone(), task)]).await.expect("resolve");
    assert_eq!(out.len(), 1, "one answer per request entry");
    let (rid, r) = out.pop().expect("one answer");
    assert_eq!(&rid, tid, "answers keep the request's ids");
    r.expect("task resolves")
}

/// An empty upstream lists nothing; its root is the hash of `{}`.
pub async fn empty_upstream_lists_nothing(h: &impl Harness) {
    let (a, _) = h.clients().await;
    assert!(listed(a.as_ref()).await.is_empty());
    let empty = root_hash(&Hashes::new());
    match a.hashes(Some(&empty)).await.expect("hashes") {
        Listing::Unchanged => {}
        Listing::Changed(inv) => assert!(inv.hashes.is_empty()),
    }
}

/// Resolving `(id, None)` answers `None` for a missing task and writes nothing.
pub async fn reading_a_missing_task_creates_nothing(h: &impl Harness) {
    let (a, _) = h.clients().await;
    assert_eq!(resolve_one(a.as_ref(), None, &id("missing")).await, None);
    assert!(listed(a.as_ref()).await.is_empty());
}

/// A created task is answered back unchanged and listed with its hash.
pub async fn create_then_list(h: &impl Harness) {
    let (a, _) = h.clients().await;
    let task = t(
        "create1",
        json!({"description": "buy milk", "tags": ["home"]}),
    );
    let got = resolve_one(a.as_ref(), Some(task.clone()), task.id()).await;
    assert_eq!(got.as_ref(), Some(&task));
    let hashes = listed(a.as_ref()).await;
    assert_eq!(hashes.get(task.id()), Some(&task.hash()));
    assert_eq!(hashes.len(), 1);
}

/// An update is merged with the stored state; the listing shows the merged hash.
pub async fn update_merges_and_lists_new_hash(h: &impl Harness) {
    let (a, _) = h.clients().await;
    let v1 = t(
        "update1",
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
    assert_eq!(listed(a.as_ref()).await.get(got.id()), Some(&got.hash()));
    // An older state sent later does not win.
    let again = resolve_one(a.as_ref(), Some(v1.clone()), v1.id())
        .await
        .unwrap();
    assert_eq!(again, got);
}

/// Resolving the same state twice gives the same answer and changes nothing.
pub async fn resolving_twice_is_a_no_op(h: &impl Harness) {
    let (a, _) = h.clients().await;
    let task = t("twice1", json!({"description": "same"}));
    let first = resolve_one(a.as_ref(), Some(task.clone()), task.id()).await;
    let before = listed(a.as_ref()).await;
    let second = resolve_one(a.as_ref(), Some(task.clone()), task.id()).await;
    assert_eq!(first, second);
    assert_eq!(listed(a.as_ref()).await, before);
    let root = root_hash(&before);
    match a.hashes(Some(&root)).await.expect("hashes") {
        Listing::Unchanged => {}
        Listing::Changed(inv) => assert_eq!(inv.hashes, before),
    }
}

/// A tombstone is stored, listed and answered like any task.
pub async fn tombstones_are_kept_and_listed(h: &impl Harness) {
    let (a, _) = h.clients().await;
    let mut task = t("tomb1", json!({"description": "to delete"}));
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
    assert_eq!(listed(a.as_ref()).await.get(task.id()), Some(&got.hash()));
    let read = resolve_one(a.as_ref(), None, task.id()).await.unwrap();
    assert!(read.is_deleted());
}

/// Fields the core does not know survive storage byte for byte.
pub async fn unknown_fields_are_kept(h: &impl Harness) {
    let (a, _) = h.clients().await;
    let task = t(
        "unknown1",
        json!({
            "description": "with extras",
            "priority": 1.5,
            "estimate": 1e21,
            "project": "garden",
            "meta": {"z": [3, 2, 1], "a": null, "b": true, "nested": {"deep": "x"}},
            "uda.tag.with.dots": "v",
            "emoji": "😀 \u{0007}"
        }),
    );
    resolve_one(a.as_ref(), Some(task.clone()), task.id()).await;
    let read = resolve_one(a.as_ref(), None, task.id()).await.unwrap();
    assert_eq!(read, task);
    assert_eq!(read.hash(), task.hash());
}

/// Listed hashes are the canonical content hashes of the stored tasks.
pub async fn hashes_match_canonical_hashes(h: &impl Harness) {
    let (a, _) = h.clients().await;
    let tasks: Vec<Task> = (0..5)
        .map(|i| {
            t(
                &format!("hash{i}"),
                json!({"description": format!("task {i}"), "tags": [format!("t{i}")]}),
            )
        })
        .collect();
    a.resolve(
        tasks
            .iter()
            .map(|t| (t.id().clone(), Some(t.clone())))
            .collect(),
    )
    .await
    .unwrap();
    let hashes = listed(a.as_ref()).await;
    for task in &tasks {
        let read = resolve_one(a.as_ref(), None, task.id()).await.unwrap();
        assert_eq!(hashes.get(task.id()), Some(&read.hash()));
        assert_eq!(read.hash(), task.hash());
    }
}

/// Two clients resolving different edits of one task at once both land.
pub async fn concurrent_clients_converge(h: &impl Harness) {
    let (a, b) = h.clients().await;
    let base = t(
        "conc1",
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
    let fa = resolve_one(a.as_ref(), None, base.id()).await.unwrap();
    let fb = resolve_one(b.as_ref(), None, base.id()).await.unwrap();
    assert_eq!(fa, fb, "both clients read the same final state");
    for round in 0..4 {
        for side in ["a", "b"] {
            let tag = format!("{side}{round}");
            assert!(
                fa.tags().contains(&tag.as_str()),
                "lost the edit {tag}: {fa:?}"
            );
        }
    }
    assert_eq!(listed(a.as_ref()).await, listed(b.as_ref()).await);
}

/// A batch gives the same answers and the same upstream as the same tasks one by one.
pub async fn batch_equals_singles(h: &impl Harness) {
    let (a, _) = h.clients().await;
    let (c, _) = h.clients().await;
    let tasks: Vec<Task> = (0..20)
        .map(|i| {
            t(
                &format!("batch{i:02}"),
                json!({"description": format!("b{i}"), "due": "2027-01-01T00:00:00Z"}),
            )
        })
        .collect();
    let batched = a
        .resolve(
            tasks
                .iter()
                .map(|t| (t.id().clone(), Some(t.clone())))
                .collect(),
        )
        .await
        .unwrap();
    assert_eq!(batched.len(), tasks.len());
    for ((bid, r), task) in batched.into_iter().zip(&tasks) {
        assert_eq!(&bid, task.id(), "answers come in request order");
        let single = resolve_one(c.as_ref(), Some(task.clone()), task.id()).await;
        assert_eq!(r.unwrap(), single);
    }
    assert_eq!(listed(a.as_ref()).await, listed(c.as_ref()).await);
}

/// An entry whose task id differs from its key fails alone; the rest of the batch resolves.
pub async fn invalid_entries_fail_alone(h: &impl Harness) {
    let (a, _) = h.clients().await;
    assert!(
        TaskId::new("../x").is_err() && TaskId::new("a/b").is_err() && TaskId::new(".").is_err()
    );
    let good = t("good1", json!({"description": "fine"}));
    let wrong = t("other1", json!({"description": "sent under another id"}));
    let answers = a
        .resolve(vec![
            (id("victim1"), Some(wrong)),
            (good.id().clone(), Some(good.clone())),
        ])
        .await
        .expect("a bad entry does not fail the batch");
    assert_eq!(answers.len(), 2);
    assert!(answers[0].1.is_err(), "id mismatch must be rejected");
    assert_eq!(answers[1].1.as_ref().unwrap().as_ref(), Some(&good));
    let hashes = listed(a.as_ref()).await;
    assert!(!hashes.contains_key(&id("victim1")) && !hashes.contains_key(&id("other1")));
    assert!(hashes.contains_key(good.id()));
}

/// What one client writes, another client of the same upstream reads.
pub async fn clients_see_each_others_writes(h: &impl Harness) {
    let (a, b) = h.clients().await;
    let task = t("shared1", json!({"description": "from a"}));
    resolve_one(a.as_ref(), Some(task.clone()), task.id()).await;
    assert_eq!(
        resolve_one(b.as_ref(), None, task.id()).await,
        Some(task.clone())
    );
    assert_eq!(listed(b.as_ref()).await.get(task.id()), Some(&task.hash()));
}

/// A batch as large as the driver's `max_batch` (capped at 500 here) round-trips.
pub async fn large_batch_round_trips(h: &impl Harness) {
    let (a, _) = h.clients().await;
    let n = a.info().capabilities.max_batch.min(500);
    let tasks: Vec<Task> = (0..n)
        .map(|i| {
            t(
                &format!("large{i:04}"),
                json!({"description": format!("task number {i}")}),
            )
        })
        .collect();
    let answers = a
        .resolve(
            tasks
                .iter()
                .map(|t| (t.id().clone(), Some(t.clone())))
                .collect(),
        )
        .await
        .unwrap();
    assert!(answers.iter().all(|(_, r)| r.is_ok()));
    assert_eq!(listed(a.as_ref()).await.len(), n);
    a.finish().await.expect("finish");
}

/// `finish` with nothing to do and `check` both succeed on a healthy upstream.
pub async fn finish_and_check_succeed(h: &impl Harness) {
    let (a, _) = h.clients().await;
    a.finish().await.expect("finish with nothing written");
    let health = a.check().await.expect("check");
    assert!(health.ok, "healthy upstream reports ok: {}", health.detail);
    assert!(!a.info().name.is_empty() && !a.info().kind.is_empty());
}
