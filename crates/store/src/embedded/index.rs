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

use registre_model::StoredTrace;

use crate::crypto::{Blind, SegmentKeys};

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
    /// (position of the frame's first record, received_at), ascending.
    pub frames: Vec<(u32, i64)>,
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
        self.frames.push((self.len(), received_at));
    }

    /// The log index at position `pos`.
    pub fn index_at(&self, first: u64, pos: u32) -> u64 {
        self.held
            .get(pos as usize)
            .copied()
            .unwrap_or(first + u64::from(pos))
    }

    /// Positions below log index `bound`.
    pub fn positions_below(&self, first: u64, bound: u64) -> u32 {
        if self.held.is_empty() {
            (bound.saturating_sub(first)).min(u64::from(self.len())) as u32
        } else {
            self.held.partition_point(|&i| i < bound) as u32
        }
    }

    pub fn add_keys(&mut self, loc: Loc, keys: &Keys) {
        let pos = self.len();
        self.locs.push(loc);
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
        let i = self.frames.partition_point(|&(_, rt)| rt < t);
        self.frames.get(i).map_or(self.len(), |&(p, _)| p)
    }

    pub fn received_at(&self, pos: u32) -> i64 {
        let i = self.frames.partition_point(|&(p, _)| p <= pos);
        self.frames.get(i.wrapping_sub(1)).map_or(i64::MIN, |f| f.1)
    }

    pub fn last_received_at(&self) -> Option<i64> {
        self.frames.last().map(|f| f.1)
    }

    /// Approximate heap bytes, for the storage figures.
    pub fn heap_bytes(&self) -> usize {
        let maps = [&self.actor, &self.mailbox, &self.patient, &self.action];
        self.locs.len() * std::mem::size_of::<Loc>()
            + self.frames.len() * 16
            + self.held.len() * 8
            + maps
                .iter()
                .map(|m| m.len() * 40 + m.values().map(|v| v.len() * 4).sum::<usize>())
                .sum::<usize>()
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
