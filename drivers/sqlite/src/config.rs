//! The `[drivers.NAME]` table of a sqlite driver.

use std::path::PathBuf;

use serde::Deserialize;

/// Options of `type = "sqlite"`.
///
/// ```toml
/// [drivers.home]
/// type = "sqlite"
/// path = "~/hypertask.sqlite3"   # the database file
/// create = true                  # create it on the first write when missing
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteConfig {
    /// The database file. `~/` is expanded.
    pub path: PathBuf,
    /// Create the file on the first write when it is missing. Off by default: a configured file
    /// that does not exist is most likely a typo or an unmounted drive.
    #[serde(default)]
    pub create: bool,
}

impl SqliteConfig {
    /// A config for `path`, created when missing.
    pub fn new(path: impl Into<PathBuf>) -> SqliteConfig {
        SqliteConfig {
            path: path.into(),
            create: true,
        }
    }
}
