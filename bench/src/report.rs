//! The report: the issues' targets with ratios, every row against its floor, the
//! durability comparison, and how each figure grows with N.

use std::fmt::Write as _;

use crate::hypertask::Kind;
pub use crate::machine::Environment;
use crate::stats::{fmt_n, fmt_ratio, fmt_secs, summarize, Outcome};
use crate::Recorder;

/// A human label for a row key.
pub fn label(key: &str) -> String {
    let fixed = match key {
        "floor/write/batch" => "N atomic writes, batch durability",
        "floor/write/per-file" => "N atomic writes, fsync per file",
        "floor/write/none" => "N atomic writes, no fsync",
        "floor/cp" => "cp -r of the task dir",
        "floor/rsync-noop" => "rsync -a, no-op",
        "floor/rsync-1pct" => "rsync -a, 1% changed",
        "floor/git-commit" => "git add -A && git commit",
        "floor/git-push" => "git push (local bare)",
        "floor/git-initial" => "git add+commit+push",
        "floor/git-clone" => "git clone (local bare)",
        "floor/git-fetch-noop" => "git fetch, no-op",
        "floor/git-1pct" => "git add+commit+push, 1%",
        "floor/http-batch" => "one batched POST of N",
        "floor/http-batch-1pct" => "one batched POST of 1%",
        "floor/http-rtt" => "connect + one HTTP round trip",
        "floor/http-keepalive" => "N keep-alive POSTs",
        "floor/mongo-insert-many" => "insert_many of N docs",
        "floor/mongo-insert-many-1pct" => "insert_many of 1%",
        "floor/mongo-find" => "find of all N docs (one query)",
        "floor/mongo-rtt" => "connect + one MongoDB ping",
        "ht/startup" => "hypertask --version (process)",
        "ht/fs/initial-per-file" => "hypertask fs initial, per-file",
        "ht/fs/initial-none" => "hypertask fs initial, none",
        _ => "",
    };
    if !fixed.is_empty() {
        return fixed.to_owned();
    }
    if let Some(scenario) = key.strip_prefix("tc/") {
        return format!("TaskChampion: {}", scenario_label(scenario));
    }
    if let Some(rest) = key.strip_prefix("ht/") {
        let (driver, scenario) = rest.split_once('/').unwrap_or((rest, ""));
        return format!("hypertask {driver}: {}", scenario_label(scenario));
    }
    key.to_owned()
}

fn scenario_label(scenario: &str) -> &str {
    match scenario {
        "initial" => "initial push",
        "pull" => "new replica pulls all",
        "noop" => "no-op sync",
        "incr" => "sync after 1% changed",
        "ten" => "sync after 10 changed",
        s => s,
    }
}

/// The TaskChampion row doing the same work as a hypertask row (the fs durability variants are
/// initial pushes too).
pub fn peer_of(key: &str) -> Option<&'static str> {
    let scenario = key.strip_prefix("ht/")?.split_once('/')?.1;
    let base = scenario.split_once('-').map_or(scenario, |(b, _)| b);
    crate::tc::KEYS
        .into_iter()
        .find(|k| k.strip_prefix("tc/") == Some(base))
}

/// The floor each hypertask row is compared with.
pub fn floor_of(key: &str) -> Option<&'static str> {
    if !key.starts_with("ht/") {
        return None;
    }
    Some(match key {
        "ht/fs/initial" | "ht/fs/initial-per-file" | "ht/fs/initial-none" => "floor/write/batch",
        "ht/fs/noop" => "floor/rsync-noop",
        "ht/fs/incr" => "floor/rsync-1pct",
        "ht/git/initial" => "floor/git-initial",
        "ht/git/pull" => "floor/git-clone",
        "ht/git/noop" => "floor/git-fetch-noop",
        "ht/git/incr" => "floor/git-1pct",
        "ht/http/initial" => "floor/http-batch",
        "ht/http/noop" => "floor/http-rtt",
        "ht/http/incr" => "floor/http-batch-1pct",
        "ht/mongodb/initial" => "floor/mongo-insert-many",
        "ht/mongodb/noop" => "floor/mongo-rtt",
        "ht/mongodb/pull" => "floor/mongo-find",
        "ht/mongodb/incr" => "floor/mongo-insert-many-1pct",
        k if k.ends_with("/pull") => "floor/write/batch",
        _ => return None,
    })
}

/// A target from an issue, judged at one N.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// At most this many seconds.
    Abs(f64),
    /// At most this multiple of the named floor row (the issue's own yardstick, which is not
    /// always the row's general floor: the HTTP push and pull are held to `cp -r`).
    Ratio(&'static str, f64),
    /// At most this multiple of TaskChampion doing the same work.
    Peer(f64),
    /// At most this multiple of the same row at 1k.
    Growth(f64),
}

struct IssueRow {
    issue: u32,
    work: &'static str,
    key: &'static str,
    target: Target,
    /// The N the target is stated for.
    at: usize,
}

/// The targets of issues 15 (sync cost) and 14 (git), as their texts state them.
const ISSUE: &[IssueRow] = &[
    IssueRow {
        issue: 15,
        work: "HTTP push to a fresh `hypertask serve`",
        key: "ht/http/initial",
        target: Target::Ratio("floor/cp", 1.0),
        at: 10_000,
    },
    IssueRow {
        issue: 15,
        work: "HTTP push to a fresh `hypertask serve`",
        key: "ht/http/initial",
        target: Target::Peer(0.5),
        at: 10_000,
    },
    IssueRow {
        issue: 15,
        work: "new replica pulls over HTTP",
        key: "ht/http/pull",
        target: Target::Ratio("floor/cp", 1.5),
        at: 10_000,
    },
    IssueRow {
        issue: 15,
        work: "no-op sync over HTTP",
        key: "ht/http/noop",
        target: Target::Abs(0.020),
        at: 10_000,
    },
    IssueRow {
        issue: 15,
        work: "no-op sync over HTTP",
        key: "ht/http/noop",
        target: Target::Growth(1.5),
        at: 100_000,
    },
    IssueRow {
        issue: 15,
        work: "10 tasks changed, HTTP",
        key: "ht/http/ten",
        target: Target::Abs(0.1),
        at: 100_000,
    },
    IssueRow {
        issue: 15,
        work: "fs no-op",
        key: "ht/fs/noop",
        target: Target::Ratio("floor/rsync-noop", 1.0),
        at: 10_000,
    },
    IssueRow {
        issue: 15,
        work: "MongoDB pull",
        key: "ht/mongodb/pull",
        target: Target::Ratio("floor/mongo-find", 2.0),
        at: 10_000,
    },
    IssueRow {
        issue: 14,
        work: "git, initial incl. push",
        key: "ht/git/initial",
        target: Target::Ratio("floor/git-initial", 1.0),
        at: 10_000,
    },
    IssueRow {
        issue: 14,
        work: "git, new replica",
        key: "ht/git/pull",
        target: Target::Ratio("floor/git-clone", 1.5),
        at: 10_000,
    },
    IssueRow {
        issue: 14,
        work: "git, 1% changed",
        key: "ht/git/incr",
        target: Target::Ratio("floor/git-1pct", 1.5),
        at: 10_000,
    },
    IssueRow {
        issue: 14,
        work: "git, no-op",
        key: "ht/git/noop",
        target: Target::Ratio("floor/git-fetch-noop", 3.0),
        at: 10_000,
    },
];

fn cell(rec: &Recorder, key: &str, n: usize) -> String {
    match rec.outcome(key, n) {
        None => "–".into(),
        Some(Outcome::Samples(s)) => match summarize(s) {
            Some(m) if s.len() > 1 => format!(
                "{} ({}–{})",
                fmt_secs(m.median),
                fmt_secs(m.min),
                fmt_secs(m.max)
            ),
            Some(m) => fmt_secs(m.median),
            None => "–".into(),
        },
        Some(Outcome::Skipped(why)) => format!("skipped: {}", escape(why)),
        Some(Outcome::Failed(why)) => format!("FAILED: {}", escape(why)),
    }
}

fn escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn ratio(rec: &Recorder, key: &str, floor: &str, n: usize) -> Option<f64> {
    let a = rec.median(key, n)?;
    let b = rec.median(floor, n)?;
    (b > 0.0).then(|| a / b)
}

fn growth(rec: &Recorder, key: &str, sizes: &[usize]) -> String {
    let mut parts = Vec::new();
    for w in sizes.windows(2) {
        if let (Some(a), Some(b)) = (rec.median(key, w[0]), rec.median(key, w[1])) {
            if a > 0.0 {
                parts.push(format!("{}→{}: ×{:.1}", fmt_n(w[0]), fmt_n(w[1]), b / a));
            }
        }
    }
    if parts.is_empty() {
        "–".into()
    } else {
        parts.join(", ")
    }
}

/// What `row` is compared with, that figure, the ratio, and whether the target is met.
fn verdict(rec: &Recorder, row: &IssueRow) -> [String; 4] {
    let n = row.at;
    let Some(m) = rec.median(row.key, n) else {
        return ["–".into(), "–".into(), "–".into(), "not measured".into()];
    };
    let (other, limit) = match row.target {
        Target::Abs(limit) => {
            let met = if m <= limit {
                "yes".into()
            } else {
                format!("**no** ({:.1}× over)", m / limit)
            };
            return ["–".into(), "–".into(), "–".into(), met];
        }
        Target::Ratio(f, limit) => ((label(f), rec.median(f, n), cell(rec, f, n)), limit),
        Target::Peer(limit) => match peer_of(row.key) {
            Some(p) => (
                ("TaskChampion".into(), rec.median(p, n), cell(rec, p, n)),
                limit,
            ),
            None => return ["no peer".into(), "–".into(), "–".into(), "–".into()],
        },
        Target::Growth(limit) => (
            (
                format!("the same at {}", fmt_n(1_000)),
                rec.median(row.key, 1_000),
                cell(rec, row.key, 1_000),
            ),
            limit,
        ),
    };
    let (name, base, shown) = other;
    match base.filter(|b| *b > 0.0) {
        Some(b) => {
            let r = m / b;
            let met = if r <= limit {
                "yes".into()
            } else {
                format!("**no** ({})", fmt_ratio(r))
            };
            [name, shown, fmt_ratio(r), met]
        }
        None => [name, shown, "–".into(), "not measured".into()],
    }
}

/// The TaskChampion figure for the same work as `key` and N, and `key`'s ratio to it.
fn peer_cells(rec: &Recorder, key: &str, n: usize) -> (String, String) {
    let Some(peer) = peer_of(key) else {
        return ("–".into(), "–".into());
    };
    let r = ratio(rec, key, peer, n)
        .map(fmt_ratio)
        .unwrap_or_else(|| "–".into());
    (cell(rec, peer, n), r)
}

/// Issue 15's last target, "every row faster than TaskChampion on the same work": how many
/// hypertask rows with a TaskChampion figure beat it, and which do not.
fn against_peer(rec: &Recorder, sizes: &[usize], kinds: &[Kind]) -> String {
    let mut compared = 0;
    let mut slower = Vec::new();
    for k in kinds {
        for s in ["initial", "pull", "noop", "incr"] {
            let key = format!("ht/{k}/{s}");
            for &n in sizes {
                let Some(r) = peer_of(&key).and_then(|p| ratio(rec, &key, p, n)) else {
                    continue;
                };
                compared += 1;
                if r >= 1.0 {
                    slower.push(format!(
                        "{} at {} ({})",
                        label(&key),
                        fmt_n(n),
                        fmt_ratio(r)
                    ));
                }
            }
        }
    }
    match (compared, slower.is_empty()) {
        (0, _) => "Every row faster than TaskChampion (issue 15): not measured.".into(),
        (_, true) => format!(
            "Every row faster than TaskChampion (issue 15): **yes**, all {compared} rows compared."
        ),
        (_, false) => format!(
            "Every row faster than TaskChampion (issue 15): **no**, {} of {compared} rows are not: {}.",
            slower.len(),
            slower.join("; ")
        ),
    }
}

fn target_text(t: Target, at: usize) -> String {
    let at = fmt_n(at);
    match t {
        Target::Abs(s) => format!("≤ {} at {at}", fmt_secs(s)),
        Target::Ratio(f, r) => format!("≤ {r}× {} at {at}", label(f)),
        Target::Peer(r) => format!("≤ {r}× TaskChampion at {at}"),
        Target::Growth(r) => format!("{at} ≤ {r}× 1k"),
    }
}

/// The whole report in Markdown.
pub fn markdown(rec: &Recorder, env: &Environment, sizes: &[usize], kinds: &[Kind]) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "### Run of {}", env.started);
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "- machine: {} × {} (nproc {}), {} RAM, scratch on {}",
        env.nproc, env.cpu, env.nproc, env.memory, env.disk
    );
    let _ = writeln!(
        o,
        "- load average (1/5/15 min): {} at the start, {} at the end",
        env.load_start, env.load_end
    );
    let runs = if sizes.iter().any(|&n| n >= 100_000) && env.runs_100k != env.runs {
        format!("{} runs per row ({} at 100k)", env.runs, env.runs_100k)
    } else {
        format!("{} runs per row", env.runs)
    };
    let _ = writeln!(
        o,
        "- {runs}; figures are median (min–max) wall time; one task is {} bytes of canonical JSON, {} bytes on disk",
        env.task_bytes.0, env.task_bytes.1
    );
    if !env.tools.is_empty() {
        let _ = writeln!(o, "- floor tools: {}", env.tools.join("; "));
    }
    if rec.rows.iter().any(|r| r.key.starts_with("tc/")) {
        let _ = writeln!(
            o,
            "- peer: TaskChampion (the `taskchampion` crate, {}), its local server and on-disk SQLite replicas, each sync a `hypertask-bench tc-sync` process",
            crate::tc::VERSION
        );
    }
    let _ = writeln!(o);

    let _ = writeln!(o, "#### The issues' targets");
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "| issue | work | N | hypertask | compared with | its time | ratio | target | met |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|");
    for row in ISSUE {
        let [with, time, r, met] = verdict(rec, row);
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {with} | {time} | {r} | {} | {met} |",
            row.issue,
            row.work,
            fmt_n(row.at),
            cell(rec, row.key, row.at),
            target_text(row.target, row.at),
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "{}", against_peer(rec, sizes, kinds));
    let _ = writeln!(o);

    let _ = writeln!(o, "#### Every hypertask row against its floor");
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "| row | N | hypertask | floor | floor time | ratio | TaskChampion | ratio to TC |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|");
    let mut keys: Vec<String> = vec!["ht/startup".into()];
    for k in kinds {
        for s in ["initial", "pull", "noop", "incr", "ten"] {
            keys.push(format!("ht/{k}/{s}"));
        }
    }
    keys.extend(crate::tc::KEYS.map(str::to_owned));
    for key in &keys {
        for &n in sizes {
            if rec.outcome(key, n).is_none() {
                continue;
            }
            let floor = floor_of(key);
            let (tc, tc_ratio) = peer_cells(rec, key, n);
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {tc} | {tc_ratio} |",
                label(key),
                fmt_n(n),
                cell(rec, key, n),
                floor.map(label).unwrap_or_else(|| "–".into()),
                floor.map(|f| cell(rec, f, n)).unwrap_or_else(|| "–".into()),
                floor
                    .and_then(|f| ratio(rec, key, f, n))
                    .map(fmt_ratio)
                    .unwrap_or_else(|| "–".into())
            );
        }
    }
    let _ = writeln!(o);

    let _ = writeln!(
        o,
        "#### Durability: N atomic writes and the fs initial push, per mode"
    );
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "| mode | N | `TaskDir::write_batch` | hypertask fs initial push |"
    );
    let _ = writeln!(o, "|---|---|---|---|");
    for (mode, floor, ht) in [
        (
            "batch (default: one syncfs, renames, one dir fsync)",
            "floor/write/batch",
            "ht/fs/initial",
        ),
        (
            "per-file (fsync each file)",
            "floor/write/per-file",
            "ht/fs/initial-per-file",
        ),
        (
            "none (atomic, not durable)",
            "floor/write/none",
            "ht/fs/initial-none",
        ),
    ] {
        for &n in sizes {
            if rec.outcome(floor, n).is_none() && rec.outcome(ht, n).is_none() {
                continue;
            }
            let _ = writeln!(
                o,
                "| {mode} | {} | {} | {} |",
                fmt_n(n),
                cell(rec, floor, n),
                cell(rec, ht, n)
            );
        }
    }
    let _ = writeln!(o);

    let _ = writeln!(o, "#### Floors and scaling");
    let _ = writeln!(o);
    let mut head = String::from("| row |");
    let mut rule = String::from("|---|");
    for &n in sizes {
        let _ = write!(head, " {} |", fmt_n(n));
        rule.push_str("---|");
    }
    let _ = writeln!(o, "{head} scaling |");
    let _ = writeln!(o, "{rule}---|");
    let mut all: Vec<&str> = Vec::new();
    for r in &rec.rows {
        if !all.contains(&r.key.as_str()) {
            all.push(&r.key);
        }
    }
    all.sort_by_key(|k| (!k.starts_with("floor/"), *k));
    for key in all {
        let mut line = format!("| {} |", label(key));
        for &n in sizes {
            let _ = write!(line, " {} |", cell(rec, key, n));
        }
        let _ = writeln!(o, "{line} {} |", growth(rec, key, sizes));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn rec() -> Recorder {
        let mut r = Recorder::default();
        r.record("ht/fs/initial", 1000, Outcome::Samples(vec![0.2, 0.3, 0.1]));
        r.record("floor/write/batch", 1000, Outcome::Samples(vec![0.1]));
        r.record("ht/fs/initial", 10_000, Outcome::Samples(vec![2.0]));
        r.record("floor/write/batch", 10_000, Outcome::Samples(vec![1.0]));
        r.record(
            "ht/git/initial",
            1000,
            Outcome::Skipped("git not built yet".into()),
        );
        r
    }

    #[test]
    fn ratios_and_verdicts_compare_medians() {
        let r = rec();
        assert_eq!(
            ratio(&r, "ht/fs/initial", "floor/write/batch", 1000),
            Some(2.0)
        );
        assert_eq!(
            growth(&r, "ht/fs/initial", &[1000, 10_000]),
            "1k→10k: ×10.0"
        );
        let mut r = Recorder::default();
        let s = |v: f64| Outcome::Samples(vec![v]);
        r.record("ht/fs/noop", 10_000, s(0.2));
        r.record("floor/rsync-noop", 10_000, s(0.1));
        r.record("ht/http/noop", 1_000, s(0.010));
        r.record("ht/http/noop", 10_000, s(0.030));
        r.record("ht/http/noop", 100_000, s(0.012));
        r.record("ht/http/initial", 10_000, s(1.0));
        r.record("tc/initial", 10_000, s(4.0));
        let row = |key: &str, f: fn(Target) -> bool| {
            ISSUE.iter().find(|i| i.key == key && f(i.target)).unwrap()
        };
        let fs_noop = verdict(&r, row("ht/fs/noop", |_| true));
        assert_eq!(fs_noop[0], "rsync -a, no-op");
        assert_eq!(fs_noop[3], "**no** (2.00×)");
        let abs = verdict(&r, row("ht/http/noop", |t| matches!(t, Target::Abs(_))));
        assert_eq!(abs[3], "**no** (1.5× over)");
        let growth = verdict(&r, row("ht/http/noop", |t| matches!(t, Target::Growth(_))));
        assert_eq!((growth[2].as_str(), growth[3].as_str()), ("1.20×", "yes"));
        let peer = verdict(&r, row("ht/http/initial", |t| matches!(t, Target::Peer(_))));
        assert_eq!(
            (peer[0].as_str(), peer[3].as_str()),
            ("TaskChampion", "yes")
        );
        let ten = verdict(&r, row("ht/http/ten", |_| true));
        assert_eq!(ten[3], "not measured");
        r.record("floor/cp", 10_000, s(0.5));
        let push = verdict(
            &r,
            row("ht/http/initial", |t| matches!(t, Target::Ratio(..))),
        );
        assert_eq!(
            (push[0].as_str(), push[2].as_str()),
            ("cp -r of the task dir", "2.00×"),
            "the issue holds the HTTP push to `cp -r`, not to the batched POST"
        );
        assert_eq!(
            against_peer(&r, &[10_000], &[Kind::Http]),
            "Every row faster than TaskChampion (issue 15): **yes**, all 1 rows compared."
        );
        r.record("tc/noop", 10_000, s(0.020));
        assert!(against_peer(&r, &[10_000], &[Kind::Http])
            .ends_with("**no**, 1 of 2 rows are not: hypertask http: no-op sync at 10k (1.50×)."));
    }

    #[test]
    fn the_report_names_skipped_rows_and_leaves_out_unmeasured_ones() {
        let r = rec();
        let env = Environment::probe(Path::new("/"), 1, &[1000]);
        let md = markdown(&r, &env, &[1000, 10_000], &[Kind::Fs, Kind::Git]);
        assert!(md.contains("skipped: git not built yet"));
        for row in ISSUE {
            assert!(md.contains(row.work), "{}", row.work);
        }
        assert!(md.contains("| 14 | git, no-op | 10k | – |"), "{md}");
        assert!(
            !md.contains("| hypertask git: initial push | 10k |"),
            "git was not measured at 10k"
        );
    }

    #[test]
    fn every_hypertask_row_is_compared_with_taskchampion_doing_the_same_work() {
        assert_eq!(peer_of("ht/http/initial"), Some("tc/initial"));
        assert_eq!(peer_of("ht/fs/initial-per-file"), Some("tc/initial"));
        assert_eq!(peer_of("ht/mongodb/incr"), Some("tc/incr"));
        assert_eq!(peer_of("ht/startup"), None);
        assert_eq!(peer_of("tc/noop"), None);
        assert_eq!(
            floor_of("tc/pull"),
            None,
            "the peer has no floor of its own"
        );
        let mut r = rec();
        r.record("tc/initial", 1000, Outcome::Samples(vec![0.4]));
        let env = Environment::probe(Path::new("/"), 1, &[1000]);
        let md = markdown(&r, &env, &[1000], &[Kind::Fs]);
        let line = md
            .lines()
            .find(|l| l.starts_with("| hypertask fs: initial push | 1k |"))
            .unwrap();
        assert!(line.ends_with("| 0.400 s | 0.50× |"), "{line}");
        assert!(md.contains("| TaskChampion: initial push | 1k |"));
    }

    #[test]
    fn every_hypertask_row_has_a_floor() {
        for k in Kind::ALL {
            for s in ["initial", "pull", "noop", "incr"] {
                assert!(floor_of(&format!("ht/{k}/{s}")).is_some());
            }
        }
    }
}
