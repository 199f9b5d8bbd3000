//! Crash safety: the CLI is SIGKILLed at random points of large syncs, many times. After each
//! kill no task file is torn; the next sync completes and nothing is lost.

use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use hypertask_core::{Change, Replica, TaskId};
use hypertask_integration_tests::{record, seed_tasks, toml_path, torn_files, Machine};

const TASKS: usize = 3000;
const TRIALS: usize = 12;

/// Deterministic xorshift, so a failing seed replays.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn edit_some(data_dir: &std::path::Path, ids: &[TaskId], rng: &mut Rng, label: &str) {
    let replica = Replica::open(data_dir).unwrap();
    let lock = replica.lock(Duration::from_secs(30)).unwrap();
    let mut changed = Vec::new();
    for _ in 0..TASKS / 10 {
        let id = &ids[rng.below(ids.len() as u64) as usize];
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
    let mut rng = Rng(seed);
    let (a, b) = (Machine::new(), Machine::new());
    a.write_config(&config(&a));
    b.write_config(&config(&b));
    let ids = seed_tasks(&a.data_dir(), TASKS, "crash");
    let mut kills = 0;
    for trial in 0..TRIALS {
        edit_some(
            &a.data_dir(),
            &ids,
            &mut rng,
            &format!("edited in trial {trial}"),
        );
        for m in [&a, &b] {
            let delay = Duration::from_millis(20 + rng.below(700));
            kills += usize::from(kill_during(m, &["sync"], delay));
            let torn: Vec<_> = torn_files(&m.data_dir().join("tasks"))
                .into_iter()
                .chain(torn_files(&upstream_tasks(m)))
                .collect();
            assert!(
                torn.is_empty(),
                "{kind} seed {seed} trial {trial}: torn files {torn:?}"
            );
        }
    }
    // Recovery: complete syncs bring everything everywhere.
    for m in [&a, &b, &a] {
        m.ok(&["sync"]);
    }
    assert_eq!(a.cache_files().len(), TASKS);
    assert_eq!(
        a.cache_files(),
        b.cache_files(),
        "{kind} seed {seed}: replicas differ after recovery"
    );
    let last = format!("edited in trial {}", TRIALS - 1);
    let replica = Replica::open(a.data_dir()).unwrap();
    let edited = ids
        .iter()
        .filter(|id| replica.get(id).unwrap().unwrap().description() == last)
        .count();
    assert!(edited > 0, "the last trial's edits survived");
    record(
        &format!("crash-{kind}"),
        serde_json::json!({
            "tasks": TASKS, "trials": TRIALS * 2, "killed_mid_sync": kills,
            "torn_files": 0, "lost_tasks": 0, "seed": seed,
        }),
    );
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
    let bare = remote.path().join("tasks.git");
    let status = std::process::Command::new("git")
        .args(["init", "--bare", "-q", "-b", "main"])
        .arg(&bare)
        .status()
        .unwrap();
    assert!(status.success());
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
