//! One filter term: how a word is read ([`parse_term`]) and how an attribute test holds for
//! a task ([`attr_holds`]).

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

use super::{FilterError, VIRTUAL_TAGS};
use crate::manage::attrs::{AttrError, Schema};
use crate::manage::when::{day_of, parse_when};
use crate::manage::Status;
use crate::task::Task;

/// Keys a filter may name besides the attributes, with the field each one reads.
const FILTER_FIELDS: &[(&str, &str)] = &[
    ("start", "start"),
    ("done", "done"),
    ("end", "done"),
    ("deleted", "deleted"),
    ("created_at", "created_at"),
    ("entry", "created_at"),
    ("updated_at", "updated_at"),
    ("modified", "updated_at"),
    ("parent", "parent"),
];

/// Attribute modifiers.
const MODIFIERS: &[&str] = &[
    "is",
    "equals",
    "not",
    "isnt",
    "before",
    "below",
    "under",
    "after",
    "above",
    "over",
    "by",
    "has",
    "contains",
    "hasnt",
    "startswith",
    "left",
    "endswith",
    "right",
    "none",
    "any",
];

/// How an attribute is compared (`key.MODIFIER:value`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Eq,
    Not,
    Before,
    After,
    By,
    Has,
    Hasnt,
    StartsWith,
    EndsWith,
    None,
    Any,
}

/// A stretch of time: its first instant and the first one after it.
pub(super) type Span = (DateTime<Utc>, DateTime<Utc>);

/// A date in a filter: the instant typed, and the local day it falls on.
#[derive(Debug, Clone, Copy)]
pub(super) struct DateValue {
    pub(super) at: DateTime<Utc>,
    pub(super) day: Span,
}

/// One term of a filter.
#[derive(Debug, Clone)]
pub(super) enum Term {
    Tag(String, bool),
    Virtual(&'static str, bool),
    Status(Vec<Status>),
    Attr {
        field: String,
        op: Op,
        text: String,
        /// For date fields.
        date: Option<DateValue>,
        number: Option<f64>,
    },
    Regex(regex::Regex),
    Numbers(Vec<usize>),
    Id(String),
    Word(String),
}

/// Reads one filter word.
pub(super) fn parse_term<Tz: TimeZone>(
    word: &str,
    schema: &Schema,
    now: &DateTime<Tz>,
) -> Result<Term, FilterError> {
    if let Some(tag) = word.strip_prefix('+').filter(|t| !t.is_empty()) {
        return Ok(tag_term(tag, true));
    }
    if let Some(tag) = word.strip_prefix('-').filter(|t| !t.is_empty()) {
        return Ok(tag_term(tag, false));
    }
    if let Some(body) = word
        .strip_prefix('/')
        .and_then(|w| w.strip_suffix('/'))
        .filter(|b| !b.is_empty())
    {
        let re = regex::RegexBuilder::new(body)
            .case_insensitive(true)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| {
                FilterError::Term(format!("'{word}' is not a valid regular expression: {e}"))
            })?;
        return Ok(Term::Regex(re));
    }
    if let Some(ns) = numbers(word) {
        return Ok(Term::Numbers(ns));
    }
    let Some((key, value)) = word.split_once(':') else {
        return Ok(Term::Word(word.to_owned()));
    };
    let (name, modifier) = match key.split_once('.') {
        Some((n, m)) => (n, Some(m)),
        None => (key, None),
    };
    let op = match modifier {
        None => Op::Eq,
        Some(m) => match m.to_ascii_lowercase().as_str() {
            "is" | "equals" => Op::Eq,
            "not" | "isnt" => Op::Not,
            "before" | "below" | "under" => Op::Before,
            "after" | "above" | "over" => Op::After,
            "by" => Op::By,
            "has" | "contains" => Op::Has,
            "hasnt" => Op::Hasnt,
            "startswith" | "left" => Op::StartsWith,
            "endswith" | "right" => Op::EndsWith,
            "none" => Op::None,
            "any" => Op::Any,
            _ => {
                return Err(FilterError::Term(format!(
                    "'{word}': '{m}' is not a filter modifier; use one of {}",
                    MODIFIERS.join(", ")
                )))
            }
        },
    };
    match name {
        "status" => {
            let list = value
                .split([',', '|'])
                .map(|s| {
                    Status::parse(s).ok_or_else(|| {
                        FilterError::Term(format!(
                            "'{s}' is not a status; use pending, waiting, completed, deleted or recurring"
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Term::Status(list));
        }
        "id" | "uuid" if !value.is_empty() => return Ok(Term::Id(value.to_owned())),
        _ => {}
    }
    let field = match FILTER_FIELDS.iter().find(|(k, _)| *k == name) {
        Some((_, f)) => f.to_string(),
        None if schema.is_attribute(name) => name.to_owned(),
        None => {
            let mut known = schema.known();
            known.extend(["status", "id"].iter().map(|s| s.to_string()));
            known.extend(FILTER_FIELDS.iter().map(|(k, _)| k.to_string()));
            return Err(AttrError::Unknown {
                key: name.to_owned(),
                known,
            }
            .into());
        }
    };
    let op = if value.is_empty() && op == Op::Eq {
        Op::None
    } else {
        op
    };
    if value.is_empty() && !matches!(op, Op::None | Op::Any) {
        return Err(FilterError::Term(format!("'{word}' needs a value")));
    }
    let mut date = None;
    let mut number = None;
    if !value.is_empty() && schema.is_date(&field) {
        let t = parse_when(value, now).map_err(|e| AttrError::Value {
            key: name.to_owned(),
            message: e,
        })?;
        let day = day_of(t, &now.timezone())
            .ok_or_else(|| FilterError::Term(format!("'{word}': the date is out of range")))?;
        date = Some(DateValue { at: t, day });
    } else if !value.is_empty() && schema.is_number(&field) {
        number = Some(value.parse::<f64>().map_err(|_| AttrError::Value {
            key: name.to_owned(),
            message: format!("'{value}' is not a number"),
        })?);
    }
    Ok(Term::Attr {
        field,
        op,
        text: value.to_owned(),
        date,
        number,
    })
}

fn tag_term(tag: &str, present: bool) -> Term {
    match VIRTUAL_TAGS.iter().find(|(v, _)| *v == tag) {
        Some((v, _)) => Term::Virtual(v, present),
        None => Term::Tag(tag.to_owned(), present),
    }
}

/// `3`, `1,4`, `2-5`, `1,3-4`: working-set numbers; `None` when the word is not such a list.
fn numbers(word: &str) -> Option<Vec<usize>> {
    if word.is_empty()
        || !word
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b',' || b == b'-')
    {
        return None;
    }
    if !word.bytes().next()?.is_ascii_digit() {
        return None;
    }
    let mut out = Vec::new();
    for part in word.split(',') {
        match part.split_once('-') {
            None => out.push(part.parse().ok()?),
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
                if b < a || b - a > 10_000 {
                    return None;
                }
                out.extend(a..=b);
            }
        }
    }
    Some(out)
}

pub(super) fn attr_holds(
    task: &Task,
    field: &str,
    op: Op,
    text: &str,
    date: Option<&DateValue>,
    number: Option<f64>,
) -> bool {
    let value = task.get(field).filter(|v| !v.is_null());
    let shown: Option<String> = value.map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    match op {
        Op::None => return value.is_none(),
        Op::Any => return value.is_some(),
        _ => {}
    }
    if let Some(DateValue {
        at,
        day: (start, end),
    }) = date
    {
        let Some(t) = task.get_time(field) else {
            return op == Op::Not;
        };
        return match op {
            Op::Eq => *start <= t && t < *end,
            Op::Not => !(*start <= t && t < *end),
            Op::Before => t < *at,
            Op::After => t > *at,
            Op::By => t <= *at,
            _ => false,
        };
    }
    if let Some(n) = number {
        let Some(v) = value.and_then(Value::as_f64) else {
            return op == Op::Not;
        };
        return match op {
            Op::Eq => v == n,
            Op::Not => v != n,
            Op::Before => v < n,
            Op::After => v > n,
            Op::By => v <= n,
            _ => false,
        };
    }
    let Some(s) = shown else {
        return matches!(op, Op::Not | Op::Hasnt);
    };
    let (ls, lt) = (s.to_lowercase(), text.to_lowercase());
    match (field, op) {
        ("project", Op::Eq) => s == text || s.starts_with(&format!("{text}.")),
        ("project", Op::Not) => !(s == text || s.starts_with(&format!("{text}."))),
        ("description", Op::Eq) => ls.contains(&lt),
        ("priority", Op::Eq) => ls == lt,
        ("priority", Op::Not) => ls != lt,
        ("depends", _) => {
            let hit = task
                .dependencies()
                .iter()
                .any(|d| d.as_str().to_lowercase().starts_with(&lt));
            hit == (op != Op::Not && op != Op::Hasnt)
        }
        (_, Op::Eq) => s == text,
        (_, Op::Not) => s != text,
        (_, Op::Has) => ls.contains(&lt),
        (_, Op::Hasnt) => !ls.contains(&lt),
        (_, Op::StartsWith) => ls.starts_with(&lt),
        (_, Op::EndsWith) => ls.ends_with(&lt),
        (_, Op::Before) => s.as_str() < text,
        (_, Op::After) => s.as_str() > text,
        (_, Op::By) => s.as_str() <= text,
        (_, Op::None | Op::Any) => unreachable!("handled above"),
    }
}
