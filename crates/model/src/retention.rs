//! Retention durations as the data controller writes them: `6 months`,
//! `1 year`, `20 years`, `90 days`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A retention duration in calendar units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub amount: u32,
    pub unit: RetentionUnit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionUnit {
    Seconds,
    Minutes,
    Hours,
    Days,
    Weeks,
    Months,
    Years,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a duration is a number and a unit, e.g. `6 months`, `1 year`, `20 years`, `90 days`, `12 hours`, `30 seconds`"
)]
pub struct RetentionError;

impl Retention {
    pub const fn months(amount: u32) -> Retention {
        Retention {
            amount,
            unit: RetentionUnit::Months,
        }
    }

    pub const fn years(amount: u32) -> Retention {
        Retention {
            amount,
            unit: RetentionUnit::Years,
        }
    }

    pub fn parse(s: &str) -> Result<Retention, RetentionError> {
        let s = s.trim();
        let split = s
            .find(|c: char| !c.is_ascii_digit())
            .ok_or(RetentionError)?;
        let amount: u32 = s[..split].parse().map_err(|_| RetentionError)?;
        let unit = match s[split..].trim().to_ascii_lowercase().as_str() {
            "s" | "sec" | "secs" | "second" | "seconds" | "seconde" | "secondes" => {
                RetentionUnit::Seconds
            }
            "min" | "mins" | "minute" | "minutes" => RetentionUnit::Minutes,
            "h" | "hour" | "hours" | "heure" | "heures" => RetentionUnit::Hours,
            "d" | "day" | "days" | "jour" | "jours" => RetentionUnit::Days,
            "w" | "week" | "weeks" | "semaine" | "semaines" => RetentionUnit::Weeks,
            "month" | "months" | "mois" => RetentionUnit::Months,
            "y" | "year" | "years" | "an" | "ans" | "annee" | "annees" | "année" | "années" => {
                RetentionUnit::Years
            }
            _ => return Err(RetentionError),
        };
        let r = Retention { amount, unit };
        // At most 100 years, whatever the unit.
        if amount == 0 || r.approx_days() > 36_525.0 {
            return Err(RetentionError);
        }
        Ok(r)
    }

    /// The instant (µs since the Unix epoch) this long before `now`, in
    /// calendar arithmetic on UTC (`6 months` before 31 August is 28 or 29
    /// February). A trace received before it is past this retention.
    pub fn cutoff(&self, now_micros: i64) -> i64 {
        use jiff::{Span, Timestamp, tz::TimeZone};
        let a = i64::from(self.amount);
        let span = match self.unit {
            RetentionUnit::Seconds => Span::new().seconds(a),
            RetentionUnit::Minutes => Span::new().minutes(a),
            RetentionUnit::Hours => Span::new().hours(a),
            RetentionUnit::Days => Span::new().days(a),
            RetentionUnit::Weeks => Span::new().weeks(a),
            RetentionUnit::Months => Span::new().months(a),
            RetentionUnit::Years => Span::new().years(a),
        };
        Timestamp::from_microsecond(now_micros)
            .ok()
            .map(|t| t.to_zoned(TimeZone::UTC))
            .and_then(|z| z.checked_sub(span).ok())
            .map_or(i64::MIN, |z| z.timestamp().as_microsecond())
    }

    /// Length in seconds (months of 30.44 days, years of 365.25).
    pub fn approx_seconds(&self) -> f64 {
        self.approx_days() * 86_400.0
    }

    /// Approximate length in days (months of 30.44 days, years of 365.25).
    pub fn approx_days(&self) -> f64 {
        let a = f64::from(self.amount);
        match self.unit {
            RetentionUnit::Seconds => a / 86_400.0,
            RetentionUnit::Minutes => a / 1_440.0,
            RetentionUnit::Hours => a / 24.0,
            RetentionUnit::Days => a,
            RetentionUnit::Weeks => a * 7.0,
            RetentionUnit::Months => a * 30.436_875,
            RetentionUnit::Years => a * 365.25,
        }
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (one, many) = match self.unit {
            RetentionUnit::Seconds => ("second", "seconds"),
            RetentionUnit::Minutes => ("minute", "minutes"),
            RetentionUnit::Hours => ("hour", "hours"),
            RetentionUnit::Days => ("day", "days"),
            RetentionUnit::Weeks => ("week", "weeks"),
            RetentionUnit::Months => ("month", "months"),
            RetentionUnit::Years => ("year", "years"),
        };
        write!(
            f,
            "{} {}",
            self.amount,
            if self.amount == 1 { one } else { many }
        )
    }
}

impl Serialize for Retention {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Retention {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Retention::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!(Retention::parse("6 months"), Ok(Retention::months(6)));
        assert_eq!(Retention::parse("1 year"), Ok(Retention::years(1)));
        assert_eq!(Retention::parse("20years"), Ok(Retention::years(20)));
        assert_eq!(Retention::parse(" 6 mois "), Ok(Retention::months(6)));
        assert_eq!(
            Retention::parse("90 days").map(|r| r.to_string()),
            Ok("90 days".into())
        );
        for bad in ["", "six months", "6", "0 days", "6 fortnights", "-1 year"] {
            assert!(Retention::parse(bad).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod cutoff_tests {
    use super::*;

    fn micros(s: &str) -> i64 {
        s.parse::<jiff::Timestamp>()
            .map(|t| t.as_microsecond())
            .unwrap_or(0)
    }

    #[test]
    fn short_units_parse_and_print() {
        assert_eq!(
            Retention::parse("30 seconds").map(|r| r.to_string()),
            Ok("30 seconds".into())
        );
        assert_eq!(Retention::parse("1 s").map(|r| r.amount), Ok(1));
        assert_eq!(
            Retention::parse("12 heures").map(|r| r.unit),
            Ok(RetentionUnit::Hours)
        );
        assert!(Retention::parse("101 years").is_err());
    }

    #[test]
    fn cutoffs_are_calendar_arithmetic_in_utc() {
        let now = micros("2026-08-31T12:00:00Z");
        assert_eq!(
            Retention::months(6).cutoff(now),
            micros("2026-02-28T12:00:00Z")
        );
        assert_eq!(
            Retention::years(20).cutoff(now),
            micros("2006-08-31T12:00:00Z")
        );
        let ten = Retention::parse("10 seconds").map(|r| r.cutoff(now));
        assert_eq!(ten, Ok(now - 10_000_000));
    }
}
