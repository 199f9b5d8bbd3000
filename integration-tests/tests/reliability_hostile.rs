//! Hostile input at every layer: each yields a clear error naming the thing, writes nothing
//! outside its place, leaves the bad data untouched, and the other tasks still sync.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use hypertask_integration_tests::{record, seed_tasks, toml_path, Machine};

fn fs_driver(name: &str, dir: &Path) -> String {
    format!(
        "[drivers.{name}]\ntype = \"fs\"\npath = {}\n",
        toml_path(dir)
    )
}

fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn hostile_files_in_a_shared_directory() {
    let root = tempfile::tempdir().unwrap();
    let shared = root.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let huge = "x".repeat(4 << 20);
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        ("corrupt.json", b"{ not json".to_vec()),
        (
            "wrongtype.json",
            br#"{"id":"wrongtype","description":["x"]}"#.to_vec(),
        ),
        (
            "badtags.json",
            br#"{"id":"badtags","tags":"work"}"#.to_vec(),
        ),
        (
            "badtime.json",
            br#"{"id":"badtime","due":"tomorrow"}"#.to_vec(),
        ),
        (
            "mismatch.json",
            br#"{"id":"someoneelse","description":"x"}"#.to_vec(),
        ),
        (
            "traversal.json",
            br#"{"id":"../../etc/passwd","description":"x"}"#.to_vec(),
        ),
        ("slash.json", br#"{"id":"a/b","description":"x"}"#.to_vec()),
        ("notobject.json", br#"["id","x"]"#.to_vec()),
        (
            "badutf8.json",
            b"{\"id\":\"badutf8\",\"description\":\"\xff\xfe\"}".to_vec(),
        ),
        ("empty.json", Vec::new()),
    ];
    for (name, bytes) in &hostile {
        std::fs::write(shared.join(name), bytes).unwrap();
    }
    // Foreign files are ignored silently.
    std::fs::write(shared.join("README.txt"), b"not a task").unwrap();
    std::fs::write(
        shared.join("hugetask.json"),
        serde_json::to_vec(&serde_json::json!({"id": "hugetask", "description": huge})).unwrap(),
    )
    .unwrap();
    let other = Machine::new();
    other.write_config(&fs_driver("shared", &shared));
    seed_tasks(&other.data_dir(), 20, "good");
    other.run(&["sync"]);
    let before = snapshot(&shared);
    let parent_before = snapshot(root.path());

    let m = Machine::new();
    m.write_config(&fs_driver("shared", &shared));
    let out = m.run(&["sync"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "skipped files make the exit status 1: {stderr}"
    );
    for (name, _) in &hostile {
        assert!(stderr.contains(name), "the error names {name}: {stderr}");
    }
    assert!(
        !stderr.contains("README.txt"),
        "foreign files are not reported: {stderr}"
    );
    assert_eq!(
        snapshot(&shared),
        before,
        "nothing in the shared directory changed"
    );
    assert_eq!(
        snapshot(root.path()),
        parent_before,
        "nothing written beside it"
    );
    let cache = m.cache_files();
    assert_eq!(
        cache.len(),
        20,
        "the 20 good tasks arrived: {:?}",
        cache.keys()
    );
    // A task above the size limit is refused by name, never imported.
    assert!(!cache.contains_key("hugetask.json"));
    assert!(
        stderr.contains("hugetask.json: is larger than the limit of 1048576 bytes"),
        "{stderr}"
    );
    for bad in [
        "someoneelse.json",
        "passwd.json",
        "wrongtype.json",
        "badutf8.json",
    ] {
        assert!(!cache.contains_key(bad), "{bad} must not be imported");
    }
    // The CLI refuses hostile ids without touching anything.
    for id in ["../x", "a/b", ".", "../../etc/passwd"] {
        let out = m.run(&["show", id]);
        assert_eq!(out.status.code(), Some(1), "show {id}");
        assert!(!String::from_utf8_lossy(&out.stderr).is_empty());
    }
    record(
        "hostile-files",
        serde_json::json!({"hostile_inputs": hostile.len() + 1 + 4, "named": hostile.len(), "good_tasks_synced": 20, "oversized_refused": 1, "untouched": true}),
    );
}

#[test]
fn corrupt_local_cache_file_is_quarantined_while_the_rest_syncs() {
    let shared = tempfile::tempdir().unwrap();
    let m = Machine::new();
    m.write_config(&fs_driver("shared", shared.path()));
    seed_tasks(&m.data_dir(), 10, "loc");
    let bad = m.data_dir().join("tasks/loc000003.json");
    std::fs::write(&bad, b"\x00\x01garbage").unwrap();
    let out = m.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("loc000003"), "{stderr}");
    assert!(!bad.exists(), "moved out of the cache");
    let quarantined: Vec<_> = std::fs::read_dir(m.data_dir().join("quarantine"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert!(
        stderr.contains(&quarantined[0].display().to_string()),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&quarantined[0]).unwrap(), b"\x00\x01garbage");
    assert_eq!(
        snapshot(shared.path()).len(),
        9,
        "the nine good tasks were pushed"
    );
}

#[test]
fn missing_or_unusable_driver_paths_fail_alone() {
    let root = tempfile::tempdir().unwrap();
    let good = root.path().join("good");
    std::fs::create_dir_all(&good).unwrap();
    let missing = root.path().join("not-mounted/tasks");
    let a_file = root.path().join("plain-file");
    std::fs::write(&a_file, b"I am a file").unwrap();
    let m = Machine::new();
    m.write_config(&format!(
        "{}{}{}",
        fs_driver("missing", &missing),
        fs_driver("notadir", &a_file),
        fs_driver("good", &good)
    ));
    seed_tasks(&m.data_dir(), 5, "ok");
    let out = m.run(&["sync"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("missing") && stderr.contains("notadir"),
        "{stderr}"
    );
    assert_eq!(snapshot(&good).len(), 5, "the good driver still synced");
    assert_eq!(std::fs::read(&a_file).unwrap(), b"I am a file");
    assert!(
        !missing.exists(),
        "a missing directory is not silently created"
    );
}

/// A TCP server on loopback that answers every connection with `reply` (or never answers).
fn rogue_server(reply: Option<&'static [u8]>) -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let handle = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut held = Vec::new();
        while Instant::now() < deadline {
            match listener.accept() {
                Ok((mut s, _)) => {
                    s.set_read_timeout(Some(Duration::from_millis(200))).ok();
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf);
                    match reply {
                        Some(r) => {
                            let _ = s.write_all(r);
                        }
                        None => held.push(s),
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    (port, handle)
}

#[test]
fn servers_that_answer_garbage_or_hang_fail_alone_and_clearly() {
    let (garbage, _g) = rogue_server(Some(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 9\r\nConnection: close\r\n\r\n{\"a\":[1,2",
    ));
    let (hang, _h) = rogue_server(None);
    let good = tempfile::tempdir().unwrap();
    let m = Machine::new();
    m.write_config(&format!(
        "[drivers.garbage]\ntype = \"http\"\nurl = \"http://127.0.0.1:{garbage}\"\ntoken = \"t\"\n\n\
         [drivers.hang]\ntype = \"http\"\nurl = \"http://127.0.0.1:{hang}\"\ntoken = \"t\"\ntimeout_secs = 2\n\n{}",
        fs_driver("good", good.path())
    ));
    seed_tasks(&m.data_dir(), 5, "net");
    let start = Instant::now();
    let out = m.run(&["sync"]);
    let took = start.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("garbage") && stderr.contains("hang"),
        "both drivers named: {stderr}"
    );
    assert_eq!(
        snapshot(good.path()).len(),
        5,
        "the good driver still synced"
    );
    record(
        "hostile-servers",
        serde_json::json!({"servers": 2, "sync_seconds_with_a_hanging_server": (took.as_secs_f64() * 10.0).round() / 10.0}),
    );
}

/// Makes a FIFO at `path`.
#[cfg(unix)]
fn mkfifo(path: &Path) {
    rustix::fs::mkfifoat(rustix::fs::CWD, path, rustix::fs::Mode::from(0o644)).unwrap();
}

/// Runs `hypertask ARGS…` on `m`. Should it block on one of `fifos`, their other ends are
/// opened so the process is released, and the test fails.
#[cfg(unix)]
fn run_never_blocking(m: &Machine, args: &[&str], fifos: &[&Path]) -> std::process::Output {
    use std::os::unix::fs::OpenOptionsExt as _;
    let child = m
        .command()
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let nonblock = rustix::fs::OFlags::NONBLOCK.bits() as i32;
            for f in fifos {
                let _r = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(nonblock)
                    .open(f);
                let _w = std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(nonblock)
                    .open(f);
            }
            panic!("hypertask {args:?} blocked on a FIFO");
        }
    }
}

#[cfg(unix)]
fn is_link(p: &Path) -> bool {
    std::fs::symlink_metadata(p)
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false)
}

#[cfg(unix)]
fn is_fifo(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt as _;
    std::fs::symlink_metadata(p)
        .map(|m| m.file_type().is_fifo())
        .unwrap_or(false)
}

#[cfg(unix)]
#[test]
fn links_fifos_and_huge_files_in_a_shared_directory_never_leak_or_hang() {
    let root = tempfile::tempdir().unwrap();
    let shared = root.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let other = Machine::new();
    other.write_config(&fs_driver("shared", &shared));
    seed_tasks(&other.data_dir(), 5, "good");
    other.ok(&["sync"]);

    // A valid task outside the shared directory, linked in under its own name.
    let secret = root.path().join("secret.json");
    let secret_bytes = br#"{"id":"linked","description":"a file outside the shared folder"}"#;
    std::fs::write(&secret, secret_bytes).unwrap();
    let linked = shared.join("linked.json");
    std::os::unix::fs::symlink(&secret, &linked).unwrap();
    let pipe = shared.join("pipe.json");
    let copy = shared.join("good000001 (Bob's conflicted copy 2026-01-02).json");
    mkfifo(&pipe);
    mkfifo(&copy);
    // 3 GB of nothing.
    let sparse = shared.join("sparse.json");
    std::fs::File::create(&sparse)
        .unwrap()
        .set_len(3 << 30)
        .unwrap();

    let m = Machine::new();
    m.write_config(&fs_driver("shared", &shared));
    for round in 0..2 {
        let out = run_never_blocking(&m, &["sync"], &[&pipe, &copy]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "round {round}: {stderr}");
        for (path, what) in [
            (&linked, "is a symbolic link, not a regular file"),
            (&pipe, "is a FIFO, not a regular file"),
            (&sparse, "is larger than the limit of 1048576 bytes"),
        ] {
            assert!(
                stderr.contains(&format!("{}: {what}", path.display())),
                "round {round} names {}: {stderr}",
                path.display()
            );
        }
        let cache = m.cache_files();
        assert_eq!(
            cache.keys().cloned().collect::<Vec<_>>(),
            (0..5)
                .map(|i| format!("good{i:06}.json"))
                .collect::<Vec<_>>(),
            "round {round}: only the good tasks arrived"
        );
    }
    assert!(is_link(&linked) && is_fifo(&pipe) && is_fifo(&copy));
    assert_eq!(std::fs::read(&secret).unwrap(), secret_bytes);
    assert_eq!(std::fs::metadata(&sparse).unwrap().len(), 3 << 30);

    // The health check neither blocks nor leaves its probe behind.
    run_never_blocking(&m, &["drivers", "--check"], &[&pipe, &copy]);
    let probes = std::fs::read_dir(&shared)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("check"))
        .count();
    assert_eq!(probes, 0);
    record(
        "hostile-links-fifos-sparse",
        serde_json::json!({"links": 1, "fifos": 2, "sparse_bytes": 3u64 << 30, "syncs": 2, "leaked": false, "blocked": false}),
    );
}

#[cfg(unix)]
#[test]
fn a_planted_lock_file_fails_that_driver_alone() {
    let root = tempfile::tempdir().unwrap();
    let (fifo_dir, link_dir, good) = (
        root.path().join("fifo"),
        root.path().join("link"),
        root.path().join("good"),
    );
    for d in [&fifo_dir, &link_dir, &good] {
        std::fs::create_dir_all(d).unwrap();
    }
    let fifo_lock = fifo_dir.join(".hypertask.lock");
    mkfifo(&fifo_lock);
    let planted = root.path().join("created-through-the-link");
    std::os::unix::fs::symlink(&planted, link_dir.join(".hypertask.lock")).unwrap();
    let m = Machine::new();
    m.write_config(&format!(
        "{}{}{}",
        fs_driver("fifo", &fifo_dir),
        fs_driver("link", &link_dir),
        fs_driver("good", &good)
    ));
    seed_tasks(&m.data_dir(), 3, "mine");
    let out = run_never_blocking(&m, &["sync"], &[&fifo_lock]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: is a FIFO, not a regular file",
            fifo_lock.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{}: is a symbolic link, not a regular file",
            link_dir.join(".hypertask.lock").display()
        )),
        "{stderr}"
    );
    assert!(!planted.exists(), "nothing is created through the link");
    assert_eq!(snapshot(&fifo_dir).len(), 0);
    assert_eq!(snapshot(&link_dir).len(), 0);
    assert_eq!(snapshot(&good).len(), 3, "the good driver still synced");
}

#[cfg(unix)]
#[test]
fn a_link_in_the_local_cache_is_named_and_never_read_through() {
    let root = tempfile::tempdir().unwrap();
    let shared = root.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let secret = root.path().join("secret.json");
    let secret_bytes = br#"{"id":"linked","description":"a file outside the cache"}"#;
    std::fs::write(&secret, secret_bytes).unwrap();
    let m = Machine::new();
    m.write_config(&fs_driver("shared", &shared));
    seed_tasks(&m.data_dir(), 3, "mine");
    let link = m.data_dir().join("tasks/linked.json");
    std::os::unix::fs::symlink(&secret, &link).unwrap();
    let out = m.run(&["sync"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("'linked'") && stderr.contains("is a symbolic link, not a regular file"),
        "{stderr}"
    );
    assert_eq!(
        snapshot(&shared).into_keys().collect::<Vec<_>>(),
        ["mine000000.json", "mine000001.json", "mine000002.json"],
        "the linked file was not pushed"
    );
    // The sync moved the link itself aside: its target is neither read nor changed.
    let quarantined: Vec<_> = std::fs::read_dir(m.data_dir().join("quarantine"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert!(is_link(&quarantined[0]));
    assert!(!is_link(&link));
    assert_eq!(std::fs::read(&secret).unwrap(), secret_bytes);
}

#[test]
fn a_conflict_journal_torn_inside_a_character_still_lists() {
    let m = Machine::new();
    seed_tasks(&m.data_dir(), 1, "t");
    let record = serde_json::json!({
        "at": "2026-01-01T00:00:00.000Z", "driver": "box", "side": "local", "task": "t000000",
        "field": "description", "lost": "café ✓", "kept": "tea"
    });
    let mut journal = serde_json::to_vec(&record).unwrap();
    journal.push(b'\n');
    let torn = serde_json::to_vec(&record).unwrap();
    let cut = torn.windows(3).position(|w| w == "✓".as_bytes()).unwrap() + 1;
    journal.extend_from_slice(&torn[..cut]);
    std::fs::write(m.data_dir().join("conflicts.jsonl"), journal).unwrap();
    let listed: Vec<serde_json::Value> =
        serde_json::from_str(&m.ok(&["conflicts", "--json"])).unwrap();
    assert_eq!(listed, [record]);
}
