//! Crash safety: the CLI is SIGKILLed at random points of large syncs, many times. After each
//! kill no task file is torn; the next sync completes and nothing is lost. Every figure
//! recorded is counted; the long run (`HYPERTASK_LONG=1`) makes 100 kills per driver kind.

use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use hypertask_core::{Change, Replica, TaskId};
use hypertask_integration_tests::{
    mongodb_uri, record, scaled, seed_tasks, toml_path, torn_files, unique_name, Machine, Rng,
};

const TASKS: usize = 3000;

/// Rounds of edits; each kills a sync on both machines.
fn rounds() -> usize {
    scaled(12, 50)
}

fn edit_some(data_dir: &std::path::Path, ids: &[TaskId], rng: &mut Rng, label: &str) {
    let replica = Replica::open(data_dir).unwrap();
    let lock = replica.lock(Duration::from_secs(30)).unwrap();
    let mut changed = Vec::new();
    for _ in 0..TASKS / 10 {
        let id = &ids[rng.below(ids.len())];
        let mut t = replica.get(id).unwrap().unwrap();
        t.edit(
            &[Change::Set("description".into(), label.into())],
            Utc::now(),
        )
        .unwrap();
        changed.push(t);
    }
    replica.put(&lock, &changed).unwrap();
}

fn kill_during(m: &Machine, args: &[&str], after: Duration) -> bool {
    let mut child = m
        .command()
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn hypertask");
    std::thread::sleep(after);
    let finished = child.try_wait().unwrap().is_some();
    let _ = child.kill();
    let _ = child.wait();
    !finished
}

/// Runs the trials against one upstream kind; `config` gives each machine its config and
/// `upstream_tasks` the directory of task files a machine's upstream keeps (checked for torn
/// files).
fn crash_trials(
    kind: &str,
    seed: u64,
    config: impl Fn(&Machine) -> String,
    upstream_tasks: impl Fn(&Machine) -> PathBuf,
) {
    let mut rng = Rng::new(seed);
    let (a, b) = (Machine::new(), Machine::new());
    a.write_config(&config(&a));
    b.write_config(&config(&b));
    let ids = seed_tasks(&a.data_dir(), TASKS, "crash");
    let (mut kills, mut trials, mut torn_total) = (0, 0, 0);
    let rounds = rounds();
    for trial in 0..rounds {
        edit_some(
            &a.data_dir(),
            &ids,
            &mut rng,
            &format!("edited in trial {trial}"),
        );
        for m in [&a, &b] {
            let delay = Duration::from_millis(20 + rng.below(700) as u64);
            kills += usize::from(kill_during(m, &["sync"], delay));
            trials += 1;
            let torn: Vec<_> = torn_files(&m.data_dir().join("tasks"))
                .into_iter()
                .chain(torn_files(&upstream_tasks(m)))
                .collect();
            if !torn.is_empty() {
                eprintln!("{kind} seed {seed} trial {trial}: torn files {torn:?}");
            }
            torn_total += torn.len();
        }
    }
    // Recovery: complete syncs bring everything everywhere.
    for m in [&a, &b, &a] {
        m.ok(&["sync"]);
    }
    let (fa, fb) = (a.cache_files(), b.cache_files());
    let lost = ids
        .iter()
        .filter(|id| {
            let name = format!("{id}.json");
            !fa.contains_key(&name) || !fb.contains_key(&name)
        })
        .count();
    let differing: Vec<&String> = fa
        .keys()
        .chain(fb.keys())
        .filter(|k| fa.get(*k) != fb.get(*k))
        .collect();
    if let Some(first) = differing.first() {
        for (n, m) in [("A", &a), ("B", &b)] {
            let desc = m.cache_files().get(*first).map(|b| {
                String::from_utf8_lossy(b)
                    .lines()
                    .filter(|l| l.contains("\"description\""))
                    .collect::<Vec<_>>()
                    .join(" ")
            });
            eprintln!("{n}: {first}: {desc:?}");
            let clone = m.dir.path().join("clone");
            let log = std::process::Command::new("git")
                .arg("-C")
                .arg(&clone)
                .args(["log", "--oneline", "-5"])
                .output()
                .unwrap();
            eprintln!("{n} log:\n{}", String::from_utf8_lossy(&log.stdout));
            let st = std::process::Command::new("git")
                .arg("-C")
                .arg(&clone)
                .args(["status", "--short"])
                .output()
                .unwrap();
            eprintln!(
                "{n} status: {} lines {}",
                String::from_utf8_lossy(&st.stdout).lines().count(),
                String::from_utf8_lossy(&st.stderr)
            );
            let out = m.run(&["sync"]);
            eprintln!(
                "{n} sync again: {} {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let last = format!("edited in trial {}", rounds - 1);
    let replica = Replica::open(a.data_dir()).unwrap();
    let edited = ids
        .iter()
        .filter(|id| {
            replica
                .get(id)
                .ok()
                .flatten()
                .is_some_and(|t| t.description() == last)
        })
        .count();
    record(
        &format!("crash-{kind}"),
        serde_json::json!({
            "tasks": TASKS, "trials": trials, "killed_mid_sync": kills,
            "torn_files": torn_total, "lost_tasks": lost, "differing_after_recovery": differing.len(),
            "last_round_edits_kept": edited, "seed": seed,
        }),
    );
    assert_eq!(torn_total, 0, "{kind} seed {seed}: torn files after kills");
    assert_eq!(lost, 0, "{kind} seed {seed}: tasks missing after recovery");
    assert!(
        differing.is_empty(),
        "{kind} seed {seed}: {} task files differ after recovery, e.g. {:?}",
        differing.len(),
        &differing[..differing.len().min(5)]
    );
    assert!(edited > 0, "the last trial's edits survived");
}

#[test]
fn sigkill_during_fs_syncs() {
    let shared = tempfile::tempdir().unwrap();
    let dir = shared.path().join("tasks");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = format!(
        "[drivers.shared]\ntype = \"fs\"\npath = {}\n",
        toml_path(&dir)
    );
    crash_trials("fs", 0x005e_edf5, |_| cfg.clone(), |_| dir.clone());
}

#[test]
fn sigkill_during_git_syncs() {
    let remote = tempfile::tempdir().unwrap();
    let bare = hypertask_integration_tests::bare_remote(remote.path());
    crash_trials(
        "git",
        0x05ee_d617,
        |m| {
            format!(
                "[drivers.repo]\ntype = \"git\"\npath = {}\nremote = {}\nbranch = \"main\"\n",
                toml_path(&m.dir.path().join("clone")),
                toml_path(&bare)
            )
        },
        // Each machine's working tree is checked after every kill; the bare remote through a
        // fresh clone at the end.
        |m| m.dir.path().join("clone/tasks"),
    );
    let check = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("git")
        .args(["clone", "-q"])
        .arg(&bare)
        .arg(check.path().join("c"))
        .status()
        .unwrap();
    assert!(status.success());
    let torn = torn_files(&check.path().join("c/tasks"));
    assert!(torn.is_empty(), "torn files in the remote: {torn:?}");
    assert_eq!(
        std::fs::read_dir(check.path().join("c/tasks"))
            .unwrap()
            .count(),
        TASKS,
        "every task reached the remote"
    );
}

#[test]
fn sigkill_during_mongodb_syncs() {
    // A document write is atomic on the server, so only the caches can tear.
    let collection = unique_name("crash");
    let uri = serde_json::to_string(&mongodb_uri()).unwrap();
    crash_trials(
        "mongodb",
        0x0005_eed0,
        |_| {
            format!(
                "[drivers.db]\ntype = \"mongodb\"\nuri = {uri}\ndatabase = \"hypertask_crash\"\ncollection = \"{collection}\"\ntimeout = 600\n"
            )
        },
        |m| m.dir.path().join("no-upstream-files"),
    );
}

#[test]
fn sigkill_the_server_mid_request() {
    use hypertask_integration_tests::Server;
    let mut rng = Rng::new(0x0bad_5eed);
    let store = tempfile::tempdir().unwrap();
    let store_dir = store.path().join("store");
    let server_machine = Machine::new();
    server_machine.write_config(&format!(
        "[server]\ntoken = \"crash\"\nstore = {{ type = \"fs\", path = {}, create = true }}\n",
        toml_path(&store_dir)
    ));
    let a = Machine::new();
    let ids = seed_tasks(&a.data_dir(), TASKS, "srv");
    let (mut kills, mut torn_total) = (0, 0);
    let trials = scaled(12, 100);
    for trial in 0..trials {
        let mut server = Server::start(&server_machine, "crash");
        a.write_config(&server.driver_table("server"));
        edit_some(
            &a.data_dir(),
            &ids,
            &mut rng,
            &format!("server trial {trial}"),
        );
        let mut client = a
            .command()
            .arg("sync")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(20 + rng.below(500) as u64));
        if client.try_wait().unwrap().is_none() {
            kills += 1;
        }
        // The server dies mid-request; the client sees a failed sync, never a torn file.
        let _ = server.child.kill();
        let _ = server.child.wait();
        let _ = client.wait();
        let torn: Vec<_> = torn_files(&store_dir)
            .into_iter()
            .chain(torn_files(&a.data_dir().join("tasks")))
            .collect();
        if !torn.is_empty() {
            eprintln!("server trial {trial}: torn files {torn:?}");
        }
        torn_total += torn.len();
    }
    let server = Server::start(&server_machine, "crash");
    a.write_config(&server.driver_table("server"));
    a.ok(&["sync"]);
    let b = Machine::new();
    b.write_config(&server.driver_table("server"));
    b.ok(&["sync"]);
    let (fa, fb) = (a.cache_files(), b.cache_files());
    let lost = fa.keys().filter(|k| !fb.contains_key(*k)).count() + TASKS.saturating_sub(fa.len());
    let differing = fa.iter().filter(|(k, v)| fb.get(*k) != Some(v)).count();
    record(
        "crash-server",
        serde_json::json!({
            "tasks": TASKS, "trials": trials, "killed_mid_sync": kills, "torn_files": torn_total,
            "lost_tasks": lost, "differing_after_recovery": differing,
        }),
    );
    assert_eq!(torn_total, 0, "torn files after server kills");
    assert_eq!((lost, differing), (0, 0), "nothing lost on the server");
}
