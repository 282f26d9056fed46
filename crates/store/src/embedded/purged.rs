//! A log's purge history: `logs/<class>/purged`, an append-only file of
//! fixed 64-byte records, one per segment purged (or hold segment re-sealed),
//! each authenticated with the log's history key (`keys/data/<class>/purged.key`,
//! wrapped by the master key): records forged to hide deleted segments do
//! not verify.
//!
//! ```text
//! 0  4  magic "RGPG"
//! 4  8  first     u64 LE   first index of the purged segment
//! 12 8  end       u64 LE   index after its last (for a hold segment: the
//!                          range of the segment of the log it came from)
//! 20 8  at        i64 LE   purge time, µs since the Unix epoch
//! 28 8  dropped   u64 LE   traces destroyed
//! 36 4  new_hold  u32 LE   hold segment written with the kept traces (0: none)
//! 40 4  old_hold  u32 LE   hold segment this record replaces (0: a segment of the log)
//! 44 16 mac                HMAC-SHA-256(history key, "registre mac v1\0" ‖ bytes 0..44), truncated
//! 60 4  crc32c of bytes 0..60
//! ```
//!
//! The record is written (and synced) after any hold segment it names and
//! before any key or file is destroyed, so after a crash the next open
//! finishes what a record announces, and deletes a hold segment no record
//! names (its source is still there).

use std::path::Path;
use std::sync::Arc;

use crate::crypto::SegmentKeys;
use crate::vfs::{VFile, Vfs};

pub const RECORD_LEN: usize = 64;
const MAGIC: &[u8; 4] = b"RGPG";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    pub first: u64,
    pub end: u64,
    pub at: i64,
    pub dropped: u64,
    pub new_hold: u32,
    pub old_hold: u32,
}

impl Purged {
    pub fn encode(&self, key: &SegmentKeys) -> [u8; RECORD_LEN] {
        let mut b = [0u8; RECORD_LEN];
        b[0..4].copy_from_slice(MAGIC);
        b[4..12].copy_from_slice(&self.first.to_le_bytes());
        b[12..20].copy_from_slice(&self.end.to_le_bytes());
        b[20..28].copy_from_slice(&self.at.to_le_bytes());
        b[28..36].copy_from_slice(&self.dropped.to_le_bytes());
        b[36..40].copy_from_slice(&self.new_hold.to_le_bytes());
        b[40..44].copy_from_slice(&self.old_hold.to_le_bytes());
        let mac = key.mac(&b[..44]);
        b[44..60].copy_from_slice(&mac);
        let crc = crc32c::crc32c(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// True when the record's MAC is right under `key`.
    pub fn authentic(raw: &[u8], key: &SegmentKeys) -> bool {
        raw.len() >= RECORD_LEN && key.mac(&raw[..44]) == raw[44..60]
    }

    pub fn decode(b: &[u8]) -> Option<Purged> {
        if b.len() < RECORD_LEN || &b[0..4] != MAGIC {
            return None;
        }
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        let u32_at = |i: usize| {
            let mut a = [0u8; 4];
            a.copy_from_slice(&b[i..i + 4]);
            u32::from_le_bytes(a)
        };
        if crc32c::crc32c(&b[..60]) != u32_at(60) {
            return None;
        }
        Some(Purged {
            first: u64_at(4),
            end: u64_at(12),
            at: u64_at(20) as i64,
            dropped: u64_at(28),
            new_hold: u32_at(36),
            old_hold: u32_at(40),
        })
    }
}

/// The purge history of one log.
#[derive(Debug, Default, Clone)]
pub struct History {
    pub records: Vec<Purged>,
    /// Bytes of whole records (a torn last record is ignored and
    /// overwritten).
    pub len: u64,
}

impl History {
    /// Reads it; a torn or damaged tail ends it (records are synced one by
    /// one, so only the last can be torn).
    ///
    /// With `key`, each record's MAC is checked: the offsets of records that
    /// fail are returned (forged or altered).
    pub fn parse(raw: &[u8], key: Option<&SegmentKeys>) -> (History, Vec<u64>) {
        let mut h = History::default();
        let mut forged = Vec::new();
        for chunk in raw.chunks(RECORD_LEN) {
            match Purged::decode(chunk) {
                Some(p) => {
                    if key.is_some_and(|k| !Purged::authentic(chunk, k)) {
                        forged.push(h.len);
                    }
                    h.records.push(p);
                    h.len += RECORD_LEN as u64;
                }
                None => break,
            }
        }
        (h, forged)
    }

    /// Every index below this was purged (or lives in a hold segment).
    pub fn purged_upto(&self) -> u64 {
        self.records
            .iter()
            .filter(|r| r.old_hold == 0)
            .map(|r| r.end)
            .max()
            .unwrap_or(0)
    }

    /// Hold segments that are live: written by a record and not replaced.
    pub fn live_holds(&self) -> Vec<u32> {
        let mut live: Vec<u32> = self
            .records
            .iter()
            .filter(|r| r.new_hold != 0)
            .map(|r| r.new_hold)
            .collect();
        for r in &self.records {
            if r.old_hold != 0 {
                live.retain(|&g| g != r.old_hold);
            }
        }
        live
    }

    pub fn last_hold_gen(&self) -> u32 {
        self.records
            .iter()
            .map(|r| r.new_hold.max(r.old_hold))
            .max()
            .unwrap_or(0)
    }
}

/// Opens (creating) the history file of a log directory; the offsets of
/// records whose MAC fails are returned.
pub fn open(
    vfs: &dyn Vfs,
    dir: &Path,
    key: &SegmentKeys,
) -> std::io::Result<(Arc<dyn VFile>, History, Vec<u64>)> {
    let f = vfs.open(&dir.join("purged"), true)?;
    let len = f.len()?;
    let mut raw = vec![0u8; len as usize];
    f.read_exact_at(&mut raw, 0)?;
    let (h, forged) = History::parse(&raw, Some(key));
    Ok((f, h, forged))
}

/// Appends one record durably.
pub fn append(f: &dyn VFile, h: &mut History, p: Purged, key: &SegmentKeys) -> std::io::Result<()> {
    f.write_all_at(&p.encode(key), h.len)?;
    f.sync_data()?;
    h.len += RECORD_LEN as u64;
    h.records.push(p);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_torn_tail() {
        let a = Purged {
            first: 0,
            end: 10,
            at: 5,
            dropped: 9,
            new_hold: 1,
            old_hold: 0,
        };
        let b = Purged {
            first: 0,
            end: 10,
            at: 6,
            dropped: 1,
            new_hold: 0,
            old_hold: 1,
        };
        let (k, _) = SegmentKeys::generate().expect("keys");
        let mut raw = a.encode(&k).to_vec();
        raw.extend_from_slice(&b.encode(&k));
        raw.extend_from_slice(&b.encode(&k)[..20]);
        let (h, forged) = History::parse(&raw, Some(&k));
        assert!(forged.is_empty());
        assert_eq!(h.records, vec![a, b]);
        assert_eq!(h.len, 128);
        assert_eq!(h.purged_upto(), 10);
        assert!(h.live_holds().is_empty());
        assert_eq!(h.last_hold_gen(), 1);
        // A record forged with a right CRC but without the key.
        let (other, _) = SegmentKeys::generate().expect("keys");
        let mut forged_raw = raw[..64].to_vec();
        forged_raw.extend_from_slice(&a.encode(&other));
        let (_, forged) = History::parse(&forged_raw, Some(&k));
        assert_eq!(forged, vec![64]);
    }
}
