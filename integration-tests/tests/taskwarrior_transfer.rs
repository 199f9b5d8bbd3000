//! Taskwarrior's data through the real binary: a `task export` imports (and importing it again
//! changes nothing), and `export` writes what `task import` and `hypertask import` read back.

use std::process::Output;

use hypertask_integration_tests::Machine;
use serde_json::{json, Value};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
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

    let passport = m.task("2f1c7a4e-5b9d-4c1e-8f3a-1d2e3f4a5b6c");
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
    let flights = m.task("7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d");
    assert_eq!(flights["dep_2f1c7a4e-5b9d-4c1e-8f3a-1d2e3f4a5b6c"], "x");
    assert_eq!(
        m.task("c3d4e5f6-a7b8-4c9d-8e0f-1a2b3c4d5e6f")["done"],
        "2026-02-01T10:00:00.000Z"
    );
    assert_eq!(
        m.task("d4e5f6a7-b8c9-4d0e-9f1a-2b3c4d5e6f7a")["deleted"],
        "2026-01-15T10:00:00.000Z"
    );
    let template = m.task("e5f6a7b8-c9d0-4e1f-8a2b-3c4d5e6f7a8b");
    assert_eq!(template["status"], "recurring");
    let instance = m.task("f6a7b8c9-d0e1-4f2a-9b3c-4d5e6f7a8b9c");
    assert_eq!(instance["recur"], "1w");
    assert_eq!(instance["parent"], "e5f6a7b8-c9d0-4e1f-8a2b-3c4d5e6f7a8b");

    // Statuses as Taskwarrior had them: three pending listed, the template is not.
    let open = m.listed(&[]);
    assert_eq!(open.len(), 3, "{open:?}");
    assert_eq!(
        m.listed(&["+WAITING"]),
        ["0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e"]
    );
    assert_eq!(
        m.listed(&["+BLOCKED"]),
        ["7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d"]
    );
    assert_eq!(
        m.listed(&["status:recurring"]),
        ["e5f6a7b8-c9d0-4e1f-8a2b-3c4d5e6f7a8b"]
    );

    // Re-importing, as an array or one object per line, changes nothing.
    let before = m.cache_files();
    let out = m.ok(&["import", &file.to_string_lossy()]);
    assert!(out.contains("0 new, 0 updated, 7 unchanged"), "{out}");
    let lines: Vec<Value> = serde_json::from_str(TASKWARRIOR_EXPORT).unwrap();
    let jsonl: String = lines.iter().map(|v| format!("{v}\n")).collect();
    let out = m.run_with_stdin(&["import", "-"], &jsonl);
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
    m.task("a1b2c3d4-0000-4000-8000-000000000000");
}

#[test]
fn export_then_import_round_trips() {
    let m = Machine::new();
    let a = m.add(&[
        "pay",
        "rent",
        "project:home",
        "priority:M",
        "+bills",
        "due:2030-02-01",
    ]);
    let b = m.add(&["file", "taxes", "scheduled:2030-03-01"]);
    m.ok(&["modify", &b, &format!("depends:{a}")]);
    m.ok(&["annotate", &a, "standing", "order"]);
    let c = m.add(&["old", "thing"]);
    m.ok(&["done", &c]);
    let d = m.add(&["gone"]);
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
