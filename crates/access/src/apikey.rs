//! API keys: `rgk_<id>_<secret>`, shown once at creation, stored only as
//! SHA-256 of the secret in `<data>/keys/api-keys.json` (0600).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::{AuthError, AuthMethod, Principal, Role};

/// A stored key (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: String,
    /// Who holds it; the actor id of what it writes and reads.
    pub name: String,
    pub role: Role,
    /// May write traces for any actor (the mail proxy).
    #[serde(default)]
    pub trusted_proxy: bool,
    /// RFC 3339 UTC.
    pub created_at: String,
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub revoked_at: Option<String>,
    /// Hex SHA-256 of the secret part.
    pub secret_sha256: String,
}

/// What `create` returns: the stored key and the full key, to show once.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub key: ApiKey,
    pub secret: String,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiKeyError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is malformed: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("no API key with id `{0}`")]
    NotFound(String),
    #[error("a key name is 1 to 64 printable characters without spaces")]
    BadName,
    #[error("no randomness: {0}")]
    Random(String),
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct KeyFile {
    version: u32,
    keys: Vec<ApiKey>,
}

/// The key file, loaded in memory; every change is written through.
pub struct ApiKeyStore {
    /// `None`: in memory only (tests, benchmarks).
    path: Option<PathBuf>,
    keys: RwLock<Vec<ApiKey>>,
}

impl ApiKeyStore {
    pub fn path(data: &Path) -> PathBuf {
        data.join("keys").join("api-keys.json")
    }

    /// Opens (or starts empty) the key file of a data directory.
    pub fn open(data: &Path) -> Result<ApiKeyStore, ApiKeyError> {
        let path = Self::path(data);
        let keys = match std::fs::read(&path) {
            Ok(raw) => {
                let f: KeyFile =
                    serde_json::from_slice(&raw).map_err(|e| ApiKeyError::Malformed {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                f.keys
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(ApiKeyError::Io { path, source }),
        };
        Ok(ApiKeyStore {
            path: Some(path),
            keys: RwLock::new(keys),
        })
    }

    /// A store that lives in memory only.
    pub fn in_memory() -> ApiKeyStore {
        ApiKeyStore {
            path: None,
            keys: RwLock::new(Vec::new()),
        }
    }

    pub fn list(&self) -> Vec<ApiKey> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn is_empty(&self) -> bool {
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// Creates a key; the secret is returned once and never stored.
    pub fn create(
        &self,
        name: &str,
        role: Role,
        trusted_proxy: bool,
        expires_at: Option<jiff::Timestamp>,
    ) -> Result<NewApiKey, ApiKeyError> {
        if name.is_empty()
            || name.len() > 64
            || name.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ApiKeyError::BadName);
        }
        let mut raw = [0u8; 36];
        getrandom::fill(&mut raw).map_err(|e| ApiKeyError::Random(e.to_string()))?;
        let id: String = raw[..4].iter().map(|b| format!("{b:02x}")).collect();
        // Hex: no `_` inside, so `rgk_<id>_<secret>` splits one way only.
        let secret_part: String = raw[4..].iter().map(|b| format!("{b:02x}")).collect();
        let key = ApiKey {
            id: id.clone(),
            name: name.to_owned(),
            role,
            trusted_proxy,
            created_at: jiff::Timestamp::now().to_string(),
            expires_at: expires_at.map(|t| t.to_string()),
            revoked_at: None,
            secret_sha256: sha256_hex(secret_part.as_bytes()),
        };
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        let mut next = keys.clone();
        next.push(key.clone());
        self.save(&next)?;
        *keys = next;
        Ok(NewApiKey {
            key,
            secret: format!("rgk_{id}_{secret_part}"),
        })
    }

    /// Adopts an existing secret (the foundation's admin token) as a key.
    /// The bootstrap key is an admin *and* a trusted proxy: it can do
    /// everything, so that a first start works end to end; create narrower
    /// keys for production and revoke it.
    pub fn adopt(&self, name: &str, role: Role, secret: &str) -> Result<ApiKey, ApiKeyError> {
        let mut raw = [0u8; 4];
        getrandom::fill(&mut raw).map_err(|e| ApiKeyError::Random(e.to_string()))?;
        let key = ApiKey {
            id: raw.iter().map(|b| format!("{b:02x}")).collect(),
            name: name.to_owned(),
            role,
            trusted_proxy: true,
            created_at: jiff::Timestamp::now().to_string(),
            expires_at: None,
            revoked_at: None,
            secret_sha256: sha256_hex(secret.as_bytes()),
        };
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        keys.push(key.clone());
        self.save(&keys)?;
        Ok(key)
    }

    /// Deletes a key outright (undoing a creation that could not be traced).
    pub fn remove(&self, id: &str) -> Result<(), ApiKeyError> {
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        let before = keys.len();
        keys.retain(|k| k.id != id);
        if keys.len() == before {
            return Err(ApiKeyError::NotFound(id.to_owned()));
        }
        self.save(&keys)
    }

    /// Whether a key with this id exists.
    pub fn contains(&self, id: &str) -> bool {
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|k| k.id == id)
    }

    pub fn revoke(&self, id: &str) -> Result<ApiKey, ApiKeyError> {
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        let mut next = keys.clone();
        let k = next
            .iter_mut()
            .find(|k| k.id == id)
            .ok_or_else(|| ApiKeyError::NotFound(id.to_owned()))?;
        if k.revoked_at.is_none() {
            k.revoked_at = Some(jiff::Timestamp::now().to_string());
        }
        let out = k.clone();
        // Saved first: a revocation never lives in memory only.
        self.save(&next)?;
        *keys = next;
        Ok(out)
    }

    /// The principal of a bearer credential, if it is one of our keys.
    /// `Ok(None)` means "not an API key" (try other authenticators).
    pub fn authenticate(&self, bearer: &str) -> Result<Option<Principal>, AuthError> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let digest = sha256_hex(
            match bearer.strip_prefix("rgk_").and_then(|r| r.split_once('_')) {
                Some((_, secret)) => secret,
                // The adopted admin token is a bare secret.
                None => bearer,
            }
            .as_bytes(),
        );
        let by_id = bearer
            .strip_prefix("rgk_")
            .and_then(|r| r.split_once('_'))
            .map(|(id, _)| id);
        let found = keys.iter().find(|k| {
            by_id.is_none_or(|id| id == k.id) && constant_time_eq(&k.secret_sha256, &digest)
        });
        let Some(k) = found else {
            return if by_id.is_some() {
                Err(AuthError::UnknownKey)
            } else {
                Ok(None)
            };
        };
        if k.revoked_at.is_some() {
            return Err(AuthError::Revoked);
        }
        // An expiry that does not parse counts as expired: fail closed.
        if let Some(exp) = &k.expires_at
            && exp
                .parse::<jiff::Timestamp>()
                .map_or(true, |t| t <= jiff::Timestamp::now())
        {
            return Err(AuthError::Expired);
        }
        let roles = match k.role {
            Role::Admin => vec![Role::Admin, Role::Auditeur, Role::Producteur],
            r => vec![r],
        };
        Ok(Some(Principal {
            id: k.name.clone(),
            auth: "apikey".into(),
            roles,
            trusted_proxy: k.trusted_proxy,
            method: AuthMethod::ApiKey {
                key_id: k.id.clone(),
            },
        }))
    }

    fn save(&self, keys: &[ApiKey]) -> Result<(), ApiKeyError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let io = |source| ApiKeyError::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
        }
        let body = serde_json::to_vec_pretty(&KeyFile {
            version: 1,
            keys: keys.to_vec(),
        })
        .map_err(|e| ApiKeyError::Malformed {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        // Write a new file and rename it over the old: never a half file.
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

fn sha256_hex(b: &[u8]) -> String {
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_authenticate_revoke() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ApiKeyStore::open(dir.path()).expect("open");
        let k = store
            .create("dpi-server", Role::Producteur, false, None)
            .expect("create");
        let p = store
            .authenticate(&k.secret)
            .expect("valid")
            .expect("an API key");
        assert_eq!(p.id, "dpi-server");
        assert_eq!(p.roles, vec![Role::Producteur]);
        // Stored only as a hash.
        let raw = std::fs::read_to_string(ApiKeyStore::path(dir.path())).expect("file");
        assert!(!raw.contains(k.secret.rsplit('_').next().expect("secret")));
        // Reload from disk.
        let again = ApiKeyStore::open(dir.path()).expect("reopen");
        assert!(again.authenticate(&k.secret).expect("ok").is_some());
        again.revoke(&k.key.id).expect("revoke");
        assert_eq!(again.authenticate(&k.secret), Err(AuthError::Revoked));
        assert_eq!(
            again.authenticate("rgk_00000000_nope"),
            Err(AuthError::UnknownKey)
        );
        assert_eq!(again.authenticate("some.jwt.token"), Ok(None));
    }

    #[test]
    fn expiry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ApiKeyStore::open(dir.path()).expect("open");
        let past = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(60);
        let k = store
            .create("old", Role::Auditeur, false, Some(past))
            .expect("create");
        assert_eq!(store.authenticate(&k.secret), Err(AuthError::Expired));
    }
}
