//! Timestamps: `occurred_at` is kept exactly as sent (local time with its
//! offset, as the regulation asks); `received_at` is ours, UTC.

use jiff::Timestamp;

/// Checks that `s` is an RFC 3339 date-time with an explicit UTC offset
/// (`Z` or `±hh:mm`) and returns the instant it names.
pub fn parse_occurred_at(s: &str) -> Option<Timestamp> {
    // RFC 3339 only: a `T` (or `t`/space is not accepted), seconds present,
    // an offset present. jiff's Timestamp parser requires the offset.
    let b = s.as_bytes();
    if b.len() < 20 || b.len() > 40 || b[10] != b'T' {
        return None;
    }
    s.parse::<Timestamp>().ok()
}

/// Formats a server timestamp (microseconds since the Unix epoch) as RFC 3339
/// UTC with microsecond precision, e.g. `2026-11-28T14:42:07.123456Z`.
pub fn format_received_at(micros: i64) -> String {
    match Timestamp::from_microsecond(micros) {
        Ok(ts) => format!("{ts:.6}"),
        // Out of jiff's range (years beyond ±9999): cannot come from a real
        // clock; format the epoch so the caller still gets valid RFC 3339.
        Err(_) => "1970-01-01T00:00:00.000000Z".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn occurred_at_needs_an_offset() {
        assert!(parse_occurred_at("2026-11-28T15:42:07.123+01:00").is_some());
        assert!(parse_occurred_at("2026-11-28T14:42:07Z").is_some());
        assert!(parse_occurred_at("2026-11-28T15:42:07").is_none());
        assert!(parse_occurred_at("2026-11-28 15:42:07+01:00").is_none());
        assert!(parse_occurred_at("yesterday").is_none());
        assert!(parse_occurred_at("2026-13-28T15:42:07+01:00").is_none());
    }

    #[test]
    fn received_at_format() {
        assert_eq!(format_received_at(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            format_received_at(1_795_887_727_123_456),
            "2026-11-28T17:42:07.123456Z"
        );
    }
}
