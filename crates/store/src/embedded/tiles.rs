//! A log's full tiles on disk: one file per tile level, `tiles-<level>`,
//! where the tile of index `n` is the record at offset `n · TILE_RECORD`,
//! so any tile is one `pread` away and nothing about them is held in memory.
//!
//! ```text
//! record   0 1 level u8 · 1 3 zero · 4 8 tile index u64 LE ·
//!          12 8192 the 256 hashes · 8204 4 crc32c of bytes 0..8204
//! ```
//!
//! Format 2 kept every level's records in one `tiles` file in the order
//! they were written; [`convert_legacy`] splits it at the first open by a
//! later version (the records are copied unchanged), and [`TileFiles`] reads
//! either layout for the read-only tools (`verify`, `migrate`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use registre_log::merkle::Hash;
use registre_log::tiled::{FullTile, TILE_WIDTH, TileKey};

use crate::OpenError;
use crate::vfs::{VFile, Vfs};

/// Bytes of one tile record.
pub const TILE_RECORD: usize = 12 + TILE_WIDTH as usize * 32 + 4;
/// The format-2 file of every level's tiles.
pub const LEGACY_FILE: &str = "tiles";
/// Tile levels a 64-bit log can have.
pub const LEVELS: u8 = 8;

/// The file of the tiles of `level`.
pub fn level_file(level: u8) -> String {
    format!("tiles-{level}")
}

/// Appends the record of a full tile to `buf`.
pub fn encode(buf: &mut Vec<u8>, key: TileKey, hashes: &[Hash]) {
    let start = buf.len();
    buf.push(key.level);
    buf.extend_from_slice(&[0; 3]);
    buf.extend_from_slice(&key.index.to_le_bytes());
    for h in hashes {
        buf.extend_from_slice(h);
    }
    let crc = crc32c::crc32c(&buf[start..]);
    buf.extend_from_slice(&crc.to_le_bytes());
}

/// Decodes and checks a tile record.
pub fn decode(rec: &[u8]) -> Result<(TileKey, FullTile), &'static str> {
    if rec.len() != TILE_RECORD {
        return Err("tile record cut short");
    }
    let body = &rec[..TILE_RECORD - 4];
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&rec[TILE_RECORD - 4..]);
    if crc32c::crc32c(body) != u32::from_le_bytes(crc) {
        return Err("tile record checksum mismatch");
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&rec[4..12]);
    let key = TileKey {
        level: rec[0],
        index: u64::from_le_bytes(n),
    };
    let hashes: Vec<Hash> = registre_log::merkle::hashes(&rec[12..TILE_RECORD - 4]);
    Ok((key, hashes.into()))
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> OpenError + '_ {
    move |source| OpenError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Splits a format-2 `tiles` file into per-level files, then removes it.
/// Idempotent: a crash mid-way leaves the old file, and the next open
/// starts again from it.
pub fn convert_legacy(dir: &Path, vfs: &dyn Vfs) -> Result<(), OpenError> {
    let legacy = dir.join(LEGACY_FILE);
    if !vfs
        .list(dir)
        .map_err(io_err(dir))?
        .iter()
        .any(|n| n == LEGACY_FILE)
    {
        return Ok(());
    }
    let f = vfs.open(&legacy, false).map_err(io_err(&legacy))?;
    let len = f.len().map_err(io_err(&legacy))?;
    let whole = len / TILE_RECORD as u64;
    let mut per_level: Vec<Vec<u8>> = vec![Vec::new(); usize::from(LEVELS)];
    let mut rec = vec![0u8; TILE_RECORD];
    for k in 0..whole {
        let at = k * TILE_RECORD as u64;
        f.read_exact_at(&mut rec, at).map_err(io_err(&legacy))?;
        let (key, _) = decode(&rec).map_err(|reason| OpenError::Corrupt {
            path: legacy.clone(),
            offset: at,
            reason: reason.to_owned(),
        })?;
        let out = per_level
            .get_mut(usize::from(key.level))
            .ok_or_else(|| OpenError::Corrupt {
                path: legacy.clone(),
                offset: at,
                reason: format!("tile level {} is out of range", key.level),
            })?;
        if key.index != (out.len() / TILE_RECORD) as u64 {
            return Err(OpenError::Corrupt {
                path: legacy.clone(),
                offset: at,
                reason: format!(
                    "tile {} of level {} is out of order (expected {})",
                    key.index,
                    key.level,
                    out.len() / TILE_RECORD
                ),
            });
        }
        out.extend_from_slice(&rec);
    }
    for (level, bytes) in per_level.iter().enumerate() {
        if bytes.is_empty() {
            continue;
        }
        let p = dir.join(level_file(level as u8));
        let out = vfs.open(&p, true).map_err(io_err(&p))?;
        out.set_len(0).map_err(io_err(&p))?;
        out.write_all_at(bytes, 0).map_err(io_err(&p))?;
        out.sync_data().map_err(io_err(&p))?;
    }
    vfs.sync_dir(dir).map_err(io_err(dir))?;
    vfs.remove(&legacy).map_err(io_err(&legacy))?;
    vfs.sync_dir(dir).map_err(io_err(dir))?;
    tracing::info!(dir = %dir.display(), tiles = whole, "tiles split into one file per level (format 3)");
    Ok(())
}

/// The tile files of a log, read-only, in either layout.
pub struct TileFiles {
    dir: PathBuf,
    layout: Layout,
}

enum Layout {
    /// One file per level (format 3).
    PerLevel(Vec<Option<std::fs::File>>),
    /// Format 2: one file, the offset of each tile found by one scan.
    Legacy {
        file: std::fs::File,
        at: HashMap<TileKey, u64>,
        counts: Vec<u64>,
    },
}

impl TileFiles {
    /// Opens the tile files of the log directory `dir` for reading.
    pub fn open(dir: &Path) -> std::io::Result<TileFiles> {
        use std::os::unix::fs::FileExt;
        let legacy = dir.join(LEGACY_FILE);
        let layout = match std::fs::File::open(&legacy) {
            Ok(file) => {
                let len = file.metadata()?.len();
                let mut at = HashMap::new();
                let mut counts = vec![0u64; usize::from(LEVELS)];
                let mut head = [0u8; 12];
                for k in 0..len / TILE_RECORD as u64 {
                    let off = k * TILE_RECORD as u64;
                    file.read_exact_at(&mut head, off)?;
                    let mut n = [0u8; 8];
                    n.copy_from_slice(&head[4..12]);
                    let key = TileKey {
                        level: head[0],
                        index: u64::from_le_bytes(n),
                    };
                    if let Some(c) = counts.get_mut(usize::from(key.level)) {
                        *c = (*c).max(key.index + 1);
                    }
                    at.entry(key).or_insert(off);
                }
                Layout::Legacy { file, at, counts }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut files = Vec::new();
                for level in 0..LEVELS {
                    files.push(std::fs::File::open(dir.join(level_file(level))).ok());
                }
                Layout::PerLevel(files)
            }
            Err(e) => return Err(e),
        };
        Ok(TileFiles {
            dir: dir.to_owned(),
            layout,
        })
    }

    /// Whole tile records stored for `level`.
    pub fn count(&self, level: u8) -> std::io::Result<u64> {
        match &self.layout {
            Layout::PerLevel(files) => Ok(match files.get(usize::from(level)) {
                Some(Some(f)) => f.metadata()?.len() / TILE_RECORD as u64,
                _ => 0,
            }),
            Layout::Legacy { counts, .. } => {
                Ok(counts.get(usize::from(level)).copied().unwrap_or(0))
            }
        }
    }

    /// The stored tile `key`: `Ok(None)` if it is not stored, `Err` of a
    /// reason if its record is damaged or is another tile's.
    pub fn read(&self, key: TileKey) -> std::io::Result<Option<Result<FullTile, String>>> {
        use std::os::unix::fs::FileExt;
        let mut rec = vec![0u8; TILE_RECORD];
        let (file, off) = match &self.layout {
            Layout::PerLevel(files) => match files.get(usize::from(key.level)) {
                Some(Some(f)) => {
                    let off = key.index.saturating_mul(TILE_RECORD as u64);
                    if off + TILE_RECORD as u64 > f.metadata()?.len() {
                        return Ok(None);
                    }
                    (f, off)
                }
                _ => return Ok(None),
            },
            Layout::Legacy { file, at, .. } => match at.get(&key) {
                Some(off) => (file, *off),
                None => return Ok(None),
            },
        };
        file.read_exact_at(&mut rec, off)?;
        Ok(Some(match decode(&rec) {
            Ok((k, t)) if k == key => Ok(t),
            Ok((k, _)) => Err(format!(
                "the record at byte {off} holds tile {} of level {}",
                k.index, k.level
            )),
            Err(e) => Err(format!("{e} at byte {off}")),
        }))
    }

    /// Where the tiles are, for messages.
    pub fn describe(&self, level: u8) -> PathBuf {
        match &self.layout {
            Layout::PerLevel(_) => self.dir.join(level_file(level)),
            Layout::Legacy { .. } => self.dir.join(LEGACY_FILE),
        }
    }
}

/// The per-level tile files of a live log (read and appended by its tree).
pub struct LevelFiles {
    dir: PathBuf,
    vfs: Arc<dyn Vfs>,
    files: std::sync::Mutex<Vec<Option<Arc<dyn VFile>>>>,
    /// A file was created since the last sync: the directory needs one too.
    created: std::sync::atomic::AtomicBool,
}

impl LevelFiles {
    pub fn new(dir: &Path, vfs: Arc<dyn Vfs>) -> LevelFiles {
        LevelFiles {
            dir: dir.to_owned(),
            vfs,
            files: std::sync::Mutex::new(vec![None; usize::from(LEVELS)]),
            created: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn path(&self, level: u8) -> PathBuf {
        self.dir.join(level_file(level))
    }

    /// The file of `level`, opened (and created with `create`) on first use.
    fn file(&self, level: u8, create: bool) -> std::io::Result<Option<Arc<dyn VFile>>> {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let slot = files
            .get_mut(usize::from(level))
            .ok_or_else(|| std::io::Error::other("tile level out of range"))?;
        if slot.is_none() {
            let p = self.path(level);
            match self.vfs.open(&p, create) {
                Ok(f) => {
                    if create {
                        self.created
                            .store(true, std::sync::atomic::Ordering::Release);
                    }
                    *slot = Some(f);
                }
                Err(e) if !create && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        Ok(slot.clone())
    }

    /// Whole records of `level`; a partial last record (torn write) and,
    /// past `trusted` records (covered by a checkpoint, hence synced), any
    /// record that does not check are cut off: tiles are derivable, the
    /// tree recomputes what is missing.
    pub fn open_level(&self, level: u8, trusted: u64) -> std::io::Result<u64> {
        let Some(f) = self.file(level, false)? else {
            return Ok(0);
        };
        let len = f.len()?;
        let mut whole = len / TILE_RECORD as u64;
        let mut rec = vec![0u8; TILE_RECORD];
        let mut n = trusted.min(whole);
        while n < whole {
            f.read_exact_at(&mut rec, n * TILE_RECORD as u64)?;
            match decode(&rec) {
                Ok((k, _)) if k.level == level && k.index == n => n += 1,
                _ => {
                    tracing::warn!(file = %self.path(level).display(), tile = n, "dropping tiles a crash left unfinished (they are recomputed)");
                    whole = n;
                }
            }
        }
        if len != whole * TILE_RECORD as u64 {
            f.set_len(whole * TILE_RECORD as u64)?;
            f.sync_data()?;
        }
        Ok(whole)
    }

    /// Reads and checks tile `key`.
    pub fn read(&self, key: TileKey) -> std::io::Result<FullTile> {
        let f = self
            .file(key.level, false)?
            .ok_or_else(|| std::io::Error::other(format!("no tile of level {}", key.level)))?;
        let mut rec = vec![0u8; TILE_RECORD];
        f.read_exact_at(&mut rec, key.index.saturating_mul(TILE_RECORD as u64))?;
        match decode(&rec) {
            Ok((k, t)) if k == key => Ok(t),
            Ok(_) => Err(std::io::Error::other(format!(
                "{}: tile {} holds another tile",
                self.path(key.level).display(),
                key.index
            ))),
            Err(e) => Err(std::io::Error::other(format!(
                "{}: tile {}: {e}",
                self.path(key.level).display(),
                key.index
            ))),
        }
    }

    /// Writes full tiles at their places (page cache; see [`Self::sync`]).
    pub fn write(&self, tiles: &[(TileKey, FullTile)]) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(TILE_RECORD);
        for (k, hashes) in tiles {
            buf.clear();
            encode(&mut buf, *k, hashes);
            let f = self
                .file(k.level, true)?
                .ok_or_else(|| std::io::Error::other("tile file"))?;
            f.write_all_at(&buf, k.index.saturating_mul(TILE_RECORD as u64))?;
        }
        Ok(())
    }

    /// Syncs every tile file opened so far.
    pub fn sync(&self) -> std::io::Result<()> {
        let files: Vec<Arc<dyn VFile>> = self
            .files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .flatten()
            .cloned()
            .collect();
        for f in files {
            f.sync_data()?;
        }
        if self
            .created
            .swap(false, std::sync::atomic::Ordering::AcqRel)
        {
            self.vfs.sync_dir(&self.dir)?;
        }
        Ok(())
    }
}
