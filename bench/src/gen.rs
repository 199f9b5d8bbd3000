//! Deterministic task sets of the issue's shape (~300 bytes: description, tags, due, an unknown
//! field), written straight into a task directory with core's `TaskDir::write_batch`.

use std::io;

use anyhow::{Context, Result};
use chrono::{DateTime, Duration, Utc};
use hypertask_core::files::TaskDir;
use hypertask_core::{Change, Task, TaskId};
use serde_json::json;

const ALPHABET: &[u8] = b"23456789abcdefghkmnpqrstwxyz";
const WORDS: &[&str] = &[
    "review",
    "quarterly",
    "report",
    "draft",
    "call",
    "plumber",
    "about",
    "kitchen",
    "sink",
    "renew",
    "passport",
    "before",
    "trip",
    "write",
    "release",
    "notes",
    "for",
    "next",
    "version",
    "book",
    "dentist",
    "appointment",
    "order",
    "printer",
    "toner",
    "pay",
    "electricity",
    "bill",
];
const TAGS: &[&str] = &[
    "work", "home", "errand", "phone", "reading", "finance", "health",
];

/// A xorshift64* generator: deterministic, so every run benchmarks the same bytes.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a non-zero seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// A 16-character id in the design's alphabet. The state is encoded injectively (28^16 > 2^64),
/// and xorshift never repeats a state within its period, so a set never holds duplicates.
fn id_from(mut v: u64) -> TaskId {
    let mut s = String::with_capacity(16);
    for _ in 0..16 {
        s.push(ALPHABET[(v % 28) as usize] as char);
        v /= 28;
    }
    TaskId::new(s).expect("generated ids are valid")
}

fn base_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-01-06T08:00:00Z")
        .expect("constant")
        .with_timezone(&Utc)
}

fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// `n` tasks, the same for the same seed.
pub fn tasks(n: usize, seed: u64) -> Vec<Task> {
    let mut rng = Rng::new(seed);
    let base = base_time();
    (0..n)
        .map(|i| {
            let id = id_from(rng.next_u64());
            let words: Vec<&str> = (0..4).map(|_| WORDS[rng.below(WORDS.len())]).collect();
            let created = base + Duration::seconds(i as i64);
            let due = created + Duration::days(1 + rng.below(60) as i64);
            let doc = json!({
                "id": id.as_str(),
                "created_at": ts(created),
                "updated_at": ts(created),
                "description": format!("{} #{i}", words.join(" ")),
                "tags": [TAGS[rng.below(TAGS.len())], "bench"],
                "due": ts(due),
                "x_estimate_minutes": 5 + rng.below(120),
            });
            Task::from_value(doc).expect("generated tasks are valid")
        })
        .collect()
}

/// Writes `tasks` into `dir` the way the cache writes them, creating it first.
pub fn write(dir: &TaskDir, tasks: &[Task]) -> io::Result<()> {
    dir.create()?;
    dir.write_batch(tasks)
}

/// Which of `ids` run `run` edits: every hundredth, a different slice per run (1%).
pub fn one_percent(ids: &[TaskId], run: usize) -> Vec<TaskId> {
    ids.iter()
        .enumerate()
        .filter(|(i, _)| i % 100 == run % 100)
        .map(|(_, id)| id.clone())
        .collect()
}

/// Edits 1% of the tasks in `dir` as a user would (`Task::edit`: a new description and a new
/// tag, clocks stamped) and writes them back with `write_batch`. Returns how many changed.
pub fn edit_one_percent(dir: &TaskDir, ids: &[TaskId], run: usize) -> Result<usize> {
    edit(dir, &one_percent(ids, run), run)
}

/// Edits ten tasks of `dir` (of the 1% run `run` would edit) as [`edit_one_percent`] does.
pub fn edit_ten(dir: &TaskDir, ids: &[TaskId], run: usize) -> Result<usize> {
    let mut chosen = one_percent(ids, run);
    chosen.truncate(10);
    edit(dir, &chosen, run)
}

fn edit(dir: &TaskDir, ids: &[TaskId], run: usize) -> Result<usize> {
    let now = Utc::now();
    let mut edited = Vec::new();
    for id in ids {
        let mut task = dir
            .read(id)
            .with_context(|| format!("reading {id}"))?
            .with_context(|| format!("task {id} is missing from {}", dir.dir().display()))?;
        task.edit(
            &[
                Change::Set(
                    "description".into(),
                    json!(format!("{} (edited in run {run})", task.description())),
                ),
                Change::AddTag(format!("run{run}")),
            ],
            now,
        )?;
        edited.push(task);
    }
    dir.write_batch(&edited)?;
    Ok(edited.len())
}

/// Mean size in bytes of the tasks' canonical JSON and of their files.
pub fn mean_sizes(tasks: &[Task]) -> (usize, usize) {
    if tasks.is_empty() {
        return (0, 0);
    }
    let canon: usize = tasks.iter().map(|t| t.canonical_bytes().len()).sum();
    let file: usize = tasks.iter().map(|t| t.to_pretty_json().len()).sum();
    (canon / tasks.len(), file / tasks.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hypertask_core::files::Durability;
    use std::collections::HashSet;

    #[test]
    fn task_sets_are_deterministic_distinct_and_of_the_issues_shape() {
        let a = tasks(500, 7);
        let b = tasks(500, 7);
        assert_eq!(a, b);
        let ids: HashSet<_> = a.iter().map(|t| t.id().clone()).collect();
        assert_eq!(ids.len(), 500);
        let t = &a[3];
        assert!(t.get("due").is_some());
        assert!(t.get("x_estimate_minutes").is_some(), "an unknown field");
        assert_eq!(t.tags().len(), 2);
        let (canon, _) = mean_sizes(&a);
        assert!((250..=500).contains(&canon), "canonical size {canon}");
    }

    #[test]
    fn one_percent_picks_a_different_hundredth_per_run() {
        let ids: Vec<TaskId> = tasks(1000, 1).iter().map(|t| t.id().clone()).collect();
        let r0 = one_percent(&ids, 0);
        let r1 = one_percent(&ids, 1);
        assert_eq!(r0.len(), 10);
        assert!(r0.iter().all(|id| !r1.contains(id)));
    }

    #[test]
    fn edits_change_exactly_one_percent_of_the_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = TaskDir::new(tmp.path().join("tasks"), None, Durability::None);
        let set = tasks(200, 3);
        write(&dir, &set).unwrap();
        let ids: Vec<TaskId> = set.iter().map(|t| t.id().clone()).collect();
        assert_eq!(edit_one_percent(&dir, &ids, 4).unwrap(), 2);
        let changed = set
            .iter()
            .filter(|t| dir.read(t.id()).unwrap().as_ref() != Some(*t))
            .count();
        assert_eq!(changed, 2);
    }
}
