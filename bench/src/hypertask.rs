//! Whole-process runs of the real `hypertask` binary: each replica gets its own data dir and
//! config file, each upstream is fresh (the scenarios that time them: `scenarios.rs`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::Result;
use hypertask_core::files::{Durability, TaskDir};

/// How long one hypertask command may take before it is killed and reported failed.
pub(crate) const RUN_TIMEOUT: Duration = Duration::from_secs(900);

/// The token the benchmark's sync servers require.
pub(crate) const TOKEN: &str = "bench-token-0123456789";

/// The upstream kinds the benchmark knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory of task files.
    Fs,
    /// A git working clone pushing to a local bare remote.
    Git,
    /// `hypertask serve` over loopback, with its default store.
    Http,
    /// The MongoDB test server.
    Mongodb,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 4] = [Kind::Fs, Kind::Git, Kind::Http, Kind::Mongodb];

    /// The `type` in a `[drivers.NAME]` table.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Fs => "fs",
            Kind::Git => "git",
            Kind::Http => "http",
            Kind::Mongodb => "mongodb",
        }
    }

    /// Parses a kind name.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a run produced no figure.
#[derive(Debug)]
pub enum RunError {
    /// The driver (or the binary) is not built yet: skip its rows.
    Skip(String),
    /// The command failed.
    Fail(String),
}

/// The binary under test and how to run it.
pub struct Hypertask {
    /// The release binary, or why there is none.
    pub bin: std::result::Result<PathBuf, String>,
    /// A command prefix for profiling (`strace -f -c -o /tmp/{row}.txt`); `{row}` names the run.
    pub wrap: Option<String>,
    /// Where to keep each run's stdout and stderr.
    pub logs: Option<PathBuf>,
    /// `HYPERTASK_LOG` (and `RUST_LOG`) for the child, for phase timings; none by default.
    pub log: Option<String>,
    /// Runs the children with a timeout.
    pub rt: tokio::runtime::Handle,
}

/// A TOML basic string for `s` (JSON escapes are valid TOML escapes).
pub(crate) fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

pub(crate) fn toml_path(p: &Path) -> String {
    toml_str(&p.to_string_lossy())
}

pub(crate) fn first_line(s: &str) -> String {
    let s = s.trim();
    let line = s
        .lines()
        .rev()
        .find(|l| l.to_lowercase().contains("error"))
        .or_else(|| s.lines().next())
        .unwrap_or("");
    line.chars().take(300).collect()
}

impl Hypertask {
    /// `program` behind the `--wrap` prefix (if any), stdin closed, killed when dropped.
    pub(crate) fn wrapped(&self, program: &Path, label: &str) -> tokio::process::Command {
        let mut parts: Vec<String> = self
            .wrap
            .as_deref()
            .map(|w| {
                w.split_whitespace()
                    .map(|p| p.replace("{row}", label))
                    .collect()
            })
            .unwrap_or_default();
        parts.push(program.to_string_lossy().into_owned());
        let mut cmd = tokio::process::Command::new(&parts[0]);
        cmd.args(&parts[1..])
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    pub(crate) fn command(
        &self,
        bin: &Path,
        config: &Path,
        data: &Path,
        label: &str,
    ) -> tokio::process::Command {
        let mut cmd = self.wrapped(bin, label);
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if k.starts_with("HYPERTASK_")
                || k.to_lowercase().ends_with("_proxy")
                || k == "RUST_LOG"
            {
                cmd.env_remove(k.as_ref());
            }
        }
        cmd.env("HYPERTASK_CONFIG", config)
            .env("HYPERTASK_DATA_DIR", data)
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("GIT_AUTHOR_NAME", "bench")
            .env("GIT_AUTHOR_EMAIL", "bench@example.invalid")
            .env("GIT_COMMITTER_NAME", "bench")
            .env("GIT_COMMITTER_EMAIL", "bench@example.invalid");
        if let Some(l) = &self.log {
            cmd.env("HYPERTASK_LOG", l).env("RUST_LOG", l);
        }
        cmd
    }

    /// Runs `hypertask ARGS` for a replica and returns its wall time.
    pub fn run(
        &self,
        rep: &Replica,
        args: &[&str],
        env: &[(&str, &str)],
        label: &str,
    ) -> std::result::Result<f64, RunError> {
        let bin = self.bin.as_ref().map_err(|e| RunError::Skip(e.clone()))?;
        let mut cmd = self.command(bin, &rep.config, &rep.data, label);
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.time(cmd, bin, label)
    }

    /// Runs `cmd` (a command for `bin`) to completion and returns its wall time; keeps its
    /// output under `--logs`; a failure carries the line of its stderr that says why.
    pub(crate) fn time(
        &self,
        mut cmd: tokio::process::Command,
        bin: &Path,
        label: &str,
    ) -> std::result::Result<f64, RunError> {
        let start = Instant::now();
        let out = self
            .rt
            .block_on(async { tokio::time::timeout(RUN_TIMEOUT, cmd.output()).await });
        let secs = start.elapsed().as_secs_f64();
        let out = match out {
            Err(_) => return Err(RunError::Fail(format!("timed out after {RUN_TIMEOUT:?}"))),
            Ok(Err(e)) => return Err(RunError::Fail(format!("cannot run {}: {e}", bin.display()))),
            Ok(Ok(out)) => out,
        };
        if let Some(dir) = &self.logs {
            let _ = std::fs::create_dir_all(dir);
            let _ = std::fs::write(dir.join(format!("{label}.stdout")), &out.stdout);
            let _ = std::fs::write(dir.join(format!("{label}.stderr")), &out.stderr);
        }
        if out.status.success() {
            return Ok(secs);
        }
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("not built") {
            return Err(RunError::Skip(first_line(&err)));
        }
        Err(RunError::Fail(format!(
            "exit {}: {}",
            out.status.code().unwrap_or(-1),
            first_line(&err)
        )))
    }
}

/// A replica: its own data dir and config file naming one upstream.
pub struct Replica {
    /// `HYPERTASK_DATA_DIR`.
    pub data: PathBuf,
    /// `HYPERTASK_CONFIG`.
    pub config: PathBuf,
}

impl Replica {
    /// A replica at `root` syncing with `up`.
    pub fn new(root: PathBuf, up: &Upstream) -> Result<Replica> {
        let data = root.join("data");
        std::fs::create_dir_all(&data)?;
        let config = root.join("config.toml");
        let text = format!(
            "data_dir = {}\n\n[drivers.bench]\n{}",
            toml_path(&data),
            up.driver_toml(&root)
        );
        std::fs::write(&config, text)?;
        Ok(Replica { data, config })
    }

    /// The cache's task directory, as `Replica::open` lays it out (index and head record), so
    /// the bench's edits are written as `hypertask modify` writes them: carrying the head on.
    pub fn tasks(&self) -> TaskDir {
        TaskDir::new(
            self.data.join("tasks"),
            Some(self.data.join("index.json")),
            Durability::default(),
        )
        .with_head(self.data.join("head.json"))
    }

    /// How many task files the cache holds.
    pub fn count(&self) -> usize {
        count_json(&self.data.join("tasks"))
    }
}

pub(crate) fn count_json(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| {
                    let n = e.file_name();
                    let n = n.to_string_lossy();
                    n.ends_with(".json") && !n.starts_with('.')
                })
                .count()
        })
        .unwrap_or(0)
}

/// A `hypertask serve` child, killed on drop.
pub struct Server {
    pub(crate) child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where a replica syncs to.
pub enum Upstream {
    /// A shared directory.
    Fs(PathBuf),
    /// A bare remote.
    Git(PathBuf),
    /// A sync server, stopped when this is dropped.
    Http {
        /// Its base URL.
        url: String,
        /// The process.
        _server: Server,
    },
    /// A collection.
    Mongodb {
        /// Connection string.
        uri: String,
        /// Database.
        database: String,
        /// Collection.
        collection: String,
    },
}

impl Upstream {
    pub(crate) fn driver_toml(&self, replica_root: &Path) -> String {
        match self {
            Upstream::Fs(dir) => format!("type = \"fs\"\npath = {}\n", toml_path(dir)),
            Upstream::Git(bare) => format!(
                "type = \"git\"\npath = {}\nremote = {}\nbranch = \"main\"\n",
                toml_path(&replica_root.join("git")),
                toml_path(bare)
            ),
            Upstream::Http { url, .. } => format!(
                "type = \"http\"\nurl = {}\ntoken = {}\n",
                toml_str(url),
                toml_str(TOKEN)
            ),
            Upstream::Mongodb {
                uri,
                database,
                collection,
            } => format!(
                "type = \"mongodb\"\nuri = {}\ndatabase = {}\ncollection = {}\n",
                toml_str(uri),
                toml_str(database),
                toml_str(collection)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_tables_follow_the_config_reference() {
        let fs = Upstream::Fs(PathBuf::from("/tmp/a \"b\""));
        let t = fs.driver_toml(Path::new("/r"));
        assert_eq!(t, "type = \"fs\"\npath = \"/tmp/a \\\"b\\\"\"\n");
        let g = Upstream::Git(PathBuf::from("/tmp/remote.git")).driver_toml(Path::new("/r"));
        assert!(g.contains("path = \"/r/git\"") && g.contains("remote = \"/tmp/remote.git\""));
        let m = Upstream::Mongodb {
            uri: "mongodb://127.0.0.1:1".into(),
            database: "d".into(),
            collection: "c".into(),
        }
        .driver_toml(Path::new("/r"));
        assert!(m.contains("collection = \"c\""));
    }

    #[test]
    fn kinds_round_trip_their_names() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.name()), Some(k));
        }
        assert_eq!(Kind::parse("ftp"), None);
    }

    #[test]
    fn error_lines_prefer_the_line_saying_error() {
        assert_eq!(
            first_line("progress\nerror: driver bench: not built yet\n"),
            "error: driver bench: not built yet"
        );
        assert_eq!(first_line("just this"), "just this");
    }
}
