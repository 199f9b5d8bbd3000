//! The commands that talk to drivers: `sync` and `drivers`.

use std::io::IsTerminal as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use hypertask_core::{
    Checked, Driver, DriverReport, DriverSpec, Engine, Health, Progress, Registry, SyncOptions,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::output::{out, Table};
use crate::settings::Settings;
use crate::Usage;

/// How long `drivers --check` waits for one driver.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// A driver table that could not be built (unknown type, bad options).
pub(crate) struct Broken {
    name: String,
    kind: String,
    error: String,
}

/// The drivers that were built, and the tables that could not be.
type Built = (Vec<Checked>, Vec<Broken>);

/// Builds the configured drivers (all, or those named). Must run inside the tokio runtime:
/// some drivers create clients that need it.
pub(crate) fn build(settings: &Settings, registry: &Registry, only: &[String]) -> Result<Built> {
    for name in only {
        if !settings.drivers.iter().any(|d| &d.name == name) {
            return Err(unknown_driver(settings, name).into());
        }
    }
    let mut built = Vec::new();
    let mut broken = Vec::new();
    for entry in &settings.drivers {
        if !only.is_empty() && !only.contains(&entry.name) {
            continue;
        }
        match spec_of(settings, &entry.name, &entry.kind, &entry.options)
            .and_then(|spec| registry.build(&spec))
        {
            Ok(d) => built.push(d),
            Err(e) => broken.push(Broken {
                name: entry.name.clone(),
                kind: entry.kind.clone(),
                error: e.to_string(),
            }),
        }
    }
    Ok((built, broken))
}

/// The usage error for `--driver NAME` or `driver-test NAME` naming no configured driver.
pub(crate) fn unknown_driver(settings: &Settings, name: &str) -> Usage {
    let known: Vec<&str> = settings.drivers.iter().map(|d| d.name.as_str()).collect();
    let known = if known.is_empty() {
        "none are configured".to_owned()
    } else {
        format!("configured: {}", known.join(", "))
    };
    Usage(format!("there is no driver named '{name}' ({known})"))
}

/// The spec of one driver table: core takes its own keys (`timeout`, `max_task_bytes`) out.
pub(crate) fn spec_of(
    settings: &Settings,
    name: &str,
    kind: &str,
    options: &serde_json::Value,
) -> Result<DriverSpec, hypertask_core::DriverError> {
    let mut table = options.clone();
    if let Some(t) = table.as_object_mut() {
        t.insert("type".into(), kind.into());
    }
    DriverSpec::from_table(
        name,
        table,
        &settings.data_dir,
        Some(settings.config_dir.clone()),
    )
    .map(|spec| spec.with_durability(settings.durability))
}

/// Where the settings came from, for "nothing configured" messages.
pub(crate) fn origin(settings: &Settings) -> String {
    match &settings.file {
        Some(f) => format!("in {}", f.display()),
        None => "(no config file)".to_owned(),
    }
}

/// What `sync` was asked to do.
#[derive(Debug, Clone)]
pub(crate) struct SyncArgs {
    /// `--driver` names.
    pub drivers: Vec<String>,
    /// `--dry-run`.
    pub dry_run: bool,
    /// `--force`.
    pub force: bool,
    /// `--rescan`.
    pub rescan: bool,
}

/// `sync`. Returns whether everything synced.
pub(crate) fn sync(settings: &Settings, registry: &Registry, args: SyncArgs) -> Result<bool> {
    if settings.drivers.is_empty() {
        out(&format!(
            "nothing to sync: no drivers are configured {}; add a [drivers.NAME] table\n",
            origin(settings)
        ));
        return Ok(true);
    }
    let runtime = runtime()?;
    let _entered = runtime.enter();
    let (drivers, broken) = build(settings, registry, &args.drivers)?;
    let new_cache = !settings.data_dir.exists();
    let replica = settings.replica()?;
    let options = SyncOptions {
        dry_run: args.dry_run,
        force: args.force,
        rescan: args.rescan,
        max_delete_percent: settings.max_delete_percent,
        ..SyncOptions::default()
    };
    let mut engine = Engine::new(replica, drivers, options);
    if std::io::stderr().is_terminal() {
        engine = engine.with_progress(Arc::new(Bar::default()));
    }
    let report = runtime.block_on(engine.sync())?;

    let mut ok = broken.is_empty() && report.is_ok();
    let mut summary = String::new();
    if new_cache {
        summary.push_str(&format!(
            "local cache: created {}\n",
            settings.data_dir.display()
        ));
    }
    for b in &broken {
        eprintln!("hypertask: {}", b.error);
        summary.push_str(&format!("{} ({}): not started\n", b.name, b.kind));
    }
    for skipped in &report.local_skipped {
        eprintln!("hypertask: skipped {skipped}");
    }
    for d in &report.drivers {
        for line in d.failed.iter().chain(&d.skipped) {
            eprintln!("hypertask: {line}");
        }
        if let Some(e) = &d.error {
            let hint = if d.retryable {
                " (temporary: try again later)"
            } else {
                ""
            };
            eprintln!("hypertask: {e}{hint}");
        }
        summary.push_str(&summary_line(d, report.dry_run));
        summary.push('\n');
    }
    if report.dry_run {
        summary.push_str("dry run: nothing was written\n");
    }
    out(&summary);
    ok &= report.drivers.iter().all(DriverReport::is_ok);
    Ok(ok)
}

/// `dropbox (fs): pulled 2, pushed 1, merged 0`; what the driver created comes last.
fn summary_line(d: &DriverReport, dry_run: bool) -> String {
    let created = match d.created.as_slice() {
        [] => String::new(),
        [one] => format!("; created {one}"),
        [init @ .., last] => format!("; created {} and {last}", init.join(", ")),
    };
    format!("{}{created}", outcome(d, dry_run))
}

/// What a sync did with one driver, without what it created.
fn outcome(d: &DriverReport, dry_run: bool) -> String {
    let head = format!("{} ({})", d.name, d.kind);
    if d.error.is_some() {
        return format!("{head}: failed");
    }
    let parts: Vec<String> = [
        ("pulled", d.pulled),
        ("pushed", d.pushed),
        ("merged", d.merged),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(what, n)| format!("{what} {n}"))
    .collect();
    let mut counts = if parts.is_empty() {
        Vec::new()
    } else if dry_run {
        vec![format!("would have {}", parts.join(", "))]
    } else {
        vec![parts.join(", ")]
    };
    if !d.failed.is_empty() {
        counts.push(format!("{} failed", d.failed.len()));
    }
    if !d.skipped.is_empty() {
        counts.push(format!("{} skipped as invalid", d.skipped.len()));
    }
    // "Up to date" only when nothing failed: a failed task is not in sync.
    let counts = if counts.is_empty() && !d.created.is_empty() {
        "nothing to sync yet".to_owned()
    } else if counts.is_empty() {
        "up to date".to_owned()
    } else {
        counts.join(", ")
    };
    format!("{head}: {counts}")
}

/// One row of `drivers --json`.
#[derive(Serialize)]
struct DriverRow {
    name: String,
    kind: String,
    capabilities: Option<hypertask_core::Capabilities>,
    health: Option<Health>,
    error: Option<String>,
}

/// `drivers [--check]`. Returns whether every driver was built (and, with `--check`, healthy).
pub(crate) fn drivers(
    settings: &Settings,
    registry: &Registry,
    check: bool,
    json: bool,
) -> Result<bool> {
    if settings.drivers.is_empty() && !json {
        out(&format!("no drivers are configured {}\n", origin(settings)));
        return Ok(true);
    }
    let runtime = runtime()?;
    let _entered = runtime.enter();
    let (built, broken) = build(settings, registry, &[])?;
    let mut rows: Vec<DriverRow> = Vec::new();
    for d in built {
        let info = d.info();
        let (health, error) = if check {
            match runtime.block_on(tokio::time::timeout(CHECK_TIMEOUT, d.check())) {
                Ok(Ok(h)) => (Some(h), None),
                Ok(Err(e)) => (None, Some(e.to_string())),
                Err(_) => (
                    None,
                    Some(format!(
                        "driver '{}': no answer within {CHECK_TIMEOUT:?}",
                        info.name
                    )),
                ),
            }
        } else {
            (None, None)
        };
        rows.push(DriverRow {
            name: info.name,
            kind: info.kind,
            capabilities: Some(info.capabilities),
            health,
            error,
        });
    }
    for b in broken {
        rows.push(DriverRow {
            name: b.name,
            kind: b.kind,
            capabilities: None,
            health: None,
            error: Some(b.error),
        });
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    let ok = rows
        .iter()
        .all(|r| r.error.is_none() && r.health.as_ref().is_none_or(|h| h.ok));
    if json {
        out(&format!("{}\n", serde_json::to_string_pretty(&rows)?));
        return Ok(ok);
    }
    let mut header = vec!["Name", "Kind", "Capabilities"];
    if check {
        header.push("Health");
    }
    let mut table = Table::new(&header);
    for r in &rows {
        let caps = match &r.capabilities {
            Some(c) => {
                let mut parts = vec![if c.remote { "remote" } else { "local" }.to_owned()];
                if c.atomic_writes {
                    parts.push("atomic writes".into());
                }
                if c.cheap_root {
                    parts.push("cheap no-op check".into());
                }
                parts.push(format!("batches of {}", c.max_batch));
                parts.join(", ")
            }
            None => "-".to_owned(),
        };
        let mut row = vec![r.name.clone(), r.kind.clone(), caps];
        if check {
            row.push(match (&r.health, &r.error) {
                (Some(h), _) => format!("{}: {}", if h.ok { "ok" } else { "FAILING" }, h.detail),
                (None, Some(e)) => format!("FAILING: {e}"),
                (None, None) => String::new(),
            });
        }
        table.row(row);
    }
    out(&table.render());
    for r in &rows {
        if let (Some(e), false) = (&r.error, check) {
            eprintln!("hypertask: {e}");
        }
    }
    Ok(ok)
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// A progress bar on stderr, one per driver pass.
#[derive(Default)]
struct Bar {
    bar: Mutex<Option<ProgressBar>>,
}

impl Progress for Bar {
    fn start(&self, driver: &str, total: usize) {
        let bar = ProgressBar::new(total as u64).with_message(driver.to_owned());
        if let Ok(style) = ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} tasks") {
            bar.set_style(style.progress_chars("=> "));
        }
        if let Ok(mut slot) = self.bar.lock() {
            *slot = Some(bar);
        }
    }

    fn advance(&self, n: usize) {
        if let Ok(slot) = self.bar.lock() {
            if let Some(bar) = slot.as_ref() {
                bar.inc(n as u64);
            }
        }
    }

    fn finish(&self) {
        if let Ok(mut slot) = self.bar.lock() {
            if let Some(bar) = slot.take() {
                bar.finish_and_clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_with_failures_is_never_up_to_date() {
        let mut d = DriverReport {
            name: "server".into(),
            kind: "http".into(),
            ..Default::default()
        };
        assert_eq!(summary_line(&d, false), "server (http): up to date");
        d.failed = vec!["a".into(), "b".into(), "c".into()];
        assert_eq!(summary_line(&d, false), "server (http): 3 failed");
        d.pushed = 2;
        assert_eq!(summary_line(&d, false), "server (http): pushed 2, 3 failed");
        assert_eq!(
            summary_line(&d, true),
            "server (http): would have pushed 2, 3 failed"
        );
    }

    #[test]
    fn a_summary_names_what_the_driver_created() {
        let mut d = DriverReport {
            name: "repo".into(),
            kind: "git".into(),
            created: vec!["the clone /a".into(), "the bare remote /b".into()],
            ..Default::default()
        };
        assert_eq!(
            summary_line(&d, false),
            "repo (git): nothing to sync yet; created the clone /a and the bare remote /b"
        );
        d.pushed = 1;
        d.created.truncate(1);
        assert_eq!(
            summary_line(&d, false),
            "repo (git): pushed 1; created the clone /a"
        );
    }
}
