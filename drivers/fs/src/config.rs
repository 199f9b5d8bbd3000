//! The `[drivers.NAME]` table of an fs driver.

use std::path::PathBuf;

use serde::Deserialize;

/// Options of `type = "fs"`.
///
/// ```toml
/// [drivers.dropbox]
/// type = "fs"
/// path = "~/Dropbox/hypertask"   # the shared directory
/// create = false                 # create it when missing (default: report it)
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsConfig {
    /// The shared directory holding `<id>.json` files. `~/` is expanded.
    pub path: PathBuf,
    /// Create the directory on the first write when it is missing.
    ///
    /// Off by default: a configured directory that does not exist is most likely a typo or an
    /// unmounted drive, and silently creating it would split the user's tasks in two.
    #[serde(default)]
    pub create: bool,
}
