//! The real `hypertask` binary on both ends of the sync protocol: `hypertask serve` over an fs
//! store, and machines whose `[drivers.server] type = "http"` syncs through it.

use std::path::Path;
use std::process::{Child, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use hypertask_integration_tests::{free_port, toml_path, Machine, Server};
use serde_json::Value;

const TOKEN: &str = "integration-token-42";

fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("a JSON string is a TOML basic string")
}

/// A machine whose `[server]` serves with `token` (if any) from an fs store in `store`.
fn server_machine(token: Option<&str>, store: &Path) -> Machine {
    let m = Machine::new();
    let token = token.map_or(String::new(), |t| format!("token = {}\n", toml_str(t)));
    m.write_config(&format!(
        "[server]\n{token}store = {{ type = \"fs\", path = {} }}\n",
        toml_path(store)
    ));
    m
}

fn client(server: &Server, token: &str) -> Machine {
    let m = Machine::new();
    m.write_config(&format!(
        "[drivers.server]\ntype = \"http\"\nurl = {}\ntoken = {}\n",
        toml_str(&server.url),
        toml_str(token)
    ));
    m
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn by_id(m: &Machine) -> std::collections::BTreeMap<String, Value> {
    m.tasks()
        .into_iter()
        .map(|t| (t["id"].as_str().expect("id").to_owned(), t))
        .collect()
}

/// Waits (bounded) for a child to exit; kills it and fails if it does not.
fn wait_exit(child: &mut Child, what: &str) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: the process did not exit");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn two_machines_converge_through_hypertask_serve() {
    let store = tempfile::tempdir().unwrap();
    let host = server_machine(Some(TOKEN), store.path());
    let server = Server::start(&host, TOKEN);
    let (a, b) = (client(&server, TOKEN), client(&server, TOKEN));

    let id = a.ok(&["add", "buy", "milk", "+home"]).trim().to_owned();
    let other = b.ok(&["add", "call", "the", "plumber"]).trim().to_owned();
    a.ok(&["sync"]);
    b.ok(&["sync"]);
    a.ok(&["sync"]);
    assert_eq!(by_id(&a), by_id(&b));
    assert_eq!(by_id(&a).len(), 2);

    // Concurrent edits to different fields of one task, neither machine synced in between.
    a.ok(&["modify", &id, "buy", "oat", "milk"]);
    b.ok(&["modify", &id, "+urgent", "due:2030-01-01"]);
    b.ok(&["done", &other]);
    a.ok(&["sync"]);
    b.ok(&["sync"]);
    a.ok(&["sync"]);

    let (ta, tb) = (by_id(&a), by_id(&b));
    assert_eq!(ta, tb, "both machines hold the same documents");
    let t = &ta[&id];
    assert_eq!(t["description"], "buy oat milk");
    assert_eq!(t["tags"], serde_json::json!(["home", "urgent"]));
    assert!(t["due"].as_str().unwrap().starts_with("20"), "{t}");
    assert!(ta[&other].get("done").is_some(), "{}", ta[&other]);

    // The server stored exactly those documents in its fs store.
    let stored = std::fs::read(store.path().join(format!("{id}.json"))).expect("stored task");
    let stored: Value = serde_json::from_slice(&stored).unwrap();
    assert_eq!(&stored, t);

    // Nothing left to do.
    a.ok(&["sync"]);
    assert_eq!(by_id(&a), ta);
}

#[test]
fn a_wrong_token_fails_the_sync_naming_the_driver() {
    let store = tempfile::tempdir().unwrap();
    let host = server_machine(Some(TOKEN), store.path());
    let server = Server::start(&host, TOKEN);
    let intruder = client(&server, "not-the-token");
    intruder.ok(&["add", "should", "not", "arrive"]);
    let out = intruder.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("driver 'server'"), "{said}");
    assert!(
        !said.contains("not-the-token"),
        "the token is never printed: {said}"
    );
    let stored: Vec<_> = std::fs::read_dir(store.path())
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        stored
            .iter()
            .all(|n| !n.to_string_lossy().ends_with(".json")),
        "nothing stored: {stored:?}"
    );
}

#[test]
fn serve_without_a_token_refuses_to_start() {
    let store = tempfile::tempdir().unwrap();
    let host = server_machine(None, store.path());
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = host
        .command()
        .args(["serve", "--listen", &addr])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hypertask serve");
    let status = wait_exit(&mut child, "serve without a token");
    let out = child.wait_with_output().unwrap();
    assert!(!status.success(), "it must refuse: {}", text(&out));
    assert!(text(&out).contains("token"), "{}", text(&out));
}

#[cfg(unix)]
#[test]
fn serve_stops_gracefully_on_sigterm() {
    let store = tempfile::tempdir().unwrap();
    let host = server_machine(Some(TOKEN), store.path());
    let mut server = Server::start(&host, TOKEN);
    let a = client(&server, TOKEN);
    a.ok(&["add", "before", "shutdown"]);
    a.ok(&["sync"]);
    let pid = server.child.id().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(kill.success());
    let status = wait_exit(&mut server.child, "serve after SIGTERM");
    assert!(
        status.success(),
        "a graceful shutdown exits 0, got {status}"
    );
}

/// Starts `hypertask serve` for `host` with `stderr`; waits until it accepts connections.
fn serve_with_stderr(host: &Machine, stderr: Stdio) -> (Child, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let child = host
        .command()
        .args(["serve", "--listen", &addr])
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn hypertask serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "serve did not start on {addr}");
        std::thread::sleep(Duration::from_millis(25));
    }
    (child, format!("http://{addr}"))
}

/// `serve` whose stderr is a closed pipe or a full disk starts, logs nothing it cannot write,
/// and keeps answering: clients sync through it.
#[test]
fn serve_keeps_answering_when_stderr_is_closed_or_full() {
    let store = tempfile::tempdir().unwrap();
    let host = server_machine(Some(TOKEN), store.path());
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    // A pipe whose read end is closed before serve starts: every write fails.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    for (what, stderr) in [("closed", Stdio::from(writer)), ("full", Stdio::from(full))] {
        let (child, url) = serve_with_stderr(&host, stderr);
        let server = Server {
            child,
            url,
            token: TOKEN.to_owned(),
        };
        let a = client(&server, TOKEN);
        a.ok(&["add", "logged", "nowhere", what]);
        for _ in 0..3 {
            let out = a.ok(&["sync"]);
            assert!(!out.contains("failed"), "{what}: {out}");
        }
        let mut server = server;
        assert!(
            server.child.try_wait().unwrap().is_none(),
            "{what}: serve exited"
        );
    }
}

/// The request log written to a file carries no colour codes.
#[test]
fn the_log_in_a_file_has_no_colour() {
    let store = tempfile::tempdir().unwrap();
    let host = server_machine(Some(TOKEN), store.path());
    let server = Server::start(&host, TOKEN);
    let a = client(&server, TOKEN);
    a.ok(&["add", "colourless"]);
    a.ok(&["sync"]);
    drop(server);
    let log = std::fs::read_to_string(host.dir.path().join("serve.log")).unwrap();
    assert!(log.contains("request"), "{log}");
    assert!(!log.contains('\u{1b}'), "{log}");
}
