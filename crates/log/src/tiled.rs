//! A Merkle tree of any size with only its right edge in memory.
//!
//! The tree is cut into C2SP tlog tiles: a tile of level `L` holds 256
//! consecutive nodes of tree level `8·L` (level 0: leaf hashes). Once a tile
//! is full it never changes, so it is handed to the storage driver
//! ([`TiledTree::take_completed`]) and dropped from memory; what stays is the
//! rightmost, incomplete tile of each level: at most 255 hashes per level,
//! about 64 KB whatever the size of the log. Any other node is computed from
//! a full tile the caller loads from its storage, through a bounded cache of
//! expanded tiles (every interior node of a tile computed once).
//!
//! The same code serves every driver: the embedded store reads full tiles
//! from its files as a proof needs them; a driver that can only fetch tiles
//! asynchronously asks [`TiledTree::tiles_needed`] which tiles a computation
//! will read, fetches them, then runs it with [`TiledTree::reader`].

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::merkle::{EMPTY_ROOT, Hash, HashReader, leaf_hash, node_hash};

/// Tree levels in one tile.
pub const TILE_HEIGHT: u32 = 8;
/// Hashes in a full tile.
pub const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;
/// Tile levels needed for 2^64 leaves.
const MAX_TILE_LEVELS: usize = (64 / TILE_HEIGHT) as usize;

/// A full tile's place: its tile level and its index in that level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileKey {
    pub level: u8,
    pub index: u64,
}

/// The 256 hashes of a full tile.
pub type FullTile = Arc<[Hash]>;

/// The root of `hashes` (a power of two of them) taken as a complete tree.
fn subtree_root(hashes: &[Hash]) -> Hash {
    debug_assert!(hashes.len().is_power_of_two());
    let mut row: Vec<Hash> = hashes.to_vec();
    while row.len() > 1 {
        row = row
            .chunks_exact(2)
            .map(|p| node_hash(&p[0], &p[1]))
            .collect();
    }
    row.first().copied().unwrap_or(EMPTY_ROOT)
}

/// The root of a full tile: the node of tree level `8·(L+1)` it computes.
pub fn tile_root(hashes: &[Hash]) -> Hash {
    subtree_root(hashes)
}

/// A full tile with its interior nodes: `nodes[s]` holds the 256 >> s
/// nodes `s` levels above the tile's base (`nodes[0]` is the tile itself).
struct Expanded {
    nodes: Vec<Vec<Hash>>,
}

impl Expanded {
    fn new(base: &[Hash]) -> Expanded {
        let mut nodes = vec![base.to_vec()];
        while let Some(row) = nodes.last().filter(|r| r.len() > 1) {
            let up = row
                .chunks_exact(2)
                .map(|p| node_hash(&p[0], &p[1]))
                .collect();
            nodes.push(up);
        }
        Expanded { nodes }
    }
}

/// A bounded cache of expanded full tiles (FIFO eviction: proofs touch the
/// top tiles every time, and those are re-expanded cheaply when evicted).
struct TileCache {
    capacity: usize,
    map: HashMap<TileKey, Arc<Expanded>>,
    order: VecDeque<TileKey>,
}

impl TileCache {
    fn get(&self, k: TileKey) -> Option<Arc<Expanded>> {
        self.map.get(&k).cloned()
    }

    fn insert(&mut self, k: TileKey, t: Arc<Expanded>) {
        if self.capacity == 0 || self.map.contains_key(&k) {
            return;
        }
        while self.map.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        self.map.insert(k, t);
        self.order.push_back(k);
    }
}

/// A Merkle tree that keeps only its right edge in memory.
pub struct TiledTree {
    size: u64,
    /// Per tile level, the nodes of its incomplete tile (fewer than 256).
    edge: Vec<Vec<Hash>>,
    /// Full tiles not yet taken by the driver, oldest first.
    completed: Vec<(TileKey, FullTile)>,
    cache: Mutex<TileCache>,
}

impl std::fmt::Debug for TiledTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TiledTree")
            .field("size", &self.size)
            .field("completed", &self.completed.len())
            .finish_non_exhaustive()
    }
}

/// Default number of expanded tiles kept (16 KB each).
pub const DEFAULT_CACHE_TILES: usize = 256;

impl TiledTree {
    /// The empty tree, with a cache of `cache_tiles` expanded tiles.
    pub fn new(cache_tiles: usize) -> TiledTree {
        TiledTree {
            size: 0,
            edge: Vec::new(),
            completed: Vec::new(),
            cache: Mutex::new(TileCache {
                capacity: cache_tiles,
                map: HashMap::new(),
                order: VecDeque::new(),
            }),
        }
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Full tiles stored at tile level `level` for a tree of `size` leaves.
    pub fn full_tiles(size: u64, level: u8) -> u64 {
        let shift = TILE_HEIGHT * (u32::from(level) + 1);
        if shift >= 64 { 0 } else { size >> shift }
    }

    /// Appends a leaf hash; returns its index.
    pub fn push(&mut self, leaf: Hash) -> u64 {
        let index = self.size;
        let after = index + 1;
        let mut h = leaf;
        let mut level = 0usize;
        loop {
            if self.edge.len() == level {
                self.edge.push(Vec::with_capacity(TILE_WIDTH as usize));
            }
            self.edge[level].push(h);
            if self.edge[level].len() < TILE_WIDTH as usize {
                break;
            }
            let full: Vec<Hash> = std::mem::take(&mut self.edge[level]);
            h = subtree_root(&full);
            // `after` leaves complete this tile: it is the last full one.
            let key = TileKey {
                level: level as u8,
                index: TiledTree::full_tiles(after, level as u8) - 1,
            };
            self.completed.push((key, full.into()));
            level += 1;
            if level >= MAX_TILE_LEVELS {
                break;
            }
        }
        self.size = after;
        index
    }

    /// Appends the leaf of an entry (its commitment): `leaf_hash(entry)`.
    pub fn push_entry(&mut self, entry: &[u8]) -> u64 {
        self.push(leaf_hash(entry))
    }

    /// The full tiles completed since the last call, oldest first, for the
    /// driver to store. Until then they are served from memory.
    pub fn take_completed(&mut self) -> Vec<(TileKey, FullTile)> {
        std::mem::take(&mut self.completed)
    }

    /// Full tiles completed and not yet taken.
    pub fn completed(&self) -> &[(TileKey, FullTile)] {
        &self.completed
    }

    /// The root of the whole tree, from the right edge alone.
    pub fn root(&self) -> Hash {
        // The complete subtrees of the tree, one per set bit of `size`, all
        // in the edge tiles: fold them from the smallest.
        let mut acc: Option<Hash> = None;
        for level in 0..64u32 {
            if self.size >> level & 1 == 0 {
                continue;
            }
            let start = (self.size >> (level + 1)) << (level + 1);
            let Some(peak) = self.edge_node(level, start >> level) else {
                return EMPTY_ROOT;
            };
            acc = Some(match acc {
                None => peak,
                Some(right) => node_hash(&peak, &right),
            });
        }
        acc.unwrap_or(EMPTY_ROOT)
    }

    /// Where node (`level`, `index`) lives: its tile, the first of its base
    /// nodes in the tile, and the number of levels above the tile's base.
    fn locate(level: u32, index: u64) -> Option<(TileKey, usize, u32)> {
        let tl = level / TILE_HEIGHT;
        let s = level % TILE_HEIGHT;
        let first = index.checked_shl(s)?;
        Some((
            TileKey {
                level: u8::try_from(tl).ok()?,
                index: first >> TILE_HEIGHT,
            },
            (first & (TILE_WIDTH - 1)) as usize,
            s,
        ))
    }

    /// True when node (`level`, `index`) is a complete node of this tree.
    fn complete(&self, level: u32, index: u64) -> bool {
        level < 64 && (u128::from(index) + 1) << level <= u128::from(self.size)
    }

    /// A node of an edge (incomplete) tile.
    fn edge_node(&self, level: u32, index: u64) -> Option<Hash> {
        let (key, off, s) = TiledTree::locate(level, index)?;
        if key.index != TiledTree::full_tiles(self.size, key.level) {
            return None;
        }
        let row = self.edge.get(usize::from(key.level))?;
        let width = 1usize << s;
        row.get(off..off + width).map(subtree_root)
    }

    /// A node, loading a full tile through `load` if it is in none of the
    /// edge, the completed tiles and the cache. `None` when the node is not
    /// a complete node of the tree or `load` has not got its tile.
    pub fn node_with(
        &self,
        level: u32,
        index: u64,
        load: &mut dyn FnMut(TileKey) -> Option<FullTile>,
    ) -> Option<Hash> {
        if !self.complete(level, index) {
            return None;
        }
        let (key, off, s) = TiledTree::locate(level, index)?;
        if key.index >= TiledTree::full_tiles(self.size, key.level) {
            return self.edge_node(level, index);
        }
        let expanded = self.expanded(key, load)?;
        expanded.nodes.get(s as usize)?.get(off >> s).copied()
    }

    fn expanded(
        &self,
        key: TileKey,
        load: &mut dyn FnMut(TileKey) -> Option<FullTile>,
    ) -> Option<Arc<Expanded>> {
        if let Some(t) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
        {
            return Some(t);
        }
        let base = match self.completed.iter().find(|(k, _)| *k == key) {
            Some((_, t)) => t.clone(),
            None => load(key)?,
        };
        if base.len() != TILE_WIDTH as usize {
            return None;
        }
        let t = Arc::new(Expanded::new(&base));
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, t.clone());
        Some(t)
    }

    /// A [`HashReader`] over this tree that loads full tiles with `load`.
    pub fn reader<F>(&self, load: F) -> Reader<'_, F>
    where
        F: FnMut(TileKey) -> Option<FullTile>,
    {
        Reader {
            tree: self,
            load: std::cell::RefCell::new(load),
        }
    }

    /// The full tiles that `compute` would load (not in memory now): run it
    /// once with this, fetch them, then run it for real with
    /// [`TiledTree::reader`] over what was fetched.
    pub fn tiles_needed(&self, compute: impl FnOnce(&dyn HashReader)) -> Vec<TileKey> {
        let needed = std::cell::RefCell::new(BTreeSet::new());
        let recorder = Recorder {
            tree: self,
            needed: &needed,
        };
        compute(&recorder);
        needed.into_inner().into_iter().collect()
    }

    /// Rebuilds the right edge of a tree of `size` leaves from its storage:
    /// `stored[L]` full tiles of level `L` are stored (`tile` reads one),
    /// `leaves(from, to)` gives leaf hashes. Full tiles the storage lacks
    /// (lost by a crash after their leaves were durable) are recomputed and
    /// left in [`TiledTree::completed`] for the driver to store again.
    pub fn restore<E>(
        size: u64,
        stored: &[u64],
        cache_tiles: usize,
        tile: &mut dyn FnMut(TileKey) -> Result<FullTile, E>,
        leaves: &mut dyn FnMut(u64, u64) -> Result<Vec<Hash>, E>,
    ) -> Result<TiledTree, E> {
        let mut t = TiledTree::new(cache_tiles);
        t.size = size;
        let mut recomputed: HashMap<TileKey, FullTile> = HashMap::new();
        for level in 0..MAX_TILE_LEVELS as u8 {
            let shift = TILE_HEIGHT * u32::from(level);
            let nodes = if shift >= 64 { 0 } else { size >> shift };
            if nodes == 0 {
                break;
            }
            // Missing full tiles at this level, oldest first (the ones
            // below need the ones of the level under them, done first).
            let full = TiledTree::full_tiles(size, level);
            let have = stored
                .get(usize::from(level))
                .copied()
                .unwrap_or(0)
                .min(full);
            for n in have..full {
                let key = TileKey { level, index: n };
                let base =
                    t.base_nodes(key, n * TILE_WIDTH, TILE_WIDTH, tile, leaves, &recomputed)?;
                let ft: FullTile = base.into();
                recomputed.insert(key, ft.clone());
                t.completed.push((key, ft));
            }
            let start = full * TILE_WIDTH;
            let row = t.base_nodes(
                TileKey { level, index: full },
                start,
                nodes - start,
                tile,
                leaves,
                &recomputed,
            )?;
            t.edge.push(row);
        }
        t.completed.sort_by_key(|(k, _)| *k);
        Ok(t)
    }

    /// The `count` nodes of tile level `key.level` from position `start`:
    /// leaf hashes at level 0, roots of the full tiles below otherwise.
    fn base_nodes<E>(
        &self,
        key: TileKey,
        start: u64,
        count: u64,
        tile: &mut dyn FnMut(TileKey) -> Result<FullTile, E>,
        leaves: &mut dyn FnMut(u64, u64) -> Result<Vec<Hash>, E>,
        recomputed: &HashMap<TileKey, FullTile>,
    ) -> Result<Vec<Hash>, E> {
        if key.level == 0 {
            return leaves(start, start + count);
        }
        let mut out = Vec::with_capacity(count as usize);
        for j in start..start + count {
            let below = TileKey {
                level: key.level - 1,
                index: j,
            };
            let base = match recomputed.get(&below) {
                Some(t) => t.clone(),
                None => tile(below)?,
            };
            out.push(subtree_root(&base));
        }
        Ok(out)
    }
}

/// See [`TiledTree::reader`].
pub struct Reader<'a, F> {
    tree: &'a TiledTree,
    load: std::cell::RefCell<F>,
}

impl<F> HashReader for Reader<'_, F>
where
    F: FnMut(TileKey) -> Option<FullTile>,
{
    fn node(&self, level: u32, index: u64) -> Option<Hash> {
        let mut load = self.load.borrow_mut();
        self.tree.node_with(level, index, &mut *load)
    }
}

/// Answers every complete node with a placeholder and records the full
/// tiles a real read would have loaded.
struct Recorder<'a> {
    tree: &'a TiledTree,
    needed: &'a std::cell::RefCell<BTreeSet<TileKey>>,
}

impl HashReader for Recorder<'_> {
    fn node(&self, level: u32, index: u64) -> Option<Hash> {
        let mut missing = None;
        let mut load = |k: TileKey| {
            missing = Some(k);
            None
        };
        if let Some(h) = self.tree.node_with(level, index, &mut load) {
            return Some(h);
        }
        if let Some(k) = missing {
            self.needed.borrow_mut().insert(k);
            return Some(EMPTY_ROOT);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{self, MemoryTree};
    use proptest::prelude::*;

    fn leaf(i: u64) -> Hash {
        leaf_hash(&i.to_le_bytes())
    }

    /// A tree and a map standing for its storage.
    fn grow(n: u64, cache: usize) -> (TiledTree, HashMap<TileKey, FullTile>, MemoryTree) {
        let mut t = TiledTree::new(cache);
        let mut m = MemoryTree::new();
        let mut store = HashMap::new();
        for i in 0..n {
            t.push(leaf(i));
            m.push(leaf(i));
            if i % 97 == 0 {
                store.extend(t.take_completed());
            }
        }
        store.extend(t.take_completed());
        (t, store, m)
    }

    #[test]
    fn roots_proofs_and_tiles_match_the_memory_tree() {
        for n in [
            0u64, 1, 2, 255, 256, 257, 511, 512, 1000, 65_535, 65_536, 65_537, 70_001,
        ] {
            let (t, store, m) = grow(n, 8);
            assert_eq!(t.size(), n);
            assert_eq!(t.root(), m.root(), "root at {n}");
            let r = t.reader(|k| store.get(&k).cloned());
            for size in [1, n / 3, n / 2 + 1, n.saturating_sub(1), n] {
                if size == 0 || size > n {
                    continue;
                }
                assert_eq!(
                    merkle::root(&r, size).ok(),
                    m.root_at(size),
                    "root_at {size}/{n}"
                );
                for index in [0, size / 2, size - 1] {
                    assert_eq!(
                        merkle::inclusion_proof(&r, index, size).ok(),
                        merkle::inclusion_proof(&m, index, size).ok(),
                        "inclusion {index}/{size}/{n}"
                    );
                }
                assert_eq!(
                    merkle::consistency_proof(&r, size, n).ok(),
                    merkle::consistency_proof(&m, size, n).ok(),
                    "consistency {size}/{n}"
                );
            }
            // Every full tile stored is the memory tree's nodes.
            for (k, hashes) in &store {
                let level = TILE_HEIGHT * u32::from(k.level);
                for (i, h) in hashes.iter().enumerate() {
                    assert_eq!(Some(*h), m.node(level, k.index * TILE_WIDTH + i as u64));
                }
            }
        }
    }

    #[test]
    fn restore_gives_the_same_tree_and_recomputes_lost_tiles() {
        let n = 70_001u64;
        let (t, mut store, m) = grow(n, 4);
        let leaves: Vec<Hash> = (0..n).map(leaf).collect();
        // A crash lost the newest tiles of level 0 and the level-1 tile.
        let lost = [
            TileKey {
                level: 0,
                index: 272,
            },
            TileKey {
                level: 0,
                index: 271,
            },
            TileKey { level: 1, index: 0 },
        ];
        for k in lost {
            store.remove(&k);
        }
        let stored = [271u64, 0, 0];
        let r = TiledTree::restore::<()>(
            n,
            &stored,
            4,
            &mut |k| store.get(&k).cloned().ok_or(()),
            &mut |a, b| Ok(leaves[a as usize..b as usize].to_vec()),
        )
        .expect("restore");
        assert_eq!(r.root(), t.root());
        assert_eq!(r.root(), m.root());
        let mut again: Vec<TileKey> = r.completed().iter().map(|(k, _)| *k).collect();
        again.sort();
        let mut want = lost.to_vec();
        want.sort();
        assert_eq!(again, want);
        let mut r = r;
        for (k, hashes) in r.take_completed() {
            store.insert(k, hashes);
        }
        let rd = r.reader(|k| store.get(&k).cloned());
        assert_eq!(
            merkle::inclusion_proof(&rd, 12_345, n).ok(),
            merkle::inclusion_proof(&m, 12_345, n).ok()
        );
    }

    #[test]
    fn tiles_needed_names_what_a_proof_loads() {
        let (t, store, m) = grow(100_000, 0);
        let needed = t.tiles_needed(|r| {
            let _ = merkle::inclusion_proof(r, 777, 90_000);
        });
        assert!(!needed.is_empty());
        let fetched: HashMap<TileKey, FullTile> = needed
            .iter()
            .map(|k| (*k, store.get(k).cloned().expect("stored")))
            .collect();
        let r = t.reader(|k| fetched.get(&k).cloned());
        assert_eq!(
            merkle::inclusion_proof(&r, 777, 90_000).ok(),
            merkle::inclusion_proof(&m, 777, 90_000).ok()
        );
    }

    #[test]
    fn memory_is_the_edge_only() {
        let (t, _, _) = grow(200_000, 0);
        let edge: usize = t.edge.iter().map(Vec::len).sum();
        assert!(edge < 3 * TILE_WIDTH as usize, "{edge} hashes in memory");
        assert!(t.completed().is_empty());
    }

    proptest! {
        #[test]
        fn any_size_any_proof(n in 1u64..3000, a in 0u64..3000, b in 0u64..3000) {
            let (t, store, m) = grow(n, 2);
            let r = t.reader(|k| store.get(&k).cloned());
            let size = 1 + b % n;
            let index = a % size;
            prop_assert_eq!(t.root(), m.root());
            prop_assert_eq!(
                merkle::inclusion_proof(&r, index, size).ok(),
                merkle::inclusion_proof(&m, index, size).ok()
            );
            prop_assert_eq!(
                merkle::consistency_proof(&r, size, n).ok(),
                merkle::consistency_proof(&m, size, n).ok()
            );
        }
    }
}
