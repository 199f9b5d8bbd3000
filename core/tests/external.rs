//! The host side of protocol 1 against real programs (small shell scripts): crashes, wrong
//! answers and silence stop the program, the error says why, and the next call starts it anew.
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hypertask_core::external::{ExternalDriver, ExternalStore, Level};
use hypertask_core::{Access, Driver, DriverSpec, ErrorKind, Listing, Store};
use serde_json::json;

/// Shell helpers every test program starts with: `$seq` of the current request, `ok BODY`,
/// and a log of every start in `starts`.
const PRELUDE: &str = r#"#!/bin/sh
dir=$(dirname "$0")
echo started >> "$dir/starts"
ok() { printf '{"seq":%s,"ok":%s}\n' "$seq" "$1"; }
welcome() { ok '{"protocol":1,"level":"store","capabilities":{"max_batch":2}}'; }
while IFS= read -r line; do
  seq=$(printf '%s' "$line" | sed -n 's/^{"seq":\([0-9]*\).*/\1/p')
  case "$line" in
"#;

const EPILOGUE: &str = r#"
  esac
done
"#;

struct Program {
    dir: tempfile::TempDir,
}

impl Program {
    /// A program whose `case` arms are `arms` (matched against the request line).
    fn new(arms: &str) -> Program {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hypertask-driver-test");
        std::fs::write(&path, format!("{PRELUDE}{arms}{EPILOGUE}")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Program { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("hypertask-driver-test")
    }

    fn spec(&self, timeout: Duration) -> DriverSpec {
        DriverSpec::new("prog", "test", json!({"path": "tasks"}), self.dir.path())
            .with_timeout(timeout)
            .with_config_dir(self.dir.path())
    }

    fn driver(&self, timeout: Duration) -> ExternalDriver {
        ExternalDriver::new(self.spec(timeout), self.path())
    }

    fn starts(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("starts"))
            .unwrap_or_default()
            .lines()
            .count()
    }

    fn marker(&self) -> PathBuf {
        self.dir.path().join("marker")
    }
}

const HELLO: &str = r#"    *'"op":"hello"'*) welcome ;;
"#;

/// `list` answered with an empty store once `marker` exists; `first` runs before that.
fn list_after_marker(first: &str) -> String {
    format!(
        r#"    *'"op":"list"'*)
      if [ -f "$dir/marker" ]; then ok '{{"entries":{{}},"problems":[]}}'
      else touch "$dir/marker"; {first}
      fi ;;
"#
    )
}

fn listed_empty(listing: Listing) -> bool {
    matches!(listing, Listing::Changed(inv) if inv.hashes.is_empty() && inv.problems.is_empty())
}

fn exists(p: &Path) -> bool {
    p.exists()
}

#[tokio::test]
async fn a_crash_is_reported_with_exit_status_and_stderr_and_the_program_restarts() {
    let p = Program::new(&format!(
        "{HELLO}{}",
        list_after_marker("echo 'disk on fire' >&2; echo 'giving up' >&2; exit 3")
    ));
    let d = p.driver(Duration::from_secs(30));
    d.begin(Access::Read).await.unwrap();
    let e = d.hashes(None).await.unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("driver 'prog': "), "{msg}");
    assert!(msg.contains("exited before answering list"), "{msg}");
    assert!(msg.contains("exit status: 3"), "{msg}");
    assert!(msg.contains("\"disk on fire\" / \"giving up\""), "{msg}");
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(exists(&p.marker()));
    assert!(listed_empty(d.hashes(None).await.unwrap()));
    assert_eq!(
        p.starts(),
        2,
        "the program is started again for the next call"
    );
}

#[tokio::test]
async fn a_wrong_seq_stops_the_program() {
    let p = Program::new(&format!(
        "{HELLO}{}",
        list_after_marker(r#"printf '{"seq":%s,"ok":{"entries":{}}}\n' "$((seq + 1))""#)
    ));
    let d = p.driver(Duration::from_secs(30));
    let e = d.hashes(None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol);
    assert!(
        e.to_string()
            .contains("answered request 1 (list) with seq 2"),
        "{e}"
    );
    assert!(e.to_string().contains("was stopped"), "{e}");
    assert!(listed_empty(d.hashes(None).await.unwrap()));
    assert_eq!(p.starts(), 2);
}

#[tokio::test]
async fn a_line_that_is_not_json_stops_the_program() {
    let p = Program::new(&format!(
        "{HELLO}{}",
        list_after_marker("echo 'Listing your tasks...'")
    ));
    let d = p.driver(Duration::from_secs(30));
    let e = d.hashes(None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol);
    assert!(e.to_string().contains("not a JSON answer"), "{e}");
    assert!(listed_empty(d.hashes(None).await.unwrap()));
    assert_eq!(p.starts(), 2);
}

#[tokio::test]
async fn silence_past_the_timeout_stops_the_program() {
    // The first list is never answered (the program goes back to reading).
    let p = Program::new(&format!(
        "{HELLO}{}",
        list_after_marker("echo 'thinking very hard' >&2")
    ));
    let d = p.driver(Duration::from_millis(300));
    let e = d.hashes(None).await.unwrap_err();
    let msg = e.to_string();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{msg}");
    assert!(msg.contains("within 0.3 s"), "{msg}");
    assert!(msg.contains("was stopped"), "{msg}");
    assert!(msg.contains("thinking very hard"), "{msg}");
    assert!(listed_empty(d.hashes(None).await.unwrap()));
    assert_eq!(p.starts(), 2);
}

#[tokio::test]
async fn a_silent_handshake_times_out_with_the_programs_stderr() {
    let p = Program::new(
        r#"    *'"op":"hello"'*) echo 'waiting for a licence server' >&2 ;;
"#,
    );
    let d = p.driver(Duration::from_millis(300));
    let e = d.begin(Access::Write).await.unwrap_err();
    let msg = e.to_string();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{msg}");
    assert!(msg.contains("waiting for a licence server"), "{msg}");
}

#[tokio::test]
async fn a_call_dropped_before_its_answer_restarts_the_program() {
    // The first process answers its first list late: only when the next request comes, and
    // then with the stale seq first. A host that reused it would read the stale answer.
    let p = Program::new(&format!(
        "{HELLO}{}",
        r#"    *'"op":"list"'*)
      if [ -f "$dir/marker" ]; then
        if [ -n "$late" ]; then printf '{"seq":%s,"ok":{"entries":{}}}\n' "$late"; fi
        ok '{"entries":{},"problems":[]}'
      else touch "$dir/marker"; late=$seq
      fi ;;
"#
    ));
    let store = ExternalStore::new(p.spec(Duration::from_secs(30)), p.path());
    assert!(
        tokio::time::timeout(Duration::from_millis(300), store.list())
            .await
            .is_err(),
        "the first list is never answered in time"
    );
    let listed = store.list().await.unwrap();
    assert!(listed.entries.is_empty() && listed.problems.is_empty());
    assert_eq!(p.starts(), 2, "the abandoned program was replaced");
}

#[tokio::test]
async fn the_handshake_carries_the_table_and_its_answer_is_checked() {
    let p = Program::new(
        r#"    *'"op":"hello"'*) printf '%s\n' "$line" > "$dir/hello"; welcome ;;
"#,
    );
    let d = p.driver(Duration::from_secs(30));
    assert_eq!(
        d.info().capabilities.max_batch,
        1000,
        "defaults before the handshake"
    );
    d.begin(Access::Write).await.unwrap();
    assert_eq!(
        d.info().capabilities.max_batch,
        2,
        "declared in the handshake"
    );
    assert_eq!(d.level().await.unwrap(), Level::Store);
    let hello: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.dir.path().join("hello")).unwrap())
            .unwrap();
    assert_eq!(
        hello,
        json!({"seq":0,"op":"hello","protocol":1,"name":"prog","kind":"test",
               "options":{"path":"tasks","timeout":30.0,"max_task_bytes":1048576},
               "config_dir":p.dir.path()})
    );

    for (answer, expected) in [
        (
            r#"ok '{"protocol":2,"level":"store"}'"#,
            "speaks protocol 2; this hypertask speaks protocol 1",
        ),
        (
            r#"printf '{"seq":%s,"error":{"kind":"config","message":"no path given","retryable":false}}\n' "$seq""#,
            "failed the handshake (hello): no path given",
        ),
        (
            r#"ok '{"protocol":1,"level":"wizard"}'"#,
            "with something else",
        ),
    ] {
        let p = Program::new(&format!("    *'\"op\":\"hello\"'*) {answer} ;;\n"));
        let e = p
            .driver(Duration::from_secs(30))
            .begin(Access::Write)
            .await
            .unwrap_err();
        assert!(e.to_string().contains(expected), "{e}");
    }
}

#[tokio::test]
async fn a_driver_level_program_is_not_a_store() {
    let p = Program::new(
        r#"    *'"op":"hello"'*) ok '{"protocol":1,"level":"driver"}' ;;
"#,
    );
    let store = ExternalStore::new(p.spec(Duration::from_secs(30)), p.path());
    assert_eq!(store.level().await.unwrap(), Level::Driver);
    let e = store.begin(Access::Write).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("declared level driver"), "{e}");
}

#[tokio::test]
async fn requests_never_exceed_the_declared_max_batch() {
    // Notes how many ids each get asked for.
    let p = Program::new(&format!(
        "{HELLO}{}",
        r#"    *'"op":"get"'*)
      n=$(printf '%s' "$line" | grep -o '"t[0-9]"' | wc -l | tr -d ' ')
      echo "$n" >> "$dir/gets"
      ok '{"tasks":{}}' ;;
"#
    ));
    let store = ExternalStore::new(p.spec(Duration::from_secs(30)), p.path());
    store.begin(Access::Read).await.unwrap();
    let ids: Vec<hypertask_core::TaskId> = (0..5)
        .map(|i| hypertask_core::TaskId::new(format!("t{i}")).unwrap())
        .collect();
    store.get(&ids).await.unwrap();
    let gets = std::fs::read_to_string(p.dir.path().join("gets")).unwrap();
    assert_eq!(
        gets.lines().collect::<Vec<_>>(),
        ["2", "2", "1"],
        "5 ids in requests of at most 2"
    );
}

#[tokio::test]
async fn text_from_a_program_is_made_printable_and_bounded() {
    // An error message with a terminal escape sequence and 5000 more characters, and the same
    // on stderr before crashing.
    let p = Program::new(&format!(
        "{HELLO}{}",
        r#"    *'"op":"check"'*)
      long=$(printf 'x%.0s' $(seq 1 5000))
      printf '{"seq":%s,"error":{"kind":"internal","message":"\\u001b[31mred%s","retryable":false}}\n' "$seq" "$long" ;;
    *'"op":"list"'*) printf '\033[2Jcleared\n' >&2; exit 1 ;;
"#
    ));
    let d = p.driver(Duration::from_secs(30));
    let e = d.check().await.unwrap_err().to_string();
    assert!(
        !e.contains('\u{1b}') && e.contains("\u{fffd}[31mred"),
        "{e:.200}"
    );
    assert!(e.len() < 1500, "{} bytes", e.len());
    let e = d.hashes(None).await.unwrap_err().to_string();
    assert!(!e.contains('\u{1b}') && e.contains("cleared"), "{e}");
}
