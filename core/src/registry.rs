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
        let (driver, timeout) = match self.factories.get(&spec.kind) {
            Some(factory) => (factory(spec)?, spec.timeout),
            None => match external::find_program(&spec.kind) {
                // The program's own per-request timeout fires first and reports its exit
                // status and stderr; the grace covers stopping it.
                Some(program) => (
                    Arc::new(external::ExternalDriver::new(spec.clone(), program))
                        as Arc<dyn Driver>,
                    spec.timeout + external::CHECKED_GRACE,
                ),
                None => return Err(self.unknown_kind(spec)),
            },
        };
        Ok(Checked::new(driver)
            .with_timeout(timeout)
            .with_max_task_bytes(spec.max_task_bytes))
    }

    fn unknown_kind(&self, spec: &DriverSpec) -> DriverError {
        let program = external::program_name(&spec.kind);
        let unusable: Vec<String> = external::unusable_programs(&spec.kind)
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let hint = if unusable.is_empty() {
            format!("or install an executable named {program} on PATH")
        } else {
            format!(
                "{} on PATH is not an executable file, so it is not a driver",
                unusable.join(" and ")
            )
        };
        DriverError::new(
            &spec.name,
            ErrorKind::Config,
            format!(
                "unknown driver type '{}' in [drivers.{}]; available types: {} ({hint})",
                spec.kind,
                spec.name,
                self.kinds().join(", "),
            ),
        )
    }

    /// Whether `kind` has a registered factory (otherwise [`Registry::build`] looks for an
    /// external program).
    pub fn has(&self, kind: &str) -> bool {
        self.factories.contains_key(kind)
    }
}
