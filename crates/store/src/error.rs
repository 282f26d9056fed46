//! One error type per operation.

use std::io;
use std::path::PathBuf;

/// Opening a store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error(
        "the data directory {0} is in use by another registre process (lock held on its LOCK file); \
         stop the other process or choose another --data directory"
    )]
    Locked(PathBuf),
    /// The master key is missing, wrong or unreadable (nothing was touched).
    #[error("{0}")]
    Key(String),
    #[error("cannot use the data directory {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "corrupt data in {path} at byte {offset}: {reason}; registre will not guess: restore this file from a backup (docs/format.md describes the layout)"
    )]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
}

/// Appending failed; the caller must not acknowledge the traces.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// Storage failed (write or fsync); the log refuses further appends until
    /// the process restarts and recovers it.
    #[error("the journal cannot make traces durable right now ({0}); nothing was acknowledged")]
    Unavailable(String),
    #[error("unknown class `{0}`")]
    UnknownClass(String),
    #[error("the store is shutting down")]
    ShuttingDown,
}

/// Searching failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SearchError {
    #[error("invalid cursor: {0}")]
    BadCursor(&'static str),
    #[error("unknown class `{0}`")]
    UnknownClass(String),
    #[error("reading the journal failed: {0}")]
    Io(#[from] io::Error),
    /// The backing database cannot answer (PostgreSQL down or failing).
    #[error("the journal cannot be read right now: {0}")]
    Unavailable(String),
    #[error("corrupt record in log {log} at index {index}: {reason}")]
    Corrupt {
        log: String,
        index: u64,
        reason: String,
    },
}

/// An integrity request (tile, proof, checkpoint) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IntegrityError {
    #[error("unknown log `{0}`")]
    UnknownLog(String),
    #[error("{0}")]
    OutOfRange(String),
    #[error("storage error: {0}")]
    Io(#[from] io::Error),
    /// The backing database cannot answer (PostgreSQL down or failing).
    #[error("storage error: {0}")]
    Unavailable(String),
}

/// A purge failed part way; what was purged before the failure is recorded
/// in each log's purge history.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PurgeError {
    #[error("the purge failed: {0}")]
    Failed(String),
}
