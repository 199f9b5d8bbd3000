//! The commands that only read: list/next, completed, waiting, projects, tags, show/info,
//! conflicts.

use std::collections::BTreeMap;

use anyhow::Result;
use hypertask_core::manage::urgency::{terms, urgency};
use hypertask_core::manage::workset::WorkingSet;
use hypertask_core::manage::{Dependencies, Status};
use hypertask_core::{Replica, Task};
use serde_json::Value;

use crate::output::{out, Table};
use crate::render::{age, local_time, pretty, relative_due, style};
use crate::session::{by_id, Session, BRIEF_LOCK};
use crate::Usage;

/// Which report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Report {
    /// `list`/`next`: most urgent first; renumbers the working set.
    Next,
    /// `completed`: latest first.
    Completed,
    /// `waiting`: soonest to wake first.
    Waiting,
}

/// `list`, `next`, `completed`, `waiting`.
pub(crate) fn list(
    s: &Session,
    words: &[String],
    report: Report,
    statuses: &[Status],
    json: bool,
) -> Result<()> {
    let tasks = s.all()?;
    let deps = Dependencies::new(&tasks, s.now);
    let mut shown: Vec<(&Task, f64)> = s
        .select(&tasks, words, statuses)?
        .into_iter()
        .map(|t| (t, urgency(t, &deps, s.now)))
        .collect();
    match report {
        Report::Next => shown.sort_by(|(a, ua), (b, ub)| {
            ub.total_cmp(ua)
                .then_with(|| a.get_time("due").cmp(&b.get_time("due")))
                .then_with(|| a.created_at().cmp(b.created_at()))
                .then_with(|| a.id().cmp(b.id()))
        }),
        Report::Completed => {
            shown.sort_by(|(a, _), (b, _)| b.get_str("done").cmp(&a.get_str("done")))
        }
        Report::Waiting => shown.sort_by_key(|(t, _)| t.get_time("wait")),
    }
    let ws = if report == Report::Next {
        renumber(&s.replica, &tasks, s.now)
    } else {
        s.working_set()
    };
    if json {
        let docs: Vec<Value> = shown.iter().map(|(t, _)| t.to_value()).collect();
        out(&format!("{}\n", serde_json::to_string_pretty(&docs)?));
        return Ok(());
    }
    let number = |t: &Task| match ws.number_of(t.id()) {
        Some(n) => n.to_string(),
        None => t.id().as_str().chars().take(8).collect(),
    };
    if !s.table {
        // For scripts: tab-separated, one task per line.
        let text: String = shown
            .iter()
            .map(|(t, u)| {
                format!(
                    "{}\t{}\t{u:.2}\t{}\t{}\t{}\t{}\n",
                    ws.number_of(t.id())
                        .map(|n| n.to_string())
                        .unwrap_or_default(),
                    t.id(),
                    t.project().unwrap_or(""),
                    t.get_str("due").unwrap_or(""),
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
    let mut table = Table::new(&[
        "ID",
        "Age",
        "P",
        "Project",
        "Tags",
        "Due",
        "Urg",
        "Description",
    ])
    .coloured(s.colour);
    for (t, u) in &shown {
        let mut desc = t.description().to_owned();
        let notes = t.annotations().len();
        if notes > 0 {
            desc.push_str(&format!(" [{notes}]"));
        }
        let status = t.status(s.now);
        if status != Status::Pending {
            desc.push_str(&format!(" ({status})"));
        }
        if deps.is_blocked(t.id()) {
            desc.push_str(" (blocked)");
        }
        let due = match report {
            Report::Completed => t.get_str("done").map(local_time),
            Report::Waiting => t.get_str("wait").map(local_time),
            Report::Next => t.get_str("due").map(|d| relative_due(d, s.now)),
        };
        table.styled(
            vec![
                number(t),
                age(t.created_at(), s.now),
                t.priority()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_default(),
                t.project().unwrap_or("").to_owned(),
                t.tags().join(" "),
                due.unwrap_or_default(),
                format!("{u:.1}"),
                desc,
            ],
            style(t, s.now),
        );
    }
    out(&table.render());
    Ok(())
}

/// Renumbers the working set when the cache lock is free at once; otherwise (a sync is
/// writing) keeps the numbers it has.
fn renumber(replica: &Replica, tasks: &[Task], now: chrono::DateTime<chrono::Utc>) -> WorkingSet {
    let mut ws = WorkingSet::load(replica.data_dir());
    if let Ok(lock) = replica.lock(BRIEF_LOCK) {
        ws.renumber(tasks, now);
        if let Err(e) = ws.save(replica.data_dir(), &lock) {
            eprintln!("hypertask: cannot save the task numbers: {e}");
        }
    }
    ws
}

/// `projects` and `tags`: counts over the open tasks.
pub(crate) fn counts(s: &Session, projects: bool, json: bool) -> Result<()> {
    let tasks = s.all()?;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut none = 0;
    for t in tasks.iter().filter(|t| t.status(s.now) == Status::Pending) {
        let keys: Vec<String> = if projects {
            match t.project() {
                // A task in home.garden counts for home too.
                Some(p) => {
                    let parts: Vec<&str> = p.split('.').collect();
                    (1..=parts.len()).map(|n| parts[..n].join(".")).collect()
                }
                None => Vec::new(),
            }
        } else {
            t.tags().iter().map(|s| s.to_string()).collect()
        };
        if keys.is_empty() {
            none += 1;
        }
        for k in keys {
            *counts.entry(k).or_default() += 1;
        }
    }
    if json {
        out(&format!("{}\n", serde_json::to_string_pretty(&counts)?));
        return Ok(());
    }
    let what = if projects { "Project" } else { "Tag" };
    let mut table = Table::new(&[what, "Tasks"]).coloured(s.colour);
    for (k, n) in &counts {
        let shown = if projects {
            let depth = k.matches('.').count();
            format!(
                "{}{}",
                "  ".repeat(depth),
                k.rsplit('.').next().unwrap_or(k)
            )
        } else {
            k.clone()
        };
        table.row(vec![shown, n.to_string()]);
    }
    table.row(vec![
        if projects { "(none)" } else { "(no tags)" }.to_owned(),
        none.to_string(),
    ]);
    out(&table.render());
    Ok(())
}

/// `show`/`info`.
pub(crate) fn show(s: &Session, words: &[String], json: bool) -> Result<()> {
    if words.is_empty() && s.filter.is_empty() {
        return Err(
            Usage("show needs a task: a number from `hypertask list` or an id".into()).into(),
        );
    }
    let tasks = s.all()?;
    let statuses = [
        Status::Pending,
        Status::Waiting,
        Status::Completed,
        Status::Recurring,
    ];
    let found = s.select(&tasks, words, &statuses)?;
    if found.is_empty() {
        anyhow::bail!("no task matches '{}'", words.join(" "));
    }
    if json {
        match found.as_slice() {
            [one] => out(&pretty(one)),
            many => {
                let docs: Vec<Value> = many.iter().map(|t| t.to_value()).collect();
                out(&format!("{}\n", serde_json::to_string_pretty(&docs)?));
            }
        }
        return Ok(());
    }
    let deps = Dependencies::new(&tasks, s.now);
    let ws = s.working_set();
    let index = by_id(&tasks);
    let mut text = String::new();
    for (i, task) in found.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        let mut lines: Vec<(String, String)> = Vec::new();
        let mut line = |k: &str, v: String| lines.push((k.to_owned(), v));
        if let Some(n) = ws.number_of(task.id()) {
            line("number", n.to_string());
        }
        line("id", task.id().to_string());
        line("description", task.description().to_owned());
        line("status", task.status(s.now).to_string());
        if !task.tags().is_empty() {
            line("tags", task.tags().join(" "));
        }
        let describe = |id: &hypertask_core::TaskId| match index.get(id) {
            Some(t) => format!("{id} '{}' ({})", t.description(), t.status(s.now)),
            None => format!("{id} (not in this cache)"),
        };
        for dep in task.dependencies() {
            line("depends on", describe(&dep));
        }
        for other in tasks
            .iter()
            .filter(|t| t.dependencies().contains(task.id()))
        {
            line("blocks", describe(other.id()));
        }
        for a in task.annotations() {
            line(
                "annotation",
                format!(
                    "{}  {}",
                    a.at.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M"),
                    a.text
                ),
            );
        }
        for (key, value) in task.as_map() {
            let skip = matches!(
                key.as_str(),
                "id" | "description" | "tags" | "field_updated_at"
            ) || key.starts_with(hypertask_core::manage::ANNOTATION_PREFIX)
                || key.starts_with(hypertask_core::manage::DEP_PREFIX);
            if skip {
                continue;
            }
            let shown = match value {
                Value::String(v) if hypertask_core::parse_timestamp(v).is_some() => local_time(v),
                Value::String(v) => v.clone(),
                other => other.to_string(),
            };
            line(&key.replace('_', " "), shown);
        }
        let parts = terms(task, &deps, s.now);
        let total: f64 = parts.iter().map(|t| t.value()).sum();
        line("urgency", format!("{total:.2}"));
        for p in parts {
            line(
                "",
                format!(
                    "{:<12} {:>5.2} × {:>5.1} = {:>6.2}",
                    p.name,
                    p.factor,
                    p.coefficient,
                    p.value()
                ),
            );
        }
        let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in &lines {
            text.push_str(&format!("{k:width$}  {v}\n"));
        }
    }
    out(&text);
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
