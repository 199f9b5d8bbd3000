//! Builds drivers from `[drivers.NAME]` tables by their `type`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::driver::Driver;
use crate::error::{DriverError, ErrorKind};

/// One `[drivers.NAME]` table.
#[derive(Debug, Clone)]
pub struct DriverSpec {
    /// The instance name (`NAME`).
    pub name: String,
    /// The kind (`type = "…"`).
    pub kind: String,
    /// The table's other keys.
    pub options: serde_json::Value,
    /// The local data directory, for drivers that keep local state (indexes, clones).
    pub data_dir: PathBuf,
}

impl DriverSpec {
    /// Deserialises the options into a driver's config struct; errors name the instance.
    pub fn config<T: DeserializeOwned>(&self) -> Result<T, DriverError> {
        serde_json::from_value(self.options.clone()).map_err(|e| {
            DriverError::new(
                &self.name,
                ErrorKind::Config,
                format!(
                    "invalid [drivers.{}] ({} driver): {e}",
                    self.name, self.kind
                ),
            )
        })
    }
}

/// Builds one driver instance from its spec.
pub type Factory =
    Arc<dyn Fn(&DriverSpec) -> Result<Arc<dyn Driver>, DriverError> + Send + Sync + 'static>;

/// Driver factories by kind.
#[derive(Clone, Default)]
pub struct Registry {
    factories: BTreeMap<String, Factory>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("kinds", &self.kinds())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Registers (or replaces) the factory of `kind`.
    pub fn register<F>(&mut self, kind: impl Into<String>, factory: F) -> &mut Self
    where
        F: Fn(&DriverSpec) -> Result<Arc<dyn Driver>, DriverError> + Send + Sync + 'static,
    {
        self.factories.insert(kind.into(), Arc::new(factory));
        self
    }

    /// The registered kinds, sorted.
    pub fn kinds(&self) -> Vec<&str> {
        self.factories.keys().map(String::as_str).collect()
    }

    /// Builds a driver. An unknown kind is an error listing the available ones.
    pub fn build(&self, spec: &DriverSpec) -> Result<Arc<dyn Driver>, DriverError> {
        match self.factories.get(&spec.kind) {
            Some(factory) => factory(spec),
            None => Err(DriverError::new(
                &spec.name,
                ErrorKind::Config,
                format!(
                    "unknown driver type '{}' in [drivers.{}]; available types: {}",
                    spec.kind,
                    spec.name,
                    self.kinds().join(", ")
                ),
            )),
        }
    }
}

/// Expands a leading `~/` to the home directory.
pub fn expand_path(p: impl AsRef<Path>) -> PathBuf {
    let p = p.as_ref();
    if let Ok(rest) = p.strip_prefix("~") {
        if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            return PathBuf::from(home).join(rest);
        }
    }
    p.to_owned()
}
