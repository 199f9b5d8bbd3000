//! Timestamps in the canonical form `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC, milliseconds).

use chrono::{DateTime, SecondsFormat, Timelike, Utc};

/// The timestamp a task carries when its input had none.
pub const EPOCH: &str = "1970-01-01T00:00:00.000Z";

/// How far ahead of this machine's clock a task's clocks may be when it arrives from elsewhere.
///
/// A clock far in the future would win every merge until that date: a task from an upstream
/// or a client whose clocks are further ahead is rejected as invalid (see `docs/task-format.md`).
pub const MAX_CLOCK_SKEW: chrono::Duration = chrono::Duration::days(1);

/// Parses an RFC 3339 timestamp into its canonical form.
pub fn canonical_timestamp(s: &str) -> Option<String> {
    parse_timestamp(s).and_then(format_timestamp)
}

/// Formats `t` in the canonical form, truncated to milliseconds; `None` outside years 0–9999.
pub fn format_timestamp(t: DateTime<Utc>) -> Option<String> {
    use chrono::Datelike;
    if !(0..=9999).contains(&t.year()) {
        return None;
    }
    let t = t.with_nanosecond(t.timestamp_subsec_millis() * 1_000_000)?;
    Some(t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// Parses a canonical (or any RFC 3339) timestamp.
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}
