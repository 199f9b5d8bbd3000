//! One daemon per data directory: `<data_dir>/daemon.pid`, locked while a daemon runs and
//! holding its process id. The operating system releases the lock when the process dies, so a
//! crashed daemon never blocks the next one.

use std::fs::File;
use std::io::{self, Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::files::lock_file;

/// The lock file's name in the data directory.
const PID_FILE: &str = "daemon.pid";

/// How long a starting daemon waits for the lock: long enough for a `hypertask status` that
/// looked at it to let go, short enough to report a running daemon at once.
const START_WAIT: Duration = Duration::from_secs(2);

/// Why a daemon cannot start.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another daemon runs for this data directory.
    #[error("another hypertask daemon{} is already running for {}", pid.map(|p| format!(" (pid {p})")).unwrap_or_default(), data_dir.display())]
    Running {
        /// Its process id, when it could be read.
        pid: Option<u32>,
        /// The data directory.
        data_dir: PathBuf,
    },
    /// The lock file could not be used.
    #[error("{}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// Held by the running daemon; dropping it (or the process ending) lets another start.
#[derive(Debug)]
pub struct DaemonLock {
    _file: File,
}

impl DaemonLock {
    /// Takes the daemon lock of `data_dir` and writes this process's id into it.
    ///
    /// # Errors
    /// [`LockError::Running`] naming the process that holds it.
    pub fn acquire(data_dir: &Path) -> Result<DaemonLock, LockError> {
        let path = data_dir.join(PID_FILE);
        let io_err = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        match lock_file(&path, START_WAIT).map_err(io_err)? {
            Some(mut file) => {
                file.set_len(0).map_err(io_err)?;
                file.rewind().map_err(io_err)?;
                writeln!(file, "{}", std::process::id()).map_err(io_err)?;
                file.flush().map_err(io_err)?;
                Ok(DaemonLock { _file: file })
            }
            None => Err(LockError::Running {
                pid: read_pid(&path),
                data_dir: data_dir.to_owned(),
            }),
        }
    }
}

/// Whether a daemon runs for `data_dir`, and its process id when it wrote one.
pub fn running(data_dir: &Path) -> (bool, Option<u32>) {
    let path = data_dir.join(PID_FILE);
    if std::fs::symlink_metadata(&path).is_err() {
        return (false, None);
    }
    match lock_file(&path, Duration::ZERO) {
        // Nobody holds it: no daemon (the lock is released as this handle drops).
        Ok(Some(_)) => (false, None),
        Ok(None) => (true, read_pid(&path)),
        // Unusable lock file: no daemon could be holding it either.
        Err(_) => (false, None),
    }
}

fn read_pid(path: &Path) -> Option<u32> {
    let mut text = String::new();
    File::open(path).ok()?.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_daemon_is_refused_with_the_first_ones_pid() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(running(tmp.path()), (false, None));
        let held = DaemonLock::acquire(tmp.path()).unwrap();
        let me = Some(std::process::id());
        assert_eq!(running(tmp.path()), (true, me));
        match DaemonLock::acquire(tmp.path()) {
            Err(e @ LockError::Running { pid, .. }) => {
                assert_eq!(pid, me);
                assert!(e
                    .to_string()
                    .contains(&format!("pid {}", std::process::id())));
            }
            other => panic!("expected Running, got {other:?}"),
        }
        drop(held);
        assert_eq!(running(tmp.path()), (false, None));
        let _again = DaemonLock::acquire(tmp.path()).unwrap();
    }
}
