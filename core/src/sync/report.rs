//! What a sync reports, and the progress hook a front end draws from.

use serde::Serialize;

use crate::checked::Checked;
use crate::driver::Driver;
use crate::error::DriverError;
use crate::hash::ContentHash;

/// What happened with one driver.
#[derive(Debug, Default, Serialize)]
pub struct DriverReport {
    /// Instance name.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// Tasks taken from the driver unchanged.
    pub pulled: usize,
    /// Tasks sent to the driver unchanged.
    pub pushed: usize,
    /// Tasks that both sides changed, merged.
    pub merged: usize,
    /// Tasks that failed alone in the last pass, each naming what and where.
    pub failed: Vec<String>,
    /// Upstream entries skipped as invalid, each named.
    pub skipped: Vec<String>,
    /// The error that stopped this driver, if any.
    pub error: Option<String>,
    /// Whether a retry later may help with `error`.
    pub retryable: bool,
    /// What the driver created during this sync (a directory, a repository, a remote).
    pub created: Vec<String>,
    /// The local cache's root hash this driver's upstream agreed with at the end of the sync
    /// (`None` when it failed or did not reach agreement), so a caller can tell later local
    /// changes from the sync's own writes.
    #[serde(skip)]
    pub agreed_root: Option<ContentHash>,
}

impl DriverReport {
    /// Whether anything went wrong with this driver.
    pub fn is_ok(&self) -> bool {
        self.error.is_none() && self.failed.is_empty() && self.skipped.is_empty()
    }

    /// Records the error that stopped this driver (the first one: later ones follow from it).
    pub(super) fn fail(&mut self, e: &DriverError) {
        if self.error.is_none() {
            self.retryable = e.is_retryable();
            self.error = Some(e.to_string());
        }
    }

    /// Counts one task by which sides it changed.
    pub(super) fn count(&mut self, changed_locally: bool, changed_upstream: bool) {
        match (changed_locally, changed_upstream) {
            (true, true) => self.merged += 1,
            (true, false) => self.pulled += 1,
            (false, true) => self.pushed += 1,
            (false, false) => {}
        }
    }

    /// Tasks changed on either side so far.
    pub(super) fn changes(&self) -> usize {
        self.pulled + self.pushed + self.merged
    }
}

/// What a whole sync did.
#[derive(Debug, Default, Serialize)]
pub struct SyncReport {
    /// One entry per driver, in configuration order.
    pub drivers: Vec<DriverReport>,
    /// Local cache files that could not be read, each named (and where it was moved).
    pub local_skipped: Vec<String>,
    /// Rounds over all drivers.
    pub rounds: usize,
    /// Whether this was a dry run (nothing written).
    pub dry_run: bool,
}

impl SyncReport {
    pub(super) fn new(drivers: &[Checked], dry_run: bool) -> SyncReport {
        SyncReport {
            dry_run,
            drivers: drivers
                .iter()
                .map(|d| {
                    let info = d.info();
                    DriverReport {
                        name: info.name,
                        kind: info.kind,
                        ..Default::default()
                    }
                })
                .collect(),
            ..Default::default()
        }
    }

    /// Success: every driver synced and nothing was skipped.
    pub fn is_ok(&self) -> bool {
        self.local_skipped.is_empty() && self.drivers.iter().all(DriverReport::is_ok)
    }
}

/// Receives progress, for a progress bar.
pub trait Progress: Send + Sync {
    /// A driver starts a pass over `total` differing tasks.
    fn start(&self, driver: &str, total: usize);
    /// `n` more tasks are done.
    fn advance(&self, n: usize);
    /// The pass is over.
    fn finish(&self);
}

/// No progress display.
#[derive(Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: usize) {}
    fn advance(&self, _: usize) {}
    fn finish(&self) {}
}
