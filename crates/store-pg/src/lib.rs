//! The PostgreSQL backend of registre's [`Store`]: several stateless
//! registre nodes on one PostgreSQL database (which brings its own
//! replication and high availability), with the guarantees of the embedded
//! store — acknowledged ⇒ durable, dense indexes per log, sealed records and
//! blind indexes, crypto-shredding purge, legal holds, C2SP checkpoints,
//! tiles and proofs — checked by the same conformance suite
//! (`registre_store::conformance`).
//!
//! # Schema
//!
//! Created and migrated by registre itself when a store opens: versioned
//! migrations embedded in the binary ([`MIGRATIONS`], `migrations/*.sql`),
//! applied in one transaction under an advisory lock (nodes starting
//! together apply them once), recorded in `registre_schema`. A database
//! whose schema is newer than this binary knows is refused
//! ([`PgOpenError::NewerSchema`]). Everything lives in one PostgreSQL schema
//! (`PgOptions::schema`, default `registre`), so one database can hold
//! several journals (and the tests run in parallel, one schema each).
//!
//! | table | holds |
//! |---|---|
//! | `meta` | the master key id, the checkpoint signing key and the legal holds, both sealed with the master key |
//! | `logs` | one row per class: id, name, next index (`size`), latest reception time, newest hold generation |
//! | `data_keys` | each partition's data and index keys wrapped by the master key (the embedded 108-byte key file format), by label |
//! | `partitions` | the live partitions: (log, period) → table name, first index |
//! | `traces` | the sealed records and their blind index values, partitioned by class then period |
//! | `held` | traces a legal hold kept when their partition was purged, re-sealed under a hold key |
//! | `entries`, `tiles`, `checkpoints` | the Merkle log: every commitment, full tiles, every signed checkpoint |
//! | `purges` | the authenticated purge history (the embedded 64-byte records, HMAC under the log's history key) |
//!
//! No column holds a personal value in clear: `record` is
//! `nonce ‖ AES-256-GCM(salt ‖ JCS(trace)) ‖ tag` with the class and index as
//! associated data (byte for byte the embedded store's record), `actor`,
//! `mailbox`, `patient` are 64-bit `HMAC-SHA-256` blind values under the
//! partition's index key, `action` an unkeyed hash of the public vocabulary.
//! The master key never goes to PostgreSQL; only its id does.
//!
//! # Partitioning
//!
//! `traces` is `PARTITION BY LIST (log)`; each class's `traces_<log id>` is
//! `PARTITION BY LIST (period)`, the start (µs) of the reception period
//! (one day by default, per class configurable); the leaves are
//! `traces_<log id>_<period start in seconds>`, created by the append that
//! first needs one, in its transaction, with a fresh data key. Reception
//! times never go back along a log, so a partition holds a contiguous range
//! of indexes and partitions expire in order. Log ids, not class names, make
//! the table names (names stay safe identifiers whatever the classes).
//!
//! # Sequencing: one writer per log at a time
//!
//! Each node runs, per log, a group-commit task: the appends queued while
//! the previous transaction ran become one transaction, which
//! 1. takes `pg_advisory_xact_lock(<schema hash>, <log id>)` — the log's
//!    election: one writer at a time across every node, released by COMMIT
//!    or ROLLBACK, so a node that dies mid-batch frees it at once;
//! 2. reads the log's `size` and `last_time` with `SELECT … FOR UPDATE`;
//! 3. assigns indexes, ids, salts, the reception time; seals, hashes and
//!    blinds the records; creates the period's partition if needed;
//! 4. inserts the records, their commitments (`entries`) and the new size;
//! 5. COMMITs (`synchronous_commit = on` on every connection).
//!
//! Receipts are answered only after the COMMIT returned. Nodes "take the
//! lock in turn" instead of forwarding batches to an elected leader: no
//! leader to elect or fail over, no forwarding protocol, and the lock is
//! held only for one transaction, so under contention nodes alternate batch
//! by batch. An error anywhere (PostgreSQL down, connection lost, even
//! during COMMIT) answers every append of the batch with
//! [`AppendError::Unavailable`] (503): never a false ack; a batch whose
//! COMMIT outcome is unknown may be durable, which the `Store` contract
//! allows (never half of one).
//!
//! Each node keeps its own copy of each log's Merkle tree in memory and
//! catches it up from `entries` before it serves a tile, proof or
//! checkpoint (commitments are committed densely in index order, under the
//! lock). Checkpoints are issued under the same lock (so sizes only grow and
//! no two nodes sign two different trees of one size) by whichever node
//! asks first: every node's periodic checkpointer, or a request with
//! `fresh`. Every node serves tiles, checkpoints, proofs and searches.
//!
//! # Purge
//!
//! Per log, in one transaction under the log's lock (appends to that log
//! wait; other logs go on): a checkpoint is issued if the log grew (the
//! commitments of what goes stay provable); held traces already kept are
//! re-examined; then the partitions entirely past retention, oldest first:
//! the traces a hold matches are re-sealed under a new hold key into `held`,
//! an authenticated purge record is written, the partition's key row is
//! deleted, then the partition is dropped (`DROP TABLE`). PostgreSQL's
//! transactional DDL makes the whole step atomic: after a crash either
//! nothing or all of it happened, so there is nothing to finish at the next
//! start. After the commit, `VACUUM data_keys` removes the dead key rows
//! from the table's pages (a base backup or WAL archive taken before keeps
//! them, as a backup of the embedded key files would: it is the master key,
//! never in PostgreSQL, that protects those).
//!
//! # TLS
//!
//! `sslmode=require` in the URL: TLS with the server's certificate verified
//! (against `sslrootcert=<PEM file>` in the URL or [`PgOptions::tls_root_cert`],
//! else the system's roots) — stricter than libpq's `require`. Without it (or
//! `disable`, `prefer`), no TLS.
//!
//! [`Store`]: registre_store::Store
//! [`AppendError::Unavailable`]: registre_store::AppendError::Unavailable

pub mod migrate;
mod pool;
mod schema;
mod search;
mod store;
pub mod tls;
mod tree;
pub mod verify;

pub use schema::{LATEST_VERSION, MIGRATIONS};
pub use store::{PgOptions, PgStore, rotate_master};

/// Opening a PostgreSQL store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgOpenError {
    #[error("invalid PostgreSQL store configuration: {0}")]
    Config(String),
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(String),
    #[error(
        "the database schema is at version {found} but this registre knows versions up to \
         {known} only: a newer registre migrated it; run that version (nothing was touched)"
    )]
    NewerSchema { found: i32, known: i32 },
    /// The master key is not the database's (nothing was touched).
    #[error("{0}")]
    Key(String),
    #[error("the journal in PostgreSQL is inconsistent: {0}")]
    Corrupt(String),
    #[error("PostgreSQL: {0}")]
    Db(String),
}

/// An operation against PostgreSQL failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgError {
    #[error("PostgreSQL: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("{0}")]
    Unavailable(String),
    #[error("inconsistent data: {0}")]
    Corrupt(String),
    #[error("keys: {0}")]
    Crypto(String),
}

impl From<PgError> for PgOpenError {
    fn from(e: PgError) -> PgOpenError {
        match e {
            PgError::Db(e) if e.is_closed() || e.as_db_error().is_none() => {
                PgOpenError::Connect(error_text(&e))
            }
            PgError::Db(e) => PgOpenError::Db(error_text(&e)),
            PgError::Corrupt(why) => PgOpenError::Corrupt(why),
            PgError::Crypto(why) => PgOpenError::Key(why),
            e => PgOpenError::Db(e.to_string()),
        }
    }
}

/// A driver error with what it hides behind `db error` / `error connecting
/// to server`: the server's message and SQLSTATE (never its detail, which
/// may quote row values), or the I/O cause.
pub fn error_text(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(x) = src {
        s.push_str(&format!(": {x}"));
        src = x.source();
    }
    s
}

impl From<registre_store::crypto::CryptoError> for PgError {
    fn from(e: registre_store::crypto::CryptoError) -> PgError {
        PgError::Crypto(e.to_string())
    }
}
