//! A log's Merkle tree on disk, with only its right edge in memory
//! (DESIGN §4; the tree logic is `registre_log::tiled`, shared with every
//! driver).
//!
//! Files, beside the log's segments:
//! ```text
//! entries      n × 32 bytes: commitment of trace i at offset 32·i
//! tiles-<L>    the full tiles of tile level L, tile n at offset n · 8208
//!              (see `tiles.rs`; format 2 had one `tiles` file, split at open)
//! checkpoints  every signed checkpoint ever issued, each record:
//!                0 4 length u32 LE · 4 4 crc32c of the note · 8 … the note
//! ```
//! `entries` is written by the group commit right after the records are
//! synced (a commitment is a pure function of its record, so it is durable
//! with it) and is itself synced before every checkpoint; at open, what a
//! crash lost after the latest checkpoint is recomputed from the records.
//! Full tiles are written as they complete (when the queued commitments
//! are folded in, at least every second) and synced before each
//! checkpoint, so the tiles a checkpoint needs are on disk before it is.
//! Memory: the right edge (under 255 hashes per tile level), the tiles
//! completed since the last fold, and a bounded cache of tiles read back.

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use registre_log::checkpoint::Checkpoint;
use registre_log::merkle::{self, Hash, HashReader};
use registre_log::note::Signer;
use registre_log::tiled::{DEFAULT_CACHE_TILES, TILE_WIDTH, TileKey, TiledTree};

use super::tiles::{self, LevelFiles};
use crate::vfs::{VFile, Vfs};
use registre_log::tile::TilePath;

use crate::OpenError;

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
    tiles: LevelFiles,
    checkpoints_file: Arc<dyn VFile>,
    /// Use [`Tree::read`], which first folds in the pending commitments.
    tree: RwLock<TiledTree>,
    /// Durable commitments not yet folded into the tree: the group commit
    /// only queues them; readers (proofs, tiles, checkpoints) and the
    /// checkpointer fold them in, off the append path.
    pending: std::sync::Mutex<Vec<Hash>>,
    /// Checkpoint history, oldest first.
    pub history: RwLock<Vec<SignedCheckpoint>>,
    /// Serialises checkpoint issuance.
    issuing: Mutex<()>,
}

impl Tree {
    /// Opens the tree files of a log whose segments hold `records` traces;
    /// `commitment_of(i)` yields the commitment of record `i` for the
    /// records whose commitment did not reach `entries` before a crash.
    pub fn open(
        dir: &Path,
        vfs: Arc<dyn Vfs>,
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
        // A crash can leave zeros where commitments written after the latest
        // checkpoint go: recompute those from their records. Any other
        // difference is for `registre verify` to report. Only that tail is
        // read.
        let from = check_from.min(have);
        let mut raw = vec![0u8; ((have - from) * 32) as usize];
        entries
            .read_exact_at(&mut raw, from * 32)
            .map_err(io(&ep))?;
        for (k, c) in raw.chunks_exact_mut(32).enumerate() {
            if c.iter().all(|b| *b == 0) {
                let i = from + k as u64;
                let fresh = commitment_of(i)?;
                c.copy_from_slice(&fresh);
                entries.write_all_at(&fresh, i * 32).map_err(io(&ep))?;
            }
        }
        if have < records {
            let mut add = Vec::with_capacity(((records - have) * 32) as usize);
            for i in have..records {
                add.extend_from_slice(&commitment_of(i)?);
            }
            entries.write_all_at(&add, have * 32).map_err(io(&ep))?;
        }
        entries.sync_data().map_err(io(&ep))?;

        if let Some(last) = history.last()
            && last.size > records
        {
            return Err(OpenError::Corrupt {
                path: cp,
                offset: 0,
                reason: format!(
                    "the latest checkpoint covers {} traces but the log holds {records}: \
                     acknowledged traces are missing",
                    last.size
                ),
            });
        }

        // Tiles: split a format-2 file, then find what each level holds.
        tiles::convert_legacy(dir, &*vfs)?;
        let files = LevelFiles::new(dir, vfs.clone());
        let mut stored = Vec::new();
        for level in 0..tiles::LEVELS {
            let trusted = TiledTree::full_tiles(check_from, level);
            let lp = files.path(level);
            stored.push(files.open_level(level, trusted).map_err(io(&lp))?);
        }
        let mut tree = TiledTree::restore(
            records,
            &stored,
            DEFAULT_CACHE_TILES,
            &mut |k| files.read(k).map_err(io(&files.path(k.level))),
            &mut |a, b| {
                let mut raw = vec![0u8; ((b - a) * 32) as usize];
                entries.read_exact_at(&mut raw, a * 32).map_err(io(&ep))?;
                Ok(raw.chunks_exact(32).map(merkle::leaf_hash).collect())
            },
        )?;
        let lost = tree.take_completed();
        if !lost.is_empty() {
            tracing::warn!(tiles = lost.len(), "rewriting tiles a crash lost");
            files.write(&lost).map_err(io(dir))?;
            files.sync().map_err(io(dir))?;
        }
        Ok(Tree {
            origin,
            entries,
            tiles: files,
            checkpoints_file,
            tree: RwLock::new(tree),
            pending: std::sync::Mutex::new(Vec::new()),
            history: RwLock::new(history),
            issuing: Mutex::new(()),
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

    /// Folds the queued commitments into the tree and writes the tiles they
    /// complete (not synced: a checkpoint syncs them).
    pub fn catch_up(&self) -> std::io::Result<()> {
        let mut tree = self.tree.write().unwrap_or_else(|p| p.into_inner());
        // Taken under the tree's lock: folds happen in publication order.
        let queued = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        for c in &queued {
            tree.push(merkle::leaf_hash(c));
        }
        if !tree.completed().is_empty() {
            // Kept in memory (and served from there) until written.
            self.tiles.write(tree.completed())?;
            tree.take_completed();
        }
        Ok(())
    }

    /// Runs `f` over the tree, every durable commitment folded in, with a
    /// reader that loads full tiles from disk.
    pub fn read<R>(&self, f: impl FnOnce(&dyn HashReader, u64) -> R) -> std::io::Result<R> {
        self.catch_up()?;
        let tree = self.tree.read().unwrap_or_else(|p| p.into_inner());
        let failed = std::cell::Cell::new(None);
        let reader = tree.reader(|k: TileKey| match self.tiles.read(k) {
            Ok(t) => Some(t),
            Err(e) => {
                failed.set(Some(e));
                None
            }
        });
        let out = f(&reader, tree.size());
        match failed.take() {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    pub fn size(&self) -> u64 {
        let queued = self.pending.lock().unwrap_or_else(|p| p.into_inner()).len() as u64;
        self.tree.read().unwrap_or_else(|p| p.into_inner()).size() + queued
    }

    pub fn latest(&self) -> Option<SignedCheckpoint> {
        self.history
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .last()
            .cloned()
    }

    /// Issues a checkpoint of the current tree unless the latest already
    /// covers it; the tiles and commitments it covers are synced first.
    pub fn checkpoint(&self, signer: &Signer) -> std::io::Result<SignedCheckpoint> {
        let _issuing = self.issuing.lock().unwrap_or_else(|p| p.into_inner());
        self.catch_up()?;
        let (size, root) = {
            let tree = self.tree.read().unwrap_or_else(|p| p.into_inner());
            (tree.size(), tree.root())
        };
        if let Some(last) = self.latest()
            && last.size == size
        {
            return Ok(last);
        }
        // Everything the checkpoint commits to must be on disk before it.
        self.entries.sync_data()?;
        self.tiles.sync()?;
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
        match tile {
            TilePath::Hashes(t) => {
                let tl = t.tree_level();
                let start = t.index().saturating_mul(TILE_WIDTH);
                let end = start.saturating_add(u64::from(t.width()));
                self.read(|r, size| {
                    let nodes = if tl >= 64 { 0 } else { size >> tl };
                    if end > nodes {
                        return Err(crate::IntegrityError::OutOfRange(format!(
                            "tile {t} is beyond the tree (size {size})"
                        )));
                    }
                    let mut out = Vec::with_capacity(32 * t.width() as usize);
                    for i in start..end {
                        let h = r.node(tl, i).ok_or_else(|| {
                            crate::IntegrityError::OutOfRange(format!("tile {t} is not available"))
                        })?;
                        out.extend_from_slice(&h);
                    }
                    Ok(out)
                })?
            }
            TilePath::Entries(b) => {
                let start = b.index().saturating_mul(TILE_WIDTH);
                let end = start.saturating_add(u64::from(b.width()));
                let size = self.size();
                if end > size {
                    return Err(crate::IntegrityError::OutOfRange(format!(
                        "entry bundle {b} is beyond the log (size {size})"
                    )));
                }
                let mut raw = vec![0u8; ((end - start) * 32) as usize];
                self.entries.read_exact_at(&mut raw, start * 32)?;
                let entries: Vec<&[u8]> = raw.chunks_exact(32).collect();
                registre_log::tile::encode_bundle(&entries)
                    .map_err(|e| crate::IntegrityError::OutOfRange(e.to_string()))
            }
        }
    }
}
