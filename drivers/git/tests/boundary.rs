//! One sync, one transaction with the remote: a dry run changes nothing anywhere, a sync of
//! thousands of tasks is one commit and one push, a sync with nothing to do is neither.

mod common;

use std::path::Path;

use common::{bare, client, git, put_local, ref_of};
use hypertask_core::{Engine, Replica, SyncOptions, SyncReport, Task};
use serde_json::json;

fn task(id: &str, description: &str) -> Task {
    Task::from_value(json!({"id": id, "description": description})).unwrap()
}

async fn sync_with(
    data: &Path,
    dir: &Path,
    name: &str,
    remote: &Path,
    dry_run: bool,
) -> SyncReport {
    let options = SyncOptions {
        dry_run,
        ..SyncOptions::default()
    };
    let report = Engine::new(
        Replica::open(data).unwrap(),
        vec![hypertask_core::Checked::new(client(dir, name, remote))],
        options,
    )
    .sync()
    .await
    .expect("the cache syncs");
    assert!(report.drivers[0].error.is_none(), "{report:#?}");
    report
}

fn commit_count(repo: &Path) -> usize {
    git(repo, &["rev-list", "--count", "main"])
        .trim()
        .parse()
        .unwrap()
}

/// Everything about a repository a write could change: refs, HEAD, objects, status, files.
fn fingerprint(repo: &Path) -> String {
    let mut out = String::new();
    out += &git(repo, &["for-each-ref", "--format=%(refname) %(objectname)"]);
    out += &git(repo, &["rev-parse", "HEAD"]);
    out += &git(repo, &["count-objects", "-v"]);
    if git(repo, &["rev-parse", "--is-bare-repository"]).trim() == "true" {
        return out;
    }
    out += &git(repo, &["status", "--porcelain", "--untracked-files=all"]);
    let mut files: Vec<String> = std::fs::read_dir(repo.join("tasks"))
        .map(|d| {
            d.map(|e| {
                let p = e.unwrap().path();
                format!("{} {:?}", p.display(), std::fs::read(&p).unwrap())
            })
            .collect()
        })
        .unwrap_or_default();
    files.sort();
    out + &files.join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_leaves_the_clone_and_the_remote_unchanged_yet_sees_the_remote() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let remote = bare(dir, "remote.git");
    let (data_a, data_b) = (dir.join("data-a"), dir.join("data-b"));
    put_local(&data_a, &[task("one", "1"), task("two", "2")]);
    sync_with(&data_a, dir, "a", &remote, false).await;
    sync_with(&data_b, dir, "b", &remote, false).await;

    // a pushes a change and a new task; b has a local change of its own and a task file
    // edited by hand in its clone, not committed.
    let mut one = Replica::open(&data_a)
        .unwrap()
        .get(&hypertask_core::TaskId::new("one").unwrap())
        .unwrap()
        .unwrap();
    one.edit(
        &[hypertask_core::Change::Set(
            "description".into(),
            json!("1 from a"),
        )],
        chrono::Utc::now(),
    )
    .unwrap();
    put_local(&data_a, &[one, task("three", "3")]);
    sync_with(&data_a, dir, "a", &remote, false).await;
    put_local(&data_b, &[task("four", "4 from b")]);
    let mut two = Replica::open(&data_b)
        .unwrap()
        .get(&hypertask_core::TaskId::new("two").unwrap())
        .unwrap()
        .unwrap();
    two.edit(
        &[hypertask_core::Change::Set(
            "description".into(),
            json!("2 by hand"),
        )],
        chrono::Utc::now(),
    )
    .unwrap();
    let hand = two.to_pretty_json();
    std::fs::write(dir.join("b/tasks/two.json"), &hand).unwrap();

    let (clone_before, remote_before) = (fingerprint(&dir.join("b")), fingerprint(&remote));
    let report = sync_with(&data_b, dir, "b", &remote, true).await;
    assert_eq!(
        fingerprint(&dir.join("b")),
        clone_before,
        "the dry run wrote to the clone"
    );
    assert_eq!(
        fingerprint(&remote),
        remote_before,
        "the dry run wrote to the remote"
    );
    // It saw what a real sync would bring in: a's two changes (and b's hand edit).
    assert!(report.drivers[0].pulled >= 2, "{report:#?}");
    // No temporary objects are left behind either.
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("hypertask-git-preview-")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The real sync then does it all, in one commit on top of a's.
    let before = commit_count(&remote);
    sync_with(&data_b, dir, "b", &remote, false).await;
    assert_eq!(commit_count(&remote), before + 1);
    let subject = git(&remote, &["log", "-1", "--format=%s", "main"]);
    assert!(
        subject.starts_with("hypertask: 2 tasks changed on "),
        "{subject}"
    );
    let listed = git(&remote, &["ls-tree", "--name-only", "main", "tasks/"]);
    assert_eq!(
        listed,
        "tasks/four.json\ntasks/one.json\ntasks/three.json\ntasks/two.json\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_of_2500_tasks_is_one_commit_and_a_no_op_sync_is_none() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let remote = bare(dir, "remote.git");
    let data = dir.join("data");
    let tasks: Vec<Task> = (0..2500)
        .map(|i| task(&format!("t{i:04}"), &format!("task {i}")))
        .collect();
    put_local(&data, &tasks);
    let report = sync_with(&data, dir, "a", &remote, false).await;
    assert_eq!(report.drivers[0].pushed, 2500, "{report:#?}");
    assert_eq!(commit_count(&remote), 1);
    let subject = git(&remote, &["log", "-1", "--format=%s", "main"]);
    assert!(
        subject.starts_with("hypertask: 2500 tasks changed on "),
        "{subject}"
    );
    assert_eq!(
        git(&remote, &["ls-tree", "--name-only", "main", "tasks/"])
            .lines()
            .count(),
        2500
    );
    assert_eq!(git(&dir.join("a"), &["status", "--porcelain"]), "");
    // The 2,500 blobs went into one pack, not 2,500 loose objects, and the clone is sound.
    let objects = |repo: &Path| {
        let counts = git(repo, &["count-objects", "-v"]);
        let field = |name: &str| -> usize {
            let line = counts.lines().find_map(|l| l.strip_prefix(name));
            line.unwrap().trim().parse().unwrap()
        };
        (field("count:"), field("in-pack:"))
    };
    let (loose, packed) = objects(&dir.join("a"));
    assert!(
        loose < 10 && packed >= 2500,
        "loose {loose}, packed {packed}"
    );
    git(&dir.join("a"), &["fsck", "--strict", "--no-dangling"]);
    let reflog = git(&dir.join("a"), &["reflog", "-1", "--format=%gs", "main"]);
    assert!(
        reflog.starts_with("commit: hypertask: 2500 tasks"),
        "{reflog}"
    );

    // Nothing to do: no commit, no push (the remote's ref and reflog stay as they are).
    let (tip, head) = (ref_of(&remote, "main"), ref_of(&dir.join("a"), "HEAD"));
    let pushes = git(&remote, &["count-objects", "-v"]);
    for _ in 0..2 {
        sync_with(&data, dir, "a", &remote, false).await;
        assert_eq!(ref_of(&remote, "main"), tip, "no push");
        assert_eq!(ref_of(&dir.join("a"), "HEAD"), head, "no commit");
        assert_eq!(
            git(&remote, &["count-objects", "-v"]),
            pushes,
            "nothing sent"
        );
    }

    // A small change stays loose: one blob, two trees and the commit.
    put_local(&data, &[task("late", "one more")]);
    sync_with(&data, dir, "a", &remote, false).await;
    assert_eq!(objects(&dir.join("a")), (loose + 4, packed));
    git(&dir.join("a"), &["fsck", "--strict", "--no-dangling"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recorded_root_never_hides_a_change() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let remote = bare(dir, "remote.git");
    let data = dir.join("data");
    put_local(&data, &[task("one", "1"), task("two", "2")]);
    sync_with(&data, dir, "a", &remote, false).await;
    // The no-op sync that follows answers from the recorded root.
    assert!(dir.join("a/.git/hypertask-root").exists());
    sync_with(&data, dir, "a", &remote, false).await;
    let cached = |id: &str| {
        Replica::open(&data)
            .unwrap()
            .get(&hypertask_core::TaskId::new(id).unwrap())
            .unwrap()
            .map(|t| t.description().to_owned())
    };
    let newer = |id: &str, d: &str| edited(&data, id, d);
    let clone = dir.join("a");

    // An edit by hand, not committed.
    std::fs::write(clone.join("tasks/one.json"), newer("one", "1 by hand")).unwrap();
    sync_with(&data, dir, "a", &remote, false).await;
    assert_eq!(cached("one").as_deref(), Some("1 by hand"));

    // An edit by hand of the same size.
    let path = clone.join("tasks/one.json");
    let edited = newer("one", "1 BY HAND");
    assert_eq!(edited.len() as u64, std::fs::metadata(&path).unwrap().len());
    std::fs::write(&path, &edited).unwrap();
    sync_with(&data, dir, "a", &remote, false).await;
    assert_eq!(cached("one").as_deref(), Some("1 BY HAND"));

    // A commit made with plain git in the clone.
    std::fs::write(clone.join("tasks/two.json"), newer("two", "2 committed")).unwrap();
    git(&clone, &["commit", "--quiet", "-am", "by hand"]);
    sync_with(&data, dir, "a", &remote, false).await;
    assert_eq!(cached("two").as_deref(), Some("2 committed"));

    // A task file added by hand.
    std::fs::write(
        clone.join("tasks/three.json"),
        task("three", "3").to_pretty_json(),
    )
    .unwrap();
    sync_with(&data, dir, "a", &remote, false).await;
    assert_eq!(cached("three").as_deref(), Some("3"));

    // Another machine's push.
    let other = dir.join("data-b");
    sync_with(&other, dir, "b", &remote, false).await;
    put_local(&other, &[task("four", "4")]);
    sync_with(&other, dir, "b", &remote, false).await;
    sync_with(&data, dir, "a", &remote, false).await;
    assert_eq!(cached("four").as_deref(), Some("4"));
    assert_eq!(git(&clone, &["status", "--porcelain"]), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_record_is_never_read_as_the_listing_and_is_written_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let remote = bare(dir, "remote.git");
    let data = dir.join("data");
    put_local(&data, &[task("one", "1"), task("two", "2")]);
    sync_with(&data, dir, "a", &remote, false).await;
    let record = dir.join("a/.git/hypertask-root");
    let good = std::fs::read_to_string(&record).unwrap();
    let line = |id: &str| {
        let prefix = format!("{id} ");
        good.lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap()
            .to_owned()
    };
    // The line of "two" damaged to say what "one" holds; the root line still names the tree.
    let (one, two) = (line("one"), line("two"));
    let damaged = good.replace(&two, &format!("two {}", one.split_once(' ').unwrap().1));
    std::fs::write(&record, &damaged).unwrap();

    // A sync with nothing to do compares the root only: the listing is not read, and the
    // record is left as it is.
    sync_with(&data, dir, "a", &remote, false).await;
    assert_eq!(std::fs::read_to_string(&record).unwrap(), damaged);

    // A sync that needs the listing finds it damaged, lists the clone instead, and records
    // the listing again.
    put_local(&data, &[task("three", "3")]);
    sync_with(&data, dir, "a", &remote, false).await;
    let written = std::fs::read_to_string(&record).unwrap();
    assert!(written.contains(&two), "{written}");
    assert!(written.contains("\nthree "), "{written}");
    git(&remote, &["cat-file", "-e", "main:tasks/three.json"]);
    git(&remote, &["cat-file", "-e", "main:tasks/two.json"]);
}

/// A task file's content as an editor would leave it: the cached task with `description`
/// set now (so it is the newer side of the merge).
fn edited(data: &Path, id: &str, description: &str) -> Vec<u8> {
    let mut t = Replica::open(data)
        .unwrap()
        .get(&hypertask_core::TaskId::new(id).unwrap())
        .unwrap()
        .unwrap();
    t.edit(
        &[hypertask_core::Change::Set(
            "description".into(),
            json!(description),
        )],
        chrono::Utc::now(),
    )
    .unwrap();
    t.to_pretty_json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_edits_found_by_one_pass_are_committed_with_the_sync_and_status_stays_clean() {
    // Enough task files for the pass over the working tree to share its `lstat`s between
    // threads: edits at both ends of the listing land in different threads' shares.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let remote = bare(dir, "remote.git");
    let data = dir.join("data");
    let tasks: Vec<Task> = (0..1100)
        .map(|i| task(&format!("t{i:04}"), &format!("task {i}")))
        .collect();
    put_local(&data, &tasks);
    sync_with(&data, dir, "a", &remote, false).await;
    let clone = dir.join("a");
    assert_eq!(git(&clone, &["status", "--porcelain"]), "");
    let commits = commit_count(&remote);

    // Right after that sync (in the same second as its index write): an edit in place of
    // the same size, an edit that changes the size, a task file added by hand; and a change
    // made in the cache, which the sync writes.
    let last = clone.join("tasks/t1099.json");
    let same_size = edited(&data, "t1099", "TASK 1099");
    assert_eq!(
        same_size.len() as u64,
        std::fs::metadata(&last).unwrap().len()
    );
    std::fs::write(&last, &same_size).unwrap();
    std::fs::write(
        clone.join("tasks/t0000.json"),
        edited(&data, "t0000", "task zero, longer now"),
    )
    .unwrap();
    std::fs::write(
        clone.join("tasks/added.json"),
        task("added", "typed in an editor").to_pretty_json(),
    )
    .unwrap();
    let cached = edited(&data, "t0500", "changed in the cache");
    let cached = Task::from_value(serde_json::from_slice(&cached).unwrap()).unwrap();
    put_local(&data, &[cached]);
    sync_with(&data, dir, "a", &remote, false).await;

    // One commit holds all four, and plain git finds nothing left to commit.
    assert_eq!(commit_count(&remote), commits + 1);
    let subject = git(&remote, &["log", "-1", "--format=%s", "main"]);
    assert!(
        subject.starts_with("hypertask: 4 tasks changed on "),
        "{subject}"
    );
    let committed = |id: &str| git(&remote, &["show", &format!("main:tasks/{id}.json")]);
    assert!(committed("t1099").contains("TASK 1099"));
    assert!(committed("t0000").contains("task zero, longer now"));
    assert!(committed("added").contains("typed in an editor"));
    assert!(committed("t0500").contains("changed in the cache"));
    assert_eq!(
        git(&clone, &["status", "--porcelain", "--untracked-files=all"]),
        ""
    );

    // The next sync has nothing to do: no commit.
    sync_with(&data, dir, "a", &remote, false).await;
    assert_eq!(commit_count(&remote), commits + 1);
    assert_eq!(git(&clone, &["status", "--porcelain"]), "");
}
