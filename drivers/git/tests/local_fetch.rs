//! A remote on this machine whose branch has not moved is not fetched from: its refs are read
//! instead, sparing the `git fetch` and `upload-pack` processes of a sync with nothing to do.
//! When the branch has moved, `git` fetches as usual.
//!
//! Every `git` the driver runs goes through a logging wrapper placed first in `PATH`, which
//! is why this test has its own binary: `PATH` is the whole process's.

mod common;

use std::path::Path;

use common::*;
use serde_json::json;

/// A `git` in `dir` that appends its arguments to `log`, then runs the real one.
fn logging_git(dir: &Path, log: &Path) {
    let real = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v git"])
            .output()
            .expect("sh runs")
            .stdout,
    )
    .unwrap();
    let script = format!(
        "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
        log.display(),
        real.trim()
    );
    let path = dir.join("git");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn fetches(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("fetch"))
        .count()
}

#[tokio::test]
async fn an_unmoved_local_remote_is_read_not_fetched() {
    let dirs = Dirs::default();
    let remote = bare(&dirs.fresh(), "remote.git");
    let (a, b) = (dirs.fresh(), dirs.fresh());
    let bin = dirs.fresh();
    let log = bin.join("log");
    logging_git(&bin, &log);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    std::env::set_var("PATH", path);

    put_local(&a, &[task("one", json!({"description": "first"}))]);
    sync_ok(&a, client(&a, "a", &remote)).await;

    // Nothing moved: the remote's refs are read, no `git fetch` runs.
    let before = fetches(&log);
    let report = sync_ok(&a, client(&a, "a", &remote)).await;
    assert_eq!(changes(&report), 0);
    assert_eq!(fetches(&log), before, "a no-op sync fetched");

    // Another replica pushes: the branch moved, so the next sync fetches and pulls.
    put_local(&b, &[task("two", json!({"description": "second"}))]);
    sync_ok(&b, client(&b, "b", &remote)).await;
    let before = fetches(&log);
    sync_ok(&a, client(&a, "a", &remote)).await;
    assert!(fetches(&log) > before, "a moved branch was not fetched");
    assert_eq!(local(&a, "two").unwrap().description(), "second");
}
