//! `hypertask-bench`: whole-process wall time of the release `hypertask` binary per driver and
//! size, next to the physical floor of the same work measured in the same run. See
//! BENCHMARKS.md; run it with `scripts/bench`.

mod floors;
mod gen;
mod hypertask;
mod machine;
mod report;
mod scenarios;
mod stats;
mod tc;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};

use crate::hypertask::{Hypertask, Kind};
use crate::scenarios::Bench;
use crate::stats::{fmt_n, fmt_secs, summarize, Outcome};

/// Benchmarks `hypertask sync` per driver against the floor of the same work and against
/// TaskChampion doing the same work.
#[derive(Debug, Parser)]
#[command(name = "hypertask-bench", args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    args: Args,
}

/// What the binary does besides the benchmark.
#[derive(Debug, Subcommand)]
enum Command {
    /// The timed work of a TaskChampion row: open the on-disk replica, sync it once with the
    /// local server, exit (the benchmark runs this binary with it).
    TcSync {
        /// The replica's directory (created when missing).
        #[arg(long)]
        replica: PathBuf,
        /// The local server's directory.
        #[arg(long)]
        server: PathBuf,
    },
    /// Write the report again from a run's raw samples (`last-run.json`), e.g. after the
    /// report's tables changed; nothing is measured.
    Report {
        /// The raw samples of a run.
        #[arg(long, default_value = "target/bench/last-run.json")]
        from: PathBuf,
        /// Where the report (last-run.md) goes.
        #[arg(long, default_value = "target/bench")]
        out: PathBuf,
    },
}

/// The drivers measured at 100,000 tasks without `--large`: the 100k targets are HTTP's,
/// and more does not fit the default run's 10 minutes (BENCHMARKS.md, "The command"); nor does
/// the TaskChampion peer at 100k.
const LARGE_BY_DEFAULT: &[Kind] = &[Kind::Http];

/// The benchmark's options.
#[derive(Debug, clap::Args)]
struct Args {
    /// The release `hypertask` binary.
    #[arg(long, default_value = "target/release/hypertask")]
    hypertask: PathBuf,
    /// Task counts to measure, every chosen driver and the TaskChampion peer at each
    /// [default: 1000,10000,100000, the 100,000 tasks only for http]
    #[arg(long, value_delimiter = ',')]
    sizes: Option<Vec<usize>>,
    /// Measure every chosen driver and the TaskChampion peer at 100,000 tasks too.
    #[arg(long)]
    large: bool,
    /// Leave out the TaskChampion peer rows (and the hypertask rows' ratios to them).
    #[arg(long)]
    no_peer: bool,
    /// Drivers to measure (fs, git, http, mongodb).
    #[arg(long, value_delimiter = ',', default_value = "fs,git,http,mongodb")]
    drivers: Vec<String>,
    /// Runs per row; the median, min and max are reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Runs per row at 100,000 tasks and more, where one run of every row takes minutes.
    #[arg(long, default_value_t = 1)]
    runs_100k: usize,
    /// The MongoDB test server; its rows are skipped without one.
    #[arg(long, env = "HYPERTASK_BENCH_MONGODB_URI")]
    mongodb_uri: Option<String>,
    /// Where the report (last-run.md) and raw samples (last-run.json) go.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Scratch space (default: the system temp dir); removed at the end.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Prefix every hypertask run with this command, `{row}` naming the run, for profiling,
    /// e.g. `strace -f -c -o /tmp/prof/{row}.txt`. The figures then include its overhead.
    #[arg(long)]
    wrap: Option<String>,
    /// Keep every hypertask run's stdout and stderr in this directory.
    #[arg(long)]
    logs: Option<PathBuf>,
    /// HYPERTASK_LOG (and RUST_LOG) for the hypertask runs; their stderr goes to --logs.
    #[arg(long)]
    log: Option<String>,
    /// Skip the floors (for profiling hypertask alone).
    #[arg(long)]
    no_floors: bool,
}

/// One measured row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// `ht/<driver>/<scenario>` or `floor/<what>`.
    pub key: String,
    /// Task count.
    pub n: usize,
    /// Samples, or why there are none.
    pub outcome: Outcome,
}

/// Collects rows and prints each as it lands.
#[derive(Debug, Default, Serialize)]
pub struct Recorder {
    /// Every row so far.
    pub rows: Vec<Row>,
}

impl Recorder {
    /// Records (and prints) a row.
    pub fn record(&mut self, key: &str, n: usize, outcome: Outcome) {
        let shown = match &outcome {
            Outcome::Samples(s) => match summarize(s) {
                Some(m) => format!(
                    "{} (min {}, max {}, {} runs)",
                    fmt_secs(m.median),
                    fmt_secs(m.min),
                    fmt_secs(m.max),
                    s.len()
                ),
                None => "no samples".into(),
            },
            Outcome::Skipped(why) => format!("skipped: {why}"),
            Outcome::Failed(why) => format!("FAILED: {why}"),
        };
        eprintln!("  {:>5}  {:<32} {shown}", fmt_n(n), report::label(key));
        self.rows.retain(|r| !(r.key == key && r.n == n));
        self.rows.push(Row {
            key: key.to_owned(),
            n,
            outcome,
        });
    }

    /// The outcome of a row.
    pub fn outcome(&self, key: &str, n: usize) -> Option<&Outcome> {
        self.rows
            .iter()
            .find(|r| r.key == key && r.n == n)
            .map(|r| &r.outcome)
    }

    /// The median of a row that has samples.
    pub fn median(&self, key: &str, n: usize) -> Option<f64> {
        match self.outcome(key, n)? {
            Outcome::Samples(s) => summarize(s).map(|m| m.median),
            _ => None,
        }
    }
}

/// Which drivers are measured at which N: every driver at each `--sizes` N; without it, every
/// driver at 1k and 10k and those of `LARGE_BY_DEFAULT` at 100k; `--large` adds 100k for all.
/// A size with no driver left is dropped.
fn plan(sizes: Option<&[usize]>, large: bool, kinds: &[Kind]) -> Vec<(usize, Vec<Kind>)> {
    let mut plan: Vec<(usize, Vec<Kind>)> = match sizes {
        Some(s) => s.iter().map(|&n| (n, kinds.to_vec())).collect(),
        None => vec![
            (1_000, kinds.to_vec()),
            (10_000, kinds.to_vec()),
            (
                100_000,
                kinds
                    .iter()
                    .copied()
                    .filter(|k| LARGE_BY_DEFAULT.contains(k))
                    .collect(),
            ),
        ],
    };
    if large {
        plan.retain(|(n, _)| *n != 100_000);
        plan.push((100_000, kinds.to_vec()));
    }
    plan.sort_by_key(|(n, _)| *n);
    plan.dedup_by_key(|(n, _)| *n);
    plan.retain(|(_, k)| !k.is_empty());
    plan
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::TcSync { replica, server }) => return tc::sync_once(replica, server),
        Some(Command::Report { from, out }) => return report_again(from, out),
        None => {}
    }
    let args = cli.args;
    let runs = args.runs.max(1);
    let kinds: Vec<Kind> = args
        .drivers
        .iter()
        .map(|d| {
            Kind::parse(d)
                .with_context(|| format!("unknown driver {d:?}; known: fs, git, http, mongodb"))
        })
        .collect::<Result<_>>()?;
    let plan = plan(args.sizes.as_deref(), args.large, &kinds);
    let sizes: Vec<usize> = plan.iter().map(|(n, _)| *n).collect();
    let peer = !args.no_peer;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let bin = if args.hypertask.is_file() {
        Ok(std::fs::canonicalize(&args.hypertask)?)
    } else {
        Err(format!(
            "hypertask not built ({} is missing)",
            args.hypertask.display()
        ))
    };
    let ht = Hypertask {
        bin,
        wrap: args.wrap.clone(),
        logs: args.logs.clone(),
        log: args.log.clone(),
        rt: rt.handle().clone(),
    };
    // Nothing a run writes is removed before the whole benchmark ends (dropping `scratch`):
    // ext4 makes every file created in the minutes after a large deletion pay for it. Its
    // inode allocator passes over inodes freed in the last 60 s (300 s while their inode
    // table block is unwritten), looking each one's block up (`recently_deleted` under
    // `ext4_create`, a third of a new replica's samples in `perf`), so removing one row's
    // 10,000 files made the file-creating rows measured after it several times slower (up to
    // 12× between the samples of one row), and a row's ratio to its floor said more about the
    // order of the removals than about the code. A run with --large keeps every replica and
    // upstream it made, tens of GB at 100k, until the end.
    let scratch = match &args.work_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            tempfile::Builder::new()
                .prefix("hypertask-bench-")
                .tempdir_in(d)?
        }
        None => tempfile::Builder::new()
            .prefix("hypertask-bench-")
            .tempdir()?,
    };

    let mongo_db = format!("hypertask_bench_{}", std::process::id());
    let mongo = match &args.mongodb_uri {
        None => Err("no MongoDB test server URI (set HYPERTASK_BENCH_MONGODB_URI; scripts/bench starts one when it can)".to_owned()),
        Some(uri) => match rt.block_on(floors::mongo_client(uri)) {
            Ok(c) => Ok((uri.clone(), c)),
            Err(e) => Err(format!("MongoDB test server at {uri} is not reachable: {e}")),
        },
    };

    let mut env = report::Environment::probe(scratch.path(), runs, &sizes);
    env.runs_100k = args.runs_100k.max(1);
    let mut rec = Recorder::default();
    eprintln!(
        "hypertask-bench: {runs} runs per row, sizes {sizes:?}, drivers {:?}, TaskChampion peer {}",
        args.drivers,
        if peer { "on" } else { "off" }
    );
    eprintln!("scratch: {}", scratch.path().display());
    for (n, kinds) in &plan {
        let n = *n;
        let runs = if n >= 100_000 {
            args.runs_100k.max(1)
        } else {
            runs
        };
        // The durability modes compared (BENCHMARKS.md): at 100k only with --large, where the
        // per-file runs alone take minutes.
        let durability = n < 100_000 || args.large;
        let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
        eprintln!("== N = {n}: {}, {runs} runs per row", names.join(", "));
        let wants_mongo = kinds.contains(&Kind::Mongodb);
        let tasks = gen::tasks(n, 0x5eed_0000 + n as u64);
        let root = scratch.path().join(format!("n{n}"));
        std::fs::create_dir_all(&root)?;
        if !args.no_floors {
            let git = kinds.contains(&Kind::Git);
            let root = root.join("floors");
            floors::file_floors(&mut rec, &root, &tasks, runs, git, durability)?;
            if kinds.contains(&Kind::Http) {
                rt.block_on(floors::http_floors(&mut rec, &tasks, runs))?;
            }
            if wants_mongo {
                match &mongo {
                    Ok((uri, client)) => {
                        if let Err(e) = rt.block_on(floors::mongo_floors(
                            &mut rec, client, uri, &mongo_db, &tasks, runs,
                        )) {
                            rec.record(
                                "floor/mongo-insert-many",
                                n,
                                Outcome::Failed(format!("{e:#}")),
                            );
                        }
                    }
                    Err(why) => {
                        for k in [
                            "floor/mongo-insert-many",
                            "floor/mongo-insert-many-1pct",
                            "floor/mongo-rtt",
                        ] {
                            rec.record(k, n, Outcome::Skipped(why.clone()));
                        }
                    }
                }
            }
        }
        let bench = Bench {
            ht: &ht,
            root: root.join("hypertask"),
            ids: tasks.iter().map(|t| t.id().clone()).collect(),
            tasks: &tasks,
            runs,
            mongodb: mongo
                .as_ref()
                .ok()
                .map(|(uri, _)| (uri.clone(), mongo_db.clone())),
        };
        std::fs::create_dir_all(&bench.root)?;
        bench.startup(&mut rec)?;
        for &kind in kinds {
            bench.driver_rows(&mut rec, kind)?;
            if kind == Kind::Fs && durability {
                bench.durability_rows(&mut rec)?;
            }
        }
        // TaskChampion at 100k takes longer than the default run's 10 minutes by itself (a new
        // replica replays every operation: 220 s), so it needs --large or an explicit size.
        if peer && (n < 100_000 || args.large || args.sizes.is_some()) {
            bench.tc_rows(&mut rec)?;
        }
    }
    if let Ok((_, client)) = &mongo {
        let _ = rt.block_on(async { client.database(&mongo_db).drop().await });
    }
    env.finish();

    let run = Run {
        environment: env,
        rows: rec.rows,
    };
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(
        args.out.join("last-run.json"),
        serde_json::to_vec_pretty(&run)?,
    )?;
    write_report(&run, &kinds, &args.out)
}

/// A run's raw samples, as `last-run.json` keeps them.
#[derive(Debug, Serialize, Deserialize)]
struct Run {
    environment: report::Environment,
    rows: Vec<Row>,
}

/// Writes `last-run.md` into `out` and prints it.
fn write_report(run: &Run, kinds: &[Kind], out: &std::path::Path) -> Result<()> {
    let rec = Recorder {
        rows: run.rows.clone(),
    };
    let md = report::markdown(&rec, &run.environment, &run.environment.sizes, kinds);
    std::fs::create_dir_all(out)?;
    let path = out.join("last-run.md");
    std::fs::write(&path, &md)?;
    println!("{md}");
    eprintln!("report: {}", path.display());
    Ok(())
}

/// `hypertask-bench report`: the report of the run in `from`, for the drivers it measured.
fn report_again(from: &std::path::Path, out: &std::path::Path) -> Result<()> {
    let text = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    let run: Run = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a run's raw samples", from.display()))?;
    let kinds: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|k| {
            let prefix = format!("ht/{k}/");
            run.rows.iter().any(|r| r.key.starts_with(&prefix))
        })
        .collect();
    write_report(&run, &kinds, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_plan_measures_100k_only_for_the_large_by_default_drivers() {
        let all = Kind::ALL.to_vec();
        let p = plan(None, false, &all);
        assert_eq!(
            p.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            [1_000, 10_000, 100_000]
        );
        assert_eq!(p[0].1, all);
        assert_eq!(p[2].1, LARGE_BY_DEFAULT);
        assert_eq!(plan(None, true, &all)[2].1, all);
    }

    #[test]
    fn explicit_sizes_measure_every_driver_and_empty_sizes_are_dropped() {
        let p = plan(Some(&[10_000, 1_000]), false, &[Kind::Git]);
        assert_eq!(p, [(1_000, vec![Kind::Git]), (10_000, vec![Kind::Git])]);
        let p = plan(None, false, &[Kind::Git]);
        assert_eq!(p.len(), 2, "git alone is not measured at 100k by default");
        let p = plan(Some(&[1_000]), true, &[Kind::Git]);
        assert_eq!(p.last(), Some(&(100_000, vec![Kind::Git])));
    }
}
