//! `registre migrate`: a journal moved between a data directory and
//! PostgreSQL (either way), keeping everything that makes it evidence.
//!
//! What is kept, per log:
//! - **indexes**: every retained trace at its index; purged ranges stay
//!   purged, and the **authenticated purge history** is copied record for
//!   record with its **history key** (the MACs still verify on the target);
//! - **records**: each trace's salt and canonical (JCS) bytes, byte for
//!   byte, so every **commitment**, hence the Merkle tree, is identical; the
//!   commitments (`entries`), full **tiles** and every **signed checkpoint**
//!   are copied as they are; the target's root at the source's size is
//!   checked to be the source's, and every checkpoint against it;
//! - **held traces**: each hold generation stays one generation;
//! - **keys**: the same **master key** on both sides (its id is recorded in
//!   the target); the **checkpoint signing key** is copied (sealed with the
//!   master key in PostgreSQL, in `keys/checkpoint.key` in a data
//!   directory, each backend's own form), so old and new checkpoints verify
//!   under one verifier key; the **legal holds** are re-sealed with the
//!   master key.
//!
//! Re-generated: the **data keys**. Records are re-sealed (fresh nonce)
//! under a fresh data key per target partition (PostgreSQL: one per
//! (class, period); segments of one period become one partition) or per
//! segment (data directory: one per partition), and each hold generation
//! under a fresh key of the same label. Blind index values are recomputed
//! under the new index keys (PostgreSQL columns; a data directory rebuilds
//! them at open). Records are only ever in clear in this process's memory
//! (zeroized buffers): nothing personal reaches a disk or a column
//! unsealed.
//!
//! Not moved: `admin-token`, `keys/api-keys.json` and `policy.json` of a
//! data directory (configuration, not the journal; PostgreSQL nodes take
//! theirs from `registre.toml`), and the master key itself (kept where the
//! operator keeps it: pass the same file to the target).
//!
//! The source is never written: a data directory is read under its lock
//! (no server may run on it), PostgreSQL in one `REPEATABLE READ READ ONLY`
//! transaction (a consistent snapshot; nodes may keep running, but what
//! they append after the snapshot is not moved: stop them first).
//!
//! The target must be empty, and is written all or nothing:
//! - PostgreSQL: **one transaction** (schema creation included). An
//!   interruption (crash, connection lost, Ctrl-C) rolls everything back:
//!   the schema is as before, run the command again. A schema that already
//!   holds tables is refused: `DROP SCHEMA <s> CASCADE` (or choose another
//!   `--schema`) first.
//! - Data directory: built under `.<name>.migrating` beside it, checked as
//!   `registre verify --data` would, synced, then renamed onto the target.
//!   An interruption leaves only the staging directory: remove it and run
//!   again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use registre_log::checkpoint::open_checkpoint;
use registre_log::merkle::{self, Hash, MemoryTree};
use registre_model::ClassName;
use registre_store::Hold;
use registre_store::SignedCheckpoint;
use registre_store::at_rest::{self, PURGE_RECORD_LEN};
use registre_store::crypto::{self, MasterKey, NONCE_LEN, SegmentKeys};
use registre_store::raw::{
    DirReader, DirWriter, RawError, RawJournal, RawLog, RawPart, RawRecord, RawSigner,
};
use tokio_postgres::Transaction;
use zeroize::Zeroizing;

use crate::pool::{Conn, Pool};
use crate::schema::{self, SETUP_LOCK};
use crate::store::{
    HOLDS_LABEL, SIGNER_LABEL, blinds, hold_label, lock_ns, partition_label, unwrap_keys,
};
use crate::{PgError, PgOpenError};

/// Rows per INSERT.
const CHUNK: usize = 2000;

/// One side of a migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// An embedded data directory.
    Dir(PathBuf),
    /// A PostgreSQL database (URL, as for `PgOptions::url`) and schema.
    Pg { url: String, schema: String },
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Dir(d) => write!(f, "{}", d.display()),
            Endpoint::Pg { url, schema } => {
                // Never a password in messages.
                let shown = match url.split_once('@') {
                    Some((head, tail)) => match head.split_once("://") {
                        Some((scheme, _)) => format!("{scheme}://…@{tail}"),
                        None => tail.to_owned(),
                    },
                    None => url.clone(),
                };
                write!(f, "{shown} (schema {schema})")
            }
        }
    }
}

/// Why a migration stopped (the target is left as it was).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    #[error(transparent)]
    Raw(#[from] RawError),
    #[error("PostgreSQL: {0}")]
    Pg(#[from] PgError),
    #[error("{0}")]
    Open(#[from] PgOpenError),
    #[error(
        "the target schema `{0}` already holds tables: migrate into an empty schema \
         (`DROP SCHEMA {0} CASCADE`, or choose another --schema). Nothing was written."
    )]
    NotEmpty(String),
    #[error("the source does not verify, nothing was migrated: {0}")]
    Source(String),
    #[error("the target does not match the source, nothing was kept: {0}")]
    Mismatch(String),
    #[error("{0}")]
    Config(String),
}

/// What the caller is told while it runs.
#[derive(Debug)]
pub enum Event<'a> {
    /// A log starts: its name and the traces it holds (retained ones).
    Log { log: &'a str, traces: u64 },
    /// More traces of the current log copied.
    Copied(u64),
    /// The current log is done.
    LogDone(&'a LogSummary),
}

/// What a log became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSummary {
    pub log: String,
    /// Next index (traces ever appended).
    pub size: u64,
    /// Retained traces copied, held ones included.
    pub traces: u64,
    /// Of which kept by a legal hold past their purge.
    pub held: u64,
    /// Purge history records, and every index below `purged_upto` purged.
    pub purge_records: usize,
    pub purged_upto: u64,
    pub checkpoints: usize,
    pub tiles: usize,
    /// Root of the source's tree at `size`, and the target's.
    pub source_root: Hash,
    pub target_root: Hash,
}

/// What a migration did.
#[derive(Debug, Clone)]
pub struct Summary {
    pub logs: Vec<LogSummary>,
    /// Legal holds (released ones included).
    pub holds: usize,
    pub verifier_key: String,
    pub master_id: String,
}

/// Moves the journal at `from` to the empty `to` (see the module docs).
/// `master` must be the source's master key; it becomes the target's.
pub async fn migrate(
    from: &Endpoint,
    to: &Endpoint,
    master: Arc<MasterKey>,
    progress: &mut (dyn FnMut(Event<'_>) + Send),
) -> Result<Summary, MigrateError> {
    if from == to {
        return Err(MigrateError::Config(
            "the source and the target are the same".into(),
        ));
    }
    let mut source = match from {
        Endpoint::Dir(d) => Source::Dir(DirReader::open(d, master.clone())?),
        Endpoint::Pg { url, schema } => {
            Source::Pg(Box::new(PgReader::open(url, schema, &master).await?))
        }
    };
    let journal = source.journal(&master).await?;
    check_source(&journal)?;
    let verifier = journal.signer.verifier()?;
    let summary = match to {
        Endpoint::Dir(d) => {
            let w = DirWriter::create(d, master.clone(), &journal.signer, &journal.holds)?;
            let staging = w.staging().to_owned();
            let mut sink = Sink::Dir(Box::new(w));
            let copied = copy(&mut source, &mut sink, &journal, progress).await;
            let mut logs = match (copied, sink) {
                (Ok(logs), Sink::Dir(w)) => {
                    // On a failed check the staging directory stays, for
                    // inspection (the error names it).
                    w.finish(&verifier)?;
                    logs
                }
                (Err(e), _) => {
                    // Ours, and incomplete (everything in it is sealed).
                    let _ = std::fs::remove_dir_all(&staging);
                    return Err(e);
                }
                (Ok(_), Sink::Pg(_)) => {
                    return Err(MigrateError::Config(
                        "internal: not a directory sink".into(),
                    ));
                }
            };
            // Read back from the renamed directory: the target's own root.
            for l in &mut logs {
                l.target_root = dir_root(d, &l.log, l.size).map_err(MigrateError::Mismatch)?;
            }
            logs
        }
        Endpoint::Pg { url, schema } => {
            let pool = Pool::new(url, None, schema, 1, Duration::from_secs(10))?;
            let mut conn = pool.get().await?;
            let tx = conn.transaction().await.map_err(PgError::from)?;
            let mut sink = Sink::Pg(PgSink::create(tx, schema, master.clone(), &journal).await?);
            let mut logs = copy(&mut source, &mut sink, &journal, progress).await?;
            let Sink::Pg(pg) = sink else {
                return Err(MigrateError::Config(
                    "internal: not a PostgreSQL sink".into(),
                ));
            };
            for l in &mut logs {
                l.target_root = pg.root(&l.log, l.size).await?;
            }
            compare(&logs)?;
            pg.tx.commit().await.map_err(PgError::from)?;
            logs
        }
    };
    compare(&summary)?;
    source.close().await;
    Ok(Summary {
        logs: summary,
        holds: journal.holds.len(),
        verifier_key: verifier.verifier_key(),
        master_id: master.id(),
    })
}

fn compare(logs: &[LogSummary]) -> Result<(), MigrateError> {
    for l in logs {
        if l.source_root != l.target_root {
            return Err(MigrateError::Mismatch(format!(
                "log {}: the target's root at size {} differs from the source's",
                l.log, l.size
            )));
        }
    }
    Ok(())
}

/// The source must verify before anything is written: every checkpoint
/// signed by its key and on its tree, purge records authentic (checked by
/// the readers), entries as long as the log.
fn check_source(j: &RawJournal) -> Result<(), MigrateError> {
    let verifier = j.signer.verifier()?;
    for log in &j.logs {
        if log.entries.len() as u64 != log.size {
            return Err(MigrateError::Source(format!(
                "log {}: {} commitments for {} traces",
                log.name,
                log.entries.len(),
                log.size
            )));
        }
        let mut tree = MemoryTree::new();
        for e in &log.entries {
            tree.push(merkle::leaf_hash(e));
        }
        for c in &log.checkpoints {
            open_checkpoint(c.note.as_bytes(), std::slice::from_ref(&verifier)).map_err(|e| {
                MigrateError::Source(format!(
                    "log {}: checkpoint of size {} does not verify with the journal's key: {e}",
                    log.name, c.size
                ))
            })?;
            if tree.root_at(c.size) != Some(c.root) {
                return Err(MigrateError::Source(format!(
                    "log {}: checkpoint of size {} is not on the tree of the commitments",
                    log.name, c.size
                )));
            }
        }
    }
    Ok(())
}

async fn copy(
    source: &mut Source,
    sink: &mut Sink<'_>,
    journal: &RawJournal,
    progress: &mut (dyn FnMut(Event<'_>) + Send),
) -> Result<Vec<LogSummary>, MigrateError> {
    let mut out = Vec::new();
    for (li, log) in journal.logs.iter().enumerate() {
        let history = log.purge_history();
        let purged_upto = history.purged_upto();
        let estimate = log.size.saturating_sub(purged_upto);
        progress(Event::Log {
            log: log.name.as_str(),
            traces: estimate,
        });
        sink.begin_log(li, log).await?;
        let (mut traces, mut held) = (0u64, 0u64);
        for part in &log.parts {
            let records = source.read_part(log, part).await?;
            for r in &records {
                if log.entries.get(r.index as usize) != Some(&r.commitment()) {
                    return Err(MigrateError::Source(format!(
                        "log {}: the trace at index {} does not match its commitment",
                        log.name, r.index
                    )));
                }
            }
            if records.is_empty() {
                continue;
            }
            sink.write_part(log, part, &records, progress).await?;
            traces += records.len() as u64;
            if part.hold_gen != 0 {
                held += records.len() as u64;
            }
        }
        sink.end_log(log).await?;
        let source_root = log.root_at(log.size).ok_or_else(|| {
            MigrateError::Source(format!("log {}: no root at its size", log.name))
        })?;
        let s = LogSummary {
            log: log.name.as_str().to_owned(),
            size: log.size,
            traces,
            held,
            purge_records: log.purges.len(),
            purged_upto,
            checkpoints: log.checkpoints.len(),
            tiles: log.tiles.len(),
            source_root,
            // Filled from the target once it is complete.
            target_root: [0; 32],
        };
        progress(Event::LogDone(&s));
        out.push(s);
    }
    Ok(out)
}

/// The root of a migrated data directory's log, from its own `entries`.
fn dir_root(dir: &Path, log: &str, size: u64) -> Result<Hash, String> {
    let p = dir.join("logs").join(log).join("entries");
    let raw = std::fs::read(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    let entries: Vec<Hash> = raw
        .chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            h
        })
        .collect();
    registre_store::raw::root_of(&entries, size)
        .ok_or_else(|| format!("log {log}: the target holds fewer than {size} commitments"))
}

// ------------------------------------------------------------------ sources

enum Source {
    Dir(DirReader),
    Pg(Box<PgReader>),
}

impl Source {
    async fn journal(&mut self, master: &MasterKey) -> Result<RawJournal, MigrateError> {
        match self {
            Source::Dir(d) => Ok(d.journal()?),
            Source::Pg(p) => p.journal(master).await,
        }
    }

    async fn read_part(
        &mut self,
        log: &RawLog,
        part: &RawPart,
    ) -> Result<Vec<RawRecord>, MigrateError> {
        match self {
            Source::Dir(d) => {
                let mut out = Vec::new();
                d.read_part(log.name.as_str(), part, &mut |r| {
                    out.push(r);
                    Ok(())
                })?;
                Ok(out)
            }
            Source::Pg(p) => p.read_part(log, part).await,
        }
    }

    async fn close(self) {
        if let Source::Pg(p) = self {
            // Read only: nothing to keep.
            let _ = p.conn.batch_execute("ROLLBACK").await;
        }
    }
}

/// A PostgreSQL journal read in one read-only snapshot.
struct PgReader {
    conn: Conn,
    master: Arc<MasterKey>,
    /// Log name → id.
    ids: BTreeMap<String, i16>,
}

impl PgReader {
    async fn open(
        url: &str,
        schema: &str,
        master: &Arc<MasterKey>,
    ) -> Result<PgReader, MigrateError> {
        if !schema::valid_schema(schema) {
            return Err(MigrateError::Config(format!(
                "schema `{schema}` is not a plain lowercase identifier"
            )));
        }
        let pool = Pool::new(url, None, schema, 1, Duration::from_secs(10))?;
        let conn = pool.get().await?;
        let exists: i64 = conn
            .query_one(
                "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = 'meta'",
                &[&schema],
            )
            .await
            .map_err(PgError::from)?
            .get(0);
        if exists == 0 {
            return Err(MigrateError::Config(format!(
                "no registre journal in schema `{schema}` of that database"
            )));
        }
        conn.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(PgError::from)?;
        let version: i32 = conn
            .query_one("SELECT coalesce(max(version), 0) FROM registre_schema", &[])
            .await
            .map_err(PgError::from)?
            .get(0);
        if version != schema::LATEST_VERSION {
            return Err(MigrateError::Open(PgOpenError::NewerSchema {
                found: version,
                known: schema::LATEST_VERSION,
            }));
        }
        let recorded: Vec<u8> = conn
            .query_one("SELECT value FROM meta WHERE key = 'master_id'", &[])
            .await
            .map_err(PgError::from)?
            .get(0);
        if recorded != master.id().into_bytes() {
            return Err(MigrateError::Open(PgOpenError::Key(format!(
                "the master key (id {}) is not the key of this journal (id {}); give the right \
                 key with --master-key-file. Nothing was touched.",
                master.id(),
                String::from_utf8_lossy(&recorded)
            ))));
        }
        Ok(PgReader {
            conn,
            master: master.clone(),
            ids: BTreeMap::new(),
        })
    }

    async fn journal(&mut self, master: &MasterKey) -> Result<RawJournal, MigrateError> {
        let c = &*self.conn;
        let sealed: Vec<u8> = c
            .query_one("SELECT value FROM meta WHERE key = 'checkpoint_key'", &[])
            .await
            .map_err(|_| {
                MigrateError::Source("the journal has no checkpoint signing key yet".into())
            })?
            .get(0);
        let text = master
            .open_blob(Path::new("meta/checkpoint_key"), SIGNER_LABEL, &sealed)
            .map_err(PgError::from)?;
        let signer = parse_pg_signer(&text)?;
        let holds: Vec<Hold> = match c
            .query_opt("SELECT value FROM meta WHERE key = 'holds'", &[])
            .await
            .map_err(PgError::from)?
        {
            Some(r) => {
                let sealed: Vec<u8> = r.get(0);
                let plain = master
                    .open_blob(Path::new("meta/holds"), HOLDS_LABEL, &sealed)
                    .map_err(PgError::from)?;
                serde_json::from_slice(&plain)
                    .map_err(|_| MigrateError::Source("the legal holds do not decode".into()))?
            }
            None => Vec::new(),
        };
        let rows: Vec<(i16, String, i64)> = c
            .query("SELECT id, name, size FROM logs ORDER BY name", &[])
            .await
            .map_err(PgError::from)?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        let mut logs = Vec::new();
        for (id, name, size) in rows {
            let class = ClassName::new(&name)
                .map_err(|_| MigrateError::Source(format!("log `{name}` is not a class name")))?;
            self.ids.insert(name.clone(), id);
            logs.push(self.log(id, class, size as u64).await?);
        }
        Ok(RawJournal {
            master_id: master.id(),
            signer,
            holds,
            logs,
        })
    }

    async fn log(&self, id: i16, name: ClassName, size: u64) -> Result<RawLog, MigrateError> {
        let c = &*self.conn;
        let n = name.as_str();
        let label = format!("{n}/purged");
        let wrapped: Vec<u8> = c
            .query_one("SELECT wrapped FROM data_keys WHERE label = $1", &[&label])
            .await
            .map_err(|_| MigrateError::Source(format!("log {n}: its history key is missing")))?
            .get(0);
        let path = PathBuf::from(format!("postgres:data_keys/{label}"));
        let history_key = self
            .master
            .unwrap(&path, &label, &wrapped)
            .map_err(PgError::from)?;
        let hk = SegmentKeys::from_bytes(&history_key);
        let mut purges = Vec::new();
        for r in c
            .query(
                "SELECT seq, record FROM purges WHERE log = $1 ORDER BY seq",
                &[&id],
            )
            .await
            .map_err(PgError::from)?
        {
            let seq: i32 = r.get(0);
            let rec: Vec<u8> = r.get(1);
            let ok = at_rest::Purged::decode(&rec).is_some()
                && at_rest::Purged::authentic(&rec, &hk)
                && rec.len() == PURGE_RECORD_LEN;
            if !ok {
                return Err(MigrateError::Source(format!(
                    "log {n}: purge record {seq} does not authenticate with the history key"
                )));
            }
            let mut b = [0u8; PURGE_RECORD_LEN];
            b.copy_from_slice(&rec);
            purges.push(b);
        }
        let mut parts = Vec::new();
        for r in c
            .query(
                "SELECT gen, min(idx), min(received_at) FROM held WHERE log = $1 \
                 GROUP BY gen ORDER BY gen",
                &[&id],
            )
            .await
            .map_err(PgError::from)?
        {
            let g: i32 = r.get(0);
            let first: i64 = r.get(1);
            let t: i64 = r.get(2);
            parts.push(RawPart {
                // The day it was received (the source period is gone).
                period_start: t.div_euclid(86_400_000_000) * 86_400_000_000,
                first_index: first as u64,
                hold_gen: g as u32,
                source: g.to_string(),
            });
        }
        for r in c
            .query(
                "SELECT period, relname, first_index FROM partitions WHERE log = $1 \
                 ORDER BY first_index",
                &[&id],
            )
            .await
            .map_err(PgError::from)?
        {
            let period: i64 = r.get(0);
            let relname: String = r.get(1);
            let first: i64 = r.get(2);
            parts.push(RawPart {
                period_start: period,
                first_index: first as u64,
                hold_gen: 0,
                source: relname,
            });
        }
        let mut entries = Vec::with_capacity(size as usize);
        for r in c
            .query(
                "SELECT idx, commitment FROM entries WHERE log = $1 ORDER BY idx",
                &[&id],
            )
            .await
            .map_err(PgError::from)?
        {
            let idx: i64 = r.get(0);
            let h: &[u8] = r.get(1);
            let h: Hash = h.try_into().map_err(|_| {
                MigrateError::Source(format!("log {n}: commitment {idx} is not 32 bytes"))
            })?;
            if idx as usize != entries.len() {
                return Err(MigrateError::Source(format!(
                    "log {n}: commitment {} is missing",
                    entries.len()
                )));
            }
            entries.push(h);
        }
        let tiles = c
            .query(
                "SELECT level, n, hashes FROM tiles WHERE log = $1 ORDER BY level, n",
                &[&id],
            )
            .await
            .map_err(PgError::from)?
            .iter()
            .map(|r| {
                (
                    r.get::<_, i16>(0) as u8,
                    r.get::<_, i64>(1) as u64,
                    r.get::<_, Vec<u8>>(2),
                )
            })
            .collect();
        let mut checkpoints = Vec::new();
        for r in c
            .query(
                "SELECT size, root, note FROM checkpoints WHERE log = $1 ORDER BY size",
                &[&id],
            )
            .await
            .map_err(PgError::from)?
        {
            let size: i64 = r.get(0);
            let root: &[u8] = r.get(1);
            checkpoints.push(SignedCheckpoint {
                size: size as u64,
                root: root.try_into().map_err(|_| {
                    MigrateError::Source(format!("log {n}: a checkpoint root is not 32 bytes"))
                })?,
                note: r.get(2),
            });
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

    async fn read_part(
        &self,
        log: &RawLog,
        part: &RawPart,
    ) -> Result<Vec<RawRecord>, MigrateError> {
        let n = log.name.as_str();
        let id = *self
            .ids
            .get(n)
            .ok_or_else(|| MigrateError::Source(format!("unknown log {n}")))?;
        let (rows, label) = if part.hold_gen == 0 {
            let rows = self
                .conn
                .query(
                    &format!(
                        "SELECT idx, received_at, record FROM {} ORDER BY idx",
                        crate::pool::quote_ident(&part.source)
                    ),
                    &[],
                )
                .await
                .map_err(PgError::from)?;
            let period = part.period_start;
            (
                rows,
                partition_label(&log.name, period, part.first_index as i64),
            )
        } else {
            let g = part.hold_gen as i32;
            let rows = self
                .conn
                .query(
                    "SELECT idx, received_at, record FROM held WHERE log = $1 AND gen = $2 \
                     ORDER BY idx",
                    &[&id, &g],
                )
                .await
                .map_err(PgError::from)?;
            (rows, hold_label(&log.name, g))
        };
        let wrapped: Vec<u8> = self
            .conn
            .query_one("SELECT wrapped FROM data_keys WHERE label = $1", &[&label])
            .await
            .map_err(|_| MigrateError::Source(format!("the data key {label} is missing")))?
            .get(0);
        let keys = unwrap_keys(&self.master, &label, &wrapped)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let idx: i64 = r.get(0);
            let received_at: i64 = r.get(1);
            let mut record = Zeroizing::new(r.get::<_, Vec<u8>>(2));
            let plain = keys.open(n, idx as u64, &mut record).ok_or_else(|| {
                MigrateError::Source(format!(
                    "log {n}: record {idx} does not open with its data key"
                ))
            })?;
            let plain = Zeroizing::new(plain.to_vec());
            at_rest::decode_record(&plain)
                .map_err(|why| MigrateError::Source(format!("log {n}: record {idx}: {why}")))?;
            out.push(RawRecord {
                index: idx as u64,
                received_at,
                plain,
            });
        }
        Ok(out)
    }
}

/// PostgreSQL keeps the signing key as `<name>\n<base64 seed>\n`, sealed.
fn parse_pg_signer(text: &[u8]) -> Result<RawSigner, MigrateError> {
    use base64::Engine;
    let bad = || MigrateError::Source("the stored checkpoint key does not decode".into());
    let s = std::str::from_utf8(text).map_err(|_| bad())?;
    let (name, b64) = s.trim_end().split_once('\n').ok_or_else(bad)?;
    let secret = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| bad())?,
    );
    let mut out = Zeroizing::new([0u8; 32]);
    if secret.len() != 32 {
        return Err(bad());
    }
    out.copy_from_slice(&secret);
    let signer = RawSigner {
        name: name.to_owned(),
        secret: out,
    };
    signer.signer()?;
    Ok(signer)
}

fn pg_signer_text(s: &RawSigner) -> Zeroizing<Vec<u8>> {
    use base64::Engine;
    Zeroizing::new(
        format!(
            "{}\n{}\n",
            s.name,
            base64::engine::general_purpose::STANDARD.encode(&s.secret[..])
        )
        .into_bytes(),
    )
}

// -------------------------------------------------------------------- sinks

enum Sink<'a> {
    Dir(Box<DirWriter>),
    Pg(PgSink<'a>),
}

impl Sink<'_> {
    async fn begin_log(&mut self, li: usize, log: &RawLog) -> Result<(), MigrateError> {
        match self {
            Sink::Dir(w) => Ok(w.begin_log(log)?),
            Sink::Pg(p) => p.begin_log(li, log).await,
        }
    }

    async fn write_part(
        &mut self,
        log: &RawLog,
        part: &RawPart,
        records: &[RawRecord],
        progress: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<(), MigrateError> {
        match self {
            Sink::Dir(w) => {
                w.begin_part(log.name.as_str(), part)?;
                for chunk in records.chunks(CHUNK) {
                    for r in chunk {
                        w.push(r)?;
                    }
                    progress(Event::Copied(chunk.len() as u64));
                }
                w.end_part()?;
                Ok(())
            }
            Sink::Pg(p) => p.write_part(log, part, records, progress).await,
        }
    }

    async fn end_log(&mut self, log: &RawLog) -> Result<(), MigrateError> {
        match self {
            Sink::Dir(w) => Ok(w.end_log(log)?),
            Sink::Pg(p) => p.end_log(log).await,
        }
    }
}

/// An empty schema filled in one transaction.
struct PgSink<'a> {
    tx: Transaction<'a>,
    master: Arc<MasterKey>,
    /// Per log: its id, the partition being filled (period, table, keys),
    /// the latest reception time.
    logs: BTreeMap<String, PgLog>,
}

struct PgLog {
    id: i16,
    partition: Option<(i64, String, Arc<SegmentKeys>)>,
    last_time: i64,
}

impl<'a> PgSink<'a> {
    async fn create(
        tx: Transaction<'a>,
        schema: &str,
        master: Arc<MasterKey>,
        journal: &RawJournal,
    ) -> Result<PgSink<'a>, MigrateError> {
        if !schema::valid_schema(schema) {
            return Err(MigrateError::Config(format!(
                "schema `{schema}` is not a plain lowercase identifier"
            )));
        }
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, $2)",
            &[&lock_ns(schema), &SETUP_LOCK],
        )
        .await
        .map_err(PgError::from)?;
        let tables: i64 = tx
            .query_one(
                "SELECT count(*) FROM pg_tables WHERE schemaname = $1",
                &[&schema],
            )
            .await
            .map_err(PgError::from)?
            .get(0);
        if tables > 0 {
            return Err(MigrateError::NotEmpty(schema.to_owned()));
        }
        schema::migrate(&tx, schema).await?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('master_id', $1)",
            &[&master.id().into_bytes()],
        )
        .await
        .map_err(PgError::from)?;
        let sealed = master
            .seal_blob(SIGNER_LABEL, &pg_signer_text(&journal.signer))
            .map_err(PgError::from)?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('checkpoint_key', $1)",
            &[&sealed],
        )
        .await
        .map_err(PgError::from)?;
        let plain = Zeroizing::new(
            serde_json::to_vec(&journal.holds).map_err(|e| MigrateError::Config(e.to_string()))?,
        );
        let sealed = master
            .seal_blob(HOLDS_LABEL, &plain)
            .map_err(PgError::from)?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('holds', $1)",
            &[&sealed],
        )
        .await
        .map_err(PgError::from)?;
        Ok(PgSink {
            tx,
            master,
            logs: BTreeMap::new(),
        })
    }

    async fn begin_log(&mut self, li: usize, log: &RawLog) -> Result<(), MigrateError> {
        let id = i16::try_from(li + 1).map_err(|_| MigrateError::Config("too many logs".into()))?;
        let name = log.name.as_str();
        let tx = &self.tx;
        tx.execute("INSERT INTO logs (id, name) VALUES ($1, $2)", &[&id, &name])
            .await
            .map_err(PgError::from)?;
        tx.batch_execute(&format!(
            "CREATE TABLE traces_{id} PARTITION OF traces FOR VALUES IN ({id}) \
             PARTITION BY LIST (period)"
        ))
        .await
        .map_err(PgError::from)?;
        let label = format!("{name}/purged");
        let wrapped = self
            .master
            .wrap(&label, &log.history_key)
            .map_err(PgError::from)?;
        tx.execute(
            "INSERT INTO data_keys (label, wrapped) VALUES ($1, $2)",
            &[&label, &wrapped.as_slice()],
        )
        .await
        .map_err(PgError::from)?;
        for (seq, rec) in log.purges.iter().enumerate() {
            let seq = seq as i32 + 1;
            tx.execute(
                "INSERT INTO purges (log, seq, record) VALUES ($1, $2, $3)",
                &[&id, &seq, &rec.as_slice()],
            )
            .await
            .map_err(PgError::from)?;
        }
        self.logs.insert(
            name.to_owned(),
            PgLog {
                id,
                partition: None,
                last_time: i64::MIN,
            },
        );
        Ok(())
    }

    async fn new_keys(&self, label: &str) -> Result<Arc<SegmentKeys>, MigrateError> {
        let (keys, bytes) = SegmentKeys::generate().map_err(PgError::from)?;
        let wrapped = self.master.wrap(label, &bytes).map_err(PgError::from)?;
        self.tx
            .execute(
                "INSERT INTO data_keys (label, wrapped) VALUES ($1, $2)",
                &[&label, &wrapped.as_slice()],
            )
            .await
            .map_err(PgError::from)?;
        Ok(Arc::new(keys))
    }

    async fn write_part(
        &mut self,
        log: &RawLog,
        part: &RawPart,
        records: &[RawRecord],
        progress: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<(), MigrateError> {
        let name = log.name.as_str();
        let state = self
            .logs
            .get(name)
            .ok_or_else(|| MigrateError::Config(format!("log {name} not begun")))?;
        let id = state.id;
        // Where these rows go, under which key.
        let (table, keys) = if part.hold_gen != 0 {
            let keys = self
                .new_keys(&hold_label(&log.name, part.hold_gen as i32))
                .await?;
            (None, keys)
        } else {
            match &state.partition {
                // Segments of one period (rolled by size) share a partition.
                Some((p, rel, keys)) if *p == part.period_start => {
                    (Some(rel.clone()), keys.clone())
                }
                _ => {
                    let relname = schema::partition_name(id, part.period_start);
                    let first = records.first().map_or(part.first_index, |r| r.index);
                    let keys = self
                        .new_keys(&partition_label(&log.name, part.period_start, first as i64))
                        .await?;
                    self.tx
                        .batch_execute(&format!(
                            "CREATE TABLE {relname} PARTITION OF traces_{id} FOR VALUES IN ({})",
                            part.period_start
                        ))
                        .await
                        .map_err(PgError::from)?;
                    self.tx
                        .execute(
                            "INSERT INTO partitions (log, period, relname, first_index) \
                             VALUES ($1, $2, $3, $4)",
                            &[&id, &part.period_start, &relname, &(first as i64)],
                        )
                        .await
                        .map_err(PgError::from)?;
                    if let Some(s) = self.logs.get_mut(name) {
                        s.partition = Some((part.period_start, relname.clone(), keys.clone()));
                    }
                    (Some(relname), keys)
                }
            }
        };
        for chunk in records.chunks(CHUNK) {
            let mut nonces = vec![0u8; chunk.len() * NONCE_LEN];
            crypto::random(&mut nonces).map_err(PgError::from)?;
            let n = chunk.len();
            let (mut idx, mut times, mut actor, mut action) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            let (mut mailbox, mut patient, mut sealed) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            for (i, r) in chunk.iter().enumerate() {
                let decoded = at_rest::decode_record(&r.plain).map_err(|why| {
                    MigrateError::Source(format!("log {name}: record {}: {why}", r.index))
                })?;
                let b = blinds(&keys, &decoded.trace);
                let mut nonce = [0u8; NONCE_LEN];
                nonce.copy_from_slice(&nonces[i * NONCE_LEN..(i + 1) * NONCE_LEN]);
                let mut buf = Vec::with_capacity(r.plain.len() + 28);
                buf.extend_from_slice(&nonce);
                buf.extend_from_slice(&r.plain);
                let tag = keys.seal(name, r.index, nonce, &mut buf[NONCE_LEN..]);
                buf.extend_from_slice(&tag);
                idx.push(r.index as i64);
                times.push(r.received_at);
                actor.push(b.actor);
                action.push(b.action);
                mailbox.push(b.mailbox);
                patient.push(b.patient);
                sealed.push(buf);
            }
            match &table {
                Some(rel) => {
                    self.tx
                        .execute(
                            &format!(
                                "INSERT INTO {rel} (log, period, idx, received_at, actor, action, \
                                 mailbox, patient, record) SELECT $1, $2, u.idx, u.t, u.actor, \
                                 u.action, u.mailbox, u.patient, u.record FROM unnest($3::int8[], \
                                 $4::int8[], $5::int8[], $6::int8[], $7::int8[], $8::int8[], \
                                 $9::bytea[]) AS u(idx, t, actor, action, mailbox, patient, record)"
                            ),
                            &[
                                &id,
                                &part.period_start,
                                &idx,
                                &times,
                                &actor,
                                &action,
                                &mailbox,
                                &patient,
                                &sealed,
                            ],
                        )
                        .await
                        .map_err(PgError::from)?;
                }
                None => {
                    let g = part.hold_gen as i32;
                    self.tx
                        .execute(
                            "INSERT INTO held (log, gen, idx, received_at, actor, action, mailbox, \
                             patient, record) SELECT $1, $2, u.idx, u.t, u.actor, u.action, \
                             u.mailbox, u.patient, u.record FROM unnest($3::int8[], $4::int8[], \
                             $5::int8[], $6::int8[], $7::int8[], $8::int8[], $9::bytea[]) \
                             AS u(idx, t, actor, action, mailbox, patient, record)",
                            &[
                                &id, &g, &idx, &times, &actor, &action, &mailbox, &patient, &sealed,
                            ],
                        )
                        .await
                        .map_err(PgError::from)?;
                }
            }
            if let Some(s) = self.logs.get_mut(name)
                && let Some(t) = times.iter().max()
            {
                s.last_time = s.last_time.max(*t);
            }
            progress(Event::Copied(n as u64));
        }
        Ok(())
    }

    async fn end_log(&mut self, log: &RawLog) -> Result<(), MigrateError> {
        let name = log.name.as_str();
        let state = self
            .logs
            .get(name)
            .ok_or_else(|| MigrateError::Config(format!("log {name} not begun")))?;
        let id = state.id;
        let tx = &self.tx;
        for (k, chunk) in log.entries.chunks(CHUNK * 5).enumerate() {
            let base = (k * CHUNK * 5) as i64;
            let idx: Vec<i64> = (0..chunk.len() as i64).map(|i| base + i).collect();
            let cs: Vec<&[u8]> = chunk.iter().map(|c| c.as_slice()).collect();
            tx.execute(
                "INSERT INTO entries (log, idx, commitment) SELECT $1, u.idx, u.c \
                 FROM unnest($2::int8[], $3::bytea[]) AS u(idx, c)",
                &[&id, &idx, &cs],
            )
            .await
            .map_err(PgError::from)?;
        }
        for (level, n, hashes) in &log.tiles {
            tx.execute(
                "INSERT INTO tiles (log, level, n, hashes) VALUES ($1, $2, $3, $4)",
                &[&id, &i16::from(*level), &(*n as i64), hashes],
            )
            .await
            .map_err(PgError::from)?;
        }
        let mut last_size = None;
        for c in &log.checkpoints {
            if last_size == Some(c.size) {
                // The same tree signed twice (a data directory may hold
                // it): PostgreSQL keeps one checkpoint per size.
                continue;
            }
            last_size = Some(c.size);
            tx.execute(
                "INSERT INTO checkpoints (log, size, root, note) VALUES ($1, $2, $3, $4)",
                &[&id, &(c.size as i64), &c.root.as_slice(), &c.note],
            )
            .await
            .map_err(PgError::from)?;
        }
        let hold_gen = log.purge_history().last_hold_gen() as i32;
        tx.execute(
            "UPDATE logs SET size = $2, last_time = $3, hold_gen = $4 WHERE id = $1",
            &[&id, &(log.size as i64), &state.last_time, &hold_gen],
        )
        .await
        .map_err(PgError::from)?;
        Ok(())
    }

    /// The root of `log` at `size` from the commitments now in the target.
    async fn root(&self, log: &str, size: u64) -> Result<Hash, MigrateError> {
        let id = self
            .logs
            .get(log)
            .map(|l| l.id)
            .ok_or_else(|| MigrateError::Config(format!("log {log} not begun")))?;
        let rows = self
            .tx
            .query(
                "SELECT commitment FROM entries WHERE log = $1 AND idx < $2 ORDER BY idx",
                &[&id, &(size as i64)],
            )
            .await
            .map_err(PgError::from)?;
        let mut t = MemoryTree::new();
        for r in rows {
            let c: &[u8] = r.get(0);
            t.push(merkle::leaf_hash(c));
        }
        t.root_at(size).ok_or_else(|| {
            MigrateError::Mismatch(format!(
                "log {log}: the target holds fewer than {size} commitments"
            ))
        })
    }
}
