//! Builds drivers from `[drivers.NAME]` tables by their `type`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::driver::Driver;
use crate::error::{DriverError, ErrorKind};
use crate::external;

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

    /// Builds a driver. A kind with no factory runs the program `hypertask-driver-KIND` from
    /// `PATH` (see [`crate::external`]); with no such program it is an error listing the
    /// available kinds.
    pub fn build(&self, spec: &DriverSpec) -> Result<Arc<dyn Driver>, DriverError> {
        if let Some(factory) = self.factories.get(&spec.kind) {
            return factory(spec);
        }
        if let Some(program) = external::find_program(&spec.kind) {
            return Ok(Arc::new(external::ExternalDriver::new(
                spec.clone(),
                program,
            )));
        }
        Err(DriverError::new(
            &spec.name,
            ErrorKind::Config,
            format!(
                "unknown driver type '{}' in [drivers.{}]; available types: {} \
                 (or install a program named {} on PATH)",
                spec.kind,
                spec.name,
                self.kinds().join(", "),
                external::program_name(&spec.kind)
            ),
        ))
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
