//! `driver-test NAME`: the conformance suite against one configured driver, whatever its kind.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Result};
use hypertask_core::conformance::{self, CaseResult, Harness, Upstream, Verdict};
use hypertask_core::external::{self, ExternalStore, Level};
use hypertask_core::{Access, Driver, DriverSpec, Listing, Registry, Store};

use crate::output::out;
use crate::settings::Settings;

/// The configured upstream under test: every client is a new driver instance built from the
/// same spec, as another machine would build it.
#[derive(Clone)]
struct Configured {
    registry: Registry,
    spec: DriverSpec,
    /// The program of a store-level external driver, which also gets store-level cases.
    store_program: Option<PathBuf>,
}

#[hypertask_core::async_trait]
impl Upstream for Configured {
    async fn client(&self) -> Arc<dyn Driver> {
        match self.registry.build(&self.spec) {
            Ok(driver) => Arc::new(driver),
            Err(e) => panic!("{e}"),
        }
    }

    async fn store(&self) -> Option<Arc<dyn Store>> {
        let program = self.store_program.clone()?;
        Some(Arc::new(ExternalStore::new(self.spec.clone(), program)))
    }
}

/// Every case gets the one upstream under test (the cases use ids of their own).
struct Single(Configured);

#[hypertask_core::async_trait]
impl Harness for Single {
    async fn upstream(&self) -> Box<dyn Upstream> {
        Box::new(self.0.clone())
    }
}

/// Runs the suite; `Ok(false)` when a case failed (already reported).
pub(crate) fn run(settings: &Settings, registry: &Registry, name: &str) -> Result<bool> {
    let Some(entry) = settings.drivers.iter().find(|d| d.name == name) else {
        return Err(crate::remote::unknown_driver(settings, name).into());
    };
    let spec = crate::remote::spec_of(settings, &entry.name, &entry.kind, &entry.options)?;
    let runtime = crate::remote::runtime()?;
    let _entered = runtime.enter();
    // Built once here so that a bad table is one clear error, not a failure in every case.
    let probe = registry.build(&spec)?;
    let program = match registry.has(&spec.kind) {
        true => None,
        false => external::find_program(&spec.kind),
    };

    let results = runtime.block_on(async {
        refuse_unless_empty(&probe, name).await?;
        drop(probe);
        // A store-level program also answers the store-level cases.
        let store_program = match program {
            Some(program) => {
                let store = ExternalStore::new(spec.clone(), program.clone());
                (store.level().await? == Level::Store).then_some(program)
            }
            None => None,
        };
        let upstream = Configured {
            registry: registry.clone(),
            spec: spec.clone(),
            store_program,
        };
        Ok::<_, anyhow::Error>(run_suite(Single(upstream)).await)
    })?;

    let failed: Vec<&str> = results
        .iter()
        .filter(|r| r.outcome.is_err())
        .map(|r| r.name)
        .collect();
    let skipped = results
        .iter()
        .filter(|r| matches!(r.outcome, Ok(Verdict::Skipped(_))))
        .count();
    let passed = results.len() - failed.len() - skipped;
    out(&format!(
        "driver '{name}' ({}): {passed} passed, {skipped} skipped, {} failed; the upstream now \
         holds the suite's test tasks\n",
        spec.kind,
        failed.len()
    ));
    if !failed.is_empty() {
        eprintln!(
            "hypertask: driver '{name}' failed {} of {} conformance cases: {}",
            failed.len(),
            results.len(),
            failed.join(", ")
        );
    }
    Ok(failed.is_empty())
}

/// The suite writes test tasks: it runs only against an upstream that holds nothing.
async fn refuse_unless_empty(driver: &dyn Driver, name: &str) -> Result<()> {
    let listing = async {
        driver.begin(Access::Read).await?;
        driver.hashes(None).await
    };
    let inventory = match listing.await {
        Ok(Listing::Changed(inventory)) => inventory,
        Ok(Listing::Unchanged) => bail!(
            "driver '{name}' did not list its tasks, so driver-test cannot tell that it is empty"
        ),
        Err(e) => {
            bail!("cannot tell whether driver '{name}' is empty, so driver-test does not run: {e}")
        }
    };
    let (tasks, unreadable) = (inventory.hashes.len(), inventory.problems.len());
    if tasks + unreadable > 0 {
        bail!(
            "driver '{name}' already holds {tasks} tasks and {unreadable} unreadable entries; \
             driver-test writes test tasks, so it runs only against an empty upstream (configure \
             a new, empty one for it)"
        );
    }
    Ok(())
}

/// Runs every case, one line each on stdout, with the failing checks' panic messages kept out
/// of stderr (each is the case's reason).
async fn run_suite(harness: Single) -> Vec<CaseResult> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let results = conformance::run(&harness, |r| out(&format!("{}\n", line(r)))).await;
    std::panic::set_hook(hook);
    results
}

/// `name: ok`, `name: skipped: why` or `name: FAILED: reason`, on one line.
fn line(r: &CaseResult) -> String {
    match &r.outcome {
        Ok(Verdict::Passed) => format!("{}: ok", r.name),
        Ok(Verdict::Skipped(why)) => format!("{}: skipped: {why}", r.name),
        Err(reason) => {
            let reason: Vec<&str> = reason.split_whitespace().collect();
            format!("{}: FAILED: {}", r.name, reason.join(" "))
        }
    }
}
