//! FHIR dates as ranges of instants (microseconds since the Unix epoch,
//! end exclusive): a `date`, `dateTime` or `instant` names the whole span
//! of its precision (`2026-01` is all of January), as FHIR search compares
//! them (R4 §3.1.1.5.8 "date").

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, ToSpan};

/// `[start, end)` in microseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: i64,
    pub end: i64,
}

impl Range {
    pub fn point(us: i64) -> Range {
        Range {
            start: us,
            end: us.saturating_add(1),
        }
    }
}

/// A FHIR `instant`: seconds and a time zone are required
/// (`2026-11-28T15:42:07.123+01:00`, `…Z`).
pub fn instant(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    if b.len() < 20 || b.len() > 40 || b.get(10) != Some(&b'T') {
        return None;
    }
    if !tz_suffix_ok(s)
        || !b[..19].iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        })
    {
        return None;
    }
    s.parse::<Timestamp>().ok()
}

/// A FHIR `dateTime` (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`, or a full date-time
/// with seconds and a time zone) as the range it names.
pub fn date_time(s: &str) -> Option<Range> {
    if s.len() > 10 {
        let ts = instant(s)?;
        // The precision of the fraction written (none: the whole second).
        let frac = s[19..]
            .strip_prefix('.')
            .map(|f| f.bytes().take_while(u8::is_ascii_digit).count())
            .unwrap_or(0);
        let unit = 10i64.pow(6u32.saturating_sub(frac.min(6) as u32));
        let start = ts.as_microsecond();
        return Some(Range {
            start,
            end: start - start.rem_euclid(unit) + unit,
        });
    }
    partial_date(s, &TimeZone::UTC)
}

/// A date search value (`2026`, `2026-01`, `2026-01-07`,
/// `2026-01-07T09:30`, `2026-01-07T09:30:00`, with or without fraction and
/// time zone). A value without a time zone is read in `tz` (the server's).
pub fn search_value(s: &str, tz: &TimeZone) -> Option<Range> {
    if s.len() <= 10 {
        return partial_date(s, tz);
    }
    if s.len() > 40 || s.as_bytes().get(10) != Some(&b'T') {
        return None;
    }
    let (local, has_tz) = split_tz(s);
    let date = strict_date(&local[..10])?;
    let time_s = &local[11..];
    let (time, unit) = match time_s.len() {
        5 => (
            Time::strptime("%H:%M", time_s).ok()?,
            Span::new().minutes(1),
        ),
        8 => (
            Time::strptime("%H:%M:%S", time_s).ok()?,
            Span::new().seconds(1),
        ),
        n if n > 9 && time_s.as_bytes()[8] == b'.' => {
            let frac = &time_s[9..];
            if !frac.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let t = Time::strptime("%H:%M:%S", &time_s[..8]).ok()?;
            let digits = frac.len().min(9);
            let nanos: i64 = format!("{:0<9}", &frac[..digits]).parse().ok()?;
            let unit_ns = 10i64.pow(9 - digits as u32);
            (
                t.with().subsec_nanosecond(nanos as i32).build().ok()?,
                Span::new().nanoseconds(unit_ns),
            )
        }
        _ => return None,
    };
    let dt = DateTime::from_parts(date, time);
    let start = if has_tz {
        let ts: Timestamp = s.parse().ok()?;
        ts
    } else {
        dt.to_zoned(tz.clone()).ok()?.timestamp()
    };
    let end = start.checked_add(unit).ok()?;
    Some(Range {
        start: start.as_microsecond(),
        end: end.as_microsecond().max(start.as_microsecond() + 1),
    })
}

fn tz_suffix_ok(s: &str) -> bool {
    if s.ends_with('Z') {
        return true;
    }
    let b = s.as_bytes();
    let n = b.len();
    n >= 6
        && matches!(b[n - 6], b'+' | b'-')
        && b[n - 5].is_ascii_digit()
        && b[n - 4].is_ascii_digit()
        && b[n - 3] == b':'
        && b[n - 2].is_ascii_digit()
        && b[n - 1].is_ascii_digit()
}

/// The local part of a date-time and whether a zone follows it.
fn split_tz(s: &str) -> (&str, bool) {
    if let Some(local) = s.strip_suffix('Z') {
        return (local, true);
    }
    if tz_suffix_ok(s) && s.len() >= 17 {
        return (&s[..s.len() - 6], true);
    }
    (s, false)
}

fn strict_date(s: &str) -> Option<Date> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    Date::strptime("%Y-%m-%d", s).ok()
}

/// `YYYY`, `YYYY-MM` or `YYYY-MM-DD` in `tz`.
fn partial_date(s: &str, tz: &TimeZone) -> Option<Range> {
    let b = s.as_bytes();
    if !b.iter().enumerate().all(|(i, c)| {
        if i == 4 || i == 7 {
            *c == b'-'
        } else {
            c.is_ascii_digit()
        }
    }) {
        return None;
    }
    let (start, step): (Date, Span) = match b.len() {
        4 => (Date::new(s.parse().ok()?, 1, 1).ok()?, 1.year()),
        7 => (
            Date::new(s[..4].parse().ok()?, s[5..].parse().ok()?, 1).ok()?,
            1.month(),
        ),
        10 => (strict_date(s)?, 1.day()),
        _ => return None,
    };
    let end = start.checked_add(step).ok()?;
    let at = |d: Date| -> Option<i64> {
        Some(d.to_zoned(tz.clone()).ok()?.timestamp().as_microsecond())
    };
    Some(Range {
        start: at(start)?,
        end: at(end)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(s: &str) -> i64 {
        s.parse::<Timestamp>().expect("ts").as_microsecond()
    }

    #[test]
    fn instants_need_seconds_and_zone() {
        assert!(instant("2026-11-28T15:42:07.123+01:00").is_some());
        assert!(instant("2026-11-28T14:42:07Z").is_some());
        assert!(instant("2026-11-28T15:42:07").is_none());
        assert!(instant("2026-11-28T15:42Z").is_none());
        assert!(instant("2026-11-28t15:42:07Z").is_none());
        assert!(instant("2026-11-28T15:42:07+0100").is_none());
        assert!(instant("2026-11-28").is_none());
    }

    #[test]
    fn ranges_follow_precision() {
        let r = date_time("2026-01").expect("month");
        assert_eq!(
            (r.start, r.end),
            (us("2026-01-01T00:00:00Z"), us("2026-02-01T00:00:00Z"))
        );
        let r = date_time("2026-01-07T09:30:00+01:00").expect("second");
        assert_eq!(
            (r.start, r.end),
            (us("2026-01-07T08:30:00Z"), us("2026-01-07T08:30:01Z"))
        );
        let r = date_time("2026-01-07T09:30:00.5Z").expect("fraction");
        assert_eq!(r.end - r.start, 100_000);
        assert!(date_time("2026-13").is_none());
        assert!(date_time("26-01-01").is_none());
    }

    #[test]
    fn search_values() {
        let utc = TimeZone::UTC;
        let r = search_value("2026-01-07", &utc).expect("day");
        assert_eq!(r.end - r.start, 86_400_000_000);
        let r = search_value("2026-01-07T09:30", &utc).expect("minute");
        assert_eq!(
            (r.start, r.end),
            (us("2026-01-07T09:30:00Z"), us("2026-01-07T09:31:00Z"))
        );
        let r = search_value("2026-01-07T09:30:00+01:00", &utc).expect("zone");
        assert_eq!(r.start, us("2026-01-07T08:30:00Z"));
        let r = search_value("2026-01-07T09:30:00.250Z", &utc).expect("ms");
        assert_eq!(r.end - r.start, 1000);
        for bad in [
            "",
            "x",
            "2026-1-07",
            "2026-01-07T9:30",
            "2026-01-07 09:30",
            "2026-02-30",
        ] {
            assert!(search_value(bad, &utc).is_none(), "{bad}");
        }
    }
}
