//! `hypertask driver-test NAME` through the real binary: it passes for every built-in kind, the
//! Python example and a Rust driver served as a program (both levels); it fails, naming the
//! failing cases, for programs with a fault; it refuses an upstream that holds tasks. And
//! syncs through store-level programs whose answers come in reverse order, or that take small
//! batches only, converge.
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use hypertask_core::conformance::CASES;
use hypertask_integration_tests::{
    bare_remote, mongodb_uri, toml_path, unique_name, Machine, Server,
};

fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("a JSON string is a TOML basic string")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The real interpreter behind `python3` (a version-manager shim costs a shell per start).
fn python() -> &'static str {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let out = std::process::Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3 runs (the Python driver example needs it)");
        assert!(out.status.success(), "python3 -c failed");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    })
}

/// A directory for `PATH` holding the external programs of a test.
struct Bin(tempfile::TempDir);

impl Bin {
    fn new() -> Bin {
        Bin(tempfile::tempdir().unwrap())
    }

    /// Installs `hypertask-driver-KIND` as a shell script running `command`.
    fn script(&self, kind: &str, command: &str) {
        let path = self.0.path().join(format!("hypertask-driver-{kind}"));
        std::fs::write(&path, format!("#!/bin/sh\n{command}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// The Python example as `hypertask-driver-KIND`, or one of its faulty variants.
    fn python(&self, kind: &str, mode: Option<&str>) {
        let example = repo().join("examples/driver-python");
        let command = match mode {
            None => format!("exec {} {}", python(), example.join("pystore.py").display()),
            Some(mode) => format!(
                "PYTHONPATH={} exec {} {} {mode}",
                example.display(),
                python(),
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/programs/faulty.py")
                    .display()
            ),
        };
        self.script(kind, &command);
    }

    /// A machine whose `hypertask` finds the programs of this directory on `PATH`.
    fn run(&self, m: &Machine, args: &[&str]) -> Output {
        let path = std::env::join_paths(std::iter::once(self.0.path().to_owned()).chain(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
        ))
        .unwrap();
        m.command()
            .env("PATH", path)
            .args(args)
            .output()
            .expect("run hypertask")
    }
}

/// A machine with the single driver table `table` (named `under_test`).
fn machine(table: &str) -> Machine {
    let m = Machine::new();
    m.write_config(&format!("[drivers.under_test]\n{table}"));
    m
}

/// Runs driver-test and asserts it passed, with one line per case.
fn passes(bin: &Bin, m: &Machine) -> String {
    let out = bin.run(m, &["driver-test", "under_test"]);
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "driver-test failed with {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status.code()
    );
    let lines: Vec<&str> = stdout.lines().collect();
    for (case, line) in CASES.iter().zip(&lines) {
        assert!(
            *line == format!("{case}: ok") || line.starts_with(&format!("{case}: skipped: ")),
            "{line}\n{stdout}"
        );
    }
    assert!(lines[CASES.len()].contains("0 failed"), "{stdout}");
    stdout
}

/// Runs driver-test and asserts it failed (exit 1), naming each case of `failing`.
fn fails(bin: &Bin, m: &Machine, failing: &[&str]) -> (String, String) {
    let out = bin.run(m, &["driver-test", "under_test"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let summary = stderr
        .lines()
        .find(|l| l.contains("conformance cases:"))
        .unwrap_or_else(|| panic!("no summary of the failed cases:\n{stderr}"));
    for case in failing {
        assert!(
            stdout.contains(&format!("{case}: FAILED: ")),
            "{case} not reported failed:\n{stdout}"
        );
        assert!(summary.contains(case), "{case} not named: {summary}");
    }
    (stdout, stderr)
}

#[test]
fn passes_for_the_fs_driver() {
    let dir = tempfile::tempdir().unwrap();
    let m = machine(&format!(
        "type = \"fs\"\npath = {}\ncreate = true\n",
        toml_path(&dir.path().join("box"))
    ));
    passes(&Bin::new(), &m);
}

#[test]
fn passes_for_the_git_driver_with_a_local_bare_remote() {
    let dir = tempfile::tempdir().unwrap();
    let remote = bare_remote(dir.path());
    let m = machine(&format!(
        "type = \"git\"\npath = {}\nremote = {}\n",
        toml_path(&dir.path().join("clone")),
        toml_path(&remote)
    ));
    passes(&Bin::new(), &m);
}

#[test]
fn passes_for_the_http_driver_against_hypertask_serve() {
    let store = tempfile::tempdir().unwrap();
    let host = Machine::new();
    host.write_config(&format!(
        "[server]\ntoken = \"driver-test-token\"\nstore = {{ type = \"fs\", path = {} }}\n",
        toml_path(store.path())
    ));
    let server = Server::start(&host, "driver-test-token");
    let m = machine(&format!(
        "type = \"http\"\nurl = {}\ntoken = \"driver-test-token\"\n",
        toml_str(&server.url)
    ));
    passes(&Bin::new(), &m);
}

#[test]
fn passes_for_the_mongodb_driver() {
    let m = machine(&format!(
        "type = \"mongodb\"\nuri = {}\ndatabase = \"hypertask_driver_test\"\ncollection = {}\n",
        toml_str(&mongodb_uri()),
        toml_str(&unique_name("driver_test"))
    ));
    passes(&Bin::new(), &m);
}

#[test]
fn passes_for_the_python_example_with_its_store_level_cases() {
    let bin = Bin::new();
    bin.python("pystore", None);
    let dir = tempfile::tempdir().unwrap();
    let m = machine(&format!(
        "type = \"pystore\"\npath = {}\n",
        toml_path(&dir.path().join("tasks"))
    ));
    let stdout = passes(&bin, &m);
    for case in CASES.iter().filter(|c| c.starts_with("store_")) {
        assert!(stdout.contains(&format!("{case}: ok")), "{stdout}");
    }
}

#[test]
fn passes_for_a_rust_store_and_a_rust_driver_served_as_programs() {
    for level in ["store", "driver"] {
        let bin = Bin::new();
        bin.script(
            "rustfs",
            &format!("exec {}", env!("CARGO_BIN_EXE_hypertask-test-program")),
        );
        let dir = tempfile::tempdir().unwrap();
        let m = machine(&format!(
            "type = \"rustfs\"\npath = {}\ncreate = true\nlevel = \"{level}\"\n",
            toml_path(&dir.path().join("tasks"))
        ));
        let stdout = passes(&bin, &m);
        let store_cases = stdout.contains("store_put_is_compare_and_swap: ok");
        assert_eq!(store_cases, level == "store", "{level}:\n{stdout}");
    }
}

#[test]
fn refuses_an_upstream_that_holds_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let tasks = dir.path().join("box");
    let m = machine(&format!(
        "type = \"fs\"\npath = {}\ncreate = true\n",
        toml_path(&tasks)
    ));
    m.ok(&["add", "a", "real", "task"]);
    m.ok(&["sync"]);
    let before: Vec<_> = std::fs::read_dir(&tasks)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    let out = Bin::new().run(&m, &["driver-test", "under_test"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.is_empty(), "no case ran: {stdout}");
    assert!(
        stderr.contains("driver 'under_test' already holds 1 tasks")
            && stderr.contains("runs only against an empty upstream"),
        "{stderr}"
    );
    let after: Vec<_> = std::fs::read_dir(&tasks)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(before, after, "the upstream was touched");
}

fn faulty_machine(bin: &Bin, mode: &str, timeout: Option<&str>) -> (Machine, tempfile::TempDir) {
    bin.python("faulty", Some(mode));
    let dir = tempfile::tempdir().unwrap();
    let timeout = timeout.map_or(String::new(), |t| format!("timeout = {t}\n"));
    let m = machine(&format!(
        "type = \"faulty\"\npath = {}\n{timeout}",
        toml_path(&dir.path().join("tasks"))
    ));
    (m, dir)
}

#[test]
fn fails_for_a_program_that_ignores_the_expected_version() {
    let bin = Bin::new();
    let (m, _dir) = faulty_machine(&bin, "ignores-expected", None);
    let (stdout, _) = fails(&bin, &m, &["store_put_is_compare_and_swap"]);
    assert!(
        stdout.contains("`expected: None` must only create"),
        "{stdout}"
    );
}

#[test]
fn fails_for_a_program_that_files_tasks_under_the_wrong_id() {
    let bin = Bin::new();
    let (m, _dir) = faulty_machine(&bin, "wrong-ids", None);
    let (stdout, _) = fails(
        &bin,
        &m,
        &[
            "answers_are_keyed_by_id",
            "store_get_answers_every_id_in_any_order",
        ],
    );
    assert!(stdout.contains("the store answered with task"), "{stdout}");
}

// The timeouts below leave the program ample time to start on a loaded machine: only the
// request it never answers waits for them.

#[test]
fn fails_for_a_program_that_stops_answering_within_its_timeout() {
    let bin = Bin::new();
    // Generous: every other case (a 1,000-task batch through Python included) must answer
    // within it on a loaded two-core machine; only the check waits for all of it.
    let (m, _dir) = faulty_machine(&bin, "silent", Some("30"));
    let (stdout, _) = fails(&bin, &m, &["finish_and_check_succeed"]);
    let failed = stdout.lines().filter(|l| l.contains(": FAILED: ")).count();
    assert_eq!(
        failed, 1,
        "only the case that asks for a check fails:\n{stdout}"
    );
    assert!(
        stdout.contains("did not answer check within 30 s"),
        "{stdout}"
    );
    assert!(
        stdout.contains("stuck in a loop"),
        "the program's stderr: {stdout}"
    );
}

#[test]
fn a_program_that_never_answers_is_one_clear_error() {
    let bin = Bin::new();
    let (m, _dir) = faulty_machine(&bin, "mute", Some("5"));
    let out = bin.run(&m, &["driver-test", "under_test"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("cannot tell whether driver 'under_test' is empty")
            && stderr.contains("did not answer the handshake (hello) within 5 s")
            && stderr.contains("not listening"),
        "{stderr}"
    );
}

/// Tasks by id, from `list --json`.
fn tasks(m: &Machine) -> std::collections::BTreeMap<String, serde_json::Value> {
    m.tasks()
        .into_iter()
        .map(|t| (t["id"].as_str().unwrap().to_owned(), t))
        .collect()
}

#[test]
fn a_sync_through_a_program_answering_in_reverse_order_converges() {
    let bin = Bin::new();
    bin.python("reversed", Some("reversed"));
    let shared = tempfile::tempdir().unwrap();
    let table = format!("type = \"reversed\"\npath = {}\n", toml_path(shared.path()));
    let (a, b) = (machine(&table), machine(&table));
    for i in 0..4 {
        a.ok(&["add", "from", "a", &i.to_string()]);
        b.ok(&["add", "from", "b", &i.to_string()]);
    }
    for m in [&a, &b, &a] {
        let out = bin.run(m, &["sync"]);
        assert!(out.status.success(), "{:?}", text(&out));
    }
    let on_a = tasks(&a);
    assert_eq!(on_a.len(), 8);
    assert_eq!(on_a, tasks(&b));
    let id = on_a.keys().next().unwrap().clone();
    b.ok(&["modify", &id, "+edited"]);
    for m in [&b, &a] {
        assert!(bin.run(m, &["sync"]).status.success());
    }
    assert_eq!(tasks(&a), tasks(&b));
    assert!(tasks(&a)[&id]["tags"].to_string().contains("edited"));
    let again = bin.run(&a, &["sync"]);
    assert!(text(&again).0.contains("up to date"), "{:?}", text(&again));
}

#[test]
fn a_sync_never_sends_more_than_the_declared_max_batch() {
    let bin = Bin::new();
    bin.python("small", Some("small-batches"));
    let shared = tempfile::tempdir().unwrap();
    let table = format!("type = \"small\"\npath = {}\n", toml_path(shared.path()));
    let (a, b) = (machine(&table), machine(&table));
    for i in 0..10 {
        a.ok(&["add", "task", &i.to_string()]);
    }
    for m in [&a, &b] {
        let out = bin.run(m, &["sync"]);
        assert!(out.status.success(), "{:?}", text(&out));
    }
    assert_eq!(tasks(&b).len(), 10);
    assert_eq!(tasks(&a), tasks(&b));
}
