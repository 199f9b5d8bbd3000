//! Urgency: one number per task that orders `next`, computed as Taskwarrior computes it, with
//! Taskwarrior's published default coefficients, so a switcher's list comes out in the order
//! they are used to.

use chrono::{DateTime, Utc};

use super::{Dependencies, Priority, Status};
use crate::task::Task;

/// Taskwarrior's default coefficients (`urgency.*.coefficient`).
pub mod coefficient {
    /// The `+next` tag.
    pub const NEXT_TAG: f64 = 15.0;
    /// Due date (scaled by how close it is).
    pub const DUE: f64 = 12.0;
    /// Blocking another open task.
    pub const BLOCKING: f64 = 8.0;
    /// `priority:H`.
    pub const PRIORITY_H: f64 = 6.0;
    /// `priority:M`.
    pub const PRIORITY_M: f64 = 3.9;
    /// `priority:L`.
    pub const PRIORITY_L: f64 = 1.8;
    /// `scheduled` in the past.
    pub const SCHEDULED: f64 = 5.0;
    /// Started.
    pub const ACTIVE: f64 = 4.0;
    /// Age (scaled up to `AGE_MAX_DAYS`).
    pub const AGE: f64 = 2.0;
    /// Annotations (scaled by count).
    pub const ANNOTATIONS: f64 = 1.0;
    /// Tags (scaled by count).
    pub const TAGS: f64 = 1.0;
    /// Having a project.
    pub const PROJECT: f64 = 1.0;
    /// Waiting.
    pub const WAITING: f64 = -3.0;
    /// Blocked by another open task.
    pub const BLOCKED: f64 = -5.0;
    /// The age at which the age term is full (`urgency.age.max`).
    pub const AGE_MAX_DAYS: f64 = 365.0;
}

/// One term of a task's urgency, for `info`.
#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    /// What it is (`due`, `priority`, …).
    pub name: &'static str,
    /// The factor, 0 to 1 (how much of the coefficient applies).
    pub factor: f64,
    /// The coefficient.
    pub coefficient: f64,
}

impl Term {
    /// `factor × coefficient`.
    pub fn value(&self) -> f64 {
        self.factor * self.coefficient
    }
}

/// The terms of `task`'s urgency at `now`; `deps` is the graph of all tasks. Closed tasks have
/// no terms (urgency 0).
pub fn terms(task: &Task, deps: &Dependencies, now: DateTime<Utc>) -> Vec<Term> {
    use coefficient as c;
    let status = task.status(now);
    if !status.is_open() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut add = |name, factor: f64, coefficient| {
        if factor != 0.0 {
            out.push(Term {
                name,
                factor,
                coefficient,
            });
        }
    };
    if task.tags().contains(&"next") {
        add("next tag", 1.0, c::NEXT_TAG);
    }
    if let Some(due) = task.get_time("due") {
        add("due", due_factor(due, now), c::DUE);
    }
    if deps.is_blocking(task.id()) {
        add("blocking", 1.0, c::BLOCKING);
    }
    match task.priority() {
        Some(Priority::H) => add("priority", 1.0, c::PRIORITY_H),
        Some(Priority::M) => add("priority", 1.0, c::PRIORITY_M),
        Some(Priority::L) => add("priority", 1.0, c::PRIORITY_L),
        None => {}
    }
    if task.get_time("scheduled").is_some_and(|s| s < now) {
        add("scheduled", 1.0, c::SCHEDULED);
    }
    if task.is_active() {
        add("active", 1.0, c::ACTIVE);
    }
    if let Some(created) = crate::parse_timestamp(task.created_at()) {
        let days = (now - created).num_seconds() as f64 / 86_400.0;
        add("age", (days / c::AGE_MAX_DAYS).clamp(0.0, 1.0), c::AGE);
    }
    add(
        "annotations",
        count_factor(task.annotations().len()),
        c::ANNOTATIONS,
    );
    add("tags", count_factor(task.tags().len()), c::TAGS);
    if task.project().is_some() {
        add("project", 1.0, c::PROJECT);
    }
    if status == Status::Waiting {
        add("waiting", 1.0, c::WAITING);
    }
    if deps.is_blocked(task.id()) {
        add("blocked", 1.0, c::BLOCKED);
    }
    out
}

/// The urgency of `task` at `now`: the sum of its [`terms`].
pub fn urgency(task: &Task, deps: &Dependencies, now: DateTime<Utc>) -> f64 {
    terms(task, deps, now).iter().map(Term::value).sum()
}

/// Taskwarrior's due factor: 1.0 from a week overdue, falling linearly to 0.2 at two weeks
/// ahead, 0.2 beyond.
fn due_factor(due: DateTime<Utc>, now: DateTime<Utc>) -> f64 {
    let overdue_days = (now - due).num_seconds() as f64 / 86_400.0;
    if overdue_days >= 7.0 {
        1.0
    } else if overdue_days >= -14.0 {
        (overdue_days + 14.0) * 0.8 / 21.0 + 0.2
    } else {
        0.2
    }
}

/// Taskwarrior's factor for counted things (tags, annotations): 0, 0.8, 0.9, then 1.0.
fn count_factor(n: usize) -> f64 {
    match n {
        0 => 0.0,
        1 => 0.8,
        2 => 0.9,
        _ => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(doc: serde_json::Value) -> Task {
        Task::from_value(doc).unwrap()
    }

    #[test]
    fn taskwarrior_defaults() {
        let now = crate::parse_timestamp("2026-03-01T12:00:00Z").unwrap();
        let created = "2026-03-01T12:00:00Z";
        let plain = task(json!({"id": "a", "created_at": created}));
        let deps = Dependencies::default();
        assert_eq!(urgency(&plain, &deps, now), 0.0);

        let high = task(json!({"id": "b", "created_at": created, "priority": "H",
            "project": "home", "tags": ["next"]}));
        // next 15 + priority 6 + project 1 + one tag 0.8.
        assert!((urgency(&high, &deps, now) - 22.8).abs() < 1e-9);

        // Due now: (0 + 14) * 0.8 / 21 + 0.2 = 0.7333…, × 12.
        let due = task(json!({"id": "c", "created_at": created, "due": "2026-03-01T12:00:00Z"}));
        assert!((urgency(&due, &deps, now) - 8.8).abs() < 1e-9);
        let overdue =
            task(json!({"id": "c", "created_at": created, "due": "2026-02-01T00:00:00Z"}));
        assert!((urgency(&overdue, &deps, now) - 12.0).abs() < 1e-9);
        let far = task(json!({"id": "c", "created_at": created, "due": "2027-01-01T00:00:00Z"}));
        assert!((urgency(&far, &deps, now) - 2.4).abs() < 1e-9);

        // A year old: the full age term.
        let old = task(json!({"id": "d", "created_at": "2025-01-01T00:00:00Z"}));
        assert!((urgency(&old, &deps, now) - 2.0).abs() < 1e-9);

        // Blocked and blocking.
        let blocker = task(json!({"id": "e", "created_at": created}));
        let waiter = task(json!({"id": "f", "created_at": created, "dep_e": "x"}));
        let all = [blocker.clone(), waiter.clone()];
        let deps = Dependencies::new(&all, now);
        assert_eq!(urgency(&blocker, &deps, now), 8.0);
        assert_eq!(urgency(&waiter, &deps, now), -5.0);

        let done = task(json!({"id": "g", "priority": "H", "done": created}));
        assert_eq!(urgency(&done, &deps, now), 0.0);
    }
}
