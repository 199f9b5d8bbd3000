//! The example's binaries as a user runs them: `hypertask-jsonfile` (hypertask with the driver
//! built in and no built-in drivers) syncs and passes `driver-test`, both with the driver
//! registered and with the external program on `PATH`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A machine: a data directory and a config file in a temporary directory.
struct Machine {
    dir: tempfile::TempDir,
}

impl Machine {
    fn new(config: &str) -> Machine {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        Machine { dir }
    }

    /// Runs `hypertask-jsonfile ARGS…` with `bin` first on `PATH`.
    fn run(&self, bin: Option<&Path>, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hypertask-jsonfile"));
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("HYPERTASK_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("HYPERTASK_CONFIG", self.dir.path().join("config.toml"))
            .env("HYPERTASK_DATA_DIR", self.dir.path().join("data"));
        if let Some(bin) = bin {
            let path = std::env::var_os("PATH").unwrap_or_default();
            let dirs = std::iter::once(bin.to_owned()).chain(std::env::split_paths(&path));
            cmd.env("PATH", std::env::join_paths(dirs).unwrap());
        }
        cmd.args(args).output().expect("run hypertask-jsonfile")
    }

    fn ok(&self, bin: Option<&Path>, args: &[&str]) -> String {
        let out = self.run(bin, args);
        assert!(
            out.status.success(),
            "{args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

fn table(kind: &str, file: &Path) -> String {
    let path = serde_json::to_string(&file.to_string_lossy()).unwrap();
    format!("[drivers.box]\ntype = \"{kind}\"\npath = {path}\n")
}

#[test]
fn driver_test_passes_for_the_registered_driver() {
    let dir = tempfile::tempdir().unwrap();
    let m = Machine::new(&table("jsonfile", &dir.path().join("tasks.json")));
    let stdout = m.ok(None, &["driver-test", "box"]);
    assert!(stdout.contains("create_then_list: ok"), "{stdout}");
    assert!(stdout.contains("0 failed"), "{stdout}");
}

#[cfg(unix)]
#[test]
fn driver_test_passes_for_the_external_program_with_its_store_cases() {
    let bin = tempfile::tempdir().unwrap();
    let program = PathBuf::from(env!("CARGO_BIN_EXE_hypertask-driver-jsonfile"));
    std::os::unix::fs::symlink(&program, bin.path().join("hypertask-driver-jsonprog")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let m = Machine::new(&table("jsonprog", &dir.path().join("tasks.json")));
    let stdout = m.ok(Some(bin.path()), &["driver-test", "box"]);
    assert!(
        stdout.contains("store_put_is_compare_and_swap: ok"),
        "{stdout}"
    );
    assert!(stdout.contains("0 failed"), "{stdout}");
}

#[test]
fn two_machines_converge_through_one_file_and_no_built_in_driver_is_compiled_in() {
    let dir = tempfile::tempdir().unwrap();
    let config = table("jsonfile", &dir.path().join("tasks.json"));
    let (a, b) = (Machine::new(&config), Machine::new(&config));
    let milk = a.ok(None, &["add", "buy", "milk"]).trim().to_owned();
    b.ok(None, &["add", "call", "mom"]);
    for m in [&a, &b, &a] {
        m.ok(None, &["sync"]);
    }
    let list = |m: &Machine| m.ok(None, &["list", "--json"]);
    assert_eq!(list(&a), list(&b));
    assert!(list(&b).contains(&milk));

    let fs = Machine::new("[drivers.dir]\ntype = \"fs\"\npath = \"tasks\"\n");
    let out = fs.run(None, &["sync"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown driver type 'fs'") && stderr.contains("available types: jsonfile"),
        "{stderr}"
    );
}
