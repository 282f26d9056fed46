//! The `Store` trait every backend implements.

use std::future::Future;
use std::pin::Pin;

use registre_model::{ClassName, Trace};
use serde::Serialize;
use uuid::Uuid;

use crate::{AppendError, Page, Query, SearchError};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a trace landed: its log, its position in that log, its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Receipt {
    pub log: ClassName,
    pub index: u64,
    pub id: Uuid,
}

/// What a log holds right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogStats {
    pub log: ClassName,
    /// Number of durable traces (the next index).
    pub size: u64,
    pub segments: usize,
    pub bytes: u64,
}

/// A durable, searchable journal of traces.
///
/// Contract (checked by the conformance tests):
/// - `append` resolves `Ok` only after every trace of the call is durable;
///   the receipts are in the order of the input. On `Err`, the caller must
///   assume nothing was acknowledged (some traces may still have been made
///   durable, never half of one).
/// - A trace is visible to `search` only once durable.
/// - Indexes in one log are dense and increasing from 0.
pub trait Store: Send + Sync + 'static {
    fn append(&self, traces: Vec<Trace>) -> BoxFuture<'_, Result<Vec<Receipt>, AppendError>>;

    /// Newest first (by reception), filtered, paged by an opaque cursor.
    fn search(&self, query: Query) -> BoxFuture<'_, Result<Page, SearchError>>;

    /// The classes (logs) this store accepts.
    fn classes(&self) -> Vec<ClassName>;

    fn stats(&self) -> Vec<LogStats>;
}
