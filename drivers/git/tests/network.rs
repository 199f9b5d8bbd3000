//! The git driver over a network transport (`git://` served by `git daemon`): the push,
//! the server's rejection of a push that lost a race, and the whole conformance suite.

mod common;

use std::sync::Mutex;

use chrono::Utc;
use common::{bare, git, ref_of, stored, task, Daemon, Dirs};
use hypertask_core::conformance::{Harness, Upstream};
use hypertask_core::{async_trait, Change, PutOutcome, Store, Task, TaskId, Version, Write};
use hypertask_driver_git::{GitConfig, GitStore};
use serde_json::json;

#[derive(Default)]
struct DaemonHarness {
    dirs: Dirs,
    daemons: Mutex<Vec<Daemon>>,
}

#[async_trait]
impl Harness for DaemonHarness {
    async fn upstream(&self) -> Box<dyn Upstream> {
        let dir = self.dirs.fresh();
        let served = dir.join("served");
        bare(&served, "remote.git");
        let daemon = Daemon::start(&served);
        let url = daemon.url("remote.git");
        self.daemons.lock().unwrap().push(daemon);
        Box::new(common::RemoteUpstream::new(dir, url))
    }
}

mod conformance {
    hypertask_core::conformance_tests!(super::DaemonHarness::default());
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
    a.put(vec![Write::new(base.clone(), None)]).await.unwrap();
    a.finish().await.unwrap();
    let seen = stored(&b, &id).await;
    let mut ea = base.clone();
    ea.edit(&[Change::AddTag("a".into())], Utc::now()).unwrap();
    a.put(vec![Write::new(
        ea.clone(),
        Some(Version::of_hash(&base.hash())),
    )])
    .await
    .unwrap();
    a.finish().await.unwrap();
    let a_tip = ref_of(&remote, "main").unwrap();

    let mut eb = seen.clone();
    eb.edit(&[Change::AddTag("b".into())], Utc::now()).unwrap();
    let out = b
        .put(vec![Write::new(
            eb.clone(),
            Some(Version::of_hash(&seen.hash())),
        )])
        .await
        .unwrap();
    assert!(matches!(out[&id], Ok(PutOutcome::Written(_))), "{out:?}");
    // The sync's one commit is pushed at its end; the push loses the race and is merged.
    b.finish().await.unwrap();

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
