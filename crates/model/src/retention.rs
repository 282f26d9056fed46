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
    Days,
    Weeks,
    Months,
    Years,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a retention is a number and a unit, e.g. `6 months`, `1 year`, `20 years`, `90 days`")]
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
            "d" | "day" | "days" | "jour" | "jours" => RetentionUnit::Days,
            "w" | "week" | "weeks" | "semaine" | "semaines" => RetentionUnit::Weeks,
            "month" | "months" | "mois" => RetentionUnit::Months,
            "y" | "year" | "years" | "an" | "ans" | "annee" | "annees" | "année" | "années" => {
                RetentionUnit::Years
            }
            _ => return Err(RetentionError),
        };
        if amount == 0 || amount > 36_500 {
            return Err(RetentionError);
        }
        Ok(Retention { amount, unit })
    }

    /// Approximate length in days (months of 30.44 days, years of 365.25).
    pub fn approx_days(&self) -> f64 {
        let a = f64::from(self.amount);
        match self.unit {
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
