//! Dates people type (`due:tomorrow`, `wait:fri`, `due:3d`) and recurrence periods.
//!
//! Dates are read in the machine's local time zone and stored in UTC. A bare date (`2026-03-01`,
//! `today`, `tomorrow`, a weekday) means the start of that day.

use chrono::{
    DateTime, Datelike, Duration, LocalResult, Months, NaiveDate, NaiveDateTime, TimeZone, Utc,
    Weekday,
};

/// What `WHEN` accepts, for error messages.
pub const WHEN_FORMS: &str =
    "YYYY-MM-DD, YYYY-MM-DDTHH:MM, an RFC 3339 time, now, today, tomorrow, yesterday, a weekday, \
     or an offset such as 3d, 2w, 12h, 1m, 1y";

/// Parses `input` relative to `now` (whose time zone is the one dates are read in).
pub fn parse_when<Tz: TimeZone>(input: &str, now: &DateTime<Tz>) -> Result<DateTime<Utc>, String> {
    let bad = || format!("cannot read '{input}' as a date; use {WHEN_FORMS}");
    let s = input.trim().to_ascii_lowercase();
    if s.is_empty() {
        return Err(bad());
    }
    let tz = now.timezone();
    let today = now.date_naive();
    let day = |d: NaiveDate| start_of_day(&tz, d).ok_or_else(bad);
    match s.as_str() {
        "now" => return Ok(now.with_timezone(&Utc)),
        "today" => return day(today),
        "tomorrow" => return day(today.succ_opt().ok_or_else(bad)?),
        "yesterday" => return day(today.pred_opt().ok_or_else(bad)?),
        _ => {}
    }
    if let Some(target) = weekday(&s) {
        let ahead =
            (target.num_days_from_monday() + 7 - today.weekday().num_days_from_monday()) % 7;
        let ahead = if ahead == 0 { 7 } else { ahead };
        return day(today + Duration::days(i64::from(ahead)));
    }
    if let Some(t) = offset(&s, now) {
        return t.map(|t| t.with_timezone(&Utc)).ok_or_else(bad);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(input.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(&s, "%Y-%m-%d") {
        return day(d);
    }
    for format in [
        "%Y-%m-%dt%H:%M:%S",
        "%Y-%m-%dt%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(&s, format) {
            return local(&tz, t).ok_or_else(bad);
        }
    }
    Err(bad())
}

/// Validates a recurrence period: a positive count and a unit, `3d`, `1w`, `1m`, `1y`
/// (`daily`, `weekly`, `biweekly`, `monthly`, `quarterly`, `yearly`, `annual`, Taskwarrior's
/// `2days`/`3weeks` spellings and ISO 8601 `P1D`/`P2W`/`P1M`/`P1Y` also work). Returns its
/// stored form.
pub fn parse_recur(input: &str) -> Result<String, String> {
    let s = input.trim().to_ascii_lowercase();
    let alias = match s.as_str() {
        "daily" | "day" => Some("1d"),
        "weekly" | "week" => Some("1w"),
        "biweekly" | "fortnight" => Some("2w"),
        "monthly" | "month" => Some("1m"),
        "quarterly" => Some("3m"),
        "semiannual" => Some("6m"),
        "yearly" | "annual" | "year" => Some("1y"),
        _ => None,
    };
    if let Some(a) = alias {
        return Ok(a.to_owned());
    }
    let bad = || {
        format!("cannot read '{input}' as a recurrence; use a count and a unit, such as 3d, 1w, 1m or 1y")
    };
    let iso = s.strip_prefix('p').filter(|r| !r.contains('t'));
    let (count, unit) = split_count(iso.unwrap_or(&s)).ok_or_else(bad)?;
    let unit = match unit {
        "d" | "day" | "days" => "d",
        "w" | "wk" | "wks" | "week" | "weeks" => "w",
        "m" | "mo" | "mos" | "month" | "months" => "m",
        "y" | "yr" | "yrs" | "year" | "years" => "y",
        _ => return Err(bad()),
    };
    if count == 0 {
        return Err(bad());
    }
    Ok(format!("{count}{unit}"))
}

/// `t` moved forward by a stored recurrence period (`3d`, `1w`, `1m`, `1y`); months and years
/// keep the day of the month where it exists (Jan 31 + 1m = Feb 28). `None` when `recur` is
/// not a stored period or the result leaves the calendar.
pub fn add_period(t: DateTime<Utc>, recur: &str) -> Option<DateTime<Utc>> {
    let (n, unit) = split_count(recur)?;
    match unit {
        "d" => t.checked_add_signed(Duration::days(n.into())),
        "w" => t.checked_add_signed(Duration::weeks(n.into())),
        "m" => t.checked_add_months(Months::new(n)),
        "y" => t.checked_add_months(Months::new(n.checked_mul(12)?)),
        _ => None,
    }
}

/// Validates a duration for a `duration` attribute: a count and a unit (`90min`, `2h`, `3d`,
/// `1w`, `1m`, `1y`, `30s`) or an ISO 8601 duration (`PT1H30M`). Returns its stored form.
pub fn parse_duration(input: &str) -> Result<String, String> {
    let s = input.trim();
    let bad = || {
        format!("cannot read '{input}' as a duration; use a count and a unit such as 90min, 2h, 3d or 1w, or an ISO 8601 duration such as PT1H30M")
    };
    if let Some(rest) = s.strip_prefix(['P', 'p']) {
        let ok = !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || b"YMWDTHSymwdths".contains(&b))
            && rest
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_digit() || b == b'T' || b == b't');
        return if ok {
            Ok(s.to_ascii_uppercase())
        } else {
            Err(bad())
        };
    }
    let lower = s.to_ascii_lowercase();
    let (count, unit) = split_count(&lower).ok_or_else(bad)?;
    let unit = match unit {
        "s" | "sec" | "secs" | "seconds" => "s",
        "min" | "mins" | "minutes" => "min",
        "h" | "hr" | "hrs" | "hours" => "h",
        "d" | "day" | "days" => "d",
        "w" | "wk" | "weeks" => "w",
        "m" | "mo" | "months" => "m",
        "y" | "yr" | "years" => "y",
        _ => return Err(bad()),
    };
    Ok(format!("{count}{unit}"))
}

/// `12d` → (12, "d").
fn split_count(s: &str) -> Option<(u32, &str)> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits == s.len() {
        return None;
    }
    Some((s[..digits].parse().ok()?, &s[digits..]))
}

/// `3d`, `+2w`, `-1d`, `12h`, `1m` (months), `1y` from `now`. `None` when `s` is not an offset;
/// `Some(None)` when it is one but falls outside the calendar.
fn offset<Tz: TimeZone>(s: &str, now: &DateTime<Tz>) -> Option<Option<DateTime<Tz>>> {
    let (negative, rest) = match s.as_bytes().first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    let (n, unit) = split_count(rest)?;
    let now = now.clone();
    let by = |d: Duration| {
        if negative {
            now.clone().checked_sub_signed(d)
        } else {
            now.clone().checked_add_signed(d)
        }
    };
    let months = |m: u32| {
        if negative {
            now.clone().checked_sub_months(Months::new(m))
        } else {
            now.clone().checked_add_months(Months::new(m))
        }
    };
    Some(match unit {
        "h" => by(Duration::hours(n.into())),
        "d" => by(Duration::days(n.into())),
        "w" => by(Duration::weeks(n.into())),
        "m" => months(n),
        "y" => n.checked_mul(12).and_then(months),
        _ => return None,
    })
}

fn weekday(s: &str) -> Option<Weekday> {
    let names = [
        ("monday", Weekday::Mon),
        ("tuesday", Weekday::Tue),
        ("wednesday", Weekday::Wed),
        ("thursday", Weekday::Thu),
        ("friday", Weekday::Fri),
        ("saturday", Weekday::Sat),
        ("sunday", Weekday::Sun),
    ];
    names
        .iter()
        .find(|(full, _)| *full == s || (s.len() == 3 && full.starts_with(s)))
        .map(|&(_, d)| d)
}

/// A local wall-clock time in UTC: the earlier instant when a DST change repeats it, the
/// instant after the gap when one skips it.
fn local<Tz: TimeZone>(tz: &Tz, t: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&t) {
        LocalResult::Single(x) => Some(x.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, _) => Some(a.with_timezone(&Utc)),
        LocalResult::None => (1..=3)
            .find_map(|h| tz.from_local_datetime(&(t + Duration::hours(h))).earliest())
            .map(|x| x.with_timezone(&Utc)),
    }
}

/// The local day (in `tz`) that contains `t`: its first instant and the next day's, in UTC.
pub fn day_of<Tz: TimeZone>(t: DateTime<Utc>, tz: &Tz) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let day = t.with_timezone(tz).date_naive();
    Some((start_of_day(tz, day)?, start_of_day(tz, day.succ_opt()?)?))
}

/// The local week (Monday to Sunday, in `tz`) that contains `t`, as for [`day_of`].
pub fn week_of<Tz: TimeZone>(t: DateTime<Utc>, tz: &Tz) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let day = t.with_timezone(tz).date_naive();
    let monday = day - Duration::days(i64::from(day.weekday().num_days_from_monday()));
    Some((
        start_of_day(tz, monday)?,
        start_of_day(tz, monday + Duration::days(7))?,
    ))
}

fn start_of_day<Tz: TimeZone>(tz: &Tz, d: NaiveDate) -> Option<DateTime<Utc>> {
    local(tz, d.and_hms_opt(0, 0, 0)?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn periods_add_calendar_units() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let at = t("2026-01-31T09:00:00Z");
        assert_eq!(add_period(at, "3d"), Some(t("2026-02-03T09:00:00Z")));
        assert_eq!(add_period(at, "1w"), Some(t("2026-02-07T09:00:00Z")));
        assert_eq!(add_period(at, "1m"), Some(t("2026-02-28T09:00:00Z")));
        assert_eq!(add_period(at, "1y"), Some(t("2027-01-31T09:00:00Z")));
        assert_eq!(add_period(at, "often"), None);
        assert_eq!(parse_duration("90min").unwrap(), "90min");
        assert_eq!(parse_duration("pt1h30m").unwrap(), "PT1H30M");
        assert!(parse_duration("soon").is_err());
    }

    use super::*;
    use chrono::FixedOffset;

    /// Wednesday 2026-03-04 15:30 at UTC+02:00.
    fn now() -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339("2026-03-04T15:30:00+02:00").unwrap()
    }

    fn when(s: &str) -> String {
        parse_when(s, &now()).unwrap().to_rfc3339()
    }

    #[test]
    fn dates_are_local_midnight_in_utc() {
        assert_eq!(when("2026-05-01"), "2026-04-30T22:00:00+00:00");
        assert_eq!(when("today"), "2026-03-03T22:00:00+00:00");
        assert_eq!(when("Tomorrow"), "2026-03-04T22:00:00+00:00");
        assert_eq!(when("yesterday"), "2026-03-02T22:00:00+00:00");
    }

    #[test]
    fn weekdays_are_the_next_one_after_today() {
        assert_eq!(when("thu"), "2026-03-04T22:00:00+00:00");
        assert_eq!(when("friday"), "2026-03-05T22:00:00+00:00");
        assert_eq!(when("monday"), "2026-03-08T22:00:00+00:00");
        // Today is a Wednesday: `wed` is next week's.
        assert_eq!(when("wed"), "2026-03-10T22:00:00+00:00");
    }

    #[test]
    fn offsets_count_from_now() {
        assert_eq!(when("now"), "2026-03-04T13:30:00+00:00");
        assert_eq!(when("3d"), "2026-03-07T13:30:00+00:00");
        assert_eq!(when("+2w"), "2026-03-18T13:30:00+00:00");
        assert_eq!(when("-1d"), "2026-03-03T13:30:00+00:00");
        assert_eq!(when("12h"), "2026-03-05T01:30:00+00:00");
        assert_eq!(when("1m"), "2026-04-04T13:30:00+00:00");
        assert_eq!(when("1y"), "2027-03-04T13:30:00+00:00");
    }

    #[test]
    fn times_with_and_without_zone() {
        assert_eq!(when("2026-06-01T09:00:00Z"), "2026-06-01T09:00:00+00:00");
        assert_eq!(
            when("2026-06-01T09:00:00-05:00"),
            "2026-06-01T14:00:00+00:00"
        );
        assert_eq!(when("2026-06-01T09:00"), "2026-06-01T07:00:00+00:00");
        assert_eq!(when("2026-06-01 09:00"), "2026-06-01T07:00:00+00:00");
    }

    #[test]
    fn nonsense_is_rejected_with_the_accepted_forms() {
        for bad in [
            "",
            "soon",
            "2026-13-01",
            "3x",
            "d",
            "2026-02-30",
            "99999999999d",
        ] {
            let e = parse_when(bad, &now()).unwrap_err();
            assert!(e.contains("YYYY-MM-DD"), "{bad}: {e}");
        }
    }

    #[test]
    fn recurrence_periods() {
        assert_eq!(parse_recur("3d").unwrap(), "3d");
        assert_eq!(parse_recur("01W").unwrap(), "1w");
        assert_eq!(parse_recur("monthly").unwrap(), "1m");
        assert_eq!(parse_recur("P2W").unwrap(), "2w");
        assert_eq!(parse_recur("3days").unwrap(), "3d");
        assert_eq!(parse_recur("quarterly").unwrap(), "3m");
        for bad in ["0d", "d", "3", "3x", "1.5d", "-1d", "", "PT1H"] {
            assert!(parse_recur(bad).is_err(), "{bad}");
        }
    }
}
