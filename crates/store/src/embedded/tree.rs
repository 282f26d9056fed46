//! A log's Merkle tree on disk and in memory (DESIGN §4).
//!
//! Files, beside the log's segments:
//! ```text
//! entries      n × 32 bytes: commitment of trace i at offset 32·i
//! tiles        full tlog tiles as they complete (any level), each record:
//!                0 1 level u8 · 1 3 zero · 4 8 tile index u64 LE ·
//!                12 8192 the 256 hashes · 8204 4 crc32c of bytes 0..8204
//! checkpoints  every signed checkpoint ever issued, each record:
//!                0 4 length u32 LE · 4 4 crc32c of the note · 8 … the note
//! ```
//! `entries` is written by the group commit right after the records are
//! synced (a commitment is a pure function of its record, so it is durable
//! with it) and is itself synced before every checkpoint; at open, what a
//! crash lost after the latest checkpoint is recomputed from the records. The tree itself
//! (every level) is held in memory and rebuilt from `entries` at open; tiles
//! are written when a checkpoint is issued (before it), so the tiles a
//! checkpoint needs are on disk before the checkpoint is.

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use registre_log::checkpoint::Checkpoint;
use registre_log::merkle::{self, Hash, HashReader, MemoryTree};
use registre_log::note::Signer;

use crate::vfs::{VFile, Vfs};
use registre_log::tile::TilePath;

use crate::OpenError;

/// Hashes in a full tile.
const TILE_WIDTH: u64 = 256;
const TILE_RECORD: usize = 12 + 256 * 32 + 4;

/// A signed checkpoint as issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub size: u64,
    pub root: Hash,
    /// The whole signed note (C2SP signed-note of a tlog-checkpoint body).
    pub note: String,
}

pub struct Tree {
    pub origin: String,
    entries: Arc<dyn VFile>,
    tiles: Arc<dyn VFile>,
    checkpoints_file: Arc<dyn VFile>,
    /// Use [`Tree::mem`], which first folds in the pending commitments.
    mem_tree: RwLock<MemoryTree>,
    /// Durable commitments not yet folded into the tree: the group commit
    /// only queues them; readers (proofs, tiles, checkpoints) and the
    /// checkpointer fold them in, off the append path.
    pending: std::sync::Mutex<Vec<Hash>>,
    /// Checkpoint history, oldest first.
    pub history: RwLock<Vec<SignedCheckpoint>>,
    /// Serialises checkpoint issuance; holds the full tiles written per level.
    issuing: Mutex<Vec<u64>>,
}

impl Tree {
    /// Opens the tree files of a log whose segments hold `records` traces;
    /// `missing(i)` yields the commitment of record `i` for the records whose
    /// commitment did not reach `entries` before a crash.
    pub fn open(
        dir: &Path,
        vfs: &dyn Vfs,
        origin: String,
        records: u64,
        mut commitment_of: impl FnMut(u64) -> Result<Hash, OpenError>,
    ) -> Result<Tree, OpenError> {
        let io = |p: &Path| {
            let p = p.to_owned();
            move |source| OpenError::Io { path: p, source }
        };
        let cp = dir.join("checkpoints");
        let checkpoints_file = vfs.open(&cp, true).map_err(io(&cp))?;
        let history = read_checkpoints(&cp, &*checkpoints_file)?;
        // Entries up to the latest checkpoint were synced before it; after
        // it, a torn write may have left zeros.
        let check_from = history.last().map_or(0, |c| c.size);
        let ep = dir.join("entries");
        let entries = vfs.open(&ep, true).map_err(io(&ep))?;
        let elen = entries.len().map_err(io(&ep))?;
        let mut have = elen / 32;
        if have > records {
            // Commitments of traces whose records did not survive: never
            // acknowledged.
            tracing::warn!(
                entries = have,
                records,
                "dropping commitments past the last whole record"
            );
            have = records;
        }
        if elen != have * 32 {
            entries.set_len(have * 32).map_err(io(&ep))?;
        }
        let mut raw = vec![0u8; (have * 32) as usize];
        entries.read_exact_at(&mut raw, 0).map_err(io(&ep))?;
        // A crash can leave zeros where commitments written after the latest
        // checkpoint go: recompute those from their records. Any other
        // difference is for `registre verify` to report.
        for i in check_from.min(have)..have {
            let at = (i * 32) as usize;
            if raw[at..at + 32].iter().all(|b| *b == 0) {
                let c = commitment_of(i)?;
                raw[at..at + 32].copy_from_slice(&c);
                entries.write_all_at(&c, i * 32).map_err(io(&ep))?;
            }
        }
        let mut mem = MemoryTree::new();
        for c in raw.chunks_exact(32) {
            mem.push(merkle::leaf_hash(c));
        }
        if have < records {
            let mut add = Vec::with_capacity(((records - have) * 32) as usize);
            for i in have..records {
                let c = commitment_of(i)?;
                mem.push(merkle::leaf_hash(&c));
                add.extend_from_slice(&c);
            }
            entries.write_all_at(&add, have * 32).map_err(io(&ep))?;
        }
        entries.sync_data().map_err(io(&ep))?;

        let tp = dir.join("tiles");
        let tiles = vfs.open(&tp, true).map_err(io(&tp))?;
        let tlen = tiles.len().map_err(io(&tp))?;
        let whole = tlen / TILE_RECORD as u64;
        if tlen != whole * TILE_RECORD as u64 {
            tiles.set_len(whole * TILE_RECORD as u64).map_err(io(&tp))?;
            tiles.sync_data().map_err(io(&tp))?;
        }
        let mut written: Vec<u64> = Vec::new();
        let mut rec = vec![0u8; TILE_RECORD];
        for k in 0..whole {
            tiles
                .read_exact_at(&mut rec, k * TILE_RECORD as u64)
                .map_err(io(&tp))?;
            let level = rec[0] as usize;
            if written.len() <= level {
                written.resize(level + 1, 0);
            }
            written[level] += 1;
        }

        if let Some(last) = history.last()
            && last.size > mem.size()
        {
            return Err(OpenError::Corrupt {
                path: cp,
                offset: 0,
                reason: format!(
                    "the latest checkpoint covers {} traces but the log holds {}: acknowledged \
                     traces are missing",
                    last.size,
                    mem.size()
                ),
            });
        }
        Ok(Tree {
            origin,
            entries,
            tiles,
            checkpoints_file,
            mem_tree: RwLock::new(mem),
            pending: std::sync::Mutex::new(Vec::new()),
            history: RwLock::new(history),
            issuing: Mutex::new(written),
        })
    }

    pub fn entries_file(&self) -> &Arc<dyn VFile> {
        &self.entries
    }

    /// Queues durable commitments (called by the syncer after its sync).
    pub fn publish(&self, commitments: &[Hash]) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(commitments);
    }

    /// Folds the queued commitments into the tree.
    pub fn catch_up(&self) {
        let mut mem = self.mem_tree.write().unwrap_or_else(|p| p.into_inner());
        // Taken under the tree's lock: folds happen in publication order.
        let queued = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        for c in &queued {
            mem.push(merkle::leaf_hash(c));
        }
    }

    /// The tree, with every durable commitment folded in.
    pub fn mem(&self) -> std::sync::RwLockReadGuard<'_, MemoryTree> {
        self.catch_up();
        self.mem_tree.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn size(&self) -> u64 {
        let queued = self.pending.lock().unwrap_or_else(|p| p.into_inner()).len() as u64;
        self.mem_tree
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .size()
            + queued
    }

    pub fn latest(&self) -> Option<SignedCheckpoint> {
        self.history
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .last()
            .cloned()
    }

    /// Issues a checkpoint of the current tree unless the latest already
    /// covers it; writes the tiles it completes first.
    pub fn checkpoint(&self, signer: &Signer) -> std::io::Result<SignedCheckpoint> {
        let mut written = self.issuing.lock().unwrap_or_else(|p| p.into_inner());
        let (size, root) = {
            let mem = self.mem();
            (mem.size(), mem.root())
        };
        if let Some(last) = self.latest()
            && last.size == size
        {
            return Ok(last);
        }
        // Everything the checkpoint commits to must be on disk before it.
        self.entries.sync_data()?;
        // Full tiles completed since the last write, every level.
        let mut buf = Vec::new();
        {
            let mem = self.mem();
            let mut level = 0usize;
            loop {
                let tree_level = 8 * level as u32;
                let nodes = if tree_level >= 64 {
                    0
                } else {
                    size >> tree_level
                };
                let full = nodes / TILE_WIDTH;
                if full == 0 {
                    break;
                }
                if written.len() <= level {
                    written.resize(level + 1, 0);
                }
                for n in written[level]..full {
                    let start = buf.len();
                    buf.push(level as u8);
                    buf.extend_from_slice(&[0; 3]);
                    buf.extend_from_slice(&n.to_le_bytes());
                    for i in 0..TILE_WIDTH {
                        let h = mem
                            .node(tree_level, n * TILE_WIDTH + i)
                            .ok_or_else(|| std::io::Error::other("tile hash not in the tree"))?;
                        buf.extend_from_slice(&h);
                    }
                    let crc = crc32c::crc32c(&buf[start..]);
                    buf.extend_from_slice(&crc.to_le_bytes());
                }
                level += 1;
            }
        }
        if !buf.is_empty() {
            let at = self.tiles.len()?;
            self.tiles.write_all_at(&buf, at)?;
            self.tiles.sync_data()?;
            let mut off = 0;
            while off < buf.len() {
                let level = buf[off] as usize;
                written[level] += 1;
                off += TILE_RECORD;
            }
        }
        let body = Checkpoint::new(&self.origin, size, root)
            .map_err(|e| std::io::Error::other(e.to_string()))?
            .body();
        let note = signer
            .sign(&body)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut rec = Vec::with_capacity(note.len() + 8);
        rec.extend_from_slice(&(note.len() as u32).to_le_bytes());
        rec.extend_from_slice(&crc32c::crc32c(note.as_bytes()).to_le_bytes());
        rec.extend_from_slice(note.as_bytes());
        let at = self.checkpoints_file.len()?;
        self.checkpoints_file.write_all_at(&rec, at)?;
        self.checkpoints_file.sync_data()?;
        let cp = SignedCheckpoint { size, root, note };
        self.history
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(cp.clone());
        Ok(cp)
    }
}

/// Reads the checkpoint history, dropping a torn last record.
pub fn read_checkpoints(path: &Path, f: &dyn VFile) -> Result<Vec<SignedCheckpoint>, OpenError> {
    let io = |source| OpenError::Io {
        path: path.to_owned(),
        source,
    };
    let len = f.len().map_err(io)?;
    let mut raw = vec![0u8; len as usize];
    f.read_exact_at(&mut raw, 0).map_err(io)?;
    let scan = scan_checkpoints(&raw);
    let mut out = Vec::new();
    for (offset, rec) in scan.records {
        match rec {
            Ok(cp) => out.push(cp),
            // Damage before the end is not a torn write: never drop signed
            // history to make it fit.
            Err(reason) => {
                return Err(OpenError::Corrupt {
                    path: path.to_owned(),
                    offset,
                    reason,
                });
            }
        }
    }
    if let Some(at) = scan.torn_at {
        tracing::warn!(path = %path.display(), at, "truncating a torn last checkpoint record");
        f.set_len(at).map_err(io)?;
        f.sync_data().map_err(io)?;
    }
    Ok(out)
}

/// The records of a `checkpoints` file, each with its offset: a checkpoint,
/// or why the record is damaged. A bad *last* record (cut short, or whole but
/// failing its CRC with nothing after it) is a torn write: `torn_at`.
pub struct CheckpointScan {
    pub records: Vec<(u64, Result<SignedCheckpoint, String>)>,
    pub torn_at: Option<u64>,
}

pub fn scan_checkpoints(raw: &[u8]) -> CheckpointScan {
    let mut records = Vec::new();
    let mut p = 0usize;
    let mut torn_at = None;
    while p < raw.len() {
        if raw.len() - p < 8 {
            torn_at = Some(p as u64);
            break;
        }
        let n = u32::from_le_bytes([raw[p], raw[p + 1], raw[p + 2], raw[p + 3]]) as usize;
        let crc = u32::from_le_bytes([raw[p + 4], raw[p + 5], raw[p + 6], raw[p + 7]]);
        let end = p + 8 + n;
        if end > raw.len() {
            torn_at = Some(p as u64);
            break;
        }
        let body = &raw[p + 8..end];
        if crc32c::crc32c(body) != crc {
            if end == raw.len() {
                torn_at = Some(p as u64);
                break;
            }
            records.push((
                p as u64,
                Err("checkpoint record checksum mismatch: the record was altered".to_owned()),
            ));
            p = end;
            continue;
        }
        let note = String::from_utf8_lossy(body).into_owned();
        let rec = match parse_note_head(&note) {
            Some((size, root)) => Ok(SignedCheckpoint { size, root, note }),
            None => Err("the record is not a signed checkpoint".to_owned()),
        };
        records.push((p as u64, rec));
        p = end;
    }
    CheckpointScan { records, torn_at }
}

/// Size and root of a signed checkpoint note (no signature check).
pub fn parse_note_head(note: &str) -> Option<(u64, Hash)> {
    let body_end = note.find("\n\n")? + 1;
    let cp = Checkpoint::parse(&note[..body_end]).ok()?;
    Some((cp.size(), *cp.root()))
}

impl Tree {
    /// Bytes of a tile (concatenated hashes) or an entry bundle.
    pub fn tile_bytes(&self, tile: TilePath) -> Result<Vec<u8>, crate::IntegrityError> {
        let mem = self.mem();
        let size = mem.size();
        match tile {
            TilePath::Hashes(t) => {
                let tl = t.tree_level();
                let nodes = if tl >= 64 { 0 } else { size >> tl };
                let start = t.index().saturating_mul(TILE_WIDTH);
                let end = start.saturating_add(u64::from(t.width()));
                if end > nodes {
                    return Err(crate::IntegrityError::OutOfRange(format!(
                        "tile {t} is beyond the tree (size {size})"
                    )));
                }
                let mut out = Vec::with_capacity(32 * t.width() as usize);
                for i in start..end {
                    let h = mem.node(tl, i).ok_or_else(|| {
                        crate::IntegrityError::OutOfRange(format!("tile {t} is not available"))
                    })?;
                    out.extend_from_slice(&h);
                }
                Ok(out)
            }
            TilePath::Entries(b) => {
                let start = b.index().saturating_mul(TILE_WIDTH);
                let end = start.saturating_add(u64::from(b.width()));
                if end > size {
                    return Err(crate::IntegrityError::OutOfRange(format!(
                        "entry bundle {b} is beyond the log (size {size})"
                    )));
                }
                drop(mem);
                let mut raw = vec![0u8; ((end - start) * 32) as usize];
                self.entries.read_exact_at(&mut raw, start * 32)?;
                let entries: Vec<&[u8]> = raw.chunks_exact(32).collect();
                registre_log::tile::encode_bundle(&entries)
                    .map_err(|e| crate::IntegrityError::OutOfRange(e.to_string()))
            }
        }
    }
}
