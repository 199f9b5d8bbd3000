//! Helpers for tests that drive the real `hypertask` binary: machines with their own data
//! directory and config file.
#![deny(missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The `hypertask` binary of this workspace, built once when missing.
pub fn hypertask_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // target/<profile>/deps/<test-exe> → target/<profile>/hypertask
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>")
            .to_owned();
        let bin = profile_dir.join(format!("hypertask{}", std::env::consts::EXE_SUFFIX));
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--quiet", "-p", "hypertask", "--bin", "hypertask"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("cargo build runs");
        assert!(status.success(), "building the hypertask binary failed");
        assert!(bin.exists(), "no binary at {}", bin.display());
        bin
    })
    .clone()
}

/// One simulated machine: a data directory and a config file, in a temporary directory.
#[derive(Debug)]
pub struct Machine {
    /// Owns the temporary directory.
    pub dir: tempfile::TempDir,
}

impl Default for Machine {
    fn default() -> Self {
        Self::new()
    }
}

impl Machine {
    /// A machine with an empty data directory and no config file yet.
    pub fn new() -> Machine {
        Machine {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The config file path.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    /// Writes the config file.
    pub fn write_config(&self, toml: &str) {
        std::fs::write(self.config_path(), toml).expect("write config");
    }

    /// A command for this machine: its config (when written) and data dir, a clean
    /// environment for hypertask's own variables.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(hypertask_bin());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("HYPERTASK_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("HYPERTASK_DATA_DIR", self.data_dir());
        cmd.env("NO_COLOR", "1");
        if self.config_path().exists() {
            cmd.env("HYPERTASK_CONFIG", self.config_path());
        } else {
            // No config file at all: point at one that does not exist.
            cmd.env("HYPERTASK_CONFIG", self.dir.path().join("absent.toml"));
        }
        cmd
    }

    /// Runs `hypertask ARGS…` and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run hypertask")
    }

    /// Runs `hypertask ARGS…`, asserts success and returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "hypertask {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// `hypertask list --all --deleted --json`, parsed.
    pub fn tasks(&self) -> Vec<serde_json::Value> {
        let out = self.ok(&["list", "--all", "--deleted", "--json"]);
        serde_json::from_str(&out).expect("list --json is a JSON array")
    }

    /// The raw bytes of every task file in the local cache, by file name.
    pub fn cache_files(&self) -> std::collections::BTreeMap<String, Vec<u8>> {
        let dir = self.data_dir().join("tasks");
        let mut out = std::collections::BTreeMap::new();
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".json") && !name.starts_with('.') {
                    out.insert(name, std::fs::read(e.path()).expect("read task file"));
                }
            }
        }
        out
    }
}

/// A TOML string literal for a path.
pub fn toml_path(p: &Path) -> String {
    serde_json::to_string(&p.to_string_lossy()).expect("path as JSON string")
}
