//! The task manager a Taskwarrior user switches to, through the real binary: attributes as
//! fields, filters and virtual tags, working-set numbers, reopen, undo, recurrence and
//! annotations across replicas, Taskwarrior import and export, completions.

use std::io::Write as _;
use std::path::Path;
use std::process::{Output, Stdio};

use hypertask_integration_tests::{toml_path, Machine};
use serde_json::{json, Value};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn add(m: &Machine, words: &[&str]) -> String {
    let mut args = vec!["add"];
    args.extend_from_slice(words);
    m.ok(&args).trim().to_owned()
}

fn task(m: &Machine, id: &str) -> Value {
    m.tasks()
        .into_iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("no task {id}"))
}

/// The ids `list ARGS… --json` prints, in order.
fn listed(m: &Machine, args: &[&str]) -> Vec<String> {
    let mut all = vec!["list"];
    all.extend_from_slice(args);
    all.push("--json");
    let v: Vec<Value> = serde_json::from_str(&m.ok(&all)).unwrap();
    v.iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Runs `hypertask ARGS…` with `input` on stdin.
fn with_stdin(m: &Machine, args: &[&str], input: &str) -> Output {
    let mut child = m
        .command()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn fs_config(shared: &Path) -> String {
    format!(
        "[drivers.shared]\ntype = \"fs\"\npath = {}\n",
        toml_path(shared)
    )
}

fn two_machines() -> (tempfile::TempDir, Machine, Machine) {
    let shared = tempfile::tempdir().unwrap();
    let (a, b) = (Machine::new(), Machine::new());
    a.write_config(&fs_config(shared.path()));
    b.write_config(&fs_config(shared.path()));
    (shared, a, b)
}

#[test]
fn attributes_are_fields_never_description_text() {
    let m = Machine::new();
    m.write_config(
        "[uda.estimate]\ntype = \"number\"\n[uda.size]\ntype = \"string\"\nvalues = [\"S\", \"L\"]\n",
    );
    let id = add(
        &m,
        &[
            "pay",
            "rent",
            "project:home",
            "priority:H",
            "+bills",
            "scheduled:2030-01-01",
            "until:2031-01-01",
            "estimate:2.5",
            "size:S",
        ],
    );
    let t = task(&m, &id);
    assert_eq!(t["description"], "pay rent");
    assert_eq!(t["project"], "home");
    assert_eq!(t["priority"], "H");
    assert_eq!(t["estimate"], 2.5);
    assert_eq!(t["size"], "S");
    assert!(t["scheduled"].as_str().unwrap().ends_with(".000Z"));
    assert!(t["until"].as_str().unwrap().ends_with(".000Z"));
    for key in ["project", "priority", "estimate", "size"] {
        assert!(
            t["field_updated_at"][key].is_string(),
            "{key} has its own clock"
        );
    }

    // The habit that used to replace the description now sets the project.
    m.ok(&["modify", &id, "project:home.garden", "priority:"]);
    let t = task(&m, &id);
    assert_eq!(t["description"], "pay rent");
    assert_eq!(t["project"], "home.garden");
    assert!(t.get("priority").is_none());

    // An unknown key is a usage error that names it and the known ones; nothing changes.
    let before = m.cache_files();
    for args in [
        vec!["add", "call", "bob", "foo:bar"],
        vec!["modify", &id, "foo:bar"],
        vec!["modify", &id, "size:M"],
        vec!["add", "x", "priority:urgent"],
    ] {
        let out = m.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    }
    let err = stderr(&m.run(&["add", "call", "bob", "foo:bar"]));
    assert!(
        err.contains("'foo'") && err.contains("project") && err.contains("estimate"),
        "{err}"
    );
    assert_eq!(m.cache_files(), before);

    // After a lone `--`, words are text whatever they look like.
    let lit = add(&m, &["see", "--", "foo:bar", "+x", "-y"]);
    let t = task(&m, &lit);
    assert_eq!(t["description"], "see foo:bar +x -y");
    assert!(t.get("tags").is_none() && t.get("foo").is_none());
}

#[test]
fn filters_and_virtual_tags_select_tasks() {
    let m = Machine::new();
    let garden = add(
        &m,
        &[
            "dig",
            "beds",
            "project:home.garden",
            "+errand",
            "due:yesterday",
        ],
    );
    let rent = add(
        &m,
        &["pay", "rent", "project:home", "priority:H", "due:tomorrow"],
    );
    let report = add(&m, &["write", "report", "project:work", "due:today"]);
    let later = add(&m, &["someday", "idea", "wait:tomorrow"]);
    let blocked = add(&m, &["file", "taxes", "+errand"]);
    m.ok(&["modify", &blocked, &format!("depends:{rent}")]);
    m.ok(&["start", &report]);
    m.ok(&["annotate", &rent, "standing", "order?"]);

    let set = |v: Vec<String>| {
        let mut v = v;
        v.sort();
        v
    };
    let ids = |xs: &[&String]| {
        let mut v: Vec<String> = xs.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(set(listed(&m, &["project:home"])), ids(&[&garden, &rent]));
    assert_eq!(listed(&m, &["priority:H"]), [rent.as_str()]);
    assert_eq!(set(listed(&m, &["+errand"])), ids(&[&garden, &blocked]));
    assert_eq!(listed(&m, &["-errand", "rent"]), [rent.as_str()]);
    assert_eq!(listed(&m, &["/^WRITE/"]), [report.as_str()]);
    assert_eq!(
        listed(&m, &["standing"]),
        [rent.as_str()],
        "annotations are searched"
    );
    assert_eq!(listed(&m, &["due.after:today"]), [rent.as_str()]);
    assert_eq!(set(listed(&m, &["due.before:today"])), ids(&[&garden]));
    assert_eq!(set(listed(&m, &["+OVERDUE"])), ids(&[&garden, &report]));
    assert_eq!(listed(&m, &["+TODAY"]), [report.as_str()]);
    assert_eq!(listed(&m, &["+TOMORROW"]), [rent.as_str()]);
    assert_eq!(listed(&m, &["+ACTIVE"]), [report.as_str()]);
    assert_eq!(listed(&m, &["+BLOCKED"]), [blocked.as_str()]);
    assert_eq!(listed(&m, &["+BLOCKING"]), [rent.as_str()]);
    assert_eq!(listed(&m, &["+WAITING"]), [later.as_str()]);
    assert!(
        !listed(&m, &[]).contains(&later),
        "waiting tasks are hidden"
    );
    m.ok(&["done", &garden]);
    assert_eq!(listed(&m, &["+COMPLETED"]), [garden.as_str()]);
    assert_eq!(listed(&m, &["status:completed"]), [garden.as_str()]);
    assert!(!listed(&m, &["+errand"]).contains(&garden));

    // Urgency orders `next`: high priority, due soon and blocking first; blocked last.
    let order = listed(&m, &[]);
    assert_eq!(order.first(), Some(&rent), "{order:?}");
    assert_eq!(order.get(1), Some(&report), "{order:?}");
    assert_eq!(order.last(), Some(&blocked), "{order:?}");

    // Unknown filter keys and modifiers are usage errors.
    for bad in [
        ["list", "foo:bar"],
        ["list", "due.soon:1d"],
        ["list", "status:open"],
    ] {
        assert_eq!(m.run(&bad).status.code(), Some(2), "{bad:?}");
    }
}

#[test]
fn bulk_changes_through_a_filter_ask_first() {
    let m = Machine::new();
    for n in 0..4 {
        add(&m, &["errand", &n.to_string(), "+errand", "project:old"]);
    }
    add(&m, &["stay", "project:other"]);
    // No answer (or no) changes nothing.
    let out = with_stdin(&m, &["done", "+errand"], "n\n");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("done 4 tasks?"), "{}", stderr(&out));
    assert_eq!(listed(&m, &["+errand"]).len(), 4);
    let out = with_stdin(&m, &["modify", "project:old", "project:new"], "");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(listed(&m, &["project:new"]).len(), 0);
    // Yes, or --yes, goes ahead.
    let out = with_stdin(&m, &["modify", "project:old", "project:new"], "y\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(listed(&m, &["project:new"]).len(), 4);
    assert_eq!(listed(&m, &["project:other"]).len(), 1);
    m.ok(&["done", "+errand", "--yes"]);
    assert_eq!(listed(&m, &[]).len(), 1);
    // Taskwarrior's order works too.
    let n = add(&m, &["one", "more"]);
    m.ok(&["list"]);
    m.ok(&["project:other", "modify", "+tagged"]);
    assert_eq!(listed(&m, &["+tagged"]).len(), 1);
    m.ok(&[&n, "done"]);
    assert!(task(&m, &n)["done"].is_string());
}

#[test]
fn digits_are_working_set_numbers_never_id_prefixes() {
    let m = Machine::new();
    // A task whose id starts with digits, as imported ids may.
    let file = m.dir.path().join("old.json");
    std::fs::write(
        &file,
        r#"{"id": "2345abcd", "description": "digits first"}"#,
    )
    .unwrap();
    m.ok(&["import", &file.to_string_lossy()]);
    let a = add(&m, &["first"]);
    let b = add(&m, &["second"]);
    let piped = m.ok(&["list"]);
    let numbers: Vec<(String, String)> = piped
        .lines()
        .map(|l| {
            let mut cols = l.split('\t');
            (
                cols.next().unwrap().to_owned(),
                cols.next().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(numbers.len(), 3, "{piped}");
    let number_of = |id: &str| numbers.iter().find(|(_, i)| i == id).unwrap().0.clone();
    // `2` is the task numbered 2, whatever ids start with 2.
    let two: Value = serde_json::from_str(&m.ok(&["show", "2", "--json"])).unwrap();
    assert_eq!(number_of(two["id"].as_str().unwrap()), "2");
    let out = m.run(&["show", "2345"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("number 2345"), "{}", stderr(&out));
    // Prefixes: at least 4 characters, any case.
    let shown: Value = serde_json::from_str(&m.ok(&["show", "2345ABC", "--json"])).unwrap();
    assert_eq!(shown["id"], "2345abcd");

    // Numbers stay until the next list renumbers: done 1 twice is the same task.
    let first = number_of(&a);
    m.ok(&["done", &first]);
    let again = m.ok(&["done", &first]);
    assert!(
        again.contains(&a) && again.contains("already done"),
        "{again}"
    );
    let c = add(&m, &["third"]);
    let shown: Value = serde_json::from_str(&m.ok(&["show", "4", "--json"])).unwrap();
    assert_eq!(shown["id"], c, "a new task gets the next free number");
    m.ok(&["list"]);
    let out = m.run(&["show", "4"]);
    assert_eq!(out.status.code(), Some(1), "renumbered: 3 open tasks");
    assert!(m.ok(&["list"]).contains(&b));

    // Numbers are kept per data directory.
    let other = Machine::new();
    let out = other.run(&["show", "1"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn reopen_start_stop_append_prepend_and_reports() {
    let m = Machine::new();
    let id = add(&m, &["water", "plants", "project:home.garden", "+green"]);
    m.ok(&["done", &id]);
    assert!(listed(&m, &[]).is_empty());
    assert!(m.ok(&["completed"]).contains(&id));
    m.ok(&["reopen", &id]);
    let t = task(&m, &id);
    assert!(t.get("done").is_none());
    assert!(
        t["field_updated_at"]["done"].is_string(),
        "the removal has a clock"
    );
    assert_eq!(listed(&m, &[]), [id.as_str()]);

    m.ok(&["start", &id]);
    assert!(task(&m, &id)["start"].is_string());
    m.ok(&["stop", &id]);
    assert!(task(&m, &id).get("start").is_none());
    m.ok(&["append", &id, "and", "herbs"]);
    m.ok(&["prepend", &id, "please"]);
    assert_eq!(
        task(&m, &id)["description"],
        "please water plants and herbs"
    );

    let projects: Value = serde_json::from_str(&m.ok(&["projects", "--json"])).unwrap();
    assert_eq!(projects, json!({"home": 1, "home.garden": 1}));
    let tags: Value = serde_json::from_str(&m.ok(&["tags", "--json"])).unwrap();
    assert_eq!(tags, json!({"green": 1}));
    let info = m.ok(&["info", &id]);
    assert!(
        info.contains("urgency") && info.contains("project"),
        "{info}"
    );
    let later = add(&m, &["later", "wait:2099-01-01"]);
    assert!(m.ok(&["waiting"]).contains(&later));

    // `edit` in $EDITOR: shows what changed.
    let script = m.dir.path().join("editor.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nsed -i -e 's/^priority:.*/priority: M/' -e 's/^tags:.*/tags: green blue/' \"$1\"\necho 'annotation: from the editor' >> \"$1\"\n",
    )
    .unwrap();
    let out = m
        .command()
        .env("EDITOR", format!("sh {}", script.display()))
        .env_remove("VISUAL")
        .args(["edit", &id])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("priority: M"), "{shown}");
    let t = task(&m, &id);
    assert_eq!(t["priority"], "M");
    assert_eq!(t["tags"], json!(["blue", "green"]));
    assert!(t
        .as_object()
        .unwrap()
        .iter()
        .any(|(k, v)| k.starts_with("annotation_") && v == "from the editor"));
}

#[test]
fn undo_reverts_a_modify_and_a_done_as_new_edits_that_sync() {
    let (_shared, a, b) = two_machines();
    let id = add(&a, &["draft", "letter", "project:home"]);
    a.ok(&["modify", &id, "final", "letter", "project:work", "+sent"]);
    let modified = task(&a, &id);
    let out = a.ok(&["undo"]);
    assert!(out.contains("undid modify"), "{out}");
    let t = task(&a, &id);
    assert_eq!(t["description"], "draft letter");
    assert_eq!(t["project"], "home");
    assert!(t.get("tags").is_none());
    assert!(
        t["field_updated_at"]["description"].as_str()
            > modified["field_updated_at"]["description"].as_str(),
        "the revert is a new edit with a newer clock"
    );

    // Undo a done; it syncs like any edit.
    a.ok(&["done", &id]);
    a.ok(&["sync"]);
    b.ok(&["sync"]);
    assert!(task(&b, &id)["done"].is_string());
    a.ok(&["undo"]);
    assert!(task(&a, &id).get("done").is_none());
    a.ok(&["sync"]);
    b.ok(&["sync"]);
    assert!(task(&b, &id).get("done").is_none());
    assert_eq!(listed(&b, &[]), [id.as_str()]);

    // Undo of the add deletes the task; then the journal is empty.
    a.ok(&["undo"]);
    assert!(task(&a, &id)["deleted"].is_string());
    let out = a.run(&["undo"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nothing to undo"));
}

#[test]
fn recurrence_completed_on_two_replicas_creates_exactly_one_next_instance() {
    let (_shared, a, b) = two_machines();
    let id = add(
        &a,
        &["water", "plants", "recur:1w", "due:2030-01-07", "+home"],
    );
    a.ok(&["sync"]);
    b.ok(&["sync"]);
    // Both complete the same instance offline.
    let out_a = a.ok(&["done", &id]);
    let out_b = b.ok(&["done", &id[..6]]);
    assert!(out_a.contains("next instance"), "{out_a}");
    assert!(out_b.contains("next instance"), "{out_b}");
    for _ in 0..2 {
        a.ok(&["sync"]);
        b.ok(&["sync"]);
    }
    let open_a = listed(&a, &[]);
    assert_eq!(open_a.len(), 1, "exactly one next instance: {open_a:?}");
    assert_eq!(listed(&b, &[]), open_a);
    assert_eq!(a.tasks().len(), 2);
    let next = task(&a, &open_a[0]);
    assert_eq!(next["description"], "water plants");
    assert_eq!(next["recur"], "1w");
    assert_eq!(next["parent"], id.as_str());
    assert_eq!(next["tags"], json!(["home"]));
    let due = chrono::DateTime::parse_from_rfc3339(next["due"].as_str().unwrap()).unwrap();
    let first =
        chrono::DateTime::parse_from_rfc3339(task(&a, &id)["due"].as_str().unwrap()).unwrap();
    assert_eq!(due - first, chrono::Duration::weeks(1));
    assert_eq!(
        a.cache_files(),
        b.cache_files(),
        "the two copies merged into one"
    );

    // A recurrence needs a due date to count from.
    let out = a.run(&["add", "no", "date", "recur:1w"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("due"), "{}", stderr(&out));

    // `until:` ends the series.
    let last = add(
        &a,
        &[
            "last",
            "one",
            "recur:1w",
            "due:2030-01-07",
            "until:2030-01-10",
        ],
    );
    let out = a.ok(&["done", &last]);
    assert!(!out.contains("next instance"), "{out}");
    assert_eq!(listed(&a, &[]).len(), 1);
}

#[test]
fn concurrent_annotations_on_two_replicas_both_survive() {
    let (_shared, a, b) = two_machines();
    let id = add(&a, &["call", "the", "plumber"]);
    a.ok(&["sync"]);
    b.ok(&["sync"]);
    a.ok(&["annotate", &id, "number", "is", "in", "the", "drawer"]);
    b.ok(&["annotate", &id, "ask", "about", "the", "boiler"]);
    for _ in 0..2 {
        a.ok(&["sync"]);
        b.ok(&["sync"]);
    }
    let t = task(&a, &id);
    let notes: Vec<&str> = t
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("annotation_"))
        .map(|(_, v)| v.as_str().unwrap())
        .collect();
    assert_eq!(notes.len(), 2, "{t}");
    assert!(notes.contains(&"number is in the drawer") && notes.contains(&"ask about the boiler"));
    assert_eq!(a.cache_files(), b.cache_files());
    let records: Vec<Value> = serde_json::from_str(&a.ok(&["conflicts", "--json"])).unwrap();
    assert!(records.is_empty(), "nothing lost: {records:?}");
}

/// A realistic `task export` (Taskwarrior 2.6): pending, waiting, completed, deleted, a
/// recurrence template and its instance, annotations, dependencies, UDAs.
const TASKWARRIOR_EXPORT: &str = r#"[
{"id":1,"description":"Renew passport","due":"20300115T090000Z","entry":"20260102T081500Z","modified":"20260110T120000Z","priority":"H","project":"admin","status":"pending","tags":["errand","office"],"uuid":"2f1c7a4e-5b9d-4c1e-8f3a-1d2e3f4a5b6c","estimate":3,"client":"self","annotations":[{"entry":"20260103T100000Z","description":"photos from the booth"},{"entry":"20260104T100000Z","description":"form 42B"}],"urgency":14.2},
{"id":2,"description":"Book flights","entry":"20260105T080000Z","modified":"20260105T080000Z","status":"pending","project":"trip","uuid":"7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d","depends":"2f1c7a4e-5b9d-4c1e-8f3a-1d2e3f4a5b6c","urgency":-4.1},
{"id":3,"description":"Read that book","entry":"20260105T080000Z","modified":"20260106T080000Z","status":"waiting","wait":"20990101T000000Z","uuid":"0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e","urgency":-2.9},
{"id":0,"description":"Pay electricity","end":"20260201T100000Z","entry":"20260120T080000Z","modified":"20260201T100000Z","status":"completed","uuid":"c3d4e5f6-a7b8-4c9d-8e0f-1a2b3c4d5e6f","project":"home","urgency":0},
{"id":0,"description":"Cancel gym","end":"20260115T100000Z","entry":"20260101T080000Z","modified":"20260115T100000Z","status":"deleted","uuid":"d4e5f6a7-b8c9-4d0e-9f1a-2b3c4d5e6f7a","urgency":0},
{"id":0,"description":"Water plants","due":"20300107T090000Z","entry":"20260101T080000Z","mask":"-","modified":"20260107T080000Z","recur":"weekly","rtype":"periodic","status":"recurring","uuid":"e5f6a7b8-c9d0-4e1f-8a2b-3c4d5e6f7a8b","urgency":0},
{"id":4,"description":"Water plants","due":"20300107T090000Z","entry":"20260107T080000Z","imask":0,"modified":"20260107T080000Z","parent":"e5f6a7b8-c9d0-4e1f-8a2b-3c4d5e6f7a8b","recur":"weekly","rtype":"periodic","status":"pending","uuid":"f6a7b8c9-d0e1-4f2a-9b3c-4d5e6f7a8b9c","urgency":3.4}
]"#;

#[test]
fn a_taskwarrior_export_imports_and_reimporting_changes_nothing() {
    let m = Machine::new();
    m.write_config("[uda.estimate]\ntype = \"number\"\n[uda.client]\ntype = \"string\"\n");
    let file = m.dir.path().join("export.json");
    std::fs::write(&file, TASKWARRIOR_EXPORT).unwrap();
    let out = m.ok(&["import", &file.to_string_lossy()]);
    assert!(out.contains("7 new"), "{out}");

    let passport = task(&m, "2f1c7a4e-5b9d-4c1e-8f3a-1d2e3f4a5b6c");
    assert_eq!(passport["description"], "Renew passport");
    assert_eq!(passport["due"], "2030-01-15T09:00:00.000Z");
    assert_eq!(passport["created_at"], "2026-01-02T08:15:00.000Z");
    assert_eq!(passport["updated_at"], "2026-01-10T12:00:00.000Z");
    assert_eq!(passport["priority"], "H");
    assert_eq!(passport["project"], "admin");
    assert_eq!(passport["tags"], json!(["errand", "office"]));
    assert_eq!(passport["estimate"], 3);
    assert_eq!(passport["client"], "self");
    assert_eq!(
        passport["annotation_1767434400000"],
        "photos from the booth"
    );
    assert_eq!(passport["annotation_1767520800000"], "form 42B");
    assert!(passport.get("urgency").is_none() && passport.get("uuid").is_none());
    let flights = task(&m, "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d");
    assert_eq!(flights["dep_2f1c7a4e-5b9d-4c1e-8f3a-1d2e3f4a5b6c"], "x");
    assert_eq!(
        task(&m, "c3d4e5f6-a7b8-4c9d-8e0f-1a2b3c4d5e6f")["done"],
        "2026-02-01T10:00:00.000Z"
    );
    assert_eq!(
        task(&m, "d4e5f6a7-b8c9-4d0e-9f1a-2b3c4d5e6f7a")["deleted"],
        "2026-01-15T10:00:00.000Z"
    );
    let template = task(&m, "e5f6a7b8-c9d0-4e1f-8a2b-3c4d5e6f7a8b");
    assert_eq!(template["status"], "recurring");
    let instance = task(&m, "f6a7b8c9-d0e1-4f2a-9b3c-4d5e6f7a8b9c");
    assert_eq!(instance["recur"], "1w");
    assert_eq!(instance["parent"], "e5f6a7b8-c9d0-4e1f-8a2b-3c4d5e6f7a8b");

    // Statuses as Taskwarrior had them: three pending listed, the template is not.
    let open = listed(&m, &[]);
    assert_eq!(open.len(), 3, "{open:?}");
    assert_eq!(
        listed(&m, &["+WAITING"]),
        ["0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e"]
    );
    assert_eq!(
        listed(&m, &["+BLOCKED"]),
        ["7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d"]
    );
    assert_eq!(
        listed(&m, &["status:recurring"]),
        ["e5f6a7b8-c9d0-4e1f-8a2b-3c4d5e6f7a8b"]
    );

    // Re-importing, as an array or one object per line, changes nothing.
    let before = m.cache_files();
    let out = m.ok(&["import", &file.to_string_lossy()]);
    assert!(out.contains("0 new, 0 updated, 7 unchanged"), "{out}");
    let lines: Vec<Value> = serde_json::from_str(TASKWARRIOR_EXPORT).unwrap();
    let jsonl: String = lines.iter().map(|v| format!("{v}\n")).collect();
    let out = with_stdin(&m, &["import", "-"], &jsonl);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("7 unchanged"));
    assert_eq!(m.cache_files(), before);

    // Completing the imported instance continues the series exactly once.
    m.ok(&["done", "f6a7b8c9"]);
    let next: Vec<Value> = serde_json::from_str(&m.ok(&[
        "list",
        "parent:e5f6a7b8-c9d0-4e1f-8a2b-3c4d5e6f7a8b",
        "--json",
    ]))
    .unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0]["due"], "2030-01-14T09:00:00.000Z");

    // A bad entry is named; the rest still imports.
    let bad = m.dir.path().join("bad.json");
    std::fs::write(&bad, r#"[{"uuid":"a1b2c3d4-0000-4000-8000-000000000000","description":"ok","entry":"20260101T000000Z"},{"uuid":"x/y","description":"bad"}]"#).unwrap();
    let out = m.run(&["import", &bad.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("bad.json"), "{}", stderr(&out));
    task(&m, "a1b2c3d4-0000-4000-8000-000000000000");
}

#[test]
fn export_then_import_round_trips() {
    let m = Machine::new();
    let a = add(
        &m,
        &[
            "pay",
            "rent",
            "project:home",
            "priority:M",
            "+bills",
            "due:2030-02-01",
        ],
    );
    let b = add(&m, &["file", "taxes", "scheduled:2030-03-01"]);
    m.ok(&["modify", &b, &format!("depends:{a}")]);
    m.ok(&["annotate", &a, "standing", "order"]);
    let c = add(&m, &["old", "thing"]);
    m.ok(&["done", &c]);
    let d = add(&m, &["gone"]);
    m.ok(&["delete", &d]);

    let exported = m.ok(&["export"]);
    let docs: Vec<Value> = serde_json::from_str(&exported).unwrap();
    assert_eq!(docs.len(), 4);
    for doc in &docs {
        let uuid = doc["uuid"].as_str().unwrap();
        assert_eq!(uuid.len(), 36, "Taskwarrior needs a UUID: {doc}");
        assert!(
            doc["entry"].as_str().unwrap().ends_with('Z')
                && !doc["entry"].as_str().unwrap().contains('-')
        );
        assert!(["pending", "completed", "deleted"].contains(&doc["status"].as_str().unwrap()));
    }
    let rent = docs
        .iter()
        .find(|d| d["hypertask_id"] == a.as_str())
        .unwrap();
    assert_eq!(rent["annotations"][0]["description"], "standing order");
    let taxes = docs
        .iter()
        .find(|d| d["hypertask_id"] == b.as_str())
        .unwrap();
    assert_eq!(taxes["depends"], json!([rent["uuid"]]));
    let filtered: Vec<Value> = serde_json::from_str(&m.ok(&["export", "project:home"])).unwrap();
    assert_eq!(filtered.len(), 1);

    // Back into the same cache: nothing changes.
    let file = m.dir.path().join("export.json");
    std::fs::write(&file, &exported).unwrap();
    let before = m.cache_files();
    let out = m.ok(&["import", &file.to_string_lossy()]);
    assert!(out.contains("0 new, 0 updated, 4 unchanged"), "{out}");
    assert_eq!(m.cache_files(), before);

    // Into a new machine: the same tasks, ids and values.
    let other = Machine::new();
    other.ok(&["import", &file.to_string_lossy()]);
    let strip = |mut t: Value| {
        let o = t.as_object_mut().unwrap();
        for k in [
            "field_updated_at",
            "created_at",
            "updated_at",
            "done",
            "deleted",
        ] {
            o.remove(k);
        }
        t
    };
    let mine: Vec<Value> = m.tasks().into_iter().map(strip).collect();
    let theirs: Vec<Value> = other.tasks().into_iter().map(strip).collect();
    assert_eq!(mine.len(), theirs.len());
    for t in &mine {
        let id = &t["id"];
        let o = theirs.iter().find(|x| &x["id"] == id).expect("same ids");
        let mut t = t.clone();
        let mut o = o.clone();
        // Annotation keys keep the second; Taskwarrior has no milliseconds.
        for doc in [&mut t, &mut o] {
            let map = doc.as_object_mut().unwrap();
            let notes: Vec<(String, Value)> = map
                .iter()
                .filter(|(k, _)| k.starts_with("annotation_"))
                .map(|(k, v)| (k[..k.len() - 3].to_owned(), v.clone()))
                .collect();
            map.retain(|k, _| !k.starts_with("annotation_"));
            map.extend(notes);
        }
        assert_eq!(t, o);
    }
}

#[test]
fn completions_and_man_page_come_from_the_argument_definitions() {
    let m = Machine::new();
    let bash = m.ok(&["completions", "bash"]);
    assert!(
        bash.contains("_hypertask") && bash.contains("annotate"),
        "{bash}"
    );
    // bash accepts it and registers the completion.
    let script = m.dir.path().join("ht.bash");
    std::fs::write(&script, &bash).unwrap();
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p hypertask",
            script.display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("hypertask"));
    assert!(m.ok(&["completions", "zsh"]).contains("#compdef hypertask"));
    assert!(m
        .ok(&["completions", "fish"])
        .contains("complete -c hypertask"));
    let man = m.ok(&["man"]);
    assert!(
        man.contains(".TH hypertask") && man.contains("undo"),
        "{man}"
    );
}

#[test]
fn purge_drops_old_tombstones_every_driver_has_and_sync_does_not_bring_them_back() {
    let (shared, a, b) = two_machines();
    let gone = add(&a, &["gone", "for", "good"]);
    let kept = add(&a, &["deleted", "but", "not", "synced"]);
    a.ok(&["delete", &gone]);
    a.ok(&["sync"]);
    b.ok(&["sync"]);
    a.ok(&["delete", &kept]);
    // `kept` was deleted after the last sync: the driver has not seen its tombstone.
    let out = a.ok(&["purge", "--days", "0"]);
    assert!(out.contains("purged 1 of 2"), "{out}");
    assert!(!a.cache_files().contains_key(&format!("{gone}.json")));
    assert!(a.cache_files().contains_key(&format!("{kept}.json")));
    // Syncing neither pulls the purged task back nor removes it upstream.
    a.ok(&["sync"]);
    a.ok(&["sync"]);
    assert!(a.tasks().iter().all(|t| t["id"] != gone.as_str()));
    assert!(shared.path().join(format!("{gone}.json")).exists());
    assert!(task(&b, &gone)["deleted"].is_string());
    // Younger tombstones stay.
    let out = a.ok(&["purge"]);
    assert!(out.contains("purged 0 of 1"), "{out}");
}

#[test]
fn colours_follow_the_flag_and_no_color() {
    let m = Machine::new();
    add(&m, &["late", "due:2020-01-01"]);
    add(&m, &["urgent", "priority:H"]);
    // `Machine` sets NO_COLOR; an explicit --color always still colours.
    let coloured = m.ok(&["list", "--color", "always"]);
    assert!(
        coloured.contains("\x1b[31m") && coloured.contains("late"),
        "{coloured:?}"
    );
    assert!(
        coloured.contains("\x1b[1m"),
        "high priority is bold: {coloured:?}"
    );
    for args in [vec!["list"], vec!["list", "--color", "never"]] {
        let plain = m.ok(&args);
        assert!(!plain.contains('\x1b'), "{args:?}: {plain:?}");
    }
}
