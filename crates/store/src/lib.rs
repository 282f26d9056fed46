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
pub mod crypto;
mod cursor;
mod embedded;
mod error;
pub mod hold;
pub mod keys;
mod query;
mod store;
pub mod vfs;

pub use cursor::Cursor;
pub use embedded::SignedCheckpoint;
pub use embedded::{
    EmbeddedOptions, EmbeddedStore, Failure, LogPurge, PurgeReport, PurgeRequest, Report,
    commitment, data_dir_bytes, lock_dir, verify_data_dir,
};
pub use error::{AppendError, IntegrityError, OpenError, PurgeError, SearchError};
pub use hold::{Hold, HoldError, HoldFilter};
pub use query::{Page, Query, StoredRecord};
pub use store::{BoxFuture, LogInfo, LogStats, Receipt, Store};

pub use registre_model::{ClassName, StoredTrace, Trace};
