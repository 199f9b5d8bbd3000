//! Races: concurrent processes on one data dir, edits during a sync, replicas pushing to one
//! git remote at once, many clients on one server. Nothing is lost, nothing torn. Every figure
//! recorded is counted.

use std::process::{Child, Stdio};

use hypertask_integration_tests::{record, seed_tasks, toml_path, torn_files, Machine};

fn spawn(m: &Machine, args: &[&str]) -> Child {
    m.command()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hypertask")
}

fn finish(child: Child, what: &str) {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn fs_config(dir: &std::path::Path) -> String {
    format!(
        "[drivers.shared]\ntype = \"fs\"\npath = {}\n",
        toml_path(dir)
    )
}

fn count_json(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.ends_with(".json") && !n.starts_with('.')
        })
        .count()
}

#[test]
fn concurrent_syncs_and_adds_on_one_data_dir() {
    let shared = tempfile::tempdir().unwrap();
    let m = Machine::new();
    m.write_config(&fs_config(shared.path()));
    seed_tasks(&m.data_dir(), 2000, "race");
    let syncs: Vec<Child> = (0..4).map(|_| spawn(&m, &["sync"])).collect();
    let adds: Vec<Child> = (0..10)
        .map(|i| spawn(&m, &["add", &format!("added during sync {i}"), "+race"]))
        .collect();
    for c in syncs {
        finish(c, "concurrent sync");
    }
    for c in adds {
        finish(c, "add during sync");
    }
    m.ok(&["sync"]);
    let expected = 2010;
    let (cached, shared_n) = (m.cache_files().len(), count_json(shared.path()));
    let torn = torn_files(&m.data_dir().join("tasks")).len() + torn_files(shared.path()).len();
    let lost = expected - cached.min(shared_n).min(expected);
    record(
        "races-one-data-dir",
        serde_json::json!({
            "concurrent_syncs": 4, "adds_during_sync": 10, "tasks_expected": expected,
            "tasks_in_cache": cached, "tasks_in_directory": shared_n, "lost": lost, "torn_files": torn,
        }),
    );
    assert_eq!(cached, expected);
    assert_eq!(
        shared_n, expected,
        "every task, old and added, reached the directory"
    );
    assert_eq!(torn, 0);
}

#[test]
fn two_replicas_push_to_one_git_remote_at_once() {
    let remote = tempfile::tempdir().unwrap();
    let bare = hypertask_integration_tests::bare_remote(remote.path());
    let machines: Vec<Machine> = (0..3).map(|_| Machine::new()).collect();
    for (i, m) in machines.iter().enumerate() {
        m.write_config(&format!(
            "[drivers.repo]\ntype = \"git\"\npath = {}\nremote = {}\n",
            toml_path(&m.dir.path().join("clone")),
            toml_path(&bare)
        ));
        seed_tasks(&m.data_dir(), 200, &format!("g{i}x"));
    }
    let children: Vec<Child> = machines.iter().map(|m| spawn(m, &["sync"])).collect();
    for c in children {
        finish(c, "simultaneous git sync");
    }
    for m in machines.iter().chain(machines.iter()) {
        m.ok(&["sync"]);
    }
    let expected = 600;
    let first = machines[0].cache_files();
    let lost = expected - first.len().min(expected);
    let differing = machines.iter().filter(|m| m.cache_files() != first).count();
    record(
        "races-git-remote",
        serde_json::json!({
            "replicas_pushing_at_once": machines.len(), "tasks_expected": expected,
            "lost": lost, "replicas_differing": differing,
        }),
    );
    assert_eq!((lost, differing), (0, 0));
}

#[test]
fn many_clients_on_one_server() {
    use hypertask_integration_tests::Server;
    let store = tempfile::tempdir().unwrap();
    let server_machine = Machine::new();
    server_machine.write_config(&format!(
        "[server]\ntoken = \"many\"\nstore = {{ type = \"fs\", path = {}, create = true }}\n",
        toml_path(&store.path().join("store"))
    ));
    let server = Server::start(&server_machine, "many");
    let clients: Vec<Machine> = (0..8).map(|_| Machine::new()).collect();
    for (i, m) in clients.iter().enumerate() {
        m.write_config(&server.driver_table("server"));
        seed_tasks(&m.data_dir(), 100, &format!("c{i}x"));
        // Everyone also edits one shared task, each adding its own tag.
        m.ok(&["sync"]);
    }
    let shared = clients[0].ok(&["add", "shared by all"]).trim().to_owned();
    clients[0].ok(&["sync"]);
    for m in &clients {
        m.ok(&["sync"]);
    }
    for (i, m) in clients.iter().enumerate() {
        m.ok(&["modify", &shared, &format!("+client{i}")]);
    }
    let children: Vec<Child> = clients.iter().map(|m| spawn(m, &["sync"])).collect();
    for c in children {
        finish(c, "concurrent client sync");
    }
    for m in &clients {
        m.ok(&["sync"]);
    }
    let expected = 801;
    let first = clients[0].cache_files();
    let lost = expected - first.len().min(expected);
    let differing = clients.iter().filter(|m| m.cache_files() != first).count();
    let doc: serde_json::Value = serde_json::from_slice(&first[&format!("{shared}.json")]).unwrap();
    let tags_kept = doc["tags"].as_array().map_or(0, Vec::len);
    record(
        "races-one-server",
        serde_json::json!({
            "clients": clients.len(), "tasks_expected": expected, "lost": lost,
            "replicas_differing": differing, "concurrent_edits_of_one_task": clients.len(),
            "concurrent_edits_kept": tags_kept,
        }),
    );
    assert_eq!((lost, differing), (0, 0));
    assert_eq!(
        tags_kept,
        clients.len(),
        "every client's tag survived: {doc}"
    );
}
