//! `hypertask-bench`: whole-process wall time of the release `hypertask` binary per driver and
//! size, next to the physical floor of the same work measured in the same run. See
//! BENCHMARKS.md; run it with `scripts/bench`.

mod floors;
mod gen;
mod hypertask;
mod report;
mod scenarios;
mod stats;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use serde::Serialize;

use crate::hypertask::{Hypertask, Kind};
use crate::scenarios::Bench;
use crate::stats::{fmt_n, fmt_secs, summarize, Outcome};

/// Benchmarks `hypertask sync` per driver against the floor of the same work.
#[derive(Debug, Parser)]
#[command(name = "hypertask-bench")]
struct Args {
    /// The release `hypertask` binary.
    #[arg(long, default_value = "target/release/hypertask")]
    hypertask: PathBuf,
    /// Task counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    sizes: Vec<usize>,
    /// Also measure 100,000 tasks.
    #[arg(long)]
    large: bool,
    /// Drivers to measure (fs, git, http, mongodb).
    #[arg(long, value_delimiter = ',', default_value = "fs,git,http,mongodb")]
    drivers: Vec<String>,
    /// Runs per row; the median, min and max are reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
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
#[derive(Debug, Clone, Serialize)]
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

fn main() -> Result<()> {
    let args = Args::parse();
    let mut sizes = args.sizes.clone();
    if args.large && !sizes.contains(&100_000) {
        sizes.push(100_000);
    }
    sizes.sort_unstable();
    sizes.dedup();
    let runs = args.runs.max(1);
    let kinds: Vec<Kind> = args
        .drivers
        .iter()
        .map(|d| {
            Kind::parse(d)
                .with_context(|| format!("unknown driver {d:?}; known: fs, git, http, mongodb"))
        })
        .collect::<Result<_>>()?;

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
    let wants_mongo = kinds.contains(&Kind::Mongodb);

    let mut env = report::Environment::probe(scratch.path(), runs, &sizes);
    let mut rec = Recorder::default();
    eprintln!(
        "hypertask-bench: {runs} runs per row, sizes {sizes:?}, drivers {:?}",
        args.drivers
    );
    eprintln!("scratch: {}", scratch.path().display());
    for &n in &sizes {
        eprintln!("== N = {n}");
        let tasks = gen::tasks(n, 0x5eed_0000 + n as u64);
        let root = scratch.path().join(format!("n{n}"));
        std::fs::create_dir_all(&root)?;
        if !args.no_floors {
            floors::file_floors(&mut rec, &root.join("floors"), &tasks, runs)?;
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
        for &kind in &kinds {
            bench.driver_rows(&mut rec, kind)?;
            if kind == Kind::Fs {
                bench.durability_rows(&mut rec)?;
            }
        }
        std::fs::remove_dir_all(&root)?;
    }
    if let Ok((_, client)) = &mongo {
        let _ = rt.block_on(async { client.database(&mongo_db).drop().await });
    }
    env.finish();

    let md = report::markdown(&rec, &env, &sizes, &kinds);
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("last-run.md"), &md)?;
    std::fs::write(
        args.out.join("last-run.json"),
        serde_json::to_vec_pretty(&serde_json::json!({ "environment": env, "rows": rec.rows }))?,
    )?;
    println!("{md}");
    eprintln!("report: {}", args.out.join("last-run.md").display());
    Ok(())
}
