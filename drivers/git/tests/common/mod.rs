//! Shared helpers: temporary bare remotes, clones built through the registry, the `git`
//! command for "by hand" steps, and the local cache and sync engine as `hypertask` drives them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use hypertask_core::{
    Checked, Driver, DriverSpec, Engine, Inventory, Listing, Registry, Replica, Store, SyncOptions,
    SyncReport, Task, TaskId, DEFAULT_LOCK_TIMEOUT,
};
use hypertask_driver_git::{GitConfig, GitStore};
use serde_json::json;

/// Runs `git ARGS…` in `dir` with a fixed identity; asserts success and returns stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Hand Editor",
            "-c",
            "user.email=hand@example.org",
        ])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "advice.detachedHead=false",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} in {} failed:\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// A fresh, empty bare repository at `dir/name`.
pub fn bare(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(&path).unwrap();
    git(&path, &["init", "--bare", "--quiet"]);
    path
}

/// The commit `refs/heads/main` of a repository points at, if any.
pub fn ref_of(repo: &Path, refname: &str) -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--verify", "--quiet", refname])
        .current_dir(repo)
        .output()
        .expect("git runs");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A git driver instance built through the registry, as the CLI builds it.
pub fn driver(name: &str, options: serde_json::Value, data_dir: &Path) -> Arc<dyn Driver> {
    let mut registry = Registry::new();
    hypertask_driver_git::register(&mut registry);
    Arc::new(
        registry
            .build(&DriverSpec::new(name, "git", options, data_dir))
            .expect("git driver builds"),
    )
}

/// A clone at `dir/<name>` of `remote`.
pub fn client(dir: &Path, name: &str, remote: &Path) -> Arc<dyn Driver> {
    driver(
        name,
        serde_json::json!({"path": dir.join(name), "remote": remote}),
        dir,
    )
}

/// Temporary directories kept alive as long as the harness.
#[derive(Default)]
pub struct Dirs(Mutex<Vec<tempfile::TempDir>>);

impl Dirs {
    pub fn fresh(&self) -> PathBuf {
        let d = tempfile::tempdir().expect("temp dir");
        let p = d.path().to_owned();
        self.0.lock().unwrap().push(d);
        p
    }
}

/// A `git daemon` serving `base` over `git://127.0.0.1:PORT/`, pushes enabled; stopped on drop.
pub struct Daemon {
    child: std::process::Child,
    pub port: u16,
}

impl Daemon {
    pub fn start(base: &Path) -> Daemon {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        // The daemon program itself, not `git daemon`: that runs it as a child of its own,
        // which killing `git` would leave running.
        let exec_path = Command::new("git")
            .arg("--exec-path")
            .output()
            .expect("git runs");
        let exec_path = String::from_utf8(exec_path.stdout).expect("a path");
        let child = Command::new(Path::new(exec_path.trim()).join("git-daemon"))
            .arg("--reuseaddr")
            .arg("--export-all")
            .arg("--enable=receive-pack")
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("git daemon starts");
        let daemon = Daemon { child, port };
        // Readiness: wait until it accepts connections (bounded).
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return daemon;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("git daemon did not start listening on port {port}");
    }

    pub fn url(&self, repo: &str) -> String {
        format!("git://127.0.0.1:{}/{repo}", self.port)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One remote for the conformance suite: each client is a clone of its own, and raw entries
/// are planted by a hand clone that commits and pushes them.
pub struct RemoteUpstream {
    pub dir: PathBuf,
    pub url: String,
    clients: std::sync::atomic::AtomicUsize,
}

impl RemoteUpstream {
    pub fn new(dir: PathBuf, url: String) -> RemoteUpstream {
        RemoteUpstream {
            dir,
            url,
            clients: Default::default(),
        }
    }

    fn next_name(&self) -> String {
        let n = self
            .clients
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        format!("client{n}")
    }
}

#[hypertask_core::async_trait]
impl hypertask_core::conformance::Upstream for RemoteUpstream {
    async fn client(&self) -> Arc<dyn Driver> {
        let name = self.next_name();
        let opts = serde_json::json!({"path": self.dir.join(&name), "remote": self.url});
        driver(&name, opts, &self.dir)
    }

    async fn store(&self) -> Option<Arc<dyn hypertask_core::Store>> {
        let name = self.next_name();
        let config: hypertask_driver_git::GitConfig = serde_json::from_value(
            serde_json::json!({"path": self.dir.join(&name), "remote": self.url}),
        )
        .unwrap();
        Some(Arc::new(
            hypertask_driver_git::GitStore::new(&name, &config, &self.dir).unwrap(),
        ))
    }

    async fn plant(&self, id: &hypertask_core::TaskId, raw: &[u8]) -> bool {
        let hand = self.dir.join(self.next_name());
        git(
            &self.dir,
            &["clone", "--quiet", &self.url, hand.to_str().unwrap()],
        );
        std::fs::create_dir_all(hand.join("tasks")).unwrap();
        std::fs::write(hand.join(format!("tasks/{id}.json")), raw).unwrap();
        git(&hand, &["add", "-A"]);
        git(&hand, &["commit", "--quiet", "-m", "plant a raw entry"]);
        git(&hand, &["push", "--quiet", "origin", "HEAD:main"]);
        true
    }
}

/// Task `id` with the fields of `v`.
pub fn task(id: &str, v: serde_json::Value) -> Task {
    let mut doc = v;
    doc["id"] = json!(id);
    Task::from_value(doc).expect("valid task")
}

/// A task id known to be valid.
pub fn tid(s: &str) -> TaskId {
    TaskId::new(s).unwrap()
}

/// Writes tasks into the local cache of data dir `data`, as `hypertask add/modify` would.
pub fn put_local(data: &Path, tasks: &[Task]) {
    let replica = Replica::open(data).unwrap();
    let lock = replica.lock(DEFAULT_LOCK_TIMEOUT).unwrap();
    replica.put(&lock, tasks).unwrap();
}

/// Task `id` in the local cache of data dir `data`.
pub fn local(data: &Path, id: &str) -> Option<Task> {
    Replica::open(data).unwrap().get(&tid(id)).unwrap()
}

/// One `hypertask sync` of data dir `data` with `driver`.
pub async fn sync(data: &Path, driver: Arc<dyn Driver>) -> SyncReport {
    let replica = Replica::open(data).unwrap();
    Engine::new(replica, vec![Checked::new(driver)], SyncOptions::default())
        .sync()
        .await
        .expect("the cache syncs")
}

/// [`sync`], which must succeed for every driver.
pub async fn sync_ok(data: &Path, driver: Arc<dyn Driver>) -> SyncReport {
    let report = sync(data, driver).await;
    assert!(report.is_ok(), "sync failed: {report:#?}");
    report
}

/// How many tasks a sync pulled, pushed or merged.
pub fn changes(r: &SyncReport) -> usize {
    r.drivers
        .iter()
        .map(|d| d.pulled + d.pushed + d.merged)
        .sum()
}

/// The driver's full listing (never `Unchanged`).
pub async fn listing(d: &dyn Driver) -> Inventory {
    match d.hashes(None).await.expect("hashes") {
        Listing::Changed(inv) => inv,
        Listing::Unchanged => panic!("hashes(None) lists"),
    }
}

/// The task file at `rev` in a repository, parsed (so it holds no conflict markers).
pub fn task_at(repo: &Path, rev: &str, id: &str) -> Task {
    let bytes = git(repo, &["show", &format!("{rev}:tasks/{id}.json")]);
    Task::from_json(bytes.as_bytes()).expect("the committed file is a valid task")
}

/// How many commits `rev` has in `repo`.
pub fn commit_count(repo: &Path, rev: &str) -> usize {
    git(repo, &["rev-list", "--count", rev])
        .trim()
        .parse()
        .unwrap()
}

/// A clone of `remote` at `dir/hand`, made with plain git, for edits "by hand".
pub fn hand_clone(dir: &Path, remote: &Path) -> PathBuf {
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
    hand
}

/// Task `id` as `store` reads it; it must be stored there.
pub async fn stored(store: &GitStore, id: &TaskId) -> Task {
    store
        .get(std::slice::from_ref(id))
        .await
        .unwrap()
        .remove(id)
        .expect("an answer for the id asked")
        .unwrap()
        .expect("the task is stored")
        .task
}

/// A git store with its clone at `dir/<name>` of `remote`, built directly (not through the
/// registry) to call the `Store` operations one by one.
pub fn store(dir: &Path, name: &str, remote: &Path) -> GitStore {
    let config: GitConfig = serde_json::from_value(json!({
        "path": dir.join(name), "remote": remote
    }))
    .unwrap();
    GitStore::new(name, &config, dir).unwrap()
}
