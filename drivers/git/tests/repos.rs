//! The git driver against real repositories: clones of bare remotes, the sync engine, and
//! the `git` command for everything done "by hand". One file of independent scenarios (each a
//! test function); hostile remotes, boundaries and the network are in files of their own.

mod common;

use std::path::Path;
use std::sync::Arc;

use chrono::Utc;
use common::{bare, client, driver, git, ref_of};
use hypertask_core::{
    Batch, Change, Checked, Driver, Engine, ErrorKind, Listing, PutOutcome, Replica, Store,
    SyncOptions, SyncReport, Task, TaskId, Version, Write, DEFAULT_LOCK_TIMEOUT,
};
use hypertask_driver_git::{GitConfig, GitStore};
use serde_json::json;

fn task(id: &str, v: serde_json::Value) -> Task {
    let mut doc = v;
    doc["id"] = json!(id);
    Task::from_value(doc).expect("valid task")
}

fn tid(s: &str) -> TaskId {
    TaskId::new(s).unwrap()
}

/// Writes tasks into the local cache of data dir `data`, as `hypertask add/modify` would.
fn put_local(data: &Path, tasks: &[Task]) {
    let replica = Replica::open(data).unwrap();
    let lock = replica.lock(DEFAULT_LOCK_TIMEOUT).unwrap();
    replica.put(&lock, tasks).unwrap();
}

fn local(data: &Path, id: &str) -> Option<Task> {
    Replica::open(data).unwrap().get(&tid(id)).unwrap()
}

/// One `hypertask sync` of data dir `data` with `driver`.
async fn sync(data: &Path, driver: Arc<dyn Driver>) -> SyncReport {
    let replica = Replica::open(data).unwrap();
    Engine::new(replica, vec![Checked::new(driver)], SyncOptions::default())
        .sync()
        .await
        .expect("the cache syncs")
}

async fn sync_ok(data: &Path, driver: Arc<dyn Driver>) -> SyncReport {
    let report = sync(data, driver).await;
    assert!(report.is_ok(), "sync failed: {report:#?}");
    report
}

fn changes(r: &SyncReport) -> usize {
    r.drivers
        .iter()
        .map(|d| d.pulled + d.pushed + d.merged)
        .sum()
}

async fn listing(d: &dyn Driver) -> hypertask_core::Inventory {
    match d.hashes(None).await.expect("hashes") {
        Listing::Changed(inv) => inv,
        Listing::Unchanged => panic!("hashes(None) lists"),
    }
}

/// The task file at `rev` in a repository, parsed (so it holds no conflict markers).
fn task_at(repo: &Path, rev: &str, id: &str) -> Task {
    let bytes = git(repo, &["show", &format!("{rev}:tasks/{id}.json")]);
    Task::from_json(bytes.as_bytes()).expect("the committed file is a valid task")
}

fn commit_count(repo: &Path, rev: &str) -> usize {
    git(repo, &["rev-list", "--count", rev])
        .trim()
        .parse()
        .unwrap()
}

fn store(dir: &Path, name: &str, remote: &Path) -> GitStore {
    let config: GitConfig = serde_json::from_value(json!({
        "path": dir.join(name), "remote": remote
    }))
    .unwrap();
    GitStore::new(name, &config, dir).unwrap()
}

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
    let seen = b
        .get(&[tid("t1")])
        .await
        .unwrap()
        .remove(&tid("t1"))
        .unwrap()
        .unwrap()
        .unwrap()
        .task;
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
    let got = a
        .get(&[tid("t1")])
        .await
        .unwrap()
        .remove(&tid("t1"))
        .unwrap()
        .unwrap()
        .unwrap()
        .task;
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
    let hand = dir.join("hand");
    git(
        dir,
        &[
            "clone",
            "--quiet",
            remote.to_str().unwrap(),
            hand.to_str().unwrap(),
        ],
    );
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
async fn a_hand_edit_pushed_with_git_is_picked_up() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let remote = bare(dir, "remote.git");
    let data = dir.join("data");
    put_local(
        &data,
        &[task(
            "t1",
            json!({"description": "typo", "updated_at": "2026-01-01T00:00:00Z"}),
        )],
    );
    sync_ok(&data, client(dir, "a", &remote)).await;

    // Someone clones the remote, fixes the description (bumping its clock, as the format
    // says), adds a task by hand, commits and pushes with plain git.
    let hand = dir.join("hand");
    git(
        dir,
        &[
            "clone",
            "--quiet",
            remote.to_str().unwrap(),
            hand.to_str().unwrap(),
        ],
    );
    let path = hand.join("tasks/t1.json");
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    doc["description"] = json!("fixed by hand");
    doc["field_updated_at"]["description"] = json!("2026-02-01T00:00:00.000Z");
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    std::fs::write(
        hand.join("tasks/byhand.json"),
        r#"{"id": "byhand", "description": "typed in an editor"}"#,
    )
    .unwrap();
    git(&hand, &["add", "tasks"]);
    git(&hand, &["commit", "--quiet", "-m", "fix a typo by hand"]);
    git(&hand, &["push", "--quiet", "origin", "main"]);

    sync_ok(&data, client(dir, "a", &remote)).await;
    assert_eq!(local(&data, "t1").unwrap().description(), "fixed by hand");
    assert_eq!(
        local(&data, "byhand").unwrap().description(),
        "typed in an editor"
    );
    // The hand-made file is kept byte for byte: the driver does not rewrite what it can read.
    assert_eq!(
        std::fs::read(dir.join("a/tasks/byhand.json")).unwrap(),
        std::fs::read(hand.join("tasks/byhand.json")).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unparsable_file_is_reported_and_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let remote = bare(dir, "remote.git");
    let data = dir.join("data");
    put_local(
        &data,
        &[
            task("good", json!({"description": "fine"})),
            task("victim", json!({"description": "about to be broken"})),
        ],
    );
    sync_ok(&data, client(dir, "a", &remote)).await;

    let hand = dir.join("hand");
    git(
        dir,
        &[
            "clone",
            "--quiet",
            remote.to_str().unwrap(),
            hand.to_str().unwrap(),
        ],
    );
    let broken = b"{\"id\": \"victim\", \"description\": <<<<<<< oops\n";
    std::fs::write(hand.join("tasks/victim.json"), broken).unwrap();
    git(&hand, &["commit", "--quiet", "-am", "break a file"]);
    git(&hand, &["push", "--quiet", "origin", "main"]);
    let remote_tip = ref_of(&remote, "main");

    // The local cache has a newer state of the broken task and a new task.
    let mut v = local(&data, "victim").unwrap();
    v.edit(&[Change::AddTag("local".into())], Utc::now())
        .unwrap();
    put_local(&data, &[v, task("new1", json!({"description": "new"}))]);

    let d = client(dir, "a", &remote);
    let inv = listing(d.as_ref()).await;
    assert_eq!(inv.problems.len(), 1, "{:?}", inv.problems);
    assert_eq!(inv.problems[0].id, Some(tid("victim")));
    let msg = inv.problems[0].error.to_string();
    assert!(
        msg.contains("driver 'a'") && msg.contains("victim.json"),
        "{msg}"
    );
    assert_eq!(inv.problems[0].error.kind(), ErrorKind::InvalidData);

    let report = sync(&data, d).await;
    assert_eq!(report.drivers[0].skipped.len(), 1, "{report:#?}");
    assert!(report.drivers[0].error.is_none(), "{report:#?}");
    // The broken file is untouched in the clone and in the remote; the rest synced.
    assert_eq!(
        std::fs::read(dir.join("a/tasks/victim.json")).unwrap(),
        broken
    );
    assert_eq!(
        git(&remote, &["show", "main:tasks/victim.json"]).as_bytes(),
        broken
    );
    assert_ne!(
        ref_of(&remote, "main"),
        remote_tip,
        "the new task was pushed"
    );
    assert_eq!(task_at(&remote, "main", "new1").description(), "new");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncommitted_edit_in_the_clone_survives_a_pull_and_is_committed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let remote = bare(dir, "remote.git");
    let base = task(
        "t1",
        json!({"description": "base", "updated_at": "2026-01-01T00:00:00Z"}),
    );
    let (a, b) = (client(dir, "a", &remote), client(dir, "b", &remote));
    a.resolve(Batch::from([(tid("t1"), Some(base.clone()))]))
        .await
        .unwrap();
    a.finish().await.unwrap();
    b.resolve(Batch::from([(tid("t1"), None)])).await.unwrap();
    b.finish().await.unwrap();
    // Someone edits t1 in b's working tree without committing; a pushes another edit.
    let mut hand = base.clone();
    hand.edit(&[Change::AddTag("hand".into())], Utc::now())
        .unwrap();
    std::fs::write(dir.join("b/tasks/t1.json"), hand.to_pretty_json()).unwrap();
    let mut ea = base.clone();
    ea.edit(&[Change::AddTag("a".into())], Utc::now()).unwrap();
    a.resolve(Batch::from([(tid("t1"), Some(ea.clone()))]))
        .await
        .unwrap();
    a.finish().await.unwrap();
    // b's next read pulls a's edit in without losing the uncommitted one.
    let got = b
        .resolve(Batch::from([(tid("t1"), None)]))
        .await
        .unwrap()
        .remove(&tid("t1"))
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        got.tags().contains(&"a") && got.tags().contains(&"hand"),
        "{got:?}"
    );
    // finish() commits it and pushes.
    b.finish().await.unwrap();
    let pushed = task_at(&remote, "main", "t1");
    assert_eq!(pushed, got);
    assert_eq!(git(&dir.join("b"), &["status", "--porcelain"]), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_written_by_a_sync_killed_before_its_first_commit_are_committed_next_time() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let remote = bare(dir, "remote.git");
    let t1 = task("t1", json!({"description": "written, never committed"}));
    let t2 = task("t2", json!({"description": "written by the next sync"}));
    // A first sync writes t1 into the fresh clone and dies before `finish`: `tasks/` is then
    // a directory git has never seen.
    {
        let killed = client(dir, "a", &remote);
        killed
            .resolve(Batch::from([(tid("t1"), Some(t1.clone()))]))
            .await
            .unwrap();
    }
    // The next sync finds t1 already there, writes t2, and its one commit holds both.
    let next = client(dir, "a", &remote);
    let answers = next
        .resolve(Batch::from([
            (tid("t1"), Some(t1.clone())),
            (tid("t2"), Some(t2.clone())),
        ]))
        .await
        .unwrap();
    assert!(answers.values().all(Result::is_ok), "{answers:?}");
    next.finish().await.unwrap();
    assert_eq!(task_at(&remote, "main", "t1"), t1);
    assert_eq!(task_at(&remote, "main", "t2"), t2);
    assert_eq!(git(&dir.join("a"), &["status", "--porcelain"]), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_remote_tasks_are_committed_locally() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = driver("solo", json!({"path": dir.join("solo")}), dir);
    let t = task("t1", json!({"description": "local only"}));
    d.resolve(Batch::from([(tid("t1"), Some(t.clone()))]))
        .await
        .unwrap();
    d.finish().await.unwrap();
    let repo = dir.join("solo");
    assert_eq!(commit_count(&repo, "main"), 1);
    assert_eq!(task_at(&repo, "main", "t1"), t);
    assert!(!d.info().capabilities.remote);
    assert!(d.check().await.unwrap().ok);
    // A second identical resolve and finish commit nothing.
    d.resolve(Batch::from([(tid("t1"), Some(t.clone()))]))
        .await
        .unwrap();
    d.finish().await.unwrap();
    assert_eq!(commit_count(&repo, "main"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_locations_are_clear_errors_and_nothing_is_touched() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // A non-empty directory that is not a repository.
    let notes = dir.join("notes");
    std::fs::create_dir_all(&notes).unwrap();
    std::fs::write(notes.join("diary.txt"), "private").unwrap();
    let d = driver("repo", json!({"path": notes}), dir);
    let e = d.check().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(
        e.to_string().contains("driver 'repo'") && e.to_string().contains("notes"),
        "{e}"
    );
    assert!(!notes.join(".git").exists());
    assert_eq!(
        std::fs::read_to_string(notes.join("diary.txt")).unwrap(),
        "private"
    );

    // A clone with another branch checked out.
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    git(&other, &["init", "--quiet", "--initial-branch=trunk"]);
    let e = driver("repo", json!({"path": other}), dir)
        .check()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(
        e.to_string().contains("trunk") && e.to_string().contains("'main'"),
        "{e}"
    );

    // A remote that does not exist is unavailable (retryable), naming it.
    let missing = dir.join("missing.git");
    let e = client(dir, "c", &missing).hashes(None).await.unwrap_err();
    assert!(
        e.is_retryable() && e.to_string().contains("missing.git"),
        "{e}"
    );

    // Unknown keys are refused by the factory, naming the instance.
    let mut registry = hypertask_core::Registry::new();
    hypertask_driver_git::register(&mut registry);
    let e = registry
        .build(&hypertask_core::DriverSpec::new(
            "repo",
            "git",
            json!({"path": "/tmp/x", "remtoe": "/tmp/y"}),
            dir,
        ))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(
        e.to_string().contains("remtoe") && e.to_string().contains("drivers.repo"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_url_remote_works_and_the_clone_is_created_from_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let remote = bare(dir, "remote.git");
    let url = format!("file://{}", remote.display());
    let a = driver("a", json!({"path": dir.join("a"), "remote": url}), dir);
    let t = task("t1", json!({"description": "over file://"}));
    a.resolve(Batch::from([(tid("t1"), Some(t.clone()))]))
        .await
        .unwrap();
    a.finish().await.unwrap();
    // A fresh clone path is created and filled from the remote on first use.
    let b = driver(
        "b",
        json!({"path": dir.join("nested/b"), "remote": url}),
        dir,
    );
    assert_eq!(
        listing(b.as_ref()).await.hashes.get(t.id()),
        Some(&t.hash())
    );
    assert!(dir.join("nested/b/tasks/t1.json").exists());
    assert_eq!(git(&dir.join("nested/b"), &["status", "--porcelain"]), "");
    let log = git(&dir.join("nested/b"), &["log", "--format=%s"]);
    assert!(log.contains("1 task changed"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_remote_makes_a_missing_local_bare_remote() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let remote = dir.join("made/here.git");
    let opts = json!({"path": dir.join("a"), "remote": remote, "create_remote": true});
    let a = driver("a", opts, dir);
    assert!(a.check().await.unwrap().ok);
    let t = task("t1", json!({"description": "first"}));
    a.resolve(Batch::from([(tid("t1"), Some(t.clone()))]))
        .await
        .unwrap();
    a.finish().await.unwrap();
    assert_eq!(
        git(&remote, &["rev-parse", "--is-bare-repository"]).trim(),
        "true"
    );
    assert_eq!(task_at(&remote, "main", "t1"), t);
    // Only for local remotes.
    let mut registry = hypertask_core::Registry::new();
    hypertask_driver_git::register(&mut registry);
    let e = registry
        .build(&hypertask_core::DriverSpec::new(
            "net",
            "git",
            json!({"remote": "git@example.org:me/t.git", "create_remote": true}),
            dir,
        ))
        .unwrap_err();
    assert!(e.to_string().contains("create_remote"), "{e}");
}
