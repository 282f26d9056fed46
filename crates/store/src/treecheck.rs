//! The verifier's tree check, the same for every driver: the Merkle tree
//! rebuilt from a log's commitments with only its right edge in memory,
//! each full tile it completes compared with the stored one, and its root
//! taken at each checkpoint's size.
//!
//! Two checkpoints whose roots both equal the rebuilt tree's at their sizes
//! are consistent by construction, so no consistency proof is computed.

use std::collections::HashMap;

use registre_log::merkle::{self, Hash};
use registre_log::tiled::{DEFAULT_CACHE_TILES, FullTile, TileKey, TiledTree};

/// What is wrong with a stored tile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TileProblem {
    /// The stored record or row does not decode or check (the reason).
    Damaged(String),
    /// Hash `i` of the stored tile differs from the rebuilt tree's.
    Differs(usize),
    /// Tiles of this level stored beyond the log (how many).
    Beyond(u64),
}

impl std::fmt::Display for TileProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TileProblem::Damaged(why) => write!(f, "{why}: altered"),
            TileProblem::Differs(_) => {
                f.write_str("stored tile hash differs from the tree rebuilt from the commitments")
            }
            TileProblem::Beyond(n) => write!(
                f,
                "{n} stored tiles of this level lie beyond the log: the log was truncated"
            ),
        }
    }
}

/// A stored tile, as a driver reads it: `None` when not stored (written
/// after the latest checkpoint, or lost by a crash and recomputed at the
/// next open), `Some(Err)` when damaged.
pub type Stored = Option<Result<FullTile, String>>;

pub struct TreeCheck {
    tree: TiledTree,
    sizes: std::iter::Peekable<std::vec::IntoIter<u64>>,
    roots: HashMap<u64, Hash>,
    /// Stored tiles compared.
    pub tiles: u64,
}

impl TreeCheck {
    /// A check that will take the roots at `checkpoint_sizes`.
    pub fn new(checkpoint_sizes: impl IntoIterator<Item = u64>) -> TreeCheck {
        let mut sizes: Vec<u64> = checkpoint_sizes.into_iter().collect();
        sizes.sort_unstable();
        sizes.dedup();
        let mut c = TreeCheck {
            tree: TiledTree::new(DEFAULT_CACHE_TILES),
            sizes: sizes.into_iter().peekable(),
            roots: HashMap::new(),
            tiles: 0,
        };
        c.take_roots();
        c
    }

    fn take_roots(&mut self) {
        while self.sizes.peek() == Some(&self.tree.size()) {
            self.roots.insert(self.tree.size(), self.tree.root());
            self.sizes.next();
        }
    }

    /// Adds the next commitment; each tile it completes is compared with
    /// `stored(tile)`, and `problem` is told of each difference.
    pub fn push(
        &mut self,
        commitment: &Hash,
        stored: &mut dyn FnMut(TileKey) -> Stored,
        problem: &mut dyn FnMut(TileKey, TileProblem),
    ) {
        self.tree.push(merkle::leaf_hash(commitment));
        self.take_roots();
        if self.tree.completed().is_empty() {
            return;
        }
        for (k, hashes) in self.tree.take_completed() {
            match stored(k) {
                None => {}
                Some(Err(why)) => problem(k, TileProblem::Damaged(why)),
                Some(Ok(s)) => {
                    self.tiles += 1;
                    if let Some(i) = (0..hashes.len()).find(|&i| s.get(i) != hashes.get(i)) {
                        problem(k, TileProblem::Differs(i));
                    }
                }
            }
        }
    }

    /// Leaves pushed so far.
    pub fn size(&self) -> u64 {
        self.tree.size()
    }

    /// The rebuilt tree's root at `size`, if `size` was a checkpoint size
    /// reached.
    pub fn root_at(&self, size: u64) -> Option<Hash> {
        self.roots.get(&size).copied()
    }

    /// Checks the stored tile counts per level (`count(level)`) against
    /// the rebuilt tree: more is a truncated log.
    pub fn check_counts(
        &self,
        count: &mut dyn FnMut(u8) -> u64,
        problem: &mut dyn FnMut(TileKey, TileProblem),
    ) {
        for level in 0..8u8 {
            let full = TiledTree::full_tiles(self.tree.size(), level);
            let n = count(level);
            if n > full {
                problem(
                    TileKey { level, index: full },
                    TileProblem::Beyond(n - full),
                );
            }
        }
    }
}
