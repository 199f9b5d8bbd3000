//! The `hypertask` command line as a library, so a third-party binary can register its own
//! driver kinds next to the built-in ones:
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     let mut registry = hypertask_cli::builtin_registry();
//!     # let register = |_: &mut hypertask_core::Registry| ();
//!     register(&mut registry); // e.g. my_driver::register
//!     hypertask_cli::run(registry)
//! }
//! ```
//!
//! The built-in kinds are cargo features (`fs`, `git`, `mongodb`, `http`, all on by default);
//! such a binary can leave them out with `default-features = false`.
//!
//! Exit status: 0 success, 1 failure (one sentence on stderr), 2 usage error.
#![deny(missing_docs)]

pub mod args;
mod daemon;
mod driver_test;
mod edit;
mod editor;
mod output;
mod parse;
mod remote;
mod render;
mod reports;
#[cfg(feature = "http")]
mod serve;
mod session;
pub mod settings;
mod transfer;

/// Dates people type; the rules live in core so every front end reads them alike.
pub use hypertask_core::manage::when;

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Result;
use clap::CommandFactory as _;
use clap::Parser as _;
use hypertask_core::manage::Status;
use hypertask_core::Registry;

use args::{Cli, Command};
use session::Session;
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

/// A registry with the built-in driver kinds compiled into this crate: `fs`, `git`, `mongodb`,
/// `http` and `sqlite`, each behind the cargo feature of the same name (all on by default).
pub fn builtin_registry() -> Registry {
    #[allow(unused_mut)]
    let mut registry = Registry::new();
    #[cfg(feature = "fs")]
    hypertask_driver_fs::register(&mut registry);
    #[cfg(feature = "git")]
    hypertask_driver_git::register(&mut registry);
    #[cfg(feature = "mongodb")]
    hypertask_driver_mongodb::register(&mut registry);
    #[cfg(feature = "http")]
    hypertask_driver_http::register(&mut registry);
    #[cfg(feature = "sqlite")]
    hypertask_driver_sqlite::register(&mut registry);
    registry
}

/// Runs the command line of this process with the driver kinds in `registry`.
pub fn run(registry: Registry) -> ExitCode {
    let args: Vec<String> = match std::env::args_os().map(|a| a.into_string()).collect() {
        Ok(args) => args,
        Err(bad) => {
            eprintln!("hypertask: the argument {bad:?} is not valid UTF-8");
            return ExitCode::from(2);
        }
    };
    let (args, literal) = args::split_literal(args);
    let mut cli = match Cli::try_parse_from(args::taskwarrior_order(args)) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    cli.literal = literal;
    if let Err(e) = cli.lift_options() {
        eprintln!("hypertask: {e}; see hypertask --help");
        return ExitCode::from(2);
    }
    // The server logs its requests and the daemon its syncs; other commands only warnings.
    init_tracing(
        if matches!(cli.command, Command::Serve { .. } | Command::Daemon) {
            "info"
        } else {
            "warn"
        },
    );
    match dispatch(cli, &registry) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        // Not `eprintln!`, which panics when stderr is closed.
        Err(e) if e.downcast_ref::<Usage>().is_some() => {
            let _ = writeln!(std::io::stderr(), "hypertask: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "hypertask: {}", sentence(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes as one line, each said once: a cause whose text is already in the
/// line (an error whose message includes its own source) is not repeated.
fn sentence(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

/// Log lines go to stderr at `default` level; `HYPERTASK_LOG=debug` shows more. Colour only
/// when stderr is a terminal; a log line that cannot be written (stderr closed or on a full
/// disk) is dropped, never a panic.
fn init_tracing(default: &str) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("HYPERTASK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LossyStderr)
        .with_ansi(std::io::stderr().is_terminal())
        .log_internal_errors(false)
        .without_time()
        .with_target(false)
        .try_init();
}

/// Standard error for log lines, dropping what cannot be written.
struct LossyStderr;

impl std::io::Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// Runs one command; `Ok(false)` is a failure already reported on stderr.
fn dispatch(cli: Cli, registry: &Registry) -> Result<bool> {
    match &cli.command {
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            let mut buf = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "hypertask", &mut buf);
            output::out(&String::from_utf8_lossy(&buf));
            return Ok(true);
        }
        Command::Man => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut buf)?;
            output::out(&String::from_utf8_lossy(&buf));
            return Ok(true);
        }
        _ => {}
    }
    let settings: Settings = settings::load(&Sources::from_process(cli.config, cli.data_dir))?;
    let session = || {
        Session::open(
            &settings,
            cli.yes,
            cli.color,
            cli.filter.clone(),
            cli.literal.clone(),
        )
    };
    use edit::{Mark, Text};
    use reports::Report;
    const OPEN: &[Status] = &[Status::Pending];
    match cli.command {
        Command::Add { json, words } => edit::add(&session()?, &words, json.json)?,
        Command::List {
            all,
            deleted,
            json,
            filter,
        } => {
            let mut statuses = OPEN.to_vec();
            if all {
                statuses.extend([Status::Waiting, Status::Completed, Status::Recurring]);
            }
            if deleted {
                statuses.push(Status::Deleted);
            }
            reports::list(
                &session()?,
                &filter.words,
                Report::Next,
                &statuses,
                json.json,
            )?
        }
        Command::Completed { json, filter } => reports::list(
            &session()?,
            &filter.words,
            Report::Completed,
            &[Status::Completed],
            json.json,
        )?,
        Command::Waiting { json, filter } => reports::list(
            &session()?,
            &filter.words,
            Report::Waiting,
            &[Status::Waiting],
            json.json,
        )?,
        Command::Projects { json } => reports::counts(&session()?, true, json.json)?,
        Command::Tags { json } => reports::counts(&session()?, false, json.json)?,
        Command::Show { json, filter } => reports::show(&session()?, &filter.words, json.json)?,
        Command::Modify { words } => edit::modify(&session()?, &words.words, Text::Replace)?,
        Command::Append { words } => edit::modify(&session()?, &words.words, Text::Append)?,
        Command::Prepend { words } => edit::modify(&session()?, &words.words, Text::Prepend)?,
        Command::Annotate { words } => edit::annotate(&session()?, &words.words)?,
        Command::Done { filter } => edit::mark(&session()?, &filter.words, Mark::Done)?,
        Command::Delete { filter } => edit::mark(&session()?, &filter.words, Mark::Delete)?,
        Command::Restore { filter } => edit::mark(&session()?, &filter.words, Mark::Restore)?,
        Command::Reopen { filter } => edit::mark(&session()?, &filter.words, Mark::Reopen)?,
        Command::Start { filter } => edit::mark(&session()?, &filter.words, Mark::Start)?,
        Command::Stop { filter } => edit::mark(&session()?, &filter.words, Mark::Stop)?,
        Command::Edit { filter } => editor::edit(&session()?, &filter.words)?,
        Command::Undo => edit::undo(&session()?)?,
        Command::Purge { days } => edit::purge(&session()?, days)?,
        Command::Import { file } => return transfer::import(&session()?, &file),
        Command::Export { filter } => transfer::export(&session()?, &filter.words)?,
        Command::Conflicts { json } => reports::conflicts(&settings.replica()?, json.json)?,
        Command::Sync {
            drivers,
            dry_run,
            force,
            rescan,
        } => {
            return remote::sync(
                &settings,
                registry,
                remote::SyncArgs {
                    drivers,
                    dry_run,
                    force,
                    rescan,
                },
            )
        }
        Command::Drivers { check, json } => {
            return remote::drivers(&settings, registry, check, json.json)
        }
        Command::DriverTest { name } => return driver_test::run(&settings, registry, &name),
        #[cfg(feature = "http")]
        Command::Serve { listen } => return serve::serve(&settings, registry, listen),
        #[cfg(not(feature = "http"))]
        Command::Serve { .. } => {
            anyhow::bail!("this hypertask was built without the http feature, so it cannot serve")
        }
        Command::Daemon => return daemon::daemon(&settings, registry),
        Command::Status { json } => return daemon::status(&settings, json.json),
        Command::Completions { .. } | Command::Man => unreachable!("handled above"),
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_in_the_message_is_said_once() {
        let io = || std::io::Error::from_raw_os_error(20);
        let e = anyhow::Error::from(hypertask_core::CacheError::Io {
            path: "/tmp/x/tasks".into(),
            source: io(),
        });
        assert_eq!(sentence(&e), format!("/tmp/x/tasks: {}", io()));
        let e = anyhow::Error::from(io()).context("cannot read /tmp/y");
        assert_eq!(sentence(&e), format!("cannot read /tmp/y: {}", io()));
    }
}
