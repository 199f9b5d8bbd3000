//! A shared directory is written by other people: task-named symbolic links, FIFOs and
//! oversized files, a planted lock file and planted probe names. Each is reported by path and
//! left as it is, nothing is read or written through a link, nothing blocks, and the other
//! tasks still sync.
#![cfg(unix)]

use std::fs;
use std::os::unix::fs::{symlink, FileTypeExt as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use hypertask_core::{
    Batch, Driver, ErrorKind, PutOutcome, Registry, Store, StoreDriver, Task, TaskId, Version,
    Write,
};
use hypertask_driver_fs::{FsConfig, FsStore};
use serde_json::json;

fn task(id: &str, description: &str) -> Task {
    Task::from_value(json!({
        "id": id, "description": description, "updated_at": "2026-01-01T00:00:00.000Z"
    }))
    .unwrap()
}

fn id(s: &str) -> TaskId {
    TaskId::new(s).unwrap()
}

struct Shared {
    tmp: tempfile::TempDir,
}

impl Shared {
    /// A shared directory holding the valid task `good`.
    fn new() -> Shared {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("shared")).unwrap();
        fs::write(
            tmp.path().join("shared/good.json"),
            task("good", "fine").to_pretty_json(),
        )
        .unwrap();
        Shared { tmp }
    }

    fn dir(&self) -> PathBuf {
        self.tmp.path().join("shared")
    }

    /// A path beside the shared directory, outside it.
    fn outside(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn store(&self, max_task_bytes: Option<usize>) -> FsStore {
        let config = FsConfig {
            path: self.dir(),
            create: false,
        };
        let store = FsStore::new("box", &config, &self.tmp.path().join("data")).unwrap();
        match max_task_bytes {
            Some(max) => store.with_max_task_bytes(max),
            None => store,
        }
    }
}

fn mkfifo(path: &Path) {
    rustix::fs::mkfifoat(rustix::fs::CWD, path, rustix::fs::Mode::from(0o644)).unwrap();
}

/// Runs `op` against the store on a thread of its own. Should it block on one of `fifos`, their
/// other ends are opened so the thread is released, and the test fails.
fn never_blocks<T, F>(fifos: &[PathBuf], op: F) -> T
where
    T: Send + 'static,
    F: std::future::Future<Output = T> + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _ = tx.send(rt.block_on(op));
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(v) => v,
        Err(_) => {
            use std::os::unix::fs::OpenOptionsExt as _;
            let nonblock = rustix::fs::OFlags::NONBLOCK.bits() as i32;
            for f in fifos {
                let _r = fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(nonblock)
                    .open(f);
                let _w = fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(nonblock)
                    .open(f);
            }
            panic!("the store blocked on a FIFO in the shared directory");
        }
    }
}

fn write(t: &Task, expected: Option<&Task>) -> Write {
    Write::new(t.clone(), expected.map(|e| Version::of_hash(&e.hash())))
}

#[tokio::test]
async fn task_named_links_are_reported_never_read_through_nor_replaced() {
    let shared = Shared::new();
    let dir = shared.dir();
    // A valid task outside the directory, linked in under its own name.
    let secret = shared.outside("secret.json");
    let outside = task("linked", "from outside the shared directory").to_pretty_json();
    fs::write(&secret, &outside).unwrap();
    symlink(&secret, dir.join("linked.json")).unwrap();
    symlink(shared.outside("nowhere.json"), dir.join("dangling.json")).unwrap();
    // A conflicted copy of `good` linked to an outside state of it: never merged in.
    let copy_state = shared.outside("copy.json");
    fs::write(
        &copy_state,
        task("good", "from outside, newer").to_pretty_json(),
    )
    .unwrap();
    let copy = dir.join("good (Ann's conflicted copy 2026-01-02).json");
    symlink(&copy_state, &copy).unwrap();
    symlink(shared.tmp.path(), dir.join("updir.json")).unwrap();
    fs::create_dir(dir.join("adir.json")).unwrap();
    let s = shared.store(None);

    let inv = s.list().await.unwrap();
    assert_eq!(
        inv.entries.keys().map(TaskId::as_str).collect::<Vec<_>>(),
        ["good"]
    );
    assert_eq!(inv.entries[&id("good")].hash, task("good", "fine").hash());
    let mut problems: Vec<(String, String)> = inv
        .problems
        .iter()
        .map(|p| (p.id.as_ref().unwrap().to_string(), p.error.to_string()))
        .collect();
    problems.sort();
    let expect = |name: &str, what: &str| {
        format!(
            "driver 'box': {}: is {what}, not a regular file; left untouched",
            dir.join(format!("{name}.json")).display()
        )
    };
    assert_eq!(
        problems,
        [
            ("adir".into(), expect("adir", "a directory")),
            ("dangling".into(), expect("dangling", "a symbolic link")),
            ("linked".into(), expect("linked", "a symbolic link")),
            ("updir".into(), expect("updir", "a symbolic link")),
        ]
    );

    // Reading it fails alone; writing it is refused, the link stays and its target is intact.
    let got = s.get(&[id("linked"), id("good")]).await.unwrap();
    let e = got[&id("linked")].as_ref().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidData);
    assert!(e.to_string().contains("symbolic link"), "{e}");
    let stored = got[&id("good")].as_ref().unwrap().as_ref().unwrap();
    assert_eq!(stored.task, task("good", "fine"));
    let mut good = task("good", "fine");
    good.edit(
        &[hypertask_core::Change::Set(
            "description".into(),
            json!("edited"),
        )],
        chrono::Utc::now(),
    )
    .unwrap();
    let ours = task("linked", "ours");
    let out = s
        .put(vec![
            write(&ours, None),
            write(&good, Some(&task("good", "fine"))),
        ])
        .await
        .unwrap();
    assert!(out[&id("linked")].is_err(), "{:?}", out[&id("linked")]);
    assert!(matches!(out[&id("good")], Ok(PutOutcome::Written(_))));
    assert!(fs::symlink_metadata(dir.join("linked.json"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::read(&secret).unwrap(), outside);
    assert!(!shared.outside("nowhere.json").exists());
    assert_eq!(
        fs::read(dir.join("good.json")).unwrap(),
        good.to_pretty_json()
    );
    // Ending the sync folds no linked copy in, and leaves the link.
    StoreDriver::new(s.clone()).finish().await.unwrap();
    assert_eq!(
        fs::read(dir.join("good.json")).unwrap(),
        good.to_pretty_json()
    );
    assert!(fs::symlink_metadata(&copy)
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn fifos_named_like_tasks_or_copies_never_block() {
    let shared = Shared::new();
    let dir = shared.dir();
    let fifos = vec![
        dir.join("pipe.json"),
        dir.join("good (Ann's conflicted copy 2026-01-02).json"),
        dir.join("good.sync-conflict-20260102-101010-ABCDEF.json"),
    ];
    for f in &fifos {
        mkfifo(f);
    }
    let s = shared.store(None);
    let driver = StoreDriver::new(s.clone());
    let (inv, got, resolved, finished) = never_blocks(&fifos, async move {
        let inv = s.list().await.unwrap();
        let got = s.get(&[id("pipe"), id("good")]).await.unwrap();
        let resolved = driver
            .resolve(Batch::from([(id("fresh"), Some(task("fresh", "new")))]))
            .await
            .unwrap();
        let finished = driver.finish().await;
        (inv, got, resolved, finished)
    });
    assert_eq!(
        inv.entries.keys().map(TaskId::as_str).collect::<Vec<_>>(),
        ["good"],
        "the FIFO copies are not merged in"
    );
    assert_eq!(inv.problems.len(), 1);
    assert!(
        inv.problems[0]
            .error
            .to_string()
            .contains("pipe.json: is a FIFO, not a regular file"),
        "{}",
        inv.problems[0].error
    );
    assert!(got[&id("pipe")].is_err());
    let stored = got[&id("good")].as_ref().unwrap().as_ref().unwrap();
    assert_eq!(stored.task, task("good", "fine"));
    assert!(resolved[&id("fresh")].is_ok());
    finished.unwrap();
    for f in &fifos {
        assert!(fs::symlink_metadata(f).unwrap().file_type().is_fifo());
    }
}

#[test]
fn a_planted_lock_file_is_refused_never_followed_and_never_blocks() {
    // A FIFO.
    let shared = Shared::new();
    let lock = shared.dir().join(".hypertask.lock");
    mkfifo(&lock);
    let s = shared.store(None);
    let e = never_blocks(std::slice::from_ref(&lock), async move {
        s.put(vec![write(&task("fresh", "new"), None)]).await
    })
    .unwrap_err();
    assert!(
        e.to_string()
            .contains(".hypertask.lock: is a FIFO, not a regular file"),
        "{e}"
    );
    assert!(!shared.dir().join("fresh.json").exists());

    // A symbolic link to a file that does not exist: never created.
    let shared = Shared::new();
    let target = shared.outside("created-by-an-attacker");
    symlink(&target, shared.dir().join(".hypertask.lock")).unwrap();
    let s = shared.store(None);
    let e = never_blocks(&[], async move {
        s.put(vec![write(&task("fresh", "new"), None)]).await
    })
    .unwrap_err();
    assert!(
        e.to_string()
            .contains(".hypertask.lock: is a symbolic link, not a regular file"),
        "{e}"
    );
    assert!(!target.exists(), "the link's target was created");

    // A symbolic link to an existing file: neither truncated nor locked.
    fs::write(&target, b"keep me").unwrap();
    let s = shared.store(None);
    let put = never_blocks(&[], async move {
        s.put(vec![write(&task("fresh", "new"), None)]).await
    });
    assert!(put.is_err());
    assert_eq!(fs::read(&target).unwrap(), b"keep me");
}

#[tokio::test]
async fn the_write_probe_never_opens_a_planted_name() {
    let shared = Shared::new();
    // Today's pid-based name, planted as a link to a file the user can write.
    let victim = shared.outside("victim.txt");
    fs::write(&victim, b"precious").unwrap();
    let planted = shared
        .dir()
        .join(format!(".hypertask-check-{}", std::process::id()));
    symlink(&victim, &planted).unwrap();
    let s = shared.store(None);
    let health = s.check().await.unwrap();
    assert!(health.ok, "{}", health.detail);
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
    let mut names: Vec<String> = fs::read_dir(shared.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            format!(".hypertask-check-{}", std::process::id()),
            "good.json".to_owned()
        ],
        "the probe was removed, the planted link left alone"
    );
}

#[tokio::test]
async fn task_files_above_the_limit_are_invalid_and_never_read() {
    let shared = Shared::new();
    let dir = shared.dir();
    // 3 GB of nothing: refused by its size.
    fs::File::create(dir.join("sparse.json"))
        .unwrap()
        .set_len(3 << 30)
        .unwrap();
    // A valid task of 2 MiB.
    let large =
        Task::from_value(json!({"id": "large", "description": "x".repeat(2 << 20)})).unwrap();
    fs::write(dir.join("large.json"), large.to_pretty_json()).unwrap();

    let s = shared.store(None);
    let inv = s.list().await.unwrap();
    assert_eq!(
        inv.entries.keys().map(TaskId::as_str).collect::<Vec<_>>(),
        ["good"]
    );
    let mut problems: Vec<String> = inv.problems.iter().map(|p| p.error.to_string()).collect();
    problems.sort();
    assert_eq!(problems.len(), 2, "{problems:?}");
    for (p, name) in problems.iter().zip(["large.json", "sparse.json"]) {
        assert!(
            p.ends_with(&format!(
                "{name}: is larger than the limit of 1048576 bytes for one task \
                 (max_task_bytes); left untouched"
            )),
            "{p}"
        );
    }
    let got = s.get(&[id("large")]).await.unwrap();
    assert_eq!(
        got[&id("large")].as_ref().unwrap_err().kind(),
        ErrorKind::InvalidData
    );

    // A driver configured for larger tasks takes it.
    let s = shared.store(Some(4 << 20));
    let inv = s.list().await.unwrap();
    assert_eq!(inv.entries[&id("large")].hash, large.hash());
    assert_eq!(inv.problems.len(), 1, "the sparse file is still too large");
}

#[tokio::test]
async fn the_driver_tables_max_task_bytes_reaches_the_store() {
    let shared = Shared::new();
    let large = Task::from_value(json!({"id": "large", "description": "x".repeat(4096)})).unwrap();
    fs::write(shared.dir().join("large.json"), large.to_pretty_json()).unwrap();
    let mut registry = Registry::new();
    hypertask_driver_fs::register(&mut registry);
    let build = |max: u64| {
        let spec = hypertask_core::DriverSpec::from_table(
            "box",
            json!({"type": "fs", "path": shared.dir(), "max_task_bytes": max}),
            shared.tmp.path().join("data"),
            None,
        )
        .unwrap();
        registry.build(&spec).unwrap()
    };
    let listed = |d: hypertask_core::Checked| async move {
        match d.hashes(None).await.unwrap() {
            hypertask_core::Listing::Changed(inv) => (inv.hashes.len(), inv.problems.len()),
            hypertask_core::Listing::Unchanged => unreachable!(),
        }
    };
    assert_eq!(
        listed(build(2048)).await,
        (1, 1),
        "the large task is refused"
    );
    assert_eq!(listed(build(8192)).await, (2, 0));
}
