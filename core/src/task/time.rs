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
    if is_canonical(s) {
        return Some(s.to_owned());
    }
    parse_timestamp(s).and_then(format_timestamp)
}

/// Whether `s` is already a canonical timestamp: `YYYY-MM-DDTHH:MM:SS.mmmZ` naming a real
/// instant (no leap second). Nearly every timestamp a sync reads is one; checking the shape
/// spares parsing and formatting it again.
pub(crate) fn is_canonical(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 24 || b[23] != b'Z' {
        return false;
    }
    let mut digits = [0u32; 7];
    let fields = [(0, 4), (5, 2), (8, 2), (11, 2), (14, 2), (17, 2), (20, 3)];
    for (slot, &(start, len)) in digits.iter_mut().zip(fields.iter()) {
        for &c in &b[start..start + len] {
            if !c.is_ascii_digit() {
                return false;
            }
            *slot = *slot * 10 + u32::from(c - b'0');
        }
    }
    let separators = [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
    ];
    let [year, month, day, hour, minute, second, _] = digits;
    separators.iter().all(|&(i, c)| b[i] == c)
        && hour < 24
        && minute < 60
        && second < 60
        && chrono::NaiveDate::from_ymd_opt(year as i32, month, day).is_some()
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn slow(s: &str) -> Option<String> {
        parse_timestamp(s).and_then(format_timestamp)
    }

    proptest! {
        #[test]
        fn a_timestamp_of_the_canonical_shape_is_taken_only_when_parsing_would_keep_it(
            s in "[0-9]{4}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-6][0-9]:[0-6][0-9]\\.[0-9]{3}Z"
        ) {
            if is_canonical(&s) {
                prop_assert_eq!(slow(&s), Some(s.clone()));
            }
            prop_assert_eq!(canonical_timestamp(&s), slow(&s));
        }

        #[test]
        fn every_formatted_timestamp_is_recognised(ms in 0i64..253_402_300_799_999) {
            let t = DateTime::from_timestamp_millis(ms).unwrap();
            prop_assert!(is_canonical(&format_timestamp(t).unwrap()));
        }
    }

    #[test]
    fn near_misses_take_the_slow_path() {
        for s in [
            "2026-02-30T00:00:00.000Z",
            "2026-01-01T24:00:00.000Z",
            "2026-01-01T00:00:60.000Z",
            "2026-01-01T00:00:00.000+",
            "2026-01-01 00:00:00.000Z",
            "2026-01-01T00:00:00.0000Z",
        ] {
            assert!(!is_canonical(s), "{s}");
        }
        assert!(is_canonical("2024-02-29T23:59:59.999Z"));
    }
}
