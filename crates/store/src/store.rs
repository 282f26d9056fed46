//! The `Store` trait every backend implements.

use std::future::Future;
use std::pin::Pin;

use registre_model::{ClassName, Trace};
use serde::Serialize;
use uuid::Uuid;

use registre_log::merkle::Hash;
use registre_log::tile::TilePath;

use crate::{
    AppendError, Hold, HoldError, IntegrityError, Page, PurgeError, PurgeReport, PurgeRequest,
    Query, SearchError, SignedCheckpoint,
};

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

    /// The classes (logs) this store accepts (fixed when it is opened).
    fn classes(&self) -> Vec<ClassName>;

    fn stats(&self) -> BoxFuture<'_, Result<Vec<LogStats>, IntegrityError>>;

    /// Each log's origin, size and latest checkpoint.
    fn logs(&self) -> BoxFuture<'_, Result<Vec<LogInfo>, IntegrityError>>;

    /// The verifier key of the checkpoint signer
    /// (`<name>+<hex key id>+<base64(0x01‖pubkey)>`).
    fn verifier_key(&self) -> String;

    /// The latest checkpoint of `log`; with `fresh`, first issue a new one if
    /// the log grew since (checkpoints on demand).
    fn checkpoint(
        &self,
        log: &str,
        fresh: bool,
    ) -> BoxFuture<'_, Result<Option<SignedCheckpoint>, IntegrityError>>;

    /// Every checkpoint ever issued for `log`, oldest first.
    fn checkpoint_history(
        &self,
        log: &str,
    ) -> BoxFuture<'_, Result<Vec<SignedCheckpoint>, IntegrityError>>;

    /// The bytes of a tile or entry bundle (C2SP tlog-tiles).
    fn tile(&self, log: &str, tile: TilePath) -> BoxFuture<'_, Result<Vec<u8>, IntegrityError>>;

    /// RFC 6962 inclusion proof of `index` in the tree of `size` leaves.
    fn inclusion_proof(
        &self,
        log: &str,
        index: u64,
        size: u64,
    ) -> BoxFuture<'_, Result<Vec<Hash>, IntegrityError>>;

    /// RFC 6962 consistency proof between two tree sizes.
    fn consistency_proof(
        &self,
        log: &str,
        from: u64,
        to: u64,
    ) -> BoxFuture<'_, Result<Vec<Hash>, IntegrityError>>;

    /// Destroys, in each log of `req.retention`, the traces past its
    /// retention that no active legal hold (nor `req.holds`) matches:
    /// whole segments, data key first (crypto-shredding). Commitments,
    /// tiles and checkpoints stay.
    fn purge(&self, req: PurgeRequest) -> BoxFuture<'_, Result<PurgeReport, PurgeError>>;

    /// Every legal hold, released ones included.
    fn holds(&self) -> BoxFuture<'_, Result<Vec<Hold>, HoldError>>;

    fn add_hold(&self, hold: Hold) -> BoxFuture<'_, Result<Hold, HoldError>>;

    fn release_hold(
        &self,
        id: String,
        by: String,
        at: String,
    ) -> BoxFuture<'_, Result<Hold, HoldError>>;
}

/// A log as the integrity surface describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogInfo {
    pub log: ClassName,
    /// Checkpoint origin line.
    pub origin: String,
    /// Durable traces (tree size).
    pub size: u64,
    /// Size of the latest signed checkpoint (0 when none yet).
    pub checkpoint_size: u64,
}
