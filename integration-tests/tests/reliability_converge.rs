//! Cross-driver convergence: generated scenarios (reproducible by seed) with 3–5 replicas, each
//! on a random subset of fs / git / http / mongodb upstreams that connects them all, random
//! edits through the real CLI and random sync order. Afterwards every replica is byte-identical
//! and equal to the merge of every edit.
//!
//! `HYPERTASK_SEEDS=N` runs N seeds (default 16, 1,000 in the long run); `HYPERTASK_SEED=S`
//! replays one (with the seeds before it that share its upstreams), and
//! `HYPERTASK_CONVERGE_TRACE=1` prints every step. Every figure recorded is counted by the test.

use std::cell::RefCell;
use std::collections::BTreeMap;

use hypertask_core::{merge, Task};
use hypertask_integration_tests::{
    bare_remote, mongodb_uri, record, scaled, toml_path, unique_name, Machine, Rng, Server,
};

const KINDS: [&str; 4] = ["fs", "git", "http", "mongodb"];

struct Upstreams {
    _dir: tempfile::TempDir,
    fs: std::path::PathBuf,
    bare: std::path::PathBuf,
    server: Server,
    _server_machine: Machine,
    mongo_uri: String,
    collection: String,
    /// Every state the CLI wrote for each task, by any seed sharing these upstreams: a task
    /// made by one seed may be edited by a later one.
    written: RefCell<BTreeMap<String, Vec<Task>>>,
}

impl Upstreams {
    fn new() -> Upstreams {
        let dir = tempfile::tempdir().unwrap();
        let fs = dir.path().join("shared");
        std::fs::create_dir_all(&fs).unwrap();
        let bare = bare_remote(dir.path());
        let server_machine = Machine::new();
        server_machine.write_config(&format!(
            "[server]\ntoken = \"converge-token\"\nstore = {{ type = \"fs\", path = {}, create = true }}\n",
            toml_path(&dir.path().join("server-store"))
        ));
        let server = Server::start(&server_machine, "converge-token");
        Upstreams {
            _dir: dir,
            fs,
            bare,
            server,
            _server_machine: server_machine,
            mongo_uri: mongodb_uri(),
            collection: unique_name("converge"),
            written: RefCell::default(),
        }
    }

    fn table(&self, kind: &str, m: &Machine) -> String {
        match kind {
            "fs" => format!("[drivers.fs]\ntype = \"fs\"\npath = {}\n", toml_path(&self.fs)),
            "git" => format!(
                "[drivers.git]\ntype = \"git\"\npath = {}\nremote = {}\n",
                toml_path(&m.dir.path().join("clone")),
                toml_path(&self.bare)
            ),
            "http" => self.server.driver_table("http"),
            "mongodb" => format!(
                "[drivers.mongodb]\ntype = \"mongodb\"\nuri = {}\ndatabase = \"hypertask_converge\"\ncollection = \"{}\"\n",
                serde_json::to_string(&self.mongo_uri).unwrap(),
                self.collection
            ),
            _ => unreachable!(),
        }
    }
}

/// Random driver subsets whose union graph connects every replica.
fn wiring(rng: &mut Rng, replicas: usize) -> Vec<Vec<usize>> {
    let mut sets: Vec<Vec<usize>> = (0..replicas)
        .map(|_| {
            let mut s: Vec<usize> = (0..KINDS.len()).filter(|_| rng.below(2) == 0).collect();
            if s.is_empty() {
                s.push(rng.below(KINDS.len()));
            }
            s
        })
        .collect();
    // Connect: chain each replica to the next through a shared driver when they share none
    // transitively (a simple union-find over replicas).
    let mut parent: Vec<usize> = (0..replicas).collect();
    fn find(p: &mut Vec<usize>, x: usize) -> usize {
        if p[x] != x {
            let r = find(p, p[x]);
            p[x] = r;
        }
        p[x]
    }
    for a in 0..replicas {
        for b in 0..replicas {
            if sets[a].iter().any(|k| sets[b].contains(k)) {
                let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
                parent[ra] = rb;
            }
        }
    }
    for i in 1..replicas {
        if find(&mut parent, i) != find(&mut parent, 0) {
            let k = sets[i][0];
            if !sets[0].contains(&k) {
                sets[0].push(k);
            }
            let (ri, r0) = (find(&mut parent, i), find(&mut parent, 0));
            parent[ri] = r0;
        }
    }
    sets
}

fn trace(seed: u64, step: usize, replica: usize, what: &str) {
    if std::env::var_os("HYPERTASK_CONVERGE_TRACE").is_some() {
        eprintln!("seed {seed} step {step} replica {replica}: {what}");
    }
}

/// The merge of `states`.
fn merge_all(states: &[Task]) -> Task {
    states
        .iter()
        .fold(None, |acc: Option<Task>, t| {
            merge(acc.as_ref(), Some(t)).unwrap()
        })
        .expect("at least one state")
}

fn read_task(m: &Machine, id: &str) -> Task {
    let bytes = std::fs::read(m.data_dir().join(format!("tasks/{id}.json"))).unwrap();
    Task::from_json(&bytes).unwrap()
}

/// What one scenario did and found, counted.
#[derive(Default)]
struct Outcome {
    replicas: usize,
    tasks: usize,
    edits: usize,
    syncs: usize,
    /// Replicas whose cache differs from replica 0's after the final syncs.
    differing_replicas: usize,
    /// Tasks edited in the scenario whose final state lost one of its edits, or holds
    /// something no edit wrote.
    not_merged: usize,
}

fn scenario(seed: u64, ups: &Upstreams) -> Outcome {
    let mut rng = Rng::new(seed);
    let n = 3 + rng.below(3);
    let sets = wiring(&mut rng, n);
    let machines: Vec<Machine> = (0..n).map(|_| Machine::new()).collect();
    for (m, set) in machines.iter().zip(&sets) {
        let cfg: String = set.iter().map(|&k| ups.table(KINDS[k], m) + "\n").collect();
        m.write_config(&cfg);
    }
    let mut history: BTreeMap<String, Vec<Task>> = BTreeMap::new();
    let mut known: Vec<Vec<String>> = vec![Vec::new(); n];
    let mut outcome = Outcome {
        replicas: n,
        ..Outcome::default()
    };
    let steps = 24;
    for step in 0..steps {
        let i = rng.below(n);
        let m = &machines[i];
        let op = if known[i].is_empty() { 0 } else { rng.below(9) };
        if op == 8 || (op > 0 && known[i].is_empty()) {
            trace(seed, step, i, "sync");
            let out = m.run(&["sync"]);
            outcome.syncs += 1;
            assert!(
                out.status.success(),
                "seed {seed}: sync failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            known[i] = m
                .cache_files()
                .keys()
                .map(|k| k.trim_end_matches(".json").to_owned())
                .collect();
            continue;
        }
        if op == 0 {
            let id = m
                .ok(&["add", &format!("task {step} from {i}"), "+new"])
                .trim()
                .to_owned();
            trace(seed, step, i, &format!("add -> {id}"));
            history
                .entry(id.clone())
                .or_default()
                .push(read_task(m, &id));
            known[i].push(id);
            outcome.edits += 1;
            continue;
        }
        let id = known[i][rng.below(known[i].len())].clone();
        let args: Vec<String> = match op {
            1 => vec!["modify".into(), id.clone(), format!("edited {step} on {i}")],
            2 => vec![
                "modify".into(),
                id.clone(),
                ["+work", "+home", "+urgent"][rng.below(3)].into(),
            ],
            3 => vec![
                "modify".into(),
                id.clone(),
                ["-work", "-home", "-new"][rng.below(3)].into(),
            ],
            4 => vec!["modify".into(), id.clone(), "due:2027-01-15".into()],
            5 => vec!["done".into(), id.clone()],
            6 => vec!["delete".into(), id.clone()],
            _ => vec!["restore".into(), id.clone()],
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        trace(seed, step, i, &format!("{args:?}"));
        let out = m.run(&args);
        assert!(
            out.status.success(),
            "seed {seed}: {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        history
            .entry(id.clone())
            .or_default()
            .push(read_task(m, &id));
        outcome.edits += 1;
    }
    // Rounds of syncs until one changes no cache: a change travels at least one hop per
    // round, and the longest path between replicas has n - 1 hops.
    for _ in 0..n + 1 {
        let before: Vec<_> = machines.iter().map(Machine::cache_files).collect();
        for (i, m) in machines.iter().enumerate() {
            let out = m.run(&["sync", "--force"]);
            outcome.syncs += 1;
            assert!(
                out.status.success(),
                "seed {seed}: final sync of replica {i} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if machines.iter().map(Machine::cache_files).eq(before) {
            break;
        }
    }
    let first = machines[0].cache_files();
    for (i, m) in machines.iter().enumerate().skip(1) {
        if m.cache_files() != first {
            eprintln!("seed {seed}: replica {i} differs (replay with HYPERTASK_SEED={seed})");
            outcome.differing_replicas += 1;
        }
    }
    let mut written = ups.written.borrow_mut();
    for (id, states) in &history {
        written
            .entry(id.clone())
            .or_default()
            .extend(states.iter().cloned());
    }
    for (id, states) in &history {
        let file = format!("{id}.json");
        if !first.contains_key(&file) {
            let holders: Vec<usize> = (0..n)
                .filter(|&i| machines[i].cache_files().contains_key(&file))
                .collect();
            let wiring: Vec<Vec<&str>> = sets
                .iter()
                .map(|s| s.iter().map(|&k| KINDS[k]).collect())
                .collect();
            eprintln!(
                "seed {seed}: task {id} ({} edits) is missing on replica 0; replicas holding it: \
                 {holders:?}; drivers per replica: {wiring:?}",
                states.len()
            );
            outcome.not_merged += 1;
            continue;
        }
        // The final state holds every edit made in this scenario, and nothing beyond what was
        // ever written to the task (an earlier seed's edit may or may not have reached these
        // replicas' upstreams).
        let found = read_task(&machines[0], id);
        let lost = states
            .iter()
            .find(|t| merge(Some(&found), Some(t)).unwrap().as_ref() != Some(&found));
        let everything = merge_all(&written[id]);
        let invented =
            merge(Some(&found), Some(&everything)).unwrap().as_ref() != Some(&everything);
        if lost.is_some() || invented {
            let json = |t: &Task| String::from_utf8_lossy(&t.canonical_bytes()).into_owned();
            eprintln!(
                "seed {seed}: task {id} {} (replay with HYPERTASK_SEED={seed})\n  found {}\n  {}",
                if invented {
                    "holds what no edit wrote"
                } else {
                    "lost an edit"
                },
                json(&found),
                match lost {
                    Some(t) => format!("lost  {}", json(t)),
                    None => format!("every edit merged {}", json(&everything)),
                }
            );
            outcome.not_merged += 1;
        }
    }
    outcome.tasks = history.len();
    outcome
}

/// Seeds that share one set of upstreams: enough for each scenario to meet what earlier ones
/// left behind, few enough that a sync's cost stays bounded over a long run.
const SEEDS_PER_UPSTREAMS: u64 = 20;

/// The first seed of `seed`'s group.
fn group_start(seed: u64) -> u64 {
    (seed.max(1) - 1) / SEEDS_PER_UPSTREAMS * SEEDS_PER_UPSTREAMS + 1
}

#[test]
fn replicas_on_random_driver_subsets_converge() {
    // Seeds share upstreams in groups (what earlier seeds left there is part of a scenario),
    // so replaying seed S runs its group from the start up to S.
    let seeds: Vec<u64> = match std::env::var("HYPERTASK_SEED") {
        Ok(s) => {
            let s: u64 = s.parse().expect("HYPERTASK_SEED is a number");
            (group_start(s)..=s).collect()
        }
        Err(_) => {
            let n: u64 = std::env::var("HYPERTASK_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(scaled(16, 1000) as u64);
            (1..=n).collect()
        }
    };
    let mut ups: Option<Upstreams> = None;
    let mut total = Outcome::default();
    let mut converged = 0;
    let mut failing_seeds = Vec::new();
    for &seed in &seeds {
        if ups.is_none() || group_start(seed) == seed {
            ups = Some(Upstreams::new());
        }
        eprintln!("convergence seed {seed} (replay with HYPERTASK_SEED={seed})");
        let o = scenario(seed, ups.as_ref().expect("made above"));
        if o.differing_replicas == 0 && o.not_merged == 0 {
            converged += 1;
        } else {
            failing_seeds.push(seed);
        }
        total.replicas += o.replicas;
        total.tasks += o.tasks;
        total.edits += o.edits;
        total.syncs += o.syncs;
        total.differing_replicas += o.differing_replicas;
        total.not_merged += o.not_merged;
    }
    record(
        "convergence",
        serde_json::json!({
            "scenarios": seeds.len(), "converged": converged, "replicas": total.replicas,
            "tasks": total.tasks, "edits": total.edits, "syncs": total.syncs,
            "differing_replicas": total.differing_replicas, "tasks_not_merged": total.not_merged,
            "drivers": KINDS,
        }),
    );
    assert!(
        failing_seeds.is_empty(),
        "scenarios that did not converge (replay with HYPERTASK_SEED=S): {failing_seeds:?}"
    );
}

#[test]
fn a_change_relays_from_a_to_c_through_b_in_one_sync_each() {
    let ups = Upstreams::new();
    let (a, b, c) = (Machine::new(), Machine::new(), Machine::new());
    a.write_config(&ups.table("fs", &a));
    b.write_config(&format!(
        "{}\n{}",
        ups.table("fs", &b),
        ups.table("http", &b)
    ));
    c.write_config(&ups.table("http", &c));
    let id = a.ok(&["add", "relayed", "+far"]).trim().to_owned();
    let hops = [&a, &b, &c];
    for m in hops {
        m.ok(&["sync"]);
    }
    let arrived = hops
        .iter()
        .filter(|m| m.data_dir().join(format!("tasks/{id}.json")).exists())
        .count();
    record(
        "relay",
        serde_json::json!({"replicas": hops.len(), "syncs": hops.len(), "replicas_holding_the_task": arrived}),
    );
    assert_eq!(read_task(&c, &id), read_task(&a, &id));
}

#[test]
fn unknown_fields_survive_every_driver() {
    let ups = Upstreams::new();
    let (mut checked, mut kept) = (0, 0);
    for kind in KINDS {
        let (a, b) = (Machine::new(), Machine::new());
        a.write_config(&ups.table(kind, &a));
        b.write_config(&ups.table(kind, &b));
        let id = format!("unknown{kind}");
        let doc = serde_json::json!({
            "id": id, "description": "from another client", "rank": 1.5, "estimate": 1e21,
            "color": "garden", "meta": {"z": [3, 2, 1], "a": null, "b": true},
            "updated_at": "2026-11-26T10:00:00.000Z"
        });
        std::fs::create_dir_all(a.data_dir().join("tasks")).unwrap();
        std::fs::write(
            a.data_dir().join(format!("tasks/{id}.json")),
            serde_json::to_vec(&doc).unwrap(),
        )
        .unwrap();
        a.ok(&["sync"]);
        b.ok(&["sync"]);
        b.ok(&["modify", &id, "+edited"]);
        b.ok(&["sync"]);
        a.ok(&["sync"]);
        let t = read_task(&a, &id);
        for field in ["rank", "estimate", "color", "meta"] {
            checked += 1;
            if t.get(field) == doc.get(field) {
                kept += 1;
            } else {
                eprintln!("{kind}: {field} did not survive: {:?}", t.get(field));
            }
        }
        assert!(t.tags().contains(&"edited"), "{kind}: the edit arrived");
    }
    record(
        "unknown-fields",
        serde_json::json!({"drivers": KINDS, "fields_checked": checked, "fields_kept": kept}),
    );
    assert_eq!(kept, checked, "every unknown field survived every driver");
}
