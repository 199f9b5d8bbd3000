//! Each driver's last sync attempt, success and error, kept beside its sync base
//! (`<data_dir>/sync/<driver>.status.json`) so `hypertask status` can tell how current each
//! upstream is, whoever ran the sync (`hypertask sync` or the daemon).

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::files::{file_safe_name, write_atomic};
use crate::sync::DriverReport;

/// What the data directory remembers of the syncs with one driver.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverStatus {
    /// When the last sync with it started (canonical timestamp).
    pub last_attempt: Option<String>,
    /// When the last sync with it that went through cleanly ended.
    pub last_success: Option<String>,
    /// Why the last sync with it did not go through cleanly (`None` when it did).
    pub last_error: Option<String>,
}

impl DriverStatus {
    /// The status of `driver` in `data_dir` (empty when it never synced or the file is
    /// unreadable: it is a report, never a reason to fail).
    pub fn load(data_dir: &Path, driver: &str) -> DriverStatus {
        std::fs::read(path(data_dir, driver))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Records one sync's outcome for this driver: it started at `started`, ended at `ended`
    /// and went through cleanly unless `error` says why not (see [`DriverStatus::error_of`]).
    pub fn record(&mut self, error: Option<String>, started: &str, ended: &str) {
        self.last_attempt = Some(started.to_owned());
        self.last_error = error;
        if self.last_error.is_none() {
            self.last_success = Some(ended.to_owned());
        }
    }

    /// One sentence on what went wrong with a driver in a sync, if anything.
    pub fn error_of(r: &DriverReport) -> Option<String> {
        if let Some(e) = &r.error {
            return Some(e.clone());
        }
        let first = r.failed.first().or_else(|| r.skipped.first())?;
        let n = r.failed.len() + r.skipped.len();
        Some(if n == 1 {
            first.clone()
        } else {
            format!("{first} (and {} more)", n - 1)
        })
    }

    /// Writes it (atomically; not forced to disk: it is a report).
    pub fn save(&self, data_dir: &Path, driver: &str) -> io::Result<()> {
        let bytes = serde_json::to_vec(self).expect("status serialises");
        write_atomic(&path(data_dir, driver), &bytes, false)
    }
}

fn path(data_dir: &Path, driver: &str) -> PathBuf {
    data_dir
        .join("sync")
        .join(format!("{}.status.json", file_safe_name(driver)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_keeps_the_last_success_and_a_success_clears_the_error() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(
            DriverStatus::load(tmp.path(), "box"),
            DriverStatus::default()
        );
        let mut s = DriverStatus::default();
        let ok = DriverStatus::error_of(&DriverReport::default());
        assert_eq!(ok, None);
        s.record(ok.clone(), "t1", "t2");
        let failed = DriverReport {
            error: Some("box: unreachable".into()),
            ..Default::default()
        };
        s.record(DriverStatus::error_of(&failed), "t3", "t4");
        s.save(tmp.path(), "box").unwrap();
        let back = DriverStatus::load(tmp.path(), "box");
        assert_eq!(back.last_attempt.as_deref(), Some("t3"));
        assert_eq!(back.last_success.as_deref(), Some("t2"));
        assert_eq!(back.last_error.as_deref(), Some("box: unreachable"));

        let partial = DriverReport {
            failed: vec!["task 'a': bad".into(), "task 'b': bad".into()],
            ..Default::default()
        };
        s.record(DriverStatus::error_of(&partial), "t5", "t6");
        assert_eq!(s.last_error.as_deref(), Some("task 'a': bad (and 1 more)"));
        s.record(ok, "t7", "t8");
        assert_eq!(s.last_error, None);
        assert_eq!(s.last_success.as_deref(), Some("t8"));
    }
}
