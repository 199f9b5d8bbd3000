//! The commands that change tasks: add, modify, done, delete, restore, reopen, start, stop,
//! annotate, append, prepend, undo, purge. They never touch a driver, so they work offline.

use anyhow::{bail, Context as _, Result};
use chrono::Utc;
use hypertask_core::manage::attrs::AttrChange;
use hypertask_core::manage::undo::{revert, Entry, Journal};
use hypertask_core::manage::{recur, Status, DEP_PREFIX};
use hypertask_core::{Change, Task, TaskId, DEFAULT_LOCK_TIMEOUT};
use serde_json::Value;

use crate::output::out;
use crate::parse::{mods, Mods};
use crate::render::pretty;
use crate::session::{Session, Written, OPEN};
use crate::Usage;

/// `add`.
pub(crate) fn add(s: &Session, words: &[String], json: bool) -> Result<()> {
    let m = mods(words, &s.literal, &s.settings.schema, &s.local, false)?;
    if m.description().is_none() {
        return Err(Usage("a new task needs a description".into()).into());
    }
    let tasks = if has_depends(&m) {
        s.all()?
    } else {
        Vec::new()
    };
    let mut task = Task::new(TaskId::generate(), s.now);
    let changes = changes_for(s, &tasks, &task, &m, Text::Replace)?;
    task.edit(&changes, s.now)?;
    let lock = s.replica.lock(DEFAULT_LOCK_TIMEOUT)?;
    s.replica.put(&lock, std::slice::from_ref(&task))?;
    let entry = Entry::new("add", s.now, [(None, task.clone())]);
    Journal::new(s.replica.data_dir())
        .record(&lock, &entry)
        .context("cannot record the change in the undo journal")?;
    let mut ws = s.working_set();
    ws.push(task.id());
    let _ = ws.save(s.replica.data_dir(), &lock);
    if json {
        out(&pretty(&task));
    } else {
        out(&format!("{}\n", task.id()));
    }
    Ok(())
}

/// How new description words combine with the old description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Text {
    /// They replace it.
    Replace,
    /// They follow it.
    Append,
    /// They come before it.
    Prepend,
}

fn has_depends(m: &Mods) -> bool {
    m.attrs
        .iter()
        .any(|a| matches!(a, AttrChange::Depends { .. }))
}

/// The edit that `m` makes to `task`; `tasks` resolves `depends:` references.
fn changes_for(
    s: &Session,
    tasks: &[Task],
    task: &Task,
    m: &Mods,
    text: Text,
) -> Result<Vec<Change>> {
    let mut changes = Vec::new();
    if let Some(words) = m.description() {
        let description = match text {
            Text::Replace => words,
            Text::Append => format!("{} {words}", task.description()),
            Text::Prepend => format!("{words} {}", task.description()),
        };
        changes.push(Change::Set(
            "description".into(),
            Value::String(description.trim().to_owned()),
        ));
    }
    changes.extend(m.add_tags.iter().map(|t| Change::AddTag(t.clone())));
    changes.extend(m.remove_tags.iter().map(|t| Change::RemoveTag(t.clone())));
    for attr in &m.attrs {
        match attr {
            AttrChange::Set(k, v) => changes.push(Change::Set(k.clone(), v.clone())),
            AttrChange::Clear(k) => changes.push(Change::Clear(k.clone())),
            AttrChange::Depends { add, remove, clear } => {
                if *clear {
                    for key in task.as_map().keys().filter(|k| k.starts_with(DEP_PREFIX)) {
                        changes.push(Change::Clear(key.clone()));
                    }
                    if task.get("blocked_by").is_some() {
                        changes.push(Change::Clear("blocked_by".into()));
                    }
                }
                for r in add {
                    let id = s.resolve(tasks, r)?;
                    if &id == task.id() {
                        bail!("task {} cannot depend on itself", task.id());
                    }
                    changes.push(Change::Set(
                        format!("{DEP_PREFIX}{id}"),
                        Value::String("x".into()),
                    ));
                }
                for r in remove {
                    let id = s.resolve(tasks, r)?;
                    changes.push(Change::Clear(format!("{DEP_PREFIX}{id}")));
                }
            }
        }
    }
    let mut probe = task.clone();
    probe.edit(&changes, s.now)?;
    if recur::lacks_due(&probe) {
        return Err(Usage(format!(
            "task {} would recur without a due date; add due:WHEN (or clear recur:)",
            task.id()
        ))
        .into());
    }
    Ok(changes)
}

/// The filter and the other words of `modify`-like commands: `--filter` terms when given,
/// else the first word.
fn split_filter<'w>(s: &Session, words: &'w [String]) -> (&'w [String], &'w [String]) {
    if s.filter.is_empty() {
        words.split_at(words.len().min(1))
    } else {
        (&[], words)
    }
}

/// `modify`, `append`, `prepend`.
pub(crate) fn modify(s: &Session, words: &[String], text: Text) -> Result<()> {
    let (filter, rest) = split_filter(s, words);
    let m = mods(rest, &s.literal, &s.settings.schema, &s.local, true)?;
    let command = match text {
        Text::Replace => "modify",
        Text::Append => "append",
        Text::Prepend => "prepend",
    };
    if m.is_empty() || (text != Text::Replace && m.description().is_none()) {
        return Err(Usage(format!(
            "{command} needs words after the task: {}",
            if text == Text::Replace {
                "new description words, +tag, -tag or key:value"
            } else {
                "the text to add"
            }
        ))
        .into());
    }
    let tasks = s.all()?;
    let targets = s.targets(command, &tasks, filter, OPEN)?;
    let written = s.edit_each(command, &targets, |t| changes_for(s, &tasks, t, &m, text))?;
    report(&written, "modified", "unchanged");
    Ok(())
}

/// `annotate`.
pub(crate) fn annotate(s: &Session, words: &[String]) -> Result<()> {
    let (filter, rest) = split_filter(s, words);
    let mut text: Vec<String> = rest.to_vec();
    text.extend(s.literal.iter().cloned());
    let text = text.join(" ");
    if text.trim().is_empty() {
        return Err(Usage("annotate needs the text of the note after the task".into()).into());
    }
    let tasks = s.all()?;
    let targets = s.targets("annotate", &tasks, filter, OPEN)?;
    let now = s.now;
    let written = s.edit_each("annotate", &targets, |t| {
        Ok(vec![Change::Set(
            t.new_annotation_key(now),
            Value::String(text.clone()),
        )])
    })?;
    report(&written, "annotated", "unchanged");
    Ok(())
}

/// What a status command does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mark {
    /// `done`.
    Done,
    /// `delete`.
    Delete,
    /// `restore`.
    Restore,
    /// `reopen`.
    Reopen,
    /// `start`.
    Start,
    /// `stop`.
    Stop,
}

/// `done`, `delete`, `restore`, `reopen`, `start`, `stop`.
pub(crate) fn mark(s: &Session, words: &[String], mark: Mark) -> Result<()> {
    let (command, default, verb, already): (&str, &[Status], &str, &str) = match mark {
        Mark::Done => ("done", OPEN, "completed", "already done"),
        Mark::Delete => (
            "delete",
            &[Status::Pending, Status::Waiting, Status::Completed],
            "deleted",
            "already deleted",
        ),
        Mark::Restore => ("restore", &[Status::Deleted], "restored", "not deleted"),
        Mark::Reopen => ("reopen", &[Status::Completed], "reopened", "not completed"),
        Mark::Start => ("start", OPEN, "started", "already active"),
        Mark::Stop => ("stop", OPEN, "stopped", "not active"),
    };
    let tasks = s.all()?;
    let targets = s.targets(command, &tasks, words, default)?;
    let stamp = s.stamp()?;
    let set = |k: &str| Change::Set(k.into(), Value::String(stamp.clone()));
    let written = s.edit_each(command, &targets, |t| {
        let has = |k: &str| t.get(k).is_some();
        Ok(match mark {
            Mark::Done if t.is_done() || t.is_deleted() => vec![],
            Mark::Done if has("start") => vec![set("done"), Change::Clear("start".into())],
            Mark::Done => vec![set("done")],
            Mark::Delete if t.is_deleted() => vec![],
            Mark::Delete => vec![set("deleted")],
            Mark::Restore if !t.is_deleted() => vec![],
            Mark::Restore => vec![Change::Clear("deleted".into())],
            Mark::Reopen if !t.is_done() => vec![],
            Mark::Reopen => vec![Change::Clear("done".into())],
            Mark::Start if t.is_active() || t.is_done() || t.is_deleted() => vec![],
            Mark::Start => vec![set("start")],
            Mark::Stop if !has("start") => vec![],
            Mark::Stop => vec![Change::Clear("start".into())],
        })
    })?;
    report(&written, verb, already);
    Ok(())
}

/// One line per task written, and one per next instance created.
fn report(written: &[Written], verb: &str, unchanged: &str) {
    let mut text = String::new();
    for w in written {
        if w.before == w.after {
            text.push_str(&format!(
                "{} '{}' was {unchanged}\n",
                w.after.id(),
                w.after.description()
            ));
        } else {
            text.push_str(&format!(
                "{verb} {} '{}'\n",
                w.after.id(),
                w.after.description()
            ));
        }
        if let Some(n) = &w.next {
            text.push_str(&format!(
                "created {} '{}', the next instance, due {}\n",
                n.id(),
                n.description(),
                crate::render::local_time(n.get_str("due").unwrap_or_default())
            ));
        }
    }
    out(&text);
}

/// `undo`.
pub(crate) fn undo(s: &Session) -> Result<()> {
    let journal = Journal::new(s.replica.data_dir());
    let Some(peek) = journal.entries()?.pop() else {
        bail!("nothing to undo: the journal of local changes is empty");
    };
    s.confirm("undo", peek.steps.len())?;
    let lock = s.replica.lock(DEFAULT_LOCK_TIMEOUT)?;
    let entry = journal.pop(&lock)?;
    if entry.as_ref() != Some(&peek) {
        bail!("another hypertask process changed the journal meanwhile; run undo again");
    }
    let now = Utc::now();
    let mut batch = Vec::new();
    let mut text = String::new();
    for step in &peek.steps {
        let id = step.after.id();
        let Some(mut current) = s.replica.get(id)? else {
            text.push_str(&format!("{id}: gone from the cache, left alone\n"));
            continue;
        };
        let r = revert(step, &current, now);
        if !r.kept.is_empty() {
            text.push_str(&format!(
                "{id}: kept {} (changed again since)\n",
                r.kept.join(", ")
            ));
        }
        if r.changes.is_empty() {
            continue;
        }
        current.edit(&r.changes, now)?;
        text.push_str(&format!(
            "reverted {id} '{}'{}\n",
            current.description(),
            if step.before.is_none() {
                " (deleted: the change created it)"
            } else {
                ""
            }
        ));
        batch.push(current);
    }
    s.replica.put(&lock, &batch)?;
    out(&format!(
        "undid {} of {} task{} from {}\n{text}",
        peek.command,
        peek.steps.len(),
        if peek.steps.len() == 1 { "" } else { "s" },
        crate::render::local_time(&peek.at)
    ));
    Ok(())
}

/// `purge`.
pub(crate) fn purge(s: &Session, days: u32) -> Result<()> {
    use hypertask_core::manage::purge;
    let last: Vec<Option<chrono::DateTime<Utc>>> = s
        .settings
        .drivers
        .iter()
        .map(|d| {
            s.replica
                .last_sync(&d.name)
                .and_then(|t| hypertask_core::parse_timestamp(&t))
        })
        .collect();
    let tasks = s.all()?;
    let deleted = tasks.iter().filter(|t| t.is_deleted()).count();
    let ids: Vec<TaskId> = tasks
        .iter()
        .filter(|t| purge::eligible(t, days, &last, s.now))
        .map(|t| t.id().clone())
        .collect();
    s.confirm("purge", ids.len())?;
    let lock = s.replica.lock(DEFAULT_LOCK_TIMEOUT)?;
    purge::purge(&s.replica, &lock, &ids)
        .with_context(|| format!("cannot purge in {}", s.replica.data_dir().display()))?;
    out(&format!(
        "purged {} of {deleted} deleted task{} (deleted more than {days} days ago and synced with every driver since)\n",
        ids.len(),
        if deleted == 1 { "" } else { "s" }
    ));
    Ok(())
}
