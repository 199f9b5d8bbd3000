//! What the clone and the remote hold that no finished sync wrote: a hand edit pushed with
//! plain git, a file that is not a task, an uncommitted edit in the clone, the files of a sync
//! killed before its first commit. Each is picked up, or reported and left alone; none is lost.

mod common;

use chrono::Utc;
use common::{
    bare, client, git, hand_clone, listing, local, put_local, ref_of, sync, sync_ok, task, task_at,
    tid,
};
use hypertask_core::{Batch, Change, ErrorKind};
use serde_json::json;

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
    let hand = hand_clone(dir, &remote);
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

    let hand = hand_clone(dir, &remote);
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
