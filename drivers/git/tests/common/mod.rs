//! Shared helpers: temporary bare remotes, clones built through the registry, and the `git`
//! command for "by hand" steps.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use hypertask_core::{Driver, DriverSpec, Registry};

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
        let child = Command::new("git")
            .arg("daemon")
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
