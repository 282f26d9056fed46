//! `registre verify --store postgres://…`: checks a PostgreSQL journal from
//! its rows alone, read-only, in one snapshot (a `REPEATABLE READ READ ONLY`
//! transaction: nodes may keep appending meanwhile, the check sees one
//! consistent state and takes no lock a writer waits for).
//!
//! For each log, as `registre_store::verify_data_dir` does for a data
//! directory: the purge history (every record authenticated with the log's
//! history key, in sequence), the partitions (registered ⇔ present as
//! tables, each with its data key, indexes dense from where the purges
//! stopped to the log's size), every record opened and checked against its
//! commitment (and its log, index and reception time), the held traces
//! (only the hold generations the history names, each still there), the
//! commitments dense in `entries`, the Merkle tree rebuilt from them against
//! every stored tile, and every stored checkpoint: its signature, its origin,
//! its root and consistency with the checkpoint before it. Each failure
//! names the log and the place (table and index, tile, checkpoint size,
//! purge record).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use registre_log::checkpoint::open_checkpoint;
use std::collections::HashMap;

use registre_log::merkle::Hash;
use registre_log::note::{Signer, Verifier};
use registre_log::tile::TileId;
use registre_log::tiled::{FullTile, TileKey};
use registre_model::{ClassName, format_received_at};
use registre_store::at_rest::{self, History, Purged};
use registre_store::crypto::{MasterKey, SegmentKeys};
use registre_store::treecheck::{TileProblem, TreeCheck};
use tokio_postgres::IsolationLevel;
use tokio_postgres::error::SqlState;
use zeroize::Zeroizing;

pub use registre_store::Failure;

use crate::pool::{Conn, Pool};
use crate::schema::{LATEST_VERSION, valid_schema};
use crate::store::{SIGNER_LABEL, hold_label, partition_label, unwrap_keys};
use crate::{PgError, PgOpenError};

/// Rows read per query (records are streamed in index order by chunks).
const CHUNK: i64 = 5_000;

/// What `verify_journal` checked and found (the embedded verifier's report).
#[derive(Debug, Default)]
pub struct Report {
    pub logs: Vec<LogReport>,
    pub failures: Vec<Failure>,
    /// Things worth saying that are not tampering.
    pub notes: Vec<String>,
}

#[derive(Debug, Default)]
pub struct LogReport {
    pub log: String,
    /// Records read (live partitions and held traces).
    pub traces: u64,
    pub commitments: u64,
    pub tiles: u64,
    pub checkpoints: u64,
    /// Size of the latest checkpoint that verified.
    pub verified_size: u64,
    /// Live partitions.
    pub partitions: u64,
    /// Purge records.
    pub purges: u64,
}

impl Report {
    pub fn traces(&self) -> u64 {
        self.logs.iter().map(|l| l.traces).sum()
    }
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

/// What to verify, and with what.
pub struct VerifyOptions {
    pub url: String,
    pub schema: String,
    /// CA certificates (PEM) for `sslmode=require`.
    pub tls_root_cert: Option<PathBuf>,
    /// Opens the records (without it only the tree, tiles and checkpoints
    /// are checked, and `verifiers` must be given).
    pub master_key: Option<Arc<MasterKey>>,
    /// Trusted checkpoint keys; empty: the journal's own key (unsealed with
    /// the master key).
    pub verifiers: Vec<Verifier>,
}

/// Verifies every log of the journal in `opts.schema`. `progress` is told
/// `(records read, records in the journal)` as it goes.
pub async fn verify_journal(
    opts: &VerifyOptions,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<Report, PgOpenError> {
    if !valid_schema(&opts.schema) {
        return Err(PgOpenError::Config(format!(
            "schema `{}` is not a plain lowercase identifier",
            opts.schema
        )));
    }
    let pool = Pool::new(
        &opts.url,
        opts.tls_root_cert.clone(),
        &opts.schema,
        2,
        std::time::Duration::from_secs(5),
    )?;
    let mut conn = pool.get().await?;
    let tx = conn
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(PgError::from)?;
    let exists: bool = tx
        .query_one(
            "SELECT to_regclass('registre_schema') IS NOT NULL AND to_regclass('logs') IS NOT NULL",
            &[],
        )
        .await
        .map_err(PgError::from)?
        .get(0);
    if !exists {
        return Err(PgOpenError::Config(format!(
            "there is no registre journal in schema `{}` of this database",
            opts.schema
        )));
    }
    let version: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM registre_schema", &[])
        .await
        .map_err(PgError::from)?
        .get(0);
    if version > LATEST_VERSION {
        return Err(PgOpenError::NewerSchema {
            found: version,
            known: LATEST_VERSION,
        });
    }
    // The partitions are read through a second connection, each chunk in a
    // short transaction on this snapshot: no lock on a partition is held for
    // long, so a node's purge (which drops partitions under the log's lock,
    // appends to that log waiting) is never held up by a long verification.
    let snapshot: String = tx
        .query_one("SELECT pg_export_snapshot()", &[])
        .await
        .map_err(PgError::from)?
        .get(0);
    let mut side = pool.get().await?;
    let mut report = Report::default();
    let master = opts.master_key.as_deref();
    let recorded: Option<Vec<u8>> = tx
        .query_opt("SELECT value FROM meta WHERE key = 'master_id'", &[])
        .await
        .map_err(PgError::from)?
        .map(|r| r.get(0));
    if let (Some(m), Some(rec)) = (master, &recorded)
        && rec.as_slice() != m.id().as_bytes()
    {
        return Err(PgOpenError::Key(format!(
            "the master key (id {}) is not the key of this journal (id {})",
            m.id(),
            String::from_utf8_lossy(rec)
        )));
    }
    let mut verifiers = opts.verifiers.clone();
    if verifiers.is_empty() {
        let Some(m) = master else {
            return Err(PgOpenError::Config(
                "without the master key, give the journal's verifier key (--vkey) to check the \
                 checkpoints' signatures"
                    .into(),
            ));
        };
        verifiers.push(journal_signer(&tx, m).await?.verifier());
    }
    if master.is_none() {
        report.notes.push(
            "no master key given: the records were counted but not opened, so their \
             commitments were not recomputed and the purge history was not authenticated \
             (give --master-key-file)"
                .into(),
        );
    }

    let logs = tx
        .query(
            "SELECT id, name, size, hold_gen FROM logs ORDER BY name",
            &[],
        )
        .await
        .map_err(PgError::from)?;
    let total: u64 = logs.iter().map(|r| r.get::<_, i64>(2).max(0) as u64).sum();
    let mut done = 0u64;
    progress(0, total);
    for r in &logs {
        let id: i16 = r.get(0);
        let name: String = r.get(1);
        let size: i64 = r.get(2);
        let hold_gen: i32 = r.get(3);
        let Ok(class) = ClassName::new(&name) else {
            report.failures.push(Failure {
                log: name.clone(),
                place: "logs".into(),
                what: "the log's name is not a class name".into(),
            });
            continue;
        };
        let mut check = LogCheck {
            tx: &tx,
            master,
            verifiers: &verifiers,
            id,
            class,
            size: size.max(0) as u64,
            hold_gen,
            lr: LogReport {
                log: name.clone(),
                ..LogReport::default()
            },
            failures: Vec::new(),
            notes: Vec::new(),
            done: &mut done,
            total,
            progress: &mut *progress,
        };
        check.run(&mut side, &snapshot).await?;
        report.failures.append(&mut check.failures);
        report.notes.append(&mut check.notes);
        report.logs.push(check.lr);
    }
    // Read-only: nothing to commit.
    tx.rollback().await.map_err(PgError::from)?;
    Ok(report)
}

/// The journal's checkpoint signer, unsealed with the master key.
async fn journal_signer<C: tokio_postgres::GenericClient + Sync>(
    c: &C,
    master: &MasterKey,
) -> Result<Signer, PgOpenError> {
    let sealed: Vec<u8> = c
        .query_opt("SELECT value FROM meta WHERE key = 'checkpoint_key'", &[])
        .await
        .map_err(PgError::from)?
        .map(|r| r.get(0))
        .ok_or_else(|| PgOpenError::Corrupt("the journal has no checkpoint key (meta)".into()))?;
    let text = master
        .open_blob(Path::new("meta/checkpoint_key"), SIGNER_LABEL, &sealed)
        .map_err(PgError::from)?;
    parse_signer(&text)
}

/// The verifier key of the journal in `schema` (`<name>+<id>+<key>`), read
/// only: what `registre keys show --store` prints.
pub async fn verifier_key(
    url: &str,
    schema: &str,
    tls_root_cert: Option<PathBuf>,
    master: &MasterKey,
) -> Result<String, PgOpenError> {
    if !valid_schema(schema) {
        return Err(PgOpenError::Config(format!(
            "schema `{schema}` is not a plain lowercase identifier"
        )));
    }
    let pool = Pool::new(
        url,
        tls_root_cert,
        schema,
        1,
        std::time::Duration::from_secs(5),
    )?;
    let conn = pool.get().await?;
    let exists: bool = conn
        .query_one("SELECT to_regclass('meta') IS NOT NULL", &[])
        .await
        .map_err(PgError::from)?
        .get(0);
    if !exists {
        return Err(PgOpenError::Config(format!(
            "there is no registre journal in schema `{schema}` of this database (the first \
             `registre serve --store` creates it)"
        )));
    }
    Ok(journal_signer(&*conn, master).await?.verifier_key())
}

fn parse_signer(text: &Zeroizing<Vec<u8>>) -> Result<Signer, PgOpenError> {
    use base64::Engine;
    let bad = || PgOpenError::Corrupt("the stored checkpoint key does not decode".into());
    let s = std::str::from_utf8(text).map_err(|_| bad())?;
    let (name, b64) = s.trim_end().split_once('\n').ok_or_else(bad)?;
    let secret = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| bad())?,
    );
    let secret: [u8; 32] = secret.as_slice().try_into().map_err(|_| bad())?;
    Signer::new(name, &secret).map_err(|_| bad())
}

struct LogCheck<'a> {
    tx: &'a tokio_postgres::Transaction<'a>,
    master: Option<&'a MasterKey>,
    verifiers: &'a [Verifier],
    id: i16,
    class: ClassName,
    size: u64,
    hold_gen: i32,
    lr: LogReport,
    failures: Vec<Failure>,
    notes: Vec<String>,
    done: &'a mut u64,
    total: u64,
    progress: &'a mut (dyn FnMut(u64, u64) + Send),
}

impl LogCheck<'_> {
    fn fail(&mut self, place: impl Into<String>, what: impl Into<String>) {
        self.failures.push(Failure {
            log: self.class.as_str().to_owned(),
            place: place.into(),
            what: what.into(),
        });
    }

    fn read(&mut self, n: u64) {
        *self.done += n;
        (self.progress)(*self.done, self.total);
    }

    /// The keys of `label`, or a failure naming `place`.
    async fn keys(&mut self, label: &str, place: &str) -> Result<Option<SegmentKeys>, PgError> {
        let Some(m) = self.master else {
            return Ok(None);
        };
        let row = self
            .tx
            .query_opt("SELECT wrapped FROM data_keys WHERE label = $1", &[&label])
            .await?;
        let Some(row) = row else {
            self.fail(
                place,
                format!(
                    "its data key ({label}) is missing: the key was deleted without a purge \
                     record, so its traces can no longer be read"
                ),
            );
            return Ok(None);
        };
        let wrapped: Vec<u8> = row.get(0);
        match unwrap_keys(m, label, &wrapped) {
            Ok(k) => Ok(Some(k)),
            Err(e) => {
                self.fail(
                    place,
                    format!("its data key ({label}) does not unwrap: {e}"),
                );
                Ok(None)
            }
        }
    }

    /// Rows of `sql` (on one partition) in the verification's snapshot, in
    /// a transaction of their own; `None` when the table is gone (dropped
    /// after the snapshot was taken).
    async fn snapshot_rows(
        side: &mut Conn,
        snapshot: &str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Option<Vec<tokio_postgres::Row>>, PgError> {
        let t = side
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        t.batch_execute(&format!("SET TRANSACTION SNAPSHOT '{snapshot}'"))
            .await?;
        match t.query(sql, params).await {
            Ok(rows) => {
                t.commit().await?;
                Ok(Some(rows))
            }
            Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether a purge committed after the snapshot took the partition
    /// starting at `first` (read outside the snapshot); its end if so.
    async fn purged_since(&self, side: &Conn, first: i64) -> Result<Option<u64>, PgError> {
        let rows = side
            .query("SELECT record FROM purges WHERE log = $1", &[&self.id])
            .await?;
        Ok(rows.iter().find_map(|r| {
            let raw: &[u8] = r.get(0);
            let p = Purged::decode(raw)?;
            (p.old_hold == 0 && p.first == first as u64).then_some(p.end)
        }))
    }

    /// A registered partition whose table is gone: purged while the check
    /// ran (a note), or dropped by hand (a failure). Returns where the next
    /// partition should start.
    async fn gone(
        &mut self,
        side: &Conn,
        relname: &str,
        first: i64,
        next: u64,
    ) -> Result<u64, PgError> {
        match self.purged_since(side, first).await? {
            Some(end) => {
                self.notes.push(format!(
                    "log {}: partition {relname} was purged by a node while the verification                      ran; its traces were not checked (run verify again)",
                    self.class
                ));
                Ok(end.max(next))
            }
            None => {
                self.fail(
                    format!("partition {relname}"),
                    "registered but its table is gone: traces were deleted without a purge \
                     record",
                );
                Ok(next)
            }
        }
    }

    async fn run(&mut self, side: &mut Conn, snapshot: &str) -> Result<(), PgOpenError> {
        let name = self.class.as_str().to_owned();
        // 1. The purge history.
        let history_key = self
            .keys(&format!("{name}/purged"), "purge history")
            .await?;
        let rows = self
            .tx
            .query(
                "SELECT seq, record FROM purges WHERE log = $1 ORDER BY seq",
                &[&self.id],
            )
            .await
            .map_err(PgError::from)?;
        let mut history = History::default();
        let mut authentic = self.master.is_none() || history_key.is_some();
        for (i, r) in rows.iter().enumerate() {
            let seq: i32 = r.get(0);
            let raw: Vec<u8> = r.get(1);
            let place = format!("purge record {seq}");
            if i64::from(seq) != i as i64 + 1 {
                self.fail(
                    place.clone(),
                    format!(
                        "purge records are numbered 1, 2, … but this one is {seq} where {} was \
                         expected: a purge record was deleted",
                        i + 1
                    ),
                );
                authentic = false;
            }
            let Some(p) = Purged::decode(&raw) else {
                self.fail(place, "does not decode (altered)");
                authentic = false;
                continue;
            };
            if let Some(k) = &history_key
                && !Purged::authentic(&raw, k)
            {
                self.fail(
                    place,
                    "does not authenticate with the log's history key: forged or altered \
                     (partitions dropped by hand would hide behind it)",
                );
                authentic = false;
            }
            history.records.push(p);
        }
        self.lr.purges = history.records.len() as u64;
        // Unauthenticated history: nothing may be missing.
        let purged_upto = if authentic { history.purged_upto() } else { 0 };
        let live_holds = history.live_holds();
        if purged_upto > 0 {
            let dropped: u64 = history.records.iter().map(|r| r.dropped).sum();
            self.notes.push(format!(
                "log {name}: indexes 0..{purged_upto} were purged past retention ({} purges, \
                 {dropped} traces destroyed, {} hold generations keep the held ones); their \
                 commitments remain and are verified",
                history.records.len(),
                live_holds.len()
            ));
        }
        if history.last_hold_gen() as i64 > i64::from(self.hold_gen) {
            self.fail(
                "logs.hold_gen",
                format!(
                    "the log's hold generation ({}) is behind its purge history ({})",
                    self.hold_gen,
                    history.last_hold_gen()
                ),
            );
        }

        // 2. The commitments, dense.
        let mut entries: Vec<Hash> = Vec::with_capacity(self.size as usize);
        loop {
            let from = entries.len() as i64;
            let rows = self
                .tx
                .query(
                    "SELECT idx, commitment FROM entries WHERE log = $1 AND idx >= $2 \
                     ORDER BY idx LIMIT $3",
                    &[&self.id, &from, &(CHUNK * 10)],
                )
                .await
                .map_err(PgError::from)?;
            if rows.is_empty() {
                break;
            }
            let mut broken = false;
            for r in &rows {
                let idx: i64 = r.get(0);
                let c: &[u8] = r.get(1);
                let Ok(h) = Hash::try_from(c) else {
                    self.fail(format!("entries index {idx}"), "commitment is not 32 bytes");
                    broken = true;
                    break;
                };
                if idx != entries.len() as i64 {
                    self.fail(
                        format!("entries index {}", entries.len()),
                        format!(
                            "commitments {}..{idx} are missing: the log was cut",
                            entries.len()
                        ),
                    );
                    broken = true;
                    break;
                }
                entries.push(h);
            }
            if broken {
                break;
            }
        }
        self.lr.commitments = entries.len() as u64;
        if entries.len() as u64 != self.size {
            self.fail(
                "entries",
                format!(
                    "{} dense commitments but the log's size is {}: commitments were deleted or \
                     added",
                    entries.len(),
                    self.size
                ),
            );
        }

        // 3. Partitions: registered ⇔ present, each read in index order.
        let parts = self
            .tx
            .query(
                "SELECT period, relname, first_index FROM partitions WHERE log = $1 \
                 ORDER BY period",
                &[&self.id],
            )
            .await
            .map_err(PgError::from)?;
        let tables: Vec<String> = self
            .tx
            .query(
                "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
                 WHERE i.inhparent = to_regclass($1) ORDER BY 1",
                &[&format!("traces_{}", self.id)],
            )
            .await
            .map_err(PgError::from)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for t in &tables {
            if parts.iter().any(|p| p.get::<_, String>(1) == *t) {
                continue;
            }
            // The catalog is read as of now, the rest as of the snapshot: a
            // partition created since is empty in the snapshot.
            let rows =
                Self::snapshot_rows(side, snapshot, &format!("SELECT count(*) FROM {t}"), &[])
                    .await?;
            let n: i64 = rows
                .as_ref()
                .and_then(|r| r.first())
                .map_or(0, |r| r.get(0));
            if n > 0 {
                self.fail(
                    format!("table {t}"),
                    "a partition of the log that the partitions table does not register \
                     (added by hand?)",
                );
            }
        }
        let mut next = purged_upto;
        for p in &parts {
            let period: i64 = p.get(0);
            let relname: String = p.get(1);
            let first: i64 = p.get(2);
            if !tables.contains(&relname) {
                next = self.gone(side, &relname, first, next).await?;
                continue;
            }
            self.lr.partitions += 1;
            if first as u64 != next {
                self.fail(
                    format!("partition {relname}"),
                    format!(
                        "starts at index {first} but the traces before it end at {next}: traces \
                         are missing or duplicated"
                    ),
                );
                next = first.max(0) as u64;
            }
            let label = partition_label(&self.class, period, first);
            let keys = self.keys(&label, &format!("partition {relname}")).await?;
            let mut from = first;
            loop {
                let Some(rows) = Self::snapshot_rows(
                    side,
                    snapshot,
                    &format!(
                        "SELECT idx, received_at, record FROM {relname} WHERE idx >= $1 \
                         ORDER BY idx LIMIT $2"
                    ),
                    &[&from, &CHUNK],
                )
                .await?
                else {
                    next = self.gone(side, &relname, first, next).await?;
                    break;
                };
                let Some(last) = rows.last() else {
                    break;
                };
                from = last.get::<_, i64>(0) + 1;
                let n = rows.len() as u64;
                for r in rows {
                    let idx: i64 = r.get(0);
                    let at = format!("{relname} index {idx}");
                    if idx as u64 != next {
                        self.fail(
                            at.clone(),
                            format!(
                                "expected index {next}: traces {next}..{idx} are missing or \
                                 reordered"
                            ),
                        );
                    }
                    next = idx.max(0) as u64 + 1;
                    self.lr.traces += 1;
                    self.record(&at, idx, r.get(1), r.get(2), keys.as_ref(), &entries);
                }
                self.read(n);
            }
        }
        if next != self.size {
            self.fail(
                if next < self.size {
                    format!("indexes {next}..{}", self.size)
                } else {
                    format!("indexes {}..{next}", self.size)
                },
                if next < self.size {
                    format!(
                        "the log's size is {} but its traces end at {next}: traces were deleted",
                        self.size
                    )
                } else {
                    format!(
                        "traces beyond the log's size {}: the log was truncated or rows were added",
                        self.size
                    )
                },
            );
        }

        // 4. Held traces: the live hold generations, each still there.
        let gens: Vec<i32> = self
            .tx
            .query(
                "SELECT DISTINCT gen FROM held WHERE log = $1 ORDER BY gen",
                &[&self.id],
            )
            .await
            .map_err(PgError::from)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if authentic {
            for g in &live_holds {
                if !gens.contains(&(*g as i32)) {
                    self.fail(
                        format!("hold generation {g}"),
                        "named by the purge history but gone: traces kept by a legal hold were \
                         deleted",
                    );
                }
            }
        }
        for g in gens {
            if authentic && !live_holds.contains(&(g as u32)) {
                self.fail(
                    format!("hold generation {g}"),
                    "held traces that no purge record names (added by hand, or a generation \
                     that should have been replaced)",
                );
            }
            let label = hold_label(&self.class, g);
            let keys = self.keys(&label, &format!("hold generation {g}")).await?;
            let rows = self
                .tx
                .query(
                    "SELECT idx, received_at, record FROM held WHERE log = $1 AND gen = $2 \
                     ORDER BY idx",
                    &[&self.id, &g],
                )
                .await
                .map_err(PgError::from)?;
            let n = rows.len() as u64;
            for r in rows {
                let idx: i64 = r.get(0);
                let at = format!("held generation {g} index {idx}");
                if authentic && idx as u64 >= purged_upto {
                    self.fail(
                        at.clone(),
                        format!("held, but the purges stopped at index {purged_upto}"),
                    );
                }
                self.lr.traces += 1;
                self.record(&at, idx, r.get(1), r.get(2), keys.as_ref(), &entries);
            }
            self.read(n);
        }

        // 5. The tree, rebuilt from the commitments (edge only in memory),
        // against the stored tiles, and its roots at the checkpoints' sizes.
        let cps = self
            .tx
            .query(
                "SELECT size, root, note FROM checkpoints WHERE log = $1 ORDER BY size",
                &[&self.id],
            )
            .await
            .map_err(PgError::from)?;
        let tile_rows = self
            .tx
            .query(
                "SELECT level, n, hashes FROM tiles WHERE log = $1",
                &[&self.id],
            )
            .await
            .map_err(PgError::from)?;
        let mut stored: HashMap<TileKey, Result<FullTile, String>> = HashMap::new();
        let mut counts = [0u64; 8];
        for t in tile_rows {
            let level: i16 = t.get(0);
            let n: i64 = t.get(1);
            let hashes: &[u8] = t.get(2);
            let (Ok(l), Ok(n)) = (u8::try_from(level), u64::try_from(n)) else {
                self.fail(format!("tile {level}/{n}"), "malformed tile row");
                continue;
            };
            if let Some(c) = counts.get_mut(usize::from(l)) {
                *c += 1;
            } else {
                self.fail(format!("tile {level}/{n}"), "malformed tile row");
                continue;
            }
            let tile = if hashes.len() == 256 * 32 {
                Ok(registre_log::merkle::hashes(hashes).into())
            } else {
                Err("malformed tile row".to_owned())
            };
            stored.insert(TileKey { level: l, index: n }, tile);
        }
        let mut check = TreeCheck::new(cps.iter().map(|c| c.get::<_, i64>(0).max(0) as u64));
        let mut problems: Vec<(String, String)> = Vec::new();
        let mut problem = |k: TileKey, p: TileProblem| {
            let path = TileId::new(k.level, k.index, 256)
                .map(|t| t.path())
                .unwrap_or_else(|_| format!("tile {}/{}", k.level, k.index));
            let at = match &p {
                TileProblem::Differs(i) => format!("{path}, hash {i}"),
                TileProblem::Beyond(_) => format!("tiles of level {}", k.level),
                TileProblem::Damaged(_) => path,
            };
            problems.push((at, p.to_string()));
        };
        for e in &entries {
            check.push(e, &mut |k| stored.remove(&k), &mut problem);
        }
        check.check_counts(&mut |l| counts[usize::from(l)], &mut problem);
        self.lr.tiles = check.tiles;
        for (at, why) in problems {
            self.fail(at, why);
        }

        // 6. Checkpoints: signature, origin, root.
        let suffix = format!("/registre/{name}");
        let mut prev: Option<u64> = None;
        for c in cps {
            let size = c.get::<_, i64>(0).max(0) as u64;
            let root: &[u8] = c.get(1);
            let note: String = c.get(2);
            let place = format!("checkpoint of size {size}");
            self.lr.checkpoints += 1;
            let cp = match open_checkpoint(note.as_bytes(), self.verifiers) {
                Ok((cp, _)) => cp,
                Err(e) => {
                    self.fail(
                        place,
                        format!("signature does not verify with the log's key: {e}"),
                    );
                    continue;
                }
            };
            if cp.size() != size || cp.root().as_slice() != root {
                self.fail(
                    place.clone(),
                    "the signed note's size or root differs from the row's",
                );
            }
            if !cp.origin().ends_with(&suffix) {
                self.fail(
                    place.clone(),
                    format!("origin `{}` is not this log's (…{suffix})", cp.origin()),
                );
            }
            match check.root_at(cp.size()) {
                None => {
                    self.fail(
                        place,
                        format!(
                            "the log holds only {} commitments: it was truncated behind this \
                             checkpoint",
                            check.size()
                        ),
                    );
                    continue;
                }
                Some(r) if &r != cp.root() => {
                    self.fail(
                        place,
                        "root differs from the tree rebuilt from the commitments: history was \
                         rewritten",
                    );
                    continue;
                }
                Some(_) => {}
            }
            // Both roots are the rebuilt tree's: consistent by construction.
            prev = Some(cp.size());
            self.lr.verified_size = cp.size();
        }
        if self.size > 0 && prev.is_none() {
            self.notes.push(format!(
                "log {name}: no checkpoint yet (one is issued within the checkpoint interval \
                 of a running node)"
            ));
        }
        Ok(())
    }

    /// One stored record: opened, placed, and checked against its commitment.
    fn record(
        &mut self,
        at: &str,
        idx: i64,
        received_at: i64,
        mut record: Vec<u8>,
        keys: Option<&SegmentKeys>,
        entries: &[Hash],
    ) {
        let Some(keys) = keys else {
            return;
        };
        let name = self.class.as_str();
        let Some(plain) = keys.open(name, idx as u64, &mut record) else {
            self.fail(
                at,
                format!(
                    "record of index {idx} does not open with its data key: altered, or moved \
                     from another place"
                ),
            );
            return;
        };
        let plain: &[u8] = plain;
        match at_rest::decode_record(plain) {
            Ok(rec) => {
                let t = &rec.trace;
                if t.index != idx as u64 || t.log.as_str() != name {
                    self.fail(
                        at,
                        format!(
                            "record claims log `{}` index {}: records were moved",
                            t.log, t.index
                        ),
                    );
                }
                if t.received_at != format_received_at(received_at) {
                    self.fail(
                        at,
                        "the row's reception time differs from the record's (altered)",
                    );
                }
            }
            Err(why) => self.fail(at, format!("record of index {idx}: {why}")),
        }
        match entries.get(idx as usize) {
            Some(c) if *c == at_rest::commitment(plain) => {}
            Some(_) => self.fail(
                at,
                "the record's commitment differs from the one in the Merkle log: altered",
            ),
            None => self.fail(at, "no commitment in the Merkle log for this record"),
        }
    }
}
