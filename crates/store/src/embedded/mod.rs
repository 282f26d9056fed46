//! The embedded store: one directory, one append-only log per class.
//!
//! Layout of the data directory:
//! ```text
//! <data>/LOCK                          exclusive lock (flock) while open
//! <data>/logs/<class>/<first:020>.seg   segment files (see format.rs)
//! <data>/logs/<class>/hold-<gen:06>.seg  hold segments (traces kept by a legal hold)
//! <data>/logs/<class>/purged            purge history (see purged.rs)
//! <data>/keys/master.key, master.id      the master key (or an operator's file) and its id
//! <data>/keys/data/<class>/<stem>.key    each segment's wrapped data and index keys
//! ```
//!
//! Invariants:
//! 1. A trace is acknowledged (its `append` resolves `Ok`) only after the
//!    frame holding it has been written and `fdatasync`ed.
//! 2. A trace becomes visible to searches only after the same point.
//! 3. Indexes in a log are dense from 0; segment *k+1* starts where *k* ends.
//! 4. After a failed write or sync, the log refuses appends (the page cache
//!    can no longer be trusted) until reopened; reopening recovers.
//! 5. Recovery truncates a torn tail of the newest segment only; damage
//!    anywhere else is corruption and stops the open with its location.

pub(crate) mod codec;
mod format;
pub(crate) mod index;
pub(crate) mod log;
pub(crate) mod purged;
pub mod raw;
pub(crate) mod tiles;
mod tree;
pub mod verify;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use registre_model::{ClassName, Trace};

use self::log::{Log, LogOptions, PurgeOrder, Stop};
pub use self::log::{LogHit, LogPurge, commitment};
pub use self::tree::SignedCheckpoint;
pub use self::verify::{Failure, Report, data_dir_bytes, verify_data_dir};
use crate::clock::{Clock, SystemClock};
use crate::crypto::MasterKey;
use crate::vfs::{OsVfs, Vfs};
use registre_log::merkle::{self, Hash};
use registre_log::note::Signer;
use registre_log::tile::TilePath;

use crate::{
    AppendError, BoxFuture, Cursor, Hold, HoldError, IntegrityError, LogInfo, LogStats, OpenError,
    Page, PurgeError, Query, Receipt, SearchError, Store,
};

/// How the embedded store is run.
#[derive(Clone)]
pub struct EmbeddedOptions {
    /// The classes (one log each).
    pub classes: Vec<ClassName>,
    /// Segments are rolled when the reception time enters a new period of
    /// this many seconds (UTC-aligned; default one day), so a whole segment
    /// expires at once.
    pub segment_period_secs: u64,
    /// Per-class segment periods in seconds, overriding `segment_period_secs`.
    pub segment_periods: BTreeMap<String, u64>,
    /// Segments are also rolled past this size.
    pub max_segment_bytes: u64,
    /// Most traces one group commit takes.
    pub max_group: usize,
    /// Instance name: checkpoint origins are `<instance>/registre/<class>`
    /// and the signing key is named `<instance>/registre`.
    pub instance: String,
    /// A new checkpoint is issued this often while a log grows.
    pub checkpoint_interval: std::time::Duration,
    /// The checkpoint signer; by default the key in `<data>/keys/` (created
    /// on first open), or an ephemeral key for `open_with_vfs`.
    pub signer: Option<Arc<Signer>>,
    /// Commitments and Merkle tree on (the default). Off only to measure
    /// their cost in `registre-bench`: traces appended without them get their
    /// commitments recomputed from the records at the next open.
    pub merkle: bool,
    /// The master key; by default read from `master_key_file`, or from
    /// `<data>/keys/master.key` (created with a new data directory).
    pub master_key: Option<Arc<MasterKey>>,
    /// An operator-provided master key file.
    pub master_key_file: Option<PathBuf>,
    /// Where reception times and retention read the time.
    pub clock: Arc<dyn Clock>,
    /// Records sealed and indexes blinded (the default). Off ONLY to
    /// measure their cost in `registre-bench`: a store written without them
    /// cannot be read back.
    #[doc(hidden)]
    pub at_rest_crypto: bool,
}

impl EmbeddedOptions {
    pub fn new(classes: Vec<ClassName>) -> EmbeddedOptions {
        EmbeddedOptions {
            classes,
            segment_period_secs: 86_400,
            max_segment_bytes: 32 << 20,
            max_group: 100_000,
            instance: "localhost".to_owned(),
            checkpoint_interval: std::time::Duration::from_secs(10),
            signer: None,
            merkle: true,
            segment_periods: BTreeMap::new(),
            master_key: None,
            master_key_file: None,
            clock: Arc::new(SystemClock),
            at_rest_crypto: true,
        }
    }
}

pub struct EmbeddedStore {
    dir: PathBuf,
    holds: Arc<crate::hold::HoldBook>,
    logs: BTreeMap<String, Arc<Log>>,
    clock: Arc<dyn Clock>,
    signer: Arc<Signer>,
    checkpointer: Option<Checkpointer>,
    _lock: Option<File>,
}

/// Issues a checkpoint of each grown log every interval.
struct Checkpointer {
    stop: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        if let Some(mut c) = self.checkpointer.take() {
            let (lock, cv) = &*c.stop;
            *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
            cv.notify_all();
            if let Some(t) = c.thread.take() {
                let _ = t.join();
            }
        }
    }
}

impl EmbeddedStore {
    /// Opens (creating if needed) the data directory `dir` on the real file
    /// system, taking its exclusive lock.
    pub fn open(dir: &Path, opts: EmbeddedOptions) -> Result<EmbeddedStore, OpenError> {
        let io = |source| OpenError::Io {
            path: dir.to_owned(),
            source,
        };
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(dir)
            .map_err(io)?;
        let lock = lock_dir(dir)?;
        let mut opts = opts;
        if opts.master_key.is_none() {
            // Checked before anything in the directory is touched.
            let master = crate::crypto::load_master(dir, opts.master_key_file.as_deref())
                .map_err(|e| OpenError::Key(e.to_string()))?;
            opts.master_key = Some(Arc::new(master));
        }
        if opts.signer.is_none() {
            let name = format!("{}/registre", opts.instance);
            // A journal with signed history must keep its key: a new one
            // would silently break every verifier's trust.
            if !crate::keys::key_path(dir).exists() && has_checkpoints(dir) {
                return Err(OpenError::Io {
                    path: crate::keys::key_path(dir),
                    source: std::io::Error::other(
                        "the checkpoint signing key is missing but this journal has signed \
                         checkpoints; restore keys/checkpoint.key from a backup (registre will \
                         not sign with a new key behind its verifiers' back)",
                    ),
                });
            }
            let signer = crate::keys::load_or_create(dir, &name).map_err(|e| OpenError::Io {
                path: crate::keys::key_path(dir),
                source: std::io::Error::other(e.to_string()),
            })?;
            opts.signer = Some(Arc::new(signer));
        }
        let mut store = Self::open_inner(dir, opts, Arc::new(OsVfs), true)?;
        store._lock = Some(lock);
        Ok(store)
    }

    /// Opens on any storage backend (no process lock): for fault injection.
    /// Legal holds are kept in memory only here.
    pub fn open_with_vfs(
        dir: &Path,
        opts: EmbeddedOptions,
        vfs: Arc<dyn Vfs>,
    ) -> Result<EmbeddedStore, OpenError> {
        Self::open_inner(dir, opts, vfs, false)
    }

    fn open_inner(
        dir: &Path,
        opts: EmbeddedOptions,
        vfs: Arc<dyn Vfs>,
        persistent_holds: bool,
    ) -> Result<EmbeddedStore, OpenError> {
        let signer = match &opts.signer {
            Some(s) => s.clone(),
            None => Arc::new(
                crate::keys::ephemeral(&format!("{}/registre", opts.instance)).map_err(|e| {
                    OpenError::Io {
                        path: dir.to_owned(),
                        source: std::io::Error::other(e.to_string()),
                    }
                })?,
            ),
        };
        // Without a given key, an ephemeral one (like the signer): a store
        // reopened on the same files must be given the same key.
        let master = match &opts.master_key {
            Some(m) => m.clone(),
            None => Arc::new(
                crate::crypto::MasterKey::generate()
                    .map_err(|e| OpenError::Key(e.to_string()))?
                    .0,
            ),
        };
        let holds = Arc::new(
            crate::hold::HoldBook::open(persistent_holds.then_some(dir), master.clone())
                .map_err(|e| OpenError::Key(e.to_string()))?,
        );
        let mut logs = BTreeMap::new();
        for class in &opts.classes {
            let log_dir = dir.join("logs").join(class.as_str());
            let period = opts
                .segment_periods
                .get(class.as_str())
                .copied()
                .unwrap_or(opts.segment_period_secs);
            let lopts = LogOptions {
                merkle: opts.merkle,
                origin: format!("{}/registre/{}", opts.instance, class.as_str()),
                period_micros: (period.max(1) as i64).saturating_mul(1_000_000),
                max_segment_bytes: opts.max_segment_bytes,
                max_group: opts.max_group.max(1),
                master: master.clone(),
                key_dir: crate::crypto::data_key_dir(dir, class.as_str()),
                clock: opts.clock.clone(),
                at_rest_crypto: opts.at_rest_crypto,
            };
            let log = Log::open(class.clone(), log_dir, vfs.clone(), lopts)?;
            logs.insert(class.as_str().to_owned(), Arc::new(log));
        }
        let checkpointer = Some(spawn_checkpointer(
            logs.values().cloned().collect(),
            signer.clone(),
            opts.checkpoint_interval,
        ));
        Ok(EmbeddedStore {
            dir: dir.to_owned(),
            holds,
            logs,
            clock: opts.clock.clone(),
            signer,
            checkpointer,
            _lock: None,
        })
    }

    fn log(&self, name: &str) -> Result<&Arc<Log>, IntegrityError> {
        self.logs
            .get(name)
            .ok_or_else(|| IntegrityError::UnknownLog(name.to_owned()))
    }

    /// Issues a checkpoint of every log that grew since its last one.
    pub fn checkpoint_all(&self) -> std::io::Result<()> {
        for log in self.logs.values() {
            if log.tree.latest().is_none_or(|c| c.size < log.tree.size()) {
                log.tree.checkpoint(&self.signer)?;
            }
        }
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The store's clock (reception times, retention).
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Purges, in each log named in `req.retention`, every segment entirely
    /// past its retention, keeping what a hold matches. Logs are purged one
    /// after the other; appends to a log wait while it is purged.
    pub async fn purge(&self, req: PurgeRequest) -> Result<PurgeReport, PurgeError> {
        let now = self.clock.now_micros();
        let mut holds = req.holds.clone();
        holds.extend(self.holds.active_queries());
        let mut report = PurgeReport {
            dry_run: req.dry_run,
            at: registre_model::format_received_at(now),
            logs: Vec::new(),
        };
        for (class, retention) in &req.retention {
            let Some(log) = self.logs.get(class.as_str()) else {
                continue;
            };
            let order = PurgeOrder {
                cutoff: retention.cutoff(now),
                holds: holds.clone(),
                dry_run: req.dry_run,
                signer: self.signer.clone(),
                progress: req.progress.clone(),
            };
            let mut r = log.purge(order).await.map_err(PurgeError::Failed)?;
            r.retention = retention.to_string();
            report.logs.push(r);
        }
        Ok(report)
    }

    /// Approximate bytes of index held in memory, all logs.
    pub fn index_heap_bytes(&self) -> usize {
        self.logs.values().map(|l| l.index_heap_bytes()).sum()
    }

    async fn append_inner(&self, traces: Vec<Trace>) -> Result<Vec<Receipt>, AppendError> {
        let total = traces.len();
        let mut per_log: BTreeMap<&str, Vec<(usize, Trace)>> = BTreeMap::new();
        for (i, t) in traces.into_iter().enumerate() {
            let Some((name, _)) = self.logs.get_key_value(t.class.as_str()) else {
                return Err(AppendError::UnknownClass(t.class.as_str().to_owned()));
            };
            per_log.entry(name.as_str()).or_default().push((i, t));
        }
        let mut waits = Vec::with_capacity(per_log.len());
        for (name, batch) in per_log {
            // Present: looked up just above.
            let Some(log) = self.logs.get(name) else {
                continue;
            };
            waits.push(log.submit(batch).await?);
        }
        let mut out: Vec<Option<Receipt>> = vec![None; total];
        for w in waits {
            let got = w.await.map_err(|_| AppendError::ShuttingDown)??;
            for (pos, r) in got {
                out[pos] = Some(r);
            }
        }
        out.into_iter()
            .map(|r| r.ok_or(AppendError::ShuttingDown))
            .collect()
    }

    /// The logs a query searches.
    fn logs_of(&self, q: &Query) -> Result<Vec<Arc<Log>>, SearchError> {
        Ok(match &q.class {
            Some(c) => vec![
                self.logs
                    .get(c.as_str())
                    .ok_or_else(|| SearchError::UnknownClass(c.as_str().to_owned()))?
                    .clone(),
            ],
            None => self.logs.values().cloned().collect(),
        })
    }
}

/// Searches `logs` (file reads: run off the async threads).
fn search_logs(logs: Vec<Arc<Log>>, q: Query) -> Result<Page, SearchError> {
    {
        let limit = q.limit.clamp(1, 10_000);
        let logs: Vec<&Arc<Log>> = logs.iter().collect();
        let mut hits: Vec<(usize, LogHit)> = Vec::new();
        let mut state: Vec<(u64, Stop)> = Vec::with_capacity(logs.len());
        for (li, log) in logs.iter().enumerate() {
            let bound = q
                .cursor
                .as_ref()
                .and_then(|c| c.bound(log.name().as_str()))
                .unwrap_or_else(|| log.size());
            let (found, stop) = if bound == 0 {
                (Vec::new(), Stop::Exhausted)
            } else {
                log.search(&q, limit, bound)?
            };
            state.push((bound, stop));
            hits.extend(found.into_iter().map(|h| (li, h)));
        }
        hits.sort_by(|a, b| {
            b.1.received_at
                .cmp(&a.1.received_at)
                .then_with(|| a.0.cmp(&b.0))
                .then_with(|| b.1.record.trace.index.cmp(&a.1.record.trace.index))
        });
        let returned: Vec<usize> = (0..logs.len())
            .map(|li| hits.iter().filter(|h| h.0 == li).count())
            .collect();
        let mut taken = vec![0usize; logs.len()];
        let mut last_taken: Vec<Option<u64>> = vec![None; logs.len()];
        let mut traces = Vec::with_capacity(limit.min(hits.len()));
        for (li, h) in hits.into_iter().take(limit) {
            taken[li] += 1;
            last_taken[li] = Some(h.record.trace.index);
            traces.push(h.record);
        }
        let mut more = false;
        let mut bounds: Vec<u64> = Vec::with_capacity(logs.len());
        for li in 0..logs.len() {
            let (prior, stop) = state[li];
            let bound = if taken[li] < returned[li] {
                // Hits left out of this page: resume just below the last
                // one shown (or where this page started).
                more = true;
                last_taken[li].unwrap_or(prior)
            } else {
                match stop {
                    Stop::Exhausted => 0,
                    Stop::Limit => {
                        more = true;
                        last_taken[li].unwrap_or(prior)
                    }
                    Stop::Budget(resume) => {
                        more = true;
                        resume.min(last_taken[li].unwrap_or(resume))
                    }
                }
            };
            bounds.push(bound);
        }
        let next = more.then(|| Cursor {
            bounds: logs
                .iter()
                .zip(&bounds)
                .map(|(l, b)| (l.name().as_str().to_owned(), *b))
                .collect(),
        });
        Ok(Page { traces, next })
    }
}

impl Store for EmbeddedStore {
    fn purge(&self, req: PurgeRequest) -> BoxFuture<'_, Result<PurgeReport, PurgeError>> {
        Box::pin(EmbeddedStore::purge(self, req))
    }

    fn holds(&self) -> BoxFuture<'_, Result<Vec<Hold>, HoldError>> {
        let r = Ok(self.holds.list());
        Box::pin(async move { r })
    }

    fn add_hold(&self, hold: Hold) -> BoxFuture<'_, Result<Hold, HoldError>> {
        let book = self.holds.clone();
        Box::pin(async move {
            // A small file written and fsynced: off the async threads.
            tokio::task::spawn_blocking(move || book.add(hold))
                .await
                .map_err(|e| HoldError::Storage(e.to_string()))?
        })
    }

    fn release_hold(
        &self,
        id: String,
        by: String,
        at: String,
    ) -> BoxFuture<'_, Result<Hold, HoldError>> {
        let book = self.holds.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || book.release(&id, &by, &at))
                .await
                .map_err(|e| HoldError::Storage(e.to_string()))?
        })
    }

    fn append(&self, traces: Vec<Trace>) -> BoxFuture<'_, Result<Vec<Receipt>, AppendError>> {
        Box::pin(self.append_inner(traces))
    }

    fn search(&self, query: Query) -> BoxFuture<'_, Result<Page, SearchError>> {
        let logs = self.logs_of(&query);
        Box::pin(async move {
            let logs = logs?;
            // File reads and JSON decoding, bounded by the scan budget. On a
            // multi-threaded runtime the worker hands its other tasks over
            // while it reads (no thread hop: a spawn_blocking round trip
            // cost ~60 µs here), so ingest acknowledgements never wait.
            let multi = tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
            if multi {
                tokio::task::block_in_place(move || search_logs(logs, query))
            } else {
                search_logs(logs, query)
            }
        })
    }

    fn classes(&self) -> Vec<ClassName> {
        self.logs.values().map(|l| l.name().clone()).collect()
    }

    fn stats(&self) -> BoxFuture<'_, Result<Vec<LogStats>, IntegrityError>> {
        let r = Ok(EmbeddedStore::stats(self));
        Box::pin(async move { r })
    }

    fn logs(&self) -> BoxFuture<'_, Result<Vec<LogInfo>, IntegrityError>> {
        let r = Ok(EmbeddedStore::logs(self));
        Box::pin(async move { r })
    }

    fn verifier_key(&self) -> String {
        self.signer.verifier_key()
    }

    fn checkpoint(
        &self,
        log: &str,
        fresh: bool,
    ) -> BoxFuture<'_, Result<Option<SignedCheckpoint>, IntegrityError>> {
        let r = (|| {
            let l = self.log(log)?;
            if fresh && l.tree.latest().is_none_or(|c| c.size < l.tree.size()) {
                return Ok(Some(l.tree.checkpoint(&self.signer)?));
            }
            Ok(l.tree.latest())
        })();
        Box::pin(async move { r })
    }

    fn checkpoint_history(
        &self,
        log: &str,
    ) -> BoxFuture<'_, Result<Vec<SignedCheckpoint>, IntegrityError>> {
        let r = EmbeddedStore::checkpoint_history(self, log);
        Box::pin(async move { r })
    }

    fn tile(&self, log: &str, tile: TilePath) -> BoxFuture<'_, Result<Vec<u8>, IntegrityError>> {
        let r = EmbeddedStore::tile(self, log, tile);
        Box::pin(async move { r })
    }

    fn inclusion_proof(
        &self,
        log: &str,
        index: u64,
        size: u64,
    ) -> BoxFuture<'_, Result<Vec<Hash>, IntegrityError>> {
        let r = EmbeddedStore::inclusion_proof(self, log, index, size);
        Box::pin(async move { r })
    }

    fn consistency_proof(
        &self,
        log: &str,
        from: u64,
        to: u64,
    ) -> BoxFuture<'_, Result<Vec<Hash>, IntegrityError>> {
        let r = EmbeddedStore::consistency_proof(self, log, from, to);
        Box::pin(async move { r })
    }
}

/// Synchronous forms of the integrity reads (the embedded store answers from
/// memory and local files); the [`Store`] methods wrap them.
impl EmbeddedStore {
    pub fn stats(&self) -> Vec<LogStats> {
        self.logs.values().map(|l| l.stats()).collect()
    }

    pub fn logs(&self) -> Vec<LogInfo> {
        self.logs
            .values()
            .map(|l| LogInfo {
                log: l.name().clone(),
                origin: l.tree.origin.clone(),
                size: l.tree.size(),
                checkpoint_size: l.tree.latest().map_or(0, |c| c.size),
            })
            .collect()
    }

    /// Every legal hold, released ones included.
    pub fn holds(&self) -> Vec<Hold> {
        self.holds.list()
    }

    pub fn checkpoint_history(&self, log: &str) -> Result<Vec<SignedCheckpoint>, IntegrityError> {
        let l = self.log(log)?;
        Ok(l.tree
            .history
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone())
    }

    pub fn tile(&self, log: &str, tile: TilePath) -> Result<Vec<u8>, IntegrityError> {
        self.log(log)?.tree.tile_bytes(tile)
    }

    pub fn inclusion_proof(
        &self,
        log: &str,
        index: u64,
        size: u64,
    ) -> Result<Vec<Hash>, IntegrityError> {
        let l = self.log(log)?;
        l.tree.read(|r, have| {
            if size > have || index >= size {
                return Err(IntegrityError::OutOfRange(format!(
                    "index {index} is not in a tree of size {size} (log {log} holds {have})"
                )));
            }
            merkle::inclusion_proof(r, index, size)
                .map_err(|e| IntegrityError::OutOfRange(e.to_string()))
        })?
    }

    pub fn consistency_proof(
        &self,
        log: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<Hash>, IntegrityError> {
        let l = self.log(log)?;
        l.tree.read(|r, have| {
            if to > have || from > to {
                return Err(IntegrityError::OutOfRange(format!(
                    "no consistency proof from size {from} to {to} (log {log} holds {have})"
                )));
            }
            merkle::consistency_proof(r, from, to)
                .map_err(|e| IntegrityError::OutOfRange(e.to_string()))
        })?
    }
}

/// Takes the exclusive lock of a data directory (held while the returned
/// file is open): one process at a time.
pub fn lock_dir(dir: &Path) -> Result<File, OpenError> {
    let io = |source| OpenError::Io {
        path: dir.to_owned(),
        source,
    };
    let lock_path = dir.join("LOCK");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io)?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(TryLockError::WouldBlock) => Err(OpenError::Locked(dir.to_owned())),
        Err(TryLockError::Error(e)) => Err(io(e)),
    }
}

/// What to purge.
#[derive(Clone, Default)]
pub struct PurgeRequest {
    /// The retention of each log to purge.
    pub retention: Vec<(ClassName, registre_model::Retention)>,
    /// Legal holds: a trace any of them matches is kept.
    pub holds: Vec<Query>,
    /// Report what would go, change nothing.
    pub dry_run: bool,
    /// Told how many traces each log's purge examined so far.
    pub progress: Option<Arc<dyn Fn(u64) + Send + Sync>>,
}

/// What a purge did, per log.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PurgeReport {
    pub dry_run: bool,
    /// When it ran (RFC 3339 UTC, the store's clock).
    pub at: String,
    pub logs: Vec<LogPurge>,
}

impl PurgeReport {
    pub fn purged(&self) -> u64 {
        self.logs.iter().map(|l| l.purged).sum()
    }
    pub fn held(&self) -> u64 {
        self.logs.iter().map(|l| l.held).sum()
    }
}

/// True when any log of `dir` holds a checkpoint record.
fn has_checkpoints(dir: &Path) -> bool {
    std::fs::read_dir(dir.join("logs"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|l| std::fs::metadata(l.path().join("checkpoints")).is_ok_and(|m| m.len() > 0))
}

fn spawn_checkpointer(
    logs: Vec<Arc<Log>>,
    signer: Arc<Signer>,
    interval: std::time::Duration,
) -> Checkpointer {
    let stop: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)> = Arc::default();
    let st = stop.clone();
    let thread = std::thread::Builder::new()
        .name("registre-checkpointer".into())
        .spawn(move || {
            let (lock, cv) = &*st;
            let mut stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
            let mut last_round = std::time::Instant::now();
            loop {
                if *stopped {
                    return;
                }
                // Wake at least every second to fold queued commitments
                // into the trees (bounded memory, fast proofs later).
                let tick = interval.min(std::time::Duration::from_secs(1));
                let (g, _) = cv
                    .wait_timeout(stopped, tick)
                    .unwrap_or_else(|p| p.into_inner());
                stopped = g;
                if *stopped {
                    return;
                }
                for log in &logs {
                    if let Err(e) = log.tree.catch_up() {
                        tracing::error!(log = %log.name(), error = %e, "cannot write the log's tiles");
                    }
                }
                if last_round.elapsed() < interval {
                    continue;
                }
                last_round = std::time::Instant::now();
                for log in &logs {
                    if log.tree.latest().is_none_or(|c| c.size < log.tree.size())
                        && let Err(e) = log.tree.checkpoint(&signer)
                    {
                        tracing::error!(log = %log.name(), error = %e, "cannot issue a checkpoint");
                    }
                }
            }
        })
        .ok();
    Checkpointer { stop, thread }
}
