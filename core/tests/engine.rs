//! The sync engine over real cache directories and in-memory drivers.

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use hypertask_core::{merge, Change, Checked, SyncOptions, Task, TaskId};

mod common;
use common::{mem, Node, Rng};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_two_drivers_random_edits_converge() {
    for seed in 1..=12u64 {
        let mut rng = Rng::seeded(seed);
        let nodes = [Node::new(), Node::new(), Node::new()];
        let (_, d1) = mem("d1");
        let (_, d2) = mem("d2");
        // Replica 0 only sees d1, replica 2 only d2, replica 1 both: a relay.
        let wiring: [Vec<Checked>; 3] = [
            vec![d1.clone()],
            vec![d1.clone(), d2.clone()],
            vec![d2.clone()],
        ];
        let mut history: BTreeMap<TaskId, Vec<Task>> = BTreeMap::new();
        let mut ids: Vec<TaskId> = Vec::new();
        let base = Utc::now();
        for step in 0..60i64 {
            let n = rng.below(3);
            let node = &nodes[n];
            let now = base + Duration::milliseconds(step * 7 - rng.below(20) as i64);
            if ids.is_empty() || rng.below(5) == 0 {
                let id = TaskId::generate();
                let mut t = Task::new(id.clone(), now);
                t.edit(
                    &[Change::Set(
                        "description".into(),
                        json!(format!("task {step}")),
                    )],
                    now,
                )
                .unwrap();
                node.put(&t);
                history.entry(id.clone()).or_default().push(t);
                ids.push(id);
                continue;
            }
            let id = ids[rng.below(ids.len())].clone();
            if node.replica.get(&id).unwrap().is_none() {
                // Not synced here yet: sync instead.
                node.sync(&wiring[n], SyncOptions::default()).await;
                continue;
            }
            let change = match rng.below(8) {
                0 => Change::Set("description".into(), json!(format!("edit {step} on {n}"))),
                1 => Change::AddTag(["work", "home", "urgent"][rng.below(3)].into()),
                2 => Change::RemoveTag(["work", "home", "urgent"][rng.below(3)].into()),
                3 => Change::Set("due".into(), json!("2027-01-01T00:00:00.000Z")),
                4 => Change::Set("deleted".into(), json!(now.to_rfc3339())),
                5 => Change::Clear("deleted".into()),
                6 => Change::Set("x-priority".into(), json!(rng.below(5))),
                _ => {
                    node.sync(&wiring[n], SyncOptions::default()).await;
                    continue;
                }
            };
            let t = node.edit(&id, &[change], now);
            history.entry(id).or_default().push(t);
        }
        // Enough syncs in relay order for everything to reach everyone.
        for _ in 0..2 {
            for n in [0, 1, 2, 1, 0] {
                let r = nodes[n]
                    .sync(
                        &wiring[n],
                        SyncOptions {
                            force: true,
                            ..Default::default()
                        },
                    )
                    .await;
                assert!(r.is_ok(), "seed {seed}: sync failed: {r:?}");
            }
        }
        let files0 = nodes[0].files();
        for (i, node) in nodes.iter().enumerate().skip(1) {
            assert_eq!(
                node.files(),
                files0,
                "seed {seed}: replica {i} differs from replica 0"
            );
        }
        for (id, states) in &history {
            let expected = states
                .iter()
                .fold(None, |acc: Option<Task>, t| {
                    merge(acc.as_ref(), Some(t)).unwrap()
                })
                .unwrap();
            let got = nodes[0].replica.get(id).unwrap().unwrap();
            assert_eq!(
                got, expected,
                "seed {seed}: task {id} is not the merge of every edit"
            );
        }
    }
}

#[tokio::test]
async fn concurrent_edits_to_different_fields_both_survive_and_losers_are_journaled() {
    let (a, b) = (Node::new(), Node::new());
    let (_, d) = mem("shared");
    let drivers = [d];
    let t0 = Utc::now();
    let id = TaskId::generate();
    let mut task = Task::new(id.clone(), t0);
    task.edit(&[Change::Set("description".into(), json!("original"))], t0)
        .unwrap();
    a.put(&task);
    a.sync(&drivers, SyncOptions::default()).await;
    let r = b.sync(&drivers, SyncOptions::default()).await;
    assert_eq!(r.drivers[0].pulled, 1);

    // Different fields: both survive.
    a.edit(
        &id,
        &[Change::Set("description".into(), json!("from a"))],
        t0 + Duration::seconds(1),
    );
    b.edit(
        &id,
        &[Change::AddTag("work".into())],
        t0 + Duration::seconds(2),
    );
    for node in [&a, &b, &a] {
        node.sync(&drivers, SyncOptions::default()).await;
    }
    let (ta, tb) = (
        a.replica.get(&id).unwrap().unwrap(),
        b.replica.get(&id).unwrap().unwrap(),
    );
    assert_eq!(ta, tb);
    assert_eq!(ta.description(), "from a");
    assert_eq!(ta.tags(), vec!["work"]);
    assert!(a.replica.conflicts().unwrap().is_empty());

    // Same field: the later edit wins; the loser's value is in its journal.
    a.edit(
        &id,
        &[Change::Set("description".into(), json!("a wins"))],
        t0 + Duration::seconds(20),
    );
    b.edit(
        &id,
        &[Change::Set("description".into(), json!("b loses"))],
        t0 + Duration::seconds(10),
    );
    a.sync(&drivers, SyncOptions::default()).await;
    let r = b.sync(&drivers, SyncOptions::default()).await;
    assert_eq!(r.drivers[0].merged + r.drivers[0].pulled, 1, "{r:?}");
    assert_eq!(b.replica.get(&id).unwrap().unwrap().description(), "a wins");
    let journal = b.replica.conflicts().unwrap();
    assert_eq!(journal.len(), 1, "{journal:?}");
    assert_eq!(journal[0].field, "description");
    assert_eq!(journal[0].lost, Some(json!("b loses")));
    assert_eq!(journal[0].kept, Some(json!("a wins")));
    assert_eq!(journal[0].driver, "shared");
}

#[tokio::test]
async fn no_op_sync_stops_at_the_root_hash_and_writes_nothing() {
    let a = Node::new();
    let (store, d) = mem("m");
    for i in 0..5 {
        a.put(&Task::from_value(json!({"id": format!("t{i}"), "description": "x"})).unwrap());
    }
    let r = a
        .sync(std::slice::from_ref(&d), SyncOptions::default())
        .await;
    assert_eq!(r.drivers[0].pushed, 5);
    assert_eq!(store.snapshot().len(), 5);
    let before = a.files();
    let r = a.sync(&[d], SyncOptions::default()).await;
    assert_eq!(
        (
            r.drivers[0].pushed,
            r.drivers[0].pulled,
            r.drivers[0].merged
        ),
        (0, 0, 0)
    );
    assert_eq!(r.rounds, 1);
    assert_eq!(a.files(), before);
}

#[tokio::test]
async fn dry_run_reports_and_writes_nothing_anywhere() {
    let (a, b) = (Node::new(), Node::new());
    let (store, d) = mem("m");
    a.put(&Task::from_value(json!({"id": "fromA", "description": "a"})).unwrap());
    b.put(&Task::from_value(json!({"id": "fromB", "description": "b"})).unwrap());
    b.sync(std::slice::from_ref(&d), SyncOptions::default())
        .await;
    let before_store = store.snapshot();
    let before_files = a.files();
    let r = a
        .sync(
            &[d],
            SyncOptions {
                dry_run: true,
                ..Default::default()
            },
        )
        .await;
    assert!(r.dry_run);
    assert_eq!((r.drivers[0].pushed, r.drivers[0].pulled), (1, 1), "{r:?}");
    assert_eq!(store.snapshot(), before_store);
    assert_eq!(a.files(), before_files);
}

#[tokio::test]
async fn mass_deletion_guard_stops_before_writing_and_force_goes_past() {
    let (a, b) = (Node::new(), Node::new());
    let (store, d) = mem("m");
    let drivers = [d];
    let now = Utc::now();
    let ids: Vec<TaskId> = (0..20)
        .map(|i| TaskId::new(format!("task{i}")).unwrap())
        .collect();
    for id in &ids {
        a.put(&Task::new(id.clone(), now));
    }
    a.sync(&drivers, SyncOptions::default()).await;
    b.sync(&drivers, SyncOptions::default()).await;
    for id in &ids[..15] {
        b.edit(
            id,
            &[Change::Set("deleted".into(), json!(now.to_rfc3339()))],
            now + Duration::seconds(1),
        );
    }
    // B pushing 15 of 20 deletions is refused on the driver's side.
    let r = b.sync(&drivers, SyncOptions::default()).await;
    let err = r.drivers[0].error.as_deref().expect("guard trips");
    assert!(
        err.contains("--force") && err.contains("15 of the 20 live"),
        "{err}"
    );
    assert!(
        store.snapshot().values().all(|t| !t.is_deleted()),
        "nothing was written"
    );
    let r = b
        .sync(
            &drivers,
            SyncOptions {
                force: true,
                ..Default::default()
            },
        )
        .await;
    assert!(r.is_ok(), "{r:?}");
    // A pulling them is refused on the local side, then forced.
    let r = a.sync(&drivers, SyncOptions::default()).await;
    assert!(
        r.drivers[0]
            .error
            .as_deref()
            .unwrap()
            .contains("local cache"),
        "{r:?}"
    );
    assert!(!a.replica.get(&ids[0]).unwrap().unwrap().is_deleted());
    a.sync(
        &drivers,
        SyncOptions {
            force: true,
            ..Default::default()
        },
    )
    .await;
    assert!(a.replica.get(&ids[0]).unwrap().unwrap().is_deleted());
}

#[tokio::test]
async fn a_corrupt_cache_file_is_quarantined_and_restored_from_the_upstream() {
    let (a, b) = (Node::new(), Node::new());
    let (_, d) = mem("m");
    let drivers = [d];
    for i in 0..3 {
        b.put(&Task::from_value(json!({"id": format!("t{i}"), "description": "b"})).unwrap());
    }
    b.sync(&drivers, SyncOptions::default()).await;
    let bad = a.replica.task_dir().dir().join("t1.json");
    std::fs::write(&bad, b"{ not json").unwrap();

    // A dry run names the file and moves nothing.
    let dry = SyncOptions {
        dry_run: true,
        ..Default::default()
    };
    let r = a.sync(&drivers, dry).await;
    assert!(
        r.local_skipped.iter().any(|s| s.contains("t1.json")),
        "{r:?}"
    );
    assert_eq!(std::fs::read(&bad).unwrap(), b"{ not json");

    let r = a.sync(&drivers, SyncOptions::default()).await;
    assert!(!r.is_ok(), "a quarantined file is reported: {r:?}");
    let note = r
        .local_skipped
        .iter()
        .find(|s| s.contains("t1") && s.contains("quarantine"))
        .unwrap_or_else(|| panic!("{r:?}"));
    let moved: Vec<_> = std::fs::read_dir(a.replica.data_dir().join("quarantine"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert!(note.contains(&moved[0].display().to_string()), "{note}");
    assert_eq!(
        std::fs::read(&moved[0]).unwrap(),
        b"{ not json",
        "kept byte for byte"
    );
    for i in 0..3 {
        let t = a
            .replica
            .get(&TaskId::new(format!("t{i}")).unwrap())
            .unwrap();
        assert_eq!(t.unwrap().description(), "b", "t{i} synced or restored");
    }
    // The next sync has nothing left to report.
    assert!(a.sync(&drivers, SyncOptions::default()).await.is_ok());
}

#[test]
fn concurrent_writers_never_tear_a_file_or_lose_a_task() {
    let node = Node::new();
    let id = TaskId::new("shared").unwrap();
    node.put(&Task::new(id.clone(), Utc::now()));
    let writers = 4;
    let per_writer = 25;
    std::thread::scope(|s| {
        for w in 0..writers {
            let replica = node.replica.clone();
            let id = id.clone();
            s.spawn(move || {
                for i in 0..per_writer {
                    let lock = replica.lock(std::time::Duration::from_secs(30)).unwrap();
                    let mut t = replica.get(&id).unwrap().unwrap();
                    t.edit(&[Change::AddTag(format!("w{w}i{i}"))], Utc::now())
                        .unwrap();
                    let own = Task::new(TaskId::new(format!("w{w}i{i}")).unwrap(), Utc::now());
                    replica.put(&lock, &[t, own]).unwrap();
                }
            });
        }
        // A reader that must never see a torn file.
        let replica = node.replica.clone();
        let id = id.clone();
        s.spawn(move || {
            for _ in 0..200 {
                let t = replica.get(&id).expect("never torn").unwrap();
                assert_eq!(t.id(), &id);
            }
        });
    });
    let t = node.replica.get(&id).unwrap().unwrap();
    assert_eq!(t.tags().len(), writers * per_writer, "no lost update");
    let scan = node.replica.scan().unwrap();
    assert!(scan.problems.is_empty());
    assert_eq!(scan.hashes.len(), 1 + writers * per_writer);
}
