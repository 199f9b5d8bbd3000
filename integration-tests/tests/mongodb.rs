//! The real `hypertask` binary syncing through a real MongoDB-protocol server
//! (`HYPERTASK_TEST_MONGODB_URI`, started by scripts/test): two machines converging, another
//! MongoDB client reading what hypertask wrote, two `hypertask serve` processes sharing one
//! database, and a stopped server failing alone.

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hypertask_core::{Task, TaskId};
use hypertask_integration_tests::{mongodb_uri, toml_path, unique_name, Machine};
use serde_json::Value;

const DATABASE: &str = "hypertask_cli_tests";

fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn mongo_table(name: &str, uri: &str, collection: &str) -> String {
    format!(
        "[drivers.{name}]\ntype = \"mongodb\"\nuri = {}\ndatabase = {}\ncollection = {}\n",
        toml_str(uri),
        toml_str(DATABASE),
        toml_str(collection)
    )
}

/// `hypertask add WORDS…`, returning the new id.
fn add(m: &Machine, words: &[&str]) -> String {
    let mut args = vec!["add"];
    args.extend_from_slice(words);
    let id = m.ok(&args).trim().to_owned();
    assert!(TaskId::is_valid(&id), "add printed {id:?}, not a task id");
    id
}

fn by_id(m: &Machine) -> BTreeMap<String, Value> {
    m.tasks()
        .into_iter()
        .map(|t| (t["id"].as_str().expect("task id").to_owned(), t))
        .collect()
}

fn tags(t: &Value) -> Vec<&str> {
    t["tags"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// A free port on 127.0.0.1 (nobody listens on it once this returns).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A python3 with pymongo: the one scripts/test found (`HYPERTASK_TEST_PYTHON`), else `python3`.
fn pymongo_query(collection: &str, filter: &str) -> Vec<Value> {
    let python = std::env::var("HYPERTASK_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = r#"
import json, sys, pymongo
client = pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=5000)
docs = client[sys.argv[2]][sys.argv[3]].find(json.loads(sys.argv[4]))
print(json.dumps(list(docs), default=str))
"#;
    let out = Command::new(&python)
        .args(["-c", script, &mongodb_uri(), DATABASE, collection, filter])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}; run scripts/test"));
    assert!(
        out.status.success(),
        "pymongo query failed (is pymongo installed for {python}? scripts/test installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("pymongo printed JSON")
}

#[test]
fn two_machines_converge_through_mongodb_and_pymongo_finds_the_documents() {
    let uri = mongodb_uri();
    let coll = unique_name("cli_converge");
    let (a, b) = (Machine::new(), Machine::new());
    for m in [&a, &b] {
        m.write_config(&mongo_table("db", &uri, &coll));
    }
    let milk = add(&a, &["buy", "milk", "+work"]);
    let mom = add(&b, &["call", "mom", "+home"]);
    a.ok(&["sync"]);
    b.ok(&["sync"]);
    a.ok(&["sync"]);
    assert_eq!(by_id(&a), by_id(&b));
    assert_eq!(by_id(&a).len(), 2);

    // Concurrent edits of one task on both machines both survive.
    a.ok(&["modify", &mom, "+urgent"]);
    b.ok(&["done", &mom]);
    a.ok(&["sync"]);
    b.ok(&["sync"]);
    a.ok(&["sync"]);
    let (ta, tb) = (by_id(&a), by_id(&b));
    assert_eq!(ta, tb, "both machines hold the same tasks");
    assert_eq!(a.cache_files(), b.cache_files(), "byte-identical caches");
    let merged = &ta[&mom];
    assert!(tags(merged).contains(&"urgent"), "A's edit kept: {merged}");
    assert!(merged.get("done").is_some(), "B's edit kept: {merged}");

    // Another MongoDB client finds the task by a plain query, with the hash of what
    // hypertask holds.
    let found = pymongo_query(&coll, r#"{"tags": "work"}"#);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["_id"], milk.as_str());
    assert_eq!(found[0]["description"], "buy milk");
    let local = Task::from_value(ta[&milk].clone()).expect("valid task");
    assert_eq!(found[0]["hash"], local.hash().as_str());
    assert_eq!(
        pymongo_query(&coll, r#"{"tags": "urgent", "done": {"$exists": true}}"#).len(),
        1
    );
}

/// A `hypertask serve` child process, killed when dropped.
struct Server {
    child: Child,
    url: String,
    _machine: Machine,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(uri: &str, coll: &str, token: &str) -> Server {
    let machine = Machine::new();
    machine.write_config(&format!(
        "[server]\ntoken = {}\nstore = {{ type = \"mongodb\", uri = {}, database = {}, collection = {} }}\n",
        toml_str(token),
        toml_str(uri),
        toml_str(DATABASE),
        toml_str(coll)
    ));
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = machine
        .command()
        .args(["serve", "--listen", &addr])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hypertask serve");
    // Readiness, not a timing assertion: wait until it accepts connections or exits.
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(&addr).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            panic!("hypertask serve exited with {status}: {err}");
        }
        assert!(
            Instant::now() < deadline,
            "hypertask serve never listened on {addr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Server {
        child,
        url: format!("http://{addr}"),
        _machine: machine,
    }
}

fn http_client(url: &str, token: &str) -> Machine {
    let m = Machine::new();
    m.write_config(&format!(
        "[drivers.s]\ntype = \"http\"\nurl = {}\ntoken = {}\n",
        toml_str(url),
        toml_str(token)
    ));
    m
}

/// Two stateless sync servers behind one MongoDB collection, each serving one client.
/// Needs `hypertask serve` with a `[server] store` of type mongodb.
#[test]
fn two_serve_processes_sharing_one_database_converge() {
    let uri = mongodb_uri();
    let coll = unique_name("cli_serve");
    let token = "shared-secret-token";
    let (s1, s2) = (serve(&uri, &coll, token), serve(&uri, &coll, token));
    let (c1, c2) = (http_client(&s1.url, token), http_client(&s2.url, token));

    let one = add(&c1, &["via", "server", "one", "+work"]);
    let two = add(&c2, &["via", "server", "two"]);
    c1.ok(&["sync"]);
    c2.ok(&["sync"]);
    c1.ok(&["sync"]);
    assert_eq!(by_id(&c1), by_id(&c2));
    assert!(by_id(&c1).contains_key(&one) && by_id(&c1).contains_key(&two));

    // Different edits of the same tasks through different servers: none is lost.
    c1.ok(&["modify", &two, "+from1"]);
    c2.ok(&["modify", &two, "+from2"]);
    c2.ok(&["done", &one]);
    c1.ok(&["sync"]);
    c2.ok(&["sync"]);
    c1.ok(&["sync"]);
    let (t1, t2) = (by_id(&c1), by_id(&c2));
    assert_eq!(t1, t2);
    assert_eq!(c1.cache_files(), c2.cache_files());
    assert!(tags(&t1[&two]).contains(&"from1") && tags(&t1[&two]).contains(&"from2"));
    assert!(t1[&one].get("done").is_some());

    // Both servers stored into the one collection.
    let docs = pymongo_query(&coll, "{}");
    let ids: Vec<&str> = docs.iter().filter_map(|d| d["_id"].as_str()).collect();
    assert_eq!(docs.len(), 2, "{ids:?}");
}

/// The MongoDB server goes away (nothing answers on its port any more): `hypertask sync` names
/// the failing driver, fails fast thanks to the driver's short server-selection timeout, and
/// the directory driver configured next to it still syncs.
#[test]
fn a_stopped_server_fails_alone_and_is_named() {
    let uri = mongodb_uri();
    let coll = unique_name("cli_down");
    let m = Machine::new();
    let dropbox = m.dir.path().join("dropbox");
    std::fs::create_dir_all(&dropbox).unwrap();
    let config = |mongo_uri: &str| {
        format!(
            "{}\n[drivers.box]\ntype = \"fs\"\npath = {}\n",
            mongo_table("db", mongo_uri, &coll),
            toml_path(&dropbox)
        )
    };
    m.write_config(&config(&uri));
    let first = add(&m, &["before", "the", "outage"]);
    m.ok(&["sync"]);
    assert_eq!(pymongo_query(&coll, "{}").len(), 1);

    // The server is stopped: its address now refuses connections.
    let stopped = format!("mongodb://127.0.0.1:{}/", free_port());
    m.write_config(&config(&stopped));
    let listed = m.ok(&["drivers"]);
    assert!(
        listed.contains("db") && listed.contains("mongodb"),
        "{listed}"
    );

    let second = add(&m, &["during", "the", "outage"]);
    let started = Instant::now();
    let out = m.run(&["sync"]);
    eprintln!("sync with the server stopped took {:?}", started.elapsed());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failing driver fails the sync: {text}"
    );
    assert!(
        text.contains("'db'") || text.contains("db:"),
        "names the driver: {text}"
    );
    for id in [&first, &second] {
        assert!(
            dropbox.join(format!("{id}.json")).exists(),
            "the fs driver still synced {id}: {text}"
        );
    }
    assert_eq!(
        pymongo_query(&coll, "{}").len(),
        1,
        "nothing reached MongoDB"
    );
}

/// How much of each connection a [`SilentRelay`] forwards to the real server.
#[derive(Clone, Copy, PartialEq)]
enum Silence {
    /// Nothing: a server that accepts connections and never answers.
    FromTheStart,
    /// Only the first message of each connection (the handshake): a server that hangs once
    /// the driver is connected.
    AfterTheHandshake,
}

/// A TCP relay to the test server that goes silent as told, while it keeps connections open.
fn silent_relay(upstream: std::net::SocketAddr, silence: Silence) -> u16 {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(upstream) else {
                continue;
            };
            let (mut from_client, mut to_server) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut from_server, mut to_client) = (server, client);
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                let mut messages = 0;
                while let Ok(n) = from_client.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    messages += 1;
                    let forward = silence == Silence::AfterTheHandshake && messages == 1;
                    if forward && to_server.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                while let Ok(n) = from_server.read(&mut buf) {
                    if n == 0 || to_client.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// A MongoDB server that stops answering (from the start, or once the driver is connected)
/// fails that driver within its `timeout`, retryable and named; the other driver still syncs.
#[test]
fn a_server_that_never_answers_times_out_and_the_others_sync() {
    let uri = mongodb_uri();
    let addr = uri
        .trim_start_matches("mongodb://")
        .trim_end_matches('/')
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let upstream: std::net::SocketAddr = addr.parse().expect("the test server is host:port");
    for silence in [Silence::AfterTheHandshake, Silence::FromTheStart] {
        let port = silent_relay(upstream, silence);
        let shared = tempfile::tempdir().unwrap();
        let m = Machine::new();
        let relayed = format!("mongodb://127.0.0.1:{port}/?directConnection=true");
        m.write_config(&format!(
            "{}timeout = 2\nserver_selection_timeout_ms = 20000\n\n[drivers.dir]\ntype = \"fs\"\npath = {}\n",
            mongo_table("slowdb", &relayed, &unique_name("hang")),
            toml_path(shared.path())
        ));
        let id = add(&m, &["written", "while", "the", "server", "hangs"]);
        let started = Instant::now();
        let out = m.run(&["sync"]);
        let took = started.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let case = match silence {
            Silence::FromTheStart => "silent from the start",
            Silence::AfterTheHandshake => "silent after the handshake",
        };
        assert_eq!(out.status.code(), Some(1), "{case}: {stderr}");
        assert!(
            took < Duration::from_secs(60),
            "{case}: the sync took {took:?}"
        );
        assert!(
            stderr.contains("slowdb") && stderr.contains("timeout"),
            "{case}: the driver and the timeout are named: {stderr}"
        );
        assert!(
            shared.path().join(format!("{id}.json")).exists(),
            "{case}: the fs driver still synced"
        );
    }
}
