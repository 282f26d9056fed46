//! One class's log: its segments, its writer thread (the sequencer and group
//! commit), its recovery and its search.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;

use registre_model::{Action, ClassName, Salt, StoredTrace, Trace, format_received_at};
use tokio::sync::{mpsc, oneshot};

use super::codec::{self, Packer};
use super::format::{
    FRAME_HEADER_LEN, FrameHeader, FrameWriter, HEADER_LEN, MAX_FRAME_BODY, SegmentHeader,
};
use super::index::{Key, Keys, Loc, SealedIndex, SegIndex, SegIx, key_hash, keys_of};
use super::purged;
use super::tree::Tree;
use crate::clock::Clock;
use crate::crypto::{MasterKey, NONCE_LEN, SegmentKeys};
use crate::query::occurred_micros;
use crate::vfs::{VFile, Vfs};
use crate::{AppendError, LogStats, OpenError, Query, Receipt, SearchError, StoredRecord};
use registre_log::merkle::Hash;
use registre_log::note::Signer;

pub struct LogOptions {
    /// Compute commitments and grow the Merkle tree (off only to measure
    /// what they cost).
    pub merkle: bool,
    /// The checkpoint origin of this log (`<instance>/registre/<class>`).
    pub origin: String,
    pub period_micros: i64,
    pub max_segment_bytes: u64,
    pub max_group: usize,
    /// Wraps the data keys.
    pub master: Arc<MasterKey>,
    /// `<data>/keys/data/<log>`.
    pub key_dir: PathBuf,
    pub clock: Arc<dyn Clock>,
    /// Seal records and blind the indexes (off only to measure their cost).
    pub at_rest_crypto: bool,
}

/// A search result with its reception time (for merging logs).
pub struct LogHit {
    pub received_at: i64,
    pub record: StoredRecord,
}

type Reply = oneshot::Sender<Result<Vec<(usize, Receipt)>, AppendError>>;

struct Request {
    traces: Vec<(usize, Trace)>,
    reply: Reply,
}

/// What the writer thread is asked to do, in order.
enum Command {
    Append(Request),
    Purge(PurgeOrder, oneshot::Sender<Result<LogPurge, String>>),
}

/// Purge what this log received before `cutoff`, except what a hold keeps.
pub struct PurgeOrder {
    pub cutoff: i64,
    pub holds: Vec<Query>,
    pub dry_run: bool,
    pub signer: Arc<Signer>,
    /// Told the number of traces examined so far.
    pub progress: Option<Arc<dyn Fn(u64) + Send + Sync>>,
}

struct Segment {
    header: SegmentHeader,
    path: PathBuf,
    /// Hold generation; 0 for a segment of the log.
    gen_: u32,
    file: Arc<dyn VFile>,
    keys: Arc<SegmentKeys>,
    /// In memory while written, then read from `<stem>.idx` once sealed.
    index: RwLock<SegIx>,
    /// File offset up to which every byte is known durable.
    durable_upto: AtomicU64,
}

impl Segment {
    fn index(&self) -> RwLockReadGuard<'_, SegIx> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }
    fn index_mut(&self) -> RwLockWriteGuard<'_, SegIx> {
        self.index.write().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct Log {
    name: ClassName,
    pub tree: Arc<Tree>,
    segments: Arc<RwLock<Vec<Arc<Segment>>>>,
    size: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    tx: Option<mpsc::Sender<Command>>,
    /// The writer, then the syncer: joined in that order on drop.
    threads: Vec<JoinHandle<()>>,
}

impl Drop for Log {
    fn drop(&mut self) {
        // Closing the channel ends the writer once it has drained.
        self.tx.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Log {
    pub fn open(
        name: ClassName,
        dir: PathBuf,
        vfs: Arc<dyn Vfs>,
        opts: LogOptions,
    ) -> Result<Log, OpenError> {
        let io = |path: &PathBuf| {
            let path = path.clone();
            move |source| OpenError::Io { path, source }
        };
        vfs.create_dir_all(&dir).map_err(io(&dir))?;
        vfs.create_dir_all(&opts.key_dir)
            .map_err(io(&opts.key_dir))?;
        // The history key authenticates the purge records.
        let history_key = match load_keys(&*vfs, &opts, &name, "purged", &dir.join("purged")) {
            Ok(k) => k,
            Err(e) => {
                let nonempty = vfs
                    .open(&dir.join("purged"), false)
                    .and_then(|f| f.len())
                    .is_ok_and(|l| l > 0);
                if nonempty {
                    return Err(e);
                }
                create_keys(&*vfs, &opts, &name, "purged").map_err(io(&opts.key_dir))?
            }
        };
        let (history_file, history, forged) =
            purged::open(&*vfs, &dir, &history_key).map_err(io(&dir))?;
        if let Some(at) = forged.first() {
            return Err(OpenError::Corrupt {
                path: dir.join("purged"),
                offset: *at,
                reason: "a purge record does not authenticate with the log's history key: \
                         segments may have been deleted by hand and the record forged"
                    .into(),
            });
        }
        let purged_upto = history.purged_upto();
        let live_holds = history.live_holds();

        // 1. Finish what a crash interrupted: purges announced in the
        // history, hold segments no record names, keys without a segment.
        let mut regular: Vec<(u64, String)> = Vec::new();
        let mut holds: Vec<(u32, String)> = Vec::new();
        let names = vfs.list(&dir).map_err(io(&dir))?;
        // Where the segments of the log on disk start.
        let first_on_disk = names
            .iter()
            .filter_map(|n| match parse_segment_name(n) {
                Some(SegName::Log(f)) => Some(f),
                _ => None,
            })
            .min();
        for g in &live_holds {
            if !names.iter().any(|n| *n == format!("{}.seg", hold_stem(*g))) {
                return Err(OpenError::Corrupt {
                    path: dir.join(format!("{}.seg", hold_stem(*g))),
                    offset: 0,
                    reason: "this hold segment, named by the purge history, is missing: traces \
                             kept by a legal hold were deleted"
                        .into(),
                });
            }
        }
        for fname in names {
            match parse_segment_name(&fname) {
                Some(SegName::Log(first)) if first < purged_upto => {
                    tracing::warn!(log = %name, segment = %fname, "finishing a purge a crash interrupted");
                    shred(&*vfs, &opts.key_dir, &stem_of(&fname)).map_err(io(&opts.key_dir))?;
                    vfs.remove(&dir.join(&fname)).map_err(io(&dir))?;
                    remove_index(&*vfs, &dir.join(&fname)).map_err(io(&dir))?;
                    remove_torn(&*vfs, &dir, &fname).map_err(io(&dir))?;
                }
                Some(SegName::Log(first)) => regular.push((first, fname)),
                Some(SegName::Hold(g)) if !live_holds.contains(&g) => {
                    // Left by a crash before its purge record: its traces are
                    // still in their source segment. Otherwise the history
                    // lost records: refuse rather than destroy evidence.
                    let path = dir.join(&fname);
                    let file = vfs.open(&path, false).map_err(io(&path))?;
                    let len = file.len().map_err(io(&path))?;
                    let header = read_header(&*file, &path, len)?;
                    if first_on_disk.is_none_or(|f| f > header.first_index) {
                        return Err(OpenError::Corrupt {
                            path,
                            offset: 0,
                            reason: "a hold segment the purge history does not name, whose traces \
                                     are no longer in the log's segments: the purge history was \
                                     truncated or replaced"
                                .into(),
                        });
                    }
                    tracing::warn!(log = %name, segment = %fname, "removing a hold segment a crash left behind (its source is intact)");
                    shred(&*vfs, &opts.key_dir, &stem_of(&fname)).map_err(io(&opts.key_dir))?;
                    vfs.remove(&path).map_err(io(&dir))?;
                    remove_index(&*vfs, &path).map_err(io(&dir))?;
                }
                Some(SegName::Hold(g)) => holds.push((g, fname)),
                None => {}
            }
        }
        regular.sort();
        vfs.sync_dir(&dir).map_err(io(&dir))?;

        let mut segments: Vec<Arc<Segment>> = Vec::new();
        // Hold segments: written whole and synced before the history named
        // them, so any damage is corruption.
        for (gen_, fname) in &holds {
            let path = dir.join(fname);
            let file = vfs.open(&path, false).map_err(io(&path))?;
            let len = file.len().map_err(io(&path))?;
            let header = read_header(&*file, &path, len)?;
            if !header.hold || header.class != name.as_str() {
                return Err(OpenError::Corrupt {
                    path,
                    offset: 0,
                    reason: format!(
                        "not a hold segment of log `{name}` (header: log `{}`, hold {})",
                        header.class, header.hold
                    ),
                });
            }
            let keys = load_keys(&*vfs, &opts, &name, &stem_of(fname), &path)?;
            let (index, end, _) = open_sealed(&*vfs, &path, &*file, &header, len, &name, &keys)?;
            segments.push(Arc::new(Segment {
                header,
                path,
                gen_: *gen_,
                file,
                keys: Arc::new(keys),
                index: RwLock::new(index),
                durable_upto: AtomicU64::new(end),
            }));
        }
        segments.sort_by_key(|s| s.header.first_index);

        let mut next_index = purged_upto;
        let mut write_pos = 0u64;
        let mut last_time = i64::MIN;
        let count = regular.len();
        for (i, (_, fname)) in regular.iter().enumerate() {
            let path = dir.join(fname);
            let is_last = i + 1 == count;
            let file = vfs.open(&path, false).map_err(io(&path))?;
            let len = file.len().map_err(io(&path))?;
            let half_created = is_last && len <= (HEADER_LEN + FRAME_HEADER_LEN) as u64;
            let header = match read_header(&*file, &path, len) {
                Ok(h) => h,
                Err(_) if half_created => {
                    // Crash while creating the newest segment: it holds
                    // no frame, so nothing acknowledged; drop it.
                    tracing::warn!(segment = %path.display(), "moving aside a segment left half-created by a crash");
                    quarantine(&*vfs, &dir, fname, &*file, 0, len).map_err(io(&path))?;
                    vfs.remove(&path).map_err(io(&path))?;
                    vfs.sync_dir(&dir).map_err(io(&dir))?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if header.class != name.as_str() || header.first_index != next_index || header.hold {
                return Err(OpenError::Corrupt {
                    path,
                    offset: 0,
                    reason: format!(
                        "segment header says log `{}` from index {}, expected log `{}` from index {}",
                        header.class, header.first_index, name, next_index
                    ),
                });
            }
            let keys = load_keys(&*vfs, &opts, &name, &stem_of(fname), &path)?;
            let (index, end, next) = if is_last {
                let (index, end, next) = scan(&path, &*file, &header, len, is_last, &name, &keys)?;
                // What we read may be in the page cache only (written by a
                // process that crashed before its sync): make it durable
                // before anyone can see it.
                file.sync_data().map_err(io(&path))?;
                if end < len {
                    tracing::warn!(
                        segment = %path.display(),
                        kept = end,
                        dropped = len - end,
                        "truncating a torn tail left by a crash (its bytes kept in torn/)"
                    );
                    // Never repair by deleting: the bytes cut off are kept,
                    // durably, before the cut.
                    quarantine(&*vfs, &dir, fname, &*file, end, len).map_err(io(&path))?;
                    file.set_len(end).map_err(io(&path))?;
                    file.sync_data().map_err(io(&path))?;
                }
                (SegIx::Live(index), end, next)
            } else {
                // Sealed: its index file, or the index rebuilt from it.
                open_sealed(&*vfs, &path, &*file, &header, len, &name, &keys)?
            };
            if let Some(t) = index.last_received_at() {
                last_time = last_time.max(t);
            }
            next_index = next;
            write_pos = end;
            segments.push(Arc::new(Segment {
                header,
                path,
                gen_: 0,
                file,
                keys: Arc::new(keys),
                index: RwLock::new(index),
                durable_upto: AtomicU64::new(end),
            }));
        }
        // Keys whose segment is gone (a crash between creating a key and its
        // segment, or between removing the two).
        let stems: Vec<String> = segments
            .iter()
            .map(|s| {
                stem_of(
                    &s.path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                )
            })
            .collect();
        for fname in vfs.list(&dir).map_err(io(&dir))? {
            if let Some(stem) = fname.strip_suffix(".idx")
                && !stems.iter().any(|s| s == stem)
            {
                vfs.remove(&dir.join(&fname)).map_err(io(&dir))?;
            }
        }
        for kname in vfs.list(&opts.key_dir).map_err(io(&opts.key_dir))? {
            if let Some(stem) = kname.strip_suffix(".key")
                && stem != "purged"
                && !stems.iter().any(|s| s == stem)
            {
                shred(&*vfs, &opts.key_dir, stem).map_err(io(&opts.key_dir))?;
            }
            // A key file a crash left half-replaced (rotation): the rename
            // never happened, the original is intact.
            if let Some(stem) = kname.strip_suffix(".tmp") {
                let path = opts.key_dir.join(&kname);
                if let Ok(f) = vfs.open(&path, false) {
                    let len = f.len().map_err(io(&path))?;
                    f.write_all_at(&vec![0u8; len as usize], 0)
                        .map_err(io(&path))?;
                    f.sync_data().map_err(io(&path))?;
                }
                vfs.remove(&path).map_err(io(&path))?;
                tracing::warn!(log = %name, key = %stem, "removed a key file left by an interrupted rotation");
            }
        }
        let hold_gen = history.last_hold_gen();
        let tree = {
            let segs = &segments;
            let mut buf = Vec::new();
            let log = name.as_str();
            Tree::open(&dir, vfs.clone(), opts.origin.clone(), next_index, |i| {
                let missing = || OpenError::Corrupt {
                    path: dir.clone(),
                    offset: 0,
                    reason: format!("no segment holds index {i}"),
                };
                let seg = segs
                    .iter()
                    .rev()
                    .find(|s| s.gen_ == 0 && s.header.first_index <= i)
                    .ok_or_else(missing)?;
                let loc = seg
                    .index()
                    .loc((i - seg.header.first_index) as u32)
                    .map_err(|_| missing())?;
                buf.resize(loc.len as usize, 0);
                seg.file
                    .read_exact_at(&mut buf, loc.offset)
                    .map_err(|source| OpenError::Io {
                        path: dir.clone(),
                        source,
                    })?;
                let plain = seg
                    .keys
                    .open(log, i, &mut buf)
                    .ok_or_else(|| OpenError::Corrupt {
                        path: seg.path.clone(),
                        offset: loc.offset,
                        reason: format!("record {i} does not open with its data key"),
                    })?;
                let mut scratch = Vec::new();
                let plain = codec::plaintext(plain, seg.header.version, &mut scratch).map_err(
                    |reason| OpenError::Corrupt {
                        path: seg.path.clone(),
                        offset: loc.offset,
                        reason: format!("record {i}: {reason}"),
                    },
                )?;
                Ok(commitment(plain))
            })?
        };
        let tree = Arc::new(tree);
        let bytes: u64 = segments.iter().map(|s| s.file.len().unwrap_or(0)).sum();
        let segments = Arc::new(RwLock::new(segments));
        let size = Arc::new(AtomicU64::new(next_index));
        let bytes = Arc::new(AtomicU64::new(bytes));
        let (tx, rx) = mpsc::channel(1024);
        let at_rest_crypto = opts.at_rest_crypto;
        let poison: Poison = Arc::default();
        let (synced_tx, synced_rx) = std::sync::mpsc::sync_channel(4);
        let (spare_tx, spare_rx) = std::sync::mpsc::sync_channel(8);
        let writer = Writer {
            name: name.clone(),
            dir,
            vfs,
            opts,
            segments: segments.clone(),
            bytes: bytes.clone(),
            active: read(&segments).last().filter(|s| s.gen_ == 0).cloned(),
            write_pos,
            next_index,
            last_time,
            tree: tree.clone(),
            history_file,
            history,
            history_key,
            hold_gen,
            poison: poison.clone(),
            frame: FrameWriter::new(),
            packer: Packer::new().map_err(|source| OpenError::Io {
                path: PathBuf::from("<record compressor>"),
                source,
            })?,
            jcs: Vec::with_capacity(4096),
            synced: synced_tx,
            spare: spare_rx,
        };
        let syncer = Syncer {
            tree: tree.clone(),
            at_rest_crypto,
            name: name.clone(),
            size: size.clone(),
            bytes: bytes.clone(),
            poison,
            spare: spare_tx,
        };
        let spawn_err = |source| OpenError::Io {
            path: PathBuf::from("<writer thread>"),
            source,
        };
        let syncer = std::thread::Builder::new()
            .name(format!("registre-sync-{name}"))
            .spawn(move || syncer.run(synced_rx))
            .map_err(spawn_err)?;
        let writer = std::thread::Builder::new()
            .name(format!("registre-writer-{name}"))
            .spawn(move || writer.run(rx))
            .map_err(spawn_err)?;
        Ok(Log {
            name,
            tree,
            segments,
            size,
            bytes,
            tx: Some(tx),
            threads: vec![writer, syncer],
        })
    }

    pub fn name(&self) -> &ClassName {
        &self.name
    }

    /// Durable, visible traces.
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> LogStats {
        LogStats {
            log: self.name.clone(),
            size: self.size(),
            segments: read(&self.segments).len(),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }

    pub fn index_heap_bytes(&self) -> usize {
        read(&self.segments)
            .iter()
            .map(|s| s.index().heap_bytes())
            .sum()
    }

    /// Queues a batch for the writer; the returned receiver resolves once it
    /// is durable (or failed).
    pub async fn submit(
        &self,
        traces: Vec<(usize, Trace)>,
    ) -> Result<oneshot::Receiver<Result<Vec<(usize, Receipt)>, AppendError>>, AppendError> {
        let (reply, rx) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or(AppendError::ShuttingDown)?;
        tx.send(Command::Append(Request { traces, reply }))
            .await
            .map_err(|_| AppendError::ShuttingDown)?;
        Ok(rx)
    }

    /// Newest first, below `bound` (exclusive). Returns the hits and whether
    /// the log was searched to its start (`true`) or stopped at `limit`.
    pub fn search(
        &self,
        q: &Query,
        limit: usize,
        bound: u64,
    ) -> Result<(Vec<LogHit>, Stop), SearchError> {
        let segments: Vec<Arc<Segment>> = read(&self.segments).clone();
        let filter = Filter::new(q);
        let mut hits = Vec::new();
        let mut examined = 0usize;
        let mut buf = Vec::with_capacity(1024);
        for seg in segments.iter().rev() {
            if seg.header.first_index >= bound {
                continue;
            }
            let first = seg.header.first_index;
            let keys = filter.keys_for(&seg.keys);
            // The segment's bounds, once: a live index only grows past them.
            let (ranges, best) = {
                let ix = seg.index();
                let mut hi = ix.positions_below(first, bound).min(ix.len());
                if let Some(until) = q.until {
                    hi = hi.min(ix.first_at_or_after(until)?);
                }
                let lo = match q.since {
                    Some(since) => ix.first_at_or_after(since)?,
                    None => 0,
                };
                // The action-time index: the frames whose records' action
                // times can be in range.
                let ranges = if q.occurred_since.is_some() || q.occurred_until.is_some() {
                    ix.occurred_ranges(q.occurred_since, q.occurred_until, lo, hi)?
                } else if lo < hi {
                    vec![(lo, hi)]
                } else {
                    Vec::new()
                };
                (ranges, shortest(&keys, &ix)?)
            };
            for (lo, mut hi) in ranges {
                loop {
                    if hi <= lo {
                        break;
                    }
                    let batch: Vec<(u32, Loc, i64)> = {
                        let ix = seg.index();
                        let positions: Vec<u32> = match best {
                            Some((k, h)) => ix.postings_below(k, h, lo, hi, 256)?,
                            None => (hi.saturating_sub(256).max(lo)..hi).rev().collect(),
                        };
                        let times = ix.received_at_many(&positions)?;
                        let mut out = Vec::with_capacity(positions.len());
                        for (p, t) in positions.into_iter().zip(times) {
                            out.push((p, ix.loc(p)?, t));
                        }
                        out
                    };
                    let Some(&(last, _, _)) = batch.last() else {
                        break;
                    };
                    for &(p, loc, received_at) in &batch {
                        let index = seg.index().index_at(first, p);
                        if examined >= SCAN_BUDGET {
                            // Bounded work per request: the caller pages on.
                            return Ok((hits, Stop::Budget(index + 1)));
                        }
                        examined += 1;
                        let record = read_record(seg, loc, &mut buf, &self.name, index)?;
                        if filter.matches(&record.trace) {
                            hits.push(LogHit {
                                received_at,
                                record,
                            });
                            if hits.len() >= limit {
                                return Ok((hits, Stop::Limit));
                            }
                        }
                    }
                    hi = last;
                }
            }
        }
        Ok((hits, Stop::Exhausted))
    }
}

/// Most records one search reads in one log before it returns a page (with
/// a cursor to go on): a query whose filters rarely match cannot hold a
/// worker for long.
pub const SCAN_BUDGET: usize = 20_000;

/// Why a log's search stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Searched to the start of the log.
    Exhausted,
    /// Found `limit` hits.
    Limit,
    /// Read `SCAN_BUDGET` records; go on below this index (exclusive).
    Budget(u64),
}

/// The exact filters of a query, and the index that narrows it best.
struct Filter<'q> {
    q: &'q Query,
    mailbox_norm: Option<String>,
}

impl<'q> Filter<'q> {
    fn new(q: &'q Query) -> Filter<'q> {
        Filter {
            q,
            mailbox_norm: q.mailbox.as_deref().map(Query::normalise_mailbox),
        }
    }

    /// The filtered keys as blind values under one segment's index key.
    fn keys_for(&self, keys: &SegmentKeys) -> Vec<(Key, u64)> {
        let q = self.q;
        let mut out = Vec::new();
        if let Some(a) = &q.actor {
            out.push((Key::Actor, key_hash(keys, Key::Actor, a)));
        }
        if let Some(p) = &q.patient {
            out.push((Key::Patient, key_hash(keys, Key::Patient, p)));
        }
        if let Some(m) = &q.mailbox {
            out.push((Key::Mailbox, key_hash(keys, Key::Mailbox, m)));
        }
        if let Some(a) = &q.action {
            out.push((Key::Action, key_hash(keys, Key::Action, a.as_str())));
        }
        out
    }

    fn matches(&self, t: &StoredTrace) -> bool {
        let q = self.q;
        if !q.occurred_in(t) {
            return false;
        }
        if q.actor.as_deref().is_some_and(|a| a != t.actor.id) {
            return false;
        }
        if q.patient
            .as_deref()
            .is_some_and(|p| Some(p) != t.patient_id())
        {
            return false;
        }
        if let Some(m) = &self.mailbox_norm
            && t.mailbox().map(Query::normalise_mailbox).as_ref() != Some(m)
        {
            return false;
        }
        if q.action.as_ref().is_some_and(|a: &Action| *a != t.action) {
            return false;
        }
        true
    }
}

/// The filtered key with the shortest posting list in a segment, if any.
fn shortest(keys: &[(Key, u64)], ix: &SegIx) -> std::io::Result<Option<(Key, u64)>> {
    let mut best: Option<((Key, u64), u32)> = None;
    for &(k, h) in keys {
        let n = ix.postings_len(k, h)?;
        if best.is_none_or(|(_, b)| n < b) {
            best = Some(((k, h), n));
        }
    }
    Ok(best.map(|(kh, _)| kh))
}

fn read_record(
    seg: &Segment,
    loc: Loc,
    buf: &mut Vec<u8>,
    log: &ClassName,
    index: u64,
) -> Result<StoredRecord, SearchError> {
    buf.resize(loc.len as usize, 0);
    seg.file.read_exact_at(buf, loc.offset)?;
    let corrupt = |reason: String| SearchError::Corrupt {
        log: log.as_str().to_owned(),
        index,
        reason,
    };
    let plain = seg
        .keys
        .open(log.as_str(), index, buf)
        .ok_or_else(|| corrupt("the record does not open with its data key".into()))?;
    let mut scratch = Vec::new();
    let plain = codec::plaintext(plain, seg.header.version, &mut scratch).map_err(corrupt)?;
    decode_record(plain).map_err(corrupt)
}

/// Decodes a record's plaintext (`salt ‖ JCS(trace)`).
pub fn decode_record(rec: &[u8]) -> Result<StoredRecord, String> {
    if rec.len() < 16 {
        return Err("record shorter than its salt".into());
    }
    let mut salt: Salt = [0; 16];
    salt.copy_from_slice(&rec[..16]);
    let trace: StoredTrace = serde_json::from_slice(&rec[16..])
        .map_err(|e| format!("stored trace does not decode: {}", e.classify_str()))?;
    Ok(StoredRecord { trace, salt })
}

trait ClassifyStr {
    fn classify_str(&self) -> &'static str;
}

impl ClassifyStr for serde_json::Error {
    fn classify_str(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "schema mismatch",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}

/// Reads a segment's frames, rebuilding its index. Returns the index, the
/// end of the last valid frame and the next index. A bad frame in the newest
/// segment is a torn tail (truncated by the caller); elsewhere it is
/// corruption.
fn scan(
    path: &std::path::Path,
    file: &dyn VFile,
    header: &SegmentHeader,
    len: u64,
    is_last: bool,
    name: &ClassName,
    keys: &SegmentKeys,
) -> Result<(SegIndex, u64, u64), OpenError> {
    let mut ix = SegIndex::default();
    let mut pos = HEADER_LEN as u64;
    let mut next = header.first_index;
    let mut body = Vec::new();
    let mut scratch = Vec::new();
    let corrupt = |offset: u64, reason: String| OpenError::Corrupt {
        path: path.to_owned(),
        offset,
        reason,
    };
    while pos < len {
        let frame_start = pos;
        let bad = |reason: &str| -> Result<(), OpenError> {
            if !is_last {
                return Err(corrupt(frame_start, reason.to_owned()));
            }
            // A torn tail, unless an intact frame further on proves this one
            // had been durable before it was written.
            if let Some((at, upto)) = later_proof(file, frame_start, len) {
                return Err(corrupt(
                    frame_start,
                    format!(
                        "{reason}, yet the intact frame at byte {at} was written after \
                         this region was durable (up to byte {upto}): this is damage, not a torn write"
                    ),
                ));
            }
            Ok(())
        };
        if len - pos < FRAME_HEADER_LEN as u64 {
            bad("truncated frame header")?;
            break;
        }
        let mut h = [0u8; FRAME_HEADER_LEN];
        file.read_exact_at(&mut h, pos)
            .map_err(|e| corrupt(pos, e.to_string()))?;
        let fh = match FrameHeader::decode(&h) {
            Ok(fh) => fh,
            Err(r) => {
                bad(r)?;
                break;
            }
        };
        let body_start = pos + FRAME_HEADER_LEN as u64;
        if len - body_start < u64::from(fh.body_len) {
            bad("truncated frame body")?;
            break;
        }
        body.resize(fh.body_len as usize, 0);
        file.read_exact_at(&mut body, body_start)
            .map_err(|e| corrupt(pos, e.to_string()))?;
        if !fh.check(&h, &body) {
            bad("frame checksum mismatch")?;
            break;
        }
        if header.hold {
            if fh.count != 1 || (fh.first_index < next && !ix.held.is_empty()) {
                return Err(corrupt(
                    frame_start,
                    format!(
                        "hold segment frame of {} records at index {}, after index {}",
                        fh.count,
                        fh.first_index,
                        next.saturating_sub(1)
                    ),
                ));
            }
        } else if fh.first_index != next {
            // A checksummed frame out of sequence is never a torn write.
            return Err(corrupt(
                frame_start,
                format!("frame starts at index {}, expected {next}", fh.first_index),
            ));
        }
        let recs = fh
            .records(&body)
            .map_err(|r| corrupt(frame_start, r.to_owned()))?;
        ix.begin_frame(fh.received_at);
        for (i, (off, rlen)) in recs.into_iter().enumerate() {
            let expect = fh.first_index + i as u64;
            let rec = &mut body[off..off + rlen as usize];
            let plain = keys.open(name.as_str(), expect, rec).ok_or_else(|| {
                corrupt(
                    frame_start,
                    format!("record {expect} does not open with its data key (altered, or moved)"),
                )
            })?;
            let plain = codec::plaintext(plain, header.version, &mut scratch)
                .map_err(|r| corrupt(frame_start, format!("record {expect}: {r}")))?;
            let r = decode_record(plain).map_err(|r| corrupt(frame_start, r))?;
            if r.trace.index != expect || r.trace.log != *name {
                return Err(corrupt(
                    frame_start,
                    format!(
                        "record claims log `{}` index {}, expected `{name}` index {expect}",
                        r.trace.log, r.trace.index
                    ),
                ));
            }
            if header.hold {
                ix.held.push(expect);
            }
            ix.add_keys(
                Loc {
                    offset: body_start + off as u64,
                    len: rlen,
                },
                &keys_of(keys, &r.trace),
                occurred_micros(&r.trace.occurred_at),
            );
        }
        next = fh.first_index + u64::from(fh.count);
        pos = body_start + u64::from(fh.body_len);
    }
    Ok((ix, pos, next))
}

/// Looks past a damaged frame at `from` for an intact frame whose
/// `synced_upto` is beyond `from`; returns its offset and `synced_upto`.
fn later_proof(file: &dyn VFile, from: u64, len: u64) -> Option<(u64, u64)> {
    let mut rest = vec![0u8; usize::try_from(len.checked_sub(from)?).ok()?];
    file.read_exact_at(&mut rest, from).ok()?;
    let mut i = 1;
    while i + FRAME_HEADER_LEN <= rest.len() {
        if &rest[i..i + 4] == super::format::FRAME_MAGIC {
            let mut h = [0u8; FRAME_HEADER_LEN];
            h.copy_from_slice(&rest[i..i + FRAME_HEADER_LEN]);
            if let Ok(fh) = FrameHeader::decode(&h) {
                let body_start = i + FRAME_HEADER_LEN;
                let body_end = body_start + fh.body_len as usize;
                if body_end <= rest.len()
                    && fh.check(&h, &rest[body_start..body_end])
                    && fh.synced_upto > from
                {
                    return Some((from + i as u64, fh.synced_upto));
                }
            }
        }
        i += 1;
    }
    None
}

/// Random bytes drawn per trace: salt (16), UUIDv7 random part (10), nonce.
const RANDOM_PER_TRACE: usize = 26 + NONCE_LEN;

/// A trace's commitment: SHA-256 of its record's plaintext, which is exactly
/// `salt ‖ JCS(trace without salt)` (DESIGN §4).
pub fn commitment(record: &[u8]) -> Hash {
    use sha2::Digest;
    sha2::Sha256::digest(record).into()
}

/// [`commitment`] of `salt ‖ jcs`, given apart.
fn commitment_of_parts(salt: &[u8], jcs: &[u8]) -> Hash {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(salt);
    h.update(jcs);
    h.finalize().into()
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

/// Shared between the two writer threads: set once a write or sync failed.
type Poison = Arc<std::sync::Mutex<Option<String>>>;

fn poisoned(p: &Poison) -> Option<String> {
    p.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

fn set_poison(p: &Poison, why: String) {
    let mut g = p.lock().unwrap_or_else(|e| e.into_inner());
    if g.is_none() {
        *g = Some(why);
    }
}

/// The first stage of a log's writer (the sequencer): takes every queued
/// request, assigns indexes, ids and salts, encodes the frames and writes
/// them to the active segment (page cache), then hands the group to the
/// [`Syncer`]. It encodes and writes group *n+1* while group *n* syncs.
struct Writer {
    name: ClassName,
    dir: PathBuf,
    vfs: Arc<dyn Vfs>,
    opts: LogOptions,
    segments: Arc<RwLock<Vec<Arc<Segment>>>>,
    bytes: Arc<AtomicU64>,
    active: Option<Arc<Segment>>,
    write_pos: u64,
    next_index: u64,
    last_time: i64,
    tree: Arc<Tree>,
    history_file: Arc<dyn VFile>,
    history: purged::History,
    history_key: SegmentKeys,
    /// Generation of the newest hold segment.
    hold_gen: u32,
    poison: Poison,
    frame: FrameWriter,
    /// Compresses records (format 3).
    packer: Packer,
    /// A trace's JCS bytes, before compression.
    jcs: Vec<u8>,
    synced: std::sync::mpsc::SyncSender<ToSync>,
    /// Frame buffers handed back by the syncer, to reuse.
    spare: std::sync::mpsc::Receiver<Vec<u8>>,
}

/// What the sequencer hands to the syncer, in order.
enum ToSync {
    Group(Written),
    /// Answered once every group before it is durable (or failed): a segment
    /// is complete on disk before the next one is created.
    Barrier(std::sync::mpsc::SyncSender<Result<(), String>>),
}

/// An encoded group, waiting to be written and synced.
struct Written {
    seg: Arc<Segment>,
    /// Encoded frames and where they go in the segment file.
    buf: Vec<u8>,
    offset: u64,
    first_index: u64,
    /// Commitments of the group's traces (empty with the Merkle log off).
    commitments: Vec<Hash>,
    received_at: i64,
    pending: Vec<Pending>,
    replies: Vec<(Reply, Vec<(usize, Receipt)>)>,
    end_index: u64,
    bytes: u64,
}

/// A record waiting to be indexed. Its blind index values (HMACs) are
/// computed by the syncer after the group's sync, on the other core, while
/// the sequencer encodes and seals the next group; the index lock is then
/// held only to insert them.
struct Pending {
    loc: Loc,
    trace: StoredTrace,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut deferred: Option<Command> = None;
        loop {
            let first = match deferred.take() {
                Some(c) => c,
                None => match rx.blocking_recv() {
                    Some(c) => c,
                    None => break,
                },
            };
            let first = match first {
                Command::Append(r) => r,
                Command::Purge(order, reply) => {
                    let r = self.purge(order);
                    let _ = reply.send(r);
                    continue;
                }
            };
            let mut n = first.traces.len();
            let mut group = vec![first];
            while n < self.opts.max_group {
                match rx.try_recv() {
                    Ok(Command::Append(r)) => {
                        n += r.traces.len();
                        group.push(r);
                    }
                    Ok(purge) => {
                        // After this group: commands run in order.
                        deferred = Some(purge);
                        break;
                    }
                    Err(_) => break,
                }
            }
            if let Some(why) = poisoned(&self.poison) {
                let err = AppendError::Unavailable(why);
                for r in group {
                    let _ = r.reply.send(Err(err.clone()));
                }
                continue;
            }
            match self.write_group(group) {
                Ok(w) => {
                    if let Err(std::sync::mpsc::SendError(ToSync::Group(w))) =
                        self.synced.send(ToSync::Group(w))
                    {
                        for (r, _) in w.replies {
                            let _ = r.send(Err(AppendError::ShuttingDown));
                        }
                    }
                }
                Err((e, replies)) => {
                    let why = format!("storage error on log {}: {e}", self.name);
                    tracing::error!(log = %self.name, error = %e, "write failed; the log refuses appends until restart");
                    set_poison(&self.poison, why.clone());
                    for r in replies {
                        let _ = r.send(Err(AppendError::Unavailable(why.clone())));
                    }
                }
            }
        }
    }

    fn now(&mut self) -> i64 {
        let now = self.opts.clock.now_micros();
        // Reception times never go backwards along a log, even if the
        // clock does: the time index relies on it.
        self.last_time = self.last_time.max(now);
        self.last_time
    }

    #[allow(clippy::type_complexity)]
    fn write_group(
        &mut self,
        group: Vec<Request>,
    ) -> Result<Written, (std::io::Error, Vec<Reply>)> {
        let now = self.now();
        let period_start = now.div_euclid(self.opts.period_micros) * self.opts.period_micros;
        let needs_roll = match &self.active {
            None => true,
            Some(seg) => {
                seg.header.period_start != period_start
                    || self.write_pos >= self.opts.max_segment_bytes
            }
        };
        let fail = |e: std::io::Error, group: Vec<Request>| {
            (e, group.into_iter().map(|r| r.reply).collect())
        };
        if needs_roll && let Err(e) = self.roll(period_start) {
            return Err(fail(e, group));
        }
        let Some(seg) = self.active.clone() else {
            return Err(fail(std::io::Error::other("no active segment"), group));
        };

        let total: usize = group.iter().map(|r| r.traces.len()).sum();
        let mut random = vec![0u8; total * RANDOM_PER_TRACE];
        if let Err(e) = getrandom::fill(&mut random) {
            return Err(fail(std::io::Error::other(e.to_string()), group));
        }
        let received_at = format_received_at(now);
        let millis = (now / 1000).max(0) as u64;

        let synced_upto = seg.durable_upto.load(Ordering::Acquire);
        self.frame.clear();
        self.frame.begin(self.next_index, now, synced_upto);
        let mut pending: Vec<Pending> = Vec::with_capacity(total);
        let mut commitments: Vec<Hash> = Vec::with_capacity(total);
        let first_index = self.next_index;
        let mut replies = Vec::with_capacity(group.len());
        let mut index = self.next_index;
        let mut r = 0usize;
        for req in group {
            let mut rec = Vec::with_capacity(req.traces.len());
            for (pos, trace) in req.traces {
                if self.frame.body_len() > MAX_FRAME_BODY - 64 * 1024 {
                    self.frame.finish();
                    self.frame.begin(index, now, synced_upto);
                }
                let rnd = &random[r..r + RANDOM_PER_TRACE];
                r += RANDOM_PER_TRACE;
                let mut rb = [0u8; 10];
                rb.copy_from_slice(&rnd[16..26]);
                let mut nonce = [0u8; NONCE_LEN];
                nonce.copy_from_slice(&rnd[26..26 + NONCE_LEN]);
                let id = uuid::Builder::from_unix_timestamp_millis(millis, &rb).into_uuid();
                let stored = StoredTrace::new(trace, index, id, received_at.clone());
                // record = nonce ‖ seal(salt ‖ JCS) ‖ tag
                let rec_start = self.frame.open_record();
                self.frame.buf.extend_from_slice(&nonce);
                let plain_start = self.frame.buf.len();
                self.frame.buf.extend_from_slice(&rnd[..16]);
                // Hashed, compressed and sealed here, while the syncer waits
                // on the previous group's fsync: the two overlap on two cores.
                if seg.header.version >= 3 {
                    self.jcs.clear();
                    stored.write_canonical(&mut self.jcs);
                    if self.opts.merkle {
                        commitments.push(commitment_of_parts(&rnd[..16], &self.jcs));
                    }
                    if let Err(e) = self.packer.pack(&self.jcs, &mut self.frame.buf) {
                        replies.push((req.reply, Vec::new()));
                        return Err((e, replies.into_iter().map(|(r, _)| r).collect()));
                    }
                } else {
                    stored.write_canonical(&mut self.frame.buf);
                    if self.opts.merkle {
                        commitments.push(commitment(&self.frame.buf[plain_start..]));
                    }
                }
                let tag = if self.opts.at_rest_crypto {
                    seg.keys.seal(
                        self.name.as_str(),
                        index,
                        nonce,
                        &mut self.frame.buf[plain_start..],
                    )
                } else {
                    [0; 16]
                };
                self.frame.buf.extend_from_slice(&tag);
                let (off, len) = self.frame.close_record(rec_start);
                pending.push(Pending {
                    loc: Loc {
                        offset: self.write_pos + off as u64,
                        len,
                    },
                    trace: stored,
                });
                rec.push((
                    pos,
                    Receipt {
                        log: self.name.clone(),
                        index,
                        id,
                    },
                ));
                index += 1;
            }
            replies.push((req.reply, rec));
        }
        self.frame.finish();

        let mut fresh = self.spare.try_recv().unwrap_or_default();
        fresh.clear();
        let buf = std::mem::replace(&mut self.frame.buf, fresh);
        let bytes = buf.len() as u64;
        let offset = self.write_pos;
        self.write_pos += bytes;
        self.next_index = index;
        Ok(Written {
            seg,
            buf,
            offset,
            first_index,
            commitments,
            received_at: now,
            pending,
            replies,
            end_index: index,
            bytes,
        })
    }

    /// Waits until every group handed to the syncer is durable (or failed).
    fn barrier(&mut self) -> std::io::Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.synced
            .send(ToSync::Barrier(tx))
            .map_err(|_| std::io::Error::other("the syncer stopped"))?;
        match rx.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => Err(std::io::Error::other(why)),
            Err(_) => Err(std::io::Error::other("the syncer stopped")),
        }
    }

    /// Writes the index file of a complete segment and reads it from there
    /// on: its in-memory index is freed.
    fn seal(&mut self, seg: &Arc<Segment>) -> std::io::Result<()> {
        let len = seg.file.len()?;
        let sealed = {
            let ix = seg.index();
            let Some(live) = ix.live() else {
                return Ok(());
            };
            write_sealed(&*self.vfs, &seg.path, live, seg.header.first_index, len)?
        };
        *seg.index_mut() = SegIx::Sealed(sealed);
        Ok(())
    }

    /// Starts a new segment at the next index (or rewrites the header of an
    /// empty active segment).
    fn roll(&mut self, period_start: i64) -> std::io::Result<()> {
        // The current segment must be whole on disk before the next exists:
        // recovery treats damage in any segment but the newest as corruption.
        if let Some(old) = self
            .active
            .clone()
            .filter(|s| s.header.first_index < self.next_index)
        {
            self.barrier()?;
            self.seal(&old)?;
        }
        let header = SegmentHeader {
            first_index: self.next_index,
            period_start,
            class: self.name.as_str().to_owned(),
            hold: false,
            version: super::format::FORMAT,
        };
        let stem = format!("{:020}", self.next_index);
        let path = self.dir.join(format!("{stem}.seg"));
        let reuse = self
            .active
            .as_ref()
            .is_some_and(|s| s.header.first_index == self.next_index);
        // The data key is durable before the segment it opens exists.
        let keys = match (&self.active, reuse) {
            (Some(a), true) => a.keys.clone(),
            _ => Arc::new(create_keys(&*self.vfs, &self.opts, &self.name, &stem)?),
        };
        let file = self.vfs.open(&path, true)?;
        file.set_len(0)?;
        file.write_all_at(&header.encode(), 0)?;
        file.sync_data()?;
        self.vfs.sync_dir(&self.dir)?;
        let seg = Arc::new(Segment {
            header,
            path,
            gen_: 0,
            file,
            keys,
            index: RwLock::new(SegIx::Live(SegIndex::default())),
            durable_upto: AtomicU64::new(HEADER_LEN as u64),
        });
        {
            let mut segs = self.segments.write().unwrap_or_else(|p| p.into_inner());
            if reuse {
                segs.pop();
            }
            segs.push(seg.clone());
        }
        if !reuse {
            self.bytes.fetch_add(HEADER_LEN as u64, Ordering::Relaxed);
        }
        self.active = Some(seg);
        self.write_pos = HEADER_LEN as u64;
        Ok(())
    }
}

/// The second stage: makes written groups durable with one `fdatasync` for
/// all the groups queued behind each other (group commit), then publishes
/// them to searches in order and acknowledges them.
struct Syncer {
    tree: Arc<Tree>,
    at_rest_crypto: bool,
    name: ClassName,
    size: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    poison: Poison,
    spare: std::sync::mpsc::SyncSender<Vec<u8>>,
}

impl Syncer {
    fn run(self, rx: std::sync::mpsc::Receiver<ToSync>) {
        while let Ok(first) = rx.recv() {
            let mut items = vec![first];
            while let Ok(x) = rx.try_recv() {
                items.push(x);
            }
            let mut groups = Vec::new();
            for item in items {
                match item {
                    ToSync::Group(w) => groups.push(w),
                    ToSync::Barrier(reply) => {
                        self.commit(std::mem::take(&mut groups));
                        let _ = reply.send(poisoned(&self.poison).map_or(Ok(()), Err));
                    }
                }
            }
            self.commit(groups);
        }
    }

    /// Writes the groups in order, syncs each file once, then publishes and
    /// acknowledges them in order.
    fn commit(&self, batch: Vec<Written>) {
        if batch.is_empty() {
            return;
        }
        if let Some(why) = poisoned(&self.poison) {
            fail_all(batch, &why);
            return;
        }
        let mut files: Vec<*const Segment> = Vec::new();
        let mut result = Ok(());
        for w in &batch {
            result = w.seg.file.write_all_at(&w.buf, w.offset);
            if result.is_err() {
                break;
            }
            let key = Arc::as_ptr(&w.seg);
            if !files.contains(&key) {
                files.push(key);
            }
        }
        if result.is_ok() {
            // Sync each file once, in order; every write above completed
            // before its file's sync starts.
            for key in &files {
                if let Some(w) = batch.iter().find(|w| Arc::as_ptr(&w.seg) == *key) {
                    result = w.seg.file.sync_data();
                    if result.is_err() {
                        break;
                    }
                }
            }
        }
        // The records are durable, so their commitments are too (a pure
        // function of the record bytes). `entries` is written here and synced
        // before each checkpoint; recovery recomputes what a crash lost.
        let mut commitments: Vec<Vec<Hash>> = Vec::with_capacity(batch.len());
        if result.is_ok() {
            let mut entries: Vec<u8> = Vec::new();
            let entries_at = batch.first().map_or(0, |w| w.first_index * 32);
            for w in &batch {
                let cs: Vec<Hash> = w.commitments.clone();
                for c in &cs {
                    entries.extend_from_slice(c);
                }
                commitments.push(cs);
            }
            if !entries.is_empty() {
                result = self.tree.entries_file().write_all_at(&entries, entries_at);
            }
        }
        if let Err(e) = result {
            let why = format!("storage error on log {}: {e}", self.name);
            tracing::error!(log = %self.name, error = %e, "write or fsync failed; the log refuses appends until restart");
            set_poison(&self.poison, why.clone());
            fail_all(batch, &why);
            return;
        }
        for (w, cs) in batch.into_iter().zip(commitments) {
            w.seg
                .durable_upto
                .fetch_max(w.offset + w.bytes, Ordering::AcqRel);
            let keys: Vec<(Loc, Keys, Option<i64>)> = w
                .pending
                .iter()
                .map(|p| {
                    let k = if self.at_rest_crypto {
                        keys_of(&w.seg.keys, &p.trace)
                    } else {
                        super::index::keys_of_plain(&p.trace)
                    };
                    (p.loc, k, occurred_micros(&p.trace.occurred_at))
                })
                .collect();
            {
                let mut guard = w.seg.index_mut();
                // The segment being written is always live: it is sealed
                // only after a barrier past its last group.
                if let Some(ix) = guard.live_mut() {
                    ix.begin_frame(w.received_at);
                    for (loc, k, t) in &keys {
                        ix.add_keys(*loc, k, *t);
                    }
                }
            }
            // The traces are freed here, off the sequencer.
            drop(w.pending);
            self.tree.publish(&cs);
            self.bytes.fetch_add(w.bytes, Ordering::Relaxed);
            self.size.store(w.end_index, Ordering::Release);
            for (reply, receipts) in w.replies {
                let _ = reply.send(Ok(receipts));
            }
            let _ = self.spare.try_send(w.buf);
        }
    }
}

fn fail_all(batch: Vec<Written>, why: &str) {
    for w in batch {
        for (reply, _) in w.replies {
            let _ = reply.send(Err(AppendError::Unavailable(why.to_owned())));
        }
    }
}

/// A file name in a log directory.
enum SegName {
    /// `<first:020>.seg`
    Log(u64),
    /// `hold-<gen:06>.seg`
    Hold(u32),
}

fn parse_segment_name(name: &str) -> Option<SegName> {
    let stem = name.strip_suffix(".seg")?;
    if let Some(g) = stem.strip_prefix("hold-") {
        return g.parse().ok().filter(|&g| g > 0).map(SegName::Hold);
    }
    if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
        return stem.parse().ok().map(SegName::Log);
    }
    None
}

fn stem_of(file_name: &str) -> String {
    file_name
        .strip_suffix(".seg")
        .unwrap_or(file_name)
        .to_owned()
}

fn hold_stem(gen_: u32) -> String {
    format!("hold-{gen_:06}")
}

/// Copies bytes `from..to` of a segment that recovery is about to cut off
/// (a torn tail) or remove (a half-created segment) to
/// `<log>/torn/<segment file>.<from>`, synced, so recovery never destroys a
/// byte: what it took for a torn write stays available to an operator or
/// an investigator (`registre verify --data` mentions these files).
fn quarantine(
    vfs: &dyn Vfs,
    dir: &std::path::Path,
    fname: &str,
    file: &dyn VFile,
    from: u64,
    to: u64,
) -> std::io::Result<()> {
    let tdir = dir.join("torn");
    vfs.create_dir_all(&tdir)?;
    let mut bytes = vec![0u8; usize::try_from(to.saturating_sub(from)).unwrap_or(0)];
    file.read_exact_at(&mut bytes, from)?;
    let out = vfs.open(&tdir.join(format!("{fname}.{from}")), true)?;
    out.set_len(0)?;
    out.write_all_at(&bytes, 0)?;
    out.sync_data()?;
    vfs.sync_dir(&tdir)?;
    vfs.sync_dir(dir)
}

/// Removes what recovery kept of segment `fname` in `torn/` (its purge
/// shreds the key those bytes are sealed with: they go with it).
fn remove_torn(vfs: &dyn Vfs, dir: &std::path::Path, fname: &str) -> std::io::Result<()> {
    let tdir = dir.join("torn");
    let names = match vfs.list(&tdir) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let prefix = format!("{fname}.");
    for n in names {
        let base = n.rsplit('/').next().unwrap_or(&n);
        if base.starts_with(&prefix) {
            vfs.remove(&tdir.join(base))?;
        }
    }
    Ok(())
}

/// Removes the index file of the segment at `seg_path`, if any.
fn remove_index(vfs: &dyn Vfs, seg_path: &std::path::Path) -> std::io::Result<()> {
    let ip = seg_path.with_extension("idx");
    match vfs.remove(&ip) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Writes the index file of a complete segment, durably, and opens it.
fn write_sealed(
    vfs: &dyn Vfs,
    seg_path: &std::path::Path,
    ix: &SegIndex,
    first_index: u64,
    segment_len: u64,
) -> std::io::Result<SealedIndex> {
    let ip = seg_path.with_extension("idx");
    let bytes = ix.encode_sealed(first_index, segment_len);
    let f = vfs.open(&ip, true)?;
    f.set_len(0)?;
    f.write_all_at(&bytes, 0)?;
    f.sync_data()?;
    if let Some(dir) = ip.parent() {
        vfs.sync_dir(dir)?;
    }
    SealedIndex::open(f, first_index, segment_len).map_err(std::io::Error::other)
}

/// The index of a sealed (complete) segment: its index file if it fits the
/// segment, else rebuilt from the records and written for the next open.
/// Returns it with the segment's end and the next index.
fn open_sealed(
    vfs: &dyn Vfs,
    path: &std::path::Path,
    file: &dyn VFile,
    header: &SegmentHeader,
    len: u64,
    name: &ClassName,
    keys: &SegmentKeys,
) -> Result<(SegIx, u64, u64), OpenError> {
    let ip = path.with_extension("idx");
    match vfs.open(&ip, false) {
        Ok(f) => match SealedIndex::open(f, header.first_index, len) {
            Ok(ix) => {
                let next = if header.hold {
                    ix.held.last().map_or(header.first_index, |l| l + 1)
                } else {
                    header.first_index + u64::from(ix.len())
                };
                return Ok((SegIx::Sealed(ix), len, next));
            }
            Err(why) => {
                tracing::warn!(index = %ip.display(), why, "rebuilding a segment's index from its records");
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(OpenError::Io { path: ip, source }),
    }
    let (index, end, next) = scan(path, file, header, len, false, name, keys)?;
    if end != len {
        return Err(OpenError::Corrupt {
            path: path.to_owned(),
            offset: end,
            reason: "trailing bytes in a sealed segment".into(),
        });
    }
    // What was read may be in the page cache only (a crash before a sync):
    // durable before anyone can see it.
    file.sync_data().map_err(|source| OpenError::Io {
        path: path.to_owned(),
        source,
    })?;
    let sealed = write_sealed(vfs, path, &index, header.first_index, len)
        .map_err(|source| OpenError::Io { path: ip, source })?;
    Ok((SegIx::Sealed(sealed), end, next))
}

fn read_header(
    file: &dyn VFile,
    path: &std::path::Path,
    len: u64,
) -> Result<SegmentHeader, OpenError> {
    let mut hbuf = [0u8; HEADER_LEN];
    let decoded = if len >= HEADER_LEN as u64 {
        file.read_exact_at(&mut hbuf, 0)
            .map_err(|source| OpenError::Io {
                path: path.to_owned(),
                source,
            })?;
        SegmentHeader::decode(&hbuf)
    } else {
        Err("segment header is truncated")
    };
    decoded.map_err(|reason| OpenError::Corrupt {
        path: path.to_owned(),
        offset: 0,
        reason: reason.to_owned(),
    })
}

/// Opens the data key file of segment `stem`.
fn load_keys(
    vfs: &dyn Vfs,
    opts: &LogOptions,
    log: &ClassName,
    stem: &str,
    segment: &std::path::Path,
) -> Result<SegmentKeys, OpenError> {
    let path = opts.key_dir.join(format!("{stem}.key"));
    let raw = vfs
        .open(&path, false)
        .and_then(|f| {
            let len = f.len()?;
            let mut raw = vec![0u8; len.min(4096) as usize];
            f.read_exact_at(&mut raw, 0)?;
            Ok(raw)
        })
        .map_err(|e| OpenError::Corrupt {
            path: segment.to_owned(),
            offset: 0,
            reason: format!(
                "its data key {} cannot be read ({e}): without it the segment is unreadable",
                path.display()
            ),
        })?;
    opts.master
        .segment_keys(log.as_str(), &path, &raw)
        .map_err(|e| OpenError::Io {
            path: path.clone(),
            source: std::io::Error::other(e.to_string()),
        })
}

/// Creates, wraps and durably writes the keys of segment `stem`.
fn create_keys(
    vfs: &dyn Vfs,
    opts: &LogOptions,
    log: &ClassName,
    stem: &str,
) -> std::io::Result<SegmentKeys> {
    let (keys, bytes) = SegmentKeys::generate().map_err(std::io::Error::other)?;
    let label = format!("{}/{stem}", log.as_str());
    let wrapped = opts
        .master
        .wrap(&label, &bytes)
        .map_err(std::io::Error::other)?;
    let path = opts.key_dir.join(format!("{stem}.key"));
    let f = vfs.open(&path, true)?;
    f.set_len(0)?;
    f.write_all_at(&wrapped, 0)?;
    f.sync_data()?;
    vfs.sync_dir(&opts.key_dir)?;
    Ok(keys)
}

/// Destroys the key file of segment `stem` (overwritten, synced, removed):
/// crypto-shredding. Absent is fine.
fn shred(vfs: &dyn Vfs, key_dir: &std::path::Path, stem: &str) -> std::io::Result<()> {
    let path = key_dir.join(format!("{stem}.key"));
    match vfs.open(&path, false) {
        Ok(f) => {
            let len = f.len()?;
            f.write_all_at(&vec![0u8; len as usize], 0)?;
            f.sync_data()?;
            vfs.remove(&path)?;
            vfs.sync_dir(key_dir)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// What a purge did (or, dry, would do) to one log.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct LogPurge {
    pub log: String,
    /// The log's retention.
    pub retention: String,
    /// Traces received before this instant (RFC 3339 UTC) were past retention.
    pub cutoff: String,
    /// Segments destroyed (data key shredded, file deleted).
    pub segments: u64,
    /// The range of log indexes purged, `[first, end)`.
    pub first: Option<u64>,
    pub end: Option<u64>,
    /// Traces destroyed.
    pub purged: u64,
    /// Traces past retention kept by a legal hold.
    pub held: u64,
    /// Bytes of segment files deleted.
    pub bytes: u64,
}

impl Log {
    /// Runs a purge in this log's writer (appends to this log wait for it).
    pub async fn purge(&self, order: PurgeOrder) -> Result<LogPurge, String> {
        let (reply, rx) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or("the store is shutting down")?;
        tx.send(Command::Purge(order, reply))
            .await
            .map_err(|_| "the store is shutting down".to_owned())?;
        rx.await
            .map_err(|_| "the store is shutting down".to_owned())?
    }
}

/// A trace a purge keeps, decrypted.
struct Kept {
    index: u64,
    received_at: i64,
    plain: Vec<u8>,
    trace: StoredTrace,
}

impl Writer {
    fn purge(&mut self, order: PurgeOrder) -> Result<LogPurge, String> {
        if let Some(why) = poisoned(&self.poison) {
            return Err(why);
        }
        let log_name = self.name.clone();
        let fail = &move |e: std::io::Error| format!("purge of log {log_name}: {e}");
        let mut out = LogPurge {
            log: self.name.as_str().to_owned(),
            cutoff: format_received_at(order.cutoff),
            ..LogPurge::default()
        };
        // Everything written is durable and in the tree, and a checkpoint
        // covers it: the commitments of what goes stay provable.
        self.barrier().map_err(fail)?;
        if !order.dry_run && self.tree.latest().is_none_or(|c| c.size < self.tree.size()) {
            self.tree.checkpoint(&order.signer).map_err(fail)?;
        }
        let segs: Vec<Arc<Segment>> = read(&self.segments).clone();
        let mut examined = 0u64;
        for seg in segs {
            let (len, last) = {
                let ix = seg.index();
                (ix.len(), ix.last_received_at())
            };
            if seg.gen_ == 0 {
                // Segments of the log go in order, each entirely past.
                if len == 0 || last.is_none_or(|t| t >= order.cutoff) {
                    break;
                }
            }
            let kept = if order.holds.is_empty() && seg.gen_ == 0 {
                Vec::new()
            } else {
                self.kept(&seg, &order)
                    .map_err(|e| format!("purge of log {}: {e}", self.name))?
            };
            examined += u64::from(len);
            if let Some(p) = &order.progress {
                p(examined);
            }
            if seg.gen_ != 0 && kept.len() == len as usize {
                continue;
            }
            let first = seg.header.first_index;
            let end = if seg.gen_ == 0 {
                first + u64::from(len)
            } else {
                seg.index().last_held().map_or(first, |l| l + 1)
            };
            let dropped = u64::from(len) - kept.len() as u64;
            out.segments += 1;
            out.purged += dropped;
            out.held += kept.len() as u64;
            out.first = Some(out.first.map_or(first, |f| f.min(first)));
            out.end = Some(out.end.map_or(end, |e| e.max(end)));
            out.bytes += seg.file.len().unwrap_or(0);
            if order.dry_run {
                continue;
            }
            let now = self.opts.clock.now_micros();
            self.replace(
                &seg,
                kept,
                purged::Purged {
                    first,
                    end,
                    at: now,
                    dropped,
                    new_hold: 0,
                    old_hold: seg.gen_,
                },
            )
            .map_err(fail)?;
        }
        Ok(out)
    }

    /// The traces of `seg` a purge must keep: those a hold matches, and in
    /// a hold segment those no longer past retention.
    fn kept(&self, seg: &Segment, order: &PurgeOrder) -> Result<Vec<Kept>, String> {
        let filters: Vec<Filter<'_>> = order
            .holds
            .iter()
            .filter(|q| q.class.as_ref().is_none_or(|c| c == &self.name))
            .map(Filter::new)
            .collect();
        let ix = seg.index();
        let mut out = Vec::new();
        let mut buf = Vec::new();
        let mut scratch = Vec::new();
        let frames = ix.frames().map_err(|e| e.to_string())?;
        let mut frame = 0usize;
        for p in 0..ix.len() {
            let index = ix.index_at(seg.header.first_index, p);
            while frames.get(frame + 1).is_some_and(|f| f.pos <= p) {
                frame += 1;
            }
            let received_at = frames.get(frame).map_or(i64::MIN, |f| f.received_at);
            let loc = ix.loc(p).map_err(|e| e.to_string())?;
            let in_time = |q: &Query| {
                q.since.is_none_or(|s| received_at >= s) && q.until.is_none_or(|u| received_at < u)
            };
            buf.resize(loc.len as usize, 0);
            seg.file
                .read_exact_at(&mut buf, loc.offset)
                .map_err(|e| e.to_string())?;
            let plain = seg
                .keys
                .open(self.name.as_str(), index, &mut buf)
                .ok_or_else(|| format!("record {index} does not open with its data key"))?;
            let plain = codec::plaintext(plain, seg.header.version, &mut scratch)
                .map_err(|e| format!("record {index}: {e}"))?;
            let rec = decode_record(plain)?;
            let keep = (seg.gen_ != 0 && received_at >= order.cutoff)
                || filters
                    .iter()
                    .any(|f| in_time(f.q) && f.matches(&rec.trace));
            if keep {
                out.push(Kept {
                    index,
                    received_at,
                    plain: plain.to_vec(),
                    trace: rec.trace,
                });
            }
        }
        Ok(out)
    }

    /// Replaces `seg` by a hold segment of `kept` (or by nothing), in the
    /// crash-safe order: hold segment durable, history record durable, key
    /// shredded, file deleted.
    fn replace(
        &mut self,
        seg: &Arc<Segment>,
        kept: Vec<Kept>,
        mut record: purged::Purged,
    ) -> std::io::Result<()> {
        let new = if kept.is_empty() {
            None
        } else {
            self.hold_gen += 1;
            record.new_hold = self.hold_gen;
            Some(self.write_hold(self.hold_gen, seg.header.period_start, kept)?)
        };
        purged::append(
            &*self.history_file,
            &mut self.history,
            record,
            &self.history_key,
        )?;
        {
            let mut segs = self.segments.write().unwrap_or_else(|p| p.into_inner());
            segs.retain(|s| !Arc::ptr_eq(s, seg));
            if let Some(n) = &new {
                segs.push(n.clone());
                segs.sort_by_key(|s| (s.gen_ == 0, s.header.first_index));
            }
        }
        if self.active.as_ref().is_some_and(|a| Arc::ptr_eq(a, seg)) {
            // The next append starts a new segment at the next index.
            self.active = None;
        }
        let gone = seg.file.len().unwrap_or(0);
        let stem = stem_of(
            &seg.path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        shred(&*self.vfs, &self.opts.key_dir, &stem)?;
        self.vfs.remove(&seg.path)?;
        remove_index(&*self.vfs, &seg.path)?;
        remove_torn(&*self.vfs, &self.dir, &format!("{stem}.seg"))?;
        self.vfs.sync_dir(&self.dir)?;
        let added = new.as_ref().map_or(0, |n| n.file.len().unwrap_or(0));
        self.bytes.fetch_add(added, Ordering::Relaxed);
        self.bytes.fetch_sub(
            gone.min(self.bytes.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        Ok(())
    }

    /// Writes hold segment `gen_`: the kept traces re-sealed under a new
    /// data key, one frame each, synced.
    fn write_hold(
        &mut self,
        gen_: u32,
        period_start: i64,
        kept: Vec<Kept>,
    ) -> std::io::Result<Arc<Segment>> {
        let stem = hold_stem(gen_);
        let keys = create_keys(&*self.vfs, &self.opts, &self.name, &stem)?;
        let header = SegmentHeader {
            first_index: kept.first().map_or(0, |k| k.index),
            period_start,
            class: self.name.as_str().to_owned(),
            hold: true,
            version: super::format::FORMAT,
        };
        let mut w = FrameWriter::new();
        let mut ix = SegIndex::default();
        let mut nonces = vec![0u8; kept.len() * NONCE_LEN];
        crate::crypto::random(&mut nonces).map_err(std::io::Error::other)?;
        let mut pos = HEADER_LEN as u64;
        let mut bytes = header.encode().to_vec();
        for (i, k) in kept.into_iter().enumerate() {
            w.clear();
            w.begin(k.index, k.received_at, 0);
            let rec_start = w.open_record();
            let mut nonce = [0u8; NONCE_LEN];
            nonce.copy_from_slice(&nonces[i * NONCE_LEN..(i + 1) * NONCE_LEN]);
            w.buf.extend_from_slice(&nonce);
            let plain_start = w.buf.len();
            // salt ‖ zstd(JCS): the hold segment is format 3.
            let salt_len = k.plain.len().min(16);
            w.buf.extend_from_slice(&k.plain[..salt_len]);
            self.packer.pack(&k.plain[salt_len..], &mut w.buf)?;
            let tag = keys.seal(
                self.name.as_str(),
                k.index,
                nonce,
                &mut w.buf[plain_start..],
            );
            w.buf.extend_from_slice(&tag);
            let (off, len) = w.close_record(rec_start);
            w.finish();
            ix.begin_frame(k.received_at);
            ix.held.push(k.index);
            ix.add_keys(
                Loc {
                    offset: pos + off as u64,
                    len,
                },
                &keys_of(&keys, &k.trace),
                occurred_micros(&k.trace.occurred_at),
            );
            bytes.extend_from_slice(&w.buf);
            pos += w.buf.len() as u64;
        }
        let path = self.dir.join(format!("{stem}.seg"));
        let file = self.vfs.open(&path, true)?;
        file.set_len(0)?;
        file.write_all_at(&bytes, 0)?;
        file.sync_data()?;
        self.vfs.sync_dir(&self.dir)?;
        let sealed = write_sealed(&*self.vfs, &path, &ix, header.first_index, pos)?;
        Ok(Arc::new(Segment {
            header,
            path,
            gen_,
            file,
            keys: Arc::new(keys),
            index: RwLock::new(SegIx::Sealed(sealed)),
            durable_upto: AtomicU64::new(pos),
        }))
    }
}
