//! Per-class retention: defaults from the configuration, overridden by
//! changes made at run time (`registre policy set`, `PUT /v1/policy/{class}`),
//! which are kept in `<data>/policy.json` (0600, written atomically) and
//! survive restarts. Retention counts from `received_at`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use registre_model::{ClassName, Retention};
use serde::{Deserialize, Serialize};

/// One class as the policy describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClassPolicy {
    pub class: ClassName,
    pub retention: Retention,
    pub description: String,
    /// Set when the retention leaves the recommended range.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// `config`, or who changed it and when.
    pub source: String,
}

/// A change, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyChange {
    pub class: String,
    pub retention: Retention,
    pub previous: Retention,
    pub by: String,
    /// RFC 3339 UTC.
    pub at: String,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    #[error("unknown class `{0}`")]
    UnknownClass(String),
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is malformed: {reason}")]
    Malformed { path: PathBuf, reason: String },
}

#[derive(Default, Serialize, Deserialize)]
struct PolicyFile {
    version: u32,
    /// Every change ever made, oldest first; the latest per class wins.
    changes: Vec<PolicyChange>,
}

/// The effective policy.
pub struct Policy {
    /// Held across prepare → trace → apply, so concurrent changes of a
    /// class record the old value that was really in force.
    change_lock: tokio::sync::Mutex<()>,
    path: Option<PathBuf>,
    classes: RwLock<Vec<ClassPolicy>>,
    changes: RwLock<Vec<PolicyChange>>,
}

impl Policy {
    /// `defaults` are the configured classes; `data` holds `policy.json`
    /// (`None`: in memory only).
    pub fn load(defaults: Vec<ClassPolicy>, data: Option<&Path>) -> Result<Policy, PolicyError> {
        let path = data.map(|d| d.join("policy.json"));
        let mut file = PolicyFile::default();
        if let Some(p) = &path {
            match std::fs::read(p) {
                Ok(raw) => {
                    file = serde_json::from_slice(&raw).map_err(|e| PolicyError::Malformed {
                        path: p.clone(),
                        reason: e.to_string(),
                    })?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(PolicyError::Io {
                        path: p.clone(),
                        source,
                    });
                }
            }
        }
        let mut classes = defaults;
        for ch in &file.changes {
            if let Some(c) = classes.iter_mut().find(|c| c.class.as_str() == ch.class) {
                c.retention = ch.retention;
                c.warning = recommended_warning(c.class.as_str(), ch.retention);
                c.source = format!("set by {} at {}", ch.by, ch.at);
            }
        }
        Ok(Policy {
            change_lock: tokio::sync::Mutex::new(()),
            path,
            classes: RwLock::new(classes),
            changes: RwLock::new(file.changes),
        })
    }

    /// Serialises policy changes (hold the guard from `prepare` to `apply`).
    pub async fn lock_changes(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.change_lock.lock().await
    }

    pub fn classes(&self) -> Vec<ClassPolicy> {
        self.classes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn get(&self, class: &str) -> Option<ClassPolicy> {
        self.classes()
            .into_iter()
            .find(|c| c.class.as_str() == class)
    }

    /// The change `set` would make (to trace it before applying it).
    pub fn prepare(
        &self,
        class: &str,
        retention: Retention,
        by: &str,
    ) -> Result<PolicyChange, PolicyError> {
        let current = self
            .get(class)
            .ok_or_else(|| PolicyError::UnknownClass(class.to_owned()))?;
        Ok(PolicyChange {
            class: class.to_owned(),
            retention,
            previous: current.retention,
            by: by.to_owned(),
            at: jiff::Timestamp::now().to_string(),
        })
    }

    /// Applies and persists a prepared change.
    pub fn apply(&self, change: PolicyChange) -> Result<ClassPolicy, PolicyError> {
        let mut classes = self.classes.write().unwrap_or_else(|p| p.into_inner());
        let c = classes
            .iter_mut()
            .find(|c| c.class.as_str() == change.class)
            .ok_or_else(|| PolicyError::UnknownClass(change.class.clone()))?;
        let mut changes = self.changes.write().unwrap_or_else(|p| p.into_inner());
        let mut next = changes.clone();
        next.push(change.clone());
        self.save(&next)?;
        *changes = next;
        c.retention = change.retention;
        c.warning = recommended_warning(c.class.as_str(), change.retention);
        c.source = format!("set by {} at {}", change.by, change.at);
        Ok(c.clone())
    }

    /// Every change ever made, oldest first.
    pub fn history(&self) -> Vec<PolicyChange> {
        self.changes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn save(&self, changes: &[PolicyChange]) -> Result<(), PolicyError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let io = |source| PolicyError::Io {
            path: path.clone(),
            source,
        };
        let body = serde_json::to_vec_pretty(&PolicyFile {
            version: 1,
            changes: changes.to_vec(),
        })
        .map_err(|e| PolicyError::Malformed {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let tmp = path.with_extension("json.tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(&body).and_then(|()| f.sync_all()).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        }
        Ok(())
    }
}

/// A warning when `retention` leaves the recommended range of a built-in
/// class (custom classes have none).
pub fn recommended_warning(class: &str, retention: Retention) -> Option<String> {
    let days = retention.approx_days();
    match class {
        ClassName::MSS if !(150.0..=200.0).contains(&days) => Some(
            "the MSSanté référentiel #2 §5 recommends 6 months for functional traces".to_owned(),
        ),
        ClassName::TECHNIQUE if !(180.0..=366.0).contains(&days) => Some(
            "CNIL délibération 2021-122 recommends 6 months to 1 year for technical traces"
                .to_owned(),
        ),
        ClassName::APPLICATIVE if days < 7300.0 => Some(
            "medical records are kept 20 years (CSP R.1112-7); applicative traces should be too"
                .to_owned(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Vec<ClassPolicy> {
        vec![ClassPolicy {
            class: ClassName::new("mss").expect("class"),
            retention: Retention::months(6),
            description: "mss".into(),
            warning: None,
            source: "config".into(),
        }]
    }

    #[test]
    fn changes_persist_and_warn() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Policy::load(defaults(), Some(dir.path())).expect("load");
        let ch = p
            .prepare("mss", Retention::years(2), "rssi")
            .expect("prepare");
        assert_eq!(ch.previous, Retention::months(6));
        let c = p.apply(ch).expect("apply");
        assert_eq!(c.retention, Retention::years(2));
        assert!(c.warning.is_some());
        let again = Policy::load(defaults(), Some(dir.path())).expect("reload");
        assert_eq!(
            again.get("mss").expect("mss").retention,
            Retention::years(2)
        );
        assert!(again.get("mss").expect("mss").source.contains("rssi"));
        assert_eq!(again.history().len(), 1);
        assert!(matches!(
            p.prepare("nope", Retention::years(1), "x"),
            Err(PolicyError::UnknownClass(_))
        ));
    }
}
