//! The git driver over a network transport (`git://` served by `git daemon`): libgit2's push,
//! the server's rejection of a push that lost a race, and the whole conformance suite.

mod common;

use std::sync::{Arc, Mutex};

use chrono::Utc;
use common::{bare, driver, git, ref_of, Daemon, Dirs};
use hypertask_core::{
    async_trait, conformance::Harness, Change, Driver, PutOutcome, Store, Task, TaskId, Write,
};
use hypertask_driver_git::{GitConfig, GitStore};
use serde_json::json;

#[derive(Default)]
struct DaemonHarness {
    dirs: Dirs,
    daemons: Mutex<Vec<Daemon>>,
}

#[async_trait]
impl Harness for DaemonHarness {
    async fn clients(&self) -> (Arc<dyn Driver>, Arc<dyn Driver>) {
        let dir = self.dirs.fresh();
        let served = dir.join("served");
        bare(&served, "remote.git");
        let daemon = Daemon::start(&served);
        let url = daemon.url("remote.git");
        self.daemons.lock().unwrap().push(daemon);
        (
            driver("a", json!({"path": dir.join("a"), "remote": url}), &dir),
            driver("b", json!({"path": dir.join("b"), "remote": url}), &dir),
        )
    }
}

mod conformance {
    hypertask_core::conformance_tests!(super::DaemonHarness::default());
}

fn task(id: &str, v: serde_json::Value) -> Task {
    let mut doc = v;
    doc["id"] = json!(id);
    Task::from_value(doc).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_rejected_by_the_server_is_merged_and_pushed_again() {
    let tmp = tempfile::tempdir().unwrap();
    let served = tmp.path().join("served");
    let remote = bare(&served, "remote.git");
    let daemon = Daemon::start(&served);
    let store = |name: &str| {
        let config: GitConfig = serde_json::from_value(
            json!({"path": tmp.path().join(name), "remote": daemon.url("remote.git")}),
        )
        .unwrap();
        GitStore::new(name, &config, tmp.path()).unwrap()
    };
    let (a, b) = (store("a"), store("b"));
    let id = TaskId::new("t1").unwrap();
    let base = task(
        "t1",
        json!({"description": "base", "updated_at": "2026-01-01T00:00:00Z"}),
    );
    a.put(vec![Write {
        expected: None,
        task: base.clone(),
    }])
    .await
    .unwrap();
    let seen = b
        .get(std::slice::from_ref(&id))
        .await
        .unwrap()
        .remove(0)
        .unwrap()
        .unwrap();
    let mut ea = base.clone();
    ea.edit(&[Change::AddTag("a".into())], Utc::now()).unwrap();
    a.put(vec![Write {
        expected: Some(base.hash()),
        task: ea.clone(),
    }])
    .await
    .unwrap();
    let a_tip = ref_of(&remote, "main").unwrap();

    let mut eb = seen.clone();
    eb.edit(&[Change::AddTag("b".into())], Utc::now()).unwrap();
    let out = b
        .put(vec![Write {
            expected: Some(seen.hash()),
            task: eb.clone(),
        }])
        .await
        .unwrap();
    assert_eq!(out[0].as_ref().unwrap(), &PutOutcome::Written);

    let parents = git(&remote, &["rev-list", "--parents", "-n", "1", "main"]);
    let parents: Vec<&str> = parents.split_whitespace().skip(1).collect();
    assert_eq!(parents.len(), 2, "b pushed a merge commit");
    assert!(parents.contains(&a_tip.as_str()));
    let bytes = git(&remote, &["show", "main:tasks/t1.json"]);
    let merged = Task::from_json(bytes.as_bytes()).unwrap();
    assert!(
        merged.tags().contains(&"a") && merged.tags().contains(&"b"),
        "{merged:?}"
    );
    // A no-op finish pushes nothing.
    let tip = ref_of(&remote, "main");
    b.finish().await.unwrap();
    a.finish().await.unwrap();
    assert_eq!(ref_of(&remote, "main"), tip);
}
