//! How tasks look on a terminal: dates in local time, due dates relative to today, row styles.

use chrono::{DateTime, Local, Utc};
use hypertask_core::manage::{Priority, Status};
use hypertask_core::Task;

use crate::output::Style;

/// The stored document, pretty, with a trailing newline.
pub(crate) fn pretty(task: &Task) -> String {
    String::from_utf8_lossy(&task.to_pretty_json()).into_owned()
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

/// `today`, `tomorrow`, `in 3d`, `overdue (2d ago)`.
pub(crate) fn relative_due(ts: &str, now: DateTime<Utc>) -> String {
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

/// How long ago, in the largest whole unit: `3d`, `5h`, `2w`, `1y`.
pub(crate) fn age(ts: &str, now: DateTime<Utc>) -> String {
    let Some(t) = hypertask_core::parse_timestamp(ts) else {
        return String::new();
    };
    let secs = (now - t).num_seconds().max(0);
    match secs {
        s if s < 3600 => format!("{}min", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s if s < 14 * 86_400 => format!("{}d", s / 86_400),
        s if s < 365 * 86_400 => format!("{}w", s / (7 * 86_400)),
        s => format!("{}y", s / (365 * 86_400)),
    }
}

/// The colour of a task's row: active, overdue, due today, high priority, closed.
pub(crate) fn style(task: &Task, now: DateTime<Utc>) -> Option<Style> {
    let status = task.status(now);
    if matches!(status, Status::Completed | Status::Deleted) {
        return Some(Style::Closed);
    }
    if task.is_active() {
        return Some(Style::Active);
    }
    if let Some(due) = task.get_time("due") {
        if due < now {
            return Some(Style::Overdue);
        }
        if due.with_timezone(&Local).date_naive() == now.with_timezone(&Local).date_naive() {
            return Some(Style::DueToday);
        }
    }
    (task.priority() == Some(Priority::H)).then_some(Style::High)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_relative_dates() {
        let now = hypertask_core::parse_timestamp("2026-03-04T12:00:00Z").unwrap();
        assert_eq!(age("2026-03-01T12:00:00Z", now), "3d");
        assert_eq!(age("2026-03-04T07:00:00Z", now), "5h");
        assert_eq!(age("2025-01-01T00:00:00Z", now), "1y");
        assert!(relative_due("2026-02-01T00:00:00Z", now).starts_with("overdue"));
        assert!(relative_due("2026-03-20T12:00:00Z", now).starts_with("in "));
    }

    #[test]
    fn overdue_wins_over_priority() {
        let now = Utc::now();
        let t = Task::from_value(serde_json::json!({
            "id": "a", "priority": "H", "due": "2020-01-01T00:00:00Z"
        }))
        .unwrap();
        assert_eq!(style(&t, now), Some(Style::Overdue));
        let t = Task::from_value(serde_json::json!({"id": "a", "priority": "H"})).unwrap();
        assert_eq!(style(&t, now), Some(Style::High));
    }
}
