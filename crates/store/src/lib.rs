//! Durable storage for registre.
//!
//! [`Store`] is what every backend implements (the embedded store here, the
//! PostgreSQL store later); intake layers hand it validated [`Trace`]s and it
//! answers with [`Receipt`]s only once the traces are durable.
//!
//! [`EmbeddedStore`] is the default backend: per class, an append-only log of
//! segment files with CRC32C-framed records, group-committed with one
//! `fdatasync` per batch of concurrent requests. Its on-disk format is
//! documented byte by byte in `docs/format.md`.

pub mod clock;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod crypto;
mod cursor;
mod embedded;
mod error;
pub mod hold;
pub mod keys;
mod query;
mod store;
pub mod treecheck;
pub mod vfs;

/// The at-rest form every backend shares (the PostgreSQL store uses the
/// embedded store's): a record's plaintext and commitment, the blind index
/// values, and the authenticated purge history records.
pub mod at_rest {
    pub use crate::embedded::codec::{pack_plaintext, unpack_plaintext};
    pub use crate::embedded::index::{Key, Keys, key_hash, keys_of};
    pub use crate::embedded::log::{commitment, decode_record};
    pub use crate::embedded::purged::{History, Purged, RECORD_LEN as PURGE_RECORD_LEN};
}

pub use cursor::Cursor;
pub use embedded::SignedCheckpoint;
/// Raw records and files of a data directory (`registre migrate`).
pub use embedded::raw;
pub use embedded::{
    EmbeddedOptions, EmbeddedStore, Failure, LogPurge, PurgeReport, PurgeRequest, Report,
    commitment, data_dir_bytes, lock_dir, verify_data_dir,
};
pub use error::{AppendError, IntegrityError, OpenError, PurgeError, SearchError};
pub use hold::{Hold, HoldError, HoldFilter};
pub use query::{Page, Query, StoredRecord};
pub use store::{BoxFuture, LogInfo, LogStats, Receipt, Store};

pub use registre_model::{ClassName, StoredTrace, Trace};
