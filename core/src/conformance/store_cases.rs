//! Store-level cases: [`Store::put`] called directly, deterministic instead of relying on
//! races.

use super::*;

async fn store_of(h: &dyn Harness) -> Option<(Box<dyn Upstream>, Arc<dyn Store>)> {
    let up = h.upstream().await;
    let store = up.store().await?;
    store.begin(Access::Write).await.or_fail("begin");
    Some((up, store))
}

/// `get` answers every id asked, keyed by id, whatever the order asked.
pub async fn store_get_answers_every_id_in_any_order(h: &dyn Harness) -> Verdict {
    let Some((_up, s)) = store_of(h).await else {
        return Verdict::Skipped("no store-level access");
    };
    let tasks: Vec<Task> = ["sget-c", "sget-a", "sget-b"]
        .iter()
        .map(|n| t(n, json!({"description": *n})))
        .collect();
    let puts = s
        .put(tasks.iter().map(|t| Write::new(t.clone(), None)).collect())
        .await
        .or_fail("put");
    assert!(
        puts.values()
            .all(|p| matches!(p, Ok(PutOutcome::Written(_)))),
        "{puts:?}"
    );
    for order in [
        vec!["sget-c", "sget-missing", "sget-a", "sget-b"],
        vec!["sget-b", "sget-a", "sget-missing", "sget-c"],
    ] {
        let ids: Vec<TaskId> = order.iter().map(|n| id(n)).collect();
        let gets = s.get(&ids).await.or_fail("get");
        let asked: BTreeSet<&TaskId> = ids.iter().collect();
        assert_eq!(
            gets.keys().collect::<BTreeSet<_>>(),
            asked,
            "answers every id asked, no other"
        );
        assert!(gets[&id("sget-missing")].as_ref().unwrap().is_none());
        for task in &tasks {
            let stored = gets[task.id()].as_ref().unwrap().as_ref().expect("stored");
            assert_eq!(
                &stored.task,
                task,
                "get answered another task for {}",
                task.id()
            );
        }
    }
    s.finish().await.or_fail("finish");
    Verdict::Passed
}

/// Every listed entry carries the hash and version `get` returns for it.
pub async fn store_listing_matches_get(h: &dyn Harness) -> Verdict {
    let Some((_up, s)) = store_of(h).await else {
        return Verdict::Skipped("no store-level access");
    };
    let tasks: Vec<Task> = (0..3)
        .map(|i| {
            t(
                &format!("slist-{i}"),
                json!({"description": "listed", "n": i, "f": 1.0}),
            )
        })
        .collect();
    s.put(tasks.iter().map(|t| Write::new(t.clone(), None)).collect())
        .await
        .or_fail("put");
    let listing = s.list().await.or_fail("list");
    let ids: Vec<TaskId> = tasks.iter().map(|t| t.id().clone()).collect();
    let gets = s.get(&ids).await.or_fail("get");
    for task in &tasks {
        let entry = listing.entries.get(task.id()).expect("listed");
        let stored = gets[task.id()].as_ref().unwrap().as_ref().expect("stored");
        assert_eq!(entry.hash, task.hash(), "listed hash is the canonical hash");
        assert_eq!(
            entry.version, stored.version,
            "listed version is the one get returns"
        );
    }
    s.finish().await.or_fail("finish");
    Verdict::Passed
}

/// A write lands only over the version it was merged from; `None` only creates.
pub async fn store_put_is_compare_and_swap(h: &dyn Harness) -> Verdict {
    let Some((_up, s)) = store_of(h).await else {
        return Verdict::Skipped("no store-level access");
    };
    let v1 = t(
        "scas-1",
        json!({"description": "v1", "updated_at": "2026-03-01T00:00:00Z"}),
    );
    let v2 = t(
        "scas-1",
        json!({"description": "v2", "updated_at": "2026-03-02T00:00:00Z"}),
    );
    let v3 = t(
        "scas-1",
        json!({"description": "v3", "updated_at": "2026-03-03T00:00:00Z"}),
    );
    let put = |w: Write| {
        let s = s.clone();
        async move {
            let mut out = s.put(vec![w]).await.or_fail("put");
            out.remove(&id("scas-1"))
                .expect("answered by id")
                .or_fail("no error")
        }
    };
    let PutOutcome::Written(ver1) = put(Write::new(v1.clone(), None)).await else {
        panic!("creating an absent task must succeed");
    };
    assert_eq!(
        put(Write::new(v2.clone(), None)).await,
        PutOutcome::Conflict,
        "`expected: None` must only create"
    );
    let bogus = Version::new("not-a-version-of-this-store");
    assert_eq!(
        put(Write::new(v2.clone(), Some(bogus))).await,
        PutOutcome::Conflict,
        "a stale version must conflict"
    );
    let PutOutcome::Written(ver2) = put(Write::new(v2.clone(), Some(ver1.clone()))).await else {
        panic!("a write over the current version must succeed");
    };
    assert_eq!(
        put(Write::new(v3.clone(), Some(ver1))).await,
        PutOutcome::Conflict,
        "the replaced version is stale now"
    );
    let stored = s.get(&[id("scas-1")]).await.or_fail("get");
    let stored = stored[&id("scas-1")]
        .as_ref()
        .unwrap()
        .as_ref()
        .expect("stored");
    assert_eq!(
        stored.task, v2,
        "a conflicting write changed the stored task"
    );
    assert_eq!(stored.version, ver2);
    s.finish().await.or_fail("finish");
    Verdict::Passed
}

/// Writing the state already stored answers `Written` and changes nothing.
pub async fn store_put_of_the_same_state_changes_nothing(h: &dyn Harness) -> Verdict {
    let Some((_up, s)) = store_of(h).await else {
        return Verdict::Skipped("no store-level access");
    };
    let task = t("ssame-1", json!({"description": "once"}));
    s.put(vec![Write::new(task.clone(), None)])
        .await
        .or_fail("put");
    let before = s.list().await.or_fail("list").entries;
    let version = before[task.id()].version.clone();
    let again = s
        .put(vec![Write::new(task.clone(), Some(version))])
        .await
        .or_fail("put");
    assert!(
        matches!(again[task.id()], Ok(PutOutcome::Written(_))),
        "{again:?}"
    );
    assert_eq!(s.list().await.or_fail("list").entries, before);
    s.finish().await.or_fail("finish");
    Verdict::Passed
}

/// `finish` with nothing written and `check` both succeed on a healthy upstream.
pub async fn finish_and_check_succeed(h: &dyn Harness) -> Verdict {
    let up = h.upstream().await;
    let a = up.client().await;
    a.begin(Access::Write).await.or_fail("begin");
    a.finish().await.or_fail("finish with nothing written");
    let health = a.check().await.or_fail("check");
    assert!(
        health.ok,
        "a healthy upstream reports ok: {}",
        health.detail
    );
    assert!(!a.info().name.is_empty() && !a.info().kind.is_empty());
    Verdict::Passed
}
