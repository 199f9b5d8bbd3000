//! Where the clone and its remote are: no remote (commits stay local), locations that cannot
//! be used (clear errors, nothing touched), a `file://` remote and a fresh clone path made from
//! it, a missing local bare remote made on request.

mod common;

use common::{bare, client, commit_count, driver, git, listing, task, task_at, tid};
use hypertask_core::{Batch, ErrorKind};
use serde_json::json;

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
