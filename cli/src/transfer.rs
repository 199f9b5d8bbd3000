//! `import` (Taskwarrior's `task export`, original hypertask task files) and `export`
//! (Taskwarrior JSON that `task import` accepts).

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;

use anyhow::{bail, Context as _, Result};
use hypertask_core::manage::taskwarrior::{self, UuidMap};
use hypertask_core::manage::undo::{Entry, Journal};
use hypertask_core::manage::Status;
use hypertask_core::{merge_tasks, Task, TaskId, DEFAULT_LOCK_TIMEOUT};
use serde_json::Value;

use crate::output::out;
use crate::session::Session;

/// The largest import read, in bytes (1 GiB): far above any real export.
const MAX_IMPORT_BYTES: u64 = 1 << 30;

/// Reads the objects to import from a file, a directory of `.json` files, or stdin (`-`).
fn read_items(path: &Path) -> Result<Vec<(String, Value)>> {
    let mut sources: Vec<(String, String)> = Vec::new();
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .take(MAX_IMPORT_BYTES)
            .read_to_string(&mut text)
            .context("cannot read the import from standard input")?;
        sources.push(("standard input".into(), text));
    } else if path.is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(path)
            .with_context(|| format!("cannot read directory {}", path.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f)
                .with_context(|| format!("cannot read {}", f.display()))?;
            sources.push((f.display().to_string(), text));
        }
    } else {
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_IMPORT_BYTES).read_to_string(&mut text))
            .with_context(|| format!("cannot read {}", path.display()))?;
        sources.push((path.display().to_string(), text));
    }
    let mut items = Vec::new();
    for (name, text) in sources {
        let parsed = taskwarrior::parse_input(&text).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        items.extend(parsed.into_iter().map(|v| (name.clone(), v)));
    }
    Ok(items)
}

/// `import`: each task is merged with the one already held (a newer local edit stays);
/// importing the same input again changes nothing. Returns `false` when some items failed.
pub(crate) fn import(s: &Session, path: &Path) -> Result<bool> {
    let items = read_items(path)?;
    let values: Vec<Value> = items.iter().map(|(_, v)| v.clone()).collect();
    let lock = s.replica.lock(DEFAULT_LOCK_TIMEOUT)?;
    let (held, problems) = s.replica.all()?;
    for p in &problems {
        eprintln!("hypertask: skipped {p}");
    }
    let mut held: BTreeMap<TaskId, Task> = held.into_iter().map(|t| (t.id().clone(), t)).collect();
    let uuids = UuidMap::new(&values, held.keys());
    let (mut added, mut updated, mut unchanged, mut failed) = (0, 0, 0, 0);
    let mut steps: Vec<(Option<Task>, Task)> = Vec::new();
    for (source, item) in &items {
        let existing = taskwarrior::item_id(item).and_then(|id| held.get(&id).cloned());
        let task = match taskwarrior::import(item, &s.settings.schema, &uuids, existing.as_ref()) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("hypertask: skipped an entry of {source}: {e}");
                failed += 1;
                continue;
            }
        };
        let next = match &existing {
            None => {
                added += 1;
                task
            }
            Some(old) if taskwarrior::same_values(old, &task) => {
                unchanged += 1;
                continue;
            }
            Some(old) => {
                let merged = merge_tasks(old, &task)?;
                if &merged == old {
                    unchanged += 1;
                    continue;
                }
                updated += 1;
                merged
            }
        };
        held.insert(next.id().clone(), next.clone());
        steps.push((existing, next));
    }
    let batch: Vec<Task> = steps.iter().map(|(_, t)| t.clone()).collect();
    for chunk in batch.chunks(1000) {
        s.replica.put(&lock, chunk)?;
    }
    Journal::new(s.replica.data_dir())
        .record(&lock, &Entry::new("import", s.now, steps))
        .context("cannot record the import in the undo journal")?;
    out(&format!(
        "imported {} task{}: {added} new, {updated} updated, {unchanged} unchanged{}\n",
        items.len() - failed,
        if items.len() - failed == 1 { "" } else { "s" },
        if failed > 0 {
            format!(", {failed} skipped")
        } else {
            String::new()
        }
    ));
    if failed > 0 && failed == items.len() {
        bail!("nothing could be imported from {}", path.display());
    }
    Ok(failed == 0)
}

/// `export`: every task the filter selects (all of them by default, deleted ones included),
/// as a JSON array with one task per line.
pub(crate) fn export(s: &Session, words: &[String]) -> Result<()> {
    let tasks = s.all()?;
    let selected = s.select(&tasks, words, &Status::ALL)?;
    let lines: Vec<String> = selected
        .iter()
        .map(|t| taskwarrior::export(t, &s.settings.schema, s.now).to_string())
        .collect();
    out(&format!("[\n{}\n]\n", lines.join(",\n")));
    Ok(())
}
