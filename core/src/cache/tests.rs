//! The local cache against a real temporary directory.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::symlink;
use std::time::Duration;

use serde_json::Value;

use super::*;

fn task(id: &str) -> Task {
    Task::from_value(serde_json::json!({"id": id, "description": "d"})).unwrap()
}

fn record(n: usize) -> ConflictRecord {
    ConflictRecord {
        at: "2026-01-01T00:00:00.000Z".into(),
        driver: "box".into(),
        side: Side::Local,
        task: TaskId::new("t").unwrap(),
        field: "description".into(),
        lost: Some(Value::String(format!("vérsion {n} ✓"))),
        kept: None,
    }
}

fn replica() -> (tempfile::TempDir, Replica, CacheLock) {
    let tmp = tempfile::tempdir().unwrap();
    let r = Replica::open(tmp.path().join("data")).unwrap();
    let lock = r.lock(Duration::from_secs(5)).unwrap();
    (tmp, r, lock)
}

#[test]
fn a_data_dir_that_is_a_file_is_named_once() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("notes");
    fs::write(&file, b"x").unwrap();
    for data_dir in [file.clone(), file.join("sub")] {
        let e = Replica::open(&data_dir).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "the data directory {} cannot be used: {} is a file, not a directory",
                data_dir.display(),
                file.display()
            )
        );
    }
}

#[test]
fn a_journal_torn_inside_a_multibyte_character_still_reads() {
    let (_tmp, r, lock) = replica();
    r.record_conflicts(&lock, &[record(1)]).unwrap();
    let path = r.data_dir().join("conflicts.jsonl");
    let mut torn = serde_json::to_vec(&record(2)).unwrap();
    // Cut inside the three bytes of '✓'.
    let check = torn.windows(3).position(|w| w == "✓".as_bytes()).unwrap();
    torn.truncate(check + 1);
    assert!(std::str::from_utf8(&torn).is_err());
    OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&torn)
        .unwrap();
    assert_eq!(r.conflicts().unwrap(), [record(1)]);
    // The next record starts on a line of its own: only the torn one is lost.
    r.record_conflicts(&lock, &[record(3)]).unwrap();
    assert_eq!(r.conflicts().unwrap(), [record(1), record(3)]);
}

#[test]
fn a_cache_file_that_is_a_link_is_a_problem_never_read_through() {
    let (tmp, r, lock) = replica();
    r.put(&lock, &[task("good")]).unwrap();
    let outside = tmp.path().join("outside.json");
    fs::write(&outside, task("linked").to_pretty_json()).unwrap();
    let linked = TaskId::new("linked").unwrap();
    symlink(&outside, r.task_dir().path_of(&linked)).unwrap();
    let scan = r.scan().unwrap();
    assert_eq!(scan.hashes.len(), 1);
    assert_eq!(scan.problems.len(), 1);
    assert!(scan.problems[0].message.contains("symbolic link"));
    assert!(matches!(r.get(&linked), Err(CacheError::Corrupt(_))));
    let (tasks, problems) = r.all().unwrap();
    assert_eq!((tasks.len(), problems.len()), (1, 1));
}

#[test]
fn quarantine_moves_any_file_aside_without_reading_or_following_it() {
    let (tmp, r, lock) = replica();
    let id = |s: &str| TaskId::new(s).unwrap();
    let outside = tmp.path().join("outside.json");
    fs::write(&outside, b"not ours").unwrap();
    let dir = r.task_dir().dir().to_owned();
    fs::write(dir.join("corrupt.json"), b"{ torn").unwrap();
    symlink(&outside, dir.join("link.json")).unwrap();
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        dir.join("fifo.json"),
        rustix::fs::Mode::from(0o644),
    )
    .unwrap();
    fs::create_dir(dir.join("adir.json")).unwrap();
    r.put(&lock, &[task("good")]).unwrap();

    let mut moved = Vec::new();
    for name in ["corrupt", "link", "fifo", "adir"] {
        let to = r.quarantine(&lock, &id(name)).unwrap();
        assert!(!dir.join(format!("{name}.json")).exists());
        assert!(fs::symlink_metadata(dir.join(format!("{name}.json"))).is_err());
        assert!(to.starts_with(r.data_dir().join("quarantine")));
        let file = to.file_name().unwrap().to_str().unwrap();
        assert!(
            file.starts_with(&format!("{name}.")) && file.ends_with(".json"),
            "{file}"
        );
        moved.push(to);
    }
    assert_eq!(fs::read(&moved[0]).unwrap(), b"{ torn");
    assert!(fs::symlink_metadata(&moved[1]).unwrap().is_symlink());
    assert_eq!(fs::read(&outside).unwrap(), b"not ours");
    assert!(fs::symlink_metadata(&moved[3]).unwrap().is_dir());
    let scan = r.scan().unwrap();
    assert!(scan.problems.is_empty(), "{:?}", scan.problems);
    assert_eq!(scan.hashes.len(), 1);

    // A second file of the same task never lands on the first.
    fs::write(dir.join("corrupt.json"), b"{ torn again").unwrap();
    let again = r.quarantine(&lock, &id("corrupt")).unwrap();
    assert_ne!(again, moved[0]);
    assert_eq!(fs::read(&moved[0]).unwrap(), b"{ torn");
    assert_eq!(fs::read(&again).unwrap(), b"{ torn again");

    let listed = r.quarantined().unwrap();
    assert_eq!(listed.len(), 5);
    let ids: Vec<&str> = listed
        .iter()
        .map(|q| q.id.as_ref().unwrap().as_str())
        .collect();
    assert_eq!(ids, ["adir", "corrupt", "corrupt", "fifo", "link"]);
    assert!(matches!(
        r.quarantine(&lock, &id("absent")),
        Err(CacheError::NotFound(_))
    ));
}

/// Moves the cache directory's mtime an hour back, as if its last change were old.
fn age(r: &Replica) {
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    File::open(r.task_dir().dir())
        .unwrap()
        .set_modified(hour_ago)
        .unwrap();
}

#[test]
fn the_head_gives_the_root_until_something_else_changes_the_cache() {
    let (_tmp, r, lock) = replica();
    r.put(&lock, &[task("a"), task("b")]).unwrap();
    assert_eq!(r.trusted_root(), None, "never listed: no head yet");
    age(&r);
    let listed = r.scan().unwrap();
    let root = crate::hash::root_hash(&listed.hashes);
    assert_eq!(r.trusted_root(), Some(root.clone()));
    assert_eq!(r.scan().unwrap().hashes, listed.hashes);

    // hypertask's own writes carry the head on.
    r.put(&lock, &[task("c")]).unwrap();
    let now = r.rescan().unwrap().hashes;
    assert_eq!(now.len(), 3);
    age(&r);
    let _ = r.rescan().unwrap();
    r.put(&lock, &[task("d")]).unwrap();
    let carried = r.trusted_root().expect("carried on by the write");
    assert_eq!(carried, crate::hash::root_hash(&r.rescan().unwrap().hashes));

    // A file created by someone else: the head is not trusted, the scan lists it.
    age(&r);
    let _ = r.rescan().unwrap();
    assert!(r.trusted_root().is_some());
    fs::write(
        r.task_dir().path_of(&TaskId::new("e").unwrap()),
        task("e").to_pretty_json(),
    )
    .unwrap();
    assert_eq!(r.trusted_root(), None);
    assert_eq!(r.scan().unwrap().hashes.len(), 5);
}

#[test]
fn a_racy_head_is_not_trusted_by_another_process() {
    let (_tmp, r, lock) = replica();
    r.put(&lock, &[task("a")]).unwrap();
    // Listed right after the write: a change in the same tick could hide behind the stamp.
    let _ = r.rescan().unwrap();
    let other = Replica::open(r.data_dir()).unwrap();
    assert_eq!(other.trusted_root(), None);
}

/// Waits out the window in which the directory's stamp is racy (50 ms where timestamps are
/// finer than a second, 2 s where they are whole seconds).
fn past_the_racy_window(r: &Replica) {
    let ms = if whole_seconds(r) { 2100 } else { 60 };
    std::thread::sleep(Duration::from_millis(ms));
}

/// Whether the cache directory's file system keeps whole-second timestamps.
fn whole_seconds(r: &Replica) -> bool {
    let mtime = fs::metadata(r.task_dir().dir())
        .unwrap()
        .modified()
        .unwrap();
    let since = mtime.duration_since(std::time::UNIX_EPOCH).unwrap();
    since.subsec_nanos() == 0
}

#[test]
fn a_racy_head_is_confirmed_by_a_listing_once_its_tick_is_over() {
    let (_tmp, r, lock) = replica();
    r.put(&lock, &[task("a"), task("b")]).unwrap();
    // Listed right after the write, as a sync run right after `hypertask modify` is.
    let root = crate::hash::root_hash(&r.rescan().unwrap().hashes);
    let racy = crate::head::Head::load(&r.data_dir().join("head.json")).unwrap();
    past_the_racy_window(&r);
    let other = Replica::open(r.data_dir()).unwrap();
    assert_eq!(other.trusted_root(), Some(root.clone()));
    let again = crate::head::Head::load(&r.data_dir().join("head.json")).unwrap();
    assert!(
        again.recorded_ns > racy.recorded_ns,
        "the confirmed head is recorded again, no longer racy"
    );
    assert_eq!((again.generation, again.root), (racy.generation, root));
}

#[test]
fn a_sync_whose_flush_outlasts_the_tick_leaves_a_head_that_is_not_racy() {
    let (_tmp, r, lock) = replica();
    r.put(&lock, &[task("a")]).unwrap();
    let _ = r.rescan().unwrap();
    let dir = r.task_dir();
    dir.defer_flush();
    r.put(&lock, &[task("b")]).unwrap();
    // The head is stamped right after the write; a flush that ends after that tick confirms
    // it, so the next process trusts it without a listing.
    past_the_racy_window(&r);
    assert!(dir.flush().unwrap());
    let head = crate::head::Head::load(&r.data_dir().join("head.json")).expect("a head");
    assert!(!head.dir.racy(head.recorded_ns));
    assert_eq!(head.count, 2);
}

#[test]
fn a_large_cache_waits_out_a_racy_head_instead_of_listing_every_file() {
    let (_tmp, r, lock) = replica();
    let tasks: Vec<Task> = (0..5_000).map(|i| task(&format!("t{i}"))).collect();
    r.put(&lock, &tasks).unwrap();
    let root = crate::hash::root_hash(&r.rescan().unwrap().hashes);
    // At once, still within the racy window: a small cache lists (see above), a large one
    // waits the window out and confirms the head.
    let other = Replica::open(r.data_dir()).unwrap();
    if whole_seconds(&r) {
        // A two-second window is not waited out.
        assert_eq!(other.trusted_root(), None);
    } else {
        assert_eq!(other.trusted_root(), Some(root));
    }
}

#[test]
fn a_racy_head_is_confirmed_once_the_file_system_clock_has_moved_past_its_change() {
    use std::time::{SystemTime, UNIX_EPOCH};
    let (_tmp, r, lock) = replica();
    let tasks: Vec<Task> = (0..5_000).map(|i| task(&format!("t{i}"))).collect();
    r.put(&lock, &tasks).unwrap();
    let root = crate::hash::root_hash(&r.rescan().unwrap().hashes);
    if whole_seconds(&r) {
        return; // A two-second window is not waited out (see above).
    }
    // The directory's last change stamped 45 ms from now, and its head recorded now: racy,
    // whatever the speed of the machine, until the file system's clock passes that stamp.
    let dir = r.task_dir().dir().to_owned();
    let soon = SystemTime::now() + Duration::from_millis(45);
    let times = fs::FileTimes::new().set_modified(soon).set_accessed(soon);
    fs::File::open(&dir).unwrap().set_times(times).unwrap();
    let path = r.data_dir().join("head.json");
    let mut head = crate::head::Head::load(&path).unwrap();
    head.dir = crate::head::DirStamp::of(&dir).unwrap();
    head.recorded_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128;
    head.save(&path);
    assert!(head.racy_for(&head.dir));

    // Another process waits for the file system's clock (read from the probe beside the
    // head) to pass the stamp, confirms the entries by one listing, and records the head
    // again with that clock: trusted from then on, though its stamp is still recent.
    let other = Replica::open(r.data_dir()).unwrap();
    assert_eq!(other.trusted_root(), Some(root.clone()));
    let confirmed = crate::head::Head::load(&path).unwrap();
    let clock = confirmed
        .clock_ns
        .expect("confirmed by the file system's clock");
    assert!(confirmed.dir.settled_by(clock), "{confirmed:?}");
    assert_eq!(
        (confirmed.generation, &confirmed.root),
        (head.generation, &root)
    );
    assert!(confirmed.trusted(&crate::head::DirStamp::of(&dir).unwrap(), None));
}

#[test]
fn a_racy_head_is_not_confirmed_when_someone_else_changed_an_entry_in_its_tick() {
    type Change = fn(&Replica);
    let created: Change = |r| {
        let path = r.task_dir().path_of(&TaskId::new("e").unwrap());
        fs::write(path, task("e").to_pretty_json()).unwrap();
    };
    let replaced: Change = |r| {
        let tmp = r.task_dir().dir().join(".a.json.elsewhere");
        let other = Task::from_value(serde_json::json!({"id": "a", "description": "other"}));
        fs::write(&tmp, other.unwrap().to_pretty_json()).unwrap();
        fs::rename(&tmp, r.task_dir().path_of(&TaskId::new("a").unwrap())).unwrap();
    };
    let removed: Change =
        |r| fs::remove_file(r.task_dir().path_of(&TaskId::new("b").unwrap())).unwrap();
    for (what, change) in [
        ("created", created),
        ("replaced", replaced),
        ("removed", removed),
    ] {
        let (_tmp, r, lock) = replica();
        r.put(&lock, &[task("a"), task("b")]).unwrap();
        let listed = r.rescan().unwrap().hashes;
        // Another writer changes the directory in the same tick as the head's stamp: recorded
        // again over the changed directory, the stamp hides the change.
        change(&r);
        let path = r.data_dir().join("head.json");
        let head = crate::head::Head::load(&path).unwrap();
        let stamp = crate::head::DirStamp::now(r.task_dir().dir()).unwrap();
        crate::head::Head::new(head.generation, head.root, head.count, stamp).save(&path);
        past_the_racy_window(&r);
        let other = Replica::open(r.data_dir()).unwrap();
        assert_eq!(
            other.trusted_root(),
            None,
            "an entry {what} in the racy tick"
        );
        assert_ne!(
            other.scan().unwrap().hashes,
            listed,
            "{what}: the scan lists again"
        );
    }
}

#[test]
fn a_listing_with_problems_leaves_no_head() {
    let (_tmp, r, _lock) = replica();
    fs::write(r.task_dir().dir().join("bad.json"), b"{ torn").unwrap();
    age(&r);
    assert_eq!(r.scan().unwrap().problems.len(), 1);
    assert_eq!(r.trusted_root(), None);
}

#[test]
fn nothing_quarantined_is_an_empty_list() {
    let (_tmp, r, _lock) = replica();
    assert!(r.quarantined().unwrap().is_empty());
}
