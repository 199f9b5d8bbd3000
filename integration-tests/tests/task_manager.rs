//! The task manager a Taskwarrior user switches to, through the real binary: attributes as
//! fields, filters and virtual tags, working-set numbers, reopen, undo, recurrence and
//! annotations across replicas, completions, colours (Taskwarrior's import and export:
//! `taskwarrior_transfer.rs`).

use std::path::Path;
use std::process::Output;

use hypertask_integration_tests::{toml_path, Machine};
use serde_json::{json, Value};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
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
    let id = m.add(&[
        "pay",
        "rent",
        "project:home",
        "priority:H",
        "+bills",
        "scheduled:2030-01-01",
        "until:2031-01-01",
        "estimate:2.5",
        "size:S",
    ]);
    let t = m.task(&id);
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
    let t = m.task(&id);
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
    let lit = m.add(&["see", "--", "foo:bar", "+x", "-y"]);
    let t = m.task(&lit);
    assert_eq!(t["description"], "see foo:bar +x -y");
    assert!(t.get("tags").is_none() && t.get("foo").is_none());
}

#[test]
fn filters_and_virtual_tags_select_tasks() {
    let m = Machine::new();
    let garden = m.add(&[
        "dig",
        "beds",
        "project:home.garden",
        "+errand",
        "due:yesterday",
    ]);
    let rent = m.add(&["pay", "rent", "project:home", "priority:H", "due:tomorrow"]);
    let report = m.add(&["write", "report", "project:work", "due:today"]);
    let later = m.add(&["someday", "idea", "wait:tomorrow"]);
    let blocked = m.add(&["file", "taxes", "+errand"]);
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
    assert_eq!(set(m.listed(&["project:home"])), ids(&[&garden, &rent]));
    assert_eq!(m.listed(&["priority:H"]), [rent.as_str()]);
    assert_eq!(set(m.listed(&["+errand"])), ids(&[&garden, &blocked]));
    assert_eq!(m.listed(&["-errand", "rent"]), [rent.as_str()]);
    assert_eq!(m.listed(&["/^WRITE/"]), [report.as_str()]);
    assert_eq!(
        m.listed(&["standing"]),
        [rent.as_str()],
        "annotations are searched"
    );
    assert_eq!(m.listed(&["due.after:today"]), [rent.as_str()]);
    assert_eq!(set(m.listed(&["due.before:today"])), ids(&[&garden]));
    assert_eq!(set(m.listed(&["+OVERDUE"])), ids(&[&garden, &report]));
    assert_eq!(m.listed(&["+TODAY"]), [report.as_str()]);
    assert_eq!(m.listed(&["+TOMORROW"]), [rent.as_str()]);
    assert_eq!(m.listed(&["+ACTIVE"]), [report.as_str()]);
    assert_eq!(m.listed(&["+BLOCKED"]), [blocked.as_str()]);
    assert_eq!(m.listed(&["+BLOCKING"]), [rent.as_str()]);
    assert_eq!(m.listed(&["+WAITING"]), [later.as_str()]);
    assert!(!m.listed(&[]).contains(&later), "waiting tasks are hidden");
    m.ok(&["done", &garden]);
    assert_eq!(m.listed(&["+COMPLETED"]), [garden.as_str()]);
    assert_eq!(m.listed(&["status:completed"]), [garden.as_str()]);
    assert!(!m.listed(&["+errand"]).contains(&garden));

    // Urgency orders `next`: high priority, due soon and blocking first; blocked last.
    let order = m.listed(&[]);
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
        m.add(&["errand", &n.to_string(), "+errand", "project:old"]);
    }
    m.add(&["stay", "project:other"]);
    // No answer (or no) changes nothing.
    let out = m.run_with_stdin(&["done", "+errand"], "n\n");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("done 4 tasks?"), "{}", stderr(&out));
    assert_eq!(m.listed(&["+errand"]).len(), 4);
    let out = m.run_with_stdin(&["modify", "project:old", "project:new"], "");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(m.listed(&["project:new"]).len(), 0);
    // Yes, or --yes, goes ahead.
    let out = m.run_with_stdin(&["modify", "project:old", "project:new"], "y\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(m.listed(&["project:new"]).len(), 4);
    assert_eq!(m.listed(&["project:other"]).len(), 1);
    m.ok(&["done", "+errand", "--yes"]);
    assert_eq!(m.listed(&[]).len(), 1);
    // Taskwarrior's order works too.
    let n = m.add(&["one", "more"]);
    m.ok(&["list"]);
    m.ok(&["project:other", "modify", "+tagged"]);
    assert_eq!(m.listed(&["+tagged"]).len(), 1);
    m.ok(&[&n, "done"]);
    assert!(m.task(&n)["done"].is_string());
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
    let a = m.add(&["first"]);
    let b = m.add(&["second"]);
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
    let c = m.add(&["third"]);
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
    let id = m.add(&["water", "plants", "project:home.garden", "+green"]);
    m.ok(&["done", &id]);
    assert!(m.listed(&[]).is_empty());
    assert!(m.ok(&["completed"]).contains(&id));
    m.ok(&["reopen", &id]);
    let t = m.task(&id);
    assert!(t.get("done").is_none());
    assert!(
        t["field_updated_at"]["done"].is_string(),
        "the removal has a clock"
    );
    assert_eq!(m.listed(&[]), [id.as_str()]);

    m.ok(&["start", &id]);
    assert!(m.task(&id)["start"].is_string());
    m.ok(&["stop", &id]);
    assert!(m.task(&id).get("start").is_none());
    m.ok(&["append", &id, "and", "herbs"]);
    m.ok(&["prepend", &id, "please"]);
    assert_eq!(m.task(&id)["description"], "please water plants and herbs");

    let projects: Value = serde_json::from_str(&m.ok(&["projects", "--json"])).unwrap();
    assert_eq!(projects, json!({"home": 1, "home.garden": 1}));
    let tags: Value = serde_json::from_str(&m.ok(&["tags", "--json"])).unwrap();
    assert_eq!(tags, json!({"green": 1}));
    let info = m.ok(&["info", &id]);
    assert!(
        info.contains("urgency") && info.contains("project"),
        "{info}"
    );
    let later = m.add(&["later", "wait:2099-01-01"]);
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
    let t = m.task(&id);
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
    let id = a.add(&["draft", "letter", "project:home"]);
    a.ok(&["modify", &id, "final", "letter", "project:work", "+sent"]);
    let modified = a.task(&id);
    let out = a.ok(&["undo"]);
    assert!(out.contains("undid modify"), "{out}");
    let t = a.task(&id);
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
    assert!(b.task(&id)["done"].is_string());
    a.ok(&["undo"]);
    assert!(a.task(&id).get("done").is_none());
    a.ok(&["sync"]);
    b.ok(&["sync"]);
    assert!(b.task(&id).get("done").is_none());
    assert_eq!(b.listed(&[]), [id.as_str()]);

    // Undo of the add deletes the task; then the journal is empty.
    a.ok(&["undo"]);
    assert!(a.task(&id)["deleted"].is_string());
    let out = a.run(&["undo"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nothing to undo"));
}

#[test]
fn recurrence_completed_on_two_replicas_creates_exactly_one_next_instance() {
    let (_shared, a, b) = two_machines();
    let id = a.add(&["water", "plants", "recur:1w", "due:2030-01-07", "+home"]);
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
    let open_a = a.listed(&[]);
    assert_eq!(open_a.len(), 1, "exactly one next instance: {open_a:?}");
    assert_eq!(b.listed(&[]), open_a);
    assert_eq!(a.tasks().len(), 2);
    let next = a.task(&open_a[0]);
    assert_eq!(next["description"], "water plants");
    assert_eq!(next["recur"], "1w");
    assert_eq!(next["parent"], id.as_str());
    assert_eq!(next["tags"], json!(["home"]));
    let due = chrono::DateTime::parse_from_rfc3339(next["due"].as_str().unwrap()).unwrap();
    let first = chrono::DateTime::parse_from_rfc3339(a.task(&id)["due"].as_str().unwrap()).unwrap();
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
    let last = a.add(&[
        "last",
        "one",
        "recur:1w",
        "due:2030-01-07",
        "until:2030-01-10",
    ]);
    let out = a.ok(&["done", &last]);
    assert!(!out.contains("next instance"), "{out}");
    assert_eq!(a.listed(&[]).len(), 1);
}

#[test]
fn concurrent_annotations_on_two_replicas_both_survive() {
    let (_shared, a, b) = two_machines();
    let id = a.add(&["call", "the", "plumber"]);
    a.ok(&["sync"]);
    b.ok(&["sync"]);
    a.ok(&["annotate", &id, "number", "is", "in", "the", "drawer"]);
    b.ok(&["annotate", &id, "ask", "about", "the", "boiler"]);
    for _ in 0..2 {
        a.ok(&["sync"]);
        b.ok(&["sync"]);
    }
    let t = a.task(&id);
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
    let gone = a.add(&["gone", "for", "good"]);
    let kept = a.add(&["deleted", "but", "not", "synced"]);
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
    assert!(b.task(&gone)["deleted"].is_string());
    // Younger tombstones stay.
    let out = a.ok(&["purge"]);
    assert!(out.contains("purged 0 of 1"), "{out}");
}

#[test]
fn colours_follow_the_flag_and_no_color() {
    let m = Machine::new();
    m.add(&["late", "due:2020-01-01"]);
    m.add(&["urgent", "priority:H"]);
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
