//! Builds drivers from `[drivers.NAME]` tables by their `type`.

use std::collections::{BTreeMap, BTreeSet};
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
    /// Kinds whose factory keeps a [`DriverSpec::namespace`] apart.
    namespaced: BTreeSet<String>,
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
        let kind = kind.into();
        self.namespaced.remove(&kind);
        self.factories.insert(kind, Arc::new(factory));
        self
    }

    /// Registers (or replaces) the factory of `kind`, which keeps each
    /// [`DriverSpec::namespace`] apart from every other one: a spec with namespace `N` gets a
    /// driver that sees only `N`'s tasks, and no other namespace ever sees them. A spec with a
    /// namespace is refused for every kind not registered this way.
    pub fn register_namespaced<F>(&mut self, kind: impl Into<String>, factory: F) -> &mut Self
    where
        F: Fn(&DriverSpec) -> Result<Arc<dyn Driver>, DriverError> + Send + Sync + 'static,
    {
        let kind = kind.into();
        self.register(kind.clone(), factory);
        self.namespaced.insert(kind);
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
        if spec.namespace.is_some() && !self.namespaced.contains(&spec.kind) {
            let able: Vec<&str> = self.namespaced.iter().map(String::as_str).collect();
            return Err(DriverError::new(
                &spec.name,
                ErrorKind::Config,
                format!(
                    "a {} store cannot keep several users' tasks apart; use one of: {}",
                    spec.kind,
                    if able.is_empty() {
                        "(none registered)".to_owned()
                    } else {
                        able.join(", ")
                    }
                ),
            ));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;
    use crate::store::StoreDriver;
    use serde_json::json;

    #[test]
    fn only_namespaced_kinds_accept_a_namespace() {
        let mut registry = Registry::new();
        registry.register("plain", |spec| {
            Ok(Arc::new(StoreDriver::new(MemoryStore::new(&spec.name))) as Arc<dyn Driver>)
        });
        registry.register_namespaced("apart", |spec| {
            Ok(Arc::new(StoreDriver::new(MemoryStore::new(&spec.name))) as Arc<dyn Driver>)
        });
        let spec = |kind: &str| {
            DriverSpec::new("store", kind, json!({}), "/data")
                .with_namespace("alice")
                .unwrap()
        };
        assert!(registry.build(&spec("apart")).is_ok());
        let e = registry.build(&spec("plain")).unwrap_err().to_string();
        assert!(e.contains("cannot keep several users' tasks apart"), "{e}");
        assert!(e.contains("apart"), "{e}");
        // Re-registering a kind the plain way drops its namespace support.
        registry.register("apart", |spec| {
            Ok(Arc::new(StoreDriver::new(MemoryStore::new(&spec.name))) as Arc<dyn Driver>)
        });
        assert!(registry.build(&spec("apart")).is_err());
    }
}
