//! Per-segment secondary indexes, held in memory and rebuilt from the
//! segment when it is opened (they are derivable state).
//!
//! Each index maps a 64-bit blind value (a keyed HMAC: no actor id, mailbox
//! or patient id is held in clear; the public action vocabulary is hashed
//! unkeyed) to the ascending list of the segment's
//! record positions with that key; a search walks a list backwards (newest
//! first) and checks each record's actual value, so hash collisions cost a
//! read, never a wrong answer. Reception time is indexed per frame: every
//! record of a group commit shares its frame's `received_at`, which never
//! decreases along a log.

use std::collections::HashMap;
use std::sync::Arc;

use registre_model::StoredTrace;

use crate::crypto::{Blind, SegmentKeys};
use crate::vfs::VFile;

/// Which secondary index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Actor,
    Mailbox,
    Patient,
    Action,
}

/// The blind index value of `value` under a segment's index key:
/// `HMAC-SHA-256(index key, domain ‖ normalised value)` truncated to 64 bits
/// (DESIGN §6). Mailboxes are compared without ASCII case.
pub fn key_hash(keys: &SegmentKeys, key: Key, value: &str) -> u64 {
    match key {
        Key::Actor => keys.blind(Blind::Actor, value.as_bytes()),
        Key::Patient => keys.blind(Blind::Patient, value.as_bytes()),
        // The action vocabulary is public and tiny (its frequencies would
        // name each value anyway): not blinded, one HMAC less per trace.
        Key::Action => fnv(Key::Action, value),
        Key::Mailbox => {
            let lower = value.to_ascii_lowercase();
            keys.blind(Blind::Mailbox, lower.as_bytes())
        }
    }
}

/// The index keys of one record.
pub type Keys = [Option<(Key, u64)>; 4];

pub fn keys_of(keys: &SegmentKeys, t: &StoredTrace) -> Keys {
    [
        Some((Key::Actor, key_hash(keys, Key::Actor, &t.actor.id))),
        Some((Key::Action, key_hash(keys, Key::Action, t.action.as_str()))),
        t.mailbox()
            .map(|m| (Key::Mailbox, key_hash(keys, Key::Mailbox, m))),
        t.patient_id()
            .map(|p| (Key::Patient, key_hash(keys, Key::Patient, p))),
    ]
}

/// FNV-1a 64 of a domain byte and `v` (unkeyed).
fn fnv(key: Key, v: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in std::iter::once(key as u8).chain(v.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Unkeyed index values (FNV-1a 64), for `EmbeddedOptions::at_rest_crypto`
/// off only: a measurement of what the blind indexes cost.
pub fn keys_of_plain(t: &StoredTrace) -> Keys {
    let h = |key: Key, v: &str| (key, fnv(key, v));
    [
        Some(h(Key::Actor, &t.actor.id)),
        Some(h(Key::Action, t.action.as_str())),
        t.mailbox().map(|m| h(Key::Mailbox, m)),
        t.patient_id().map(|p| h(Key::Patient, p)),
    ]
}

/// Where a record is in its segment file.
#[derive(Debug, Clone, Copy)]
pub struct Loc {
    pub offset: u64,
    pub len: u32,
}

#[derive(Default)]
pub struct SegIndex {
    pub locs: Vec<Loc>,
    /// In a hold segment, the log index of each position (ascending); empty
    /// in a segment of the log, where position p is index first + p.
    pub held: Vec<u64>,
    /// The frames (group commits), ascending.
    pub frames: Vec<Frame>,
    actor: HashMap<u64, Vec<u32>>,
    mailbox: HashMap<u64, Vec<u32>>,
    patient: HashMap<u64, Vec<u32>>,
    action: HashMap<u64, Vec<u32>>,
}

impl SegIndex {
    pub fn len(&self) -> u32 {
        self.locs.len() as u32
    }

    pub fn begin_frame(&mut self, received_at: i64) {
        self.frames.push(Frame {
            pos: self.len(),
            received_at,
            occ_min: i64::MAX,
            occ_max: i64::MIN,
        });
    }

    /// Adds a record of the current frame: where it is, its index keys and
    /// its action time (µs; `None` if unreadable, never for a stored trace).
    pub fn add_keys(&mut self, loc: Loc, keys: &Keys, occurred: Option<i64>) {
        let pos = self.len();
        self.locs.push(loc);
        if let (Some(t), Some(f)) = (occurred, self.frames.last_mut()) {
            f.occ_min = f.occ_min.min(t);
            f.occ_max = f.occ_max.max(t);
        }
        for &(key, h) in keys.iter().flatten() {
            let map = match key {
                Key::Actor => &mut self.actor,
                Key::Mailbox => &mut self.mailbox,
                Key::Patient => &mut self.patient,
                Key::Action => &mut self.action,
            };
            push(map, h, pos);
        }
    }

    pub fn postings(&self, key: Key, hash: u64) -> &[u32] {
        let map = match key {
            Key::Actor => &self.actor,
            Key::Mailbox => &self.mailbox,
            Key::Patient => &self.patient,
            Key::Action => &self.action,
        };
        map.get(&hash).map_or(&[], Vec::as_slice)
    }

    /// Position of the first record received at or after `t`.
    pub fn first_at_or_after(&self, t: i64) -> u32 {
        let i = self.frames.partition_point(|f| f.received_at < t);
        self.frames.get(i).map_or(self.len(), |f| f.pos)
    }

    pub fn received_at(&self, pos: u32) -> i64 {
        let i = self.frames.partition_point(|f| f.pos <= pos);
        self.frames
            .get(i.wrapping_sub(1))
            .map_or(i64::MIN, |f| f.received_at)
    }

    pub fn last_received_at(&self) -> Option<i64> {
        self.frames.last().map(|f| f.received_at)
    }

    /// Earliest and latest action time of the segment's records.
    pub fn occurred_span(&self) -> (i64, i64) {
        self.frames.iter().fold((i64::MAX, i64::MIN), |(a, b), f| {
            (a.min(f.occ_min), b.max(f.occ_max))
        })
    }

    /// Approximate heap bytes, for the storage figures.
    pub fn heap_bytes(&self) -> usize {
        let maps = [&self.actor, &self.mailbox, &self.patient, &self.action];
        self.locs.len() * std::mem::size_of::<Loc>()
            + self.frames.len() * std::mem::size_of::<Frame>()
            + self.held.len() * 8
            + maps
                .iter()
                .map(|m| m.len() * 40 + m.values().map(|v| v.len() * 4).sum::<usize>())
                .sum::<usize>()
    }
}

impl SegIndex {
    /// The sealed-index file of this (complete) segment: see [`SealedIndex`].
    pub fn encode_sealed(&self, first_index: u64, segment_len: u64) -> Vec<u8> {
        let maps = [&self.actor, &self.mailbox, &self.patient, &self.action];
        let mut dirs: Vec<Vec<(u64, &Vec<u32>)>> = maps
            .iter()
            .map(|m| {
                let mut d: Vec<(u64, &Vec<u32>)> = m.iter().map(|(h, v)| (*h, v)).collect();
                d.sort_unstable_by_key(|(h, _)| *h);
                d
            })
            .collect();
        let postings: usize = dirs
            .iter()
            .flat_map(|d| d.iter().map(|(_, v)| v.len()))
            .sum();
        let mut out = Vec::with_capacity(
            SEALED_HEADER
                + self.locs.len() * 12
                + self.held.len() * 8
                + self.frames.len() * FRAME_ENTRY
                + dirs.iter().map(|d| d.len() * 16).sum::<usize>()
                + postings * 4
                + 4,
        );
        out.extend_from_slice(SEALED_MAGIC);
        out.extend_from_slice(&first_index.to_le_bytes());
        out.extend_from_slice(&self.len().to_le_bytes());
        out.extend_from_slice(&(self.held.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.frames.len() as u32).to_le_bytes());
        out.extend_from_slice(&segment_len.to_le_bytes());
        for d in &dirs {
            out.extend_from_slice(&(d.len() as u32).to_le_bytes());
        }
        let (occ_min, occ_max) = self.occurred_span();
        out.extend_from_slice(&occ_min.to_le_bytes());
        out.extend_from_slice(&occ_max.to_le_bytes());
        out.resize(SEALED_HEADER - 4, 0);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        for l in &self.locs {
            out.extend_from_slice(&l.offset.to_le_bytes());
            out.extend_from_slice(&l.len.to_le_bytes());
        }
        for h in &self.held {
            out.extend_from_slice(&h.to_le_bytes());
        }
        for f in &self.frames {
            out.extend_from_slice(&f.pos.to_le_bytes());
            out.extend_from_slice(&f.received_at.to_le_bytes());
            out.extend_from_slice(&f.occ_min.to_le_bytes());
            out.extend_from_slice(&f.occ_max.to_le_bytes());
        }
        let mut start = 0u32;
        for d in &dirs {
            for (h, v) in d {
                out.extend_from_slice(&h.to_le_bytes());
                out.extend_from_slice(&start.to_le_bytes());
                out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                start += v.len() as u32;
            }
        }
        for d in dirs.iter_mut() {
            for (_, v) in d.iter() {
                for p in v.iter() {
                    out.extend_from_slice(&p.to_le_bytes());
                }
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }
}

/// Magic of a sealed segment's index file (`<stem>.idx`).
pub const SEALED_MAGIC: &[u8; 8] = b"RGIDX\0\0\x01";
/// Bytes of its header.
pub const SEALED_HEADER: usize = 80;
/// Bytes of a frame's entry.
const FRAME_ENTRY: usize = 28;

/// A frame (group commit) of a segment, as indexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Position of its first record in the segment.
    pub pos: u32,
    pub received_at: i64,
    /// Earliest and latest action time of its records (µs; `MAX`/`MIN`
    /// when none).
    pub occ_min: i64,
    pub occ_max: i64,
}

/// The index of a sealed segment, read from its `<stem>.idx` file as
/// searches need it (nothing but the header in memory):
///
/// ```text
/// header  80 B: magic "RGIDX\0\0\x01" · first_index u64 · records u32 ·
///               held u32 · frames u32 · segment_len u64 ·
///               directory entries per key u32 × 4 (actor, mailbox,
///               patient, action) · earliest and latest action time i64 ×
///               2 · zero · crc32c of bytes 0..76
/// locs    records × (offset u64, len u32)
/// held    held × index u64 (hold segments: the log index of each record)
/// frames  frames × (first position u32, received_at i64, earliest and
///         latest action time of its records i64 × 2)
/// dirs    per key, entries sorted by blind value:
///         (blind value u64, first posting u32, postings u32)
/// postings  u32 positions, ascending within an entry, in directory order
/// trailer crc32c of every byte before it (checked by `registre verify`)
/// ```
pub struct SealedIndex {
    file: Arc<dyn VFile>,
    records: u32,
    frames: u32,
    /// Log index of each record of a hold segment (small: held traces only).
    pub held: Vec<u64>,
    dir_at: [u64; 4],
    dir_len: [u32; 4],
    postings_at: u64,
    frames_at: u64,
    last_received_at: Option<i64>,
    occ_min: i64,
    occ_max: i64,
}

fn kind(key: Key) -> usize {
    match key {
        Key::Actor => 0,
        Key::Mailbox => 1,
        Key::Patient => 2,
        Key::Action => 3,
    }
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl SealedIndex {
    /// Opens an index file for the segment of `first_index` whose file is
    /// `segment_len` bytes; `Err` says why it cannot be used (then it is
    /// rebuilt from the segment).
    pub fn open(
        file: Arc<dyn VFile>,
        first_index: u64,
        segment_len: u64,
    ) -> Result<SealedIndex, String> {
        let len = file.len().map_err(|e| e.to_string())?;
        let mut h = [0u8; SEALED_HEADER];
        if len < SEALED_HEADER as u64 + 4 {
            return Err("index file cut short".into());
        }
        file.read_exact_at(&mut h, 0).map_err(|e| e.to_string())?;
        if &h[0..8] != SEALED_MAGIC {
            return Err("not a sealed index (bad magic)".into());
        }
        if crc32c::crc32c(&h[..SEALED_HEADER - 4]) != le_u32(&h, SEALED_HEADER - 4) {
            return Err("index header checksum mismatch".into());
        }
        if le_u64(&h, 8) != first_index {
            return Err("index of another segment".into());
        }
        if le_u64(&h, 28) != segment_len {
            return Err(format!(
                "index made for {} bytes of segment, the segment has {segment_len}",
                le_u64(&h, 28)
            ));
        }
        let records = le_u32(&h, 16);
        let held_n = le_u32(&h, 20);
        let frames = le_u32(&h, 24);
        let mut dir_len = [0u32; 4];
        for (k, d) in dir_len.iter_mut().enumerate() {
            *d = le_u32(&h, 36 + 4 * k);
        }
        let locs_at = SEALED_HEADER as u64;
        let held_at = locs_at + 12 * u64::from(records);
        let frames_at = held_at + 8 * u64::from(held_n);
        let mut dir_at = [0u64; 4];
        let mut at = frames_at + FRAME_ENTRY as u64 * u64::from(frames);
        for k in 0..4 {
            dir_at[k] = at;
            at += 16 * u64::from(dir_len[k]);
        }
        let postings_at = at;
        // The postings end 4 bytes before the file does (its trailer).
        let postings = (len - 4)
            .checked_sub(postings_at)
            .ok_or("index file cut short")?;
        if held_n != 0 && held_n != records || postings % 4 != 0 {
            return Err("index sections do not add up".into());
        }
        let mut held = vec![0u8; 8 * held_n as usize];
        file.read_exact_at(&mut held, held_at)
            .map_err(|e| e.to_string())?;
        let held = held.chunks_exact(8).map(|c| le_u64(c, 0)).collect();
        let mut ix = SealedIndex {
            file,
            records,
            frames,
            held,
            dir_at,
            dir_len,
            postings_at,
            frames_at,
            last_received_at: None,
            occ_min: le_u64(&h, 52) as i64,
            occ_max: le_u64(&h, 60) as i64,
        };
        if frames > 0 {
            ix.last_received_at =
                Some(ix.frame(frames - 1).map_err(|e| e.to_string())?.received_at);
        }
        Ok(ix)
    }

    pub fn len(&self) -> u32 {
        self.records
    }

    fn frame(&self, f: u32) -> std::io::Result<Frame> {
        Ok(self.frames_range(f, f + 1)?.pop().unwrap_or(Frame {
            pos: 0,
            received_at: i64::MIN,
            occ_min: i64::MAX,
            occ_max: i64::MIN,
        }))
    }

    /// Frames `from..to`, in one read.
    fn frames_range(&self, from: u32, to: u32) -> std::io::Result<Vec<Frame>> {
        let n = to.saturating_sub(from) as usize;
        let mut raw = vec![0u8; n * FRAME_ENTRY];
        self.file.read_exact_at(
            &mut raw,
            self.frames_at + FRAME_ENTRY as u64 * u64::from(from),
        )?;
        Ok(raw
            .chunks_exact(FRAME_ENTRY)
            .map(|b| Frame {
                pos: le_u32(b, 0),
                received_at: le_u64(b, 4) as i64,
                occ_min: le_u64(b, 12) as i64,
                occ_max: le_u64(b, 20) as i64,
            })
            .collect())
    }

    /// First frame `f` in `0..frames` for which `pred` is false.
    fn frame_partition(&self, pred: impl Fn(Frame) -> bool) -> std::io::Result<u32> {
        let (mut lo, mut hi) = (0u32, self.frames);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(self.frame(mid)?) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    pub fn loc(&self, pos: u32) -> std::io::Result<Loc> {
        let mut b = [0u8; 12];
        self.file
            .read_exact_at(&mut b, SEALED_HEADER as u64 + 12 * u64::from(pos))?;
        Ok(Loc {
            offset: le_u64(&b, 0),
            len: le_u32(&b, 8),
        })
    }

    pub fn first_at_or_after(&self, t: i64) -> std::io::Result<u32> {
        let f = self.frame_partition(|fr| fr.received_at < t)?;
        if f == self.frames {
            return Ok(self.records);
        }
        Ok(self.frame(f)?.pos)
    }

    pub fn last_received_at(&self) -> Option<i64> {
        self.last_received_at
    }

    /// Reception times of `positions` (descending): the frame of each found
    /// from the previous one's when it is the same frame.
    pub fn received_at_many(&self, positions: &[u32]) -> std::io::Result<Vec<i64>> {
        let mut out = Vec::with_capacity(positions.len());
        let mut cur: Option<(u32, i64, u32)> = None; // (frame start, time, frame)
        for &p in positions {
            match cur {
                Some((start, t, _)) if start <= p => out.push(t),
                _ => {
                    let f = self.frame_partition(|fr| fr.pos <= p)?;
                    if f == 0 {
                        out.push(i64::MIN);
                        continue;
                    }
                    let fr = self.frame(f - 1)?;
                    cur = Some((fr.pos, fr.received_at, f - 1));
                    out.push(fr.received_at);
                }
            }
        }
        Ok(out)
    }

    /// The directory entry of `hash`: (first posting, postings).
    fn entry(&self, key: Key, hash: u64) -> std::io::Result<Option<(u32, u32)>> {
        let k = kind(key);
        let (mut lo, mut hi) = (0u32, self.dir_len[k]);
        let mut b = [0u8; 16];
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            self.file
                .read_exact_at(&mut b, self.dir_at[k] + 16 * u64::from(mid))?;
            let h = le_u64(&b, 0);
            match h.cmp(&hash) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(Some((le_u32(&b, 8), le_u32(&b, 12)))),
            }
        }
        Ok(None)
    }

    /// Number of records with `hash` under `key`.
    pub fn postings_len(&self, key: Key, hash: u64) -> std::io::Result<u32> {
        Ok(self.entry(key, hash)?.map_or(0, |(_, n)| n))
    }

    /// Positions in `lo..hi` with `hash` under `key`, newest first, at most
    /// `max`.
    pub fn postings_below(
        &self,
        key: Key,
        hash: u64,
        lo: u32,
        hi: u32,
        max: usize,
    ) -> std::io::Result<Vec<u32>> {
        let Some((start, n)) = self.entry(key, hash)? else {
            return Ok(Vec::new());
        };
        let read = |i: u32| -> std::io::Result<u32> {
            let mut b = [0u8; 4];
            self.file
                .read_exact_at(&mut b, self.postings_at + 4 * u64::from(start + i))?;
            Ok(u32::from_le_bytes(b))
        };
        // The first posting at or past `hi`, by binary search.
        let (mut a, mut z) = (0u32, n);
        while a < z {
            let mid = a + (z - a) / 2;
            if read(mid)? < hi {
                a = mid + 1;
            } else {
                z = mid;
            }
        }
        // Then back from there, in one read.
        let take = (a as usize).min(max) as u32;
        let mut raw = vec![0u8; 4 * take as usize];
        self.file
            .read_exact_at(&mut raw, self.postings_at + 4 * u64::from(start + a - take))?;
        Ok(raw
            .chunks_exact(4)
            .rev()
            .map(|c| le_u32(c, 0))
            .take_while(|p| *p >= lo)
            .collect())
    }
}

/// A segment's index: in memory while the segment is written, read from
/// its index file once sealed.
pub enum SegIx {
    Live(SegIndex),
    Sealed(SealedIndex),
}

impl SegIx {
    pub fn len(&self) -> u32 {
        match self {
            SegIx::Live(ix) => ix.len(),
            SegIx::Sealed(ix) => ix.len(),
        }
    }

    fn held(&self) -> &[u64] {
        match self {
            SegIx::Live(ix) => &ix.held,
            SegIx::Sealed(ix) => &ix.held,
        }
    }

    /// The log index at position `pos`.
    pub fn index_at(&self, first: u64, pos: u32) -> u64 {
        self.held()
            .get(pos as usize)
            .copied()
            .unwrap_or(first + u64::from(pos))
    }

    /// Positions below log index `bound`.
    pub fn positions_below(&self, first: u64, bound: u64) -> u32 {
        let held = self.held();
        if held.is_empty() {
            (bound.saturating_sub(first)).min(u64::from(self.len())) as u32
        } else {
            held.partition_point(|&i| i < bound) as u32
        }
    }

    /// The last log index held (hold segments).
    pub fn last_held(&self) -> Option<u64> {
        self.held().last().copied()
    }

    pub fn loc(&self, pos: u32) -> std::io::Result<Loc> {
        match self {
            SegIx::Live(ix) => ix
                .locs
                .get(pos as usize)
                .copied()
                .ok_or_else(|| std::io::Error::other("position beyond the segment")),
            SegIx::Sealed(ix) => ix.loc(pos),
        }
    }

    pub fn first_at_or_after(&self, t: i64) -> std::io::Result<u32> {
        match self {
            SegIx::Live(ix) => Ok(ix.first_at_or_after(t)),
            SegIx::Sealed(ix) => ix.first_at_or_after(t),
        }
    }

    pub fn last_received_at(&self) -> Option<i64> {
        match self {
            SegIx::Live(ix) => ix.last_received_at(),
            SegIx::Sealed(ix) => ix.last_received_at(),
        }
    }

    /// Reception times of `positions` (descending, as searches go).
    pub fn received_at_many(&self, positions: &[u32]) -> std::io::Result<Vec<i64>> {
        match self {
            SegIx::Live(ix) => Ok(positions.iter().map(|&p| ix.received_at(p)).collect()),
            SegIx::Sealed(ix) => ix.received_at_many(positions),
        }
    }

    /// Every frame, in order.
    pub fn frames(&self) -> std::io::Result<Vec<Frame>> {
        match self {
            SegIx::Live(ix) => Ok(ix.frames.clone()),
            SegIx::Sealed(ix) => ix.frames_range(0, ix.frames),
        }
    }

    /// Earliest and latest action time in the segment.
    pub fn occurred_span(&self) -> (i64, i64) {
        match self {
            SegIx::Live(ix) => ix.occurred_span(),
            SegIx::Sealed(ix) => (ix.occ_min, ix.occ_max),
        }
    }

    /// The position ranges, within `lo..hi` and newest first, of the frames
    /// that may hold a record whose action time is in `since..until`
    /// (adjacent ones merged). Records in them are checked exactly.
    pub fn occurred_ranges(
        &self,
        since: Option<i64>,
        until: Option<i64>,
        lo: u32,
        hi: u32,
    ) -> std::io::Result<Vec<(u32, u32)>> {
        let (min, max) = self.occurred_span();
        let hit =
            |a: i64, b: i64| a <= b && since.is_none_or(|s| b >= s) && until.is_none_or(|u| a < u);
        if !hit(min, max) || hi <= lo {
            return Ok(Vec::new());
        }
        let frames = self.frames()?;
        let len = self.len();
        let mut out: Vec<(u32, u32)> = Vec::new();
        for (i, f) in frames.iter().enumerate().rev() {
            let end = frames.get(i + 1).map_or(len, |n| n.pos).min(hi);
            let start = f.pos.max(lo);
            if start >= end || !hit(f.occ_min, f.occ_max) {
                continue;
            }
            match out.last_mut() {
                Some(last) if last.0 == end => last.0 = start,
                _ => out.push((start, end)),
            }
        }
        Ok(out)
    }

    pub fn postings_len(&self, key: Key, hash: u64) -> std::io::Result<u32> {
        match self {
            SegIx::Live(ix) => Ok(ix.postings(key, hash).len() as u32),
            SegIx::Sealed(ix) => ix.postings_len(key, hash),
        }
    }

    /// Positions in `lo..hi` with `hash` under `key`, newest first, at most
    /// `max`.
    pub fn postings_below(
        &self,
        key: Key,
        hash: u64,
        lo: u32,
        hi: u32,
        max: usize,
    ) -> std::io::Result<Vec<u32>> {
        match self {
            SegIx::Live(ix) => {
                let list = ix.postings(key, hash);
                let end = list.partition_point(|&p| p < hi);
                Ok(list[..end]
                    .iter()
                    .rev()
                    .take(max)
                    .take_while(|p| **p >= lo)
                    .copied()
                    .collect())
            }
            SegIx::Sealed(ix) => ix.postings_below(key, hash, lo, hi, max),
        }
    }

    /// Approximate heap bytes.
    pub fn heap_bytes(&self) -> usize {
        match self {
            SegIx::Live(ix) => ix.heap_bytes(),
            SegIx::Sealed(ix) => ix.held.len() * 8 + std::mem::size_of::<SealedIndex>(),
        }
    }

    pub fn live_mut(&mut self) -> Option<&mut SegIndex> {
        match self {
            SegIx::Live(ix) => Some(ix),
            SegIx::Sealed(_) => None,
        }
    }

    pub fn live(&self) -> Option<&SegIndex> {
        match self {
            SegIx::Live(ix) => Some(ix),
            SegIx::Sealed(_) => None,
        }
    }
}

fn push(map: &mut HashMap<u64, Vec<u32>>, h: u64, pos: u32) {
    map.entry(h).or_default().push(pos);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailbox_keys_ignore_ascii_case() {
        let (k, _) = SegmentKeys::generate().expect("keys");
        assert_eq!(
            key_hash(&k, Key::Mailbox, "Dr.Martin@Hopital.fr"),
            key_hash(&k, Key::Mailbox, "dr.martin@hopital.fr")
        );
        assert_ne!(
            key_hash(&k, Key::Actor, "a"),
            key_hash(&k, Key::Patient, "a")
        );
    }

    /// A sealed index answers every query as the live one it was made of.
    #[test]
    fn sealed_answers_as_live() {
        use crate::vfs::{OsVfs, Vfs};
        let dir = tempfile::tempdir().expect("tempdir");
        let mut live = SegIndex::default();
        let mut t = 1_000i64;
        for p in 0..5000u32 {
            if p % 7 == 0 {
                t += 1 + i64::from(p % 3);
                live.begin_frame(t);
            }
            let keys: Keys = [
                Some((Key::Actor, u64::from(p % 13))),
                Some((Key::Action, u64::from(p % 3))),
                (p % 2 == 0).then_some((Key::Mailbox, u64::from(p % 5))),
                (p % 11 == 0).then_some((Key::Patient, u64::from(p / 100))),
            ];
            live.add_keys(
                Loc {
                    offset: 64 + u64::from(p) * 100,
                    len: 90 + p % 9,
                },
                &keys,
                Some(t * 1000 - i64::from(p % 50) * 7),
            );
        }
        let path = dir.path().join("x.idx");
        std::fs::write(&path, live.encode_sealed(42, 500_064)).expect("write");
        let f = OsVfs.open(&path, false).expect("open");
        assert!(SealedIndex::open(f.clone(), 43, 500_064).is_err());
        assert!(SealedIndex::open(f.clone(), 42, 500_065).is_err());
        let sealed = SegIx::Sealed(SealedIndex::open(f, 42, 500_064).expect("sealed"));
        let live = SegIx::Live(live);
        assert_eq!(sealed.len(), live.len());
        assert_eq!(sealed.last_received_at(), live.last_received_at());
        assert_eq!(sealed.frames().expect("f"), live.frames().expect("f"));
        for p in [0u32, 1, 6, 7, 8, 2500, 4999] {
            assert_eq!(
                sealed.loc(p).expect("loc").offset,
                live.loc(p).expect("loc").offset
            );
        }
        for t in [0i64, 1_001, 1_500, 3_000, 9_999_999] {
            assert_eq!(
                sealed.first_at_or_after(t).expect("t"),
                live.first_at_or_after(t).expect("t")
            );
        }
        assert_eq!(sealed.occurred_span(), live.occurred_span());
        for (a, b) in [
            (Some(1_500_000), Some(1_600_000)),
            (None, Some(1_010_000)),
            (Some(3_000_000), None),
        ] {
            assert_eq!(
                sealed.occurred_ranges(a, b, 10, 4900).expect("ranges"),
                live.occurred_ranges(a, b, 10, 4900).expect("ranges")
            );
        }
        let desc: Vec<u32> = (0..5000).rev().step_by(37).collect();
        assert_eq!(
            sealed.received_at_many(&desc).expect("times"),
            live.received_at_many(&desc).expect("times")
        );
        for (k, h) in [
            (Key::Actor, 5u64),
            (Key::Mailbox, 3),
            (Key::Patient, 22),
            (Key::Action, 1),
            (Key::Patient, 9999),
        ] {
            assert_eq!(
                sealed.postings_len(k, h).expect("n"),
                live.postings_len(k, h).expect("n")
            );
            for (lo, hi, max) in [
                (0, 5000, 10_000),
                (100, 4000, 50),
                (4999, 5000, 3),
                (0, 0, 5),
            ] {
                assert_eq!(
                    sealed.postings_below(k, h, lo, hi, max).expect("p"),
                    live.postings_below(k, h, lo, hi, max).expect("p"),
                    "{k:?} {h} {lo} {hi} {max}"
                );
            }
        }
    }

    #[test]
    fn time_lookup() {
        let mut ix = SegIndex::default();
        for (i, t) in [10, 10, 20, 30].into_iter().enumerate() {
            if i != 1 {
                ix.begin_frame(t);
            }
            ix.locs.push(Loc { offset: 0, len: 0 });
        }
        assert_eq!(ix.first_at_or_after(5), 0);
        assert_eq!(ix.first_at_or_after(11), 2);
        assert_eq!(ix.first_at_or_after(30), 3);
        assert_eq!(ix.first_at_or_after(31), 4);
        assert_eq!(ix.received_at(1), 10);
        assert_eq!(ix.received_at(3), 30);
    }
}
