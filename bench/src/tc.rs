//! The peer row: TaskChampion (the `taskchampion` crate, the storage and sync engine of
//! Taskwarrior 3) doing the hypertask rows' work on the same N tasks, measured as a process the
//! way `hypertask sync` is: `hypertask-bench tc-sync` opens an on-disk SQLite replica, syncs
//! once with TaskChampion's local server (SQLite in a directory) and exits. Filling and editing
//! a replica is setup and happens in this process, untimed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use hypertask_core::{Task, TaskId};
use taskchampion::storage::AccessMode;
use taskchampion::{Operations, Replica, ServerConfig, SqliteStorage, Status, Tag, Uuid};

use crate::floors::sync_all;
use crate::gen;
use crate::hypertask::RunError;
use crate::scenarios::{record_err, Bench};
use crate::stats::Outcome;
use crate::Recorder;

/// `avoid_snapshots` for every sync. TaskChampion's local server never asks for a snapshot
/// (its urgency is always "none") and refuses one, so the flag changes nothing there; `false`
/// is what Taskwarrior passes by default, so the peer runs as a user's `task sync` would.
const AVOID_SNAPSHOTS: bool = false;

/// The `taskchampion` release the rows measure (Cargo.lock holds the same).
pub const VERSION: &str = "3.1.0";

/// The row keys, in report order: `tc/<scenario>`, the scenarios of the hypertask rows.
pub const KEYS: [&str; 4] = ["tc/initial", "tc/pull", "tc/noop", "tc/incr"];

/// The TaskChampion uuid of a generated task: its 16-character id's bytes, so the mapping is
/// deterministic and injective.
fn uuid_of(id: &TaskId) -> Result<Uuid> {
    let bytes: [u8; 16] = id
        .as_str()
        .as_bytes()
        .try_into()
        .with_context(|| format!("task id {id} is not 16 bytes long"))?;
    Ok(Uuid::from_bytes(bytes))
}

fn timestamp(task: &Task, field: &str) -> Result<Option<DateTime<Utc>>> {
    task.get(field)
        .and_then(|v| v.as_str())
        .map(|s| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .with_context(|| format!("{field} of task {} is not RFC 3339", task.id()))
        })
        .transpose()
}

fn tag(name: &str) -> Result<Tag> {
    Tag::try_from(name).map_err(|e| anyhow::anyhow!("tag {name:?}: {e}"))
}

/// Opens (creating when missing) the on-disk replica in `dir`.
async fn open(dir: &Path) -> Result<Replica<SqliteStorage>> {
    std::fs::create_dir_all(dir)?;
    let storage = SqliteStorage::new(dir, AccessMode::ReadWrite, true)
        .await
        .with_context(|| format!("cannot open the TaskChampion replica in {}", dir.display()))?;
    Ok(Replica::new(storage))
}

/// The timed work of a TaskChampion row: open the replica in `replica`, sync it once with the
/// local server in `server` (both created when missing), exit (the `tc-sync` subcommand).
pub fn sync_once(replica: &Path, server: &Path) -> Result<()> {
    std::fs::create_dir_all(server)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut rep = open(replica).await?;
        let mut srv = ServerConfig::Local {
            server_dir: server.to_path_buf(),
        }
        .into_server()
        .await
        .with_context(|| format!("cannot open the local server in {}", server.display()))?;
        rep.sync(&mut srv, AVOID_SNAPSHOTS)
            .await
            .context("TaskChampion sync failed")
    })
}

/// Creates `tasks` in the replica in `dir` as pending tasks with the same fields: description,
/// both tags, `due`, the entry time, and the unknown field as a user-defined attribute.
async fn fill(dir: &Path, tasks: &[Task]) -> Result<()> {
    let mut rep = open(dir).await?;
    for chunk in tasks.chunks(10_000) {
        let mut ops = Operations::new();
        for t in chunk {
            let mut tc = rep.create_task(uuid_of(t.id())?, &mut ops).await?;
            tc.set_status(Status::Pending, &mut ops)?;
            tc.set_entry(timestamp(t, "created_at")?, &mut ops)?;
            tc.set_description(t.description().to_owned(), &mut ops)?;
            for name in t.tags() {
                tc.add_tag(&tag(name)?, &mut ops)?;
            }
            tc.set_due(timestamp(t, "due")?, &mut ops)?;
            if let Some(v) = t.get("x_estimate_minutes") {
                tc.set_user_defined_attribute("x_estimate_minutes", v.to_string(), &mut ops)?;
            }
        }
        rep.commit_operations(ops).await?;
    }
    Ok(())
}

/// The same 1% edit as `gen::edit_one_percent`: a new description and the tag `run<run>`.
async fn edit_one_percent(dir: &Path, ids: &[TaskId], run: usize) -> Result<usize> {
    let mut rep = open(dir).await?;
    let mut ops = Operations::new();
    let picked = gen::one_percent(ids, run);
    for id in &picked {
        let mut t = rep.get_task(uuid_of(id)?).await?.with_context(|| {
            format!("task {id} is missing from the replica in {}", dir.display())
        })?;
        let description = format!("{} (edited in run {run})", t.get_description());
        t.set_description(description, &mut ops)?;
        t.add_tag(&tag(&format!("run{run}"))?, &mut ops)?;
    }
    rep.commit_operations(ops).await?;
    Ok(picked.len())
}

async fn count(dir: &Path) -> Result<usize> {
    Ok(open(dir).await?.all_task_uuids().await?.len())
}

/// Copies the files of a replica directory (the filled template) into a fresh one.
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        std::fs::copy(e.path(), to.join(e.file_name()))?;
    }
    Ok(())
}

impl Bench<'_> {
    /// Runs `hypertask-bench tc-sync` (this binary) for a replica and a server directory.
    fn tc_sync(&self, replica: &Path, server: &Path, label: &str) -> Result<f64, RunError> {
        let exe = std::env::current_exe()
            .map_err(|e| RunError::Fail(format!("cannot find this benchmark's binary: {e}")))?;
        let mut cmd = self.ht.wrapped(&exe, label);
        cmd.arg("tc-sync")
            .arg("--replica")
            .arg(replica)
            .arg("--server")
            .arg(server)
            .env_remove("RUST_LOG");
        self.ht.time(cmd, &exe, label)
    }

    fn tc_count(&self, dir: &Path) -> Result<usize> {
        self.ht.rt.block_on(count(dir))
    }

    /// TaskChampion's rows for this N: the initial push, a new replica pulling, a no-op sync
    /// and a sync after 1% changed, each a `tc-sync` process.
    pub fn tc_rows(&self, rec: &mut Recorder) -> Result<()> {
        let n = self.tasks.len();
        let root = self.root.join("tc");
        let template = root.join("template");
        self.ht.rt.block_on(fill(&template, self.tasks))?;

        // A replica holding N tasks pushes to a fresh server.
        let mut samples = Vec::new();
        let mut server: Option<PathBuf> = None;
        for run in 0..self.runs {
            let a = root.join(format!("a-{run}"));
            let srv = root.join(format!("server-{run}"));
            copy_dir(&template, &a)?;
            std::fs::create_dir_all(&srv)?;
            sync_all();
            match self.tc_sync(&a, &srv, &format!("tc-initial-{run}-{n}")) {
                Ok(t) => samples.push(t),
                Err(e) => return self.tc_failed(rec, "tc/initial", e),
            }
            server = Some(srv);
        }
        rec.record("tc/initial", n, Outcome::Samples(samples));
        let srv = server.expect("at least one run");

        // A new replica pulls everything.
        let mut samples = Vec::new();
        let mut last: Option<PathBuf> = None;
        for run in 0..self.runs {
            let b = root.join(format!("b-{run}"));
            std::fs::create_dir_all(&b)?;
            sync_all();
            match self.tc_sync(&b, &srv, &format!("tc-pull-{run}-{n}")) {
                Ok(t) => samples.push(t),
                Err(e) => return self.tc_failed(rec, "tc/pull", e),
            }
            let have = self.tc_count(&b)?;
            if have != n {
                let why = format!("pulled {have} of {n} tasks");
                return self.tc_failed(rec, "tc/pull", RunError::Fail(why));
            }
            last = Some(b);
        }
        rec.record("tc/pull", n, Outcome::Samples(samples));
        let b = last.expect("at least one run");

        // A no-op sync.
        let mut samples = Vec::new();
        for run in 0..self.runs {
            match self.tc_sync(&b, &srv, &format!("tc-noop-{run}-{n}")) {
                Ok(t) => samples.push(t),
                Err(e) => return self.tc_failed(rec, "tc/noop", e),
            }
        }
        rec.record("tc/noop", n, Outcome::Samples(samples));

        // 1% changed in that replica, then a sync.
        let mut samples = Vec::new();
        for run in 0..self.runs {
            self.ht.rt.block_on(edit_one_percent(&b, &self.ids, run))?;
            sync_all();
            match self.tc_sync(&b, &srv, &format!("tc-incr-{run}-{n}")) {
                Ok(t) => samples.push(t),
                Err(e) => return self.tc_failed(rec, "tc/incr", e),
            }
        }
        rec.record("tc/incr", n, Outcome::Samples(samples));
        Ok(())
    }

    /// Records why `key` has no figure, and the rows after it as skipped.
    fn tc_failed(&self, rec: &mut Recorder, key: &str, e: RunError) -> Result<()> {
        let n = self.tasks.len();
        record_err(rec, key, n, e)?;
        let after = KEYS.iter().skip_while(|k| **k != key).skip(1);
        for k in after {
            rec.record(
                k,
                n,
                Outcome::Skipped(format!("{} failed", crate::report::label(key))),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replica `a` filled with `tasks` and pushed to the server `srv`, replica `b` pulled from it.
    fn pushed_and_pulled(
        tasks: &[Task],
    ) -> (
        tempfile::TempDir,
        tokio::runtime::Runtime,
        PathBuf,
        PathBuf,
        PathBuf,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let [a, b, srv] = ["a", "b", "srv"].map(|d| tmp.path().join(d));
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(fill(&a, tasks)).unwrap();
        sync_once(&a, &srv).unwrap();
        sync_once(&b, &srv).unwrap();
        (tmp, rt, a, b, srv)
    }

    #[test]
    fn the_reported_version_is_the_locked_one() {
        let lock = include_str!("../../Cargo.lock");
        let locked = format!("name = \"taskchampion\"\nversion = \"{VERSION}\"\n");
        assert!(
            lock.contains(&locked),
            "Cargo.lock holds another taskchampion"
        );
    }

    #[test]
    fn a_pushed_replica_reaches_a_new_one_with_every_field() {
        let tasks = gen::tasks(30, 9);
        let (_tmp, rt, _a, b, _srv) = pushed_and_pulled(&tasks);
        assert_eq!(rt.block_on(count(&b)).unwrap(), 30);

        let t = &tasks[4];
        let got = rt.block_on(async {
            let mut rep = open(&b).await.unwrap();
            rep.get_task(uuid_of(t.id()).unwrap())
                .await
                .unwrap()
                .unwrap()
        });
        assert_eq!(got.get_description(), t.description());
        assert_eq!(got.get_due(), timestamp(t, "due").unwrap());
        assert!(t.tags().iter().all(|n| got.has_tag(&tag(n).unwrap())));
        assert_eq!(
            got.get_user_defined_attribute("x_estimate_minutes"),
            Some(t.get("x_estimate_minutes").unwrap().to_string().as_str())
        );
    }

    #[test]
    fn an_edit_of_one_percent_travels_through_the_server() {
        let tasks = gen::tasks(200, 5);
        let ids: Vec<TaskId> = tasks.iter().map(|t| t.id().clone()).collect();
        let (_tmp, rt, a, b, srv) = pushed_and_pulled(&tasks);
        assert_eq!(rt.block_on(edit_one_percent(&b, &ids, 3)).unwrap(), 2);
        sync_once(&b, &srv).unwrap();
        sync_once(&a, &srv).unwrap();
        let edited = gen::one_percent(&ids, 3);
        let got = rt.block_on(async {
            let mut rep = open(&a).await.unwrap();
            rep.get_task(uuid_of(&edited[0]).unwrap())
                .await
                .unwrap()
                .unwrap()
        });
        assert!(got.get_description().ends_with("(edited in run 3)"));
        assert!(got.has_tag(&tag("run3").unwrap()));
    }
}
