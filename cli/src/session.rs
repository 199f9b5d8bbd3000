//! What every task command shares: the cache, the attribute schema, the clock, selecting tasks
//! by filter, asking before bulk changes, and writing edits together with their undo journal
//! entry and the next instance of each recurring task completed.

use std::collections::BTreeMap;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use chrono::{DateTime, Local, Utc};
use hypertask_core::manage::filter::Filter;
use hypertask_core::manage::undo::{Entry, Journal};
use hypertask_core::manage::workset::WorkingSet;
use hypertask_core::manage::{recur, Dependencies, Status};
use hypertask_core::{Change, Replica, Task, TaskId, DEFAULT_LOCK_TIMEOUT};

use crate::args::ColorChoice;
use crate::settings::Settings;
use crate::Usage;

/// More tasks than this in one command are changed only after a yes.
pub(crate) const BULK: usize = 3;

/// Statuses a command that changes open tasks applies to by default.
pub(crate) const OPEN: &[Status] = &[Status::Pending, Status::Waiting];

/// One command's view of the local cache.
pub(crate) struct Session<'a> {
    /// The settings (schema, drivers).
    pub settings: &'a Settings,
    /// The cache.
    pub replica: Replica,
    /// `--yes`.
    pub yes: bool,
    /// Whether to colour output.
    pub colour: bool,
    /// Whether reports print a table (a terminal, or `--color always`) rather than
    /// tab-separated lines for scripts.
    pub table: bool,
    /// `--filter` terms.
    pub filter: Vec<String>,
    /// Words after `--`.
    pub literal: Vec<String>,
    /// This command's instant.
    pub now: DateTime<Utc>,
    /// The same instant in the local zone, for dates people type.
    pub local: DateTime<Local>,
}

/// One task a command wrote: before, after, and a recurring task's next instance.
pub(crate) struct Written {
    /// The state before.
    pub before: Task,
    /// The state written.
    pub after: Task,
    /// The next instance created because this task was completed.
    pub next: Option<Task>,
}

impl<'a> Session<'a> {
    /// A session for one command.
    pub(crate) fn open(
        settings: &'a Settings,
        yes: bool,
        color: ColorChoice,
        filter: Vec<String>,
        literal: Vec<String>,
    ) -> Result<Session<'a>> {
        let colour = match color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::io::stdout().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        };
        let table = std::io::stdout().is_terminal() || color == ColorChoice::Always;
        let local = Local::now();
        Ok(Session {
            table,
            settings,
            replica: settings.replica()?,
            yes,
            colour,
            filter,
            literal,
            now: local.with_timezone(&Utc),
            local,
        })
    }

    /// Every readable task; unreadable files are named on stderr.
    pub(crate) fn all(&self) -> Result<Vec<Task>> {
        let (tasks, problems) = self.replica.all()?;
        for p in &problems {
            eprintln!("hypertask: skipped {p}");
        }
        Ok(tasks)
    }

    /// The working set of this data directory.
    pub(crate) fn working_set(&self) -> WorkingSet {
        WorkingSet::load(self.replica.data_dir())
    }

    /// Parses filter words (a usage error when malformed).
    pub(crate) fn parse_filter(&self, words: &[String]) -> Result<Filter> {
        Filter::parse(words, &self.settings.schema, &self.local)
            .map_err(|e| Usage(e.to_string()).into())
    }

    /// The tasks `words` (with `--filter` terms and literal words) select among `tasks`;
    /// `default` statuses apply without a task reference or `status:`.
    pub(crate) fn select<'t>(
        &self,
        tasks: &'t [Task],
        words: &[String],
        default: &[Status],
    ) -> Result<Vec<&'t Task>> {
        let mut all: Vec<String> = self.filter.clone();
        all.extend(words.iter().cloned());
        let filter = self.parse_filter(&all)?;
        let deps = Dependencies::new(tasks, self.now);
        let mut selected = filter
            .select(tasks, &self.working_set(), &deps, default)
            .map_err(|e| anyhow!(e))?;
        if !self.literal.is_empty() {
            let text = self.literal.join(" ").to_lowercase();
            selected.retain(|t| t.description().to_lowercase().contains(&text));
        }
        Ok(selected)
    }

    /// The tasks a changing command applies to: `words` must not be empty, and more than
    /// [`BULK`] tasks need a yes.
    pub(crate) fn targets(
        &self,
        command: &str,
        tasks: &[Task],
        words: &[String],
        default: &[Status],
    ) -> Result<Vec<Task>> {
        if words.is_empty() && self.filter.is_empty() {
            return Err(Usage(format!(
                "{command} needs a filter: a number from `hypertask list`, an id prefix, or terms such as +tag or project:home"
            ))
            .into());
        }
        let selected = self.select(tasks, words, default)?;
        if selected.is_empty() {
            let mut shown = self.filter.clone();
            shown.extend(words.iter().cloned());
            bail!(
                "no task matches '{}'{}",
                shown.join(" "),
                if default == OPEN {
                    " among the open tasks"
                } else {
                    ""
                }
            );
        }
        self.confirm(command, selected.len())?;
        Ok(selected.into_iter().cloned().collect())
    }

    /// Asks before changing more than [`BULK`] tasks, unless `--yes`.
    pub(crate) fn confirm(&self, command: &str, n: usize) -> Result<()> {
        if n <= BULK || self.yes {
            return Ok(());
        }
        eprint!("hypertask: {command} {n} tasks? [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .context("cannot read the answer from standard input")?;
        if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            Ok(())
        } else {
            if answer.is_empty() {
                eprintln!();
            }
            bail!("nothing changed: {command} of {n} tasks was not confirmed (--yes skips the question)")
        }
    }

    /// Applies `make`'s changes to each of `targets` under the cache lock (each task re-read,
    /// a sync may have changed it), writes them, creates the next instance of every recurring
    /// task that became completed, and records one undo entry for `command`.
    pub(crate) fn edit_each(
        &self,
        command: &str,
        targets: &[Task],
        mut make: impl FnMut(&Task) -> Result<Vec<Change>>,
    ) -> Result<Vec<Written>> {
        let lock = self.replica.lock(DEFAULT_LOCK_TIMEOUT)?;
        let mut written = Vec::new();
        let mut batch: Vec<Task> = Vec::new();
        let mut steps: Vec<(Option<Task>, Task)> = Vec::new();
        for target in targets {
            let before = self.replica.get(target.id())?.ok_or_else(|| {
                anyhow!(
                    "task '{}' disappeared while it was being edited",
                    target.id()
                )
            })?;
            let changes = make(&before)?;
            let mut after = before.clone();
            after.edit(&changes, Utc::now())?;
            let mut next = None;
            if !before.is_done() && after.is_done() {
                let probe = recur::next_instance(&after, None, self.now)?;
                if let Some(probe) = probe {
                    let existing = self.replica.get(probe.id())?;
                    next = recur::next_instance(&after, existing.as_ref(), self.now)?;
                    if let Some(n) = &next {
                        batch.push(n.clone());
                        steps.push((existing, n.clone()));
                    }
                }
            }
            if after != before {
                batch.push(after.clone());
                steps.push((Some(before.clone()), after.clone()));
            }
            written.push(Written {
                before,
                after,
                next,
            });
        }
        self.replica.put(&lock, &batch)?;
        let entry = Entry::new(command, self.now, steps);
        Journal::new(self.replica.data_dir())
            .record(&lock, &entry)
            .context("cannot record the change in the undo journal")?;
        if written.iter().any(|w| w.next.is_some()) {
            let mut ws = self.working_set();
            for w in &written {
                if let Some(n) = &w.next {
                    ws.push(n.id());
                }
            }
            let _ = ws.save(self.replica.data_dir(), &lock);
        }
        Ok(written)
    }

    /// Resolves one task reference (a working-set number or an id prefix) among `tasks`.
    pub(crate) fn resolve(&self, tasks: &[Task], reference: &str) -> Result<TaskId> {
        let term = if reference.bytes().all(|b| b.is_ascii_digit()) {
            reference.to_owned()
        } else {
            format!("id:{reference}")
        };
        let filter = self.parse_filter(&[term])?;
        let deps = Dependencies::new(&[], self.now);
        let found = filter
            .select(tasks, &self.working_set(), &deps, &Status::ALL)
            .map_err(|e| anyhow!(e))?;
        match found.as_slice() {
            [one] => Ok(one.id().clone()),
            [] => bail!("no task matches '{reference}'"),
            _ => bail!("'{reference}' names several tasks"),
        }
    }

    /// Now, as a stored timestamp.
    pub(crate) fn stamp(&self) -> Result<String> {
        hypertask_core::format_timestamp(Utc::now()).context("the clock is out of range")
    }
}

/// Tasks by id, for lookups.
pub(crate) fn by_id(tasks: &[Task]) -> BTreeMap<&TaskId, &Task> {
    tasks.iter().map(|t| (t.id(), t)).collect()
}

/// Takes the lock briefly: reports that renumber skip it rather than wait for a sync.
pub(crate) const BRIEF_LOCK: Duration = Duration::from_millis(200);
