//! Search queries and their pages.

use registre_model::{Action, ClassName, Salt, StoredTrace};
use serde::Serialize;

use crate::Cursor;

/// Filters are ANDed. `since`/`until` bound the reception time (`received_at`,
/// microseconds since the Unix epoch, inclusive since, exclusive until);
/// `occurred_since`/`occurred_until` bound the action time (`occurred_at`,
/// the instant it names, whatever its offset) the same way.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub actor: Option<String>,
    pub mailbox: Option<String>,
    pub patient: Option<String>,
    pub action: Option<Action>,
    pub class: Option<ClassName>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub occurred_since: Option<i64>,
    pub occurred_until: Option<i64>,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

/// A stored trace and its salt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredRecord {
    #[serde(flatten)]
    pub trace: StoredTrace,
    #[serde(serialize_with = "hex_salt")]
    pub salt: Salt,
}

fn hex_salt<S: serde::Serializer>(salt: &Salt, s: S) -> Result<S::Ok, S::Error> {
    let mut out = String::with_capacity(32);
    for b in salt {
        out.push(char::from(b"0123456789abcdef"[(b >> 4) as usize]));
        out.push(char::from(b"0123456789abcdef"[(b & 15) as usize]));
    }
    s.serialize_str(&out)
}

#[derive(Debug, Clone, Default)]
pub struct Page {
    pub traces: Vec<StoredRecord>,
    /// Present when more traces may match.
    pub next: Option<Cursor>,
}

impl Query {
    /// True when `t` matches every value filter of the query (actor,
    /// patient, mailbox without ASCII case, action, action time; not class
    /// nor reception time), exactly as a search checks each record it reads.
    pub fn matches(&self, t: &StoredTrace) -> bool {
        if !self.occurred_in(t) {
            return false;
        }
        if self.actor.as_deref().is_some_and(|a| a != t.actor.id) {
            return false;
        }
        if self
            .patient
            .as_deref()
            .is_some_and(|p| Some(p) != t.patient_id())
        {
            return false;
        }
        if let Some(m) = &self.mailbox
            && t.mailbox().map(Query::normalise_mailbox) != Some(Query::normalise_mailbox(m))
        {
            return false;
        }
        if self.action.as_ref().is_some_and(|a| *a != t.action) {
            return false;
        }
        true
    }

    /// True when the query has no action-time bound or `t`'s action time is
    /// within it.
    pub fn occurred_in(&self, t: &StoredTrace) -> bool {
        if self.occurred_since.is_none() && self.occurred_until.is_none() {
            return true;
        }
        let Some(at) = occurred_micros(&t.occurred_at) else {
            return false;
        };
        self.occurred_since.is_none_or(|s| at >= s) && self.occurred_until.is_none_or(|u| at < u)
    }

    /// Normalises a mailbox the way the index does (ASCII lowercase).
    pub fn normalise_mailbox(m: &str) -> String {
        m.to_ascii_lowercase()
    }
}

/// The instant an `occurred_at` names, in microseconds since the Unix epoch.
pub fn occurred_micros(occurred_at: &str) -> Option<i64> {
    registre_model::parse_occurred_at(occurred_at).map(|t| t.as_microsecond())
}
