//! The machine a run measured on and how loaded it was, for the report's header.

use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

/// The machine and how loaded it was.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Environment {
    /// When the run started (UTC).
    pub started: String,
    /// `nproc`.
    pub nproc: usize,
    /// From /proc/cpuinfo.
    pub cpu: String,
    /// From /proc/meminfo.
    pub memory: String,
    /// `df -T` of the scratch dir.
    pub disk: String,
    /// /proc/loadavg at the start.
    pub load_start: String,
    /// /proc/loadavg at the end.
    pub load_end: String,
    /// Runs per row.
    pub runs: usize,
    /// Runs per row at 100,000 tasks and more.
    pub runs_100k: usize,
    /// Sizes measured.
    pub sizes: Vec<usize>,
    /// Mean canonical JSON size and mean file size of one task.
    pub task_bytes: (usize, usize),
    /// Versions of the external floor tools.
    pub tools: Vec<String>,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn loadavg() -> String {
    read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn first_output_line(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(str::to_owned)
}

impl Environment {
    /// Describes this machine now.
    pub fn probe(scratch: &Path, runs: usize, sizes: &[usize]) -> Environment {
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        let memory = read("/proc/meminfo")
            .lines()
            .find(|l| l.starts_with("MemTotal"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0))
            .unwrap_or_else(|| "unknown".into());
        let disk = Command::new("df")
            .arg("-T")
            .arg(scratch)
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout).lines().nth(1).map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    format!(
                        "{} ({}, mounted on {})",
                        f.first().unwrap_or(&"?"),
                        f.get(1).unwrap_or(&"?"),
                        f.last().unwrap_or(&"?")
                    )
                })
            })
            .unwrap_or_else(|| "unknown".into());
        let tools = [
            ("git", "--version"),
            ("rsync", "--version"),
            ("cp", "--version"),
        ]
        .iter()
        .filter_map(|(p, a)| first_output_line(p, &[a]))
        .collect();
        Environment {
            started: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            nproc: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            cpu,
            memory,
            disk,
            load_start: loadavg(),
            load_end: String::new(),
            runs,
            runs_100k: runs,
            sizes: sizes.to_vec(),
            task_bytes: crate::gen::mean_sizes(&crate::gen::tasks(200, 1)),
            tools,
        }
    }

    /// Notes the load at the end.
    pub fn finish(&mut self) {
        self.load_end = loadavg();
    }
}
