//! Helpers for tests that drive the real `hypertask` binary: machines with their own data
//! directory and config file.
#![deny(missing_docs)]

pub mod browser;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The `hypertask` binary of this workspace, built once when missing.
pub fn hypertask_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // target/<profile>/deps/<test-exe> → target/<profile>/hypertask
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>")
            .to_owned();
        let bin = profile_dir.join(format!("hypertask{}", std::env::consts::EXE_SUFFIX));
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--quiet", "-p", "hypertask", "--bin", "hypertask"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("cargo build runs");
        assert!(status.success(), "building the hypertask binary failed");
        assert!(bin.exists(), "no binary at {}", bin.display());
        bin
    })
    .clone()
}

/// One simulated machine: a data directory and a config file, in a temporary directory.
#[derive(Debug)]
pub struct Machine {
    /// Owns the temporary directory.
    pub dir: tempfile::TempDir,
}

impl Default for Machine {
    fn default() -> Self {
        Self::new()
    }
}

impl Machine {
    /// A machine with an empty data directory and no config file yet.
    pub fn new() -> Machine {
        Machine {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The config file path.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    /// Writes the config file.
    pub fn write_config(&self, toml: &str) {
        std::fs::write(self.config_path(), toml).expect("write config");
    }

    /// A command for this machine: its config (when written) and data dir, a clean
    /// environment for hypertask's own variables.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(hypertask_bin());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("HYPERTASK_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("HYPERTASK_DATA_DIR", self.data_dir());
        cmd.env("NO_COLOR", "1");
        if self.config_path().exists() {
            cmd.env("HYPERTASK_CONFIG", self.config_path());
        } else {
            // No config file at all: point at one that does not exist.
            cmd.env("HYPERTASK_CONFIG", self.dir.path().join("absent.toml"));
        }
        cmd
    }

    /// Runs `hypertask ARGS…` and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run hypertask")
    }

    /// Runs `hypertask ARGS…`, asserts success and returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "hypertask {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// `hypertask list --all --deleted --json`, parsed.
    pub fn tasks(&self) -> Vec<serde_json::Value> {
        let out = self.ok(&["list", "--all", "--deleted", "--json"]);
        serde_json::from_str(&out).expect("list --json is a JSON array")
    }

    /// `hypertask add WORDS…`: the new task's id.
    pub fn add(&self, words: &[&str]) -> String {
        let mut args = vec!["add"];
        args.extend_from_slice(words);
        self.ok(&args).trim().to_owned()
    }

    /// The stored document of task `id`.
    pub fn task(&self, id: &str) -> serde_json::Value {
        self.tasks()
            .into_iter()
            .find(|t| t["id"] == id)
            .unwrap_or_else(|| panic!("no task {id}"))
    }

    /// The ids `list ARGS… --json` prints, in order.
    pub fn listed(&self, args: &[&str]) -> Vec<String> {
        let mut all = vec!["list"];
        all.extend_from_slice(args);
        all.push("--json");
        let v: Vec<serde_json::Value> = serde_json::from_str(&self.ok(&all)).expect("JSON");
        v.iter()
            .map(|t| t["id"].as_str().expect("an id").to_owned())
            .collect()
    }

    /// Runs `hypertask ARGS…` with `input` on stdin.
    pub fn run_with_stdin(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write as _;
        let mut child = self
            .command()
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run hypertask");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("hypertask output")
    }

    /// The raw bytes of every task file in the local cache, by file name.
    pub fn cache_files(&self) -> std::collections::BTreeMap<String, Vec<u8>> {
        let dir = self.data_dir().join("tasks");
        let mut out = std::collections::BTreeMap::new();
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".json") && !name.starts_with('.') {
                    out.insert(name, std::fs::read(e.path()).expect("read task file"));
                }
            }
        }
        out
    }
}

/// A TOML string literal for a path.
pub fn toml_path(p: &Path) -> String {
    serde_json::to_string(&p.to_string_lossy()).expect("path as JSON string")
}

/// Writes `n` generated tasks (~300 bytes each) straight into a data dir's cache.
pub fn seed_tasks(data_dir: &Path, n: usize, prefix: &str) -> Vec<hypertask_core::TaskId> {
    use hypertask_core::{Replica, Task, TaskId};
    let replica = Replica::open(data_dir).expect("open cache");
    let lock = replica
        .lock(std::time::Duration::from_secs(30))
        .expect("lock cache");
    let ids: Vec<TaskId> = (0..n)
        .map(|i| TaskId::new(format!("{prefix}{i:06}")).expect("valid id"))
        .collect();
    let tasks: Vec<Task> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            Task::from_value(serde_json::json!({
                "id": id.as_str(),
                "description": format!("generated task number {i} with a few words of text"),
                "tags": ["bench", format!("t{}", i % 7)],
                "due": "2027-03-01T09:00:00.000Z",
                "x-estimate": i % 13,
                "updated_at": "2026-11-26T10:00:00.000Z",
                "created_at": "2026-11-26T10:00:00.000Z",
            }))
            .expect("generated task is valid")
        })
        .collect();
    for chunk in tasks.chunks(1000) {
        replica.put(&lock, chunk).expect("write tasks");
    }
    ids
}

/// Every `<name>.json` file in the task directory `dir` (dot-files, i.e. temporary files, are
/// skipped) that does not parse as a task: a torn or corrupt file.
pub fn torn_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            !name.starts_with('.') && name.ends_with(".json")
        })
        .map(|e| e.path())
        .filter(|p| {
            std::fs::read(p)
                .ok()
                .is_none_or(|b| hypertask_core::Task::from_json(&b).is_err())
        })
        .collect()
}

/// Records a figure for RELIABILITY.md: one JSON line in `target/reliability.jsonl`, which
/// `scripts/reliability` turns into the document's table.
pub fn record(guarantee: &str, figures: serde_json::Value) {
    use std::io::Write as _;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/reliability.jsonl");
    let line = serde_json::json!({"guarantee": guarantee, "figures": figures});
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
    println!("RELIABILITY {line}");
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The MongoDB server the tests use: `HYPERTASK_TEST_MONGODB_URI`, which `scripts/test` sets
/// after starting a MongoDB-protocol test server. Unset is a failure, never a skip.
pub fn mongodb_uri() -> String {
    match std::env::var("HYPERTASK_TEST_MONGODB_URI") {
        Ok(u) if !u.trim().is_empty() => u,
        _ => panic!(
            "HYPERTASK_TEST_MONGODB_URI is not set{}. Run scripts/test, which installs and starts \
             a MongoDB-protocol test server (SecantusDB) and sets it, or set it to a MongoDB \
             server you run.",
            if std::env::var_os("CI").is_some() {
                " in CI"
            } else {
                ""
            }
        ),
    }
}

/// A name no other test or run uses (for databases, collections, directories).
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}_{}_{nanos}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A running `hypertask serve`, killed on drop.
#[derive(Debug)]
pub struct Server {
    /// The process.
    pub child: std::process::Child,
    /// Its base URL.
    pub url: String,
    /// The token clients must send.
    pub token: String,
}

impl Server {
    /// Starts `hypertask serve` for `machine` (whose config must hold a `[server]` table with
    /// this `token`) on a free port, and waits until it accepts connections.
    pub fn start(machine: &Machine, token: &str) -> Server {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        // The request log goes to a file beside the machine's data, for post-mortems.
        let log = std::fs::File::create(machine.dir.path().join("serve.log")).expect("log file");
        let child = machine
            .command()
            .args(["serve", "--listen", &addr])
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn hypertask serve");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "hypertask serve did not start on {addr}"
            );
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        Server {
            child,
            url: format!("http://{addr}"),
            token: token.to_owned(),
        }
    }

    /// A `[drivers.NAME]` table for a client of this server.
    pub fn driver_table(&self, name: &str) -> String {
        format!(
            "[drivers.{name}]\ntype = \"http\"\nurl = \"{}\"\ntoken = \"{}\"\n",
            self.url, self.token
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates an empty bare git repository `dir/tasks.git` (branch `main`) to serve as a remote.
pub fn bare_remote(dir: &Path) -> PathBuf {
    let bare = dir.join("tasks.git");
    let status = Command::new("git")
        .args(["init", "--bare", "-q", "-b", "main"])
        .arg(&bare)
        .status()
        .expect("run git init");
    assert!(status.success(), "git init --bare {}", bare.display());
    bare
}

/// A seeded generator, so a failing seed replays exactly.
#[derive(Debug, Clone)]
pub struct Rng(rand::rngs::StdRng);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        use rand::SeedableRng;
        Rng(rand::rngs::StdRng::seed_from_u64(seed))
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        use rand::Rng as _;
        self.0.random_range(0..n)
    }
}

/// Whether this is the long reliability run (`scripts/reliability --long` sets
/// `HYPERTASK_LONG=1`): the scenarios then run at the scale RELIABILITY.md reports.
pub fn long_run() -> bool {
    std::env::var_os("HYPERTASK_LONG").is_some_and(|v| !v.is_empty() && v != "0")
}

/// `normal` in an ordinary test run, `long` in the long reliability run.
pub fn scaled(normal: usize, long: usize) -> usize {
    if long_run() {
        long
    } else {
        normal
    }
}
