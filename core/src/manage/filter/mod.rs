//! Filters: which tasks a command applies to, in Taskwarrior's syntax.
//!
//! Terms (all must hold, except that task references are alternatives):
//! - task references: a word of digits is a working-set number (`3`, `1,4`, `2-5`), never an id
//!   prefix; `id:PREFIX`/`uuid:PREFIX`, or a bare word of at least 4 id characters that starts
//!   some task's id (case-insensitive), names tasks by id. A full id of any length works too.
//! - `+tag`, `-tag`, and the virtual tags `+OVERDUE +TODAY +TOMORROW +WEEK +DUE +ACTIVE
//!   +BLOCKED +BLOCKING +WAITING +COMPLETED +DELETED …` ([`VIRTUAL_TAGS`]).
//! - `status:pending,waiting`, and attributes: `project:home` (also matches `home.garden`),
//!   `priority:H`, `due:today` (that day), `key.MODIFIER:value` with `before`, `after`, `by`,
//!   `is`, `not`, `has`, `hasnt`, `startswith`, `endswith`, `none`, `any`; `key:` = no value.
//! - any other word: a case-insensitive piece of the description or an annotation; `/regex/`
//!   matches them with a regular expression.
//!
//! Without a task reference, a `status:` term or a status tag (`+WAITING`, `+COMPLETED`, …), a
//! command's own default statuses apply (open tasks for `list`, for example); with one, tasks
//! of every status match.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeZone, Utc};

use super::attrs::{AttrError, Schema};
use super::when::{day_of, week_of};
use super::workset::WorkingSet;
use super::{Dependencies, Status};
use crate::task::{Task, TaskId};

mod term;

use term::{attr_holds, parse_term, Span, Term};

/// Every virtual tag and what it means.
pub const VIRTUAL_TAGS: &[(&str, &str)] = &[
    ("OVERDUE", "open and due before now"),
    ("TODAY", "due today"),
    ("TOMORROW", "due tomorrow"),
    ("YESTERDAY", "due yesterday"),
    ("WEEK", "due this week (Monday to Sunday)"),
    ("DUE", "open and due within 7 days, not yet overdue"),
    ("ACTIVE", "started and open"),
    ("SCHEDULED", "has a scheduled date"),
    (
        "READY",
        "pending, not blocked, and not scheduled in the future",
    ),
    ("BLOCKED", "waits for an open task"),
    ("UNBLOCKED", "waits for no open task"),
    ("BLOCKING", "an open task waits for it"),
    ("PENDING", "status pending"),
    ("WAITING", "status waiting"),
    ("COMPLETED", "status completed"),
    ("DELETED", "status deleted"),
    ("RECURRING", "repeats (has recur)"),
    ("TAGGED", "has a tag"),
    ("ANNOTATED", "has an annotation"),
    ("PROJECT", "has a project"),
    ("PRIORITY", "has a priority"),
    ("UNTIL", "has an until date"),
];

/// A filter that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// A `key:value` term with an unknown key or a value that cannot be read.
    #[error(transparent)]
    Attr(#[from] AttrError),
    /// Another malformed term; the message names it.
    #[error("{0}")]
    Term(String),
    /// A working-set number that no task has.
    #[error("no task has number {0}; `hypertask list` numbers the open tasks")]
    NoNumber(usize),
    /// An id prefix that starts several tasks' ids.
    #[error("'{prefix}' is ambiguous: it starts the ids of {}", candidates.join(", "))]
    Ambiguous {
        /// The prefix as typed.
        prefix: String,
        /// The ids it starts.
        candidates: Vec<String>,
    },
}

/// A parsed filter, ready to select tasks at the instant it was parsed for.
#[derive(Debug, Clone)]
pub struct Filter {
    terms: Vec<Term>,
    now: DateTime<Utc>,
    today: Span,
    tomorrow: Span,
    yesterday: Span,
    week: Span,
}

impl Filter {
    /// Parses filter words; dates are read relative to `now`, in its zone.
    pub fn parse<Tz: TimeZone>(
        words: &[String],
        schema: &Schema,
        now: &DateTime<Tz>,
    ) -> Result<Filter, FilterError> {
        let tz = now.timezone();
        let utc = now.with_timezone(&Utc);
        let bounds = |t: Option<DateTime<Utc>>| {
            t.and_then(|t| day_of(t, &tz))
                .ok_or_else(|| FilterError::Term("the date is out of range".into()))
        };
        let day = chrono::Duration::days(1);
        let terms = words
            .iter()
            .map(|w| parse_term(w, schema, now))
            .collect::<Result<_, _>>()?;
        Ok(Filter {
            terms,
            now: utc,
            today: bounds(Some(utc))?,
            tomorrow: bounds(utc.checked_add_signed(day))?,
            yesterday: bounds(utc.checked_sub_signed(day))?,
            week: week_of(utc, &tz)
                .ok_or_else(|| FilterError::Term("the date is out of range".into()))?,
        })
    }

    /// Whether the filter has no terms.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether the filter says which statuses it wants: a `status:` term, or a status tag
    /// such as `+WAITING` or `+COMPLETED`.
    pub fn has_status(&self) -> bool {
        self.terms.iter().any(|t| match t {
            Term::Status(_) => true,
            Term::Virtual(tag, true) => {
                matches!(*tag, "PENDING" | "WAITING" | "COMPLETED" | "DELETED")
            }
            _ => false,
        })
    }

    /// The tasks among `tasks` that match, in their given order.
    ///
    /// Bare words that start some task's id become id references. Task references (numbers,
    /// ids) are alternatives; every other term must hold. Without references or a `status:`
    /// term, only tasks whose status is in `default` match.
    pub fn select<'a>(
        &self,
        tasks: &'a [Task],
        working_set: &WorkingSet,
        deps: &Dependencies,
        default: &[Status],
    ) -> Result<Vec<&'a Task>, FilterError> {
        let lower_ids: Vec<String> = tasks
            .iter()
            .map(|t| t.id().as_str().to_ascii_lowercase())
            .collect();
        let mut wanted: Option<BTreeSet<usize>> = None;
        let mut tests: Vec<&Term> = Vec::new();
        let mut resolved: Vec<Term> = Vec::new();
        for term in &self.terms {
            let by_id = |prefix: &str| -> Result<Option<BTreeSet<usize>>, FilterError> {
                if let Some(i) = tasks.iter().position(|t| t.id().as_str() == prefix) {
                    return Ok(Some(BTreeSet::from([i])));
                }
                let p = prefix.to_ascii_lowercase();
                let hits: BTreeSet<usize> = lower_ids
                    .iter()
                    .enumerate()
                    .filter(|(_, id)| id.starts_with(&p))
                    .map(|(i, _)| i)
                    .collect();
                match hits.len() {
                    0 => Ok(None),
                    1 => Ok(Some(hits)),
                    _ => Err(FilterError::Ambiguous {
                        prefix: prefix.to_owned(),
                        candidates: hits.iter().map(|&i| tasks[i].id().to_string()).collect(),
                    }),
                }
            };
            match term {
                Term::Numbers(ns) => {
                    let set = wanted.get_or_insert_with(BTreeSet::new);
                    for &n in ns {
                        let id = working_set.get(n).ok_or(FilterError::NoNumber(n))?;
                        // A number whose task was purged or is unreadable matches nothing.
                        if let Some(i) = tasks.iter().position(|t| t.id() == id) {
                            set.insert(i);
                        }
                    }
                }
                Term::Id(prefix) => {
                    let hits = by_id(prefix)?.unwrap_or_default();
                    wanted.get_or_insert_with(BTreeSet::new).extend(hits);
                }
                Term::Word(w) if looks_like_id(w) => match by_id(w)? {
                    Some(hits) => wanted.get_or_insert_with(BTreeSet::new).extend(hits),
                    None => resolved.push(Term::Word(w.to_lowercase())),
                },
                Term::Word(w) => resolved.push(Term::Word(w.to_lowercase())),
                other => tests.push(other),
            }
        }
        let use_default = wanted.is_none() && !self.has_status();
        let out = tasks
            .iter()
            .enumerate()
            .filter(|(i, _)| wanted.as_ref().is_none_or(|w| w.contains(i)))
            .map(|(_, t)| t)
            .filter(|t| !use_default || default.contains(&t.status(self.now)))
            .filter(|t| tests.iter().all(|term| self.holds(term, t, deps)))
            .filter(|t| resolved.iter().all(|term| self.holds(term, t, deps)))
            .collect();
        Ok(out)
    }

    fn holds(&self, term: &Term, task: &Task, deps: &Dependencies) -> bool {
        match term {
            Term::Tag(tag, present) => task.tags().contains(&tag.as_str()) == *present,
            Term::Virtual(tag, present) => self.virtual_tag(tag, task, deps) == *present,
            Term::Status(list) => list.contains(&task.status(self.now)),
            Term::Attr {
                field,
                op,
                text,
                date,
                number,
            } => attr_holds(task, field, *op, text, date.as_ref(), *number),
            Term::Regex(re) => texts(task).any(|s| re.is_match(s)),
            Term::Word(w) => texts(task).any(|s| s.to_lowercase().contains(w.as_str())),
            Term::Numbers(_) | Term::Id(_) => true,
        }
    }

    fn virtual_tag(&self, tag: &str, task: &Task, deps: &Dependencies) -> bool {
        let status = task.status(self.now);
        let open = status.is_open();
        let due = task.get_time("due");
        let within = |(a, b): Span| due.is_some_and(|d| a <= d && d < b);
        match tag {
            "OVERDUE" => open && due.is_some_and(|d| d < self.now),
            "TODAY" => within(self.today),
            "TOMORROW" => within(self.tomorrow),
            "YESTERDAY" => within(self.yesterday),
            "WEEK" => within(self.week),
            "DUE" => {
                open && due
                    .is_some_and(|d| d >= self.now && d < self.now + chrono::Duration::days(7))
            }
            "ACTIVE" => task.is_active(),
            "SCHEDULED" => task.get("scheduled").is_some(),
            "READY" => {
                status == Status::Pending
                    && !deps.is_blocked(task.id())
                    && task.get_time("scheduled").is_none_or(|s| s <= self.now)
            }
            "BLOCKED" => deps.is_blocked(task.id()),
            "UNBLOCKED" => !deps.is_blocked(task.id()),
            "BLOCKING" => deps.is_blocking(task.id()),
            "PENDING" => status == Status::Pending,
            "WAITING" => status == Status::Waiting,
            "COMPLETED" => status == Status::Completed,
            "DELETED" => status == Status::Deleted,
            "RECURRING" => task.get("recur").is_some(),
            "TAGGED" => !task.tags().is_empty(),
            "ANNOTATED" => !task.annotations().is_empty(),
            "PROJECT" => task.project().is_some(),
            "PRIORITY" => task.priority().is_some(),
            "UNTIL" => task.get("until").is_some(),
            _ => false,
        }
    }
}

/// The description and the annotations: what words and regular expressions search.
fn texts(task: &Task) -> impl Iterator<Item = &str> {
    std::iter::once(task.description()).chain(task.annotations().into_iter().map(|a| a.text))
}

/// A bare word that could be an id prefix: at least 4 id characters.
fn looks_like_id(w: &str) -> bool {
    w.len() >= 4 && TaskId::is_valid(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tasks() -> Vec<Task> {
        [
            json!({"id": "aaaa1111", "description": "Dig the garden", "project": "home.garden",
                   "tags": ["errand"], "priority": "H", "due": "2026-03-04T18:00:00Z"}),
            json!({"id": "aaab2222", "description": "Pay rent", "project": "home",
                   "due": "2026-03-01T00:00:00Z", "annotation_1": "by transfer"}),
            json!({"id": "bbbb3333", "description": "Write report", "project": "homework",
                   "start": "2026-03-04T09:00:00Z", "dep_aaab2222": "x"}),
            json!({"id": "cccc4444", "description": "Old thing", "done": "2026-03-01T00:00:00Z"}),
        ]
        .into_iter()
        .map(|d| Task::from_value(d).unwrap())
        .collect()
    }

    fn ids(words: &[&str], default: &[Status]) -> Result<Vec<String>, FilterError> {
        let now = DateTime::parse_from_rfc3339("2026-03-04T12:00:00+00:00").unwrap();
        let words: Vec<String> = words.iter().map(|s| s.to_string()).collect();
        let f = Filter::parse(&words, &Schema::default(), &now)?;
        let all = tasks();
        let deps = Dependencies::new(&all, now.with_timezone(&Utc));
        let mut ws = WorkingSet::default();
        ws.renumber(&all, now.with_timezone(&Utc));
        Ok(f.select(&all, &ws, &deps, default)?
            .iter()
            .map(|t| t.id().to_string())
            .collect())
    }

    const OPEN: &[Status] = &[Status::Pending, Status::Waiting];

    #[test]
    fn attributes_tags_and_words() {
        assert_eq!(
            ids(&["project:home"], OPEN).unwrap(),
            ["aaaa1111", "aaab2222"]
        );
        assert_eq!(ids(&["project.not:home"], OPEN).unwrap(), ["bbbb3333"]);
        assert_eq!(ids(&["priority:H"], OPEN).unwrap(), ["aaaa1111"]);
        assert_eq!(ids(&["priority:"], OPEN).unwrap(), ["aaab2222", "bbbb3333"]);
        assert_eq!(ids(&["+errand"], OPEN).unwrap(), ["aaaa1111"]);
        assert_eq!(ids(&["-errand", "rent"], OPEN).unwrap(), ["aaab2222"]);
        assert_eq!(ids(&["transfer"], OPEN).unwrap(), ["aaab2222"]);
        assert_eq!(ids(&["/^w.*t$/"], OPEN).unwrap(), ["bbbb3333"]);
        assert_eq!(ids(&["due.before:2026-03-02"], OPEN).unwrap(), ["aaab2222"]);
        assert_eq!(ids(&["due:2026-03-04"], OPEN).unwrap(), ["aaaa1111"]);
        assert_eq!(ids(&["status:completed"], OPEN).unwrap(), ["cccc4444"]);
        let e = ids(&["foo:bar"], OPEN).unwrap_err().to_string();
        assert!(e.contains("'foo'") && e.contains("project"), "{e}");
        assert!(ids(&["due.soon:x"], OPEN).is_err());
    }

    #[test]
    fn virtual_tags() {
        assert_eq!(ids(&["+OVERDUE"], OPEN).unwrap(), ["aaab2222"]);
        assert_eq!(ids(&["+TODAY"], OPEN).unwrap(), ["aaaa1111"]);
        assert_eq!(ids(&["+ACTIVE"], OPEN).unwrap(), ["bbbb3333"]);
        assert_eq!(ids(&["+BLOCKED"], OPEN).unwrap(), ["bbbb3333"]);
        assert_eq!(ids(&["+BLOCKING"], OPEN).unwrap(), ["aaab2222"]);
        assert_eq!(ids(&["+ANNOTATED"], OPEN).unwrap(), ["aaab2222"]);
        assert_eq!(ids(&["+COMPLETED"], OPEN).unwrap(), ["cccc4444"]);
        assert_eq!(
            ids(&["-BLOCKED", "+PROJECT"], OPEN).unwrap(),
            ["aaaa1111", "aaab2222"]
        );
    }

    #[test]
    fn references_numbers_and_prefixes() {
        // Numbers follow the working set (open tasks by creation, then id).
        assert_eq!(ids(&["1"], OPEN).unwrap(), ["aaaa1111"]);
        assert_eq!(ids(&["1-2,3"], OPEN).unwrap().len(), 3);
        assert!(matches!(ids(&["9"], OPEN), Err(FilterError::NoNumber(9))));
        // Prefixes: at least 4 characters, any case, any status; ambiguity is an error.
        assert_eq!(ids(&["CCCC"], OPEN).unwrap(), ["cccc4444"]);
        assert!(matches!(ids(&["aaa"], OPEN), Ok(v) if v.is_empty()));
        assert!(matches!(ids(&["aaaa"], OPEN), Ok(v) if v == ["aaaa1111"]));
        assert!(matches!(
            ids(&["id:aaa"], OPEN),
            Err(FilterError::Ambiguous { .. })
        ));
        // References are alternatives, other terms still apply.
        assert_eq!(
            ids(&["aaaa", "bbbb", "+errand"], OPEN).unwrap(),
            ["aaaa1111"]
        );
    }
}
