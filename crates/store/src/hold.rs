//! Legal holds: a query, a reason and who. A purge never destroys a trace an
//! active hold matches (DESIGN §3).
//!
//! The embedded store keeps them in `<data>/holds.sealed`, sealed with the
//! master key (a hold names actors or patients: never in clear on disk).

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use registre_model::{Action, ClassName, parse_occurred_at};
use serde::{Deserialize, Serialize};

use crate::Query;
use crate::crypto::{CryptoError, MasterKey};

/// Which traces a hold keeps: every filter given must match (as in a search).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Reception time bounds, RFC 3339 with an offset (since inclusive,
    /// until exclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

impl HoldFilter {
    /// The search query this filter is; `Err` names the bad field.
    pub fn to_query(&self) -> Result<Query, String> {
        let time = |name: &str, v: &Option<String>| -> Result<Option<i64>, String> {
            v.as_deref()
                .map(|s| {
                    parse_occurred_at(s)
                        .map(|t| t.as_microsecond())
                        .ok_or_else(|| {
                            format!("`{name}` must be an RFC 3339 date-time with an offset")
                        })
                })
                .transpose()
        };
        let nonempty = |name: &str, v: &Option<String>| -> Result<Option<String>, String> {
            match v {
                Some(s) if s.trim().is_empty() || s.len() > 256 => {
                    Err(format!("`{name}` must be 1 to 256 characters"))
                }
                other => Ok(other.clone()),
            }
        };
        Ok(Query {
            class: self
                .class
                .as_deref()
                .map(|c| ClassName::new(c).map_err(|e| format!("`class`: {e}")))
                .transpose()?,
            actor: nonempty("actor", &self.actor)?,
            patient: nonempty("patient", &self.patient)?,
            mailbox: nonempty("mailbox", &self.mailbox)?,
            action: self
                .action
                .as_deref()
                .map(|a| Action::parse(a).ok_or_else(|| format!("`action`: unknown action `{a}`")))
                .transpose()?,
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
            ..Query::default()
        })
    }
}

/// A legal hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub id: String,
    pub reason: String,
    pub filter: HoldFilter,
    pub created_by: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_at: Option<String>,
}

impl Hold {
    pub fn active(&self) -> bool {
        self.released_at.is_none()
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HoldError {
    #[error("no legal hold `{0}`")]
    Unknown(String),
    #[error("the legal hold `{0}` was already released")]
    Released(String),
    #[error("a legal hold `{0}` already exists")]
    Duplicate(String),
    #[error("invalid hold: {0}")]
    Invalid(String),
    #[error("the holds cannot be saved: {0}")]
    Storage(String),
}

/// The holds of an embedded store, sealed on disk.
pub struct HoldBook {
    /// `None`: in memory only.
    path: Option<PathBuf>,
    master: std::sync::Arc<MasterKey>,
    holds: RwLock<Vec<Hold>>,
    /// Serialises read-modify-write cycles.
    write: std::sync::Mutex<()>,
}

const LABEL: &str = "registre holds v1";

impl HoldBook {
    pub fn open(
        data: Option<&Path>,
        master: std::sync::Arc<MasterKey>,
    ) -> Result<HoldBook, CryptoError> {
        let Some(data) = data else {
            return Ok(HoldBook {
                path: None,
                master,
                holds: RwLock::new(Vec::new()),
                write: std::sync::Mutex::new(()),
            });
        };
        let path = data.join("holds.sealed");
        let holds = match std::fs::read(&path) {
            Ok(raw) => {
                let plain = master.open_blob(&path, LABEL, &raw)?;
                serde_json::from_slice(&plain).map_err(|_| CryptoError::MalformedKeyFile {
                    path: path.clone(),
                    reason: "the holds do not decode",
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(CryptoError::Io { path, source }),
        };
        Ok(HoldBook {
            path: Some(path),
            master,
            holds: RwLock::new(holds),
            write: std::sync::Mutex::new(()),
        })
    }

    pub fn list(&self) -> Vec<Hold> {
        self.holds.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The queries of the active holds.
    pub fn active_queries(&self) -> Vec<Query> {
        self.list()
            .iter()
            .filter(|h| h.active())
            .filter_map(|h| h.filter.to_query().ok())
            .collect()
    }

    pub fn add(&self, hold: Hold) -> Result<Hold, HoldError> {
        hold.filter.to_query().map_err(HoldError::Invalid)?;
        if hold.reason.trim().is_empty() {
            return Err(HoldError::Invalid("a hold needs a reason".into()));
        }
        let _w = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = self.list();
        if next.iter().any(|h| h.id == hold.id) {
            return Err(HoldError::Duplicate(hold.id));
        }
        next.push(hold.clone());
        self.save(next)?;
        Ok(hold)
    }

    pub fn release(&self, id: &str, by: &str, at: &str) -> Result<Hold, HoldError> {
        let _w = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = self.list();
        let h = next
            .iter_mut()
            .find(|h| h.id == id)
            .ok_or_else(|| HoldError::Unknown(id.to_owned()))?;
        if !h.active() {
            return Err(HoldError::Released(id.to_owned()));
        }
        h.released_by = Some(by.to_owned());
        h.released_at = Some(at.to_owned());
        let out = h.clone();
        self.save(next)?;
        Ok(out)
    }

    fn save(&self, next: Vec<Hold>) -> Result<(), HoldError> {
        let Some(path) = &self.path else {
            *self.holds.write().unwrap_or_else(|p| p.into_inner()) = next;
            return Ok(());
        };
        let plain = zeroize::Zeroizing::new(
            serde_json::to_vec(&next).map_err(|e| HoldError::Storage(e.to_string()))?,
        );
        let sealed = self
            .master
            .seal_blob(LABEL, &plain)
            .map_err(|e| HoldError::Storage(e.to_string()))?;
        crate::crypto::write_secret(path, &sealed)
            .map_err(|e| HoldError::Storage(e.to_string()))?;
        *self.holds.write().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(())
    }
}
