//! Encryption at rest (DESIGN §6).
//!
//! - Every record is sealed with AES-256-GCM under the **data key** of its
//!   segment; the nonce is 96 random bits stored in front of the record (a
//!   crash that rewrites an index never reuses a nonce), the log name and the
//!   record's index are the associated data (a record moved to another place
//!   does not open).
//! - Index keys are `HMAC-SHA-256(index key of the segment, domain ‖ value)`
//!   truncated to 64 bits (**blind indexes**): the in-memory indexes hold no
//!   actor id, mailbox or patient id.
//! - A segment's data key and index key (64 bytes) are **wrapped** with
//!   AES-256-GCM under the **master key** in a 108-byte key file
//!   `<data>/keys/data/<log>/<segment>.key`. Destroying that file shreds the
//!   segment: a copy of it, anywhere, no longer opens.
//! - The master key is `<data>/keys/master.key` (64 hex digits, 0600,
//!   generated at init) or a file given by the operator; `<data>/keys/master.id`
//!   holds its id so a wrong key is refused before anything is touched.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use hmac::{KeyInit, Mac};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use sha2::Digest;
use zeroize::Zeroizing;

/// Bytes a sealed record adds to its plaintext: nonce and tag.
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

const KEY_FILE_MAGIC: &[u8; 8] = b"RGKEY\0\0\x01";
/// magic (8) ‖ master key id (8) ‖ nonce (12) ‖ sealed 64 bytes (64 + 16).
pub const KEY_FILE_LEN: usize = 8 + 8 + NONCE_LEN + 64 + TAG_LEN;

/// Key problems, each with what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a master key: {reason}")]
    MalformedMaster { path: PathBuf, reason: &'static str },
    #[error(
        "the master key {path} (id {found}) is not the key of this data directory (id {expected}, \
         recorded in keys/master.id); give the right key with --master-key-file or \
         REGISTRE_MASTER_KEY_FILE. Nothing was touched."
    )]
    WrongMaster {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error(
        "the master key {path} is missing but this data directory holds sealed traces (keys/master.id \
         names key {expected}); restore the key from its backup or give it with --master-key-file. \
         Nothing was touched."
    )]
    MissingMaster { path: PathBuf, expected: String },
    #[error(
        "a master key rotation was interrupted ({0} exists); run `registre keys rotate-master` \
         again to finish it"
    )]
    RotationInterrupted(PathBuf),
    #[error("the key file {path} is malformed: {reason}")]
    MalformedKeyFile { path: PathBuf, reason: &'static str },
    #[error(
        "the key file {path} is wrapped by master key {found}, not by {expected}: a master key \
         rotation was interrupted; run `registre keys rotate-master` again with the same keys"
    )]
    OtherMaster {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error(
        "the key file {0} does not open with the master key (damaged, or not from this journal)"
    )]
    Unwrap(PathBuf),
    #[error("no randomness available: {0}")]
    Random(String),
}

/// Fills `buf` from the operating system's CSPRNG.
pub fn random(buf: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::fill(buf).map_err(|e| CryptoError::Random(e.to_string()))
}

/// The key that wraps every data key.
pub struct MasterKey {
    key: LessSafeKey,
    id: [u8; 8],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.id())
    }
}

impl MasterKey {
    fn from_bytes(bytes: &[u8; 32]) -> MasterKey {
        let mut h = sha2::Sha256::new();
        h.update(b"registre master key id v1\0");
        h.update(bytes);
        let digest = h.finalize();
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        // 32 bytes is always a valid AES-256 key.
        let key = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, bytes).unwrap_or_else(|_| unreachable!("32-byte key")),
        );
        MasterKey { key, id }
    }

    /// A new random key and its file text.
    pub fn generate() -> Result<(MasterKey, Zeroizing<String>), CryptoError> {
        let mut b = Zeroizing::new([0u8; 32]);
        random(&mut b[..])?;
        let text = Zeroizing::new(format!("{}\n", hex(&b[..])));
        Ok((MasterKey::from_bytes(&b), text))
    }

    /// Parses a key file: 64 hex digits (lines starting with `#` and
    /// whitespace ignored), or exactly 32 raw bytes.
    pub fn parse(path: &Path, raw: &[u8]) -> Result<MasterKey, CryptoError> {
        let bad = |reason| CryptoError::MalformedMaster {
            path: path.to_owned(),
            reason,
        };
        let mut b = Zeroizing::new([0u8; 32]);
        if raw.len() == 32 && std::str::from_utf8(raw).is_err() {
            b.copy_from_slice(raw);
            return Ok(MasterKey::from_bytes(&b));
        }
        let text = std::str::from_utf8(raw).map_err(|_| bad("neither 32 raw bytes nor text"))?;
        let digits: Zeroizing<String> = Zeroizing::new(
            text.lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .flat_map(|l| l.chars())
                .filter(|c| !c.is_whitespace())
                .collect(),
        );
        if digits.len() != 64 {
            return Err(bad("expected 64 hexadecimal digits (a 256-bit key)"));
        }
        for (i, pair) in digits.as_bytes().chunks(2).enumerate() {
            let hi = (pair[0] as char)
                .to_digit(16)
                .ok_or(bad("not hexadecimal"))?;
            let lo = (pair[1] as char)
                .to_digit(16)
                .ok_or(bad("not hexadecimal"))?;
            b[i] = (hi * 16 + lo) as u8;
        }
        Ok(MasterKey::from_bytes(&b))
    }

    /// Reads and parses a key file.
    pub fn read(path: &Path) -> Result<MasterKey, CryptoError> {
        let raw = Zeroizing::new(std::fs::read(path).map_err(|source| CryptoError::Io {
            path: path.to_owned(),
            source,
        })?);
        MasterKey::parse(path, &raw)
    }

    /// 16 hex digits naming this key (a hash, not the key).
    pub fn id(&self) -> String {
        hex(&self.id)
    }

    /// Seals 64 bytes of segment keys for the key file named `label`.
    pub fn wrap(&self, label: &str, keys: &[u8; 64]) -> Result<[u8; KEY_FILE_LEN], CryptoError> {
        let mut out = [0u8; KEY_FILE_LEN];
        out[..8].copy_from_slice(KEY_FILE_MAGIC);
        out[8..16].copy_from_slice(&self.id);
        let mut nonce = [0u8; NONCE_LEN];
        random(&mut nonce)?;
        out[16..28].copy_from_slice(&nonce);
        out[28..92].copy_from_slice(keys);
        let aad = wrap_aad(&self.id, label);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad[..]),
                &mut out[28..92],
            )
            .map_err(|_| CryptoError::Random("sealing failed".into()))?;
        out[92..].copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Opens a key file's bytes.
    pub fn unwrap(
        &self,
        path: &Path,
        label: &str,
        file: &[u8],
    ) -> Result<Zeroizing<[u8; 64]>, CryptoError> {
        let id = key_file_master(path, file)?;
        if id != self.id {
            return Err(CryptoError::OtherMaster {
                path: path.to_owned(),
                expected: self.id(),
                found: hex(&id),
            });
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&file[16..28]);
        let mut buf = Zeroizing::new([0u8; 64 + TAG_LEN]);
        buf.copy_from_slice(&file[28..]);
        let aad = wrap_aad(&self.id, label);
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad[..]),
                &mut buf[..],
            )
            .map_err(|_| CryptoError::Unwrap(path.to_owned()))?;
        let mut out = Zeroizing::new([0u8; 64]);
        out.copy_from_slice(plain);
        Ok(out)
    }
}

const BLOB_MAGIC: &[u8; 8] = b"RGBLB\0\0\x01";

impl MasterKey {
    /// Seals a small file (`magic ‖ master id ‖ nonce ‖ ciphertext ‖ tag`).
    pub fn seal_blob(&self, label: &str, plain: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut out = Vec::with_capacity(28 + plain.len() + TAG_LEN);
        out.extend_from_slice(BLOB_MAGIC);
        out.extend_from_slice(&self.id);
        let mut nonce = [0u8; NONCE_LEN];
        random(&mut nonce)?;
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let aad = wrap_aad(&self.id, label);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad[..]),
                &mut out[28..],
            )
            .map_err(|_| CryptoError::Random("sealing failed".into()))?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Opens what [`MasterKey::seal_blob`] sealed.
    pub fn open_blob(
        &self,
        path: &Path,
        label: &str,
        blob: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let id = blob_master(path, blob)?;
        if id != self.id {
            return Err(CryptoError::OtherMaster {
                path: path.to_owned(),
                expected: self.id(),
                found: hex(&id),
            });
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&blob[16..28]);
        let mut buf = Zeroizing::new(blob[28..].to_vec());
        let aad = wrap_aad(&self.id, label);
        let n = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad[..]),
                &mut buf[..],
            )
            .map_err(|_| CryptoError::Unwrap(path.to_owned()))?
            .len();
        buf.truncate(n);
        Ok(buf)
    }
}

fn blob_master(path: &Path, blob: &[u8]) -> Result<[u8; 8], CryptoError> {
    if blob.len() < 28 + TAG_LEN || &blob[..8] != BLOB_MAGIC {
        return Err(CryptoError::MalformedKeyFile {
            path: path.to_owned(),
            reason: "not a sealed registre file",
        });
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&blob[8..16]);
    Ok(id)
}

impl MasterKey {
    /// Opens the key file `raw` of log `log` found at `path` (a segment's,
    /// a hold segment's or the purge history's).
    pub fn segment_keys(
        &self,
        log: &str,
        path: &Path,
        raw: &[u8],
    ) -> Result<SegmentKeys, CryptoError> {
        let bytes = self.unwrap(path, &key_label(log, path), raw)?;
        Ok(SegmentKeys::from_bytes(&bytes))
    }
}

/// The id of the master key that wrapped a key file.
pub fn key_file_master(path: &Path, file: &[u8]) -> Result<[u8; 8], CryptoError> {
    if file.len() != KEY_FILE_LEN {
        return Err(CryptoError::MalformedKeyFile {
            path: path.to_owned(),
            reason: "wrong length",
        });
    }
    if &file[..8] != KEY_FILE_MAGIC {
        return Err(CryptoError::MalformedKeyFile {
            path: path.to_owned(),
            reason: "bad magic (destroyed or not a registre key file)",
        });
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&file[8..16]);
    Ok(id)
}

fn wrap_aad(id: &[u8; 8], label: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(40 + label.len());
    aad.extend_from_slice(b"registre key wrap v1\0");
    aad.extend_from_slice(id);
    aad.extend_from_slice(label.as_bytes());
    aad
}

/// A segment's two keys.
pub struct SegmentKeys {
    aead: LessSafeKey,
    /// HMAC-SHA-256 keyed with the index key, its key blocks already
    /// absorbed: each value costs two compressions.
    index: hmac::Hmac<sha2::Sha256>,
}

/// Domains of blind index values (one HMAC input byte each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Blind {
    Actor = 1,
    Mailbox = 2,
    Patient = 3,
}

impl SegmentKeys {
    pub fn from_bytes(b: &[u8; 64]) -> SegmentKeys {
        SegmentKeys {
            aead: LessSafeKey::new(
                UnboundKey::new(&AES_256_GCM, &b[..32])
                    .unwrap_or_else(|_| unreachable!("32-byte key")),
            ),
            index: <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&b[32..])
                .unwrap_or_else(|_| unreachable!("HMAC takes any key length")),
        }
    }

    /// Fresh random keys, and their bytes for wrapping.
    pub fn generate() -> Result<(SegmentKeys, Zeroizing<[u8; 64]>), CryptoError> {
        let mut b = Zeroizing::new([0u8; 64]);
        random(&mut b[..])?;
        Ok((SegmentKeys::from_bytes(&b), b))
    }

    /// Seals `plain` in place (nonce given by the caller, random) and
    /// returns the tag.
    pub fn seal(
        &self,
        log: &str,
        index: u64,
        nonce: [u8; NONCE_LEN],
        plain: &mut [u8],
    ) -> [u8; 16] {
        let aad = record_aad(log, index);
        let mut out = [0u8; TAG_LEN];
        // Sealing fails only past 64 GiB of input.
        if let Ok(tag) = self.aead.seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&aad[..]),
            plain,
        ) {
            out.copy_from_slice(tag.as_ref());
        }
        out
    }

    /// Opens a sealed record (`nonce ‖ ciphertext ‖ tag`) in place; returns
    /// the plaintext.
    pub fn open<'a>(&self, log: &str, index: u64, record: &'a mut [u8]) -> Option<&'a mut [u8]> {
        if record.len() < SEAL_OVERHEAD {
            return None;
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&record[..NONCE_LEN]);
        let aad = record_aad(log, index);
        self.aead
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad[..]),
                &mut record[NONCE_LEN..],
            )
            .ok()
    }

    /// A 128-bit authentication tag of `data` under the index key (the
    /// purge history's records).
    pub fn mac(&self, data: &[u8]) -> [u8; 16] {
        let mut ctx = self.index.clone();
        ctx.update(b"registre mac v1\0");
        ctx.update(data);
        let tag = ctx.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&tag[..16]);
        out
    }

    /// The blind index value of `value` in this segment.
    pub fn blind(&self, domain: Blind, value: &[u8]) -> u64 {
        let mut ctx = self.index.clone();
        ctx.update(&[domain as u8]);
        ctx.update(value);
        let tag = ctx.finalize().into_bytes();
        let mut b = [0u8; 8];
        b.copy_from_slice(&tag[..8]);
        u64::from_le_bytes(b)
    }
}

fn record_aad(log: &str, index: u64) -> [u8; 64] {
    // "registre record v1\0" (19) ‖ log (≤ 32, zero padded) ‖ index (8).
    let mut aad = [0u8; 64];
    aad[..19].copy_from_slice(b"registre record v1\0");
    let n = log.len().min(32);
    aad[19..19 + n].copy_from_slice(&log.as_bytes()[..n]);
    aad[51..59].copy_from_slice(&index.to_le_bytes());
    aad
}

pub fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// Where a data directory keeps its master key by default.
pub fn default_master_path(data: &Path) -> PathBuf {
    data.join("keys").join("master.key")
}

fn master_id_path(data: &Path) -> PathBuf {
    data.join("keys").join("master.id")
}

/// The directory of a log's data keys.
pub fn data_key_dir(data: &Path, log: &str) -> PathBuf {
    data.join("keys").join("data").join(log)
}

/// A data key file of the directory, if any.
fn any_key_file(data: &Path) -> Option<PathBuf> {
    let root = data.join("keys").join("data");
    std::fs::read_dir(root).ok()?.flatten().find_map(|d| {
        std::fs::read_dir(d.path())
            .ok()?
            .flatten()
            .map(|f| f.path())
            .find(|p| p.extension().is_some_and(|e| e == "key"))
    })
}

/// Loads the master key of `data` (from `file`, or the default path), and
/// checks it is the directory's key. With the default path and a new data
/// directory, generates it. Touches nothing when it refuses.
pub fn load_master(data: &Path, file: Option<&Path>) -> Result<MasterKey, CryptoError> {
    let next = data.join("keys").join("master.key.next");
    if next.exists() {
        return Err(CryptoError::RotationInterrupted(next));
    }
    let path = file.map_or_else(|| default_master_path(data), Path::to_path_buf);
    let expected = std::fs::read_to_string(master_id_path(data))
        .ok()
        .map(|s| s.trim().to_owned());
    let key = match std::fs::read(&path) {
        Ok(raw) => MasterKey::parse(&path, &Zeroizing::new(raw))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && file.is_none() => {
            if expected.is_some() || any_key_file(data).is_some() {
                return Err(CryptoError::MissingMaster {
                    path,
                    expected: expected.unwrap_or_else(|| "unknown".into()),
                });
            }
            let (key, text) = MasterKey::generate()?;
            write_secret(&path, text.as_bytes())?;
            key
        }
        Err(source) => return Err(CryptoError::Io { path, source }),
    };
    match expected {
        Some(id) if id != key.id() => {
            return Err(CryptoError::WrongMaster {
                path,
                expected: id,
                found: key.id(),
            });
        }
        Some(_) => {}
        None => {
            // No record of the directory's key (an older directory, or
            // master.id lost): the key must open an existing key file.
            if let Some(path) = any_key_file(data)
                && let Ok(raw) = std::fs::read(&path)
            {
                let log = path
                    .parent()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                key.unwrap(&path, &key_label(&log, &path), &raw)
                    .map_err(|_| CryptoError::WrongMaster {
                        path: path.clone(),
                        expected: hex(&key_file_master(&path, &raw).unwrap_or_default()),
                        found: key.id(),
                    })?;
            }
            write_secret(&master_id_path(data), format!("{}\n", key.id()).as_bytes())?
        }
    }
    Ok(key)
}

/// Writes a 0600 file atomically (temporary file, fsync, rename, fsync of
/// the directory), creating its directory 0700.
pub fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), CryptoError> {
    let io = |source| CryptoError::Io {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(dir)
        .map_err(io)?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(())
}

/// What a master key rotation did.
#[derive(Debug, Clone, Default)]
pub struct Rotation {
    pub old_id: String,
    pub new_id: String,
    pub rewrapped: usize,
    pub already: usize,
}

/// Rewraps every data key of `data` from `old` to `new` (the traces are
/// untouched), then records `new` as the directory's key. Resumable: a key
/// file already wrapped by `new` is skipped. The caller holds the data
/// directory's lock.
pub fn rotate_master(
    data: &Path,
    old: &MasterKey,
    new: &MasterKey,
    mut progress: impl FnMut(usize, usize),
) -> Result<Rotation, CryptoError> {
    let mut files = Vec::new();
    let root = data.join("keys").join("data");
    for log in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(log.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let p = f.path();
            if p.extension().is_some_and(|e| e == "key") {
                files.push((log.file_name().to_string_lossy().into_owned(), p));
            }
        }
    }
    files.sort();
    let mut out = Rotation {
        old_id: old.id(),
        new_id: new.id(),
        ..Rotation::default()
    };
    let total = files.len();
    for (i, (log, path)) in files.iter().enumerate() {
        let raw = std::fs::read(path).map_err(|source| CryptoError::Io {
            path: path.clone(),
            source,
        })?;
        let label = key_label(log, path);
        if key_file_master(path, &raw)? == new.id {
            out.already += 1;
        } else {
            let keys = old.unwrap(path, &label, &raw)?;
            let wrapped = new.wrap(&label, &keys)?;
            write_secret(path, &wrapped)?;
            out.rewrapped += 1;
        }
        progress(i + 1, total);
    }
    // Other files sealed by the master key (the legal holds).
    let holds = data.join("holds.sealed");
    if let Ok(raw) = std::fs::read(&holds)
        && blob_master(&holds, &raw)? != new.id
    {
        let plain = old.open_blob(&holds, "registre holds v1", &raw)?;
        write_secret(&holds, &new.seal_blob("registre holds v1", &plain)?)?;
        out.rewrapped += 1;
    }
    write_secret(&master_id_path(data), format!("{}\n", new.id()).as_bytes())?;
    Ok(out)
}

/// The label a key file is wrapped under: `<log>/<file stem>`.
pub fn key_label(log: &str, path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{log}/{stem}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_round_trip_and_binding() {
        let (m, text) = MasterKey::generate().expect("key");
        let again = MasterKey::parse(Path::new("k"), text.as_bytes()).expect("parse");
        assert_eq!(m.id(), again.id());
        let keys = [7u8; 64];
        let w = m.wrap("mss/00000000000000000000", &keys).expect("wrap");
        let p = Path::new("x.key");
        assert_eq!(
            *m.unwrap(p, "mss/00000000000000000000", &w).expect("open"),
            keys
        );
        assert!(m.unwrap(p, "mss/00000000000000000001", &w).is_err());
        let (other, _) = MasterKey::generate().expect("key");
        assert!(matches!(
            other.unwrap(p, "mss/00000000000000000000", &w),
            Err(CryptoError::OtherMaster { .. })
        ));
        let mut bad = w;
        bad[50] ^= 1;
        assert!(matches!(
            m.unwrap(p, "mss/00000000000000000000", &bad),
            Err(CryptoError::Unwrap(_))
        ));
    }

    #[test]
    fn records_seal_and_bind_to_their_place() {
        let (k, _) = SegmentKeys::generate().expect("keys");
        let plain = b"salt-and-json".to_vec();
        let mut rec = vec![9u8; NONCE_LEN];
        rec.extend_from_slice(&plain);
        let tag = k.seal("mss", 5, [9u8; NONCE_LEN], &mut rec[NONCE_LEN..]);
        rec.extend_from_slice(&tag);
        assert_ne!(&rec[NONCE_LEN..NONCE_LEN + plain.len()], &plain[..]);
        let mut moved = rec.clone();
        assert!(k.open("mss", 6, &mut moved).is_none());
        let mut other_log = rec.clone();
        assert!(k.open("technique", 5, &mut other_log).is_none());
        assert_eq!(k.open("mss", 5, &mut rec).map(|p| p.to_vec()), Some(plain));
    }

    #[test]
    fn blind_values_depend_on_key_and_domain() {
        let (a, _) = SegmentKeys::generate().expect("keys");
        let (b, _) = SegmentKeys::generate().expect("keys");
        assert_eq!(a.blind(Blind::Actor, b"x"), a.blind(Blind::Actor, b"x"));
        assert_ne!(a.blind(Blind::Actor, b"x"), b.blind(Blind::Actor, b"x"));
        assert_ne!(a.blind(Blind::Actor, b"x"), a.blind(Blind::Patient, b"x"));
    }

    #[test]
    fn master_key_text_forms() {
        let p = Path::new("m");
        let hex64 = "00".repeat(32);
        assert!(MasterKey::parse(p, format!("# comment\n{hex64}\n").as_bytes()).is_ok());
        assert!(MasterKey::parse(p, b"too short").is_err());
        assert!(MasterKey::parse(p, "zz".repeat(32).as_bytes()).is_err());
    }
}
