//! The physical floors each hypertask figure is compared with, measured in the same run:
//! atomic file writes the way the cache writes them, `cp -r`, `rsync -a`, the `git` CLI, a
//! trivial axum handler over loopback, and `insert_many` against the MongoDB test server.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use axum::extract::{DefaultBodyLimit, Path as UrlPath};
use axum::routing::{get, post};
use axum::{Json, Router};
use hypertask_core::files::{Durability, TaskDir};
use hypertask_core::{Task, TaskId};
use mongodb::bson::{Bson, Document};
use serde_json::{json, Map, Value};

use crate::gen;
use crate::stats::Outcome;
use crate::Recorder;

/// Runs a command to completion, returning its wall time; fails with its stderr.
pub fn timed(cmd: &mut Command) -> Result<f64> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    let secs = start.elapsed().as_secs_f64();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!("{cmd:?} failed: {}", err.trim());
    }
    Ok(secs)
}

/// A `git` command with a fixed identity, so commits work on any machine.
pub fn git(dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.invalid")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.invalid");
    c
}

/// Whether a program is on PATH.
pub fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn durability_name(d: Durability) -> &'static str {
    match d {
        Durability::Batch => "batch",
        Durability::PerFile => "per-file",
        Durability::None => "none",
    }
}

/// Every file-system floor for `tasks` (the per-file and no-flush writes only with
/// `durability`, the comparison of modes), and the git floors when `git` is measured at this
/// N, recorded in `rec`.
pub fn file_floors(
    rec: &mut Recorder,
    root: &Path,
    tasks: &[Task],
    runs: usize,
    git: bool,
    durability: bool,
) -> Result<()> {
    let n = tasks.len();
    let ids: Vec<TaskId> = tasks.iter().map(|t| t.id().clone()).collect();

    // N atomic writes, as the cache writes them, with each durability.
    let modes: &[Durability] = if durability {
        &[Durability::Batch, Durability::PerFile, Durability::None]
    } else {
        &[Durability::Batch]
    };
    for &d in modes {
        let key = format!("floor/write/{}", durability_name(d));
        // An fsync per file at 100k is minutes per run: two runs say enough.
        let r = if d == Durability::PerFile && n > 10_000 {
            runs.min(2)
        } else {
            runs
        };
        let mut samples = Vec::new();
        for run in 0..r {
            let dir = TaskDir::new(
                root.join(format!("write-{}-{run}", durability_name(d))),
                None,
                d,
            );
            dir.create()?;
            sync_all();
            let start = Instant::now();
            dir.write_batch(tasks)?;
            samples.push(start.elapsed().as_secs_f64());
        }
        rec.record(&key, n, Outcome::Samples(samples));
    }
    // The last run's directory of the default mode is kept as the source of the copies.
    let src = root.join(format!("write-batch-{}", runs.saturating_sub(1)));
    let src_dir = TaskDir::new(&src, None, Durability::None);

    // cp -r of the task directory.
    let mut samples = Vec::new();
    for run in 0..runs {
        let dst = root.join(format!("cp-{run}"));
        sync_all();
        samples.push(timed(Command::new("cp").arg("-r").arg(&src).arg(&dst))?);
    }
    rec.record("floor/cp", n, Outcome::Samples(samples));

    // rsync -a: a no-op, and after 1% changed.
    if have("rsync") {
        let dst = root.join("rsync");
        let copy = |dst: &Path| {
            let mut c = Command::new("rsync");
            c.arg("-a").arg(format!("{}/", src.display())).arg(dst);
            c
        };
        timed(&mut copy(&dst))?;
        let mut noop = Vec::new();
        for _ in 0..runs {
            noop.push(timed(&mut copy(&dst))?);
        }
        rec.record("floor/rsync-noop", n, Outcome::Samples(noop));
        let mut incr = Vec::new();
        for run in 0..runs {
            gen::edit_one_percent(&src_dir, &ids, run)?;
            sync_all();
            incr.push(timed(&mut copy(&dst))?);
        }
        rec.record("floor/rsync-1pct", n, Outcome::Samples(incr));
    } else {
        for key in ["floor/rsync-noop", "floor/rsync-1pct"] {
            rec.record(key, n, Outcome::Skipped("rsync is not installed".into()));
        }
    }

    // The git CLI: add + commit + push of the same files to a local bare remote.
    if !git {
        return Ok(());
    }
    if have("git") {
        git_floors(rec, root, tasks, &ids, runs)?;
    } else {
        for key in ["floor/git-commit", "floor/git-push", "floor/git-initial"] {
            rec.record(key, n, Outcome::Skipped("git is not installed".into()));
        }
    }
    Ok(())
}

fn git_floors(
    rec: &mut Recorder,
    root: &Path,
    tasks: &[Task],
    ids: &[TaskId],
    runs: usize,
) -> Result<()> {
    let n = tasks.len();
    let (mut commit, mut push, mut total) = (Vec::new(), Vec::new(), Vec::new());
    let mut last: Option<(PathBuf, PathBuf)> = None;
    for run in 0..runs {
        let bare = root.join(format!("git-remote-{run}.git"));
        let work = root.join(format!("git-work-{run}"));
        std::fs::create_dir_all(&work)?;
        timed(
            git(root)
                .args(["init", "-q", "--bare", "-b", "main"])
                .arg(&bare),
        )?;
        timed(git(&work).args(["init", "-q", "-b", "main"]))?;
        timed(git(&work).args(["remote", "add", "origin"]).arg(&bare))?;
        gen::write(
            &TaskDir::new(work.join("tasks"), None, Durability::None),
            tasks,
        )?;
        sync_all();
        let a = timed(git(&work).args(["add", "-A"]))?;
        let c = timed(git(&work).args(["commit", "-q", "-m", &format!("{n} tasks")]))?;
        let p = timed(git(&work).args(["push", "-q", "origin", "main"]))?;
        commit.push(a + c);
        push.push(p);
        total.push(a + c + p);
        last = Some((bare, work));
    }
    rec.record("floor/git-commit", n, Outcome::Samples(commit));
    rec.record("floor/git-push", n, Outcome::Samples(push));
    rec.record("floor/git-initial", n, Outcome::Samples(total));
    let (bare, work) = last.expect("at least one run");

    // A clone: the floor of a new replica pulling a git remote.
    let mut clone = Vec::new();
    for run in 0..runs {
        let dst = root.join(format!("git-clone-{run}"));
        sync_all();
        clone.push(timed(git(root).args(["clone", "-q"]).arg(&bare).arg(&dst))?);
    }
    rec.record("floor/git-clone", n, Outcome::Samples(clone));

    // A fetch with nothing new: the floor of a no-op sync.
    let mut fetch = Vec::new();
    for _ in 0..runs {
        fetch.push(timed(git(&work).args(["fetch", "-q", "origin"]))?);
    }
    rec.record("floor/git-fetch-noop", n, Outcome::Samples(fetch));

    // 1% changed: add + commit + push.
    let dir = TaskDir::new(work.join("tasks"), None, Durability::None);
    let mut incr = Vec::new();
    for run in 0..runs {
        gen::edit_one_percent(&dir, ids, run)?;
        sync_all();
        let a = timed(git(&work).args(["add", "-A"]))?;
        let c = timed(git(&work).args(["commit", "-q", "-m", "1%"]))?;
        let p = timed(git(&work).args(["push", "-q", "origin", "main"]))?;
        incr.push(a + c + p);
    }
    rec.record("floor/git-1pct", n, Outcome::Samples(incr));
    Ok(())
}

/// Flushes everything written so far, so a measured run does not pay for its setup's writes.
pub fn sync_all() {
    let _ = Command::new("sync").status();
}

fn states_body(tasks: &[Task]) -> Vec<u8> {
    let states: Map<String, Value> = tasks
        .iter()
        .map(|t| (t.id().to_string(), t.to_value()))
        .collect();
    serde_json::to_vec(&json!({ "client_states": states })).expect("JSON")
}

/// A trivial axum server on 127.0.0.1: it parses each body and answers a small document.
async fn trivial_server() -> Result<(String, tokio::task::JoinHandle<()>)> {
    let app = Router::new()
        .route(
            "/tasks",
            post(|Json(v): Json<Value>| async move {
                let n = v
                    .get("client_states")
                    .and_then(Value::as_object)
                    .map_or(0, Map::len);
                Json(json!({ "stored": n }))
            }),
        )
        .route(
            "/task/{id}",
            post(
                |UrlPath(id): UrlPath<String>, Json(v): Json<Value>| async move {
                    let ok = v.get("client_state").is_some();
                    Json(json!({ "server_state": null, "id": id, "ok": ok }))
                },
            ),
        )
        .route("/hashes", get(|| async { Json(json!({})) }))
        .layer(DefaultBodyLimit::max(512 << 20));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let handle = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, handle))
}

/// One batched POST of N tasks, N keep-alive POSTs, one round trip, and a batched POST of 1%.
pub async fn http_floors(rec: &mut Recorder, tasks: &[Task], runs: usize) -> Result<()> {
    let n = tasks.len();
    let (url, server) = trivial_server().await?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()?;
    let batch = |tasks: &[Task]| {
        // The client's work (serialising the body) is part of the floor.
        let body = states_body(tasks);
        client
            .post(format!("{url}/tasks"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    // Warm the connection once, untimed.
    client
        .get(format!("{url}/hashes"))
        .send()
        .await?
        .bytes()
        .await?;

    let mut one = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let resp = batch(tasks).await?.error_for_status()?;
        resp.bytes().await?;
        one.push(start.elapsed().as_secs_f64());
    }
    rec.record("floor/http-batch", n, Outcome::Samples(one));

    let one_pct: Vec<Task> = tasks.iter().step_by(100).cloned().collect();
    let mut small = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        batch(&one_pct).await?.error_for_status()?.bytes().await?;
        small.push(start.elapsed().as_secs_f64());
    }
    rec.record("floor/http-batch-1pct", n, Outcome::Samples(small));

    // A process that syncs opens its own connection: the round trip includes the connect.
    let mut rtt = Vec::new();
    for _ in 0..runs {
        let fresh = reqwest::Client::builder().no_proxy().build()?;
        let start = Instant::now();
        fresh
            .get(format!("{url}/hashes"))
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        rtt.push(start.elapsed().as_secs_f64());
    }
    rec.record("floor/http-rtt", n, Outcome::Samples(rtt));

    // N sequential POSTs on one kept-alive connection: v1.0 of the protocol.
    let r = if n > 10_000 { runs.min(2) } else { runs };
    let mut each = Vec::new();
    for _ in 0..r {
        let start = Instant::now();
        for t in tasks {
            let body = serde_json::to_vec(&json!({ "client_state": t })).expect("JSON");
            client
                .post(format!("{url}/task/{}", t.id()))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await?
                .error_for_status()?
                .bytes()
                .await?;
        }
        each.push(start.elapsed().as_secs_f64());
    }
    rec.record("floor/http-keepalive", n, Outcome::Samples(each));
    server.abort();
    Ok(())
}

/// The documents the mongodb driver stores: the task's fields, `_id` and `hash`.
fn documents(tasks: &[Task]) -> Result<Vec<Document>> {
    tasks
        .iter()
        .map(|t| {
            let mut d = to_document(t.as_map());
            d.insert("_id", t.id().as_str());
            d.insert("hash", t.hash().as_str());
            Ok(d)
        })
        .collect()
}

fn to_bson(v: &Value) -> Bson {
    match v {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Bson::Int64(i),
            None => Bson::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Bson::String(s.clone()),
        Value::Array(a) => Bson::Array(a.iter().map(to_bson).collect()),
        Value::Object(m) => Bson::Document(to_document(m)),
    }
}

fn to_document(m: &Map<String, Value>) -> Document {
    m.iter().map(|(k, v)| (k.clone(), to_bson(v))).collect()
}

/// A client of the test server, or why there is none.
pub async fn mongo_client(uri: &str) -> Result<mongodb::Client> {
    let mut opts = mongodb::options::ClientOptions::parse(uri).await?;
    opts.server_selection_timeout = Some(Duration::from_secs(5));
    opts.connect_timeout = Some(Duration::from_secs(5));
    let client = mongodb::Client::with_options(opts)?;
    client
        .database("admin")
        .run_command(mongodb::bson::doc! { "ping": 1 })
        .await?;
    Ok(client)
}

/// `insert_many` of N documents and of 1%, and one round trip, into fresh collections.
pub async fn mongo_floors(
    rec: &mut Recorder,
    client: &mongodb::Client,
    uri: &str,
    db: &str,
    tasks: &[Task],
    runs: usize,
) -> Result<()> {
    let n = tasks.len();
    let docs = documents(tasks)?;
    let one_pct: Vec<_> = docs.iter().step_by(100).cloned().collect();
    let database = client.database(db);
    let mut all = Vec::new();
    let mut find = Vec::new();
    let mut small = Vec::new();
    for run in 0..runs {
        let coll = database.collection::<mongodb::bson::Document>(&format!("floor_{n}_{run}"));
        let start = Instant::now();
        coll.insert_many(&docs).await?;
        all.push(start.elapsed().as_secs_f64());
        // Reading every document back with one query: the floor of a new replica's pull.
        let start = Instant::now();
        let mut cursor = coll.find(mongodb::bson::doc! {}).await?;
        let mut got = 0usize;
        while cursor.advance().await? {
            got += 1;
        }
        find.push(start.elapsed().as_secs_f64());
        if got != n {
            anyhow::bail!("find returned {got} of {n} documents");
        }
        let coll1 = database.collection::<mongodb::bson::Document>(&format!("floor1_{n}_{run}"));
        let start = Instant::now();
        coll1.insert_many(&one_pct).await?;
        small.push(start.elapsed().as_secs_f64());
        coll.drop().await?;
        coll1.drop().await?;
    }
    rec.record("floor/mongo-insert-many", n, Outcome::Samples(all));
    rec.record("floor/mongo-insert-many-1pct", n, Outcome::Samples(small));
    rec.record("floor/mongo-find", n, Outcome::Samples(find));
    // A process that syncs opens its own client: connect (handshake) plus one round trip.
    let mut rtt = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        mongo_client(uri).await?;
        rtt.push(start.elapsed().as_secs_f64());
    }
    rec.record("floor/mongo-rtt", n, Outcome::Samples(rtt));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_trivial_handler_parses_a_batch_and_answers_its_size() {
        let (url, server) = trivial_server().await.unwrap();
        let tasks = gen::tasks(3, 9);
        let resp: Value = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .post(format!("{url}/tasks"))
            .header("content-type", "application/json")
            .body(states_body(&tasks))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(resp, json!({ "stored": 3 }));
        server.abort();
    }

    #[test]
    fn documents_carry_id_hash_and_every_field() {
        let tasks = gen::tasks(2, 5);
        let docs = documents(&tasks).unwrap();
        assert_eq!(docs[0].get_str("_id").unwrap(), tasks[0].id().as_str());
        assert_eq!(docs[0].get_str("hash").unwrap(), tasks[0].hash().as_str());
        assert!(docs[0].contains_key("x_estimate_minutes"));
    }
}
