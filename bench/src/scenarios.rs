//! The scenarios of one driver's rows: a fresh upstream per scenario, replicas of the real
//! binary pushing, pulling and syncing (the four scenarios of BENCHMARKS.md), each timed and
//! recorded.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hypertask_core::files::TaskDir;
use hypertask_core::{Task, TaskId};

use crate::floors::{git, sync_all, timed};
use crate::gen;
use crate::hypertask::*;
use crate::stats::Outcome;
use crate::Recorder;

/// Everything a driver's rows need.
pub struct Bench<'a> {
    /// The binary.
    pub ht: &'a Hypertask,
    /// A scratch directory for this N.
    pub root: PathBuf,
    /// The task set.
    pub tasks: &'a [Task],
    /// Its ids.
    pub ids: Vec<TaskId>,
    /// Runs per row.
    pub runs: usize,
    /// The MongoDB test server, when there is one, and the database to use.
    pub mongodb: Option<(String, String)>,
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Bench<'_> {
    fn n(&self) -> usize {
        self.tasks.len()
    }

    /// A fresh, empty upstream of `kind`.
    fn upstream(&self, kind: Kind, tag: &str) -> std::result::Result<Upstream, RunError> {
        let fail = |e: anyhow::Error| RunError::Fail(format!("{e:#}"));
        let dir = self.root.join(format!("{kind}-upstream-{tag}"));
        match kind {
            Kind::Fs => {
                std::fs::create_dir_all(&dir).map_err(|e| fail(e.into()))?;
                Ok(Upstream::Fs(dir))
            }
            Kind::Git => {
                timed(
                    git(&self.root)
                        .args(["init", "-q", "--bare", "-b", "main"])
                        .arg(&dir),
                )
                .map_err(fail)?;
                Ok(Upstream::Git(dir))
            }
            Kind::Http => self.server(&dir).map_err(fail)?,
            Kind::Mongodb => match &self.mongodb {
                Some((uri, database)) => Ok(Upstream::Mongodb {
                    uri: uri.clone(),
                    database: database.clone(),
                    collection: format!("ht_{}_{tag}", self.n()),
                }),
                None => Err(RunError::Skip(
                    "no MongoDB test server (set HYPERTASK_BENCH_MONGODB_URI or start one)".into(),
                )),
            },
        }
    }

    /// Starts `hypertask serve` with its default store (one SQLite file in its data dir), as a
    /// user's fresh server runs; skips when it cannot serve.
    fn server(&self, dir: &Path) -> Result<std::result::Result<Upstream, RunError>> {
        let bin = match &self.ht.bin {
            Ok(b) => b,
            Err(e) => return Ok(Err(RunError::Skip(e.clone()))),
        };
        let data = dir.join("data");
        std::fs::create_dir_all(&data)?;
        let port = free_port()?;
        let listen = format!("127.0.0.1:{port}");
        let config = dir.join("server.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = {}\n\n[server]\nlisten = {}\ntoken = {}\n",
                toml_path(&data),
                toml_str(&listen),
                toml_str(TOKEN),
            ),
        )?;
        let log = dir.join("server.log");
        let mut child = std::process::Command::new(bin)
            .arg("serve")
            .env("HYPERTASK_CONFIG", &config)
            .env("HYPERTASK_DATA_DIR", &data)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("server.out"))?)
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("cannot start {} serve", bin.display()))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait()? {
                let err = std::fs::read_to_string(&log).unwrap_or_default();
                let _ = status;
                return Ok(Err(RunError::Skip(format!(
                    "http not built (`hypertask serve`: {})",
                    first_line(&err).trim_start_matches("error: ")
                ))));
            }
            if TcpStream::connect(&listen).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Ok(Err(RunError::Fail(format!(
                    "`hypertask serve` did not listen on {listen} within 20 s"
                ))));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Ok(Upstream::Http {
            url: format!("http://{listen}"),
            _server: Server { child },
        }))
    }

    fn sync(
        &self,
        rep: &Replica,
        env: &[(&str, &str)],
        label: &str,
    ) -> std::result::Result<f64, RunError> {
        self.ht.run(rep, &["sync"], env, label)
    }

    /// The initial push of N tasks from a replica to a fresh upstream, `runs` times; keeps the
    /// last upstream. `env` sets e.g. `HYPERTASK_DURABILITY`.
    fn initial(
        &self,
        rec: &mut Recorder,
        kind: Kind,
        key: &str,
        env: &[(&str, &str)],
    ) -> Result<Option<Upstream>> {
        let n = self.n();
        let mut samples = Vec::new();
        let mut keep = None;
        for run in 0..self.runs {
            let tag = format!("{}-{run}", key.replace('/', "-"));
            let up = match self.upstream(kind, &tag) {
                Ok(u) => u,
                Err(e) => return record_err(rec, key, n, e),
            };
            let a = Replica::new(self.root.join(format!("{tag}-a")), &up)?;
            gen::write(&a.tasks(), self.tasks)?;
            sync_all();
            match self.sync(&a, env, &format!("{tag}-{n}")) {
                Ok(t) => samples.push(t),
                Err(e) => return record_err(rec, key, n, e),
            }
            if let Upstream::Fs(dir) = &up {
                let have = count_json(dir);
                if have != n {
                    rec.record(
                        key,
                        n,
                        Outcome::Failed(format!("pushed {have} of {n} tasks")),
                    );
                    return Ok(None);
                }
            }
            keep = Some(up);
        }
        rec.record(key, n, Outcome::Samples(samples));
        Ok(keep)
    }

    /// Every row of one driver for this N.
    pub fn driver_rows(&self, rec: &mut Recorder, kind: Kind) -> Result<()> {
        let n = self.n();
        let key = |s: &str| format!("ht/{kind}/{s}");
        let rows = ["initial", "pull", "noop", "incr", "ten"];
        let Some(up) = self.initial(rec, kind, &key("initial"), &[])? else {
            let why = match rec.outcome(&key("initial"), n) {
                Some(Outcome::Skipped(s)) => Outcome::Skipped(s.clone()),
                _ => Outcome::Skipped("the initial push failed".into()),
            };
            for r in &rows[1..] {
                rec.record(&key(r), n, why.clone());
            }
            return Ok(());
        };

        // A new replica pulls everything.
        let mut samples = Vec::new();
        let mut last = None;
        for run in 0..self.runs {
            let b = Replica::new(self.root.join(format!("{kind}-b-{run}")), &up)?;
            sync_all();
            match self.sync(&b, &[], &format!("{kind}-pull-{run}-{n}")) {
                Ok(t) => samples.push(t),
                Err(e) => {
                    record_err(rec, &key("pull"), n, e)?;
                    for r in &rows[2..] {
                        rec.record(&key(r), n, Outcome::Skipped("the pull failed".into()));
                    }
                    return Ok(());
                }
            }
            let have = b.count();
            if have != n {
                rec.record(
                    &key("pull"),
                    n,
                    Outcome::Failed(format!("pulled {have} of {n} tasks")),
                );
                return Ok(());
            }
            last = Some(b);
        }
        rec.record(&key("pull"), n, Outcome::Samples(samples));
        let b = last.expect("at least one run");

        // A no-op sync.
        let mut samples = Vec::new();
        for run in 0..self.runs {
            match self.sync(&b, &[], &format!("{kind}-noop-{run}-{n}")) {
                Ok(t) => samples.push(t),
                Err(e) => {
                    record_err(rec, &key("noop"), n, e)?;
                    samples.clear();
                    break;
                }
            }
        }
        if !samples.is_empty() {
            rec.record(&key("noop"), n, Outcome::Samples(samples));
        }

        // 1% changed locally, then a sync; then ten tasks (what a day's work costs in a large
        // store), each run editing tasks the 1% runs did not.
        if self.edited_syncs(rec, &b, kind, "incr", |d, ids, run| {
            gen::edit_one_percent(d, ids, run)
        })? {
            self.edited_syncs(rec, &b, kind, "ten", |d, ids, run| {
                gen::edit_ten(d, ids, run + self.runs)
            })?;
        }
        drop(up);
        Ok(())
    }

    /// `runs` times: `edit` changes tasks of replica `b`, then a timed sync; recorded as
    /// `ht/<kind>/<scenario>`. `false` when a sync failed (recorded as such).
    fn edited_syncs(
        &self,
        rec: &mut Recorder,
        b: &Replica,
        kind: Kind,
        scenario: &str,
        edit: impl Fn(&TaskDir, &[TaskId], usize) -> Result<usize>,
    ) -> Result<bool> {
        let (n, key) = (self.n(), format!("ht/{kind}/{scenario}"));
        let mut samples = Vec::new();
        for run in 0..self.runs {
            edit(&b.tasks(), &self.ids, run)?;
            sync_all();
            match self.sync(b, &[], &format!("{kind}-{scenario}-{run}-{n}")) {
                Ok(t) => samples.push(t),
                Err(e) => {
                    record_err(rec, &key, n, e)?;
                    return Ok(false);
                }
            }
        }
        rec.record(&key, n, Outcome::Samples(samples));
        Ok(true)
    }

    /// The fs initial push with each cache durability (the durability bullet).
    pub fn durability_rows(&self, rec: &mut Recorder) -> Result<()> {
        for (mode, key) in [
            ("per-file", "ht/fs/initial-per-file"),
            ("none", "ht/fs/initial-none"),
        ] {
            self.initial(rec, Kind::Fs, key, &[("HYPERTASK_DURABILITY", mode)])?;
        }
        Ok(())
    }

    /// Process start and exit: `hypertask --version`.
    pub fn startup(&self, rec: &mut Recorder) -> Result<()> {
        let up = Upstream::Fs(self.root.join("startup-upstream"));
        let rep = Replica::new(self.root.join("startup"), &up)?;
        let mut samples = Vec::new();
        for run in 0..self.runs {
            match self
                .ht
                .run(&rep, &["--version"], &[], &format!("startup-{run}"))
            {
                Ok(t) => samples.push(t),
                Err(e) => return record_err(rec, "ht/startup", self.n(), e).map(|_| ()),
            }
        }
        rec.record("ht/startup", self.n(), Outcome::Samples(samples));
        Ok(())
    }
}

pub(crate) fn record_err(
    rec: &mut Recorder,
    key: &str,
    n: usize,
    e: RunError,
) -> Result<Option<Upstream>> {
    let outcome = match e {
        RunError::Skip(why) => Outcome::Skipped(why),
        RunError::Fail(why) => Outcome::Failed(why),
    };
    rec.record(key, n, outcome);
    Ok(None)
}
