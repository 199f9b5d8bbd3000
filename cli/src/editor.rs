//! `edit`: a task as readable `key: value` lines in `$VISUAL`/`$EDITOR`, read back, checked
//! like typed words, and applied as one edit.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;

use anyhow::{bail, Context as _, Result};
use hypertask_core::manage::attrs::{AttrChange, BUILTIN_ATTRIBUTES};
use hypertask_core::manage::{Status, DEP_PREFIX};
use hypertask_core::{Change, Task};
use serde_json::Value;

use crate::output::out;
use crate::render::local_time;
use crate::session::Session;
use crate::Usage;

/// The attributes shown, in order, before the user-defined ones: the built-in ones, with
/// dependencies on a line of their own after the tags.
fn shown() -> impl Iterator<Item = &'static str> {
    BUILTIN_ATTRIBUTES
        .iter()
        .copied()
        .filter(|a| *a != "depends")
}

/// The readable form of `task`.
fn render(s: &Session, task: &Task) -> String {
    let mut text = format!(
        "# Editing task {}. Change a value, empty it to clear it, then save and quit.\n\
         # Dates: YYYY-MM-DD, YYYY-MM-DD HH:MM (local time), or any form `due:` accepts.\n\
         # tags and depends: separated by spaces. One `annotation:` line per note.\n",
        task.id()
    );
    let value = |k: &str| match task.get(k) {
        Some(Value::String(v)) if hypertask_core::parse_timestamp(v).is_some() => local_time(v),
        Some(Value::String(v)) => v.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    for k in shown() {
        text.push_str(&format!("{k}: {}\n", value(k)));
    }
    for k in s.settings.schema.udas().keys() {
        text.push_str(&format!("{k}: {}\n", value(k)));
    }
    text.push_str(&format!("tags: {}\n", task.tags().join(" ")));
    let deps: Vec<String> = task
        .as_map()
        .keys()
        .filter_map(|k| k.strip_prefix(DEP_PREFIX))
        .map(str::to_owned)
        .collect();
    text.push_str(&format!("depends: {}\n", deps.join(" ")));
    for a in task.annotations() {
        text.push_str(&format!("annotation: {}\n", a.text));
    }
    text
}

/// Runs the editor on `text` and returns what was saved.
fn run_editor(text: &str) -> Result<String> {
    let editor = ["VISUAL", "EDITOR"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|e| !e.trim().is_empty()))
        .unwrap_or_else(|| "vi".to_owned());
    let mut file = tempfile::Builder::new()
        .prefix("hypertask-edit-")
        .suffix(".txt")
        .tempfile()
        .context("cannot create a file to edit")?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.flush())
        .context("cannot write the file to edit")?;
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("hypertask-edit")
        .arg(file.path())
        .status()
        .with_context(|| format!("cannot run the editor '{editor}'"))?;
    if !status.success() {
        bail!("the editor '{editor}' failed ({status}); nothing changed");
    }
    std::fs::read_to_string(file.path()).context("cannot read the edited file back")
}

/// The edit that turns `task` into what `edited` says.
fn changes(s: &Session, tasks: &[Task], task: &Task, edited: &str) -> Result<Vec<Change>> {
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    let mut notes: Vec<String> = Vec::new();
    for line in edited
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (key, value) = line.split_once(':').ok_or_else(|| {
            Usage(format!(
                "cannot read the line '{line}': expected `key: value`"
            ))
        })?;
        let (key, value) = (key.trim(), value.trim());
        if key == "annotation" {
            notes.push(value.to_owned());
            continue;
        }
        let known = BUILTIN_ATTRIBUTES.contains(&key)
            || s.settings.schema.udas().contains_key(key)
            || key == "tags";
        if !known {
            return Err(s.settings.schema.unknown(key).into());
        }
        values.insert(key.to_owned(), value.to_owned());
    }
    let before = render(s, task);
    let old: BTreeMap<&str, &str> = before
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            l.split_once(": ")
                .or_else(|| l.strip_suffix(':').map(|k| (k, "")))
        })
        .collect();
    let mut out = Vec::new();
    for (key, value) in &values {
        if old.get(key.as_str()).copied().unwrap_or("") == value {
            continue;
        }
        match key.as_str() {
            "tags" => {
                let was: BTreeSet<&str> = task.tags().into_iter().collect();
                let now: BTreeSet<&str> = value.split_whitespace().collect();
                out.extend(now.difference(&was).map(|t| Change::AddTag(t.to_string())));
                out.extend(
                    was.difference(&now)
                        .map(|t| Change::RemoveTag(t.to_string())),
                );
            }
            "depends" => {
                let was: BTreeSet<String> = task
                    .as_map()
                    .keys()
                    .filter_map(|k| k.strip_prefix(DEP_PREFIX))
                    .map(str::to_owned)
                    .collect();
                let mut now = BTreeSet::new();
                for r in value.split_whitespace() {
                    now.insert(s.resolve(tasks, r)?.to_string());
                }
                for id in now.difference(&was) {
                    out.push(Change::Set(
                        format!("{DEP_PREFIX}{id}"),
                        Value::String("x".into()),
                    ));
                }
                for id in was.difference(&now) {
                    out.push(Change::Clear(format!("{DEP_PREFIX}{id}")));
                }
            }
            k => match s
                .settings
                .schema
                .modification(k, value, &s.local)
                .map_err(|e| Usage(e.to_string()))?
            {
                AttrChange::Set(k, v) => out.push(Change::Set(k, v)),
                AttrChange::Clear(k) => out.push(Change::Clear(k)),
                AttrChange::Depends { .. } => {}
            },
        }
    }
    // Annotations: matched by text; removed lines clear, new lines add.
    let mut remaining = notes.clone();
    for a in task.annotations() {
        match remaining.iter().position(|n| n == a.text) {
            Some(i) => {
                remaining.remove(i);
            }
            None => out.push(Change::Clear(a.key.to_owned())),
        }
    }
    let mut probe = task.clone();
    for text in remaining.into_iter().filter(|t| !t.is_empty()) {
        let key = probe.new_annotation_key(s.now);
        probe.edit(
            &[Change::Set(key.clone(), Value::String(text.clone()))],
            s.now,
        )?;
        out.push(Change::Set(key, Value::String(text)));
    }
    Ok(out)
}

/// `edit`.
pub(crate) fn edit(s: &Session, words: &[String]) -> Result<()> {
    let tasks = s.all()?;
    let statuses = [Status::Pending, Status::Waiting, Status::Completed];
    let targets = s.targets("edit", &tasks, words, &statuses)?;
    let [task] = targets.as_slice() else {
        bail!(
            "edit works on one task; the filter matches {}",
            targets.len()
        );
    };
    let edited = run_editor(&render(s, task))?;
    let edit = changes(s, &tasks, task, &edited)?;
    if edit.is_empty() {
        out(&format!(
            "{} '{}': nothing changed\n",
            task.id(),
            task.description()
        ));
        return Ok(());
    }
    let written = s.edit_each("edit", std::slice::from_ref(task), |_| Ok(edit.clone()))?;
    let after = &written[0].after;
    let mut text = format!("edited {} '{}'\n", after.id(), after.description());
    let (old, new) = (render(s, task), render(s, after));
    let old: BTreeSet<&str> = old.lines().filter(|l| !l.starts_with('#')).collect();
    for line in new.lines().filter(|l| !l.starts_with('#')) {
        if !old.contains(line) {
            text.push_str(&format!("  now  {line}\n"));
        }
    }
    out(&text);
    Ok(())
}
