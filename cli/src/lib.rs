//! The `hypertask` command line (DESIGN.md §7–§8) as a library, so a third-party binary can
//! register its own driver kinds next to the built-in ones:
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     let registry = hypertask_cli::builtin_registry();
//!     // my_driver::register(&mut registry);
//!     hypertask_cli::run(registry)
//! }
//! ```
//!
//! Exit status: 0 success, 1 failure (one sentence on stderr), 2 usage error.
#![deny(missing_docs)]

pub mod args;
mod output;
mod remote;
mod serve;
pub mod settings;
mod tasks;
pub mod when;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser as _;
use hypertask_core::{Registry, Replica};

use args::{Cli, Command};
use settings::{Settings, Sources};

/// A mistake in how the command was called: exit status 2.
#[derive(Debug)]
pub(crate) struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// A registry with the built-in driver kinds: fs, git, mongodb, http.
pub fn builtin_registry() -> Registry {
    let mut registry = Registry::new();
    hypertask_driver_fs::register(&mut registry);
    hypertask_driver_git::register(&mut registry);
    hypertask_driver_mongodb::register(&mut registry);
    hypertask_driver_http::register(&mut registry);
    registry
}

/// Runs the command line of this process with the driver kinds in `registry`.
pub fn run(registry: Registry) -> ExitCode {
    let mut cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    if let Err(e) = cli.lift_options() {
        eprintln!("hypertask: {e}; see hypertask --help");
        return ExitCode::from(2);
    }
    // The server logs its requests; other commands only warnings.
    init_tracing(if matches!(cli.command, Command::Serve { .. }) {
        "info"
    } else {
        "warn"
    });
    match dispatch(cli, &registry) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) if e.downcast_ref::<Usage>().is_some() => {
            eprintln!("hypertask: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("hypertask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Log lines go to stderr at `default` level; `HYPERTASK_LOG=debug` shows more.
fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HYPERTASK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .try_init();
}

/// Runs one command; `Ok(false)` is a failure already reported on stderr.
fn dispatch(cli: Cli, registry: &Registry) -> Result<bool> {
    let settings: Settings = settings::load(&Sources::from_process(cli.config, cli.data_dir))?;
    let replica = || Replica::open(&settings.data_dir);
    match cli.command {
        Command::Add { json, words } => tasks::add(&replica()?, &words, json.json)?,
        Command::List {
            all,
            deleted,
            json,
            filters,
        } => {
            let opts = tasks::ListOptions {
                all,
                deleted,
                json: json.json,
                table: std::io::stdout().is_terminal(),
            };
            tasks::list(&replica()?, &filters, opts)?
        }
        Command::Show { id, json } => tasks::show(&replica()?, &id, json.json)?,
        Command::Modify { id, words } => tasks::modify(&replica()?, &id, &words)?,
        Command::Done { id } => tasks::mark(&replica()?, &id, "done", true)?,
        Command::Delete { id } => tasks::mark(&replica()?, &id, "deleted", true)?,
        Command::Restore { id } => tasks::mark(&replica()?, &id, "deleted", false)?,
        Command::Conflicts { json } => tasks::conflicts(&replica()?, json.json)?,
        Command::Sync {
            drivers,
            dry_run,
            force,
        } => {
            return remote::sync(
                &settings,
                registry,
                remote::SyncArgs {
                    drivers,
                    dry_run,
                    force,
                },
            )
        }
        Command::Drivers { check, json } => {
            return remote::drivers(&settings, registry, check, json.json)
        }
        Command::Serve { listen } => return serve::serve(&settings, registry, listen),
    }
    Ok(true)
}
