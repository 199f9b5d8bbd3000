//! A hostile remote: commits whose trees the test crafts itself, object by object, with
//! entries no honest git writes (`..`, `.git`, absolute names, symlinks, executables). Syncing
//! them must never write outside the clone, into its `.git`, or anything but task files.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{bare, git, hand_clone, put_local, ref_of};
use git2::{ObjectType, Oid, Repository, Signature};
use hypertask_core::{Engine, Replica, SyncOptions, SyncReport, Task, TaskId};
use serde_json::json;

/// One raw tree entry: mode (octal text as git writes it), name bytes, object.
struct Entry {
    mode: &'static str,
    name: Vec<u8>,
    id: Oid,
}

fn entry(mode: &'static str, name: impl AsRef<[u8]>, id: Oid) -> Entry {
    Entry {
        mode,
        name: name.as_ref().to_vec(),
        id,
    }
}

/// Writes a tree object byte for byte, bypassing every check libgit2's tree builder makes.
/// Entries are sorted the way git sorts them (a tree's name compares as if it ended in `/`).
fn raw_tree(repo: &Repository, mut entries: Vec<Entry>) -> Oid {
    let key = |e: &Entry| {
        let mut k = e.name.clone();
        if e.mode == "40000" {
            k.push(b'/');
        }
        k
    };
    entries.sort_by_key(key);
    let mut bytes = Vec::new();
    for e in &entries {
        bytes.extend_from_slice(e.mode.as_bytes());
        bytes.push(b' ');
        bytes.extend_from_slice(&e.name);
        bytes.push(0);
        bytes.extend_from_slice(e.id.as_bytes());
    }
    repo.odb().unwrap().write(ObjectType::Tree, &bytes).unwrap()
}

fn blob(repo: &Repository, bytes: &[u8]) -> Oid {
    repo.blob(bytes).unwrap()
}

fn task_json(id: &str, description: &str) -> Vec<u8> {
    Task::from_value(json!({"id": id, "description": description}))
        .unwrap()
        .to_pretty_json()
}

/// What the crafted commit tries to plant, relative to the test's temporary directory.
struct Targets {
    /// `../escaped-top.txt` from the clone.
    top: PathBuf,
    /// `tasks/../../escaped-deep.txt` from the clone.
    deep: PathBuf,
    /// An entry whose name is this absolute path.
    absolute: PathBuf,
    /// What a symlink entry points at.
    link_target: PathBuf,
}

impl Targets {
    fn new(root: &Path) -> Targets {
        Targets {
            top: root.join("work/escaped-top.txt"),
            deep: root.join("escaped-deep.txt"),
            absolute: root.join("escaped-absolute.txt"),
            link_target: root.join("link-target"),
        }
    }
}

/// Commits, on top of the remote's `main` (if any), a tree holding every hostile entry plus
/// the task files `tasks` (id, description), and moves `main` there.
fn push_hostile_commit(remote: &Path, targets: &Targets, tasks: &[(&str, &str)]) -> Oid {
    let repo = Repository::open_bare(remote).unwrap();
    let parent = repo
        .find_reference("refs/heads/main")
        .ok()
        .and_then(|r| r.peel_to_commit().ok());
    let payload = blob(&repo, b"written by the remote\n");
    let hook = blob(
        &repo,
        format!(
            "#!/bin/sh\ntouch {}\n",
            targets.top.with_file_name("hook-ran").display()
        )
        .as_bytes(),
    );

    // tasks/: real tasks, one of them executable, a symlink named like a task, a nested
    // `.git`, and `..` leading two levels up.
    let deep_dotdot = raw_tree(&repo, vec![entry("100644", "escaped-deep.txt", payload)]);
    let dotdot_in_tasks = raw_tree(&repo, vec![entry("40000", "..", deep_dotdot)]);
    let nested_git_hooks = raw_tree(&repo, vec![entry("100755", "post-merge", hook)]);
    let nested_git = raw_tree(&repo, vec![entry("40000", "hooks", nested_git_hooks)]);
    let link = blob(&repo, targets.link_target.to_str().unwrap().as_bytes());
    let mut task_entries = vec![
        entry("40000", "..", dotdot_in_tasks),
        entry("40000", ".git", nested_git),
        entry("120000", "linked.json", link),
        entry(
            "100755",
            "exec.json",
            blob(&repo, &task_json("exec", "mode 100755")),
        ),
    ];
    // Tasks already on the branch stay (the commit adds, it does not delete).
    if let Some(t) = parent
        .as_ref()
        .and_then(|c| c.tree().ok())
        .and_then(|t| t.get_name("tasks").map(|e| e.id()))
        .and_then(|id| repo.find_tree(id).ok())
    {
        for e in t.iter() {
            let name = e.name_bytes().to_vec();
            if e.filemode() == 0o100644 && !task_entries.iter().any(|x| x.name == name) {
                task_entries.push(entry("100644", name, e.id()));
            }
        }
    }
    for (id, description) in tasks {
        task_entries.push(entry(
            "100644",
            format!("{id}.json"),
            blob(&repo, &task_json(id, description)),
        ));
    }
    let tasks_tree = raw_tree(&repo, task_entries);

    // The top: `..`, `.git/hooks/post-checkout` (executable), its case and dot aliases, an
    // absolute name, a symlink out of the clone, an executable script.
    let top_dotdot = raw_tree(&repo, vec![entry("100644", "escaped-top.txt", payload)]);
    let hooks = raw_tree(
        &repo,
        vec![
            entry("100755", "post-checkout", hook),
            entry("100755", "post-merge", hook),
        ],
    );
    let git_dir = raw_tree(
        &repo,
        vec![
            entry("40000", "hooks", hooks),
            entry(
                "100644",
                "config",
                blob(&repo, b"[core]\n\thooksPath = /tmp\n"),
            ),
        ],
    );
    let root = raw_tree(
        &repo,
        vec![
            entry("40000", "..", top_dotdot),
            entry("40000", ".git", git_dir),
            entry("40000", ".GIT", git_dir),
            entry("40000", ".git.", git_dir),
            entry("40000", "tasks", tasks_tree),
            entry("100644", targets.absolute.to_str().unwrap(), payload),
            entry("120000", "escape", link),
            entry("100755", "run.sh", hook),
        ],
    );
    let sig = Signature::now("Mallory", "mallory@example.org").unwrap();
    let tree = repo.find_tree(root).unwrap();
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    repo.commit(
        Some("refs/heads/main"),
        &sig,
        &sig,
        "hostile",
        &tree,
        &parents,
    )
    .unwrap()
}

/// Every path under `dir` (not following symlinks), relative, `.git` excluded.
fn files(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            let rel = path
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel == ".git" {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            assert!(!meta.file_type().is_symlink(), "{rel} is a symlink");
            if meta.is_dir() {
                stack.push(path);
            } else {
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    assert_eq!(meta.permissions().mode() & 0o111, 0, "{rel} is executable");
                }
                out.insert(rel);
            }
        }
    }
    out
}

/// Asserts that nothing the crafted commit holds reached the disk, except task files.
fn assert_nothing_planted(root: &Path, clone: &Path, targets: &Targets) {
    for p in [
        &targets.top,
        &targets.deep,
        &targets.absolute,
        &targets.link_target,
    ] {
        assert!(!p.exists(), "{} was written", p.display());
    }
    assert!(!targets.top.with_file_name("hook-ran").exists());
    let git_dir = clone.join(".git");
    for planted in [
        "hooks/post-checkout",
        "hooks/post-merge",
        "hooks/hooks/post-checkout",
    ] {
        assert!(
            !git_dir.join(planted).exists(),
            ".git/{planted} was written"
        );
    }
    let config = std::fs::read_to_string(git_dir.join("config")).unwrap();
    assert!(!config.contains("hooksPath"), "{config}");
    for f in files(clone) {
        let ok = f
            .strip_prefix("tasks/")
            .and_then(|n| n.strip_suffix(".json"))
            .is_some_and(TaskId::is_valid);
        assert!(ok, "{f} was written into the clone");
    }
    // The test's own directory holds only what it made.
    let top: BTreeSet<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        top,
        ["data", "remote.git", "work"]
            .into_iter()
            .map(String::from)
            .collect()
    );
    let work: BTreeSet<String> = std::fs::read_dir(root.join("work"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(work, BTreeSet::from(["clone".to_owned()]));
}

async fn sync(data: &Path, clone: &Path, remote: &Path) -> SyncReport {
    let driver = common::driver("repo", json!({"path": clone, "remote": remote}), data);
    Engine::new(
        Replica::open(data).unwrap(),
        vec![hypertask_core::Checked::new(driver)],
        SyncOptions::default(),
    )
    .sync()
    .await
    .expect("the cache syncs")
}

fn cached(data: &Path, id: &str) -> Option<Task> {
    Replica::open(data)
        .unwrap()
        .get(&TaskId::new(id).unwrap())
        .unwrap()
}

struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    remote: PathBuf,
    clone: PathBuf,
    data: PathBuf,
    targets: Targets,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_owned();
    let remote = bare(&root, "remote.git");
    let clone = root.join("work/clone");
    let data = root.join("data");
    let targets = Targets::new(&root);
    Setup {
        _tmp: tmp,
        root,
        remote,
        clone,
        data,
        targets,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_tree_plants_nothing_on_the_first_sync_of_a_fresh_clone() {
    let s = setup();
    push_hostile_commit(&s.remote, &s.targets, &[("good", "an honest task")]);
    let report = sync(&s.data, &s.clone, &s.remote).await;
    assert_nothing_planted(&s.root, &s.clone, &s.targets);
    assert!(report.is_ok(), "{report:#?}");
    // The honest tasks of that commit arrive; an executable task file is read, written plain.
    assert_eq!(
        cached(&s.data, "good").unwrap().description(),
        "an honest task"
    );
    assert_eq!(
        cached(&s.data, "exec").unwrap().description(),
        "mode 100755"
    );
    assert_eq!(
        files(&s.clone),
        BTreeSet::from(["tasks/exec.json".to_owned(), "tasks/good.json".to_owned()])
    );
    // What was not written is recorded as skipped, so plain git in the clone sees no change,
    // except for names no index can hold (left out of it) and the executable task file
    // (written plain; the next commit makes it plain in the branch too).
    for line in git(&s.clone, &["status", "--porcelain"]).lines() {
        let path = &line[3..];
        let hostile = line.starts_with("D  ")
            && (path.contains(".git")
                || path.contains(".GIT")
                || path.contains("..")
                || path.starts_with('/'));
        assert!(hostile || path == "tasks/exec.json", "{line}");
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinks_in_the_clone_are_never_written_through() {
    let s = setup();
    put_local(
        &s.data,
        &[
            Task::from_value(json!({"id": "one", "description": "1"})).unwrap(),
            Task::from_value(json!({"id": "two", "description": "2"})).unwrap(),
        ],
    );
    assert!(sync(&s.data, &s.clone, &s.remote).await.is_ok());
    let outside = s.root.join("work/outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("two.json"), "precious").unwrap();

    // Someone else pushes new states of both tasks.
    let hand = hand_clone(&s.root, &s.remote);
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    for (id, d) in [("one", "1b"), ("two", "2b")] {
        let t = Task::from_value(json!({"id": id, "description": d, "updated_at": now})).unwrap();
        std::fs::write(hand.join(format!("tasks/{id}.json")), t.to_pretty_json()).unwrap();
    }
    git(&hand, &["commit", "--quiet", "-am", "newer"]);
    git(&hand, &["push", "--quiet", "origin", "main"]);
    std::fs::remove_dir_all(&hand).unwrap();

    // A task file that is a symlink out of the clone is left alone, not written through.
    let two = s.clone.join("tasks/two.json");
    std::fs::remove_file(&two).unwrap();
    std::os::unix::fs::symlink(outside.join("two.json"), &two).unwrap();
    let _ = sync(&s.data, &s.clone, &s.remote).await;
    assert_eq!(
        std::fs::read_to_string(outside.join("two.json")).unwrap(),
        "precious"
    );
    assert!(std::fs::symlink_metadata(&two)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(cached(&s.data, "one").unwrap().description(), "1b");

    // A `tasks` directory that is a symlink out of the clone is refused as a whole.
    std::fs::remove_file(&two).unwrap();
    let tasks = s.clone.join("tasks");
    std::fs::rename(&tasks, s.root.join("work/old-tasks")).unwrap();
    std::os::unix::fs::symlink(&outside, &tasks).unwrap();
    let report = sync(&s.data, &s.clone, &s.remote).await;
    assert!(!report.is_ok(), "{report:#?}");
    let listed: BTreeSet<String> = std::fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(listed, BTreeSet::from(["two.json".to_owned()]));
    assert_eq!(
        std::fs::read_to_string(outside.join("two.json")).unwrap(),
        "precious"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_tree_plants_nothing_on_a_later_sync() {
    let s = setup();
    put_local(
        &s.data,
        &[Task::from_value(json!({"id": "mine", "description": "local"})).unwrap()],
    );
    assert!(sync(&s.data, &s.clone, &s.remote).await.is_ok());
    // The remote moves on with a hostile commit: a fast-forward for the clone.
    push_hostile_commit(&s.remote, &s.targets, &[("good", "an honest task")]);
    let report = sync(&s.data, &s.clone, &s.remote).await;
    assert_nothing_planted(&s.root, &s.clone, &s.targets);
    assert!(report.is_ok(), "{report:#?}");
    assert_eq!(
        cached(&s.data, "good").unwrap().description(),
        "an honest task"
    );

    // And once more where both sides moved: a merge of the hostile tree with a local change.
    put_local(
        &s.data,
        &[Task::from_value(json!({"id": "later", "description": "local again"})).unwrap()],
    );
    push_hostile_commit(&s.remote, &s.targets, &[("other", "another honest task")]);
    let report = sync(&s.data, &s.clone, &s.remote).await;
    assert_nothing_planted(&s.root, &s.clone, &s.targets);
    assert!(report.is_ok(), "{report:#?}");
    assert_eq!(
        cached(&s.data, "other").unwrap().description(),
        "another honest task"
    );
    // The local task reached the remote; the remote's own entries were kept, not rewritten.
    let listed = git(&s.remote, &["ls-tree", "--name-only", "main", "tasks/"]);
    assert!(listed.contains("tasks/later.json"), "{listed}");
    assert!(ref_of(&s.remote, "main").is_some());
}
