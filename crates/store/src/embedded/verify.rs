//! `registre verify --data`: checks a data directory from its bytes alone,
//! read-only, without opening (and so without repairing) the store.
//!
//! For each log: every segment header and frame (checksums, index
//! continuity, every record's log and index), every record's commitment
//! against `entries`, the Merkle tree rebuilt from `entries` against every
//! stored tile, and every stored checkpoint: its signature, its root, and
//! consistency with the checkpoint before it. Each failure names the log and
//! the place (segment file and byte, index, tile path, checkpoint size).

use std::path::{Path, PathBuf};

use registre_log::checkpoint::open_checkpoint;
use registre_log::merkle::Hash;
use registre_log::tiled::TileKey;

use crate::treecheck::{TileProblem, TreeCheck};

use super::tiles::TileFiles;
use registre_log::note::Verifier;
use registre_log::tile::TileId;
use registre_model::StoredTrace;

use super::format::{FRAME_HEADER_LEN, FrameHeader, HEADER_LEN, SegmentHeader};
use super::index::{Loc, SegIndex, keys_of};
use super::log::commitment;
use crate::crypto::{MasterKey, SegmentKeys, data_key_dir};
use crate::vfs::{OsVfs, Vfs};

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub log: String,
    /// Where: a file and byte offset, an index, a tile path, a checkpoint.
    pub place: String,
    pub what: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "log {}: {}: {}", self.log, self.place, self.what)
    }
}

/// What `verify_data_dir` checked and found.
#[derive(Debug, Default)]
pub struct Report {
    pub logs: Vec<LogReport>,
    pub failures: Vec<Failure>,
    /// Things worth saying that are not tampering (e.g. the state a crash
    /// leaves, which the next start repairs).
    pub notes: Vec<String>,
}

#[derive(Debug, Default)]
pub struct LogReport {
    pub log: String,
    pub traces: u64,
    pub commitments: u64,
    pub tiles: u64,
    /// Sealed segments' index files checked.
    pub indexes: u64,
    pub checkpoints: u64,
    /// Size of the latest checkpoint that verified.
    pub verified_size: u64,
}

impl Report {
    pub fn traces(&self) -> u64 {
        self.logs.iter().map(|l| l.traces).sum()
    }
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Total bytes `verify_data_dir` will read (for a progress bar).
pub fn data_dir_bytes(data: &Path) -> u64 {
    let mut n = 0;
    if let Ok(logs) = std::fs::read_dir(data.join("logs")) {
        for l in logs.flatten() {
            if let Ok(files) = std::fs::read_dir(l.path()) {
                n += files
                    .flatten()
                    .filter_map(|f| f.metadata().ok())
                    .map(|m| m.len())
                    .sum::<u64>();
            }
        }
    }
    n
}

/// Verifies every log under `data/logs`, trusting `verifiers` for the
/// checkpoint signatures. `progress` is told how many bytes were read.
pub fn verify_data_dir(
    data: &Path,
    verifiers: &[Verifier],
    master: Option<&MasterKey>,
    progress: &mut dyn FnMut(u64),
) -> std::io::Result<Report> {
    let mut report = Report::default();
    if master.is_none() {
        report_no_master(&mut report.notes);
    }
    let vfs = OsVfs;
    let logs_dir = data.join("logs");
    let mut logs = vfs.list(&logs_dir)?;
    logs.retain(|l| logs_dir.join(l).is_dir());
    for log in logs {
        let dir = logs_dir.join(&log);
        let mut lr = LogReport {
            log: log.clone(),
            ..LogReport::default()
        };
        verify_log(
            &vfs,
            &dir,
            &data_key_dir(data, &log),
            master,
            &log,
            verifiers,
            &mut lr,
            &mut report.failures,
            &mut report.notes,
            progress,
        )?;
        report.logs.push(lr);
    }
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
fn verify_log(
    vfs: &OsVfs,
    dir: &Path,
    key_dir: &Path,
    master: Option<&MasterKey>,
    log: &str,
    verifiers: &[Verifier],
    lr: &mut LogReport,
    failures: &mut Vec<Failure>,
    notes: &mut Vec<String>,
    progress: &mut dyn FnMut(u64),
) -> std::io::Result<()> {
    let mut fail = |place: String, what: String| {
        failures.push(Failure {
            log: log.to_owned(),
            place,
            what,
        })
    };
    // 0. The checkpoint history (checked in step 4): commitments up to the
    // latest checkpoint were synced before it.
    let cp = dir.join("checkpoints");
    let cp_raw = std::fs::read(&cp).unwrap_or_default();
    let cp_scan = super::tree::scan_checkpoints(&cp_raw);
    let checkpointed = cp_scan
        .records
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok().map(|c| c.size))
        .max()
        .unwrap_or(0);

    // 0b. The purge history: indexes below `purged_upto` may be absent.
    let history_raw = std::fs::read(dir.join("purged")).unwrap_or_default();
    let history_key = match master {
        Some(m) if !history_raw.is_empty() => match open_keys(m, key_dir, log, "purged.seg") {
            Ok(k) => Some(k),
            Err(why) => {
                fail(
                    format!("{} (history key)", rel(&dir.join("purged"))),
                    format!("the purge history cannot be authenticated: {why}"),
                );
                None
            }
        },
        _ => None,
    };
    let (history, forged) = super::purged::History::parse(&history_raw, history_key.as_ref());
    for at in &forged {
        fail(
            format!("{} byte {at}", rel(&dir.join("purged"))),
            "purge record does not authenticate with the log's history key: forged or altered \
             (segments deleted by hand would hide behind it)"
                .into(),
        );
    }
    let purged_upto = if forged.is_empty() && (master.is_none() || history_key.is_some()) {
        history.purged_upto()
    } else {
        // Unauthenticated history: nothing may be missing.
        0
    };
    let live_holds = history.live_holds();
    if purged_upto > 0 {
        let dropped: u64 = history.records.iter().map(|r| r.dropped).sum();
        notes.push(format!(
            "log {log}: indexes 0..{purged_upto} were purged past retention ({} purges, {dropped} \
             traces destroyed, {} hold segments keep the held ones); their commitments remain \
             and are verified",
            history.records.len(),
            live_holds.len()
        ));
    }

    // 0c. Bytes recovery cut off (a torn tail, a half-created segment),
    // kept in torn/ rather than destroyed.
    if let Ok(torn) = std::fs::read_dir(dir.join("torn")) {
        let n = torn.flatten().count();
        if n > 0 {
            notes.push(format!(
                "log {log}: {n} file(s) in {}: bytes a recovery cut off as a torn write, kept \
                 rather than destroyed (sealed with their segment's key; removed when that \
                 segment is purged)",
                rel(&dir.join("torn"))
            ));
        }
    }

    // 1. Segments → commitments recomputed from the records.
    let mut from_records: Vec<Slot> = Vec::new();
    // Index ranges whose bytes are damaged (reported already).
    let mut damaged: Vec<(u64, u64)> = Vec::new();
    let mut names: Vec<String> = vfs.list(dir)?;
    names.retain(|n| n.ends_with(".seg"));
    // Hold segments first (they hold the oldest indexes), then the log's.
    names.sort_by_key(|n| (!n.starts_with("hold-"), n.clone()));
    let holds = names.iter().filter(|n| n.starts_with("hold-")).count();
    names.retain(|n| {
        n.strip_prefix("hold-")
            .and_then(|g| g.strip_suffix(".seg"))
            .and_then(|g| g.parse::<u32>().ok())
            .is_none_or(|g| live_holds.contains(&g))
    });
    if names.iter().filter(|n| n.starts_with("hold-")).count() < holds {
        notes.push(format!(
            "log {log}: a hold segment no purge record names was skipped (a crash during a purge \
             leaves one; the next start removes it)"
        ));
    }
    for g in &live_holds {
        let n = format!("hold-{g:06}.seg");
        if !names.contains(&n) {
            fail(
                format!("{log}/{n}"),
                "hold segment named by the purge history is missing: traces kept by a legal hold were deleted"
                    .into(),
            );
        }
    }
    let mut expect_first: Option<u64> = None;
    let count = names.len();
    for (si, name) in names.iter().enumerate() {
        let path = dir.join(name);
        let is_last = si + 1 == count;
        let is_hold = name.starts_with("hold-");
        let keys = match master {
            Some(m) => match open_keys(m, key_dir, log, name) {
                Ok(k) => Some(k),
                Err(why) => {
                    fail(format!("{} (data key)", rel(&path)), why);
                    None
                }
            },
            None => None,
        };
        if !is_hold && expect_first.is_none() && purged_upto > 0 {
            expect_first = Some(purged_upto);
        }
        let file = vfs.open(&path, false)?;
        let len = file.len()?;
        let mut raw = vec![0u8; len as usize];
        file.read_exact_at(&mut raw, 0)?;
        progress(len);
        let header = match SegmentHeader::decode(&raw) {
            Ok(h) => h,
            Err(why) => {
                fail(format!("{} byte 0", rel(&path)), why.to_owned());
                continue;
            }
        };
        if header.class != log {
            fail(
                format!("{} byte 0", rel(&path)),
                format!("segment header names log `{}`", header.class),
            );
        }
        if let Some(e) = expect_first
            && header.first_index != e
            && !is_hold
        {
            fail(
                format!("{} byte 0", rel(&path)),
                format!(
                    "segment starts at index {}, but the previous one ends at {e}: traces are missing or duplicated",
                    header.first_index
                ),
            );
        }
        let mut next = header.first_index;
        let mut pos = HEADER_LEN;
        // The segment's index rebuilt from its records, to compare with its
        // index file (only when every record opened and decoded).
        let mut six = SegIndex::default();
        let mut scratch = Vec::new();
        let mut six_ok = keys.is_some();
        while pos < raw.len() {
            let at = format!("{} byte {pos}", rel(&path));
            if raw.len() - pos < FRAME_HEADER_LEN {
                if !is_last {
                    fail(at, "truncated frame header".into());
                }
                break;
            }
            let mut h = [0u8; FRAME_HEADER_LEN];
            h.copy_from_slice(&raw[pos..pos + FRAME_HEADER_LEN]);
            let fh = match FrameHeader::decode(&h) {
                Ok(fh) => fh,
                Err(why) => {
                    fail(
                        at,
                        format!("{why} (traces from index {next} on are unreadable)"),
                    );
                    break;
                }
            };
            let body_start = pos + FRAME_HEADER_LEN;
            let body_end = body_start + fh.body_len as usize;
            if body_end > raw.len() {
                if !is_last {
                    fail(at, "truncated frame".into());
                }
                break;
            }
            let body = &raw[body_start..body_end];
            if !fh.check(&h, body) {
                fail(
                    at,
                    format!(
                        "frame checksum mismatch: the bytes of traces {}..{} were altered",
                        fh.first_index,
                        fh.first_index + u64::from(fh.count)
                    ),
                );
                damaged.push((fh.first_index, fh.first_index + u64::from(fh.count)));
                six_ok = false;
                pos = body_end;
                next = fh.first_index + u64::from(fh.count);
                continue;
            }
            if fh.first_index != next && !is_hold {
                fail(
                    at.clone(),
                    format!(
                        "frame starts at index {}, expected {next}: traces missing or reordered",
                        fh.first_index
                    ),
                );
            }
            match fh.records(body) {
                Ok(recs) => {
                    six.begin_frame(fh.received_at);
                    let mut moved = 0u64;
                    for (i, (off, rlen)) in recs.into_iter().enumerate() {
                        let index = fh.first_index + i as u64;
                        let mut rec = body[off..off + rlen as usize].to_vec();
                        let Some(keys) = &keys else {
                            put(&mut from_records, index, Slot::Sealed);
                            lr.traces += 1;
                            continue;
                        };
                        let Some(plain) = keys.open(log, index, &mut rec) else {
                            fail(
                                format!("{} byte {}", rel(&path), body_start + off),
                                format!(
                                    "record of index {index} does not open with its data key: \
                                     altered, or moved from another place"
                                ),
                            );
                            put(&mut from_records, index, Slot::Bad);
                            lr.traces += 1;
                            six_ok = false;
                            continue;
                        };
                        let plain =
                            match super::codec::plaintext(plain, header.version, &mut scratch) {
                                Ok(p) => p,
                                Err(why) => {
                                    fail(
                                        format!("{} byte {}", rel(&path), body_start + off),
                                        format!("record of index {index}: {why}"),
                                    );
                                    put(&mut from_records, index, Slot::Bad);
                                    lr.traces += 1;
                                    six_ok = false;
                                    continue;
                                }
                            };
                        match serde_json::from_slice::<StoredTrace>(&plain[16..]) {
                            Ok(t) if t.index == index && t.log.as_str() == log => {
                                if is_hold {
                                    six.held.push(index);
                                }
                                six.add_keys(
                                    Loc {
                                        offset: (body_start + off) as u64,
                                        len: rlen,
                                    },
                                    &keys_of(keys, &t),
                                    crate::query::occurred_micros(&t.occurred_at),
                                );
                            }
                            Ok(t) => {
                                six_ok = false;
                                moved += 1;
                                // A few lines per frame: after a deletion
                                // every later record of the frame is shifted.
                                if moved <= 3 {
                                    fail(
                                        format!("{} byte {}", rel(&path), body_start + off),
                                        format!(
                                            "record claims log `{}` index {}, but sits at index {index}: records were deleted, inserted or moved",
                                            t.log, t.index
                                        ),
                                    );
                                }
                            }
                            Err(_) => {
                                six_ok = false;
                                fail(
                                    format!("{} byte {}", rel(&path), body_start + off),
                                    format!("record of index {index} does not decode"),
                                )
                            }
                        }
                        put(&mut from_records, index, Slot::Hash(commitment(plain)));
                        lr.traces += 1;
                    }
                    if moved > 3 {
                        fail(
                            format!("{} byte {pos}", rel(&path)),
                            format!(
                                "{} more records of this frame sit at the wrong index",
                                moved - 3
                            ),
                        );
                    }
                }
                Err(why) => {
                    six_ok = false;
                    fail(at, why.to_owned())
                }
            }
            next = fh.first_index + u64::from(fh.count);
            pos = body_end;
        }
        // 1b. The segment's index file, if it was sealed.
        let ip = path.with_extension("idx");
        match std::fs::read(&ip) {
            Ok(idx) => {
                progress(idx.len() as u64);
                lr.indexes += 1;
                let body = idx.len().saturating_sub(4);
                let trailer_ok =
                    idx.len() >= 4 && crc32c::crc32c(&idx[..body]).to_le_bytes()[..] == idx[body..];
                if !trailer_ok {
                    fail(
                        rel(&ip),
                        "index file checksum mismatch: altered or cut short (remove it and \
                         restart: it is rebuilt from the segment)"
                            .into(),
                    );
                } else if six_ok && six.encode_sealed(header.first_index, len) != idx {
                    fail(
                        rel(&ip),
                        "index file does not match the segment's records: searches may miss \
                         traces (remove it and restart: it is rebuilt from the segment)"
                            .into(),
                    );
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !is_last {
                    notes.push(format!(
                        "log {log}: {} has no index file yet (a data directory of an earlier \
                         version, or a crash before it was written); the next start writes it",
                        rel(&path)
                    ));
                }
            }
            Err(e) => fail(rel(&ip), format!("cannot read: {e}")),
        }
        if !is_hold {
            expect_first = Some(next);
        }
    }

    // 2. Commitments: every record's against `entries`.
    let ep = dir.join("entries");
    let entries: Vec<Hash> = match std::fs::read(&ep) {
        Ok(raw) => {
            progress(raw.len() as u64);
            if raw.len() % 32 != 0 {
                fail(
                    rel(&ep),
                    format!("length {} is not a multiple of 32", raw.len()),
                );
            }
            registre_log::merkle::hashes(&raw)
        }
        Err(e) => {
            fail(rel(&ep), format!("cannot read: {e}"));
            Vec::new()
        }
    };
    lr.commitments = entries.len() as u64;
    let mut uncommitted = 0u64;
    for (i, rec) in from_records.iter().enumerate() {
        let rec = match rec {
            Slot::Hash(h) => Some(h),
            Slot::Sealed | Slot::Bad => {
                if entries.get(i).is_none() && (i as u64) < checkpointed {
                    fail(
                        format!("index {i}"),
                        "trace without a commitment, although a checkpoint covers it: the entries file was truncated"
                            .into(),
                    );
                }
                continue;
            }
            Slot::Absent => None,
        };
        match (rec, entries.get(i)) {
            (Some(r), Some(e)) if r != e => {
                if (i as u64) >= checkpointed && e.iter().all(|b| *b == 0) {
                    uncommitted += 1;
                } else {
                    fail(
                        format!("index {i}"),
                        "the trace does not match its commitment: the trace or the entries file was altered"
                            .into(),
                    )
                }
            }
            (Some(_), None) if (i as u64) < checkpointed => fail(
                format!("index {i}"),
                "trace without a commitment, although a checkpoint covers it: the entries file was truncated"
                    .into(),
            ),
            (Some(_), None) => uncommitted += 1,
            _ => {}
        }
    }
    if uncommitted > 0 {
        notes.push(format!(
            "log {log}: the newest {uncommitted} traces have no commitment on disk yet \
             (written after the latest checkpoint, as a crash leaves them); the next start \
             recomputes them from the records"
        ));
    }
    // Traces committed (or checkpointed) but absent from the segments.
    let known = (entries.len() as u64).max(checkpointed);
    let mut missing: Vec<(u64, u64)> = Vec::new();
    for i in 0..known {
        let present = from_records
            .get(i as usize)
            .is_some_and(|s| !matches!(s, Slot::Absent));
        let hurt = damaged.iter().any(|(a, b)| (*a..*b).contains(&i));
        if !present && !hurt && i >= purged_upto {
            match missing.last_mut() {
                Some((_, end)) if *end == i => *end = i + 1,
                _ => missing.push((i, i + 1)),
            }
        }
    }
    for (a, b) in missing.iter().take(20) {
        fail(
            format!("indexes {a}..{b}"),
            format!(
                "{} committed traces are missing from the segments: records or whole segments were deleted",
                b - a
            ),
        );
    }
    if entries.len() as u64 > (from_records.len() as u64).max(purged_upto) {
        fail(
            format!("index {}", from_records.len()),
            format!(
                "{} commitments beyond the last trace: the log was truncated",
                entries.len() - from_records.len()
            ),
        );
    }

    // 3. The tree, rebuilt from the commitments (edge only in memory),
    // against the stored tiles, and its roots at the checkpoints' sizes.
    let mut check = TreeCheck::new(
        cp_scan
            .records
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok().map(|c| c.size)),
    );
    match TileFiles::open(dir) {
        Ok(tiles) => {
            let mut problem = |k: TileKey, p: TileProblem| {
                let path = TileId::new(k.level, k.index, 256)
                    .map(|t| t.path())
                    .unwrap_or_else(|_| format!("tile {}/{}", k.level, k.index));
                let file = rel(&tiles.describe(k.level));
                let at = match &p {
                    TileProblem::Differs(i) => format!("{file} ({path}), hash {i}"),
                    TileProblem::Beyond(_) => file,
                    TileProblem::Damaged(_) => format!("{file} ({path})"),
                };
                fail(at, p.to_string());
            };
            for e in &entries {
                check.push(
                    e,
                    &mut |k| match tiles.read(k) {
                        Ok(s) => s,
                        Err(e) => Some(Err(format!("cannot read: {e}"))),
                    },
                    &mut problem,
                );
            }
            check.check_counts(&mut |l| tiles.count(l).unwrap_or(0), &mut problem);
        }
        Err(e) => fail(
            rel(&dir.join("tiles-0")),
            format!("cannot read the tiles: {e}"),
        ),
    }
    lr.tiles = check.tiles;
    progress(check.tiles * super::tiles::TILE_RECORD as u64);

    // 4. Checkpoints: signature, root, consistency with the previous one.
    progress(cp_raw.len() as u64);
    if let Some(at) = cp_scan.torn_at {
        notes.push(format!(
            "log {log}: {} ends with a torn record at byte {at} (a crash while writing a checkpoint); the next start drops it",
            rel(&cp)
        ));
    }
    let mut prev: Option<u64> = None;
    for (offset, rec) in cp_scan.records {
        let c = match rec {
            Ok(c) => c,
            Err(why) => {
                fail(format!("{} byte {offset}", rel(&cp)), why);
                continue;
            }
        };
        let place = format!("checkpoint of size {} ({} byte {offset})", c.size, rel(&cp));
        lr.checkpoints += 1;
        if let Err(e) = open_checkpoint(c.note.as_bytes(), verifiers) {
            fail(
                place,
                format!("signature does not verify with the log's key: {e}"),
            );
            continue;
        }
        match check.root_at(c.size) {
            None => {
                fail(
                    place,
                    format!(
                        "the log holds only {} traces: it was truncated behind this checkpoint",
                        check.size()
                    ),
                );
                continue;
            }
            Some(root) if root != c.root => {
                fail(
                    place,
                    "root differs from the tree rebuilt from the commitments: history was rewritten"
                        .into(),
                );
                continue;
            }
            Some(_) => {}
        }
        // Its root is the rebuilt tree's at its size, as was the previous
        // one's: the two are consistent by construction.
        if let Some(ps) = prev
            && c.size < ps
        {
            fail(
                place.clone(),
                format!("smaller than the previous checkpoint ({ps})"),
            );
        }
        prev = Some(c.size);
        lr.verified_size = c.size;
    }
    Ok(())
}

/// What the segments say of one index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Slot {
    #[default]
    Absent,
    /// Present, not opened (no master key).
    Sealed,
    /// Present but unreadable (reported).
    Bad,
    Hash(Hash),
}

fn put(slots: &mut Vec<Slot>, index: u64, slot: Slot) {
    let i = index as usize;
    if slots.len() <= i {
        slots.resize(i + 1, Slot::Absent);
    }
    slots[i] = slot;
}

fn report_no_master(notes: &mut Vec<String>) {
    notes.push(
        "no master key given: records were checked for framing and checksums but not opened, \
         so their commitments were not recomputed (give --master-key-file, or run where \
         keys/master.key is)"
            .into(),
    );
}

fn open_keys(
    master: &MasterKey,
    key_dir: &Path,
    log: &str,
    seg_name: &str,
) -> Result<SegmentKeys, String> {
    let stem = seg_name.strip_suffix(".seg").unwrap_or(seg_name);
    let path = key_dir.join(format!("{stem}.key"));
    let raw = std::fs::read(&path)
        .map_err(|e| format!("cannot read its data key {}: {e}", path.display()))?;
    master
        .segment_keys(log, &path, &raw)
        .map_err(|e| e.to_string())
}

fn rel(p: &Path) -> String {
    let parts: Vec<_> = p.components().rev().take(2).collect();
    let mut out = PathBuf::new();
    for c in parts.into_iter().rev() {
        out.push(c);
    }
    out.display().to_string()
}
