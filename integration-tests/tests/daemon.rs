//! `hypertask daemon` and `hypertask status` with the real binary: two machines, each running
//! a daemon, share an fs directory and a `hypertask serve`; edits on one appear in the other's
//! cache without anyone running `sync`.

use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use hypertask_integration_tests::{free_port, scaled, toml_path, Machine, Server};
use serde_json::Value;

const TOKEN: &str = "daemon-test-token";

/// A generous bound for anything the daemons do: the real figures are in BENCHMARKS.md.
const DEADLINE: Duration = Duration::from_secs(60);

/// Starts `hypertask serve` for `host` on `port` and waits until it accepts connections.
fn serve(host: &Machine, port: u16) -> Server {
    let addr = format!("127.0.0.1:{port}");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(host.dir.path().join("serve.log"))
        .expect("log file");
    let child = host
        .command()
        .args(["serve", "--listen", &addr])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn hypertask serve");
    let deadline = Instant::now() + DEADLINE;
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "hypertask serve did not start");
        std::thread::sleep(Duration::from_millis(25));
    }
    Server {
        child,
        url: format!("http://{addr}"),
        token: TOKEN.into(),
    }
}

/// A `poll_interval` far beyond [`DEADLINE`]: a change that arrives in time through the server
/// was delivered by its long poll (or by a retry after a failure), never by polling.
const NO_POLL: u64 = 3600;

/// A machine syncing with the fs directory `shared` (watched) and the server at `url` (its
/// long poll; not polled within the test).
fn machine(shared: &Path, url: &str) -> Machine {
    let m = Machine::new();
    m.write_config(&format!(
        "[drivers.box]\ntype = \"fs\"\npath = {}\npoll_interval = {NO_POLL}\n\n\
         [drivers.web]\ntype = \"http\"\nurl = \"{url}\"\ntoken = \"{TOKEN}\"\n\
         poll_interval = {NO_POLL}\n",
        toml_path(shared)
    ));
    m
}

/// A machine syncing with the server at `url` only, through its long poll.
fn web_only(url: &str) -> Machine {
    let m = Machine::new();
    m.write_config(&format!(
        "[drivers.web]\ntype = \"http\"\nurl = \"{url}\"\ntoken = \"{TOKEN}\"\n\
         poll_interval = {NO_POLL}\n"
    ));
    m
}

/// A running daemon, killed on drop unless it was stopped.
struct Daemon {
    child: Child,
}

impl Daemon {
    fn start(m: &Machine) -> Daemon {
        let log = std::fs::File::create(m.dir.path().join("daemon.log")).expect("log file");
        let child = m
            .command()
            .arg("daemon")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn hypertask daemon");
        Daemon { child }
    }

    /// Sends SIGTERM and waits for the exit.
    fn terminate(mut self) -> ExitStatus {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        wait_exit(&mut self.child)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (bounded) for a child to exit.
fn wait_exit(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "the process did not exit");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Polls `check` until it holds, failing with `what` and the daemons' logs after
/// [`DEADLINE`].
fn eventually(what: &str, logs: &[&Machine], mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    let deadline = started + DEADLINE;
    while !check() {
        if Instant::now() > deadline {
            let mut text = String::new();
            for m in logs {
                let log = std::fs::read_to_string(m.dir.path().join("daemon.log"));
                text.push_str(&format!(
                    "--- {}\n{}\n",
                    m.dir.path().display(),
                    log.unwrap_or_default()
                ));
            }
            panic!("{what}: not within {DEADLINE:?}\n{text}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("{what}: {:?}", started.elapsed());
}

fn status(m: &Machine) -> Value {
    serde_json::from_str(&m.ok(&["status", "--json"])).expect("status --json is JSON")
}

/// Reads task `id` from `m`'s cache file directly: the daemon's work, no command involved.
fn cached(m: &Machine, id: &str) -> Option<Value> {
    let bytes = std::fs::read(m.data_dir().join("tasks").join(format!("{id}.json"))).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Whether every driver of `m` has synced successfully since `after` (canonical timestamps
/// compare as strings) and reports no error.
fn synced_since(m: &Machine, after: &str) -> bool {
    let s = status(m);
    let drivers = s["drivers"].as_array().expect("drivers");
    drivers.len() == 2
        && drivers.iter().all(|d| {
            d["last_error"].is_null() && d["last_success"].as_str().is_some_and(|t| t > after)
        })
}

fn now() -> String {
    hypertask_core::format_timestamp(chrono::Utc::now()).expect("timestamp")
}

#[test]
fn two_daemons_keep_two_machines_in_sync_through_a_directory_and_a_server() {
    let shared = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let host = Machine::new();
    host.write_config(&format!(
        "[server]\ntoken = \"{TOKEN}\"\nstore = {{ type = \"fs\", path = {} }}\n",
        toml_path(store.path())
    ));
    let port = free_port();
    let server = serve(&host, port);
    let a = machine(shared.path(), &server.url);
    let b = machine(shared.path(), &server.url);

    let before = status(&a);
    assert_eq!(
        before["daemon"],
        serde_json::json!({"running": false, "pid": null})
    );

    let start = now();
    let daemon_a = Daemon::start(&a);
    let daemon_b = Daemon::start(&b);
    eventually("both daemons' first syncs", &[&a, &b], || {
        synced_since(&a, &start) && synced_since(&b, &start)
    });
    let s = status(&a);
    assert_eq!(s["daemon"]["running"], true);
    assert_eq!(s["daemon"]["pid"], daemon_a.child.id());
    let names: Vec<&str> = s["drivers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["box", "web"]);
    assert_eq!(s["drivers"][0]["kind"], "fs");
    assert_eq!(s["drivers"][1]["kind"], "http");

    // An add on A reaches B's cache with nobody running sync.
    let id = a.ok(&["add", "water", "the", "plants"]).trim().to_owned();
    eventually("A's add in B's cache", &[&a, &b], || {
        cached(&b, &id).is_some()
    });
    // A modify on B reaches A.
    b.ok(&["modify", &id, "water", "the", "ferns"]);
    eventually("B's modify in A's cache", &[&a, &b], || {
        cached(&a, &id).is_some_and(|t| t["description"] == "water the ferns")
    });

    // The server stops for a while: the daemons keep syncing through the directory, report the
    // http driver's error, and recover when it returns.
    drop(server);
    let while_down = a.ok(&["add", "fix", "the", "fence"]).trim().to_owned();
    eventually("A's add through the directory alone", &[&a, &b], || {
        cached(&b, &while_down).is_some()
    });
    eventually("the http driver's error in status", &[&a], || {
        status(&a)["drivers"][1]["last_error"].is_string()
    });
    let down = status(&a);
    assert!(
        down["drivers"][1]["pending"].as_u64().unwrap() >= 1,
        "{down}"
    );
    let restarted = now();
    let server = serve(&host, port);
    // The http driver syncs again (the fs one had no reason to: it is not polled that often).
    eventually("recovery after the server's restart", &[&a, &b], || {
        [&a, &b].iter().all(|m| {
            let s = status(m);
            s["drivers"][0]["last_error"].is_null()
                && s["drivers"][1]["last_error"].is_null()
                && s["drivers"][1]["last_success"]
                    .as_str()
                    .is_some_and(|t| t > restarted.as_str())
        })
    });
    let back = status(&a);
    for d in back["drivers"].as_array().unwrap() {
        assert_eq!(d["pending"], 0, "{back}");
    }
    // The change made while the server was down reached it: a fresh client sees it.
    let fresh = Machine::new();
    fresh.write_config(&format!(
        "[drivers.web]\ntype = \"http\"\nurl = \"{}\"\ntoken = \"{TOKEN}\"\n",
        server.url
    ));
    fresh.ok(&["sync"]);
    assert!(cached(&fresh, &while_down).is_some());
    assert_eq!(
        cached(&fresh, &id).unwrap()["description"],
        "water the ferns"
    );

    // After the restart the long poll is held again: two machines on the server alone see
    // each other's edits although neither polls within the test.
    let (c, d) = (web_only(&server.url), web_only(&server.url));
    let start = now();
    let daemon_c = Daemon::start(&c);
    let daemon_d = Daemon::start(&d);
    eventually("C's and D's first syncs", &[&c, &d], || {
        [&c, &d].iter().all(|m| {
            status(m)["drivers"][0]["last_success"]
                .as_str()
                .is_some_and(|t| t > start.as_str())
        })
    });
    let via_server = c.ok(&["add", "through", "the", "server"]).trim().to_owned();
    eventually(
        "C's add in D's cache through the long poll",
        &[&c, &d],
        || cached(&d, &via_server).is_some(),
    );
    // A and B were watching the same server: the add reaches them too, and A's modify
    // comes back to C the same way.
    eventually("C's add in A's cache", &[&a, &c], || {
        cached(&a, &via_server).is_some()
    });
    a.ok(&["modify", &via_server, "through", "the", "server", "again"]);
    eventually("A's modify in C's cache", &[&a, &c], || {
        cached(&c, &via_server).is_some_and(|t| t["description"] == "through the server again")
    });
    assert_eq!(daemon_c.terminate().code(), Some(0));
    assert_eq!(daemon_d.terminate().code(), Some(0));

    // One daemon per data directory: a second one exits 1 naming the first one's pid.
    let second = a.run(&["daemon"]);
    assert_eq!(second.status.code(), Some(1));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains(&format!("pid {}", daemon_a.child.id())),
        "{err}"
    );

    // SIGTERM: exit 0, and status says no daemon runs.
    assert_eq!(daemon_a.terminate().code(), Some(0));
    assert_eq!(daemon_b.terminate().code(), Some(0));
    assert_eq!(status(&a)["daemon"]["running"], false);
}

/// Waits until task `id` is in `m`'s cache with `description`; returns how long that took.
fn arrival(m: &Machine, id: &str, description: &str, logs: &[&Machine]) -> Duration {
    let started = Instant::now();
    // Read the file every 2 ms: the figure's resolution.
    while started.elapsed() < DEADLINE {
        if cached(m, id).is_some_and(|t| t["description"] == description) {
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    eventually("an edit's arrival", logs, || false);
    unreachable!("eventually fails")
}

/// (median, max) in milliseconds.
fn spread(mut ms: Vec<Duration>) -> (u128, u128) {
    ms.sort();
    (ms[ms.len() / 2].as_millis(), ms[ms.len() - 1].as_millis())
}

/// The daemon's CPU time (user + system) in clock ticks, and its resident memory in KiB.
#[cfg(target_os = "linux")]
fn usage(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name, which is in parentheses: utime and stime are 14 and 15.
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    (ticks, rss)
}

/// Edits on A arriving in B's cache, through an fs directory (watched) and through
/// `hypertask serve` (its long poll; `poll_interval` beyond the test), and the daemon's idle
/// cost. The
/// figures are printed for BENCHMARKS.md (`HYPERTASK_LONG=1` runs 20 edits per path); the test
/// only asserts that every edit arrives.
#[test]
fn propagation_latency_through_a_directory_and_a_server() {
    let edits = scaled(3, 20);
    let store = tempfile::tempdir().unwrap();
    let host = Machine::new();
    host.write_config(&format!(
        "[server]\ntoken = \"{TOKEN}\"\nstore = {{ type = \"fs\", path = {} }}\n",
        toml_path(store.path())
    ));
    let server = serve(&host, free_port());
    let shared = tempfile::tempdir().unwrap();
    let fs_table = format!(
        "[drivers.box]\ntype = \"fs\"\npath = {}\n",
        toml_path(shared.path())
    );
    let http_table = format!(
        "[drivers.web]\ntype = \"http\"\nurl = \"{}\"\ntoken = \"{TOKEN}\"\n\
         poll_interval = {NO_POLL}\n",
        server.url
    );
    for (path, table) in [("fs", &fs_table), ("http", &http_table)] {
        let (a, b) = (Machine::new(), Machine::new());
        a.write_config(table);
        b.write_config(table);
        let start = now();
        let _da = Daemon::start(&a);
        let db = Daemon::start(&b);
        eventually("first syncs", &[&a, &b], || {
            [&a, &b].iter().all(|m| {
                status(m)["drivers"][0]["last_success"]
                    .as_str()
                    .is_some_and(|t| t > start.as_str())
            })
        });
        let id = a.ok(&["add", "revision-0"]).trim().to_owned();
        arrival(&b, &id, "revision-0", &[&a, &b]);
        let mut took = Vec::new();
        for n in 1..=edits {
            let description = format!("revision-{n}");
            a.ok(&["modify", &id, &description]);
            took.push(arrival(&b, &id, &description, &[&a, &b]));
        }
        let (median, max) = spread(took);
        println!("DAEMON {path}: an edit on A in B's cache: median {median} ms, max {max} ms over {edits} edits");
        #[cfg(target_os = "linux")]
        {
            let pid = db.child.id();
            let (before, _) = usage(pid);
            let idle = Duration::from_secs(scaled(3, 30) as u64);
            std::thread::sleep(idle);
            let (after, rss) = usage(pid);
            // Clock ticks are 1/100 s on Linux.
            let cpu = (after - before) as f64 / 100.0 / idle.as_secs_f64() * 100.0;
            println!(
                "DAEMON {path}: idle over {idle:?}: {cpu:.2} % of one core, {rss} KiB resident"
            );
        }
    }
}
