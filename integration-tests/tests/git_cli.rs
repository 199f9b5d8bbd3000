//! The git driver through the real `hypertask` binary: two machines (two data directories,
//! two working clones) sharing one bare remote, plus plain `git` by hand.

use std::path::{Path, PathBuf};
use std::process::Command;

use hypertask_integration_tests::{toml_path, Machine};
use serde_json::Value;

/// Runs `git ARGS…` in `dir` with a fixed identity; asserts success and returns stdout.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Hand Editor",
            "-c",
            "user.email=hand@example.org",
        ])
        .args(["-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The commit the remote's `main` points at.
fn tip(remote: &Path) -> String {
    git(remote, &["rev-parse", "main"]).trim().to_owned()
}

/// A machine whose config has one git driver `repo`: its own clone, the shared remote.
fn machine(remote: &Path) -> Machine {
    let m = Machine::new();
    m.write_config(&format!(
        "[drivers.repo]\ntype = \"git\"\npath = {}\nremote = {}\nbranch = \"main\"\n",
        toml_path(&m.dir.path().join("clone")),
        toml_path(remote)
    ));
    m
}

fn bare_remote(dir: &Path) -> PathBuf {
    let remote = dir.join("remote.git");
    std::fs::create_dir_all(&remote).unwrap();
    git(&remote, &["init", "--bare", "--quiet"]);
    remote
}

fn find<'a>(tasks: &'a [Value], id: &str) -> &'a Value {
    tasks
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("task {id} in {tasks:#?}"))
}

fn tags(t: &Value) -> Vec<&str> {
    t["tags"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn the_first_sync_names_the_clone_and_the_remote_it_created() {
    let m = Machine::new();
    let remote = m.dir.path().join("remote.git");
    let clone = m.dir.path().join("clone");
    m.write_config(&format!(
        "[drivers.repo]\ntype = \"git\"\npath = {}\nremote = {}\ncreate_remote = true\n",
        toml_path(&clone),
        toml_path(&remote)
    ));
    m.ok(&["add", "water", "plants"]);
    let said = m.ok(&["sync"]);
    assert!(
        said.contains(&format!(
            "created a git repository at {} and the bare remote {}",
            clone.display(),
            remote.display()
        )),
        "{said}"
    );
    assert_eq!(git(&remote, &["rev-list", "--count", "main"]).trim(), "1");
}

#[test]
fn two_machines_share_tasks_through_one_bare_remote() {
    let tmp = tempfile::tempdir().unwrap();
    let remote = bare_remote(tmp.path());
    let (m1, m2) = (machine(&remote), machine(&remote));

    // Machine 1 adds a task and syncs: the clone is created and one commit is pushed.
    let milk = m1.ok(&["add", "buy", "milk", "+home"]).trim().to_owned();
    assert!(!milk.is_empty());
    let said = m1.ok(&["sync"]);
    let clone = m1.dir.path().join("clone");
    assert!(
        said.contains(&format!("created a git repository at {}", clone.display())),
        "the first sync says it created the clone: {said}"
    );
    assert!(
        !m1.ok(&["sync"]).contains("created"),
        "only the first sync says so"
    );
    assert_eq!(git(&remote, &["rev-list", "--count", "main"]).trim(), "1");
    let subject = git(&remote, &["log", "-1", "--format=%s", "main"]);
    assert!(
        subject.starts_with("hypertask: 1 task changed on "),
        "{subject}"
    );

    // Machine 2 syncs and sees it.
    m2.ok(&["sync"]);
    let t2 = m2.tasks();
    assert_eq!(t2.len(), 1);
    assert_eq!(find(&t2, &milk)["description"], "buy milk");

    // Both change things offline, then sync in turn.
    m2.ok(&["modify", &milk, "+urgent"]);
    let call = m1.ok(&["add", "call", "mom", "+family"]).trim().to_owned();
    m1.ok(&["modify", &milk, "+errand"]);
    m2.ok(&["sync"]);
    m1.ok(&["sync"]);
    m2.ok(&["sync"]);

    assert_eq!(
        m1.cache_files(),
        m2.cache_files(),
        "both caches hold the same bytes"
    );
    let t1 = m1.tasks();
    assert_eq!(t1.len(), 2);
    let milk_tags = tags(find(&t1, &milk));
    for tag in ["home", "urgent", "errand"] {
        assert!(
            milk_tags.contains(&tag),
            "tag {tag} survived: {milk_tags:?}"
        );
    }
    assert_eq!(find(&t1, &call)["description"], "call mom");

    // A sync with nothing to do pushes nothing.
    let before = tip(&remote);
    m1.ok(&["sync"]);
    m2.ok(&["sync"]);
    assert_eq!(
        tip(&remote),
        before,
        "a no-op sync leaves the remote ref unchanged"
    );

    // The remote is a normal repository: `git clone` checks out the same task files.
    let hand = tmp.path().join("hand");
    git(
        tmp.path(),
        &[
            "clone",
            "--quiet",
            remote.to_str().unwrap(),
            hand.to_str().unwrap(),
        ],
    );
    for (name, bytes) in m1.cache_files() {
        assert_eq!(
            std::fs::read(hand.join("tasks").join(&name)).unwrap(),
            bytes,
            "tasks/{name} in the repository equals the cache file"
        );
    }
    git(&remote, &["fsck", "--no-progress"]);
}

#[test]
fn a_task_edited_and_pushed_with_git_reaches_the_other_machine() {
    let tmp = tempfile::tempdir().unwrap();
    let remote = bare_remote(tmp.path());
    let (m1, m2) = (machine(&remote), machine(&remote));
    let id = m1.ok(&["add", "write", "report"]).trim().to_owned();
    m1.ok(&["sync"]);
    m2.ok(&["sync"]);

    // Edit the task by hand in a plain clone: new description with a newer clock.
    let hand = tmp.path().join("hand");
    git(
        tmp.path(),
        &[
            "clone",
            "--quiet",
            remote.to_str().unwrap(),
            hand.to_str().unwrap(),
        ],
    );
    let path = hand.join("tasks").join(format!("{id}.json"));
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    doc["description"] = Value::from("write the quarterly report");
    // A newer clock, within the day of skew any hypertask accepts.
    let newer = hypertask_core::format_timestamp(chrono::Utc::now() + chrono::Duration::hours(1));
    doc["field_updated_at"]["description"] = Value::from(newer.unwrap());
    std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    git(&hand, &["commit", "--quiet", "-am", "clarify by hand"]);
    git(&hand, &["push", "--quiet", "origin", "main"]);

    // A broken file pushed by hand is reported by name and left alone; the sync still
    // brings the good edit home and exits 1 because something was skipped.
    std::fs::write(hand.join("tasks/broken.json"), b"{ not json").unwrap();
    git(&hand, &["add", "tasks/broken.json"]);
    git(&hand, &["commit", "--quiet", "-m", "oops"]);
    git(&hand, &["push", "--quiet", "origin", "main"]);

    let out = m2.run(&["sync"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a skipped file makes the sync fail"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stderr.contains("broken.json") || stdout.contains("broken.json"),
        "the broken file is named:\n{stdout}\n{stderr}"
    );
    let shown: Value = serde_json::from_str(&m2.ok(&["show", &id, "--json"])).unwrap();
    assert_eq!(shown["description"], "write the quarterly report");
    assert_eq!(
        std::fs::read(m2.dir.path().join("clone/tasks/broken.json")).unwrap(),
        b"{ not json"
    );
}
