//! `daemon` and `status`: the front end of core's daemon, which does the work.

use anyhow::{bail, Result};
use hypertask_core::daemon::{self, Daemon, DaemonLock, DaemonOptions, Termination, Upstream};
use hypertask_core::{Registry, SyncOptions};

use crate::output::{out, Table};
use crate::remote;
use crate::settings::Settings;

/// `daemon`: runs until SIGTERM or SIGINT, then exits 0 once the sync in flight is done.
pub(crate) fn daemon(settings: &Settings, registry: &Registry) -> Result<bool> {
    if settings.drivers.is_empty() {
        bail!(
            "nothing to sync: no drivers are configured {}; add a [drivers.NAME] table",
            remote::origin(settings)
        );
    }
    let replica = settings.replica()?;
    // First, so a second daemon says at once which process holds the data directory.
    let lock = DaemonLock::acquire(&settings.data_dir)?;
    let runtime = remote::runtime()?;
    let _entered = runtime.enter();
    let termination = Termination::new()?;
    let mut upstreams = Vec::new();
    for entry in &settings.drivers {
        let built =
            remote::spec_of(settings, &entry.name, &entry.kind, &entry.options).and_then(|spec| {
                Ok(Upstream {
                    driver: registry.build(&spec)?,
                    poll_interval: spec.poll_interval,
                })
            });
        match built {
            Ok(up) => upstreams.push(up),
            Err(e) => eprintln!("hypertask: {e}; the daemon goes on without it"),
        }
    }
    if upstreams.is_empty() {
        bail!("no configured driver could be started");
    }
    let options = DaemonOptions {
        sync: SyncOptions {
            max_delete_percent: settings.max_delete_percent,
            ..SyncOptions::default()
        },
        ..DaemonOptions::default()
    };
    let daemon = Daemon::new(lock, replica, upstreams, options);
    runtime.block_on(daemon.run(termination.wait()))?;
    Ok(true)
}

/// `status [--json]`.
pub(crate) fn status(settings: &Settings, json: bool) -> Result<bool> {
    let replica = settings.replica()?;
    let drivers: Vec<(String, String)> = settings
        .drivers
        .iter()
        .map(|d| (d.name.clone(), d.kind.clone()))
        .collect();
    let status = daemon::status(&replica, &drivers)?;
    if json {
        out(&format!("{}\n", serde_json::to_string_pretty(&status)?));
        return Ok(true);
    }
    let mut text = match (status.daemon.running, status.daemon.pid) {
        (true, Some(pid)) => format!("daemon: running (pid {pid})\n"),
        (true, None) => "daemon: running\n".to_owned(),
        (false, _) => "daemon: not running (start it with `hypertask daemon`)\n".to_owned(),
    };
    if status.drivers.is_empty() {
        text.push_str(&format!(
            "no drivers are configured {}\n",
            remote::origin(settings)
        ));
        out(&text);
        return Ok(true);
    }
    let mut table = Table::new(&[
        "Name",
        "Kind",
        "Last success",
        "Last attempt",
        "Pending",
        "Last error",
    ]);
    let never = || "never".to_owned();
    for d in &status.drivers {
        table.row(vec![
            d.name.clone(),
            d.kind.clone(),
            d.last_success.clone().unwrap_or_else(never),
            d.last_attempt.clone().unwrap_or_else(never),
            d.pending.to_string(),
            d.last_error.clone().unwrap_or_default(),
        ]);
    }
    text.push_str(&table.render());
    out(&text);
    Ok(true)
}
