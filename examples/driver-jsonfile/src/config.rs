//! `[drivers.NAME] type = "jsonfile"`.

use std::path::PathBuf;

use serde::Deserialize;

/// Configuration of a jsonfile driver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonFileConfig {
    /// The JSON file holding every task, created on first write; a relative path is taken from
    /// the config file's directory.
    pub path: PathBuf,
}
