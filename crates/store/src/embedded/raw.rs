//! Raw access to a data directory, for `registre migrate`: read every
//! retained record of a stopped journal with its index, reception time,
//! salt and canonical bytes (so commitments stay byte-identical), its
//! integrity files, purge history, holds and keys; and write a new data
//! directory from such records, re-sealed under fresh data keys.
//!
//! Reading never writes: the directory's `LOCK` is taken (no server may run
//! on it) and files are only read. A journal a crash left unrecovered
//! (torn tail, missing commitments) is refused: open it once with
//! `registre serve` (which recovers it), stop it, and migrate again.
//!
//! Writing builds the whole directory under a staging directory beside the
//! target (`.<name>.migrating`), checks it with [`verify_data_dir`], syncs
//! it and renames it onto the target: an interruption leaves the staging
//! directory only (remove it and run again), never a half-written journal.
//!
//! [`verify_data_dir`]: super::verify::verify_data_dir

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use registre_log::merkle::{self, Hash};
use registre_log::note::{Signer, Verifier};
use registre_log::tiled::{TileKey, TiledTree};
use registre_model::ClassName;
use zeroize::Zeroizing;

use super::format::{FRAME_HEADER_LEN, FrameHeader, FrameWriter, HEADER_LEN, SegmentHeader};
use super::purged::{History, RECORD_LEN as PURGE_RECORD_LEN};
use super::tiles::{TILE_RECORD, TileFiles};
use super::tree::{SignedCheckpoint, scan_checkpoints};
use crate::Hold;
use crate::crypto::{MasterKey, NONCE_LEN, SegmentKeys, data_key_dir, key_label};

/// The legal holds' sealing label (`holds.sealed`, PostgreSQL's `meta`).
pub const HOLDS_LABEL: &str = "registre holds v1";

/// What went wrong reading or writing a journal's raw form.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RawError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("keys: {0}")]
    Key(String),
    #[error("{0} already exists and is not empty: migrate into a new (or empty) directory")]
    NotEmpty(PathBuf),
    #[error("{0}")]
    Open(#[from] crate::OpenError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RawError + '_ {
    move |source| RawError::Io {
        path: path.to_owned(),
        source,
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> RawError {
    RawError::Corrupt {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// One retained trace: where it sits and its plaintext (`salt ‖ JCS`).
pub struct RawRecord {
    pub index: u64,
    /// Reception time, µs since the epoch, UTC.
    pub received_at: i64,
    /// `salt (16) ‖ JCS(trace)`: exactly what the commitment hashes.
    pub plain: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for RawRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawRecord({}, {} bytes)", self.index, self.plain.len())
    }
}

impl RawRecord {
    pub fn salt(&self) -> &[u8] {
        &self.plain[..16.min(self.plain.len())]
    }
    pub fn jcs(&self) -> &[u8] {
        &self.plain[16.min(self.plain.len())..]
    }
    pub fn commitment(&self) -> Hash {
        super::log::commitment(&self.plain)
    }
}

/// A group of records sealed under one data key: a segment of the log (or
/// a partition), or a hold segment (or a hold generation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPart {
    /// Start of the reception period, µs.
    pub period_start: i64,
    pub first_index: u64,
    /// 0: a segment of the log; else the hold generation.
    pub hold_gen: u32,
    /// Where the source keeps it (file or table), to read it back.
    pub source: String,
}

/// A log: everything but the records (read part by part).
pub struct RawLog {
    pub name: ClassName,
    /// Traces ever appended (the next index).
    pub size: u64,
    /// Every commitment, by index (purged ones included).
    pub entries: Vec<Hash>,
    /// Full tiles as stored: (level, index, 256 × 32 bytes).
    pub tiles: Vec<(u8, u64, Vec<u8>)>,
    /// Every signed checkpoint, oldest first.
    pub checkpoints: Vec<SignedCheckpoint>,
    /// The authenticated purge history, 64-byte records as written.
    pub purges: Vec<[u8; PURGE_RECORD_LEN]>,
    /// The history key (64 bytes: data half unused, index half the MAC key).
    pub history_key: Zeroizing<[u8; 64]>,
    /// Hold parts first (by generation), then the log's, by first index.
    pub parts: Vec<RawPart>,
}

impl RawLog {
    /// Root of the tree of the first `size` commitments.
    pub fn root_at(&self, size: u64) -> Option<Hash> {
        root_of(&self.entries, size)
    }
    pub fn purge_history(&self) -> History {
        let raw: Vec<u8> = self.purges.iter().flatten().copied().collect();
        History::parse(&raw, None).0
    }
}

/// Root of the tree of the first `size` of `entries`.
pub fn root_of(entries: &[Hash], size: u64) -> Option<Hash> {
    if size > entries.len() as u64 {
        return None;
    }
    let mut t = TiledTree::new(0);
    for e in entries.iter().take(size as usize) {
        t.push(merkle::leaf_hash(e));
        t.take_completed();
    }
    Some(t.root())
}

/// The checkpoint signing key, as both backends keep it.
pub struct RawSigner {
    pub name: String,
    pub secret: Zeroizing<[u8; 32]>,
}

impl RawSigner {
    pub fn signer(&self) -> Result<Signer, RawError> {
        Signer::new(&self.name, &self.secret).map_err(|e| RawError::Key(e.to_string()))
    }
    pub fn verifier(&self) -> Result<Verifier, RawError> {
        Ok(self.signer()?.verifier())
    }
}

/// A journal: everything but the records.
pub struct RawJournal {
    pub master_id: String,
    pub signer: RawSigner,
    pub holds: Vec<Hold>,
    pub logs: Vec<RawLog>,
}

// ------------------------------------------------------------------ reading

/// A stopped data directory, opened read-only under its lock.
pub struct DirReader {
    dir: PathBuf,
    master: std::sync::Arc<MasterKey>,
    _lock: std::fs::File,
}

impl DirReader {
    /// Takes the directory's lock and checks the master key is its key.
    pub fn open(dir: &Path, master: std::sync::Arc<MasterKey>) -> Result<DirReader, RawError> {
        if !dir.join("logs").is_dir() {
            return Err(corrupt(dir, "not a registre data directory (no logs/)"));
        }
        let lock = super::lock_dir(dir)?;
        if dir.join("keys").join("master.key.next").exists() {
            return Err(RawError::Key(
                "a master key rotation was interrupted; run `registre keys rotate-master` again \
                 to finish it, then migrate"
                    .into(),
            ));
        }
        let id_path = dir.join("keys").join("master.id");
        match std::fs::read_to_string(&id_path) {
            Ok(id) if id.trim() != master.id() => {
                return Err(RawError::Key(format!(
                    "the master key (id {}) is not the key of {} (id {}); give the right key \
                     with --master-key-file",
                    master.id(),
                    dir.display(),
                    id.trim()
                )));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&id_path)(e)),
        }
        Ok(DirReader {
            dir: dir.to_owned(),
            master,
            _lock: lock,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads everything but the records.
    pub fn journal(&self) -> Result<RawJournal, RawError> {
        let signer = read_signer(&crate::keys::key_path(&self.dir))?;
        let holds = crate::hold::HoldBook::open(Some(&self.dir), self.master.clone())
            .map_err(|e| RawError::Key(e.to_string()))?
            .list();
        let logs_dir = self.dir.join("logs");
        let mut names: Vec<String> = std::fs::read_dir(&logs_dir)
            .map_err(io(&logs_dir))?
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut logs = Vec::new();
        for n in names {
            let name =
                ClassName::new(&n).map_err(|_| corrupt(&logs_dir.join(&n), "not a class name"))?;
            logs.push(self.log(name)?);
        }
        Ok(RawJournal {
            master_id: self.master.id(),
            signer,
            holds,
            logs,
        })
    }

    fn log(&self, name: ClassName) -> Result<RawLog, RawError> {
        let log = name.as_str();
        let dir = self.dir.join("logs").join(log);
        let key_dir = data_key_dir(&self.dir, log);
        // The purge history and its key.
        let hp = dir.join("purged");
        let history_raw = read_or_empty(&hp)?;
        let kp = key_dir.join("purged.key");
        let history_key = match std::fs::read(&kp) {
            Ok(raw) => self
                .master
                .unwrap(&kp, &key_label(log, &kp), &raw)
                .map_err(|e| RawError::Key(e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && history_raw.is_empty() => {
                // Never opened by a version with purge history: a new key.
                SegmentKeys::generate()
                    .map_err(|e| RawError::Key(e.to_string()))?
                    .1
            }
            Err(e) => return Err(io(&kp)(e)),
        };
        let hk = SegmentKeys::from_bytes(&history_key);
        let (history, forged) = History::parse(&history_raw, Some(&hk));
        if let Some(at) = forged.first() {
            return Err(corrupt(
                &hp,
                format!("purge record at byte {at} does not authenticate with the history key"),
            ));
        }
        let purges: Vec<[u8; PURGE_RECORD_LEN]> = history_raw
            .chunks_exact(PURGE_RECORD_LEN)
            .take(history.records.len())
            .map(|c| {
                let mut r = [0u8; PURGE_RECORD_LEN];
                r.copy_from_slice(c);
                r
            })
            .collect();
        let purged_upto = history.purged_upto();
        let live_holds = history.live_holds();

        // Segments: live hold segments, then the log's from purged_upto on.
        let mut holds = Vec::new();
        let mut regular = Vec::new();
        for e in std::fs::read_dir(&dir).map_err(io(&dir))?.flatten() {
            let f = e.file_name().to_string_lossy().into_owned();
            let Some(stem) = f.strip_suffix(".seg") else {
                continue;
            };
            if let Some(g) = stem
                .strip_prefix("hold-")
                .and_then(|g| g.parse::<u32>().ok())
            {
                if live_holds.contains(&g) {
                    holds.push((g, f));
                }
            } else if let Ok(first) = stem.parse::<u64>()
                && first >= purged_upto
            {
                regular.push((first, f));
            }
        }
        holds.sort();
        regular.sort();
        if holds.len() != live_holds.len() {
            return Err(corrupt(
                &dir,
                "a hold segment named by the purge history is missing",
            ));
        }
        let mut parts = Vec::new();
        let mut next = purged_upto;
        for (g, f) in holds {
            let h = self.header(&dir.join(&f))?;
            parts.push(RawPart {
                period_start: h.period_start,
                first_index: h.first_index,
                hold_gen: g,
                source: f,
            });
        }
        for (first, f) in regular {
            if first != next {
                return Err(corrupt(
                    &dir.join(&f),
                    format!("segment starts at {first}, expected {next}"),
                ));
            }
            let h = self.header(&dir.join(&f))?;
            let end = segment_end(&dir.join(&f), first)?;
            parts.push(RawPart {
                period_start: h.period_start,
                first_index: first,
                hold_gen: 0,
                source: f,
            });
            next = end;
        }
        let size = next;

        // Integrity files.
        let ep = dir.join("entries");
        let raw = read_or_empty(&ep)?;
        if raw.len() as u64 != size * 32 {
            return Err(corrupt(
                &ep,
                format!(
                    "{} commitments for {size} traces: the journal was not shut down cleanly; \
                     open it once with `registre serve` (it recovers), stop it, and migrate again",
                    raw.len() / 32
                ),
            ));
        }
        let entries: Vec<Hash> = registre_log::merkle::hashes(&raw);
        let files = TileFiles::open(&dir).map_err(|e| corrupt(&dir, format!("tiles: {e}")))?;
        let mut tiles = Vec::new();
        for level in 0..super::tiles::LEVELS {
            let tp = files.describe(level);
            let count = files
                .count(level)
                .map_err(|e| corrupt(&tp, e.to_string()))?;
            for n in 0..count {
                let key = TileKey { level, index: n };
                let t = match files.read(key) {
                    Ok(Some(Ok(t))) => t,
                    Ok(Some(Err(why))) => return Err(corrupt(&tp, why)),
                    Ok(None) => {
                        return Err(corrupt(
                            &tp,
                            format!("tile {n} of level {level} is missing"),
                        ));
                    }
                    Err(e) => return Err(corrupt(&tp, e.to_string())),
                };
                tiles.push((level, n, t.iter().flatten().copied().collect::<Vec<u8>>()));
            }
        }
        let cp = dir.join("checkpoints");
        let raw = read_or_empty(&cp)?;
        let scan = scan_checkpoints(&raw);
        if let Some(at) = scan.torn_at {
            return Err(corrupt(
                &cp,
                format!(
                    "torn checkpoint record at byte {at}: open the journal once with `registre serve` first"
                ),
            ));
        }
        let mut checkpoints = Vec::new();
        for (at, r) in scan.records {
            checkpoints.push(r.map_err(|why| corrupt(&cp, format!("byte {at}: {why}")))?);
        }
        Ok(RawLog {
            name,
            size,
            entries,
            tiles,
            checkpoints,
            purges,
            history_key,
            parts,
        })
    }

    fn header(&self, path: &Path) -> Result<SegmentHeader, RawError> {
        let mut f = std::fs::File::open(path).map_err(io(path))?;
        let mut h = [0u8; HEADER_LEN];
        std::io::Read::read_exact(&mut f, &mut h).map_err(io(path))?;
        SegmentHeader::decode(&h).map_err(|why| corrupt(path, why))
    }

    /// Every record of `part` of log `log`, in index order, opened.
    pub fn read_part(
        &self,
        log: &str,
        part: &RawPart,
        f: &mut dyn FnMut(RawRecord) -> Result<(), RawError>,
    ) -> Result<(), RawError> {
        self.read_segment(log, &part.source, f)
    }

    fn read_segment(
        &self,
        log: &str,
        file: &str,
        f: &mut dyn FnMut(RawRecord) -> Result<(), RawError>,
    ) -> Result<(), RawError> {
        let path = self.dir.join("logs").join(log).join(file);
        let stem = file.strip_suffix(".seg").unwrap_or(file);
        let kp = data_key_dir(&self.dir, log).join(format!("{stem}.key"));
        let raw_key = std::fs::read(&kp).map_err(io(&kp))?;
        let keys = self
            .master
            .segment_keys(log, &kp, &raw_key)
            .map_err(|e| RawError::Key(e.to_string()))?;
        let raw = std::fs::read(&path).map_err(io(&path))?;
        let header = SegmentHeader::decode(&raw).map_err(|why| corrupt(&path, why))?;
        if header.class != log {
            return Err(corrupt(&path, "segment of another log"));
        }
        let mut pos = HEADER_LEN;
        let mut next = header.first_index;
        while pos < raw.len() {
            let torn = || {
                corrupt(
                    &path,
                    format!(
                        "damaged or torn frame at byte {pos}: open the journal once with \
                         `registre serve` (it recovers a torn tail), stop it, and migrate again"
                    ),
                )
            };
            if raw.len() - pos < FRAME_HEADER_LEN {
                return Err(torn());
            }
            let mut h = [0u8; FRAME_HEADER_LEN];
            h.copy_from_slice(&raw[pos..pos + FRAME_HEADER_LEN]);
            let fh = FrameHeader::decode(&h).map_err(|_| torn())?;
            let body_start = pos + FRAME_HEADER_LEN;
            let body_end = body_start + fh.body_len as usize;
            if body_end > raw.len() || !fh.check(&h, &raw[body_start..body_end]) {
                return Err(torn());
            }
            if !header.hold && fh.first_index != next {
                return Err(corrupt(
                    &path,
                    format!(
                        "frame at byte {pos} starts at {}, expected {next}",
                        fh.first_index
                    ),
                ));
            }
            let body = &raw[body_start..body_end];
            let recs = fh.records(body).map_err(|why| corrupt(&path, why))?;
            for (i, (off, len)) in recs.into_iter().enumerate() {
                let index = fh.first_index + i as u64;
                let mut rec = Zeroizing::new(body[off..off + len as usize].to_vec());
                let plain = keys.open(log, index, &mut rec).ok_or_else(|| {
                    corrupt(
                        &path,
                        format!("record {index} does not open with its data key"),
                    )
                })?;
                let mut scratch = Zeroizing::new(Vec::new());
                let plain = super::codec::plaintext(plain, header.version, &mut scratch)
                    .map_err(|why| corrupt(&path, format!("record {index}: {why}")))?;
                let plain = Zeroizing::new(plain.to_vec());
                let decoded = super::log::decode_record(&plain)
                    .map_err(|why| corrupt(&path, format!("record {index}: {why}")))?;
                if decoded.trace.index != index || decoded.trace.log.as_str() != log {
                    return Err(corrupt(
                        &path,
                        format!("record {index} is not in its place"),
                    ));
                }
                f(RawRecord {
                    index,
                    received_at: fh.received_at,
                    plain,
                })?;
            }
            next = fh.first_index + u64::from(fh.count);
            pos = body_end;
        }
        Ok(())
    }
}

/// The index after the last record of a segment of the log (frame
/// headers and checksums only).
fn segment_end(path: &Path, first: u64) -> Result<u64, RawError> {
    let raw = std::fs::read(path).map_err(io(path))?;
    let mut pos = HEADER_LEN;
    let mut next = first;
    while pos < raw.len() {
        let torn = || {
            corrupt(
                path,
                format!(
                    "damaged or torn frame at byte {pos}: open the journal once with \
                     `registre serve` (it recovers a torn tail), stop it, and migrate again"
                ),
            )
        };
        if raw.len() - pos < FRAME_HEADER_LEN {
            return Err(torn());
        }
        let mut h = [0u8; FRAME_HEADER_LEN];
        h.copy_from_slice(&raw[pos..pos + FRAME_HEADER_LEN]);
        let fh = FrameHeader::decode(&h).map_err(|_| torn())?;
        let body_end = pos + FRAME_HEADER_LEN + fh.body_len as usize;
        if body_end > raw.len() || !fh.check(&h, &raw[pos + FRAME_HEADER_LEN..body_end]) {
            return Err(torn());
        }
        next = fh.first_index + u64::from(fh.count);
        pos = body_end;
    }
    Ok(next)
}

fn read_or_empty(path: &Path) -> Result<Vec<u8>, RawError> {
    match std::fs::read(path) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io(path)(e)),
    }
}

/// Reads `keys/checkpoint.key` (§12.3 of docs/format.md) with its secret.
fn read_signer(path: &Path) -> Result<RawSigner, RawError> {
    use base64::Engine;
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io(path))?);
    let bad = || corrupt(path, "malformed checkpoint key file");
    let mut lines = text.lines();
    if lines.next() != Some("registre checkpoint key v1") {
        return Err(bad());
    }
    let name = lines
        .next()
        .and_then(|l| l.strip_prefix("name "))
        .ok_or_else(bad)?
        .to_owned();
    let secret = Zeroizing::new(
        lines
            .next()
            .and_then(|l| l.strip_prefix("ed25519 "))
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .ok_or_else(bad)?,
    );
    let mut s = Zeroizing::new([0u8; 32]);
    if secret.len() != 32 {
        return Err(bad());
    }
    s.copy_from_slice(&secret);
    let out = RawSigner { name, secret: s };
    out.signer()?;
    Ok(out)
}

// ------------------------------------------------------------------ writing

/// Builds a new data directory from raw records (see the module docs).
pub struct DirWriter {
    target: PathBuf,
    staging: PathBuf,
    master: std::sync::Arc<MasterKey>,
    /// The segment being written per log: (log, stem, file bytes so far).
    current: Option<Building>,
    /// Compresses records (format 3).
    packer: super::codec::Packer,
}

struct Building {
    log: String,
    stem: String,
    hold: bool,
    keys: SegmentKeys,
    file: Vec<u8>,
    frame: FrameWriter,
    /// Reception time and first index of the open frame.
    open: Option<(i64, u64)>,
}

fn mkdir(p: &Path) -> Result<(), RawError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(p)
        .map_err(io(p))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), RawError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(io(path))
}

fn sync_dir(p: &Path) -> Result<(), RawError> {
    std::fs::File::open(p)
        .and_then(|d| d.sync_all())
        .map_err(io(p))
}

impl DirWriter {
    /// Refuses a non-empty `target`; creates the staging directory with the
    /// journal's master key id, signing key and holds.
    pub fn create(
        target: &Path,
        master: std::sync::Arc<MasterKey>,
        signer: &RawSigner,
        holds: &[Hold],
    ) -> Result<DirWriter, RawError> {
        match std::fs::read_dir(target) {
            Ok(mut d) => {
                if d.next().is_some() {
                    return Err(RawError::NotEmpty(target.to_owned()));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(target)(e)),
        }
        let name = target
            .file_name()
            .ok_or_else(|| corrupt(target, "not a directory name"))?
            .to_string_lossy()
            .into_owned();
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let staging = parent.join(format!(".{name}.migrating"));
        if staging.exists() {
            return Err(corrupt(
                &staging,
                "left by an interrupted migration: remove it and run again",
            ));
        }
        mkdir(&staging)?;
        let keys = staging.join("keys");
        mkdir(&keys)?;
        mkdir(&keys.join("data"))?;
        mkdir(&staging.join("logs"))?;
        write_file(
            &keys.join("master.id"),
            format!("{}\n", master.id()).as_bytes(),
        )?;
        {
            use base64::Engine;
            let text = Zeroizing::new(format!(
                "registre checkpoint key v1\nname {}\ned25519 {}\n",
                signer.name,
                base64::engine::general_purpose::STANDARD.encode(&signer.secret[..])
            ));
            write_file(&crate::keys::key_path(&staging), text.as_bytes())?;
        }
        if !holds.is_empty() {
            let plain = Zeroizing::new(
                serde_json::to_vec(holds).map_err(|e| RawError::Key(e.to_string()))?,
            );
            let sealed = master
                .seal_blob(HOLDS_LABEL, &plain)
                .map_err(|e| RawError::Key(e.to_string()))?;
            write_file(&staging.join("holds.sealed"), &sealed)?;
        }
        Ok(DirWriter {
            target: target.to_owned(),
            staging,
            master,
            current: None,
            packer: super::codec::Packer::new()
                .map_err(|e| RawError::Key(format!("cannot start the record compressor: {e}")))?,
        })
    }

    pub fn staging(&self) -> &Path {
        &self.staging
    }

    /// Starts log `log`: its directories, history key and purge history.
    pub fn begin_log(&mut self, log: &RawLog) -> Result<(), RawError> {
        let name = log.name.as_str();
        let dir = self.staging.join("logs").join(name);
        mkdir(&dir)?;
        let kd = data_key_dir(&self.staging, name);
        mkdir(&kd)?;
        let kp = kd.join("purged.key");
        let wrapped = self
            .master
            .wrap(&key_label(name, &kp), &log.history_key)
            .map_err(|e| RawError::Key(e.to_string()))?;
        write_file(&kp, &wrapped)?;
        let raw: Vec<u8> = log.purges.iter().flatten().copied().collect();
        write_file(&dir.join("purged"), &raw)?;
        Ok(())
    }

    /// Starts a segment for `part` (a fresh data key).
    pub fn begin_part(&mut self, log: &str, part: &RawPart) -> Result<(), RawError> {
        self.end_part()?;
        let stem = if part.hold_gen == 0 {
            format!("{:020}", part.first_index)
        } else {
            format!("hold-{:06}", part.hold_gen)
        };
        let (keys, bytes) = SegmentKeys::generate().map_err(|e| RawError::Key(e.to_string()))?;
        let kp = data_key_dir(&self.staging, log).join(format!("{stem}.key"));
        let wrapped = self
            .master
            .wrap(&format!("{log}/{stem}"), &bytes)
            .map_err(|e| RawError::Key(e.to_string()))?;
        write_file(&kp, &wrapped)?;
        let header = SegmentHeader {
            first_index: part.first_index,
            period_start: part.period_start,
            class: log.to_owned(),
            hold: part.hold_gen != 0,
            version: super::format::FORMAT,
        };
        self.current = Some(Building {
            log: log.to_owned(),
            stem,
            hold: part.hold_gen != 0,
            keys,
            file: header.encode().to_vec(),
            frame: FrameWriter::new(),
            open: None,
        });
        Ok(())
    }

    /// Appends a record to the current segment, re-sealed under its key.
    pub fn push(&mut self, rec: &RawRecord) -> Result<(), RawError> {
        let b = self
            .current
            .as_mut()
            .ok_or_else(|| RawError::Key("a record outside a segment".into()))?;
        // One frame per reception time (a hold segment: one per record),
        // split before 16 MiB.
        let new_frame = b.hold
            || b.open.is_none_or(|(t, _)| t != rec.received_at)
            || b.frame.body_len() + rec.plain.len() + 32 > super::format::MAX_FRAME_BODY - 65536;
        if new_frame {
            b.flush_frame();
            let synced = if b.hold { 0 } else { b.file.len() as u64 };
            b.frame.begin(rec.index, rec.received_at, synced);
            b.open = Some((rec.received_at, rec.index));
        }
        let mut nonce = [0u8; NONCE_LEN];
        crate::crypto::random(&mut nonce).map_err(|e| RawError::Key(e.to_string()))?;
        let start = b.frame.open_record();
        b.frame.buf.extend_from_slice(&nonce);
        let p = b.frame.buf.len();
        // Format 3: salt ‖ zstd(JCS).
        let salt_len = rec.plain.len().min(16);
        b.frame.buf.extend_from_slice(&rec.plain[..salt_len]);
        self.packer
            .pack(&rec.plain[salt_len..], &mut b.frame.buf)
            .map_err(|e| RawError::Key(format!("cannot compress a record: {e}")))?;
        let tag = b.keys.seal(&b.log, rec.index, nonce, &mut b.frame.buf[p..]);
        b.frame.buf.extend_from_slice(&tag);
        b.frame.close_record(start);
        Ok(())
    }

    /// Writes the current segment's file.
    pub fn end_part(&mut self) -> Result<(), RawError> {
        let Some(mut b) = self.current.take() else {
            return Ok(());
        };
        b.flush_frame();
        let path = self
            .staging
            .join("logs")
            .join(&b.log)
            .join(format!("{}.seg", b.stem));
        write_file(&path, &b.file)
    }

    /// Ends log `log`: its integrity files, copied.
    pub fn end_log(&mut self, log: &RawLog) -> Result<(), RawError> {
        self.end_part()?;
        let dir = self.staging.join("logs").join(log.name.as_str());
        let entries: Vec<u8> = log.entries.iter().flatten().copied().collect();
        write_file(&dir.join("entries"), &entries)?;
        // Tiles, one file per level, each at its index.
        let mut per_level: Vec<Vec<u8>> = vec![Vec::new(); usize::from(super::tiles::LEVELS)];
        let mut tiles: Vec<&(u8, u64, Vec<u8>)> = log.tiles.iter().collect();
        tiles.sort_by_key(|(l, n, _)| (*l, *n));
        for (l, n, hashes) in tiles {
            let out = per_level
                .get_mut(usize::from(*l))
                .filter(|o| o.len() as u64 == n * TILE_RECORD as u64)
                .ok_or_else(|| corrupt(&dir, format!("tile {l}/{n} is out of place")))?;
            if hashes.len() != TILE_RECORD - 16 {
                return Err(corrupt(&dir, format!("tile {l}/{n} is not a full tile")));
            }
            let hashes: Vec<Hash> = registre_log::merkle::hashes(hashes);
            super::tiles::encode(
                out,
                TileKey {
                    level: *l,
                    index: *n,
                },
                &hashes,
            );
        }
        for (level, raw) in per_level.iter().enumerate() {
            if !raw.is_empty() {
                write_file(&dir.join(super::tiles::level_file(level as u8)), raw)?;
            }
        }
        let mut raw = Vec::new();
        for c in &log.checkpoints {
            raw.extend_from_slice(&(c.note.len() as u32).to_le_bytes());
            raw.extend_from_slice(&crc32c::crc32c(c.note.as_bytes()).to_le_bytes());
            raw.extend_from_slice(c.note.as_bytes());
        }
        write_file(&dir.join("checkpoints"), &raw)?;
        sync_dir(&dir)?;
        sync_dir(&data_key_dir(&self.staging, log.name.as_str()))?;
        Ok(())
    }

    /// Checks the staging directory as `registre verify --data` would, then
    /// renames it onto the target. On a failure the staging directory is
    /// left for inspection and the target untouched.
    pub fn finish(mut self, verifier: &Verifier) -> Result<super::verify::Report, RawError> {
        self.end_part()?;
        for d in [
            self.staging.join("keys").join("data"),
            self.staging.join("keys"),
            self.staging.join("logs"),
            self.staging.clone(),
        ] {
            sync_dir(&d)?;
        }
        let report = super::verify::verify_data_dir(
            &self.staging,
            std::slice::from_ref(verifier),
            Some(&self.master),
            &mut |_| {},
        )
        .map_err(io(&self.staging))?;
        if !report.ok() {
            let first = report
                .failures
                .first()
                .map(ToString::to_string)
                .unwrap_or_default();
            return Err(corrupt(
                &self.staging,
                format!("the migrated journal does not verify: {first}"),
            ));
        }
        if self.target.exists() {
            // Empty (checked at create): rename(2) replaces an empty directory.
            std::fs::remove_dir(&self.target).map_err(io(&self.target))?;
        }
        std::fs::rename(&self.staging, &self.target).map_err(io(&self.target))?;
        if let Some(p) = self.target.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(p)?;
        }
        Ok(report)
    }
}

impl Building {
    fn flush_frame(&mut self) {
        if self.open.take().is_some() {
            self.frame.finish();
            self.file.extend_from_slice(&self.frame.buf);
            self.frame.clear();
        }
    }
}
