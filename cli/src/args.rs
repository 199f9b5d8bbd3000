//! The command line, parsed with clap.
//!
//! Task words (`+tag`, `-tag`, `key:value`, filters) are taken as they come; options typed
//! among them are lifted back out by [`Cli::lift_options`]. Everything after a lone `--` is
//! literal text, kept apart before clap sees it ([`split_literal`]). Taskwarrior's order,
//! filter first (`hypertask 3 done`, `hypertask +errand modify priority:H`), is turned into
//! ours by [`taskwarrior_order`].

use std::path::PathBuf;

use clap::{Args, CommandFactory as _, Parser, Subcommand, ValueEnum};

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
    /// Change many tasks without asking first.
    #[arg(long, short = 'y', global = true)]
    pub yes: bool,
    /// Colours: `auto` (on a terminal, unless NO_COLOR is set), `always` or `never`.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// Filter terms for a command that also takes other words (`--filter +errand`).
    #[arg(
        long = "filter",
        short = 'f',
        global = true,
        value_name = "TERM",
        allow_hyphen_values = true
    )]
    pub filter: Vec<String>,
    /// Words after a lone `--`: literal text, never options, tags or attributes.
    #[arg(skip)]
    pub literal: Vec<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// When to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless NO_COLOR is set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// `--json` on reading commands.
#[derive(Debug, Clone, Copy, Args)]
pub struct JsonFlag {
    /// Print JSON: task documents exactly as stored.
    #[arg(long)]
    pub json: bool,
}

/// The words of a command that takes a filter.
#[derive(Debug, Clone, Args)]
pub struct FilterWords {
    /// A working-set number (`3`, `1,4`, `2-5`), an id prefix (4+ characters), `+tag`, `-tag`,
    /// `+OVERDUE`…, `project:home`, `due.before:friday`, `status:completed`, a word, `/regex/`.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "FILTER"
    )]
    pub words: Vec<String>,
}

/// The words of a command that takes a filter and then more words.
#[derive(Debug, Clone, Args)]
pub struct FilterThenWords {
    /// The tasks (one filter term, or `--filter TERM`… before), then the words.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true,
        value_name = "FILTER WORDS"
    )]
    pub words: Vec<String>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a task: `add WORDS… [+tag] [project:P] [priority:H] [due:WHEN] [recur:1w] …`.
    Add {
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Description words, `+tag`, `key:value` attributes.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            required = true,
            value_name = "WORDS"
        )]
        words: Vec<String>,
    },
    /// Open tasks, most urgent first (numbers them for `done 3`).
    #[command(visible_alias = "next")]
    List {
        /// Also completed and waiting tasks.
        #[arg(long)]
        all: bool,
        /// Also deleted tasks.
        #[arg(long)]
        deleted: bool,
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Filter.
        #[command(flatten)]
        filter: FilterWords,
    },
    /// Completed tasks, latest first.
    Completed {
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Filter.
        #[command(flatten)]
        filter: FilterWords,
    },
    /// Waiting tasks (hidden until their `wait` date).
    Waiting {
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
        /// Filter.
        #[command(flatten)]
        filter: FilterWords,
    },
    /// Projects of the open tasks, with counts.
    Projects {
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Tags of the open tasks, with counts.
    Tags {
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Everything about tasks: fields, annotations, dependencies, urgency.
    #[command(visible_alias = "info")]
    Show {
        /// `--json`: the stored document.
        #[command(flatten)]
        json: JsonFlag,
        /// Filter.
        #[command(flatten)]
        filter: FilterWords,
    },
    /// Change tasks: `modify FILTER [WORDS] [+tag] [-tag] [key:value] [key:]`.
    Modify {
        /// Filter and modifications.
        #[command(flatten)]
        words: FilterThenWords,
    },
    /// Mark tasks done (a recurring task's next instance is created).
    Done {
        /// Filter.
        #[command(flatten)]
        filter: FilterWords,
    },
    /// Delete tasks (a tombstone that syncs; `restore` undoes it).
    Delete {
        /// Filter.
        #[command(flatten)]
        filter: FilterWords,
    },
    /// Bring deleted tasks back.
    Restore {
        /// Filter.
        #[command(flatten)]
        filter: FilterWords,
    },
    /// Make completed tasks pending again.
    Reopen {
        /// Filter.
        #[command(flatten)]
        filter: FilterWords,
    },
    /// Start working on tasks (they become active).
    Start {
        /// Filter.
        #[command(flatten)]
        filter: FilterWords,
    },
    /// Stop working on tasks.
    Stop {
        /// Filter.
        #[command(flatten)]
        filter: FilterWords,
    },
    /// Add a note to tasks: `annotate FILTER TEXT…`.
    Annotate {
        /// Filter and text.
        #[command(flatten)]
        words: FilterThenWords,
    },
    /// Add words to the end of descriptions: `append FILTER WORDS…`.
    Append {
        /// Filter and words.
        #[command(flatten)]
        words: FilterThenWords,
    },
    /// Add words to the start of descriptions: `prepend FILTER WORDS…`.
    Prepend {
        /// Filter and words.
        #[command(flatten)]
        words: FilterThenWords,
    },
    /// Edit a task in $EDITOR (then $VISUAL, else vi); shows what changed.
    Edit {
        /// Filter (one task).
        #[command(flatten)]
        filter: FilterWords,
    },
    /// Revert the most recent local change (add, modify, done, delete, import…).
    Undo,
    /// Drop tombstones deleted more than DAYS ago that every configured driver has synced.
    Purge {
        /// Age in days.
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
    /// Read Taskwarrior's `task export` JSON or original hypertask task files (`-`: stdin).
    Import {
        /// A file (JSON array, or one object per line), a directory of task files, or `-`.
        file: PathBuf,
    },
    /// Write tasks as Taskwarrior JSON that `task import` accepts.
    Export {
        /// Filter (default: every task, deleted ones included).
        #[command(flatten)]
        filter: FilterWords,
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
        /// List and check every file of the local cache, even when its head record says
        /// nothing but hypertask changed it (after editing cache files in place by hand).
        #[arg(long)]
        rescan: bool,
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
    /// Run the driver conformance suite against the configured driver NAME (an empty upstream
    /// only: it writes test tasks).
    DriverTest {
        /// The driver's name, as in `[drivers.NAME]`.
        name: String,
    },
    /// Run the HTTP sync server (docs/http-protocol.md) with the `[server]` settings.
    Serve {
        /// Address to listen on (default: `[server] listen`, else 127.0.0.1:7878).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// Keep the local cache in sync continuously (foreground; a service manager runs it): sync
    /// at start, then within about a second of any local change, when a watched upstream
    /// changes, and every driver's `poll_interval`. SIGTERM or Ctrl-C stops it.
    Daemon,
    /// Whether a daemon is running, and each driver's last sync, last error and pending
    /// local changes.
    Status {
        /// `--json`.
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Print a shell completion script: `hypertask completions bash > ~/.local/share/bash-completion/completions/hypertask`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `hypertask man | man -l -`.
    Man,
}

/// Splits the arguments at the first lone `--`: what follows is literal text.
pub fn split_literal(mut args: Vec<String>) -> (Vec<String>, Vec<String>) {
    match args.iter().skip(1).position(|a| a == "--") {
        Some(i) => {
            let literal = args.split_off(i + 2);
            args.pop();
            (args, literal)
        }
        None => (args, Vec::new()),
    }
}

/// Subcommands that take a filter, which Taskwarrior's order may put first.
const FILTERED: &[&str] = &[
    "list",
    "next",
    "completed",
    "waiting",
    "show",
    "info",
    "modify",
    "done",
    "delete",
    "restore",
    "reopen",
    "start",
    "stop",
    "annotate",
    "append",
    "prepend",
    "edit",
    "export",
];

/// Turns Taskwarrior's order (`hypertask FILTER… COMMAND WORDS…`) into ours
/// (`hypertask COMMAND --filter=TERM… WORDS…`). Arguments already in our order are unchanged.
pub fn taskwarrior_order(args: Vec<String>) -> Vec<String> {
    let cmd = Cli::command();
    let is_command = |w: &str| {
        cmd.get_subcommands()
            .any(|s| s.get_name() == w || s.get_all_aliases().any(|a| a == w))
            || w == "help"
    };
    // Skip global options to find the first word.
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--config" | "--data-dir" | "--color" | "--filter" | "-f" => i += 2,
            a if a.starts_with("--") || a == "-y" => i += 1,
            _ => break,
        }
    }
    if i >= args.len() || is_command(&args[i]) {
        return args;
    }
    let Some(offset) = args[i..]
        .iter()
        .position(|w| FILTERED.contains(&w.as_str()))
    else {
        return args;
    };
    let at = i + offset;
    let mut out: Vec<String> = args[..i].to_vec();
    out.push(args[at].clone());
    out.extend(args[i..at].iter().map(|t| format!("--filter={t}")));
    out.extend(args[at + 1..].iter().cloned());
    out
}

impl Cli {
    /// Moves options that clap took as words (they came after the first word, which makes
    /// clap read everything that follows as words) back where they belong.
    pub fn lift_options(&mut self) -> Result<(), String> {
        let (words, mut json, mut all, mut deleted) = match &mut self.command {
            Command::Add { json, words } => (words, Some(&mut json.json), None, None),
            Command::List {
                all,
                deleted,
                json,
                filter,
            } => (
                &mut filter.words,
                Some(&mut json.json),
                Some(all),
                Some(deleted),
            ),
            Command::Completed { json, filter }
            | Command::Waiting { json, filter }
            | Command::Show { json, filter } => {
                (&mut filter.words, Some(&mut json.json), None, None)
            }
            Command::Modify { words }
            | Command::Annotate { words }
            | Command::Append { words }
            | Command::Prepend { words } => (&mut words.words, None, None, None),
            Command::Done { filter }
            | Command::Delete { filter }
            | Command::Restore { filter }
            | Command::Reopen { filter }
            | Command::Start { filter }
            | Command::Stop { filter }
            | Command::Edit { filter }
            | Command::Export { filter } => (&mut filter.words, None, None, None),
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
                "--json" => json.as_deref_mut(),
                "--all" => all.as_deref_mut(),
                "--deleted" => deleted.as_deref_mut(),
                "--yes" | "-y" => Some(&mut self.yes),
                "--config" | "--data-dir" | "--color" | "--filter" | "-f" => {
                    let value = inline
                        .or_else(|| tokens.next())
                        .ok_or_else(|| format!("{flag} needs a value"))?;
                    match flag.as_str() {
                        "--config" => self.config = Some(PathBuf::from(value)),
                        "--data-dir" => self.data_dir = Some(PathBuf::from(value)),
                        "--color" => {
                            self.color = ColorChoice::from_str(&value, true).map_err(|_| {
                                format!("--color is auto, always or never, not '{value}'")
                            })?
                        }
                        _ => self.filter.push(value),
                    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn literal_words_follow_the_first_lone_double_dash() {
        let (args, lit) = split_literal(strings(&["ht", "add", "x", "--", "+y", "--", "a:b"]));
        assert_eq!(args, strings(&["ht", "add", "x"]));
        assert_eq!(lit, strings(&["+y", "--", "a:b"]));
    }

    #[test]
    fn taskwarrior_order_becomes_ours() {
        let order = |s: &[&str]| taskwarrior_order(strings(s));
        assert_eq!(
            order(&["ht", "3", "done"]),
            strings(&["ht", "done", "--filter=3"])
        );
        assert_eq!(
            order(&[
                "ht",
                "--yes",
                "+errand",
                "project:x",
                "modify",
                "priority:H"
            ]),
            strings(&[
                "ht",
                "--yes",
                "modify",
                "--filter=+errand",
                "--filter=project:x",
                "priority:H"
            ])
        );
        // Already ours, or no command at all: unchanged.
        assert_eq!(
            order(&["ht", "add", "done"]),
            strings(&["ht", "add", "done"])
        );
        assert_eq!(order(&["ht", "frobnicate"]), strings(&["ht", "frobnicate"]));
    }
}
