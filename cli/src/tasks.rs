//! The commands that read and edit the local cache: add, list, show, modify, done, delete,
//! restore, conflicts. They never touch a driver, so they work offline.

use std::collections::HashMap;

use anyhow::{anyhow, Context as _, Result};
use chrono::{DateTime, Local, Utc};
use hypertask_core::{format_timestamp, Change, Replica, Task, TaskId, DEFAULT_LOCK_TIMEOUT};
use serde_json::Value;

use crate::output::{out, Table};
use crate::when::{parse_recur, parse_when};
use crate::Usage;

/// A parsed `add`/`modify` argument list.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Words {
    /// The plain words, joined; `None` when there were none.
    pub description: Option<String>,
    /// Tags and fields to set or clear.
    pub changes: Vec<Change>,
}

/// Splits `WORDS…` into description words, `+tag`, `-tag` (modify only), `due:`, `wait:`,
/// `recur:`. An empty `due:` clears the field (modify only).
pub(crate) fn parse_words<Tz: chrono::TimeZone>(
    words: &[String],
    modify: bool,
    now: &DateTime<Tz>,
) -> Result<Words, Usage> {
    let mut plain = Vec::new();
    let mut changes = Vec::new();
    for word in words {
        if let Some(tag) = word.strip_prefix('+').filter(|t| !t.is_empty()) {
            changes.push(Change::AddTag(tag.to_owned()));
            continue;
        }
        if modify {
            if let Some(tag) = word.strip_prefix('-').filter(|t| !t.is_empty()) {
                changes.push(Change::RemoveTag(tag.to_owned()));
                continue;
            }
        }
        let Some((key, value)) = word.split_once(':') else {
            plain.push(word.as_str());
            continue;
        };
        let field = match key {
            "due" | "wait" | "recur" => key,
            _ => {
                plain.push(word.as_str());
                continue;
            }
        };
        if value.is_empty() {
            if !modify {
                return Err(Usage(format!(
                    "'{word}' needs a value, such as {field}:tomorrow"
                )));
            }
            changes.push(Change::Clear(field.to_owned()));
            continue;
        }
        let stored = if field == "recur" {
            parse_recur(value).map_err(Usage)?
        } else {
            let t = parse_when(value, now).map_err(|e| Usage(format!("{field}: {e}")))?;
            format_timestamp(t)
                .ok_or_else(|| Usage(format!("{field}: '{value}' is out of range")))?
        };
        changes.push(Change::Set(field.to_owned(), Value::String(stored)));
    }
    let description = (!plain.is_empty()).then(|| plain.join(" "));
    Ok(Words {
        description,
        changes,
    })
}

/// `add`.
pub(crate) fn add(replica: &Replica, words: &[String], json: bool) -> Result<()> {
    let now = Utc::now();
    let parsed = parse_words(words, false, &Local::now())?;
    let description = parsed
        .description
        .ok_or_else(|| Usage("a new task needs a description".into()))?;
    let mut changes = vec![Change::Set(
        "description".into(),
        Value::String(description),
    )];
    changes.extend(parsed.changes);
    let mut task = Task::new(TaskId::generate(), now);
    task.edit(&changes, now)?;
    let lock = replica.lock(DEFAULT_LOCK_TIMEOUT)?;
    replica.put(&lock, std::slice::from_ref(&task))?;
    if json {
        out(&pretty(&task));
    } else {
        out(&format!("{}\n", task.id()));
    }
    Ok(())
}

/// Applies an edit to the task `prefix` names, under the cache lock, and returns it.
fn edit(
    replica: &Replica,
    prefix: &str,
    make: impl FnOnce(&Task) -> Result<Vec<Change>>,
) -> Result<Task> {
    let found = replica.find(prefix)?;
    let lock = replica.lock(DEFAULT_LOCK_TIMEOUT)?;
    // Re-read under the lock: a sync may have changed it since.
    let mut task = replica.get(found.id())?.ok_or_else(|| {
        anyhow!(
            "task '{}' disappeared while it was being edited",
            found.id()
        )
    })?;
    let changes = make(&task)?;
    if changes.is_empty() {
        return Ok(task);
    }
    task.edit(&changes, Utc::now())?;
    replica.put(&lock, std::slice::from_ref(&task))?;
    Ok(task)
}

/// `modify`.
pub(crate) fn modify(replica: &Replica, prefix: &str, words: &[String]) -> Result<()> {
    let parsed = parse_words(words, true, &Local::now())?;
    let mut changes = Vec::new();
    if let Some(d) = parsed.description {
        changes.push(Change::Set("description".into(), Value::String(d)));
    }
    changes.extend(parsed.changes);
    let task = edit(replica, prefix, |_| Ok(changes))?;
    out(&format!(
        "modified {} '{}'\n",
        task.id(),
        task.description()
    ));
    Ok(())
}

/// `done`, `delete` and `restore`: set or clear one timestamp field.
pub(crate) fn mark(replica: &Replica, prefix: &str, field: &str, set: bool) -> Result<()> {
    let mut unchanged = false;
    let task = edit(replica, prefix, |t| {
        if t.get(field).is_some() == set {
            unchanged = true;
            return Ok(Vec::new());
        }
        let now = format_timestamp(Utc::now()).context("the clock is out of range")?;
        Ok(vec![if set {
            Change::Set(field.into(), Value::String(now))
        } else {
            Change::Clear(field.into())
        }])
    })?;
    let verb = match (field, set) {
        ("done", _) => "done",
        (_, true) => "deleted",
        (_, false) => "restored",
    };
    if unchanged {
        let state = if set { verb } else { "not deleted" };
        out(&format!(
            "{} '{}' was already {state}\n",
            task.id(),
            task.description()
        ));
    } else {
        out(&format!("{verb} {} '{}'\n", task.id(), task.description()));
    }
    Ok(())
}

/// `show`.
pub(crate) fn show(replica: &Replica, prefix: &str, json: bool) -> Result<()> {
    let task = replica.find(prefix)?;
    if json {
        out(&pretty(&task));
        return Ok(());
    }
    let mut lines = vec![("id".to_owned(), task.id().to_string())];
    lines.push(("description".into(), task.description().to_owned()));
    let state = if task.is_deleted() {
        "deleted"
    } else if task.is_done() {
        "done"
    } else if waiting(&task, Utc::now()) {
        "waiting"
    } else {
        "open"
    };
    lines.push(("status".into(), state.into()));
    if !task.tags().is_empty() {
        lines.push(("tags".into(), task.tags().join(" ")));
    }
    for (key, value) in task.as_map() {
        if matches!(
            key.as_str(),
            "id" | "description" | "tags" | "field_updated_at"
        ) {
            continue;
        }
        let shown = match value {
            Value::String(s) if hypertask_core::parse_timestamp(s).is_some() => local_time(s),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        lines.push((key.replace('_', " "), shown));
    }
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let text: String = lines
        .iter()
        .map(|(k, v)| format!("{k:width$}  {v}\n"))
        .collect();
    out(&text);
    Ok(())
}

/// What `list` shows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ListOptions {
    /// Also done and waiting tasks.
    pub all: bool,
    /// Also deleted tasks.
    pub deleted: bool,
    /// JSON output.
    pub json: bool,
    /// A readable table (a terminal) rather than tab-separated lines.
    pub table: bool,
}

/// `list`.
pub(crate) fn list(replica: &Replica, filters: &[String], opts: ListOptions) -> Result<()> {
    let mut with = Vec::new();
    let mut without = Vec::new();
    for f in filters {
        match (f.strip_prefix('+'), f.strip_prefix('-')) {
            (Some(t), _) if !t.is_empty() => with.push(t),
            (_, Some(t)) if !t.is_empty() => without.push(t),
            _ => return Err(Usage(format!("cannot filter by '{f}': use +tag or -tag")).into()),
        }
    }
    let (all, problems) = replica.all()?;
    for p in &problems {
        eprintln!("hypertask: skipped {p}");
    }
    let now = Utc::now();
    let ids: Vec<&TaskId> = all.iter().map(Task::id).collect();
    let short = short_ids(&ids);
    let mut shown: Vec<&Task> = all
        .iter()
        .filter(|t| opts.deleted || !t.is_deleted())
        .filter(|t| opts.all || !(t.is_done() || waiting(t, now)))
        .filter(|t| with.iter().all(|w| t.tags().contains(w)))
        .filter(|t| !without.iter().any(|w| t.tags().contains(w)))
        .collect();
    shown.sort_by_key(|t| urgency(t));
    if opts.json {
        let docs: Vec<Value> = shown.iter().map(|t| t.to_value()).collect();
        out(&format!("{}\n", serde_json::to_string_pretty(&docs)?));
        return Ok(());
    }
    if !opts.table {
        let text: String = shown
            .iter()
            .map(|t| {
                let due = t.get_str("due").unwrap_or("");
                format!(
                    "{}\t{due}\t{}\t{}\n",
                    t.id(),
                    t.tags().join(","),
                    t.description()
                )
            })
            .collect();
        out(&text);
        return Ok(());
    }
    if shown.is_empty() {
        out("no tasks\n");
        return Ok(());
    }
    let mut table = Table::new(&["ID", "Due", "Tags", "Description"]);
    for t in &shown {
        let mut desc = t.description().to_owned();
        for (flag, on) in [
            ("done", t.is_done()),
            ("deleted", t.is_deleted()),
            ("waiting", waiting(t, now)),
        ] {
            if on {
                desc.push_str(&format!(" ({flag})"));
            }
        }
        table.row(vec![
            short[t.id()].clone(),
            t.get_str("due")
                .map(|d| relative_due(d, now))
                .unwrap_or_default(),
            t.tags().join(" "),
            desc,
        ]);
    }
    out(&table.render());
    Ok(())
}

/// `conflicts`.
pub(crate) fn conflicts(replica: &Replica, json: bool) -> Result<()> {
    let records = replica.conflicts()?;
    if json {
        out(&format!("{}\n", serde_json::to_string_pretty(&records)?));
        return Ok(());
    }
    if records.is_empty() {
        out("no conflicts: no sync has replaced a local edit\n");
        return Ok(());
    }
    let show = |v: &Option<Value>| match v {
        None => "(removed)".to_owned(),
        Some(Value::String(s)) => format!("{s:?}"),
        Some(other) => other.to_string(),
    };
    let text: String = records
        .iter()
        .map(|r| {
            format!(
                "{}  task {} via '{}': {} kept {}, lost {}\n",
                local_time(&r.at),
                r.task,
                r.driver,
                r.field,
                show(&r.kept),
                show(&r.lost)
            )
        })
        .collect();
    out(&text);
    Ok(())
}

/// The stored document, pretty, with a trailing newline.
fn pretty(task: &Task) -> String {
    String::from_utf8_lossy(&task.to_pretty_json()).into_owned()
}

/// Hidden until `wait` (or `snooze`) passes.
fn waiting(t: &Task, now: DateTime<Utc>) -> bool {
    ["wait", "snooze"]
        .iter()
        .any(|f| t.get_time(f).is_some_and(|w| w > now))
}

/// Sort key: tasks with a due date first, soonest (so the overdue) first; then the newest.
fn urgency(
    t: &Task,
) -> (
    bool,
    Option<DateTime<Utc>>,
    std::cmp::Reverse<String>,
    String,
) {
    let due = t.get_time("due");
    (
        due.is_none(),
        due,
        std::cmp::Reverse(t.created_at().to_owned()),
        t.id().to_string(),
    )
}

/// The shortest prefix (at least 4 characters) that tells each id apart from the others.
fn short_ids(ids: &[&TaskId]) -> HashMap<TaskId, String> {
    let mut sorted: Vec<&str> = ids.iter().map(|i| i.as_str()).collect();
    sorted.sort_unstable();
    let common = |a: &str, b: &str| a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    let mut map = HashMap::new();
    for (i, id) in sorted.iter().enumerate() {
        let prev = i.checked_sub(1).map(|j| common(sorted[j], id)).unwrap_or(0);
        let next = sorted.get(i + 1).map(|n| common(n, id)).unwrap_or(0);
        let len = (prev.max(next) + 1).max(4).min(id.len());
        map.insert(
            TaskId::new(*id).expect("listed ids are valid"),
            id[..len].to_owned(),
        );
    }
    map
}

/// A stored timestamp in local time: the date alone at local midnight.
pub(crate) fn local_time(ts: &str) -> String {
    use chrono::Timelike;
    match hypertask_core::parse_timestamp(ts) {
        Some(t) => {
            let l = t.with_timezone(&Local);
            if l.hour() == 0 && l.minute() == 0 && l.second() == 0 {
                l.format("%Y-%m-%d").to_string()
            } else {
                l.format("%Y-%m-%d %H:%M").to_string()
            }
        }
        None => ts.to_owned(),
    }
}

/// `today`, `tomorrow`, `in 3d`, `overdue 2d`.
fn relative_due(ts: &str, now: DateTime<Utc>) -> String {
    let Some(due) = hypertask_core::parse_timestamp(ts) else {
        return ts.to_owned();
    };
    let days = (due.with_timezone(&Local).date_naive() - now.with_timezone(&Local).date_naive())
        .num_days();
    let when = match days {
        0 => "today".to_owned(),
        1 => "tomorrow".to_owned(),
        -1 => "yesterday".to_owned(),
        d if d > 0 => format!("in {d}d"),
        d => format!("{}d ago", -d),
    };
    if due < now {
        format!("overdue ({when})")
    } else {
        when
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(ws: &[&str], modify: bool) -> Result<Words, Usage> {
        let now = DateTime::parse_from_rfc3339("2026-03-04T15:30:00+02:00").unwrap();
        let ws: Vec<String> = ws.iter().map(|s| s.to_string()).collect();
        parse_words(&ws, modify, &now)
    }

    #[test]
    fn words_split_into_description_tags_and_fields() {
        let w = words(
            &[
                "buy",
                "milk",
                "+home",
                "due:tomorrow",
                "recur:1w",
                "note:",
                "a:b",
            ],
            false,
        )
        .unwrap();
        assert_eq!(w.description.as_deref(), Some("buy milk note: a:b"));
        assert_eq!(
            w.changes,
            vec![
                Change::AddTag("home".into()),
                Change::Set("due".into(), "2026-03-04T22:00:00.000Z".into()),
                Change::Set("recur".into(), "1w".into()),
            ]
        );
        // In `add`, `-x` is a word; in `modify` it removes a tag, and `due:` clears.
        assert_eq!(
            words(&["-x", "+"], false).unwrap().description.as_deref(),
            Some("-x +")
        );
        let m = words(&["-x", "due:"], true).unwrap();
        assert_eq!(m.description, None);
        assert_eq!(
            m.changes,
            vec![Change::RemoveTag("x".into()), Change::Clear("due".into())]
        );
    }

    #[test]
    fn bad_values_are_usage_errors_naming_the_field() {
        assert!(words(&["x", "due:soon"], false)
            .unwrap_err()
            .0
            .starts_with("due:"));
        assert!(words(&["x", "wait:"], false)
            .unwrap_err()
            .0
            .contains("wait:"));
        assert!(words(&["x", "recur:often"], false)
            .unwrap_err()
            .0
            .contains("often"));
    }

    #[test]
    fn short_ids_are_unique_prefixes() {
        let ids: Vec<TaskId> = ["abcdef1", "abcdxy2", "zz"]
            .iter()
            .map(|s| TaskId::new(*s).unwrap())
            .collect();
        let refs: Vec<&TaskId> = ids.iter().collect();
        let short = short_ids(&refs);
        assert_eq!(short[&ids[0]], "abcde");
        assert_eq!(short[&ids[1]], "abcdx");
        assert_eq!(short[&ids[2]], "zz");
    }

    #[test]
    fn urgent_tasks_sort_first() {
        let t = |id: &str, extra: Value| {
            let mut doc = serde_json::json!({"id": id, "description": id});
            doc.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            Task::from_value(doc).unwrap()
        };
        let mut tasks = [
            t(
                "old",
                serde_json::json!({"created_at": "2026-01-01T00:00:00Z"}),
            ),
            t(
                "new",
                serde_json::json!({"created_at": "2026-02-01T00:00:00Z"}),
            ),
            t("later", serde_json::json!({"due": "2030-01-01T00:00:00Z"})),
            t(
                "overdue",
                serde_json::json!({"due": "2020-01-01T00:00:00Z"}),
            ),
        ];
        tasks.sort_by_key(urgency);
        let order: Vec<&str> = tasks.iter().map(|t| t.id().as_str()).collect();
        assert_eq!(order, ["overdue", "later", "new", "old"]);
    }
}
