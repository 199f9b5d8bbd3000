//! External programs, protocol 1 (docs/external-protocol.md): a `type = "KIND"` with no
//! registered factory runs `hypertask-driver-KIND` from `PATH`, which answers JSON lines on
//! stdin/stdout.
//!
//! - The host side: [`ExternalDriver`] is what the registry builds. It starts the program on
//!   first use, handshakes (`hello`), and then behaves as the level the program declared: a
//!   **store**-level program is an [`ExternalStore`] behind [`crate::StoreDriver`], so
//!   hypertask hashes and merges and the program only lists, gets and compare-and-swaps; a
//!   **driver**-level program merges itself and answers `list` and `resolve`.
//! - The program side: [`serve_stdio`] answers the protocol for a [`crate::Store`] (store
//!   level) or a [`crate::Driver`] (driver level), so a driver written in Rust is a program in
//!   a few lines.
//! - Both sides use one typed model of the messages, [`wire`].
//!
//! A wrong `seq`, a line that is not JSON, an answer longer than [`MAX_ANSWER_BYTES`], the
//! program exiting, or no answer within the driver's `timeout` stops the program; it is started
//! again for the next call, and the failed call's error names the driver, the program's exit
//! status and its last stderr lines. The program's stderr otherwise goes to the log.
//!
//! `docs/writing-a-driver.md` in the repository describes the protocol with an example session.

mod host;
mod program;
mod serve;
pub mod wire;

use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

pub use host::{ExternalDriver, ExternalStore};
pub(crate) use program::CHECKED_GRACE;
pub use serve::{serve, serve_stdio, Served};
pub use wire::{Level, PROTOCOL};

/// The longest answer line the host reads from a program; a longer one stops the program.
pub const MAX_ANSWER_BYTES: usize = 256 << 20;

/// The program name for a driver kind: `hypertask-driver-KIND`.
pub fn program_name(kind: &str) -> String {
    format!("hypertask-driver-{kind}")
}

/// The first `hypertask-driver-KIND` on `PATH` that is an executable regular file.
///
/// Kinds are `[A-Za-z0-9_-]` only, and relative `PATH` entries (which would name the current
/// directory) are skipped.
pub fn find_program(kind: &str) -> Option<PathBuf> {
    candidates(std::env::var_os("PATH").as_deref(), kind)
        .into_iter()
        .find(|p| is_executable_file(p))
}

/// Files named `hypertask-driver-KIND` on `PATH` that cannot be run (not executable, not a
/// regular file), for error messages.
pub(crate) fn unusable_programs(kind: &str) -> Vec<PathBuf> {
    candidates(std::env::var_os("PATH").as_deref(), kind)
        .into_iter()
        .filter(|p| p.symlink_metadata().is_ok() && !is_executable_file(p))
        .collect()
}

/// Where `hypertask-driver-KIND` would be on the search path `path`.
fn candidates(path: Option<&std::ffi::OsStr>, kind: &str) -> Vec<PathBuf> {
    let valid = !kind.is_empty()
        && kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let Some(path) = path.filter(|_| valid) else {
        return Vec::new();
    };
    let name = format!("{}{}", program_name(kind), std::env::consts::EXE_SUFFIX);
    std::env::split_paths(&path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(&name))
        .collect()
}

fn is_executable_file(p: &Path) -> bool {
    match std::fs::metadata(p) {
        Ok(m) if m.is_file() => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                m.permissions().mode() & 0o111 != 0
            }
            #[cfg(not(unix))]
            {
                true
            }
        }
        _ => false,
    }
}

/// One line read with a bound.
pub(crate) enum Line {
    /// A complete line, without its `\n` (or `\r\n`).
    Complete(Vec<u8>),
    /// More than the bound without a newline.
    TooLong,
}

/// Reads one line of at most `limit` bytes; `None` at the end of the stream (a last line
/// without a newline counts as the end: the writer stopped mid-answer).
pub(crate) async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> std::io::Result<Option<Line>> {
    let mut buf = Vec::new();
    let bound = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    (&mut *reader)
        .take(bound)
        .read_until(b'\n', &mut buf)
        .await?;
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        return Ok(Some(Line::Complete(buf)));
    }
    if buf.len() > limit {
        return Ok(Some(Line::TooLong));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn only_executable_regular_files_on_path_are_programs() {
        use std::os::unix::fs::PermissionsExt as _;
        let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let name = program_name("findme");
        // First on PATH: a file that is not executable; second: a directory; third: the real one.
        std::fs::write(dirs[0].path().join(&name), "#!/bin/sh\n").unwrap();
        std::fs::create_dir(dirs[1].path().join(&name)).unwrap();
        let real = dirs[2].path().join(&name);
        std::fs::write(&real, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut entries: Vec<PathBuf> = vec!["relative".into()];
        entries.extend(dirs.iter().map(|d| d.path().to_owned()));
        let path = std::env::join_paths(entries).unwrap();
        let lookup = |kind: &str| -> (Option<PathBuf>, Vec<PathBuf>) {
            let all = candidates(Some(&path), kind);
            let found = all.iter().find(|p| is_executable_file(p)).cloned();
            let unusable = all
                .into_iter()
                .filter(|p| p.symlink_metadata().is_ok() && !is_executable_file(p))
                .collect();
            (found, unusable)
        };
        let (found, unusable) = lookup("findme");
        assert_eq!(found, Some(real.clone()));
        assert_eq!(
            unusable,
            vec![dirs[0].path().join(&name), dirs[1].path().join(&name)]
        );
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            lookup("findme").0,
            None,
            "a file that is not executable is not a driver"
        );
        assert!(candidates(Some(&path), "../etc").is_empty());
        assert!(candidates(Some(&path), "").is_empty());
    }

    #[tokio::test]
    async fn lines_are_bounded() {
        let mut input: &[u8] = b"short\r\nexactly10!\nmuch too long a line\ntail";
        let mut r = tokio::io::BufReader::new(&mut input);
        assert!(
            matches!(read_line(&mut r, 10).await.unwrap(), Some(Line::Complete(l)) if l == b"short")
        );
        assert!(
            matches!(read_line(&mut r, 10).await.unwrap(), Some(Line::Complete(l)) if l == b"exactly10!")
        );
        assert!(matches!(
            read_line(&mut r, 10).await.unwrap(),
            Some(Line::TooLong)
        ));
    }
}
