//! The checkpoint signing key: generated at first open in `<data>/keys/`
//! (directory 0700, file 0600), loaded after.
//!
//! File `<data>/keys/checkpoint.key`, text:
//! ```text
//! registre checkpoint key v1
//! name <signed-note key name>
//! ed25519 <base64 of the 32-byte secret key>
//! ```

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use registre_log::note::Signer;

/// Key file problems.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("cannot read or write the key file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the key file {path} is malformed: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("no randomness available to generate a key: {0}")]
    Random(String),
}

pub fn key_path(data: &Path) -> PathBuf {
    data.join("keys").join("checkpoint.key")
}

/// Loads the signing key of `data`, creating it under `name` if absent.
pub fn load_or_create(data: &Path, name: &str) -> Result<Signer, KeyError> {
    let path = key_path(data);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(&path, name),
        Err(source) => Err(KeyError::Io { path, source }),
    }
}

/// Loads an existing key.
pub fn load(data: &Path) -> Result<Signer, KeyError> {
    let path = key_path(data);
    let text = std::fs::read_to_string(&path).map_err(|source| KeyError::Io {
        path: path.clone(),
        source,
    })?;
    parse(&path, &text)
}

/// A fresh key that lives in memory only (tests, fault-injection stores).
pub fn ephemeral(name: &str) -> Result<Signer, KeyError> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| KeyError::Random(e.to_string()))?;
    Signer::new(name, &secret).map_err(|e| KeyError::Malformed {
        path: PathBuf::from("<memory>"),
        reason: e.to_string(),
    })
}

fn create(path: &Path, name: &str) -> Result<Signer, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| KeyError::Random(e.to_string()))?;
    let signer = Signer::new(name, &secret).map_err(|e| KeyError::Malformed {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let text = format!(
        "registre checkpoint key v1\nname {name}\ned25519 {}\n",
        STANDARD.encode(secret)
    );
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io)?;
    tracing::info!(path = %path.display(), verifier = %signer.verifier_key(), "created the checkpoint signing key");
    Ok(signer)
}

fn parse(path: &Path, text: &str) -> Result<Signer, KeyError> {
    let bad = |reason: &str| KeyError::Malformed {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let mut lines = text.lines();
    if lines.next() != Some("registre checkpoint key v1") {
        return Err(bad("first line must be `registre checkpoint key v1`"));
    }
    let name = lines
        .next()
        .and_then(|l| l.strip_prefix("name "))
        .ok_or_else(|| bad("second line must be `name <key name>`"))?;
    let secret = lines
        .next()
        .and_then(|l| l.strip_prefix("ed25519 "))
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
        .ok_or_else(|| bad("third line must be `ed25519 <base64 of 32 bytes>`"))?;
    Signer::new(name, &secret).map_err(|e| bad(&e.to_string()))
}
