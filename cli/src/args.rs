//! The command line (DESIGN.md §8), parsed with clap.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// hypertask: tasks in a local cache that works offline, synced with any number of upstreams.
#[derive(Debug, Parser)]
#[command(name = "hypertask", version, about, max_term_width = 100)]
pub struct Cli {
    /// The config file (default: $HYPERTASK_CONFIG, else the platform config dir).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The local cache directory (overrides HYPERTASK_DATA_DIR and `data_dir`).
    #[arg(long, global = true, value_name = "PATH")]
    pub data_dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--json` on reading commands.
#[derive(Debug, Clone, Copy, Args)]
pub struct JsonFlag {
    /// Print JSON: task documents exactly as stored.
    #[arg(long)]
    pub json: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a task: `add WORDS… [+tag] [due:WHEN] [wait:WHEN] [recur:3d]`; prints its id.
    Add {
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Description words, `+tag`, `due:WHEN`, `wait:WHEN`, `recur:N(d|w|m|y)`.
        #[arg(required = true, allow_hyphen_values = true, value_name = "WORDS")]
        words: Vec<String>,
    },
    /// Open tasks, most urgent first: `list [+tag] [-tag]`.
    List {
        /// Also done and waiting tasks.
        #[arg(long)]
        all: bool,
        /// Also deleted tasks.
        #[arg(long)]
        deleted: bool,
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// `+tag` keeps tasks with the tag, `-tag` drops them.
        #[arg(allow_hyphen_values = true, value_name = "FILTER")]
        filters: Vec<String>,
    },
    /// Show one task.
    Show {
        /// The task's id or any unique prefix of it.
        id: String,
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Change a task: new description words, `+tag`, `-tag`, `due:WHEN` (`due:` clears).
    Modify {
        /// The task's id or any unique prefix of it.
        id: String,
        /// Description words, `+tag`, `-tag`, `due:`, `wait:`, `recur:`.
        #[arg(required = true, allow_hyphen_values = true, value_name = "WORDS")]
        words: Vec<String>,
    },
    /// Mark a task done.
    Done {
        /// The task's id or any unique prefix of it.
        id: String,
    },
    /// Delete a task (a tombstone that syncs; `restore` undoes it).
    Delete {
        /// The task's id or any unique prefix of it.
        id: String,
    },
    /// Undo `delete`.
    Restore {
        /// The task's id or any unique prefix of it.
        id: String,
    },
    /// Reconcile the local cache with the configured drivers.
    Sync {
        /// Only this driver (repeatable).
        #[arg(long = "driver", value_name = "NAME")]
        drivers: Vec<String>,
        /// Report what would change; write nothing anywhere.
        #[arg(long)]
        dry_run: bool,
        /// Go past the mass-deletion guard.
        #[arg(long)]
        force: bool,
    },
    /// The configured drivers, their kind and capabilities.
    Drivers {
        /// Also run each driver's health check.
        #[arg(long)]
        check: bool,
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Values that lost a merge during a sync, with where and when.
    Conflicts {
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Run the HTTP sync server (DESIGN.md §5) with the `[server]` settings.
    Serve {
        /// Address to listen on (default: `[server] listen`, else 127.0.0.1:7878).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
}

impl Cli {
    /// Moves options that clap took as words (they came after a `-tag`, which makes clap read
    /// everything that follows as words) back where they belong. After a literal `--`, every
    /// token is a word.
    pub fn lift_options(&mut self) -> Result<(), String> {
        let (words, mut json, mut all, mut deleted) = match &mut self.command {
            Command::Add { json, words } => (words, Some(&mut json.json), None, None),
            Command::Modify { words, .. } => (words, None, None, None),
            Command::List {
                all,
                deleted,
                json,
                filters,
            } => (filters, Some(&mut json.json), Some(all), Some(deleted)),
            _ => return Ok(()),
        };
        let mut kept = Vec::with_capacity(words.len());
        let mut tokens = std::mem::take(words).into_iter();
        while let Some(token) = tokens.next() {
            let (flag, inline) = match token.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
                _ => (token.clone(), None),
            };
            let slot: Option<&mut bool> = match flag.as_str() {
                "--" => {
                    kept.extend(tokens.by_ref());
                    break;
                }
                "--json" => json.as_deref_mut(),
                "--all" => all.as_deref_mut(),
                "--deleted" => deleted.as_deref_mut(),
                "--config" | "--data-dir" => {
                    let value = inline
                        .or_else(|| tokens.next())
                        .ok_or_else(|| format!("{flag} needs a value"))?;
                    let target = if flag == "--config" {
                        &mut self.config
                    } else {
                        &mut self.data_dir
                    };
                    *target = Some(PathBuf::from(value));
                    continue;
                }
                f if f.starts_with("--") => {
                    return Err(format!(
                        "unexpected option '{token}' (put words that start with -- after a lone --)"
                    ))
                }
                _ => {
                    kept.push(token);
                    continue;
                }
            };
            match slot {
                Some(b) if inline.is_none() => *b = true,
                _ => return Err(format!("unexpected option '{token}' for this command")),
            }
        }
        *words = kept;
        Ok(())
    }
}
