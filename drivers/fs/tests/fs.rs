//! Behaviour of the fs store on real directories: corrupt and foreign files, conflicted
//! copies, a missing directory, and where the index lives.

use std::fs;
use std::path::Path;

use hypertask_core::{
    merge_tasks, Batch, Change, Driver, ErrorKind, Listing, Registry, Store, StoreDriver, Task,
    TaskId, Write,
};
use hypertask_driver_fs::{FsConfig, FsStore};
use serde_json::json;

fn task(id: &str, description: &str) -> Task {
    Task::from_value(json!({
        "id": id, "description": description, "updated_at": "2026-01-01T00:00:00.000Z"
    }))
    .unwrap()
}

fn store(shared: &Path, data: &Path, create: bool) -> FsStore {
    let config = FsConfig {
        path: shared.to_owned(),
        create,
    };
    FsStore::new("box", &config, data).unwrap()
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

async fn create(s: &FsStore, t: &Task) {
    let out = s.put(vec![Write::new(t.clone(), None)]).await.unwrap();
    assert!(matches!(
        out[t.id()],
        Ok(hypertask_core::PutOutcome::Written(_))
    ));
}

#[tokio::test]
async fn corrupt_and_misnamed_files_are_reported_and_never_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let shared = tmp.path().join("shared");
    fs::create_dir(&shared).unwrap();
    let s = store(&shared, &tmp.path().join("data"), false);
    create(&s, &task("good", "fine")).await;
    fs::write(
        shared.join("broken.json"),
        b"{\"id\": \"broken\", \"due\": ",
    )
    .unwrap();
    fs::write(
        shared.join("named.json"),
        task("other", "x").to_pretty_json(),
    )
    .unwrap();
    fs::write(shared.join("notes.txt"), b"not a task").unwrap();
    fs::write(shared.join("my settings.json"), b"{}").unwrap();

    let inv = s.list().await.unwrap();
    assert_eq!(
        inv.entries.keys().map(TaskId::as_str).collect::<Vec<_>>(),
        ["good"]
    );
    let mut problems: Vec<(String, String)> = inv
        .problems
        .iter()
        .map(|p| (p.id.as_ref().unwrap().to_string(), p.error.to_string()))
        .collect();
    problems.sort();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert_eq!(problems[0].0, "broken");
    assert!(problems[0].1.contains("broken.json") && problems[0].1.contains("box"));
    assert_eq!(problems[1].0, "named");
    assert!(problems[1].1.contains("named.json") && problems[1].1.contains("'other'"));

    // A write onto either fails alone; the good task in the same batch is written.
    let driver = StoreDriver::new(s.clone());
    let answers = driver
        .resolve(Batch::from([
            (TaskId::new("broken").unwrap(), Some(task("broken", "new"))),
            (TaskId::new("named").unwrap(), Some(task("named", "new"))),
            (TaskId::new("fresh").unwrap(), Some(task("fresh", "new"))),
        ]))
        .await
        .unwrap();
    assert_eq!(
        answers[&TaskId::new("broken").unwrap()]
            .as_ref()
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidData
    );
    assert!(answers[&TaskId::new("named").unwrap()].is_err());
    assert!(answers[&TaskId::new("fresh").unwrap()].is_ok());
    assert_eq!(
        fs::read(shared.join("broken.json")).unwrap(),
        b"{\"id\": \"broken\", \"due\": "
    );
    assert_eq!(
        fs::read(shared.join("named.json")).unwrap(),
        task("other", "x").to_pretty_json()
    );
    assert_eq!(fs::read(shared.join("notes.txt")).unwrap(), b"not a task");
    assert_eq!(fs::read(shared.join("my settings.json")).unwrap(), b"{}");
}

#[tokio::test]
async fn conflicted_copies_are_merged_in_then_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let shared = tmp.path().join("shared");
    fs::create_dir(&shared).unwrap();
    let s = store(&shared, &tmp.path().join("data"), false);
    let base = task("abc", "original");
    create(&s, &base).await;

    // Two machines edited different fields; the cloud service kept one as a conflicted copy.
    let mut ours = base.clone();
    ours.edit(&[Change::AddTag("home".into())], chrono::Utc::now())
        .unwrap();
    let mut theirs = base.clone();
    theirs
        .edit(
            &[Change::Set("description".into(), json!("edited elsewhere"))],
            chrono::Utc::now(),
        )
        .unwrap();
    fs::write(shared.join("abc.json"), ours.to_pretty_json()).unwrap();
    let dropbox = "abc (Ann's conflicted copy 2026-01-02).json";
    fs::write(shared.join(dropbox), theirs.to_pretty_json()).unwrap();
    // A copy that holds another task is not a copy of `abc`: it is left alone.
    let stranger = "abc.sync-conflict-20260102-101010-XYZ.json";
    fs::write(
        shared.join(stranger),
        task("zzz", "stranger").to_pretty_json(),
    )
    .unwrap();

    let expected = merge_tasks(&ours, &theirs).unwrap();
    assert_eq!(expected.description(), "edited elsewhere");
    assert_eq!(expected.tags(), ["home"]);

    // Listing and reading report the merge and write nothing.
    let driver = StoreDriver::new(s.clone());
    let Listing::Changed(inv) = driver.hashes(None).await.unwrap() else {
        panic!()
    };
    assert!(inv.problems.is_empty());
    assert_eq!(inv.hashes[&TaskId::new("abc").unwrap()], expected.hash());
    let read = driver
        .resolve(Batch::from([(TaskId::new("abc").unwrap(), None)]))
        .await
        .unwrap();
    assert_eq!(
        read[&TaskId::new("abc").unwrap()]
            .as_ref()
            .unwrap()
            .as_ref(),
        Some(&expected)
    );
    assert!(shared.join(dropbox).exists());

    // Ending the sync folds the copy into the task file and removes it.
    driver.finish().await.unwrap();
    assert!(!shared.join(dropbox).exists());
    assert!(shared.join(stranger).exists());
    assert_eq!(
        fs::read(shared.join("abc.json")).unwrap(),
        expected.to_pretty_json()
    );

    // A write of a task with a copy stores the merge and removes the copy.
    let copy2 = "abc.sync-conflict-20260103-101010-XYZ.json";
    let mut later = expected.clone();
    later
        .edit(&[Change::AddTag("later".into())], chrono::Utc::now())
        .unwrap();
    fs::write(shared.join(copy2), later.to_pretty_json()).unwrap();
    let mut local = expected.clone();
    local
        .edit(
            &[Change::Set("due".into(), json!("2027-01-01T00:00:00Z"))],
            chrono::Utc::now(),
        )
        .unwrap();
    let out = driver
        .resolve(Batch::from([(local.id().clone(), Some(local.clone()))]))
        .await
        .unwrap();
    let stored = out[local.id()].as_ref().unwrap().clone().unwrap();
    assert_eq!(stored.tags(), ["home", "later"]);
    assert!(stored.get("due").is_some());
    assert!(!shared.join(copy2).exists());
    assert_eq!(
        fs::read(shared.join("abc.json")).unwrap(),
        stored.to_pretty_json()
    );
}

#[tokio::test]
async fn a_missing_directory_is_reported_unless_create_is_set() {
    let tmp = tempfile::tempdir().unwrap();
    let shared = tmp.path().join("Dropbox").join("tasks");
    let s = store(&shared, &tmp.path().join("data"), false);
    let e = s.list().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains(&shared.display().to_string()), "{e}");
    assert!(e.to_string().contains("create = true"), "{e}");
    let health = s.check().await.unwrap();
    assert!(!health.ok);
    let put = s.put(vec![Write::new(task("abc", "x"), None)]).await;
    assert!(put.is_err());
    assert!(
        !shared.exists(),
        "nothing is created without `create = true`"
    );

    let s = store(&shared, &tmp.path().join("data"), true);
    assert!(s.list().await.unwrap().entries.is_empty());
    assert!(s.check().await.unwrap().ok);
    assert!(!shared.exists(), "reading does not create the directory");
    create(&s, &task("abc", "x")).await;
    assert_eq!(s.list().await.unwrap().entries.len(), 1);
}

#[tokio::test]
async fn the_index_stays_out_of_the_shared_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let shared = tmp.path().join("shared");
    let data = tmp.path().join("data");
    fs::create_dir(&shared).unwrap();
    let s = store(&shared, &data, false);
    create(&s, &task("abc", "x")).await;
    s.list().await.unwrap();
    assert_eq!(files(&shared), [".hypertask.lock", "abc.json"]);
    assert_eq!(files(&data.join("fs-index")).len(), 1);
    assert!(s.check().await.unwrap().detail.contains("1 tasks"));
}

#[tokio::test]
async fn the_registry_builds_it_and_rejects_unknown_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let mut registry = Registry::new();
    hypertask_driver_fs::register(&mut registry);
    let spec = |options| hypertask_core::DriverSpec::new("box", "fs", options, tmp.path());
    let d = registry
        .build(&spec(json!({"path": tmp.path().join("s"), "create": true})))
        .unwrap();
    assert_eq!(d.info().kind, "fs");
    assert_eq!(d.info().name, "box");
    let e = registry
        .build(&spec(json!({"path": "x", "paht": "y"})))
        .unwrap_err();
    assert!(
        e.to_string().contains("paht") && e.to_string().contains("[drivers.box]"),
        "{e}"
    );
    let e = registry.build(&spec(json!({}))).unwrap_err();
    assert!(e.to_string().contains("path"), "{e}");
}

#[tokio::test]
async fn a_write_by_another_process_wakes_the_watch_of_the_directory() {
    use hypertask_core::Watch;
    use std::time::Duration;
    let tmp = tempfile::tempdir().unwrap();
    let shared = tmp.path().join("shared");
    fs::create_dir(&shared).unwrap();
    let watcher = store(&shared, &tmp.path().join("data-a"), false);
    let writer = store(&shared, &tmp.path().join("data-b"), false);
    // The first call answers once the watch is in place.
    assert_eq!(watcher.wait_for_change().await.unwrap(), Watch::Changed);
    let waiting = tokio::spawn({
        let watcher = watcher.clone();
        async move { watcher.wait_for_change().await }
    });
    create(&writer, &task("fresh", "from elsewhere")).await;
    let answer = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the watch answers after a write")
        .unwrap();
    assert_eq!(answer.unwrap(), Watch::Changed);

    // A directory that does not exist cannot be watched: an error naming the driver.
    let missing = store(&tmp.path().join("absent"), &tmp.path().join("data-c"), true);
    let e = missing.wait_for_change().await.unwrap_err();
    assert!(e.to_string().contains("box"), "{e}");
}
