//! The `hypertask` binary with the fs driver, tried as a new user would: machines whose configs
//! share one directory, broken files, no config at all, mistakes on the command line.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use hypertask_integration_tests::{seed_tasks, toml_path, Machine};
use serde_json::Value;

/// A config with one fs driver named `shared`.
fn fs_config(shared: &Path) -> String {
    format!(
        "[drivers.shared]\ntype = \"fs\"\npath = {}\n",
        toml_path(shared)
    )
}

/// A shared directory and two machines configured to sync through it.
fn two_machines() -> (tempfile::TempDir, Machine, Machine) {
    let shared = tempfile::tempdir().unwrap();
    let (a, b) = (Machine::new(), Machine::new());
    a.write_config(&fs_config(shared.path()));
    b.write_config(&fs_config(shared.path()));
    (shared, a, b)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The files of a directory, by name.
fn dir_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        fs::read(e.path()).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn add(m: &Machine, words: &[&str]) -> String {
    let mut args = vec!["add"];
    args.extend_from_slice(words);
    m.ok(&args).trim().to_owned()
}

fn find<'a>(tasks: &'a [Value], id: &str) -> Option<&'a Value> {
    tasks.iter().find(|t| t["id"] == id)
}

fn open_ids(m: &Machine) -> Vec<String> {
    let list: Vec<Value> = serde_json::from_str(&m.ok(&["list", "--json"])).unwrap();
    list.iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn two_machines_sharing_a_directory_converge() {
    let (_shared, a, b) = two_machines();
    let id = add(&a, &["buy", "milk"]);
    a.ok(&["sync"]);
    let out = b.ok(&["sync"]);
    assert!(out.contains("shared (fs): pulled 1"), "{out}");
    assert_eq!(find(&b.tasks(), &id).unwrap()["description"], "buy milk");

    // Concurrent edits of different fields, then each machine syncs twice.
    a.ok(&["modify", &id, "buy", "oat", "milk"]);
    b.ok(&["modify", &id[..6], "+shop"]);
    for _ in 0..2 {
        a.ok(&["sync"]);
        b.ok(&["sync"]);
    }
    let (ta, tb) = (a.tasks(), b.tasks());
    assert_eq!(ta, tb);
    let task = find(&ta, &id).unwrap();
    assert_eq!(task["description"], "buy oat milk");
    assert_eq!(task["tags"], serde_json::json!(["shop"]));
    assert_eq!(
        a.cache_files(),
        b.cache_files(),
        "identical documents, byte for byte"
    );

    // A delete on B disappears from A's list (and stays as a tombstone).
    b.ok(&["delete", &id]);
    b.ok(&["sync"]);
    assert!(open_ids(&a).contains(&id));
    a.ok(&["sync"]);
    assert!(!open_ids(&a).contains(&id));
    assert!(find(&a.tasks(), &id).unwrap()["deleted"].is_string());
    let piped = a.ok(&["list"]);
    assert!(!piped.contains(&id), "{piped}");
}

#[test]
fn corrupt_files_are_named_left_untouched_and_the_rest_syncs() {
    let (shared, a, b) = two_machines();
    let corrupt = b"{\"id\": \"broken\", \"description\": ".to_vec();
    fs::write(shared.path().join("broken.json"), &corrupt).unwrap();
    let misnamed = br#"{"id": "someone-else", "description": "misfiled"}"#.to_vec();
    fs::write(shared.path().join("misnamed.json"), &misnamed).unwrap();
    fs::write(shared.path().join("README.txt"), b"foreign").unwrap();
    let id = add(&a, &["still", "syncs"]);

    let out = a.run(&["sync"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a skipped invalid file fails the sync"
    );
    let err = stderr(&out);
    assert!(
        err.contains("broken.json") && err.contains("misnamed.json"),
        "{err}"
    );
    assert!(err.contains("'shared'"), "the driver is named: {err}");
    assert!(
        stdout(&out).contains("shared (fs): pushed 1"),
        "{}",
        stdout(&out)
    );

    let out = b.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("broken.json"));
    assert_eq!(find(&b.tasks(), &id).unwrap()["description"], "still syncs");

    assert_eq!(
        fs::read(shared.path().join("broken.json")).unwrap(),
        corrupt
    );
    assert_eq!(
        fs::read(shared.path().join("misnamed.json")).unwrap(),
        misnamed
    );
    assert_eq!(
        fs::read(shared.path().join("README.txt")).unwrap(),
        b"foreign"
    );
}

#[test]
fn no_config_file_adds_lists_and_syncs() {
    let m = Machine::new();
    let id = add(&m, &["water", "plants", "+home", "due:tomorrow"]);
    let list: Vec<Value> = serde_json::from_str(&m.ok(&["list", "--json"])).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], id);
    assert_eq!(list[0]["tags"], serde_json::json!(["home"]));
    let out = m.run(&["sync"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("nothing to sync"), "{}", stdout(&out));
    assert!(m.ok(&["drivers"]).contains("no drivers"));
    assert_eq!(m.cache_files().len(), 1);
}

#[test]
fn an_unknown_driver_type_lists_the_available_kinds_and_others_still_sync() {
    let shared = tempfile::tempdir().unwrap();
    let m = Machine::new();
    m.write_config(&format!(
        "{}\n[drivers.weird]\ntype = \"ftp\"\n",
        fs_config(shared.path())
    ));
    let id = add(&m, &["x"]);
    let out = m.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("'ftp'") && err.contains("fs, git, http, mongodb"),
        "{err}"
    );
    assert!(
        shared.path().join(format!("{id}.json")).exists(),
        "the fs driver still synced"
    );

    let out = m.run(&["drivers", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["name"], "shared");
    assert_eq!(rows[0]["kind"], "fs");
    assert_eq!(rows[0]["capabilities"]["atomic_writes"], true);
    assert_eq!(rows[1]["name"], "weird");
    assert!(rows[1]["error"]
        .as_str()
        .unwrap()
        .contains("available types"));
}

#[test]
fn prefixes_must_be_unambiguous() {
    let m = Machine::new();
    let ids = seed_tasks(&m.data_dir(), 2, "abcd");
    // Any case, at least 4 characters; two tasks start with this one.
    let out = m.run(&["show", "ABCD00"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("ambiguous") && err.contains(ids[0].as_str()) && err.contains(ids[1].as_str()),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one sentence: {err}");
    let out = m.run(&["done", "abcd00"]);
    assert_eq!(out.status.code(), Some(1));

    // A unique prefix works.
    m.ok(&["done", "ABCD000001"]);
    assert!(find(&m.tasks(), ids[1].as_str()).unwrap()["done"].is_string());
    assert!(find(&m.tasks(), ids[0].as_str())
        .unwrap()
        .get("done")
        .is_none());
    for missing in ["nosuchtask", "abc"] {
        let out = m.run(&["show", missing]);
        assert_eq!(out.status.code(), Some(1), "{missing}");
        assert!(stderr(&out).contains(missing));
    }
}

#[test]
fn usage_errors_exit_2() {
    let (_shared, m, _) = two_machines();
    let id = add(&m, &["x"]);
    for args in [
        vec!["frobnicate"],
        vec!["add"],
        vec!["add", "x", "due:someday"],
        vec!["add", "x", "recur:often"],
        vec!["modify", &id, "wait:13/13/13"],
        vec!["sync", "--driver", "nope"],
        vec!["list", "--bogus"],
        vec!["list", "+x", "--bogus"],
        vec!["list", "oops:x"],
        vec!["modify", &id, "oops:x"],
    ] {
        let out = m.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).is_empty(), "{args:?}");
    }
    let out = m.run(&["sync", "--driver", "nope"]);
    assert!(
        stderr(&out).contains("'nope'") && stderr(&out).contains("shared"),
        "{}",
        stderr(&out)
    );
    let out = m.run(&["add", "x", "due:someday"]);
    assert!(stderr(&out).contains("someday"), "{}", stderr(&out));
    // Nothing was written by the failed commands.
    assert_eq!(m.tasks().len(), 1);
}

#[test]
fn json_output_is_the_stored_document() {
    let m = Machine::new();
    let added: Value = serde_json::from_str(&m.ok(&[
        "add",
        "pay",
        "rent",
        "+home",
        "+bills",
        "due:2030-01-01",
        "recur:1m",
        "--json",
    ]))
    .unwrap();
    let id = added["id"].as_str().unwrap().to_owned();
    assert_eq!(added["description"], "pay rent");
    assert_eq!(added["tags"], serde_json::json!(["bills", "home"]));
    assert_eq!(added["recur"], "1m");
    assert!(added["due"].as_str().unwrap().ends_with(".000Z"));
    let file: Value = serde_json::from_slice(&m.cache_files()[&format!("{id}.json")]).unwrap();
    assert_eq!(added, file);

    let shown: Value = serde_json::from_str(&m.ok(&["show", "--json", &id[..8]])).unwrap();
    assert_eq!(shown, file, "nothing added or renamed");
    let listed: Vec<Value> = serde_json::from_str(&m.ok(&["list", "--json"])).unwrap();
    assert_eq!(listed, vec![file.clone()]);
    // Flags after a `-tag` filter still count.
    let filtered: Vec<Value> = serde_json::from_str(&m.ok(&["list", "-home", "--json"])).unwrap();
    assert!(filtered.is_empty());
    let filtered: Vec<Value> = serde_json::from_str(&m.ok(&["list", "+bills", "--json"])).unwrap();
    assert_eq!(filtered.len(), 1);

    // Clearing a field with `due:` and removing a tag.
    // A recurring task keeps a due date: both go together.
    m.ok(&["modify", &id, "due:", "recur:", "-bills"]);
    let shown: Value = serde_json::from_str(&m.ok(&["show", &id, "--json"])).unwrap();
    assert!(shown.get("due").is_none());
    assert_eq!(shown["tags"], serde_json::json!(["home"]));
    assert_eq!(shown["description"], "pay rent");

    let conflicts: Vec<Value> = serde_json::from_str(&m.ok(&["conflicts", "--json"])).unwrap();
    assert!(conflicts.is_empty());
    let drivers: Vec<Value> = serde_json::from_str(&m.ok(&["drivers", "--json"])).unwrap();
    assert!(drivers.is_empty());
}

#[test]
fn a_lost_edit_is_journaled_in_conflicts() {
    let (_shared, a, b) = two_machines();
    let id = add(&a, &["draft"]);
    a.ok(&["sync"]);
    b.ok(&["sync"]);
    a.ok(&["modify", &id, "from", "a"]);
    b.ok(&["modify", &id, "from", "b"]);
    b.ok(&["sync"]);
    a.ok(&["sync"]);
    assert_eq!(find(&a.tasks(), &id).unwrap()["description"], "from b");
    let records: Vec<Value> = serde_json::from_str(&a.ok(&["conflicts", "--json"])).unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["task"], id);
    assert_eq!(records[0]["driver"], "shared");
    assert_eq!(records[0]["field"], "description");
    assert_eq!(records[0]["lost"], "from a");
    assert_eq!(records[0]["kept"], "from b");
    assert!(a.ok(&["conflicts"]).contains("\"from a\""));
}

#[test]
fn dry_run_writes_nothing() {
    let (shared, a, b) = two_machines();
    let id = add(&a, &["x"]);
    let out = a.ok(&["sync", "--dry-run"]);
    assert!(
        out.contains("shared (fs): would have pushed 1") && out.contains("dry run"),
        "{out}"
    );
    assert!(
        dir_files(shared.path()).is_empty(),
        "nothing written upstream"
    );

    a.ok(&["sync"]);
    let upstream = dir_files(shared.path());
    let out = b.ok(&["sync", "--dry-run"]);
    assert!(out.contains("would have pulled 1"), "{out}");
    assert!(b.cache_files().is_empty(), "nothing written locally");
    assert_eq!(dir_files(shared.path()), upstream);
    b.ok(&["sync"]);
    assert!(find(&b.tasks(), &id).is_some());
}

#[test]
fn a_missing_shared_directory_is_reported_not_created() {
    let root = tempfile::tempdir().unwrap();
    let missing = root.path().join("Dropbox").join("hypertask");
    let m = Machine::new();
    m.write_config(&fs_config(&missing));
    add(&m, &["x"]);
    let out = m.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&missing.display().to_string()) && err.contains("create = true"),
        "{err}"
    );
    assert!(stdout(&out).contains("shared (fs): failed"));
    assert!(!missing.exists());
    let out = m.run(&["drivers", "--check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("FAILING"), "{}", stdout(&out));
}

#[test]
fn relative_paths_follow_the_config_file_and_env_overrides_win() {
    let m = Machine::new();
    m.write_config("[drivers.Shared]\ntype = \"fs\"\npath = \"rel/shared\"\ncreate = true\n");
    let id = add(&m, &["x"]);
    let out = m.command().current_dir("/").arg("sync").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(m
        .dir
        .path()
        .join("rel/shared")
        .join(format!("{id}.json"))
        .exists());

    let other = tempfile::tempdir().unwrap();
    let out = m
        .command()
        .env("HYPERTASK_DRIVERS__SHARED__PATH", other.path())
        .arg("sync")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(other.path().join(format!("{id}.json")).exists());

    // `--data-dir` wins over HYPERTASK_DATA_DIR.
    let elsewhere = m.dir.path().join("elsewhere");
    let out = m
        .command()
        .args(["--data-dir", &elsewhere.to_string_lossy(), "sync"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(elsewhere.join("tasks").join(format!("{id}.json")).exists());
}

#[test]
fn sync_only_the_named_drivers() {
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let m = Machine::new();
    m.write_config(&format!(
        "[drivers.one]\ntype = \"fs\"\npath = {}\n[drivers.two]\ntype = \"fs\"\npath = {}\n",
        toml_path(one.path()),
        toml_path(two.path())
    ));
    let id = add(&m, &["x"]);
    let out = m.ok(&["sync", "--driver", "one"]);
    assert!(
        out.contains("one (fs): pushed 1") && !out.contains("two"),
        "{out}"
    );
    assert!(one.path().join(format!("{id}.json")).exists());
    assert!(dir_files(two.path()).is_empty());
    let out = m.ok(&["sync"]);
    assert!(
        out.contains("one (fs): up to date") && out.contains("two (fs): pushed 1"),
        "{out}"
    );
    let health = m.ok(&["drivers", "--check"]);
    assert!(
        health.contains("ok:") && health.contains("1 tasks"),
        "{health}"
    );
}

#[test]
fn the_example_config_works_as_is() {
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config.example.toml");
    let m = Machine::new();
    m.write_config(&fs::read_to_string(example).unwrap());
    let id = add(&m, &["try", "it"]);
    let out = m.run(&["sync"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let shared = m.dir.path().join("target/hypertask-example/shared");
    assert!(shared.join(format!("{id}.json")).exists());
    // The first sync says what it created.
    let said = format!(
        "example (fs): pushed 1; created the directory {}",
        shared.display()
    );
    assert!(stdout(&out).contains(&said), "{}", stdout(&out));
    // The git entry committed the task to its local bare remote.
    let remote = m.dir.path().join("target/hypertask-example/remote.git");
    let listed = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(&remote)
        .args(["ls-tree", "-r", "--name-only", "main"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains(&format!("tasks/{id}.json")),
        "the example's git remote holds the task"
    );
    m.ok(&["drivers", "--check"]);
}
