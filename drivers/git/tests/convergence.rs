//! Clones of one bare remote converge: concurrent edits of one task merge, a rejected push
//! fetches, merges and pushes again, racing first pushes and racing syncs both land, and a sync
//! is one commit (none when nothing changed). Real repositories, the sync engine, and the `git`
//! command for what is checked "by hand".

mod common;

use chrono::Utc;
use common::{
    bare, changes, client, commit_count, git, hand_clone, local, put_local, ref_of, store, stored,
    sync, sync_ok, task, task_at, tid,
};
use hypertask_core::{Change, PutOutcome, Replica, Store, Task, Version, Write};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clones_of_one_bare_remote_converge() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let remote = bare(dir, "remote.git");
    let (data_a, data_b) = (dir.join("data-a"), dir.join("data-b"));

    put_local(
        &data_a,
        &[
            task("milk", json!({"description": "buy milk", "tags": ["home"]})),
            task(
                "shared",
                json!({"description": "shared", "updated_at": "2026-01-01T00:00:00Z"}),
            ),
        ],
    );
    put_local(
        &data_b,
        &[task("taxes", json!({"description": "file taxes"}))],
    );

    sync_ok(&data_a, client(dir, "a", &remote)).await;
    sync_ok(&data_b, client(dir, "b", &remote)).await;
    // Both edit the shared task: different fields.
    let mut ea = local(&data_a, "shared").unwrap();
    ea.edit(&[Change::AddTag("from-a".into())], Utc::now())
        .unwrap();
    put_local(&data_a, &[ea]);
    let mut eb = local(&data_b, "shared").unwrap();
    eb.edit(
        &[Change::Set("due".into(), json!("2027-03-01T00:00:00Z"))],
        Utc::now(),
    )
    .unwrap();
    put_local(&data_b, &[eb]);

    sync_ok(&data_a, client(dir, "a", &remote)).await;
    sync_ok(&data_b, client(dir, "b", &remote)).await;
    sync_ok(&data_a, client(dir, "a", &remote)).await;

    let ra = Replica::open(&data_a).unwrap().scan().unwrap().hashes;
    let rb = Replica::open(&data_b).unwrap().scan().unwrap().hashes;
    assert_eq!(ra, rb, "both caches hold the same tasks");
    assert_eq!(ra.len(), 3);
    let shared = local(&data_a, "shared").unwrap();
    assert!(shared.tags().contains(&"from-a"), "{shared:?}");
    assert!(shared.get("due").is_some(), "{shared:?}");
    // The remote holds the same states, and both clones are clean, normal repositories.
    assert_eq!(task_at(&remote, "main", "shared"), shared);
    for c in ["a", "b"] {
        assert_eq!(
            git(&dir.join(c), &["status", "--porcelain"]),
            "",
            "clone {c} is clean"
        );
    }
    git(&remote, &["fsck", "--no-progress"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_push_fetches_merges_and_pushes_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let remote = bare(dir, "remote.git");
    let a = store(dir, "a", &remote);
    let b = store(dir, "b", &remote);

    let base = task(
        "t1",
        json!({"description": "base", "updated_at": "2026-01-01T00:00:00Z"}),
    );
    let out = a.put(vec![Write::new(base.clone(), None)]).await.unwrap();
    assert!(
        matches!(out[&tid("t1")], Ok(PutOutcome::Written(_))),
        "{out:?}"
    );
    a.finish().await.unwrap();
    // b reads the task (fetching it) …
    let seen = stored(&b, &tid("t1")).await;
    assert_eq!(seen, base);
    // … a pushes an edit meanwhile …
    let mut ea = base.clone();
    ea.edit(&[Change::AddTag("a".into())], Utc::now()).unwrap();
    a.put(vec![Write::new(
        ea.clone(),
        Some(Version::of_hash(&base.hash())),
    )])
    .await
    .unwrap();
    a.finish().await.unwrap();
    let a_tip = ref_of(&remote, "main").unwrap();
    // … and b writes its own edit on top of what it read: its push is rejected, so it fetches,
    // merges the two states of the task and pushes the merge.
    let mut eb = seen.clone();
    eb.edit(
        &[Change::Set("description".into(), json!("from b"))],
        Utc::now(),
    )
    .unwrap();
    let out = b
        .put(vec![Write::new(
            eb.clone(),
            Some(Version::of_hash(&seen.hash())),
        )])
        .await
        .unwrap();
    assert!(
        matches!(out[&tid("t1")], Ok(PutOutcome::Written(_))),
        "{out:?}"
    );
    b.finish().await.unwrap();

    let tip = ref_of(&remote, "main").unwrap();
    let parents = git(&remote, &["rev-list", "--parents", "-n", "1", "main"]);
    let parents: Vec<&str> = parents.split_whitespace().skip(1).collect();
    assert_eq!(parents.len(), 2, "the loser pushed a merge commit");
    assert!(
        parents.contains(&a_tip.as_str()),
        "the merge keeps a's commit"
    );
    let merged = task_at(&remote, &tip, "t1");
    assert!(
        merged.tags().contains(&"a"),
        "a's change landed: {merged:?}"
    );
    assert_eq!(merged.description(), "from b", "b's change landed");
    assert_eq!(merged, hypertask_core::merge_tasks(&ea, &eb).unwrap());
    let message = git(&remote, &["log", "-1", "--format=%s", "main"]);
    assert!(message.contains("merge origin/main"), "{message}");
    // a picks the merge up on its next read.
    let got = stored(&a, &tid("t1")).await;
    assert_eq!(got, merged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_pushes_to_an_empty_remote_race_and_both_land() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let remote = bare(dir, "remote.git");
    let a = store(dir, "a", &remote);
    let b = store(dir, "b", &remote);
    // Both look at the empty remote, then both write: two unrelated root commits.
    assert!(a.list().await.unwrap().entries.is_empty());
    assert!(b.list().await.unwrap().entries.is_empty());
    let ta = task("froma", json!({"description": "a"}));
    let tb = task("fromb", json!({"description": "b"}));
    a.put(vec![Write::new(ta.clone(), None)]).await.unwrap();
    b.put(vec![Write::new(tb.clone(), None)]).await.unwrap();
    a.finish().await.unwrap();
    b.finish().await.unwrap();
    let inv = a.list().await.unwrap();
    assert_eq!(inv.entries.get(ta.id()).map(|e| &e.hash), Some(&ta.hash()));
    assert_eq!(inv.entries.get(tb.id()).map(|e| &e.hash), Some(&tb.hash()));
    assert_eq!(b.list().await.unwrap().entries, inv.entries);
    // `git clone` of the remote checks out the branch with both tasks.
    let hand = hand_clone(dir, &remote);
    assert!(hand.join("tasks/froma.json").exists() && hand.join("tasks/fromb.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_machines_syncing_at_once_both_land() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let remote = bare(dir, "remote.git");
    let (data_a, data_b) = (dir.join("data-a"), dir.join("data-b"));
    let shared = task(
        "shared",
        json!({"description": "s", "updated_at": "2026-01-01T00:00:00Z"}),
    );
    put_local(&data_a, std::slice::from_ref(&shared));
    sync_ok(&data_a, client(dir, "a", &remote)).await;
    sync_ok(&data_b, client(dir, "b", &remote)).await;

    let mut sa = shared.clone();
    sa.edit(&[Change::AddTag("a".into())], Utc::now()).unwrap();
    let mut sb = shared.clone();
    sb.edit(&[Change::AddTag("b".into())], Utc::now()).unwrap();
    let mut ta: Vec<Task> = (0..15)
        .map(|i| task(&format!("a{i}"), json!({"description": format!("n{i}")})))
        .collect();
    ta.push(sa);
    let mut tb: Vec<Task> = (0..15)
        .map(|i| task(&format!("b{i}"), json!({"description": format!("n{i}")})))
        .collect();
    tb.push(sb);
    put_local(&data_a, &ta);
    put_local(&data_b, &tb);

    let (ra, rb) = tokio::join!(
        sync(&data_a, client(dir, "a", &remote)),
        sync(&data_b, client(dir, "b", &remote))
    );
    assert!(ra.is_ok() && rb.is_ok(), "{ra:#?}\n{rb:#?}");
    // Whoever pushed second merged; one more sync each brings the other's tasks home.
    sync_ok(&data_a, client(dir, "a", &remote)).await;
    sync_ok(&data_b, client(dir, "b", &remote)).await;

    let tip = ref_of(&remote, "main").unwrap();
    let files = git(&remote, &["ls-tree", "--name-only", &tip, "tasks/"]);
    assert_eq!(
        files.lines().count(),
        31,
        "every task of both machines landed:\n{files}"
    );
    let s = task_at(&remote, &tip, "shared");
    assert!(s.tags().contains(&"a") && s.tags().contains(&"b"), "{s:?}");
    let ha = Replica::open(&data_a).unwrap().scan().unwrap().hashes;
    let hb = Replica::open(&data_b).unwrap().scan().unwrap().hashes;
    assert_eq!(ha, hb);
    assert_eq!(ha.len(), 31);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_op_sync_leaves_the_remote_ref_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let remote = bare(dir, "remote.git");
    let data = dir.join("data");
    put_local(
        &data,
        &[
            task("one", json!({"description": "1"})),
            task("two", json!({"description": "2"})),
            task("three", json!({"description": "3"})),
        ],
    );
    let report = sync_ok(&data, client(dir, "a", &remote)).await;
    assert_eq!(changes(&report), 3);
    assert_eq!(
        commit_count(&remote, "main"),
        1,
        "one commit for the whole sync"
    );
    let subject = git(&remote, &["log", "-1", "--format=%s", "main"]);
    assert!(
        subject.starts_with("hypertask: 3 tasks changed on "),
        "{subject}"
    );
    let tip = ref_of(&remote, "main");
    let clone_head = ref_of(&dir.join("a"), "HEAD");

    for _ in 0..2 {
        let report = sync_ok(&data, client(dir, "a", &remote)).await;
        assert_eq!(changes(&report), 0);
        assert_eq!(ref_of(&remote, "main"), tip, "no push");
        assert_eq!(ref_of(&dir.join("a"), "HEAD"), clone_head, "no commit");
    }
    // finish() with nothing written does nothing either.
    client(dir, "a", &remote).finish().await.unwrap();
    assert_eq!(ref_of(&remote, "main"), tip);

    // One changed task: one more commit saying so.
    let mut t = local(&data, "two").unwrap();
    t.edit(
        &[Change::Set("description".into(), json!("2b"))],
        Utc::now(),
    )
    .unwrap();
    put_local(&data, &[t]);
    sync_ok(&data, client(dir, "a", &remote)).await;
    assert_eq!(commit_count(&remote, "main"), 2);
    let subject = git(&remote, &["log", "-1", "--format=%s", "main"]);
    assert!(
        subject.starts_with("hypertask: 1 task changed on "),
        "{subject}"
    );
}
