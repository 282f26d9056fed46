//! c2sp.org/tlog-tiles coordinates, tile contents and entry bundles.
//!
//! * Tiles have height 8 (§"Merkle Tree"): a full tile holds 256 hashes
//!   (8,192 bytes). The tile at level `L`, index `N` holds the Merkle tree
//!   nodes at tree level `8·L`, indices `N·256 .. N·256 + W`: at level 0 the
//!   leaf hashes, above that the roots of full tiles of the level below.
//! * Paths are `tile/<L>/<N>[.p/<W>]` and `tile/entries/<N>[.p/<W>]`. `<L>`
//!   is 0..=63 without leading zeros; `<N>` is written in zero-padded
//!   three-digit groups, every group but the last prefixed with `x` (index
//!   1234067 is `x001/x234/067`); `.p/<W>` marks a partial tile of width
//!   1..=255 (§"Partial Tiles"). [`parse_path`] accepts exactly the paths
//!   [`TileId::path`] and [`BundleId::path`] produce.
//! * A tree of size `s` has, at each level `l`, `⌊s / 256^(l+1)⌋` full tiles
//!   and, if `⌊s / 256^l⌋ mod 256` is not zero, one partial tile of that
//!   width ([`tiles_for_size`]). A tree of size 256 thus has one full level-0
//!   tile and a partial level-1 tile of width 1.
//! * An entry bundle is the entries of one level-0 tile, each as a
//!   big-endian `u16` length then its bytes (§"Log entries"), so an entry is
//!   at most 65,535 bytes.

use std::fmt;

use crate::merkle::{Hash, HashReader, complete_node};

/// Tree levels per tile level.
pub const TILE_HEIGHT: u32 = 8;
/// Hashes in a full tile, entries in a full bundle.
pub const TILE_WIDTH: u16 = 256;
/// The highest tile level a path may name.
pub const MAX_TILE_LEVEL: u8 = 63;
/// The largest entry an entry bundle can hold.
pub const MAX_ENTRY_LEN: usize = u16::MAX as usize;

/// Why tile coordinates are invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TileIdError {
    /// Tile levels go from 0 to 63.
    #[error("tile level {level} is above {MAX_TILE_LEVEL}")]
    LevelTooHigh { level: u8 },
    /// Widths go from 1 to 256 (256 is a full tile).
    #[error("tile width {width} is not in 1..=256")]
    InvalidWidth { width: u16 },
}

fn check_width(width: u16) -> Result<(), TileIdError> {
    if width == 0 || width > TILE_WIDTH {
        return Err(TileIdError::InvalidWidth { width });
    }
    Ok(())
}

/// A Merkle tree tile: `tile/<L>/<N>[.p/<W>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileId {
    level: u8,
    index: u64,
    width: u16,
}

impl TileId {
    /// The tile at `level` (0..=63), `index`, holding `width` (1..=256) hashes.
    pub fn new(level: u8, index: u64, width: u16) -> Result<Self, TileIdError> {
        if level > MAX_TILE_LEVEL {
            return Err(TileIdError::LevelTooHigh { level });
        }
        check_width(width)?;
        Ok(Self {
            level,
            index,
            width,
        })
    }

    /// The tile level `L`.
    pub fn level(&self) -> u8 {
        self.level
    }

    /// The tile index `N` within its level.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The number of hashes, 256 for a full tile.
    pub fn width(&self) -> u16 {
        self.width
    }

    /// Whether the tile holds fewer than 256 hashes.
    pub fn is_partial(&self) -> bool {
        self.width < TILE_WIDTH
    }

    /// The tree level of the hashes the tile holds, `8·L`.
    pub fn tree_level(&self) -> u32 {
        TILE_HEIGHT * u32::from(self.level)
    }

    /// The resource path, `tile/<L>/<N>[.p/<W>]`.
    pub fn path(&self) -> String {
        format!(
            "tile/{}/{}",
            self.level,
            index_and_width(self.index, self.width)
        )
    }
}

impl fmt::Display for TileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// An entry bundle: `tile/entries/<N>[.p/<W>]`, the entries of the level-0
/// tile of the same index and width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BundleId {
    index: u64,
    width: u16,
}

impl BundleId {
    /// The bundle `index`, holding `width` (1..=256) entries.
    pub fn new(index: u64, width: u16) -> Result<Self, TileIdError> {
        check_width(width)?;
        Ok(Self { index, width })
    }

    /// The bundle index `N`.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The number of entries, 256 for a full bundle.
    pub fn width(&self) -> u16 {
        self.width
    }

    /// Whether the bundle holds fewer than 256 entries.
    pub fn is_partial(&self) -> bool {
        self.width < TILE_WIDTH
    }

    /// The level-0 tile that holds the hashes of this bundle's entries.
    pub fn tile(&self) -> TileId {
        TileId {
            level: 0,
            index: self.index,
            width: self.width,
        }
    }

    /// The resource path, `tile/entries/<N>[.p/<W>]`.
    pub fn path(&self) -> String {
        format!("tile/entries/{}", index_and_width(self.index, self.width))
    }
}

impl fmt::Display for BundleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// What a tile path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TilePath {
    /// A Merkle tree tile.
    Hashes(TileId),
    /// An entry bundle.
    Entries(BundleId),
}

impl TilePath {
    /// The resource path.
    pub fn path(&self) -> String {
        match self {
            TilePath::Hashes(t) => t.path(),
            TilePath::Entries(b) => b.path(),
        }
    }
}

impl fmt::Display for TilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// `<N>[.p/<W>]`: `N` in three-digit groups, all but the last prefixed `x`.
fn index_and_width(index: u64, width: u16) -> String {
    let mut groups = Vec::with_capacity(7);
    let mut n = index;
    loop {
        groups.push(n % 1000);
        n /= 1000;
        if n == 0 {
            break;
        }
    }
    let mut s = String::with_capacity(groups.len() * 5 + 6);
    for (i, g) in groups.iter().rev().enumerate() {
        if i > 0 {
            s.push('/');
        }
        if i + 1 < groups.len() {
            s.push('x');
        }
        s.push_str(&format!("{g:03}"));
    }
    if width < TILE_WIDTH {
        s.push_str(&format!(".p/{width}"));
    }
    s
}

/// Why a string is not a canonical tile path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TilePathError {
    /// The path does not start with `tile/`.
    #[error("a tile path starts with \"tile/\"")]
    NotATilePath,
    /// Two slashes in a row, or a slash at the end.
    #[error("empty path segment at position {position}")]
    EmptySegment { position: usize },
    /// A `.` or `..` segment.
    #[error("path traversal segment {segment:?}")]
    DotSegment { segment: String },
    /// The level is not `entries` nor a decimal 0..=63 without leading zeros.
    #[error("invalid tile level {segment:?}: expected \"entries\" or 0..=63 without leading zeros")]
    InvalidLevel { segment: String },
    /// No index after the level.
    #[error("the tile path has no index")]
    MissingIndex,
    /// An index group is not `x` + three digits (or, last, three digits).
    #[error(
        "invalid index group {segment:?}: every group but the last is x and three digits, the last three digits"
    )]
    InvalidIndexGroup { segment: String },
    /// The index starts with a `x000` group.
    #[error("non-canonical index: leading x000 group")]
    LeadingZeroGroup,
    /// The index does not fit in 64 bits.
    #[error("the tile index does not fit in 64 bits")]
    IndexOverflow,
    /// The partial width is not a decimal 1..=255 without leading zeros.
    #[error("invalid partial tile width {segment:?}: expected 1..=255 without leading zeros")]
    InvalidWidth { segment: String },
}

/// Parses a tile or entry bundle path, accepting only the canonical form.
pub fn parse_path(path: &str) -> Result<TilePath, TilePathError> {
    let rest = path
        .strip_prefix("tile/")
        .ok_or(TilePathError::NotATilePath)?;
    let segments: Vec<&str> = rest.split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        if seg.is_empty() {
            return Err(TilePathError::EmptySegment { position: i + 1 });
        }
        if *seg == "." || *seg == ".." {
            return Err(TilePathError::DotSegment {
                segment: (*seg).to_owned(),
            });
        }
    }
    let (first, mut groups) = match segments.split_first() {
        Some((first, groups)) => (*first, groups),
        None => return Err(TilePathError::MissingIndex),
    };
    let level = if first == "entries" {
        None
    } else {
        let level = parse_decimal(first)
            .and_then(|l| u8::try_from(l).ok())
            .filter(|l| *l <= MAX_TILE_LEVEL)
            .ok_or_else(|| TilePathError::InvalidLevel {
                segment: first.to_owned(),
            })?;
        Some(level)
    };

    let mut width = TILE_WIDTH;
    let mut last_group = None;
    if let [head @ .., last, w] = groups
        && let Some(stripped) = last.strip_suffix(".p")
    {
        width = parse_decimal(w)
            .and_then(|w| u16::try_from(w).ok())
            .filter(|w| (1..TILE_WIDTH).contains(w))
            .ok_or_else(|| TilePathError::InvalidWidth {
                segment: (*w).to_owned(),
            })?;
        groups = head;
        last_group = Some(stripped);
    }
    let index = parse_index(groups, last_group)?;
    Ok(match level {
        Some(level) => TilePath::Hashes(TileId {
            level,
            index,
            width,
        }),
        None => TilePath::Entries(BundleId { index, width }),
    })
}

/// A canonical decimal (no sign, no leading zeros), if `s` is one.
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// `x`-prefixed groups, then the last group (given apart when it carried the
/// `.p` suffix).
fn parse_index(groups: &[&str], stripped_last: Option<&str>) -> Result<u64, TilePathError> {
    let all: Vec<&str> = groups.iter().copied().chain(stripped_last).collect();
    let Some((last, prefixed)) = all.split_last() else {
        return Err(TilePathError::MissingIndex);
    };
    let mut index = 0u64;
    for (i, g) in prefixed.iter().enumerate() {
        let digits = g
            .strip_prefix('x')
            .ok_or_else(|| TilePathError::InvalidIndexGroup {
                segment: (*g).to_owned(),
            })?;
        let v = three_digits(digits).ok_or_else(|| TilePathError::InvalidIndexGroup {
            segment: (*g).to_owned(),
        })?;
        if i == 0 && v == 0 {
            return Err(TilePathError::LeadingZeroGroup);
        }
        index = push_group(index, v)?;
    }
    let v = three_digits(last).ok_or_else(|| TilePathError::InvalidIndexGroup {
        segment: (*last).to_owned(),
    })?;
    push_group(index, v)
}

fn push_group(index: u64, group: u64) -> Result<u64, TilePathError> {
    index
        .checked_mul(1000)
        .and_then(|i| i.checked_add(group))
        .ok_or(TilePathError::IndexOverflow)
}

fn three_digits(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 3 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |acc, d| acc * 10 + u64::from(d - b'0')))
}

/// Why a tile's hashes could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TileHashesError {
    /// The tile's first node index does not fit in 64 bits.
    #[error("tile index {index} is too large for level {level}")]
    IndexOverflow { level: u8, index: u64 },
    /// The tree has no node the tile needs: the tile is beyond the tree.
    #[error("the tree has no node at level {level}, index {index}")]
    MissingNode { level: u32, index: u64 },
}

/// The hashes a tile holds: the tree nodes at level `8·L`, indices
/// `N·256 .. N·256 + W`.
pub fn tile_hashes<R: HashReader + ?Sized>(
    r: &R,
    tile: TileId,
) -> Result<Vec<Hash>, TileHashesError> {
    let overflow = TileHashesError::IndexOverflow {
        level: tile.level,
        index: tile.index,
    };
    let first = tile
        .index
        .checked_mul(u64::from(TILE_WIDTH))
        .ok_or_else(|| overflow.clone())?;
    first
        .checked_add(u64::from(tile.width) - 1)
        .ok_or(overflow)?;
    (0..u64::from(tile.width))
        .map(|i| {
            complete_node(r, tile.tree_level(), first + i).map_err(|m| {
                TileHashesError::MissingNode {
                    level: m.level,
                    index: m.index,
                }
            })
        })
        .collect()
}

/// The tiles of a tree of `size` leaves, full and partial, level by level
/// from level 0, in index order.
pub fn tiles_for_size(size: u64) -> TilesForSize {
    TilesForSize {
        size,
        level: 0,
        next: 0,
    }
}

/// The entry bundles of a tree of `size` leaves, in index order.
pub fn bundles_for_size(size: u64) -> BundlesForSize {
    BundlesForSize { size, next: 0 }
}

/// Iterator returned by [`tiles_for_size`].
#[derive(Debug, Clone)]
pub struct TilesForSize {
    size: u64,
    level: u8,
    next: u64,
}

/// The number of tree nodes at tile level `level` of a tree of `size` leaves.
fn nodes_at(size: u64, level: u8) -> u64 {
    size.checked_shr(TILE_HEIGHT * u32::from(level))
        .unwrap_or(0)
}

/// The full-tile count and the partial width at one level holding `n` nodes.
fn split_level(n: u64) -> (u64, u16) {
    (
        n / u64::from(TILE_WIDTH),
        (n % u64::from(TILE_WIDTH)) as u16,
    )
}

impl Iterator for TilesForSize {
    type Item = TileId;

    fn next(&mut self) -> Option<TileId> {
        loop {
            let n = nodes_at(self.size, self.level);
            if n == 0 {
                return None;
            }
            let (full, partial) = split_level(n);
            if self.next < full || (self.next == full && partial > 0) {
                let width = if self.next < full {
                    TILE_WIDTH
                } else {
                    partial
                };
                let tile = TileId {
                    level: self.level,
                    index: self.next,
                    width,
                };
                self.next += 1;
                return Some(tile);
            }
            self.level += 1;
            self.next = 0;
        }
    }
}

/// Iterator returned by [`bundles_for_size`].
#[derive(Debug, Clone)]
pub struct BundlesForSize {
    size: u64,
    next: u64,
}

impl Iterator for BundlesForSize {
    type Item = BundleId;

    fn next(&mut self) -> Option<BundleId> {
        let (full, partial) = split_level(self.size);
        let width = if self.next < full {
            TILE_WIDTH
        } else if self.next == full && partial > 0 {
            partial
        } else {
            return None;
        };
        let bundle = BundleId {
            index: self.next,
            width,
        };
        self.next += 1;
        Some(bundle)
    }
}

/// Why entries cannot form a bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleEncodeError {
    /// Empty bundles are never served.
    #[error("an entry bundle holds at least one entry")]
    Empty,
    /// A bundle holds at most 256 entries.
    #[error("{count} entries: a bundle holds at most 256")]
    TooManyEntries { count: usize },
    /// The `u16` length prefix caps entries at 65,535 bytes.
    #[error("entry {index} is {len} bytes: a bundle entry is at most 65535")]
    EntryTooLarge { index: usize, len: usize },
}

/// Why bytes are not an entry bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleDecodeError {
    /// Empty bundles are never served.
    #[error("empty entry bundle")]
    Empty,
    /// The bundle ends inside a length prefix.
    #[error("entry {index}: the bundle ends inside its length prefix (offset {offset})")]
    TruncatedLength { index: usize, offset: usize },
    /// The bundle ends inside an entry.
    #[error("entry {index}: {len} bytes announced at offset {offset}, fewer remain")]
    TruncatedEntry {
        index: usize,
        offset: usize,
        len: usize,
    },
    /// More than 256 entries.
    #[error("more than 256 entries in one bundle")]
    TooManyEntries,
}

/// Encodes entries as a bundle: each a big-endian `u16` length, then its bytes.
pub fn encode_bundle<E: AsRef<[u8]>>(entries: &[E]) -> Result<Vec<u8>, BundleEncodeError> {
    if entries.is_empty() {
        return Err(BundleEncodeError::Empty);
    }
    if entries.len() > usize::from(TILE_WIDTH) {
        return Err(BundleEncodeError::TooManyEntries {
            count: entries.len(),
        });
    }
    let total: usize = entries.iter().map(|e| 2 + e.as_ref().len()).sum();
    let mut out = Vec::with_capacity(total);
    for (index, e) in entries.iter().enumerate() {
        let e = e.as_ref();
        let len = u16::try_from(e.len()).map_err(|_| BundleEncodeError::EntryTooLarge {
            index,
            len: e.len(),
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Ok(out)
}

/// Decodes a bundle into its entries (borrowed from `bytes`).
pub fn decode_bundle(bytes: &[u8]) -> Result<Vec<&[u8]>, BundleDecodeError> {
    if bytes.is_empty() {
        return Err(BundleDecodeError::Empty);
    }
    let mut entries = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let index = entries.len();
        if index == usize::from(TILE_WIDTH) {
            return Err(BundleDecodeError::TooManyEntries);
        }
        let offset = bytes.len() - rest.len();
        let Some((len, tail)) = rest.split_first_chunk::<2>() else {
            return Err(BundleDecodeError::TruncatedLength { index, offset });
        };
        let len = usize::from(u16::from_be_bytes(*len));
        if tail.len() < len {
            return Err(BundleDecodeError::TruncatedEntry { index, offset, len });
        }
        let (entry, tail) = tail.split_at(len);
        entries.push(entry);
        rest = tail;
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(p: &str) -> TilePathError {
        match parse_path(p) {
            Err(e) => e,
            Ok(t) => panic!("{p} parsed as {t:?}"),
        }
    }

    #[test]
    fn index_encoding() {
        assert_eq!(TileId::new(0, 0, 256).unwrap().path(), "tile/0/000");
        assert_eq!(TileId::new(0, 999, 256).unwrap().path(), "tile/0/999");
        assert_eq!(TileId::new(0, 1000, 256).unwrap().path(), "tile/0/x001/000");
        assert_eq!(
            TileId::new(3, 1234067, 7).unwrap().path(),
            "tile/3/x001/x234/067.p/7"
        );
        assert_eq!(
            BundleId::new(u64::MAX, 255).unwrap().path(),
            "tile/entries/x018/x446/x744/x073/x709/x551/615.p/255"
        );
        assert_eq!(
            parse_path("tile/entries/x018/x446/x744/x073/x709/x551/615.p/255"),
            Ok(TilePath::Entries(BundleId::new(u64::MAX, 255).unwrap()))
        );
    }

    #[test]
    fn rejects_non_canonical_paths() {
        use TilePathError as E;
        assert_eq!(err("tiles/0/000"), E::NotATilePath);
        assert_eq!(err("/tile/0/000"), E::NotATilePath);
        assert_eq!(err("tile/0//000"), E::EmptySegment { position: 2 });
        assert_eq!(err("tile/0/000/"), E::EmptySegment { position: 3 });
        assert_eq!(err("tile/0"), E::MissingIndex);
        assert!(matches!(err("tile/../000"), E::DotSegment { .. }));
        assert!(matches!(err("tile/0/x001/../000"), E::DotSegment { .. }));
        assert!(matches!(err("tile/00/000"), E::InvalidLevel { .. }));
        assert!(matches!(err("tile/64/000"), E::InvalidLevel { .. }));
        assert!(matches!(err("tile/+1/000"), E::InvalidLevel { .. }));
        assert!(matches!(err("tile/data/000"), E::InvalidLevel { .. }));
        assert!(matches!(err("tile/0/1"), E::InvalidIndexGroup { .. }));
        assert!(matches!(err("tile/0/0001"), E::InvalidIndexGroup { .. }));
        assert!(matches!(err("tile/0/x000"), E::InvalidIndexGroup { .. }));
        assert!(matches!(err("tile/0/001/000"), E::InvalidIndexGroup { .. }));
        assert!(matches!(
            err("tile/0/x001/x000"),
            E::InvalidIndexGroup { .. }
        ));
        assert!(matches!(
            err("tile/0/X001/000"),
            E::InvalidIndexGroup { .. }
        ));
        assert!(matches!(err("tile/0/x1/000"), E::InvalidIndexGroup { .. }));
        assert!(matches!(err("tile/0/-01"), E::InvalidIndexGroup { .. }));
        assert_eq!(err("tile/0/x000/001"), E::LeadingZeroGroup);
        assert_eq!(
            err("tile/entries/x018/x446/x744/x073/x709/x551/616"),
            E::IndexOverflow
        );
        assert_eq!(
            err("tile/0/x001/x000/x000/x000/x000/x000/x000/000"),
            E::IndexOverflow
        );
        assert!(matches!(err("tile/0/001.p/0"), E::InvalidWidth { .. }));
        assert!(matches!(err("tile/0/001.p/256"), E::InvalidWidth { .. }));
        assert!(matches!(err("tile/0/001.p/05"), E::InvalidWidth { .. }));
        assert!(matches!(
            err("tile/0/001.p/5/6"),
            E::InvalidIndexGroup { .. }
        ));
        assert!(matches!(err("tile/0/001.p"), E::InvalidIndexGroup { .. }));
        assert!(matches!(
            err("tile/entries/.p/5"),
            E::InvalidIndexGroup { .. }
        ));
    }

    #[test]
    fn tiles_and_bundles_for_small_sizes() {
        assert_eq!(tiles_for_size(0).count(), 0);
        let t: Vec<_> = tiles_for_size(1).map(|t| t.path()).collect();
        assert_eq!(t, ["tile/0/000.p/1"]);
        let t: Vec<_> = tiles_for_size(257).map(|t| t.path()).collect();
        assert_eq!(t, ["tile/0/000", "tile/0/001.p/1", "tile/1/000.p/1"]);
        let b: Vec<_> = bundles_for_size(257).map(|b| b.path()).collect();
        assert_eq!(b, ["tile/entries/000", "tile/entries/001.p/1"]);
        // The largest tree ends at level 7 (8·8 = 64 tree levels).
        assert_eq!(nodes_at(u64::MAX, 7), 255);
        assert_eq!(nodes_at(u64::MAX, 8), 0);
        let mut top = TilesForSize {
            size: u64::MAX,
            level: 7,
            next: 0,
        };
        assert_eq!(top.next(), Some(TileId::new(7, 0, 255).unwrap()));
        assert_eq!(top.next(), None);
    }

    #[test]
    fn bundles_round_trip_and_reject_damage() {
        let entries: Vec<&[u8]> = vec![b"", b"a", &[7u8; 300]];
        let b = encode_bundle(&entries).unwrap();
        assert_eq!(&b[..5], &[0, 0, 0, 1, b'a']);
        assert_eq!(decode_bundle(&b).unwrap(), entries);
        assert_eq!(
            decode_bundle(&b[..b.len() - 1]),
            Err(BundleDecodeError::TruncatedEntry {
                index: 2,
                offset: 5,
                len: 300
            })
        );
        assert_eq!(decode_bundle(&b[..2]), Ok(vec![&b""[..]]));
        assert_eq!(
            decode_bundle(&b[..6]),
            Err(BundleDecodeError::TruncatedLength {
                index: 2,
                offset: 5
            })
        );
        assert_eq!(decode_bundle(&[]), Err(BundleDecodeError::Empty));
        assert_eq!(encode_bundle::<&[u8]>(&[]), Err(BundleEncodeError::Empty));
        let big = vec![0u8; 65536];
        assert_eq!(
            encode_bundle(&[&big[..]]),
            Err(BundleEncodeError::EntryTooLarge {
                index: 0,
                len: 65536
            })
        );
        let many = vec![&b""[..]; 257];
        assert_eq!(
            encode_bundle(&many),
            Err(BundleEncodeError::TooManyEntries { count: 257 })
        );
        assert_eq!(
            decode_bundle(&[0u8; 514]),
            Err(BundleDecodeError::TooManyEntries)
        );
        assert_eq!(decode_bundle(&[0u8; 512]).map(|e| e.len()), Ok(256));
    }
}
