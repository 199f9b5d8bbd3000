//! Task-manager semantics on top of the task document, shared by every front end (the CLI
//! today, the web client later): status, attributes and their syntax, dates people type,
//! urgency, recurrence, filters, the working set, the undo journal and Taskwarrior import and
//! export. Everything here reads and writes plain task fields (docs/task-format.md), so it merges per
//! field and every driver carries it.

pub mod attrs;
mod deps;
pub mod filter;
pub mod purge;
pub mod recur;
mod status;
pub mod taskwarrior;
pub mod undo;
pub mod urgency;
pub mod when;
pub mod workset;

pub use deps::Dependencies;
pub use status::{Annotation, Priority, Status, ANNOTATION_PREFIX, DEP_PREFIX};

use serde_json::{Map, Value};

use crate::task::TaskId;

/// Type checks for the task-manager attributes that have a fixed type: `project` and
/// `annotation_<epoch-ms>` are strings, `dep_<id>` names a valid task id. Returns the field and
/// what is wrong. (`priority` is not checked: older documents hold other values there, which
/// stay readable and simply count as no priority.)
pub(crate) fn validate_attributes(doc: &Map<String, Value>) -> Result<(), (String, String)> {
    for (key, value) in doc {
        if key == "project" && !value.is_string() {
            return Err((key.clone(), "must be a string".into()));
        }
        if let Some(ms) = key.strip_prefix(ANNOTATION_PREFIX) {
            if ms.is_empty() || !ms.bytes().all(|b| b.is_ascii_digit()) {
                return Err((
                    key.clone(),
                    "an annotation key ends in epoch milliseconds".into(),
                ));
            }
            if !value.is_string() {
                return Err((key.clone(), "an annotation must be a string".into()));
            }
        }
        if let Some(id) = key.strip_prefix(DEP_PREFIX) {
            if !TaskId::is_valid(id) {
                return Err((key.clone(), "a dependency key ends in a task id".into()));
            }
            if !value.is_string() {
                return Err((key.clone(), "a dependency must be a string".into()));
            }
        }
    }
    Ok(())
}
