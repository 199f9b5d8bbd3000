//! Builds drivers from `[drivers.NAME]` tables by their `type`.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::checked::Checked;
use crate::driver::Driver;
use crate::error::{DriverError, ErrorKind};
use crate::external;
use crate::spec::DriverSpec;

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

    /// Builds a driver behind core's checks ([`Checked`], with the spec's timeout and task size
    /// limit). A kind with no factory runs the program `hypertask-driver-KIND` from `PATH` (see
    /// [`crate::external`]); with no such program it is an error listing the available kinds.
    pub fn build(&self, spec: &DriverSpec) -> Result<Checked, DriverError> {
        let driver = match self.factories.get(&spec.kind) {
            Some(factory) => factory(spec)?,
            None => match external::find_program(&spec.kind) {
                Some(program) => Arc::new(external::ExternalDriver::new(spec.clone(), program)),
                None => {
                    return Err(DriverError::new(
                        &spec.name,
                        ErrorKind::Config,
                        format!(
                            "unknown driver type '{}' in [drivers.{}]; available types: {} \
                             (or install an executable named {} on PATH)",
                            spec.kind,
                            spec.name,
                            self.kinds().join(", "),
                            external::program_name(&spec.kind)
                        ),
                    ))
                }
            },
        };
        Ok(Checked::new(driver)
            .with_timeout(spec.timeout)
            .with_max_task_bytes(spec.max_task_bytes))
    }
}
