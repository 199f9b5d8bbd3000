//! Driver-level cases: each models what the engine does in one sync, through [`Driver`] only.

use super::*;

/// An empty upstream lists nothing; its root is the hash of `{}`.
pub async fn empty_upstream_lists_nothing(h: &dyn Harness) -> Verdict {
    let up = h.upstream().await;
    let a = up.client().await;
    assert!(
        listed(a.as_ref(), "").await.is_empty(),
        "a fresh upstream lists tasks"
    );
    let empty = root_hash(&Hashes::new());
    match a.hashes(Some(&empty)).await.or_fail("hashes") {
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
            .or_fail("read")
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
        assert_eq!(answer.as_ref().or_fail("resolves"), &single);
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
            .or_fail("resolves")
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
            .or_fail("reads")
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
    b.begin(Access::Read)
        .await
        .or_fail("begin a read-only sync");
    b.hashes(None).await.or_fail("hashes");
    let answers = b
        .resolve(Batch::from([
            (task.id().clone(), None),
            (id("ro-missing"), None),
        ]))
        .await
        .or_fail("read");
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
    a.begin(Access::Read).await.or_fail("begin");
    match a.hashes(Some(&root_hash(&all))).await.or_fail("hashes") {
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
    a.begin(Access::Write).await.or_fail("begin");
    let inventory = match a.hashes(None).await.or_fail("hashes") {
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
        .or_fail("a corrupt entry does not fail the batch");
    a.finish().await.or_fail("finish");
    assert!(
        answers[&bad].is_err(),
        "a write over a corrupt entry must fail alone"
    );
    assert_eq!(answers[good.id()].as_ref().unwrap().as_ref(), Some(&good));
    let b = up.client().await;
    b.begin(Access::Read).await.or_fail("begin");
    match b.hashes(None).await.or_fail("hashes") {
        Listing::Changed(inv) => assert!(
            inv.problems.iter().any(|p| p.id.as_ref() == Some(&bad)),
            "the corrupt entry was overwritten"
        ),
        Listing::Unchanged => panic!("hashes(None) must list the upstream"),
    }
    Verdict::Passed
}
